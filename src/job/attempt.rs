//! One attempt of a job, in a task of its own: a call slot, the job as fresh
//! as the promise needs (from the cache when it can), at most one call, and
//! the fenced status write that records it.
//!
//! A failed write is retried as a write, after a per-job backoff (1 s, 2 s,
//! 4 s … 5 min), until it lands or this instance stops leading; the call is
//! never made again for it. A leader whose term ends abandons the attempt at
//! whatever step it is, unrecorded.
//!
//! Each attempt is a span in the trace the job's annotations name, with its
//! call and its write as children ([`super::spans`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::GetParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{Instrument, Span, info, warn};

use super::context::Context;
use super::fence::{self, Landed, Unrecorded};
use super::spans::{self, Traced, Waits};
use super::transitions::{self, Attempt};
use super::{backoff, events};
use crate::api::{JobKey, PendingJob};
use crate::delivery::breaker::Admit;
use crate::delivery::call;
use crate::delivery::outcome::Outcome;
use crate::delivery::slots::Slot;
use crate::delivery::trace_context::TraceContext;
use crate::destination::oauth2;
use crate::destination::route::{self, Route, Wait};
use crate::leadership::term::Term;
use crate::observe::metrics::DropReason;
use crate::store::payloads;

/// How often a job that waits for its destination is routed again.
const WAIT_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the attempt of job `key` (cached with `uid`) in `term`. Whatever it
/// ends with, the job's next reconcile decides from there.
pub async fn run(ctx: &Context, key: &JobKey, uid: &str, term: Term) {
    let mut failures = 0;
    loop {
        let mut waits = Waits::default();
        let since = Instant::now();
        let Some(route) = Box::pin(wait_for_route(ctx, key, uid, term)).await else {
            return;
        };
        waits.destination = since.elapsed();
        // The rate first: a job held back by it holds no slot.
        let since = Instant::now();
        tokio::select! {
            () = ctx.delivery.pacing.wait(&route.limit_key, route.rate_limit) => {}
            () = ctx.leadership.ended(term) => return,
            () = ctx.tasks.stopped() => return,
        }
        waits.rate = since.elapsed();
        let since = Instant::now();
        let slot = tokio::select! {
            slot = ctx.delivery.slots.acquire(&key.0, &route.limit_key, route.max_concurrency) => slot,
            // The next term reconciles every job.
            () = ctx.leadership.ended(term) => return,
            () = ctx.tasks.stopped() => return,
        };
        let Ok(slot) = slot else {
            return;
        };
        waits.slot = since.elapsed();
        // Boxed, so that a task queued for a slot holds a small future: a
        // backlog of thousands of due jobs costs little memory.
        let read = Box::pin(read_fresh(ctx, key, uid, term)).await;
        let fresh = match read {
            Ok(fresh) => fresh,
            Err(error) => {
                drop(slot);
                failures += 1;
                let delay = backoff::error_delay(failures);
                warn!(job = %key.1, %error, failures, ?delay, "reading the job failed; retrying after a backoff");
                ctx.metrics.reconcile_errors.inc();
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = ctx.leadership.ended(term) => return,
                    () = ctx.tasks.stopped() => return,
                }
            }
        };
        // Gone, or not due: the cache lagged, and the newer status is on its way.
        let Some(Fresh { job, body, trace }) = fresh.filter(|fresh| ctx.not_now(key, &fresh.job).is_none()) else {
            return;
        };
        // The last word of the circuit breaker: a call now, or back to waiting.
        if let Some((settings, _)) = &route.breaker
            && ctx.delivery.breakers.admit(&route.limit_key, *settings) == Admit::Wait
        {
            drop(slot);
            continue;
        }
        let number = job.status.as_ref().map_or(0, |s| s.attempts).saturating_add(1);
        let destination = job.spec.destination_ref.as_ref().map(|d| d.name.as_str());
        let traced = spans::attempt(key, uid, destination, number, trace.map(|t| *t), waits);
        let made = call(ctx, &job, &route, body, key, term, &traced).instrument(traced.span.clone());
        let Some(owed) = Box::pin(made).await else {
            return;
        };
        // Only the reference is kept for the write: the payload goes now.
        let reference = job.object_ref(&());
        drop(job);
        let next = owed.next.clone();
        let write = spans::write(&traced);
        let recorded = Box::pin(record(ctx, reference, key, owed, slot).instrument(write)).await;
        if recorded {
            spans::recorded(&traced, key, uid, &next);
        }
        return;
    }
}

