//! # sst-store-oracle
//!
//! SST's peer tables in Oracle Database through the `oracle` crate (ODPI-C, which loads the
//! Oracle Client library at run time). State data lives in a native `JSON` column on Oracle
//! 21c and later, and in a `BLOB` column with an `IS JSON` check on 19c (chosen from the
//! server version, or configured with [`JsonColumn`]); either is queried with `JSON_VALUE`,
//! `JSON_EXISTS` or dot notation:
//!
//! ```sql
//! SELECT s.id FROM sst_state s WHERE JSON_VALUE(s.data, '$.inspection.radon' RETURNING NUMBER) > 4;
//! SELECT s.data.inspection.radon FROM sst_state s;  -- 21c JSON type, or 19c with an alias
//! ```
//!
//! States use the section-version layout: `sst_state` holds each state's id, contract, version
//! and `data` (`{section: value}`, the table to query), `sst_state_history` every version's
//! header and seals, `sst_section` each section version once (a commit writes only the changed
//! sections, and patches the current row with `JSON_TRANSFORM`), and the read-only view
//! `sst_state_versions` every version's full `data`:
//!
//! ```sql
//! SELECT v.version, v.updated_at, JSON_VALUE(v.data, '$.price.amount' RETURNING NUMBER)
//! FROM sst_state_versions v WHERE v.id = 'deal-1' ORDER BY v.version;
//! ```
//!
//! An applied event's row in `sst_event` names the section versions it disclosed
//! (`{salt, hash}`, keys of `sst_section`) instead of repeating their values.
//!
//! `migrate` upgrades state tables of the first layout (whole `data` in every history row) in
//! place; it refuses, changing nothing, a history where two versions hold one section version
//! with different values (one was edited behind SST's back).
//!
//! Unique keys serialise writers and ORA-00001 becomes [`sst_core::StoreError::Conflict`].
//! Without an Oracle Client library every call fails with DPI-1047
//! ([`store_error_is_client_missing`]).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod config;
mod error;
pub mod schema;
pub mod store;
pub mod value;

pub use config::{JsonColumn, OracleConfig, TableNames};
pub use error::{is_client_missing, store_error_is_client_missing};
pub use schema::JsonMode;
pub use store::{load_client, OracleStore};

/// Backend name used in errors and reports.
pub const NAME: &str = "oracle";
