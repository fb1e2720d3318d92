//! pendingjob-operator: `run` (the default) reconciles PendingJobs; `crd`
//! prints the CustomResourceDefinition.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pendingjob_operator::controller::{self, Settings};
use pendingjob_operator::crd;
use pendingjob_operator::dispatch::Dispatcher;
use pendingjob_operator::telemetry::{self, LogFormat};

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
    Run(RunArgs),
    /// Print the PendingJob CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Only watch PendingJobs in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Most calls to targets in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_dispatches: u16,
    /// Log format.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => print_crd(),
        Some(Command::Run(args)) => run(args).await,
        None => run(cli.run).await,
    }
}

fn print_crd() -> ExitCode {
    match crd::crd_yaml() {
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
    telemetry::init(args.log_format);
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot configure a Kubernetes client (KUBECONFIG or in-cluster)");
            return ExitCode::FAILURE;
        }
    };
    let dispatcher = match Dispatcher::new() {
        Ok(dispatcher) => dispatcher,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let settings = Settings {
        namespace: args.namespace,
        max_concurrent_dispatches: args.max_concurrent_dispatches,
    };
    match controller::run(client, dispatcher, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "controller failed");
            ExitCode::FAILURE
        }
    }
}
