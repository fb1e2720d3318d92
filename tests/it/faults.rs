//! The delivery promise under real faults (ENGINEERING.md §2a): status
//! writes refused by an admission policy, a leader cut off from the API
//! server by a TCP proxy, a name reused during a call, and status edited by
//! hand. Each test counts the calls the target saw against the attempts that
//! status records.

use std::time::{Duration, Instant};

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use pendingjob_operator::api::{PendingJob, Phase};

use crate::jobs::{SOON, apply, job, job_yaml, setup, status, wait_status};
use crate::processes::{MockApi2, Operator};
use crate::proxy::TcpProxy;
use crate::support::{FAST_LEASE, TestEnv, http_get, kubectl, kubectl_stdin, lease_holder, metric, wait_until};

/// A ValidatingAdmissionPolicy that refuses every status write of
/// PendingJobs in the test's namespace, while it exists.
struct RefuseStatusWrites {
    name: String,
}

impl RefuseStatusWrites {
    async fn install(env: &TestEnv) -> Self {
        let name = format!("refuse-status-{}", env.namespace);
        let manifest = format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {name}
spec:
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {namespace}
    resourceRules:
      - apiGroups: [pendingjob.dev]
        apiVersions: ["*"]
        operations: [UPDATE]
        resources: [pendingjobs/status]
  validations:
    - expression: "false"
      message: status writes are refused by the test
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {name}
spec:
  policyName: {name}
  validationActions: [Deny]
"#,
            namespace = env.namespace
        );
        let out = kubectl_stdin(&["apply", "-f", "-"], &manifest);
        assert!(out.status.success(), "installing the policy: {out:?}");
        // The API server loads policies asynchronously: wait until a probe's
        // status write is refused.
        let api = env.api::<PendingJob>();
        let probe: PendingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
            "metadata": {"name": "probe"},
            "spec": {"target": {"url": "http://127.0.0.1:9/unused"}},
        }))
        .expect("probe job");
        api.create(&PostParams::default(), &probe)
            .await
            .expect("creating the probe");
        let patch = Patch::Merge(serde_json::json!({"status": {"attempts": 0}}));
        wait_until("the policy to refuse status writes", SOON, || async {
            match api.patch_status("probe", &PatchParams::default(), &patch).await {
                Err(kube::Error::Api(e)) if e.message.contains("refused by the test") => Some(()),
                _ => None,
            }
        })
        .await;
        api.delete("probe", &DeleteParams::default())
            .await
            .expect("deleting the probe");
        Self { name }
    }

    fn remove(self) {
        let binding = format!("validatingadmissionpolicybinding/{}", self.name);
        let policy = format!("validatingadmissionpolicy/{}", self.name);
        let out = kubectl(&["delete", &binding, &policy]);
        assert!(out.status.success(), "removing the policy: {out:?}");
    }
}

