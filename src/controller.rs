//! The reconciler: for each `PendingJob`, fetch, decide, and hand a due
//! attempt to a task of its own ([`crate::attempt`]), so that no reconcile
//! ever waits on a target.
//!
//! The decision comes from the job's spec, retry annotation and `.status`
//! alone (see [`plan::decide`]): any watch event, our own status write
//! included, can wake a job early, and a job that is not yet due costs no
//! HTTP call and no API write. Deleting a job whose time to live is up, and
//! status changes without a call, are in [`crate::upkeep`]. A job has at
//! most one attempt task at a time; before its call the task makes sure the
//! job is fresh enough ([`crate::freshness`]), so a lagging cache can never
//! cause a second call.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::attempt;
use crate::backoff;
use crate::breaker::Breakers;
use crate::cache::JobCache;
use crate::crd::{Destination, PendingJob};
use crate::dead_letter;
use crate::dispatch::Dispatcher;
use crate::fence::{FIELD_MANAGER, JobKey};
use crate::freshness::Freshness;
use crate::leader::{Leadership, Term};
use crate::metrics::Metrics;
use crate::oauth2::Tokens;
use crate::occupancy::Occupancy;
use crate::pacing::Pacing;
use crate::plan::{self, Decision, Facts};
use crate::route::Access;
use crate::secrets::Secrets;
use crate::slots::Slots;
use crate::upkeep;

/// When a job woken during its attempt is looked at again.
const BUSY_RECHECK: Duration = Duration::from_secs(1);
/// When a job whose dead letter is due is looked at again.
const DEAD_LETTER_RECHECK: Duration = Duration::from_secs(5);
/// When a delete or status change that failed is tried again.
const UPKEEP_RETRY: Duration = Duration::from_secs(5);

/// Infrastructure trouble; a target's failures are never an `Error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object lacks a field the API server always sets.
    #[error("PendingJob has no {0}")]
    MissingField(&'static str),
}

/// What attempts call with: the HTTP client, the slots that bound the calls
/// in flight, and where changes of a destination's circuit are told.
pub struct Calls {
    /// Makes the calls.
    pub dispatcher: Dispatcher,
    /// Bounds them, in all and per target.
    pub slots: Slots,
    /// Told of each destination whose status should show a change.
    pub destination_changes: UnboundedSender<ObjectRef<Destination>>,
}

/// Shared state of the reconciler and of the attempt tasks.
pub struct Context {
    pub(crate) client: Client,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) slots: Slots,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) recorder: Recorder,
    pub(crate) leadership: Leadership,
    pub(crate) freshness: Freshness,
    pub(crate) cache: JobCache,
    pub(crate) secrets: Secrets,
    pub(crate) tokens: Tokens,
    pub(crate) occupancy: Occupancy,
    /// How long after finishing a job without a TTL of its own is deleted.
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) pacing: Pacing,
    pub(crate) breakers: Breakers,
    destination_changes: UnboundedSender<ObjectRef<Destination>>,
    /// The namespace watched; all when `None`.
    namespace: Option<String>,
    /// Jobs with an attempt task.
    running: Mutex<HashSet<JobKey>>,
    tasks: TaskTracker,
    /// Cancelled at shutdown: attempts not yet started give up.
    pub(crate) stopping: CancellationToken,
}

