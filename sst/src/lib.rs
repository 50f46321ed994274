//! # sst
//!
//! The SST facade: one dependency that brings the model ([`core`]), the node engine
//! ([`node`]) and the store adapters selected with Cargo features — `sqlite` (default),
//! `postgres`, `mysql`, `mongo`, `oracle`:
//!
//! ```toml
//! sst = { version = "0.1", default-features = false, features = ["postgres"] }
//! ```
//!
//! The `sst` binary (`cargo run --release -p sst -- demo`) runs the real-estate demo on four
//! SQLite files, verifies node databases of any compiled-in backend by store URL, read-only
//! (`sst verify --db a.db --db 'postgres://…?schema=node_b'`), and measures the pipeline
//! (`sst bench`).
//!
//! [`Network`] builds several participants' nodes in one process (actors, keys, contracts,
//! stores) in a few lines: see `examples/two_participants.rs` and the README's "Use SST from
//! your code".
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub use sst_core as core;
pub use sst_node as node;

pub mod network;
pub use network::{Network, NetworkBuilder, NetworkError};

#[cfg(feature = "mongo")]
pub use sst_store_mongo as mongo;
#[cfg(feature = "mysql")]
pub use sst_store_mysql as mysql;
#[cfg(feature = "oracle")]
pub use sst_store_oracle as oracle;
#[cfg(feature = "postgres")]
pub use sst_store_postgres as postgres;
#[cfg(feature = "sqlite")]
pub use sst_store_sqlite as sqlite;

/// Names of the store adapters compiled into this build.
pub fn adapters() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "sqlite") {
        v.push("sqlite");
    }
    if cfg!(feature = "postgres") {
        v.push("postgres");
    }
    if cfg!(feature = "mysql") {
        v.push("mysql");
    }
    if cfg!(feature = "mongo") {
        v.push("mongo");
    }
    if cfg!(feature = "oracle") {
        v.push("oracle");
    }
    v
}
