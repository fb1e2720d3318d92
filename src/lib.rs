//! pendingjob-operator: durable, retried background calls to flaky downstream
//! APIs, driven by a `PendingJob` custom resource.
//!
//! The crate is in folders by concept. Each may import only from the
//! folders below it (the architecture test, `tests/architecture/`, holds
//! the table and fails on an import that runs up, or on any cycle):
//!
//! | folder | holds | may import |
//! | --- | --- | --- |
//! | [`api`] | the resources' types, names and limits; the CRDs | nothing |
//! | [`leadership`] | terms, the Lease campaign, the election handle | `api` |
//! | [`delivery`] | one safe HTTP call: clients, egress, outcomes, slots, pacing, breakers, occupancy | `api` |
//! | [`destination`] | credentials, routing, the Destination controller | the above |
//! | [`store`] | the job cache, payloads, listing, freshness | the above |
//! | [`observe`] | metrics, gauges, logging, the admin server | the above |
//! | [`job`] | the PendingJob controller: plan, transitions, tasks, writes | the above |
//! | [`intake`] | `pendingjob-intake`, the seed's API 1 | the above |
//! | [`plugin`] | `kubectl pj`: why a job waits, redrive, suspend, stats | the above |
//! | [`operator`] | the process: wires watches, caches and controllers | everything |
//!
//! The binaries (`src/main.rs`, `src/bin/`, `kubectl-pj` among them) only parse flags and wire
//! things up.

pub mod api;
pub mod delivery;
pub mod destination;
pub mod intake;
pub mod job;
pub mod leadership;
pub mod observe;
pub mod operator;
pub mod plugin;
pub mod store;
