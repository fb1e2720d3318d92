//! The `PendingJob` custom resource: the intent (target, payload, retry
//! policy) in `spec` and the retry state in `status`.
//!
//! Doc comments on these types become the CRD's descriptions, so they are what
//! `kubectl explain pendingjob.spec` prints. Validation lives in the schema
//! (bounds, enums, required fields) and in CEL rules, so the API server
//! refuses bad manifests with the field named; the payload's size is bounded
//! by the ValidatingAdmissionPolicy in `crds/`, since CEL inside a CRD cannot
//! see schemaless JSON.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

pub use crate::dead_letter::{DeadLetter, DeadLetterStatus};
pub use crate::destination::{Destination, DestinationSpec, DestinationStatus};
pub use crate::plan::Redrive;
pub use crate::retry_on::RetryOn;
use serde::{Deserialize, Serialize};

/// API group of the `PendingJob` resource.
pub const GROUP: &str = "pendingjob.dev";
/// Largest payload accepted at admission, in bytes, as rendered by CEL; it
/// keeps a job far below etcd's ~1.5 MiB object limit.
pub const MAX_PAYLOAD_BYTES: usize = 131_072;
/// Longest `status.lastError` we store, in bytes.
pub const MAX_ERROR_BYTES: usize = 512;

/// A call to a downstream API that must eventually succeed: the target and
/// payload to send, and how to retry while the target is unavailable.
// kube-derive's repeated printcolumn(...) entries look alike to this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pendingjob.dev",
    version = "v1alpha1",
    kind = "PendingJob",
    plural = "pendingjobs",
    shortname = "pj",
    namespaced,
    status = "PendingJobStatus",
    doc = "A durable, retried call to a downstream API. The operator sends the payload to the \
           target and retries with capped exponential backoff until the call succeeds or the \
           job is given up.",
    // `kubectl get|annotate pendingjobs --field-selector status.phase=Failed`.
    selectable = ".status.phase",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Destination", type_ = "string", json_path = ".spec.destinationRef.name"),
    printcolumn(name = "Attempts", type_ = "integer", json_path = ".status.attempts"),
    printcolumn(name = "Retries", type_ = "integer", json_path = ".status.retryCount"),
    // A string column: a date-typed one prints `<invalid>` for a future time.
    printcolumn(name = "Next Retry", type_ = "string", json_path = ".status.nextRetryTime"),
    printcolumn(name = "Last Code", type_ = "integer", json_path = ".status.lastStatusCode"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.target.url) != has(self.destinationRef)")
    .message("exactly one of spec.target.url and spec.destinationRef must be set")
    .field_path(".target.url"))]
#[x_kube(validation = Rule::new("!has(self.target.path) || has(self.destinationRef)")
    .message("spec.target.path needs spec.destinationRef; with spec.target.url, put the path in the URL")
    .field_path(".target.path"))]
#[serde(rename_all = "camelCase")]
pub struct PendingJobSpec {
    /// Where and how to send the call.
    pub target: Target,
    /// The Destination (in the job's namespace) to call; `target.path` is
    /// appended to its URL. Set this or `target.url`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ref: Option<DestinationRef>,
    /// The JSON document sent as the request body (`Content-Type: application/json`).
    /// Any JSON value; at most 128 KiB. Omit it to send no body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub payload: Option<serde_json::Value>,
    /// How to space out attempts while the target is unavailable.
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    /// True stops calls for this job (phase `Suspended`); false again
    /// resumes its schedule from status. Suspended time does not count
    /// against `retryPolicy.maxRetryDurationSeconds`.
    #[serde(default)]
    pub suspend: bool,
    /// No attempt before this time (RFC 3339); a Pending job shows it as
    /// its next retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// Seconds after `status.completionTime` at which the operator deletes
    /// the finished job. Unset: the operator's `--ttl-seconds-after-finished`
    /// default, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Where a JSON record of the job is sent when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
}

/// A Destination in the job's namespace.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct DestinationRef {
    /// The Destination's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The downstream endpoint to call.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Absolute http:// or https:// URL of the endpoint, for a job without
    /// a destination.
    #[x_kube(validation = Rule::new(
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
    ).message("must be an absolute http:// or https:// URL"))]
    #[schemars(length(min = 1, max = 2048))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Path (and query) appended to the destination's URL, for a job with a
    /// destination.
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("must start with /"))]
    #[schemars(length(min = 1, max = 2048))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP method of the call.
    #[serde(default)]
    pub method: Method,
    /// Extra request headers. Plain values only: do not put secrets here.
    /// `Content-Type` and `Idempotency-Key` are set by the operator.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "headers_schema")]
    pub headers: BTreeMap<String, String>,
    /// Seconds to wait for the whole call (connect, send, response) before the
    /// attempt counts as failed and is retried.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: i32,
}

/// HTTP method of the call.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET
    Get,
    /// POST (the default)
    #[default]
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

