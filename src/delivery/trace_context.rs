//! W3C Trace Context (`traceparent`, `tracestate`): read from a caller's
//! headers or a job's annotations, and written into a call's headers.
//!
//! Parsing and printing are OpenTelemetry's own propagator's; what this adds
//! is the bounds on what tenants write: a context is kept only when its
//! `traceparent` is valid (a zero or malformed one is no context), and a
//! `tracestate` longer than W3C's 512 characters is dropped, not cut.

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::api::{TRACEPARENT_ANNOTATION, TRACESTATE_ANNOTATION};

/// The header a call's trace is carried in.
pub const TRACEPARENT: &str = "traceparent";
/// The header that carries the trace's vendor state.
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` kept: W3C's own bound for what must be carried.
pub const MAX_TRACESTATE: usize = 512;

/// A valid span context to continue, from elsewhere (the caller, a job).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceContext(SpanContext);

/// Two values looked up by name, as the propagator reads them.
struct Pair<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Pair<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate.filter(|state| state.len() <= MAX_TRACESTATE),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// What the propagator writes.
#[derive(Default)]
struct Written(BTreeMap<String, String>);

impl Injector for Written {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl TraceContext {
    fn parse(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let traceparent = traceparent?;
        let pair = Pair {
            traceparent: Some(traceparent.trim()),
            tracestate,
        };
        let context = TraceContextPropagator::new().extract(&pair);
        Self::of(context.span().span_context().clone())
    }

    /// The context a job's annotations hold, if valid.
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Option<Self> {
        let annotations = annotations?;
        Self::parse(
            annotations.get(TRACEPARENT_ANNOTATION).map(String::as_str),
            annotations.get(TRACESTATE_ANNOTATION).map(String::as_str),
        )
    }

    /// The context a request's headers carry, if valid.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        Self::parse(value(TRACEPARENT), value(TRACESTATE))
    }

    /// `span`, if it is a valid context.
    pub fn of(span: SpanContext) -> Option<Self> {
        span.is_valid().then_some(Self(span))
    }

    /// The span context.
    pub fn span_context(&self) -> &SpanContext {
        &self.0
    }

    /// The trace id, as 32 hex digits.
    pub fn trace_id(&self) -> String {
        self.0.trace_id().to_string()
    }

    /// `traceparent` and, when there is one, `tracestate`, as W3C spells them.
    fn written(&self) -> Written {
        let context = opentelemetry::Context::new().with_remote_span_context(self.0.clone());
        let mut written = Written::default();
        TraceContextPropagator::new().inject_context(&context, &mut written);
        written.0.retain(|_, value| !value.is_empty());
        written
    }

    /// The annotations that store this context on a job.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.written()
            .0
            .into_iter()
            .map(|(key, value)| {
                let name = if key == TRACEPARENT {
                    TRACEPARENT_ANNOTATION
                } else {
                    TRACESTATE_ANNOTATION
                };
                (name.to_owned(), value)
            })
            .collect()
    }

    /// Sets `traceparent` (and `tracestate`) in `headers`, replacing any.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        headers.remove(TRACESTATE);
        for (key, value) in self.written().0 {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
                headers.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn only_a_valid_traceparent_is_a_context() {
        let cases = [
            (PARENT, true),
            (" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ", true),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false),
            ("not a trace", false),
            ("", false),
        ];
        for (value, valid) in cases {
            let found = TraceContext::from_annotations(Some(&annotations(&[(TRACEPARENT_ANNOTATION, value)])));
            assert_eq!(found.is_some(), valid, "{value:?}");
        }
        assert_eq!(TraceContext::from_annotations(None), None);
        assert_eq!(TraceContext::from_annotations(Some(&BTreeMap::new())), None);
    }

    #[test]
    fn a_context_goes_from_annotations_to_headers_as_it_came() {
        let stored = annotations(&[
            (TRACEPARENT_ANNOTATION, PARENT),
            (TRACESTATE_ANNOTATION, "vendor=a,other=b"),
        ]);
        let context = TraceContext::from_annotations(Some(&stored)).expect("valid");
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.annotations(), stored);
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-ffffffffffffffffffffffffffffffff-1111111111111111-01"),
        );
        context.insert_into(&mut headers);
        assert_eq!(headers[TRACEPARENT], PARENT, "ours replaces a tenant's");
        assert_eq!(headers[TRACESTATE], "vendor=a,other=b");
        assert_eq!(TraceContext::from_headers(&headers), Some(context));
    }

    #[test]
    fn an_oversized_tracestate_is_dropped_and_the_parent_kept() {
        let long = format!("vendor={}", "x".repeat(MAX_TRACESTATE));
        let stored = annotations(&[(TRACEPARENT_ANNOTATION, PARENT), (TRACESTATE_ANNOTATION, &long)]);
        let context = TraceContext::from_annotations(Some(&stored)).expect("valid");
        assert_eq!(context.annotations(), annotations(&[(TRACEPARENT_ANNOTATION, PARENT)]));
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, HeaderValue::from_static("tenant=set"));
        context.insert_into(&mut headers);
        assert!(headers.get(TRACESTATE).is_none(), "no state but the job's");
    }
}
