//! Bad manifests are refused by the API server, with the field named, and
//! nothing is stored. Good ones get their defaults.

use std::time::Duration;

use pendingjob_operator::api::{Jitter, Method, PendingJob};

use crate::jobs::setup;
use crate::support::{TestEnv, kubectl_stdin, wait_until};

/// A valid job, with `target` and `extra` spliced in as YAML under `spec:`.
fn manifest(name: &str, target: &str, extra: &str) -> String {
    format!("apiVersion: pendingjob.dev/v1alpha1\nkind: PendingJob\nmetadata:\n  name: {name}\nspec:\n{target}{extra}")
}

const TARGET: &str = "  target:\n    url: http://api2.example:8080/api2/simulate\n";

fn target_with(line: &str) -> String {
    format!("{TARGET}    {line}\n")
}

fn apply(env: &TestEnv, yaml: &str, dry_run: bool) -> std::process::Output {
    let mut args = vec!["apply", "--namespace", &env.namespace, "-f", "-"];
    if dry_run {
        args.push("--dry-run=server");
    }
    kubectl_stdin(&args, yaml)
}

#[tokio::test]
async fn bad_manifests_are_refused_with_the_field_named() {
    let env = setup("invalid").await;
    let big_payload = format!("  payload:\n    blob: \"{}\"\n", "x".repeat(200_000));
    // (what, target YAML, rest of spec YAML, text the error must contain)
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "ftp URL",
            "  target:\n    url: ftp://api2.example/x\n".into(),
            String::new(),
            "spec.target.url",
        ),
        (
            "relative URL",
            "  target:\n    url: /api2/simulate\n".into(),
            String::new(),
            "spec.target.url",
        ),
        (
            "URL of wrong type",
            "  target:\n    url: 42\n".into(),
            String::new(),
            "spec.target.url",
        ),
        (
            "no target",
            String::new(),
            "  payload: {}\n".into(),
            "spec.target: Required value",
        ),
        (
            "no URL",
            "  target:\n    method: POST\n".into(),
            String::new(),
            "spec.target.url: Invalid value: exactly one of spec.target.url and spec.destinationRef must be set",
        ),
        (
            "unknown method",
            target_with("method: FETCH"),
            String::new(),
            "spec.target.method: Unsupported value",
        ),
        (
            "timeout 0",
            target_with("timeoutSeconds: 0"),
            String::new(),
            "spec.target.timeoutSeconds",
        ),
        (
            "timeout too long",
            target_with("timeoutSeconds: 301"),
            String::new(),
            "spec.target.timeoutSeconds",
        ),
        (
            "timeout not a number",
            target_with("timeoutSeconds: ten"),
            String::new(),
            "spec.target.timeoutSeconds",
        ),
        (
            "Idempotency-Key header",
            target_with("headers: {Idempotency-Key: mine}"),
            String::new(),
            "spec.target.headers",
        ),
        (
            "bad header name",
            target_with("headers: {\"bad name\": x}"),
            String::new(),
            "spec.target.headers",
        ),
        (
            "unknown target field",
            target_with("retries: 3"),
            String::new(),
            "spec.target.retries",
        ),
        (
            "unknown spec field",
            TARGET.into(),
            "  retries: 3\n".into(),
            "spec.retries",
        ),
        (
            "negative initial delay",
            TARGET.into(),
            "  retryPolicy:\n    initialDelaySeconds: -1\n".into(),
            "spec.retryPolicy.initialDelaySeconds",
        ),
        (
            "max delay below initial",
            TARGET.into(),
            "  retryPolicy:\n    initialDelaySeconds: 10\n    maxDelaySeconds: 5\n".into(),
            "spec.retryPolicy.maxDelaySeconds",
        ),
        (
            "max delay too long",
            TARGET.into(),
            "  retryPolicy:\n    maxDelaySeconds: 86401\n".into(),
            "spec.retryPolicy.maxDelaySeconds",
        ),
        (
            "multiplier 0",
            TARGET.into(),
            "  retryPolicy:\n    multiplier: 0\n".into(),
            "spec.retryPolicy.multiplier",
        ),
        (
            "multiplier 11",
            TARGET.into(),
            "  retryPolicy:\n    multiplier: 11\n".into(),
            "spec.retryPolicy.multiplier",
        ),
        (
            "maxAttempts 0",
            TARGET.into(),
            "  retryPolicy:\n    maxAttempts: 0\n".into(),
            "spec.retryPolicy.maxAttempts",
        ),
        (
            "unknown jitter",
            TARGET.into(),
            "  retryPolicy:\n    jitter: Sometimes\n".into(),
            "spec.retryPolicy.jitter: Unsupported value",
        ),
        (
            "payload over 256 KiB",
            TARGET.into(),
            big_payload.clone(),
            "spec.payload: Too long",
        ),
    ];

    // The payload policy is enforced once the API server has loaded it.
    let oversized = manifest("oversized", TARGET, &big_payload);
    wait_until(
        "the payload-limit policy to be active",
        Duration::from_secs(30),
        || async {
            let out = apply(&env, &oversized, true);
            String::from_utf8_lossy(&out.stderr)
                .contains("spec.payload: Too long")
                .then_some(())
        },
    )
    .await;

    // Far beyond the limit (and beyond client-side apply's annotation limit).
    let huge = manifest(
        "huge",
        TARGET,
        &format!("  payload:\n    blob: \"{}\"\n", "x".repeat(1_000_000)),
    );
    let out = kubectl_stdin(
        &["apply", "--server-side", "--namespace", &env.namespace, "-f", "-"],
        &huge,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("spec.payload: Too long"),
        "1 MB payload: {stderr}"
    );

    for (n, (what, target, rest, expected)) in cases.iter().enumerate() {
        let out = apply(&env, &manifest(&format!("bad-{n}"), target, rest), false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted, but must be refused");
        // Kubernetes before 1.33 puts the value's type after "Invalid value: "
        // (`"object": `); the field and the message are the same.
        let named = match expected.split_once("Invalid value: ") {
            Some((field, message)) => stderr.contains(&format!("{field}Invalid value: ")) && stderr.contains(message),
            None => stderr.contains(expected),
        };
        assert!(named, "{what}: error must name {expected:?}, got: {stderr}");
    }
    let stored = env.kubectl(&["get", "pendingjobs", "--output", "name"]);
    assert!(stored.status.success(), "{stored:?}");
    assert_eq!(String::from_utf8_lossy(&stored.stdout).trim(), "", "nothing was stored");
}