/// Capped exponential backoff: the delay after the n-th failed attempt is
/// `min(initialDelaySeconds * multiplier^(n-1), maxDelaySeconds)`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.maxDelaySeconds >= self.initialDelaySeconds")
    .message("maxDelaySeconds must be at least initialDelaySeconds")
    .field_path(".maxDelaySeconds"))]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Delay after the first failed attempt, in seconds.
    #[serde(default = "default_initial_delay")]
    #[schemars(range(min = 1, max = 86400))]
    pub initial_delay_seconds: i32,
    /// Upper bound of any delay, in seconds (a `Retry-After` never exceeds it either).
    #[serde(default = "default_max_delay")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_delay_seconds: i32,
    /// Factor by which each delay grows; 1 means a constant delay.
    #[serde(default = "default_multiplier")]
    #[schemars(range(min = 1, max = 10))]
    pub multiplier: i32,
    /// Attempts after which the job is given up (`Failed`). Unset: retry until success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_attempts: Option<i32>,
    /// Seconds after creation (or the last redrive), suspended time not
    /// counted, after which a job whose last attempt failed is given up
    /// with reason `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_536_000))]
    pub max_retry_duration_seconds: Option<i32>,
    /// Status codes classified otherwise than by default (2xx delivered;
    /// 408, 429 and 5xx retried; any other code fails the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<RetryOn>,
    /// Randomisation of each delay, to spread retries of many jobs:
    /// `None` (exact delays), `Full` (uniform in [0, delay]) or `Equal`
    /// (uniform in [delay/2, delay]).
    #[serde(default)]
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_delay_seconds: default_initial_delay(),
            max_delay_seconds: default_max_delay(),
            multiplier: default_multiplier(),
            max_attempts: None,
            max_retry_duration_seconds: None,
            retry_on: None,
            jitter: Jitter::None,
        }
    }
}

/// Randomisation applied to each backoff delay.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jitter {
    /// Exact delays.
    #[default]
    None,
    /// Uniform in [0, delay].
    Full,
    /// Uniform in [delay/2, delay].
    Equal,
}

/// Where a job is in its life.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Stored, no attempt recorded yet.
    #[default]
    Pending,
    /// The last attempt failed; another is scheduled at `nextRetryTime`.
    Retrying,
    /// `spec.suspend` is true: no calls until it is false again.
    Suspended,
    /// The target accepted the call. Terminal.
    Succeeded,
    /// Given up: a permanent error or `maxAttempts` used up. Terminal.
    Failed,
}

impl Phase {
    /// True for phases the operator never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// The retry state of a job, written only by the operator.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingJobStatus {
    /// Pending, Retrying, Suspended, Succeeded or Failed.
    #[serde(default)]
    pub phase: Phase,
    /// Calls made to the target so far.
    #[serde(default)]
    pub attempts: i32,
    /// Failed attempts that were scheduled for a retry.
    #[serde(default)]
    pub retry_count: i32,
    /// When the next attempt is due (RFC 3339, UTC, microseconds). Unset when none is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<MicroTime>,
    /// When the last attempt started (RFC 3339, UTC, microseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<MicroTime>,
    /// HTTP status code of the last response; unset when no response came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed, truncated to 512 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the job reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// `Succeeded` and `Failed` conditions, for `kubectl wait`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last `pendingjob.dev/retry` annotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive: Option<Redrive>,
    /// Since when the job is suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_time: Option<MicroTime>,
    /// Seconds the job spent suspended since creation or its last redrive.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suspended_seconds: i64,
    /// The dead-letter record of a failed job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterStatus>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn default_timeout_seconds() -> i32 {
    10
}
fn default_initial_delay() -> i32 {
    2
}
fn default_max_delay() -> i32 {
    300
}
fn default_multiplier() -> i32 {
    2
}

/// Schema of `spec.target.headers`: bounded, so its CEL rule has a bounded
/// cost, and free of the headers the operator owns.
fn headers_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Extra request headers. Plain values only: do not put secrets here. Content-Type and Idempotency-Key are set by the operator.",
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": { "type": "string", "maxLength": 4096 },
        "x-kubernetes-validations": [{
            "rule": "self.all(k, size(k) <= 256 && k.matches('^[A-Za-z0-9!#$%&*+.^_|~-]+$') && !(k.lowerAscii() in ['idempotency-key', 'content-type', 'content-length', 'host']))",
            "message": "header names must be HTTP tokens of at most 256 characters, and not Idempotency-Key, Content-Type, Content-Length or Host, which the operator sets",
        }],
    })
}

/// Schema of `spec.payload`: any JSON value, kept as it is by the API server.
fn any_json(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "The JSON document sent as the request body (Content-Type: application/json). Any JSON value; at most 128 KiB. Omit it to send no body.",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The CRD as served to the API server.
///
/// Compared with what kube-derive generates, it also defaults `status` to
/// `{phase: Pending}`: the API server applies that default when it reads an
/// object without a status, so a new job shows `Pending` before any write.
pub fn crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let mut crd = PendingJob::crd();
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"));
        if let Some(status) = status {
            status.default = Some(
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                    serde_json::json!({ "phase": "Pending" }),
                ),
            );
        }
    }
    crd
}

/// The CRD as YAML, as checked in at `crds/pendingjob.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&crd())
}

/// The Destination CRD as YAML, as checked in at `crds/destination.yaml`.
pub fn destination_crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&Destination::crd())
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
