//! `kubectl pj` (src/bin/kubectl-pj.rs) against the real API server and a
//! running operator: each command's output and its effect, and that it needs
//! no more rights than kubectl and words refusals as kubectl does. Run with
//! `--nocapture` to see the outputs the README shows.

use std::path::Path;
use std::process::{Command, Output};

use axum::http::StatusCode;
use pendingjob_operator::api::{Destination, PendingJob, Phase, RETRY_ANNOTATION};
use serde_json::json;

use crate::destinations::{apply_json, destination, job_to};
use crate::jobs::{SOON, job, setup, wait_status};
use crate::processes::Operator;
use crate::support::{TestEnv, kubeconfig_file, kubectl, wait_until};
use crate::targets::Target;

/// `kubectl-pj ARGS` with the tests' kubeconfig (or `kubeconfig`).
fn pj(kubeconfig: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubectl-pj"));
    command.args(args);
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    let out = command.output().expect("running kubectl-pj");
    println!(
        "$ kubectl pj {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kubectl-pj -n NAMESPACE ARGS`, which must succeed; its stdout.
fn pj_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = pj(None, &[&["-n", env.namespace.as_str()], args].concat());
    assert!(
        out.status.success(),
        "kubectl pj {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn to_url(name: &str, url: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut job = json!({
        "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob", "metadata": {"name": name},
        "spec": {"target": {"url": url}, "payload": {"n": 1}},
    });
    if let (Some(spec), serde_json::Value::Object(extra)) = (job["spec"].as_object_mut(), extra) {
        spec.extend(extra);
    }
    job
}

#[tokio::test]
async fn why_names_what_each_job_waits_for() {
    let env = setup("pj-why").await;
    let failing = Target::start(StatusCode::SERVICE_UNAVAILABLE).await;
    let _operator = Operator::start(&env.namespace, &[]);
    apply_json(&env, &destination("api2", json!({"url": failing.base})));
    let locked =
        json!({"url": failing.base, "auth": {"bearerToken": {"secretKeyRef": {"name": "api-token", "key": "token"}}}});
    apply_json(&env, &destination("locked", locked));
    let mut backoff = job_to("payment-42", "api2", "/charge");
    backoff["spec"]["retryPolicy"] = json!({"initialDelaySeconds": 300, "maxDelaySeconds": 300, "maxAttempts": 5});
    apply_json(&env, &backoff);
    apply_json(&env, &job_to("held", "locked", "/x"));
    apply_json(&env, &job_to("lost", "ghost", "/x"));
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    apply_json(&env, &to_url("later", &failing.base, json!({"notBefore": later})));
    apply_json(&env, &to_url("paused", &failing.base, json!({"suspend": true})));

    wait_status(&env, "payment-42", "one failed attempt", SOON, |s| s.attempts == 1).await;
    let why = pj_ok(&env, &["why", "payment-42"]);
    for line in [
        format!(
            "Job:          {}/payment-42 (Retrying; attempts: 1, retries: 1)",
            env.namespace
        ),
        "Calls:        POST Destination api2 + /charge".to_owned(),
        "Waits for:    backoff until ".to_owned(),
        "Last attempt: #1 at ".to_owned(),
        "HTTP 503 Service Unavailable".to_owned(),
        "Next:         attempt #2 at ".to_owned(),
        "gives up after attempt #5".to_owned(),
        "Destination:  api2 (Ready True, circuit none, ".to_owned(),
    ] {
        assert!(why.contains(&line), "{line:?} in:\n{why}");
    }

    wait_until("locked to be not Ready", SOON, || async {
        let d = env.api::<Destination>().get("locked").await.ok()?;
        d.status?.conditions.iter().any(|c| c.status == "False").then_some(())
    })
    .await;
    let why = pj_ok(&env, &["why", "held"]);
    assert!(
        why.contains("Waits for:    Destination \"locked\" to be Ready: SecretNotFound: "),
        "{why}"
    );
    assert!(why.contains("Last attempt: none yet"), "{why}");
    let why = pj_ok(&env, &["why", "lost"]);
    assert!(
        why.contains("Waits for:    Destination \"ghost\", which does not exist"),
        "{why}"
    );
    let why = pj_ok(&env, &["why", "later"]);
    assert!(why.contains("Waits for:    notBefore: "), "{why}");
    let why = pj_ok(&env, &["why", "paused"]);
    assert!(why.contains("Waits for:    resume"), "{why}");

    let missing = pj(None, &["-n", &env.namespace, "why", "nosuch"]);
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).trim(),
        "Error from server (NotFound): pendingjobs.pendingjob.dev \"nosuch\" not found",
        "kubectl's words"
    );
}

