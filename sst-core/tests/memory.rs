//! `verify_store` over the in-memory reference store (clean store, a tampered version, a
//! broken chain, a missing version, forged event signatures), and `CommitBatch::validate`
//! refusing each portable-profile counterexample inside a section value, a payload or a
//! disclosure with the right path, leaving the store unchanged; business events, sink names
//! and the prune `keep` checked the same way.

mod common;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sst_core::portable::{MAX_DEPTH, MAX_STATE_BYTES};
use sst_core::{
    verify_store, Actor, ActorChange, ActorKey, Base, CommitBatch, CommitItem, Digest, Event,
    EventFilter, EventKind, EventRecord, HashAlg, MemoryStore, NodeId, OriginSeq, Outcome,
    RejectReason, Section, SignedEvent, State, StateId, StateRoot, Store, StoreError, Timestamp,
};

use common::{actor, deal_contract, deal_parties, deal_values, salt_of};

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Signer {
    actor: Actor,
    key: ActorKey,
}

fn signer(node: &str, name: &str) -> Signer {
    let (actor, key) = actor(node, name);
    Signer { actor, key }
}

fn values(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn seal(label: &str, values: BTreeMap<String, Value>) -> BTreeMap<String, Section> {
    values
        .into_iter()
        .map(|(n, v)| {
            let s = Section::with_salt(HashAlg::Blake3, &n, salt_of(&format!("{label}/{n}")), v);
            (n, s)
        })
        .collect()
}

fn event(
    kind: EventKind,
    id: &StateId,
    base: Option<Base>,
    by: &Signer,
    seq: u64,
    payload: Value,
) -> Event {
    Event {
        kind,
        state_id: id.clone(),
        contract: deal_contract(),
        base,
        origin_node: by.actor.node.clone(),
        origin_seq: OriginSeq(seq),
        actor: by.actor.id.clone(),
        payload,
        timestamp: Timestamp(1_700_000_000_000 + seq as i64 * 1000),
        alg: HashAlg::Blake3,
    }
}

fn applied(signed: SignedEvent, sections: &BTreeMap<String, Section>, state: State) -> CommitItem {
    CommitItem {
        event: EventRecord {
            signed,
            disclosures: sections
                .iter()
                .filter_map(|(n, s)| s.disclosure.clone().map(|d| (n.clone(), d)))
                .collect(),
            outcome: Outcome::Applied {
                version: state.version,
                root: state.root,
            },
            receipt: None,
            business_events: Vec::new(),
            endorsements: Vec::new(),
        },
        state: Some(std::sync::Arc::new(state)),
    }
}

fn create(id: &str, vals: BTreeMap<String, Value>, by: &Signer, seq: u64) -> CommitItem {
    let id = StateId::from(id);
    let sections = seal(&format!("{id}/1"), vals);
    let signed = SignedEvent::sign(
        event(
            EventKind::Create,
            &id,
            None,
            by,
            seq,
            sst_core::CreatePayload {
                parties: deal_parties(),
                sections: sections.iter().map(|(n, s)| (n.clone(), s.hash)).collect(),
            }
            .to_payload(),
        ),
        &by.key,
    );
    let state = State::create(
        HashAlg::Blake3,
        id,
        deal_contract(),
        deal_parties(),
        sections.clone(),
        Some(signed.id),
        signed.event.timestamp,
    );
    applied(signed, &sections, state)
}

fn change(prev: &State, vals: BTreeMap<String, Value>, by: &Signer, seq: u64) -> CommitItem {
    let sections = seal(&format!("{}/{}", prev.id, prev.version + 1), vals);
    let base = Base {
        version: prev.version,
        root: prev.root,
    };
    let signed = SignedEvent::sign(
        event(
            EventKind::ChangeSections,
            &prev.id,
            Some(base),
            by,
            seq,
            sst_core::ChangePayload {
                sections: sections.iter().map(|(n, s)| (n.clone(), s.hash)).collect(),
            }
            .to_payload(),
        ),
        &by.key,
    );
    let state = prev.next(sections.clone(), Some(signed.id), signed.event.timestamp);
    applied(signed, &sections, state)
}

fn state_of(item: &CommitItem) -> State {
    item.state
        .as_deref()
        .cloned()
        .expect("applied item has a state")
}

/// A change intent on `id` by `by`, rejected with `reason` (no receipt, no business events).
fn rejected_change(id: &str, by: &Signer, seq: u64, reason: RejectReason) -> CommitItem {
    CommitItem {
        event: EventRecord {
            signed: SignedEvent::sign(
                event(
                    EventKind::ChangeSections,
                    &StateId::from(id),
                    None,
                    by,
                    seq,
                    json!({"change": "late"}),
                ),
                &by.key,
            ),
            disclosures: BTreeMap::new(),
            outcome: Outcome::Rejected { reason },
            receipt: None,
            business_events: Vec::new(),
            endorsements: Vec::new(),
        },
        state: None,
    }
}

/// A store with `deal-1` at versions 1..=3, `deal-2` at version 1 and a rejected intent.
async fn populated() -> (MemoryStore, Signer, Signer) {
    let store = MemoryStore::new();
    let bob = signer("bank", "bob");
    let sue = signer("homes", "sue");
    store.put_actor(&bob.actor).await.expect("actor");
    store.put_actor(&sue.actor).await.expect("actor");

    let c1 = create("deal-1", deal_values(), &bob, 1);
    let c2 = change(
        &state_of(&c1),
        values(&[("price", json!({"amount": 490000, "currency": "EUR"}))]),
        &sue,
        1,
    );
    let c3 = change(
        &state_of(&c2),
        values(&[(
            "common",
            json!({"address": "1 Main St", "status": "signed"}),
        )]),
        &bob,
        2,
    );
    let d1 = create("deal-2", deal_values(), &sue, 2);
    let rejected = rejected_change(
        "deal-2",
        &bob,
        3,
        RejectReason::StaleBase {
            expected_version: 0,
            found_version: 1,
        },
    );
    store
        .commit(CommitBatch::new(vec![c1, c2]))
        .await
        .expect("commit");
    store
        .commit(CommitBatch::new(vec![c3, d1, rejected]))
        .await
        .expect("commit");
    (store, bob, sue)
}

async fn verify(store: &MemoryStore) -> sst_core::VerifyReport {
    let mut calls = Vec::new();
    let report = verify_store(store, &mut |done, total| calls.push((done, total)))
        .await
        .expect("store readable");
    assert_eq!(calls.last().map(|c| c.0), Some(report.states), "progress");
    report
}

fn located(report: &sst_core::VerifyReport) -> Vec<(String, Option<u64>)> {
    report
        .findings
        .iter()
        .map(|f| (f.state_id.to_string(), f.version))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// verify_store

#[tokio::test]
async fn a_clean_store_has_no_findings() {
    let (store, _, _) = populated().await;
    let report = verify(&store).await;
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(
        (report.states, report.versions, report.events),
        (2, 4, 5),
        "every version and event was walked"
    );
}

#[tokio::test]
async fn an_edited_section_value_is_reported_at_exactly_its_state_and_version() {
    for (id, version, section) in [
        ("deal-1", 1, "price"),
        ("deal-1", 2, "price"),
        ("deal-1", 3, "inspection"),
        ("deal-2", 1, "common"),
    ] {
        let (store, _, _) = populated().await;
        store
            .tamper(&StateId::from(id), |versions| {
                let s = &mut versions[version as usize - 1];
                let d = s
                    .sections
                    .get_mut(section)
                    .and_then(|sec| sec.disclosure.as_mut())
                    .expect("disclosed section");
                std::sync::Arc::make_mut(&mut d.value)["tampered"] = json!(true);
            })
            .expect("tamper");
        let report = verify(&store).await;
        assert_eq!(
            located(&report),
            [(id.to_owned(), Some(version))],
            "{id} v{version}: {:?}",
            report.findings
        );
        let f = &report.findings[0];
        assert!(f.event.is_none());
        assert!(f.problem.contains(section), "{}", f.problem);
    }
}

#[tokio::test]
async fn an_edited_header_field_is_reported_at_its_version() {
    let (store, _, _) = populated().await;
    store
        .tamper(&StateId::from("deal-1"), |versions| {
            versions[1].updated_at = Timestamp(0);
        })
        .expect("tamper");
    let report = verify(&store).await;
    assert_eq!(located(&report), [("deal-1".to_owned(), Some(2))]);
    assert!(
        report.findings[0].problem.contains("root"),
        "{}",
        report.findings[0].problem
    );
}

#[tokio::test]
async fn a_rewritten_root_is_reported_at_its_version_and_breaks_the_next_link() {
    let (store, _, _) = populated().await;
    store
        .tamper(&StateId::from("deal-1"), |versions| {
            versions[0].root = StateRoot(Digest::from_parts(HashAlg::Blake3, [7; 32]));
        })
        .expect("tamper");
    let report = verify(&store).await;
    assert_eq!(
        located(&report),
        [
            ("deal-1".to_owned(), Some(1)),
            ("deal-1".to_owned(), Some(2))
        ]
    );
    assert!(report.findings[1].problem.contains("chain"));
}

#[tokio::test]
async fn a_broken_chain_is_reported() {
    let (store, _, _) = populated().await;
    // Version 3 re-sealed consistently, but linked to a root that is not version 2's.
    store
        .tamper(&StateId::from("deal-1"), |versions| {
            let s = &mut versions[2];
            s.prev_root = Some(StateRoot(Digest::from_parts(HashAlg::Blake3, [9; 32])));
            s.root = s.compute_root();
        })
        .expect("tamper");
    let report = verify(&store).await;
    // The link is broken, and the consistently re-sealed version is no longer the one its
    // signed event applied (the log binds the root).
    assert_eq!(
        located(&report),
        [
            ("deal-1".to_owned(), Some(3)),
            ("deal-1".to_owned(), Some(3))
        ]
    );
    assert!(
        report.findings[0].problem.contains("chain"),
        "{}",
        report.findings[0].problem
    );
    assert_eq!(report.findings[0].rule, sst_core::Rule::HistoryChain);
    assert_eq!(report.findings[1].rule, sst_core::Rule::UnboundVersion);
}

#[tokio::test]
async fn a_missing_or_misnumbered_version_is_reported() {
    let (store, _, _) = populated().await;
    store
        .tamper(&StateId::from("deal-1"), |versions| {
            versions.remove(1);
        })
        .expect("tamper");
    let report = verify(&store).await;
    assert_eq!(located(&report), [("deal-1".to_owned(), Some(2))]);
    assert!(report.findings[0].problem.contains("missing"));

    let (store, _, _) = populated().await;
    store
        .tamper(&StateId::from("deal-2"), |versions| {
            versions[0].id = StateId::from("deal-9");
            versions[0].root = versions[0].compute_root();
        })
        .expect("tamper");
    let report = verify(&store).await;
    assert_eq!(located(&report), [("deal-2".to_owned(), Some(1))]);
}

#[tokio::test]
async fn applied_events_with_bad_signatures_or_unknown_signers_are_reported() {
    let (store, bob, _) = populated().await;
    let head = store
        .state(&StateId::from("deal-2"))
        .await
        .expect("read")
        .expect("deal-2");
    // Signed by Eve's key under Bob's name.
    let eve = signer("evil", "eve");
    let mut forged = change(&head, values(&[("price", json!({"amount": 1}))]), &bob, 10);
    let body = forged.event.signed.event.clone();
    forged.event.signed.signatures[0].signature = eve.key.sign_digest(&body.id().0);
    let forged_id = forged.event.id();
    // Signed by an actor the store does not know.
    let stranger = change(
        &state_of(&forged),
        values(&[("price", json!({"amount": 2}))]),
        &eve,
        1,
    );
    let stranger_id = stranger.event.id();
    store
        .commit(CommitBatch::new(vec![forged, stranger]))
        .await
        .expect("commit does not check signatures, the node does");
    let report = verify(&store).await;
    let by_event: BTreeMap<String, &str> = report
        .findings
        .iter()
        .map(|f| (f.event.clone().expect("event finding"), f.problem.as_str()))
        .collect();
    assert_eq!(by_event.len(), 2, "{:?}", report.findings);
    assert!(by_event[&forged_id.to_string()].contains("signature"));
    assert!(by_event[&stranger_id.to_string()].contains("unknown actor"));
    assert!(report
        .findings
        .iter()
        .all(|f| f.state_id.as_str() == "deal-2"));
}

/// An applied actor-change event by `by` (seq `seq`) giving `target` the record `after`.
fn actor_change(target: &Actor, after: &Actor, by: &Signer, seq: u64) -> CommitItem {
    let payload = ActorChange {
        actor: after.clone(),
        previous_key: target.public_key,
    }
    .to_payload();
    let mut e = event(
        EventKind::ActorChange,
        &ActorChange::state_id(&target.id),
        None,
        by,
        seq,
        payload,
    );
    e.contract = ActorChange::contract();
    let signed = SignedEvent::sign(e, &by.key);
    let root = ActorChange::root(signed.id);
    CommitItem {
        event: EventRecord {
            signed,
            disclosures: BTreeMap::new(),
            outcome: Outcome::Applied { version: 0, root },
            receipt: None,
            business_events: Vec::new(),
            endorsements: Vec::new(),
        },
        state: None,
    }
}

/// `populated()`, then Bob rotates to a new key (recorded in the log and in the directory)
/// and changes `deal-2` with it. Returns the store, Bob with his new key, and `deal-2`'s head.
async fn rotated() -> (MemoryStore, Signer, State) {
    let (store, bob, _) = populated().await;
    let new_key = ActorKey::from_seed([42u8; 32]);
    let after = Actor {
        public_key: new_key.public_key(),
        ..bob.actor.clone()
    };
    let rotation = actor_change(&bob.actor, &after, &bob, 20);
    store
        .commit(CommitBatch::new(vec![rotation]))
        .await
        .expect("commit rotation");
    store.put_actor(&after).await.expect("directory");
    let bob2 = Signer {
        actor: after,
        key: new_key,
    };
    let head = store
        .state(&StateId::from("deal-2"))
        .await
        .expect("read")
        .expect("deal-2");
    let next = change(&head, values(&[("price", json!({"amount": 7}))]), &bob2, 21);
    let head = state_of(&next);
    store
        .commit(CommitBatch::new(vec![next]))
        .await
        .expect("commit");
    (store, bob2, head)
}

#[tokio::test]
async fn events_verify_against_the_key_valid_at_their_position_after_a_rotation() {
    let (store, _, _) = rotated().await;
    let report = verify(&store).await;
    // Bob's events before the rotation verify with his old key, the later one with the new.
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.events, 7);
}

#[tokio::test]
async fn an_event_signed_with_the_old_key_after_the_rotation_is_reported() {
    let (store, _, head) = rotated().await;
    let (old_actor, old_key) = actor("bank", "bob");
    let old = Signer {
        actor: old_actor,
        key: old_key,
    };
    let late = change(&head, values(&[("price", json!({"amount": 8}))]), &old, 22);
    let late_id = late.event.id();
    store
        .commit(CommitBatch::new(vec![late]))
        .await
        .expect("commit does not check signatures, the node does");
    let report = verify(&store).await;
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let f = &report.findings[0];
    assert_eq!(f.event, Some(late_id.to_string()));
    assert!(f.problem.contains("signature"), "{}", f.problem);
}

#[tokio::test]
async fn an_event_after_a_revocation_in_the_log_is_reported() {
    let (store, bob, head) = rotated().await;
    let revoked = Actor {
        status: sst_core::ActorStatus::Revoked,
        ..bob.actor.clone()
    };
    let revocation = actor_change(&bob.actor, &revoked, &bob, 23);
    let late = change(&head, values(&[("price", json!({"amount": 9}))]), &bob, 24);
    let late_id = late.event.id();
    store
        .commit(CommitBatch::new(vec![revocation, late]))
        .await
        .expect("commit");
    store.put_actor(&revoked).await.expect("directory");
    let report = verify(&store).await;
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].event, Some(late_id.to_string()));
    assert!(report.findings[0].problem.contains("revocation"));
}

