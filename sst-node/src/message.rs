//! What actors ask for ([`Intent`]), what nodes send each other ([`ProtocolEnvelope`],
//! [`AppliedChange`], [`ReplicaRefusal`], [`Acknowledged`], [`StateWitness`]), what an intent
//! became ([`Verdict`]), how far each participant node is ([`SyncStatus`], [`NodeSync`]), and
//! what the witnesses found wrong ([`WitnessAlarm`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sst_core::hash::{hash_parts, Domain};
use sst_core::{
    canonical, ActorChange, ActorId, Base, BusinessEvent, ContractRecord, ContractRef, Digest,
    Disclosure, Endorsement, EventId, NodeId, NodeKey, NodeRegistry, Outcome, Parties, PublicKey,
    Refusal, RejectReason, SectionHash, SequencingReceipt, SignatureBytes, SignedEvent, StateId,
    StateRoot, Timestamp,
};

use crate::contract::Sections;

/// A change an actor asks its node to make. The node builds, sequences and signs the event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Intent {
    /// Create a state; this node becomes its home node.
    Create {
        /// New state id (unique across the network).
        state_id: StateId,
        /// Governing contract version.
        contract: ContractRef,
        /// Role → actors.
        parties: Parties,
        /// Initial section values (each must be writable by the creator).
        sections: Sections,
    },
    /// Replace the values of named sections.
    Change {
        /// Target state.
        state_id: StateId,
        /// New section values.
        sections: Sections,
    },
    /// Call a contract method. `args` are visible to every node that receives the event.
    Call {
        /// Target state.
        state_id: StateId,
        /// Method name.
        method: String,
        /// Arguments (portable JSON).
        args: Value,
    },
    /// Move a state to a newer contract version that supersedes its current one.
    Migrate {
        /// Target state.
        state_id: StateId,
        /// New contract version.
        to: ContractRef,
    },
    /// Replace an actor's public key (an [`sst_core::EventKind::ActorChange`] event). Only
    /// the actor itself may rotate its key, signing with its current (old) key; its node
    /// sequences the event and broadcasts it to every peer node.
    RotateKey {
        /// Reserved id `actor:<actor id>` ([`ActorChange::state_id`]).
        state_id: StateId,
        /// The actor whose key changes (must be the submitting actor).
        actor: ActorId,
        /// Its new public key.
        new_key: PublicKey,
    },
    /// Revoke an actor (an [`sst_core::EventKind::ActorChange`] event): any active actor of
    /// the same node may revoke it (itself included). Its later events are rejected
    /// (`revoked_actor`) on every node.
    Revoke {
        /// Reserved id `actor:<actor id>` ([`ActorChange::state_id`]).
        state_id: StateId,
        /// The actor to revoke.
        actor: ActorId,
    },
    /// Deploy a contract version (an [`sst_core::EventKind::DeployContract`] event carrying
    /// the signed deployment record, [`DeployPayload`]): submitted as the record's deployer,
    /// sequenced by the deployer's node, installed there and on every peer node without a
    /// restart.
    Deploy {
        /// Reserved id `contract:<name>@<version>` ([`DeployPayload::state_id`]).
        state_id: StateId,
        /// The deployment record (descriptor, source for engine-run contracts, deployer's
        /// signature).
        record: Box<ContractRecord>,
    },
}

