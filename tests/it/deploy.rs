//! Running the operator the way it runs in a cluster: `deploy/` is accepted
//! by the API server, its RBAC is enough and no more, several replicas are
//! safe, SIGTERM loses no attempt, and it can be observed (probes, metrics,
//! Events).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use pendingjob_operator::api::Phase;

use crate::jobs::{SOON, apply, job, job_yaml, setup, status, wait_status};
use crate::processes::{MockApi2, Operator};
use crate::support::{
    FAST_LEASE, TestEnv, http_get, install_crds, kubeconfig_file, kubectl, kubectl_stdin, lease_holder, metric,
    repo_path, unique_name, wait_until,
};

/// A quick schedule: 1 s, 2 s, 4 s, 4 s …
const POLICY: &str = "initialDelaySeconds: 1\n    multiplier: 2\n    maxDelaySeconds: 4";

async fn uid(env: &TestEnv, name: &str) -> String {
    job(env, name).await.metadata.uid.expect("uid")
}

/// `kubectl apply --server-side -k deploy/demo/` (the production base and
/// the demo's API 2), once per test process.
pub(crate) fn install_deploy() {
    static APPLIED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    APPLIED.get_or_init(|| {
        install_crds();
        let deploy = repo_path("deploy/demo");
        let out = kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            deploy.to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "kubectl apply --server-side -k deploy/demo/: {out:?}"
        );
    });
}

/// The documents of a YAML file under `deploy/` (`base/operator.yaml`, say).
fn deploy_documents(file: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo_path("deploy").join(file)).expect("reading deploy/");
    serde_saphyr::from_multiple(&text).expect("YAML documents")
}

fn deploy_object<T: serde::de::DeserializeOwned>(file: &str, kind: &str, name: &str) -> T {
    let doc = deploy_documents(file)
        .into_iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{kind} {name} in deploy/{file}"));
    serde_json::from_value(doc).expect("typed object")
}

/// `kubectl kustomize deploy/<dir>`, as text.
pub(crate) fn kustomize(dir: &str) -> String {
    let rendered = kubectl(&["kustomize", repo_path("deploy").join(dir).to_str().expect("utf-8")]);
    assert!(
        rendered.status.success(),
        "kubectl kustomize deploy/{dir}: {rendered:?}"
    );
    String::from_utf8_lossy(&rendered.stdout).into_owned()
}

