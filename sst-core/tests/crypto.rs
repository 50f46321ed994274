//! Signatures under strict rules: `SignedEvent::verify` fails on any change of body, id or
//! signature; small-order and mixed-order keys, small-order or torsioned `R` and
//! non-canonical `S` are refused; `verify_batch` agrees with strict single verification and
//! names the first failing entry; PKCS#8 PEM keys round-trip; `Envelope` seals, signs and
//! verifies.

mod common;
mod previous;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use sha2::Digest as _;
use sst_core::sign::{verify_batch, verify_batch_parallel, verify_strict_many};
use sst_core::{
    ActorId, ActorKey, Base, ContractDescriptor, ContractRecord, ContractRef, CryptoError, Digest,
    Envelope, Event, EventId, EventKind, HashAlg, NodeId, OriginSeq, PublicKey, SignatureBytes,
    SignedEvent, StateId, StateRoot, Timestamp,
};

use common::{deal_policy, portable_value, seed_of, spec_signing_message};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn key(label: &str) -> ActorKey {
    ActorKey::from_seed(seed_of(label))
}

fn event(payload: Value) -> Event {
    Event {
        kind: EventKind::ChangeSections,
        state_id: StateId::from("deal-1"),
        contract: ContractRef::new("real-estate-deal", 1),
        base: Some(Base {
            version: 3,
            root: StateRoot(Digest::from_parts(HashAlg::Blake3, seed_of("root v3"))),
        }),
        origin_node: NodeId::from("bank"),
        origin_seq: OriginSeq(7),
        actor: ActorId::from("bank/bob"),
        payload,
        timestamp: Timestamp(1_700_000_000_000),
        alg: HashAlg::Blake3,
    }
}

fn signed(payload: Value) -> SignedEvent {
    SignedEvent::sign(event(payload), &key("bank/bob"))
}

fn hex32(s: &str) -> [u8; 32] {
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).expect("32 hex bytes");
    b
}

/// The eight points of order dividing 8, canonically encoded: the identity, the point of
/// order 2, two of order 4 and four of order 8.
const SMALL_ORDER: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

/// Non-canonical encodings (y ≥ p, or a sign bit on x = 0) of small-order points.
const NON_CANONICAL_SMALL_ORDER: [&str; 4] = [
    "0100000000000000000000000000000000000000000000000000000000000080",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
];

/// The group order L, little-endian.
const L: &str = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";

fn point(hex: &str) -> EdwardsPoint {
    CompressedEdwardsY(hex32(hex))
        .decompress()
        .expect("a curve point")
}

/// `k = SHA-512(R || A || M) mod L` for the message SST signs for `digest`.
fn challenge(r: &[u8; 32], a: &[u8; 32], digest: &Digest) -> Scalar {
    let mut h = sha2::Sha512::new();
    h.update(r);
    h.update(a);
    h.update(spec_signing_message(digest));
    let wide: [u8; 64] = h.finalize().into();
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// A signature by `seed` over `digest` whose `R` is `r_point` and whose `S` satisfies the
/// cofactored equation `[8][S]B = [8]R + [8][k]A` (what a lax verifier accepts) with
/// `S = nonce + k·a`, where `R = [nonce]B + T` for a torsion point `T`.
fn forged_with_r(seed: &[u8; 32], digest: &Digest, nonce: Scalar, torsion: &str) -> SignatureBytes {
    let sk = SigningKey::from_bytes(seed);
    let a = sk.to_scalar();
    let pk = sk.verifying_key().to_bytes();
    let r_point = EdwardsPoint::mul_base(&nonce) + point(torsion);
    let r = r_point.compress().to_bytes();
    let k = challenge(&r, &pk, digest);
    let s = nonce + k * a;
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&r);
    out[32..].copy_from_slice(s.as_bytes());
    SignatureBytes(out)
}