/// The backoff delays the operator logged for job `name`'s failed status writes.
fn error_delays(operator: &Operator, name: &str) -> Vec<String> {
    let job = format!("job={name} ");
    operator
        .log_text()
        .lines()
        .filter(|l| l.contains("retrying the write (not the call)") && l.contains(&job))
        .filter_map(|l| l.split("delay=").nth(1))
        .map(|d| d.split_whitespace().next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn refused_status_writes_are_retried_as_writes_never_as_calls() {
    let env = setup("refused-writes").await;
    let healthy = MockApi2::start(&[]);
    let failing = MockApi2::start(&["--fail"]);
    let policy = RefuseStatusWrites::install(&env).await;
    let operator = Operator::start(&env.namespace, &[]);
    let ok = apply(&env, &job_yaml("ok", &healthy.simulate_url(), "initialDelaySeconds: 1")).await;
    let bad = apply(
        &env,
        &job_yaml("bad", &failing.simulate_url(), "initialDelaySeconds: 1"),
    )
    .await;

    // Five refused writes of the first outcome: 1 + 2 + 4 + 8 s of backoff.
    wait_until("five refused writes of job ok", Duration::from_secs(60), || async {
        (error_delays(&operator, "ok").len() >= 5).then_some(())
    })
    .await;
    assert_eq!(
        error_delays(&operator, "ok")[..4],
        ["1s", "2s", "4s", "8s"],
        "per-job exponential backoff:\n{}",
        operator.log_text()
    );
    assert_eq!(healthy.calls_for(&ok).await, 1, "the delivered call was not repeated");
    assert_eq!(failing.calls_for(&bad).await, 1, "one call for the one due attempt");
    assert_eq!(status(&env, "ok").await.attempts, 0, "nothing recorded while refused");

    policy.remove();
    let done = wait_status(&env, "ok", "Succeeded", Duration::from_secs(60), |s| {
        s.phase == Phase::Succeeded
    })
    .await;
    assert_eq!(done.attempts, 1);
    assert_eq!(healthy.calls_for(&ok).await, 1);

    // The failing job records its one call, then goes on with its schedule.
    wait_status(&env, "bad", "2 attempts", SOON, |s| s.attempts >= 2).await;
    failing.toggle().await;
    let bad_done = wait_status(&env, "bad", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    assert_eq!(failing.calls_for(&bad).await, bad_done.attempts as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_before_the_other_takes_over() {
    let env = setup("partition").await;
    let api2 = MockApi2::start(&["--fail", "--latency-ms", "800"]);
    let (proxy, through_proxy) = TcpProxy::to_api_server().await;
    let lease = [
        &FAST_LEASE[..],
        &["--lease-name", "partition", "--api-timeout-seconds", "3"],
    ]
    .concat();
    let a = Operator::start_with_kubeconfig(
        &env.namespace,
        &[&lease[..], &["--identity", "a"]].concat(),
        Some(&through_proxy),
    );
    wait_until("a to lead", SOON, || async {
        (lease_holder(&env, "partition").await.as_deref() == Some("a")).then_some(())
    })
    .await;
    let _b = Operator::start(&env.namespace, &[&lease[..], &["--identity", "b"]].concat());
    let a_admin = a.admin_url().await;
    let a_metrics = || async { http_get(&format!("{a_admin}/metrics")).await.1 };

    let names: Vec<String> = (0..12).map(|n| format!("job-{n}")).collect();
    let policy = "initialDelaySeconds: 1\n    maxDelaySeconds: 1";
    let manifests: String = names
        .iter()
        .map(|n| job_yaml(n, &api2.simulate_url(), policy) + "---\n")
        .collect();
    let out = kubectl_stdin(&["apply", "--namespace", &env.namespace, "-f", "-"], &manifests);
    assert!(out.status.success(), "{out:?}");
    for name in &names {
        wait_status(&env, name, "2 attempts", SOON, |s| s.attempts >= 2).await;
    }
    // Cut while calls are in flight, the case that can repeat a call.
    wait_until("calls in flight at a", SOON, || async {
        (metric(&a_metrics().await, "pendingjob_attempts_in_flight") >= 1.0).then_some(())
    })
    .await;
    proxy.cut();
    let cut = Instant::now();
    let in_flight_at_cut = metric(&a_metrics().await, "pendingjob_attempts_in_flight");
    wait_until("a to step down", SOON, || async {
        (metric(&a_metrics().await, "pendingjob_leader") == 0.0).then_some(())
    })
    .await;
    let stepped_down = cut.elapsed();
    let started_at_step_down = metric(&a_metrics().await, "pendingjob_attempts_started_total");
    wait_until("b to take over", SOON, || async {
        (lease_holder(&env, "partition").await.as_deref() == Some("b")).then_some(())
    })
    .await;
    let takeover = cut.elapsed();
    eprintln!(
        "partition: a stepped down after {:.2} s, b took over after {:.2} s; {in_flight_at_cut} attempts in flight at the cut",
        stepped_down.as_secs_f64(),
        takeover.as_secs_f64()
    );
    assert!(
        stepped_down <= Duration::from_secs(3),
        "a stepped down {stepped_down:?} after the cut; its renew deadline is 2 s"
    );
    assert!(
        takeover <= Duration::from_secs(6),
        "b took over {takeover:?} after the cut; the Lease lasts 4 s (+2 s allowed)"
    );

    api2.toggle().await;
    let mut unrecorded = 0;
    for name in &names {
        let done = wait_status(&env, name, "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
        let uid = job(&env, name).await.metadata.uid.expect("uid");
        let calls = api2.calls_for(&uid).await as i64;
        assert!(calls >= i64::from(done.attempts), "{name}: an attempt without a call");
        unrecorded += calls - i64::from(done.attempts);
    }
    let a_text = a_metrics().await;
    assert_eq!(
        metric(&a_text, "pendingjob_attempts_started_total"),
        started_at_step_down,
        "a called a target after its renew deadline"
    );
    assert_eq!(
        metric(
            &a_text,
            "pendingjob_unrecorded_attempts_total{reason=\"lost_leadership\"}"
        ),
        in_flight_at_cut,
        "a abandoned its attempts in flight, unrecorded"
    );
    eprintln!("partition: {unrecorded} calls repeated, {in_flight_at_cut} attempts were in flight at the cut");
    assert!(
        unrecorded as f64 <= in_flight_at_cut,
        "{unrecorded} calls were repeated, but only {in_flight_at_cut} attempts were in flight at the cut"
    );
}

#[tokio::test]
async fn a_name_reused_during_a_call_gets_its_own_call_and_status() {
    let env = setup("reused-name").await;
    let api2 = MockApi2::start(&["--latency-ms", "3000"]);
    let operator = Operator::start(&env.namespace, &[]);
    let manifest = job_yaml("reused", &api2.simulate_url(), "initialDelaySeconds: 1");
    let old = apply(&env, &manifest).await;
    wait_until("the first job's call to be in flight", SOON, || async {
        (api2.calls_for(&old).await == 1).then_some(())
    })
    .await;

    env.api::<PendingJob>()
        .delete("reused", &DeleteParams::default())
        .await
        .expect("delete");
    let new = apply(&env, &manifest).await;
    assert_ne!(old, new);
    let done = wait_status(&env, "reused", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    assert_eq!(job(&env, "reused").await.metadata.uid.as_deref(), Some(new.as_str()));
    assert_eq!(done.attempts, 1, "only its own attempt");
    assert_eq!(api2.calls_for(&new).await, 1, "called with its own UID");
    assert_eq!(api2.calls_for(&old).await, 1);
    assert!(
        operator.log_text().contains("the job that was called is gone"),
        "{}",
        operator.log_text()
    );
}

#[tokio::test]
async fn an_unrelated_change_during_a_call_does_not_lose_its_outcome() {
    let env = setup("rebase").await;
    let api2 = MockApi2::start(&["--latency-ms", "2000"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let uid = apply(&env, &job_yaml("busy", &api2.simulate_url(), "initialDelaySeconds: 1")).await;
    wait_until("the call to be in flight", SOON, || async {
        (api2.calls_for(&uid).await == 1).then_some(())
    })
    .await;
    // A new resourceVersion under the in-flight attempt.
    let patch = serde_json::json!({"metadata": {"labels": {"team": "payments"}}});
    env.api::<PendingJob>()
        .patch("busy", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label");

    let done = wait_status(&env, "busy", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    assert_eq!((done.attempts, api2.calls_for(&uid).await), (1, 1));
}

#[tokio::test]
async fn a_status_reset_by_hand_is_honoured_not_wedged() {
    let env = setup("reset").await;
    let api2 = MockApi2::start(&["--fail-first", "2"]);
    let _operator = Operator::start(&env.namespace, &[]);
    let uid = apply(&env, &job_yaml("reset", &api2.simulate_url(), "initialDelaySeconds: 1")).await;
    wait_status(&env, "reset", "Succeeded", SOON, |s| {
        s.phase == Phase::Succeeded && s.attempts == 3
    })
    .await;

    // Someone starts the job over by hand.
    let out = env.kubectl(&[
        "patch",
        "pendingjob",
        "reset",
        "--subresource=status",
        "--type=merge",
        "--patch",
        r#"{"status":{"phase":"Pending","attempts":0,"retryCount":0,"lastStatusCode":null,"completionTime":null,"lastAttemptTime":null,"conditions":null}}"#,
    ]);
    assert!(out.status.success(), "{out:?}");
    let again = wait_status(&env, "reset", "Succeeded again", SOON, |s| {
        s.phase == Phase::Succeeded && s.attempts == 1
    })
    .await;
    assert_eq!(again.last_status_code, Some(200));
    assert_eq!(api2.calls_for(&uid).await, 4, "one more call, from the reset status");
}
