//! # sst-store-mysql
//!
//! SST's peer tables in MySQL 8 or MariaDB 10.11+: [`MysqlStore`] implements the
//! [`sst_core::Store`] contract with mysql_async, a connection pool, `JSON` columns, utf8mb4
//! InnoDB tables and one transaction per commit batch.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sst_core::StoreError> {
//! use sst_core::Store;
//! use sst_store_mysql::{MysqlConfig, MysqlStore};
//!
//! let config = MysqlConfig::new("mysql://root@127.0.0.1:3306").database("node_a");
//! let store = MysqlStore::connect(config).await?;
//! store.migrate().await?; // creates database `node_a` and the sst_* tables
//! # Ok(()) }
//! ```
//!
//! The states are then plain rows: `SELECT id, JSON_VALUE(data, '$.inspection.radon') FROM
//! node_a.sst_state`, and every version ever is a row of the view `node_a.sst_state_versions`
//! (same `data` document). The workspace README shows generated-column indexes and the
//! differences between MariaDB and MySQL 8.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod error;
mod schema;
mod store;

pub use config::{MysqlConfig, TableNames};
pub use store::MysqlStore;

/// Backend name used in errors and reports.
pub const NAME: &str = "mysql";
