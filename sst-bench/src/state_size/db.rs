//! The two databases of one measurement, behind one face: the SST store (its peer tables)
//! and a plain table `(id, data)` holding the same JSON, with the same durability, in the
//! same database server or in a file beside it; and what the benchmark reads around each
//! sample (bytes written, size on disk, server CPU).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;
use sst_core::Store;

use super::payload::Section;
use super::{postgres, sqlite};
use crate::Run;

/// A database engine the benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// A SQLite file in WAL mode, `synchronous = FULL` (the node's setting).
    Sqlite,
    /// The PostgreSQL server (`SST_POSTGRES_URL`, default the machine's), in a database of
    /// the run's own.
    Postgres,
}

impl Backend {
    /// Every backend, in table order.
    pub(crate) const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    /// Its name on the command line and in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Parses [`Backend::name`].
    ///
    /// # Errors
    /// An unknown name.
    pub(crate) fn parse(name: &str) -> anyhow::Result<Backend> {
        match Backend::ALL.into_iter().find(|b| b.name() == name) {
            Some(b) => Ok(b),
            None => bail!("unknown backend `{name}` (sqlite, postgres or all)"),
        }
    }
}

/// Which of the two databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The SST store's peer tables.
    Sst,
    /// The plain `(id, data)` table.
    Plain,
}

impl Side {
    /// Both, in table order.
    pub(crate) const BOTH: [Side; 2] = [Side::Sst, Side::Plain];

    /// Label in the child's results.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Side::Sst => "sst",
            Side::Plain => "plain",
        }
    }

    /// Parses [`Side::label`].
    pub(crate) fn parse(label: &str) -> Option<Side> {
        Side::BOTH.into_iter().find(|s| s.label() == label)
    }
}

/// Run time of each server process serving this benchmark (pid → CPU time so far).
pub(crate) type ServerClock = BTreeMap<u32, Duration>;

/// CPU the server processes spent between two [`ServerClock`] readings: a process present at
/// both counts its difference, one that appeared in between counts all of its time (one that
/// ended in between is lost: the pools keep their connections open, so none should).
pub(crate) fn server_cpu_between(start: &ServerClock, end: &ServerClock) -> Duration {
    end.iter()
        .map(|(pid, t)| t.saturating_sub(start.get(pid).copied().unwrap_or_default()))
        .sum()
}

/// Runs `measure` on databases of the run's own for `backend`, and removes them afterwards,
/// also when the measurement failed.
///
/// # Errors
/// The measurement's, or failing to open or remove the databases.
pub(crate) async fn with_db<T>(
    backend: Backend,
    run: &Run,
    measure: impl AsyncFnOnce(&Db) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let db = Db::open(backend, run).await?;
    let measured = measure(&db).await;
    let closed = db.close().await;
    let value = measured?;
    closed?;
    Ok(value)
}

/// The open databases of one measurement.
pub(crate) enum Db {
    /// SQLite files in the run's directory.
    Sqlite(Box<sqlite::Dbs>),
    /// A PostgreSQL database of the run's own.
    Postgres(postgres::Dbs),
}

impl Db {
    /// Creates both databases (the store migrated, the plain table created) for `run`.
    ///
    /// # Errors
    /// Connection or DDL failures.
    pub(crate) async fn open(backend: Backend, run: &Run) -> anyhow::Result<Db> {
        Ok(match backend {
            Backend::Sqlite => Db::Sqlite(Box::new(sqlite::Dbs::open(run).await?)),
            Backend::Postgres => Db::Postgres(postgres::Dbs::open(run).await?),
        })
    }

