//! Micro-benchmark of sst-core's hot primitives on this machine: strict signature
//! verification one by one, batched and on every core; the cost of an event id, of canonical
//! JSON and of a commit batch's validation, each next to the way it was done before.
//!
//! Run with `cargo run --release -p sst-core --example crypto_rate [-- <signatures>]`.

#[path = "../tests/previous/mod.rs"]
mod previous;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sst_core::hash::{hash_parts, Domain};
use sst_core::sign::{available_workers, verify_batch, verify_strict_many};
use sst_core::{
    canonical, ActorId, ActorKey, Base, CommitBatch, CommitItem, ContractRef, Digest, Event,
    EventKind, EventRecord, HashAlg, LogRecord, NodeId, OriginSeq, Outcome, Parties, PublicKey,
    Section, SignatureBytes, SignedEvent, State, StateId, StateRoot, Timestamp,
};

/// Runs `f` (which handles `per_call` items) for about half a second, three times, and
/// returns the median rate in items per second.
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

/// Prints one line: what, its rate, and its ratio to `base`.
fn line(what: &str, rate: f64, base: f64) {
    println!("  {what:<40} {rate:>12.0} /s  {:>5.2}x", rate / base);
}

fn signatures(n: usize) -> Vec<(PublicKey, Digest, SignatureBytes)> {
    let keys: Vec<ActorKey> = (0..64u8).map(|i| ActorKey::from_seed([i; 32])).collect();
    (0..n)
        .map(|i| {
            let k = &keys[i % keys.len()];
            let d = hash_parts(HashAlg::Blake3, Domain::Envelope, &[&i.to_le_bytes()]);
            (k.public_key(), d, k.sign_digest(&d))
        })
        .collect()
}

fn section_values(i: u64) -> BTreeMap<String, Value> {
    BTreeMap::from([
        (
            "price".to_owned(),
            json!({"amount": 500_000 + i, "currency": "EUR", "terms": ["cash", "30 days"]}),
        ),
        (
            "common".to_owned(),
            json!({"address": "1 Main St", "parcel": "A-17", "status": "offer"}),
        ),
    ])
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
        payload: json!({ "sections": section_values(i) }),
        timestamp: Timestamp(1_700_000_000_000),
        alg: HashAlg::Blake3,
    }
}

/// A batch of `n` applied creates, as a node commits them.
fn batch(n: u64, key: &ActorKey) -> CommitBatch {
    let items = (0..n)
        .map(|i| {
            let mut e = event(i);
            e.kind = EventKind::Create;
            e.base = None;
            let signed = SignedEvent::sign(e, key);
            let sections: BTreeMap<String, Section> = section_values(i)
                .into_iter()
                .map(|(name, v)| {
                    let s = Section::seal(HashAlg::Blake3, &name, v);
                    (name, s)
                })
                .collect();
            let disclosures = sections
                .iter()
                .filter_map(|(n, s)| s.disclosure.clone().map(|d| (n.clone(), d)))
                .collect();
            let state = State::create(
                HashAlg::Blake3,
                signed.event.state_id.clone(),
                signed.event.contract.clone(),
                Parties::default().with("buyer", "bank/bob"),
                sections,
                Some(signed.id),
                signed.event.timestamp,
            );
            CommitItem {
                event: EventRecord {
                    signed,
                    disclosures,
                    outcome: Outcome::Applied {
                        version: 1,
                        root: state.root,
                    },
                    receipt: None,
                    business_events: Vec::new(),
                    endorsements: Vec::new(),
                },
                state: Some(std::sync::Arc::new(state)),
            }
        })
        .collect();
    CommitBatch::new(items)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2048);
    let workers = available_workers();
    let items = signatures(n);
    println!("strict signature verification, {n} signatures, {workers} cores available");
    let single = rate(n, || {
        for (k, d, s) in &items {
            assert!(k.verify_digest(d, s).is_ok());
        }
    });
    line("one by one (verify_strict)", single, single);
    let before = rate(n, || assert!(previous::batch_verify(&items)));
    line("previous batch path, 1 thread", before, single);
    let batch_rate = rate(n, || assert!(verify_batch(&items).is_ok()));
    line("verify_batch, 1 thread", batch_rate, single);
    let all = rate(n, || {
        assert!(verify_strict_many(&items, workers)
            .iter()
            .all(Result::is_ok))
    });
    line(
        &format!("verify_strict_many, {workers} threads"),
        all,
        single,
    );

    let key = ActorKey::from_seed([7; 32]);
    let events: Vec<Event> = (0..256).map(event).collect();
    let signed: Vec<SignedEvent> = events
        .iter()
        .map(|e| SignedEvent::sign(e.clone(), &key))
        .collect();
    let pk = key.public_key();
    println!(
        "signed events (id + strict signature), {} events",
        signed.len()
    );
    let one = rate(signed.len(), || {
        for s in &signed {
            assert!(s.verify(&pk).is_ok());
        }
    });
    line("SignedEvent::verify one by one", one, one);
    let pairs: Vec<(&SignedEvent, PublicKey)> = signed.iter().map(|s| (s, pk)).collect();
    for threads in [1, workers] {
        let many = rate(signed.len(), || {
            assert!(SignedEvent::verify_many(&pairs, threads)
                .iter()
                .all(Result::is_ok))
        });
        line(
            &format!("SignedEvent::verify_many, {threads} threads"),
            many,
            one,
        );
    }

    println!("event id and canonical JSON, {} events", events.len());
    let old_id = rate(events.len(), || {
        for e in &events {
            std::hint::black_box(previous::event_id(e));
        }
    });
    line("event id via a JSON value tree (before)", old_id, old_id);
    let new_id = rate(events.len(), || {
        for e in &events {
            std::hint::black_box(e.id());
        }
    });
    line("Event::id, written straight (after)", new_id, old_id);
    let values: Vec<Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).expect("serialisable"))
        .collect();
    let old_canon = rate(values.len(), || {
        for v in &values {
            std::hint::black_box(previous::canonical(v));
        }
    });
    line("canonical JSON of a tree, two passes", old_canon, old_canon);
    let new_canon = rate(values.len(), || {
        for v in &values {
            std::hint::black_box(canonical::to_string(v));
        }
    });
    line("canonical::to_string, one pass", new_canon, old_canon);

    let size = 64;
    let plain = batch(size, &key);
    println!("commit batch validation, {size} applied creates");
    let full = rate(size as usize, || assert!(plain.validate().is_ok()));
    line("validate (full)", full, full);
    let one = rate(size as usize, || assert!(plain.clone().validated().is_ok()));
    line("clone + validated(), 1 thread", one, full);
    let spread = rate(size as usize, || {
        assert!(plain.clone().validated_on(workers).is_ok())
    });
    line(
        &format!("clone + validated_on, {workers} threads"),
        spread,
        full,
    );
    let logged = rate(size as usize, || {
        for item in &plain.items {
            std::hint::black_box(LogRecord::Event(&item.event).digest(HashAlg::Blake3));
        }
    });
    line("log-record digests (store, per commit)", logged, full);
    let sealed = plain.clone().validated().expect("valid batch");
    let memo = rate(size as usize, || assert!(sealed.validate().is_ok()));
    line("validate of a validated() batch", memo, full);
}
