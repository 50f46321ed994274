//! `DisclosureColumn`: an applied event's disclosures name the section versions of its new
//! state and read back exactly through the section rows; rejected events, sections this store
//! holds no plaintext of and rows of the older inline form stay inline; a named section
//! version that is missing, or a column of another shape, is an integrity finding naming the
//! event.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use sst_core::raw::{DisclosureColumn, EventColumns};
use sst_core::{
    CommitItem, Disclosure, Event, EventKind, EventRecord, HashAlg, IntegrityError, OriginSeq,
    Outcome, RejectReason, Section, SectionHash, SignedEvent, State, StoreError, Timestamp,
};

use common::{actor, deal_contract, deal_state, salt_of};

/// An item recording `state` (applied) or, without one, rejected, disclosing `disclosed` of
/// `state`'s sections.
fn item(state: &State, disclosed: &[&str], applied: bool) -> CommitItem {
    let (who, key) = actor("node-a", "alice");
    let event = Event {
        kind: EventKind::ChangeSections,
        state_id: state.id.clone(),
        contract: deal_contract(),
        base: None,
        origin_node: who.node.clone(),
        origin_seq: OriginSeq(1),
        actor: who.id.clone(),
        payload: json!({}),
        timestamp: Timestamp(1_700_000_000_000),
        alg: state.alg(),
    };
    let disclosures = disclosed
        .iter()
        .filter_map(|n| Some(((*n).to_owned(), state.sections[*n].disclosure.clone()?)))
        .collect();
    let outcome = if applied {
        Outcome::Applied {
            version: state.version,
            root: state.root,
        }
    } else {
        Outcome::Rejected {
            reason: RejectReason::UnknownState,
        }
    };
    CommitItem {
        event: EventRecord {
            signed: SignedEvent::sign(event, &key),
            disclosures,
            outcome,
            receipt: None,
            business_events: Vec::new(),
            endorsements: Vec::new(),
        },
        state: applied.then(|| Arc::new(state.clone())),
    }
}

/// The section rows of `state` as a store keeps them: `(name, hash) → value`, disclosed
/// sections only.
fn section_rows(state: &State) -> BTreeMap<(String, SectionHash), Arc<Value>> {
    state
        .sections
        .iter()
        .filter_map(|(n, s)| Some(((n.clone(), s.hash), s.disclosure.as_ref()?.value.clone())))
        .collect()
}

/// The column of `item` written as text and read back through `rows`.
fn round_trip(
    item: &CommitItem,
    rows: &BTreeMap<(String, SectionHash), Arc<Value>>,
) -> Result<BTreeMap<String, Disclosure>, StoreError> {
    let text = DisclosureColumn::of_item("items[0]", item)
        .expect("column")
        .to_string();
    let column = DisclosureColumn::parse_text("event e", &text)?;
    let state = &item.event.event().state_id;
    column.resolve("event e", state, |name, hash| {
        Ok(rows.get(&(name.to_owned(), *hash)).cloned())
    })
}

#[test]
fn an_applied_event_names_its_section_versions_and_reads_back_exactly() {
    let state = deal_state(HashAlg::Blake3);
    let it = item(&state, &["price", "inspection"], true);
    let column = DisclosureColumn::of_item("", &it).expect("column");
    for name in ["price", "inspection"] {
        let entry = &column[name];
        assert_eq!(entry["hash"], json!(state.sections[name].hash.to_string()));
        assert!(
            entry.get("value").is_none(),
            "{name} carries no value: {entry}"
        );
    }
    let rows = section_rows(&state);
    assert_eq!(round_trip(&it, &rows).expect("read"), it.event.disclosures);
    // The event row columns carry the same references.
    let c = EventColumns::from_item("items[0]", &it).expect("columns");
    assert_eq!(c.disclosures, column);
    // ... while `from_record` (no state at hand) keeps the values inline.
    let inline = EventColumns::from_record("items[0]", &it.event).expect("columns");
    assert_eq!(
        inline.disclosures,
        serde_json::to_value(&it.event.disclosures).expect("json")
    );
}