// ---------------------------------------------------------------------------------------------
// CommitBatch::validate

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |v, _| json!([v]))
}

/// A counterexample of each portable rule that a `serde_json::Value` can hold, placed inside
/// the `price` section, with the path and rule `validate` must name. (`non_finite_number`
/// and `duplicate_key` cannot occur in a `Value`: `portable::parse` catches them in text,
/// see tests/portable.rs.)
fn counterexamples() -> Vec<(Value, &'static str, String)> {
    vec![
        (
            json!({"amount": 9007199254740992u64}),
            "integer_out_of_range",
            "$.sections.price.amount".into(),
        ),
        (
            json!({"amount": -9007199254740992i64}),
            "integer_out_of_range",
            "$.sections.price.amount".into(),
        ),
        (
            json!({"amount": 1.0e16}),
            "integer_out_of_range",
            "$.sections.price.amount".into(),
        ),
        (
            json!({"amount": 1, "history": [1, 2, 18014398509481984u64]}),
            "integer_out_of_range",
            "$.sections.price.history[2]".into(),
        ),
        (
            json!({"amount": 1, "note": "a\u{0}b"}),
            "nul_in_string",
            "$.sections.price.note".into(),
        ),
        (
            json!({"amount": 1, "terms": {"a\u{0}": 1}}),
            "nul_in_string",
            "$.sections.price.terms[\"a\\u0000\"]".into(),
        ),
        (
            json!({"amount": 1, "terms": {"": 1}}),
            "empty_key",
            "$.sections.price.terms[\"\"]".into(),
        ),
        (
            json!({"amount": 1, "$set": 1}),
            "dollar_key",
            "$.sections.price[\"$set\"]".into(),
        ),
        (
            json!({"amount": 1, "terms": {"a.b": 1}}),
            "dot_in_key",
            "$.sections.price.terms[\"a.b\"]".into(),
        ),
        (
            json!({"deep": nested(MAX_DEPTH)}),
            "too_deep",
            format!("$.sections.price.deep{}", "[0]".repeat(MAX_DEPTH - 1)),
        ),
        (
            Value::String("x".repeat(MAX_STATE_BYTES)),
            "too_large",
            "$.sections.price".into(),
        ),
    ]
}

