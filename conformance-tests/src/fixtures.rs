//! Builders for actors, signed events and the commit items the cases feed to stores.

use std::collections::BTreeMap;

use serde_json::Value;
use sst_core::{
    Actor, ActorKey, ActorStatus, Base, CommitItem, ContractRef, Event, EventKind, EventRecord,
    HashAlg, NodeId, OriginSeq, Outcome, Parties, RejectReason, Section, SignedEvent, State,
    StateId, Timestamp,
};

/// A deterministic test actor `node/name` with its key.
pub fn actor(node: &str, name: &str) -> (Actor, ActorKey) {
    let mut seed = [0u8; 32];
    for (i, b) in format!("{node}/{name}").bytes().enumerate() {
        seed[i % 32] ^= b.wrapping_add(i as u8);
    }
    let key = ActorKey::from_seed(seed);
    let actor = Actor {
        id: format!("{node}/{name}").into(),
        node: NodeId::from(node),
        public_key: key.public_key(),
        status: ActorStatus::Active,
    };
    (actor, key)
}

/// The contract the fixtures use.
pub fn contract() -> ContractRef {
    ContractRef::new("conformance", 1)
}

/// A unique state id in a case's namespace.
pub fn state_id(prefix: &str) -> StateId {
    StateId(format!("{prefix}-{}", uuid::Uuid::new_v4()))
}

fn event(
    kind: EventKind,
    state_id: &StateId,
    base: Option<Base>,
    signer: &Actor,
    seq: u64,
    payload: Value,
) -> Event {
    Event {
        kind,
        state_id: state_id.clone(),
        contract: contract(),
        base,
        origin_node: signer.node.clone(),
        origin_seq: OriginSeq(seq),
        actor: signer.id.clone(),
        payload,
        timestamp: Timestamp(1_700_000_000_000 + seq as i64),
        alg: HashAlg::Blake3,
    }
}

fn payload_for(sections: &BTreeMap<String, Section>) -> Value {
    let hashes: serde_json::Map<String, Value> = sections
        .iter()
        .map(|(n, s)| (n.clone(), Value::String(s.hash.to_string())))
        .collect();
    serde_json::json!({ "sections": hashes })
}

/// Seals plain section values with fresh salts.
pub fn seal_all(values: BTreeMap<String, Value>) -> BTreeMap<String, Section> {
    values
        .into_iter()
        .map(|(n, v)| {
            let s = Section::seal(HashAlg::Blake3, &n, v);
            (n, s)
        })
        .collect()
}

/// A create event for `id` (origin seq `seq` of the signer's node) and its version-1 state.
pub fn create(
    id: &StateId,
    parties: Parties,
    values: BTreeMap<String, Value>,
    signer: (&Actor, &ActorKey),
    seq: u64,
) -> CommitItem {
    let sections = seal_all(values);
    let ev = event(
        EventKind::Create,
        id,
        None,
        signer.0,
        seq,
        payload_for(&sections),
    );
    let signed = SignedEvent::sign(ev, signer.1);
    let state = State::create(
        HashAlg::Blake3,
        id.clone(),
        contract(),
        parties,
        sections.clone(),
        Some(signed.id),
        signed.event.timestamp,
    );
    applied(signed, &sections, state)
}

/// A change event on top of `prev` and the state version it produces.
pub fn change(
    prev: &State,
    values: BTreeMap<String, Value>,
    signer: (&Actor, &ActorKey),
    seq: u64,
) -> CommitItem {
    let sections = seal_all(values);
    let base = Base {
        version: prev.version,
        root: prev.root,
    };
    let ev = event(
        EventKind::ChangeSections,
        &prev.id,
        Some(base),
        signer.0,
        seq,
        payload_for(&sections),
    );
    let signed = SignedEvent::sign(ev, signer.1);
    let state = prev.next(sections.clone(), Some(signed.id), signed.event.timestamp);
    applied(signed, &sections, state)
}

/// A rejected change intent on `id` with `reason`.
pub fn rejected(
    id: &StateId,
    base: Option<Base>,
    signer: (&Actor, &ActorKey),
    seq: u64,
    reason: RejectReason,
) -> CommitItem {
    let ev = event(
        EventKind::ChangeSections,
        id,
        base,
        signer.0,
        seq,
        serde_json::json!({"sections": {}}),
    );
    CommitItem {
        event: EventRecord {
            signed: SignedEvent::sign(ev, signer.1),
            disclosures: BTreeMap::new(),
            outcome: Outcome::Rejected { reason },
        },
        state: None,
    }
}

fn applied(signed: SignedEvent, sections: &BTreeMap<String, Section>, state: State) -> CommitItem {
    let disclosures = sections
        .iter()
        .filter_map(|(n, s)| s.disclosure.clone().map(|d| (n.clone(), d)))
        .collect();
    CommitItem {
        event: EventRecord {
            signed,
            disclosures,
            outcome: Outcome::Applied {
                version: state.version,
                root: state.root,
            },
        },
        state: Some(state),
    }
}

/// `{name: value}` from pairs.
pub fn values<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
