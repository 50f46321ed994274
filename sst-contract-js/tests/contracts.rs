//! The ported contracts behave like the native ones, v1 → v2 migrates, the descriptor is
//! bound to every byte of the source, and the engine version is the linked QuickJS-ng's.

mod support;

use proptest::prelude::*;
use serde_json::{json, Value};
use sst_contract_js::{descriptor_of, sources, JsEngine, QUICKJS_NG_VERSION};
use sst_core::{ContractRef, Parties};
use sst_node::contracts::{RealEstateDeal, RealEstateDealV2, Rfq};
use sst_node::{Contract, ContractEngine, ContractError, MethodOutput, Sections};
use support::{canonical, load, Caller};

#[test]
fn the_engine_version_is_the_linked_quickjs_ng() {
    #[allow(unsafe_code)]
    // SAFETY: JS_GetVersion returns a pointer to a static NUL-terminated string.
    let linked = unsafe { std::ffi::CStr::from_ptr(rquickjs::qjs::JS_GetVersion()) };
    assert_eq!(linked.to_str().ok(), Some(QUICKJS_NG_VERSION));
    assert_eq!(
        JsEngine::new().engine().to_string(),
        format!("javascript@quickjs-ng-{QUICKJS_NG_VERSION}")
    );
}

#[test]
fn ported_contracts_declare_what_the_native_ones_do() -> anyhow::Result<()> {
    let pairs: [(&str, Box<dyn Contract>); 3] = [
        (sources::REAL_ESTATE_V1, Box::new(RealEstateDeal)),
        (sources::REAL_ESTATE_V2, Box::new(RealEstateDealV2)),
        (sources::RFQ, Box::new(Rfq)),
    ];
    for (source, native) in pairs {
        let js = descriptor_of(source)?;
        let native = native.descriptor();
        assert_eq!(js.contract, native.contract);
        assert_eq!(js.policy, native.policy, "{}", js.contract);
        assert_eq!(js.methods, native.methods, "{}", js.contract);
        assert_eq!(js.supersedes, native.supersedes, "{}", js.contract);
        assert_eq!(js.engine, Some(JsEngine::engine_ref()));
    }
    Ok(())
}

/// Canonical bytes of the changes, or the refusal.
fn outcome(r: Result<MethodOutput, ContractError>) -> Result<Vec<u8>, ContractError> {
    r.map(|o| canonical(&json!(o.changes)))
}

fn arg() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1i64..=9_007_199_254_740_991).prop_map(Value::from),
        (-50i64..=3).prop_map(Value::from),
        (0u32..1000).prop_map(|n| Value::from(f64::from(n) / 8.0 + 1.0 / 16.0)),
        "[a-z]{0,4}".prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        Just(json!({"x": 1})),
    ]
}

fn maybe_args() -> impl Strategy<Value = Value> {
    prop_oneof![
        (arg(), arg()).prop_map(|(a, r)| json!({"amount": a, "radon": r})),
        arg().prop_map(|a| json!({"amount": a})),
        arg().prop_map(|r| json!({"radon": r})),
        Just(json!({})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn javascript_real_estate_matches_the_native_contract(
        method in prop_oneof![Just("set_price"), Just("record_inspection"), Just("close"), Just("haggle")],
        args in maybe_args(),
        with_price in any::<bool>(),
        amount in arg(),
        radon in arg(),
        roles in prop_oneof![Just(vec!["buyer", "seller"]), Just(vec!["buyer"]), Just(vec!["inspector"])],
    ) {
        let caller = Caller::new("acme/alice", &[], 3);
        let mut sections = Sections::new();
        if with_price {
            sections.insert("price".into(), json!({"amount": amount}));
        }
        sections.insert("inspection".into(), json!({"radon": radon}));
        let mut parties = Parties::default();
        for role in roles {
            parties = parties.with(role, "acme/alice");
        }
        for (native, js) in [
            (Box::new(RealEstateDeal) as Box<dyn Contract>, sources::REAL_ESTATE_V1),
            (Box::new(RealEstateDealV2), sources::REAL_ESTATE_V2),
        ] {
            let js = load(js).expect("loads");
            let call = caller.call();
            prop_assert_eq!(
                outcome(js.call(&call, &sections, method, &args)),
                outcome(native.call(&call, &sections, method, &args)),
                "{} {}", native.contract(), method
            );
            prop_assert_eq!(
                js.on_create(&call, &parties, &sections),
                native.on_create(&call, &parties, &sections)
            );
            prop_assert_eq!(
                js.on_change(&call, &Sections::new(), &sections),
                native.on_change(&call, &Sections::new(), &sections)
            );
        }
    }

    #[test]
    fn javascript_rfq_matches_the_native_contract(
        method in prop_oneof![Just("submit_quote"), Just("close")],
        price in arg(),
        supplier in any::<bool>(),
        status in prop_oneof![Just(None), Just(Some("open")), Just(Some("closed"))],
        quotes in prop_oneof![Just(None), Just(Some(json!([]))), Just(Some(json!([["s/x", 5, 1]]))), Just(Some(json!("bad")))],
    ) {
        let roles: &[&str] = if supplier { &["supplier"] } else { &["requester"] };
        let caller = Caller::new("s/sam", roles, 4);
        let mut current = Sections::new();
        if let Some(s) = status {
            current.insert("request".into(), json!({"item": "steel", "status": s}));
        }
        if let Some(q) = quotes.clone() {
            current.insert("quotes".into(), q);
        }
        let js = load(sources::RFQ).expect("loads");
        let args = json!({"price": price});
        prop_assert_eq!(
            outcome(js.call(&caller.call(), &current, method, &args)),
            outcome(Rfq.call(&caller.call(), &current, method, &args))
        );
        let parties = if supplier { Parties::default().with("supplier", "s/sam") } else { Parties::default().with("requester", "s/sam") };
        prop_assert_eq!(
            js.on_create(&caller.call(), &parties, &current),
            Rfq.on_create(&caller.call(), &parties, &current)
        );
        prop_assert_eq!(
            js.on_change(&caller.call(), &Sections::new(), &current),
            Rfq.on_change(&caller.call(), &Sections::new(), &current)
        );
    }
}

#[test]
fn methods_emit_business_events_without_restricted_data() -> anyhow::Result<()> {
    let v2 = load(sources::REAL_ESTATE_V2)?;
    let caller = Caller::new("acme/bob", &["buyer"], 5);
    let out = v2.call(
        &caller.call(),
        &Sections::new(),
        "set_price",
        &json!({"amount": 480000}),
    )?;
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].name, "price_set");
    assert_eq!(out.events[0].payload, json!({"set_by": "acme/bob"}));
    assert!(!out.events[0].payload.to_string().contains("480000"));
    Ok(())
}