#[tokio::test]
async fn retry_suspend_resume_and_stats_do_what_they_say() {
    let env = setup("pj-writes").await;
    let refusing = Target::start(StatusCode::BAD_REQUEST).await;
    let accepting = Target::start(StatusCode::OK).await;
    let _operator = Operator::start(&env.namespace, &[]);
    apply_json(&env, &to_url("bad", &refusing.base, json!({})));
    apply_json(&env, &to_url("good", &accepting.base, json!({})));
    apply_json(&env, &destination("api2", json!({"url": accepting.base})));
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let mut waiting = job_to("waiting", "api2", "/x");
    waiting["spec"]["notBefore"] = json!(later);
    apply_json(&env, &waiting);
    wait_status(&env, "bad", "Failed", SOON, |s| s.phase == Phase::Failed).await;
    wait_status(&env, "good", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;

    let stats = pj_ok(&env, &["stats"]);
    let row = |name: &str, counts: [usize; 5]| format!("{name:<32}{}", counts.map(|n| format!("{n:>10}")).concat());
    assert!(stats.contains(&row("(url)", [0, 0, 0, 1, 1])), "{stats}");
    assert!(stats.contains(&row("api2", [1, 0, 0, 0, 0])), "{stats}");
    assert!(stats.contains(&row("TOTAL (3)", [1, 0, 0, 1, 1])), "{stats}");
    assert!(stats.contains("Oldest due job: none"), "{stats}");
    let everywhere = pj(None, &["stats", "-A"]);
    assert!(String::from_utf8_lossy(&everywhere.stdout).contains(&format!("{}/api2", env.namespace)));

    let out = pj_ok(&env, &["retry", "--failed"]);
    assert!(
        out.contains(&format!(
            "pendingjob.pendingjob.dev/bad marked for retry in {}",
            env.namespace
        )),
        "{out}"
    );
    assert!(out.ends_with("1 done, 0 refused\n"), "{out}");
    let annotation = |j: &PendingJob| {
        j.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RETRY_ANNOTATION).cloned())
    };
    assert!(
        annotation(&job(&env, "bad").await).is_some(),
        "the Failed job is marked"
    );
    assert!(annotation(&job(&env, "good").await).is_none(), "only Failed jobs are");
    // The operator acts on it: a redrive, recorded, and a second call.
    wait_status(&env, "bad", "redriven and failed again", SOON, |s| {
        s.redrive.is_some() && s.phase == Phase::Failed
    })
    .await;
    assert_eq!(refusing.seen().len(), 2);

    let out = pj_ok(&env, &["suspend", "waiting", "destination/api2"]);
    assert!(out.contains("pendingjob.pendingjob.dev/waiting suspended"), "{out}");
    assert!(out.contains("destination.pendingjob.dev/api2 suspended"), "{out}");
    assert!(job(&env, "waiting").await.spec.suspend);
    assert!(env.api::<Destination>().get("api2").await.expect("get").spec.suspend);
    wait_status(&env, "waiting", "Suspended", SOON, |s| s.phase == Phase::Suspended).await;
    let out = pj_ok(&env, &["resume", "pj/waiting", "dest/api2"]);
    assert!(out.ends_with("2 done, 0 refused\n"), "{out}");
    assert!(!job(&env, "waiting").await.spec.suspend);
    assert!(!env.api::<Destination>().get("api2").await.expect("get").spec.suspend);

    let out = pj(None, &["-n", &env.namespace, "retry", "good", "nosuch"]);
    assert!(!out.status.success(), "a refusal fails the command");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("1 done, 1 refused\n"));
    assert!(annotation(&job(&env, "good").await).is_some());
}

