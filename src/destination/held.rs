//! Tokens held per destination, OAuth2's and ServiceAccounts' alike: one
//! fetch per destination at a time (its callers wait for it, no one else
//! does), and a failed fetch remembered, so it is not tried again for that
//! destination before [`fetch_backoff`] (1 s, 2 s, 4 s … 1 min).
//!
//! A token and a failure are each held with what they were fetched with
//! (`S`): a change to that fetches afresh at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;

use super::secrets::Unusable;

/// Longest pause between fetches for a destination whose fetches fail.
const MAX_FETCH_BACKOFF: Duration = Duration::from_secs(60);

/// A token, what it was fetched with, and when it is to be replaced.
pub struct Cached<S> {
    /// What it was fetched with.
    pub source: S,
    /// `Bearer <token>`, marked sensitive.
    pub header: HeaderValue,
    /// When a new one is fetched instead.
    pub refresh_at: Instant,
}

/// A fetch that failed, remembered until it may be tried again.
pub struct Failed<S> {
    source: S,
    error: Unusable,
    failures: u32,
    retry_at: Instant,
}

/// What is held for one destination.
pub struct Held<S> {
    /// The token, if one was fetched.
    pub token: Option<Cached<S>>,
    failed: Option<Failed<S>>,
}

impl<S> Default for Held<S> {
    fn default() -> Self {
        Self {
            token: None,
            failed: None,
        }
    }
}

impl<S: PartialEq> Held<S> {
    /// The token fetched with `source`, while it is not due for a refresh.
    pub fn fresh(&self, source: &S) -> Option<HeaderValue> {
        self.token
            .as_ref()
            .filter(|cached| cached.source == *source && Instant::now() < cached.refresh_at)
            .map(|cached| cached.header.clone())
    }

    /// The error of the last fetch with `source`, while it may not be tried again.
    pub fn still_failing(&self, source: &S) -> Option<Unusable> {
        self.failed
            .as_ref()
            .filter(|failed| failed.source == *source && Instant::now() < failed.retry_at)
            .map(|failed| failed.error.clone())
    }

    /// Keeps `header`, fetched with `source` at `fetched_at`, until `lifetime` is up.
    pub fn fetched(&mut self, source: S, header: HeaderValue, fetched_at: Instant, lifetime: Duration) {
        self.failed = None;
        self.token = Some(Cached {
            source,
            header,
            refresh_at: fetched_at + lifetime,
        });
    }

    /// Remembers that a fetch with `source` failed with `error`: one more
    /// failure in a row if the last one was with the same source.
    pub fn failed(&mut self, source: S, error: Unusable) {
        let failures = self
            .failed
            .as_ref()
            .filter(|failed| failed.source == source)
            .map_or(1, |failed| failed.failures.saturating_add(1));
        self.failed = Some(Failed {
            source,
            error,
            failures,
            retry_at: Instant::now() + fetch_backoff(failures),
        });
    }
}

/// What is held, per destination key.
pub struct PerDestination<S> {
    by_destination: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Held<S>>>>>,
}

impl<S> Default for PerDestination<S> {
    fn default() -> Self {
        Self {
            by_destination: Mutex::default(),
        }
    }
}

impl<S> PerDestination<S> {
    /// Destination `key`'s holding, locked by one caller at a time.
    pub fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<Held<S>>> {
        self.lock().entry(key.to_owned()).or_default().clone()
    }

    /// Drops what destination `key` holds.
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// How many destinations hold something.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Held<S>>>>> {
        self.by_destination.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long a destination waits for its next fetch after `failures` failed
/// ones in a row: 1 s, doubling, at most [`MAX_FETCH_BACKOFF`].
pub fn fetch_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_FETCH_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_fetches_back_off_to_a_minute() {
        let cases = [
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (6, 32),
            (7, 60),
            (40, 60),
            (u32::MAX, 60),
        ];
        for (failures, seconds) in cases {
            assert_eq!(fetch_backoff(failures), Duration::from_secs(seconds), "{failures}");
        }
    }

    #[test]
    fn a_failure_blocks_its_source_only_and_a_fetch_clears_it() {
        let mut held: Held<&str> = Held::default();
        let error = Unusable::new("TokenRequestFailed", "refused".into());
        held.failed("a", error.clone());
        assert_eq!(held.still_failing(&"a"), Some(error.clone()));
        assert_eq!(held.still_failing(&"b"), None, "another source is tried at once");
        held.failed("a", error.clone());
        assert_eq!(held.failed.as_ref().map(|f| f.failures), Some(2), "in a row");
        held.failed("b", error);
        assert_eq!(
            held.failed.as_ref().map(|f| f.failures),
            Some(1),
            "a new source starts over"
        );
        let now = Instant::now();
        held.fetched("b", HeaderValue::from_static("Bearer t"), now, Duration::from_secs(60));
        assert_eq!(held.still_failing(&"b"), None);
        assert_eq!(held.fresh(&"b"), Some(HeaderValue::from_static("Bearer t")));
        assert_eq!(held.fresh(&"a"), None, "held for its own source only");
        held.fetched("b", HeaderValue::from_static("Bearer u"), now, Duration::ZERO);
        assert_eq!(held.fresh(&"b"), None, "due for a refresh");
    }
}
