//! `kubectl pj why`: the one thing a job waits for, from what the API server
//! holds. The order is the operator's: a finished job waits for nothing; a
//! suspended one for `resume`; then `notBefore`, then the backoff; only a due
//! job meets its Destination's gates (suspended, not Ready, circuit open),
//! and then its share of calls (rate limit, call slots).

use jiff::Timestamp;

use super::when;
use crate::api::{Circuit, Destination, PendingJob, Phase};

/// What the plugin found for the job's Destination.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The job calls a raw URL.
    None,
    /// The Destination, as read.
    Found(&'a Destination),
    /// No Destination of that name exists.
    Missing,
    /// It could not be read (the API server's words, e.g. Forbidden).
    Unreadable(String),
}

/// What a job waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Nothing: it finished.
    Finished {
        phase: Phase,
        at: Option<Timestamp>,
        message: String,
    },
    /// `spec.suspend` is true.
    Suspended { since: Option<Timestamp> },
    /// `spec.notBefore` is ahead.
    NotBefore(Timestamp),
    /// The backoff after a failed attempt.
    Backoff(Timestamp),
    /// Its Destination does not exist.
    DestinationMissing(String),
    /// Its Destination could not be read.
    DestinationUnreadable(String, String),
    /// Its Destination is suspended.
    DestinationSuspended(String),
    /// Its Destination is not Ready.
    DestinationNotReady {
        name: String,
        reason: String,
        message: String,
    },
    /// Its Destination's circuit is open, until a probe may go (as shown).
    CircuitOpen { name: String, until: Option<Timestamp> },
    /// Due, and every call slot the Destination allows is taken.
    CallSlot { in_flight: i32, max: i32 },
    /// Due, behind the Destination's rate limit.
    RateLimited { requests_per_second: i32, burst: i32 },
    /// Due: the operator calls it as soon as it has a free call slot.
    Due(Timestamp),
}

/// The whole answer: the wait, and the lines around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The one thing the job waits for.
    pub wait: Wait,
    /// `Waits for:` as printed.
    pub waits_for: String,
    /// `Last attempt:` as printed.
    pub last_attempt: String,
    /// `Next:` as printed.
    pub next: String,
}

/// Works out what `job` waits for at `now`.
#[must_use]
pub fn explain(job: &PendingJob, destination: &Lookup<'_>, now: Timestamp) -> Answer {
    let wait = decide(job, destination, now);
    Answer {
        waits_for: describe(&wait, now),
        last_attempt: last_attempt(job, now),
        next: next(job, &wait, now),
        wait,
    }
}

/// The decision alone, in the operator's order.
#[must_use]
pub fn decide(job: &PendingJob, destination: &Lookup<'_>, now: Timestamp) -> Wait {
    let status = job.status.clone().unwrap_or_default();
    if status.phase.is_terminal() {
        let condition = status.conditions.iter().find(|c| c.status == "True");
        return Wait::Finished {
            phase: status.phase,
            at: status.completion_time.map(|t| t.0),
            message: condition.map(|c| c.message.clone()).unwrap_or_default(),
        };
    }
    if job.spec.suspend {
        return Wait::Suspended {
            since: status.suspend_time.map(|t| t.0),
        };
    }
    if let Some(at) = job.spec.not_before.as_ref().map(|t| t.0).filter(|t| *t > now) {
        return Wait::NotBefore(at);
    }
    let due = status
        .next_retry_time
        .map(|t| t.0)
        .or_else(|| job.spec.not_before.as_ref().map(|t| t.0))
        .or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    if due > now {
        return Wait::Backoff(due);
    }
    let name = job
        .spec
        .destination_ref
        .as_ref()
        .map(|d| d.name.clone())
        .unwrap_or_default();
    match destination {
        Lookup::None => Wait::Due(due),
        Lookup::Missing => Wait::DestinationMissing(name),
        Lookup::Unreadable(why) => Wait::DestinationUnreadable(name, why.clone()),
        Lookup::Found(d) => gate(d, name, due),
    }
}

