//! SQLite side of the benchmark: the store in `<run dir>/sst.db`, the plain table in
//! `<run dir>/plain.db`, both WAL with `synchronous = FULL` (the node's setting) and the same
//! busy timeout; a connection of the benchmark's own to each file reads sizes, runs the
//! checkpoints and the scans.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use sst_core::Store;
use sst_store_sqlite::{SqliteConfig, SqliteStore, Synchronous};

use super::db::Side;
use super::payload::Section;
use crate::Run;

/// The plain table.
const PLAIN_TABLE: &str = "plain_state";
/// The store's current-state table (default names).
const STATE_TABLE: &str = "sst_state";
/// How often a checkpoint that finds the WAL in use is tried again.
const CHECKPOINT_TRIES: usize = 50;

/// The full-scan query of `side`.
pub(crate) fn scan_sql(side: Side) -> String {
    let table = match side {
        Side::Sst => STATE_TABLE,
        Side::Plain => PLAIN_TABLE,
    };
    format!("SELECT sum(json_extract(data, '$.price.amount')) FROM {table}")
}

/// The `json_set` path of `section`'s updated field.
fn json_path(section: Section) -> String {
    format!("$.{}.{}", section.name(), section.field())
}

/// The open files of one measurement.
pub(crate) struct Dbs {
    store: Arc<SqliteStore>,
    sst_path: PathBuf,
    /// The benchmark's own connection to the store's file.
    sst: Mutex<Connection>,
    plain_path: PathBuf,
    plain: Mutex<Connection>,
}

/// A connection to `path` with the store's settings: WAL, `synchronous = FULL`, the default
/// busy timeout.
fn connect(path: &Path) -> anyhow::Result<Connection> {
    let config = SqliteConfig::file(path).synchronous(Synchronous::Full);
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(config.busy_timeout)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
    conn.pragma_update(None, "synchronous", config.synchronous.as_str())?;
    Ok(conn)
}

/// Locks a connection (a poisoned lock is an error, not a panic).
fn lock(conn: &Mutex<Connection>) -> anyhow::Result<std::sync::MutexGuard<'_, Connection>> {
    conn.lock()
        .map_err(|_| anyhow::anyhow!("SQLite connection mutex poisoned"))
}

