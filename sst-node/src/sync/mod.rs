//! Sync protocols. A [`SyncProtocol`] owns everything about how the states of its contracts
//! travel between nodes: **routing** (does this node sequence an event, or forward it to
//! whom), its **messages** (inside a [`ProtocolEnvelope`] tagged with its name and version),
//! its **receive rules** (what an incoming message asks the sequencer to do, whether a
//! received change may be applied on top of the version held here), **what to send after a
//! commit** (outbox), **acknowledgements and refusals** of received changes (which it reports
//! to the node's sync ledger, [`NodeContext::note_ack`] / [`NodeContext::note_peer_refusal`]),
//! **catch-up** (also to retry refused changes once their cause is fixed), and the
//! **start / restart handshake** (including the highest origin sequence each peer recorded
//! for this node, [`NodeContext::note_origin_used`]).
//!
//! Several protocols run side by side: each contract version uses the protocol its
//! descriptor chooses (else the one a [`SyncRegistry`] routes its name to, default
//! [`HomeSync`]) and the inbox hands each envelope to the protocol it names. The sequencer
//! only executes what the protocol decides ([`Route`], [`Inbound`], [`Admission`], and for a
//! protocol that endorses, [`SyncProtocol::endorsement`]: hold the tentative outcome open
//! until endorsers answer) and runs the pipeline. [`EndorsedSync`] (`endorsed`) is the
//! second protocol: the home-node mechanics plus endorsement by participant nodes before
//! a change is committed.

pub mod endorsed;
pub mod home;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use sst_core::{
    CommitItem, ContractRef, Disclosure, EndorsementPolicy, EventId, EventRecord, NodeId,
    OriginSeq, Refusal, RejectReason, SignedCheckpoint, SignedEvent, State, StateId,
};

use crate::context::{NodeContext, ProtocolChoice};
use crate::error::NodeError;
use crate::message::{
    AppliedChange, EndorsementAnswer, ForwardedIntent, IntentRefused, Proposal, ProtocolEnvelope,
    Rejection, ReplicaRefusal, StateWitness,
};

pub use endorsed::{EndorsedMessage, EndorsedSync};
pub use home::{HomeMessage, HomeSync};

/// Who sequences an event a local actor made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// This node runs it through the pipeline and commits it.
    Here,
    /// This node forwards it to that node and waits for the outcome to come back.
    Forward(NodeId),
}

/// What an incoming protocol message asks this node to do. Messages the protocol answers
/// itself (catch-up requests, handshakes) send through [`NodeContext::send`] and yield
/// nothing here.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Inbound {
    /// Sequence an intent forwarded by the sending node (its origin): run it through the
    /// pipeline here and answer the sender ([`SyncProtocol::replay`] /
    /// [`SyncProtocol::refused`], and the change itself through [`SyncProtocol::outbound`]).
    Sequence(ForwardedIntent),
    /// Replicate a change the sending node applied, once [`SyncProtocol::admit`] admits it.
    Replicate(Box<AppliedChange>),
    /// The sequencing node recorded one of this node's intents as rejected: record it here.
    Rejected(Rejection),
    /// One of this node's intents could not be recorded by the sequencing node.
    Refused(IntentRefused),
    /// The sequencing node found the origin sequence of one of this node's intents already
    /// taken (by an intent forwarded before a crash): build it again with a sequence above
    /// `above` and forward it again.
    Resequence {
        /// The intent as first forwarded.
        event: EventId,
        /// The highest origin sequence of this node the sequencing node recorded.
        above: OriginSeq,
    },
    /// The sending node (the state's home) proposes a change for this node to endorse:
    /// validate it against this node's copy without applying it, and answer
    /// ([`SyncProtocol::answer_proposal`]).
    Propose(Box<Proposal>),
    /// An endorser answered one of this node's proposals.
    Endorsement(EndorsementAnswer),
}

