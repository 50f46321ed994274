//! SQLite backend of the benchmark: the store in one file, the baseline in another file with
//! the same settings (WAL, `synchronous = FULL` unless told otherwise, same busy timeout).

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use sst_core::Store;
use sst_store_sqlite::{SqliteConfig, SqliteStore, Synchronous};

use crate::pipeline::stats::{Sample, Stopwatch};
use crate::Run;

fn config(run: &Run, file: &str) -> SqliteConfig {
    SqliteConfig::file(run.dir.join(file))
}

/// A migrated [`SqliteStore`] in `<run dir>/store.db`.
pub(crate) async fn open_store(run: &Run) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(
        SqliteStore::open_migrated(config(run, "store.db")).await?,
    ))
}

/// Inserts `docs` into a bare `(id, data)` table in `<run dir>/plain.db`, `batch` rows per
/// transaction, each transaction on the blocking pool like the store's commits.
pub(crate) async fn plain_insert(
    run: &Run,
    docs: &[String],
    batch: usize,
) -> anyhow::Result<Duration> {
    Ok(
        plain_insert_in(run, "plain.db", docs, batch, Synchronous::Full)
            .await?
            .wall,
    )
}

/// As [`plain_insert`], into `<run dir>/<file>` with the given `synchronous` setting (WAL);
/// the sample also holds the process CPU time the inserts took.
pub(crate) async fn plain_insert_in(
    run: &Run,
    file: &str,
    docs: &[String],
    batch: usize,
    synchronous: Synchronous,
) -> anyhow::Result<Sample> {
    let cfg = config(run, file).synchronous(synchronous);
    let conn = Connection::open(run.dir.join(file))?;
    conn.busy_timeout(cfg.busy_timeout)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
    conn.pragma_update(None, "synchronous", cfg.synchronous.as_str())?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS plain (id TEXT PRIMARY KEY, data TEXT NOT NULL);",
    )?;
    let conn = Arc::new(std::sync::Mutex::new(conn));
    let rows: Vec<(String, String)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("plain-{batch}-{i:07}"), d.clone()))
        .collect();
    let chunks: Vec<Vec<(String, String)>> = rows.chunks(batch).map(<[_]>::to_vec).collect();
    let watch = Stopwatch::start();
    for chunk in chunks {
        let conn = Arc::clone(&conn);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut c = conn
                .lock()
                .map_err(|_| anyhow::anyhow!("connection mutex poisoned"))?;
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut s = tx.prepare_cached("INSERT INTO plain (id, data) VALUES (?1, ?2)")?;
                for (id, data) in &chunk {
                    s.execute((id, data))?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await??;
    }
    Ok(watch.stop(docs.len()))
}
