//! # sst-store-postgres
//!
//! SST's peer tables in PostgreSQL: [`PostgresStore`] implements the [`sst_core::Store`]
//! contract with sqlx (runtime queries only, no database needed to build), a connection pool,
//! `jsonb` columns and one transaction per commit batch.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sst_core::StoreError> {
//! use sst_core::Store;
//! use sst_store_postgres::{PostgresConfig, PostgresStore};
//!
//! let config = PostgresConfig::new("postgres://postgres@127.0.0.1:5432/postgres").schema("node_a");
//! let store = PostgresStore::connect(config).await?;
//! store.migrate().await?; // creates schema `node_a` and the sst_* tables
//! # Ok(()) }
//! ```
//!
//! The states are then plain rows: `SELECT id, data->'inspection'->>'radon' FROM
//! node_a.sst_state`, and every version ever committed is a row of the view
//! `node_a.sst_state_versions` (`id, version, …, data`), assembled from the history's section
//! seals and the section versions stored once each in `node_a.sst_section`. The workspace
//! README shows indexes and partitioning.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod error;
mod schema;
mod store;

pub use config::{PostgresConfig, TableNames, DEFAULT_SCHEMA};
pub use store::PostgresStore;

/// Backend name used in errors and reports.
pub const NAME: &str = "postgres";
