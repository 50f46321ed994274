//! `sst-bench`: measures an SST store against plain inserts of the same JSON into a bare
//! table of the same database, in the same run; and (`pipeline`, SQLite) the node's
//! throughput against this machine's own limits ([`pipeline`]).
//!
//! ```text
//! sst-bench store --backend sqlite [--count N]
//! sst-bench pipeline [--events N] [--rounds N]
//! sst-bench state-size [--rounds N] [--scan-states N] [--backend sqlite|postgres|all]
//! ```
//!
//! Each backend is one module behind a Cargo feature, with two functions: `open_store`
//! (a migrated store in a fresh namespace) and `plain_insert` (the baseline: insert the same
//! JSON documents into a bare table with the same durability settings, in batches, and
//! return the elapsed time). Adding a backend = a module + one line in [`open_store`] and
//! [`plain_insert`].
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sst_core::{CommitBatch, CommitItem, Store};

#[cfg(feature = "mongo")]
mod mongo;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "sqlite")]
mod pipeline;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
mod state_size;
mod workload;

/// Per-run namespace handed to a backend: a unique id (schema/database/prefix names) and a
/// scratch directory (files), removed when the run ends.
pub(crate) struct Run {
    /// Unique id of this run, usable in identifiers (`[a-z0-9_]`).
    pub(crate) id: String,
    /// Scratch directory of this run.
    pub(crate) dir: std::path::PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Backends compiled into this binary.
fn compiled_backends() -> Vec<&'static str> {
    [
        #[cfg(feature = "sqlite")]
        "sqlite",
        #[cfg(feature = "postgres")]
        "postgres",
        #[cfg(feature = "mysql")]
        "mysql",
        #[cfg(feature = "mongo")]
        "mongo",
    ]
    .to_vec()
}

/// Opens a migrated store of `backend` in the run's namespace.
async fn open_store(backend: &str, run: &Run) -> anyhow::Result<Arc<dyn Store>> {
    match backend {
        #[cfg(feature = "sqlite")]
        "sqlite" => sqlite::open_store(run).await,
        #[cfg(feature = "postgres")]
        "postgres" => postgres::open_store(run).await,
        #[cfg(feature = "mysql")]
        "mysql" => mysql::open_store(run).await,
        #[cfg(feature = "mongo")]
        "mongo" => mongo::open_store(run).await,
        other => bail!(
            "backend `{other}` is not compiled in (compiled: {:?}); build with --features {other}",
            compiled_backends()
        ),
    }
}

/// Inserts `docs` into a bare table of `backend`, `batch` rows per transaction; returns the
/// elapsed time.
async fn plain_insert(
    backend: &str,
    run: &Run,
    docs: &[String],
    batch: usize,
) -> anyhow::Result<Duration> {
    match backend {
        #[cfg(feature = "sqlite")]
        "sqlite" => sqlite::plain_insert(run, docs, batch).await,
        #[cfg(feature = "postgres")]
        "postgres" => postgres::plain_insert(run, docs, batch).await,
        #[cfg(feature = "mysql")]
        "mysql" => mysql::plain_insert(run, docs, batch).await,
        #[cfg(feature = "mongo")]
        "mongo" => mongo::plain_insert(run, docs, batch).await,
        other => bail!("backend `{other}` is not compiled in"),
    }
}

/// Removes what the run created on a database server (schemas, databases); file-based
/// backends clean up with the run's scratch directory.
async fn cleanup(backend: &str, run: &Run) -> anyhow::Result<()> {
    let _ = run;
    match backend {
        #[cfg(feature = "postgres")]
        "postgres" => postgres::cleanup(run).await,
        #[cfg(feature = "mysql")]
        "mysql" => mysql::cleanup(run).await,
        #[cfg(feature = "mongo")]
        "mongo" => mongo::cleanup(run).await,
        _ => Ok(()),
    }
}

struct Args {
    backend: String,
    count: usize,
}

/// What to run.
enum Command {
    /// `store`: the store against plain inserts.
    Store(Args),
    /// `pipeline`: the node against the machine's limits.
    #[cfg(feature = "sqlite")]
    Pipeline(pipeline::Options),
    /// `state-size`: large-state updates and scans against plain tables (issue 13).
    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    StateSize(state_size::Options),
    /// One measurement of `state-size`, in a process of its own.
    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    StateSizeChild(state_size::ChildTask),
}

fn usage() -> String {
    #[allow(unused_mut)] // without SQLite there is no pipeline line
    let mut usage = format!(
        "usage: sst-bench store --backend <{}> [--count N]",
        compiled_backends().join("|")
    );
    #[cfg(feature = "sqlite")]
    usage.push_str(&format!("\n       {}", pipeline::USAGE));
    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    usage.push_str(&format!("\n       {}", state_size::USAGE));
    usage
}

