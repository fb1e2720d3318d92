use serde_json::{Value, json};

use super::*;

const NOW: &str = "2026-12-02T15:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// A job calling Destination `api2`, created a minute before NOW, with `spec`
/// and `status` merged over it.
fn job(spec: Value, status: Value) -> PendingJob {
    let mut value = json!({
        "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
        "metadata": {"name": "hello", "namespace": "shop", "creationTimestamp": "2026-12-02T14:59:00Z"},
        "spec": {"destinationRef": {"name": "api2"}, "target": {"path": "/x"}},
    });
    merge(&mut value["spec"], spec);
    if !status.is_null() {
        value["status"] = status;
    }
    serde_json::from_value(value).unwrap()
}

fn destination(spec: Value, status: Value) -> Destination {
    let mut value = json!({
        "apiVersion": "pendingjob.dev/v1alpha1", "kind": "Destination",
        "metadata": {"name": "api2", "namespace": "shop"},
        "spec": {"url": "http://api2.shop.svc:8080"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "m",
                                   "lastTransitionTime": "2026-12-02T14:00:00Z"}]},
    });
    merge(&mut value["spec"], spec);
    merge(&mut value["status"], status);
    serde_json::from_value(value).unwrap()
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn each_wait_is_found_in_the_operators_order() {
    let retrying = json!({"phase": "Retrying", "attempts": 2, "retryCount": 2,
                          "nextRetryTime": "2026-12-02T15:00:04.000000Z"});
    let due = json!({"phase": "Retrying", "attempts": 2, "nextRetryTime": "2026-12-02T14:59:58.000000Z"});
    let ready = destination(json!({}), json!({}));
    let not_ready = destination(
        json!({}),
        json!({"conditions": [{"type": "Ready", "status": "False", "reason": "SecretNotFound",
                               "message": "secret \"token\" not found", "lastTransitionTime": NOW}]}),
    );
    let suspended = destination(json!({"suspend": true}), json!({}));
    let open = destination(
        json!({"circuitBreaker": {"consecutiveFailures": 5, "openSeconds": 30}}),
        json!({"circuit": "Open", "circuitOpenUntil": "2026-12-02T15:00:20Z"}),
    );
    let full = destination(json!({"maxConcurrency": 2}), json!({"inFlight": 2}));
    let rated = destination(json!({"rateLimit": {"requestsPerSecond": 5}}), json!({"inFlight": 1}));
    let cases: Vec<(&str, PendingJob, Lookup<'_>, Wait)> = vec![
        (
            "succeeded",
            job(
                json!({}),
                json!({"phase": "Succeeded", "attempts": 1, "completionTime": "2026-12-02T14:59:30Z",
                                  "conditions": [{"type": "Succeeded", "status": "True", "reason": "Delivered",
                                                  "message": "HTTP 200", "lastTransitionTime": NOW}]}),
            ),
            Lookup::Found(&ready),
            Wait::Finished {
                phase: Phase::Succeeded,
                at: Some(at("2026-12-02T14:59:30Z")),
                message: "HTTP 200".into(),
            },
        ),
        (
            "suspended, even when its backoff is over",
            job(
                json!({"suspend": true}),
                json!({"phase": "Suspended", "suspendTime": "2026-12-02T14:58:00.000000Z"}),
            ),
            Lookup::Found(&not_ready),
            Wait::Suspended {
                since: Some(at("2026-12-02T14:58:00Z")),
            },
        ),
        (
            "notBefore ahead",
            job(json!({"notBefore": "2026-12-02T16:00:00Z"}), Value::Null),
            Lookup::Found(&ready),
            Wait::NotBefore(at("2026-12-02T16:00:00Z")),
        ),
        (
            "backoff ahead, before the Destination's gates",
            job(json!({}), retrying),
            Lookup::Found(&not_ready),
            Wait::Backoff(at("2026-12-02T15:00:04Z")),
        ),
        (
            "a missing Destination",
            job(json!({}), due.clone()),
            Lookup::Missing,
            Wait::DestinationMissing("api2".into()),
        ),
        (
            "an unreadable Destination",
            job(json!({}), due.clone()),
            Lookup::Unreadable("Forbidden".into()),
            Wait::DestinationUnreadable("api2".into(), "Forbidden".into()),
        ),
        (
            "a suspended Destination",
            job(json!({}), due.clone()),
            Lookup::Found(&suspended),
            Wait::DestinationSuspended("api2".into()),
        ),
        (
            "a Destination not Ready",
            job(json!({}), due.clone()),
            Lookup::Found(&not_ready),
            Wait::DestinationNotReady {
                name: "api2".into(),
                reason: "SecretNotFound".into(),
                message: "secret \"token\" not found".into(),
            },
        ),
        (
            "an open circuit",
            job(json!({}), due.clone()),
            Lookup::Found(&open),
            Wait::CircuitOpen {
                name: "api2".into(),
                until: Some(at("2026-12-02T15:00:20Z")),
            },
        ),
        (
            "every call slot taken",
            job(json!({}), due.clone()),
            Lookup::Found(&full),
            Wait::CallSlot { in_flight: 2, max: 2 },
        ),
        (
            "a rate limit",
            job(json!({}), due.clone()),
            Lookup::Found(&rated),
            Wait::RateLimited {
                requests_per_second: 5,
                burst: 5,
            },
        ),
        (
            "due, ready",
            job(json!({}), due.clone()),
            Lookup::Found(&ready),
            Wait::Due(at("2026-12-02T14:59:58Z")),
        ),
        (
            "new, to a raw URL: due since its creation",
            job(
                json!({"destinationRef": null, "target": {"url": "http://x"}}),
                Value::Null,
            ),
            Lookup::None,
            Wait::Due(at("2026-12-02T14:59:00Z")),
        ),
    ];
    for (what, job, lookup, expected) in cases {
        assert_eq!(decide(&job, &lookup, now()), expected, "{what}");
    }
}

#[test]
fn the_answer_reads_as_one_screen() {
    let job = job(
        json!({"retryPolicy": {"maxAttempts": 5}}),
        json!({"phase": "Retrying", "attempts": 2, "retryCount": 2, "lastStatusCode": 503,
               "lastError": "HTTP 503 Service Unavailable", "lastAttemptTime": "2026-12-02T14:59:56.000000Z",
               "nextRetryTime": "2026-12-02T15:00:04.000000Z"}),
    );
    let answer = explain(&job, &Lookup::Found(&destination(json!({}), json!({}))), now());
    assert_eq!(answer.waits_for, "backoff until 2026-12-02T15:00:04Z (in 4s)");
    assert_eq!(
        answer.last_attempt,
        "#2 at 2026-12-02T14:59:56Z (4s ago): HTTP 503 Service Unavailable"
    );
    assert_eq!(
        answer.next,
        "attempt #3 at 2026-12-02T15:00:04Z (in 4s); gives up after attempt #5"
    );
}

#[test]
fn a_failed_job_waits_for_a_redrive() {
    let job = job(
        json!({}),
        json!({"phase": "Failed", "attempts": 1, "lastStatusCode": 400, "lastAttemptTime": "2026-12-02T14:59:56.000000Z"}),
    );
    let answer = explain(&job, &Lookup::None, now());
    assert_eq!(answer.waits_for, "nothing: Failed");
    assert_eq!(answer.next, "nothing, unless redriven (kubectl pj retry)");
    assert_eq!(answer.last_attempt, "#1 at 2026-12-02T14:59:56Z (4s ago): HTTP 400");
}
