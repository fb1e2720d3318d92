//! The Helm chart (charts/pendingjob-operator/): `helm lint`, parity with
//! `deploy/` field by field (the values are in chart_values.rs).
//! `helm` is the pinned one `hack/tools.sh helm` builds from its Go
//! module; `kubectl kustomize` is the pinned kubectl's.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use crate::support::{kubectl, repo_path};

pub(crate) const CHART: &str = "charts/pendingjob-operator";
const NAMESPACE: &str = "pendingjob-system";
/// The labels Helm's conventions add (templates/_helpers.tpl), which
/// kustomize's objects do not carry.
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

/// A pinned tool of `hack/tools.sh` (helm, helm-docs, jaeger), built on first use.
pub(crate) fn tool(name: &str) -> std::path::PathBuf {
    let out = Command::new(repo_path("hack/tools.sh"))
        .arg(name)
        .output()
        .unwrap_or_else(|e| panic!("running hack/tools.sh {name}: {e}"));
    assert!(
        out.status.success(),
        "hack/tools.sh {name} could not build the pinned {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a path").trim().into()
}

/// The pinned helm.
fn helm() -> std::path::PathBuf {
    static HELM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    HELM.get_or_init(|| tool("helm")).clone()
}

pub(crate) fn run_helm(args: &[&str]) -> std::process::Output {
    Command::new(helm())
        .args(args)
        .current_dir(repo_path(""))
        .output()
        .expect("running helm")
}

/// `helm template` of the chart with `args`, as objects.
pub(crate) fn render(args: &[&str]) -> Vec<Value> {
    let out = run_helm(
        &[
            &[
                "template",
                "pendingjob-operator",
                CHART,
                "--namespace",
                NAMESPACE,
                "--include-crds",
            ],
            args,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    objects(&String::from_utf8_lossy(&out.stdout))
}

/// `kubectl kustomize DIR`, as objects.
fn kustomize(dir: &str) -> Vec<Value> {
    let out = kubectl(&["kustomize", &repo_path(dir).to_string_lossy()]);
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    objects(&String::from_utf8_lossy(&out.stdout))
}

fn objects(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("rendered YAML parses")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// Objects by kind/namespace/name, without Helm's own labels.
fn by_key(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|mut o| {
            let meta = &o["metadata"];
            let key = format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                meta["namespace"].as_str().unwrap_or("-"),
                meta["name"].as_str().unwrap_or_default()
            );
            if let Some(labels) = o["metadata"].get_mut("labels").and_then(Value::as_object_mut) {
                for label in HELM_LABELS {
                    labels.remove(label);
                }
                if labels.is_empty() {
                    o["metadata"].as_object_mut().map(|m| m.remove("labels"));
                }
            }
            (key, o)
        })
        .collect()
}

/// The first field where `a` and `b` differ, as a JSON pointer with both values.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    &format!("{path}/{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(&format!("{path}/{i}"), p, q)),
        // 86400.0 in the generated CRD is kustomize's 86400.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        // kustomize re-emits folded (`>-`) CEL with another line folding
        // than the template's verbatim text; CEL ignores the whitespace.
        (Value::String(x), Value::String(y)) if words(x) == words(y) => None,
        _ if a == b => None,
        _ => Some(format!("{path}: chart {a}, deploy {b}")),
    }
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Asserts that the chart's objects and kustomize's are the same, field by field.
fn assert_same(chart: Vec<Value>, deploy: Vec<Value>, what: &str) {
    let (chart, deploy) = (by_key(chart), by_key(deploy));
    let names = |m: &BTreeMap<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&chart),
        names(&deploy),
        "{what}: the chart and deploy/ render different objects"
    );
    let differences: Vec<String> = chart
        .iter()
        .filter_map(|(key, object)| first_difference(key, object, &deploy[key]))
        .collect();
    assert!(
        differences.is_empty(),
        "{what}: the chart differs from deploy/:\n{}",
        differences.join("\n")
    );
}

