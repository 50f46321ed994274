//! Redaction and section permissions: a redacted state keeps its root and verifies, holds no
//! plaintext and no salt of what its holder may not read, still detects tampering of what it
//! discloses; the real-estate roles get exactly the access DESIGN.md describes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use sst_core::canonical;
use sst_core::error::IntegrityError;
use sst_core::{ActorId, HashAlg, Role, State};

use common::{deal_parties, deal_policy, deal_state, state};

/// Everything a holder of `s` could leak, as text: the serialized state and its stored
/// columns.
fn everything_stored(s: &State) -> String {
    let parts = s.to_parts();
    format!(
        "{}\n{}\n{}\n{}",
        serde_json::to_string(s).expect("serializes"),
        parts.data,
        parts.seals,
        parts.parties
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Redacting any subset of sections keeps every hash and the root, verifies, round-trips
    /// through the stored columns, and leaves no plaintext and no salt of hidden sections.
    #[test]
    fn redacted_states_verify_and_hold_nothing_unreadable(s in state(), mask in any::<u8>()) {
        let names: Vec<String> = s.sections.keys().cloned().collect();
        let readable: BTreeSet<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << (i % 8)) != 0)
            .map(|(_, n)| n.clone())
            .collect();
        let r = s.redact(|n| readable.contains(n));
        prop_assert_eq!(r.verify(), Ok(()));
        prop_assert_eq!(r.root, s.root);
        prop_assert_eq!(r.compute_root(), s.root);
        prop_assert_eq!(r.header(), s.header());
        let text = everything_stored(&r);
        for (name, sec) in &s.sections {
            prop_assert_eq!(r.sections[name].hash, sec.hash);
            let d = sec.disclosure.as_ref().expect("generated states are disclosed");
            if readable.contains(name) {
                prop_assert_eq!(r.sections[name].disclosure.as_ref(), Some(d));
            } else {
                prop_assert!(r.sections[name].disclosure.is_none());
                prop_assert!(r.sections[name].value().is_none());
                prop_assert!(!text.contains(&hex::encode(d.salt.0)), "salt of {} leaked", name);
                prop_assert!(
                    !text.contains(&canonical::to_string(&d.value))
                        && !text.contains(&d.value.to_string()),
                    "plaintext of {} leaked", name
                );
            }
        }
        let parts = r.to_parts();
        let data = parts.data.as_object().expect("data object");
        prop_assert_eq!(data.keys().cloned().collect::<BTreeSet<_>>(), readable.clone());
        for (name, seal) in parts.seals.as_object().expect("seals object") {
            prop_assert_eq!(seal.get("salt").is_some(), readable.contains(name));
        }
        let back = State::from_parts(parts).expect("redacted columns reassemble");
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(back.verify(), Ok(()));
    }

    /// A redacted state still catches edits of the sections it discloses, and a forged hash
    /// of a section it cannot read.
    #[test]
    fn redacted_states_still_detect_tampering(
        s in state(), which in any::<Index>(), at in any::<Index>(),
    ) {
        let names: Vec<String> = s.sections.keys().cloned().collect();
        let shown = names[which.index(names.len())].clone();
        let r = s.redact(|n| n == shown);

        let mut parts = r.to_parts();
        let v = parts.data.get_mut(&shown).and_then(Value::as_object_mut).expect("object value");
        v.insert("n".into(), Value::from(v["n"].as_i64().expect("n") ^ 1));
        let tampered = State::from_parts(parts).expect("reassembles");
        prop_assert_eq!(
            tampered.verify(),
            Err(IntegrityError::SectionHash { section: shown.clone() })
        );

        let hidden: Vec<&String> = names.iter().filter(|n| **n != shown).collect();
        if !hidden.is_empty() {
            let h = hidden[at.index(hidden.len())].clone();
            let mut forged = r.clone();
            let d = forged.sections[&h].hash.0;
            let mut b = *d.bytes();
            b[at.index(32)] ^= 0x80;
            forged.sections.get_mut(&h).expect("hidden").hash =
                sst_core::SectionHash(sst_core::Digest::from_parts(d.alg(), b));
            prop_assert!(
                matches!(forged.verify(), Err(IntegrityError::Root { .. })),
                "forged hidden hash not detected"
            );
        }

        // Plaintext stored for a hidden section (no salt) cannot even be reassembled.
        if let Some(h) = hidden.first() {
            let mut parts = r.to_parts();
            parts.data.as_object_mut().expect("data").insert((*h).clone(), Value::Null);
            prop_assert!(matches!(
                State::from_parts(parts),
                Err(IntegrityError::Malformed(_))
            ));
        }
    }
}