#[tokio::test]
async fn paths_that_climb_out_of_their_destination_are_refused_with_the_field_named() {
    let env = setup("invalid-path").await;
    let with_path = |n: usize, path: &str| {
        let path = serde_json::to_string(path).expect("json");
        manifest(
            &format!("path-{n}"),
            &format!("  destinationRef:\n    name: somewhere\n  target:\n    path: {path}\n"),
            "",
        )
    };
    let climbing = [
        "/../b/x",
        "/%2e%2e/b/x",
        "/.%2E/b/x",
        "/%2E./b/x",
        "/a/..",
        "/a/../../b",
        "/a/./b",
        "/a/..?x=1",
        "/a\\..\\b",
        "/a%2f..%2fb",
        "/a%5C..%5Cb",
    ];
    for (n, path) in climbing.iter().enumerate() {
        let out = apply(&env, &with_path(n, path), true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path}: accepted, but must be refused");
        assert!(
            stderr.contains("spec.target.path") && stderr.contains("must stay under the destination's URL"),
            "{path}: {stderr}"
        );
    }
    let fine = [
        "/v1/charges",
        "/a.b/..c/x...",
        "/x?redirect=../y",
        "/.well-known/thing",
        "/a/%2e%2ex",
    ];
    for (n, path) in fine.iter().enumerate() {
        let out = apply(&env, &with_path(100 + n, path), true);
        assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test]
async fn bad_signing_and_identity_settings_are_refused_with_the_field_named() {
    let env = setup("invalid-trust").await;
    let destination = |n: usize, spec: &str| {
        format!(
            "apiVersion: pendingjob.dev/v1alpha1\nkind: Destination\nmetadata:\n  name: trust-{n}\nspec:\n  url: https://api.example/\n{spec}"
        )
    };
    let account = "  auth:\n    serviceAccountToken:\n      serviceAccountName: caller\n";
    let cases = [
        (
            format!("{account}      audience: api\n      expirationSeconds: 300\n"),
            "spec.auth.serviceAccountToken.expirationSeconds",
        ),
        (
            format!("{account}      audience: api\n      expirationSeconds: 90000\n"),
            "spec.auth.serviceAccountToken.expirationSeconds",
        ),
        (
            account.to_owned(),
            "spec.auth.serviceAccountToken.audience: Required value",
        ),
        (
            format!("{account}      audience: api\n    bearerToken:\n      secretKeyRef: {{name: t, key: t}}\n"),
            "at most one of bearerToken, basic, oauth2ClientCredentials and serviceAccountToken",
        ),
        (
            "  signing: {}\n".to_owned(),
            "spec.signing.standardWebhooks: Required value",
        ),
        (
            "  signing:\n    standardWebhooks:\n      secretKeyRef: {name: keys}\n".to_owned(),
            "spec.signing.standardWebhooks.secretKeyRef.key: Required value",
        ),
    ];
    for (n, (spec, expected)) in cases.iter().enumerate() {
        let out = apply(&env, &destination(n, spec), true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec}: accepted, but must be refused");
        assert!(
            stderr.contains(expected),
            "{spec}: error must name {expected:?}, got: {stderr}"
        );
    }
    let fine = format!(
        "{account}      audience: api\n  signing:\n    standardWebhooks:\n      secretKeyRef: {{name: keys, key: keys}}\n"
    );
    let out = apply(&env, &destination(99, &fine), true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_minimal_job_gets_the_documented_defaults() {
    let env = setup("defaults").await;
    // A payload of any JSON type is accepted; a string, here.
    let out = apply(&env, &manifest("minimal", TARGET, "  payload: just text\n"), false);
    assert!(out.status.success(), "{out:?}");

    let job = env.api::<PendingJob>().get("minimal").await.expect("get");
    let policy = &job.spec.retry_policy;
    assert_eq!(job.spec.target.method, Method::Post);
    assert_eq!(job.spec.target.timeout_seconds, 10);
    assert_eq!(
        (
            policy.initial_delay_seconds,
            policy.max_delay_seconds,
            policy.multiplier
        ),
        (2, 300, 2)
    );
    assert_eq!((policy.max_attempts, policy.jitter), (None, Jitter::None));
    assert_eq!(job.spec.payload, Some(serde_json::json!("just text")));
    // No operator runs here: the status is the schema default, not a write.
    let status = job.status.expect("status defaults to {phase: Pending}");
    assert_eq!(
        (status.phase, status.attempts),
        (pendingjob_operator::api::Phase::Pending, 0)
    );
    let table = env.kubectl(&["get", "pj", "minimal"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("Pending"), "{table:?}");
}
