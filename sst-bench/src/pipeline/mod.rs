//! `sst-bench pipeline`: the node's throughput against this machine's own limits, in one run.
//!
//! Each round measures, on the same workload ([`workload`]):
//! - (a) strict signature verification of signed events like the node's, on every core
//!   ([`std::thread::available_parallelism`] threads) and on one;
//! - (b) a plain SQLite insert of the same state JSON in groups of the node's own group size
//!   ([`sst_node::NodeConfig::max_batch`]), WAL with the same `synchronous` setting;
//! - (c) the home node alone on a SQLite file, its verification pool on every core and on one;
//! - (d) the home and two replicas in this process (in-process transport): events/s answered
//!   at the home and replicated end to end;
//! - (e) the home node alone on creates its client signed beforehand (handed in with
//!   [`sst_node::Node::ingest`], so each is strictly verified on the node's pool before it is
//!   sequenced; (c)'s intents are the node's own actor's, which it signs and need no check),
//!   its verification pool on every core and on one;
//!
//! with (b)–(e) for `synchronous = FULL` and `NORMAL`. The table gives the median over the
//! rounds of events/s, of cores used (process CPU time / wall time) and of the same-round
//! ratios of each node row to (a) all cores and to (b).

mod args;
mod nodes;
mod report;
pub(crate) mod stats;
mod verify;
mod workload;

use std::path::Path;

use sst_store_sqlite::Synchronous;

pub(crate) use args::{Options, USAGE};
use nodes::{Setup, Topology};
use report::{Ratios, Row};

/// Fewest rows the plain insert (b) writes (more than `--events` when that is smaller), so
/// that it times at least a large fraction of a second even without fsync.
const MIN_PLAIN_ROWS: usize = 50_000;

/// The `synchronous` settings measured, in table order.
const SYNCS: [Synchronous; 2] = [Synchronous::Full, Synchronous::Normal];

/// The rows of one `synchronous` setting, in table order.
#[derive(Debug, Clone, Copy)]
struct SyncRows {
    plain: usize,
    home_all: usize,
    home_one: usize,
    replicas_home: usize,
    replicas_end: usize,
    signed_all: usize,
    signed_one: usize,
}

/// The table's rows, in order, and where each measurement goes.
struct Table {
    rows: Vec<Row>,
    verify_all: usize,
    verify_one: usize,
    per_sync: Vec<(Synchronous, SyncRows)>,
}

impl Table {
    fn new(cores: usize) -> Table {
        let group = nodes::group_size();
        let mut rows = vec![
            Row::new(
                format!("(a) strict verification, {cores} threads"),
                "-",
                Ratios::None,
            ),
            Row::new("(a) strict verification, 1 thread", "-", Ratios::None),
        ];
        let mut per_sync = Vec::new();
        for sync in SYNCS {
            let s = sync.as_str();
            let plain = rows.len();
            let against = Ratios::Against { plain };
            rows.push(Row::new(
                format!("(b) plain SQLite insert, groups of {group}"),
                s,
                Ratios::None,
            ));
            for label in [
                format!("(c) home node alone, verify pool {cores}"),
                "(c) home node alone, verify pool 1".to_owned(),
                "(d) home + 2 replicas, answered at home".to_owned(),
                "(d) home + 2 replicas, replicated".to_owned(),
                format!("(e) home, client-signed, pool {cores}"),
                "(e) home, client-signed, pool 1".to_owned(),
            ] {
                rows.push(Row::new(label, s, against));
            }
            let sync_rows = SyncRows {
                plain,
                home_all: plain + 1,
                home_one: plain + 2,
                replicas_home: plain + 3,
                replicas_end: plain + 4,
                signed_all: plain + 5,
                signed_one: plain + 6,
            };
            per_sync.push((sync, sync_rows));
        }
        Table {
            rows,
            verify_all: 0,
            verify_one: 1,
            per_sync,
        }
    }
}

