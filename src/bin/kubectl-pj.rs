//! `kubectl pj`: the pendingjob-operator kubectl plugin. On `PATH` as
//! `kubectl-pj`, kubectl runs it for `kubectl pj …`. It parses the flags,
//! builds a client from the user's kubeconfig and context, and prints what
//! the library's plugin module returns.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use pendingjob_operator::plugin::commands::{self, Error, Object, Scope, Summary};

/// Work with PendingJobs and Destinations: why a job waits, redrive, suspend, stats.
#[derive(Parser, Debug)]
#[command(name = "kubectl pj", version)]
struct Cli {
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The namespace (default: the context's, else "default").
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show, in one screen, what a job waits for, its last attempt and what happens next.
    Why {
        /// The job.
        name: String,
    },
    /// Redrive jobs: re-run Failed ones, hasten waiting ones (the pendingjob.dev/retry annotation).
    Retry {
        /// The jobs.
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        names: Vec<String>,
        /// Every Failed job in the namespace (or, with -A, in all).
        #[arg(long)]
        failed: bool,
        /// With --failed: in every namespace.
        #[arg(short = 'A', long, requires = "failed")]
        all_namespaces: bool,
    },
    /// Suspend jobs or Destinations (NAME, pj/NAME or destination/NAME).
    Suspend {
        /// What to suspend.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Resume jobs or Destinations (NAME, pj/NAME or destination/NAME).
    Resume {
        /// What to resume.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Count jobs by phase and by Destination, and show the oldest due job.
    Stats {
        /// In every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let (client, context_namespace) = connect(cli.kubeconfig.as_deref(), cli.context.clone()).await?;
    let namespace = cli.namespace.unwrap_or(context_namespace);
    let now = jiff::Timestamp::now();
    let scope = |all: bool| {
        if all {
            Scope::All
        } else {
            Scope::Namespace(namespace.clone())
        }
    };
    let summary = match cli.command {
        Command::Why { name } => {
            print!("{}", commands::why(&client, &namespace, &name, now).await?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Stats { all_namespaces } => {
            print!("{}", commands::stats(&client, &scope(all_namespaces), now).await?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Retry {
            failed: true,
            all_namespaces,
            ..
        } => commands::retry_failed(&client, &scope(all_namespaces), now).await?,
        Command::Retry { names, .. } => commands::retry(&client, &namespace, &names, now).await,
        Command::Suspend { names } => commands::set_suspend(&client, &namespace, &objects(&names)?, true).await,
        Command::Resume { names } => commands::set_suspend(&client, &namespace, &objects(&names)?, false).await,
    };
    Ok(report(&summary))
}

fn objects(names: &[String]) -> Result<Vec<Object>, Error> {
    names.iter().map(|n| Object::parse(n)).collect()
}

/// Prints each object's line (refusals on stderr) and the summary; fails if any was refused.
fn report(summary: &Summary) -> ExitCode {
    for line in &summary.lines {
        if line.starts_with("Error from server") || line.starts_with("error:") || line.starts_with("Unable to connect")
        {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    println!("{} done, {} refused", summary.done, summary.failed);
    if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A client for the kubeconfig's `context` (or its current one), and that
/// context's namespace.
async fn connect(path: Option<&std::path::Path>, context: Option<String>) -> Result<(Client, String), Error> {
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    let config = match path {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::Usage(e.to_string()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| Error::Usage(format!("reading the kubeconfig: {e}")))?;
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| Error::Usage(format!("building the client: {e}")))?;
    Ok((client, namespace))
}