/// Where job `key` (cached with `uid`) is to be called, once it may be: a
/// job whose destination is missing, suspended or not ready waits here,
/// holding no slot, spending no attempt and writing nothing, and is routed
/// again every [`WAIT_RECHECK`]. `None` when the job is gone, no longer due,
/// or the term or the operator ends.
async fn wait_for_route(ctx: &Context, key: &JobKey, uid: &str, term: Term) -> Option<Route> {
    let mut waited: Option<Wait> = None;
    // Counts this job among its destination's waiting ones while it waits.
    let mut _counted = None;
    loop {
        let job = ctx.cached(key).filter(|job| job.uid().as_deref() == Some(uid))?;
        if ctx.not_now(key, &job).is_some() {
            return None;
        }
        let reference = job.spec.destination_ref.as_ref();
        let routed = route::route(
            &key.0,
            reference,
            &job.spec.target,
            &ctx.cache.destinations,
            &ctx.credentials,
        )
        .await
        .and_then(|route| match &route.breaker {
            Some((settings, destination)) if ctx.delivery.breakers.blocked(&route.limit_key, *settings) => {
                Err(Wait::CircuitOpen(destination.name.clone()))
            }
            _ => Ok(route),
        });
        match routed {
            Ok(route) => return Some(route),
            Err(wait) => {
                if waited.as_ref() != Some(&wait) {
                    info!(namespace = %key.0, name = %key.1, reason = %wait, "waiting for the destination");
                    let counted = ctx
                        .delivery
                        .occupancy
                        .waiting(&route::destination_key(&key.0, wait.destination()));
                    if counted.first {
                        ctx.destination_changed(ObjectRef::new(wait.destination()).within(&key.0));
                    }
                    _counted = Some(counted);
                }
                waited = Some(wait);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(WAIT_RECHECK) => {}
            () = ctx.leadership.ended(term) => return None,
            () = ctx.tasks.stopped() => return None,
        }
    }
}

/// Job `key` (cached with `uid`) as fresh as the promise needs (see
/// [`crate::store::freshness`]), with its request body; `None` when it is gone.
///
/// The controller's cache answers when it holds the job at its floor or
/// later, and its payload. Otherwise the job is read "not older than" the
/// floor, from the API server's watch cache; when that read shows another
/// object than `uid`, the name was reused and one of the two lags, so the job
/// is read from etcd instead.
async fn read_fresh(ctx: &Context, key: &JobKey, uid: &str, term: Term) -> Result<Option<Fresh>, kube::Error> {
    let floor = ctx.freshness.floor(&ctx.scope(), key, term).await?;
    if let Some(job) = ctx.cached(key).filter(|job| job.uid().as_deref() == Some(uid))
        && ctx
            .freshness
            .cached_as_of(job.metadata.resource_version.as_deref(), &floor)
        && let Some(request) = ctx.cache.payloads.request(uid, job.metadata.generation)
    {
        // The cache keeps a job's headers apart, with its payload.
        let job = if request.headers.is_empty() {
            job
        } else {
            let mut job = PendingJob::clone(&job);
            job.spec.target.headers = request.headers;
            Arc::new(job)
        };
        return Ok(Some(Fresh {
            job,
            body: request.body,
            trace: request.trace,
        }));
    }
    let api = ctx.api(&key.0);
    let job = match api.get_with(&key.1, &GetParams::at(&floor)).await {
        Ok(job) if job.uid().as_deref() == Some(uid) => Some(job),
        Ok(_) => api.get_opt(&key.1).await?,
        Err(kube::Error::Api(e)) if e.code == 404 => api.get_opt(&key.1).await?,
        Err(e) => return Err(e),
    };
    Ok(job.map(|job| Fresh {
        body: payloads::body_of(job.spec.payload.as_ref()),
        trace: TraceContext::from_annotations(job.metadata.annotations.as_ref()).map(Box::new),
        job: Arc::new(job),
    }))
}

/// A job fresh enough to call, its request body, and the trace it continues.
struct Fresh {
    job: Arc<PendingJob>,
    body: Option<Bytes>,
    trace: Option<Box<TraceContext>>,
}

/// Makes one call for `job`, unless leadership ends first; returns the
/// outcome that must now be recorded, or `None` when there was none.
async fn call(
    ctx: &Context,
    job: &PendingJob,
    route: &Route,
    body: Option<Bytes>,
    key: &JobKey,
    term: Term,
    traced: &Traced,
) -> Option<Unrecorded> {
    let uid = job.uid()?;
    let resource_version = job.resource_version()?;
    let status = job.status.clone().unwrap_or_default();
    // The last moment to notice a lost Lease before calling.
    if ctx.leadership.term() != Some(term) {
        return None;
    }
    ctx.metrics.attempt_started();
    let started = Timestamp::now();
    let in_flight = ctx.delivery.occupancy.calling(&route.limit_key);
    if in_flight.first
        && let Some(destination) = &route.destination
    {
        ctx.destination_changed(destination.clone());
    }
    let (http, carried) = spans::http(traced, job.spec.target.method, &route.endpoint.url);
    let made = call::call(
        &ctx.delivery.clients,
        &job.spec.target,
        &route.endpoint,
        body,
        &uid,
        carried.as_ref(),
    );
    let outcome = tokio::select! {
        outcome = made.instrument(http.clone()) => outcome,
        () = ctx.leadership.ended(term) => {
            warn!(namespace = %key.0, name = %key.1, "leadership lost during the call; abandoning it unrecorded");
            ctx.metrics.attempt_dropped(DropReason::lost_leadership);
            return None;
        }
    };
    let finished = Timestamp::now();
    drop(in_flight);
    let outcome = interpret(ctx, job, route, outcome).await;
    spans::answered(&http, &outcome);
    drop(http);
    if let (Outcome::Delivered { .. }, Some(created)) = (&outcome, &job.metadata.creation_timestamp) {
        let since = created.0.duration_until(finished).as_secs_f64();
        ctx.metrics.delivery_duration.observe(since.max(0.0));
    }
    if let Some((settings, destination)) = &route.breaker {
        let failed = matches!(outcome, Outcome::Retryable { .. });
        if let Some(circuit) = ctx.delivery.breakers.record(&route.limit_key, failed, *settings) {
            info!(destination = %destination.name, ?circuit, "circuit breaker");
            ctx.destination_changed(destination.clone());
        }
    }
    ctx.metrics
        .observe_attempt(&outcome, started.duration_until(finished).as_secs_f64());
    let attempt = Attempt {
        policy: &job.spec.retry_policy,
        generation: job.meta().generation,
        started,
        finished,
        jitter_unit: backoff::jitter_unit(&uid, status.attempts),
    };
    let next = transitions::record(&status, &attempt, &outcome);
    events::log_attempt(&key.0, &key.1, &next);
    Some(Unrecorded {
        uid,
        resource_version,
        base: status,
        next,
        term,
    })
}

/// What the call's `outcome` means for `job`: a 401 to a cached OAuth2
/// token is a token to replace (see [`oauth2::after_refusal`]), and
/// `retryPolicy.retryOn` reclassifies the codes it lists.
async fn interpret(ctx: &Context, job: &PendingJob, route: &Route, outcome: Outcome) -> Outcome {
    let outcome = match &route.oauth2 {
        Some(token) if outcome.code() == Some(401) => {
            ctx.credentials.tokens.forget(&route.limit_key, &token.header).await;
            oauth2::after_refusal(outcome, token.fresh)
        }
        _ => outcome,
    };
    match &job.spec.retry_policy.retry_on {
        Some(retry_on) => retry_on.classify(outcome),
        None => outcome,
    }
}

/// Writes `owed` until it lands, is settled otherwise, or the term ends;
/// true when it was recorded.
///
/// The call's slot is held through the first write, so calls never outrun
/// their writes and the attempts a crash would repeat stay bounded by the
/// slots; a write that fails lets the slot go while it backs off.
async fn record(ctx: &Context, mut reference: ObjectReference, key: &JobKey, owed: Unrecorded, slot: Slot) -> bool {
    let span = Span::current();
    let mut slot = Some(slot);
    let api = ctx.api(&key.0);
    let mut failures = 0;
    loop {
        let written = tokio::select! {
            written = fence::write(&api, &key.1, &owed) => written,
            () = ctx.leadership.ended(owed.term) => {
                warn!(namespace = %key.0, name = %key.1, "leadership lost before the status write landed; abandoning it");
                ctx.metrics.attempt_dropped(DropReason::lost_leadership);
                spans::written(&span, "abandoned");
                return false;
            }
        };
        ctx.freshness.write_landed(written.is_ok());
        match written.map(|(landed, now)| {
            if let (Landed::Recorded, Some(now)) = (landed, now) {
                ctx.freshness.wrote(key.clone(), owed.term, now);
            }
            landed
        }) {
            Ok(Landed::Recorded) => {
                ctx.metrics.attempt_recorded();
                spans::written(&span, "recorded");
                reference.uid = Some(owed.uid.clone());
                events::publish(&ctx.recorder, &reference, &owed.base, &owed.next).await;
                return true;
            }
            Ok(Landed::Superseded) => {
                warn!(namespace = %key.0, name = %key.1, attempts = owed.next.attempts, "the status was advanced by someone else; this attempt stays unrecorded");
                ctx.metrics.attempt_dropped(DropReason::superseded);
                spans::written(&span, "superseded");
                return false;
            }
            Ok(Landed::Gone) => {
                info!(namespace = %key.0, name = %key.1, uid = %owed.uid, "the job that was called is gone; nothing to record");
                ctx.metrics.attempt_dropped(DropReason::deleted);
                spans::written(&span, "gone");
                return false;
            }
            Err(error) => {
                slot.take();
                failures += 1;
                let delay = backoff::error_delay(failures);
                warn!(job = %key.1, %error, failures, ?delay, "writing the status failed; retrying the write (not the call) after a backoff");
                ctx.metrics.status_write_failed(error.reason());
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = ctx.leadership.ended(owed.term) => {
                        ctx.metrics.attempt_dropped(DropReason::lost_leadership);
                        spans::written(&span, "abandoned");
                        return false;
                    }
                }
            }
        }
    }
}
