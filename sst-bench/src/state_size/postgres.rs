//! PostgreSQL side of the benchmark: a database of the run's own on the server of
//! `SST_POSTGRES_URL` (default the machine's, trust auth), created at open and dropped at
//! close, holding the store in schema `sst` and the plain `(id text primary key, data jsonb)`
//! table in schema `plain`; both write with the server's default durability
//! (`synchronous_commit = on`). A connection of the benchmark's own reads the WAL position,
//! the tables' sizes and which server processes serve the run (their CPU time is read from
//! `/proc` when the server runs on this machine).

use std::sync::Arc;

use anyhow::{ensure, Context};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};
use sst_core::Store;
use sst_store_postgres::{PostgresConfig, PostgresStore};

use super::db::{ServerClock, Side};
use super::payload::Section;
use super::probe;
use crate::Run;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Schema of the store's tables.
const SST_SCHEMA: &str = "sst";
/// Schema of the plain table.
const PLAIN_SCHEMA: &str = "plain";
/// The plain table, qualified.
const PLAIN_TABLE: &str = "plain.plain_state";
/// The store's current-state table (default names), qualified.
const STATE_TABLE: &str = "sst.sst_state";

/// The server's URL (not a database of the run's).
fn server_url() -> String {
    std::env::var("SST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// `url` with its database replaced by `database` (query parameters kept).
fn database_url(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

/// The full-scan query of `side`.
pub(crate) fn scan_sql(side: Side) -> String {
    let table = match side {
        Side::Sst => STATE_TABLE,
        Side::Plain => PLAIN_TABLE,
    };
    format!("SELECT sum((data->'price'->>'amount')::bigint)::bigint FROM {table}")
}

/// The open databases of one measurement.
pub(crate) struct Dbs {
    database: String,
    store: Arc<PostgresStore>,
    plain: PgPool,
    /// The benchmark's own connection (sizes, WAL position, scans).
    probe: PgPool,
}

async fn pool(url: &str, connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))
}

impl Dbs {
    /// Creates the run's database, the migrated store in it and the plain table.
    pub(crate) async fn open(run: &Run) -> anyhow::Result<Dbs> {
        let server = server_url();
        let admin = pool(&server, 1).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{}\"", run.id)))
            .execute(&admin)
            .await
            .with_context(|| format!("creating database {}", run.id))?;
        admin.close().await;
        let url = database_url(&server, &run.id);
        let store = PostgresStore::connect(PostgresConfig::new(&url).schema(SST_SCHEMA)).await?;
        store.migrate().await?;
        let plain = pool(&url, 1).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA {PLAIN_SCHEMA};
             CREATE TABLE {PLAIN_TABLE} (id text PRIMARY KEY, data jsonb NOT NULL);"
        )))
        .execute(&plain)
        .await?;
        let probe = pool(&url, 1).await?;
        Ok(Dbs {
            database: run.id.clone(),
            store: Arc::new(store),
            plain,
            probe,
        })
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store) as Arc<dyn Store>
    }

    pub(crate) async fn plain_insert(&self, rows: &[(String, String)]) -> anyhow::Result<()> {
        let insert = format!("INSERT INTO {PLAIN_TABLE} (id, data) VALUES ($1, $2::jsonb)");
        let mut tx = self.plain.begin().await?;
        for (id, data) in rows {
            sqlx::query(AssertSqlSafe(insert.as_str()))
                .bind(id)
                .bind(data.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn plain_update(
        &self,
        id: &str,
        section: Section,
        value: i64,
    ) -> anyhow::Result<()> {
        let path = vec![section.name().to_owned(), section.field().to_owned()];
        let n = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {PLAIN_TABLE} SET data = jsonb_set(data, $2, to_jsonb($3::bigint)) WHERE id = $1"
        )))
        .bind(id)
        .bind(path)
        .bind(value)
        .execute(&self.plain)
        .await?
        .rows_affected();
        ensure!(n == 1, "plain update of `{id}` changed {n} rows");
        Ok(())
    }

    pub(crate) async fn plain_data(&self, id: &str) -> anyhow::Result<Value> {
        let text: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT data::text FROM {PLAIN_TABLE} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.probe)
        .await?;
        let text = text.with_context(|| format!("no plain row `{id}`"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The server's WAL insert position, in bytes.
    pub(crate) async fn wal_position(&self) -> anyhow::Result<u64> {
        let lsn: i64 = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint",
        )
        .fetch_one(&self.probe)
        .await?;
        Ok(u64::try_from(lsn)?)
    }

    /// CPU time so far of every server process connected to the run's database (but the
    /// benchmark's own probe connection); empty when `/proc` does not show them (a server on
    /// another machine).
    pub(crate) async fn server_clock(&self) -> anyhow::Result<ServerClock> {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&self.probe)
        .await?;
        Ok(pids
            .into_iter()
            .filter_map(|pid| u32::try_from(pid).ok())
            .filter_map(|pid| probe::process_run_time(pid).map(|t| (pid, t)))
            .collect())
    }

    /// Every table of the side's schema, with indexes and TOAST.
    pub(crate) async fn size(&self, side: Side) -> anyhow::Result<u64> {
        let schema = match side {
            Side::Sst => SST_SCHEMA,
            Side::Plain => PLAIN_SCHEMA,
        };
        let size: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'r'",
        )
        .bind(schema)
        .fetch_one(&self.probe)
        .await?;
        Ok(u64::try_from(size)?)
    }

    pub(crate) async fn scan(&self, side: Side) -> anyhow::Result<i64> {
        let sum: Option<i64> = sqlx::query_scalar(AssertSqlSafe(scan_sql(side)))
            .fetch_one(&self.probe)
            .await?;
        Ok(sum.unwrap_or_default())
    }

    pub(crate) async fn scanned_table_size(&self, side: Side) -> anyhow::Result<u64> {
        let table = match side {
            Side::Sst => STATE_TABLE,
            Side::Plain => PLAIN_TABLE,
        };
        let size: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
            .bind(table)
            .fetch_one(&self.probe)
            .await?;
        Ok(u64::try_from(size)?)
    }

    pub(crate) async fn vacuum_analyze(&self) -> anyhow::Result<()> {
        // One statement each: several in one string run as one transaction, which VACUUM
        // refuses.
        for table in [STATE_TABLE, PLAIN_TABLE] {
            sqlx::raw_sql(AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                .execute(&self.probe)
                .await?;
        }
        Ok(())
    }

    /// Closes the pools and drops the run's database.
    pub(crate) async fn close(self) -> anyhow::Result<()> {
        self.store.pool().close().await;
        self.plain.close().await;
        self.probe.close().await;
        let admin = pool(&server_url(), 1).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.database
        )))
        .execute(&admin)
        .await
        .with_context(|| format!("dropping database {}", self.database))?;
        admin.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_database_replaces_the_url_database_and_keeps_parameters() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "sstbench_1"),
            "postgres://postgres@127.0.0.1:5432/sstbench_1"
        );
        assert_eq!(
            database_url("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(database_url("postgres://h?a=b", "x"), "postgres://h/x?a=b");
    }

    /// The server of `SST_POSTGRES_URL`, or `None` (skipping loudly) when it is not set and
    /// `SST_REQUIRE_BACKEND=1` does not demand it.
    fn server_configured() -> Option<()> {
        if std::env::var("SST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
            return Some(());
        }
        assert!(
            std::env::var("SST_REQUIRE_BACKEND").as_deref() != Ok("1"),
            "SST_REQUIRE_BACKEND=1 but SST_POSTGRES_URL is not set"
        );
        eprintln!("skipping: set SST_POSTGRES_URL");
        None
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_run_database_holds_both_sides_and_is_dropped_at_close() -> anyhow::Result<()> {
        if server_configured().is_none() {
            return Ok(());
        }
        let run = crate::state_size::test_run()?;
        let id = run.id.clone();
        let dbs = Dbs::open(&run).await?;
        let doc = serde_json::json!({"price": {"amount": 5, "currency": "EUR"},
                                     "common": {"revision": 0}});
        dbs.plain_insert(&[("a".to_owned(), doc.to_string())])
            .await?;
        let wal = dbs.wal_position().await?;
        dbs.plain_update("a", Section::Small, 7).await?;
        dbs.plain_update("a", Section::Large, 3).await?;
        assert!(dbs.wal_position().await? > wal);
        assert!(dbs
            .plain_update("missing", Section::Small, 1)
            .await
            .is_err());
        let data = dbs.plain_data("a").await?;
        assert_eq!(
            data["price"],
            serde_json::json!({"amount": 7, "currency": "EUR"})
        );
        assert_eq!(data["common"]["revision"], 3);
        assert_eq!(dbs.scan(Side::Plain).await?, 7);
        assert_eq!(dbs.scan(Side::Sst).await?, 0);
        dbs.vacuum_analyze().await?;
        assert!(dbs.size(Side::Sst).await? > dbs.size(Side::Plain).await?);
        assert!(dbs.scanned_table_size(Side::Plain).await? > 0);
        // The store's pool and the plain one are served by processes this machine shows.
        assert!(!dbs.server_clock().await?.is_empty());
        dbs.close().await?;
        let admin = pool(&server_url(), 1).await?;
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&id)
            .fetch_one(&admin)
            .await?;
        admin.close().await;
        assert_eq!(left, 0, "database {id} left behind");
        Ok(())
    }

    #[test]
    fn queries_name_the_schemas_tables() {
        assert!(scan_sql(Side::Sst).ends_with("FROM sst.sst_state"));
        assert!(scan_sql(Side::Plain).ends_with("FROM plain.plain_state"));
    }
}
