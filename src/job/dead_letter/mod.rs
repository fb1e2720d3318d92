//! `spec.deadLetter`: where a JSON record of a job goes when it fails, so
//! someone hears of it without reading its status.
//!
//! The record is sent by a task of its own once the job is `Failed`, with
//! its own retries (2 s, 4 s … 5 min, until delivered) and its own
//! Idempotency-Key (`<uid>/dead-letter`). Each call is recorded in
//! `status.deadLetter` by a fenced status write, as attempts are. The
//! job's own outcome never changes, and its TTL waits for the delivery.

pub mod record;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use kube::ResourceExt;
use tracing::{Instrument, info, warn};

use super::context::Context;
use super::fence;
use super::plan::Decision;
use super::spans;
use crate::api::{DeadLetterStatus, JobKey, Method, PendingJobStatus, Target};
use crate::delivery::call;
use crate::delivery::trace_context::TraceContext;
use crate::destination::route;
use crate::leadership::term::Term;
use crate::observe::metrics::DeadLetterLabels;
use record::{record, recorded};

/// Seconds a dead-letter call may take.
const TIMEOUT_SECONDS: i32 = 10;

/// Sends the dead-letter record of job `key` (cached with `uid`) once, and
/// records the call. Like an attempt, the call takes a call slot first, so
/// dead letters share the pool and their namespace's share of it, and one
/// waiting for its slot holds no payload; the slot is held until the call
/// is recorded. Then it reads the job: the cache keeps no payload of a
/// finished job.
pub async fn send(ctx: &Context, key: &JobKey, uid: &str, term: Term) {
    let Some(cached) = ctx.cached(key).filter(|job| job.uid().as_deref() == Some(uid)) else {
        return;
    };
    let Some(dead_letter) = cached.spec.dead_letter.clone() else {
        return;
    };
    drop(cached);
    let target = Target {
        url: dead_letter.url.clone(),
        path: None,
        method: Method::Post,
        headers: BTreeMap::new(),
        timeout_seconds: TIMEOUT_SECONDS,
    };
    let routed = route::route(
        &key.0,
        dead_letter.destination_ref.as_ref(),
        &target,
        &ctx.cache.destinations,
        &ctx.credentials,
    );
    let route = match routed.await {
        Ok(route) => route,
        // No call now; the next reconcile tries again.
        Err(wait) => return info!(job = %key.1, reason = %wait, "the dead letter waits for its destination"),
    };
    let slot = tokio::select! {
        slot = ctx.delivery.slots.acquire(&key.0, &route.limit_key, route.max_concurrency) => slot,
        // The next term reconciles every job.
        () = ctx.leadership.ended(term) => return,
        () = ctx.tasks.stopped() => return,
    };
    let Ok(_slot) = slot else {
        return;
    };
    let api = ctx.api(&key.0);
    let job = match api.get_opt(&key.1).await {
        Ok(Some(job)) if job.uid().as_deref() == Some(uid) => job,
        Ok(_) => return,
        Err(error) => return warn!(job = %key.1, %error, "reading the job for its dead letter failed"),
    };
    // Changed since it was routed: the next reconcile routes it afresh.
    let (Some(now), Some(status)) = (&job.spec.dead_letter, job.status.clone()) else {
        return;
    };
    if *now != dead_letter || ctx.decide(key, &job) != Decision::DeadLetter {
        return;
    }
    let body = Bytes::from(record(&job, &status).to_string());
    if ctx.leadership.term() != Some(term) {
        return;
    }
    let key_of_call = format!("{uid}/dead-letter");
    let stored = TraceContext::from_annotations(job.metadata.annotations.as_ref());
    let destination = dead_letter.destination_ref.as_ref().map(|d| d.name.as_str());
    let traced = spans::dead_letter(key, uid, destination, stored);
    let (http, carried) = spans::http(&traced, target.method, &route.endpoint.url);
    let outcome = call::call(
        &ctx.delivery.clients,
        &target,
        &route.endpoint,
        Some(body),
        &key_of_call,
        carried.as_ref(),
    )
    .instrument(http.clone())
    .await;
    spans::answered(&http, &outcome);
    drop(http);
    let next = recorded(&status, &outcome, Timestamp::now());
    let delivered = next.dead_letter.as_ref().is_some_and(|d| d.delivered);
    let result = if delivered { "delivered" } else { "failed" };
    ctx.metrics
        .dead_letters
        .get_or_create(&DeadLetterLabels { result })
        .inc();
    info!(job = %key.1, delivered, "dead letter sent");
    record_call(
        ctx,
        key,
        uid,
        &status,
        next.dead_letter,
        job.resource_version().unwrap_or_default(),
    )
    .instrument(spans::write(&traced))
    .await;
}

/// Writes `recorded` as the dead-letter status of job `key`, fenced by
/// `resource_version`. When the job changed meanwhile (an annotation, say),
/// the write is re-based onto it as long as it is the same job and its
/// dead-letter status is still `base`'s: then the call is recorded, not
/// lost to be repeated. A redrive or another writer's record wins.
async fn record_call(
    ctx: &Context,
    key: &JobKey,
    uid: &str,
    base: &PendingJobStatus,
    recorded: Option<Box<DeadLetterStatus>>,
    mut resource_version: String,
) {
    let api = ctx.api(&key.0);
    let mut current = base.clone();
    for _ in 0..3 {
        let next = PendingJobStatus {
            dead_letter: recorded.clone(),
            ..current.clone()
        };
        match fence::apply_status(&api, &key.1, &next, &resource_version).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(&key.1).await {
                Ok(Some(job)) if job.uid().as_deref() == Some(uid) => {
                    let now = job.status.clone().unwrap_or_default();
                    if now.dead_letter != base.dead_letter || now.phase != base.phase {
                        return;
                    }
                    resource_version = job.resource_version().unwrap_or_default();
                    current = now;
                }
                Ok(_) => return,
                Err(error) => warn!(job = %key.1, %error, "re-reading the job failed; retrying"),
            },
            Err(error) => {
                warn!(job = %key.1, %error, "recording the dead letter failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
