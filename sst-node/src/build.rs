//! Intent building: turns an [`Intent`] into a signed event and the disclosures (plaintext +
//! salt) of the sections it writes. The sequencer builds local intents with it; tools,
//! benchmarks, examples and clients that sign their own intents use the same
//! [`EventBuilder`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use sst_core::{
    Actor, ActorChange, ActorId, ActorKey, Base, CallPayload, ChangePayload, CommitItem,
    ContractRecord, ContractRef, CreatePayload, Disclosure, Event, EventKind, EventRecord, HashAlg,
    NodeId, OriginSeq, Outcome, Section, SectionHash, SignedEvent, State, Timestamp,
};

use crate::contract::Sections;
use crate::error::NodeError;
use crate::message::{DeployPayload, Intent};
use crate::verify::Verified;

/// A signed event and the disclosures of the sections it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The signed event.
    pub signed: SignedEvent,
    /// Plaintext + salt of every section it writes (travels beside the event).
    pub disclosures: BTreeMap<String, Disclosure>,
}

impl Built {
    /// The applied record and state version a sequencing node would commit for this create
    /// or section change on top of `current`, **without** running the pipeline (no
    /// permission or contract checks): for tools and benchmarks that write a store directly.
    /// The record carries no sequencing receipt (no node sequenced it).
    /// `None` for other kinds, or when `current` does not fit (a create on an existing
    /// state, a change without one).
    pub fn applied(&self, current: Option<&State>) -> Option<CommitItem> {
        let e = &self.signed.event;
        let sections: BTreeMap<String, Section> = self
            .disclosures
            .iter()
            .map(|(n, d)| {
                let section = Section {
                    hash: d.hash(e.alg, n),
                    disclosure: Some(d.clone()),
                };
                (n.clone(), section)
            })
            .collect();
        let state = match (e.kind, current) {
            (EventKind::Create, None) => {
                let parties = CreatePayload::from_payload(&e.payload).ok()?.parties;
                State::create(
                    e.alg,
                    e.state_id.clone(),
                    e.contract.clone(),
                    parties,
                    sections,
                    Some(self.signed.id),
                    e.timestamp,
                )
            }
            (EventKind::ChangeSections, Some(cur)) => {
                cur.next(sections, Some(self.signed.id), e.timestamp)
            }
            _ => return None,
        };
        Some(CommitItem {
            event: EventRecord {
                signed: self.signed.clone(),
                disclosures: self.disclosures.clone(),
                outcome: Outcome::Applied {
                    version: state.version,
                    root: state.root,
                },
                receipt: None,
                business_events: Vec::new(),
                endorsements: Vec::new(),
            },
            state: Some(std::sync::Arc::new(state)),
        })
    }
}

/// Builds and signs events as one actor of one origin node.
pub struct EventBuilder<'a> {
    origin: NodeId,
    actor: ActorId,
    key: &'a ActorKey,
    alg: HashAlg,
}

impl std::fmt::Debug for EventBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBuilder")
            .field("origin", &self.origin)
            .field("actor", &self.actor)
            .field("alg", &self.alg)
            .finish()
    }
}

impl<'a> EventBuilder<'a> {
    /// Events of `actor` (signed with `key`) originating at node `origin`; new states hash
    /// with BLAKE3.
    pub fn new(origin: impl Into<NodeId>, actor: impl Into<ActorId>, key: &'a ActorKey) -> Self {
        EventBuilder {
            origin: origin.into(),
            actor: actor.into(),
            key,
            alg: HashAlg::Blake3,
        }
    }

    /// Hash algorithm of the states this builder creates (changes keep their state's).
    pub fn alg(mut self, alg: HashAlg) -> Self {
        self.alg = alg;
        self
    }

    /// Builds and signs the event of a state intent (create, change, call, migrate) with
    /// origin sequence `seq`, on top of `current` (the latest version of the target state,
    /// `None` for a create). Section values are sealed with fresh salts.
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when `current` is missing for a change, call or migration, or
    /// for an actor change (use [`EventBuilder::actor_change`]).
    pub fn build(
        &self,
        seq: OriginSeq,
        intent: &Intent,
        current: Option<&State>,
    ) -> Result<Built, NodeError> {
        self.build_here(seq, intent, current).map(Built::from)
    }

