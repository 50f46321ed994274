//! Fixtures shared by the sst-core integration tests: deterministic actors and salts, the
//! real-estate contract of DESIGN.md, an independent re-implementation of the documented
//! hashing formulas, and proptest strategies for portable JSON and whole states.
//!
//! Each test binary uses a different subset of these helpers, so unused ones are allowed.
#![allow(dead_code)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value};
use sha2::Digest as _;
use sst_core::canonical;
use sst_core::{
    Actor, ActorKey, ActorStatus, ContractPolicy, ContractRef, Digest, EventId, HashAlg, NodeId,
    Parties, Salt, Section, SectionPolicy, State, StateId, StateRoot, Timestamp,
};

/// A deterministic actor `node/name` whose key seed is derived from its id.
pub fn actor(node: &str, name: &str) -> (Actor, ActorKey) {
    let id = format!("{node}/{name}");
    let key = ActorKey::from_seed(seed_of(&id));
    let actor = Actor {
        id: id.as_str().into(),
        node: NodeId::from(node),
        public_key: key.public_key(),
        status: ActorStatus::Active,
    };
    (actor, key)
}

/// A 32-byte seed derived from a label (BLAKE3 of the label: fixed forever).
pub fn seed_of(label: &str) -> [u8; 32] {
    *blake3::hash(label.as_bytes()).as_bytes()
}

/// A fixed salt derived from a label.
pub fn salt_of(label: &str) -> Salt {
    Salt(seed_of(&format!("salt:{label}")))
}

/// The real-estate contract reference used throughout.
pub fn deal_contract() -> ContractRef {
    ContractRef::new("real-estate-deal", 1)
}

/// The section policy of DESIGN.md's real-estate example: `common` read by all parties,
/// written by buyer and seller; `price` read and written by buyer and seller only;
/// `inspection` read by all, written by the inspector only; regulators only observe.
pub fn deal_policy() -> ContractPolicy {
    ContractPolicy::default()
        .section("common", SectionPolicy::new(["*"], ["buyer", "seller"]))
        .section(
            "price",
            SectionPolicy::new(["buyer", "seller"], ["buyer", "seller"]),
        )
        .section("inspection", SectionPolicy::new(["*"], ["inspector"]))
}

/// One actor per role of the deal: `bank/bob` buyer, `homes/sue` seller, `check/ina`
/// inspector, `gov/rex` regulator.
pub fn deal_parties() -> Parties {
    Parties::default()
        .with("buyer", "bank/bob")
        .with("seller", "homes/sue")
        .with("inspector", "check/ina")
        .with("regulator", "gov/rex")
}

/// The deal's section values.
pub fn deal_values() -> BTreeMap<String, Value> {
    [
        (
            "common",
            serde_json::json!({"address": "1 Main St", "parcel": "A-17", "status": "offer"}),
        ),
        (
            "price",
            serde_json::json!({"amount": 500000, "currency": "EUR"}),
        ),
        (
            "inspection",
            serde_json::json!({"passed": null, "notes": []}),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Seals `values` with salts derived from `label` and the section name.
pub fn seal_fixed(
    alg: HashAlg,
    label: &str,
    values: BTreeMap<String, Value>,
) -> BTreeMap<String, Section> {
    values
        .into_iter()
        .map(|(n, v)| {
            let s = Section::with_salt(alg, &n, salt_of(&format!("{label}/{n}")), v);
            (n, s)
        })
        .collect()
}

/// Version 1 of the deal with fixed salts, parties and timestamp.
pub fn deal_state(alg: HashAlg) -> State {
    State::create(
        alg,
        StateId::from("deal-1"),
        deal_contract(),
        deal_parties(),
        seal_fixed(alg, "deal-1/v1", deal_values()),
        None,
        Timestamp(1_700_000_000_000),
    )
}

// ---------------------------------------------------------------------------------------------
// The documented hashing formulas, written out independently of sst-core's `Hasher`.

/// `H(len(domain) || domain || len(part) || part …)` with little-endian u64 lengths.
pub fn spec_hash(alg: HashAlg, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut input = Vec::new();
    for p in std::iter::once(&domain.as_bytes()).chain(parts.iter()) {
        input.extend_from_slice(&(p.len() as u64).to_le_bytes());
        input.extend_from_slice(p);
    }
    match alg {
        HashAlg::Blake3 => *blake3::hash(&input).as_bytes(),
        HashAlg::Sha256 => sha2::Sha256::digest(&input).into(),
        other => panic!("no spec hash for {other}"),
    }
}

/// Section hash per the README: `H("sst/section/v1", name, salt, canonical(value))`, from
/// the canonical text of the value.
pub fn spec_section_hash(alg: HashAlg, name: &str, salt: &Salt, canonical_value: &[u8]) -> Digest {
    let bytes = spec_hash(
        alg,
        "sst/section/v1",
        &[name.as_bytes(), &salt.0, canonical_value],
    );
    Digest::from_parts(alg, bytes)
}

/// State root per the README: `H("sst/state/v1", canonical(header), (name, hash string)…)`
/// with sections in name order.
pub fn spec_root(
    alg: HashAlg,
    header_canonical: &str,
    hashes: &BTreeMap<String, Digest>,
) -> Digest {
    let strings: Vec<(String, String)> = hashes
        .iter()
        .map(|(n, h)| (n.clone(), h.to_string()))
        .collect();
    let mut parts: Vec<&[u8]> = vec![header_canonical.as_bytes()];
    for (n, h) in &strings {
        parts.push(n.as_bytes());
        parts.push(h.as_bytes());
    }
    Digest::from_parts(alg, spec_hash(alg, "sst/state/v1", &parts))
}

/// Event id per the README: `H("sst/event/v1", canonical(body))`.
pub fn spec_event_id(alg: HashAlg, body: &Value) -> EventId {
    EventId(Digest::from_parts(
        alg,
        spec_hash(alg, "sst/event/v1", &[&canonical::to_vec(body)]),
    ))
}

/// The 32-byte message an Ed25519 signature covers for `digest`:
/// `BLAKE3("sst/sig/v1", alg id, digest bytes)`.
pub fn spec_signing_message(digest: &Digest) -> [u8; 32] {
    spec_hash(
        HashAlg::Blake3,
        "sst/sig/v1",
        &[digest.alg().as_str().as_bytes(), digest.bytes()],
    )
}

// ---------------------------------------------------------------------------------------------
// proptest strategies

/// A portable object key (non-empty, no `$` prefix, no `.`, no NUL).
pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,7}",
        "[A-Za-z é€😀-]{1,6}".prop_filter("no leading $", |k| !k.starts_with('$')),
    ]
}

