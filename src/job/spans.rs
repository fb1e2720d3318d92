//! The spans of a job's work, in the trace its annotations name
//! ([`TraceContext`]): each attempt, with its waits as events, its HTTP
//! call (the standard HTTP client attributes) and its status write; each
//! dead-letter call; and the job's outcome.
//!
//! Attributes are names, uids, counts and codes. A URL is recorded without
//! its query, fragment or user info; no header value, payload, response
//! body or error text is ever an attribute.

use std::time::Duration;

use tracing::field::Empty;
use tracing::{Span, info_span};

use crate::api::{JobKey, Method, PendingJobStatus, Phase};
use crate::delivery::outcome::Outcome;
use crate::delivery::trace_context::TraceContext;
use crate::observe::traces::{self, attribute};

/// An attempt's span and the trace it continues.
pub struct Traced {
    /// The attempt's (or dead letter's) span.
    pub span: Span,
    /// The job's stored context: what a call hands on when no span is exported.
    pub stored: Option<TraceContext>,
}

/// How long an attempt waited before its call, step by step.
#[derive(Clone, Copy, Debug, Default)]
pub struct Waits {
    /// For its destination to be usable (credentials and tokens included).
    pub destination: Duration,
    /// For the destination's rate limit.
    pub rate: Duration,
    /// For a call slot.
    pub slot: Duration,
}

fn job_attributes(span: &Span, key: &JobKey, uid: &str, destination: Option<&str>) {
    attribute(span, "k8s.namespace.name", key.0.clone());
    attribute(span, "pendingjob.job.name", key.1.clone());
    attribute(span, "pendingjob.job.uid", uid.to_owned());
    if let Some(destination) = destination {
        attribute(span, "pendingjob.destination", destination.to_owned());
    }
}

/// The span of attempt `number` of job `key` (`uid`), in `stored`'s trace,
/// with the waits before its call as events.
pub fn attempt(
    key: &JobKey,
    uid: &str,
    destination: Option<&str>,
    number: i32,
    stored: Option<TraceContext>,
    waits: Waits,
) -> Traced {
    let span = info_span!(parent: None, "attempt", trace_id = Empty);
    traces::continue_trace(&span, stored.as_ref());
    job_attributes(&span, key, uid, destination);
    attribute(&span, "pendingjob.attempt", i64::from(number));
    traces::waited(&span, "destination ready", waits.destination);
    traces::waited(&span, "rate limit passed", waits.rate);
    traces::waited(&span, "call slot acquired", waits.slot);
    Traced { span, stored }
}

/// The span of the dead-letter call of job `key` (`uid`).
pub fn dead_letter(key: &JobKey, uid: &str, destination: Option<&str>, stored: Option<TraceContext>) -> Traced {
    let span = info_span!(parent: None, "dead letter", trace_id = Empty);
    traces::continue_trace(&span, stored.as_ref());
    job_attributes(&span, key, uid, destination);
    Traced { span, stored }
}

/// The HTTP client span of a call within `traced` to `url` with `method`,
/// and the context the call carries.
pub fn http(traced: &Traced, method: Method, url: &str) -> (Span, Option<TraceContext>) {
    let method = match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    };
    let span = info_span!(parent: &traced.span, "http call", otel.name = method, otel.kind = "client");
    attribute(&span, "http.request.method", method.to_owned());
    for (key, value) in url_attributes(url) {
        attribute(&span, key, value);
    }
    let carried = traces::outgoing(&span, traced.stored.as_ref());
    (span, carried)
}

/// The standard attributes of a call to `url`: its scheme, host and port,
/// and the URL itself without its query, fragment or user info (where
/// tenants put credentials, and which no trace needs).
fn url_attributes(url: &str) -> Vec<(&'static str, opentelemetry::Value)> {
    let Ok(mut url) = reqwest::Url::parse(url) else {
        return Vec::new();
    };
    let mut attributes = vec![("url.scheme", url.scheme().to_owned().into())];
    if let Some(host) = url.host_str() {
        attributes.push(("server.address", host.to_owned().into()));
    }
    if let Some(port) = url.port_or_known_default() {
        attributes.push(("server.port", i64::from(port).into()));
    }
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    attributes.push(("url.full", url.to_string().into()));
    attributes
}

/// Records what the call of `span` came to: its status code, and whether
/// it failed.
pub fn answered(span: &Span, outcome: &Outcome) {
    if let Some(code) = outcome.code() {
        attribute(span, "http.response.status_code", i64::from(code));
    }
    let failed = !matches!(outcome, Outcome::Delivered { .. });
    if failed {
        let kind = match outcome.code() {
            Some(code) => code.to_string(),
            None => "_OTHER".to_owned(),
        };
        attribute(span, "error.type", kind);
        traces::failed(span);
    }
}

/// The span of the status write that records an attempt.
pub fn write(traced: &Traced) -> Span {
    info_span!(parent: &traced.span, "status write")
}

/// Records how the write of `span` ended: `recorded`, `superseded`,
/// `gone`, or `abandoned`.
pub fn written(span: &Span, result: &'static str) {
    attribute(span, "pendingjob.write", result);
}

/// Records the attempt's result on its span, and, when it finished the
/// job, a span of the job's outcome beside the attempts.
pub fn recorded(traced: &Traced, key: &JobKey, uid: &str, status: &PendingJobStatus) {
    let phase = format!("{:?}", status.phase);
    attribute(&traced.span, "pendingjob.phase", phase.clone());
    if !status.phase.is_terminal() {
        return;
    }
    let span = info_span!(parent: None, "outcome", trace_id = Empty);
    traces::continue_trace(&span, traced.stored.as_ref());
    job_attributes(&span, key, uid, None);
    attribute(&span, "pendingjob.phase", phase);
    attribute(&span, "pendingjob.attempts", i64::from(status.attempts));
    if let Some(code) = status.last_status_code {
        attribute(&span, "http.response.status_code", i64::from(code));
    }
    if status.phase != Phase::Succeeded {
        traces::failed(&span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_recorded_without_query_fragment_or_user_info() {
        let cases = [
            (
                "https://user:pw@api.example/charges?token=s3cret#frag",
                "https",
                "api.example",
                443,
                "https://api.example/charges",
            ),
            (
                "http://10.0.0.1:8080/a/b?x=1",
                "http",
                "10.0.0.1",
                8080,
                "http://10.0.0.1:8080/a/b",
            ),
            ("http://[::1]:9/", "http", "[::1]", 9, "http://[::1]:9/"),
        ];
        for (url, scheme, host, port, full) in cases {
            let attributes: Vec<(&str, String)> = url_attributes(url)
                .into_iter()
                .map(|(key, value)| (key, value.to_string()))
                .collect();
            let expected = vec![
                ("url.scheme", scheme.to_owned()),
                ("server.address", host.to_owned()),
                ("server.port", port.to_string()),
                ("url.full", full.to_owned()),
            ];
            assert_eq!(attributes, expected, "{url}");
        }
        assert!(url_attributes("not a url").is_empty());
    }
}
