//! One trace from the caller through the queue to the target: the intake
//! and the operator export OTLP to a real Jaeger, and a job posted with a
//! known `traceparent` shows, in Jaeger's API, the intake's span, each
//! attempt with its call's status code, and the job's outcome, in the
//! caller's trace, also when the operator is SIGKILLed between attempts.
//! Nothing a tenant sent or a Secret holds appears in any exported span.

use std::time::Duration;

use axum::http::StatusCode;
use pendingjob_operator::api::{PendingJob, Phase};
use serde_json::json;

use crate::destinations::{apply_json, destination, secret};
use crate::intake::{Intake, writer_token};
use crate::jaeger::{Jaeger, spans};
use crate::jobs::{setup, wait_status};
use crate::processes::Operator;
use crate::support::{TestEnv, unique_name, wait_until};
use crate::targets::{Seen, Target};

/// The caller's trace, and the span the request was made in.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// How long spans may take to reach Jaeger and show in its API.
const EXPORTED: Duration = Duration::from_secs(60);

/// What must never be exported: a payload value, a Secret's value, a
/// header value of the Destination's and the caller's token.
struct Markers {
    payload: String,
    secret: String,
    header: String,
}

async fn calls(target: &Target, count: usize) -> Vec<Seen> {
    wait_until(
        &format!("{count} calls at the target"),
        Duration::from_secs(60),
        || async {
            let seen = target.seen();
            (seen.len() >= count).then_some(seen)
        },
    )
    .await
}

