//! PostgreSQL backend of the benchmark (`SST_POSTGRES_URL`, default the machine's server): the
//! store in schema `<run id>`, the baseline — the same JSON documents into a bare
//! `(id text primary key, data jsonb)` table — in schema `<run id>_plain`, both over a pool of
//! the same size, both with the server's default durability (`synchronous_commit = on`).
//! Both schemas are dropped by [`cleanup`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};
use sst_core::Store;
use sst_store_postgres::{PostgresConfig, PostgresStore};

use crate::Run;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const POOL: u32 = 4;

fn url() -> String {
    std::env::var("SST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

async fn pool() -> anyhow::Result<PgPool> {
    let url = url();
    PgPoolOptions::new()
        .max_connections(POOL)
        .connect(&url)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// A migrated [`PostgresStore`] in schema `<run id>`.
pub(crate) async fn open_store(run: &Run) -> anyhow::Result<Arc<dyn Store>> {
    let config = PostgresConfig::new(url())
        .schema(&run.id)
        .max_connections(POOL);
    let store = PostgresStore::connect(config).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

/// Inserts `docs` as `jsonb` into `<run id>_plain.plain`, `batch` rows per transaction.
pub(crate) async fn plain_insert(
    run: &Run,
    docs: &[String],
    batch: usize,
) -> anyhow::Result<Duration> {
    let pool = pool().await?;
    let schema = format!("{}_plain", run.id);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".plain (id text PRIMARY KEY, data jsonb NOT NULL);"
    )))
    .execute(&pool)
    .await?;
    let insert = format!("INSERT INTO \"{schema}\".plain (id, data) VALUES ($1, $2::jsonb)");
    let rows: Vec<(String, &String)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("plain-{batch}-{i:07}"), d))
        .collect();
    let start = Instant::now();
    for chunk in rows.chunks(batch) {
        let mut tx = pool.begin().await?;
        for (id, data) in chunk {
            sqlx::query(AssertSqlSafe(insert.as_str()))
                .bind(id)
                .bind(data.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    let elapsed = start.elapsed();
    pool.close().await;
    Ok(elapsed)
}

/// Drops both schemas of the run.
pub(crate) async fn cleanup(run: &Run) -> anyhow::Result<()> {
    let pool = pool().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{id}\" CASCADE; DROP SCHEMA IF EXISTS \"{id}_plain\" CASCADE;",
        id = run.id
    )))
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(())
}
