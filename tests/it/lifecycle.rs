//! Day-2 operations on real jobs: clean-up after a TTL, retry and redrive
//! through the `pendingjob.dev/retry` annotation, suspend, a scheduled first
//! attempt, a deadline, status codes reclassified, and the lag metric.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use pendingjob_operator::api::{PendingJob, Phase};

use crate::jobs::{SOON, apply, job_yaml, setup, status, wait_status};
use crate::processes::{MockApi2, Operator};
use crate::support::{TestEnv, http_get, kubectl_stdin, metric, wait_until};

/// A job manifest with `extra` spec lines (YAML, indented by 2) after the
/// retry policy.
fn job_with(name: &str, url: &str, retry_policy: &str, extra: &str) -> String {
    format!("{}{extra}", job_yaml(name, url, retry_policy))
}

async fn patch_spec(env: &TestEnv, name: &str, spec: serde_json::Value) {
    env.api::<PendingJob>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": spec})),
        )
        .await
        .expect("patching the job");
}

fn annotate(env: &TestEnv, args: &[&str]) {
    let out = env.kubectl(&[&["annotate", "pendingjobs"], args, &["--overwrite"]].concat());
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn a_finished_job_is_deleted_after_its_ttl_and_one_without_stays() {
    let env = setup("ttl").await;
    let api2 = MockApi2::start(&[]);
    let _operator = Operator::start(&env.namespace, &[]);
    apply(
        &env,
        &job_with("short", &api2.simulate_url(), "{}", "  ttlSecondsAfterFinished: 2\n"),
    )
    .await;
    apply(&env, &job_yaml("kept", &api2.simulate_url(), "{}")).await;
    let done = wait_status(&env, "short", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    let completed = done.completion_time.expect("completionTime").0;
    let api = env.api::<PendingJob>();
    wait_until("the job to be deleted", SOON, || async {
        api.get_opt("short").await.expect("get").is_none().then_some(())
    })
    .await;
    let gone_after = completed.duration_until(Timestamp::now());
    assert!(
        gone_after.as_secs_f64() <= 3.0,
        "deleted {gone_after:?} after completion"
    );
    wait_status(&env, "kept", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    assert!(api.get_opt("kept").await.expect("get").is_some(), "no TTL, no deletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_annotation_redrives_a_failed_job_once_and_in_bulk() {
    let env = setup("redrive").await;
    let api2 = MockApi2::start(&["--fail"]);
    let operator = Operator::start(&env.namespace, &[]);
    let policy = "maxAttempts: 1";
    let uid = apply(&env, &job_yaml("once", &api2.simulate_url(), policy)).await;
    for name in ["bulk-a", "bulk-b"] {
        apply(&env, &job_yaml(name, &api2.simulate_url(), policy)).await;
    }
    for name in ["once", "bulk-a", "bulk-b"] {
        wait_status(&env, name, "Failed", SOON, |s| s.phase == Phase::Failed).await;
    }
    api2.toggle().await;

    annotate(&env, &["once", "pendingjob.dev/retry=1"]);
    let redriven = wait_status(&env, "once", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    assert_eq!(redriven.attempts, 2, "the count goes on");
    assert_eq!(redriven.redrive.map(|r| r.value).as_deref(), Some("1"));
    assert_eq!(
        api2.calls_for(&uid).await,
        2,
        "called again with the same Idempotency-Key"
    );

    // The same value again does nothing: the job is decided on and left alone.
    let idle = operator.log_lines("once", "decision=Kept");
    annotate(&env, &["once", "pendingjob.dev/retry=1", "example.com/poke=1"]);
    wait_until("the poke to be decided on", SOON, || async {
        (operator.log_lines("once", "decision=Kept") > idle).then_some(())
    })
    .await;
    assert_eq!(api2.calls_for(&uid).await, 2);

    // Bulk: every Failed job in the namespace, in one line.
    let line = format!(
        "kubectl annotate pendingjobs -n {} --field-selector status.phase=Failed \
         pendingjob.dev/retry=$(date +%s) --overwrite",
        env.namespace
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &line])
        .output()
        .expect("running the bulk redrive");
    assert!(out.status.success(), "{out:?}");
    let annotated = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(annotated, 2, "only the Failed jobs: {out:?}");
    for name in ["bulk-a", "bulk-b"] {
        let done = wait_status(&env, name, "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
        assert_eq!(done.attempts, 2, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_gets_no_calls_and_resumes_its_schedule() {
    let env = setup("suspend").await;
    let api2 = MockApi2::start(&["--fail"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let policy = "initialDelaySeconds: 1\n    maxDelaySeconds: 1";
    let uid = apply(&env, &job_yaml("paused", &api2.simulate_url(), policy)).await;
    wait_status(&env, "paused", "2 attempts", SOON, |s| s.attempts >= 2).await;
    patch_spec(&env, "paused", serde_json::json!({"suspend": true})).await;
    let suspended = wait_status(&env, "paused", "Suspended", SOON, |s| s.phase == Phase::Suspended).await;
    let calls = api2.calls_for(&uid).await;
    assert_eq!(calls, u64::try_from(suspended.attempts).expect("count"));
    // Five backoffs of 1 s go by without a call.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(api2.calls_for(&uid).await, calls, "no call while suspended");
    assert_eq!(status(&env, "paused").await.attempts, suspended.attempts);

    patch_spec(&env, "paused", serde_json::json!({"suspend": false})).await;
    let resumed = wait_status(&env, "paused", "a call after resuming", SOON, |s| {
        s.attempts > suspended.attempts
    })
    .await;
    assert_eq!(resumed.phase, Phase::Retrying);
    assert!(resumed.suspended_seconds >= 4, "{resumed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_before_holds_the_first_call_until_its_time() {
    let env = setup("not-before").await;
    let api2 = MockApi2::start(&[]);
    let _operator = Operator::start(&env.namespace, &[]);
    // notBefore has whole seconds: 3 s after the next whole second.
    let at = Timestamp::from_second(Timestamp::now().as_second() + 4).expect("time");
    let uid = apply(
        &env,
        &job_with("later", &api2.simulate_url(), "{}", &format!("  notBefore: \"{at}\"\n")),
    )
    .await;
    let shown = wait_status(&env, "later", "NEXT RETRY shown", SOON, |s| s.next_retry_time.is_some()).await;
    assert_eq!(shown.next_retry_time.map(|t| t.0), Some(at));
    assert_eq!(shown.phase, Phase::Pending);
    wait_status(&env, "later", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    let first = api2.arrivals_for(&uid).await[0];
    let early_ms = at.as_millisecond() - first;
    assert!(
        (-500..=0).contains(&early_ms),
        "first call {} ms after notBefore",
        -early_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retry_duration_gives_up_with_deadline_exceeded() {
    let env = setup("deadline").await;
    let api2 = MockApi2::start(&["--fail"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let policy = "initialDelaySeconds: 1\n    maxDelaySeconds: 1\n    maxRetryDurationSeconds: 5";
    apply(&env, &job_yaml("bounded", &api2.simulate_url(), policy)).await;
    let created = Instant::now();
    let failed = wait_status(&env, "bounded", "Failed", SOON, |s| s.phase == Phase::Failed).await;
    let took = created.elapsed();
    let reason = failed
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .map(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("DeadlineExceeded"));
    assert!(
        (4.0..=7.0).contains(&took.as_secs_f64()),
        "failed {took:?} after creation"
    );
    assert!(failed.attempts >= 4, "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_turns_a_409_into_delivered_and_a_404_into_a_retry() {
    let env = setup("retry-on").await;
    let conflict = MockApi2::start(&["--fail", "--fail-status", "409"]);
    let missing = MockApi2::start(&["--fail", "--fail-status", "404"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let delivered = "initialDelaySeconds: 1\n    retryOn: {delivered: [409]}";
    let retried = "initialDelaySeconds: 1\n    maxDelaySeconds: 1\n    retryOn: {retryable: [404]}";
    apply(&env, &job_yaml("done-already", &conflict.simulate_url(), delivered)).await;
    apply(&env, &job_yaml("not-yet", &missing.simulate_url(), retried)).await;
    let done = wait_status(&env, "done-already", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    assert_eq!((done.attempts, done.last_status_code), (1, Some(409)));
    let retrying = wait_status(&env, "not-yet", "retried", SOON, |s| s.attempts >= 2).await;
    assert_eq!(
        (retrying.phase, retrying.last_status_code),
        (Phase::Retrying, Some(404))
    );
    missing.toggle().await;
    wait_status(&env, "not-yet", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;

    let refused = kubectl_stdin(
        &["apply", "--namespace", &env.namespace, "-f", "-"],
        &job_yaml(
            "both",
            &missing.simulate_url(),
            "retryOn: {retryable: [409], delivered: [409]}",
        ),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("both retryable and delivered"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_due_gauge_rises_while_the_operator_is_stopped_and_falls_after() {
    let env = setup("lag").await;
    let api2 = MockApi2::start(&["--fail-first", "1"]);
    let operator = Operator::start(&env.namespace, &[]);
    let admin = operator.admin_url().await;
    let policy = "initialDelaySeconds: 1\n    maxDelaySeconds: 1";
    apply(&env, &job_yaml("due", &api2.simulate_url(), policy)).await;
    wait_status(&env, "due", "Retrying", SOON, |s| s.phase == Phase::Retrying).await;

    operator.signal("STOP");
    // Asked while the process is stopped, answered when it continues: from
    // the cache as it was, before the due retry lands.
    let scrape = tokio::spawn({
        let url = format!("{admin}/metrics");
        async move { http_get(&url).await.1 }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    operator.signal("CONT");
    let lag = metric(&scrape.await.expect("scrape"), "pendingjob_oldest_due_seconds");
    assert!(lag >= 3.5, "oldest due {lag} s after 5 s stopped");
    wait_status(&env, "due", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    let after = wait_until("the lag to fall", SOON, || async {
        let lag = metric(
            &http_get(&format!("{admin}/metrics")).await.1,
            "pendingjob_oldest_due_seconds",
        );
        (lag < 1.0).then_some(lag)
    })
    .await;
    assert!(after < 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_sends_its_dead_letter_with_retries_of_its_own() {
    use axum::http::StatusCode;
    let env = setup("dead-letter").await;
    let api2 = MockApi2::start(&["--fail", "--fail-status", "400"]);
    // The receiver is down at first: its 503s are retried, and the job stays Failed.
    let receiver = crate::targets::Target::start(StatusCode::SERVICE_UNAVAILABLE).await;
    let _operator = Operator::start(&env.namespace, &[]);
    let extra = format!("  deadLetter:\n    url: {}/dead-letters\n", receiver.base);
    let uid = apply(&env, &job_with("doomed", &api2.simulate_url(), "{}", &extra)).await;
    wait_until("two dead-letter calls refused", SOON, || async {
        (receiver.seen().len() >= 2).then_some(())
    })
    .await;
    let failed = status(&env, "doomed").await;
    assert_eq!(
        (failed.phase, failed.attempts),
        (Phase::Failed, 1),
        "the job's outcome stands"
    );
    assert_eq!(failed.dead_letter.as_ref().map(|d| d.delivered), Some(false));

    receiver.answer(StatusCode::ACCEPTED);
    let sent = wait_status(&env, "doomed", "dead letter delivered", SOON, |s| {
        s.dead_letter.as_ref().is_some_and(|d| d.delivered)
    })
    .await;
    assert_eq!(sent.phase, Phase::Failed);
    let calls = receiver.seen();
    assert_eq!(
        usize::try_from(sent.dead_letter.expect("status").attempts).expect("count"),
        calls.len(),
        "one call per recorded dead-letter attempt"
    );
    let last = calls.last().expect("a call");
    assert_eq!(last.path, "/dead-letters");
    assert_eq!(last.header("idempotency-key"), Some(format!("{uid}/dead-letter")));
    let record = &last.body;
    assert_eq!(record["name"], "doomed");
    assert_eq!(record["namespace"], env.namespace.as_str());
    assert_eq!(record["uid"], uid.as_str());
    assert_eq!(record["attempts"], 1);
    assert_eq!(record["lastStatusCode"], 400);
    assert_eq!(record["reason"], "Rejected");
    assert_eq!(record["payload"], serde_json::json!({"name": "doomed"}));
    for field in ["lastError", "creationTimestamp", "lastAttemptTime", "completionTime"] {
        assert!(record[field].is_string(), "{field} in {record}");
    }
}

/// The shipped alerts: three, each on a metric the operator exports, and
/// kept out of the default kustomization.
#[test]
fn the_prometheus_rule_alerts_on_metrics_the_operator_exports() {
    let path = crate::support::repo_path("deploy/monitoring/prometheusrule.yaml");
    let text = std::fs::read_to_string(&path).expect("reading the PrometheusRule");
    let rule: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 3);
    // Families show once they have a series.
    let metrics = pendingjob_operator::observe::metrics::Metrics::default();
    let mut gauges = pendingjob_operator::observe::gauges::JobGauges::default();
    gauges.by_phase.insert(("shop".into(), Phase::Failed), 1);
    metrics.set_job_gauges(Some(&gauges));
    metrics.status_write_failed("refused");
    let exported = metrics.encode().expect("exposition");
    for alert in rules {
        let expr = alert["expr"].as_str().expect("expr");
        let metric = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|w| w.starts_with("pendingjob_"))
            .expect("a pendingjob metric");
        let family = metric.trim_end_matches("_total");
        assert!(
            exported.contains(&format!("# TYPE {family} ")),
            "{} uses {metric}, which the operator does not export:\n{exported}",
            alert["alert"]
        );
    }
    let kustomization =
        std::fs::read_to_string(crate::support::repo_path("deploy/base/kustomization.yaml")).expect("kustomization");
    assert!(!kustomization.contains("monitoring"));
}
