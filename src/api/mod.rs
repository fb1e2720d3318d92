//! The resources: `PendingJob` and `Destination`, their sub-types, and the
//! names and limits other parts rely on.
//!
//! Invariants:
//! - Types and constants only, and the CRDs rendered from them: no I/O, and
//!   nothing imported from the rest of the crate, so every layer may use it.
//! - Doc comments become the CRDs' descriptions (`kubectl explain`); the
//!   checked-in `crds/*.yaml` must match what [`crd`] and
//!   [`destination_crd_yaml`] render (tested).
//! - Behaviour that reads these types lives with its concept (backoff in
//!   `job`, `retryOn` in `delivery`), never here.

mod contract;
mod crd;
mod destination;
mod job_status;
mod pending_job;

pub use contract::{
    FIELD_MANAGER, GROUP, JobKey, MAX_ERROR_BYTES, MAX_PAYLOAD_BYTES, RETRY_ANNOTATION, TRACEPARENT_ANNOTATION,
    TRACESTATE_ANNOTATION,
};
pub use crd::{crd, crd_yaml, destination_crd_yaml};
pub use destination::{
    Auth, CaBundle, Circuit, CircuitBreaker, Destination, DestinationHeader, DestinationSpec, DestinationStatus,
    KeyRef, OAuth2ClientCredentials, RateLimit, SecretRef, SecretValue, ServiceAccountToken, Signing, SigningStatus,
    StandardWebhooks, Tls,
};
pub use job_status::{DeadLetterStatus, PendingJobStatus, Phase, Redrive};
pub use pending_job::{
    DeadLetter, DestinationRef, Jitter, Method, PendingJob, PendingJobSpec, RetryOn, RetryPolicy, Target,
};