impl Context {
    /// A context whose attempts run only while `leadership` holds, make their
    /// calls within `calls`' slots, and whose Events name `identity` as the
    /// reporting instance. Every call `client` makes must have a timeout;
    /// `namespace` is the one watched (all when `None`), and `cache` holds it.
    pub fn new(
        client: Client,
        namespace: Option<String>,
        cache: JobCache,
        Calls {
            dispatcher,
            slots,
            destination_changes,
        }: Calls,
        metrics: Arc<Metrics>,
        identity: &str,
        leadership: Leadership,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            secrets: Secrets::new(client.clone()),
            tokens: Tokens::default(),
            occupancy: Occupancy::default(),
            default_ttl: None,
            pacing: Pacing::default(),
            breakers: Breakers::default(),
            destination_changes,
            client,
            dispatcher,
            slots,
            metrics,
            leadership,
            freshness: Freshness::default(),
            cache,
            namespace,
            running: Mutex::default(),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
        }
    }

    /// Forgets a job that was deleted.
    pub fn forget_deleted(&self, namespace: &str, name: &str) {
        self.freshness.forget(&(namespace.to_owned(), name.to_owned()));
    }

    /// Starts no more attempts; waits for those in flight to be recorded.
    pub async fn drain(&self) {
        self.stopping.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    pub(crate) fn api(&self, namespace: &str) -> Api<PendingJob> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// What routing reads credentials with.
    pub(crate) fn access(&self) -> Access<'_> {
        Access {
            secrets: &self.secrets,
            tokens: &self.tokens,
            dispatcher: &self.dispatcher,
        }
    }

    /// Has `destination`'s status show what changed: its circuit's state,
    /// or its first call in flight or job waiting.
    pub(crate) fn destination_changed(&self, destination: ObjectRef<Destination>) {
        // Gone only at shutdown, when no status needs writing.
        let _ = self.destination_changes.send(destination);
    }

    /// Deletes finished jobs that set no TTL `ttl` after they finish.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// What to do with `job` now.
    pub(crate) fn decide(&self, key: &JobKey, job: &PendingJob) -> Decision {
        let status = job.status.clone().unwrap_or_default();
        let decision = plan::decide(&Facts::of(job, &status, self.default_ttl), Timestamp::now());
        debug!(namespace = %key.0, name = %key.1, ?decision, attempts = status.attempts, "decided");
        decision
    }

    /// The cached job `key`, if any.
    pub(crate) fn cached(&self, key: &JobKey) -> Option<Arc<PendingJob>> {
        self.cache.store.get(&ObjectRef::new(&key.1).within(&key.0))
    }

    /// The jobs the controller watches.
    pub(crate) fn scope(&self) -> Api<PendingJob> {
        match &self.namespace {
            Some(namespace) => self.api(namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// Starts the attempt task of `job` (cached with `uid`); false if it has
    /// one already.
    fn start_attempt(self: &Arc<Self>, key: JobKey, uid: String, term: Term) -> bool {
        if self.stopping.is_cancelled() {
            return true;
        }
        if !self.running().insert(key.clone()) {
            return false;
        }
        let busy = Busy(self.clone(), key);
        self.tasks.spawn(async move {
            attempt::run(&busy.0, &busy.1, &uid, term).await;
        });
        true
    }

    /// Starts the dead-letter task of `job` (cached with `uid`), unless it
    /// has a task already.
    fn start_dead_letter(self: &Arc<Self>, key: JobKey, uid: String, term: Term) {
        if self.stopping.is_cancelled() || !self.running().insert(key.clone()) {
            return;
        }
        let busy = Busy(self.clone(), key);
        self.tasks.spawn(async move {
            dead_letter::send(&busy.0, &busy.1, &uid, term).await;
        });
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<JobKey>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Marks a job as having its attempt task until dropped, even if the task
/// panics, so the job is never left busy.
struct Busy(Arc<Context>, JobKey);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.running().remove(&self.1);
    }
}

/// Reconciles one job: decide from its cached spec and status; when it is
/// due, start its attempt; when it needs a write without a call, make it;
/// otherwise requeue for when it will need something.
pub async fn reconcile(job: Arc<PendingJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = (
        job.namespace().ok_or(Error::MissingField("metadata.namespace"))?,
        job.name_any(),
    );
    // A standby keeps its cache warm but never dispatches; it is woken for
    // every job when it becomes the leader.
    let Some(term) = ctx.leadership.term() else {
        return Ok(Action::await_change());
    };
    let status = job.status.clone().unwrap_or_default();
    let decision = ctx.decide(&key, &job);
    if matches!(decision, Decision::Delete | Decision::Amend(_)) && ctx.running().contains(&key) {
        // Its attempt task ends first (it sees the change too), so the two
        // never race for the status.
        return Ok(Action::requeue(BUSY_RECHECK));
    }
    let done = match decision {
        Decision::Attempt => {
            let uid = job.uid().ok_or(Error::MissingField("metadata.uid"))?;
            return Ok(if ctx.start_attempt(key, uid, term) {
                // Its status write wakes the job again.
                Action::await_change()
            } else {
                // Woken during its attempt (by that attempt's own write, say): look
                // again once the task has ended, whatever it ended with.
                Action::requeue(BUSY_RECHECK)
            });
        }
        Decision::Wait(remaining) => return Ok(Action::requeue(remaining)),
        Decision::Idle => return Ok(Action::await_change()),
        Decision::DeadLetter => {
            let uid = job.uid().ok_or(Error::MissingField("metadata.uid"))?;
            ctx.start_dead_letter(key, uid, term);
            // Its status write wakes the job; a wait for its destination does not.
            return Ok(Action::requeue(DEAD_LETTER_RECHECK));
        }
        Decision::Delete => upkeep::delete(&ctx, &job).await,
        Decision::Amend(change) => upkeep::amend(&ctx, &job, &status, &change).await,
    };
    match done {
        // The watch brings the change, and the next decision.
        Ok(()) => Ok(Action::await_change()),
        Err(error) => {
            warn!(namespace = %key.0, name = %key.1, %error, "writing the job failed; retrying");
            ctx.metrics.reconcile_errors.inc();
            Ok(Action::requeue(UPKEEP_RETRY))
        }
    }
}

/// The action for a job that is not due for a call now, or `None` when it is.
pub(crate) fn not_now(ctx: &Context, key: &JobKey, job: &PendingJob) -> Option<Action> {
    match ctx.decide(key, job) {
        Decision::Attempt => None,
        Decision::Wait(remaining) => Some(Action::requeue(remaining)),
        Decision::Idle | Decision::Delete | Decision::Amend(_) | Decision::DeadLetter => Some(Action::await_change()),
    }
}

/// A job the API server sent without a field it always sets: nothing to do
/// but log it and look again much later (Kubernetes trouble during an
/// attempt backs off per job inside the attempt task, see [`attempt`]).
pub fn error_policy(job: Arc<PendingJob>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(job = %job.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_errors.inc();
    Action::requeue(backoff::ERROR_DELAY_MAX)
}