#[test]
fn a_rejected_event_and_the_older_inline_rows_keep_their_values() {
    let state = deal_state(HashAlg::Blake3);
    let rejected = item(&state, &["price"], false);
    let column = DisclosureColumn::of_item("", &rejected).expect("column");
    assert_eq!(
        column,
        serde_json::to_value(&rejected.event.disclosures).expect("json")
    );
    // Nothing to look up, and the values come back as written.
    let parsed = DisclosureColumn::parse("event e", column).expect("parse");
    assert!(parsed.is_inline());
    let read = parsed
        .resolve("event e", &state.id, |_, _| {
            panic!("no lookup for inline values")
        })
        .expect("read");
    assert_eq!(read, rejected.event.disclosures);
}

#[test]
fn a_section_disclosed_with_another_salt_than_the_state_holds_stays_inline() {
    let state = deal_state(HashAlg::Blake3);
    let mut it = item(&state, &["price"], true);
    // Not a validated item (the hash differs), but the column must not name a version whose
    // row would hold another salt's value.
    it.event.disclosures.insert(
        "price".into(),
        Disclosure::new(salt_of("other"), Arc::new(json!({"amount": 1}))),
    );
    let column = DisclosureColumn::of_item("", &it).expect("column");
    assert!(column["price"].get("value").is_some(), "{column}");
}

#[test]
fn a_missing_section_version_is_an_integrity_finding_naming_the_event_and_the_version() {
    let state = deal_state(HashAlg::Blake3);
    let it = item(&state, &["price"], true);
    let mut rows = section_rows(&state);
    rows.remove(&("price".to_owned(), state.sections["price"].hash));
    match round_trip(&it, &rows) {
        Err(StoreError::Integrity {
            what,
            source: IntegrityError::Malformed(detail),
        }) => {
            assert_eq!(what, "event e");
            assert!(detail.contains("disclosures.price"), "{detail}");
            assert!(
                detail.contains(&state.sections["price"].hash.to_string()),
                "{detail}"
            );
        }
        other => panic!("expected an integrity finding, got {other:?}"),
    }
}

#[test]
fn a_column_of_another_shape_is_malformed() {
    let hash = deal_state(HashAlg::Blake3).sections["price"]
        .hash
        .to_string();
    for (column, needle) in [
        (json!([]), "not a JSON object"),
        (
            json!({"price": {"salt": "zz", "hash": hash}}),
            "disclosures.price",
        ),
        (json!({"price": {"hash": hash}}), "disclosures.price"),
        (
            json!({"price": {"salt": "00".repeat(32), "hash": hash, "extra": 1}}),
            "disclosures.price",
        ),
        (json!({"price": 7}), "disclosures.price"),
    ] {
        match DisclosureColumn::parse("event e", column.clone()) {
            Err(StoreError::Integrity {
                source: IntegrityError::Malformed(detail),
                ..
            }) => assert!(detail.contains(needle), "{column}: {detail}"),
            other => panic!("{column}: expected malformed, got {other:?}"),
        }
    }
}

#[test]
fn a_redacted_section_of_the_new_state_is_carried_inline() {
    let mut state = deal_state(HashAlg::Blake3);
    let price = state.sections["price"].clone();
    let it = item(&state, &["price"], true);
    // This store holds only the hash of `price`: no section row can be named.
    state
        .sections
        .insert("price".into(), Section::redacted(price.hash));
    let it = CommitItem {
        state: Some(Arc::new(state)),
        ..it
    };
    let column = DisclosureColumn::parse(
        "event e",
        DisclosureColumn::of_item("", &it).expect("column"),
    )
    .expect("parse");
    assert!(column.is_inline());
}

proptest! {
    /// Any state, any subset of its sections disclosed, applied or rejected: the column read
    /// back through the section rows is exactly the event's disclosures, and it names a
    /// section version exactly for each disclosed section of an applied event.
    #[test]
    fn the_column_reads_back_as_the_disclosures(
        state in common::state(),
        pick in prop::collection::vec(any::<bool>(), 5),
        applied in any::<bool>(),
    ) {
        let names: Vec<&str> = state
            .sections
            .keys()
            .zip(pick.iter().cycle())
            .filter(|(_, p)| **p)
            .map(|(n, _)| n.as_str())
            .collect();
        let it = item(&state, &names, applied);
        let rows = section_rows(&state);
        prop_assert_eq!(round_trip(&it, &rows).expect("read"), it.event.disclosures.clone());
        let column = DisclosureColumn::parse(
            "event e",
            DisclosureColumn::of_item("", &it).expect("column"),
        )
        .expect("parse");
        let named: Vec<&str> = column.section_versions().map(|(n, _)| n).collect();
        prop_assert_eq!(named, if applied { names.clone() } else { Vec::new() });
    }
}