/// A due job's Destination gates, then its share of calls.
fn gate(destination: &Destination, name: String, due: Timestamp) -> Wait {
    let status = destination.status.clone().unwrap_or_default();
    if destination.spec.suspend {
        return Wait::DestinationSuspended(name);
    }
    match status.conditions.iter().find(|c| c.type_ == "Ready") {
        Some(ready) if ready.status == "True" => {}
        Some(ready) => {
            return Wait::DestinationNotReady {
                name,
                reason: ready.reason.clone(),
                message: ready.message.clone(),
            };
        }
        None => {
            return Wait::DestinationNotReady {
                name,
                reason: "NotChecked".to_owned(),
                message: "the operator has not checked it yet".to_owned(),
            };
        }
    }
    if status.circuit == Some(Circuit::Open) {
        let until = status.circuit_open_until.map(|t| t.0);
        return Wait::CircuitOpen { name, until };
    }
    let in_flight = status.in_flight.unwrap_or(0);
    if let Some(max) = destination.spec.max_concurrency.filter(|max| in_flight >= *max) {
        return Wait::CallSlot { in_flight, max };
    }
    if let Some(rate) = destination.spec.rate_limit {
        return Wait::RateLimited {
            requests_per_second: rate.requests_per_second,
            burst: rate.burst.unwrap_or(rate.requests_per_second),
        };
    }
    Wait::Due(due)
}

fn describe(wait: &Wait, now: Timestamp) -> String {
    match wait {
        Wait::Finished { phase, at, message } => {
            let at = at.map(|t| format!(" at {}", when(t, now))).unwrap_or_default();
            let message = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            format!("nothing: {phase:?}{at}{message}")
        }
        Wait::Suspended { since } => match since {
            Some(t) => format!("resume: suspended since {} (kubectl pj resume)", when(*t, now)),
            None => "resume: spec.suspend is true (kubectl pj resume)".to_owned(),
        },
        Wait::NotBefore(t) => format!("notBefore: {}", when(*t, now)),
        Wait::Backoff(t) => format!("backoff until {}", when(*t, now)),
        Wait::DestinationMissing(name) => format!("Destination {name:?}, which does not exist"),
        Wait::DestinationUnreadable(name, why) => format!("Destination {name:?}, which cannot be read: {why}"),
        Wait::DestinationSuspended(name) => format!("Destination {name:?}, which is suspended"),
        Wait::DestinationNotReady { name, reason, message } => {
            format!("Destination {name:?} to be Ready: {reason}: {message}")
        }
        Wait::CircuitOpen { name, until } => match until {
            Some(t) => format!(
                "Destination {name:?}'s circuit: open until {}, then one probe call",
                when(*t, now)
            ),
            None => format!("Destination {name:?}'s circuit: open, then one probe call"),
        },
        Wait::CallSlot { in_flight, max } => {
            format!("a call slot: the Destination allows {max} calls at once and {in_flight} are in flight")
        }
        Wait::RateLimited {
            requests_per_second,
            burst,
        } => format!("its turn under the Destination's rate limit ({requests_per_second}/s, burst {burst}); due now"),
        Wait::Due(t) => format!("a call slot: due since {}", when(*t, now)),
    }
}

fn last_attempt(job: &PendingJob, now: Timestamp) -> String {
    let status = job.status.clone().unwrap_or_default();
    let Some(at) = status.last_attempt_time.map(|t| t.0) else {
        return "none yet".to_owned();
    };
    let outcome = match (status.last_status_code, status.last_error.as_deref()) {
        // The operator's own message for a bad status starts with it.
        (Some(code), Some(error)) if error.starts_with(&format!("HTTP {code}")) => error.to_owned(),
        (Some(code), Some(error)) => format!("HTTP {code}: {error}"),
        (Some(code), None) => format!("HTTP {code}"),
        (None, Some(error)) => error.to_owned(),
        (None, None) => "no response recorded".to_owned(),
    };
    format!("#{} at {}: {outcome}", status.attempts, when(at, now))
}

fn next(job: &PendingJob, wait: &Wait, now: Timestamp) -> String {
    let status = job.status.clone().unwrap_or_default();
    let attempt = status.attempts + 1;
    let limit = job.spec.retry_policy.max_attempts.map_or_else(
        || "no attempt limit".to_owned(),
        |max| format!("gives up after attempt #{max}"),
    );
    match wait {
        Wait::Finished {
            phase: Phase::Failed, ..
        } => "nothing, unless redriven (kubectl pj retry)".to_owned(),
        Wait::Finished { .. } => "nothing: it is done".to_owned(),
        Wait::Suspended { .. } => format!("attempt #{attempt} once resumed; {limit}"),
        Wait::NotBefore(t) | Wait::Backoff(t) => format!("attempt #{attempt} at {}; {limit}", when(*t, now)),
        _ => format!("attempt #{attempt} as soon as it can; {limit}"),
    }
}

#[cfg(test)]
mod tests;