/// Runs the benchmark in the scratch directory of `run` and prints the table.
///
/// # Errors
/// Any failing measurement (a node refusing an intent, a replica diverging, I/O).
pub(crate) async fn run(options: Options, run: &crate::Run) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let signed = verify::signed_events(options.events)?;
    let docs = workload::docs(options.events.max(MIN_PLAIN_ROWS))?;
    let mut table = Table::new(cores);
    let load_before = stats::load_average();
    for round in 0..options.rounds {
        eprintln!("round {} of {}", round + 1, options.rounds);
        for (index, threads) in [(table.verify_all, cores), (table.verify_one, 1)] {
            let s = tokio::task::block_in_place(|| {
                verify::rate(&signed, threads, verify::MIN_VERIFIES)
            })?;
            table.rows[index].samples.push(s);
        }
        for (sync, r) in table.per_sync.clone() {
            let file = format!("plain-{round}-{}.db", sync.as_str());
            let plain =
                crate::sqlite::plain_insert_in(run, &file, &docs, nodes::group_size(), sync).await;
            remove_db(&run.dir.join(&file));
            table.rows[r.plain].samples.push(plain?);
            for (index, verify_workers) in [(r.home_all, 0), (r.home_one, 1)] {
                let setup = Setup {
                    topology: Topology::Alone,
                    synchronous: sync,
                    verify_workers,
                };
                let m = measure(&run.dir, round, index, setup, options.events).await?;
                table.rows[index].samples.push(m.home);
            }
            let setup = Setup {
                topology: Topology::WithTwoReplicas,
                synchronous: sync,
                verify_workers: 0,
            };
            let m = measure(&run.dir, round, r.replicas_home, setup, options.events).await?;
            table.rows[r.replicas_home].samples.push(m.home);
            table.rows[r.replicas_end].samples.extend(m.replicated);
            for (index, verify_workers) in [(r.signed_all, 0), (r.signed_one, 1)] {
                let setup = Setup {
                    topology: Topology::Alone,
                    synchronous: sync,
                    verify_workers,
                };
                let dir = run.dir.join(format!("round-{round}-row-{index}"));
                let s = nodes::measure_signed_creates(&dir, setup, options.events).await;
                // The files of a finished measurement are not needed any more.
                let _ = std::fs::remove_dir_all(&dir);
                table.rows[index].samples.push(s?);
            }
        }
    }
    println!(
        "sst-bench pipeline: {} events per node run, median of {} rounds, {cores} cores; SQLite \
         WAL, node group size {} (NodeConfig::max_batch), {} intents in flight, changes over {} \
         states; (a) {}+ signatures, (b) {} rows",
        options.events,
        options.rounds,
        nodes::group_size(),
        nodes::in_flight(),
        workload::STATES,
        verify::MIN_VERIFIES,
        docs.len(),
    );
    print!("{}", report::render(&table.rows, table.verify_all));
    println!(
        "cores = process CPU time / wall time; /(a), /(b) = events/s over (a) {cores} threads and \
         over (b) of the same sync, per round, median"
    );
    let load = |l: Option<f64>| l.map_or_else(|| "n/a".to_owned(), |l| format!("{l:.2}"));
    println!(
        "load average (1 min) at start {}, at end {} (the benchmark adds about its own cores \
         used; more means other processes shared the cores)",
        load(load_before),
        load(stats::load_average())
    );
    Ok(())
}

/// Removes a SQLite database file and its WAL files (a finished measurement's; errors are
/// harmless: the run's directory goes at exit anyway).
fn remove_db(file: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

/// One node measurement in its own directory (fresh files).
async fn measure(
    dir: &Path,
    round: usize,
    row: usize,
    setup: Setup,
    events: usize,
) -> anyhow::Result<nodes::Measured> {
    let dir = dir.join(format!("round-{round}-row-{row}"));
    let m = nodes::measure(&dir, setup, events).await;
    // The files of a finished measurement are not needed any more; free the disk early.
    let _ = std::fs::remove_dir_all(&dir);
    m
}
