//! SST store adapter for SQLite (rusqlite with the bundled SQLite): the embedded default.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod checkpoint;
pub mod config;
mod error;
mod schema;
mod store;
mod writer;

pub use config::{Location, SqliteConfig, Synchronous, TableNames};
pub use error::WriterError;
pub use store::SqliteStore;

/// Backend name used in errors and reports.
pub const NAME: &str = "sqlite";