#[tokio::test]
async fn it_needs_no_more_rights_than_kubectl_and_words_refusals_like_it() {
    let env = setup("pj-rbac").await;
    let refusing = Target::start(StatusCode::BAD_REQUEST).await;
    apply_json(&env, &to_url("bad", &refusing.base, json!({})));
    apply_json(&env, &job_to("to-api2", "api2", "/x"));
    // A viewer: get and list jobs, nothing else.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "viewer"},
                      "rules": [{"apiGroups": ["pendingjob.dev"], "resources": ["pendingjobs"], "verbs": ["get", "list"]}]});
    apply_json(&env, &role);
    let token = env.service_account_token("viewer").await;
    let out = env.kubectl(&[
        "create",
        "rolebinding",
        "viewer",
        "--role=viewer",
        &format!("--serviceaccount={}:viewer", env.namespace),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let viewer = kubeconfig_file(Some(&token), None);
    let ns = env.namespace.as_str();

    wait_until("the viewer's Role to apply", SOON, || async {
        pj(Some(&viewer), &["-n", ns, "stats"]).status.success().then_some(())
    })
    .await;
    let why = pj(Some(&viewer), &["-n", ns, "why", "to-api2"]);
    assert!(why.status.success(), "why needs only get");
    assert!(
        String::from_utf8_lossy(&why.stdout)
            .contains("Destination \"api2\", which cannot be read: Error from server (Forbidden): "),
        "the Destination it may not read is named, in kubectl's words"
    );

    let theirs = kubectl(&[
        "--kubeconfig",
        &viewer.to_string_lossy(),
        "-n",
        ns,
        "annotate",
        "pj",
        "bad",
        "pendingjob.dev/retry=1",
        "--overwrite",
    ]);
    let ours = pj(Some(&viewer), &["-n", ns, "retry", "bad"]);
    assert!(!theirs.status.success() && !ours.status.success());
    let first_line = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(first_line(&ours), first_line(&theirs), "the refusal in kubectl's words");
    assert!(
        first_line(&ours).starts_with("Error from server (Forbidden): "),
        "{}",
        first_line(&ours)
    );
    // kubectl patch gets the object first, and is refused the get; we only patch.
    let ours = pj(Some(&viewer), &["-n", ns, "suspend", "destination/api2"]);
    assert!(
        first_line(&ours).starts_with(&format!(
            "Error from server (Forbidden): destinations.pendingjob.dev \"api2\" is forbidden: User \"system:serviceaccount:{ns}:viewer\" cannot patch resource"
        )),
        "{}",
        first_line(&ours)
    );

    // --context picks a context other than the current one.
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kubeconfig_file(None, None)).expect("kubeconfig")).expect("JSON");
    config["clusters"]
        .as_array_mut()
        .expect("clusters")
        .push(json!({"name": "gone", "cluster": {"server": "https://127.0.0.1:1"}}));
    config["contexts"]
        .as_array_mut()
        .expect("contexts")
        .push(json!({"name": "gone", "context": {"cluster": "gone", "user": "test", "namespace": ns}}));
    config["contexts"][0]["context"]["namespace"] = json!(ns);
    config["current-context"] = json!("gone");
    let two = std::env::temp_dir()
        .join("pendingjob-it")
        .join(crate::support::unique_name("two-contexts"));
    std::fs::write(&two, serde_json::to_vec(&config).expect("JSON")).expect("writing");
    assert!(
        !pj(Some(&two), &["why", "bad"]).status.success(),
        "the current context's server is gone"
    );
    let out = pj(Some(&two), &["--context", "test", "why", "bad"]);
    assert!(
        out.status.success(),
        "--context test, in that context's namespace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
