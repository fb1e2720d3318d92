//! The reference for `make bench`: how fast a tight client can record first
//! attempts of PendingJobs on this API server, with the very write the
//! operator makes ([`fence::apply_status`]): a server-side apply of the whole
//! `.status` that [`transitions::record`] gives for a delivered first attempt,
//! fenced by the listed resourceVersion, answered with metadata only,
//! `CONCURRENCY` at once. It makes no call and keeps no watch: what it
//! measures is the API server's rate for that write.
//!
//! Usage: `cargo run --release --example status_patch_rate -- NAMESPACE [CONCURRENCY]`
//! Prints `status writes: N in S s: R/s`. Run it on jobs no one has written
//! yet, with no operator watching them.

use std::time::Instant;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use pendingjob_operator::api::{PendingJob, PendingJobStatus, RetryPolicy};
use pendingjob_operator::delivery::outcome::Outcome;
use pendingjob_operator::job::fence;
use pendingjob_operator::job::transitions::{self, Attempt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let namespace = args.next().ok_or("usage: status_patch_rate NAMESPACE [CONCURRENCY]")?;
    let concurrency: usize = args.next().map_or(Ok(16), |c| c.parse())?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| "installing the rustls provider")?;
    let api: Api<PendingJob> = Api::namespaced(Client::try_default().await?, &namespace);
    let jobs: Vec<(String, String, Option<i64>)> = api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|job| {
            (
                job.name_any(),
                job.resource_version().unwrap_or_default(),
                job.metadata.generation,
            )
        })
        .collect();
    let policy = RetryPolicy::default();
    let started = Instant::now();
    let written = futures::stream::iter(jobs.iter())
        .map(|(name, resource_version, generation)| {
            let now = Timestamp::now();
            let attempt = Attempt {
                policy: &policy,
                generation: *generation,
                started: now,
                finished: now,
                jitter_unit: 0.0,
            };
            let status = transitions::record(
                &PendingJobStatus::default(),
                &attempt,
                &Outcome::Delivered { code: 200 },
            );
            let api = api.clone();
            async move { fence::apply_status(&api, name, &status, resource_version).await.is_ok() }
        })
        .buffer_unordered(concurrency)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "status writes: {written} in {seconds:.2} s: {:.0}/s",
        written as f64 / seconds
    );
    Ok(())
}