/// Who may read and write what, per DESIGN.md's real-estate example.
fn designed_access(role: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    match role {
        "buyer" | "seller" => (
            vec!["common", "inspection", "price"],
            vec!["common", "price"],
        ),
        "inspector" => (vec!["common", "inspection"], vec!["inspection"]),
        "regulator" => (vec!["common", "inspection"], vec![]),
        _ => (vec![], vec![]),
    }
}

fn names(set: &BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

#[test]
fn real_estate_roles_read_and_write_what_design_says() {
    let policy = deal_policy();
    let parties = deal_parties();
    for (actor, role) in [
        ("bank/bob", "buyer"),
        ("homes/sue", "seller"),
        ("check/ina", "inspector"),
        ("gov/rex", "regulator"),
        ("evil/eve", "stranger"),
    ] {
        let access = policy.access(&ActorId::from(actor), &parties);
        let (read, write) = designed_access(role);
        assert_eq!(names(&access.read), read, "{role} reads");
        assert_eq!(names(&access.write), write, "{role} writes");
        for section in ["common", "price", "inspection", "unlisted"] {
            assert_eq!(access.can_read(section), read.contains(&section));
            assert_eq!(access.can_write(section), write.contains(&section));
        }
    }
}

#[test]
fn sections_without_a_policy_are_denied_to_everyone() {
    let policy = deal_policy();
    let parties = deal_parties();
    for actor in parties.actors() {
        let a = policy.access(&actor, &parties);
        assert!(!a.can_read("notes") && !a.can_write("notes"), "{actor}");
    }
}

#[test]
fn an_actor_with_two_roles_gets_the_union_and_a_node_the_union_of_its_actors() {
    let policy = deal_policy();
    let parties = deal_parties().with("regulator", "check/ina");
    let a = policy.access(&ActorId::from("check/ina"), &parties);
    assert_eq!(names(&a.read), ["common", "inspection"]);
    assert_eq!(names(&a.write), ["inspection"]);

    let node = policy.access_for_actors(
        [&ActorId::from("gov/rex"), &ActorId::from("homes/sue")],
        &parties,
    );
    assert_eq!(names(&node.read), ["common", "inspection", "price"]);
    assert_eq!(names(&node.write), ["common", "price"]);

    let roles: BTreeSet<Role> = [Role::from("inspector"), Role::from("regulator")].into();
    assert_eq!(policy.access_for_roles(&roles), a);
    assert_eq!(
        policy.access_for_roles(&BTreeSet::new()),
        Default::default(),
        "a holder with no role is not a party, `*` does not grant it anything"
    );
}

#[test]
fn each_role_receives_a_verifying_view_without_what_it_may_not_read() {
    let policy = deal_policy();
    for alg in [HashAlg::Blake3, HashAlg::Sha256] {
        let s = deal_state(alg);
        let price_salt = hex::encode(
            s.sections["price"]
                .disclosure
                .as_ref()
                .expect("disclosed")
                .salt
                .0,
        );
        for (actor, sees_price) in [
            ("bank/bob", true),
            ("homes/sue", true),
            ("check/ina", false),
            ("gov/rex", false),
            ("evil/eve", false),
        ] {
            let access = policy.access(&ActorId::from(actor), &s.parties);
            let view = s.redact(|n| access.can_read(n));
            assert_eq!(view.verify(), Ok(()), "{actor}");
            assert_eq!(view.root, s.root);
            let text = everything_stored(&view);
            assert_eq!(
                text.contains("500000"),
                sees_price,
                "{actor} price plaintext"
            );
            assert_eq!(text.contains(&price_salt), sees_price, "{actor} price salt");
            let shown: BTreeMap<&str, bool> = view
                .sections
                .iter()
                .map(|(n, sec)| (n.as_str(), sec.disclosure.is_some()))
                .collect();
            let expected_common = actor != "evil/eve";
            assert_eq!(shown["common"], expected_common, "{actor} common");
            assert_eq!(shown["inspection"], expected_common, "{actor} inspection");
        }
    }
}
