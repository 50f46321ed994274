//! Events (intents), their signatures, outcomes and reject reasons, as recorded in a store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ActorId, ContractRef, Disclosure, NodeId, OriginSeq, SequencingReceipt, StateId, Timestamp,
};
use crate::canonical;
use crate::error::IntegrityError;
use crate::hash::{Digest, Domain, EventId, HashAlg, Hasher, StateRoot};
use crate::sign::{
    verify_strict_many, ActorKey, CryptoError, Envelope, EnvelopeSignature, PublicKey,
    SignatureBytes,
};

/// What an event intends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Create a state (version 1).
    Create,
    /// Replace the values of named sections.
    ChangeSections,
    /// Call a contract method that the contract turns into section changes.
    CallMethod,
    /// Deploy a contract version.
    DeployContract,
    /// Add, rotate or revoke an actor.
    ActorChange,
}

impl EventKind {
    /// Stable snake_case name (as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::ChangeSections => "change_sections",
            EventKind::CallMethod => "call_method",
            EventKind::DeployContract => "deploy_contract",
            EventKind::ActorChange => "actor_change",
        }
    }
}

/// The state version an event was built on ("last state event seen").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Version the initiator saw.
    pub version: u64,
    /// Root of that version.
    pub root: StateRoot,
}

/// An intent to change state. Its id is the hash of its canonical body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What kind of change.
    pub kind: EventKind,
    /// Target state.
    pub state_id: StateId,
    /// Contract version the initiator holds.
    pub contract: ContractRef,
    /// Base state version (`None` for create and non-state events).
    pub base: Option<Base>,
    /// Node that initiated the intent.
    pub origin_node: NodeId,
    /// That node's sequence number for it.
    pub origin_seq: OriginSeq,
    /// Signing actor.
    pub actor: ActorId,
    /// Kind-specific payload (portable JSON).
    pub payload: Value,
    /// Initiator's clock.
    pub timestamp: Timestamp,
    /// Hash algorithm for the id and the resulting state.
    pub alg: HashAlg,
}

impl Event {
    /// The event id: `H(sst/event/v1, canonical(body))`.
    pub fn id(&self) -> EventId {
        let mut h = Hasher::new(self.alg, Domain::Event);
        h.part(&canonical::to_vec_of(self));
        EventId(h.finish())
    }
}

/// An event with its id and signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedEvent {
    /// The body.
    pub event: Event,
    /// `event.id()` at signing time.
    pub id: EventId,
    /// Signatures over the id (normally one, by `event.actor`).
    pub signatures: Vec<EnvelopeSignature>,
}

impl SignedEvent {
    /// Computes the id and signs it as `event.actor`.
    pub fn sign(event: Event, key: &ActorKey) -> Self {
        let id = event.id();
        let signature = key.sign_digest(&id.0);
        SignedEvent {
            signatures: vec![EnvelopeSignature {
                signer: event.actor.clone(),
                signature,
            }],
            event,
            id,
        }
    }

