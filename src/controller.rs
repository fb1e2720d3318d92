//! The reconciler: for each `PendingJob`, fetch, decide, act, record, requeue.
//!
//! The decision comes from `.status` alone (see [`lifecycle::decide`]): any
//! watch event, our own status write included, can wake a job early, and a
//! job that is not yet due costs no HTTP call and no API write. A due job is
//! read afresh before its call, so a lagging cache can never cause a second
//! call, and its outcome is recorded with the fenced write of [`fence`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::backoff;
use crate::crd::{PendingJob, PendingJobStatus, Phase};
use crate::dispatch::Dispatcher;
use crate::fence::{self, FIELD_MANAGER, JobKey, Landed, Ledger, Unrecorded, WriteError};
use crate::leader::{Leadership, Term};
use crate::lifecycle::{self, Attempt, Decision};
use crate::metrics::{DropReason, Metrics};

/// Infrastructure trouble; a target's failures are never an `Error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object lacks a field the API server always sets.
    #[error("PendingJob has no {0}")]
    MissingField(&'static str),
    /// Reading the job afresh before its call failed.
    #[error("reading PendingJob {namespace}/{name}: {source}")]
    Read {
        /// Namespace of the job.
        namespace: String,
        /// Name of the job.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The status write failed; the outcome waits in the ledger.
    #[error("writing the status of PendingJob {namespace}/{name}: {source}")]
    StatusWrite {
        /// Namespace of the job.
        namespace: String,
        /// Name of the job.
        name: String,
        /// What went wrong.
        source: WriteError,
    },
}

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    dispatcher: Dispatcher,
    ledger: Ledger,
    failures: Failures,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    leadership: Leadership,
}

impl Context {
    /// A context whose reconciles dispatch only while `leadership` holds, and
    /// whose Events name `identity` as the reporting instance. Every call
    /// `client` makes must have a timeout.
    pub fn new(
        client: Client,
        dispatcher: Dispatcher,
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
            client,
            dispatcher,
            ledger: Ledger::default(),
            failures: Failures::default(),
            metrics,
            leadership,
        }
    }

    /// Forgets a job that was deleted.
    pub fn forget_deleted(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        self.failures.reset(&key);
        if self.ledger.take(&key).is_some() {
            self.metrics.attempt_dropped(DropReason::deleted);
        }
    }

    /// Drops every outcome still owed: leadership was lost, and whoever leads
    /// next decides from the status as it stands.
    pub fn abandon_owed(&self) {
        for _ in self.ledger.drain() {
            self.metrics.attempt_dropped(DropReason::lost_leadership);
        }
    }

    fn api(&self, namespace: &str) -> Api<PendingJob> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

/// Reconciles one job: fetch its status, decide, make at most one call,
/// record the outcome in one fenced status write, and requeue for the next
/// decision. Consecutive errors back off per job (see [`error_policy`]).
pub async fn reconcile(job: Arc<PendingJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = (
        job.namespace().ok_or(Error::MissingField("metadata.namespace"))?,
        job.name_any(),
    );
    let result = reconcile_job(&job, &key, &ctx).await;
    if result.is_ok() {
        ctx.failures.reset(&key);
    }
    result
}

async fn reconcile_job(job: &PendingJob, key: &JobKey, ctx: &Context) -> Result<Action, Error> {
    // A standby keeps its cache warm but never dispatches; it is woken for
    // every job when it becomes the leader.
    let Some(term) = ctx.leadership.term() else {
        return Ok(Action::await_change());
    };
    // An outcome still owed is recorded before anything new is decided.
    if let Some(owed) = ctx.ledger.take(key) {
        return record(job, key, owed, ctx).await;
    }
    // Decide from the cache: most wake-ups end here, at no cost.
    let cached = job.status.clone().unwrap_or_default();
    if let Some(action) = not_now(key, &cached) {
        return Ok(action);
    }
    // Due: read the job afresh, so a lagging cache cannot cause a second call.
    let read = ctx.api(&key.0).get_opt(&key.1).await;
    let Some(fresh) = read.map_err(|source| Error::Read {
        namespace: key.0.clone(),
        name: key.1.clone(),
        source,
    })?
    else {
        return Ok(Action::await_change());
    };
    let status = fresh.status.clone().unwrap_or_default();
    if let Some(action) = not_now(key, &status) {
        return Ok(action);
    }
    match attempt(&fresh, key, status, term, ctx).await? {
        Some(owed) => record(job, key, owed, ctx).await,
        None => Ok(Action::await_change()),
    }
}

