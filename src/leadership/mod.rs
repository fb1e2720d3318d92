//! Leadership: which instance may dispatch, and for how long.
//!
//! - [`term`]: terms and tenures, a leaf.
//! - [`campaign`]: the campaign for the leader Lease (client-go's algorithm).
//! - [`election`]: the handle every part asks ([`election::Leadership`]) and
//!   the running election.
//! - [`owner`]: the Lease's owner, the operator's own ServiceAccount, so
//!   that deleting the install deletes the Lease.
//!
//! Invariants: a leader that cannot renew stops starting calls at its renew
//! deadline, before anyone else can hold the Lease (renew deadline < lease
//! duration); a term is never reused, so work begun in one term can always
//! tell that it ended. Knows nothing of jobs or calls.

pub mod campaign;
pub mod election;
pub mod owner;
pub mod term;
