//! mock-api2: the seed's flaky "API 2" (see the library's documentation).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use mock_api2::auth::{OAuth2Client, Required};
use mock_api2::tls::{self, TlsListener};
use mock_api2::verify::Signatures;
use mock_api2::{Api2, Knobs};
use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(ValueEnum, Clone, Copy, Debug, Default)]
enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A flaky downstream API with a failure switch, for demos and tests.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Start in failure mode (every call fails until toggled).
    #[arg(long)]
    fail: bool,
    /// Fail this many calls first, then behave as --fail says.
    #[arg(long, default_value_t = 0)]
    fail_first: u32,
    /// Status code of a failing answer.
    #[arg(long, default_value_t = 503, value_parser = clap::value_parser!(u16).range(100..=599))]
    fail_status: u16,
    /// Send `Retry-After: SECONDS` with failing answers.
    #[arg(long, value_name = "SECONDS")]
    retry_after: Option<u64>,
    /// Wait this long before answering any call.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_ms: u64,
    /// Flap: alternate windows of MS milliseconds, healthy then failing.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    flap_ms: u64,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Require client certificates that chain to this PEM CA (mTLS).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// Answer 401 to calls without `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN", group = "credential")]
    bearer_token: Option<String>,
    /// Answer 401 to calls without these basic-auth credentials.
    #[arg(long, value_name = "USER:PASSWORD", group = "credential")]
    basic_auth: Option<String>,
    /// Issue OAuth2 tokens to this client at /oauth2/token, and answer 401
    /// to calls without a valid one.
    #[arg(long, value_name = "ID:SECRET", group = "credential")]
    oauth2_client: Option<String>,
    /// Answer 401 to calls without `Authorization: Bearer <JWT>` whose
    /// `aud` names AUDIENCE and whose `exp` has not passed (a Kubernetes
    /// ServiceAccount token, say; its signature is not checked here).
    #[arg(long, value_name = "AUDIENCE", group = "credential")]
    jwt_audience: Option<String>,
    /// Answer 401 to calls without a valid Standard Webhooks `v1`
    /// signature by one of these `whsec_` keys (whitespace-separated), with
    /// a timestamp within five minutes. Also read from the environment.
    #[arg(
        long,
        value_name = "KEYS",
        env = "MOCK_API2_STANDARD_WEBHOOKS_SECRET",
        hide_env_values = true
    )]
    standard_webhooks_secret: Option<String>,
    /// Lifetime of the OAuth2 tokens issued.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    oauth2_token_seconds: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

impl Args {
    /// The credential calls must carry.
    fn required(&self) -> Result<Required, String> {
        let pair = |flag: &str, value: &str| {
            value
                .split_once(':')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| format!("--{flag} takes A:B"))
        };
        if let Some(audience) = &self.jwt_audience {
            return Ok(Required::Audience(audience.clone()));
        }
        Ok(match (&self.bearer_token, &self.basic_auth, &self.oauth2_client) {
            (Some(token), _, _) => Required::Bearer(token.clone()),
            (_, Some(basic), _) => {
                let (username, password) = pair("basic-auth", basic)?;
                Required::Basic { username, password }
            }
            (_, _, Some(client)) => {
                let (id, secret) = pair("oauth2-client", client)?;
                Required::OAuth2(OAuth2Client {
                    id,
                    secret,
                    token_seconds: self.oauth2_token_seconds,
                })
            }
            _ => Required::Nothing,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let knobs = Knobs {
        fail: args.fail,
        fail_first: args.fail_first,
        fail_status: args.fail_status,
        retry_after_seconds: args.retry_after,
        latency_ms: args.latency_ms,
        flap_ms: args.flap_ms,
    };
    let fail = |message: String| {
        eprintln!("mock-api2: {message}");
        ExitCode::FAILURE
    };
    let required = match args.required() {
        Ok(required) => required,
        Err(message) => return fail(message),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match tls::server_config(cert, key, args.client_ca.as_deref()) {
            Ok(config) => Some(config),
            Err(e) => return fail(e.to_string()),
        },
        _ => None,
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => return fail(format!("cannot listen on {}: {e}", args.listen)),
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The first stdout line tells scripts and tests the port that was picked.
    println!("mock-api2 listening on {scheme}://{addr} (fail={})", knobs.fail);
    let _ = std::io::stdout().flush();
    let mut api = Api2::requiring(knobs, required);
    if let Some(keys) = &args.standard_webhooks_secret {
        match Signatures::parse(keys) {
            Ok(signatures) => api = api.verifying(signatures),
            Err(e) => return fail(format!("--standard-webhooks-secret: {e}")),
        }
    }
    let router = api.router();
    let served = match tls {
        Some(config) => {
            axum::serve(TlsListener::new(listener, config), router)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return ctrl_c.await.unwrap_or_default(),
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
}
