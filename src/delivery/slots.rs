//! Call slots: how many calls may be in flight, in all, per namespace and
//! per target.
//!
//! A target is a Destination, or a raw URL's scheme, host and port as one
//! namespace calls it. A call first takes a slot of its target, then one of
//! the global pool, so jobs queued behind a busy or hanging target hold no
//! global slot: that target can occupy its own share of the pool, never the
//! rest. The pool is shared fairly between namespaces ([`shares`]): none
//! holds more than its share, so a namespace that comes later always finds
//! a slot free.
//!
//! [`shares`]: super::shares

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use super::shares::{Pool, Share};

/// The right to make one call; released on drop.
#[derive(Debug)]
pub struct Slot {
    _target: OwnedSemaphorePermit,
    _global: Share,
}

/// The global pool, with its per-namespace share, and the per-target limits.
#[derive(Debug)]
pub struct Slots {
    global: Arc<Pool>,
    per_target: usize,
    // Weak, so a target's semaphore goes away with its last waiter.
    targets: Mutex<HashMap<String, Weak<Semaphore>>>,
}

impl Slots {
    /// `global` calls at once in all, at most `per_namespace` of one
    /// namespace, at most `per_target` to one target.
    pub fn new(global: usize, per_namespace: usize, per_target: usize) -> Self {
        Self {
            global: Pool::new(global, per_namespace),
            per_target: per_target.max(1),
            targets: Mutex::default(),
        }
    }

    /// Waits for a slot for a call of `namespace` to `target`, of which at
    /// most `limit` (the per-target default when `None`, and never more than
    /// the namespace's share) may be in flight; a new limit applies once the
    /// target's calls have all ended. Fails only if a semaphore was closed,
    /// which this type never does.
    pub async fn acquire(&self, namespace: &str, target: &str, limit: Option<usize>) -> Result<Slot, AcquireError> {
        let limit = limit.unwrap_or(self.per_target).min(self.global.share());
        let target = self.target(target, limit).acquire_owned().await?;
        let global = self.global.acquire(namespace).await;
        Ok(Slot {
            _target: target,
            _global: global,
        })
    }

    fn target(&self, target: &str, limit: usize) -> Arc<Semaphore> {
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(semaphore) = targets.get(target).and_then(Weak::upgrade) {
            return semaphore;
        }
        targets.retain(|_, semaphore| semaphore.strong_count() > 0);
        let semaphore = Arc::new(Semaphore::new(limit.max(1)));
        targets.insert(target.to_owned(), Arc::downgrade(&semaphore));
        semaphore
    }
}

/// The target of `url` for the per-target limit: `scheme://host:port`, with
/// the scheme's default port filled in. An unparsable URL is its own target.
pub fn target_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        ),
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn target_of_table() {
        let cases = [
            ("http://api.example/charges", "http://api.example:80"),
            ("https://api.example/a?b=c", "https://api.example:443"),
            ("https://API.example:8443/x", "https://api.example:8443"),
            ("http://127.0.0.1:9090/api2/simulate", "http://127.0.0.1:9090"),
            ("http://user:secret@api.example/", "http://api.example:80"),
            ("not a url", "not a url"),
        ];
        for (url, want) in cases {
            assert_eq!(target_of(url), want, "{url}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_target_holds_only_its_own_share() {
        let slots = Arc::new(Slots::new(4, 4, 2));
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(slots.acquire("ns", "http://slow:80", None).await.unwrap());
        }
        // A third call to the same target waits, holding no global slot...
        let queued = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("ns", "http://slow:80", None).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!queued.is_finished());
        // ...so other targets get the two global slots left.
        let other = [
            slots.acquire("ns", "http://a:80", None).await.unwrap(),
            slots.acquire("ns", "http://b:80", None).await.unwrap(),
        ];
        let fifth = tokio::time::timeout(Duration::from_millis(10), slots.acquire("ns", "http://c:80", None)).await;
        assert!(fifth.is_err(), "the global pool is full");
        drop(other);
        drop(held.pop());
        assert!(queued.await.unwrap().is_ok());
    }
}
