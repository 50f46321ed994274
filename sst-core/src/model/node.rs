//! Node identity: the network's node registry (node id → node public key, from configuration)
//! and the receipt a sequencing node signs over each event's outcome.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::hash::{hash_parts, Digest, Domain, EventId};
use crate::model::{BusinessEvent, EventRecord, NodeId, Outcome, StateId};
use crate::sign::{CryptoError, NodeKey, PublicKey, SignatureBytes};

/// The network's nodes and their public node keys. It comes from configuration (each
/// participant's node config lists its peers with their keys), never from a peer table, so a
/// database edit cannot add or replace a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeRegistry(pub BTreeMap<NodeId, PublicKey>);

impl NodeRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a node's key; returns `self` for chaining.
    pub fn with(mut self, node: NodeId, key: PublicKey) -> Self {
        self.0.insert(node, key);
        self
    }

    /// The key of `node`, if it is a member.
    pub fn key(&self, node: &NodeId) -> Option<&PublicKey> {
        self.0.get(node)
    }

    /// Member nodes, sorted.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.0.keys()
    }

    /// Whether the registry names no node.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a receipt or checkpoint signed by a node does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeSignatureError {
    /// The signing node is not in the registry.
    #[error("node `{0}` is not in the node registry")]
    UnknownNode(NodeId),
    /// The signature does not verify strictly under the node's registered key.
    #[error("signature of node `{node}` does not verify: {source}")]
    BadSignature {
        /// Signing node.
        node: NodeId,
        /// Why.
        source: CryptoError,
    },
}

/// Verifies `signature` by `node` over `digest` against `registry`.
pub(crate) fn verify_node_signature(
    registry: &NodeRegistry,
    node: &NodeId,
    digest: &Digest,
    signature: &SignatureBytes,
) -> Result<(), NodeSignatureError> {
    let key = registry
        .key(node)
        .ok_or_else(|| NodeSignatureError::UnknownNode(node.clone()))?;
    key.verify_digest(digest, signature)
        .map_err(|source| NodeSignatureError::BadSignature {
            node: node.clone(),
            source,
        })
}

/// The sequencing node's signature over an event's outcome: `(event id, state id, outcome)`,
/// where the outcome is the new version and root of an applied event, or the reason of a
/// rejected one. It makes "who ordered what" non-repudiable, and a relabelled outcome (a
/// rejected event marked applied, a rewritten version or root) detectable without trusting
/// the table the event sits in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequencingReceipt {
    /// The node that sequenced the event.
    pub node: NodeId,
    /// Its node-key signature over [`SequencingReceipt::digest`].
    pub signature: SignatureBytes,
}

/// What a receipt signs (see [`SequencingReceipt::digest`]), borrowed from its parts.
#[derive(Serialize)]
struct ReceiptBody<'a> {
    event: &'a EventId,
    state: &'a str,
    outcome: &'a Outcome,
    #[serde(skip_serializing_if = "<[BusinessEvent]>::is_empty")]
    business_events: &'a [BusinessEvent],
}

impl SequencingReceipt {
    /// The digest a receipt signs: `H(sst/receipt/v1, canonical {event, state, outcome})`,
    /// in the event id's hash algorithm; the body also names the emitted `business_events`
    /// when there are any (so receipts of events without them are unchanged).
    pub fn digest(
        event: &EventId,
        state: &StateId,
        outcome: &Outcome,
        business_events: &[BusinessEvent],
    ) -> Digest {
        let body = ReceiptBody {
            event,
            state: state.as_str(),
            outcome,
            business_events,
        };
        hash_parts(
            event.0.alg(),
            Domain::Receipt,
            &[&canonical::to_vec_of(&body)],
        )
    }

    /// The digest of a record's receipt ([`SequencingReceipt::digest`] of its parts).
    pub fn digest_of(record: &EventRecord) -> Digest {
        Self::digest(
            &record.id(),
            &record.event().state_id,
            &record.outcome,
            &record.business_events,
        )
    }

    /// `node` signs the outcome (and business events) of `event` on `state`.
    pub fn sign(
        node: NodeId,
        key: &NodeKey,
        event: &EventId,
        state: &StateId,
        outcome: &Outcome,
        business_events: &[BusinessEvent],
    ) -> Self {
        SequencingReceipt {
            node,
            signature: key.sign_digest(&Self::digest(event, state, outcome, business_events)),
        }
    }

    /// Checks the receipt over a record's event, state, outcome and business events against
    /// the registry.
    ///
    /// # Errors
    /// [`NodeSignatureError`] when the node is unknown or the signature does not verify.
    pub fn verify(
        &self,
        registry: &NodeRegistry,
        record: &EventRecord,
    ) -> Result<(), NodeSignatureError> {
        self.verify_digest(registry, &Self::digest_of(record))
    }

    /// Checks the receipt over an already computed [`SequencingReceipt::digest`].
    ///
    /// # Errors
    /// [`NodeSignatureError`] when the node is unknown or the signature does not verify.
    pub fn verify_digest(
        &self,
        registry: &NodeRegistry,
        digest: &Digest,
    ) -> Result<(), NodeSignatureError> {
        verify_node_signature(registry, &self.node, digest, &self.signature)
    }
}
