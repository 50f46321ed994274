//! `CommitPlan`, the one commit decision every store calls: a unit test per rule of the
//! `Store` contract's `# Contract` section that the plan decides (duplicates, origin taken,
//! stale version, all-or-nothing), the contract redeploy rule, and a property test against an
//! independent model of those rules over random batches and random recorded tables.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::json;
use sst_core::raw::{
    CommitPlan, ContractPut, CurrentWrite, DataWrite, Lookups, RecordDigests, Recorded,
};
use sst_core::{
    CommitBatch, CommitItem, ConflictKind, ContractDescriptor, ContractPolicy, ContractRecord,
    Event, EventId, EventKind, EventRecord, HashAlg, NodeId, OriginSeq, Outcome, Section,
    SignedEvent, State, StateId, StoreError, Timestamp,
};

use common::{actor, deal_contract, deal_state};

/// An applied item writing `version` of `state` (or a rejected one when `state` is `None`),
/// originated by `node` with `seq`; `tag` keeps event ids distinct.
fn item(state: Option<(&str, u64)>, node: &str, seq: u64, tag: u64) -> CommitItem {
    let (who, key) = actor(node, "alice");
    let new_state = state.map(|(id, version)| {
        let mut s: State = deal_state(HashAlg::Blake3);
        s.id = StateId::from(id);
        s.version = version;
        s
    });
    let event = Event {
        kind: EventKind::ChangeSections,
        state_id: StateId::from(state.map_or("rejected", |(id, _)| id)),
        contract: deal_contract(),
        base: None,
        origin_node: NodeId::from(node),
        origin_seq: OriginSeq(seq),
        actor: who.id,
        payload: json!({ "tag": tag }),
        timestamp: Timestamp(1_700_000_000_000),
        alg: HashAlg::Blake3,
    };
    let signed = SignedEvent::sign(event, &key);
    let outcome = match &new_state {
        Some(s) => Outcome::Applied {
            version: s.version,
            root: s.root,
        },
        None => Outcome::Rejected {
            reason: sst_core::RejectReason::UnknownState,
        },
    };
    let mut new_state = new_state;
    if let Some(s) = new_state.as_mut() {
        s.last_event = Some(signed.id);
    }
    CommitItem {
        event: EventRecord {
            signed,
            disclosures: BTreeMap::new(),
            outcome,
            receipt: None,
            business_events: Vec::new(),
            endorsements: Vec::new(),
        },
        state: new_state.map(std::sync::Arc::new),
    }
}

fn batch(items: Vec<CommitItem>) -> CommitBatch {
    CommitBatch::new(items)
}

fn versions(pairs: &[(&str, u64)]) -> Recorded {
    Recorded {
        versions: pairs
            .iter()
            .map(|(id, v)| (StateId::from(*id), *v))
            .collect(),
        ..Recorded::default()
    }
}

