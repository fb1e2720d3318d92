//! The admin HTTP server: `/healthz`, `/readyz` and `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::gauges;
use super::metrics::Metrics;
use crate::store::cache::JobCache;

/// What the admin endpoints report on; shared with the controller.
#[derive(Clone, Default)]
pub struct Admin {
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    jobs: Arc<OnceLock<JobCache>>,
}

impl Admin {
    /// Marks the controller as running (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Gives `/metrics` the controller's cache and the jobs kept apart
    /// from it, to count jobs by phase.
    pub fn set_store(&self, cache: JobCache) {
        let _ = self.jobs.set(cache);
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self)
    }
}

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    if admin.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "controller not running")
    }
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    if let Some(cache) = admin.jobs.get() {
        // Only the leader reports job gauges: summed over replicas, each
        // job then counts once.
        let leading = admin.metrics.leader.get() == 1;
        let gauges = leading.then(|| {
            let jobs = cache.store.state();
            let mut gauges = gauges::job_gauges(jobs.iter().map(AsRef::as_ref), jiff::Timestamp::now());
            for (key, count) in cache.finished.counts().into_iter().chain(cache.parked.counts()) {
                *gauges.by_phase.entry(key).or_default() += count;
            }
            gauges
        });
        admin.metrics.set_job_gauges(gauges.as_ref());
    }
    match admin.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "encoding metrics failed".to_owned(),
        ),
    }
}
