//! Deleting the finished jobs kept compact ([`crate::store::finished`]) once
//! their time to live is up. They are outside the controller, so no
//! reconcile wakes them: this task does, for the leader only, with one
//! delete each, guarded by the uid and resourceVersion the job was kept at.
//! A job changed since is kept (the watch brings it back to the
//! controller); a delete that failed is tried again a little later.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tracing::warn;

use super::amend;
use super::context::Context;

/// Most deletes started between two looks at the schedule.
const BATCH: usize = 64;
/// The longest sleep between two looks at the schedule (a look is a lock
/// and a peek; a deletion due sooner ends the sleep).
const LOOK_EVERY: Duration = Duration::from_secs(60);
/// When a delete that failed is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Deletes kept jobs as they come due, until the controller stops.
pub async fn run(ctx: Arc<Context>) {
    let mut tenure = ctx.leadership.subscribe();
    loop {
        if ctx.leadership.term().is_none() {
            tokio::select! {
                changed = tenure.changed() => if changed.is_err() { return },
                () = ctx.tasks.stopped() => return,
            }
            continue;
        }
        let due = ctx.cache.finished.take_due(Timestamp::now(), BATCH);
        for job in &due {
            let (uid, version) = (Some(job.uid.clone()), Some(job.resource_version.clone()));
            if let Err(error) = amend::delete_exactly(&ctx, &job.key, uid, version).await {
                let (namespace, name) = &job.key;
                warn!(%namespace, %name, %error, "deleting the job failed; retrying");
                ctx.metrics.reconcile_errors.inc();
                let later = Timestamp::now() + RETRY_AFTER;
                ctx.cache.finished.retry_at(job, later);
            }
        }
        if due.len() == BATCH {
            continue;
        }
        let next = ctx.cache.finished.next_deletion();
        let wait = next.map_or(LOOK_EVERY, |at| {
            let until = Timestamp::now().duration_until(at);
            Duration::try_from(until).unwrap_or_default().min(LOOK_EVERY)
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = ctx.cache.finished.sooner() => {}
            () = ctx.tasks.stopped() => return,
        }
    }
}