/// The action for a job that is not due now, or `None` when it is.
fn not_now(key: &JobKey, status: &PendingJobStatus) -> Option<Action> {
    let decision = lifecycle::decide(status, Timestamp::now());
    debug!(namespace = %key.0, name = %key.1, ?decision, attempts = status.attempts, "decided");
    match decision {
        Decision::Attempt => None,
        Decision::Wait(remaining) => Some(Action::requeue(remaining)),
        Decision::Finished => Some(Action::await_change()),
    }
}

/// Makes one call for `job`, unless leadership ends first; returns the
/// outcome that must now be recorded, or `None` when the call was abandoned.
async fn attempt(
    job: &PendingJob,
    key: &JobKey,
    status: PendingJobStatus,
    term: Term,
    ctx: &Context,
) -> Result<Option<Unrecorded>, Error> {
    let uid = job.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let resource_version = job
        .resource_version()
        .ok_or(Error::MissingField("metadata.resourceVersion"))?;
    // The last moment to notice a lost Lease before calling.
    if ctx.leadership.term() != Some(term) {
        return Ok(None);
    }
    ctx.metrics.attempt_started();
    let started = Timestamp::now();
    let outcome = tokio::select! {
        outcome = ctx.dispatcher.attempt(&job.spec, &uid) => outcome,
        () = ctx.leadership.ended(term) => {
            warn!(namespace = %key.0, name = %key.1, "leadership lost during the call; abandoning it unrecorded");
            ctx.metrics.attempt_dropped(DropReason::lost_leadership);
            return Ok(None);
        }
    };
    let finished = Timestamp::now();
    ctx.metrics
        .observe_attempt(&outcome, started.duration_until(finished).as_secs_f64());
    let attempt = Attempt {
        policy: &job.spec.retry_policy,
        generation: job.meta().generation,
        started,
        finished,
        jitter_unit: backoff::jitter_unit(&uid, status.attempts),
    };
    let next = lifecycle::record(&status, &attempt, &outcome);
    log_attempt(&key.0, &key.1, &next);
    Ok(Some(Unrecorded {
        uid,
        resource_version,
        base: status,
        next,
        term,
    }))
}

/// Records `owed` with one fenced status write. A write that fails keeps the
/// outcome in the ledger, to be written again (never called again) after a
/// per-job backoff; a term that ended drops it.
async fn record(job: &PendingJob, key: &JobKey, owed: Unrecorded, ctx: &Context) -> Result<Action, Error> {
    if ctx.leadership.term() != Some(owed.term) {
        ctx.metrics.attempt_dropped(DropReason::lost_leadership);
        return Ok(Action::await_change());
    }
    let api = ctx.api(&key.0);
    let written = tokio::select! {
        written = fence::write(&api, &key.1, &owed) => written,
        () = ctx.leadership.ended(owed.term) => {
            warn!(namespace = %key.0, name = %key.1, "leadership lost during the status write; abandoning it");
            ctx.metrics.attempt_dropped(DropReason::lost_leadership);
            return Ok(Action::await_change());
        }
    };
    let landed = match written {
        Ok(landed) => landed,
        Err(source) => {
            ctx.metrics.status_write_failed(source.reason());
            ctx.ledger.owe(key.clone(), owed);
            return Err(Error::StatusWrite {
                namespace: key.0.clone(),
                name: key.1.clone(),
                source,
            });
        }
    };
    // Whatever stands now (a newer status, a new job under this name) is
    // decided afresh at once: the event that woke this reconcile may have
    // been its only one.
    match landed {
        Landed::Recorded => ctx.metrics.attempt_recorded(),
        Landed::Superseded => {
            warn!(namespace = %key.0, name = %key.1, attempts = owed.next.attempts, "the status was advanced by someone else; this attempt stays unrecorded");
            ctx.metrics.attempt_dropped(DropReason::superseded);
            return Ok(Action::requeue(Duration::ZERO));
        }
        Landed::Gone => {
            info!(namespace = %key.0, name = %key.1, uid = %owed.uid, "the job that was called is gone; nothing to record");
            ctx.metrics.attempt_dropped(DropReason::deleted);
            return Ok(Action::requeue(Duration::ZERO));
        }
    }
    let mut reference = job.object_ref(&());
    reference.uid = Some(owed.uid.clone());
    publish_event(&ctx.recorder, &reference, &owed.next).await;
    Ok(match lifecycle::decide(&owed.next, Timestamp::now()) {
        Decision::Wait(remaining) => Action::requeue(remaining),
        Decision::Attempt => Action::requeue(Duration::ZERO),
        Decision::Finished => Action::await_change(),
    })
}

