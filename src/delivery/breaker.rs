//! Circuit breakers per destination: after `consecutiveFailures` failed calls
//! in a row, no calls for `openSeconds`; then one probe call, whose outcome
//! closes the circuit or opens it again.
//!
//! A failed call is one worth retrying (no response, a timeout, 408, 429,
//! 5xx): the target is unwell. Any other answer, a 4xx included, shows it up.
//! While a circuit is open its due jobs wait in their attempt tasks, without
//! calls, attempts or writes. A probe whose job ends up not calling (it was
//! no longer due, say) is given up after `openSeconds`, and another job
//! probes. The decision logic is pure ([`Breaker::admit`], [`Breaker::record`]).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::api::{Circuit, CircuitBreaker};

/// One destination's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breaker {
    state: State,
    failures: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

/// Whether a call may go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Yes; `probe` when it tests a circuit that was open.
    Call { probe: bool },
    /// No: the circuit is open, or a probe is under way.
    Wait,
}

impl Breaker {
    /// A closed breaker.
    pub fn new() -> Self {
        Self {
            state: State::Closed,
            failures: 0,
        }
    }

    /// The state, as shown in the destination's status.
    pub fn circuit(&self) -> Circuit {
        match self.state {
            State::Closed => Circuit::Closed,
            State::Open { .. } => Circuit::Open,
            State::HalfOpen { .. } => Circuit::HalfOpen,
        }
    }

    /// While the circuit is open at `now`: how long until a probe may go.
    pub fn open_for_another(&self, now: Instant) -> Option<Duration> {
        match self.state {
            State::Open { until } if now < until => Some(until - now),
            _ => None,
        }
    }

    /// Whether due jobs must wait at `now` without trying: the circuit is
    /// open, or a probe is under way. Changes nothing.
    pub fn blocked(&self, now: Instant, settings: CircuitBreaker) -> bool {
        match self.state {
            State::Closed => false,
            State::Open { until } => now < until,
            State::HalfOpen { probe_since } => now.duration_since(probe_since) < open_for(settings),
        }
    }

    /// Whether a call may start at `now`.
    pub fn admit(&mut self, now: Instant, settings: CircuitBreaker) -> Admit {
        let open = open_for(settings);
        match self.state {
            State::Closed => Admit::Call { probe: false },
            State::Open { until } if now < until => Admit::Wait,
            State::HalfOpen { probe_since } if now.duration_since(probe_since) < open => Admit::Wait,
            State::Open { .. } | State::HalfOpen { .. } => {
                self.state = State::HalfOpen { probe_since: now };
                Admit::Call { probe: true }
            }
        }
    }

    /// Records a call that ended at `now`, `failed` or not.
    pub fn record(&mut self, failed: bool, now: Instant, settings: CircuitBreaker) {
        if !failed {
            *self = Self::new();
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let trips = match self.state {
            State::Closed => self.failures >= settings.consecutive_failures,
            State::HalfOpen { .. } => true,
            // A call admitted before the circuit opened: it changes nothing.
            State::Open { .. } => false,
        };
        if trips {
            self.state = State::Open {
                until: now + open_for(settings),
            };
        }
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new()
    }
}

fn open_for(settings: CircuitBreaker) -> Duration {
    Duration::from_secs(u64::from(settings.open_seconds.max(1).unsigned_abs()))
}

/// The breakers of all destinations, by destination.
#[derive(Debug, Default)]
pub struct Breakers {
    breakers: Mutex<HashMap<String, Breaker>>,
}

impl Breakers {
    /// Whether due jobs of `key` must wait without trying (see [`Breaker::blocked`]).
    pub fn blocked(&self, key: &str, settings: CircuitBreaker) -> bool {
        self.with(key, |breaker| breaker.blocked(Instant::now(), settings))
    }

    /// Whether a call to `key` may start now.
    pub fn admit(&self, key: &str, settings: CircuitBreaker) -> Admit {
        self.with(key, |breaker| breaker.admit(Instant::now(), settings))
    }

