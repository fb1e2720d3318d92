//! The intake's spans: one server span per request, a child of the
//! caller's W3C trace context when it sent one and a new trace otherwise,
//! and the context the job it stores keeps for its calls.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tracing::field::Empty;
use tracing::{Span, info_span};

use crate::delivery::trace_context::TraceContext;
use crate::observe::traces::{self, attribute};

/// The span of a request to `route` for `destination` in `namespace`, and
/// the context its job is to store: the span's own when spans are
/// exported, else the caller's as it came (or none).
pub fn request(
    route: &'static str,
    namespace: &str,
    destination: &str,
    headers: &HeaderMap,
) -> (Span, Option<TraceContext>) {
    let caller = TraceContext::from_headers(headers);
    let span = info_span!(
        "intake request",
        otel.name = format!("POST {route}"),
        otel.kind = "server",
        trace_id = Empty
    );
    traces::continue_trace(&span, caller.as_ref());
    attribute(&span, "http.request.method", "POST");
    attribute(&span, "http.route", route);
    attribute(&span, "k8s.namespace.name", namespace.to_owned());
    attribute(&span, "pendingjob.destination", destination.to_owned());
    let stored = traces::outgoing(&span, caller.as_ref());
    (span, stored)
}

/// The span of the API call that stores the job, within the request's.
pub fn create() -> Span {
    info_span!("create PendingJob", otel.kind = "client")
}

/// Records the job stored (or found) on the request's span.
pub fn stored(name: &str, uid: Option<&str>) {
    let span = Span::current();
    attribute(&span, "pendingjob.job.name", name.to_owned());
    if let Some(uid) = uid {
        attribute(&span, "pendingjob.job.uid", uid.to_owned());
    }
}

/// Records the answer's status code on `span`; a 5xx marks it failed.
pub fn answered(span: &Span, code: StatusCode) {
    attribute(span, "http.response.status_code", i64::from(code.as_u16()));
    if code.is_server_error() {
        traces::failed(span);
    }
}

/// The status code of `answer`.
pub fn code_of<E>(answer: &Result<Response, E>, error_code: impl Fn(&E) -> StatusCode) -> StatusCode {
    match answer {
        Ok(response) => response.status(),
        Err(error) => error_code(error),
    }
}
