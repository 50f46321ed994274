//! The digests sst-core now writes straight from typed records (receipts, log records,
//! checkpoints, contract identities, state roots) are byte for byte those of the previous
//! formulas that built a JSON tree first: stored logs, receipts and contract identities keep
//! verifying. (Section hashes, headers, roots and event ids are also pinned by the golden
//! file.)

mod common;
mod previous;

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;
use sst_core::hash::Domain;
use sst_core::{
    ActorKey, BusinessEvent, Checkpoint, ContractDescriptor, ContractLimits, ContractRecord,
    Disclosure, EngineRef, Event, EventKind, EventRecord, HashAlg, LogRecord, NodeId, NodeKey,
    OriginSeq, Outcome, Refusal, RejectReason, Section, SequencingReceipt, SignedEvent, Timestamp,
};

use common::{actor, alg, deal_contract, deal_policy, deal_state, digest, portable_value};

fn record(
    alg: HashAlg,
    payload: Value,
    applied: bool,
    with_receipt: bool,
    business: Vec<(String, Value)>,
) -> EventRecord {
    let (bob, key) = actor("bank", "bob");
    let state = deal_state(alg);
    let signed = SignedEvent::sign(
        Event {
            kind: EventKind::ChangeSections,
            state_id: state.id.clone(),
            contract: deal_contract(),
            base: None,
            origin_node: NodeId::from("bank"),
            origin_seq: OriginSeq(9),
            actor: bob.id.clone(),
            payload,
            timestamp: Timestamp(1_700_000_000_123),
            alg,
        },
        &key,
    );
    let disclosures = state
        .sections
        .iter()
        .filter_map(|(n, s)| s.disclosure.clone().map(|d| (n.clone(), d)))
        .collect();
    let outcome = if applied {
        Outcome::Applied {
            version: 1,
            root: state.root,
        }
    } else {
        Outcome::Rejected {
            reason: RejectReason::StaleBase {
                expected_version: 1,
                found_version: 2,
            },
        }
    };
    let mut rec = EventRecord {
        signed,
        disclosures,
        outcome,
        receipt: None,
        business_events: if applied {
            business
                .into_iter()
                .map(|(name, payload)| BusinessEvent { name, payload })
                .collect()
        } else {
            Vec::new()
        },
        endorsements: Vec::new(),
    };
    if with_receipt {
        let node = NodeKey::from_seed([4; 32]);
        rec.receipt = Some(SequencingReceipt {
            node: NodeId::from("bank"),
            signature: node.sign_digest(&SequencingReceipt::digest_of(&rec)),
        });
    }
    rec
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Receipts and event log records hash as before, with and without a receipt, business
    /// events, applied or rejected, under both algorithms.
    #[test]
    fn receipt_and_event_record_digests_are_unchanged(
        alg in alg(),
        payload in portable_value(),
        applied in any::<bool>(),
        with_receipt in any::<bool>(),
        business in prop::collection::vec(("[a-z]{1,8}", portable_value()), 0..3),
        log_alg in alg(),
    ) {
        let rec = record(alg, payload, applied, with_receipt, business);
        prop_assert_eq!(SequencingReceipt::digest_of(&rec), previous::receipt_digest(&rec));
        prop_assert_eq!(
            LogRecord::Event(&rec).digest(log_alg),
            previous::event_record_digest(&rec, log_alg)
        );
    }

    /// An event record whose disclosures were hashed when they were sealed (their canonical
    /// encoding kept, and written from it) binds the same log digest as the same record with
    /// disclosures that were never hashed (each value encoded again), and as before.
    #[test]
    fn event_record_digests_do_not_depend_on_kept_encodings(
        alg in alg(),
        log_alg in alg(),
        sections in prop::collection::btree_map("[a-z\u{e9}\u{1F600}]{1,6}", portable_value(), 1..4),
    ) {
        let mut sealed = record(alg, Value::Null, true, false, Vec::new());
        sealed.disclosures = sections
            .iter()
            .map(|(name, value)| {
                let section = Section::seal(alg, name, value.clone());
                (name.clone(), section.disclosure.expect("a sealed section discloses"))
            })
            .collect();
        let mut fresh = sealed.clone();
        fresh.disclosures = sealed
            .disclosures
            .iter()
            .map(|(name, d)| {
                let value = Arc::new(Value::clone(&d.value));
                (name.clone(), Disclosure::new(d.salt, value))
            })
            .collect();
        let digest = LogRecord::Event(&sealed).digest(log_alg);
        prop_assert_eq!(digest, LogRecord::Event(&fresh).digest(log_alg));
        prop_assert_eq!(digest, previous::event_record_digest(&fresh, log_alg));
        // Hashing the fresh disclosures now keeps their encodings too: still the same digest.
        for (name, d) in &fresh.disclosures {
            d.hash(alg, name);
        }
        prop_assert_eq!(digest, LogRecord::Event(&fresh).digest(log_alg));
    }

    /// Refusal, actor and cleared-refusal records, checkpoints and contract identities hash
    /// as before.
    #[test]
    fn other_record_digests_are_unchanged(
        alg in alg(),
        head in digest(),
        pos in any::<u64>(),
        at in any::<i64>(),
        methods in prop::collection::vec("[a-z_]{1,10}", 0..4),
        engine in any::<bool>(),
    ) {
        let refusal = Refusal {
            event: sst_core::EventId(head),
            state_id: "deal-1".into(),
            version: pos % 1000,
            from_node: NodeId::from("homes"),
            reason: RejectReason::ContractRejected { message: "no \"way\"\n".into() },
            at: Timestamp(at),
        };
        prop_assert_eq!(
            LogRecord::Refusal(&refusal).digest(alg),
            previous::value_digest(&refusal, alg, Domain::LogRecord)
        );
        prop_assert_eq!(
            LogRecord::RefusalCleared(&refusal.event).digest(alg),
            previous::value_digest(&refusal.event.to_string(), alg, Domain::LogRecord)
        );
        let (sue, _) = actor("homes", "sue");
        prop_assert_eq!(
            LogRecord::Actor(&sue).digest(alg),
            previous::value_digest(&sue, alg, Domain::LogRecord)
        );
        let checkpoint = Checkpoint { node: NodeId::from("bank"), pos, head, at: Timestamp(at) };
        prop_assert_eq!(
            checkpoint.digest(),
            previous::value_digest(&checkpoint, head.alg(), Domain::Checkpoint)
        );
        let descriptor = ContractDescriptor {
            sync: None,
            contract: deal_contract(),
            policy: deal_policy(),
            methods,
            supersedes: vec![deal_contract()],
            code_hash: head,
            engine: engine.then(|| EngineRef::new("javascript", "quickjs-ng-0.10")),
            limits: engine.then_some(ContractLimits {
                ticks: pos,
                memory_bytes: 1 << 20,
                stack_bytes: 1 << 16,
            }),
        };
        prop_assert_eq!(
            ContractRecord::identity_of(&descriptor, alg),
            previous::value_digest(&descriptor, alg, Domain::Contract)
        );
        let deployed = ContractRecord::sign(
            descriptor,
            alg,
            sue.id.clone(),
            &ActorKey::from_seed([6; 32]),
        )
        .with_source("export function f() {}");
        prop_assert_eq!(
            LogRecord::Contract(&deployed).digest(alg),
            previous::value_digest(&deployed, alg, Domain::LogRecord)
        );
    }
}

/// The state root's header is written from a borrowed struct: the same bytes as
/// `State::header()` canonicalised.
#[test]
fn the_root_header_is_the_documented_header() {
    for alg in [HashAlg::Blake3, HashAlg::Sha256] {
        let mut state = deal_state(alg);
        state.prev_root = Some(state.root);
        state.last_event = Some(sst_core::EventId(state.root.0));
        let mut h = sst_core::hash::Hasher::new(alg, Domain::State);
        h.part(previous::canonical(&state.header()).as_bytes());
        for (name, section) in &state.sections {
            h.part(name.as_bytes());
            h.part(section.hash.0.to_string().as_bytes());
        }
        assert_eq!(state.compute_root().0, h.finish(), "{alg}");
    }
}
