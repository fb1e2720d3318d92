//! The start-up reference for `make bench`'s scale section: how long a bare
//! paged list of a namespace's PendingJobs takes on this API server, with
//! the operator's page size ([`listing::PAGE_SIZE`]), each page parsed into
//! jobs as the operator's watcher parses them. Nothing else is done with them.
//!
//! Usage: `cargo run --release --example list_rate -- NAMESPACE`
//! Prints `listed N jobs in S s`.

use std::time::Instant;

use kube::api::ListParams;
use kube::{Api, Client};
use pendingjob_operator::api::PendingJob;
use pendingjob_operator::store::listing;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let namespace = std::env::args().nth(1).ok_or("usage: list_rate NAMESPACE")?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| "installing the rustls provider")?;
    let api: Api<PendingJob> = Api::namespaced(Client::try_default().await?, &namespace);
    let started = Instant::now();
    let (mut listed, mut token) = (0usize, None::<String>);
    loop {
        let mut params = ListParams::default().limit(listing::PAGE_SIZE);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = api.list(&params).await?;
        listed += page.items.len();
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    println!("listed {listed} jobs in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}
