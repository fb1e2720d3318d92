//! The Destination reconciler: keeps each Destination's `Ready` condition
//! true to whether its jobs can be called, so `kubectl get destinations`
//! shows why they wait.
//!
//! Secrets are not watched (the operator may only `get` them), so a
//! Destination is looked at again after [`RECHECK_NOT_READY`] while it is
//! not ready, and after [`RECHECK_READY`] while it is: a Secret created,
//! deleted or rotated shows within that long. The status also counts the
//! calls in flight and the due jobs waiting ([`crate::delivery::occupancy`]); while
//! there are any, or the circuit is not closed, the destination is looked
//! at every [`RECHECK_NOT_READY`]. Only the leader writes, and only when
//! something shown changed.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Client, Resource, ResourceExt};

use super::credentials::{Credentials, prepare};
use super::route::destination_key;
use crate::api::{Circuit, Destination, DestinationStatus, FIELD_MANAGER};
use crate::delivery::Delivery;
use crate::delivery::occupancy::Counts;
use crate::leadership::election::Leadership;

/// How soon a destination that is not ready is looked at again.
pub const RECHECK_NOT_READY: Duration = Duration::from_secs(5);
/// How soon a ready destination is looked at again.
pub const RECHECK_READY: Duration = Duration::from_secs(60);
/// The condition type.
const READY: &str = "Ready";

/// What the Destination controller reads and writes with.
pub struct Context {
    /// Writes the Destinations' status; every call bounded by the API timeout.
    pub client: Client,
    /// Only the leader writes.
    pub leadership: Leadership,
    /// Checks each destination's Secrets, TLS and token.
    pub credentials: Arc<Credentials>,
    /// The circuits and counts its status shows.
    pub delivery: Arc<Delivery>,
}

/// A destination could not be looked at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Its status could not be written.
    #[error("writing the status of Destination {0}: {1}")]
    Write(String, #[source] kube::Error),
}

/// Checks that `destination`'s Secrets are there and well formed, and
/// records the verdict in its `Ready` condition when it changed.
pub async fn reconcile(destination: Arc<Destination>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ctx.leadership.term().is_none() {
        return Ok(Action::await_change());
    }
    let namespace = destination.namespace().unwrap_or_default();
    let key = destination_key(&namespace, &destination.name_any());
    let verdict = prepare(&destination.spec, &namespace, &key, &ctx.credentials).await;
    let (ready, reason, message) = match &verdict {
        Ok(_) => (true, "Ready", "every Secret and ConfigMap it needs is there".to_owned()),
        Err(unusable) => (false, unusable.reason, unusable.message.clone()),
    };
    let status = destination.status.clone().unwrap_or_default();
    let circuit = destination
        .spec
        .circuit_breaker
        .map(|_| ctx.delivery.breakers.circuit(&key));
    let counts = ctx.delivery.occupancy.counts(&key);
    let count = |n: usize| Some(i32::try_from(n).unwrap_or(i32::MAX));
    let (in_flight, waiting_jobs) = (count(counts.in_flight), count(counts.waiting));
    let current = status.conditions.iter().find(|c| c.type_ == READY);
    let unchanged = current
        .is_some_and(|c| (c.status == "True") == ready && c.reason == reason && c.message == message)
        && status.observed_generation == destination.meta().generation
        && status.circuit == circuit
        && (status.in_flight, status.waiting_jobs) == (in_flight, waiting_jobs);
    if !unchanged {
        let condition = Condition {
            type_: READY.to_owned(),
            status: if ready { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: destination.meta().generation,
            last_transition_time: match current {
                Some(c) if (c.status == "True") == ready => c.last_transition_time.clone(),
                _ => Time(Timestamp::now()),
            },
        };
        let next = DestinationStatus {
            conditions: vec![condition],
            circuit,
            observed_generation: destination.meta().generation,
            in_flight,
            waiting_jobs,
        };
        let patch = serde_json::json!({
            "apiVersion": Destination::api_version(&()),
            "kind": Destination::kind(&()),
            "status": next,
        });
        let name = destination.name_any();
        Api::<Destination>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(|e| Error::Write(name, e))?;
    }
    let busy = counts != Counts::default() || circuit.is_some_and(|c| c != Circuit::Closed);
    Ok(Action::requeue(if ready && !busy {
        RECHECK_READY
    } else {
        RECHECK_NOT_READY
    }))
}

/// A failed write is tried again after a short while.
pub fn error_policy(_destination: Arc<Destination>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconciling a Destination failed");
    Action::requeue(RECHECK_NOT_READY)
}
