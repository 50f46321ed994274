//! # sst-core
//!
//! The backend-agnostic heart of SST (Synchronized Systems Technology): the data model
//! ([`State`], [`Section`], [`Event`], [`Actor`], [`ContractRef`]), the cryptowrap
//! ([`Envelope`], RFC 8785 canonical JSON, domain-separated BLAKE3/SHA-256 hashing, strict
//! Ed25519 signatures), the portable-JSON profile, the section permission model, and the
//! [`Store`] contract every database adapter implements. No I/O happens here.
//!
//! A small in-memory [`MemoryStore`] is the reference implementation of the [`Store`] trait;
//! the `conformance-tests` crate runs the same behaviour suite against it and every adapter.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod canonical;
pub mod error;
mod fingerprint;
pub mod hash;
pub mod log;
pub mod memory;
pub mod model;
mod parallel;
pub mod permission;
pub mod portable;
pub mod raw;
pub mod sign;
pub mod store;
pub mod tables;
pub mod verify;

pub use error::{ConflictKind, IntegrityError, StoreError};
pub use hash::{Digest, EventId, HashAlg, Salt, SectionHash, StateRoot};
pub use log::{Checkpoint, LogEntry, LogHead, LogKind, LogRecord, SignedCheckpoint, Witnessed};
pub use memory::MemoryStore;
pub use model::{
    check_endorsements, participant_nodes, Actor, ActorChange, ActorId, ActorStatus, Base,
    BusinessEvent, CallPayload, ChangePayload, ContractDescriptor, ContractLimits, ContractRecord,
    ContractRef, CreatePayload, Disclosure, Endorsement, EndorsementError, EndorsementPolicy,
    EndorserRefusal, EngineRef, Event, EventKind, EventRecord, MigrateArgs, NodeId, NodeRegistry,
    NodeSignatureError, OriginSeq, Outcome, OutcomeKind, Parties, PayloadError, PolicyError,
    PolicyProgress, Refusal, RejectReason, Role, Section, SequencingReceipt, SignedEvent, State,
    StateId, SyncSpec, Timestamp, DEFAULT_ENDORSEMENT_TIMEOUT_MS,
};
pub use permission::{Access, ContractPolicy, SectionPolicy};
pub use sign::{
    ActorKey, CryptoError, Envelope, EnvelopeSignature, NodeKey, PublicKey, SignatureBytes,
};
pub use store::{
    check_prune_keep, check_refusal, check_sink_name, Capabilities, CommitBatch, CommitItem,
    CommitReceipt, EventFilter, PreparedBatch, Store, MAX_SINK_NAME_BYTES,
};
pub use tables::TableNames;
pub use verify::{
    verify_log, verify_store, verify_store_with, Finding, PeerTable, Rule, TrustAnchors,
    VerifyReport,
};
