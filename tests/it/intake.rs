//! pendingjob-intake: the seed's API 1 over HTTP, with Kubernetes' own
//! authentication and authorization, idempotent, durable on 202.

use std::process::Command;
use std::time::Duration;

use pendingjob_operator::api::{PendingJob, Phase};
use serde_json::json;

use crate::destinations::{apply_json, destination};
use crate::jobs::{SOON, setup, wait_status};
use crate::processes::{MockApi2, Operator};
use crate::support::{TestEnv, kubectl, unique_name, wait_until};

/// A `pendingjob-intake` process on a free loopback port, killed (by PID)
/// on drop.
pub(crate) struct Intake {
    child: std::process::Child,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl Intake {
    /// Starts the intake as deploy/ runs it: with the token of its own
    /// ServiceAccount, and only the permissions deploy/base/intake.yaml gives it.
    pub(crate) async fn start(args: &[&str]) -> Self {
        Self::start_with(args, "http", reqwest::Client::new()).await
    }

    /// Like [`Intake::start`], called at `scheme`://127.0.0.1 with `http`.
    pub(crate) async fn start_with(args: &[&str], scheme: &str, http: reqwest::Client) -> Self {
        crate::deploy::install_deploy();
        let token = kubectl(&[
            "create",
            "token",
            "pendingjob-intake",
            "-n",
            "pendingjob-system",
            "--duration",
            "1h",
        ]);
        assert!(token.status.success(), "kubectl create token: {token:?}");
        let kubeconfig = crate::support::kubeconfig_file(Some(String::from_utf8_lossy(&token.stdout).trim()), None);
        let dir = std::env::temp_dir().join("pendingjob-it");
        std::fs::create_dir_all(&dir).expect("log directory");
        let log = dir.join(format!("{}.log", unique_name("intake")));
        let child = Command::new(env!("CARGO_BIN_EXE_pendingjob-intake"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(std::fs::File::create(&log).expect("log file"))
            .stdout(std::process::Stdio::null())
            .env("KUBECONFIG", &kubeconfig)
            .spawn()
            .expect("starting pendingjob-intake");
        let port = wait_until("the intake to listen", Duration::from_secs(10), || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let line = text.lines().find(|l| l.contains("intake listening"))?;
            crate::support::loopback_port(line)
        })
        .await;
        Self {
            child,
            base: format!("{scheme}://127.0.0.1:{port}"),
            http,
        }
    }

    /// Its resident memory now, in MiB.
    pub(crate) fn rss_mib(&self) -> f64 {
        crate::processes::rss_mib(self.child.id())
    }

    /// POSTs `body` as a job for `destination` in `namespace`; the status
    /// code and the JSON answer.
    pub(crate) async fn post(
        &self,
        namespace: &str,
        destination: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let url = format!(
            "{}/v1/namespaces/{namespace}/destinations/{destination}/jobs?path=/api2/simulate",
            self.base
        );
        let mut request = self.http.post(url).body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("POST to the intake");
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET from the intake");
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token for the intake's audience, of a ServiceAccount allowed to create
/// and get pendingjobs in the test namespace only.
pub(crate) async fn writer_token(env: &TestEnv) -> String {
    env.service_account_token("writer").await;
    let token = env.token_for_audience("writer", "pendingjob-intake").await;
    apply_json(
        env,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "job-writer"},
                "rules": [{"apiGroups": ["pendingjob.dev"], "resources": ["pendingjobs"], "verbs": ["create", "get"]}]}),
    );
    apply_json(
        env,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "job-writer"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "job-writer"},
                "subjects": [{"kind": "ServiceAccount", "name": "writer", "namespace": env.namespace}]}),
    );
    token
}

