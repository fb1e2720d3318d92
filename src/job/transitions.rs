//! What an attempt's outcome makes of a job's status ([`record`]), and the
//! conditions every transition keeps; pure, table-tested here. What to do
//! now is [`super::plan`].

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};

use super::backoff;
use crate::api::{MAX_ERROR_BYTES, PendingJobStatus, Phase, RetryPolicy};
use crate::delivery::outcome::{Outcome, truncate};

/// Condition type set to True when the target accepted the call.
pub const SUCCEEDED: &str = "Succeeded";
/// Condition type set to True when the job was given up.
pub const FAILED: &str = "Failed";

/// Everything [`record`] needs to know about the attempt besides its outcome.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The job's retry policy.
    pub policy: &'a RetryPolicy,
    /// `metadata.generation` of the job that was attempted.
    pub generation: Option<i64>,
    /// When the call started.
    pub started: Timestamp,
    /// When the outcome was known.
    pub finished: Timestamp,
    /// A number in [0, 1) for jitter (see [`backoff::jitter_unit`]).
    pub jitter_unit: f64,
}

/// The status after an attempt with `outcome`, given the status before it.
pub fn record(prev: &PendingJobStatus, attempt: &Attempt<'_>, outcome: &Outcome) -> PendingJobStatus {
    let attempts = prev.attempts.saturating_add(1);
    let mut next = PendingJobStatus {
        phase: prev.phase,
        attempts,
        retry_count: prev.retry_count,
        next_retry_time: None,
        last_attempt_time: Some(MicroTime(ceil_to_micros(attempt.started))),
        last_status_code: None,
        last_error: None,
        completion_time: None,
        conditions: prev.conditions.clone(),
        observed_generation: attempt.generation,
        redrive: prev.redrive.clone(),
        suspend_time: None,
        suspended_seconds: prev.suspended_seconds,
        dead_letter: None,
    };
    // `maxAttempts` counts from the last redrive.
    let counted = attempts - prev.redrive.as_ref().map_or(0, |r| r.attempts);
    let finished = attempt.finished;
    match outcome {
        Outcome::Delivered { code } => {
            next.phase = Phase::Succeeded;
            next.last_status_code = Some(i32::from(*code));
            next.completion_time = Some(Time(finished));
            let message = format!("the target answered HTTP {code} on attempt {attempts}");
            set_condition(&mut next, SUCCEEDED, true, "Delivered", &message, finished);
            remove_condition(&mut next, FAILED);
        }
        Outcome::Rejected { code, error } => {
            next.last_status_code = code.map(i32::from);
            next.last_error = Some(truncate(error, MAX_ERROR_BYTES));
            give_up(
                &mut next,
                "Rejected",
                &format!("permanent error on attempt {attempts}: {error}"),
                finished,
            );
        }
        Outcome::Retryable { code, error, .. } if attempt.policy.max_attempts.is_some_and(|max| counted >= max) => {
            next.last_status_code = code.map(i32::from);
            next.last_error = Some(truncate(error, MAX_ERROR_BYTES));
            let message = format!("gave up after {attempts} attempts; the last failed with: {error}");
            give_up(&mut next, "MaxAttemptsReached", &message, finished);
        }
        Outcome::Retryable {
            code,
            error,
            retry_after,
        } => {
            let failures = prev.retry_count.saturating_add(1);
            let delay = backoff::retry_delay(attempt.policy, failures, *retry_after, attempt.jitter_unit);
            let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
            let due = ceil_to_micros(finished.saturating_add(delay).unwrap_or(Timestamp::MAX));
            next.phase = Phase::Retrying;
            next.retry_count = failures;
            next.next_retry_time = Some(MicroTime(due));
            next.last_status_code = code.map(i32::from);
            next.last_error = Some(truncate(error, MAX_ERROR_BYTES));
            let message = format!("attempt {attempts} failed: {error}; retry {failures} is due at {due}");
            set_condition(&mut next, SUCCEEDED, false, "Retrying", &message, finished);
        }
    }
    next
}