    /// As [`EventBuilder::build`], keeping that this node signed the event with the key.
    pub(crate) fn build_here(
        &self,
        seq: OriginSeq,
        intent: &Intent,
        current: Option<&State>,
    ) -> Result<BuiltHere, NodeError> {
        let unknown = || {
            NodeError::Invalid(format!(
                "state {} is unknown on node {}",
                intent.state_id(),
                self.origin
            ))
        };
        let base = current.map(|s| Base {
            version: s.version,
            root: s.root,
        });
        let alg = current.map_or(self.alg, State::alg);
        let (kind, contract, base, payload, disclosures) = match intent {
            Intent::Create {
                contract,
                parties,
                sections,
                ..
            } => {
                let (sections, d) = seal(alg, sections);
                let payload = CreatePayload {
                    parties: parties.clone(),
                    sections,
                }
                .to_payload();
                (EventKind::Create, contract.clone(), None, payload, d)
            }
            Intent::Change { sections, .. } => {
                let cur = current.ok_or_else(unknown)?;
                let (sections, d) = seal(alg, sections);
                let payload = ChangePayload { sections }.to_payload();
                (
                    EventKind::ChangeSections,
                    cur.contract.clone(),
                    base,
                    payload,
                    d,
                )
            }
            Intent::Call { method, args, .. } => {
                let cur = current.ok_or_else(unknown)?;
                let payload = CallPayload {
                    method: method.clone(),
                    args: args.clone(),
                }
                .to_payload();
                let contract = cur.contract.clone();
                (
                    EventKind::CallMethod,
                    contract,
                    base,
                    payload,
                    BTreeMap::new(),
                )
            }
            Intent::Migrate { to, .. } => {
                let cur = current.ok_or_else(unknown)?;
                let payload = CallPayload::migrate(cur.contract.clone()).to_payload();
                (
                    EventKind::CallMethod,
                    to.clone(),
                    base,
                    payload,
                    BTreeMap::new(),
                )
            }
            Intent::RotateKey { .. } | Intent::Revoke { .. } => {
                return Err(NodeError::Invalid(
                    "an actor change is built from the actor records".into(),
                ))
            }
            Intent::Deploy { record, .. } => return Ok(self.deploy_contract_here(seq, record)),
        };
        let event = self.event(seq, kind, intent.state_id().clone(), contract, base);
        Ok(self.sign(event, alg, payload, disclosures))
    }

    /// Builds and signs an actor change (key rotation or revocation) replacing `before` with
    /// `after`.
    pub fn actor_change(&self, seq: OriginSeq, before: &Actor, after: Actor) -> Built {
        self.actor_change_here(seq, before, after).into()
    }

    /// As [`EventBuilder::actor_change`], keeping that this node signed the event.
    pub(crate) fn actor_change_here(
        &self,
        seq: OriginSeq,
        before: &Actor,
        after: Actor,
    ) -> BuiltHere {
        let state_id = ActorChange::state_id(&after.id);
        let payload = ActorChange {
            actor: after,
            previous_key: before.public_key,
        }
        .to_payload();
        let event = self.event(
            seq,
            EventKind::ActorChange,
            state_id,
            ActorChange::contract(),
            None,
        );
        self.sign(event, self.alg, payload, BTreeMap::new())
    }

    /// Builds and signs the [`EventKind::DeployContract`] event of `record` (build it as the
    /// record's deployer: nodes refuse a deployment signed by anyone else), targeting
    /// [`DeployPayload::state_id`] and naming the deployed version as its contract.
    pub fn deploy_contract(&self, seq: OriginSeq, record: &ContractRecord) -> Built {
        self.deploy_contract_here(seq, record).into()
    }

    fn deploy_contract_here(&self, seq: OriginSeq, record: &ContractRecord) -> BuiltHere {
        let payload = DeployPayload {
            record: record.clone(),
        }
        .to_payload();
        let event = self.event(
            seq,
            EventKind::DeployContract,
            DeployPayload::state_id(record.contract()),
            record.contract().clone(),
            None,
        );
        self.sign(event, self.alg, payload, BTreeMap::new())
    }

    fn event(
        &self,
        seq: OriginSeq,
        kind: EventKind,
        state_id: sst_core::StateId,
        contract: ContractRef,
        base: Option<Base>,
    ) -> Event {
        Event {
            kind,
            state_id,
            contract,
            base,
            origin_node: self.origin.clone(),
            origin_seq: seq,
            actor: self.actor.clone(),
            payload: Value::Null,
            timestamp: Timestamp::now(),
            alg: self.alg,
        }
    }

    fn sign(
        &self,
        mut event: Event,
        alg: HashAlg,
        payload: Value,
        disclosures: BTreeMap<String, Disclosure>,
    ) -> BuiltHere {
        event.alg = alg;
        event.payload = payload;
        BuiltHere {
            verified: Verified::sign(event, self.key),
            disclosures,
        }
    }
}

/// An event built and signed on this node: [`Verified`] by construction (signed with the
/// key whose public half it records), with its disclosures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BuiltHere {
    /// The signed event.
    pub(crate) verified: Verified,
    /// Plaintext + salt of every section it writes.
    pub(crate) disclosures: BTreeMap<String, Disclosure>,
}

impl From<BuiltHere> for Built {
    fn from(b: BuiltHere) -> Self {
        Built {
            signed: b.verified.into_signed(),
            disclosures: b.disclosures,
        }
    }
}

/// Seals section values with fresh salts: the hashes (payload) and the disclosures.
fn seal(
    alg: HashAlg,
    sections: &Sections,
) -> (BTreeMap<String, SectionHash>, BTreeMap<String, Disclosure>) {
    let mut hashes = BTreeMap::new();
    let mut disclosures = BTreeMap::new();
    for (name, value) in sections.shared() {
        // The intent's value is shared with the disclosure, not copied.
        let s = Section::seal(alg, name, Arc::clone(value));
        hashes.insert(name.clone(), s.hash);
        if let Some(d) = s.disclosure {
            disclosures.insert(name.clone(), d);
        }
    }
    (hashes, disclosures)
}
