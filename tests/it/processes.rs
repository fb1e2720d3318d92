//! The built binaries as child processes of a test: `mock-api2` and
//! `pendingjob-operator`, each stopped by PID when dropped.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{POLL_INTERVAL, unique_name, wait_until};

/// A `mock-api2` process on a free loopback port, killed (by PID) on drop.
pub struct MockApi2 {
    child: std::process::Child,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub base: String,
    http: reqwest::Client,
}

/// The `mock-api2` binary, built beside this test binary by `cargo build`
/// (a crate of its own, so Cargo gives its path to its own tests only).
fn mock_api2_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/it-<hash> -> target/<profile>/mock-api2
    let binary = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|profile| profile.join("mock-api2"))
        .expect("the test binary lives in target/<profile>/deps");
    assert!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build --bins` (make test does)",
        binary.display()
    );
    binary
}

impl MockApi2 {
    /// Starts the built `mock-api2` binary with extra `args`.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, reqwest::Client::new())
    }

    /// Like [`MockApi2::start`], read by the test through `http` (which trusts
    /// its CA, and has its client certificate, when it serves HTTPS).
    pub fn start_with(args: &[&str], http: reqwest::Client) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(mock_api2_binary())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting mock-api2");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("reading mock-api2's first line");
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("mock-api2 did not report its address: {line:?}"))
            .to_owned();
        Self { child, base, http }
    }

    /// `POST` to `path` on the mock, which must answer with success.
    pub async fn post(&self, path: &str) {
        self.http
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    }

    /// The URL jobs should call.
    pub fn simulate_url(&self) -> String {
        format!("{}/api2/simulate", self.base)
    }

    /// Sends `request` to API 2 and decodes its JSON answer.
    async fn json<T: serde::de::DeserializeOwned>(&self, request: reqwest::RequestBuilder, what: &str) -> T {
        request
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// `GET /api2/stats`.
    pub async fn stats(&self) -> mock_api2::Stats {
        self.json(self.http.get(format!("{}/api2/stats", self.base)), "GET /api2/stats")
            .await
    }

    /// Calls made with idempotency key `key`.
    pub async fn calls_for(&self, key: &str) -> u64 {
        self.stats().await.per_key.get(key).copied().unwrap_or(0)
    }

    /// Arrival times (ms since the epoch) of the calls made with `key`.
    pub async fn arrivals_for(&self, key: &str) -> Vec<i64> {
        let stats = self.stats().await;
        stats
            .requests
            .iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .map(|r| r.at_ms)
            .collect()
    }

    /// `POST /api2/toggle`; returns the new failure mode.
    pub async fn toggle(&self) -> bool {
        let answer: serde_json::Value = self
            .json(
                self.http.post(format!("{}/api2/toggle", self.base)),
                "POST /api2/toggle",
            )
            .await;
        answer["fail"].as_bool().expect("toggle answers {\"fail\": bool}")
    }
}

impl Drop for MockApi2 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `pendingjob-operator` process watching one namespace, killed (by PID) on
/// drop. Its log (with `decided` lines at debug) goes to a file.
pub struct Operator {
    child: std::process::Child,
    /// Where its stderr goes.
    pub log: std::path::PathBuf,
}

impl Operator {
    /// Starts the built operator for `namespace` with extra `args`.
    pub fn start(namespace: &str, args: &[&str]) -> Self {
        Self::start_with_kubeconfig(namespace, args, None)
    }

    /// Starts the built operator for every namespace, as it is deployed:
    /// for a test that runs [`TestEnv::alone`](crate::support::TestEnv::alone),
    /// since it also calls the jobs earlier tests left behind.
    pub fn start_cluster_wide(args: &[&str]) -> Self {
        Self::spawn(
            &[&["run", "--admin-listen", "127.0.0.1:0"], args].concat(),
            "cluster-wide",
            None,
        )
    }

    /// Like [`Operator::start`], with another kubeconfig than the tests' own.
    pub fn start_with_kubeconfig(namespace: &str, args: &[&str], kubeconfig: Option<&std::path::Path>) -> Self {
        let base = ["run", "--namespace", namespace, "--admin-listen", "127.0.0.1:0"];
        Self::spawn(&[&base, args].concat(), namespace, kubeconfig)
    }

    /// Like [`Operator::start`], with variables `env` set for it.
    pub fn start_with_env(namespace: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let base = ["run", "--namespace", namespace, "--admin-listen", "127.0.0.1:0"];
        Self::spawn_with(&[&base, args].concat(), namespace, None, env)
    }

    fn spawn(args: &[&str], name: &str, kubeconfig: Option<&std::path::Path>) -> Self {
        Self::spawn_with(args, name, kubeconfig, &[])
    }

    fn spawn_with(args: &[&str], name: &str, kubeconfig: Option<&std::path::Path>, env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join("pendingjob-it");
        std::fs::create_dir_all(&dir).expect("creating the log directory");
        let log = dir.join(format!("{}.log", unique_name(name)));
        let file = std::fs::File::create(&log).expect("creating the operator log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_pendingjob-operator"));
        command
            .args(args)
            .env("RUST_LOG", "info,pendingjob_operator=debug")
            .stdout(std::process::Stdio::null())
            .stderr(file);
        if let Some(kubeconfig) = kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        command.envs(env.iter().copied());
        let child = command.spawn().expect("starting pendingjob-operator");
        Self { child, log }
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }

    /// Base URL of its admin server (`/healthz`, `/readyz`, `/metrics`), from its log.
    pub async fn admin_url(&self) -> String {
        wait_until(
            "the operator's admin server address",
            Duration::from_secs(10),
            || async {
                // `address=127.0.0.1:N` in text logs, `"address":"127.0.0.1:N"` in JSON.
                let log = self.log_text();
                let line = log.lines().find(|l| l.contains("admin server listening"))?;
                let port = crate::support::loopback_port(line)?;
                Some(format!("http://127.0.0.1:{port}"))
            },
        )
        .await
    }

    /// Sends SIGTERM (by PID), as Kubernetes does to stop a pod.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends signal `name` (`STOP`, `CONT`, `TERM`…) by PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit; returns how long that took.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(
                start.elapsed() < timeout,
                "the operator did not exit within {timeout:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        start.elapsed()
    }

    /// Lines of the log that mention job `name` and contain `needle`.
    pub fn log_lines(&self, name: &str, needle: &str) -> usize {
        let name = format!("name={name}");
        self.log_text()
            .lines()
            .filter(|l| l.contains(&name) && l.contains(needle))
            .count()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident memory of process `pid` now, in MiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_mib(pid: u32) -> f64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {path}"));
    kib / 1024.0
}
