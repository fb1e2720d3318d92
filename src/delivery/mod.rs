//! Delivery: one safe HTTP call, and what every call shares.
//!
//! - [`call`]: builds the request, sends it once, reads the answer.
//! - [`outcome`]: what an answer means (pure, table-tested).
//! - [`clients`]: the HTTP clients, per destination when TLS differs.
//! - [`egress`]: the addresses no call may reach, checked at connect time.
//! - [`redact`]: credentials a remote echoes back are cut from what is recorded.
//! - [`signing`]: Standard Webhooks signatures over the exact bytes sent.
//! - [`trace_context`]: the W3C trace context a call continues, bounded.
//! - [`slots`], [`shares`], [`pacing`], [`breaker`], [`occupancy`]: how
//!   many calls may be in flight, each namespace's fair share of them, how fast, whether a destination may be called at all,
//!   and how busy each one is.
//!
//! Invariants: a call is made at most once per [`call::call`]; it never
//! follows a redirect nor connects to a denied address, however spelled or
//! resolved; a target's failure is an [`outcome::Outcome`], never an error.
//! Knows nothing of job status: the job layer turns outcomes into status.

pub mod breaker;
pub mod call;
pub mod clients;
pub mod egress;
pub mod occupancy;
pub mod outcome;
pub mod pacing;
pub mod redact;
pub mod shares;
pub mod signing;
pub mod slots;
pub mod trace_context;

use breaker::Breakers;
use clients::HttpClients;
use occupancy::Occupancy;
use pacing::Pacing;
use slots::Slots;

/// What every call is made with and counted against, shared by the job
/// controller (which calls) and the Destination controller (which shows
/// the circuit and the counts).
pub struct Delivery {
    /// The HTTP clients.
    pub clients: HttpClients,
    /// Call slots, in all and per target.
    pub slots: Slots,
    /// Per-destination rate limits.
    pub pacing: Pacing,
    /// Per-destination circuit breakers.
    pub breakers: Breakers,
    /// Calls in flight and jobs waiting, per destination.
    pub occupancy: Occupancy,
}

impl Delivery {
    /// Calls made with `clients` within `slots`, with no rate limit,
    /// breaker or count yet.
    pub fn new(clients: HttpClients, slots: Slots) -> Self {
        Self {
            clients,
            slots,
            pacing: Pacing::default(),
            breakers: Breakers::default(),
            occupancy: Occupancy::default(),
        }
    }
}
