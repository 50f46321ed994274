//! `EventColumns::from_record`: the columns of an applied and a rejected event, and the
//! `u64` → signed 64-bit check naming the offending path, and `outcome_from_columns` (round trip
//! and columns that do not fit together).

mod common;

use std::collections::BTreeMap;

use serde_json::json;
use sst_core::raw::columns::outcome_from_columns;
use sst_core::raw::EventColumns;
use sst_core::{
    Digest, EventKind, EventRecord, HashAlg, IntegrityError, OriginSeq, Outcome, RejectReason,
    SignedEvent, StateId, StateRoot, StoreError, Timestamp,
};

use common::{actor, deal_contract};

fn record(seq: u64, outcome: Outcome) -> EventRecord {
    let (a, key) = actor("node-a", "alice");
    let event = sst_core::Event {
        kind: EventKind::Create,
        state_id: StateId::from("deal-1"),
        contract: deal_contract(),
        base: None,
        origin_node: a.node.clone(),
        origin_seq: OriginSeq(seq),
        actor: a.id.clone(),
        payload: json!({"create": true}),
        timestamp: Timestamp(1_700_000_000_000),
        alg: HashAlg::Blake3,
    };
    EventRecord {
        signed: SignedEvent::sign(event, &key),
        disclosures: BTreeMap::new(),
        outcome,
        receipt: None,
        business_events: Vec::new(),
        endorsements: Vec::new(),
    }
}

#[test]
fn applied_event_columns() {
    let root = StateRoot(Digest::from_parts(HashAlg::Blake3, [7; 32]));
    let rec = record(7, Outcome::Applied { version: 3, root });
    let c = EventColumns::from_record("items[0]", &rec).expect("columns");
    let e = rec.event();
    assert_eq!(c.id, rec.id().to_string());
    assert_eq!(c.state_id, "deal-1");
    assert_eq!(c.kind, e.kind.as_str());
    assert_eq!(c.contract_name, e.contract.name);
    assert_eq!(c.contract_version, e.contract.version);
    assert_eq!(c.actor, e.actor.0);
    assert_eq!(c.origin_node, e.origin_node.0);
    assert_eq!(c.origin_seq, 7);
    assert_eq!(c.outcome, "applied");
    assert_eq!((c.reason, c.reason_detail), (None, None));
    assert_eq!(c.new_version, Some(3));
    assert_eq!(c.new_root, Some(root.to_string()));
    assert_eq!(c.signed, serde_json::to_value(&rec.signed).expect("json"));
    assert_eq!(c.disclosures, json!({}));
}

#[test]
fn rejected_event_columns() {
    let reason = RejectReason::UnknownState;
    let rec = record(
        1,
        Outcome::Rejected {
            reason: reason.clone(),
        },
    );
    let c = EventColumns::from_record("items[2]", &rec).expect("columns");
    assert_eq!(c.outcome, "rejected");
    assert_eq!(c.reason, Some(reason.code()));
    assert_eq!(
        c.reason_detail,
        Some(serde_json::to_value(&reason).expect("json"))
    );
    assert_eq!((c.new_version, c.new_root), (None, None));
}

#[test]
fn numbers_beyond_i64_are_input_errors_naming_the_path() {
    let big = i64::MAX as u64 + 1;
    let root = StateRoot(Digest::from_parts(HashAlg::Blake3, [9; 32]));
    for (rec, want) in [
        (
            record(big, Outcome::Applied { version: 1, root }),
            "items[1].event.origin_seq",
        ),
        (
            record(1, Outcome::Applied { version: big, root }),
            "items[1].outcome.version",
        ),
    ] {
        match EventColumns::from_record("items[1]", &rec) {
            Err(StoreError::InvalidInput { path, .. }) => assert_eq!(path, want),
            other => panic!("unexpected {other:?}"),
        }
        match EventColumns::from_record("", &rec) {
            Err(StoreError::InvalidInput { path, .. }) => {
                assert_eq!(path, want.trim_start_matches("items[1]."))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn outcomes_round_trip_through_their_columns() {
    let root = StateRoot(Digest::from_parts(HashAlg::Blake3, [5; 32]));
    for outcome in [
        Outcome::Applied { version: 4, root },
        Outcome::Rejected {
            reason: RejectReason::StateExists,
        },
    ] {
        let c =
            EventColumns::from_record("items[0]", &record(1, outcome.clone())).expect("columns");
        let back = outcome_from_columns(
            "event e",
            c.outcome,
            c.new_version,
            c.new_root,
            c.reason_detail,
        )
        .expect("outcome");
        assert_eq!(back, outcome);
    }
}

#[test]
fn outcome_columns_that_do_not_fit_are_malformed() {
    let root = Some(StateRoot(Digest::from_parts(HashAlg::Blake3, [5; 32])).to_string());
    for (outcome, version, root, detail, want) in [
        (
            "applied",
            None,
            root.clone(),
            None,
            "without new version/root",
        ),
        ("applied", Some(-1), root.clone(), None, ""),
        ("applied", Some(1), Some("nope".into()), None, "new_root"),
        ("rejected", None, None, None, "without reason"),
        ("rejected", None, None, Some(json!({"code": 7})), "reason"),
        ("maybe", Some(1), root, None, "unknown outcome `maybe`"),
    ] {
        match outcome_from_columns("event e", outcome, version, root, detail) {
            Err(StoreError::Integrity {
                what,
                source: IntegrityError::Malformed(detail),
            }) => {
                assert_eq!(what, "event e");
                assert!(detail.contains(want), "{detail} lacks {want}");
            }
            other => panic!("{outcome}: unexpected {other:?}"),
        }
    }
}

#[test]
fn endorsements_column_is_null_without_endorsements_and_round_trips_with_them() {
    use sst_core::raw::columns::endorsements_from_column;
    use sst_core::{Endorsement, NodeId, NodeKey};

    let root = StateRoot(Digest::from_parts(HashAlg::Blake3, [3; 32]));
    let mut rec = record(2, Outcome::Applied { version: 1, root });
    let plain = EventColumns::from_record("items[0]", &rec).expect("columns");
    assert_eq!(plain.endorsements, None);
    for (name, seed) in [("bank", 0x0b), ("acme", 0x0a)] {
        rec.endorsements.push(Endorsement::sign(
            NodeId::from(name),
            &NodeKey::from_seed([seed; 32]),
            &rec.id(),
            &rec.event().state_id,
            1,
            &root,
        ));
    }
    let c = EventColumns::from_record("items[0]", &rec).expect("columns");
    let column = c.endorsements.expect("an endorsements column");
    assert_eq!(
        column,
        serde_json::to_value(&rec.endorsements).expect("json")
    );
    assert_eq!(
        endorsements_from_column("event e", Some(column)).expect("read back"),
        rec.endorsements
    );
}
