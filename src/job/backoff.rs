//! Capped exponential backoff, in pure integer arithmetic.
//!
//! The delay after the n-th failed attempt is
//! `min(initialDelaySeconds * multiplier^(n-1), maxDelaySeconds)`, then jitter,
//! then raised to the target's `Retry-After` (never above the cap).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use crate::api::{Jitter, RetryPolicy};

/// The un-jittered delay after the `failures`-th failed attempt (1-based).
///
/// Never overflows: any product beyond the cap is the cap. Out-of-range
/// policy values (which the CRD schema rejects) are clamped to at least 1.
pub fn next_delay(policy: &RetryPolicy, failures: i32) -> Duration {
    let initial = u64::from(policy.initial_delay_seconds.max(1).unsigned_abs());
    let cap = u64::from(policy.max_delay_seconds.max(1).unsigned_abs()).max(initial);
    let multiplier = u64::from(policy.multiplier.max(1).unsigned_abs());
    let exponent = failures.max(1).unsigned_abs() - 1;
    let seconds = multiplier
        .checked_pow(exponent)
        .and_then(|factor| initial.checked_mul(factor))
        .map_or(cap, |s| s.min(cap));
    Duration::from_secs(seconds)
}

/// Applies `jitter` to `delay`, with `unit` a number in [0, 1) chosen by the caller.
pub fn jittered(delay: Duration, jitter: Jitter, unit: f64) -> Duration {
    let unit = unit.clamp(0.0, 1.0);
    match jitter {
        Jitter::None => delay,
        Jitter::Full => delay.mul_f64(unit),
        Jitter::Equal => delay / 2 + (delay / 2).mul_f64(unit),
    }
}

/// The delay to wait after the `failures`-th failed attempt: backoff, jitter,
/// and the target's `Retry-After`, which may raise the delay up to the cap.
pub fn retry_delay(policy: &RetryPolicy, failures: i32, retry_after: Option<Duration>, unit: f64) -> Duration {
    let delay = jittered(next_delay(policy, failures), policy.jitter, unit);
    let cap = Duration::from_secs(u64::from(policy.max_delay_seconds.max(1).unsigned_abs()));
    match retry_after {
        Some(asked) if asked > delay => asked.min(cap).max(delay),
        _ => delay,
    }
}

/// First delay before retrying a job whose reconcile failed on Kubernetes trouble.
pub const ERROR_DELAY_INITIAL: Duration = Duration::from_secs(1);
/// Longest delay between such retries.
pub const ERROR_DELAY_MAX: Duration = Duration::from_secs(300);

/// The delay before retrying a job after its `failures`-th consecutive
/// infrastructure error (a failed status write, an unreachable API server):
/// 1 s, 2 s, 4 s … capped at 5 min. Never overflows.
pub fn error_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    ERROR_DELAY_INITIAL
        .checked_mul(1 << exponent)
        .map_or(ERROR_DELAY_MAX, |d| d.min(ERROR_DELAY_MAX))
}

/// A number in [0, 1) that is fixed for one job's n-th attempt.
///
/// Jitter spreads the retries of many jobs; deriving it from the job's UID
/// rather than a random source keeps the schedule reproducible.
pub fn jitter_unit(uid: &str, attempt: i32) -> f64 {
    let mut hasher = DefaultHasher::new();
    (uid, attempt).hash(&mut hasher);
    // The top 53 bits fill an f64 mantissa exactly.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial: i32, max: i32, multiplier: i32) -> RetryPolicy {
        RetryPolicy {
            initial_delay_seconds: initial,
            max_delay_seconds: max,
            multiplier,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn default_policy_follows_the_seed_schedule() {
        let p = RetryPolicy::default();
        let delays: Vec<u64> = (1..=10).map(|n| next_delay(&p, n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn next_delay_table() {
        // (initial, max, multiplier, failures, expected seconds)
        let cases = [
            (1, 4, 2, 1, 1),
            (1, 4, 2, 2, 2),
            (1, 4, 2, 3, 4),
            (1, 4, 2, 4, 4),
            (5, 60, 1, 7, 5),   // multiplier 1: constant
            (3, 100, 3, 3, 27), // 3 * 3^2
            (3, 100, 3, 4, 81),
            (3, 100, 3, 5, 100),
            (2, 300, 2, 0, 2),  // below range: treated as the first failure
            (2, 300, 2, -5, 2), // likewise
            (10, 5, 2, 1, 10),  // cap below initial (schema forbids): initial wins
        ];
        for (initial, max, multiplier, failures, want) in cases {
            let got = next_delay(&policy(initial, max, multiplier), failures).as_secs();
            assert_eq!(got, want, "initial={initial} max={max} x{multiplier} n={failures}");
        }
    }

    #[test]
    fn next_delay_never_overflows() {
        for multiplier in [2, 10] {
            let p = policy(86_400, 86_400, multiplier);
            for failures in [31, 32, 63, 64, 65, 1_000, i32::MAX] {
                assert_eq!(next_delay(&p, failures).as_secs(), 86_400);
            }
        }
        assert_eq!(next_delay(&policy(2, 300, 10), i32::MAX).as_secs(), 300);
    }

    #[test]
    fn error_delay_table() {
        let cases = [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 4),
            (9, 256),
            (10, 300),
            (32, 300),
            (u32::MAX, 300),
        ];
        for (failures, want) in cases {
            assert_eq!(error_delay(failures).as_secs(), want, "failures={failures}");
        }
    }

    #[test]
    fn jitter_table() {
        let d = Duration::from_secs(8);
        let cases = [
            (Jitter::None, 0.0, 8.0),
            (Jitter::None, 0.99, 8.0),
            (Jitter::Full, 0.0, 0.0),
            (Jitter::Full, 0.5, 4.0),
            (Jitter::Equal, 0.0, 4.0),
            (Jitter::Equal, 0.5, 6.0),
            (Jitter::Equal, 1.0, 8.0),
            (Jitter::Full, 7.0, 8.0), // out-of-range unit is clamped
        ];
        for (jitter, unit, want) in cases {
            assert_eq!(jittered(d, jitter, unit).as_secs_f64(), want, "{jitter:?} unit={unit}");
        }
    }

    #[test]
    fn retry_after_raises_the_delay_but_never_above_the_cap() {
        let p = policy(2, 30, 2);
        let secs = |d: Option<u64>, n| retry_delay(&p, n, d.map(Duration::from_secs), 0.0).as_secs();
        assert_eq!(secs(None, 1), 2);
        assert_eq!(
            secs(Some(1), 1),
            2,
            "a shorter Retry-After does not shorten the backoff"
        );
        assert_eq!(secs(Some(10), 1), 10);
        assert_eq!(secs(Some(3600), 1), 30, "capped at maxDelaySeconds");
        assert_eq!(secs(Some(3600), 9), 30);
    }

    #[test]
    fn jitter_unit_is_stable_in_range_and_varies() {
        let a = jitter_unit("uid-a", 1);
        assert_eq!(a, jitter_unit("uid-a", 1));
        assert!((0.0..1.0).contains(&a));
        let units: Vec<f64> = (0..50).map(|n| jitter_unit("uid-a", n)).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(units.windows(2).any(|w| w[0] != w[1]));
    }
}