impl Dbs {
    /// Opens the migrated store and creates the plain table.
    pub(crate) async fn open(run: &Run) -> anyhow::Result<Dbs> {
        let sst_path = run.dir.join("sst.db");
        let plain_path = run.dir.join("plain.db");
        let store = SqliteStore::open_migrated(
            SqliteConfig::file(&sst_path).synchronous(Synchronous::Full),
        )
        .await?;
        let sst = connect(&sst_path)?;
        let plain = connect(&plain_path)?;
        plain.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {PLAIN_TABLE} (id TEXT PRIMARY KEY, data TEXT NOT NULL);"
        ))?;
        Ok(Dbs {
            store: Arc::new(store),
            sst_path,
            sst: Mutex::new(sst),
            plain_path,
            plain: Mutex::new(plain),
        })
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store) as Arc<dyn Store>
    }

    pub(crate) fn plain_insert(&self, rows: &[(String, String)]) -> anyhow::Result<()> {
        tokio::task::block_in_place(|| {
            let mut c = lock(&self.plain)?;
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut s = tx.prepare_cached(&format!(
                    "INSERT INTO {PLAIN_TABLE} (id, data) VALUES (?1, ?2)"
                ))?;
                for (id, data) in rows {
                    s.execute((id, data))?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    pub(crate) fn plain_update(
        &self,
        id: &str,
        section: Section,
        value: i64,
    ) -> anyhow::Result<()> {
        tokio::task::block_in_place(|| {
            let c = lock(&self.plain)?;
            let mut s = c.prepare_cached(&format!(
                "UPDATE {PLAIN_TABLE} SET data = json_set(data, ?2, ?3) WHERE id = ?1"
            ))?;
            let n = s.execute((id, json_path(section), value))?;
            ensure!(n == 1, "plain update of `{id}` changed {n} rows");
            Ok(())
        })
    }

    pub(crate) fn plain_data(&self, id: &str) -> anyhow::Result<Value> {
        let c = lock(&self.plain)?;
        let text: Option<String> = c
            .query_row(
                &format!("SELECT data FROM {PLAIN_TABLE} WHERE id = ?1"),
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let text = text.with_context(|| format!("no plain row `{id}`"))?;
        Ok(serde_json::from_str(&text)?)
    }

    pub(crate) fn checkpoint(&self) -> anyhow::Result<()> {
        tokio::task::block_in_place(|| {
            for (conn, path) in [(&self.sst, &self.sst_path), (&self.plain, &self.plain_path)] {
                let c = lock(conn)?;
                let mut done = false;
                for _ in 0..CHECKPOINT_TRIES {
                    let busy: i64 =
                        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
                    if busy == 0 {
                        done = true;
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                ensure!(done, "the WAL of {} stayed in use", path.display());
            }
            Ok(())
        })
    }

    pub(crate) fn size(&self, side: Side) -> anyhow::Result<u64> {
        let (conn, path) = match side {
            Side::Sst => (&self.sst, &self.sst_path),
            Side::Plain => (&self.plain, &self.plain_path),
        };
        let c = lock(conn)?;
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let wal = std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |m| m.len());
        Ok(u64::try_from(pages * page_size)? + wal)
    }

    pub(crate) fn scan(&self, side: Side) -> anyhow::Result<i64> {
        tokio::task::block_in_place(|| {
            let conn = match side {
                Side::Sst => &self.sst,
                Side::Plain => &self.plain,
            };
            let c = lock(conn)?;
            let sum: Option<i64> = c.query_row(&scan_sql(side), [], |r| r.get(0))?;
            Ok(sum.unwrap_or_default())
        })
    }

    /// Pages of the scanned table and its indexes (SQLite's `dbstat` table), `None` where the
    /// library was built without it.
    pub(crate) fn scanned_table_size(&self, side: Side) -> anyhow::Result<Option<u64>> {
        let (conn, table) = match side {
            Side::Sst => (&self.sst, STATE_TABLE),
            Side::Plain => (&self.plain, PLAIN_TABLE),
        };
        let c = lock(conn)?;
        let size = c.query_row(
            "SELECT sum(pgsize) FROM dbstat WHERE name IN \
             (SELECT name FROM sqlite_schema WHERE tbl_name = ?1)",
            [table],
            |r| r.get::<_, Option<i64>>(0),
        );
        Ok(size.ok().flatten().and_then(|s| u64::try_from(s).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_the_field_and_the_table() {
        assert_eq!(json_path(Section::Small), "$.price.amount");
        assert_eq!(json_path(Section::Large), "$.common.revision");
        assert!(scan_sql(Side::Sst).ends_with("FROM sst_state"));
        assert!(scan_sql(Side::Plain).ends_with("FROM plain_state"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_plain_side_updates_one_field_and_both_sides_report_sizes() -> anyhow::Result<()> {
        let run = crate::state_size::test_run()?;
        let dbs = Dbs::open(&run).await?;
        let doc = serde_json::json!({"price": {"amount": 5, "currency": "EUR"},
                                     "common": {"revision": 0}});
        dbs.plain_insert(&[("a".to_owned(), doc.to_string())])?;
        dbs.plain_update("a", Section::Small, 7)?;
        dbs.plain_update("a", Section::Large, 3)?;
        assert!(dbs.plain_update("missing", Section::Small, 1).is_err());
        let data = dbs.plain_data("a")?;
        assert_eq!(
            data["price"],
            serde_json::json!({"amount": 7, "currency": "EUR"})
        );
        assert_eq!(data["common"]["revision"], 3);
        assert_eq!(dbs.scan(Side::Plain)?, 7);
        assert_eq!(dbs.scan(Side::Sst)?, 0);
        dbs.checkpoint()?;
        assert!(dbs.size(Side::Plain)? >= 4096);
        assert!(dbs.size(Side::Sst)? > dbs.size(Side::Plain)?);
        if let Some(s) = dbs.scanned_table_size(Side::Plain)? {
            assert!(s >= 4096, "{s}");
        }
        Ok(())
    }
}