#[test]
fn a_v1_state_migrates_to_v2_which_adds_closing() -> anyhow::Result<()> {
    let v2 = load(sources::REAL_ESTATE_V2)?;
    assert_eq!(
        v2.supersedes(),
        vec![ContractRef::new("real-estate-deal", 1)]
    );
    let caller = Caller::new("acme/bob", &["buyer"], 6);
    let v1_state = Sections::from([
        ("common".to_owned(), json!({"address": "12 Harbour Lane"})),
        ("price".to_owned(), json!({"amount": 5, "currency": "USD"})),
    ]);
    let from = ContractRef::new("real-estate-deal", 1);
    let changes = v2.migrate(&caller.call(), &from, &v1_state)?;
    assert_eq!(
        changes,
        RealEstateDealV2.migrate(&caller.call(), &from, &v1_state)?
    );
    assert_eq!(
        changes,
        Sections::from([("closing".to_owned(), json!({"status": "open"}))])
    );
    assert_eq!(
        v2.migrate(
            &caller.call(),
            &ContractRef::new("real-estate-deal", 3),
            &v1_state
        ),
        Err(ContractError::Rejected(
            "cannot migrate from real-estate-deal@3".into()
        ))
    );
    // After the migration, v2's new method works on the state.
    let closed = v2.call(&caller.call(), &v1_state, "close", &json!({}))?;
    assert_eq!(
        closed.changes["closing"],
        json!({"status": "closed", "closed_by": "acme/bob"})
    );
    assert_eq!(closed.events[0].name, "deal_closed");
    Ok(())
}

#[test]
fn a_changed_byte_changes_the_code_hash_and_load_refuses_a_mismatching_descriptor(
) -> anyhow::Result<()> {
    let source = sources::REAL_ESTATE_V1;
    let descriptor = descriptor_of(source)?;
    let tampered = source.replacen("positive integer", "positive integeR", 1);
    assert_eq!(tampered.len(), source.len());
    let tampered_descriptor = descriptor_of(&tampered)?;
    assert_ne!(descriptor.code_hash, tampered_descriptor.code_hash);

    let engine = JsEngine::new();
    let err = engine
        .load(&descriptor, &tampered)
        .err()
        .expect("the deployed descriptor does not match the tampered source");
    assert!(err.reason.contains("code_hash: descriptor has"), "{err}");

    let mut other_methods = descriptor.clone();
    other_methods.methods.push("steal".into());
    let err = engine
        .load(&other_methods, source)
        .err()
        .expect("methods differ");
    assert!(err.reason.contains("methods: descriptor has"), "{err}");

    let mut other_engine = descriptor.clone();
    other_engine.engine = Some(sst_core::EngineRef::new("javascript", "quickjs-ng-0.1.0"));
    let err = engine
        .load(&other_engine, source)
        .err()
        .expect("engine differs");
    assert!(err.reason.contains("engine: descriptor has"), "{err}");

    let loaded = engine.load(&descriptor, source)?;
    assert_eq!(loaded.descriptor(), descriptor);
    Ok(())
}
