//! What the watches tell us: the controller's cache of jobs and
//! Destinations ([`cache`]), finished jobs kept compact apart from it
//! ([`finished`]), the payloads of unfinished jobs within a byte
//! budget ([`payloads`]), how the caches fill at start ([`listing`]), and how
//! fresh a job must be before a call ([`freshness`]).
//!
//! Invariants:
//! - A cached job keeps only what decisions and calls read; a payload that
//!   does not fit the budget is read at call time, so the budget bounds
//!   memory, never delivery.
//! - A finished job that needs nothing but its deletion costs about 100
//!   bytes: it is kept in [`finished`], never also in the cache.
//! - State kept for a job goes with the job: a deleted job, or one missing
//!   from a relist, gives its bytes back.
//! - Nothing here calls a target or writes to the API server.

pub mod cache;
pub mod finished;
pub mod freshness;
pub mod listing;
pub mod payloads;
