//! `spec.deadLetter`: where a JSON record of a job goes when it fails, so
//! someone hears of it without reading its status.
//!
//! The record is sent by a task of its own once the job is `Failed`, with
//! its own retries (2 s, 4 s … 5 min, until delivered) and its own
//! Idempotency-Key (`<uid>/dead-letter`). Each call is recorded in
//! `status.deadLetter` by a fenced status write, as attempts are. The
//! job's own outcome never changes, and its TTL waits for the delivery.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::{KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::backoff;
use crate::controller::Context;
use crate::crd::{DestinationRef, Method, PendingJob, PendingJobStatus, RetryPolicy, Target};
use crate::fence::{self, JobKey};
use crate::leader::Term;
use crate::lifecycle::{self, Outcome};
use crate::metrics::DeadLetterLabels;
use crate::route;

/// Seconds a dead-letter call may take.
const TIMEOUT_SECONDS: i32 = 10;

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

/// The record sent: what someone needs to act on a failed job.
pub fn record(job: &PendingJob, status: &PendingJobStatus) -> serde_json::Value {
    let reason = status
        .conditions
        .iter()
        .find(|c| c.type_ == lifecycle::FAILED)
        .map(|c| c.reason.clone());
    serde_json::json!({
        "namespace": job.namespace(),
        "name": job.name_any(),
        "uid": job.uid(),
        "attempts": status.attempts,
        "lastStatusCode": status.last_status_code,
        "lastError": status.last_error,
        "reason": reason,
        "creationTimestamp": job.metadata.creation_timestamp,
        "lastAttemptTime": status.last_attempt_time,
        "completionTime": status.completion_time,
        "payload": job.spec.payload,
    })
}

/// The status after a dead-letter call with `outcome` that ended at `now`.
pub fn recorded(status: &PendingJobStatus, outcome: &Outcome, now: Timestamp) -> PendingJobStatus {
    let mut next = status.clone();
    let before = status.dead_letter.clone().unwrap_or_default();
    let attempts = before.attempts.saturating_add(1);
    next.dead_letter = Some(match outcome {
        Outcome::Delivered { .. } => DeadLetterStatus {
            delivered: true,
            attempts,
            delivered_time: Some(Time(now)),
            last_error: None,
            next_attempt_time: None,
        },
        Outcome::Retryable { error, .. } | Outcome::Rejected { error, .. } => {
            let delay = backoff::retry_delay(&RetryPolicy::default(), attempts, None, 0.0);
            let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
            DeadLetterStatus {
                delivered: false,
                attempts,
                delivered_time: None,
                last_error: Some(lifecycle::truncate(error, crate::crd::MAX_ERROR_BYTES)),
                next_attempt_time: Some(MicroTime(now.saturating_add(delay).unwrap_or(Timestamp::MAX))),
            }
        }
    });
    next
}

/// Sends the dead-letter record of job `key` (cached with `uid`) once, and
/// records the call. Reads the job first: the cache keeps no payload of a
/// finished job.
pub async fn send(ctx: &Context, key: &JobKey, uid: &str, term: Term) {
    let api = ctx.api(&key.0);
    let job = match api.get_opt(&key.1).await {
        Ok(Some(job)) if job.uid().as_deref() == Some(uid) => job,
        Ok(_) => return,
        Err(error) => return warn!(job = %key.1, %error, "reading the job for its dead letter failed"),
    };
    let (Some(dead_letter), Some(status)) = (&job.spec.dead_letter, job.status.clone()) else {
        return;
    };
    if ctx.decide(key, &job) != crate::plan::Decision::DeadLetter {
        return;
    }
    let mut carrier = job.clone();
    carrier.spec.destination_ref = dead_letter.destination_ref.clone();
    carrier.spec.target = Target {
        url: dead_letter.url.clone(),
        path: None,
        method: Method::Post,
        headers: BTreeMap::new(),
        timeout_seconds: TIMEOUT_SECONDS,
    };
    let route = match route::route(&carrier, &ctx.cache.destinations, ctx.access()).await {
        Ok(route) => route,
        // No call now; the next reconcile tries again.
        Err(wait) => return info!(job = %key.1, reason = %wait, "the dead letter waits for its destination"),
    };
    let body = Bytes::from(record(&job, &status).to_string());
    if ctx.leadership.term() != Some(term) {
        return;
    }
    let outcome = ctx
        .dispatcher
        .attempt(&carrier.spec.target, &route, Some(body), &format!("{uid}/dead-letter"))
        .await;
    let next = recorded(&status, &outcome, Timestamp::now());
    let delivered = next.dead_letter.as_ref().is_some_and(|d| d.delivered);
    let result = if delivered { "delivered" } else { "failed" };
    ctx.metrics
        .dead_letters
        .get_or_create(&DeadLetterLabels { result })
        .inc();
    info!(job = %key.1, delivered, "dead letter sent");
    record_call(
        ctx,
        key,
        uid,
        &status,
        next.dead_letter,
        job.resource_version().unwrap_or_default(),
    )
    .await;
}

/// Writes `recorded` as the dead-letter status of job `key`, fenced by
/// `resource_version`. When the job changed meanwhile (an annotation, say),
/// the write is re-based onto it as long as it is the same job and its
/// dead-letter status is still `base`'s: then the call is recorded, not
/// lost to be repeated. A redrive or another writer's record wins.
async fn record_call(
    ctx: &Context,
    key: &JobKey,
    uid: &str,
    base: &PendingJobStatus,
    recorded: Option<DeadLetterStatus>,
    mut resource_version: String,
) {
    let api = ctx.api(&key.0);
    let mut current = base.clone();
    for _ in 0..3 {
        let next = PendingJobStatus {
            dead_letter: recorded.clone(),
            ..current.clone()
        };
        match fence::apply_status(&api, &key.1, &next, &resource_version).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(&key.1).await {
                Ok(Some(job)) if job.uid().as_deref() == Some(uid) => {
                    let now = job.status.clone().unwrap_or_default();
                    if now.dead_letter != base.dead_letter || now.phase != base.phase {
                        return;
                    }
                    resource_version = job.resource_version().unwrap_or_default();
                    current = now;
                }
                Ok(_) => return,
                Err(error) => warn!(job = %key.1, %error, "re-reading the job failed; retrying"),
            },
            Err(error) => {
                warn!(job = %key.1, %error, "recording the dead letter failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_calls_back_off_and_a_delivery_ends_them() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let down = Outcome::Retryable {
            code: Some(503),
            error: "HTTP 503".into(),
            retry_after: None,
        };
        let mut status = PendingJobStatus::default();
        for (attempts, delay) in [(1, 2), (2, 4), (3, 8)] {
            status = recorded(&status, &down, now);
            let dead_letter = status.dead_letter.clone().unwrap();
            assert_eq!((dead_letter.attempts, dead_letter.delivered), (attempts, false));
            assert_eq!(
                dead_letter.next_attempt_time.map(|t| t.0),
                Some(now + SignedDuration::from_secs(delay))
            );
        }
        status = recorded(&status, &Outcome::Delivered { code: 202 }, now);
        let dead_letter = status.dead_letter.unwrap();
        assert!(dead_letter.delivered && dead_letter.next_attempt_time.is_none());
        assert_eq!(dead_letter.attempts, 4);
    }
}