/// Whether a received change may be applied on top of the version this node holds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Admission {
    /// Check it with the pipeline and apply it.
    Apply,
    /// This node already holds it (a duplicate delivery): nothing to do.
    Duplicate,
    /// Not yet: versions before it are missing here; keep the replica unchanged and send
    /// `send` (a catch-up request). Not recorded as a refusal.
    CatchUp {
        /// Messages to send.
        send: Vec<(NodeId, ProtocolEnvelope)>,
    },
    /// Drop it, logged and recorded as a refusal naming the sender, but not reported to it:
    /// the sender may not send this change (e.g. it is not the state's home node).
    Ignore {
        /// Why.
        reason: RejectReason,
    },
    /// Refuse it: keep the replica unchanged, record the refusal on this node and report it
    /// to the sender ([`SyncProtocol::refuse_change`]), and send `send`.
    Refuse {
        /// Why.
        reason: RejectReason,
        /// Messages to send.
        send: Vec<(NodeId, ProtocolEnvelope)>,
    },
}

/// A synchronisation protocol between nodes (see the module docs).
#[async_trait]
pub trait SyncProtocol: Send + Sync {
    /// Protocol name: the tag of its envelopes and its key in a [`SyncRegistry`].
    fn name(&self) -> &'static str;

    /// Version of its message format.
    fn version(&self) -> u16 {
        1
    }

    /// Whether this node understands messages of format `version` (default: its own only).
    fn accepts(&self, version: u16) -> bool {
        version == self.version()
    }

    /// Who sequences `signed`, an event a local actor just made (signed here).
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when no node can sequence it (e.g. the state is unknown);
    /// store errors.
    async fn route(&self, ctx: &NodeContext, signed: &SignedEvent) -> Result<Route, NodeError>;

    /// The message that forwards a local intent to the node that sequences it.
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when the message cannot be built.
    fn forward(
        &self,
        signed: &SignedEvent,
        disclosures: &BTreeMap<String, Disclosure>,
    ) -> Result<ProtocolEnvelope, NodeError>;

    /// Handles one message of this protocol from `from` (as the transport authenticated it;
    /// never a sender named inside the message).
    ///
    /// # Errors
    /// [`NodeError::Invalid`] for a malformed message; store errors.
    async fn receive(
        &self,
        ctx: &NodeContext,
        from: &NodeId,
        envelope: &ProtocolEnvelope,
    ) -> Result<Vec<Inbound>, NodeError>;

    /// Whether `change`, received from `from`, may be applied on top of `current` (the latest
    /// version this node holds, including versions planned earlier in the same batch).
    ///
    /// # Errors
    /// Store errors.
    async fn admit(
        &self,
        ctx: &NodeContext,
        from: &NodeId,
        change: &AppliedChange,
        current: Option<&State>,
    ) -> Result<Admission, NodeError>;

