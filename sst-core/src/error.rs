//! The one error enum of the [`Store`](crate::Store) contract, and integrity errors found when
//! recomputing hashes.

use std::error::Error as StdError;

/// A recomputed hash or link does not match what is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// A disclosed section's value or salt no longer hashes to its recorded section hash.
    #[error("section `{section}`: value does not match its section hash")]
    SectionHash {
        /// Section name.
        section: String,
    },
    /// The state root recomputed from header and section hashes differs from the stored root.
    #[error("state root mismatch: stored {stored}, recomputed {computed}")]
    Root {
        /// Root as stored.
        stored: String,
        /// Root recomputed from the stored columns.
        computed: String,
    },
    /// An event's id is not the hash of its body.
    #[error("event id mismatch: stored {stored}, recomputed {computed}")]
    EventId {
        /// Id as stored.
        stored: String,
        /// Id recomputed from the body.
        computed: String,
    },
    /// The stored pieces do not fit together (e.g. a plaintext section without a hash).
    #[error("malformed stored state: {0}")]
    Malformed(String),
    /// Version `version`'s `prev_root` is not the root of the version before it.
    #[error("history chain broken at version {version}")]
    Chain {
        /// The version whose link is broken.
        version: u64,
    },
}

/// Errors of every [`Store`](crate::Store) operation, identical across backends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// An optimistic-concurrency or uniqueness check failed: someone else got there first.
    /// Retrying with a fresh base may succeed.
    #[error("conflict on {what}: expected {expected}, found {found}")]
    Conflict {
        /// What collided (e.g. `state deal-1` or `origin node-a seq 7`).
        what: String,
        /// The value the writer based its change on.
        expected: u64,
        /// The value the store holds.
        found: u64,
    },
    /// Input violates the portable-JSON profile or the commit rules; nothing was stored.
    #[error("invalid input at {path}: {reason}")]
    InvalidInput {
        /// JSON path (or field name) of the offending value.
        path: String,
        /// Rule that was violated.
        reason: String,
    },
    /// Stored data does not verify against its hashes.
    #[error("integrity violation in {what}: {source}")]
    Integrity {
        /// Which record (e.g. `state deal-1 version 3`).
        what: String,
        /// What does not match.
        source: IntegrityError,
    },
    /// The database or driver failed.
    #[error("{backend} {operation} failed{}: {source}", if *.retryable { " (retryable)" } else { "" })]
    Backend {
        /// Backend name (`sqlite`, `postgres`, …).
        backend: &'static str,
        /// Store operation that failed (`commit`, `state`, …).
        operation: &'static str,
        /// Whether retrying the same call may succeed (timeouts, lost connections, deadlocks).
        retryable: bool,
        /// The driver's error.
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl StoreError {
    /// Shorthand for a non-retryable [`StoreError::Backend`].
    pub fn backend(
        backend: &'static str,
        operation: &'static str,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StoreError::Backend {
            backend,
            operation,
            retryable: false,
            source: source.into(),
        }
    }

    /// A stored value that cannot be turned back into the model (changed behind SST's back):
    /// [`StoreError::Integrity`] on `what` with [`IntegrityError::Malformed`]`(detail)`.
    pub fn malformed(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        StoreError::Integrity {
            what: what.into(),
            source: IntegrityError::Malformed(detail.to_string()),
        }
    }

    /// Whether a retry of the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            }
        )
    }
}

impl From<crate::portable::ProfileError> for StoreError {
    fn from(e: crate::portable::ProfileError) -> Self {
        StoreError::InvalidInput {
            path: e.path,
            reason: format!("{}: {}", e.rule, e.detail),
        }
    }
}
