//! pendingjob-operator: `run` (the default) reconciles PendingJobs; `crd`
//! prints the CustomResourceDefinition.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use ipnet::IpNet;
use pendingjob_operator::api;
use pendingjob_operator::delivery::clients::HttpClients;
use pendingjob_operator::delivery::egress::{self, EgressPolicy};
use pendingjob_operator::leadership::campaign::LeaseSettings;
use pendingjob_operator::leadership::owner;
use pendingjob_operator::observe::admin::Admin;
use pendingjob_operator::observe::logging::{LogFormat, Telemetry};
use pendingjob_operator::operator::clients::Clients;
use pendingjob_operator::operator::{self, Settings};
use pendingjob_operator::store::listing::InitialList;
use tokio::sync::{oneshot, watch};

/// Reliable background calls to flaky downstream APIs, as PendingJob resources.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Reconcile PendingJobs (the default).
    Run(Box<RunArgs>),
    /// Print a CustomResourceDefinition as YAML.
    Crd {
        /// Which one.
        #[arg(value_enum, default_value_t = CrdKind::Pendingjob)]
        kind: CrdKind,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Only watch PendingJobs in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Most calls to targets in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_dispatches: u16,
    /// Most calls in flight at once to one target (scheme, host and port),
    /// so a slow target holds only its share (default: a quarter of
    /// --max-concurrent-dispatches, at least 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_per_target: Option<u16>,
    /// Most calls in flight at once for one namespace, even while it is the
    /// only one calling, so that another namespace always finds a slot free;
    /// a Destination's maxConcurrency cannot go past it. Freed slots go round
    /// the waiting namespaces in turn (default: half of
    /// --max-concurrent-dispatches, at least 1; all of it with --namespace,
    /// where there is no other namespace to keep slots for).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_per_namespace: Option<u16>,
    /// Target address ranges (CIDRs, comma-separated) the operator never
    /// connects to, checked on the resolved address at connect time. The
    /// default is link-local only, so that targets on loopback work for
    /// development; an empty value denies no range. The unspecified addresses
    /// (0.0.0.0/8 and ::), which reach loopback, are denied whatever this
    /// says. deploy/ ships a strict list: 127.0.0.0/8,::1/128,169.254.0.0/16,
    /// fe80::/10,0.0.0.0/8,::/128,100.100.100.200/32,fd00:ec2::254/128.
    #[arg(long, value_delimiter = ',', default_value = egress::DEFAULT_DENIED)]
    deny_cidrs: Vec<String>,
    /// Most MiB of payloads and headers kept in memory, for jobs with calls
    /// still to make; a job whose payload and headers do not fit is read
    /// before its call.
    #[arg(long, default_value_t = 32)]
    payload_cache_mib: usize,
    /// How the cache is filled at start: a paged list, or a streaming list
    /// (Kubernetes 1.32 and later, with the `WatchList` feature gate on).
    #[arg(long, value_enum, default_value_t)]
    initial_list: InitialList,
    /// Delete finished jobs that set no `spec.ttlSecondsAfterFinished` this
    /// many seconds after they finish (default: keep them).
    #[arg(long, value_name = "SECONDS")]
    ttl_seconds_after_finished: Option<u64>,
    /// Log format.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
    /// Export spans with OTLP over HTTP to this collector (a base URL such
    /// as http://otel-collector.observability:4318; spans go to /v1/traces
    /// under it). Off when unset; the other OTEL_* variables apply.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Address of the /healthz, /readyz and /metrics server; port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// After SIGTERM, seconds that in-flight attempts get to finish and be recorded.
    #[arg(long, default_value_t = 25)]
    shutdown_grace_seconds: u64,
    /// Elect a leader through a Lease, so that several replicas are safe.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "pendingjob-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (default: --namespace, else "default").
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This instance's identity in the Lease and in Events (default: hostname and PID).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds that followers wait, after the Lease last changed, before taking it.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_duration_seconds: u64,
    /// Seconds a leader keeps dispatching without a successful renewal (less
    /// than the lease duration, so it stops before anyone else can lead).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_renew_deadline_seconds: u64,
    /// Seconds between tries to acquire or renew the Lease (less than the renew deadline).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_retry_period_seconds: u64,
    /// Seconds any single Kubernetes API request may take (watches excepted,
    /// which are bounded by their own idle timeout).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    api_timeout_seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd { kind }) => print_crd(kind),
        Some(Command::Run(args)) => run(*args).await,
        None => run(cli.run).await,
    }
}

/// The resources whose CRD `crd` prints.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum CrdKind {
    /// PendingJob (crds/pendingjob.yaml).
    Pendingjob,
    /// Destination (crds/destination.yaml).
    Destination,
}

