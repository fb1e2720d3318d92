//! The reconciler: for each `PendingJob`, fetch, decide, act, record, requeue.
//!
//! The decision comes from `.status` alone (see [`lifecycle::decide`]): any
//! watch event, our own status write included, can wake a job early, and a
//! job that is not yet due costs no HTTP call and no API write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::backoff;
use crate::crd::{PendingJob, PendingJobStatus, Phase};
use crate::dispatch::Dispatcher;
use crate::lifecycle::{self, Attempt, Decision};
use crate::metrics::Metrics;

/// Field manager of the operator's server-side-apply status writes.
pub const FIELD_MANAGER: &str = "pendingjob-operator";
/// Requeue delay after a Kubernetes error.
const ERROR_REQUEUE: Duration = Duration::from_secs(5);
/// Requeue delay while the watch cache has not yet caught up with our own write.
const STALE_REQUEUE: Duration = Duration::from_millis(500);

/// Infrastructure trouble; a target's failures are never an `Error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object lacks a field the API server always sets.
    #[error("PendingJob has no {0}")]
    MissingField(&'static str),
    /// The status write failed.
    #[error("writing the status of PendingJob {namespace}/{name}: {source}")]
    StatusWrite {
        /// Namespace of the job.
        namespace: String,
        /// Name of the job.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    dispatcher: Dispatcher,
    writes: OwnWrites,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    is_leader: watch::Receiver<bool>,
}

impl Context {
    /// A context whose reconciles dispatch only while `is_leader` is true,
    /// and whose Events name `identity` as the reporting instance.
    pub fn new(
        client: Client,
        dispatcher: Dispatcher,
        metrics: Arc<Metrics>,
        identity: &str,
        is_leader: watch::Receiver<bool>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            dispatcher,
            writes: OwnWrites::default(),
            metrics,
            is_leader,
        }
    }

    /// Forgets what we wrote for a job that was deleted.
    pub fn forget_deleted(&self, namespace: &str, name: &str) {
        self.writes.forget(&(namespace.to_owned(), name.to_owned()));
    }
}

/// A job's namespace and name.
type JobKey = (String, String);

/// The attempt count of our last status write, per job.
///
/// The watch cache can lag behind our own write. A job whose cached status
/// shows fewer attempts than we wrote is stale, and acting on it would call
/// the target twice. An entry lives until the cache shows the job finished,
/// or the job is deleted.
#[derive(Debug, Default)]
struct OwnWrites(Mutex<HashMap<JobKey, (String, i32)>>);

impl OwnWrites {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<JobKey, (String, i32)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when our own last write of this job (same UID) is newer than `status`.
    fn is_stale(&self, job: &JobKey, uid: &str, status: &PendingJobStatus) -> bool {
        self.map()
            .get(job)
            .is_some_and(|(written_uid, attempts)| written_uid == uid && status.attempts < *attempts)
    }

    fn remember(&self, job: JobKey, uid: &str, status: &PendingJobStatus) {
        self.map().insert(job, (uid.to_owned(), status.attempts));
    }

    fn forget(&self, job: &JobKey) {
        self.map().remove(job);
    }
}

/// Reconciles one job: fetch its status, decide, make at most one call,
/// record the outcome in one status write, and requeue for the next decision.
pub async fn reconcile(job: Arc<PendingJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let uid = job.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let namespace = job.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = job.name_any();
    let status = job.status.clone().unwrap_or_default();

    // A standby keeps its cache warm but never dispatches; it is woken for
    // every job when it becomes the leader.
    if !*ctx.is_leader.borrow() {
        return Ok(Action::await_change());
    }
    let key = (namespace.clone(), name.clone());
    if ctx.writes.is_stale(&key, &uid, &status) {
        return Ok(Action::requeue(STALE_REQUEUE));
    }
    let decision = lifecycle::decide(&status, Timestamp::now());
    debug!(%namespace, %name, ?decision, attempts = status.attempts, "decided");
    match decision {
        Decision::Finished => {
            ctx.writes.forget(&key);
            return Ok(Action::await_change());
        }
        Decision::Wait(remaining) => return Ok(Action::requeue(remaining)),
        Decision::Attempt => {}
    }

    let started = Timestamp::now();
    let outcome = ctx.dispatcher.attempt(&job.spec, &uid).await;
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
    log_attempt(&namespace, &name, &next);

    let api: Api<PendingJob> = Api::namespaced(ctx.client.clone(), &namespace);
    match write_status(&api, &name, &next).await {
        Ok(()) => {}
        // Deleted while the call was in flight: nothing left to record.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(source) => {
            return Err(Error::StatusWrite {
                namespace,
                name,
                source,
            });
        }
    }
    ctx.writes.remember(key, &uid, &next);
    publish_event(&ctx.recorder, &job, &next).await;

    Ok(match lifecycle::decide(&next, Timestamp::now()) {
        Decision::Wait(remaining) => Action::requeue(remaining),
        Decision::Attempt => Action::requeue(Duration::ZERO),
        Decision::Finished => Action::await_change(),
    })
}

/// Server-side apply of the whole status; fields we leave out are removed.
async fn write_status(api: &Api<PendingJob>, name: &str, status: &PendingJobStatus) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": PendingJob::api_version(&()),
        "kind": PendingJob::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map(|_| ())
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
async fn publish_event(recorder: &Recorder, job: &PendingJob, status: &PendingJobStatus) {
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
    if let Err(error) = recorder.publish(&event, &job.object_ref(&())).await {
        warn!(job = %job.name_any(), %error, "publishing an Event");
    }
}

/// Kubernetes trouble: log it and try again shortly.
pub fn error_policy(job: Arc<PendingJob>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(job = %job.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_errors.inc();
    Action::requeue(ERROR_REQUEUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(attempts: i32) -> PendingJobStatus {
        PendingJobStatus {
            attempts,
            ..PendingJobStatus::default()
        }
    }

    #[test]
    fn a_cached_status_older_than_our_write_is_stale() {
        let writes = OwnWrites::default();
        let job = ("ns".to_owned(), "job".to_owned());
        assert!(!writes.is_stale(&job, "uid-1", &status(0)), "nothing written yet");
        writes.remember(job.clone(), "uid-1", &status(3));
        assert!(writes.is_stale(&job, "uid-1", &status(2)));
        assert!(!writes.is_stale(&job, "uid-1", &status(3)), "the cache caught up");
        assert!(
            !writes.is_stale(&job, "uid-2", &status(0)),
            "a new job under the same name"
        );
        writes.forget(&job);
        assert!(!writes.is_stale(&job, "uid-1", &status(2)));
    }
}
