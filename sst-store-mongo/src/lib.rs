//! # sst-store-mongo
//!
//! SST's peer collections in MongoDB, through the official `mongodb` driver. The latest
//! version of every state is a native BSON document (`_id`, `contract_name`,
//! `contract_version`, `version`, `data`) whose `data` field holds the disclosed sections, so
//! ordinary filters, aggregations and indexes work on it:
//!
//! ```text
//! db.sst_state.find({"data.inspection.radon": {"$gt": 4}})
//! db.sst_state.createIndex({"data.inspection.radon": 1})
//! ```
//!
//! Every version's header and section seals are in `sst_state_history`; each section version's
//! plaintext is stored once in `sst_section` (unique `(state_id, name, hash)`), so a commit
//! writes only the sections that changed and patches the current document with
//! `$set`/`$unset` of `data.<name>`; an applied event's document names the section versions it
//! disclosed (`{salt, hash}`) instead of repeating their values. The history view
//! `sst_state_versions` (where the server has views; else run [`schema::versions_pipeline`] on
//! the history) shows every version's whole `data`. State collections of the first layout (history documents carrying `data`)
//! are upgraded in place by [`sst_core::Store::migrate`].
//!
//! Integers are stored as `Int64` and every other number as `Double`, and read back into the
//! same JSON values, so section hashes recomputed from the documents match. Unique indexes
//! (`(id, version)` of the history, event ids, `(origin_node, origin_seq)`) turn concurrent
//! writers' collisions into [`sst_core::StoreError::Conflict`].
//!
//! A batch commits in one multi-document transaction on a replica set or sharded cluster, and
//! through a recoverable protocol elsewhere (see [`store`]): production deployments that
//! want transactions need a replica set (a single-node one is enough).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod config;
mod error;
pub mod schema;
pub mod store;
pub mod value;

pub use config::{CollectionNames, MongoConfig, TransactionMode};
#[cfg(feature = "fault-injection")]
pub use store::CrashPoint;
pub use store::{MongoStore, RecoveryReport};

/// Backend name used in errors and reports.
pub const NAME: &str = "mongo";