/// `sig` with `S` replaced by `S + L` (same scalar mod L, non-canonical encoding).
fn s_plus_l(sig: &SignatureBytes) -> SignatureBytes {
    let l = hex32(L);
    let mut out = *sig;
    let mut carry = 0u16;
    for (i, l_byte) in l.iter().enumerate() {
        let v = u16::from(sig.0[32 + i]) + u16::from(*l_byte) + carry;
        out.0[32 + i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 256 bits");
    out
}

fn digest_of(label: &str) -> Digest {
    Digest::from_parts(HashAlg::Blake3, seed_of(label))
}

// ---------------------------------------------------------------------------------------------
// SignedEvent

#[test]
fn a_signed_event_verifies_with_its_actor_key_only() {
    let e = signed(json!({"sections": {"price": "blake3:00"}}));
    assert_eq!(e.verify(&key("bank/bob").public_key()), Ok(()));
    assert_eq!(
        e.verify(&key("homes/sue").public_key()),
        Err(CryptoError::BadSignature)
    );
    let mut other = e.clone();
    other.signatures[0].signer = ActorId::from("homes/sue");
    assert_eq!(
        other.verify(&key("bank/bob").public_key()),
        Err(CryptoError::MissingSignature("bank/bob".into()))
    );
    let mut none = e.clone();
    none.signatures.clear();
    assert!(none.verify(&key("bank/bob").public_key()).is_err());
}

/// A change to one field of an event body.
#[derive(Debug, Clone)]
enum BodyEdit {
    Kind,
    StateId,
    ContractName,
    ContractVersion,
    BaseDropped,
    BaseVersion,
    BaseRoot(Index),
    OriginNode,
    OriginSeq,
    Actor,
    Payload(Value),
    Timestamp(i64),
    Alg,
}

fn body_edit() -> impl Strategy<Value = BodyEdit> {
    prop_oneof![
        Just(BodyEdit::Kind),
        Just(BodyEdit::StateId),
        Just(BodyEdit::ContractName),
        Just(BodyEdit::ContractVersion),
        Just(BodyEdit::BaseDropped),
        Just(BodyEdit::BaseVersion),
        any::<Index>().prop_map(BodyEdit::BaseRoot),
        Just(BodyEdit::OriginNode),
        Just(BodyEdit::OriginSeq),
        Just(BodyEdit::Actor),
        portable_value().prop_map(BodyEdit::Payload),
        any::<i64>().prop_map(BodyEdit::Timestamp),
        Just(BodyEdit::Alg),
    ]
}

fn apply_body_edit(e: &mut Event, edit: &BodyEdit) {
    match edit {
        BodyEdit::Kind => {
            e.kind = if e.kind == EventKind::CallMethod {
                EventKind::Create
            } else {
                EventKind::CallMethod
            }
        }
        BodyEdit::StateId => e.state_id.0.push('x'),
        BodyEdit::ContractName => e.contract.name.push('x'),
        BodyEdit::ContractVersion => e.contract.version += 1,
        BodyEdit::BaseDropped => e.base = None,
        BodyEdit::BaseVersion => e.base.as_mut().expect("base").version += 1,
        BodyEdit::BaseRoot(at) => {
            let base = e.base.as_mut().expect("base");
            let mut b = *base.root.0.bytes();
            b[at.index(32)] ^= 1 << at.index(8);
            base.root = StateRoot(Digest::from_parts(base.root.0.alg(), b));
        }
        BodyEdit::OriginNode => e.origin_node.0.push('x'),
        BodyEdit::OriginSeq => e.origin_seq.0 += 1,
        BodyEdit::Actor => e.actor.0.push('x'),
        BodyEdit::Payload(v) => {
            e.payload = if *v == e.payload {
                json!([v])
            } else {
                v.clone()
            }
        }
        BodyEdit::Timestamp(t) => e.timestamp.0 = if *t == e.timestamp.0 { t ^ 1 } else { *t },
        BodyEdit::Alg => {
            e.alg = if e.alg == HashAlg::Blake3 {
                HashAlg::Sha256
            } else {
                HashAlg::Blake3
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The event id, written straight from the event, is the id computed the previous way
    /// (through a JSON value tree), for any payload, sequence, clock and algorithm.
    #[test]
    fn event_id_is_the_id_computed_the_previous_way(
        payload in portable_value(),
        seq in any::<u64>(),
        at in any::<i64>(),
        sha in any::<bool>(),
        base in any::<bool>(),
    ) {
        let mut e = event(payload);
        e.origin_seq = OriginSeq(seq);
        e.timestamp = Timestamp(at);
        if sha {
            e.alg = HashAlg::Sha256;
        }
        if !base {
            e.base = None;
        }
        prop_assert_eq!(e.id(), previous::event_id(&e));
    }

    /// Any change of the body fails verification, whether or not the forger also recomputes
    /// the id (the signature covers the id, the id covers the body).
    #[test]
    fn any_body_change_fails_verify(payload in portable_value(), edit in body_edit()) {
        let original = signed(payload);
        let pk = key("bank/bob").public_key();
        prop_assert_eq!(original.verify(&pk), Ok(()));
        let mut forged = original.clone();
        apply_body_edit(&mut forged.event, &edit);
        prop_assert_ne!(forged.event.id(), original.id, "{:?} did not change the id", edit);
        prop_assert!(matches!(forged.verify(&pk), Err(CryptoError::Integrity(_))));
        forged.id = forged.event.id();
        prop_assert!(forged.verify(&pk).is_err(), "{:?} with recomputed id accepted", edit);
    }

    /// Any change of the id fails verification, the signature notwithstanding.
    #[test]
    fn any_id_change_fails_verify(at in any::<Index>(), bit in 0u8..8, relabel in any::<bool>()) {
        let original = signed(json!({"n": 1}));
        let pk = key("bank/bob").public_key();
        let mut forged = original.clone();
        let d = original.id.0;
        forged.id = EventId(if relabel {
            Digest::from_parts(HashAlg::Sha256, *d.bytes())
        } else {
            let mut b = *d.bytes();
            b[at.index(32)] ^= 1 << bit;
            Digest::from_parts(d.alg(), b)
        });
        prop_assert!(matches!(forged.verify(&pk), Err(CryptoError::Integrity(_))));
    }

    /// Any change of any signature byte fails verification.
    #[test]
    fn any_signature_byte_change_fails_verify(i in 0usize..64, mask in 1u8..=255) {
        let mut e = signed(json!({"n": 2}));
        e.signatures[0].signature.0[i] ^= mask;
        prop_assert_eq!(
            e.verify(&key("bank/bob").public_key()),
            Err(CryptoError::BadSignature)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Non-strict keys and signatures

#[test]
fn the_small_order_encodings_are_the_eight_torsion_points() {
    let mut seen = std::collections::BTreeSet::new();
    for hex in SMALL_ORDER {
        let p = point(hex);
        assert!(p.is_small_order(), "{hex}");
        assert_eq!(p.compress().to_bytes(), hex32(hex), "{hex} is canonical");
        seen.insert(hex);
    }
    assert_eq!(seen.len(), 8);
    let order8 = point(SMALL_ORDER[4]);
    let four = order8 + order8 + order8 + order8;
    assert!(!four.is_identity(), "really of order 8");
    assert!(order8.mul_by_cofactor().is_identity());
    assert_eq!(Scalar::from_bytes_mod_order(hex32(L)), Scalar::ZERO);
}

#[test]
fn small_order_and_non_canonical_keys_are_rejected() {
    for hex in SMALL_ORDER.iter().chain(NON_CANONICAL_SMALL_ORDER.iter()) {
        let err = PublicKey::from_bytes(&hex32(hex)).expect_err(hex);
        assert!(matches!(err, CryptoError::InvalidKey(_)), "{hex}: {err}");
        let json = Value::String((*hex).to_owned());
        assert!(
            serde_json::from_value::<PublicKey>(json).is_err(),
            "{hex} deserialized"
        );
    }
    // Bytes that are not a point at all (y = 2 has no x on the curve).
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert!(CompressedEdwardsY(not_a_point).decompress().is_none());
    assert!(PublicKey::from_bytes(&not_a_point).is_err());
}

#[test]
fn mixed_order_keys_are_rejected() {
    let good = key("bank/bob").public_key();
    let a = point(&hex::encode(good.to_bytes()));
    assert_eq!(PublicKey::from_bytes(&good.to_bytes()), Ok(good));
    for t in &SMALL_ORDER[1..] {
        let mixed = (a + point(t)).compress().to_bytes();
        assert!(
            matches!(
                PublicKey::from_bytes(&mixed),
                Err(CryptoError::InvalidKey(_))
            ),
            "A + {t} accepted"
        );
        // ed25519-dalek alone would take it: the check is SST's.
        assert!(VerifyingKey::from_bytes(&mixed).is_ok());
    }
}

#[test]
fn a_signature_with_small_order_r_is_rejected() {
    let seed = seed_of("bank/bob");
    let pk = key("bank/bob").public_key();
    let digest = digest_of("contract artifact");
    let vk = VerifyingKey::from_bytes(&pk.to_bytes()).expect("key");
    for t in SMALL_ORDER {
        // R = T itself (nonce 0): S = k·a satisfies the cofactored equation.
        let sig = forged_with_r(&seed, &digest, Scalar::ZERO, t);
        assert_eq!(&sig.0[..32], &hex32(t), "R is the small-order point");
        assert_eq!(
            pk.verify_digest(&digest, &sig),
            Err(CryptoError::BadSignature),
            "small-order R {t} accepted"
        );
        assert!(matches!(
            verify_batch(&[(pk, digest, sig)]),
            Err(CryptoError::BatchEntry { index: 0, .. })
        ));
    }
    // With R = identity even ed25519-dalek's lax `verify` accepts: `verify_strict` is what
    // keeps it out.
    let sig = forged_with_r(&seed, &digest, Scalar::ZERO, SMALL_ORDER[0]);
    let msg = spec_signing_message(&digest);
    assert!(vk.verify(&msg, &Signature::from_bytes(&sig.0)).is_ok());
    assert!(vk
        .verify_strict(&msg, &Signature::from_bytes(&sig.0))
        .is_err());
    // ed25519-dalek's batch equation accepts it too; SST's `verify_batch` does not.
    assert!(ed25519_dalek::verify_batch(
        &[msg.as_slice()],
        &[Signature::from_bytes(&sig.0)],
        &[vk]
    )
    .is_ok());
    assert!(verify_batch(&[(pk, digest, sig)]).is_err());
}

#[test]
fn a_signature_with_a_torsion_component_in_r_is_rejected_single_and_batched() {
    let seed = seed_of("homes/sue");
    let pk = key("homes/sue").public_key();
    let others: Vec<(PublicKey, Digest, SignatureBytes)> = (0..4)
        .map(|i| {
            let k = key(&format!("other/{i}"));
            let d = digest_of(&format!("doc {i}"));
            (k.public_key(), d, k.sign_digest(&d))
        })
        .collect();
    let dalek_batch = |batch: &[(PublicKey, Digest, SignatureBytes)]| {
        let msgs: Vec<[u8; 32]> = batch
            .iter()
            .map(|(_, d, _)| spec_signing_message(d))
            .collect();
        let msg_refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let sigs: Vec<Signature> = batch
            .iter()
            .map(|(_, _, s)| Signature::from_bytes(&s.0))
            .collect();
        let keys: Vec<VerifyingKey> = batch
            .iter()
            .map(|(k, _, _)| VerifyingKey::from_bytes(&k.to_bytes()).expect("key"))
            .collect();
        ed25519_dalek::verify_batch(&msg_refs, &sigs, &keys).is_ok()
    };
    let digest = digest_of("deal terms");
    for t in &SMALL_ORDER[1..] {
        // ed25519-dalek's batch equation accepts R = [r]B + T whenever its random coefficient
        // for the entry kills T (1 in ord(T) of the nonces): grind a nonce until it does, then
        // check that SST's batch still refuses what strict single verification refuses.
        let (batch, tries) = (0u32..512)
            .find_map(|i| {
                let nonce = Scalar::from_bytes_mod_order(seed_of(&format!("nonce {i}")));
                let sig = forged_with_r(&seed, &digest, nonce, t);
                let mut batch = others.clone();
                batch.insert(2, (pk, digest, sig));
                dalek_batch(&batch).then_some((batch, i))
            })
            .unwrap_or_else(|| panic!("no nonce made ed25519-dalek's batch accept R with {t}"));
        let sig = batch[2].2;
        assert_eq!(
            pk.verify_digest(&digest, &sig),
            Err(CryptoError::BadSignature),
            "{t} after {tries} tries"
        );
        match verify_batch(&batch) {
            Err(CryptoError::BatchEntry { index, .. }) => assert_eq!(index, 2, "{t}"),
            other => panic!("batch with torsioned R {t}: {other:?}"),
        }
    }
}

#[test]
fn non_canonical_s_is_rejected() {
    let k = key("bank/bob");
    let digest = digest_of("payload");
    let sig = k.sign_digest(&digest);
    assert_eq!(k.public_key().verify_digest(&digest, &sig), Ok(()));
    let malleated = s_plus_l(&sig);
    assert_ne!(malleated, sig);
    assert_eq!(
        k.public_key().verify_digest(&digest, &malleated),
        Err(CryptoError::BadSignature)
    );
    assert!(matches!(
        verify_batch(&[
            (k.public_key(), digest, sig),
            (k.public_key(), digest, malleated)
        ]),
        Err(CryptoError::BatchEntry { index: 1, .. })
    ));
    // The same holds inside a signed event: ids never depend on signature bytes, so a
    // malleated signature would otherwise be a second valid encoding of the same event.
    let mut e = signed(json!({}));
    let id = e.id;
    e.signatures[0].signature = s_plus_l(&e.signatures[0].signature);
    assert_eq!(e.id, id);
    assert_eq!(e.verify(&k.public_key()), Err(CryptoError::BadSignature));
}

// ---------------------------------------------------------------------------------------------
// Batch verification

#[derive(Debug, Clone, Copy)]
enum Corruption {
    FlipByte(usize, u8),
    WrongDigest,
    WrongKey,
    SmallOrderR,
    TorsionR,
    NonCanonicalS,
}

fn corruption() -> impl Strategy<Value = Option<Corruption>> {
    prop_oneof![
        3 => Just(None),
        1 => (0usize..64, 1u8..=255).prop_map(|(i, m)| Some(Corruption::FlipByte(i, m))),
        1 => Just(Some(Corruption::WrongDigest)),
        1 => Just(Some(Corruption::WrongKey)),
        1 => Just(Some(Corruption::SmallOrderR)),
        1 => Just(Some(Corruption::TorsionR)),
        1 => Just(Some(Corruption::NonCanonicalS)),
    ]
}

fn batch_entry(i: usize, c: Option<Corruption>) -> (PublicKey, Digest, SignatureBytes) {
    let label = format!("batch/{i}");
    let k = key(&label);
    let d = digest_of(&format!("content {i}"));
    let sig = k.sign_digest(&d);
    match c {
        None => (k.public_key(), d, sig),
        Some(Corruption::FlipByte(at, mask)) => {
            let mut s = sig;
            s.0[at] ^= mask;
            (k.public_key(), d, s)
        }
        Some(Corruption::WrongDigest) => (k.public_key(), digest_of("something else"), sig),
        Some(Corruption::WrongKey) => (key("intruder").public_key(), d, sig),
        Some(Corruption::SmallOrderR) => (
            k.public_key(),
            d,
            forged_with_r(&seed_of(&label), &d, Scalar::ZERO, SMALL_ORDER[0]),
        ),
        Some(Corruption::TorsionR) => (
            k.public_key(),
            d,
            forged_with_r(
                &seed_of(&label),
                &d,
                Scalar::from_bytes_mod_order(seed_of("n")),
                SMALL_ORDER[4],
            ),
        ),
        Some(Corruption::NonCanonicalS) => (k.public_key(), d, s_plus_l(&sig)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// `verify_batch` accepts exactly when every entry verifies strictly on its own, and
    /// otherwise names the first entry that does not.
    #[test]
    fn batch_agrees_with_strict_single_verification(
        plan in prop::collection::vec(corruption(), 0..9),
    ) {
        let items: Vec<_> = plan.iter().enumerate().map(|(i, c)| batch_entry(i, *c)).collect();
        let single: Vec<bool> = items.iter().map(|(k, d, s)| k.verify_digest(d, s).is_ok()).collect();
        for (ok, c) in single.iter().zip(&plan) {
            prop_assert_eq!(*ok, c.is_none(), "{:?}", c);
        }
        match (single.iter().position(|ok| !ok), verify_batch(&items)) {
            (None, Ok(())) => {}
            (Some(first), Err(CryptoError::BatchEntry { index, source })) => {
                prop_assert_eq!(index, first);
                prop_assert_eq!(*source, CryptoError::BadSignature);
            }
            (expected, got) => prop_assert!(false, "expected failure at {:?}, got {:?}", expected, got),
        }
    }

    /// `verify_strict_many` gives, entry by entry and for any number of workers, exactly the
    /// result of strict single verification (the same error included), and
    /// `verify_batch_parallel` fails on the same first entry as `verify_batch`.
    #[test]
    fn parallel_verification_agrees_entry_by_entry_with_strict_single_verification(
        plan in prop::collection::vec(corruption(), 0..80),
        workers in 0usize..5,
    ) {
        let items: Vec<_> = plan.iter().enumerate().map(|(i, c)| batch_entry(i, *c)).collect();
        let single: Vec<Result<(), CryptoError>> =
            items.iter().map(|(k, d, s)| k.verify_digest(d, s)).collect();
        prop_assert_eq!(&verify_strict_many(&items, workers), &single);
        prop_assert_eq!(verify_batch_parallel(&items, workers), verify_batch(&items));
    }
}

/// More entries than one worker takes, with bad ones in every chunk: each is named where it
/// is, whatever the number of threads.
#[test]
fn many_workers_name_every_bad_entry_where_it_is() {
    let plan: Vec<Option<Corruption>> = (0..300)
        .map(|i| match i % 37 {
            5 => Some(Corruption::NonCanonicalS),
            11 => Some(Corruption::TorsionR),
            17 => Some(Corruption::SmallOrderR),
            23 => Some(Corruption::WrongKey),
            29 => Some(Corruption::FlipByte(i % 64, 0x40)),
            _ => None,
        })
        .collect();
    let items: Vec<_> = plan
        .iter()
        .enumerate()
        .map(|(i, c)| batch_entry(i, *c))
        .collect();
    for workers in [1, 2, 3, 8] {
        let results = verify_strict_many(&items, workers);
        assert_eq!(results.len(), items.len());
        for (i, (r, c)) in results.iter().zip(&plan).enumerate() {
            assert_eq!(
                r.is_ok(),
                c.is_none(),
                "entry {i} ({c:?}) with {workers} workers"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

#[test]
fn pkcs8_pem_round_trip_keeps_the_key() {
    let k = key("acme/alice");
    let pem = k.to_pkcs8_pem().expect("pem");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let back = ActorKey::from_pkcs8_pem(&pem).expect("reads back");
    assert_eq!(back.public_key(), k.public_key());
    let d = digest_of("x");
    assert_eq!(back.sign_digest(&d), k.sign_digest(&d), "same secret");
    assert_eq!(back.to_pkcs8_pem().expect("pem"), pem);
    assert_ne!(
        key("acme/bert").to_pkcs8_pem().expect("pem"),
        pem,
        "different keys, different files"
    );

    for bad in [
        String::new(),
        "not a pem".to_owned(),
        pem.replace("PRIVATE KEY", "PUBLIC KEY"),
        pem.lines().take(2).collect::<Vec<_>>().join("\n"),
        pem.replacen('M', "A", 1),
    ] {
        assert!(
            matches!(ActorKey::from_pkcs8_pem(&bad), Err(CryptoError::KeyFile(_))),
            "accepted {bad:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Envelope

#[test]
fn envelope_seal_sign_and_verify() {
    let body = json!({"deal": "deal-1", "amount": 500000, "parties": ["b", "s"]});
    let alice = key("acme/alice");
    let bert = key("acme/bert");
    let env = Envelope::seal(body.clone(), HashAlg::Blake3)
        .sign(ActorId::from("acme/alice"), &alice)
        .sign(ActorId::from("acme/bert"), &bert);
    assert_eq!(env.canonical_bytes(), sst_core::canonical::to_vec(&body));
    assert_eq!(env.verify_hash(), Ok(()));
    assert_eq!(
        env.verify_signer(&ActorId::from("acme/alice"), &alice.public_key()),
        Ok(())
    );
    assert_eq!(
        env.verify_signer(&ActorId::from("acme/bert"), &bert.public_key()),
        Ok(())
    );
    assert_eq!(
        env.verify_signer(&ActorId::from("acme/alice"), &bert.public_key()),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        env.verify_signer(&ActorId::from("acme/carl"), &alice.public_key()),
        Err(CryptoError::MissingSignature("acme/carl".into()))
    );

    // Key order and number spelling do not matter; content does.
    let reordered: Value =
        serde_json::from_str(r#"{"parties":["b","s"],"amount":5e5,"deal":"deal-1"}"#)
            .expect("json");
    assert_eq!(Envelope::seal(reordered, HashAlg::Blake3).hash, env.hash);
    let mut changed = env.clone();
    changed.body["amount"] = json!(500001);
    assert!(matches!(
        changed.verify_hash(),
        Err(CryptoError::Integrity(_))
    ));

    // The hash names its algorithm; the same signature does not carry over to SHA-256.
    let sha = Envelope::seal(body.clone(), HashAlg::Sha256);
    assert_eq!(sha.hash.alg(), HashAlg::Sha256);
    assert_ne!(sha.hash.bytes(), env.hash.bytes());
    let mut relabeled = env.clone();
    relabeled.hash = Digest::from_parts(HashAlg::Sha256, *env.hash.bytes());
    assert!(relabeled.verify_hash().is_err());
    assert_eq!(
        relabeled.verify_signer(&ActorId::from("acme/alice"), &alice.public_key()),
        Err(CryptoError::BadSignature)
    );

    // A signature byte changed: refused.
    let mut bad_sig = env.clone();
    bad_sig.signatures[0].signature.0[63] ^= 0x10;
    assert_eq!(
        bad_sig.verify_signer(&ActorId::from("acme/alice"), &alice.public_key()),
        Err(CryptoError::BadSignature)
    );

    // JSON round trip keeps everything verifiable.
    let back: Envelope =
        serde_json::from_str(&serde_json::to_string(&env).expect("ser")).expect("de");
    assert_eq!(back, env);
    assert_eq!(back.verify_hash(), Ok(()));
    assert_eq!(
        back.verify_signer(&ActorId::from("acme/bert"), &bert.public_key()),
        Ok(())
    );
}

#[test]
fn domains_keep_event_signatures_out_of_envelopes() {
    let e = signed(json!({"sections": {}}));
    let body = serde_json::to_value(&e.event).expect("event json");
    let env = Envelope::seal(body, HashAlg::Blake3);
    assert_ne!(
        env.hash, e.id.0,
        "event ids and envelope hashes use different domains"
    );
    let mut replay = env;
    replay.signatures = e.signatures.clone();
    assert_eq!(
        replay.verify_signer(&ActorId::from("bank/bob"), &key("bank/bob").public_key()),
        Err(CryptoError::BadSignature)
    );
    // The event's own envelope view carries its id and verifies by signer.
    let view = e.envelope();
    assert_eq!(view.hash, e.id.0);
    assert_eq!(
        view.verify_signer(&ActorId::from("bank/bob"), &key("bank/bob").public_key()),
        Ok(())
    );
}

#[test]
fn contract_records_verify_their_identity_and_deployer() {
    let deployer = key("acme/alice");
    let descriptor = ContractDescriptor {
        sync: None,
        contract: ContractRef::new("real-estate-deal", 2),
        policy: deal_policy(),
        methods: vec!["accept".into(), "inspect".into()],
        supersedes: vec![ContractRef::new("real-estate-deal", 1)],
        code_hash: digest_of("wasm bytes"),
        engine: None,
        limits: None,
    };
    let rec = ContractRecord::sign(
        descriptor,
        HashAlg::Blake3,
        ActorId::from("acme/alice"),
        &deployer,
    );
    assert_eq!(rec.verify(&deployer.public_key()), Ok(()));
    assert_eq!(
        rec.verify(&key("acme/bert").public_key()),
        Err(CryptoError::BadSignature)
    );
    let mut changed = rec.clone();
    changed.descriptor.methods.push("steal".into());
    assert!(matches!(
        changed.verify(&deployer.public_key()),
        Err(CryptoError::Integrity(_))
    ));
    let mut policy = rec.clone();
    policy
        .descriptor
        .policy
        .sections
        .get_mut("price")
        .expect("price policy")
        .read
        .insert("regulator".into());
    assert!(policy.verify(&deployer.public_key()).is_err());
}