/// A trace id from a call's `traceparent`, and its parent span id.
fn carried(seen: &Seen) -> (String, String) {
    let traceparent = seen.header("traceparent").expect("every call carries a traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Posts a job to the intake in the caller's trace, lets the target fail
/// twice and then succeed, SIGKILLing the operator after the first attempt
/// when `kill`; returns the job's uid and the calls the target saw, and
/// the processes, which must live on until their last spans are exported.
async fn deliver(
    env: &TestEnv,
    jaeger: &Jaeger,
    target: &Target,
    markers: &Markers,
    kill: bool,
) -> (String, Vec<Seen>, (Operator, Intake)) {
    let token = writer_token(env).await;
    let ns = &env.namespace;
    let otlp = ["--otlp-endpoint", jaeger.otlp.as_str()];
    let mut operator = Operator::start(ns, &otlp);
    let intake = Intake::start(&otlp).await;
    let response = intake
        .http
        .post(format!(
            "{}/v1/namespaces/{ns}/destinations/api/jobs?path=/charge",
            intake.base
        ))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .header("tracestate", "caller=1")
        .body(json!({"order": markers.payload}).to_string())
        .send()
        .await
        .expect("POST to the intake");
    assert_eq!(response.status().as_u16(), 202);
    let answer: serde_json::Value = response.json().await.expect("JSON");
    let (name, uid) = (
        answer["name"].as_str().expect("name"),
        answer["uid"].as_str().expect("uid"),
    );
    let job: PendingJob = env.api().get(name).await.expect("the job");
    let annotations = job.metadata.annotations.unwrap_or_default();
    assert!(
        annotations["pendingjob.dev/traceparent"].starts_with(&format!("00-{TRACE_ID}-")),
        "the job keeps the caller's trace: {annotations:?}"
    );
    assert_eq!(annotations["pendingjob.dev/tracestate"], "caller=1");

    calls(target, 1).await;
    if kill {
        // The first attempt's spans are out before the operator dies.
        wait_until("the first attempt in Jaeger", EXPORTED, || async {
            let trace = jaeger.trace(TRACE_ID).await?;
            spans(&trace).iter().any(|s| s.name() == "attempt").then_some(())
        })
        .await;
        operator.kill();
        operator = Operator::start(ns, &otlp);
    }
    calls(target, 2).await;
    target.answer(StatusCode::OK);
    let done = wait_status(env, name, "Succeeded", Duration::from_secs(60), |s| {
        s.phase == Phase::Succeeded
    })
    .await;
    assert_eq!(done.attempts, 3);
    assert!(
        operator.log_text().contains(&format!("trace_id={TRACE_ID}")),
        "log lines carry the trace id"
    );
    (uid.to_owned(), target.seen(), (operator, intake))
}

/// The Destination: a bearer token from a Secret, and a plain header.
fn destination_to(env: &TestEnv, target: &Target, markers: &Markers) {
    apply_json(env, &secret("token", "Opaque", json!({"token": markers.secret})));
    apply_json(
        env,
        &destination(
            "api",
            json!({"url": target.base,
                   "headers": [{"name": "X-Tenant", "value": markers.header}],
                   "auth": {"bearerToken": {"secretKeyRef": {"name": "token", "key": "token"}}}}),
        ),
    );
}

/// Asserts the trace Jaeger holds: the intake's span under the caller's,
/// three attempts under it, each with an HTTP call whose status code is the
/// target's answer and whose span id is the parent the call carried, the
/// status writes, and the outcome.
async fn check_trace(jaeger: &Jaeger, target: &Target, uid: &str, seen: &[Seen], markers: &Markers) {
    let trace = wait_until("the whole trace in Jaeger", EXPORTED, || async {
        let trace = jaeger.trace(TRACE_ID).await?;
        let names: Vec<String> = spans(&trace).iter().map(|s| s.name().to_owned()).collect();
        let count = |name: &str| names.iter().filter(|n| *n == name).count();
        let intake = count("POST /v1/namespaces/{namespace}/destinations/{destination}/jobs");
        let operator = count("attempt") == 3 && count("POST") == 3 && count("status write") == 3;
        (intake == 1 && operator && count("outcome") == 1).then_some(trace)
    })
    .await;
    let all = spans(&trace);
    let named = |name: &str| all.iter().filter(|s| s.name() == name).collect::<Vec<_>>();
    let intake = named("POST /v1/namespaces/{namespace}/destinations/{destination}/jobs");
    assert_eq!(intake.len(), 1, "one intake span");
    assert_eq!(
        intake[0].parent(),
        Some(CALLER_SPAN),
        "the intake continues the caller's span"
    );
    assert_eq!(intake[0].tag("http.response.status_code"), Some(&json!(202)));
    let mut attempts = named("attempt");
    attempts.sort_by_key(|s| s.tag("pendingjob.attempt").and_then(serde_json::Value::as_i64));
    let http = named("POST");
    assert_eq!(http.len(), 3, "one HTTP client span per call");
    let mut codes = Vec::new();
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(
            attempt.parent(),
            Some(intake[0].id()),
            "attempt {n} is a child of the intake's span"
        );
        assert_eq!(attempt.tag("pendingjob.job.uid"), Some(&json!(uid)));
        assert_eq!(attempt.tag("pendingjob.destination"), Some(&json!("api")));
        assert_eq!(attempt.tag("pendingjob.attempt"), Some(&json!(n + 1)));
        let call = http
            .iter()
            .find(|h| h.parent() == Some(attempt.id()))
            .expect("the attempt's call");
        assert_eq!(call.tag("http.request.method"), Some(&json!("POST")));
        assert_eq!(call.tag("url.full"), Some(&json!(format!("{}/charge", target.base))));
        codes.push(call.tag("http.response.status_code").cloned());
        // The n-th call the target saw carried this call's span as its parent.
        let (trace_id, parent) = carried(&seen[n]);
        assert_eq!(trace_id, TRACE_ID, "call {n} is in the caller's trace");
        assert_eq!(parent, call.id(), "call {n} names its own attempt's HTTP span");
        assert_eq!(seen[n].header("tracestate").as_deref(), Some("caller=1"));
    }
    assert_eq!(codes, [Some(json!(503)), Some(json!(503)), Some(json!(200))]);
    let outcome = named("outcome");
    assert_eq!(outcome[0].tag("pendingjob.phase"), Some(&json!("Succeeded")));
    assert_eq!(outcome[0].tag("pendingjob.attempts"), Some(&json!(3)));

    // Nothing secret, and no value a tenant sent, in any exported span.
    let text = trace.to_string();
    for (what, value) in [
        ("the payload", &markers.payload),
        ("the Secret's value", &markers.secret),
        ("the Destination's header value", &markers.header),
    ] {
        assert!(!text.contains(value.as_str()), "{what} is in Jaeger's JSON");
    }
    assert!(text.contains(uid), "the spans name the job");
    // One trace, not two: no span of this job's outside the caller's trace.
    for service in ["pendingjob-operator", "pendingjob-intake"] {
        for other in jaeger.traces_of(service).await {
            let text = other.to_string();
            if text.contains(uid) {
                assert_eq!(other["traceID"], TRACE_ID, "a span of the job is in another trace");
            }
            for value in [&markers.payload, &markers.secret, &markers.header] {
                assert!(!text.contains(value.as_str()), "a marker is in Jaeger's JSON");
            }
        }
    }
}

fn markers() -> Markers {
    Markers {
        payload: unique_name("payload-marker"),
        secret: unique_name("secret-marker"),
        header: unique_name("header-marker"),
    }
}

/// The whole scenario, in a namespace of its own named after `name`.
async fn one_trace(name: &str, kill: bool) {
    let env = setup(name).await;
    let jaeger = Jaeger::start().await;
    let target = Target::start(StatusCode::SERVICE_UNAVAILABLE).await;
    // Its 503s quote the payload back, as a careless error page would.
    target.echo();
    let markers = markers();
    destination_to(&env, &target, &markers);
    let (uid, seen, _running) = deliver(&env, &jaeger, &target, &markers, kill).await;
    check_trace(&jaeger, &target, &uid, &seen, &markers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_runs_through_the_intake_and_every_attempt_to_the_target() {
    one_trace("tracing", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_between_attempts_continues_the_same_trace() {
    one_trace("tracing-kill", true).await;
}

/// A job applied by hand with its context in annotations, given up at once,
/// sends its dead letter in the same trace (a "dead letter" span with its
/// own call), and the standard variables apply: `OTEL_SERVICE_NAME` names
/// the service, and a caller's "not sampled" is followed, exporting nothing
/// while the call still carries the context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_follows_the_jobs_trace_and_sampling_follows_the_caller() {
    let env = setup("tracing-dead-letter").await;
    let jaeger = Jaeger::start().await;
    let target = Target::start(StatusCode::BAD_REQUEST).await;
    let receiver = Target::start(StatusCode::OK).await;
    apply_json(&env, &destination("api", json!({"url": target.base})));
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    for (name, traceparent) in [
        ("sampled", format!("00-{TRACE_ID}-{CALLER_SPAN}-01")),
        ("unsampled", format!("00-{unsampled}-b7ad6b7169203331-00")),
    ] {
        apply_json(
            &env,
            &json!({"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
                    "metadata": {"name": name, "annotations": {"pendingjob.dev/traceparent": traceparent}},
                    "spec": {"destinationRef": {"name": "api"}, "target": {"path": "/x"}, "payload": {"job": name},
                             "retryPolicy": {"maxAttempts": 1},
                             "deadLetter": {"url": format!("{}/dead-letters", receiver.base)}}}),
        );
    }
    let service = unique_name("traced-operator");
    let otlp = ["--otlp-endpoint", jaeger.otlp.as_str()];
    let _operator = Operator::start_with_env(&env.namespace, &otlp, &[("OTEL_SERVICE_NAME", service.as_str())]);
    let letters = calls(&receiver, 2).await;
    let letter = |job: &str| {
        let letter = letters
            .iter()
            .find(|l| l.body["name"] == json!(job))
            .expect("a dead letter");
        carried(letter)
    };
    // The spans leave in batches: wait for every one asserted on below.
    let trace = wait_until("the dead letter's spans in Jaeger", EXPORTED, || async {
        let trace = jaeger.trace(TRACE_ID).await?;
        let all = spans(&trace);
        let named = |name: &str| all.iter().find(|s| s.name() == name);
        // Its HTTP call, not its status write, which is a child too.
        let call =
            named("dead letter").is_some_and(|d| all.iter().any(|s| s.parent() == Some(d.id()) && s.name() == "POST"));
        (call && named("attempt").is_some() && named("outcome").is_some()).then_some(trace)
    })
    .await;
    let all = spans(&trace);
    let attempt = all.iter().find(|s| s.name() == "attempt").expect("the attempt");
    assert_eq!(
        attempt.parent(),
        Some(CALLER_SPAN),
        "the attempt continues the annotation's span"
    );
    let dead = all.iter().find(|s| s.name() == "dead letter").expect("the dead letter");
    assert_eq!(dead.parent(), Some(CALLER_SPAN));
    let call = all
        .iter()
        .find(|s| s.parent() == Some(dead.id()) && s.name() == "POST")
        .expect("the dead letter's call");
    assert_eq!(letter("sampled"), (TRACE_ID.to_owned(), call.id().to_owned()));
    assert_eq!(call.tag("http.response.status_code"), Some(&json!(200)));
    let outcome = all.iter().find(|s| s.name() == "outcome").expect("the outcome");
    assert_eq!(outcome.tag("pendingjob.phase"), Some(&json!("Failed")));
    assert_eq!(
        trace["processes"]
            .as_object()
            .expect("processes")
            .values()
            .next()
            .expect("a process")["serviceName"],
        json!(service),
        "OTEL_SERVICE_NAME names the service"
    );
    // Not sampled: the calls carry the caller's trace, with the flag, and
    // nothing of it is exported.
    let (trace_id, _) = letter("unsampled");
    assert_eq!(trace_id, unsampled);
    let first = target
        .seen()
        .into_iter()
        .find(|s| s.body == json!({"job": "unsampled"}))
        .expect("its call");
    assert!(
        first
            .header("traceparent")
            .is_some_and(|t| t.starts_with(&format!("00-{unsampled}-")) && t.ends_with("-00")),
        "{:?}",
        first.header("traceparent")
    );
    assert!(
        jaeger.trace(unsampled).await.is_none(),
        "an unsampled trace is exported"
    );
}

/// Tracing off: no span is exported, and each call hands on the context
/// the job's annotations hold, as set by hand, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tracing_off_a_call_carries_the_jobs_own_context() {
    let env = setup("tracing-off").await;
    let target = Target::start(StatusCode::OK).await;
    apply_json(&env, &destination("api", json!({"url": target.base})));
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    apply_json(
        &env,
        &json!({"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
                "metadata": {"name": "by-hand", "annotations": {"pendingjob.dev/traceparent": traceparent,
                                                                 "pendingjob.dev/tracestate": "k=v"}},
                "spec": {"destinationRef": {"name": "api"}, "target": {"path": "/x"}, "payload": {"n": 1}}}),
    );
    apply_json(
        &env,
        &json!({"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
                "metadata": {"name": "malformed", "annotations": {"pendingjob.dev/traceparent": "00-zz-01"}},
                "spec": {"destinationRef": {"name": "api"}, "target": {"path": "/x"}, "payload": {"n": 2}}}),
    );
    let _operator = Operator::start(&env.namespace, &[]);
    let seen = calls(&target, 2).await;
    let by_hand = seen
        .iter()
        .find(|s| s.body == json!({"n": 1}))
        .expect("the first job's call");
    assert_eq!(by_hand.header("traceparent"), Some(traceparent));
    assert_eq!(by_hand.header("tracestate").as_deref(), Some("k=v"));
    let malformed = seen
        .iter()
        .find(|s| s.body == json!({"n": 2}))
        .expect("the second job's call");
    assert_eq!(
        malformed.header("traceparent"),
        None,
        "a malformed context is no context"
    );
    wait_status(&env, "malformed", "Succeeded", Duration::from_secs(30), |s| {
        s.phase == Phase::Succeeded
    })
    .await;
}