fn parse_args() -> anyhow::Result<Command> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("store") => {}
        #[cfg(feature = "sqlite")]
        Some("pipeline") => return Ok(Command::Pipeline(pipeline::Options::parse(args)?)),
        #[cfg(all(feature = "sqlite", feature = "postgres"))]
        Some("state-size") => return Ok(Command::StateSize(state_size::Options::parse(args)?)),
        #[cfg(all(feature = "sqlite", feature = "postgres"))]
        Some(state_size::CHILD_COMMAND) => {
            return Ok(Command::StateSizeChild(state_size::ChildTask::parse(args)?))
        }
        Some("help" | "--help" | "-h") | None => {
            println!("{}", usage());
            std::process::exit(0);
        }
        Some(other) => bail!("unknown command `{other}`\n{}", usage()),
    }
    let mut backend = None;
    let mut count = 2000;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--backend" => backend = Some(args.next().context("--backend needs a value")?),
            "--count" => {
                count = args
                    .next()
                    .context("--count needs a value")?
                    .parse()
                    .context("--count must be a positive integer")?;
            }
            other => bail!("unknown argument `{other}`\n{}", usage()),
        }
    }
    let backend = backend.with_context(usage)?;
    if count < 100 || count % 100 != 0 {
        bail!("--count must be a positive multiple of 100 (got {count})");
    }
    Ok(Command::Store(Args { backend, count }))
}

/// One measured line of the report.
struct Line {
    batch: usize,
    store: Duration,
    plain: Duration,
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

async fn commit_all(
    store: &dyn Store,
    items: Vec<CommitItem>,
    batch: usize,
) -> anyhow::Result<Duration> {
    let mut batches = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        batches.push(CommitBatch::new(items.by_ref().take(batch).collect()));
    }
    let start = Instant::now();
    for b in batches {
        store.commit(b).await?;
    }
    Ok(start.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = parse_args()?;
    let run_id = format!("sstbench_{}", uuid::Uuid::new_v4().simple());
    let dir = std::env::temp_dir().join(&run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let run = Run { id: run_id, dir };
    match command {
        Command::Store(args) => store(args, run).await,
        #[cfg(feature = "sqlite")]
        Command::Pipeline(options) => pipeline::run(options, &run).await,
        #[cfg(all(feature = "sqlite", feature = "postgres"))]
        Command::StateSize(options) => state_size::run(options, &run).await,
        #[cfg(all(feature = "sqlite", feature = "postgres"))]
        Command::StateSizeChild(task) => state_size::child(task, &run).await,
    }
}

/// `store`: commits through the store and plain inserts, batch 1 and 100.
async fn store(args: Args, run: Run) -> anyhow::Result<()> {
    let store = open_store(&args.backend, &run).await?;
    let mut lines = Vec::new();
    let mut doc_bytes = 0;
    for (round, batch) in [1usize, 100].into_iter().enumerate() {
        let w = workload::states(args.count, round as u64)?;
        doc_bytes = w.doc_bytes;
        let n = w.items.len();
        let store_time = commit_all(store.as_ref(), w.items, batch).await?;
        let stored = store.state_ids().await?.len();
        anyhow::ensure!(
            stored == n * (round + 1),
            "store holds {stored} states after committing {} ",
            n * (round + 1)
        );
        let plain_time = plain_insert(&args.backend, &run, &w.docs, batch).await?;
        lines.push(Line {
            batch,
            store: store_time,
            plain: plain_time,
        });
    }

    cleanup(&args.backend, &run).await?;

    println!(
        "sst-bench store --backend {} (run {}): {} states per batch size, data column ≈ {} bytes each",
        args.backend, run.id, args.count, doc_bytes
    );
    println!(
        "{:>5} | {:>15} | {:>14} | {:>15} | {:>14} | {:>11}",
        "batch",
        "store commits/s",
        "store states/s",
        "plain commits/s",
        "plain rows/s",
        "store/plain"
    );
    println!("{}", "-".repeat(5 + 15 + 14 + 15 + 14 + 11 + 15));
    for l in &lines {
        let commits = args.count / l.batch;
        let (s, p) = (rate(args.count, l.store), rate(args.count, l.plain));
        println!(
            "{:>5} | {:>15.1} | {:>14.1} | {:>15.1} | {:>14.1} | {:>11.3}",
            l.batch,
            rate(commits, l.store),
            s,
            rate(commits, l.plain),
            p,
            s / p
        );
    }
    Ok(())
}
