//! # conformance-tests
//!
//! The behaviour suite that defines the [`sst_core::Store`] contract. Every adapter calls it
//! from its own `tests/conformance.rs` in one line:
//!
//! ```ignore
//! async fn factory() -> anyhow::Result<Option<MyFactory>> { /* None = skip (no server URL) */ }
//! conformance_tests::suite!(factory());
//! ```
//!
//! which expands to one `#[tokio::test]` per case, so `cargo test` reports each case by name.
//! Each case gets a fresh namespace (database, schema, file or collection prefix) from the
//! factory, and raw access to the native column for the tamper and redaction cases.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod cases;
pub mod fixtures;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sst_core::{StateId, Store};

/// Access to a store's raw tables behind its back, the way a DBA or an attacker with SQL
/// access would change them. Implemented per adapter with a raw SQL/driver statement on the
/// native JSON column.
#[async_trait]
pub trait RawAccess: Send + Sync {
    /// The queryable data document (`{section: value}`) stored for `version` of `id`, read
    /// from the history table (or the only table holding that version).
    async fn raw_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>>;
    /// The stored section hashes/salts document for `version` of `id`.
    async fn raw_seals(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>>;
    /// Overwrites the data document of `version` of `id` in every table that holds that
    /// version (current-state table included when it is the latest).
    async fn set_raw_data(&self, id: &StateId, version: u64, data: Value) -> anyhow::Result<()>;
    /// Swaps the stored data documents of history versions `a` and `b` of `id`.
    async fn swap_history_data(&self, id: &StateId, a: u64, b: u64) -> anyhow::Result<()>;
}

/// An opened store under test with raw access to the same database.
#[derive(Clone)]
pub struct Backend {
    /// The store (already migrated).
    pub store: Arc<dyn Store>,
    /// Raw access to its tables.
    pub raw: Arc<dyn RawAccess>,
}

/// Opens stores for one test case. One factory = one fresh namespace.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// Opens (and migrates) the store on this factory's namespace.
    async fn open(&self) -> anyhow::Result<Backend>;
    /// Opens a new, independent handle on the same namespace (durability / reopen cases).
    /// Stores without durability return the same data they would after a process restart:
    /// i.e. nothing; they declare `durable: false` in their capabilities.
    async fn reopen(&self) -> anyhow::Result<Backend>;
}

/// For server-backed suites: `Ok(None)` (skip, with a loud message) when `var` is unset,
/// unless `SST_REQUIRE_BACKEND=1`, in which case a missing URL fails the test.
///
/// # Errors
/// When the variable is unset and `SST_REQUIRE_BACKEND=1`.
pub fn url_or_skip(var: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Some(v)),
        _ if std::env::var("SST_REQUIRE_BACKEND").as_deref() == Ok("1") => {
            anyhow::bail!("{var} is not set and SST_REQUIRE_BACKEND=1")
        }
        _ => {
            eprintln!("skipping: set {var}");
            Ok(None)
        }
    }
}

/// Expands to one `#[tokio::test]` per conformance case. `$factory` is an expression of type
/// `impl Future<Output = anyhow::Result<Option<impl BackendFactory>>>`, evaluated once per case
/// (`None` skips the case). The calling crate needs `tokio` (macros, rt-multi-thread) and
/// `anyhow` as dev-dependencies.
#[macro_export]
macro_rules! suite {
    ($factory:expr) => {
        $crate::suite!(@cases $factory;
            migrate_is_idempotent,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> anyhow::Result<()> {
                match $factory.await? {
                    Some(factory) => $crate::cases::$case(&factory).await,
                    None => Ok(()),
                }
            }
        )*
    };
}