fn print_crd(kind: CrdKind) -> ExitCode {
    let yaml = match kind {
        CrdKind::Pendingjob => api::crd_yaml(),
        CrdKind::Destination => api::destination_crd_yaml(),
    };
    match yaml {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pendingjob-operator: rendering the CRD: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> ExitCode {
    // One TLS provider for the Kubernetes client, calls to targets and the
    // span exporter, chosen here rather than by whichever client is built first.
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        eprintln!("pendingjob-operator: a rustls crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    let telemetry = match Telemetry::start(args.log_format, "pendingjob-operator", args.otlp_endpoint.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            tracing::error!(%error, "cannot export spans (--otlp-endpoint, OTEL_EXPORTER_OTLP_*)");
            return ExitCode::FAILURE;
        }
    };
    if !(args.lease_retry_period_seconds < args.lease_renew_deadline_seconds
        && args.lease_renew_deadline_seconds < args.lease_duration_seconds)
    {
        tracing::error!(
            "the Lease settings must satisfy retry period < renew deadline < duration \
             (--lease-retry-period-seconds, --lease-renew-deadline-seconds, --lease-duration-seconds)"
        );
        return ExitCode::FAILURE;
    }
    let config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "cannot configure a Kubernetes client (KUBECONFIG or in-cluster)");
            return ExitCode::FAILURE;
        }
    };
    let clients = match Clients::new(config, Duration::from_secs(args.api_timeout_seconds)) {
        Ok(clients) => clients,
        Err(e) => {
            tracing::error!(error = %e, "cannot build a Kubernetes client");
            return ExitCode::FAILURE;
        }
    };
    let denied: Result<Vec<IpNet>, _> = args
        .deny_cidrs
        .iter()
        .filter(|cidr| !cidr.is_empty())
        .map(|cidr| cidr.parse::<IpNet>().map_err(|e| format!("--deny-cidrs {cidr:?}: {e}")))
        .collect();
    let denied = match denied {
        Ok(denied) => denied,
        Err(e) => {
            tracing::error!(error = %e, "invalid egress policy");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(denied = ?denied.iter().map(ToString::to_string).collect::<Vec<_>>(), "egress policy");
    let http = match HttpClients::new(EgressPolicy::new(denied)) {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.admin_listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, address = %args.admin_listen, "cannot listen for /healthz, /readyz and /metrics");
            return ExitCode::FAILURE;
        }
    };
    let admin = Admin::default();
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let address = listener
        .local_addr()
        .map_or_else(|_| args.admin_listen.to_string(), |a| a.to_string());
    tracing::info!(%address, "admin server listening");
    let serve = axum::serve(listener, admin.clone().router()).with_graceful_shutdown(async move {
        let _ = admin_stopped.await;
    });
    let server = tokio::spawn(async move { serve.await });

    let identity = args.identity.unwrap_or_else(default_identity);
    let lease = args.leader_election.then(|| {
        let namespace = args
            .lease_namespace
            .or_else(|| args.namespace.clone())
            .unwrap_or_else(|| "default".to_owned());
        LeaseSettings {
            name: args.lease_name,
            owner: owner::from_mounted_token(&namespace),
            namespace,
            identity: identity.clone(),
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_deadline: Duration::from_secs(args.lease_renew_deadline_seconds),
            retry_period: Duration::from_secs(args.lease_retry_period_seconds),
        }
    });
    // One namespace watched: no other to keep slots free for.
    let max_concurrent_per_namespace = args
        .max_concurrent_per_namespace
        .unwrap_or(if args.namespace.is_some() {
            args.max_concurrent_dispatches
        } else {
            (args.max_concurrent_dispatches / 2).max(1)
        });
    let settings = Settings {
        namespace: args.namespace,
        max_concurrent_dispatches: args.max_concurrent_dispatches,
        max_concurrent_per_target: args
            .max_concurrent_per_target
            .unwrap_or((args.max_concurrent_dispatches / 4).max(1)),
        max_concurrent_per_namespace,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
        lease,
        identity,
        payload_cache_bytes: args.payload_cache_mib.saturating_mul(1 << 20),
        initial_list: args.initial_list,
        default_ttl: args.ttl_seconds_after_finished.map(Duration::from_secs),
    };
    operator::run(clients, http, settings, admin, shutdown_on_signal()).await;
    let _ = stop_admin.send(());
    let _ = server.await;
    telemetry.shutdown().await;
    ExitCode::SUCCESS
}

/// Turns true on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
        tracing::info!("shutdown signal received");
        let _ = sender.send(true);
        // Keep the sender, so receivers see `true` rather than a closed channel.
        std::future::pending::<()>().await;
    });
    receiver
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pendingjob-operator".to_owned());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn help_names_the_strict_egress_list_that_deploy_ships() {
        let help = Cli::command().render_long_help().to_string();
        let unwrapped: String = help.split_whitespace().collect();
        assert!(unwrapped.contains(egress::STRICT_DENIED), "{help}");
        assert!(help.contains("are denied whatever this says"), "{help}");
    }
}