/// A batch that first changes `deal-1` correctly and then creates `deal-9` whose `price`
/// section is `bad`. With `disclose`, the event carries the section plaintext too.
fn bad_batch(head: &State, bob: &Signer, bad: Value, disclose: bool) -> CommitBatch {
    let good = change(
        head,
        values(&[("common", json!({"status": "closing"}))]),
        bob,
        20,
    );
    let mut vals = deal_values();
    vals.insert("price".into(), bad);
    let mut item = create("deal-9", vals, bob, 21);
    if !disclose {
        item.event.disclosures.clear();
    }
    CommitBatch::new(vec![good, item])
}

async fn snapshot(store: &MemoryStore) -> (Vec<StateId>, Option<State>, usize, OriginSeq) {
    (
        store.state_ids().await.expect("ids"),
        store.state(&StateId::from("deal-1")).await.expect("state"),
        store
            .events(&EventFilter::default())
            .await
            .expect("events")
            .len(),
        store
            .last_origin_seq(&NodeId::from("bank"))
            .await
            .expect("seq"),
    )
}

#[track_caller]
fn assert_invalid(err: StoreError, path: &str, rule: &str) {
    match err {
        StoreError::InvalidInput { path: p, reason } => {
            assert_eq!(p, path, "path ({reason})");
            assert!(reason.starts_with(rule), "rule: {reason}");
        }
        other => panic!("expected InvalidInput at {path}, got {other}"),
    }
}

