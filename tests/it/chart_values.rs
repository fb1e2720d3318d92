//! The chart's values: a typo or a bad value fails `helm template` with
//! the field named (values.schema.json), and values that switch features on
//! render what they say.

use serde_json::{Value, json};

use crate::chart::{CHART, render, run_helm};

#[test]
fn bad_values_fail_with_the_field_named() {
    for (set, field, why) in [
        (
            "operator.replicas=two",
            "/operator/replicas",
            "got string, want integer",
        ),
        (
            "operator.maxConcurrentDispatches=0",
            "/operator/maxConcurrentDispatches",
            "minimum",
        ),
        (
            "operator.denyCidr=10.0.0.0/8",
            "/operator",
            "additional properties 'denyCidr' not allowed",
        ),
        ("operator.logFormat=xml", "/operator/logFormat", "value must be one of"),
        (
            "image.pullPolicy=Sometimes",
            "/image/pullPolicy",
            "value must be one of",
        ),
        (
            "intake.tls.secretName=Not_A_Name",
            "/intake/tls/secretName",
            "does not match pattern",
        ),
        (
            "operator.denyCidrs={localhost}",
            "/operator/denyCidrs/0",
            "does not match pattern",
        ),
        (
            "tracing.otlpEndpoint=collector:4318",
            "/tracing/otlpEndpoint",
            "does not match pattern",
        ),
        ("tracing.sampler=sometimes", "/tracing/sampler", "value must be one of"),
        (
            "tracing.extraEnv[0].name=PATH,tracing.extraEnv[0].value=/x",
            "/tracing/extraEnv/0/name",
            "does not match pattern",
        ),
    ] {
        let out = run_helm(&["template", "x", CHART, "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            stderr.contains(&format!("at '{field}'")) && stderr.contains(why),
            "--set {set}: the error names {field} ({why}):\n{stderr}"
        );
    }
}

#[test]
fn tracing_values_become_the_otel_variables_of_both_containers() {
    let set = "tracing.otlpEndpoint=http://c.observability.svc:4318,tracing.sampler=parentbased_traceidratio,\
               tracing.samplerArg=0.25,tracing.extraEnv[0].name=OTEL_EXPORTER_OTLP_HEADERS,\
               tracing.extraEnv[0].value=x-tenant=a";
    let expected = json!([
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://c.observability.svc:4318"},
        {"name": "OTEL_TRACES_SAMPLER", "value": "parentbased_traceidratio"},
        {"name": "OTEL_TRACES_SAMPLER_ARG", "value": "0.25"},
        {"name": "OTEL_EXPORTER_OTLP_HEADERS", "value": "x-tenant=a"},
    ]);
    for (rendered, off) in [(render(&["--set", set]), false), (render(&[]), true)] {
        let deployments: Vec<&Value> = rendered.iter().filter(|o| o["kind"] == "Deployment").collect();
        assert_eq!(deployments.len(), 2, "the operator and the intake");
        for deployment in deployments {
            let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let otel: Vec<Value> = env
                .into_iter()
                .filter(|e| e["name"].as_str().is_some_and(|n| n.starts_with("OTEL_")))
                .collect();
            let name = &deployment["metadata"]["name"];
            if off {
                assert!(otel.is_empty(), "{name}: no OTEL_ variable while tracing is off");
            } else {
                assert_eq!(Value::Array(otel), expected, "{name}");
            }
        }
    }
}