    /// Records a call to `key`; returns the circuit's state when it changed.
    pub fn record(&self, key: &str, failed: bool, settings: CircuitBreaker) -> Option<Circuit> {
        self.with(key, |breaker| {
            let before = breaker.circuit();
            breaker.record(failed, Instant::now(), settings);
            let after = breaker.circuit();
            (after != before).then_some(after)
        })
    }

    /// The state of `key`'s circuit.
    pub fn circuit(&self, key: &str) -> Circuit {
        self.with(key, |breaker| breaker.circuit())
    }

    /// While `key`'s circuit is open: how long until a probe may go.
    pub fn open_for_another(&self, key: &str) -> Option<Duration> {
        self.with(key, |breaker| breaker.open_for_another(Instant::now()))
    }

    /// Drops `key`'s breaker.
    pub fn remove(&self, key: &str) {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// How many breakers are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breakers = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        f(breakers.entry(key.to_owned()).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: CircuitBreaker = CircuitBreaker {
        consecutive_failures: 3,
        open_seconds: 10,
    };

    #[test]
    fn the_life_of_a_circuit() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut b = Breaker::new();
        // (step, expected admit before it, circuit after it)
        assert_eq!(b.admit(at(0), SETTINGS), Admit::Call { probe: false });
        b.record(true, at(0), SETTINGS);
        b.record(true, at(0), SETTINGS);
        assert_eq!(b.circuit(), Circuit::Closed, "2 failures of 3");
        b.record(false, at(0), SETTINGS);
        b.record(true, at(0), SETTINGS);
        b.record(true, at(0), SETTINGS);
        assert_eq!(b.circuit(), Circuit::Closed, "a success starts the count afresh");
        b.record(true, at(1), SETTINGS);
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(
            b.open_for_another(at(4)),
            Some(Duration::from_secs(7)),
            "opened at 1 for 10 s"
        );
        assert_eq!(b.open_for_another(at(11)), None, "a probe may go");
        assert!(b.blocked(at(5), SETTINGS));
        assert_eq!(b.admit(at(5), SETTINGS), Admit::Wait);
        b.record(true, at(5), SETTINGS);
        assert_eq!(
            b.admit(at(10), SETTINGS),
            Admit::Wait,
            "a late failure does not extend it"
        );
        assert!(!b.blocked(at(11), SETTINGS), "time for a probe");
        assert_eq!(b.admit(at(11), SETTINGS), Admit::Call { probe: true });
        assert_eq!(b.circuit(), Circuit::HalfOpen);
        assert!(b.blocked(at(11), SETTINGS));
        assert_eq!(b.admit(at(11), SETTINGS), Admit::Wait, "one probe at a time");
        b.record(true, at(12), SETTINGS);
        assert_eq!(b.circuit(), Circuit::Open, "a failed probe opens it again");
        assert_eq!(b.admit(at(21), SETTINGS), Admit::Wait);
        assert_eq!(b.admit(at(22), SETTINGS), Admit::Call { probe: true });
        b.record(false, at(22), SETTINGS);
        assert_eq!(b.circuit(), Circuit::Closed, "a good probe closes it");
        assert_eq!(b.admit(at(22), SETTINGS), Admit::Call { probe: false });
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_open_seconds() {
        let t0 = Instant::now();
        let mut b = Breaker::new();
        for _ in 0..3 {
            b.record(true, t0, SETTINGS);
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(later, SETTINGS), Admit::Call { probe: true });
        assert_eq!(b.admit(later + Duration::from_secs(9), SETTINGS), Admit::Wait);
        assert_eq!(
            b.admit(later + Duration::from_secs(10), SETTINGS),
            Admit::Call { probe: true }
        );
    }

    #[test]
    fn breakers_report_changes_only() {
        let breakers = Breakers::default();
        assert_eq!(breakers.record("d", false, SETTINGS), None);
        assert_eq!(breakers.record("d", true, SETTINGS), None);
        assert_eq!(breakers.record("d", true, SETTINGS), None);
        assert_eq!(breakers.record("d", true, SETTINGS), Some(Circuit::Open));
        assert_eq!(breakers.circuit("d"), Circuit::Open);
        assert_eq!(breakers.circuit("other"), Circuit::Closed);
    }
}
