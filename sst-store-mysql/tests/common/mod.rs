//! A scratch database per test case on `SST_MYSQL_URL`, dropped when the case ends (shared by
//! the MySQL / MariaDB suites).

use anyhow::Context;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use sst_store_mysql::{MysqlConfig, MysqlStore};

/// A uniquely named database on the server, dropped (best effort) on drop.
pub struct ScratchDb {
    /// Server URL.
    pub url: String,
    /// Database name.
    pub database: String,
}

impl ScratchDb {
    /// A fresh database name, `None` (skip) without `SST_MYSQL_URL`.
    pub fn new() -> anyhow::Result<Option<Self>> {
        let Some(url) = conformance_tests::url_or_skip("SST_MYSQL_URL")? else {
            return Ok(None);
        };
        let database = format!("sst_test_{}", uuid::Uuid::new_v4().simple());
        Ok(Some(ScratchDb { url, database }))
    }

    /// A store on this database with a pool of `connections` (not migrated yet).
    pub async fn store(&self, connections: usize) -> anyhow::Result<MysqlStore> {
        let config = MysqlConfig::new(&self.url)
            .database(&self.database)
            .max_connections(connections);
        MysqlStore::connect(config)
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }
}

impl Drop for ScratchDb {
    /// Best-effort cleanup on a runtime of its own (Drop cannot await).
    fn drop(&mut self) {
        let (url, database) = (self.url.clone(), self.database.clone());
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let pool = Pool::from_url(&url)?;
                let mut conn = pool.get_conn().await?;
                conn.query_drop(format!("DROP DATABASE IF EXISTS `{database}`"))
                    .await?;
                drop(conn);
                pool.disconnect().await?;
                anyhow::Ok(())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("could not drop test database {}: {e}", self.database);
        }
    }
}
