//! What to do with a job now ([`decide`]), and the status writes that need
//! no call ([`amend`]): suspend and resume, a redrive through the
//! `pendingjob.dev/retry` annotation, a deadline, a scheduled first attempt.
//! Pure functions of the job and the clock, table-tested.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::ResourceExt;

use super::transitions::{self, FAILED, SUCCEEDED};
use crate::api::{PendingJob, PendingJobStatus, Phase, RETRY_ANNOTATION, Redrive};

/// What [`decide`] reads of a job.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// Its status.
    pub status: &'a PendingJobStatus,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `spec.notBefore`.
    pub not_before: Option<Timestamp>,
    /// The `pendingjob.dev/retry` annotation.
    pub retry_request: Option<&'a str>,
    /// How long after completion it is deleted, if at all.
    pub ttl_after_finished: Option<Duration>,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// `spec.retryPolicy.maxRetryDurationSeconds`.
    pub max_retry_duration: Option<Duration>,
    /// Whether `spec.deadLetter` is set.
    pub dead_letter: bool,
}

impl<'a> Facts<'a> {
    /// Facts of a job with `status` and nothing else set.
    pub fn plain(status: &'a PendingJobStatus) -> Self {
        Facts {
            status,
            suspend: false,
            not_before: None,
            retry_request: None,
            ttl_after_finished: None,
            created: Timestamp::UNIX_EPOCH,
            max_retry_duration: None,
            dead_letter: false,
        }
    }

    /// The facts of `job`, with `default_ttl` for a job that sets no TTL.
    pub fn of(job: &'a PendingJob, status: &'a PendingJobStatus, default_ttl: Option<Duration>) -> Self {
        let seconds = |n: i32| Duration::from_secs(u64::from(n.unsigned_abs()));
        Facts {
            status,
            suspend: job.spec.suspend,
            not_before: job.spec.not_before.as_ref().map(|t| t.0),
            retry_request: job.annotations().get(RETRY_ANNOTATION).map(String::as_str),
            ttl_after_finished: job.spec.ttl_seconds_after_finished.map(seconds).or(default_ttl),
            created: job
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            max_retry_duration: job.spec.retry_policy.max_retry_duration_seconds.map(seconds),
            dead_letter: job.spec.dead_letter.is_some(),
        }
    }
}

/// What the controller should do with a job right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Call the target now.
    Attempt,
    /// Nothing to do until this much time has passed.
    Wait(Duration),
    /// Nothing to do until the job changes (finished, or suspended).
    Idle,
    /// Its time to live after finishing is up: delete it.
    Delete,
    /// Write this change to its status; no call.
    Amend(Amend),
    /// Failed, with a dead-letter record due: send it.
    DeadLetter,
}

/// A status change that needs no call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Amend {
    /// Act on a new `pendingjob.dev/retry` value.
    Redrive(String),
    /// `spec.suspend` turned true.
    Suspend,
    /// `spec.suspend` turned false.
    Resume,
    /// Show `spec.notBefore` as the next attempt.
    Schedule(Timestamp),
    /// `maxRetryDurationSeconds` is used up.
    DeadlineExceeded,
}

/// Decides from the job's spec, annotation and recorded status alone, so a
/// restarted operator (or one woken by an unrelated watch event) neither
/// resets nor hastens the schedule.
pub fn decide(facts: &Facts<'_>, now: Timestamp) -> Decision {
    let status = facts.status;
    if let Some(value) = facts.retry_request.filter(|v| !v.is_empty())
        && status.phase != Phase::Succeeded
        && status.redrive.as_ref().is_none_or(|done| done.value != value)
    {
        return Decision::Amend(Amend::Redrive(value.to_owned()));
    }
    if status.phase == Phase::Failed && facts.dead_letter && !status.dead_letter.as_ref().is_some_and(|d| d.delivered) {
        // The record goes first; the time to live waits for it.
        let due = status.dead_letter.as_ref().and_then(|d| d.next_attempt_time.as_ref());
        return due
            .and_then(|t| until(t.0, now))
            .map_or(Decision::DeadLetter, Decision::Wait);
    }
    if status.phase.is_terminal() {
        return match (facts.ttl_after_finished, &status.completion_time) {
            (Some(ttl), Some(Time(done))) => until(after(*done, ttl), now).map_or(Decision::Delete, Decision::Wait),
            _ => Decision::Idle,
        };
    }
    match (facts.suspend, status.phase == Phase::Suspended) {
        (true, true) => return Decision::Idle,
        (true, false) => return Decision::Amend(Amend::Suspend),
        (false, true) => return Decision::Amend(Amend::Resume),
        (false, false) => {}
    }
    let since_redrive = status.attempts - status.redrive.as_ref().map_or(0, |r| r.attempts);
    let deadline = facts.max_retry_duration.map(|max| {
        let base = status.redrive.as_ref().map_or(facts.created, |r| r.time.0);
        let suspended = Duration::from_secs(status.suspended_seconds.unsigned_abs());
        after(base, max + suspended)
    });
    if since_redrive > 0
        && let Some(deadline) = deadline
        && until(deadline, now).is_none()
    {
        return Decision::Amend(Amend::DeadlineExceeded);
    }
    if status.attempts == 0
        && let Some(not_before) = facts.not_before
        && not_before > now
    {
        // Status shows microseconds: a finer time is shown rounded up, and
        // compared as shown, or every look would write it again.
        let shown = transitions::ceil_to_micros(not_before);
        if status.next_retry_time.as_ref().map(|t| t.0) != Some(shown) {
            return Decision::Amend(Amend::Schedule(shown));
        }
        return Decision::Wait(until(not_before, now).unwrap_or_default());
    }
    let due = status.next_retry_time.as_ref().map(|t| t.0);
    // A job that failed since its redrive waits for no longer than its deadline.
    let wake = match (due, deadline.filter(|_| since_redrive > 0)) {
        (Some(due), Some(deadline)) => Some(due.min(deadline)),
        (due, _) => due,
    };
    wake.and_then(|t| until(t, now))
        .map_or(Decision::Attempt, Decision::Wait)
}

