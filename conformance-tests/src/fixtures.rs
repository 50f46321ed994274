//! Builders for actors, signed events and the commit items the cases feed to stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use sst_core::{
    Actor, ActorKey, ActorStatus, Base, BusinessEvent, CommitItem, ContractDescriptor,
    ContractPolicy, ContractRecord, ContractRef, Digest, Endorsement, Event, EventKind,
    EventRecord, HashAlg, NodeId, NodeKey, NodeRegistry, OriginSeq, Outcome, Parties, RejectReason,
    Section, SectionPolicy, SequencingReceipt, SignedEvent, State, StateId, StateRoot, Timestamp,
};

/// The node that sequences every fixture event (signs its receipt).
pub fn sequencer() -> (NodeId, NodeKey) {
    (
        NodeId::from("conformance-seq"),
        NodeKey::from_seed([0x5e; 32]),
    )
}

/// The node registry the cases verify against: the fixture sequencer only.
pub fn registry() -> NodeRegistry {
    let (node, key) = sequencer();
    NodeRegistry::new().with(node, key.public_key())
}

/// An event record with the fixture sequencer's receipt over its outcome.
pub fn sequenced(
    signed: SignedEvent,
    disclosures: BTreeMap<String, sst_core::Disclosure>,
    outcome: Outcome,
) -> EventRecord {
    let (node, key) = sequencer();
    let receipt = SequencingReceipt::sign(
        node,
        &key,
        &signed.id,
        &signed.event.state_id,
        &outcome,
        &[],
    );
    EventRecord {
        signed,
        disclosures,
        outcome,
        receipt: Some(receipt),
        business_events: Vec::new(),
        endorsements: Vec::new(),
    }
}

/// `item` with `events` emitted, its receipt re-signed by the fixture sequencer over them (as
/// the sequencing node signs what the contract emitted).
pub fn emitting(mut item: CommitItem, events: Vec<BusinessEvent>) -> CommitItem {
    let (node, key) = sequencer();
    let rec = &mut item.event;
    rec.receipt = Some(SequencingReceipt::sign(
        node,
        &key,
        &rec.signed.id,
        &rec.signed.event.state_id,
        &rec.outcome,
        &events,
    ));
    rec.business_events = events;
    item
}

/// Participant nodes of [`deal_parties`] that endorse in the endorsement cases: the buyer's
/// (`bank`) and the inspector's (`insp`), with deterministic node keys.
pub fn endorsers() -> Vec<(NodeId, NodeKey)> {
    vec![
        (NodeId::from("bank"), NodeKey::from_seed([0xb0; 32])),
        (NodeId::from("insp"), NodeKey::from_seed([0x15; 32])),
    ]
}

/// `item` (an applied state event) endorsed by `nodes`: each signs the item's event id, state,
/// new version and new root, as the participant nodes of an `endorsed` contract do.
///
/// # Errors
/// When `item` is not applied (a fixture misuse).
pub fn endorsed(mut item: CommitItem, nodes: &[(NodeId, NodeKey)]) -> anyhow::Result<CommitItem> {
    let rec = &mut item.event;
    let Outcome::Applied { version, root } = rec.outcome else {
        anyhow::bail!("only an applied event is endorsed, not {}", rec.id());
    };
    rec.endorsements = nodes
        .iter()
        .map(|(node, key)| {
            Endorsement::sign(
                node.clone(),
                key,
                &rec.signed.id,
                &rec.signed.event.state_id,
                version,
                &root,
            )
        })
        .collect();
    Ok(item)
}

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

/// The section hashes a create/change event signs.
fn hashes(sections: &BTreeMap<String, Section>) -> BTreeMap<String, sst_core::SectionHash> {
    sections.iter().map(|(n, s)| (n.clone(), s.hash)).collect()
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
    let payload = sst_core::CreatePayload {
        parties: parties.clone(),
        sections: hashes(&sections),
    };
    let ev = event(
        EventKind::Create,
        id,
        None,
        signer.0,
        seq,
        payload.to_payload(),
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
        sst_core::ChangePayload {
            sections: hashes(&sections),
        }
        .to_payload(),
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
        event: sequenced(
            SignedEvent::sign(ev, signer.1),
            BTreeMap::new(),
            Outcome::Rejected { reason },
        ),
        state: None,
    }
}

