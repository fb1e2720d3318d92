//! Names and limits that other parts, tools and users rely on.

/// API group of the `PendingJob` and `Destination` resources.
pub const GROUP: &str = "pendingjob.dev";
/// Field manager of the operator's server-side-apply writes.
pub const FIELD_MANAGER: &str = "pendingjob-operator";
/// The annotation whose new value re-runs a Failed job or hastens a waiting one.
pub const RETRY_ANNOTATION: &str = "pendingjob.dev/retry";
/// The job's W3C `traceparent`: its calls continue this trace. The intake
/// sets it from the caller's; `kubectl apply` users may set it by hand.
pub const TRACEPARENT_ANNOTATION: &str = "pendingjob.dev/traceparent";
/// The job's W3C `tracestate`, sent along with its `traceparent`.
pub const TRACESTATE_ANNOTATION: &str = "pendingjob.dev/tracestate";
/// Largest payload accepted at admission, in bytes, as rendered by CEL; it
/// keeps a job far below etcd's ~1.5 MiB object limit.
pub const MAX_PAYLOAD_BYTES: usize = 131_072;
/// Longest `status.lastError` we store, in bytes.
pub const MAX_ERROR_BYTES: usize = 512;

/// A job's namespace and name.
pub type JobKey = (String, String);
