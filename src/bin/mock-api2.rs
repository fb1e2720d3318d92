//! mock-api2: the seed's flaky "API 2" (see `pendingjob_operator::mock_api2`).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use pendingjob_operator::mock_api2::{Api2, Knobs};
use pendingjob_operator::telemetry::{self, LogFormat};

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
    /// Log format.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let knobs = Knobs {
        fail: args.fail,
        fail_first: args.fail_first,
        fail_status: args.fail_status,
        retry_after_seconds: args.retry_after,
        latency_ms: args.latency_ms,
        flap_ms: args.flap_ms,
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("mock-api2: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    // The first stdout line tells scripts and tests the port that was picked.
    println!("mock-api2 listening on http://{addr} (fail={})", knobs.fail);
    let _ = std::io::stdout().flush();
    match axum::serve(listener, Api2::new(knobs).router())
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mock-api2: {e}");
            ExitCode::FAILURE
        }
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
