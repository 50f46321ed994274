//! # sst-store-mongo
//!
//! SST store adapter for mongo (work in progress: the `Store` implementation lands with its
//! issue; this crate deliberately contains no placeholder implementation).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

/// Backend name used in errors and reports.
pub const NAME: &str = "mongo";
