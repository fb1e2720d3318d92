//! A real trace backend we did not write: Jaeger (v2), built from its Go
//! module by `hack/tools.sh jaeger` (pinned in hack/versions.env), run as a
//! process with in-memory storage, receiving OTLP over HTTP on a free
//! loopback port and answering its query API on another. Killed (by PID)
//! on drop.

use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{unique_name, wait_until};

/// The pinned Jaeger, built on first use.
fn binary() -> &'static std::path::Path {
    static JAEGER: OnceLock<std::path::PathBuf> = OnceLock::new();
    JAEGER.get_or_init(|| crate::chart::tool("jaeger"))
}

/// A free loopback port (bound, then let go, for Jaeger to take).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// The running Jaeger.
pub struct Jaeger {
    child: Child,
    /// The OTLP/HTTP base URL to export to (`--otlp-endpoint`).
    pub otlp: String,
    /// The query API's base URL.
    query: String,
    http: reqwest::Client,
}

impl Jaeger {
    /// Starts Jaeger and waits until its query API answers.
    pub async fn start() -> Self {
        let (otlp, query) = (free_port(), free_port());
        let dir = std::env::temp_dir().join("pendingjob-it");
        std::fs::create_dir_all(&dir).expect("a directory for Jaeger");
        let name = unique_name("jaeger");
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, config_yaml(otlp, query)).expect("writing Jaeger's config");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("Jaeger's log");
        let child = Command::new(binary())
            .arg(format!("--config=file:{}", config.display()))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting Jaeger");
        let jaeger = Self {
            child,
            otlp: format!("http://127.0.0.1:{otlp}"),
            query: format!("http://127.0.0.1:{query}"),
            http: reqwest::Client::new(),
        };
        wait_until("Jaeger's query API to answer", Duration::from_secs(60), || async {
            let answer = jaeger.http.get(format!("{}/api/services", jaeger.query)).send().await;
            answer.ok().filter(|a| a.status().is_success()).map(|_| ())
        })
        .await;
        jaeger
    }

    /// The trace `trace_id` as Jaeger's query API returns it (`data[0]`),
    /// once it holds it.
    pub async fn trace(&self, trace_id: &str) -> Option<serde_json::Value> {
        let url = format!("{}/api/traces/{trace_id}", self.query);
        let answer = self.http.get(url).send().await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        let mut body: serde_json::Value = answer.json().await.ok()?;
        Some(body["data"][0].take()).filter(|t| t.is_object())
    }

    /// Every trace of `service` Jaeger holds, as its query API returns them.
    pub async fn traces_of(&self, service: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/api/traces?service={service}&lookback=1h&limit=1000", self.query);
        let answer = self.http.get(url).send().await.expect("Jaeger's query API");
        let body: serde_json::Value = answer.json().await.expect("JSON");
        body["data"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Jaeger's all-in-one configuration, cut down to what tests use: OTLP
/// over HTTP in, memory storage, the query API; nothing else listens.
fn config_yaml(otlp: u16, query: u16) -> String {
    format!(
        r"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memory
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
  jaeger_storage:
    backends:
      memory:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory
",
        grpc = free_port()
    )
}

/// A span of a trace, as the query API spells it.
pub struct Span<'a>(pub &'a serde_json::Value);

impl Span<'_> {
    /// Its operation name.
    pub fn name(&self) -> &str {
        self.0["operationName"].as_str().unwrap_or_default()
    }

    /// Its span id.
    pub fn id(&self) -> &str {
        self.0["spanID"].as_str().unwrap_or_default()
    }

    /// The span id of its parent, if any.
    pub fn parent(&self) -> Option<&str> {
        self.0["references"]
            .as_array()?
            .iter()
            .find(|r| r["refType"] == "CHILD_OF")?["spanID"]
            .as_str()
    }

    /// The value of its tag `key`.
    pub fn tag(&self, key: &str) -> Option<&serde_json::Value> {
        self.0["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| &t["value"])
    }
}

/// The spans of `trace`.
pub fn spans(trace: &serde_json::Value) -> Vec<Span<'_>> {
    trace["spans"]
        .as_array()
        .map(|s| s.iter().map(Span).collect())
        .unwrap_or_default()
}