/// [`populated`] with Bob and the current version of `deal-1`.
async fn populated_with_deal_1() -> (MemoryStore, Signer, State) {
    let (store, bob, _) = populated().await;
    let head = store
        .state(&StateId::from("deal-1"))
        .await
        .expect("read")
        .expect("deal-1");
    (store, bob, head)
}

#[tokio::test]
async fn validate_names_each_rule_and_path_inside_sections_and_changes_nothing() {
    let (store, bob, head) = populated_with_deal_1().await;
    let before = snapshot(&store).await;
    for (bad, rule, path) in counterexamples() {
        // Plaintext only in the state: the section path.
        let batch = bad_batch(&head, &bob, bad.clone(), false);
        assert_invalid(batch.validate().expect_err(&path), &path, rule);
        let err = store.commit(batch).await.expect_err("refused");
        assert_invalid(err, &path, rule);
        assert_eq!(snapshot(&store).await, before, "store changed by {path}");

        // Plaintext also carried by the event: the disclosure is checked first.
        let batch = bad_batch(&head, &bob, bad, true);
        let dpath = path.replacen("$.sections.", "$.disclosures.", 1);
        let err = store.commit(batch).await.expect_err("refused");
        assert_invalid(err, &dpath, rule);
        assert_eq!(snapshot(&store).await, before, "store changed by {dpath}");
    }
    // And the good half alone commits.
    let ok = bad_batch(&head, &bob, json!({"amount": 1}), true);
    store.commit(ok).await.expect("valid batch commits");
    assert_eq!(
        store
            .state(&StateId::from("deal-1"))
            .await
            .expect("read")
            .expect("deal-1")
            .version,
        4
    );
}

