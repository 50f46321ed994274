//! MySQL / MariaDB backend of the benchmark (`SST_MYSQL_URL`, default the machine's server):
//! the store in database `<run id>`, the baseline — the same JSON documents into a bare
//! `(id varchar primary key, data JSON)` InnoDB table — in database `<run id>_plain`, both
//! with the server's default durability (`innodb_flush_log_at_trx_commit = 1`). Both
//! databases are dropped by [`cleanup`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts};
use sst_core::Store;
use sst_store_mysql::{MysqlConfig, MysqlStore};

use crate::Run;

const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306";
const POOL: usize = 4;

fn url() -> String {
    std::env::var("SST_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// A migrated [`MysqlStore`] in database `<run id>`.
pub(crate) async fn open_store(run: &Run) -> anyhow::Result<Arc<dyn Store>> {
    let config = MysqlConfig::new(url())
        .database(&run.id)
        .max_connections(POOL);
    let store = MysqlStore::connect(config).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

/// Inserts `docs` into `<run id>_plain.plain`, `batch` rows per transaction.
pub(crate) async fn plain_insert(
    run: &Run,
    docs: &[String],
    batch: usize,
) -> anyhow::Result<Duration> {
    let pool = Pool::from_url(url())?;
    let db = format!("{}_plain", run.id);
    let mut conn = pool.get_conn().await?;
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4"
    ))
    .await?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS `{db}`.plain (id VARCHAR(255) PRIMARY KEY, data JSON NOT NULL) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    ))
    .await?;
    drop(conn);
    let insert = format!("INSERT INTO `{db}`.plain (id, data) VALUES (?, ?)");
    let rows: Vec<(String, &String)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("plain-{batch}-{i:07}"), d))
        .collect();
    let start = Instant::now();
    for chunk in rows.chunks(batch) {
        let mut tx = pool.start_transaction(TxOpts::default()).await?;
        for (id, data) in chunk {
            tx.exec_drop(insert.as_str(), (id.as_str(), data.as_str()))
                .await?;
        }
        tx.commit().await?;
    }
    let elapsed = start.elapsed();
    pool.disconnect().await?;
    Ok(elapsed)
}

/// Drops both databases of the run.
pub(crate) async fn cleanup(run: &Run) -> anyhow::Result<()> {
    let pool = Pool::from_url(url())?;
    let mut conn = pool.get_conn().await?;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", run.id))
        .await?;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{}_plain`", run.id))
        .await?;
    drop(conn);
    pool.disconnect().await?;
    Ok(())
}
