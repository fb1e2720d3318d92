//! The reconciler: for each `PendingJob`, fetch, decide, and hand a due
//! attempt to a task of its own ([`super::attempt`]), so that no reconcile
//! ever waits on a target.
//!
//! The decision comes from the job's spec, retry annotation and `.status`
//! alone (see [`super::plan::decide`]): any watch event, our own status write
//! included, can wake a job early, and a job that is not yet due costs no
//! HTTP call and no API write. Deleting a job whose time to live is up, and
//! status changes without a call, are in [`super::amend`]. A job has at
//! most one task at a time ([`super::tasks`]); before its call the attempt
//! makes sure the job is fresh enough ([`crate::store::freshness`]), so a
//! lagging cache can never cause a second call.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::warn;

use super::context::Context;
use super::plan::Decision;
use super::tasks::Spawned;
use super::{amend, attempt, backoff, dead_letter};
use crate::api::{JobKey, PendingJob};
use crate::leadership::term::Term;

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
    if matches!(decision, Decision::Delete | Decision::Amend(_)) && ctx.tasks.is_running(&key) {
        // Its attempt task ends first (it sees the change too), so the two
        // never race for the status.
        return Ok(Action::requeue(BUSY_RECHECK));
    }
    let done = match decision {
        Decision::Attempt => {
            let uid = job.uid().ok_or(Error::MissingField("metadata.uid"))?;
            return Ok(if start_attempt(&ctx, key, uid, term) {
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
            start_dead_letter(&ctx, key, uid, term);
            // Its status write wakes the job; a wait for its destination does not.
            return Ok(Action::requeue(DEAD_LETTER_RECHECK));
        }
        Decision::Delete => amend::delete(&ctx, &job).await,
        Decision::Amend(change) => amend::apply(&ctx, &job, &status, &change).await,
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

/// A job the API server sent without a field it always sets: nothing to do
/// but log it and look again much later (Kubernetes trouble during an
/// attempt backs off per job inside the attempt task, see [`super::attempt`]).
pub fn error_policy(job: Arc<PendingJob>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(job = %job.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_errors.inc();
    Action::requeue(backoff::ERROR_DELAY_MAX)
}

/// Starts the attempt task of job `key` (cached with `uid`); false if it has
/// one already.
fn start_attempt(ctx: &Arc<Context>, key: JobKey, uid: String, term: Term) -> bool {
    let task = {
        let (ctx, key) = (ctx.clone(), key.clone());
        async move { attempt::run(&ctx, &key, &uid, term).await }
    };
    ctx.tasks.spawn(key, task) != Spawned::Busy
}

/// Starts the dead-letter task of job `key` (cached with `uid`), unless it
/// has a task already.
fn start_dead_letter(ctx: &Arc<Context>, key: JobKey, uid: String, term: Term) {
    let task = {
        let (ctx, key) = (ctx.clone(), key.clone());
        async move { dead_letter::send(&ctx, &key, &uid, term).await }
    };
    ctx.tasks.spawn(key, task);
}
