//! Errors of the node engine (rejections are not errors: they are [`crate::Verdict`]s).

use sst_core::{ActorId, ContractRef, EventId, NodeId, StoreError};

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
    /// A contract version could not be installed.
    #[error("contract {contract}: {reason}")]
    Contract {
        /// Contract version.
        contract: ContractRef,
        /// What is wrong.
        reason: String,
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