pub(crate) fn give_up(status: &mut PendingJobStatus, reason: &str, message: &str, now: Timestamp) {
    status.phase = Phase::Failed;
    status.completion_time = Some(Time(now));
    set_condition(status, FAILED, true, reason, message, now);
    set_condition(status, SUCCEEDED, false, reason, message, now);
}

/// Sets a condition, keeping `lastTransitionTime` when its status is unchanged.
pub(crate) fn set_condition(
    status: &mut PendingJobStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let value = if value { "True" } else { "False" };
    let transitioned = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == value)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    remove_condition(status, type_);
    status.conditions.push(Condition {
        type_: type_.to_owned(),
        status: value.to_owned(),
        reason: reason.to_owned(),
        message: truncate(message, MAX_ERROR_BYTES * 2),
        last_transition_time: transitioned,
        observed_generation: status.observed_generation,
    });
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

pub(crate) fn remove_condition(status: &mut PendingJobStatus, type_: &str) {
    status.conditions.retain(|c| c.type_ != type_);
}

/// Rounds up to a whole microsecond, the precision status times are stored
/// with: rounding down would let a retry start (a little) early.
pub(crate) fn ceil_to_micros(t: Timestamp) -> Timestamp {
    let micros = t.as_microsecond();
    let ceiled = if t.subsec_nanosecond() % 1_000 == 0 {
        micros
    } else {
        micros.saturating_add(1)
    };
    Timestamp::from_microsecond(ceiled).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::job::plan::{Decision, Facts};

    fn decide(status: &PendingJobStatus, now: Timestamp) -> Decision {
        crate::job::plan::decide(&Facts::plain(status), now)
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn attempt_at(policy: &RetryPolicy, second: i64) -> Attempt<'_> {
        Attempt {
            policy,
            generation: Some(1),
            started: at(second),
            finished: at(second) + SignedDuration::from_millis(40),
            jitter_unit: 0.0,
        }
    }

    fn unavailable() -> Outcome {
        Outcome::Retryable {
            code: Some(503),
            error: "HTTP 503 Service Unavailable".into(),
            retry_after: None,
        }
    }

    fn condition<'a>(status: &'a PendingJobStatus, type_: &str) -> Option<&'a Condition> {
        status.conditions.iter().find(|c| c.type_ == type_)
    }

    #[test]
    fn decide_table() {
        let waiting = |due: i64, phase| PendingJobStatus {
            phase,
            next_retry_time: Some(MicroTime(at(due))),
            ..PendingJobStatus::default()
        };
        let cases = [
            (PendingJobStatus::default(), Decision::Attempt),
            (waiting(10, Phase::Retrying), Decision::Wait(Duration::from_secs(10))),
            (waiting(0, Phase::Retrying), Decision::Attempt),
            (waiting(-3, Phase::Retrying), Decision::Attempt),
            (waiting(10, Phase::Succeeded), Decision::Idle),
            (waiting(10, Phase::Failed), Decision::Idle),
        ];
        for (status, want) in cases {
            assert_eq!(decide(&status, at(0)), want, "{status:?}");
        }
    }

    #[test]
    fn failures_follow_the_backoff_from_when_the_attempt_finished() {
        let policy = RetryPolicy::default();
        let mut status = PendingJobStatus::default();
        let mut clock = 0;
        for (n, want_delay) in [(1, 2), (2, 4), (3, 8)] {
            status = record(&status, &attempt_at(&policy, clock), &unavailable());
            assert_eq!(status.phase, Phase::Retrying);
            assert_eq!((status.attempts, status.retry_count), (n, n));
            // The attempt finished 40 ms after it started.
            let due = status.next_retry_time.clone().unwrap().0;
            assert_eq!(due, at(clock + want_delay) + SignedDuration::from_millis(40));
            assert_eq!(status.last_status_code, Some(503));
            assert_eq!(
                decide(&status, at(clock + want_delay)),
                Decision::Wait(Duration::from_millis(40))
            );
            assert_eq!(decide(&status, due), Decision::Attempt);
            clock += want_delay + 1;
        }
        let c = condition(&status, SUCCEEDED).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Retrying"));
        assert_eq!(
            c.last_transition_time,
            Time(at(0) + SignedDuration::from_millis(40)),
            "unchanged status keeps its transition time"
        );
    }

    #[test]
    fn success_is_terminal_and_clears_the_schedule() {
        let policy = RetryPolicy::default();
        let failed = record(&PendingJobStatus::default(), &attempt_at(&policy, 0), &unavailable());
        let done = record(&failed, &attempt_at(&policy, 3), &Outcome::Delivered { code: 201 });
        assert_eq!(done.phase, Phase::Succeeded);
        assert_eq!((done.attempts, done.retry_count), (2, 1));
        assert_eq!(done.next_retry_time, None);
        assert_eq!(done.last_error, None);
        assert_eq!(done.last_status_code, Some(201));
        assert!(done.completion_time.is_some());
        let c = condition(&done, SUCCEEDED).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Delivered"));
        assert_eq!(decide(&done, at(100)), Decision::Idle);
    }

    #[test]
    fn rejection_fails_at_once() {
        let policy = RetryPolicy::default();
        let outcome = Outcome::Rejected {
            code: Some(404),
            error: "HTTP 404 Not Found".into(),
        };
        let status = record(&PendingJobStatus::default(), &attempt_at(&policy, 0), &outcome);
        assert_eq!(status.phase, Phase::Failed);
        assert_eq!((status.attempts, status.retry_count), (1, 0));
        let c = condition(&status, FAILED).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Rejected"));
        assert!(c.message.contains("404"), "{}", c.message);
        assert_eq!(condition(&status, SUCCEEDED).unwrap().status, "False");
        assert_eq!(decide(&status, at(100)), Decision::Idle);
    }

    #[test]
    fn max_attempts_gives_up_on_the_last_failure() {
        let policy = RetryPolicy {
            max_attempts: Some(2),
            ..RetryPolicy::default()
        };
        let first = record(&PendingJobStatus::default(), &attempt_at(&policy, 0), &unavailable());
        assert_eq!(first.phase, Phase::Retrying);
        let second = record(&first, &attempt_at(&policy, 3), &unavailable());
        assert_eq!(second.phase, Phase::Failed);
        assert_eq!(second.attempts, 2);
        assert_eq!(second.next_retry_time, None);
        let c = condition(&second, FAILED).unwrap();
        assert_eq!(c.reason, "MaxAttemptsReached");
        assert!(c.message.contains("503"), "{}", c.message);
    }

    #[test]
    fn retry_after_sets_the_due_time() {
        let policy = RetryPolicy::default();
        let outcome = Outcome::Retryable {
            code: Some(429),
            error: "HTTP 429 Too Many Requests".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        let status = record(&PendingJobStatus::default(), &attempt_at(&policy, 0), &outcome);
        assert_eq!(
            status.next_retry_time,
            Some(MicroTime(at(7) + SignedDuration::from_millis(40)))
        );
    }

    #[test]
    fn connection_errors_are_recorded_without_a_code() {
        let outcome = Outcome::Retryable {
            code: None,
            error: "connection refused".into(),
            retry_after: None,
        };
        let policy = RetryPolicy::default();
        let status = record(&PendingJobStatus::default(), &attempt_at(&policy, 0), &outcome);
        assert_eq!(status.last_status_code, None);
        assert_eq!(status.last_error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn times_round_up_to_the_stored_microsecond() {
        let t = at(0) + SignedDuration::from_nanos(1_500);
        assert_eq!(ceil_to_micros(t), at(0) + SignedDuration::from_micros(2));
        assert_eq!(ceil_to_micros(at(0)), at(0));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdefghij", 8), "abcde...");
        let cut = truncate("ééééé", 6); // 2 bytes each
        assert!(cut.len() <= 6 && cut.ends_with("..."), "{cut}");
        assert_eq!(truncate(&"x".repeat(2000), MAX_ERROR_BYTES).len(), MAX_ERROR_BYTES);
    }
}
