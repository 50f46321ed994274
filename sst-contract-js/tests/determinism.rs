//! The same call gives byte-identical results on independently created engines, and results
//! never depend on what was called before.

mod support;

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use sst_contract_js::{descriptor_of, sources, JsEngine};
use sst_core::{Digest, EventId, HashAlg, Timestamp};
use sst_node::{Contract, ContractEngine, MethodOutput, Sections};
use support::{canonical, load, module, Caller};

/// Four engines, each created and loading the contract on its own, as four nodes would.
fn four_nodes(source: &str) -> Vec<Arc<dyn Contract>> {
    (0..4)
        .map(|_| {
            let engine = JsEngine::new();
            let descriptor = descriptor_of(source).expect("descriptor");
            engine.load(&descriptor, source).expect("load")
        })
        .collect()
}

/// Output as bytes: canonical JSON of the changes and of the events.
fn bytes(out: &Result<MethodOutput, sst_node::ContractError>) -> Vec<u8> {
    match out {
        Ok(o) => {
            let changes: Value = json!(o.changes);
            let events = serde_json::to_value(&o.events).expect("events serialise");
            [canonical(&changes), canonical(&events)].concat()
        }
        Err(e) => format!("{e:?}").into_bytes(),
    }
}

fn arg() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1i64..=9_007_199_254_740_991).prop_map(Value::from),
        (-1000i64..=0).prop_map(Value::from),
        (0u32..100_000).prop_map(|n| Value::from(f64::from(n) / 16.0 + 1.0 / 32.0)),
        "[a-z]{0,6}".prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_same_call_gives_byte_identical_results_on_four_nodes(
        method in prop_oneof![Just("set_price"), Just("record_inspection"), Just("close")],
        amount in arg(),
        radon in arg(),
        actor in "[a-z]{1,8}/[a-z]{1,8}",
        seed in any::<[u8; 32]>(),
        now in 0i64..4_000_000_000_000,
        with_price in any::<bool>(),
    ) {
        let nodes = four_nodes(sources::REAL_ESTATE_V2);
        let mut caller = Caller::new(&actor, &["buyer", "seller"], 0);
        caller.event = EventId(Digest::from_parts(HashAlg::Blake3, seed));
        caller.timestamp = Timestamp(now);
        let mut current = Sections::new();
        if with_price {
            current.insert("price".into(), json!({"amount": 5, "currency": "USD"}));
        }
        let args = json!({"amount": amount, "radon": radon});
        let results: Vec<Vec<u8>> = nodes
            .iter()
            .map(|c| bytes(&c.call(&caller.call(), &current, method, &args)))
            .collect();
        for r in &results[1..] {
            prop_assert_eq!(r, &results[0]);
        }
    }
}

#[test]
fn results_do_not_depend_on_earlier_calls() -> anyhow::Result<()> {
    // Module-level state and global mutation attempts start over on every call.
    let contract = load(&module(
        "let calls = 0;\nconst seen = [];\n\
         export function bump(sections, args, ctx) {\n  calls += 1; seen.push(args.n);\n  \
         return { s: { calls, seen } };\n}",
    ))?;
    let caller = Caller::new("a/alice", &["buyer"], 1);
    for n in 0..5 {
        let out = contract.call(&caller.call(), &Sections::new(), "bump", &json!({"n": n}))?;
        assert_eq!(out.changes["s"], json!({"calls": 1, "seen": [n]}));
    }
    Ok(())
}
