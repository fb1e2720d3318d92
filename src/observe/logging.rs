//! Logging setup shared by the binaries, with the span exporter when
//! tracing is on ([`super::traces`]).
//!
//! Log lines within a job's span carry its `trace_id`, so a line leads to
//! its trace and a trace to its lines.

use std::io::IsTerminal;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::traces::{self, TraceError};

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging, and the span exporter while tracing is on.
pub struct Telemetry(Option<SdkTracerProvider>);

impl Telemetry {
    /// Starts logging in `format`, and exports the spans of `service` when
    /// `otlp_endpoint` or the standard variables say where
    /// ([`traces::endpoint`]).
    pub fn start(format: LogFormat, service: &'static str, otlp_endpoint: Option<&str>) -> Result<Self, TraceError> {
        let Some(endpoint) = traces::endpoint(otlp_endpoint, |name| std::env::var(name).ok()) else {
            init(format, None);
            return Ok(Self(None));
        };
        let provider = traces::provider(&endpoint, service);
        init(format, provider.as_ref().ok());
        let provider = provider?;
        tracing::info!(?endpoint, "exporting spans with OTLP");
        Ok(Self(Some(provider)))
    }

    /// Flushes the spans not yet exported, and stops exporting.
    pub async fn shutdown(self) {
        if let Some(provider) = self.0 {
            // Blocks until the batch is sent, or its export timeout.
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(error)) = flushed {
                tracing::warn!(%error, "flushing the last spans failed");
            }
        }
    }
}

/// Installs the global subscriber: log lines filtered by `RUST_LOG`
/// (default `info`), and, with `provider`, this crate's spans exported.
fn init(format: LogFormat, provider: Option<&SdkTracerProvider>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let spans = provider.map(traces::layer);
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(spans)
        .init();
}