/// The images the Deployments of a rendered kustomization run.
fn images(rendered: &str) -> BTreeSet<String> {
    serde_saphyr::from_multiple::<serde_json::Value>(rendered)
        .expect("YAML documents")
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["image"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_production_base_runs_the_released_image_and_no_demo() {
    let base = kustomize("");
    assert_eq!(
        images(&base),
        BTreeSet::from(["ghcr.io/pendingjob-dev/pendingjob-operator:v0.1.0".to_owned()])
    );
    assert!(
        !base.contains("mock-api2"),
        "the production base holds the demo's API 2"
    );
    // The demo overlay swaps in the local images and adds API 2.
    let demo = kustomize("demo");
    assert_eq!(
        images(&demo),
        BTreeSet::from([
            "pendingjob-operator:dev".to_owned(),
            "pendingjob-mock-api2:dev".to_owned()
        ])
    );
}

#[tokio::test]
async fn deploy_is_accepted_server_side() {
    install_deploy();
    // Every object of the demo overlay (the base and API 2) exists as the API
    // server validated it.
    let rendered = kustomize("demo");
    let got = kubectl_stdin(&["get", "-f", "-", "--output", "name"], &rendered);
    assert!(got.status.success(), "{got:?}");
    let names = String::from_utf8_lossy(&got.stdout);
    for wanted in [
        "namespace/pendingjob-system",
        "customresourcedefinition.apiextensions.k8s.io/pendingjobs.pendingjob.dev",
        "customresourcedefinition.apiextensions.k8s.io/destinations.pendingjob.dev",
        "serviceaccount/pendingjob-operator",
        "clusterrole.rbac.authorization.k8s.io/pendingjob-operator",
        "clusterrole.rbac.authorization.k8s.io/pendingjob-operator-credentials",
        "clusterrolebinding.rbac.authorization.k8s.io/pendingjob-operator-credentials",
        "role.rbac.authorization.k8s.io/pendingjob-operator-leader-election",
        "deployment.apps/pendingjob-operator",
        "service/pendingjob-operator-metrics",
        "deployment.apps/mock-api2",
        "service/mock-api2",
        "validatingadmissionpolicy.admissionregistration.k8s.io/pendingjobs.pendingjob.dev-payload-limit",
        "validatingadmissionpolicy.admissionregistration.k8s.io/destinations.pendingjob.dev-secret-access",
        "networkpolicy.networking.k8s.io/pendingjob-operator",
        "networkpolicy.networking.k8s.io/pendingjob-intake",
    ] {
        assert!(names.lines().any(|l| l == wanted), "{wanted} missing:\n{names}");
    }
    // The example job for the cluster is valid too.
    let example = repo_path("examples/hello-in-cluster.yaml");
    let dry_run = kubectl(&["apply", "--dry-run=server", "-f", example.to_str().expect("utf-8")]);
    assert!(dry_run.status.success(), "{dry_run:?}");
}

#[tokio::test]
async fn rbac_has_no_wildcards_and_only_the_verbs_the_code_uses() {
    fn rules(rules: Option<Vec<PolicyRule>>) -> BTreeSet<(String, String, String)> {
        let mut set = BTreeSet::new();
        for rule in rules.unwrap_or_default() {
            for group in rule.api_groups.unwrap_or_default() {
                for resource in rule.resources.clone().unwrap_or_default() {
                    for verb in &rule.verbs {
                        set.insert((group.clone(), resource.clone(), verb.clone()));
                    }
                }
            }
        }
        set
    }
    let expect = |triples: &[(&str, &str, &str)]| -> BTreeSet<(String, String, String)> {
        triples
            .iter()
            .map(|(g, r, v)| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
            .collect()
    };
    let intake_role: ClusterRole = deploy_object("base/intake.yaml", "ClusterRole", "pendingjob-intake");
    // The intake creates and reads jobs, checks that a destination exists,
    // and reviews its callers' tokens and permissions: nothing more.
    assert_eq!(
        rules(intake_role.rules),
        expect(&[
            ("pendingjob.dev", "pendingjobs", "create"),
            ("pendingjob.dev", "pendingjobs", "get"),
            ("pendingjob.dev", "destinations", "get"),
            ("authentication.k8s.io", "tokenreviews", "create"),
            ("authorization.k8s.io", "subjectaccessreviews", "create"),
        ])
    );
    let cluster_role: ClusterRole = deploy_object("base/rbac.yaml", "ClusterRole", "pendingjob-operator");
    let credentials_role: ClusterRole =
        deploy_object("base/rbac.yaml", "ClusterRole", "pendingjob-operator-credentials");
    let role: Role = deploy_object("base/rbac.yaml", "Role", "pendingjob-operator-leader-election");
    let cluster_rules = rules(cluster_role.rules);
    let credentials_rules = rules(credentials_role.rules);
    let lease_rules = rules(role.rules);
    for (group, resource, verb) in cluster_rules.iter().chain(&credentials_rules).chain(&lease_rules) {
        assert!(
            !format!("{group}{resource}{verb}").contains('*'),
            "wildcard in {group}/{resource}/{verb}"
        );
    }
    // The controller lists and watches jobs, gets a due job whose cache
    // lags, patches its status and deletes it when its TTL is up; it watches Destinations and patches
    // theirs, and gets (never lists or watches) the Secrets and ConfigMaps
    // they name; the recorder creates and patches Events; the elector gets,
    // creates and updates its Lease.
    assert_eq!(
        cluster_rules,
        expect(&[
            ("pendingjob.dev", "pendingjobs", "get"),
            ("pendingjob.dev", "pendingjobs", "list"),
            ("pendingjob.dev", "pendingjobs", "watch"),
            ("pendingjob.dev", "pendingjobs", "delete"),
            ("pendingjob.dev", "pendingjobs/status", "patch"),
            ("pendingjob.dev", "destinations", "get"),
            ("pendingjob.dev", "destinations", "list"),
            ("pendingjob.dev", "destinations", "watch"),
            ("pendingjob.dev", "destinations/status", "patch"),
            ("events.k8s.io", "events", "create"),
            ("events.k8s.io", "events", "patch"),
        ])
    );
    // A role of its own, so it can be bound in chosen namespaces only:
    // Secrets and ConfigMaps by name, and ServiceAccount tokens minted.
    assert_eq!(
        credentials_rules,
        expect(&[
            ("", "secrets", "get"),
            ("", "configmaps", "get"),
            ("", "serviceaccounts/token", "create"),
        ])
    );
    assert_eq!(
        lease_rules,
        expect(&[
            ("coordination.k8s.io", "leases", "get"),
            ("coordination.k8s.io", "leases", "create"),
            ("coordination.k8s.io", "leases", "update"),
        ])
    );
}

#[tokio::test]
async fn deployments_are_locked_down() {
    for (file, name, replicas) in [
        ("base/operator.yaml", "pendingjob-operator", 2),
        ("demo/mock-api2.yaml", "mock-api2", 1),
        ("base/intake.yaml", "pendingjob-intake", 2),
    ] {
        let deployment: Deployment = deploy_object(file, "Deployment", name);
        let spec = deployment.spec.expect("spec");
        assert_eq!(spec.replicas, Some(replicas), "{name}");
        let pod = spec.template.spec.expect("pod spec");
        let pod_security = pod.security_context.expect("pod securityContext");
        assert_eq!(pod_security.run_as_non_root, Some(true), "{name}");
        assert_eq!(
            pod_security.seccomp_profile.map(|p| p.type_),
            Some("RuntimeDefault".into()),
            "{name}"
        );
        for container in pod.containers {
            let security = container.security_context.expect("container securityContext");
            assert_eq!(security.run_as_non_root, Some(true), "{name}");
            assert_eq!(security.read_only_root_filesystem, Some(true), "{name}");
            assert_eq!(security.allow_privilege_escalation, Some(false), "{name}");
            let drop = security.capabilities.and_then(|c| c.drop).unwrap_or_default();
            assert_eq!(drop, ["ALL"], "{name}");
            assert_eq!(
                security.seccomp_profile.map(|p| p.type_),
                Some("RuntimeDefault".into()),
                "{name}"
            );
            let resources = container.resources.expect("resources");
            for (what, values) in [("requests", resources.requests), ("limits", resources.limits)] {
                let values = values.unwrap_or_default();
                assert!(
                    values.contains_key("cpu") && values.contains_key("memory"),
                    "{name}: {what}"
                );
            }
            assert!(container.readiness_probe.is_some(), "{name}: readiness probe");
        }
    }
    let operator: Deployment = deploy_object("base/operator.yaml", "Deployment", "pendingjob-operator");
    let container = &operator.spec.expect("spec").template.spec.expect("pod").containers[0];
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&container.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&container.readiness_probe).as_deref(), Some("/readyz"));

    // SIGKILL must come after the drain and the Lease release, with room to spare.
    let drain: u64 = container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--shutdown-grace-seconds="))
        .expect("--shutdown-grace-seconds in the operator's args")
        .parse()
        .expect("a number of seconds");
    let release = pendingjob_operator::operator::LEASE_RELEASE_TIMEOUT.as_secs();
    let grace = operator_pod_grace();
    assert!(
        grace >= drain + release + 5,
        "terminationGracePeriodSeconds {grace} leaves under 5 s over the drain ({drain} s) and the Lease release ({release} s)"
    );
}

fn operator_pod_grace() -> u64 {
    let operator: Deployment = deploy_object("base/operator.yaml", "Deployment", "pendingjob-operator");
    let pod = operator.spec.expect("spec").template.spec.expect("pod");
    pod.termination_grace_period_seconds
        .and_then(|s| u64::try_from(s).ok())
        .expect("terminationGracePeriodSeconds")
}

#[tokio::test]
async fn the_seed_scenario_runs_with_only_the_deploy_service_account() {
    install_deploy();
    let env = TestEnv::new("least-privilege").await;
    let token = kubectl(&[
        "create",
        "token",
        "pendingjob-operator",
        "--namespace",
        "pendingjob-system",
        "--duration",
        "1h",
    ]);
    assert!(token.status.success(), "kubectl create token: {token:?}");
    let kubeconfig = kubeconfig_file(Some(String::from_utf8_lossy(&token.stdout).trim()), None);
    let lease = unique_name("lease");
    let api2 = MockApi2::start(&["--fail"]);
    let operator = Operator::start_with_kubeconfig(
        &env.namespace,
        &["--lease-namespace", "pendingjob-system", "--lease-name", &lease],
        Some(&kubeconfig),
    );
    let admin = operator.admin_url().await;
    wait_until("/readyz to be ok", SOON, || async {
        (http_get(&format!("{admin}/readyz")).await.0 == 200).then_some(())
    })
    .await;

    // A header value and a payload field that must never reach the logs.
    let secretish = "header-value-not-for-logs";
    let extra = format!(
        "  target:\n    url: {}\n    headers:\n      X-Trace: {secretish}\n",
        api2.simulate_url()
    );
    let manifest = job_yaml("hello", &api2.simulate_url(), POLICY)
        .replace(&format!("  target:\n    url: {}\n", api2.simulate_url()), &extra);
    let payload_secret = "payload-value-not-for-logs";
    let manifest = manifest.replace(
        "    name: hello\n",
        &format!("    name: hello\n    note: {payload_secret}\n"),
    );
    assert!(manifest.contains(payload_secret));
    apply(&env, &manifest).await;
    wait_status(&env, "hello", "2 attempts", SOON, |s| s.attempts >= 2).await;
    api2.toggle().await;
    let waited = env.kubectl(&["wait", "--for=condition=Succeeded", "pendingjob/hello", "--timeout=30s"]);
    assert!(waited.status.success(), "{waited:?}\n{}", operator.log_text());
    let done = status(&env, "hello").await;
    assert_eq!(api2.calls_for(&uid(&env, "hello").await).await, done.attempts as u64);

    // Everything the operator asked of the API server was allowed.
    let log = operator.log_text();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "RBAC denied something:\n{log}"
    );
    assert!(!log.contains(secretish), "a header value was logged:\n{log}");
    assert!(!log.contains(payload_secret), "the payload was logged:\n{log}");

    // The story, in Events.
    let describe = env.kubectl(&["describe", "pendingjob", "hello"]);
    let describe = String::from_utf8_lossy(&describe.stdout);
    for reason in ["AttemptFailed", "Delivered"] {
        assert!(describe.contains(reason), "{reason} Event missing:\n{describe}");
    }

    // The counters moved.
    let (code, text) = http_get(&format!("{admin}/metrics")).await;
    assert_eq!(code, 200);
    let failed = (done.attempts - 1) as f64;
    assert_eq!(
        metric(&text, "pendingjob_attempts_total{outcome=\"retryable\"}"),
        failed
    );
    assert_eq!(metric(&text, "pendingjob_attempts_total{outcome=\"delivered\"}"), 1.0);
    assert_eq!(
        metric(&text, "pendingjob_attempt_duration_seconds_count"),
        done.attempts as f64
    );
    let succeeded = format!("pendingjob_jobs{{namespace=\"{}\",phase=\"Succeeded\"}}", env.namespace);
    assert_eq!(metric(&text, &succeeded), 1.0);
    assert_eq!(metric(&text, "pendingjob_leader"), 1.0);
    assert_eq!(metric(&text, "pendingjob_reconcile_errors_total"), 0.0);
}

