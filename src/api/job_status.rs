//! The `PendingJob` resource's status: the retry state, written only by the
//! operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    pub redrive: Option<Box<Redrive>>,
    /// Since when the job is suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_time: Option<MicroTime>,
    /// Seconds the job spent suspended since creation or its last redrive.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suspended_seconds: i64,
    /// The dead-letter record of a failed job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<Box<DeadLetterStatus>>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A `pendingjob.dev/retry` value acted on.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Redrive {
    /// The annotation's value.
    pub value: String,
    /// When it was acted on; `maxRetryDurationSeconds` counts from here.
    pub time: MicroTime,
    /// Attempts made before it; `maxAttempts` counts from here.
    pub attempts: i32,
}

/// Whether the dead-letter record was delivered.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterStatus {
    /// True once the receiver answered 2xx.
    pub delivered: bool,
    /// Calls made to the receiver.
    pub attempts: i32,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_time: Option<Time>,
    /// Why the last call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next call is due, while undelivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<MicroTime>,
}
