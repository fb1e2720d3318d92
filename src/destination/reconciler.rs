//! The Destination reconciler: keeps each Destination's `Ready` condition
//! true to whether its jobs can be called, so `kubectl get destinations`
//! shows why they wait.
//!
//! Secrets are not watched (the operator may only `get` them), so a
//! Destination that is not ready is looked at again every
//! [`RECHECK_NOT_READY`]: a Secret created shows within that long. A ready
//! one that nothing calls costs nothing: it is looked at again only when its
//! spec changes, the leader changes, or a job of it starts to wait or to
//! call. A job reads the Secrets it needs at call time (values kept 30 s),
//! so a Secret rotated or deleted meanwhile is used or found missing by
//! the first job that needs it, which then has the status show it. The
//! status also counts the calls in flight and the due jobs waiting
//! ([`crate::delivery::occupancy`]); while there are any, or the circuit is
//! not closed, the destination is looked at every [`RECHECK_NOT_READY`].
//! Only the leader writes, and only when something shown changed.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Client, Resource, ResourceExt};

use super::credentials::{Credentials, prepare};
use super::route::destination_key;
use crate::api::{Circuit, Destination, DestinationStatus, FIELD_MANAGER, SigningStatus};
use crate::delivery::Delivery;
use crate::delivery::occupancy::Counts;
use crate::leadership::election::Leadership;

/// How soon a destination that is not ready, or busy, is looked at again.
pub const RECHECK_NOT_READY: Duration = Duration::from_secs(5);
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
    let status = destination.status.clone().unwrap_or_default();
    let circuit = destination
        .spec
        .circuit_breaker
        .map(|_| ctx.delivery.breakers.circuit(&key));
    // The wall-clock moment, to the second, so that each look computes the same one.
    let circuit_open_until = circuit
        .and_then(|_| ctx.delivery.breakers.open_for_another(&key))
        .and_then(|left| open_until(Timestamp::now(), left));
    let counts = ctx.delivery.occupancy.counts(&key);
    if shown_ready_and_idle(&destination, circuit, counts) {
        // A new leader, or a restart, reads no Secret for it: the first job
        // that needs one reads it, and a job that finds it unusable waits,
        // which makes the destination busy and checked.
        tracing::debug!(%namespace, name = %destination.name_any(), "shown Ready and idle: not checked");
        return Ok(Action::await_change());
    }
    let verdict = prepare(&destination.spec, &namespace, &key, &ctx.credentials).await;
    let (ready, reason, message) = match &verdict {
        Ok(_) => (true, "Ready", "every Secret and ConfigMap it needs is there".to_owned()),
        Err(unusable) => (false, unusable.reason, unusable.message.clone()),
    };
    // What receivers of `v1a` signatures need, from the keys just read.
    let signing = verdict
        .as_ref()
        .ok()
        .and_then(|prepared| prepared.signer.as_ref())
        .map(|signer| signer.public_keys())
        .filter(|keys| !keys.is_empty())
        .map(|public_keys| SigningStatus { public_keys });
    let count = |n: usize| Some(i32::try_from(n).unwrap_or(i32::MAX));
    let (in_flight, waiting_jobs) = (count(counts.in_flight), count(counts.waiting));
    let current = status.conditions.iter().find(|c| c.type_ == READY);
    let unchanged = current
        .is_some_and(|c| (c.status == "True") == ready && c.reason == reason && c.message == message)
        && status.observed_generation == destination.meta().generation
        && status.circuit == circuit
        && status.circuit_open_until == circuit_open_until
        && (status.in_flight, status.waiting_jobs) == (in_flight, waiting_jobs)
        && status.signing == signing;
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
            circuit_open_until,
            observed_generation: destination.meta().generation,
            in_flight,
            waiting_jobs,
            signing,
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
    Ok(next_look(ready, busy).map_or_else(Action::await_change, Action::requeue))
}

/// `now + left`, rounded up to the second (`None` past the year 9999).
fn open_until(now: Timestamp, left: Duration) -> Option<Time> {
    let until = now.checked_add(jiff::SignedDuration::try_from(left).ok()?).ok()?;
    let second = until.as_second() + i64::from(until.subsec_nanosecond() > 0);
    Timestamp::from_second(second).ok().map(Time)
}