/// A portable scalar.
pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(Value::from),
        "[a-zA-Z0-9 é€😀\"\\\\\n]{0,12}".prop_map(Value::String),
    ]
}

/// A portable JSON value of modest depth and size.
pub fn portable_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A section value: an object with at least one number and one string leaf, plus arbitrary
/// portable members.
pub fn section_value() -> impl Strategy<Value = Value> {
    (
        (-(1i64 << 53) + 1..(1i64 << 53)),
        "[a-z]{1,8}",
        prop::collection::btree_map(key(), portable_value(), 0..4),
    )
        .prop_map(|(n, s, rest)| {
            let mut m: Map<String, Value> = rest.into_iter().collect();
            m.insert("n".into(), Value::from(n));
            m.insert("s".into(), Value::String(s));
            Value::Object(m)
        })
}

/// A section name.
pub fn section_name() -> impl Strategy<Value = String> {
    "[a-z][a-z_]{0,9}"
}

/// A salt.
pub fn salt() -> impl Strategy<Value = Salt> {
    any::<[u8; 32]>().prop_map(Salt)
}

/// A hash algorithm.
pub fn alg() -> impl Strategy<Value = HashAlg> {
    prop_oneof![Just(HashAlg::Blake3), Just(HashAlg::Sha256)]
}

/// Parties: 1..4 roles with 1..3 actors each.
pub fn parties() -> impl Strategy<Value = Parties> {
    prop::collection::btree_map(
        "[a-z]{2,9}",
        prop::collection::btree_set("[a-z]{1,5}/[a-z]{1,5}", 1..3),
        1..4,
    )
    .prop_map(|m| {
        let mut p = Parties::default();
        for (role, actors) in m {
            for a in actors {
                p = p.with(role.clone(), a);
            }
        }
        p
    })
}

/// A digest of either algorithm.
pub fn digest() -> impl Strategy<Value = Digest> {
    (alg(), any::<[u8; 32]>()).prop_map(|(a, b)| Digest::from_parts(a, b))
}

/// A state version (1..5) with 1..5 disclosed sections, random header fields and a
/// consistent root.
pub fn state() -> impl Strategy<Value = State> {
    (
        alg(),
        "[a-z]{1,6}-[0-9]{1,4}",
        ("[a-z-]{1,10}", 1u32..5),
        parties(),
        prop::collection::btree_map(section_name(), (section_value(), salt()), 1..5),
        1u64..5,
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        0i64..4_000_000_000_000,
    )
        .prop_map(
            |(alg, id, (cname, cver), parties, secs, version, prev, last, ts)| {
                let sections = secs
                    .into_iter()
                    .map(|(n, (v, salt))| {
                        let s = Section::with_salt(alg, &n, salt, v);
                        (n, s)
                    })
                    .collect();
                let mut s = State::create(
                    alg,
                    StateId::from(id.as_str()),
                    ContractRef::new(cname, cver),
                    parties,
                    sections,
                    Some(EventId(Digest::from_parts(alg, last))),
                    Timestamp(ts),
                );
                if version > 1 {
                    s.version = version;
                    s.prev_root = Some(StateRoot(Digest::from_parts(alg, prev)));
                    s.root = s.compute_root();
                }
                s
            },
        )
}