fn log_attempt(namespace: &str, name: &str, status: &PendingJobStatus) {
    let code = status.last_status_code;
    let attempts = status.attempts;
    match status.phase {
        Phase::Succeeded => info!(%namespace, %name, attempts, ?code, "delivered"),
        Phase::Failed => {
            warn!(%namespace, %name, attempts, ?code, error = ?status.last_error, "given up")
        }
        _ => info!(
            %namespace, %name, attempts, retry = status.retry_count, ?code,
            next_retry = ?status.next_retry_time.as_ref().map(|t| t.0),
            error = ?status.last_error,
            "attempt failed; retry scheduled"
        ),
    }
}

/// One Event per attempt, so that `kubectl describe pendingjob` tells the
/// story. Losing an Event is not worth failing the reconcile over.
async fn publish_event(recorder: &Recorder, job: &ObjectReference, status: &PendingJobStatus) {
    // The note is the message of the condition this attempt set.
    let (type_, reason, condition) = match status.phase {
        Phase::Succeeded => (EventType::Normal, "Delivered", lifecycle::SUCCEEDED),
        Phase::Failed => (EventType::Warning, "GaveUp", lifecycle::FAILED),
        Phase::Retrying | Phase::Pending => (EventType::Warning, "AttemptFailed", lifecycle::SUCCEEDED),
    };
    let note = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(lifecycle::truncate(&note, 1024)),
        action: "Dispatch".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, job).await {
        warn!(job = ?job.name, %error, "publishing an Event");
    }
}

/// Kubernetes trouble: try the job again after a per-job exponential backoff
/// (1 s, 2 s, 4 s … 5 min), so a failing API server is not hammered.
pub fn error_policy(job: Arc<PendingJob>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = (job.namespace().unwrap_or_default(), job.name_any());
    let failures = ctx.failures.count(key);
    let delay = backoff::error_delay(failures);
    warn!(job = %job.name_any(), %error, failures, ?delay, "reconcile failed; retrying after a backoff");
    ctx.metrics.reconcile_errors.inc();
    Action::requeue(delay)
}

/// Consecutive failed reconciles, per job.
#[derive(Debug, Default)]
struct Failures(Mutex<HashMap<JobKey, u32>>);

impl Failures {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<JobKey, u32>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more failure of `job`; returns how many in a row.
    fn count(&self, job: JobKey) -> u32 {
        let mut map = self.map();
        let failures = map.entry(job).or_default();
        *failures = failures.saturating_add(1);
        *failures
    }

    fn reset(&self, job: &JobKey) {
        self.map().remove(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_per_job_until_reset() {
        let failures = Failures::default();
        let a = ("ns".to_owned(), "a".to_owned());
        let b = ("ns".to_owned(), "b".to_owned());
        assert_eq!(failures.count(a.clone()), 1);
        assert_eq!(failures.count(a.clone()), 2);
        assert_eq!(failures.count(b.clone()), 1);
        failures.reset(&a);
        assert_eq!(failures.count(a), 1);
        assert_eq!(failures.count(b), 2);
    }
}
