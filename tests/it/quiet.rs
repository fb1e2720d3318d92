//! A large install at rest costs nothing, and its finished jobs still work
//! from the compact store: 2,000 jobs (finished, failed and scheduled an
//! hour ahead) and 200 Destinations with a Secret each. Properties only;
//! `make bench`'s scale section measures the costs at 100,000. Jobs that
//! wait are kept apart from the controller's cache, and still called on
//! time.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::ListParams;
use pendingjob_operator::api::{Destination, PendingJob, Phase};
use serde_json::{Value, json};

use crate::jobs::{SOON, setup};
use crate::processes::{MockApi2, Operator};
use crate::support::{TestEnv, http_get, kubectl_stdin, metric, wait_until};
use crate::targets::Target;

const DELIVERED: usize = 1_600;
const FAILED: usize = 200;
const SCHEDULED: usize = 200;
const DESTINATIONS: usize = 200;
/// How long the install is watched at rest.
const QUIET: Duration = Duration::from_secs(20);

/// The operator's metrics, as text.
async fn scrape(operator: &Operator) -> String {
    http_get(&format!("{}/metrics", operator.admin_url().await)).await.1
}

/// Creates `items` in `env`'s namespace, 250 to a `kubectl create`.
fn create(env: &TestEnv, items: Vec<Value>) {
    for chunk in items.chunks(250) {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": chunk});
        let out = kubectl_stdin(&["create", "--namespace", &env.namespace, "-f", "-"], &list.to_string());
        assert!(out.status.success(), "{out:?}");
    }
}

fn job(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob", "metadata": {"name": name}, "spec": spec})
}

fn token_secret(n: usize, token: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("token-{n}")},
           "stringData": {"token": token}})
}

/// Every job's and Destination's resourceVersion, and the Events, in `env`.
async fn written(env: &TestEnv) -> (BTreeMap<String, String>, usize) {
    let mut versions = BTreeMap::new();
    for job in env
        .api::<PendingJob>()
        .list(&ListParams::default())
        .await
        .expect("jobs")
    {
        versions.insert(
            format!("job {}", job.name_any()),
            job.resource_version().unwrap_or_default(),
        );
    }
    for destination in env
        .api::<Destination>()
        .list(&ListParams::default())
        .await
        .expect("destinations")
    {
        versions.insert(
            format!("destination {}", destination.name_any()),
            destination.resource_version().unwrap_or_default(),
        );
    }
    let events = env.api::<Event>().list(&ListParams::default()).await.expect("events");
    (versions, events.items.len())
}