    /// Checks that the id is the hash of the body.
    pub fn verify_id(&self) -> Result<(), IntegrityError> {
        let computed = self.event.id();
        if computed != self.id {
            return Err(IntegrityError::EventId {
                stored: self.id.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(())
    }

    /// Checks the id and a strict signature by `event.actor` under `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), CryptoError> {
        let (key, id, signature) = self.signature_to_check(key)?;
        key.verify_digest(&id, &signature)
    }

    /// What [`SignedEvent::verify`] checks besides the signature itself: the id, then the
    /// presence of a signature by `event.actor`; returns that signature with its key and
    /// message digest.
    fn signature_to_check(
        &self,
        key: &PublicKey,
    ) -> Result<(PublicKey, Digest, SignatureBytes), CryptoError> {
        self.verify_id()
            .map_err(|e| CryptoError::Integrity(e.to_string()))?;
        let sig = self
            .signatures
            .iter()
            .find(|s| s.signer == self.event.actor)
            .ok_or_else(|| CryptoError::MissingSignature(self.event.actor.to_string()))?;
        Ok((*key, self.id.0, sig.signature))
    }

    /// [`SignedEvent::verify`] for many events on up to `workers` threads (0 counts as 1):
    /// one result per `(event, key)`, in order, equal to what `event.verify(key)` returns.
    /// Each event's id is computed once; the signatures of a thread's share are checked
    /// together as in [`crate::sign::verify_strict_many`].
    pub fn verify_many(
        items: &[(&SignedEvent, PublicKey)],
        workers: usize,
    ) -> Vec<Result<(), CryptoError>> {
        crate::parallel::map_chunks(items, workers, 16, |part| {
            let mut results = Vec::with_capacity(part.len());
            let mut pending = Vec::new();
            let mut at = Vec::new();
            for (i, (signed, key)) in part.iter().enumerate() {
                match signed.signature_to_check(key) {
                    Ok(triple) => {
                        pending.push(triple);
                        at.push(i);
                        results.push(Ok(()));
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            for (i, r) in at.into_iter().zip(verify_strict_many(&pending, 1)) {
                results[i] = r;
            }
            results
        })
    }

    /// The generic cryptowrap view of this event. Its hash is the event id, computed in the
    /// `sst/event/v1` domain: check it with [`SignedEvent::verify_id`], not
    /// [`Envelope::verify_hash`] (which recomputes in the generic envelope domain); signatures
    /// verify with [`Envelope::verify_signer`].
    pub fn envelope(&self) -> Envelope {
        Envelope {
            body: serde_json::to_value(&self.event).unwrap_or(Value::Null),
            hash: self.id.0,
            signatures: self.signatures.clone(),
        }
    }
}

/// Machine-readable reason an intent was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectReason {
    /// Signature missing, malformed or not strictly valid.
    BadSignature {
        /// Details.
        detail: String,
    },
    /// The signing actor is not registered.
    UnknownActor {
        /// Actor id.
        actor: ActorId,
    },
    /// The signing actor was revoked.
    RevokedActor {
        /// Actor id.
        actor: ActorId,
    },
    /// The node does not hold the contract version the event names.
    UnknownContract {
        /// Contract reference.
        contract: ContractRef,
    },
    /// The target state does not exist.
    UnknownState,
    /// A create for a state that already exists.
    StateExists,
    /// The event's base is not the current state version.
    StaleBase {
        /// Version the event was built on.
        expected_version: u64,
        /// Current version.
        found_version: u64,
    },
    /// A touched section is not declared by the contract (a typo, or a section of another
    /// contract version).
    UnknownSection {
        /// Section name as given.
        section: String,
    },
    /// A change that touches no section (it would make a new version that changes nothing).
    EmptyChange,
    /// A create that names no parties: nobody could read or write the state.
    MissingParties,
    /// A party names an actor that is not registered on the sequencing node.
    UnknownParty {
        /// The role the actor was named in.
        role: String,
        /// The unknown actor.
        actor: ActorId,
    },
    /// The actor may not write a touched section.
    Forbidden {
        /// Section name.
        section: String,
    },
    /// The contract's logic refused the change.
    ContractRejected {
        /// Contract's message.
        message: String,
    },
    /// The contract ran out of a budget its descriptor sets (interrupt ticks, memory or
    /// stack). Budgets count deterministic progress, so the same call runs out on every node.
    ContractLimit {
        /// Which budget (`ticks`, `memory` or `stack`).
        limit: String,
        /// Details (the budget's size, what the engine reported).
        detail: String,
    },
    /// A received change carries no sequencing receipt, or one that does not verify under
    /// the sequencing node's registered key (recorded as a refusal, never as an event).
    BadReceipt {
        /// Details.
        detail: String,
    },
    /// A validating replica re-executed the contract method of a received change and got
    /// other section values or business events than the home node (recorded as a refusal,
    /// never as an event).
    ExecutionMismatch {
        /// What differs (section or business event, and both results).
        detail: String,
    },
    /// The `endorsed` protocol's policy was not met: these participant nodes refused.
    NotEndorsed {
        /// Each refusing node and its reason.
        refusals: Vec<super::EndorserRefusal>,
    },
    /// The `endorsed` protocol's policy was not met in time: these nodes did not answer.
    EndorsementTimeout {
        /// Nodes asked that did not answer.
        missing: Vec<NodeId>,
        /// The timeout (milliseconds).
        timeout_ms: u64,
    },
    /// The payload is malformed or not portable JSON.
    InvalidPayload {
        /// JSON path.
        path: String,
        /// Rule violated.
        reason: String,
    },
}

impl RejectReason {
    /// Stable snake_case code (as stored in the event table's `reason` column).
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::BadSignature { .. } => "bad_signature",
            RejectReason::UnknownActor { .. } => "unknown_actor",
            RejectReason::RevokedActor { .. } => "revoked_actor",
            RejectReason::UnknownContract { .. } => "unknown_contract",
            RejectReason::UnknownState => "unknown_state",
            RejectReason::StateExists => "state_exists",
            RejectReason::StaleBase { .. } => "stale_base",
            RejectReason::UnknownSection { .. } => "unknown_section",
            RejectReason::EmptyChange => "empty_change",
            RejectReason::MissingParties => "missing_parties",
            RejectReason::UnknownParty { .. } => "unknown_party",
            RejectReason::Forbidden { .. } => "forbidden",
            RejectReason::ContractRejected { .. } => "contract_rejected",
            RejectReason::ContractLimit { .. } => "contract_limit",
            RejectReason::InvalidPayload { .. } => "invalid_payload",
            RejectReason::BadReceipt { .. } => "bad_receipt",
            RejectReason::ExecutionMismatch { .. } => "execution_mismatch",
            RejectReason::NotEndorsed { .. } => "not_endorsed",
            RejectReason::EndorsementTimeout { .. } => "endorsement_timeout",
        }
    }
}

/// Applied or rejected (outcome without detail), for filters and columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The event changed state.
    Applied,
    /// The event was refused and changed nothing.
    Rejected,
}

impl OutcomeKind {
    /// `applied` / `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Applied => "applied",
            OutcomeKind::Rejected => "rejected",
        }
    }
}

