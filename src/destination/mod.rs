//! What a Destination adds to a call: its credentials (Secrets, TLS,
//! OAuth2, ServiceAccount tokens from [`identity`]) and its signing keys,
//! where a job's call goes ([`route`]), and the Destination controller
//! ([`reconciler`]), which shows in status whether it can be called.
//!
//! Invariants:
//! - Secrets and ConfigMaps are read with `get` only, from the
//!   Destination's own namespace, and kept for a bounded time.
//! - Their values never reach an object we write, a log line, an Event or
//!   a metric: errors name objects and keys, header values are sensitive.
//! - A job whose Destination is missing, suspended or not usable waits: no
//!   call, no attempt spent, no write per job.
//! - A deleted Destination leaves no state behind ([`forget`]).
//! - A ServiceAccount token is minted only for the account, audience and
//!   lifetime a Destination names, in its own namespace.

pub mod credentials;
pub mod forget;
pub mod held;
pub mod identity;
pub mod oauth2;
pub mod reconciler;
pub mod route;
pub mod secrets;
pub mod tls;