async fn phases(env: &TestEnv) -> BTreeMap<Phase, usize> {
    let mut count = BTreeMap::new();
    for job in env
        .api::<PendingJob>()
        .list(&ListParams::default())
        .await
        .expect("jobs")
    {
        *count
            .entry(job.status.map(|s| s.phase).unwrap_or_default())
            .or_default() += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_install_at_rest_writes_nothing_and_its_finished_jobs_still_work() {
    let env = setup("quiet").await;
    let api2 = MockApi2::start(&[]);
    let refusing = MockApi2::start(&["--fail", "--fail-status", "400"]);
    let partner = Target::start(StatusCode::OK).await;
    let args = ["--max-concurrent-dispatches", "32", "--max-concurrent-per-target", "32"];
    let operator = Operator::start(&env.namespace, &args);

    create(
        &env,
        (0..DESTINATIONS)
            .map(|n| token_secret(n, &format!("tok-{n}-old")))
            .collect(),
    );
    let destinations = (0..DESTINATIONS).map(|n| {
        json!({"apiVersion": "pendingjob.dev/v1alpha1", "kind": "Destination", "metadata": {"name": format!("partner-{n}")},
               "spec": {"url": partner.base,
                        "auth": {"bearerToken": {"secretKeyRef": {"name": format!("token-{n}"), "key": "token"}}}}})
    });
    create(&env, destinations.collect());
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let jobs = (0..DELIVERED)
        .map(|n| job(&format!("done-{n}"), json!({"target": {"url": api2.simulate_url()}, "payload": {"n": n}})))
        .chain((0..FAILED).map(|n| {
            job(
                &format!("failed-{n}"),
                json!({"target": {"url": refusing.simulate_url()}, "payload": {"n": n}, "retryPolicy": {"maxAttempts": 1}}),
            )
        }))
        .chain((0..SCHEDULED).map(|n| {
            job(
                &format!("later-{n}"),
                json!({"target": {"url": api2.simulate_url()}, "payload": {"n": n}, "notBefore": later}),
            )
        }));
    create(&env, jobs.collect());
    // Due after the lead with which a kept job goes back to the cache,
    // counted from its own create: the batch above may take longer than
    // that lead on a busy machine.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    create(
        &env,
        vec![job(
            "soon-0",
            json!({"target": {"url": api2.simulate_url()}, "payload": {"n": 0}, "notBefore": soon.to_string()}),
        )],
    );

    let expected = BTreeMap::from([
        (Phase::Pending, SCHEDULED + 1),
        (Phase::Succeeded, DELIVERED),
        (Phase::Failed, FAILED),
    ]);
    wait_until("every job to finish or be scheduled", SOON * 4, || async {
        (phases(&env).await == expected).then_some(())
    })
    .await;
    wait_until("every Destination to be Ready", SOON * 4, || async {
        let list = env.api::<Destination>().list(&ListParams::default()).await.ok()?;
        let ready = list.items.iter().filter(|d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        (ready.count() == DESTINATIONS).then_some(())
    })
    .await;
    // The scheduled jobs' one write each, and any write still under way, land first.
    let deadline = std::time::Instant::now() + SOON;
    let mut before = written(&env).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = written(&env).await;
        if now == before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "writes went on for {SOON:?}");
        before = now;
    }

    // At rest: no writes, no calls, no Secret reads, and finished jobs kept compact.
    let (calls, reads) = (
        api2.stats().await.total_requests,
        metric(&scrape(&operator).await, "pendingjob_credential_reads_total"),
    );
    tokio::time::sleep(QUIET).await;
    let after = written(&env).await;
    let changed: Vec<_> = after
        .0
        .iter()
        .filter(|(k, v)| before.0.get(*k) != Some(*v))
        .take(5)
        .collect();
    assert!(changed.is_empty(), "written at rest: {changed:?}");
    assert_eq!(after.1, before.1, "Events recorded at rest");
    assert_eq!(api2.stats().await.total_requests, calls, "calls at rest");
    let text = scrape(&operator).await;
    assert_eq!(
        metric(&text, "pendingjob_credential_reads_total"),
        reads,
        "Secret reads for Destinations nothing calls"
    );
    let kept = operator.log_lines("", "decision=Kept");
    assert!(kept >= DELIVERED + FAILED, "{kept} finished jobs kept compact");
    let succeeded = format!("pendingjob_jobs{{namespace=\"{}\",phase=\"Succeeded\"}}", env.namespace);
    assert_eq!(
        metric(&text, &succeeded),
        DELIVERED as f64,
        "the gauges count kept jobs"
    );
    let parked = operator.log_lines("later-", "decision=Parked");
    assert!(parked >= SCHEDULED, "{parked} scheduled jobs kept apart");
    assert!(
        operator.log_lines("soon-0", "decision=Parked") >= 1,
        "a job due in a minute kept apart"
    );
    let pending = format!("pendingjob_jobs{{namespace=\"{}\",phase=\"Pending\"}}", env.namespace);
    assert_eq!(
        metric(&text, &pending),
        (SCHEDULED + 1) as f64,
        "the gauges count jobs kept apart"
    );

    // A restart (a new leader) reads no Secret for Destinations shown Ready
    // and idle: they are not checked again until a job needs them.
    operator.kill();
    let operator = Operator::start(&env.namespace, &args);
    wait_until("every Destination to be looked at", SOON, || async {
        (operator.log_lines("partner-", "shown Ready and idle: not checked") == DESTINATIONS).then_some(())
    })
    .await;
    assert_eq!(
        metric(&scrape(&operator).await, "pendingjob_credential_reads_total"),
        0.0,
        "Secret reads at start for Destinations nothing calls"
    );
    // The list puts jobs that wait straight into their store: the
    // controller never sees them.
    wait_until("the scheduled jobs to be kept apart", SOON, || async {
        (operator.log_lines("later-", "decision=Parked") >= SCHEDULED).then_some(())
    })
    .await;
    assert_eq!(operator.log_lines("later-", "decided"), 0, "jobs kept apart reconciled");

    // A redrive of kept Failed jobs calls them again.
    refusing.toggle().await;
    let out = env.kubectl(&[
        "annotate",
        "pendingjobs",
        "failed-0",
        "failed-1",
        "pendingjob.dev/retry=1",
    ]);
    assert!(out.status.success(), "{out:?}");
    for name in ["failed-0", "failed-1"] {
        crate::jobs::wait_status(&env, name, "Succeeded after a redrive", SOON, |s| {
            s.phase == Phase::Succeeded && s.attempts == 2
        })
        .await;
    }

    // A rotated Secret is used once a job needs it (values are kept 30 s).
    let rotated = token_secret(0, "tok-0-new");
    let out = kubectl_stdin(
        &["apply", "--namespace", &env.namespace, "-f", "-"],
        &rotated.to_string(),
    );
    assert!(out.status.success(), "{out:?}");
    let mut sent = 0;
    wait_until("a call with the rotated token", SOON * 2, || {
        sent += 1;
        create(
            &env,
            vec![job(
                &format!("rotated-{sent}"),
                json!({"destinationRef": {"name": "partner-0"}, "target": {"path": "/x"}}),
            )],
        );
        let partner = &partner;
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            partner
                .seen()
                .iter()
                .any(|s| s.header("authorization").as_deref() == Some("Bearer tok-0-new"))
                .then_some(())
        }
    })
    .await;

    // Kept jobs are deleted when their time to live is up.
    let deletions = metric(&scrape(&operator).await, "pendingjob_ttl_deletions_total");
    create(
        &env,
        (0..20)
            .map(|n| {
                job(
                    &format!("short-{n}"),
                    json!({"target": {"url": api2.simulate_url()}, "ttlSecondsAfterFinished": 2}),
                )
            })
            .collect(),
    );
    wait_until("the short-lived jobs to be kept, then deleted", SOON, || async {
        let list = env.api::<PendingJob>().list(&ListParams::default()).await.ok()?;
        let left = list.items.iter().filter(|j| j.name_any().starts_with("short-")).count();
        (left == 0 && operator.log_lines("short-", "decision=Kept") >= 20).then_some(())
    })
    .await;
    let text = scrape(&operator).await;
    assert_eq!(metric(&text, "pendingjob_ttl_deletions_total") - deletions, 20.0);

    // The job kept apart went back before it was due, and was called on time.
    let called = crate::jobs::wait_status(&env, "soon-0", "called at its notBefore", SOON * 4, |s| {
        s.phase == Phase::Succeeded
    })
    .await;
    let at = called.last_attempt_time.expect("an attempt time").0;
    assert!(at >= soon, "called at {at}, before its notBefore {soon}");
    assert_eq!(called.attempts, 1);
}