    /// Messages to send after `item` was committed because this node sequenced it (outbox:
    /// never called before the commit).
    ///
    /// # Errors
    /// Store errors while reading what to send.
    async fn outbound(
        &self,
        ctx: &NodeContext,
        item: &CommitItem,
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError>;

    /// Messages telling `peer` what became of an event it forwarded again (a replay of
    /// `record`, which is already recorded here).
    ///
    /// # Errors
    /// Store errors.
    async fn replay(
        &self,
        ctx: &NodeContext,
        record: &EventRecord,
        peer: &NodeId,
    ) -> Result<Vec<ProtocolEnvelope>, NodeError>;

    /// The message telling the node that forwarded `event` that it could not be recorded.
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when the message cannot be built.
    fn refused(&self, event: EventId, reason: &RejectReason)
        -> Result<ProtocolEnvelope, NodeError>;

    /// Messages to send when the node starts (or resyncs): announce it and ask peers for
    /// what it missed.
    ///
    /// # Errors
    /// Store errors while reading what this node holds.
    async fn start(&self, ctx: &NodeContext) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError>;

    /// A message that makes a peer which lost messages from this node (outbox overflow) ask
    /// for them again; `None` when the protocol has no such message.
    fn reconnect(&self) -> Option<ProtocolEnvelope> {
        None
    }

    /// The message carrying this node's latest signed log checkpoint to its peers (they
    /// witness it: [`NodeContext::witness`]); `None` when the protocol does not carry
    /// checkpoints (default). The node sends it after each (throttled) checkpoint through the
    /// first protocol that carries them; the protocol also sends it in its start handshake.
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when the message cannot be built.
    fn witness(
        &self,
        checkpoint: &SignedCheckpoint,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        let _ = checkpoint;
        Ok(None)
    }

    /// A start message to `peer` could not be sent (the peer is unreachable): the handshake
    /// stops waiting for its answer (default: [`NodeContext::answered`]).
    fn unreachable(&self, ctx: &NodeContext, peer: &NodeId) {
        ctx.answered(peer);
    }

    /// The message acknowledging to the node that sent changes that this node now holds
    /// the states of `witnesses` (this node's signed statements of each state's latest
    /// version and root, cumulative), and, in `validated`, the latest version of each state
    /// this node validated by re-executing its method; `None` when the protocol does not
    /// acknowledge (default).
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when the message cannot be built.
    fn acknowledge(
        &self,
        witnesses: &[StateWitness],
        validated: &BTreeMap<StateId, u64>,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        let _ = (witnesses, validated);
        Ok(None)
    }

    /// The message telling the node that sent a change that this node refused it (and
    /// recorded the refusal); `None` when the protocol has no such message (default).
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when the message cannot be built.
    fn refuse_change(
        &self,
        refusal: &ReplicaRefusal,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        let _ = refusal;
        Ok(None)
    }

    /// The message telling the node that forwarded `event` that its origin sequence is
    /// already taken here by another event, the highest of its sequences recorded here being
    /// `above`, so that it builds the intent again under a fresh sequence (default: a
    /// refusal, for protocols that cannot re-sequence).
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when the message cannot be built.
    fn resequence(&self, event: EventId, above: OriginSeq) -> Result<ProtocolEnvelope, NodeError> {
        self.refused(
            event,
            &RejectReason::InvalidPayload {
                path: "$.origin_seq".into(),
                reason: format!("origin sequence taken (highest recorded: {})", above.0),
            },
        )
    }

    /// Messages asking again for changes this node refused (`refusals`, as recorded here),
    /// once their cause may be fixed (a contract deployed, an actor registered); default:
    /// none.
    ///
    /// # Errors
    /// Store errors.
    async fn retry(
        &self,
        ctx: &NodeContext,
        refusals: &[Refusal],
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
        let _ = (ctx, refusals);
        Ok(Vec::new())
    }

    /// Whether an applied outcome of `contract` this node sequenced must be endorsed before
    /// it is committed: the endorsement policy and how long to wait (milliseconds); `None`
    /// (default): it is committed at once.
    fn endorsement(
        &self,
        ctx: &NodeContext,
        contract: &ContractRef,
    ) -> Option<(EndorsementPolicy, u64)> {
        let _ = (ctx, contract);
        None
    }

    /// Messages proposing the tentative outcome `record` (producing `state`, neither
    /// committed) to each of `endorsers`, redacted to what each may read (default: none).
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when a message cannot be built.
    fn propose(
        &self,
        ctx: &NodeContext,
        record: &EventRecord,
        state: &State,
        endorsers: &BTreeSet<NodeId>,
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
        let _ = (ctx, record, state, endorsers);
        Ok(Vec::new())
    }

    /// The message answering a proposal (default: none).
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when the message cannot be built.
    fn answer_proposal(
        &self,
        answer: &EndorsementAnswer,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        let _ = answer;
        Ok(None)
    }
}

/// The sync protocols of a node and which contract uses which: a contract version whose
/// descriptor chooses a protocol ([`sst_core::ContractDescriptor::sync`]) uses that one;
/// otherwise every contract uses the default protocol (initially [`HomeSync`]) unless
/// [`SyncRegistry::route`] names another. [`EndorsedSync`] is always registered beside the
/// default (it carries its committed changes, catch-up and handshake over [`HomeSync`]'s
/// messages, so a registry for it keeps a `home` protocol).
#[derive(Clone)]
pub struct SyncRegistry {
    default: Arc<dyn SyncProtocol>,
    by_name: BTreeMap<&'static str, Arc<dyn SyncProtocol>>,
    choice: ProtocolChoice,
}

impl Default for SyncRegistry {
    fn default() -> Self {
        Self::new(Arc::new(HomeSync::default()))
    }
}

impl std::fmt::Debug for SyncRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRegistry")
            .field("default", &self.default.name())
            .field("protocols", &self.by_name.keys().collect::<Vec<_>>())
            .field("choice", &self.choice)
            .finish()
    }
}