fn applied(signed: SignedEvent, sections: &BTreeMap<String, Section>, state: State) -> CommitItem {
    let disclosures = sections
        .iter()
        .filter_map(|(n, s)| s.disclosure.clone().map(|d| (n.clone(), d)))
        .collect();
    CommitItem {
        event: sequenced(
            signed,
            disclosures,
            Outcome::Applied {
                version: state.version,
                root: state.root,
            },
        ),
        state: Some(Arc::new(state)),
    }
}

/// `{name: value}` from pairs.
pub fn values<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Like [`create`], but the stored state (and the event's disclosures) keep plaintext only for
/// the sections in `readable`: what a node that may not read the others holds.
pub fn create_redacted(
    id: &StateId,
    parties: Parties,
    values: BTreeMap<String, Value>,
    signer: (&Actor, &ActorKey),
    seq: u64,
    readable: &[&str],
) -> CommitItem {
    let mut item = create(id, parties, values, signer, seq);
    item.event
        .disclosures
        .retain(|name, _| readable.contains(&name.as_str()));
    item.state = item
        .state
        .map(|s| Arc::new(s.redact(|name| readable.contains(&name))));
    item
}

/// An applied event that targets no state (a contract deployment): outcome version 0 with the
/// event's own id as root, and no state version.
pub fn deploy(label: &StateId, signer: (&Actor, &ActorKey), seq: u64) -> CommitItem {
    let ev = event(
        EventKind::DeployContract,
        label,
        None,
        signer.0,
        seq,
        serde_json::json!({"contract": contract().to_string()}),
    );
    let signed = SignedEvent::sign(ev, signer.1);
    let root = StateRoot(signed.id.0);
    CommitItem {
        event: sequenced(
            signed,
            BTreeMap::new(),
            Outcome::Applied { version: 0, root },
        ),
        state: None,
    }
}

/// A signed contract record `name@version` whose code hash is derived from `code`.
pub fn contract_record(
    name: &str,
    version: u32,
    code: &str,
    deployer: (&Actor, &ActorKey),
) -> ContractRecord {
    let policy = ContractPolicy::default()
        .section("common", SectionPolicy::new(["*"], ["buyer", "seller"]))
        .section(
            "price",
            SectionPolicy::new(["buyer", "seller"], ["buyer", "seller"]),
        )
        .section("inspection", SectionPolicy::new(["*"], ["inspector"]));
    let code_hash = sst_core::hash::hash_parts(
        HashAlg::Blake3,
        sst_core::hash::Domain::Contract,
        &[code.as_bytes()],
    );
    let descriptor = ContractDescriptor {
        sync: None,
        contract: ContractRef::new(name, version),
        policy,
        methods: vec!["set_price".into()],
        supersedes: Vec::new(),
        code_hash,
        engine: None,
        limits: None,
    };
    ContractRecord::sign(
        descriptor,
        HashAlg::Blake3,
        deployer.0.id.clone(),
        deployer.1,
    )
}

/// The parties of the real-estate example: buyer, seller, inspector, regulator.
pub fn deal_parties() -> Parties {
    Parties::default()
        .with("buyer", "bank/bob")
        .with("seller", "acme/alice")
        .with("inspector", "insp/ines")
        .with("regulator", "gov/greta")
}

/// The real-estate example's section values.
pub fn deal_values(price: i64, radon: f64) -> BTreeMap<String, Value> {
    values([
        (
            "common",
            serde_json::json!({"address": "12 Rue des Lilas, Lyon", "rooms": 4, "tags": ["flat", "balcony"]}),
        ),
        (
            "price",
            serde_json::json!({"amount": price, "currency": "EUR"}),
        ),
        (
            "inspection",
            serde_json::json!({"radon": radon, "inspector": "Inès Ørsted", "passed": radon <= 4.0}),
        ),
    ])
}

/// A digest that is not the hash of anything (for tests that need a foreign value).
pub fn foreign_digest(byte: u8) -> Digest {
    Digest::from_parts(HashAlg::Blake3, [byte; 32])
}
