//! pendingjob-intake: the seed's API 1 over plain HTTP (see
//! `pendingjob_operator::intake`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pendingjob_operator::intake::{Intake, Seed};
use pendingjob_operator::observe::logging::{self, LogFormat};

/// Stores PendingJobs posted over HTTP, for callers with a Kubernetes token.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (HTTP/1.1 and h2c); port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Namespace of the jobs `POST /api1/process` creates.
    #[arg(long, requires = "seed_destination")]
    seed_namespace: Option<String>,
    /// Destination of the jobs `POST /api1/process` creates.
    #[arg(long, requires = "seed_namespace")]
    seed_destination: Option<String>,
    /// The audience callers' tokens must be minted for
    /// (`kubectl create token SERVICE_ACCOUNT --audience pendingjob-intake`);
    /// a token for the API server is refused.
    #[arg(long, default_value = "pendingjob-intake")]
    token_audience: String,
    /// The longest any Kubernetes API request may take.
    #[arg(long, default_value_t = 10)]
    api_timeout_seconds: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_format);
    let fail = |message: String| {
        eprintln!("pendingjob-intake: {message}");
        ExitCode::FAILURE
    };
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        return fail("installing the TLS provider".into());
    }
    let mut config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(e) => return fail(format!("no Kubernetes configuration: {e}")),
    };
    let timeout = Duration::from_secs(args.api_timeout_seconds);
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    let client = match kube::Client::try_from(config) {
        Ok(client) => client,
        Err(e) => return fail(format!("building the Kubernetes client: {e}")),
    };
    let seed = args
        .seed_namespace
        .zip(args.seed_destination)
        .map(|(namespace, destination)| Seed { namespace, destination });
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => return fail(format!("cannot listen on {}: {e}", args.listen)),
    };
    let address = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%address, "intake listening");
    match axum::serve(listener, Intake::new(client, seed, args.token_audience).router())
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return tokio::signal::ctrl_c().await.unwrap_or_default(),
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
