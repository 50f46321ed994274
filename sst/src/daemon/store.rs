//! Opens a daemon's store for writing from its store URL (the same URL forms as
//! `sst verify --db`): a SQLite file (created if missing), a PostgreSQL schema, a MySQL /
//! MariaDB database, a MongoDB database. The node migrates it when it starts.

use std::sync::Arc;

use anyhow::{bail, Context};
use sst::core::Store;

use crate::store_url::StoreUrl;

/// Opens `url` read-write.
///
/// # Errors
/// The adapter is not compiled in; the database cannot be opened or reached.
pub(crate) async fn open(url: &StoreUrl) -> anyhow::Result<Arc<dyn Store>> {
    let label = url.label();
    match url {
        #[cfg(feature = "sqlite")]
        StoreUrl::Sqlite(path) => {
            use sst::sqlite::{SqliteConfig, SqliteStore};
            let store = SqliteStore::open(SqliteConfig::file(path))
                .await
                .with_context(|| format!("opening {label}"))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres { url, schema } => {
            use sst::postgres::{PostgresConfig, PostgresStore};
            let config = PostgresConfig::new(url.clone()).schema(schema.clone());
            let store = PostgresStore::connect(config)
                .await
                .with_context(|| format!("connecting to {label}"))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "mysql")]
        StoreUrl::Mysql { url, database } => {
            use sst::mysql::{MysqlConfig, MysqlStore};
            let mut config = MysqlConfig::new(url.clone());
            if let Some(db) = database {
                config = config.database(db.clone());
            }
            let store = MysqlStore::connect(config)
                .await
                .with_context(|| format!("connecting to {label}"))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "mongo")]
        StoreUrl::Mongo {
            url,
            database,
            prefix,
        } => {
            use sst::mongo::{MongoConfig, MongoStore};
            // A node is its store's only writer: a batch still pending when it starts was left
            // by its own predecessor (killed mid-commit), so recovery need not wait for a
            // concurrent writer to finish (the default grace is for shared databases).
            let config = MongoConfig::new(url.clone(), database.clone())
                .with_prefix(prefix)
                .with_recover_after(std::time::Duration::ZERO);
            let store = MongoStore::open(config)
                .await
                .with_context(|| format!("connecting to {label}"))?;
            Ok(Arc::new(store))
        }
        #[allow(unreachable_patterns)]
        _ => bail!(
            "{label}: this sst binary was built without that adapter; rebuild with its Cargo \
             feature (--features postgres,mysql,mongo)"
        ),
    }
}
