//! The dead-letter record and what each call to send it makes of the
//! job's status; pure, table-tested.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::ResourceExt;

use crate::api::{DeadLetterStatus, MAX_ERROR_BYTES, PendingJob, PendingJobStatus, RetryPolicy};
use crate::delivery::outcome::{Outcome, truncate};
use crate::job::backoff;
use crate::job::transitions::FAILED;

/// The record sent: what someone needs to act on a failed job.
pub fn record(job: &PendingJob, status: &PendingJobStatus) -> serde_json::Value {
    let reason = status
        .conditions
        .iter()
        .find(|c| c.type_ == FAILED)
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
    let attempts = status.dead_letter.as_ref().map_or(0, |d| d.attempts).saturating_add(1);
    next.dead_letter = Some(Box::new(match outcome {
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
                last_error: Some(truncate(error, MAX_ERROR_BYTES)),
                next_attempt_time: Some(MicroTime(now.saturating_add(delay).unwrap_or(Timestamp::MAX))),
            }
        }
    }));
    next
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