#[tokio::test]
async fn validate_checks_payloads_and_section_names_too() {
    let (store, bob, _) = populated().await;
    let before = snapshot(&store).await;

    let mut item = create("deal-9", deal_values(), &bob, 30);
    let mut body = item.event.signed.event.clone();
    body.payload = json!({"args": {"$where": "1"}});
    item.event.signed = SignedEvent::sign(body, &bob.key);
    let state = std::sync::Arc::make_mut(item.state.as_mut().expect("state"));
    state.last_event = Some(item.event.id());
    state.root = state.compute_root();
    item.event.outcome = Outcome::Applied {
        version: 1,
        root: state.root,
    };
    let err = store
        .commit(CommitBatch::new(vec![item]))
        .await
        .expect_err("refused");
    assert_invalid(err, "$.payload.args[\"$where\"]", "dollar_key");

    for (name, path) in [
        ("", r#"$.sections[""]"#),
        ("$price", r#"$.sections["$price"]"#),
        ("price.eur", r#"$.sections["price.eur"]"#),
        ("a\u{0}b", r#"$.sections["a\u0000b"]"#),
    ] {
        let mut vals = deal_values();
        vals.insert(name.to_owned(), json!(1));
        let mut item = create("deal-9", vals, &bob, 31);
        item.event.disclosures.clear();
        let err = store
            .commit(CommitBatch::new(vec![item]))
            .await
            .expect_err("refused");
        assert_invalid(err, path, "section names must be portable object keys");
    }

    // Every section fits, the state does not.
    let half = "y".repeat(MAX_STATE_BYTES / 2 + 8);
    let mut vals = deal_values();
    vals.insert("scan_a".into(), Value::String(half.clone()));
    vals.insert("scan_b".into(), Value::String(half));
    let item = create("deal-9", vals, &bob, 32);
    let err = store
        .commit(CommitBatch::new(vec![item]))
        .await
        .expect_err("refused");
    match &err {
        StoreError::InvalidInput { path, reason } => {
            assert_eq!(path, "$.sections");
            assert!(reason.contains(&MAX_STATE_BYTES.to_string()), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(snapshot(&store).await, before);
}

#[tokio::test]
async fn section_paths_quote_names_that_are_not_identifiers() {
    let (store, bob, _) = populated().await;
    let mut vals = deal_values();
    vals.insert("due-diligence".into(), json!({"$ref": 1}));
    let item = create("deal-9", vals, &bob, 40);
    let err = store
        .commit(CommitBatch::new(vec![item]))
        .await
        .expect_err("refused");
    assert_invalid(
        err,
        "$.disclosures[\"due-diligence\"][\"$ref\"]",
        "dollar_key",
    );

    let mut vals = deal_values();
    vals.insert("due-diligence".into(), json!({"$ref": 1}));
    let mut item = create("deal-9", vals, &bob, 40);
    item.event.disclosures.clear();
    let err = CommitBatch::new(vec![item])
        .validate()
        .expect_err("refused");
    assert_invalid(err, "$.sections[\"due-diligence\"][\"$ref\"]", "dollar_key");
}

// ---------------------------------------------------------------------------------------------
// Business events, sink cursors and checkpoint pruning (validation the core owns)

fn with_business_events(mut item: CommitItem, events: Value) -> CommitItem {
    item.event.business_events = serde_json::from_value(events).expect("business events");
    item
}

#[tokio::test]
async fn validate_refuses_bad_business_events_naming_the_path_and_stores_nothing() {
    let bob = signer("bank", "bob");
    let store = MemoryStore::new();
    let fresh = || create("deal-be", deal_values(), &bob, 1);
    let cases = [
        (
            json!([{"name": "", "payload": 1}]),
            "items[0].business_events[0].name",
        ),
        (
            json!([{"name": "ok", "payload": 1}, {"name": "has space", "payload": 1}]),
            "items[0].business_events[1].name",
        ),
        (
            json!([{"name": "n".repeat(129), "payload": null}]),
            "items[0].business_events[0].name",
        ),
        (
            json!([{"name": "big", "payload": {"amount": 9007199254740992u64}}]),
            "$.business_events[0].payload.amount",
        ),
        (
            json!([{"name": "key", "payload": {"$set": 1}}]),
            "$.business_events[0].payload[\"$set\"]",
        ),
    ];
    for (events, path) in cases {
        let err = store
            .commit(CommitBatch::new(vec![with_business_events(
                fresh(),
                events.clone(),
            )]))
            .await
            .expect_err("bad business events are refused");
        match err {
            StoreError::InvalidInput { path: p, .. } => assert_eq!(p, path, "{events}"),
            other => panic!("{events}: {other:?}"),
        }
    }
    let ok = json!([{"name": "deal.created-v1_x", "payload": {"amount": 1.5}}]);
    let accepted = with_business_events(fresh(), ok);
    store
        .commit(CommitBatch::new(vec![accepted.clone()]))
        .await
        .expect("valid business events are accepted");
    assert_eq!(
        store.event(&accepted.event.id()).await.expect("read"),
        Some(accepted.event)
    );
    let mut rejected = rejected_change("deal-be", &bob, 2, RejectReason::EmptyChange);
    rejected.event.business_events = vec![sst_core::BusinessEvent {
        name: "emitted".into(),
        payload: Value::Null,
    }];
    match store.commit(CommitBatch::new(vec![rejected])).await {
        Err(StoreError::InvalidInput { path, .. }) => {
            assert_eq!(path, "items[0].business_events")
        }
        other => panic!("a rejected event with business events: {other:?}"),
    }
    assert_eq!(
        store
            .events(&EventFilter::default())
            .await
            .expect("events")
            .len(),
        1
    );
}

#[tokio::test]
async fn sink_names_and_prune_keep_are_checked_before_the_store() {
    for ok in [
        "a",
        "kafka.orders-v1_2",
        &"x".repeat(sst_core::MAX_SINK_NAME_BYTES),
    ] {
        assert!(sst_core::check_sink_name(ok).is_ok(), "{ok:?}");
    }
    for bad in ["", "a b", "a/b", "é", &"x".repeat(129)] {
        match sst_core::check_sink_name(bad) {
            Err(StoreError::InvalidInput { path, reason }) => {
                assert_eq!(path, "sink");
                assert!(reason.contains("1 to 128 bytes"), "{reason}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(sst_core::check_prune_keep(1).is_ok());
    assert!(matches!(
        sst_core::check_prune_keep(0),
        Err(StoreError::InvalidInput { path, .. }) if path == "keep"
    ));
    let store = MemoryStore::new();
    assert!(matches!(
        store.set_sink_cursor("kafka", u64::MAX).await,
        Err(StoreError::InvalidInput { path, .. }) if path == "position"
    ));
    assert_eq!(store.sink_cursor("kafka").await.expect("read"), None);
}

/// A batch marked by `CommitBatch::validated` passes the store's validation cheaply, clones
/// keep the mark, and any change to its contents afterwards (a section value, a payload, an
/// item removed) drops the mark: the store then validates in full and refuses what is wrong.
#[tokio::test]
async fn a_validated_batch_changed_afterwards_is_validated_in_full_again() {
    let (store, bob, head) = populated_with_deal_1().await;
    let before = snapshot(&store).await;
    let good = bad_batch(&head, &bob, json!({"amount": 1}), true);
    assert!(!good.is_validated(), "a new batch carries no mark");
    let sealed = good.clone().validated().expect("valid");
    assert!(sealed.is_validated());
    assert_eq!(sealed, good, "the mark is not part of the contents");
    assert!(sealed.clone().is_validated(), "clones keep the mark");

    // A section value changed behind the hashes.
    let mut tampered = sealed.clone();
    let section = tampered.items[1]
        .state
        .as_mut()
        .map(std::sync::Arc::make_mut)
        .and_then(|s| s.sections.get_mut("price"))
        .and_then(|s| s.disclosure.as_mut())
        .expect("disclosed price");
    section.value = json!({"amount": 2}).into();
    assert!(!tampered.is_validated());
    assert!(matches!(
        tampered.validate(),
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.commit(tampered).await,
        Err(StoreError::InvalidInput { .. })
    ));

    // The same section value edited in place (the proof binds values by their allocation,
    // which it holds: an in-place edit must copy, and the copy is another allocation), and
    // one replaced by an equal value elsewhere (validated in full, and accepted).
    for edit in [true, false] {
        let mut changed = sealed.clone();
        let value = &mut changed.items[1]
            .state
            .as_mut()
            .map(std::sync::Arc::make_mut)
            .and_then(|s| s.sections.get_mut("price"))
            .and_then(|s| s.disclosure.as_mut())
            .expect("disclosed price")
            .value;
        if edit {
            std::sync::Arc::make_mut(value)["amount"] = json!(2);
        } else {
            *value = std::sync::Arc::new(value.as_ref().clone());
        }
        assert!(!changed.is_validated(), "edited in place: {edit}");
        assert_eq!(changed.validate().is_ok(), !edit, "edited in place: {edit}");
    }

    // A payload changed under the signed id.
    let mut tampered = sealed.clone();
    tampered.items[0].event.signed.event.payload = json!({"sections": {}});
    assert!(!tampered.is_validated());
    assert_invalid(
        tampered.validate().expect_err("id no longer matches"),
        "items[0].event.id",
        "",
    );
    assert_eq!(snapshot(&store).await, before, "nothing stored");

    // Changed into another valid batch: validated in full, and accepted.
    let mut shorter = sealed.clone();
    shorter.items.truncate(1);
    assert!(!shorter.is_validated());
    assert!(shorter.validate().is_ok());

    // An invalid batch never gets the mark.
    let bad = bad_batch(&head, &bob, json!({"amount": 1, "$set": 1}), false);
    assert!(bad.validated().is_err());

    store
        .commit(sealed)
        .await
        .expect("the validated batch commits");
    assert_eq!(
        store
            .state(&StateId::from("deal-9"))
            .await
            .expect("read")
            .map(|s| s.version),
        Some(1)
    );
}

/// `verify_store` checks states, ids and signatures on every core, in groups: with more
/// states and events than one group or one thread takes, its findings are exactly the
/// tampered states in state order, then the forged signatures in log order, the same on
/// every run.
#[tokio::test]
async fn parallel_verification_reports_every_problem_in_a_fixed_order() {
    let store = MemoryStore::new();
    let bob = signer("bank", "bob");
    let eve = signer("evil", "eve");
    store.put_actor(&bob.actor).await.expect("actor");
    let forged_at = [7usize, 90, 151];
    let mut items = Vec::new();
    let mut forged_ids = Vec::new();
    for i in 0..160usize {
        let mut item = create(&format!("s{i:03}"), deal_values(), &bob, i as u64 + 1);
        if forged_at.contains(&i) {
            let id = item.event.id();
            item.event.signed.signatures[0].signature = eve.key.sign_digest(&id.0);
            forged_ids.push(id.to_string());
        }
        items.push(item);
    }
    for chunk in items.chunks(40) {
        store
            .commit(CommitBatch::new(chunk.to_vec()))
            .await
            .expect("commit does not check signatures, the node does");
    }
    let tampered = ["s003", "s070", "s149"];
    for id in tampered {
        store
            .tamper(&StateId::from(id), |versions| {
                let d = versions[0]
                    .sections
                    .get_mut("price")
                    .and_then(|sec| sec.disclosure.as_mut())
                    .expect("disclosed price");
                std::sync::Arc::make_mut(&mut d.value)["tampered"] = json!(true);
            })
            .expect("tamper");
    }
    let report = verify(&store).await;
    assert_eq!(report.states, 160);
    assert_eq!(report.versions, 160);
    let states: Vec<(String, Option<u64>)> = report
        .findings
        .iter()
        .filter(|f| f.event.is_none())
        .map(|f| (f.state_id.to_string(), f.version))
        .collect();
    let expected: Vec<(String, Option<u64>)> = tampered
        .iter()
        .map(|id| ((*id).to_owned(), Some(1)))
        .collect();
    assert_eq!(states, expected, "{:?}", report.findings);
    let signatures: Vec<String> = report
        .findings
        .iter()
        .filter_map(|f| f.event.clone())
        .collect();
    assert_eq!(signatures, forged_ids, "{:?}", report.findings);
    assert_eq!(report.findings.len(), tampered.len() + forged_ids.len());
    assert_eq!(verify(&store).await, report, "same report on every run");
}

/// `CommitBatch::validated_on` checks items on several threads and still reports exactly
/// what the one-thread walk reports: the same first failure, wherever the bad item sits, a
/// duplicate id or a version gap across threads included; a valid batch is marked validated.
#[tokio::test]
async fn validation_on_several_threads_reports_what_one_thread_reports() {
    let (_, bob, head) = populated_with_deal_1().await;
    let fillers: Vec<CommitItem> = (0..40)
        .map(|i| create(&format!("fill-{i}"), deal_values(), &bob, 100 + i))
        .collect();
    let same_failure = |batch: &CommitBatch| {
        let one = format!("{:?}", batch.validate().expect_err("invalid"));
        for workers in [2, 3, 8] {
            let many = batch.clone().validated_on(workers).expect_err("invalid");
            assert_eq!(format!("{many:?}"), one, "{workers} workers");
        }
    };
    // (The 5 MB value is left out: it only makes the test slow.)
    for (bad, _, _) in counterexamples().into_iter().filter(|c| c.1 != "too_large") {
        for (at, disclose) in [(0, true), (17, false), (40, true)] {
            let mut items = fillers.clone();
            let bad_item = bad_batch(&head, &bob, bad.clone(), disclose)
                .items
                .pop()
                .expect("the bad item");
            items.insert(at, bad_item);
            same_failure(&CommitBatch::new(items));
        }
    }
    let mut twice = fillers.clone();
    twice.push(fillers[3].clone());
    same_failure(&CommitBatch::new(twice));
    let mut gap = fillers.clone();
    let second = change(
        &state_of(&fillers[5]),
        values(&[("price", json!({"amount": 1}))]),
        &bob,
        500,
    );
    let third = change(
        &state_of(&second),
        values(&[("price", json!({"amount": 2}))]),
        &bob,
        501,
    );
    gap.push(third);
    same_failure(&CommitBatch::new(gap));
    let valid = CommitBatch::new(fillers).validated_on(4).expect("valid");
    assert!(valid.is_validated());
}

/// `CommitBatch::validated_after` with the valid version before a change takes that
/// version's unchanged sections as checked, but still refuses a section whose value was
/// changed behind its hash, and a batch it validated passes the store's check.
#[tokio::test]
async fn a_batch_validated_after_its_previous_version_still_refuses_a_tampered_section() {
    let (store, bob, head) = populated_with_deal_1().await;
    let good = CommitBatch::new(vec![change(
        &head,
        values(&[("common", json!({"status": "closing"}))]),
        &bob,
        20,
    )]);
    let sealed = good
        .clone()
        .validated_after(&[&head])
        .expect("a valid change");
    assert!(sealed.is_validated());
    assert_eq!(sealed, good);

    // An unchanged section (price) edited behind its hash: no longer equal to the previous
    // version's, so it is hashed again and refused.
    let tampered = with_section_value(&good, "price", json!({"amount": 2}));
    assert_invalid(
        tampered
            .validated_after(&[&head])
            .expect_err("tampered section"),
        "items[0].state",
        "",
    );

    // The changed section edited behind its hash is refused too.
    let tampered = with_section_value(&good, "common", json!({"status": "open"}));
    assert!(tampered.validated_after(&[&head]).is_err());

    // A previous state of another version is ignored: full validation, same verdict.
    assert!(good
        .clone()
        .validated_after(&[&sealed.items[0].state.clone().expect("state")])
        .is_ok());
    store.commit(sealed).await.expect("committed");
}

/// `batch` with the value of section `name` of its first item's state replaced, its hash
/// kept.
fn with_section_value(batch: &CommitBatch, name: &str, value: Value) -> CommitBatch {
    let mut tampered = batch.clone();
    if let Some(d) = tampered.items[0]
        .state
        .as_mut()
        .map(std::sync::Arc::make_mut)
        .and_then(|s| s.sections.get_mut(name))
        .and_then(|s| s.disclosure.as_mut())
    {
        d.value = value.into();
    }
    tampered
}
