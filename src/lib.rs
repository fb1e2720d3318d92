//! pendingjob-operator: durable, retried background calls to flaky downstream
//! APIs, driven by a `PendingJob` custom resource.
//!
//! - [`crd`] - the resource, its validation and printer columns.
//! - [`backoff`] - capped exponential backoff, pure.
//! - [`lifecycle`] - what to do with a job now, and what an attempt makes of it; pure.
//! - [`dispatch`] - one HTTP call to the target and what its response means.
//! - [`fence`] - recording an attempt: the fenced status write.
//! - [`freshness`] - how fresh the read before a call must be, so the watch cache can serve it.
//! - [`slots`] - how many calls may be in flight, in all and per target.
//! - [`attempt`] - one attempt in a task of its own: slot, fresh read, call, fenced write.
//! - [`cache`] - what the controller's cache keeps of a job.
//! - [`payloads`] - request bodies of unfinished jobs, kept within a byte budget.
//! - [`listing`] - how the cache fills at start: a streaming or a paged list.
//! - [`destination`] - the Destination resource: a target's base URL, auth and limits.
//! - [`destinations`] - the Destination controller: Ready condition and circuit status.
//! - [`route`] - a job's request as its Destination shapes it (URL, headers, auth).
//! - [`secrets`] - Secret reads for credentials, cached briefly, never logged.
//! - [`pacing`] - per-Destination rate limits.
//! - [`breaker`] - the per-Destination circuit breaker; pure.
//! - [`occupancy`] - calls in flight and jobs waiting, per Destination.
//! - [`tls`] - a Destination's CA bundle and client certificate.
//! - [`oauth2`] - OAuth2 client-credentials tokens for Destinations.
//! - [`egress`] - addresses the operator never connects to.
//! - [`events`] - one Event per change of phase.
//! - [`controller`] - the reconciler: decide, and hand due attempts to their tasks.
//! - [`leader`] - who may dispatch: leadership terms, bounded by a renew deadline.
//! - [`elector`] - the campaign for the leader Lease, after client-go.
//! - [`metrics`] - Prometheus metrics.
//! - [`admin`] - the `/healthz`, `/readyz` and `/metrics` server.
//! - [`operator`] - the process around the controller: start-up, election, shutdown.
//! - [`telemetry`] - logging.

pub mod admin;
pub mod attempt;
pub mod backoff;
pub mod breaker;
pub mod cache;
pub mod controller;
pub mod crd;
pub mod dead_letter;
pub mod destination;
pub mod destinations;
pub mod dispatch;
pub mod egress;
pub mod elector;
pub mod events;
pub mod fence;
pub mod freshness;
pub mod gauges;
pub mod intake;
pub mod leader;
pub mod lifecycle;
pub mod listing;
pub mod metrics;
pub mod oauth2;
pub mod occupancy;
pub mod operator;
pub mod pacing;
pub mod payloads;
pub mod plan;
pub mod retry_on;
pub mod route;
pub mod secrets;
pub mod slots;
pub mod telemetry;
pub mod tls;
pub mod upkeep;
