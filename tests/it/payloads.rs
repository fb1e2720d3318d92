//! What a call carries: the job's payload and headers, byte for byte the
//! same whether the payload comes from the operator's cache or from a read
//! of the job, and the payload of the job's current generation once it was
//! edited.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use kube::api::{Patch, PatchParams};
use pendingjob_operator::crd::{PendingJob, Phase};
use serde_json::{Value, json};

use crate::jobs::{SOON, job, setup, wait_status};
use crate::processes::Operator;
use crate::support::{kubectl_stdin, wait_until};

/// A request as the target saw it.
#[derive(Clone, Debug)]
struct Seen {
    body: Value,
    trace: Option<String>,
    key: Option<String>,
}

/// A real HTTP target on a free loopback port that records every request
/// and answers 503 until told to answer 200; it stops when dropped.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    healthy: Arc<Mutex<bool>>,
    server: tokio::task::JoinHandle<()>,
}

type Shared = (Arc<Mutex<Vec<Seen>>>, Arc<Mutex<bool>>);

async fn record(State((seen, healthy)): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    seen.lock().unwrap().push(Seen {
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
        trace: header("x-trace"),
        key: header("idempotency-key"),
    });
    if *healthy.lock().unwrap() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

impl Recorder {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address: SocketAddr = listener.local_addr().expect("address");
        let (seen, healthy) = (Arc::default(), Arc::new(Mutex::new(false)));
        let app = axum::Router::new()
            .route("/calls", axum::routing::post(record))
            .with_state((Arc::clone(&seen), Arc::clone(&healthy)));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            url: format!("http://{address}/calls"),
            seen,
            healthy,
            server,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The payload sent first, and the one it is edited to while the job retries
/// (by a merge patch, so the edit sets every key of the first).
fn payloads() -> (Value, Value) {
    let first = json!({"order": 17, "lines": [{"sku": "a-1", "qty": 2}], "note": "crème brûlée ✓", "more": {}});
    let second = json!({"order": 17, "lines": [], "note": "edited", "more": {"flags": [true, null, 1.5]}});
    (first, second)
}

async fn calls_carry_the_current_payload(budget_mib: &str) {
    let env = setup(&format!("payload-{budget_mib}")).await;
    let target = Recorder::start().await;
    let _operator = Operator::start(&env.namespace, &["--payload-cache-mib", budget_mib]);
    let (first, second) = payloads();
    let manifest = json!({
        "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
        "metadata": {"name": "order"},
        "spec": {
            "target": {"url": target.url, "headers": {"X-Trace": "trace-17"}},
            "payload": first,
            "retryPolicy": {"initialDelaySeconds": 1, "maxDelaySeconds": 1},
        },
    });
    let applied = kubectl_stdin(
        &["apply", "--namespace", &env.namespace, "-f", "-"],
        &serde_json::to_string(&manifest).expect("json"),
    );
    assert!(applied.status.success(), "kubectl apply: {applied:?}");
    let uid = job(&env, "order").await.metadata.uid.expect("uid");
    wait_status(&env, "order", "a first failed attempt", SOON, |s| s.attempts >= 1).await;

    let edit = json!({"spec": {"payload": second}});
    env.api::<PendingJob>()
        .patch("order", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("editing the payload");

    wait_until("a call with the edited payload", SOON, || async {
        target.seen().iter().any(|s| s.body == second).then_some(())
    })
    .await;
    *target.healthy.lock().unwrap() = true;
    let done = wait_status(&env, "order", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;

    let seen = target.seen();
    assert_eq!(
        seen.len(),
        usize::try_from(done.attempts).expect("attempts"),
        "one call per attempt: {seen:?}"
    );
    assert_eq!(seen[0].body, first, "the first call carries the payload as applied");
    let edited_from = seen.iter().position(|s| s.body == second).expect("an edited call");
    for (n, call) in seen.iter().enumerate() {
        let expected = if n < edited_from { &first } else { &second };
        assert_eq!(
            &call.body, expected,
            "call {n}: once edited, every call carries the edit"
        );
        assert_eq!(
            call.trace.as_deref(),
            Some("trace-17"),
            "call {n} carries the job's headers"
        );
        assert_eq!(
            call.key.as_deref(),
            Some(uid.as_str()),
            "call {n} carries the idempotency key"
        );
    }
}

#[tokio::test]
async fn calls_from_the_cache_carry_the_current_payload_and_headers() {
    calls_carry_the_current_payload("32").await;
}

#[tokio::test]
async fn calls_whose_payload_is_read_carry_the_same() {
    // A budget of 0 keeps no payload in memory: each one is read before its call.
    calls_carry_the_current_payload("0").await;
}
