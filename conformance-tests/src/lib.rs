//! # conformance-tests
//!
//! The behaviour suite every `sst_core::Store` must pass (filled by the SQLite + conformance
//! issue).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
