//! `sst-bench state-size`: what a one-field update of a large state costs through a node,
//! next to a plain `UPDATE` of the same JSON in the same run, and what a full scan of the
//! current-state table costs next to a plain table (issue 13: the "before" and "after"
//! figures of the storage layout).
//!
//! For SQLite (a file, WAL, `synchronous = FULL` as the node uses) and PostgreSQL (a database
//! of the run's own), in one run:
//! - for states of about 1 KB, 100 KB and 5 MB ([`payload`]: one large section holding a
//!   time series of integers, two small sections), one-field updates in a small section and
//!   inside the large one, as signed change events through an in-process home node on the
//!   backend's store, and the same field set by `UPDATE … SET data = json_set(…)`
//!   (`jsonb_set`) in a plain `(id, data)` table holding the same JSON: CPU time (this
//!   process, plus the PostgreSQL server processes serving the run), wall time, bytes written
//!   (SQLite: to storage by this process, WAL checkpoint included; PostgreSQL: WAL bytes) and
//!   database growth per update ([`update`]);
//! - the node process's peak resident memory during those updates (each state size in a
//!   fresh child process, its peak reset before each run of updates);
//! - a full-scan query over `--scan-states` states of about 1 KB written through the store,
//!   next to the same JSON in a plain table ([`scan`]).
//!
//! Each measurement runs in a child process (this binary, [`CHILD_COMMAND`]) that prints its
//! samples as one JSON line; this process prints the table ([`report`]): medians over the
//! rounds and medians of the same-round SST/plain ratios.

mod args;
mod db;
mod payload;
mod postgres;
mod probe;
mod report;
mod scan;
mod sqlite;
mod update;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

pub(crate) use args::{ChildTask, Options, CHILD_COMMAND, USAGE};
use args::{Pass, MEMORY_PASS_ENV};
use report::{Outcome, RESULT_MARKER};

/// Runs every measurement of `options` in child processes and prints the report.
///
/// # Errors
/// When any measurement failed (the others are still reported).
pub(crate) async fn run(options: Options, _run: &crate::Run) -> anyhow::Result<()> {
    let load_before = crate::pipeline::stats::load_average();
    let mut tasks = Vec::new();
    for &backend in &options.backends {
        for bytes in payload::SIZES {
            for pass in [Pass::Cost, Pass::Memory] {
                tasks.push(ChildTask::Updates {
                    backend,
                    bytes,
                    rounds: options.rounds,
                    pass,
                });
            }
        }
    }
    for &backend in &options.backends {
        tasks.push(ChildTask::Scan {
            backend,
            states: options.scan_states,
            rounds: options.rounds,
        });
    }
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        match tokio::task::block_in_place(|| run_child(task)) {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                println!("state-size error    {task:?}: {e:#}");
                failures.push(task);
            }
        }
    }
    println!(
        "state-size: {} rounds (medians; x = median of the same-round SST/plain ratios), \
         figures per update; cpu = this process + the PostgreSQL backends of the run's \
         database (from /proc), each side's closing WAL checkpoint included; written = SQLite: /proc/self/io write_bytes with the WAL \
         checkpoint, PostgreSQL: WAL bytes (whole server); growth = database size after a WAL \
         checkpoint; memory: a second process per state size, one update per run, glibc \
         returning freed blocks >= 128 KiB (MALLOC_MMAP_THRESHOLD_); peak = VmHWM of the whole \
         process (node + the benchmark's own copy of the state), reset before each update; \
         rise = peak - VmRSS before it; scan = fastest of 3 runs of each query per round",
        options.rounds,
    );
    print!("{}", report::render(&outcomes));
    let load = |l: Option<f64>| l.map_or_else(|| "n/a".to_owned(), |l| format!("{l:.2}"));
    println!(
        "state-size load average (1 min) at start {}, at end {}",
        load(load_before),
        load(crate::pipeline::stats::load_average())
    );
    if !failures.is_empty() {
        bail!("{} measurement(s) failed: {failures:?}", failures.len());
    }
    Ok(())
}

/// Runs `task` in a child process (this binary) and reads back its outcome.
fn run_child(task: ChildTask) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe().context("locating the sst-bench binary")?;
    let mut command = Command::new(&exe);
    if let ChildTask::Updates {
        pass: Pass::Memory, ..
    } = task
    {
        command.envs(MEMORY_PASS_ENV);
    }
    let mut child = command
        .arg(CHILD_COMMAND)
        .args(task.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut outcome = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        match line.strip_prefix(RESULT_MARKER) {
            Some(json) => outcome = Some(Outcome::from_json(&serde_json::from_str(json)?)?),
            None => println!("{line}"),
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("the measurement process failed ({status})");
    }
    outcome.context("the measurement process printed no result")
}

/// The child process: runs one measurement and prints its outcome as one JSON line.
///
/// # Errors
/// The measurement's.
pub(crate) async fn child(task: ChildTask, run: &crate::Run) -> anyhow::Result<()> {
    let outcome = match task {
        ChildTask::Updates {
            backend,
            bytes,
            rounds,
            pass,
        } => Outcome::Updates(
            db::with_db(backend, run, async |db| {
                update::measure(db, backend, bytes, rounds, pass).await
            })
            .await?,
        ),
        ChildTask::Scan {
            backend,
            states,
            rounds,
        } => Outcome::Scan(
            db::with_db(backend, run, async |db| {
                scan::measure(db, backend, states, rounds).await
            })
            .await?,
        ),
    };
    println!("{RESULT_MARKER}{}", outcome.to_json());
    Ok(())
}

/// A run (unique id, scratch directory removed when dropped) for tests.
#[cfg(test)]
pub(crate) fn test_run() -> anyhow::Result<crate::Run> {
    let id = format!("sstbench_test_{}", uuid::Uuid::new_v4().simple());
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir)?;
    Ok(crate::Run { id, dir })
}