impl SyncRegistry {
    /// A registry where every contract uses `default`.
    pub fn new(default: Arc<dyn SyncProtocol>) -> Self {
        let choice = ProtocolChoice::new(default.name());
        let endorsed: Arc<dyn SyncProtocol> = Arc::new(EndorsedSync::default());
        let mut by_name = BTreeMap::from([(endorsed.name(), endorsed)]);
        by_name.insert(default.name(), default.clone());
        SyncRegistry {
            default,
            by_name,
            choice,
        }
    }

    /// States of contract `name` (every version) use `protocol` (builder style); the
    /// protocol is registered under its name.
    pub fn route(mut self, name: impl Into<String>, protocol: Arc<dyn SyncProtocol>) -> Self {
        self.choice.set(name, protocol.name());
        self.by_name.insert(protocol.name(), protocol);
        self
    }

    /// The protocol that synchronises states of `contract` on the node of `ctx`
    /// ([`NodeContext::protocol_of`]: its installed descriptor's choice, else the routing by
    /// name), or the default when that protocol is not registered.
    pub fn for_contract(
        &self,
        ctx: &NodeContext,
        contract: &ContractRef,
    ) -> &Arc<dyn SyncProtocol> {
        self.by_name
            .get(ctx.protocol_of(contract))
            .unwrap_or(&self.default)
    }

    /// The protocol registered under `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn SyncProtocol>> {
        self.by_name.get(name)
    }

    /// Every registered protocol.
    pub fn protocols(&self) -> impl Iterator<Item = &Arc<dyn SyncProtocol>> {
        self.by_name.values()
    }

    /// Which protocol (by name) each contract uses.
    pub fn choice(&self) -> &ProtocolChoice {
        &self.choice
    }
}

/// The applied change `record` (which produced `state`) as `node` may see it: the plaintext
/// and salt of the changed sections `node` may read, the hashes of every changed section;
/// `None` when the state's contract is not installed here.
pub fn redacted_change(
    ctx: &NodeContext,
    record: &EventRecord,
    state: &State,
    node: &NodeId,
) -> Option<AppliedChange> {
    let policy = ctx.policy(&state.contract)?;
    let readable = ctx.node_access(node, &policy, &state.parties).read;
    let effects = record
        .disclosures
        .keys()
        .filter_map(|n| state.sections.get(n).map(|s| (n.clone(), s.hash)))
        .collect();
    let disclosures = record
        .disclosures
        .iter()
        .filter(|(n, _)| readable.contains(*n))
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect();
    Some(AppliedChange {
        signed: record.signed.clone(),
        disclosures,
        effects,
        version: state.version,
        root: state.root,
        receipt: record.receipt.clone(),
        business_events: record.business_events.clone(),
        endorsements: record.endorsements.clone(),
    })
}

/// Decodes an envelope's body as a protocol's message type.
///
/// # Errors
/// [`NodeError::Invalid`] naming the protocol when the body does not have that shape.
pub fn decode<T: serde::de::DeserializeOwned>(envelope: &ProtocolEnvelope) -> Result<T, NodeError> {
    envelope
        .decode()
        .map_err(|e| NodeError::Invalid(format!("{} message: {e}", envelope.protocol)))
}

/// Wraps a protocol's message.
///
/// # Errors
/// [`NodeError::Invalid`] when the message cannot be represented as JSON.
pub fn encode<T: serde::Serialize>(
    protocol: &dyn SyncProtocol,
    message: &T,
) -> Result<ProtocolEnvelope, NodeError> {
    wrap(protocol.name(), protocol.version(), message)
}

/// Wraps a message of protocol `name` (message format `version`).
///
/// # Errors
/// [`NodeError::Invalid`] when the message cannot be represented as JSON.
pub(crate) fn wrap<T: serde::Serialize>(
    name: &str,
    version: u16,
    message: &T,
) -> Result<ProtocolEnvelope, NodeError> {
    ProtocolEnvelope::new(name, version, message)
        .map_err(|e| NodeError::Invalid(format!("{name} message: {e}")))
}
