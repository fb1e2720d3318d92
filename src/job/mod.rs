//! The PendingJob controller: fetch, decide, act, record, requeue.
//!
//! - Pure: [`plan`] (what to do now, and the writes without a call),
//!   [`transitions`] (what an attempt makes of the status), [`backoff`].
//! - The reconcile ([`reconciler`]) decides from the cached job and hands
//!   work to tasks ([`tasks`]): one [`attempt`], a [`dead_letter`], or an
//!   [`amend`] write. They share a [`context`]. Finished jobs that wait only
//!   for their time to live are kept outside the controller, and deleted by
//!   [`expire`].
//! - Writes: [`fence`] (the status write that records an attempt) and
//!   [`events`] (one per change of phase).
//! - Traces: [`spans`] (each attempt, its call and write, and the outcome,
//!   in the trace the job's annotations carry through restarts).
//!
//! Invariants (the promise, README "Delivery semantics"):
//! - At most one task per job, and one call per recorded attempt: a failed
//!   status write is retried as a write, never as a call.
//! - A status write lands only on the object that was called (its uid) and
//!   only over the status the call was decided from; a stale writer loses.
//! - Only the leader calls, and only within its term; a job not yet due
//!   costs no call and no API write.

pub mod amend;
pub mod attempt;
pub mod backoff;
pub mod context;
pub mod dead_letter;
pub mod events;
pub mod expire;
pub mod fence;
pub mod plan;
pub mod reconciler;
pub mod spans;
pub mod tasks;
pub mod transitions;
