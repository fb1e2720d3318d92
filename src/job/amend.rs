//! The writes a job needs besides recording attempts: deleting it when its
//! time to live is up, and the status changes that need no call (see
//! [`super::plan::Amend`]). Only the leader makes them, each fenced by the
//! resourceVersion it was decided from, so none lands on a newer job.

use jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::context::Context;
use super::fence;
use super::plan::{self, Amend};
use crate::api::{JobKey, PendingJob, PendingJobStatus};

/// Deletes `job` with one call, only if it is still that object at that
/// version: a job recreated under its name, or changed since, is kept.
pub async fn delete(ctx: &Context, job: &PendingJob) -> Result<(), kube::Error> {
    let (namespace, name) = (job.namespace().unwrap_or_default(), job.name_any());
    delete_exactly(ctx, &(namespace, name), job.uid(), job.resource_version()).await
}

/// Deletes job `key` with one call if it still has `uid` at `resource_version`.
pub(crate) async fn delete_exactly(
    ctx: &Context,
    (namespace, name): &JobKey,
    uid: Option<String>,
    resource_version: Option<String>,
) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid, resource_version }),
        ..DeleteParams::background()
    };
    match ctx.api(namespace).delete(name, &params).await {
        Ok(_) => {
            info!(%namespace, %name, "deleted: ttlSecondsAfterFinished is up");
            ctx.metrics.ttl_deletions.inc();
            Ok(())
        }
        // Gone already, or changed since the decision: the next reconcile decides again.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes the status `change` makes of `status`, fenced by `job`'s
/// resourceVersion.
pub async fn apply(
    ctx: &Context,
    job: &PendingJob,
    status: &PendingJobStatus,
    change: &Amend,
) -> Result<(), kube::Error> {
    let (namespace, name) = (job.namespace().unwrap_or_default(), job.name_any());
    let mut next = plan::amend(status, change, Timestamp::now());
    next.observed_generation = job.meta().generation;
    let resource_version = job.resource_version().unwrap_or_default();
    match fence::apply_status(&ctx.api(&namespace), &name, &next, &resource_version).await {
        Ok(_) => {
            info!(%namespace, %name, ?change, phase = ?next.phase, "status amended");
            Ok(())
        }
        // Changed since: the watch brings the change, and a new decision.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