impl Intent {
    /// A create intent.
    pub fn create(
        state_id: impl Into<StateId>,
        contract: ContractRef,
        parties: Parties,
        sections: impl Into<Sections>,
    ) -> Self {
        Intent::Create {
            state_id: state_id.into(),
            contract,
            parties,
            sections: sections.into(),
        }
    }
    /// A change intent.
    pub fn change(state_id: impl Into<StateId>, sections: impl Into<Sections>) -> Self {
        Intent::Change {
            state_id: state_id.into(),
            sections: sections.into(),
        }
    }
    /// A method-call intent.
    pub fn call(state_id: impl Into<StateId>, method: impl Into<String>, args: Value) -> Self {
        Intent::Call {
            state_id: state_id.into(),
            method: method.into(),
            args,
        }
    }
    /// A key-rotation intent for `actor` (submit it as `actor`).
    pub fn rotate_key(actor: impl Into<ActorId>, new_key: PublicKey) -> Self {
        let actor = actor.into();
        Intent::RotateKey {
            state_id: ActorChange::state_id(&actor),
            actor,
            new_key,
        }
    }
    /// A revocation intent for `actor` (submit it as an active actor of the same node).
    pub fn revoke(actor: impl Into<ActorId>) -> Self {
        let actor = actor.into();
        Intent::Revoke {
            state_id: ActorChange::state_id(&actor),
            actor,
        }
    }
    /// A deployment intent for `record` (submit it as the record's deployer).
    pub fn deploy(record: ContractRecord) -> Self {
        Intent::Deploy {
            state_id: DeployPayload::state_id(record.contract()),
            record: Box::new(record),
        }
    }
    /// The target state (the reserved `actor:<id>` for actor changes, `contract:<ref>` for
    /// deployments).
    pub fn state_id(&self) -> &StateId {
        match self {
            Intent::Create { state_id, .. }
            | Intent::Change { state_id, .. }
            | Intent::Call { state_id, .. }
            | Intent::Migrate { state_id, .. }
            | Intent::RotateKey { state_id, .. }
            | Intent::Revoke { state_id, .. }
            | Intent::Deploy { state_id, .. } => state_id,
        }
    }
}

/// Payload of an [`sst_core::EventKind::DeployContract`] event: `{"record": <the signed
/// deployment record>}`. Such events are signed by the record's deployer, target the reserved
/// state id `contract:<name>@<version>` ([`DeployPayload::state_id`]), name the deployed
/// version as their contract, have no base, and are recorded as applied with version 0 and
/// the event id as root (there is no state). The deployer's node sequences them; every peer
/// node receives them (and catches up on them) and installs the version once it checked the
/// record (deployer signature, identity, source hash, and that its code loads here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployPayload {
    /// The deployment record.
    pub record: ContractRecord,
}

impl DeployPayload {
    /// Prefix of the reserved state ids of deployments.
    pub const STATE_PREFIX: &'static str = "contract:";

    /// The reserved state id of `contract`'s deployment: `contract:<name>@<version>`.
    pub fn state_id(contract: &ContractRef) -> StateId {
        StateId::new(format!("{}{contract}", Self::STATE_PREFIX))
    }
    /// Whether `state` is a deployment's reserved state id.
    pub fn is_deploy_state(state: &StateId) -> bool {
        state.as_str().starts_with(Self::STATE_PREFIX)
    }
    /// The event payload.
    pub fn to_payload(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    /// Parses an event payload.
    ///
    /// # Errors
    /// When the payload is not `{"record": {...}}` with a well-formed record.
    pub fn from_payload(payload: &Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(payload.clone())
    }
    /// The applied outcome's root of a deployment event: the event id's digest.
    pub fn root(event: EventId) -> StateRoot {
        StateRoot(event.0)
    }
}

/// An applied change as the home node distributes it to one participant node: the signed
/// event, the plaintext + salt of the changed sections **that node may read** (nothing for
/// the others), the hashes of all changed sections, and the resulting version and root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedChange {
    /// The signed intent.
    pub signed: SignedEvent,
    /// Readable changed sections: salt + value.
    pub disclosures: BTreeMap<String, Disclosure>,
    /// Every changed section's hash (readable or not).
    pub effects: BTreeMap<String, SectionHash>,
    /// Resulting state version.
    pub version: u64,
    /// Resulting root.
    pub root: StateRoot,
    /// The sequencing node's signature over `(event, state, applied version and root)`; a
    /// receiver refuses a change without a receipt that verifies under the sequencing node's
    /// registered key, and stores it unchanged with the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<SequencingReceipt>,
    /// The business events the contract method emitted (all of them, whatever sections the
    /// receiver may read: the receipt covers them). Like a call's `args`, they are seen by
    /// every participant node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub business_events: Vec<BusinessEvent>,
    /// For a contract on the `endorsed` protocol: the participant nodes' endorsements of
    /// this outcome, sorted by node (a receiver applies the change only when they meet the
    /// contract version's policy, [`sst_core::model::check_endorsements`], and stores them
    /// with the event).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endorsements: Vec<Endorsement>,
}