fn conflict(r: Result<CommitPlan, StoreError>) -> (ConflictKind, u64, u64) {
    match r {
        Err(StoreError::Conflict {
            kind,
            expected,
            found,
            ..
        }) => (kind, expected, found),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn a_new_state_starts_at_version_1_and_is_inserted() {
    let b = batch(vec![item(Some(("s", 1)), "a", 1, 0)]);
    let plan = CommitPlan::new(&b, &Recorded::default()).expect("plan");
    assert_eq!(plan.record, vec![0]);
    assert_eq!(plan.current.len(), 1);
    assert_eq!(plan.current[0].write, CurrentWrite::Insert);
    assert_eq!(plan.receipt().committed, vec![b.items[0].event.id()]);
}

#[test]
fn a_version_must_follow_the_stored_one_exactly() {
    let b = batch(vec![item(Some(("s", 3)), "a", 1, 0)]);
    let plan = CommitPlan::new(&b, &versions(&[("s", 2)])).expect("plan");
    assert_eq!(plan.current[0].write, CurrentWrite::Update { from: 2 });
    // Stale: built on 1 while 2 is stored; ahead: built on 3 while 2 is stored.
    let stale = batch(vec![item(Some(("s", 2)), "a", 1, 0)]);
    assert_eq!(
        conflict(CommitPlan::new(&stale, &versions(&[("s", 2)]))),
        (ConflictKind::StaleVersion, 1, 2)
    );
    let ahead = batch(vec![item(Some(("s", 4)), "a", 1, 0)]);
    assert_eq!(
        conflict(CommitPlan::new(&ahead, &versions(&[("s", 2)]))),
        (ConflictKind::StaleVersion, 3, 2)
    );
    // Creating a state that exists.
    let create = batch(vec![item(Some(("s", 1)), "a", 1, 0)]);
    assert_eq!(
        conflict(CommitPlan::new(&create, &versions(&[("s", 1)]))),
        (ConflictKind::StaleVersion, 0, 1)
    );
}

#[test]
fn versions_chain_within_a_batch_and_the_current_row_holds_the_last() {
    let b = batch(vec![
        item(Some(("s", 2)), "a", 1, 0),
        item(Some(("t", 1)), "a", 2, 1),
        item(Some(("s", 3)), "a", 3, 2),
    ]);
    let plan = CommitPlan::new(&b, &versions(&[("s", 1)])).expect("plan");
    assert_eq!(plan.record, vec![0, 1, 2]);
    assert_eq!(plan.history(&b).count(), 3);
    let current: Vec<(String, u64, CurrentWrite)> = plan
        .current_states(&b)
        .map(|(s, w)| (s.id.to_string(), s.version, w))
        .collect();
    assert_eq!(
        current,
        vec![
            ("s".into(), 3, CurrentWrite::Update { from: 1 }),
            ("t".into(), 1, CurrentWrite::Insert),
        ]
    );
}

#[test]
fn a_recorded_event_is_skipped_with_its_state_version_and_the_rest_commits() {
    let b = batch(vec![
        item(Some(("s", 2)), "a", 1, 0),
        item(Some(("s", 3)), "a", 2, 1),
    ]);
    let mut recorded = versions(&[("s", 2)]);
    let dup = b.items[0].event.id();
    recorded.events.insert(dup);
    recorded
        .origins
        .insert((NodeId::from("a"), OriginSeq(1)), dup);
    let plan = CommitPlan::new(&b, &recorded).expect("plan");
    assert_eq!(plan.duplicates, vec![0]);
    assert_eq!(plan.record, vec![1]);
    let receipt = plan.receipt();
    assert_eq!(receipt.duplicates, vec![dup]);
    assert_eq!(receipt.committed, vec![b.items[1].event.id()]);
    assert_eq!(plan.current[0].write, CurrentWrite::Update { from: 2 });
}

#[test]
fn an_all_duplicate_batch_writes_nothing() {
    let b = batch(vec![item(None, "a", 1, 0)]);
    let mut recorded = Recorded::default();
    recorded.events.insert(b.items[0].event.id());
    let plan = CommitPlan::new(&b, &recorded).expect("plan");
    assert!(plan.is_empty());
    assert!(plan.current.is_empty());
}

#[test]
fn an_origin_taken_by_another_event_is_a_conflict() {
    let b = batch(vec![item(None, "a", 7, 0)]);
    let mut recorded = Recorded::default();
    recorded.origins.insert(
        (NodeId::from("a"), OriginSeq(7)),
        item(None, "a", 7, 99).event.id(),
    );
    assert_eq!(
        conflict(CommitPlan::new(&b, &recorded)),
        (ConflictKind::OriginTaken, 6, 7)
    );
}

#[test]
fn an_origin_used_twice_in_one_batch_is_a_conflict_but_other_nodes_may_reuse_the_number() {
    let twice = batch(vec![item(None, "a", 1, 0), item(None, "a", 1, 1)]);
    assert_eq!(
        conflict(CommitPlan::new(&twice, &Recorded::default())),
        (ConflictKind::OriginTaken, 0, 1)
    );
    let other = batch(vec![item(None, "a", 1, 0), item(None, "b", 1, 1)]);
    let plan = CommitPlan::new(&other, &Recorded::default()).expect("plan");
    assert_eq!(plan.record, vec![0, 1]);
}

#[test]
fn lookups_name_each_key_once_in_lock_order() {
    let b = batch(vec![
        item(Some(("t", 1)), "b", 1, 0),
        item(Some(("s", 1)), "a", 1, 1),
        item(Some(("t", 2)), "b", 2, 2),
    ]);
    let l = Lookups::of(&b);
    assert_eq!(l.states, vec![StateId::from("s"), StateId::from("t")]);
    assert_eq!(l.events.len(), 3);
    assert_eq!(
        l.origins,
        vec![
            (NodeId::from("a"), OriginSeq(1)),
            (NodeId::from("b"), OriginSeq(1)),
            (NodeId::from("b"), OriginSeq(2)),
        ]
    );
}

fn contract_record(code: &str) -> ContractRecord {
    let (who, key) = actor("a", "deployer");
    let descriptor = ContractDescriptor {
        sync: None,
        contract: deal_contract(),
        policy: ContractPolicy::default(),
        methods: vec![],
        supersedes: vec![],
        code_hash: sst_core::Digest::from_parts(HashAlg::Blake3, common::seed_of(code)),
        engine: None,
        limits: None,
    };
    ContractRecord::sign(descriptor, HashAlg::Blake3, who.id, &key)
}

#[test]
fn the_redeploy_rule_inserts_once_accepts_the_same_identity_and_refuses_another() {
    let v1 = contract_record("fn a() {}");
    let edited = contract_record("fn a() { changed }");
    assert_eq!(
        ContractPut::decide(None, &v1).expect("new"),
        ContractPut::Insert
    );
    assert_eq!(
        ContractPut::decide(Some(&v1.identity), &v1).expect("same"),
        ContractPut::AlreadyRecorded
    );
    match ContractPut::decide(Some(&v1.identity), &edited) {
        Err(e) => assert_eq!(e.conflict_kind(), Some(ConflictKind::ContractIdentity)),
        Ok(p) => panic!("a different identity under the same version was accepted: {p:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Property: the plan equals an independent, item-by-item reading of the contract.

/// One generated batch item: which state (0..3, or none for a rejection), its version, origin
/// node (0..2) and seq, and whether it is already recorded.
#[derive(Debug, Clone)]
struct Gen {
    state: Option<u8>,
    version: u64,
    node: u8,
    seq: u64,
    recorded: bool,
}

fn gen_item() -> impl Strategy<Value = Gen> {
    (
        proptest::option::of(0u8..3),
        1u64..5,
        0u8..2,
        1u64..5,
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(state, version, node, seq, recorded)| Gen {
            state,
            version,
            node,
            seq,
            recorded,
        })
}

/// The outcome the model expects: the recorded and duplicate indices, or the conflict kind.
type Expected = Result<(Vec<usize>, Vec<usize>, BTreeMap<String, (usize, u64)>), ConflictKind>;

fn model(b: &CommitBatch, r: &Recorded) -> Expected {
    let mut current: BTreeMap<StateId, u64> = r.versions.clone();
    let mut from: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut used: BTreeSet<(NodeId, OriginSeq)> = BTreeSet::new();
    let (mut rec, mut dup) = (Vec::new(), Vec::new());
    for (i, it) in b.items.iter().enumerate() {
        let id: EventId = it.event.id();
        if r.events.contains(&id) {
            dup.push(i);
            continue;
        }
        let e = it.event.event();
        let key = (e.origin_node.clone(), e.origin_seq);
        if r.origins.get(&key).is_some_and(|o| *o != id) || !used.insert(key) {
            return Err(ConflictKind::OriginTaken);
        }
        if let Some(s) = &it.state {
            let have = current.get(&s.id).copied().unwrap_or(0);
            if s.version != have + 1 {
                return Err(ConflictKind::StaleVersion);
            }
            current.insert(s.id.clone(), s.version);
            let stored = r.versions.get(&s.id).copied().unwrap_or(0);
            from.entry(s.id.to_string())
                .and_modify(|e| e.0 = i)
                .or_insert((i, stored));
        }
        rec.push(i);
    }
    Ok((rec, dup, from))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_plan_matches_the_contract_read_item_by_item(
        gens in proptest::collection::vec(gen_item(), 0..8),
        stored in proptest::collection::vec(0u64..3, 3),
        foreign in proptest::collection::vec((0u8..2, 1u64..5), 0..3),
    ) {
        let names = ["s0", "s1", "s2"];
        let nodes = ["a", "b"];
        let items: Vec<CommitItem> = gens
            .iter()
            .enumerate()
            .map(|(i, g)| {
                item(
                    g.state.map(|s| (names[usize::from(s)], g.version)),
                    nodes[usize::from(g.node)],
                    g.seq,
                    i as u64,
                )
            })
            .collect();
        let mut recorded = Recorded::default();
        for (name, v) in names.iter().zip(&stored) {
            if *v > 0 {
                recorded.versions.insert(StateId::from(*name), *v);
            }
        }
        for (n, seq) in &foreign {
            let other = item(None, nodes[usize::from(*n)], *seq, 1000 + seq).event.id();
            recorded.origins.insert((NodeId::from(nodes[usize::from(*n)]), OriginSeq(*seq)), other);
        }
        for (g, it) in gens.iter().zip(&items) {
            if g.recorded {
                let e = it.event.event();
                recorded.events.insert(it.event.id());
                recorded.origins.insert((e.origin_node.clone(), e.origin_seq), it.event.id());
            }
        }
        let b = batch(items);
        let expected = model(&b, &recorded);
        // Digests computed beforehand give exactly the same plan, log entries included; those
        // of another batch or another algorithm are not used.
        let plain = format!("{:?}", CommitPlan::new(&b, &recorded));
        let ahead = RecordDigests::of(&b, HashAlg::Blake3);
        prop_assert_eq!(&format!("{:?}", CommitPlan::new_with(&b, &recorded, Some(&ahead))), &plain);
        let mut reversed = b.clone();
        reversed.items.reverse();
        let other = RecordDigests::of(&reversed, HashAlg::Blake3);
        prop_assert_eq!(&format!("{:?}", CommitPlan::new_with(&b, &recorded, Some(&other))), &plain);
        let sha = RecordDigests::of(&b, HashAlg::Sha256);
        prop_assert_eq!(&format!("{:?}", CommitPlan::new_with(&b, &recorded, Some(&sha))), &plain);
        match (CommitPlan::new(&b, &recorded), expected) {
            (Ok(plan), Ok((rec, dup, from))) => {
                prop_assert_eq!(&plan.record, &rec);
                prop_assert_eq!(&plan.duplicates, &dup);
                let got: BTreeMap<String, (usize, u64)> = plan
                    .current
                    .iter()
                    .map(|row| {
                        let s = b.items[row.item].state.as_ref().map(|s| s.id.to_string());
                        let from = match row.write {
                            CurrentWrite::Insert => 0,
                            CurrentWrite::Update { from } => from,
                        };
                        (s.unwrap_or_default(), (row.item, from))
                    })
                    .collect();
                prop_assert_eq!(got, from);
                let receipt = plan.receipt();
                prop_assert_eq!(receipt.committed.len(), rec.len());
                prop_assert_eq!(receipt.duplicates.len(), dup.len());
            }
            (Err(e), Err(kind)) => prop_assert_eq!(e.conflict_kind(), Some(kind)),
            (got, want) => prop_assert!(false, "plan {:?} but the model says {:?}", got.map(|p| p.record), want),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// section versions and the current row's data (the section-version layout)

/// `item` carrying `state` as its new version.
fn carrying(state: &State, seq: u64) -> CommitItem {
    let mut it = item(Some((state.id.as_str(), state.version)), "a", seq, seq);
    it.event.outcome = Outcome::Applied {
        version: state.version,
        root: state.root,
    };
    it.state = Some(std::sync::Arc::new(state.clone()));
    it
}

/// `prev` with `name` set to `value` (fresh salt).
fn with_section(prev: &State, name: &str, value: serde_json::Value) -> State {
    let mut changes = BTreeMap::new();
    changes.insert(name.to_owned(), Section::seal(prev.alg(), name, value));
    prev.next(changes, None, Timestamp(1_700_000_000_001))
}

fn names(plan: &CommitPlan) -> Vec<(usize, &str)> {
    plan.sections
        .iter()
        .map(|(i, n)| (*i, n.as_str()))
        .collect()
}

#[test]
fn only_changed_sections_are_new_versions_and_the_current_row_is_patched() {
    let v1 = deal_state(HashAlg::Blake3);
    let v2 = with_section(&v1, "price", json!({"amount": 2}));
    let v3 = with_section(&v2, "inspection", json!({"radon": 1.0}));
    let b = batch(vec![carrying(&v2, 1), carrying(&v3, 2)]);
    let mut recorded = versions(&[(v1.id.as_str(), 1)]);
    recorded.seals.insert(v1.id.clone(), v1.seals());
    let plan = CommitPlan::new(&b, &recorded).expect("plan");
    assert_eq!(names(&plan), vec![(0, "price"), (1, "inspection")]);
    let written: Vec<_> = plan.section_versions(&b).collect();
    assert_eq!(written[0].hash, v2.sections["price"].hash);
    assert_eq!(written[0].value, &json!({"amount": 2}));
    assert_eq!(written[1].state, &v3.id);
    assert_eq!(plan.current.len(), 1);
    assert_eq!(plan.current[0].write, CurrentWrite::Update { from: 1 });
    assert_eq!(
        plan.current[0].data,
        DataWrite::Patch {
            set: vec!["inspection".into(), "price".into()],
            remove: vec![],
        }
    );
}

#[test]
fn a_new_state_or_unknown_seals_write_every_section_and_the_whole_document() {
    let v1 = deal_state(HashAlg::Blake3);
    let all: Vec<(usize, &str)> = v1.sections.keys().map(|n| (0, n.as_str())).collect();
    let b = batch(vec![carrying(&v1, 1)]);
    let plan = CommitPlan::new(&b, &Recorded::default()).expect("plan");
    assert_eq!(names(&plan), all);
    assert_eq!(plan.current[0].write, CurrentWrite::Insert);
    assert_eq!(plan.current[0].data, DataWrite::Whole);

    // Stored, but its seals unknown (e.g. an unreadable history row): everything again.
    let v2 = with_section(&v1, "price", json!({"amount": 3}));
    let b = batch(vec![carrying(&v2, 2)]);
    let plan = CommitPlan::new(&b, &versions(&[(v1.id.as_str(), 1)])).expect("plan");
    assert_eq!(plan.sections.len(), v2.sections.len());
    assert_eq!(plan.current[0].data, DataWrite::Whole);
}

#[test]
fn a_section_no_longer_disclosed_is_removed_and_never_written() {
    let v1 = deal_state(HashAlg::Blake3);
    let v2 = with_section(&v1, "price", json!({"amount": 4})).redact(|n| n != "price");
    let b = batch(vec![carrying(&v2, 1)]);
    let mut recorded = versions(&[(v1.id.as_str(), 1)]);
    recorded.seals.insert(v1.id.clone(), v1.seals());
    let plan = CommitPlan::new(&b, &recorded).expect("plan");
    assert!(plan.sections.is_empty(), "{:?}", plan.sections);
    assert_eq!(
        plan.current[0].data,
        DataWrite::Patch {
            set: vec![],
            remove: vec!["price".into()],
        }
    );
}

#[test]
fn a_duplicate_writes_no_section_version() {
    let v1 = deal_state(HashAlg::Blake3);
    let v2 = with_section(&v1, "price", json!({"amount": 5}));
    let it = carrying(&v2, 1);
    let mut recorded = versions(&[(v1.id.as_str(), 2)]);
    recorded.events.insert(it.event.id());
    let plan = CommitPlan::new(&batch(vec![it]), &recorded).expect("plan");
    assert!(plan.sections.is_empty() && plan.current.is_empty());
}
