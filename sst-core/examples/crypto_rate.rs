//! Micro-benchmark of sst-core's hot primitives on this machine: strict signature
//! verification one by one, batched and on every core, and the cost of an event id and of
//! canonical JSON, each next to the way it was computed before.
//!
//! Run with `cargo run --release -p sst-core --example crypto_rate [-- <signatures>]`.

use std::time::{Duration, Instant};

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::json;
use sst_core::hash::{hash_parts, Domain};
use sst_core::sign::{available_workers, verify_batch, verify_strict_many};
use sst_core::{
    canonical, ActorId, ActorKey, Base, ContractRef, Digest, Event, EventKind, HashAlg, NodeId,
    OriginSeq, PublicKey, SignatureBytes, StateId, StateRoot, Timestamp,
};

/// Runs `f` (which handles `per_call` items) until about half a second has passed, three
/// times, and returns the median rate in items per second.
fn rate(per_call: usize, mut f: impl FnMut()) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut calls = 0usize;
        while start.elapsed() < Duration::from_millis(500) {
            f();
            calls += 1;
        }
        rates.push((calls * per_call) as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[1]
}

fn entries(n: usize) -> Vec<(PublicKey, Digest, SignatureBytes)> {
    let keys: Vec<ActorKey> = (0..64u8).map(|i| ActorKey::from_seed([i; 32])).collect();
    (0..n)
        .map(|i| {
            let k = &keys[i % keys.len()];
            let d = hash_parts(HashAlg::Blake3, Domain::Envelope, &[&i.to_le_bytes()]);
            (k.public_key(), d, k.sign_digest(&d))
        })
        .collect()
}

/// The batch path sst-core used before: every `R` checked for prime order (a constant-time
/// scalar multiplication each), then ed25519-dalek's batch equation.
fn previous_batch(items: &[(PublicKey, Digest, SignatureBytes)]) -> bool {
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

fn event(i: u64) -> Event {
    Event {
        kind: EventKind::ChangeSections,
        state_id: StateId::from(format!("deal-{i}").as_str()),
        contract: ContractRef::new("real-estate-deal", 1),
        base: Some(Base {
            version: 3,
            root: StateRoot(hash_parts(HashAlg::Blake3, Domain::State, &[b"root"])),
        }),
        origin_node: NodeId::from("bank"),
        origin_seq: OriginSeq(i),
        actor: ActorId::from("bank/bob"),
        payload: json!({
            "sections": {
                "price": {"amount": 500_000 + i, "currency": "EUR", "terms": ["cash", "30 days"]},
                "common": {"address": "1 Main St", "parcel": "A-17", "status": "offer"}
            }
        }),
        timestamp: Timestamp(1_700_000_000_000),
        alg: HashAlg::Blake3,
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2048);
    let workers = available_workers();
    let items = entries(n);
    println!("strict signature verification, {n} signatures, {workers} cores available");
    let single = rate(n, || {
        for (k, d, s) in &items {
            assert!(k.verify_digest(d, s).is_ok());
        }
    });
    println!("  one by one (verify_strict)      {single:>10.0} /s  1.00x");
    let before = rate(n, || assert!(previous_batch(&items)));
    println!(
        "  previous batch (1 thread)       {before:>10.0} /s  {:.2}x",
        before / single
    );
    let batch = rate(n, || assert!(verify_batch(&items).is_ok()));
    println!(
        "  verify_batch (1 thread)         {batch:>10.0} /s  {:.2}x",
        batch / single
    );
    let all = rate(n, || {
        assert!(verify_strict_many(&items, workers)
            .iter()
            .all(Result::is_ok))
    });
    println!(
        "  verify_strict_many ({workers} threads)   {all:>10.0} /s  {:.2}x",
        all / single
    );

    let events: Vec<Event> = (0..256).map(event).collect();
    println!("event id and canonical JSON, {} events", events.len());
    let old_id = rate(events.len(), || {
        for e in &events {
            let body = serde_json::to_value(e).expect("serialisable");
            let d = hash_parts(e.alg, Domain::Event, &[&canonical::to_vec(&body)]);
            std::hint::black_box(d);
        }
    });
    println!("  event id via a JSON value tree  {old_id:>10.0} /s");
    let new_id = rate(events.len(), || {
        for e in &events {
            std::hint::black_box(e.id());
        }
    });
    println!(
        "  Event::id                       {new_id:>10.0} /s  {:.2}x",
        new_id / old_id
    );
    let values: Vec<serde_json::Value> = events.iter().map(|e| e.payload.clone()).collect();
    let canon = rate(values.len(), || {
        for v in &values {
            std::hint::black_box(canonical::to_vec(v));
        }
    });
    println!("  canonical::to_vec (payload)     {canon:>10.0} /s");
}
