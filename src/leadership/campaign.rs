//! The campaign for the leader Lease, after client-go's `leaderelection`: a
//! lease duration, a renew deadline and a retry period.
//!
//! The leader renews every retry period. A leader that has not renewed for
//! the renew deadline steps down, and since `renew_deadline <
//! lease_duration` it has stopped before anyone else may take the Lease.
//! Followers count the lease duration from when *they* last saw the Lease
//! change, on their own monotonic clock, so no two clocks need to agree.
//! Writes are compare-and-swap on the Lease's resourceVersion.
//!
//! kube-lease-manager, used before, keeps reporting leadership while its
//! renewals fail, so it cannot give that guarantee; this module is the small
//! part of client-go's algorithm we need, with its decision ([`next_step`])
//! kept pure.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::term::{Tenure, Term};

/// The shortest pause between two rounds of the election.
const MIN_WAIT: Duration = Duration::from_millis(100);

/// Where and how to hold the Lease.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Name of the Lease object.
    pub name: String,
    /// Namespace of the Lease object.
    pub namespace: String,
    /// This instance's identity in `holderIdentity`.
    pub identity: String,
    /// How long followers wait, from the last change they saw, before taking the Lease.
    pub lease_duration: Duration,
    /// How long a leader leads without a successful renewal; less than `lease_duration`.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew; less than `renew_deadline`.
    pub retry_period: Duration,
    /// The Lease's owner when this instance creates it ([`super::owner`]).
    pub owner: Option<OwnerReference>,
}

/// What to do with the Lease, given what was last read of it. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is no Lease: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or its holder stopped renewing: take it.
    Acquire,
    /// Someone else holds it and renews it: wait.
    Follow,
}

/// Decides the next step from the Lease and from how long its record has
/// been seen unchanged (`None`: just seen for the first time).
pub fn next_step(lease: Option<&LeaseSpec>, me: &str, unchanged_for: Option<Duration>) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => Step::Renew,
        None | Some("") => Step::Acquire,
        Some(_) => {
            if unchanged_for.is_some_and(|seen| seen >= lease_seconds(spec)) {
                Step::Acquire
            } else {
                Step::Follow
            }
        }
    }
}

/// The Lease record as last seen, and when it last changed (our clock).
struct Observed {
    spec: LeaseSpec,
    since: Instant,
}

/// One instance's campaign; [`super::election::Election`] runs it.
pub(crate) struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
    term: Term,
}