/// A change the home node of a state on the `endorsed` protocol sequenced tentatively and
/// asks one endorser to endorse, redacted to what that endorser may read. Nothing about it
/// is committed anywhere before the home decides; the endorser validates it against its
/// own copy as it would a received change (without applying it) and answers with an
/// [`EndorsementGiven`] or an [`EndorsementRefused`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The signed intent.
    pub signed: SignedEvent,
    /// Plaintext + salt of the changed sections the endorser may read.
    pub disclosures: BTreeMap<String, Disclosure>,
    /// Every changed section's hash (readable or not).
    pub effects: BTreeMap<String, SectionHash>,
    /// The version the change builds on (the event's base; `None` for a create).
    pub base: Option<Base>,
    /// The tentative new version.
    pub version: u64,
    /// The tentative new root.
    pub root: StateRoot,
    /// The business events the contract method emitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub business_events: Vec<BusinessEvent>,
}

impl Proposal {
    /// The proposal as the change it would become (no receipt, no endorsements yet), which
    /// the endorser checks like a received change.
    pub fn as_change(&self) -> AppliedChange {
        AppliedChange {
            signed: self.signed.clone(),
            disclosures: self.disclosures.clone(),
            effects: self.effects.clone(),
            version: self.version,
            root: self.root,
            receipt: None,
            business_events: self.business_events.clone(),
            endorsements: Vec::new(),
        }
    }
}

/// An endorser's endorsement of a [`Proposal`], as it travels back to the home node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndorsementGiven {
    /// The proposed event.
    pub event: EventId,
    /// Its state.
    pub state_id: StateId,
    /// The endorsement: the endorser's node signature over event, state, version and root.
    pub endorsement: Endorsement,
}

/// An endorser's refusal of a [`Proposal`], with its typed reason, as it travels back to the
/// home node (which names it in a `not_endorsed` rejection when the policy can no longer be
/// met).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndorsementRefused {
    /// The proposed event.
    pub event: EventId,
    /// Its state.
    pub state_id: StateId,
    /// Why the endorser refuses.
    pub reason: RejectReason,
}

/// An endorser's answer to a [`Proposal`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EndorsementAnswer {
    /// It endorses.
    Given(EndorsementGiven),
    /// It refuses.
    Refused(EndorsementRefused),
}

impl EndorsementAnswer {
    /// The proposed event.
    pub fn event(&self) -> EventId {
        match self {
            EndorsementAnswer::Given(g) => g.event,
            EndorsementAnswer::Refused(r) => r.event,
        }
    }
    /// Its state.
    pub fn state_id(&self) -> &StateId {
        match self {
            EndorsementAnswer::Given(g) => &g.state_id,
            EndorsementAnswer::Refused(r) => &r.state_id,
        }
    }
}

/// A signed intent and the plaintext + salt of the sections it writes, as its initiating
/// node forwards it to the node that sequences it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedIntent {
    /// The intent.
    pub signed: SignedEvent,
    /// Plaintext + salt of the sections it writes.
    pub disclosures: BTreeMap<String, Disclosure>,
}

/// An intent its sequencing node recorded as rejected, as the initiating node learns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// The intent.
    pub signed: SignedEvent,
    /// Why.
    pub reason: RejectReason,
    /// The sequencing node's signature over the rejection (checked, then stored with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<SequencingReceipt>,
}

/// An intent its sequencing node could not record at all (e.g. its origin sequence was
/// already used by another event): typed, though recorded nowhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentRefused {
    /// The intent's id.
    pub event: EventId,
    /// Why.
    pub reason: RejectReason,
}

