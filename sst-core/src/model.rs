//! The SST data model: actors, states with hashed (and possibly redacted) sections, events
//! (intents) with their outcomes, and contract records.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical;
use crate::error::IntegrityError;
use crate::hash::{Digest, Domain, EventId, HashAlg, Hasher, Salt, SectionHash, StateRoot};
use crate::permission::ContractPolicy;
use crate::sign::{ActorKey, CryptoError, Envelope, EnvelopeSignature, PublicKey};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a string.
            pub fn new(s: impl Into<String>) -> Self {
                $name(s.into())
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

string_id!(
    /// A known actor, e.g. `acme/alice`.
    ActorId
);
string_id!(
    /// A participant's node, e.g. `acme`.
    NodeId
);
string_id!(
    /// A shared state (record), unique across the network.
    StateId
);
string_id!(
    /// A party role in a state, e.g. `buyer`, `regulator`.
    Role
);

/// Sequence number an origin node gives to each intent it initiates (1, 2, 3, …).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct OriginSeq(pub u64);

impl fmt::Display for OriginSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Milliseconds since the Unix epoch (UTC).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A contract name and version, e.g. `real-estate-deal@2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContractRef {
    /// Contract name.
    pub name: String,
    /// Contract version (1, 2, …).
    pub version: u32,
}

impl ContractRef {
    /// Builds a reference.
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        ContractRef {
            name: name.into(),
            version,
        }
    }
}

impl fmt::Display for ContractRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Whether an actor may still sign events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActorStatus {
    /// May sign events.
    Active,
    /// Its events are rejected from now on.
    Revoked,
}

impl ActorStatus {
    /// `active` / `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorStatus::Active => "active",
            ActorStatus::Revoked => "revoked",
        }
    }
}

/// A known, permissioned actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Actor id.
    pub id: ActorId,
    /// Node the actor belongs to.
    pub node: NodeId,
    /// Ed25519 public key.
    pub public_key: PublicKey,
    /// Active or revoked.
    pub status: ActorStatus,
}

/// Role → actors of a state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Parties(pub BTreeMap<Role, BTreeSet<ActorId>>);

impl Parties {
    /// Adds `actor` to `role`.
    pub fn with(mut self, role: impl Into<String>, actor: impl Into<String>) -> Self {
        self.0
            .entry(Role(role.into()))
            .or_default()
            .insert(ActorId(actor.into()));
        self
    }
    /// Roles `actor` holds in this state.
    pub fn roles_of(&self, actor: &ActorId) -> BTreeSet<Role> {
        self.0
            .iter()
            .filter(|(_, actors)| actors.contains(actor))
            .map(|(r, _)| r.clone())
            .collect()
    }
    /// Every actor that holds any role.
    pub fn actors(&self) -> BTreeSet<ActorId> {
        self.0.values().flatten().cloned().collect()
    }
}

/// The plaintext of a section version together with its salt: what a node that may read the
/// section receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disclosure {
    /// Per-section-version salt.
    pub salt: Salt,
    /// The section's JSON value.
    pub value: Value,
}

impl Disclosure {
    /// Hash of this disclosure as section `name`.
    pub fn hash(&self, alg: HashAlg, name: &str) -> SectionHash {
        let mut h = Hasher::new(alg, Domain::Section);
        h.part(name.as_bytes()).part(&self.salt.0);
        h.part(&canonical::to_vec(&self.value));
        SectionHash(h.finish())
    }
}

/// One section of a state: always its hash, and its plaintext only where the holder may read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Salted section hash.
    pub hash: SectionHash,
    /// Salt and value; `None` when redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclosure: Option<Disclosure>,
}

