//! The `PendingJob` resource's spec: the intent (target, payload) and how
//! to retry it. Its status is in [`super::job_status`].
//!
//! Doc comments on these types become the CRD's descriptions, so they are what
//! `kubectl explain pendingjob.spec` prints. Validation lives in the schema
//! (bounds, enums, required fields) and in CEL rules, so the API server
//! refuses bad manifests with the field named; the payload's size is bounded
//! by the ValidatingAdmissionPolicy in `crds/`, since CEL inside a CRD cannot
//! see schemaless JSON.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::job_status::PendingJobStatus;

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
    pub dead_letter: Option<Box<DeadLetter>>,
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
    /// destination. It stays under that URL: no `.` or `..` segments, raw
    /// or percent-encoded, and no backslashes.
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("must start with /"))]
    #[x_kube(validation = Rule::new(
        r"!self.contains('\\') && !self.matches('^([^?#]*(/|%2[fF]|%5[cC]))?([.]|%2[eE]){1,2}([/?#]|%2[fF]|%5[cC]|$)')"
    ).message("must stay under the destination's URL: no . or .. segments (raw or percent-encoded) and no backslashes"))]
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
    pub retry_on: Option<Box<RetryOn>>,
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

/// Codes listed here override the default classification of a response.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!self.retryable.exists(c, c in self.delivered)")
    .message("a status code cannot be both retryable and delivered"))]
#[serde(rename_all = "camelCase")]
pub struct RetryOn {
    /// Codes that are retried, like a 503.
    #[serde(default)]
    #[schemars(length(max = 64), inner(range(min = 100, max = 599)))]
    pub retryable: Vec<i32>,
    /// Codes that count as delivered, like a 200: the job succeeds.
    #[serde(default)]
    #[schemars(length(max = 64), inner(range(min = 100, max = 599)))]
    pub delivered: Vec<i32>,
}

/// A URL or a Destination (in the job's namespace): exactly one.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.destinationRef)")
    .message("exactly one of url and destinationRef must be set"))]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Absolute http:// or https:// URL that receives the record (POST).
    #[x_kube(validation = Rule::new(
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
    ).message("must be an absolute http:// or https:// URL"))]
    #[schemars(length(min = 1, max = 2048))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Destination that receives the record (POST to its URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ref: Option<DestinationRef>,
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