/// A change a replica received but could not apply, as it travels back to the node that
/// sent it (the replica records it as an [`sst_core::Refusal`] on its own database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaRefusal {
    /// The refused event.
    pub event: EventId,
    /// Its state.
    pub state_id: StateId,
    /// The version the change would have produced.
    pub version: u64,
    /// Why the replica could not apply it.
    pub reason: RejectReason,
}

impl From<&Refusal> for ReplicaRefusal {
    fn from(r: &Refusal) -> Self {
        ReplicaRefusal {
            event: r.event,
            state_id: r.state_id.clone(),
            version: r.version,
            reason: r.reason.clone(),
        }
    }
}

/// A replica's acknowledgement of the versions it holds, cumulative per state: version `n`
/// acknowledges every version up to `n`, so one message covers a whole batch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acknowledged {
    /// State → latest version the replica holds.
    pub states: BTreeMap<StateId, u64>,
    /// The replica's signed statement of the version and root it holds, one per state of
    /// `states`: the home compares each root with its own at that version, and keeps the
    /// statement's version as what the replica acknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witness: Vec<StateWitness>,
    /// State → latest version the replica **validated** by re-executing its contract method
    /// and finding the home's result (a validating replica reads every section); versions
    /// it applied on the home's signed receipt alone are not listed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub validated: BTreeMap<StateId, u64>,
}

/// First hash part of a [`StateWitness`] digest (its own domain inside `sst/envelope/v1`).
const STATE_WITNESS_DOMAIN: &[u8] = b"sst/state-witness/v1";

/// A node's signed statement "I hold `state` at `version` with `root`", made at `at`: what a
/// replica tells the home node of a state when it acknowledges changes and when it asks for
/// what it missed. Signed with the node key, so the statement is non-repudiable: the home
/// keeps what each replica stated and raises a [`WitnessAlarm`] when a replica's root differs
/// from its own at the same version, or when a replica later states an older version than
/// it acknowledged (its database was rolled back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateWitness {
    /// The stating node.
    pub node: NodeId,
    /// The state.
    pub state_id: StateId,
    /// The version the node holds.
    pub version: u64,
    /// Its root as the node holds it.
    pub root: StateRoot,
    /// When the node read what it holds (before reading it): a statement of an older version
    /// made no later than a newer one is a late delivery, not a rollback.
    pub at: Timestamp,
    /// The node-key signature over [`StateWitness::digest`].
    pub signature: SignatureBytes,
}

impl StateWitness {
    /// The digest a statement signs: `H(sst/envelope/v1, "sst/state-witness/v1",
    /// canonical {node, state, version, root, at})` in the root's hash algorithm.
    pub fn digest(
        node: &NodeId,
        state: &StateId,
        version: u64,
        root: &StateRoot,
        at: Timestamp,
    ) -> Digest {
        let body = serde_json::json!({
            "node": node.as_str(),
            "state": state.as_str(),
            "version": version,
            "root": root.to_string(),
            "at": at.0,
        });
        hash_parts(
            root.0.alg(),
            Domain::Envelope,
            &[STATE_WITNESS_DOMAIN, &canonical::to_vec(&body)],
        )
    }

    /// `node` states, signing with `key`, that it holds `state` at `version` with `root`.
    pub fn sign(
        node: NodeId,
        key: &NodeKey,
        state: StateId,
        version: u64,
        root: StateRoot,
        at: Timestamp,
    ) -> Self {
        let signature = key.sign_digest(&Self::digest(&node, &state, version, &root, at));
        StateWitness {
            node,
            state_id: state,
            version,
            root,
            at,
            signature,
        }
    }

