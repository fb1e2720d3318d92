//! Leader election through a `coordination.k8s.io` Lease (kube-lease-manager).
//!
//! Every instance runs the controller and keeps its cache warm; only the
//! holder of the Lease dispatches. So a takeover costs one Lease expiry, not
//! a cold start.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Where and how to hold the Lease.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Name of the Lease object.
    pub name: String,
    /// Namespace of the Lease object.
    pub namespace: String,
    /// This instance's identity in `holderIdentity`.
    pub identity: String,
    /// Seconds a Lease stays valid after its last renewal.
    pub duration_seconds: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_seconds: u64,
}

/// Whether this instance may dispatch, now and as it changes.
pub struct Leadership {
    /// `true` while this instance leads.
    pub is_leader: watch::Receiver<bool>,
    sender: watch::Sender<bool>,
    election: Option<Election>,
}

/// The running election: the manager's task, and ours that follows it.
struct Election {
    manager: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    follower: JoinHandle<()>,
}

impl Leadership {
    /// No election: this instance always leads.
    pub fn always() -> Self {
        let (sender, is_leader) = watch::channel(true);
        Self {
            is_leader,
            sender,
            election: None,
        }
    }

    /// Joins the election for the Lease in `settings`.
    pub async fn elect(client: Client, settings: &LeaseSettings) -> Result<Self, LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(client, &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(settings.duration_seconds)
            .with_grace(settings.grace_seconds)
            .build()
            .await?;
        let (mut lease_state, manager) = manager.watch().await;
        info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "joined leader election");
        // The manager releases the Lease once its channel has no receiver left;
        // following it from one task keeps that receiver in one place.
        let (sender, is_leader) = watch::channel(false);
        let follower_sender = sender.clone();
        let follower = tokio::spawn(async move {
            loop {
                follower_sender.send_replace(*lease_state.borrow_and_update());
                if lease_state.changed().await.is_err() {
                    follower_sender.send_replace(false);
                    return;
                }
            }
        });
        Ok(Self {
            is_leader,
            sender,
            election: Some(Election { manager, follower }),
        })
    }

    /// Stops leading and gives the Lease up (when held), waiting at most `timeout`.
    pub async fn release(self, timeout: Duration) {
        self.sender.send_replace(false);
        let Some(Election { manager, follower }) = self.election else {
            return;
        };
        follower.abort();
        match tokio::time::timeout(timeout, manager).await {
            Ok(Ok(Ok(_))) => info!("leader lease released"),
            Ok(Ok(Err(error))) => warn!(%error, "releasing the leader lease"),
            Ok(Err(error)) => warn!(%error, "leader election task"),
            Err(_) => warn!("leader lease not released within {timeout:?}; it will expire"),
        }
    }
}