/// Whether a job needs nothing until it changes but, perhaps, its deletion:
/// `Some(None)` for a finished job kept for good, `Some(Some(t))` for one
/// to delete at `t`, `None` for a job the controller must look at (not
/// finished, a redrive or a dead letter to act on, its time to live up).
/// Such a job can wait outside the controller (see
/// [`crate::store::finished`]).
pub fn settled(facts: &Facts<'_>, now: Timestamp) -> Option<Option<Timestamp>> {
    let status = facts.status;
    let dead_letter_owed =
        facts.dead_letter && status.phase == Phase::Failed && !status.dead_letter.as_ref().is_some_and(|d| d.delivered);
    if !status.phase.is_terminal() || dead_letter_owed {
        return None;
    }
    match (decide(facts, now), facts.ttl_after_finished, &status.completion_time) {
        (Decision::Idle, _, _) => Some(None),
        (Decision::Wait(_), Some(ttl), Some(Time(done))) => Some(Some(after(*done, ttl))),
        _ => None,
    }
}

/// Whether an unfinished job needs nothing but time, or a change of its
/// own: `Some(Some(t))` for one next due at `t`, `Some(None)` for one
/// suspended, `None` for one the controller must look at now (or a
/// finished one). Such a job can wait outside the controller (see
/// [`crate::store::parked`]).
pub fn waits(facts: &Facts<'_>, now: Timestamp) -> Option<Option<Timestamp>> {
    if facts.status.phase.is_terminal() {
        return None;
    }
    match decide(facts, now) {
        Decision::Wait(remaining) => Some(Some(after(now, remaining))),
        Decision::Idle => Some(None),
        Decision::Attempt | Decision::Delete | Decision::Amend(_) | Decision::DeadLetter => None,
    }
}

/// The status `amend` makes of `status` at `now`.
pub fn amend(status: &PendingJobStatus, change: &Amend, now: Timestamp) -> PendingJobStatus {
    let mut next = status.clone();
    let waiting_phase = if status.attempts == 0 {
        Phase::Pending
    } else {
        Phase::Retrying
    };
    match change {
        Amend::Redrive(value) => {
            next.redrive = Some(Box::new(Redrive {
                value: value.clone(),
                time: MicroTime(transitions::ceil_to_micros(now)),
                attempts: status.attempts,
            }));
            next.next_retry_time = None;
            next.suspended_seconds = 0;
            if next.phase != Phase::Suspended {
                next.phase = waiting_phase;
            }
            if status.phase == Phase::Failed {
                next.completion_time = None;
                next.dead_letter = None;
                transitions::remove_condition(&mut next, FAILED);
                let message = format!("redriven by {RETRY_ANNOTATION}={value}");
                transitions::set_condition(&mut next, SUCCEEDED, false, "Redriven", &message, now);
            }
        }
        Amend::Suspend => {
            next.phase = Phase::Suspended;
            next.suspend_time = Some(MicroTime(transitions::ceil_to_micros(now)));
        }
        Amend::Resume => {
            next.phase = waiting_phase;
            if let Some(MicroTime(since)) = next.suspend_time.take() {
                let suspended = since.duration_until(now).as_secs().max(0);
                next.suspended_seconds = next.suspended_seconds.saturating_add(suspended);
            }
        }
        Amend::Schedule(at) => next.next_retry_time = Some(MicroTime(*at)),
        Amend::DeadlineExceeded => {
            next.next_retry_time = None;
            let message = format!(
                "gave up after {} attempts: spec.retryPolicy.maxRetryDurationSeconds has passed",
                status.attempts
            );
            transitions::give_up(&mut next, "DeadlineExceeded", &message, now);
        }
    }
    next
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Time from `now` until `t`; `None` once `t` has come.
fn until(t: Timestamp, now: Timestamp) -> Option<Duration> {
    (t > now).then(|| Duration::try_from(now.duration_until(t)).unwrap_or_default())
}

#[cfg(test)]
mod tests;
