//! How sst-core computed things before it was made faster, kept as the reference the faster
//! code must match byte for byte (tests) and as the baseline the micro-benchmark measures
//! against (`examples/crypto_rate.rs` includes this file).
#![allow(dead_code)]

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;
use sst_core::hash::{hash_parts, Domain};
use sst_core::{canonical, Digest, Event, EventId, HashAlg, PublicKey, SignatureBytes};

/// The canonicaliser before it walked each tree once: the exact length computed first, then
/// every object's members collected and sorted, whatever order they came in (leaves are
/// printed as they always were).
pub fn canonical(value: &Value) -> String {
    let mut out = String::with_capacity(canonical::encoded_len(value));
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|(a, _), (b, _)| canonical::cmp_utf16(a, b));
            out.push('{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical::write_to(&Value::String(key.clone()), out);
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
        leaf => canonical::write_to(leaf, out),
    }
}

/// The event id as it was computed before: the body turned into a `Value` tree, then
/// canonicalised.
pub fn event_id(event: &Event) -> EventId {
    let body = serde_json::to_value(event).unwrap_or(Value::Null);
    EventId(hash_parts(
        event.alg,
        Domain::Event,
        &[canonical(&body).as_bytes()],
    ))
}

/// The batch path before: every `R` checked for prime order (a constant-time scalar
/// multiplication each), then ed25519-dalek's batch equation. Whether all verify.
pub fn batch_verify(items: &[(PublicKey, Digest, SignatureBytes)]) -> bool {
    let prime_order = items.iter().all(|(_, _, s)| {
        let mut r = [0u8; 32];
        r.copy_from_slice(&s.0[..32]);
        CompressedEdwardsY(r).decompress().is_some_and(|p| {
            p.compress().to_bytes() == r && !p.is_small_order() && p.is_torsion_free()
        })
    });
    let messages: Vec<[u8; 32]> = items
        .iter()
        .map(|(_, d, _)| {
            *hash_parts(
                HashAlg::Blake3,
                Domain::Signature,
                &[d.alg().as_str().as_bytes(), d.bytes()],
            )
            .bytes()
        })
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
    let sigs: Vec<Signature> = items
        .iter()
        .map(|(_, _, s)| Signature::from_bytes(&s.0))
        .collect();
    let keys: Vec<VerifyingKey> = items
        .iter()
        .map(|(k, _, _)| VerifyingKey::from_bytes(&k.to_bytes()).expect("valid key"))
        .collect();
    prime_order && ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_ok()
}

/// A receipt's digest as it was computed before: a JSON tree built with `json!`.
pub fn receipt_digest(record: &sst_core::EventRecord) -> Digest {
    let mut body = serde_json::json!({
        "event": record.id().to_string(),
        "state": record.event().state_id.as_str(),
        "outcome": record.outcome,
    });
    if !record.business_events.is_empty() {
        body["business_events"] = serde_json::json!(record.business_events);
    }
    hash_parts(
        record.id().0.alg(),
        Domain::Receipt,
        &[canonical(&body).as_bytes()],
    )
}

/// An event row's log-record digest as it was computed before.
pub fn event_record_digest(record: &sst_core::EventRecord, alg: HashAlg) -> Digest {
    let mut v = serde_json::json!({
        "id": record.id().to_string(),
        "signatures": record.signed.signatures,
        "disclosures": record.disclosures,
        "outcome": record.outcome,
        "receipt": record.receipt,
    });
    if !record.business_events.is_empty() {
        v["business_events"] = serde_json::json!(record.business_events);
    }
    hash_parts(alg, Domain::LogRecord, &[canonical(&v).as_bytes()])
}

/// Any other record's log-record digest (or a checkpoint's, a contract identity's) as it was
/// computed before: its `to_value` tree, canonicalised, in `domain`.
pub fn value_digest<T: serde::Serialize>(value: &T, alg: HashAlg, domain: Domain) -> Digest {
    let v = serde_json::to_value(value).unwrap_or(Value::Null);
    hash_parts(alg, domain, &[canonical(&v).as_bytes()])
}
