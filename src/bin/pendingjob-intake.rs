//! pendingjob-intake: the seed's API 1 over plain HTTP (see
//! `pendingjob_operator::intake`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pendingjob_operator::intake::certificate::Certificate;
use pendingjob_operator::intake::serve::{self, Limits};
use pendingjob_operator::intake::{Intake, Seed};
use pendingjob_operator::observe::logging::{LogFormat, Telemetry};

/// Stores PendingJobs posted over HTTP, for callers with a Kubernetes token.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (HTTP/1.1 and HTTP/2, cleartext or with
    /// --tls-cert); port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// PEM certificate chain to serve HTTPS with (for example tls.crt of a
    /// kubernetes.io/tls Secret); a renewed file is used within 10 s.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (tls.key).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds a request's headers (and a TLS handshake) may take to arrive.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_seconds: u64,
    /// Seconds an authenticated request's body may take to arrive; the body
    /// is read only once the caller is authenticated.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout_seconds: u64,
    /// Most connections open at once; one more is closed at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
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
    /// Export spans with OTLP over HTTP to this collector (a base URL such
    /// as http://otel-collector.observability:4318; spans go to /v1/traces
    /// under it). Off when unset; the other OTEL_* variables apply.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let fail = |message: String| {
        eprintln!("pendingjob-intake: {message}");
        ExitCode::FAILURE
    };
    // Before the span exporter's client is built: it needs the provider too.
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        return fail("installing the TLS provider".into());
    }
    let telemetry = match Telemetry::start(args.log_format, "pendingjob-intake", args.otlp_endpoint.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            tracing::error!(%error, "cannot export spans (--otlp-endpoint, OTEL_EXPORTER_OTLP_*)");
            return fail(error.to_string());
        }
    };
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
    let tls = match args.tls_cert.zip(args.tls_key) {
        None => None,
        Some((cert, key)) => match Certificate::load(&cert, &key).map(Certificate::server_config) {
            Ok(Ok(config)) => Some(config),
            Ok(Err(e)) => return fail(format!("the TLS configuration: {e}")),
            Err(e) => return fail(format!("the TLS certificate: {e}")),
        },
    };
    let address = listener.local_addr().unwrap_or(args.listen);
    let limits = Limits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout_seconds),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
    };
    tracing::info!(%address, tls = tls.is_some(), max_connections = limits.max_connections, "intake listening");
    let intake = Intake::new(
        client,
        seed,
        args.token_audience,
        Duration::from_secs(args.body_read_timeout_seconds),
    );
    serve::serve(listener, intake.router(), limits, tls, shutdown_signal()).await;
    telemetry.shutdown().await;
    ExitCode::SUCCESS
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
