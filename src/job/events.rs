//! Events: one per change of a job's phase, so `kubectl describe` tells the
//! story at a bounded cost in API writes.
//!
//! An Event per attempt would double the writes of a retrying job, and
//! kube's recorder folds repeats into a series that keeps the first note, so
//! it would not even show the latest attempt. So a job gets an Event when it
//! starts retrying (`AttemptFailed`), when it is delivered after failures
//! (`Delivered`), and when it is given up (`GaveUp`): at most three in its
//! life, none for a first-attempt success. The latest attempt is always in
//! the status that `describe` prints (`lastError`, the conditions' messages),
//! and in the log line each attempt writes ([`log_attempt`]).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::{info, warn};

use super::transitions;
use crate::api::{PendingJobStatus, Phase};
use crate::delivery::outcome::truncate;

/// The Event an attempt warrants, from the status before and after it:
/// its type, reason, and the condition whose message is its note. Pure.
pub fn for_attempt(
    prev: &PendingJobStatus,
    next: &PendingJobStatus,
) -> Option<(EventType, &'static str, &'static str)> {
    match (prev.phase, next.phase) {
        (before, after) if before == after => None,
        (_, Phase::Retrying) => Some((EventType::Warning, "AttemptFailed", transitions::SUCCEEDED)),
        (_, Phase::Succeeded) if next.attempts > 1 => Some((EventType::Normal, "Delivered", transitions::SUCCEEDED)),
        (_, Phase::Failed) => Some((EventType::Warning, "GaveUp", transitions::FAILED)),
        _ => None,
    }
}

/// Publishes the Event the attempt from `prev` to `next` warrants, if any.
/// Losing an Event is not worth failing the attempt over.
pub async fn publish(recorder: &Recorder, job: &ObjectReference, prev: &PendingJobStatus, next: &PendingJobStatus) {
    let Some((type_, reason, condition)) = for_attempt(prev, next) else {
        return;
    };
    let note = next
        .conditions
        .iter()
        .find(|c| c.type_ == condition)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(&note, 1024)),
        action: "Dispatch".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, job).await {
        warn!(job = ?job.name, %error, "publishing an Event");
    }
}

/// Logs what an attempt came to, at info (a warning when it gave up).
pub fn log_attempt(namespace: &str, name: &str, status: &PendingJobStatus) {
    let code = status.last_status_code;
    let attempts = status.attempts;
    match status.phase {
        Phase::Succeeded => info!(%namespace, %name, attempts, ?code, "delivered"),
        Phase::Failed => {
            warn!(%namespace, %name, attempts, ?code, error = ?status.last_error, "given up")
        }
        _ => info!(
            %namespace, %name, attempts, retry = status.retry_count, ?code,
            next_retry = ?status.next_retry_time.as_ref().map(|t| t.0),
            error = ?status.last_error,
            "attempt failed; retry scheduled"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase, attempts: i32) -> PendingJobStatus {
        PendingJobStatus {
            phase,
            attempts,
            ..PendingJobStatus::default()
        }
    }

    #[test]
    fn for_attempt_table() {
        use Phase::*;
        let cases = [
            (status(Pending, 0), status(Succeeded, 1), None),
            (status(Pending, 0), status(Retrying, 1), Some("AttemptFailed")),
            (status(Retrying, 1), status(Retrying, 2), None),
            (status(Retrying, 2), status(Succeeded, 3), Some("Delivered")),
            (status(Retrying, 2), status(Failed, 3), Some("GaveUp")),
            (status(Pending, 0), status(Failed, 1), Some("GaveUp")),
        ];
        for (prev, next, want) in cases {
            let got = for_attempt(&prev, &next).map(|(_, reason, _)| reason);
            assert_eq!(got, want, "{:?} -> {:?}", prev.phase, next.phase);
        }
    }
}