    /// Checks the signature against the stating node's key in `registry`.
    ///
    /// # Errors
    /// A description of what is wrong: the node is not in the registry, or the signature
    /// does not verify under its key.
    pub fn verify(&self, registry: &NodeRegistry) -> Result<(), String> {
        let key = registry
            .key(&self.node)
            .ok_or_else(|| format!("node `{}` is not in the node registry", self.node))?;
        let digest = Self::digest(
            &self.node,
            &self.state_id,
            self.version,
            &self.root,
            self.at,
        );
        key.verify_digest(&digest, &self.signature).map_err(|e| {
            format!(
                "statement of node `{}` about state {} v{} does not verify: {e}",
                self.node, self.state_id, self.version
            )
        })
    }
}

/// How far one participant node is with one state, as this node knows it: on the state's
/// home node, from the node's acknowledgements and refusals; on any node, for itself, from
/// its own store.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeSync {
    /// The participant node.
    pub node: NodeId,
    /// The latest version it acknowledged (0: none).
    pub acknowledged: u64,
    /// Why it is behind, when it refused a change of the state (the latest refusal).
    pub refusal: Option<ReplicaRefusal>,
    /// The latest version the node validated by re-executing the contract method that made
    /// it (0: none; a node that cannot read every section relies on the home's signed
    /// receipt instead and validates nothing).
    pub validated: u64,
}

impl NodeSync {
    /// A node's entry (nothing validated).
    pub fn new(node: NodeId, acknowledged: u64, refusal: Option<ReplicaRefusal>) -> Self {
        NodeSync {
            node,
            acknowledged,
            refusal,
            validated: 0,
        }
    }

    /// The same entry with the latest version the node validated by re-execution.
    pub fn with_validated(mut self, validated: u64) -> Self {
        self.validated = validated;
        self
    }
}

impl std::fmt::Display for NodeSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} holds v{}", self.node, self.acknowledged)?;
        if let Some(r) = &self.refusal {
            write!(
                f,
                " (refused v{} event {}: {} {:?})",
                r.version,
                r.event,
                r.reason.code(),
                r.reason
            )?;
        }
        Ok(())
    }
}

/// The sync status of one state ([`crate::Node::sync_status`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SyncStatus {
    /// The state.
    pub state_id: StateId,
    /// Its home node (the node that sequences it).
    pub home: NodeId,
    /// The latest version this node holds (0: none).
    pub version: u64,
    /// Every participant node this node knows about, except the home: on the home node, the
    /// other participant nodes; elsewhere, this node only.
    pub nodes: Vec<NodeSync>,
    /// Every witness alarm this node raised (about any peer, any state): a peer whose signed
    /// log checkpoints show a rolled-back or forked log, or whose checkpoint or state
    /// statement signature does not verify; a peer whose copy of a state has another root
    /// than this node's at the same version, or that states an older version of a state than
    /// it acknowledged. Changes sequenced by a node under a log alarm are refused
    /// (`bad_receipt`).
    pub witness_alarms: Vec<WitnessAlarm>,
    /// The sync protocol the state uses (`home`, `endorsed`, …; `None`: the state is not
    /// held here).
    pub protocol: Option<String>,
}

/// What a node found wrong when it compared a peer's signed log checkpoint with the latest
/// one it witnessed from that peer, or a peer's statement of a state ([`StateWitness`], a
/// change's announced root) with its own copy ([`crate::Node::witness_alarms`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WitnessAlarm {
    /// The peer whose log is in question.
    pub node: NodeId,
    /// What is wrong.
    pub kind: WitnessAlarmKind,
    /// When this node raised it.
    pub at: Timestamp,
}

