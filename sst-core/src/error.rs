//! The one error enum of the [`Store`](crate::Store) contract, and integrity errors found when
//! recomputing hashes.

use std::error::Error as StdError;

use crate::model::{ContractRef, NodeId, OriginSeq, StateId};

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

/// Which commit rule a [`StoreError::Conflict`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConflictKind {
    /// An applied state version is not exactly one more than the stored version
    /// (`expected` = the version the writer built on, `found` = the stored one).
    StaleVersion,
    /// A different event already holds this `(origin_node, origin_seq)`
    /// (`expected` = the sequence before, `found` = the sequence taken).
    OriginTaken,
    /// A different contract identity is recorded under the same name and version
    /// (`expected` = `found` = the version).
    ContractIdentity,
    /// A node's checkpoint at this log position is already recorded with a different head:
    /// the node signed two histories (`expected` = `found` = the position).
    Checkpoint,
}

impl ConflictKind {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::StaleVersion => "stale_version",
            ConflictKind::OriginTaken => "origin_taken",
            ConflictKind::ContractIdentity => "contract_identity",
            ConflictKind::Checkpoint => "checkpoint",
        }
    }
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Retrying with a fresh base may succeed. Built with [`StoreError::stale_version`],
    /// [`StoreError::origin_taken`] or [`StoreError::contract_identity`].
    #[error("conflict on {what}: expected {expected}, found {found}")]
    #[non_exhaustive]
    Conflict {
        /// Which rule of the commit contract was violated.
        kind: ConflictKind,
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
    /// A table (or collection) with a peer table's name exists but is not an SST peer table
    /// of a layout this version understands: `migrate` refuses to use it and changes nothing.
    #[error("{backend} table `{table}` is not an SST peer table: {detail}")]
    Schema {
        /// Backend name.
        backend: &'static str,
        /// The table's name.
        table: String,
        /// What does not match (e.g. which column is missing).
        detail: String,
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

    /// [`StoreError::Conflict`] of kind [`ConflictKind::StaleVersion`]: the writer built on
    /// version `expected` of `state`, the store holds `found`.
    pub fn stale_version(state: &StateId, expected: u64, found: u64) -> Self {
        StoreError::Conflict {
            kind: ConflictKind::StaleVersion,
            what: format!("state {state}"),
            expected,
            found,
        }
    }

    /// [`StoreError::Conflict`] of kind [`ConflictKind::OriginTaken`]: another event holds
    /// `(node, seq)`.
    pub fn origin_taken(node: &NodeId, seq: OriginSeq) -> Self {
        StoreError::Conflict {
            kind: ConflictKind::OriginTaken,
            what: format!("origin {node} seq {seq}"),
            expected: seq.0.saturating_sub(1),
            found: seq.0,
        }
    }

    /// [`StoreError::Conflict`] of kind [`ConflictKind::Checkpoint`]: `node` already has a
    /// checkpoint at `pos` with another head.
    pub fn checkpoint_conflict(node: &NodeId, pos: u64) -> Self {
        StoreError::Conflict {
            kind: ConflictKind::Checkpoint,
            what: format!("checkpoint of node {node} at log position {pos}"),
            expected: pos,
            found: pos,
        }
    }

    /// [`StoreError::Conflict`] of kind [`ConflictKind::ContractIdentity`]: `contract` is
    /// recorded with identity `stored` (text as stored, or `(concurrent)` when another writer
    /// won a race) and a different `offered` one was put.
    pub fn contract_identity(
        contract: &ContractRef,
        stored: impl std::fmt::Display,
        offered: impl std::fmt::Display,
    ) -> Self {
        StoreError::Conflict {
            kind: ConflictKind::ContractIdentity,
            what: format!("contract {contract} (identity {stored} vs {offered})"),
            expected: u64::from(contract.version),
            found: u64::from(contract.version),
        }
    }

    /// A [`StoreError::Conflict`] of `kind` on `what`, for adapters that map an engine's
    /// unique-key violation (the race the plan could not see) onto the rule it enforces.
    pub fn conflict(
        kind: ConflictKind,
        what: impl Into<String>,
        expected: u64,
        found: u64,
    ) -> Self {
        StoreError::Conflict {
            kind,
            what: what.into(),
            expected,
            found,
        }
    }

    /// The conflict kind, when this is a [`StoreError::Conflict`].
    pub fn conflict_kind(&self) -> Option<ConflictKind> {
        match self {
            StoreError::Conflict { kind, .. } => Some(*kind),
            _ => None,
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
