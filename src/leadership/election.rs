//! Who may dispatch: the handle on the current term ([`Leadership`]), and
//! the election that grants it (see [`super::campaign`] for the campaign on
//! the Lease).
//!
//! Every instance runs the controller and keeps its cache warm; only the
//! leader dispatches, and only while its term lasts. A term ends when the
//! elector steps down, or at its renew deadline, whichever comes first, so a
//! check of [`Leadership::term`] right before a call is never late.

use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::campaign::{Elector, LeaseSettings};
use super::term::{Tenure, Term};

/// Whether, and in which term, this instance may dispatch. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Leadership {
    state: watch::Receiver<Option<Tenure>>,
}

impl Leadership {
    /// The current term, if this instance leads at this very moment.
    pub fn term(&self) -> Option<Term> {
        self.state
            .borrow()
            .filter(|tenure| tenure.is_valid(Instant::now()))
            .map(|tenure| tenure.term)
    }

    /// Resolves once `term` is over: stepped down, lost, or past its deadline.
    pub async fn ended(&self, term: Term) {
        let mut state = self.state.clone();
        loop {
            let current = *state.borrow_and_update();
            let Some(tenure) = current.filter(|t| t.term == term && t.is_valid(Instant::now())) else {
                return;
            };
            match tenure.until {
                // Renewals push `until` on silently, so look again when it passes.
                Some(until) => tokio::select! {
                    changed = state.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep_until(until) => {}
                },
                None => {
                    if state.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Notified whenever a term starts or ends.
    pub fn subscribe(&self) -> watch::Receiver<Option<Tenure>> {
        self.state.clone()
    }
}

/// The running election, or none: what `run` stops on the way out.
pub struct Election {
    /// Who leads.
    pub leadership: Leadership,
    sender: watch::Sender<Option<Tenure>>,
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Election {
    /// No election: this instance always leads, in one endless term.
    pub fn none() -> Self {
        let (sender, state) = watch::channel(Some(Tenure { term: 1, until: None }));
        Self {
            leadership: Leadership { state },
            sender,
            running: None,
        }
    }

    /// Joins the election for the Lease in `settings`, with `client` (whose
    /// calls must have a timeout).
    pub fn join(client: Client, settings: LeaseSettings) -> Self {
        let (sender, state) = watch::channel(None);
        let (stop, stopped) = watch::channel(false);
        info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "joining leader election");
        let task = tokio::spawn(Elector::new(client, settings).run(sender.clone(), stopped));
        Self {
            leadership: Leadership { state },
            sender,
            running: Some((stop, task)),
        }
    }

    /// Stops leading and gives the Lease up (when held), waiting at most `timeout`.
    pub async fn release(self, timeout: Duration) {
        self.sender.send_replace(None);
        let Some((stop, task)) = self.running else {
            return;
        };
        let _ = stop.send(true);
        if tokio::time::timeout(timeout, task).await.is_err() {
            warn!("leader lease not released within {timeout:?}; it will expire");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_term_ends_at_its_deadline_unless_renewed() {
        let start = Instant::now();
        let (sender, state) = watch::channel(Some(Tenure {
            term: 3,
            until: Some(start + Duration::from_secs(2)),
        }));
        let leadership = Leadership { state };
        assert_eq!(leadership.term(), Some(3));
        // A silent renewal pushes the deadline on.
        sender.send_if_modified(|t| {
            *t = Some(Tenure {
                term: 3,
                until: Some(start + Duration::from_secs(5)),
            });
            false
        });
        leadership.ended(3).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
        assert_eq!(leadership.term(), None);
        // A term that is not the current one is over already.
        leadership.ended(2).await;
    }

    #[tokio::test]
    async fn without_an_election_the_only_term_never_ends() {
        let election = Election::none();
        assert_eq!(election.leadership.term(), Some(1));
        let ended = tokio::time::timeout(Duration::from_millis(50), election.leadership.ended(1)).await;
        assert!(ended.is_err());
        let leadership = election.leadership.clone();
        election.release(Duration::from_secs(1)).await;
        assert_eq!(leadership.term(), None);
    }
}