/// The kind of a [`WitnessAlarm`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WitnessAlarmKind {
    /// The peer now reports a shorter log than it signed before: its tail was cut or rolled
    /// back (e.g. restarted on a truncated database).
    RolledBack {
        /// Position witnessed before.
        witnessed: u64,
        /// Position reported now.
        reported: u64,
    },
    /// The peer signed two different heads at the same position.
    Forked {
        /// The position.
        pos: u64,
    },
    /// The peer's checkpoint or state statement does not verify under its registered node
    /// key.
    BadSignature {
        /// Why.
        detail: String,
    },
    /// The peer's copy of a state and this node's have different roots at the same version
    /// (on the home: a replica's signed statement; on a replica: the root the home announced,
    /// as a change's base or result, or a version re-sent with another root).
    StateDiverged {
        /// The state.
        state: StateId,
        /// The version.
        version: u64,
        /// This node's root at that version (`None`: this node holds no such version).
        ours: Option<StateRoot>,
        /// The root the peer holds or announced.
        theirs: StateRoot,
    },
    /// The peer (a replica) now states an older version of a state than it acknowledged
    /// before: its copy was rolled back (e.g. restarted on a restored or edited database).
    StateRolledBack {
        /// The state.
        state: StateId,
        /// The version it acknowledged before.
        acknowledged: u64,
        /// The version it states now (0: it no longer holds the state).
        reported: u64,
    },
}

impl WitnessAlarmKind {
    /// Whether the alarm is about the peer's log (its checkpoints) or its signatures (a
    /// checkpoint or state statement that does not verify): then this node refuses the
    /// changes the peer sequences. State alarms concern one state and leave the peer's other
    /// states alone.
    pub fn is_about_log(&self) -> bool {
        matches!(
            self,
            WitnessAlarmKind::RolledBack { .. }
                | WitnessAlarmKind::Forked { .. }
                | WitnessAlarmKind::BadSignature { .. }
        )
    }

    /// The state the alarm is about, if it is a state alarm.
    pub fn state(&self) -> Option<&StateId> {
        match self {
            WitnessAlarmKind::StateDiverged { state, .. }
            | WitnessAlarmKind::StateRolledBack { state, .. } => Some(state),
            _ => None,
        }
    }
}

impl std::fmt::Display for WitnessAlarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            WitnessAlarmKind::RolledBack {
                witnessed,
                reported,
            } => write!(
                f,
                "node {}'s log was rolled back: it signed position {witnessed} before and \
                 reports {reported} now",
                self.node
            ),
            WitnessAlarmKind::Forked { pos } => write!(
                f,
                "node {} signed two different log heads at position {pos}",
                self.node
            ),
            WitnessAlarmKind::BadSignature { detail } => write!(
                f,
                "node {}'s signed statement does not verify: {detail}",
                self.node
            ),
            WitnessAlarmKind::StateDiverged {
                state,
                version,
                ours: Some(ours),
                theirs,
            } => write!(
                f,
                "state {state} diverged at v{version}: node {} holds root {theirs}, this node \
                 {ours}",
                self.node
            ),
            WitnessAlarmKind::StateDiverged {
                state,
                version,
                ours: None,
                theirs,
            } => write!(
                f,
                "state {state} diverged: node {} holds v{version} with root {theirs}, a \
                 version this node does not hold",
                self.node
            ),
            WitnessAlarmKind::StateRolledBack {
                state,
                acknowledged,
                reported,
            } => write!(
                f,
                "node {}'s copy of state {state} was rolled back: it acknowledged v{acknowledged} \
                 before and states v{reported} now",
                self.node
            ),
        }
    }
}

impl SyncStatus {
    /// The entry of `node`, if listed.
    pub fn node(&self, node: &NodeId) -> Option<&NodeSync> {
        self.nodes.iter().find(|n| &n.node == node)
    }
}

/// What travels between nodes: one protocol's message, tagged with the protocol's name and
/// the version of its message format, so that several sync protocols run side by side and a
/// node refuses (and logs) a protocol or version it does not speak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolEnvelope {
    /// Protocol name ([`crate::SyncProtocol::name`]).
    pub protocol: String,
    /// Version of the protocol's message format.
    pub version: u16,
    /// The protocol's message.
    pub body: Value,
}

impl ProtocolEnvelope {
    /// Wraps `body` for `protocol` at `version`.
    ///
    /// # Errors
    /// When `body` cannot be represented as JSON (e.g. a map with non-string keys).
    pub fn new<T: Serialize>(
        protocol: &str,
        version: u16,
        body: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(ProtocolEnvelope {
            protocol: protocol.to_owned(),
            version,
            body: serde_json::to_value(body)?,
        })
    }