/// Whether `destination`'s status already shows it Ready for its spec's
/// generation, with no calls in flight, no jobs waiting and its circuit (if
/// it has one) closed, as `circuit` and `counts` find them now: then a look
/// would read its Secrets only to show the same.
pub fn shown_ready_and_idle(destination: &Destination, circuit: Option<Circuit>, counts: Counts) -> bool {
    let Some(status) = &destination.status else {
        return false;
    };
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True" && c.observed_generation == destination.meta().generation);
    ready
        && status.observed_generation == destination.meta().generation
        && circuit.is_none_or(|c| c == Circuit::Closed)
        && status.circuit == circuit
        && counts == Counts::default()
        && (status.in_flight.unwrap_or(0), status.waiting_jobs.unwrap_or(0)) == (0, 0)
}

/// When a destination is looked at again by itself: soon while it is not
/// ready or busy; never while it is ready and idle, which is when its jobs
/// or its spec bring it back.
pub fn next_look(ready: bool, busy: bool) -> Option<Duration> {
    (!ready || busy).then_some(RECHECK_NOT_READY)
}

/// A failed write is tried again after a short while.
pub fn error_policy(_destination: Arc<Destination>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconciling a Destination failed");
    Action::requeue(RECHECK_NOT_READY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_until_second_is_the_same_from_every_look() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let first = open_until(t("2026-12-02T15:00:00.250Z"), Duration::from_millis(4_500));
        let later = open_until(t("2026-12-02T15:00:03.100Z"), Duration::from_millis(1_650));
        assert_eq!(first, Some(Time(t("2026-12-02T15:00:05Z"))), "4.75 s rounds up to 5");
        assert_eq!(first, later);
    }

    #[test]
    fn a_ready_idle_destination_is_not_looked_at_again_by_itself() {
        let cases = [
            (true, false, None),
            (true, true, Some(RECHECK_NOT_READY)),
            (false, false, Some(RECHECK_NOT_READY)),
            (false, true, Some(RECHECK_NOT_READY)),
        ];
        for (ready, busy, want) in cases {
            assert_eq!(next_look(ready, busy), want, "ready {ready}, busy {busy}");
        }
    }

    fn shown(ready: &str, observed: i64, in_flight: i32) -> Destination {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pendingjob.dev/v1alpha1", "kind": "Destination",
            "metadata": {"name": "d", "namespace": "ns", "generation": 2},
            "spec": {"url": "https://api.example"},
            "status": {"observedGeneration": observed, "inFlight": in_flight, "waitingJobs": 0,
                       "conditions": [{"type": "Ready", "status": ready, "reason": "Ready", "message": "m",
                                       "observedGeneration": observed, "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .expect("destination")
    }

    #[test]
    fn only_a_destination_shown_ready_for_its_spec_and_idle_skips_its_check() {
        let idle = Counts::default();
        let busy = Counts {
            in_flight: 1,
            waiting: 0,
        };
        let waiting = Counts {
            in_flight: 0,
            waiting: 3,
        };
        let mut unchecked: Destination = shown("True", 2, 0);
        unchecked.status = None;
        let cases = [
            ("shown ready, idle", shown("True", 2, 0), None, idle, true),
            ("never checked", unchecked, None, idle, false),
            ("shown not ready", shown("False", 2, 0), None, idle, false),
            ("its spec changed since", shown("True", 1, 0), None, idle, false),
            ("calls in flight now", shown("True", 2, 0), None, busy, false),
            ("jobs waiting now", shown("True", 2, 0), None, waiting, false),
            ("shows calls that ended", shown("True", 2, 1), None, idle, false),
            (
                "its circuit is open",
                shown("True", 2, 0),
                Some(Circuit::Open),
                idle,
                false,
            ),
        ];
        for (what, destination, circuit, counts, skip) in cases {
            assert_eq!(shown_ready_and_idle(&destination, circuit, counts), skip, "{what}");
        }
    }
}