impl Section {
    /// Seals `value` as section `name` with a fresh random salt.
    pub fn seal(alg: HashAlg, name: &str, value: Value) -> Self {
        Self::with_salt(alg, name, Salt::random(), value)
    }
    /// Seals `value` with a given salt (receivers rebuilding a sender's section).
    pub fn with_salt(alg: HashAlg, name: &str, salt: Salt, value: Value) -> Self {
        let disclosure = Disclosure { salt, value };
        Section {
            hash: disclosure.hash(alg, name),
            disclosure: Some(disclosure),
        }
    }
    /// A redacted section: hash only.
    pub fn redacted(hash: SectionHash) -> Self {
        Section {
            hash,
            disclosure: None,
        }
    }
    /// The plaintext value, if disclosed.
    pub fn value(&self) -> Option<&Value> {
        self.disclosure.as_ref().map(|d| &d.value)
    }
    /// Whether the disclosed value (if any) still matches the hash.
    pub fn verify(&self, name: &str) -> Result<(), IntegrityError> {
        match &self.disclosure {
            Some(d) if d.hash(self.hash.0.alg(), name) != self.hash => {
                Err(IntegrityError::SectionHash {
                    section: name.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The hash and (when disclosed) salt of one section, as adapters store them beside the
/// plaintext column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSeal {
    /// Section hash.
    pub hash: SectionHash,
    /// Salt, present exactly when the plaintext is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<Salt>,
}

/// One version of a shared record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// State id.
    pub id: StateId,
    /// Contract version governing it.
    pub contract: ContractRef,
    /// Version, starting at 1.
    pub version: u64,
    /// Role → actors.
    pub parties: Parties,
    /// Section name → section.
    pub sections: BTreeMap<String, Section>,
    /// Root over header and section hashes.
    pub root: StateRoot,
    /// Root of the previous version (`None` for version 1).
    pub prev_root: Option<StateRoot>,
    /// Event that produced this version.
    pub last_event: Option<EventId>,
    /// Timestamp of that event.
    pub updated_at: Timestamp,
}

/// The columns of a stored state version, as adapters read them back.
#[derive(Debug, Clone, PartialEq)]
pub struct StateParts {
    /// State id column.
    pub id: StateId,
    /// Contract name + version columns.
    pub contract: ContractRef,
    /// Version column.
    pub version: u64,
    /// Parties JSON column.
    pub parties: Value,
    /// Section hashes + salts JSON column.
    pub seals: Value,
    /// The queryable plaintext JSON column: `{section: value}` for disclosed sections.
    pub data: Value,
    /// Root column.
    pub root: String,
    /// Previous root column.
    pub prev_root: Option<String>,
    /// Last event column.
    pub last_event: Option<String>,
    /// Updated-at column (ms since epoch).
    pub updated_at: i64,
}

impl State {
    /// Builds version 1 of a state from sealed sections.
    pub fn create(
        alg: HashAlg,
        id: StateId,
        contract: ContractRef,
        parties: Parties,
        sections: BTreeMap<String, Section>,
        last_event: Option<EventId>,
        updated_at: Timestamp,
    ) -> Self {
        let mut s = State {
            id,
            contract,
            version: 1,
            parties,
            sections,
            root: StateRoot(Digest::from_parts(alg, [0; 32])),
            prev_root: None,
            last_event,
            updated_at,
        };
        s.root = s.compute_root();
        s
    }

    /// The next version: `changes` replace (or add) sections; every other section keeps its
    /// hash. Only the changed sections and the root are re-hashed.
    pub fn next(
        &self,
        changes: BTreeMap<String, Section>,
        last_event: Option<EventId>,
        updated_at: Timestamp,
    ) -> Self {
        let mut s = self.clone();
        s.sections.extend(changes);
        s.version += 1;
        s.prev_root = Some(self.root);
        s.last_event = last_event;
        s.updated_at = updated_at;
        s.root = s.compute_root();
        s
    }

    /// Hash algorithm of this state (that of its root).
    pub fn alg(&self) -> HashAlg {
        self.root.0.alg()
    }

    /// The canonical header that the root covers (everything but sections and the root).
    pub fn header(&self) -> Value {
        serde_json::json!({
            "alg": self.alg().as_str(),
            "contract": self.contract,
            "id": self.id,
            "last_event": self.last_event,
            "parties": self.parties,
            "prev_root": self.prev_root,
            "updated_at": self.updated_at,
            "version": self.version,
        })
    }

    /// Recomputes the root from the header and the section hashes (plaintext not needed).
    pub fn compute_root(&self) -> StateRoot {
        let mut h = Hasher::new(self.alg(), Domain::State);
        h.part(&canonical::to_vec(&self.header()));
        for (name, section) in &self.sections {
            h.part(name.as_bytes());
            h.part(section.hash.0.to_string().as_bytes());
        }
        StateRoot(h.finish())
    }

    /// Checks every disclosed section against its hash and the root against header + hashes.
    /// A redacted state verifies too.
    pub fn verify(&self) -> Result<(), IntegrityError> {
        for (name, section) in &self.sections {
            section.verify(name)?;
        }
        let computed = self.compute_root();
        if computed != self.root {
            return Err(IntegrityError::Root {
                stored: self.root.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(())
    }

    /// A copy holding plaintext only for sections `readable` accepts; the others keep their
    /// hash and lose value and salt. The root is unchanged and still verifies.
    pub fn redact(&self, readable: impl Fn(&str) -> bool) -> State {
        let mut s = self.clone();
        for (name, section) in s.sections.iter_mut() {
            if !readable(name) {
                section.disclosure = None;
            }
        }
        s
    }

    /// The queryable document: `{section: value}` for every disclosed section.
    pub fn data(&self) -> Value {
        let mut m = Map::new();
        for (name, section) in &self.sections {
            if let Some(d) = &section.disclosure {
                m.insert(name.clone(), d.value.clone());
            }
        }
        Value::Object(m)
    }

    /// Section hashes and salts, the companion of [`State::data`].
    pub fn seals(&self) -> BTreeMap<String, SectionSeal> {
        self.sections
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    SectionSeal {
                        hash: s.hash,
                        salt: s.disclosure.as_ref().map(|d| d.salt),
                    },
                )
            })
            .collect()
    }

    /// Splits a state into the columns adapters store.
    pub fn to_parts(&self) -> StateParts {
        StateParts {
            id: self.id.clone(),
            contract: self.contract.clone(),
            version: self.version,
            parties: serde_json::to_value(&self.parties).unwrap_or(Value::Null),
            seals: serde_json::to_value(self.seals()).unwrap_or(Value::Null),
            data: self.data(),
            root: self.root.to_string(),
            prev_root: self.prev_root.map(|r| r.to_string()),
            last_event: self.last_event.map(|e| e.to_string()),
            updated_at: self.updated_at.0,
        }
    }

    /// Reassembles a state from stored columns. Does not verify hashes (see [`State::verify`]);
    /// fails only when the pieces cannot fit together.
    pub fn from_parts(p: StateParts) -> Result<State, IntegrityError> {
        let bad =
            |what: &str, e: &dyn fmt::Display| IntegrityError::Malformed(format!("{what}: {e}"));
        let parties: Parties = serde_json::from_value(p.parties).map_err(|e| bad("parties", &e))?;
        let seals: BTreeMap<String, SectionSeal> =
            serde_json::from_value(p.seals).map_err(|e| bad("section hashes", &e))?;
        let mut data = match p.data {
            Value::Object(m) => m,
            other => return Err(bad("data", &format!("not an object: {other}"))),
        };
        let mut sections = BTreeMap::new();
        for (name, seal) in seals {
            let value = data.remove(&name);
            let disclosure = match (seal.salt, value) {
                (Some(salt), Some(value)) => Some(Disclosure { salt, value }),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(IntegrityError::Malformed(format!(
                        "section `{name}` has a salt but no value"
                    )))
                }
                (None, Some(_)) => {
                    return Err(IntegrityError::Malformed(format!(
                        "section `{name}` is redacted but has a stored value"
                    )))
                }
            };
            sections.insert(
                name,
                Section {
                    hash: seal.hash,
                    disclosure,
                },
            );
        }
        if let Some(extra) = data.keys().next() {
            return Err(IntegrityError::Malformed(format!(
                "data holds section `{extra}` that has no section hash"
            )));
        }
        let root = p.root.parse().map_err(|e| bad("root", &e))?;
        let prev_root = p
            .prev_root
            .map(|r| r.parse())
            .transpose()
            .map_err(|e| bad("prev_root", &e))?;
        let last_event = p
            .last_event
            .map(|r| r.parse())
            .transpose()
            .map_err(|e| bad("last_event", &e))?;
        Ok(State {
            id: p.id,
            contract: p.contract,
            version: p.version,
            parties,
            sections,
            root,
            prev_root,
            last_event,
            updated_at: Timestamp(p.updated_at),
        })
    }
}

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
        let body = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut h = Hasher::new(self.alg, Domain::Event);
        h.part(&canonical::to_vec(&body));
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
        self.verify_id()
            .map_err(|e| CryptoError::Integrity(e.to_string()))?;
        let sig = self
            .signatures
            .iter()
            .find(|s| s.signer == self.event.actor)
            .ok_or_else(|| CryptoError::MissingSignature(self.event.actor.to_string()))?;
        key.verify_digest(&self.id.0, &sig.signature)
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

/// Payload of an [`EventKind::ActorChange`] event (key rotation or revocation):
/// `{"actor": <the new actor record>, "previous_key": "<hex of the key valid before>"}`.
/// Such events target the reserved state id `actor:<actor id>` (see
/// [`ActorChange::state_id`]), name the reserved contract [`ActorChange::contract`], and are
/// recorded as applied with version 0 and no state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorChange {
    /// The actor record as it is after the change.
    pub actor: Actor,
    /// The actor's public key before the change: the key the event is checked against when
    /// it is the actor's own rotation, and the key older events of the actor verify with.
    pub previous_key: PublicKey,
}

impl ActorChange {
    /// Name of the reserved contract actor-change events name.
    pub const CONTRACT: &'static str = "sst.actor";

    /// The reserved state id of `actor`'s changes: `actor:<actor id>`.
    pub fn state_id(actor: &ActorId) -> StateId {
        StateId::new(format!("actor:{actor}"))
    }
    /// The reserved contract reference (`sst.actor@1`).
    pub fn contract() -> ContractRef {
        ContractRef::new(Self::CONTRACT, 1)
    }
    /// The event payload (portable JSON).
    pub fn to_payload(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    /// Parses an event payload.
    ///
    /// # Errors
    /// When the payload is not `{"actor": {...}, "previous_key": "<hex>"}` (unknown members
    /// included) or the keys are not valid Ed25519 public keys.
    pub fn from_payload(payload: &Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(payload.clone())
    }
    /// The applied outcome's root of an actor-change event: the event id's digest (there is
    /// no state).
    pub fn root(event: EventId) -> StateRoot {
        StateRoot(event.0)
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
            RejectReason::Forbidden { .. } => "forbidden",
            RejectReason::ContractRejected { .. } => "contract_rejected",
            RejectReason::InvalidPayload { .. } => "invalid_payload",
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

/// The artifact that identifies a contract version: its section policy, methods, what it
/// supersedes and the hash of its code. Its canonical hash is the contract's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractDescriptor {
    /// Name and version.
    pub contract: ContractRef,
    /// Section read/write roles.
    pub policy: ContractPolicy,
    /// Method names the contract implements.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Earlier versions this one supersedes (their states may migrate to it).
    #[serde(default)]
    pub supersedes: Vec<ContractRef>,
    /// Hash of the contract's code artifact.
    pub code_hash: Digest,
}

/// A deployed contract version as held in the contract table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractRecord {
    /// The artifact.
    pub descriptor: ContractDescriptor,
    /// `H(sst/contract/v1, canonical(descriptor))`.
    pub identity: Digest,
    /// Who deployed it.
    pub deployer: ActorId,
    /// Deployer's signature over the identity.
    pub signature: EnvelopeSignature,
}

impl ContractRecord {
    /// Computes the identity of `descriptor` and signs it as `deployer`.
    pub fn sign(
        descriptor: ContractDescriptor,
        alg: HashAlg,
        deployer: ActorId,
        key: &ActorKey,
    ) -> Self {
        let identity = Self::identity_of(&descriptor, alg);
        ContractRecord {
            signature: EnvelopeSignature {
                signer: deployer.clone(),
                signature: key.sign_digest(&identity),
            },
            descriptor,
            identity,
            deployer,
        }
    }

    /// The identity hash of a descriptor.
    pub fn identity_of(descriptor: &ContractDescriptor, alg: HashAlg) -> Digest {
        let body = serde_json::to_value(descriptor).unwrap_or(Value::Null);
        let mut h = Hasher::new(alg, Domain::Contract);
        h.part(&canonical::to_vec(&body));
        h.finish()
    }

    /// The contract reference.
    pub fn contract(&self) -> &ContractRef {
        &self.descriptor.contract
    }

    /// Checks the identity and the deployer's strict signature.
    pub fn verify(&self, deployer_key: &PublicKey) -> Result<(), CryptoError> {
        let computed = Self::identity_of(&self.descriptor, self.identity.alg());
        if computed != self.identity {
            return Err(CryptoError::Integrity(format!(
                "contract {} identity {} does not match its descriptor ({computed})",
                self.descriptor.contract, self.identity
            )));
        }
        deployer_key.verify_digest(&self.identity, &self.signature.signature)
    }
}
