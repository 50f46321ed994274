//! The `sst` command line: `demo` (the real-estate deal on four nodes, in one process or as
//! four node processes), `verify` (re-check node databases of any backend and compare their
//! roots), `bench` (pipeline throughput, in one process or networked; the two sync protocols side by side), `network up|down|status`
//! (a local network of node processes) and the node daemon with its client commands.
#![forbid(unsafe_code)]

mod bench;
mod cluster;
mod daemon;
mod demo;
mod local_network;
mod store_url;
mod verify;

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::{Parser, Subcommand};

use crate::store_url::StoreUrl;

/// The adapters compiled into this binary, shown under every `--help`.
static ADAPTERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "Store adapters in this build: {} (others: rebuild with `--features postgres,mysql,mongo`)",
        sst::adapters().join(", ")
    )
});

/// `verify --help` text after the options: the URL forms and the adapters of this build.
static VERIFY_AFTER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}\n\nNothing is changed: SQLite files are opened read-only, nothing is migrated or \
         created on a server.\nExit status: 0 clean and consistent, 1 problems found or roots \
         diverge, 2 error.\n\n{}",
        store_url::FORMS,
        *ADAPTERS
    )
});

/// SST — Synchronized Systems Technology.
#[derive(Debug, Parser)]
#[command(name = "sst", version, arg_required_else_help = true, after_help = ADAPTERS.as_str())]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the real-estate deal on four SQLite nodes.
    #[command(after_help = ADAPTERS.as_str())]
    Demo {
        /// Directory for the four node databases (default: a new temporary directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Run each node as its own `sst node run` process (as `sst network up` does) and
        /// the deal through their client APIs.
        #[arg(long)]
        network: bool,
    },
    /// Re-check hashes and signatures of node databases and compare their roots.
    ///
    /// Verifies every state version's section hashes, root and history chain and every
    /// applied event's strict signature in each database, then compares the roots of the
    /// states held by more than one of them (at the highest version all holders have) and
    /// says how many were compared.
    #[command(after_help = VERIFY_AFTER.as_str())]
    Verify {
        /// A node database: a SQLite file or a store URL (see below). Repeat for each database.
        #[arg(long = "db", value_name = "URL", required = true, value_parser = StoreUrl::parse)]
        dbs: Vec<StoreUrl>,
        /// The network's node registry: a JSON file `{"node-id": "<hex Ed25519 public key>",
        /// …}` from the network's configuration (`sst demo` writes `registry.json` in its
        /// directory). With it, every event's sequencing receipt and every checkpoint
        /// signature is checked; without it they cannot be (a database cannot vouch for
        /// itself), and the output says so.
        #[arg(long, value_name = "FILE")]
        registry: Option<PathBuf>,
        /// The node that owns each `--db`, in the same order (its checkpoints are compared with
        /// its log, so a log cut below a checkpoint is found).
        #[arg(long = "node", value_name = "ID")]
        nodes: Vec<String>,
    },
    /// Measure events/s through the pipeline on four SQLite nodes.
    #[command(after_help = ADAPTERS.as_str())]
    Bench {
        /// How many events the home node sequences.
        #[arg(long, value_name = "N", default_value_t = 2000)]
        events: usize,
        /// Directory for the node databases (default: a new temporary directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Instead: a home node and two replicas as separate processes on loopback against
        /// the same three nodes in one process, in the same run, and the ratio.
        #[arg(long)]
        network: bool,
        /// Instead: the home-node and the endorsed sync protocols on the same three node
        /// processes in one run — events/s and latency (p50/p99) of each, and the ratio.
        #[arg(long, conflicts_with = "network")]
        protocols: bool,
        /// With --protocols: how many states the changes are spread over (changes of one
        /// state on the endorsed protocol wait for each other's proposal).
        #[arg(long, value_name = "N", default_value_t = 8, requires = "protocols")]
        states: usize,
    },
    /// Start and stop a local network of node processes (like Fabric's test-network).
    #[command(subcommand)]
    Network(local_network::NetworkCommand),
    #[command(flatten)]
    Daemon(daemon::DaemonCommand),
}

fn work_dir(arg: Option<PathBuf>, name: &str) -> PathBuf {
    arg.unwrap_or_else(|| std::env::temp_dir().join(format!("sst-{name}-{}", std::process::id())))
}

#[tokio::main]
async fn main() {
    // clap prints help/version (exit 0) and usage errors (exit 2) itself.
    let cli = Cli::parse();
    init_logs();
    match run(cli.command).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs one command; `Ok(false)` when it found problems (exit status 1).
/// The engine's `tracing` logs (refused changes, failed sends, retries) on stderr, at the
/// level `SST_LOG` names (`error`, `warn` — the default —, `info`, `debug`, `trace`).
fn init_logs() {
    let level = std::env::var("SST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Demo {
            dir,
            network: false,
        } => demo::run(&work_dir(dir, "demo")).await.map(|()| true),
        Command::Demo { dir, network: true } => demo::run_network(&work_dir(dir, "demo-network"))
            .await
            .map(|()| true),
        Command::Verify {
            dbs,
            registry,
            nodes,
        } => verify::run(&dbs, registry.as_deref(), &nodes).await,
        Command::Bench {
            events,
            dir,
            protocols: true,
            states,
            ..
        } => local_network::bench_protocols::run(&work_dir(dir, "bench-protocols"), events, states)
            .await
            .map(|()| true),
        Command::Bench {
            events,
            dir,
            network: false,
            ..
        } => bench::run(&work_dir(dir, "bench"), events)
            .await
            .map(|()| true),
        Command::Bench {
            events,
            dir,
            network: true,
            ..
        } => local_network::bench::run(&work_dir(dir, "bench-network"), events)
            .await
            .map(|()| true),
        Command::Network(command) => local_network::run(command).await,
        Command::Daemon(command) => daemon::run_command(command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