    /// The SST store.
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match self {
            Db::Sqlite(d) => d.store(),
            Db::Postgres(d) => d.store(),
        }
    }

    /// Inserts `(id, json)` rows into the plain table in one transaction.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn plain_insert(&self, rows: &[(String, String)]) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(d) => d.plain_insert(rows),
            Db::Postgres(d) => d.plain_insert(rows).await,
        }
    }

    /// The plain way to change one field: `UPDATE … SET data = json_set(data, path, value)`
    /// (`jsonb_set` on PostgreSQL) of row `id`, one transaction.
    ///
    /// # Errors
    /// Database errors, or no such row.
    pub(crate) async fn plain_update(
        &self,
        id: &str,
        section: Section,
        value: i64,
    ) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(d) => d.plain_update(id, section, value),
            Db::Postgres(d) => d.plain_update(id, section, value).await,
        }
    }

    /// The JSON of plain row `id`.
    ///
    /// # Errors
    /// Database errors, or no such row.
    pub(crate) async fn plain_data(&self, id: &str) -> anyhow::Result<Value> {
        match self {
            Db::Sqlite(d) => d.plain_data(id),
            Db::Postgres(d) => d.plain_data(id).await,
        }
    }

    /// A counter of bytes written so far: SQLite, what this process wrote to storage
    /// (`/proc/self/io`); PostgreSQL, the server's WAL insert position (its WAL bytes).
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn written(&self) -> anyhow::Result<Option<u64>> {
        match self {
            Db::Sqlite(_) => Ok(super::probe::written_bytes()),
            Db::Postgres(d) => d.wal_position().await.map(Some),
        }
    }

    /// CPU clocks of the server processes that serve this run (none for SQLite, which runs
    /// in this process).
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn server_clock(&self) -> anyhow::Result<ServerClock> {
        match self {
            Db::Sqlite(_) => Ok(ServerClock::new()),
            Db::Postgres(d) => d.server_clock().await,
        }
    }

    /// Moves what the write-ahead log holds into the database files (SQLite: a `TRUNCATE`
    /// checkpoint of both files; PostgreSQL: nothing, its WAL is what is counted).
    ///
    /// # Errors
    /// Database errors, or a checkpoint that could not finish.
    pub(crate) async fn checkpoint(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(d) => d.checkpoint(),
            Db::Postgres(_) => Ok(()),
        }
    }

    /// Size on disk of one side: SQLite, the database file (`page_count * page_size`) plus
    /// its WAL; PostgreSQL, every table of the side with its indexes and TOAST.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn size(&self, side: Side) -> anyhow::Result<u64> {
        match self {
            Db::Sqlite(d) => d.size(side),
            Db::Postgres(d) => d.size(side).await,
        }
    }

    /// Runs the full-scan query (the sum of `price.amount` over every row of the current
    /// state table, or of the plain table) and returns the sum.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn scan(&self, side: Side) -> anyhow::Result<i64> {
        match self {
            Db::Sqlite(d) => d.scan(side),
            Db::Postgres(d) => d.scan(side).await,
        }
    }

    /// Size of the scanned table alone (with its indexes and TOAST), where the engine tells
    /// it.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn scanned_table_size(&self, side: Side) -> anyhow::Result<Option<u64>> {
        match self {
            Db::Sqlite(d) => d.scanned_table_size(side),
            Db::Postgres(d) => d.scanned_table_size(side).await.map(Some),
        }
    }

    /// Readies freshly loaded tables for a fair scan (PostgreSQL: `VACUUM ANALYZE`, which
    /// sets the hint bits and visibility map a first scan would otherwise write).
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn settle_tables(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(d) => d.checkpoint(),
            Db::Postgres(d) => d.vacuum_analyze().await,
        }
    }

    /// What the scan query reads, as printed in the report.
    pub(crate) fn scan_sql(&self, side: Side) -> String {
        match self {
            Db::Sqlite(_) => sqlite::scan_sql(side),
            Db::Postgres(_) => postgres::scan_sql(side),
        }
    }

    /// Closes every connection and removes what the run created on a server.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn close(self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(_) => Ok(()),
            Db::Postgres(d) => d.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_and_sides_read_back_their_names() -> anyhow::Result<()> {
        for b in Backend::ALL {
            assert_eq!(Backend::parse(b.name())?, b);
        }
        assert!(Backend::parse("mysql").is_err());
        for s in Side::BOTH {
            assert_eq!(Side::parse(s.label()), Some(s));
        }
        assert_eq!(Side::parse("other"), None);
        Ok(())
    }

    #[test]
    fn server_cpu_counts_differences_and_new_processes() {
        let ms = Duration::from_millis;
        let start = ServerClock::from([(10, ms(100)), (11, ms(50)), (12, ms(7))]);
        // 10 ran 30 ms, 11 did not run, 12 ended (lost), 13 appeared with 5 ms.
        let end = ServerClock::from([(10, ms(130)), (11, ms(50)), (13, ms(5))]);
        assert_eq!(server_cpu_between(&start, &end), ms(35));
        assert_eq!(server_cpu_between(&end, &end), Duration::ZERO);
        assert_eq!(
            server_cpu_between(&ServerClock::new(), &ServerClock::new()),
            Duration::ZERO
        );
    }
}
