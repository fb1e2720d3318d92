//! Rate limits per destination: a token bucket (governor's GCRA) of
//! `requestsPerSecond` with `burst`, shared by all of the destination's
//! calls. A call waits for its token before it takes a call slot, so a job
//! held back by the rate holds no slot.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::api::RateLimit;

/// The rate limiters of destinations, by destination.
#[derive(Debug, Default)]
pub struct Pacing {
    limiters: Mutex<HashMap<String, (RateLimit, Arc<DefaultDirectRateLimiter>)>>,
}

impl Pacing {
    /// Waits until a call to `key` may start under `limit` (at once when
    /// there is none). A changed limit starts a fresh bucket.
    pub async fn wait(&self, key: &str, limit: Option<RateLimit>) {
        let Some(limit) = limit else { return };
        let limiter = self.limiter(key, limit);
        limiter.until_ready().await;
    }

    /// Drops `key`'s bucket; a call still waiting on it finishes its wait.
    pub fn remove(&self, key: &str) {
        self.limiters.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// How many buckets are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.limiters.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn limiter(&self, key: &str, limit: RateLimit) -> Arc<DefaultDirectRateLimiter> {
        let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((current, limiter)) = limiters.get(key)
            && *current == limit
        {
            return limiter.clone();
        }
        let limiter = Arc::new(RateLimiter::direct(quota(limit)));
        limiters.insert(key.to_owned(), (limit, limiter.clone()));
        limiter
    }
}

/// The quota for `limit`; the schema keeps both numbers at least 1.
fn quota(limit: RateLimit) -> Quota {
    let positive = |n: i32| NonZeroU32::new(n.max(1).unsigned_abs()).unwrap_or(NonZeroU32::MIN);
    let rate = positive(limit.requests_per_second);
    Quota::per_second(rate).allow_burst(limit.burst.map_or(rate, positive))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_A_SECOND: RateLimit = RateLimit {
        requests_per_second: 5,
        burst: Some(3),
    };

    #[tokio::test]
    async fn a_burst_passes_at_once_and_the_next_call_must_wait() {
        let pacing = Pacing::default();
        for _ in 0..3 {
            pacing.wait("d", Some(FIVE_A_SECOND)).await;
        }
        assert!(
            pacing.limiter("d", FIVE_A_SECOND).check().is_err(),
            "the burst is spent"
        );
    }

    #[tokio::test]
    async fn each_destination_and_each_new_limit_has_its_own_bucket() {
        let pacing = Pacing::default();
        for _ in 0..3 {
            pacing.wait("a", Some(FIVE_A_SECOND)).await;
        }
        assert!(pacing.limiter("b", FIVE_A_SECOND).check().is_ok());
        let faster = RateLimit {
            requests_per_second: 50,
            burst: None,
        };
        assert!(
            pacing.limiter("a", faster).check().is_ok(),
            "a changed limit starts afresh"
        );
        for _ in 0..1000 {
            pacing.wait("a", None).await;
        }
    }

    #[test]
    fn burst_defaults_to_the_rate() {
        let quota = quota(RateLimit {
            requests_per_second: 7,
            burst: None,
        });
        assert_eq!(quota.burst_size().get(), 7);
    }
}