#[test]
fn helm_lint_passes_strict() {
    let out = run_helm(&["lint", "--strict", CHART]);
    assert!(
        out.status.success(),
        "helm lint --strict {CHART}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_chart_with_default_values_renders_what_deploy_does() {
    let deploy = kustomize("deploy");
    // Helm cannot create its own release namespace (values.yaml,
    // namespace.create): with defaults the chart renders everything else.
    let (namespaces, rest): (Vec<Value>, Vec<Value>) = deploy.into_iter().partition(|o| o["kind"] == "Namespace");
    assert_eq!(namespaces.len(), 1, "deploy/ has one Namespace");
    assert_same(render(&[]), rest, "default values");
    assert_same(
        render(&["--set", "namespace.create=true"]),
        kustomize("deploy"),
        "namespace.create=true",
    );
}

#[test]
fn the_chart_renders_the_overlays_from_values() {
    let demo = [
        "--set",
        "image.repository=pendingjob-operator,image.tag=dev,demo.mockApi2.enabled=true,namespace.create=true",
    ];
    assert_same(render(&demo), kustomize("deploy/demo"), "the demo (deploy/demo/)");
    let tls = ["--set", "intake.tls.enabled=true,namespace.create=true"];
    assert_same(
        render(&tls),
        kustomize("deploy/intake-tls"),
        "the intake with TLS (deploy/intake-tls/)",
    );
    let tracing = [
        "--set",
        "tracing.otlpEndpoint=http://otel-collector.observability.svc:4318,namespace.create=true",
    ];
    assert_same(
        render(&tracing),
        kustomize("deploy/tracing"),
        "spans exported to a collector (deploy/tracing/)",
    );
}

#[test]
fn the_monitoring_objects_render_only_where_their_crds_are_served() {
    let kinds = |objects: &[Value]| {
        objects
            .iter()
            .filter_map(|o| o["kind"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let plain = render(&[]);
    assert!(
        !kinds(&plain)
            .iter()
            .any(|k| k == "ServiceMonitor" || k == "PrometheusRule")
    );
    let with = render(&[
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
    ]);
    let monitor = with
        .iter()
        .find(|o| o["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    let rule = with
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let ours = objects(
        &std::fs::read_to_string(repo_path("deploy/monitoring/prometheusrule.yaml")).expect("reading the rule"),
    );
    assert_eq!(
        rule["spec"], ours[0]["spec"],
        "the chart's alerts are deploy/monitoring's"
    );
}

#[test]
fn operator_values_become_its_flags() {
    let rendered = render(&[
        "--set",
        "operator.maxConcurrentDispatches=64,operator.ttlSecondsAfterFinished=3600,operator.payloadCacheMib=64,\
         operator.leaderElection.leaseDurationSeconds=30,operator.denyCidrs={10.0.0.0/8},operator.initialList=stream,\
         operator.credentialsClusterWide=false,operator.credentialNamespaces={shop,bank}",
    ]);
    let operator = rendered
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "pendingjob-operator")
        .expect("the operator's Deployment");
    let args: Vec<&str> = operator["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for flag in [
        "--max-concurrent-dispatches=64",
        "--ttl-seconds-after-finished=3600",
        "--payload-cache-mib=64",
        "--lease-duration-seconds=30",
        "--deny-cidrs=10.0.0.0/8",
        "--initial-list=stream",
    ] {
        assert!(args.contains(&flag), "{flag} in {args:?}");
    }
    let bindings: Vec<String> = rendered
        .iter()
        .filter(|o| o["metadata"]["name"] == "pendingjob-operator-credentials" && o["kind"] != "ClusterRole")
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        bindings,
        ["RoleBinding/shop", "RoleBinding/bank"],
        "credentials bound only where listed"
    );
}

#[test]
fn the_charts_crds_are_the_generated_ones() {
    for crd in ["pendingjob.yaml", "destination.yaml"] {
        let ours = std::fs::read_to_string(repo_path(&format!("crds/{crd}"))).expect("reading crds/");
        let chart =
            std::fs::read_to_string(repo_path(&format!("{CHART}/crds/{crd}"))).expect("reading the chart's crds/");
        assert!(
            ours == chart,
            "{CHART}/crds/{crd} differs from crds/{crd}: run `make crds`"
        );
    }
}

#[test]
fn the_values_table_is_current() {
    let scratch = std::env::temp_dir().join(crate::support::unique_name("chart-docs"));
    let copy = scratch.join("pendingjob-operator");
    std::fs::create_dir_all(&copy).expect("a scratch directory");
    for file in ["Chart.yaml", "values.yaml", "README.md.gotmpl"] {
        std::fs::copy(repo_path(&format!("{CHART}/{file}")), copy.join(file)).expect("copying the chart");
    }
    let out = Command::new(tool("helm-docs"))
        .args([
            "--chart-search-root",
            &scratch.to_string_lossy(),
            "--template-files",
            "README.md.gotmpl",
        ])
        .output()
        .expect("running helm-docs");
    assert!(
        out.status.success(),
        "helm-docs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = std::fs::read_to_string(copy.join("README.md")).expect("the generated README");
    let ours = std::fs::read_to_string(repo_path(&format!("{CHART}/README.md"))).expect("the chart's README");
    std::fs::remove_dir_all(&scratch).ok();
    assert!(
        fresh == ours,
        "{CHART}/README.md is not what helm-docs writes from values.yaml: run `make chart-docs`"
    );
}
