//! What a call carries: the job's payload and headers, byte for byte the
//! same whether the payload comes from the operator's cache or from a read
//! of the job, and the payload of the job's current generation once it was
//! edited.

use axum::http::StatusCode;
use kube::api::{Patch, PatchParams};
use pendingjob_operator::api::{PendingJob, Phase};
use serde_json::{Value, json};

use crate::jobs::{SOON, job, setup, wait_status};
use crate::processes::Operator;
use crate::support::{kubectl_stdin, wait_until};
use crate::targets::Target;

/// The payload sent first, and the one it is edited to while the job retries
/// (by a merge patch, so the edit sets every key of the first).
fn payloads() -> (Value, Value) {
    let first = json!({"order": 17, "lines": [{"sku": "a-1", "qty": 2}], "note": "crème brûlée ✓", "more": {}});
    let second = json!({"order": 17, "lines": [], "note": "edited", "more": {"flags": [true, null, 1.5]}});
    (first, second)
}

async fn calls_carry_the_current_payload(budget_mib: &str) {
    let env = setup(&format!("payload-{budget_mib}")).await;
    let target = Target::start(StatusCode::SERVICE_UNAVAILABLE).await;
    let url = format!("{}/calls", target.base);
    let _operator = Operator::start(&env.namespace, &["--payload-cache-mib", budget_mib]);
    let (first, second) = payloads();
    let manifest = json!({
        "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
        "metadata": {"name": "order"},
        "spec": {
            "target": {"url": url, "headers": {"X-Trace": "trace-17"}},
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
    target.answer(StatusCode::OK);
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
            call.header("x-trace").as_deref(),
            Some("trace-17"),
            "call {n} carries the job's headers"
        );
        assert_eq!(
            call.header("idempotency-key").as_deref(),
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