#[tokio::test]
async fn two_replicas_one_dispatcher_and_a_takeover_after_sigkill() {
    let env = setup("ha").await;
    let api2 = MockApi2::start(&["--fail"]);
    let lease = [&FAST_LEASE[..], &["--lease-name", "ha"]].concat();
    let leader = Operator::start(&env.namespace, &[&lease[..], &["--identity", "a"]].concat());
    wait_until("a to lead", SOON, || async {
        (lease_holder(&env, "ha").await.as_deref() == Some("a")).then_some(())
    })
    .await;
    let standby = Operator::start(&env.namespace, &[&lease[..], &["--identity", "b"]].concat());
    let standby_admin = standby.admin_url().await;
    wait_until("b to be ready", SOON, || async {
        (http_get(&format!("{standby_admin}/readyz")).await.0 == 200).then_some(())
    })
    .await;

    let names: Vec<String> = (0..4).map(|n| format!("job-{n}")).collect();
    for name in &names {
        apply(&env, &job_yaml(name, &api2.simulate_url(), POLICY)).await;
    }
    let mut before = Vec::new();
    for name in &names {
        before.push(wait_status(&env, name, "3 attempts", SOON, |s| s.attempts >= 3).await);
    }
    for name in &names {
        let status = status(&env, name).await;
        assert_eq!(
            api2.calls_for(&uid(&env, name).await).await,
            status.attempts as u64,
            "{name}: one call per attempt"
        );
    }
    assert_eq!(
        standby.log_lines("job-", "attempt failed"),
        0,
        "the standby dispatched:\n{}",
        standby.log_text()
    );
    // The standby has looked at the Lease every retry period all along, but
    // its leadership has not changed: one line says so, not one per look.
    let leadership_lines = standby
        .log_text()
        .lines()
        .filter(|l| l.contains(": leadership leader="))
        .count();
    assert_eq!(leadership_lines, 1, "{}", standby.log_text());
    let (_, metrics) = http_get(&format!("{standby_admin}/metrics")).await;
    assert_eq!(metric(&metrics, "pendingjob_leader"), 0.0);
    // Job gauges come from the leader only, so a sum over replicas counts
    // each job once.
    assert!(
        !metrics.contains("pendingjob_jobs{"),
        "the standby reports jobs:\n{metrics}"
    );
    assert_eq!(metric(&metrics, "pendingjob_oldest_due_seconds"), 0.0);

    let killed = Instant::now();
    leader.kill();
    wait_until("b to take over", Duration::from_secs(15), || async {
        (lease_holder(&env, "ha").await.as_deref() == Some("b")).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!(
        "takeover after SIGKILL: {:.2} s (lease duration 4 s)",
        takeover.as_secs_f64()
    );
    assert!(
        // The Lease expires at most 4 s after the kill; allow the standby's
        // next look at it and the API round trips.
        takeover <= Duration::from_secs(6),
        "takeover took {takeover:?}, over the 4 s Lease (+2 s)"
    );

    api2.toggle().await;
    for (name, before) in names.iter().zip(&before) {
        let done = wait_status(&env, name, "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
        assert!(done.retry_count >= before.retry_count, "{name}: retryCount went back");
        let calls = api2.calls_for(&uid(&env, name).await).await;
        assert_eq!(
            calls, done.attempts as u64,
            "{name}: no double dispatch across the takeover"
        );
    }
    assert!(
        standby.log_lines("job-", "delivered") >= 1,
        "b dispatched after the takeover"
    );
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_attempt_finish_and_be_recorded() {
    let env = setup("sigterm").await;
    let api2 = MockApi2::start(&["--latency-ms", "3000"]);
    let mut operator = Operator::start(
        &env.namespace,
        &["--shutdown-grace-seconds", "10", "--lease-name", "sigterm"],
    );
    apply(&env, &job_yaml("slow", &api2.simulate_url(), POLICY)).await;
    wait_until("the call to be in flight", SOON, || async {
        (api2.stats().await.total_requests == 1).then_some(())
    })
    .await;

    operator.terminate();
    let exited_after = operator.wait_exit(Duration::from_secs(12)).await;
    eprintln!(
        "exit after SIGTERM: {:.2} s with a 3 s call in flight",
        exited_after.as_secs_f64()
    );
    assert!(
        exited_after < Duration::from_secs(10),
        "exited after {exited_after:?}, beyond the 10 s grace period"
    );
    let recorded = status(&env, "slow").await;
    assert_eq!(
        (recorded.phase, recorded.attempts),
        (Phase::Succeeded, 1),
        "the in-flight attempt was recorded"
    );
    assert_eq!(lease_holder(&env, "sigterm").await, None, "the Lease was released");
}
