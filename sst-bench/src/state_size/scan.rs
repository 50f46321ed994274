//! The scan measurement of one backend (run in a child process of its own): `states` states
//! of about 1 KB of JSON written straight through the store (signed create events and
//! version-1 states, [`crate::workload`], committed in batches) and the same JSON in a plain
//! table; then the same full-scan query (the sum of a numeric field over every row) timed on
//! each, after one untimed warm-up run of each: each round runs each query
//! [`RUNS_PER_ROUND`] times, alternating, and keeps each side's fastest run (the one least
//! disturbed by other processes on a shared machine).

use std::time::Instant;

use anyhow::ensure;
use sst_core::CommitBatch;

use super::args::SCAN_CHUNK;
use super::db::{Backend, Db, Side};
use super::report::Scan;

/// How often each side's query runs in one round.
const RUNS_PER_ROUND: usize = 3;

/// Milliseconds one run of the scan query of `side` takes; returns them with the sum.
async fn timed_scan(db: &Db, side: Side) -> anyhow::Result<(f64, i64)> {
    let start = Instant::now();
    let sum = db.scan(side).await?;
    Ok((start.elapsed().as_secs_f64() * 1e3, sum))
}

/// Measures the scan of `states` states in `db` (of `backend`), `rounds` times.
///
/// # Errors
/// A database failure, or the two sides' sums differing (they hold the same JSON).
pub(crate) async fn measure(
    db: &Db,
    backend: Backend,
    states: usize,
    rounds: usize,
) -> anyhow::Result<Scan> {
    let store = db.store();
    let mut doc_bytes = 0;
    let chunks = states / SCAN_CHUNK;
    for chunk in 0..chunks {
        if chunk % 10 == 0 {
            eprintln!(
                "state-size child: {} scan, writing states {}..{} of {states}",
                backend.name(),
                chunk * SCAN_CHUNK,
                ((chunk + 10) * SCAN_CHUNK).min(states)
            );
        }
        let w = crate::workload::states(SCAN_CHUNK, chunk as u64)?;
        doc_bytes = w.doc_bytes;
        store.commit(CommitBatch::new(w.items)).await?;
        let rows: Vec<(String, String)> = w
            .docs
            .into_iter()
            .enumerate()
            .map(|(i, d)| (format!("plain-{chunk}-{i:04}"), d))
            .collect();
        db.plain_insert(&rows).await?;
    }
    db.settle_tables().await?;
    let (_, sst_sum) = timed_scan(db, Side::Sst).await?;
    let (_, plain_sum) = timed_scan(db, Side::Plain).await?;
    ensure!(
        sst_sum == plain_sum,
        "the scans disagree: sst_state sums to {sst_sum}, the plain table to {plain_sum}"
    );
    let (mut sst_ms, mut plain_ms) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (mut sst_best, mut plain_best) = (f64::INFINITY, f64::INFINITY);
        for run in 0..RUNS_PER_ROUND {
            let order = if run % 2 == 0 {
                [Side::Sst, Side::Plain]
            } else {
                [Side::Plain, Side::Sst]
            };
            for side in order {
                let (ms, sum) = timed_scan(db, side).await?;
                ensure!(sum == sst_sum, "{} scan summed {sum}", side.label());
                let best = match side {
                    Side::Sst => &mut sst_best,
                    Side::Plain => &mut plain_best,
                };
                *best = best.min(ms);
            }
        }
        sst_ms.push(sst_best);
        plain_ms.push(plain_best);
    }
    let scan = Scan {
        backend,
        states,
        doc_bytes,
        sst_ms,
        plain_ms,
        sst_table: db.scanned_table_size(Side::Sst).await?,
        plain_table: db.scanned_table_size(Side::Plain).await?,
        queries: (db.scan_sql(Side::Sst), db.scan_sql(Side::Plain)),
    };
    drop(store);
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_sqlite_scans_read_every_state_and_agree() -> anyhow::Result<()> {
        let run = crate::state_size::test_run()?;
        let s = super::super::db::with_db(Backend::Sqlite, &run, async |db| {
            measure(db, Backend::Sqlite, 2 * SCAN_CHUNK, 2).await
        })
        .await?;
        assert_eq!(s.states, 2000);
        assert_eq!((s.sst_ms.len(), s.plain_ms.len()), (2, 2));
        assert!(s.doc_bytes > 900, "{}", s.doc_bytes);
        if let (Some(a), Some(b)) = (s.sst_table, s.plain_table) {
            assert!(a > b, "sst_state {a} bytes, plain {b}");
        }
        Ok(())
    }
}
