//! The intake's figures for `make bench`: how fast PendingJobs are created
//! through `pendingjob-intake`, beside how fast a tight client creates the
//! same jobs on the same API server, `CONCURRENCY` at once, with p50/p99
//! latency of each request.
//!
//! Usage: `create_rate NAMESPACE DESTINATION INTAKE_URL TOKEN COUNT [CONCURRENCY]`
//! (the token's account may create pendingjobs in NAMESPACE). Prints one
//! line for each: `raw creates: ...` and `intake creates: ...`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::PostParams;
use kube::{Api, Client};
use pendingjob_operator::api::PendingJob;
use pendingjob_operator::intake::request::JobRequest;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn report(what: &str, mut latencies: Vec<Duration>, took: Duration) {
    latencies.sort();
    println!(
        "{what}: {} in {:.2} s: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        took.as_secs_f64(),
        latencies.len() as f64 / took.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [namespace, destination, intake, token, count, rest @ ..] = args.as_slice() else {
        return Err("usage: create_rate NAMESPACE DESTINATION INTAKE_URL TOKEN COUNT [CONCURRENCY]".into());
    };
    let count: usize = count.parse()?;
    let concurrency: usize = rest.first().map_or(Ok(32), |c| c.parse())?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| "installing the rustls provider")?;

    // The reference: the job the intake would create, created directly.
    let api: Api<PendingJob> = Api::namespaced(Client::try_default().await?, namespace);
    let started = Instant::now();
    let raw: Vec<Duration> = futures::stream::iter(0..count)
        .map(|n| {
            let job = JobRequest {
                namespace: namespace.clone(),
                destination: destination.clone(),
                path: None,
                method: Default::default(),
                not_before: None,
                idempotency_key: Some(format!("raw-{n}")),
                payload: serde_json::json!({"n": n, "filler": "x".repeat(1000)}),
                trace: None,
            }
            .job("bench");
            let api = api.clone();
            async move {
                let at = Instant::now();
                api.create(&PostParams::default(), &job).await.map(|_| at.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .filter_map(|r| std::future::ready(r.ok()))
        .collect()
        .await;
    report("raw creates", raw, started.elapsed());

    let http = reqwest::Client::new();
    let url = format!("{intake}/v1/namespaces/{namespace}/destinations/{destination}/jobs");
    let started = Instant::now();
    let through: Vec<Duration> = futures::stream::iter(0..count)
        .map(|n| {
            let request = http
                .post(&url)
                .bearer_auth(token)
                .header("Idempotency-Key", format!("intake-{n}"))
                .body(serde_json::json!({"n": n, "filler": "x".repeat(1000)}).to_string());
            async move {
                let at = Instant::now();
                match request.send().await {
                    Ok(response) if response.status().as_u16() == 202 => Some(at.elapsed()),
                    _ => None,
                }
            }
        })
        .buffer_unordered(concurrency)
        .filter_map(std::future::ready)
        .collect()
        .await;
    report("intake creates", through, started.elapsed());
    Ok(())
}
