//! How busy each destination is right now: calls in flight, and due jobs
//! waiting for it (circuit open, suspended, not ready). The Destination
//! controller shows both in the status, so `kubectl get destinations` says
//! how many jobs wait and why, with no write per job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts per destination, by the key its calls are limited by.
#[derive(Debug, Default)]
pub struct Occupancy {
    counts: Arc<Mutex<HashMap<String, Counts>>>,
}

/// A destination's counts at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls in flight.
    pub in_flight: usize,
    /// Due jobs waiting for the destination.
    pub waiting: usize,
}

/// Which count a [`Held`] adds to.
#[derive(Clone, Copy, Debug)]
enum Which {
    InFlight,
    Waiting,
}

/// One call or one waiting job, counted until dropped.
#[derive(Debug)]
pub struct Held {
    /// True when it is the first of its count (from zero): time to show it.
    pub first: bool,
    counts: Arc<Mutex<HashMap<String, Counts>>>,
    key: String,
    which: Which,
}

impl Occupancy {
    /// Counts a call to `key` in flight until the guard is dropped.
    pub fn calling(&self, key: &str) -> Held {
        self.hold(key, Which::InFlight)
    }

    /// Counts a job waiting for `key` until the guard is dropped.
    pub fn waiting(&self, key: &str) -> Held {
        self.hold(key, Which::Waiting)
    }

    /// `key`'s counts now.
    pub fn counts(&self, key: &str) -> Counts {
        lock(&self.counts).get(key).copied().unwrap_or_default()
    }

    fn hold(&self, key: &str, which: Which) -> Held {
        let mut counts = lock(&self.counts);
        let entry = counts.entry(key.to_owned()).or_default();
        let count = match which {
            Which::InFlight => &mut entry.in_flight,
            Which::Waiting => &mut entry.waiting,
        };
        *count += 1;
        Held {
            first: *count == 1,
            counts: self.counts.clone(),
            key: key.to_owned(),
            which,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(entry) = counts.get_mut(&self.key) {
            match self.which {
                Which::InFlight => entry.in_flight = entry.in_flight.saturating_sub(1),
                Which::Waiting => entry.waiting = entry.waiting.saturating_sub(1),
            }
            if *entry == Counts::default() {
                counts.remove(&self.key);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_while_held_and_leave_nothing_behind() {
        let occupancy = Occupancy::default();
        let calls = [occupancy.calling("a"), occupancy.calling("a")];
        assert_eq!((calls[0].first, calls[1].first), (true, false));
        let waiting = occupancy.waiting("a");
        let other = occupancy.waiting("b");
        assert_eq!(
            occupancy.counts("a"),
            Counts {
                in_flight: 2,
                waiting: 1
            }
        );
        assert_eq!(
            occupancy.counts("b"),
            Counts {
                in_flight: 0,
                waiting: 1
            }
        );
        drop(calls);
        drop(waiting);
        assert_eq!(occupancy.counts("a"), Counts::default());
        drop(other);
        assert!(occupancy.counts.lock().expect("lock").is_empty());
    }
}