    /// The body as the protocol's message type.
    ///
    /// # Errors
    /// When the body does not have that type's shape.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.body)
    }
}

/// What became of an intent.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// Applied: the state is now at `version` with `root`.
    Applied {
        /// Event id.
        event: EventId,
        /// New version.
        version: u64,
        /// New root.
        root: StateRoot,
    },
    /// Rejected and recorded as rejected with `reason`; nothing changed.
    Rejected {
        /// Event id.
        event: EventId,
        /// Why.
        reason: RejectReason,
    },
    /// The very same event was already recorded (a replay): nothing changed; `original` is
    /// what happened the first time.
    Duplicate {
        /// Event id.
        event: EventId,
        /// The recorded outcome.
        original: Outcome,
    },
    /// The event was refused without being recorded (a different event already holds its
    /// origin sequence; a replica refusing a change its home sent; a version gap that
    /// triggered a catch-up); nothing changed.
    Refused {
        /// Event id.
        event: EventId,
        /// Why.
        reason: RejectReason,
    },
}

impl Verdict {
    /// The event concerned.
    pub fn event(&self) -> EventId {
        match self {
            Verdict::Applied { event, .. }
            | Verdict::Rejected { event, .. }
            | Verdict::Duplicate { event, .. }
            | Verdict::Refused { event, .. } => *event,
        }
    }
    /// The verdict for a recorded outcome.
    pub fn from_outcome(event: EventId, outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Applied { version, root } => Verdict::Applied {
                event,
                version: *version,
                root: *root,
            },
            Outcome::Rejected { reason } => Verdict::Rejected {
                event,
                reason: reason.clone(),
            },
        }
    }
    /// The reason, if rejected or refused.
    pub fn reason(&self) -> Option<&RejectReason> {
        match self {
            Verdict::Rejected { reason, .. } | Verdict::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }
    /// Whether the intent was applied.
    pub fn is_applied(&self) -> bool {
        matches!(self, Verdict::Applied { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sst_core::HashAlg;

    fn root(b: u8) -> StateRoot {
        StateRoot(Digest::from_parts(HashAlg::Blake3, [b; 32]))
    }

    #[test]
    fn a_state_witness_verifies_only_as_signed_under_the_registered_key() {
        let (n, other) = (NodeId::from("n"), NodeId::from("x"));
        let key = NodeKey::from_seed([1; 32]);
        let registry = NodeRegistry::new()
            .with(n.clone(), key.public_key())
            .with(other.clone(), NodeKey::from_seed([2; 32]).public_key());
        let w = StateWitness::sign(
            n.clone(),
            &key,
            StateId::from("s"),
            3,
            root(7),
            Timestamp(1000),
        );
        assert_eq!(w.verify(&registry), Ok(()));
        // Round-trips through its wire form; unknown fields are refused.
        let json = serde_json::to_value(&w).expect("serialize");
        let back: StateWitness = serde_json::from_value(json.clone()).expect("deserialize");
        assert_eq!(back, w);
        let mut extra = json;
        extra["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<StateWitness>(extra).is_err());
        // Any field changed, or another node named, and it no longer verifies.
        let changed = [
            StateWitness {
                version: 4,
                ..w.clone()
            },
            StateWitness {
                root: root(8),
                ..w.clone()
            },
            StateWitness {
                state_id: StateId::from("t"),
                ..w.clone()
            },
            StateWitness {
                at: Timestamp(1001),
                ..w.clone()
            },
            StateWitness {
                node: other,
                ..w.clone()
            },
        ];
        for c in changed {
            assert!(c.verify(&registry).is_err(), "{c:?} verified");
        }
        let unknown = StateWitness {
            node: NodeId::from("nobody"),
            ..w
        };
        assert!(unknown
            .verify(&registry)
            .is_err_and(|e| e.contains("not in the node registry")));
    }
}
