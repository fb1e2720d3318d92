//! Things new users do first and tripped over: `kubectl apply -f crds/`,
//! large payloads sent to the mock, and `/readyz` while the API server is
//! unreachable.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::PostParams;
use pendingjob_operator::api::PendingJob;

use crate::jobs::SOON;
use crate::processes::{MockApi2, Operator};
use crate::proxy::TcpProxy;
use crate::support::{
    FAST_LEASE, TestEnv, http_get, install_crds, kubeconfig_file, kubectl, metric, repo_path, wait_until,
};

/// The objects `kubectl apply --server-side --dry-run=server` would apply
/// from `crds/` with `flag` (`-f` or `-k`), sorted.
fn applied_from_crds(flag: &str) -> Vec<String> {
    let crds = repo_path("crds");
    let out = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--output=name",
        flag,
        crds.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "kubectl apply {flag} crds/: {out:?}");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn crds_install_with_apply_f_and_with_apply_k() {
    // `make test` runs on a fresh plane, where this `-f` is the first install.
    install_crds();
    let by_f = applied_from_crds("-f");
    assert_eq!(
        by_f,
        [
            "customresourcedefinition.apiextensions.k8s.io/destinations.pendingjob.dev",
            "customresourcedefinition.apiextensions.k8s.io/pendingjobs.pendingjob.dev",
            "validatingadmissionpolicy.admissionregistration.k8s.io/destinations.pendingjob.dev-secret-access",
            "validatingadmissionpolicy.admissionregistration.k8s.io/pendingjobs.pendingjob.dev-payload-limit",
            "validatingadmissionpolicy.admissionregistration.k8s.io/pendingjobs.pendingjob.dev-require-destination",
            "validatingadmissionpolicybinding.admissionregistration.k8s.io/destinations.pendingjob.dev-secret-access",
            "validatingadmissionpolicybinding.admissionregistration.k8s.io/pendingjobs.pendingjob.dev-payload-limit",
            "validatingadmissionpolicybinding.admissionregistration.k8s.io/pendingjobs.pendingjob.dev-require-destination",
        ]
    );
    assert_eq!(applied_from_crds("-k"), by_f, "-k crds/ applies what -f crds/ applies");
    let crds = repo_path("crds");
    let out = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-k",
        crds.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "kubectl apply -k crds/: {out:?}");
    let present = kubectl(&["get", "--output=name", "-f", crds.to_str().expect("utf-8")]);
    assert!(present.status.success(), "{present:?}");
    assert_eq!(String::from_utf8_lossy(&present.stdout).lines().count(), by_f.len());
}

#[tokio::test]
async fn every_first_call_with_a_64_kib_payload_reaches_a_healthy_mock() {
    const JOBS: usize = 2000;
    install_crds();
    // 128 MiB of jobs: alone, so the timing bounds of other tests hold.
    let env = TestEnv::alone("large-bodies").await;
    let api2 = MockApi2::start(&[]);
    let operator = Operator::start(&env.namespace, &[]);
    let url = api2.simulate_url();
    let filler = "x".repeat(64 * 1024);
    let api = env.api::<PendingJob>();
    futures::stream::iter(0..JOBS)
        .map(|n| {
            let job: PendingJob = serde_json::from_value(serde_json::json!({
                "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
                "metadata": {"name": format!("big-{n}")},
                "spec": {"target": {"url": url}, "payload": {"n": n, "filler": filler}},
            }))
            .expect("job");
            let api = api.clone();
            async move { api.create(&PostParams::default(), &job).await.map(|_| ()) }
        })
        .buffer_unordered(8)
        .try_collect::<()>()
        .await
        .expect("creating the jobs");

    let admin = operator.admin_url().await;
    wait_until("every job Succeeded", Duration::from_secs(300), || async {
        let (_, text) = http_get(&format!("{admin}/metrics")).await;
        let succeeded = format!("pendingjob_jobs{{namespace=\"{}\",phase=\"Succeeded\"}}", env.namespace);
        (text.contains(&succeeded) && metric(&text, &succeeded) == JOBS as f64).then_some(text)
    })
    .await;
    let (_, text) = http_get(&format!("{admin}/metrics")).await;
    assert_eq!(
        metric(&text, "pendingjob_attempts_total{outcome=\"delivered\"}"),
        JOBS as f64
    );
    assert!(
        !text.contains("outcome=\"retryable\""),
        "a first attempt failed:\n{text}"
    );
    let stats = api2.stats().await;
    assert_eq!((stats.total_requests, stats.unique_keys), (JOBS as u64, JOBS));
    assert!(stats.requests.iter().all(|r| r.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_stays_ready_while_the_api_server_is_unreachable() {
    let env = crate::jobs::setup("readyz-outage").await;
    let (proxy, through_proxy) = TcpProxy::to_api_server().await;
    let lease = [&FAST_LEASE[..], &["--api-timeout-seconds", "2"]].concat();
    let operator = Operator::start_with_kubeconfig(&env.namespace, &lease, Some(&through_proxy));
    let admin = operator.admin_url().await;
    let leader = || async { metric(&http_get(&format!("{admin}/metrics")).await.1, "pendingjob_leader") };
    let readyz = || async { http_get(&format!("{admin}/readyz")).await.0 };
    wait_until("ready and leading", SOON, || async {
        (readyz().await == 200 && leader().await == 1.0).then_some(())
    })
    .await;

    proxy.cut();
    // The outage is felt (the leader steps down), and /readyz stays 200 all along.
    wait_until("the leader to step down", SOON, || async {
        assert_eq!(readyz().await, 200, "/readyz during the outage");
        (leader().await == 0.0).then_some(())
    })
    .await;
    proxy.restore();
    wait_until("leading again", SOON, || async {
        assert_eq!(readyz().await, 200, "/readyz after the outage");
        (leader().await == 1.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn readyz_is_ready_only_once_the_controller_runs() {
    let env = crate::jobs::setup("readyz").await;
    // An API server that does not answer: the process is alive, not ready.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let nowhere = kubeconfig_file(Some("unused"), Some(&format!("https://127.0.0.1:{port}")));
    let stuck = Operator::start_with_kubeconfig(
        &env.namespace,
        &["--leader-election", "false", "--log-format", "json"],
        Some(&nowhere),
    );
    let stuck_admin = stuck.admin_url().await;
    wait_until("the start-up check to fail once", SOON, || async {
        stuck.log_text().contains("cannot list PendingJobs").then_some(())
    })
    .await;
    assert_eq!(
        http_get(&format!("{stuck_admin}/healthz")).await,
        (200, "ok".to_owned())
    );
    assert_eq!(http_get(&format!("{stuck_admin}/readyz")).await.0, 503);
    // --log-format json: every line is a JSON object.
    for line in stuck.log_text().lines() {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(parsed["fields"]["message"].is_string(), "{line}");
    }

    let running = Operator::start(&env.namespace, &[]);
    let admin = running.admin_url().await;
    wait_until("/readyz to be ok", SOON, || async {
        (http_get(&format!("{admin}/readyz")).await.0 == 200).then_some(())
    })
    .await;
    assert!(
        running.log_text().contains("controller starting"),
        "{}",
        running.log_text()
    );
}
