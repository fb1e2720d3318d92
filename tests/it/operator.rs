//! The operator end to end: the built binaries (`pendingjob-operator`,
//! `mock-api2`) and `kubectl`, driven the way a user drives them, against the
//! real control plane.

use std::time::Duration;

use futures::TryStreamExt;
use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use pendingjob_operator::api::{PendingJob, Phase};

use crate::jobs::{SOON, apply, job_yaml, setup, status, wait_status};
use crate::processes::{MockApi2, Operator};
use crate::support::{kubectl_stdin, wait_until};

/// Intervals between consecutive arrivals, in seconds.
fn intervals(arrivals: &[i64]) -> Vec<f64> {
    arrivals.windows(2).map(|w| (w[1] - w[0]) as f64 / 1000.0).collect()
}

/// An interval between two arrivals that should be `delay` seconds: the delay
/// runs from the end of an attempt, so add the attempt's duration and the
/// operator's reaction time, which stay well under a second here.
fn assert_delay(got: f64, delay: f64, context: &str) {
    assert!(
        got >= delay - 0.01 && got <= delay + 0.75,
        "{context}: expected a delay of {delay}s, got {got:.3}s"
    );
}

#[tokio::test]
async fn seed_scenario_backs_off_2_4_8_then_succeeds_once_api2_is_back() {
    let env = setup("seed").await;
    let api2 = MockApi2::start(&["--fail"]);
    let _operator = Operator::start(&env.namespace, &[]);

    // The seed's job, from examples/, pointed at this test's API 2.
    let example =
        std::fs::read_to_string(crate::support::repo_path("examples/hello.yaml")).expect("examples/hello.yaml");
    let manifest = example.replace("http://127.0.0.1:8080/api2/simulate", &api2.simulate_url());
    let uid = apply(&env, &manifest).await;

    let retrying = wait_status(&env, "hello", "3 failed attempts", SOON, |s| s.attempts >= 3).await;
    assert_eq!(retrying.phase, Phase::Retrying);
    assert_eq!(retrying.retry_count, 3);
    assert_eq!(retrying.last_status_code, Some(503));
    let arrivals = api2.arrivals_for(&uid).await;
    let gaps = intervals(&arrivals);
    assert_delay(gaps[0], 2.0, "after the first failure");
    assert_delay(gaps[1], 4.0, "after the second failure");

    // `kubectl get pendingjobs` shows the schedule readably while waiting.
    let table = env.kubectl(&["get", "pendingjobs", "hello"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let header = table.lines().next().unwrap_or_default();
    for column in ["PHASE", "ATTEMPTS", "RETRIES", "NEXT RETRY", "LAST CODE", "AGE"] {
        assert!(header.contains(column), "column {column} missing:\n{table}");
    }
    assert!(!table.contains("<invalid>"), "NEXT RETRY must read well:\n{table}");
    let due = retrying
        .next_retry_time
        .clone()
        .expect("nextRetryTime while retrying")
        .0;
    assert!(
        table.contains(&due.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        "{table}"
    );

    assert!(!api2.toggle().await, "API 2 is back");
    let waited = env.kubectl(&["wait", "--for=condition=Succeeded", "pendingjob/hello", "--timeout=60s"]);
    assert!(waited.status.success(), "kubectl wait: {waited:?}");

    let done = status(&env, "hello").await;
    assert_eq!(done.phase, Phase::Succeeded);
    assert_eq!(done.last_status_code, Some(200));
    assert!(done.completion_time.is_some());
    assert!(done.next_retry_time.is_none());
    let arrivals = api2.arrivals_for(&uid).await;
    assert_eq!(arrivals.len() as i32, done.attempts, "one call per recorded attempt");
    assert_delay(intervals(&arrivals)[2], 8.0, "after the third failure");
    assert_eq!(api2.calls_for(&uid).await, done.attempts as u64);
}

#[tokio::test]
async fn first_attempt_starts_within_a_second_of_apply() {
    let env = setup("prompt").await;
    let api2 = MockApi2::start(&[]);
    let _operator = Operator::start(&env.namespace, &[]);
    // Warm up: the operator has started and watches once it delivers a job.
    apply(
        &env,
        &job_yaml("warm-up", &api2.simulate_url(), "initialDelaySeconds: 1"),
    )
    .await;
    wait_status(&env, "warm-up", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;

    let before_apply = Timestamp::now().as_millisecond();
    let uid = apply(
        &env,
        &job_yaml("prompt", &api2.simulate_url(), "initialDelaySeconds: 1"),
    )
    .await;
    wait_status(&env, "prompt", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    let first = api2.arrivals_for(&uid).await[0];
    let latency_ms = first - before_apply;
    assert!(
        latency_ms < 1000,
        "first attempt came {latency_ms} ms after kubectl apply started"
    );
}

#[tokio::test]
async fn delays_grow_to_the_cap_and_stay_there() {
    let env = setup("cap").await;
    let api2 = MockApi2::start(&["--fail"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let policy = "initialDelaySeconds: 1\n    multiplier: 2\n    maxDelaySeconds: 4";
    let uid = apply(&env, &job_yaml("cap", &api2.simulate_url(), policy)).await;

    wait_status(&env, "cap", "6 attempts", Duration::from_secs(60), |s| s.attempts >= 6).await;
    let gaps = intervals(&api2.arrivals_for(&uid).await);
    for (gap, want) in gaps.iter().zip([1.0, 2.0, 4.0, 4.0, 4.0]) {
        assert_delay(*gap, want, &format!("gaps {gaps:?}"));
    }
}

#[tokio::test]
async fn sigkill_mid_backoff_neither_resets_nor_hastens_the_schedule() {
    let env = setup("restart").await;
    let api2 = MockApi2::start(&["--fail"]);
    let operator = Operator::start(&env.namespace, &[]);
    let policy = "initialDelaySeconds: 2\n    multiplier: 2\n    maxDelaySeconds: 60";
    let uid = apply(&env, &job_yaml("restart", &api2.simulate_url(), policy)).await;

    // Two failures recorded: the third attempt is due 4 s after the second.
    let before = wait_status(&env, "restart", "2 attempts", SOON, |s| s.attempts == 2).await;
    operator.kill();
    let due_ms = before.next_retry_time.clone().expect("scheduled").0.as_millisecond();
    let _operator = Operator::start(&env.namespace, &[]);

    let after = wait_status(&env, "restart", "the third attempt", SOON, |s| s.attempts == 3).await;
    let arrivals = api2.arrivals_for(&uid).await;
    assert_eq!(arrivals.len(), 3, "no extra call on restart: {arrivals:?}");
    assert!(
        arrivals[2] >= due_ms,
        "retried {} ms before nextRetryTime",
        due_ms - arrivals[2]
    );
    assert_eq!(after.retry_count, 3, "retryCount continues from status");
    let next = after.next_retry_time.expect("scheduled").0;
    let last = after.last_attempt_time.expect("recorded").0;
    let delay = last.duration_until(next).as_secs_f64();
    assert!(
        (8.0..=8.5).contains(&delay),
        "third failure waits 8 s (not 2 s as after a reset), got {delay}"
    );
}

#[tokio::test]
async fn a_404_fails_the_job_after_one_attempt() {
    let env = setup("not-found").await;
    let api2 = MockApi2::start(&["--fail", "--fail-status", "404"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let uid = apply(&env, &job_yaml("gone", &api2.simulate_url(), "initialDelaySeconds: 1")).await;

    let waited = env.kubectl(&["wait", "--for=condition=Failed", "pendingjob/gone", "--timeout=30s"]);
    assert!(waited.status.success(), "kubectl wait: {waited:?}");
    let failed = status(&env, "gone").await;
    assert_eq!(
        (failed.phase, failed.attempts, failed.retry_count),
        (Phase::Failed, 1, 0)
    );
    assert_eq!(failed.last_status_code, Some(404));
    let condition = failed
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .expect("Failed condition");
    assert_eq!(condition.reason, "Rejected");
    assert!(condition.message.contains("404"), "{}", condition.message);
    assert_eq!(api2.calls_for(&uid).await, 1);
}

#[tokio::test]
async fn max_attempts_gives_up_with_failed() {
    let env = setup("give-up").await;
    let api2 = MockApi2::start(&["--fail"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let policy = "initialDelaySeconds: 1\n    maxAttempts: 3";
    let uid = apply(&env, &job_yaml("give-up", &api2.simulate_url(), policy)).await;

    let failed = wait_status(&env, "give-up", "Failed", SOON, |s| s.phase == Phase::Failed).await;
    assert_eq!(failed.attempts, 3);
    let condition = failed
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .expect("Failed condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "MaxAttemptsReached")
    );
    assert!(failed.next_retry_time.is_none());
    assert_eq!(api2.calls_for(&uid).await, 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let env = setup("retry-after").await;
    let api2 = MockApi2::start(&["--fail-first", "1", "--retry-after", "3"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let uid = apply(
        &env,
        &job_yaml("polite", &api2.simulate_url(), "initialDelaySeconds: 1"),
    )
    .await;

    wait_status(&env, "polite", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    let gaps = intervals(&api2.arrivals_for(&uid).await);
    assert_eq!(gaps.len(), 1);
    assert_delay(gaps[0], 3.0, "Retry-After: 3 overrides the 1 s backoff");
}

#[tokio::test]
async fn a_refused_connection_is_retried_with_last_error() {
    let env = setup("refused").await;
    let _operator = Operator::start(&env.namespace, &[]);
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/api2/simulate");
    apply(&env, &job_yaml("refused", &url, "initialDelaySeconds: 1")).await;

    let retrying = wait_status(&env, "refused", "2 attempts", SOON, |s| s.attempts >= 2).await;
    assert_eq!(retrying.phase, Phase::Retrying);
    assert_eq!(retrying.last_status_code, None);
    let error = retrying.last_error.expect("lastError").to_lowercase();
    assert!(error.contains("refused"), "lastError names the refusal: {error}");
}

#[tokio::test]
async fn deleting_a_job_stops_its_calls() {
    let env = setup("delete").await;
    let api2 = MockApi2::start(&["--fail"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let policy = "initialDelaySeconds: 1\n    multiplier: 1";
    let doomed = apply(&env, &job_yaml("doomed", &api2.simulate_url(), policy)).await;
    wait_status(&env, "doomed", "2 attempts", SOON, |s| s.attempts >= 2).await;

    env.api::<PendingJob>()
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete");
    let calls_at_delete = api2.calls_for(&doomed).await;
    // A sentinel on the same 1 s schedule: by its third attempt, the deleted
    // job would have been due at least twice.
    apply(&env, &job_yaml("sentinel", &api2.simulate_url(), policy)).await;
    wait_status(&env, "sentinel", "3 attempts", SOON, |s| s.attempts >= 3).await;
    let after = api2.calls_for(&doomed).await;
    // One call may have been in flight when the delete landed.
    assert!(
        after <= calls_at_delete + 1,
        "deleted job still called: {calls_at_delete} -> {after}"
    );
    let settled = api2.calls_for(&doomed).await;
    wait_status(&env, "sentinel", "2 more attempts", SOON, |s| s.attempts >= 5).await;
    assert_eq!(
        api2.calls_for(&doomed).await,
        settled,
        "no calls after deletion settled"
    );
}

#[tokio::test]
async fn our_own_status_write_causes_no_extra_call_or_write() {
    let env = setup("quiet").await;
    let api2 = MockApi2::start(&["--fail"]);
    let operator = Operator::start(&env.namespace, &[]);
    let api = env.api::<PendingJob>();
    let watch_config = watcher::Config::default().fields("metadata.name=quiet");
    // Every change of the object, from creation on.
    let mut versions = Box::pin(watcher(api.clone(), watch_config).applied_objects());
    let policy = "initialDelaySeconds: 1\n    multiplier: 2";
    let uid = apply(&env, &job_yaml("quiet", &api2.simulate_url(), policy)).await;

    let mut seen = Vec::new();
    let mut status_after_each = Vec::new();
    tokio::time::timeout(SOON, async {
        while let Some(job) = versions.try_next().await.expect("watch") {
            let rv = job.metadata.resource_version.clone().expect("resourceVersion");
            if seen.last() != Some(&rv) {
                seen.push(rv);
                status_after_each.push(job.status.clone().unwrap_or_default().attempts);
            }
            if job.status.as_ref().is_some_and(|s| s.attempts >= 4) {
                break;
            }
        }
    })
    .await
    .expect("4 attempts within 30 s");
    // Exactly one object version per attempt (the watch may start after the
    // creation or the first attempt): 0 or 1, then 2, 3, 4.
    let first = status_after_each[0];
    assert!(first <= 1, "{status_after_each:?}");
    assert_eq!(
        status_after_each,
        (first..=4).collect::<Vec<_>>(),
        "object versions: {seen:?}"
    );
    assert_eq!(api2.calls_for(&uid).await, 4);
    // The status writes did wake the reconciler, which then wrote nothing.
    assert!(operator.log_lines("quiet", "Wait(") >= 3, "{}", operator.log_text());
    // One Event for the whole run of failures, not one per attempt.
    let events = env.api::<Event>().list(&Default::default()).await.expect("list Events");
    let reasons: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("quiet"))
        .map(|e| (e.reason.clone().unwrap_or_default(), e.series.is_some()))
        .collect();
    assert_eq!(reasons, [("AttemptFailed".to_owned(), false)]);
}

#[tokio::test]
async fn a_finished_job_is_never_called_again() {
    let env = setup("finished").await;
    let api2 = MockApi2::start(&["--fail-first", "1"]);
    let operator = Operator::start(&env.namespace, &[]);
    let uid = apply(&env, &job_yaml("done", &api2.simulate_url(), "initialDelaySeconds: 1")).await;
    let done = wait_status(&env, "done", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    assert_eq!(api2.calls_for(&uid).await, done.attempts as u64);

    // Wake the job with an unrelated change, and once more from a restart.
    let idle_before = operator.log_lines("done", "decision=Kept");
    let patch = serde_json::json!({"metadata": {"annotations": {"example.com/poke": "1"}}});
    env.api::<PendingJob>()
        .patch("done", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    wait_until("the poke to be reconciled", SOON, || async {
        (operator.log_lines("done", "decision=Kept") > idle_before).then_some(())
    })
    .await;
    operator.kill();
    let restarted = Operator::start(&env.namespace, &[]);
    wait_until("the restarted operator to see the job", SOON, || async {
        (restarted.log_lines("done", "decision=Kept") >= 1).then_some(())
    })
    .await;
    assert_eq!(
        api2.calls_for(&uid).await,
        done.attempts as u64,
        "no call after success"
    );
    assert_eq!(status(&env, "done").await, done, "no status write after success");
}

#[tokio::test]
async fn concurrent_dispatches_are_bounded_by_the_flag() {
    let env = setup("bounded").await;
    let api2 = MockApi2::start(&["--latency-ms", "300"]);
    let _operator = Operator::start(
        &env.namespace,
        &["--max-concurrent-dispatches", "2", "--max-concurrent-per-target", "2"],
    );
    // All six at once, in one apply: without the bound, all six calls would overlap.
    let manifests: String = (0..6)
        .map(|n| job_yaml(&format!("job-{n}"), &api2.simulate_url(), "initialDelaySeconds: 1") + "---\n")
        .collect();
    let out = kubectl_stdin(&["apply", "--namespace", &env.namespace, "-f", "-"], &manifests);
    assert!(out.status.success(), "{out:?}");
    for n in 0..6 {
        wait_status(&env, &format!("job-{n}"), "Succeeded", SOON, |s| {
            s.phase == Phase::Succeeded
        })
        .await;
    }
    let stats = api2.stats().await;
    assert_eq!(stats.total_requests, 6);
    assert_eq!(
        stats.max_in_flight, 2,
        "at most --max-concurrent-dispatches calls at once, and it was reached"
    );
}
