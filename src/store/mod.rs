//! What the watches tell us: the controller's cache of jobs and
//! Destinations ([`cache`]), finished jobs kept compact apart from it
//! ([`finished`]), unfinished jobs that wait long kept serialized apart
//! from it ([`parked`]), the payloads of unfinished jobs within a byte
//! budget ([`payloads`]), how the caches fill at start ([`listing`]), and how
//! fresh a job must be before a call ([`freshness`]); uids are kept as
//! numbers ([`uid`]).
//!
//! Invariants:
//! - A cached job keeps only what decisions and calls read; a payload that
//!   does not fit the budget is read at call time, so the budget bounds
//!   memory, never delivery.
//! - A finished job that needs nothing but its deletion costs about 100
//!   bytes: it is kept in [`finished`], never also in the cache.
//! - An unfinished job due later than [`parked::LEAD`] from now, or
//!   suspended, is kept as its JSON in [`parked`], never also in the
//!   cache, and goes back to the cache as it was watched before it is due.
//! - State kept for a job goes with the job: a deleted job, or one missing
//!   from a relist, gives its bytes back.
//! - Nothing here calls a target or writes to the API server.

pub mod cache;
pub mod finished;
pub mod freshness;
pub mod listing;
pub mod parked;
pub mod payloads;
pub mod uid;
