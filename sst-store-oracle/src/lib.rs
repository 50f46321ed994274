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
