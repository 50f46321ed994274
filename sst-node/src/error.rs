//! Errors of the node engine (rejections are not errors: they are [`crate::Verdict`]s).

use sst_core::{ActorId, ContractRef, Digest, EngineRef, EventId, NodeId, StoreError};

use crate::transport::TransportError;

/// Why a node operation failed. An intent that was *rejected* is not an error: it comes back
/// as [`crate::Verdict::Rejected`] and is recorded in the event table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node holds no signing key for this actor.
    #[error("node {node} holds no signing key for actor {actor}")]
    NoKey {
        /// Actor asked to sign.
        actor: ActorId,
        /// This node.
        node: NodeId,
    },
    /// The actor is not in this node's actor directory, or belongs to another node.
    #[error("actor {actor} is not a local actor of node {node}")]
    NotLocal {
        /// Actor id.
        actor: ActorId,
        /// This node.
        node: NodeId,
    },
    /// The key given for a local actor is not the public key registered for it.
    #[error("the key given for actor {actor} does not match the actor's registered public key {registered} (node {node})")]
    WrongKey {
        /// Actor id.
        actor: ActorId,
        /// The public key the actor directory holds for it (hex).
        registered: String,
        /// This node.
        node: NodeId,
    },
    /// The contract code this node holds for a name and version is not the code deployed under
    /// that name and version: the contract's source (or policy, methods, …) changed without a
    /// new version.
    #[error(
        "contract {contract}: the code held here (identity {held}) is not the code deployed as \
         {contract} (identity {deployed}); the contract's identity changed: bump its version \
         to deploy changed code"
    )]
    ContractChanged {
        /// Contract name and version.
        contract: ContractRef,
        /// Identity recorded in the contract table (signed by its deployer).
        deployed: Digest,
        /// Identity of the code this node holds.
        held: Digest,
    },
    /// A contract record in the store does not verify (its descriptor, identity or deployer
    /// signature was changed behind the node's back): the node refuses to start on it.
    #[error("contract {contract}: its record in the contract table does not verify: {problem}")]
    ContractRecord {
        /// Contract name and version.
        contract: ContractRef,
        /// What does not verify.
        problem: RecordProblem,
    },
    /// A contract version could not be installed.
    #[error("contract {contract}: {reason}")]
    Contract {
        /// Contract version.
        contract: ContractRef,
        /// What is wrong.
        reason: String,
    },
    /// A deployed contract names an engine (id and version) no engine of this node's
    /// [`crate::ContractRegistry`] runs.
    #[error("contract {contract}: engine {engine} is not available on this node")]
    UnknownEngine {
        /// Contract version.
        contract: ContractRef,
        /// The engine its descriptor names.
        engine: EngineRef,
    },
    /// An engine could not load a deployed contract artifact (or loaded another contract
    /// than the one deployed).
    #[error(transparent)]
    ContractLoad(#[from] crate::contract::LoadError),
    /// The node's key is not the key the node registry holds for this node (or the registry
    /// does not name it): its receipts and checkpoints would not verify anywhere.
    #[error("node {node}: its node key is not the key registered for it in the node registry")]
    NodeKeyNotRegistered {
        /// This node.
        node: NodeId,
    },
    /// The node's own hash-chained log, or its latest own checkpoint, does not verify: its
    /// database was changed behind its back. The node refuses to start on it.
    #[error(
        "node {node} refuses to start: its log does not verify: {}",
        .findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    LogDoesNotVerify {
        /// This node.
        node: NodeId,
        /// What does not verify ([`sst_core::verify_log`]'s findings about the log chain, the
        /// rows it binds and the checkpoints), each naming the table, the rule and the row.
        findings: Vec<sst_core::Finding>,
    },
    /// The node's sequencer is not running (node shut down or crashed).
    #[error("node {0} is stopped")]
    Stopped(NodeId),
    /// A message could not be sent.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The commit that would have recorded these events failed with a non-retryable error,
    /// so the node could not tell whether they landed (e.g. a crash between the database
    /// commit and its acknowledgement). After a restart, look them up with
    /// [`crate::Node::outcome`]: each is recorded exactly once or not at all.
    #[error("commit interrupted for {} event(s): {source}", events.len())]
    Interrupted {
        /// Events whose fate is unknown to the caller.
        events: Vec<EventId>,
        /// The store error.
        source: StoreError,
    },
    /// The message or request is malformed (names what is wrong).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// [`crate::Node::wait_for`] timed out: these nodes had not acknowledged the version
    /// (each with the refusal that holds it back, if any).
    #[error(
        "state {state_id} v{version} not acknowledged in time: {}",
        .behind.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Behind {
        /// The state waited for.
        state_id: sst_core::StateId,
        /// The version waited for.
        version: u64,
        /// The nodes that do not hold it yet, and why.
        behind: Vec<crate::message::NodeSync>,
    },
}

/// What is wrong with a stored contract record ([`NodeError::ContractRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordProblem {
    /// The stored descriptor (policy, methods, code hash, …) does not hash to the stored
    /// identity: it was edited after it was signed.
    #[error("its descriptor hashes to {computed}, not to the recorded identity {recorded}")]
    DescriptorEdited {
        /// Identity recomputed from the stored descriptor.
        computed: Digest,
        /// Identity stored in the record.
        recorded: Digest,
    },
    /// The deployer named by the record is not a known actor.
    #[error("its deployer {deployer} is not a known actor")]
    UnknownDeployer {
        /// Deployer named by the record.
        deployer: ActorId,
    },
    /// The stored source (the code artifact of an engine-run contract) does not hash to the
    /// descriptor's code hash: it was edited after it was deployed.
    #[error(
        "its stored source hashes to {computed}, not to the descriptor's code hash {code_hash}"
    )]
    SourceEdited {
        /// Hash of the stored source.
        computed: Digest,
        /// The code hash the descriptor (and so the identity) names.
        code_hash: Digest,
    },
    /// An engine-run contract's record carries no source: there is no artifact to run.
    #[error("it names an engine but carries no source")]
    SourceMissing,
    /// The deployer's signature over the identity does not verify (strict) under any key the
    /// deployer held.
    #[error("the signature of its deployer {deployer} does not verify: {detail}")]
    BadSignature {
        /// Deployer named by the record.
        deployer: ActorId,
        /// Details.
        detail: String,
    },
}
