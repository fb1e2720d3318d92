//! What a Destination costs in reads: its Secrets are read when its jobs
//! need them (and kept 30 s), not once per job and not on a timer while
//! nothing calls.

use axum::http::StatusCode;
use pendingjob_operator::api::{PendingJob, Phase};
use serde_json::json;

use crate::destinations::{apply_json, destination, job_to, ready, secret};
use crate::jobs::{SOON, setup};
use crate::processes::Operator;
use crate::support::{http_get, metric, wait_until};
use crate::targets::Target;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_through_one_destination_read_its_secret_once() {
    let env = setup("credential-reads").await;
    let target = Target::start(StatusCode::OK).await;
    let operator = Operator::start(&env.namespace, &[]);
    let admin = operator.admin_url().await;
    let reads = || async {
        metric(
            &http_get(&format!("{admin}/metrics")).await.1,
            "pendingjob_credential_reads_total",
        )
    };
    apply_json(&env, &secret("token", "Opaque", json!({"token": "tok-SECRET-idle"})));
    apply_json(
        &env,
        &destination(
            "api",
            json!({"url": target.base, "auth": {"bearerToken": {"secretKeyRef": {"name": "token", "key": "token"}}}}),
        ),
    );
    wait_until("the Destination to be Ready", SOON, || async {
        ready(&env, "api").await.filter(|(status, ..)| status == "True")
    })
    .await;
    let before = reads().await;
    assert!(before >= 1.0, "the check read the Secret");
    for n in 0..20 {
        apply_json(&env, &job_to(&format!("call-{n}"), "api", "/x"));
    }
    wait_until("every job to be delivered", SOON, || async {
        let jobs = env.api::<PendingJob>().list(&Default::default()).await.ok()?;
        let done = jobs
            .items
            .iter()
            .filter(|j| j.status.as_ref().is_some_and(|s| s.phase == Phase::Succeeded));
        (done.count() == 20).then_some(())
    })
    .await;
    assert_eq!(target.seen().len(), 20);
    let during = reads().await - before;
    assert!(during <= 1.0, "20 calls read the Secret {during} more times");
}