/// What processing an event produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The event produced state version `version` with root `root` (or, for events that do
    /// not target a state, version 0 and the event's own id as root).
    Applied {
        /// New state version.
        version: u64,
        /// New root.
        root: StateRoot,
    },
    /// The event was refused.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
}

impl Outcome {
    /// Applied or rejected.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Applied { .. } => OutcomeKind::Applied,
            Outcome::Rejected { .. } => OutcomeKind::Rejected,
        }
    }
}

/// An event as recorded in a store: the signed intent, the disclosures of section values
/// this node may read, and the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The signed intent.
    pub signed: SignedEvent,
    /// Section plaintext + salts carried beside the signed body (only readable ones).
    #[serde(default)]
    pub disclosures: BTreeMap<String, Disclosure>,
    /// Applied or rejected.
    pub outcome: Outcome,
    /// The sequencing node's signature over the outcome (absent only on records written
    /// before the node signed receipts, or by tests that commit directly to a store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<SequencingReceipt>,
    /// Named business events the contract method emitted (applied events only; empty for
    /// most). Covered by the receipt and the log record, so they are as tamper-evident as the
    /// outcome they belong to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub business_events: Vec<BusinessEvent>,
    /// Endorsements of participant nodes (events of contracts on the `endorsed` protocol;
    /// empty for every other). Bound by the log record; `verify` checks them against the
    /// policy of the contract version in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endorsements: Vec<super::Endorsement>,
}

/// A named business event a contract method emitted beside its section changes (e.g.
/// `price_agreed` with the agreed amount). Notifications publish them; every participant of
/// the state receives them with the event's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessEvent {
    /// Event name chosen by the contract (portable: letters, digits, `_`, `-`, `.`).
    pub name: String,
    /// Its payload (portable JSON; `null` when the contract gave none).
    #[serde(default)]
    pub payload: Value,
}

impl EventRecord {
    /// The event id.
    pub fn id(&self) -> EventId {
        self.signed.id
    }
    /// The event body.
    pub fn event(&self) -> &Event {
        &self.signed.event
    }
}

/// A change this node received from another node but could not apply (the contract version
/// is not deployed here, an actor is unknown here, the base does not match, …). Recorded on
/// the receiving node, queryable beside the event table, reported back to the sender, and
/// cleared once the change is applied after the cause was fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The refused event.
    pub event: EventId,
    /// Its state.
    pub state_id: StateId,
    /// The state version the change would have produced.
    pub version: u64,
    /// The node that sent the change (as the transport authenticated it).
    pub from_node: NodeId,
    /// Why it could not be applied.
    pub reason: RejectReason,
    /// When it was (last) refused.
    pub at: Timestamp,
}
