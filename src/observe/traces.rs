//! Traces: spans exported with OTLP over HTTP when an endpoint is set, and
//! the W3C trace context each span continues and hands on.
//!
//! Off unless `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`, or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; `OTEL_SDK_DISABLED=true`
//! turns it off whatever is set. The other standard variables work as the
//! OpenTelemetry SDK reads them: `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` (default: follow the
//! parent, sample roots), `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`.
//!
//! Off, no span is exported and a call hands on the job's stored context
//! unchanged, so a trace still crosses the queue; on, each span is a child
//! of the context it continues and a call carries its own span's.
//!
//! Invariants: only this crate's spans are exported, and they carry names,
//! uids, codes and counts, never a header value, a payload or a Secret.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;

use crate::delivery::trace_context::TraceContext;

/// The standard variable of the OTLP endpoint (a base URL; spans go to
/// `/v1/traces` under it).
pub const ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable of the traces' own endpoint (a whole URL).
const TRACES_ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// Why spans could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The exporter could not be built (a bad endpoint or header, say).
    #[error("the OTLP exporter could not be built: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Where spans go: `None` when tracing is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A base URL (`--otlp-endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT`).
    Base(String),
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, read by the exporter itself.
    Traces,
}

/// The endpoint tracing is on for: `flag` (clap fills it from
/// `OTEL_EXPORTER_OTLP_ENDPOINT` too), else the traces' own variable;
/// `variable` reads the environment.
pub fn endpoint(flag: Option<&str>, variable: impl Fn(&str) -> Option<String>) -> Option<Endpoint> {
    let set = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
    if variable("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    match flag.map(str::trim).filter(|flag| !flag.is_empty()) {
        Some(base) => Some(Endpoint::Base(base.to_owned())),
        None if set(&variable(TRACES_ENDPOINT_VARIABLE)) => Some(Endpoint::Traces),
        None => None,
    }
}

/// The URL spans are posted to under base URL `base`.
fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The tracer provider of `service` exporting to `endpoint`, in batches
/// from a thread of its own. Shut it down to flush what it holds.
pub fn provider(endpoint: &Endpoint, service: &'static str) -> Result<SdkTracerProvider, TraceError> {
    let builder = SpanExporter::builder().with_http();
    let exporter = match endpoint {
        Endpoint::Base(base) => builder.with_endpoint(traces_url(base)).build()?,
        Endpoint::Traces => builder.build()?,
    };
    let resource = if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        Resource::builder().build()
    } else {
        Resource::builder().with_service_name(service).build()
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The `tracing` layer that exports this crate's spans through `provider`:
/// spans only, at info or above, with the attributes set on them and none
/// of `tracing`'s own (source location, thread, busy and idle times). Log
/// lines are not exported as span events: their fields (an error's text,
/// which quotes a target's answer) are no span's business.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let ours = filter_fn(|meta| {
        meta.is_span() && *meta.level() <= Level::INFO && meta.target().starts_with(env!("CARGO_CRATE_NAME"))
    });
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(env!("CARGO_PKG_NAME")))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_level(false)
        .with_filter(ours)
}

/// Makes `span` a child of `trace` (when there is one) and records the trace
/// id it is in as its `trace_id` field, for the log lines within it.
pub fn continue_trace(span: &Span, trace: Option<&TraceContext>) {
    if let Some(trace) = trace {
        let parent = opentelemetry::Context::new().with_remote_span_context(trace.span_context().clone());
        // Fails only when no span is exported: the context is then handed on as it is.
        let _ = span.set_parent(parent);
    }
    if let Some(id) = own(span).or_else(|| trace.cloned()).map(|t| t.trace_id()) {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// The context a call made within `span` carries: `span`'s own when spans
/// are exported, else `trace` unchanged.
pub fn outgoing(span: &Span, trace: Option<&TraceContext>) -> Option<TraceContext> {
    own(span).or_else(|| trace.cloned())
}

fn own(span: &Span) -> Option<TraceContext> {
    TraceContext::of(span.context().span().span_context().clone())
}

/// Sets attribute `key` of `span` (exported only; log lines do not show it).
pub fn attribute(span: &Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    span.set_attribute(key, value);
}

/// Marks `span` failed (the status only: its reason is in its attributes).
pub fn failed(span: &Span) {
    span.set_status(opentelemetry::trace::Status::error(""));
}

/// Adds event `name` to `span`, with how long it waited in milliseconds.
pub fn waited(span: &Span, name: &'static str, waited: std::time::Duration) {
    let millis = i64::try_from(waited.as_millis()).unwrap_or(i64::MAX);
    span.add_event(name, vec![opentelemetry::KeyValue::new("pendingjob.waited_ms", millis)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_is_on_only_where_an_endpoint_is_set() {
        let none = |_: &str| None;
        let only =
            |name: &'static str, value: &'static str| move |asked: &str| (asked == name).then(|| value.to_owned());
        let cases: [(Option<&str>, Option<Endpoint>); 3] = [
            (None, None),
            (Some(" "), None),
            (
                Some("http://collector:4318"),
                Some(Endpoint::Base("http://collector:4318".into())),
            ),
        ];
        for (flag, expected) in cases {
            assert_eq!(endpoint(flag, none), expected, "{flag:?}");
        }
        let traces = only(TRACES_ENDPOINT_VARIABLE, "http://c:4318/v1/traces");
        assert_eq!(endpoint(None, traces), Some(Endpoint::Traces));
        let disabled = only("OTEL_SDK_DISABLED", "TRUE");
        assert_eq!(endpoint(Some("http://collector:4318"), disabled), None);
    }

    #[test]
    fn spans_go_to_v1_traces_under_the_base() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
