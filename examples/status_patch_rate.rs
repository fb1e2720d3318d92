//! The reference for `make bench`: how fast a tight client can write the
//! status of PendingJobs on this API server, the way the operator does (one
//! server-side apply of `.status` per job, `CONCURRENCY` at once).
//!
//! Usage: `cargo run --release --example status_patch_rate -- NAMESPACE [CONCURRENCY]`
//! Prints `status writes: N in S s: R/s`. Run it with the operator stopped.

use std::time::Instant;

use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use pendingjob_operator::crd::PendingJob;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let namespace = args.next().ok_or("usage: status_patch_rate NAMESPACE [CONCURRENCY]")?;
    let concurrency: usize = args.next().map_or(Ok(16), |c| c.parse())?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| "installing the rustls provider")?;
    let api: Api<PendingJob> = Api::namespaced(Client::try_default().await?, &namespace);
    let names: Vec<String> = api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|job| job.name_any())
        .collect();
    let params = PatchParams::apply("status-patch-rate").force();
    let started = Instant::now();
    let written = futures::stream::iter(names.iter().enumerate())
        .map(|(n, name)| {
            let (api, params) = (api.clone(), params.clone());
            let patch = serde_json::json!({
                "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
                "status": {"phase": "Succeeded", "attempts": 1, "lastStatusCode": 200 + n % 2},
            });
            async move { api.patch_status(name, &params, &Patch::Apply(&patch)).await.is_ok() }
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