async fn job_names(env: &TestEnv) -> Vec<String> {
    let jobs = env.api::<PendingJob>().list(&Default::default()).await.expect("list");
    jobs.items.into_iter().filter_map(|j| j.metadata.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_reviewed_and_access_is_per_namespace() {
    let env = setup("intake-auth").await;
    let other = unique_name("intake-other");
    assert!(kubectl(&["create", "namespace", &other]).status.success());
    let token = writer_token(&env).await;
    let api2 = MockApi2::start(&[]);
    apply_json(&env, &destination("api2", json!({"url": api2.base})));
    let intake = Intake::start(&[]).await;

    let (code, body) = intake
        .post(&env.namespace, "api2", Some(&token), None, r#"{"name":"hello"}"#)
        .await;
    assert_eq!(code, 202, "{body}");
    let name = body["name"].as_str().expect("name").to_owned();
    let job = env.api::<PendingJob>().get(&name).await.expect("the job is stored");
    let creator = job.metadata.annotations.unwrap_or_default()["pendingjob.dev/created-by"].clone();
    assert_eq!(creator, format!("system:serviceaccount:{}:writer", env.namespace));
    let (code, state) = intake.get(body["status"].as_str().expect("status URL"), &token).await;
    assert_eq!((code, state["name"].as_str()), (200, Some(name.as_str())));

    let (code, body) = intake.post(&other, "api2", Some(&token), None, "{}").await;
    assert_eq!(code, 403, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains(&other), "{body}");
    let (code, body) = intake.post(&env.namespace, "api2", None, None, "{}").await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = intake.post(&env.namespace, "api2", Some("garbage"), None, "{}").await;
    assert_eq!(code, 401, "{body}");
    // The same account's token for the API server, replayable there: refused.
    let for_the_api_server = env
        .token_for_audience("writer", "https://kubernetes.default.svc.cluster.local")
        .await;
    let (code, body) = intake
        .post(&env.namespace, "api2", Some(&for_the_api_server), None, "{}")
        .await;
    assert_eq!(code, 401, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("--audience pendingjob-intake") && !error.contains(&for_the_api_server),
        "{body}"
    );
    assert_eq!(
        job_names(&env).await,
        vec![name],
        "only the allowed request stored a job"
    );
    // HTTP/2 without TLS (h2c, prior knowledge), beside HTTP/1.1.
    let h2c = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(format!("{}/healthz", intake.base))
        .output()
        .expect("running curl");
    assert_eq!(String::from_utf8_lossy(&h2c.stdout), "2 200", "{h2c:?}");
    let _ = kubectl(&["delete", "namespace", &other, "--wait=false"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_makes_one_job_and_bad_input_stores_nothing() {
    let env = setup("intake-input").await;
    let token = writer_token(&env).await;
    let api2 = MockApi2::start(&[]);
    apply_json(&env, &destination("api2", json!({"url": api2.base})));
    let intake = Intake::start(&[]).await;
    let ns = env.namespace.as_str();

    let (first, body) = intake
        .post(ns, "api2", Some(&token), Some("order-42"), r#"{"amount":1}"#)
        .await;
    let (again, same) = intake
        .post(ns, "api2", Some(&token), Some("order-42"), r#"{"amount":1}"#)
        .await;
    assert_eq!((first, again), (202, 200), "{body} {same}");
    assert_eq!(body, same, "a retry answers with the same job");
    let (code, conflict) = intake
        .post(ns, "api2", Some(&token), Some("order-42"), r#"{"amount":2}"#)
        .await;
    assert_eq!(code, 409, "{conflict}");
    assert!(
        conflict["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Idempotency-Key")
    );

    let big = format!(r#"{{"filler":"{}"}}"#, "x".repeat(140_000));
    let cases: [(&str, &str, u16, &str); 3] = [
        ("api2", "not json", 400, "not JSON"),
        ("api2", &big, 413, "limit"),
        ("missing", "{}", 404, "destination missing not found"),
    ];
    for (destination, body, want, says) in cases {
        let (code, answer) = intake.post(ns, destination, Some(&token), None, body).await;
        assert_eq!(code, want, "{answer}");
        assert!(answer["error"].as_str().unwrap_or_default().contains(says), "{answer}");
    }
    // The API server's own validation, passed through with the field named.
    let url = format!(
        "{}/v1/namespaces/{ns}/destinations/api2/jobs?path=no-slash",
        intake.base
    );
    let response = intake
        .http
        .post(url)
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 422);
    let answer: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.target.path"),
        "{answer}"
    );

    assert_eq!(job_names(&env).await.len(), 1, "only the first request stored a job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_accepted_before_sigkill_is_stored_and_delivered() {
    let env = setup("intake-durable").await;
    let token = writer_token(&env).await;
    let api2 = MockApi2::start(&["--fail-first", "1"]);
    apply_json(&env, &destination("api2", json!({"url": api2.base})));
    let _operator = Operator::start(&env.namespace, &[]);
    let intake = Intake::start(&[]).await;
    let (code, body) = intake
        .post(&env.namespace, "api2", Some(&token), None, r#"{"name":"hello"}"#)
        .await;
    assert_eq!(code, 202, "{body}");
    drop(intake); // SIGKILL, right after the 202
    let name = body["name"].as_str().expect("name");
    let done = wait_status(&env, name, "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    assert_eq!(done.attempts, 2, "retried like any job, then delivered");
    let uid = body["uid"].as_str().expect("uid");
    assert_eq!(api2.calls_for(uid).await, 2);
    let seen = api2.stats().await;
    assert_eq!(seen.unique_keys, 1);
}
