//! Observing the operator: Prometheus metrics ([`metrics`]), the job gauges
//! computed when scraped ([`gauges`]), logging ([`logging`]), spans and
//! trace context ([`traces`]), and the `/healthz`, `/readyz` and
//! `/metrics` server ([`admin`]).
//!
//! Invariants: label values are bounded (namespaces, phases, short reasons,
//! never a URL, a header or a Secret's value); gauges come from the cache
//! when scraped, by the leader only, so they cost nothing between scrapes
//! and count each job once across replicas.

pub mod admin;
pub mod gauges;
pub mod logging;
pub mod metrics;
pub mod traces;