impl Elector {
    pub(crate) fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
            term: 0,
        }
    }

    /// Acquires and renews the Lease, publishing terms on `state`, until
    /// `stop`; then releases the Lease if held.
    pub(crate) async fn run(mut self, state: watch::Sender<Option<Tenure>>, mut stop: watch::Receiver<bool>) {
        let renew_deadline = self.settings.renew_deadline;
        loop {
            let tenure = *state.borrow();
            if tenure.is_some_and(|t| !t.is_valid(Instant::now())) {
                warn!(?renew_deadline, "no renewal within the renew deadline; stepping down");
                state.send_replace(None);
            }
            let started = Instant::now();
            let deadline = state.borrow().and_then(|t| t.until);
            let attempt = tokio::time::timeout(renew_deadline, self.try_acquire_or_renew());
            // A renewal that hangs past the deadline must not keep us leading.
            let result = tokio::select! {
                result = attempt => Some(result),
                () = sleep_until_opt(deadline) => None,
                _ = stop.changed() => return self.release(&state).await,
            };
            match result {
                None => continue,
                Some(Ok(Ok(true))) => self.lead(&state, started + renew_deadline),
                Some(Ok(Ok(false))) => {
                    if state.send_replace(None).is_some() {
                        warn!("the Lease is held by another instance; stepping down");
                    }
                }
                Some(Ok(Err(error))) => warn!(%error, "leader election: reading or writing the Lease"),
                Some(Err(_)) => warn!("leader election: the Lease call timed out"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.wait(&state)) => {}
                _ = stop.changed() => return self.release(&state).await,
            }
        }
    }

    /// Starts a term, or extends the current one silently.
    fn lead(&mut self, state: &watch::Sender<Option<Tenure>>, until: Instant) {
        let started = state.send_if_modified(|tenure| match tenure {
            Some(tenure) => {
                tenure.until = Some(until);
                false
            }
            None => {
                self.term += 1;
                *tenure = Some(Tenure {
                    term: self.term,
                    until: Some(until),
                });
                true
            }
        });
        if started {
            info!(term = self.term, "became the leader");
        }
    }

    /// Until the next try: a retry period, but no later than our deadline
    /// or the moment the holder's Lease runs out (and never a busy loop).
    fn wait(&self, state: &watch::Sender<Option<Tenure>>) -> Duration {
        let now = Instant::now();
        let mut wait = self.settings.retry_period;
        if let Some(until) = state.borrow().and_then(|t| t.until) {
            wait = wait.min(until.saturating_duration_since(now));
        }
        if let Some(observed) = &self.observed {
            let duration = lease_seconds(&observed.spec);
            wait = wait.min((observed.since + duration).saturating_duration_since(now));
        }
        wait.max(MIN_WAIT)
    }

    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let name = self.settings.name.clone();
        let current = self.api.get_opt(&name).await?;
        let now = Instant::now();
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let unchanged_for = spec.as_ref().and_then(|spec| self.observe(spec, now));
        let step = next_step(spec.as_ref(), &self.settings.identity, unchanged_for);
        let mut lease = match (step, current) {
            (Step::Follow, _) => return Ok(false),
            (_, Some(lease)) => lease,
            (_, None) => Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: self.settings.owner.clone().map(|owner| vec![owner]),
                    ..ObjectMeta::default()
                },
                ..Lease::default()
            },
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let stamp = MicroTime(Timestamp::now());
        if step != Step::Renew {
            spec.holder_identity = Some(self.settings.identity.clone());
            spec.acquire_time = Some(stamp.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(step == Step::Acquire));
        }
        spec.renew_time = Some(stamp);
        spec.lease_duration_seconds = Some(i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX));
        let written = match step {
            Step::Create => self.api.create(&PostParams::default(), &lease).await,
            // The resourceVersion read above makes this a compare-and-swap.
            _ => self.api.replace(&name, &PostParams::default(), &lease).await,
        };
        match written {
            Ok(lease) => {
                self.observe(&lease.spec.unwrap_or_default(), now);
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remembers `spec`; returns how long it has been seen unchanged.
    fn observe(&mut self, spec: &LeaseSpec, now: Instant) -> Option<Duration> {
        match &self.observed {
            Some(seen) if seen.spec == *spec => Some(now.saturating_duration_since(seen.since)),
            _ => {
                self.observed = Some(Observed {
                    spec: spec.clone(),
                    since: now,
                });
                None
            }
        }
    }

    /// Hands the Lease over at once, when we hold it.
    async fn release(&mut self, state: &watch::Sender<Option<Tenure>>) {
        state.send_replace(None);
        let name = self.settings.name.clone();
        let Ok(Some(mut lease)) = self.api.get_opt(&name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&name, &PostParams::default(), &lease).await {
            Ok(_) => info!("leader lease released"),
            Err(error) => warn!(%error, "releasing the leader lease; it will expire"),
        }
    }
}

fn lease_seconds(spec: &LeaseSpec) -> Duration {
    Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0))
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: Option<&str>, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn next_step_table() {
        let s = Duration::from_secs;
        let cases = [
            (None, None, Step::Create),
            (Some(held_by(Some("me"), 15)), Some(s(100)), Step::Renew),
            (Some(held_by(None, 15)), None, Step::Acquire),
            (Some(held_by(Some(""), 15)), None, Step::Acquire),
            (Some(held_by(Some("other"), 15)), None, Step::Follow),
            (Some(held_by(Some("other"), 15)), Some(s(14)), Step::Follow),
            (Some(held_by(Some("other"), 15)), Some(s(15)), Step::Acquire),
            // The holder's own duration counts, not ours.
            (Some(held_by(Some("other"), 4)), Some(s(5)), Step::Acquire),
        ];
        for (lease, unchanged_for, want) in cases {
            assert_eq!(
                next_step(lease.as_ref(), "me", unchanged_for),
                want,
                "{lease:?} {unchanged_for:?}"
            );
        }
    }
}
