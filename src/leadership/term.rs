//! Leadership terms: a leaf that both the campaign and the handle use.

use tokio::time::Instant;

/// One span of leadership; each time this instance becomes the leader, a new one.
pub type Term = u64;

/// The current term and, under an election, when it ends unless renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenure {
    /// The term.
    pub term: Term,
    /// The renew deadline; `None` without an election.
    pub until: Option<Instant>,
}

impl Tenure {
    /// True while `now` is before the deadline, if any.
    pub fn is_valid(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}
