//! The Destinations the intake saw lately: one read per destination per
//! [`TTL`], not one per request, in a map of bounded size.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a destination seen is taken to exist without asking again.
pub const TTL: Duration = Duration::from_secs(10);
/// The most destinations remembered; one more starts the map afresh.
const MAX_REMEMBERED: usize = 10_000;

/// Destinations by namespace and name, and when each was seen.
#[derive(Debug, Default)]
pub struct Seen(Mutex<HashMap<(String, String), Instant>>);

impl Seen {
    /// True when destination `name` in `namespace` was seen within [`TTL`].
    pub fn lately(&self, namespace: &str, name: &str) -> bool {
        self.map()
            .get(&(namespace.to_owned(), name.to_owned()))
            .is_some_and(|at| at.elapsed() < TTL)
    }

    /// Remembers that destination `name` in `namespace` exists now.
    pub fn saw(&self, namespace: &str, name: &str) {
        let mut seen = self.map();
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert((namespace.to_owned(), name.to_owned()), Instant::now());
    }

    fn map(&self) -> MutexGuard<'_, HashMap<(String, String), Instant>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_is_remembered_in_its_namespace_only() {
        let seen = Seen::default();
        assert!(!seen.lately("a", "pay"));
        seen.saw("a", "pay");
        assert!(seen.lately("a", "pay"));
        assert!(!seen.lately("b", "pay"));
        for n in 0..MAX_REMEMBERED {
            seen.saw("c", &n.to_string());
        }
        assert!(!seen.lately("a", "pay"), "a full map starts afresh");
    }
}
