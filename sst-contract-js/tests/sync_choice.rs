//! A contract module chooses its sync protocol in `contract.sync`: the choice becomes the
//! descriptor's `sync` (so part of the contract's identity), mistakes are refused at deploy
//! with a [`SyncChoiceError`], and the shipped settlement contract chooses `endorsed` and runs
//! its instruct → confirm → settle flow.

mod support;

use serde_json::json;
use sst_contract_js::{descriptor_of, sources, JsEngine, SyncChoiceError};
use sst_core::{EndorsementPolicy, Parties, Role, SyncSpec, DEFAULT_ENDORSEMENT_TIMEOUT_MS};
use sst_node::{ContractEngine, Sections};
use support::{load, Caller};

/// A module `sync-test@1` whose manifest ends with `sync` (a JavaScript expression, or
/// nothing).
fn with_sync(sync: Option<&str>) -> String {
    let sync = sync.map_or(String::new(), |s| format!(", sync: {s}"));
    format!(
        "export const contract = {{ name: \"sync-test\", version: 1,\n  \
         sections: {{ s: {{ read: [\"*\"], write: [\"*\"] }} }}{sync} }};\n\
         export function m(s, a, ctx) {{ return {{ s: a }}; }}\n"
    )
}

fn sync_of(sync: Option<&str>) -> anyhow::Result<Option<SyncSpec>> {
    Ok(descriptor_of(&with_sync(sync))?.sync)
}

fn refusal(sync: &str) -> String {
    descriptor_of(&with_sync(Some(sync)))
        .expect_err("the sync choice is refused")
        .reason
}

#[test]
fn no_choice_or_home_is_the_home_protocol() -> anyhow::Result<()> {
    assert_eq!(sync_of(None)?, None);
    assert_eq!(sync_of(Some("{ protocol: \"home\" }"))?, None);
    assert_eq!(descriptor_of(&with_sync(None))?.protocol(), "home");
    Ok(())
}

#[test]
fn endorsed_choices_map_to_the_descriptor() -> anyhow::Result<()> {
    assert_eq!(
        sync_of(Some(
            "{ protocol: \"endorsed\", policy: { kind: \"all\" } }"
        ))?,
        Some(SyncSpec::Endorsed {
            policy: EndorsementPolicy::All,
            timeout_ms: DEFAULT_ENDORSEMENT_TIMEOUT_MS,
        })
    );
    assert_eq!(
        sync_of(Some(
            "{ protocol: \"endorsed\", policy: { kind: \"k_of_n\", k: 2 }, timeout_ms: 750 }"
        ))?,
        Some(SyncSpec::Endorsed {
            policy: EndorsementPolicy::KOfN { k: 2 },
            timeout_ms: 750,
        })
    );
    let descriptor = descriptor_of(&with_sync(Some(
        "{ protocol: \"endorsed\", policy: { kind: \"roles\", roles: [\"seller\", \"bank\"] } }",
    )))?;
    assert_eq!(descriptor.protocol(), "endorsed");
    assert_eq!(
        descriptor.endorsement_policy(),
        Some(&EndorsementPolicy::Roles {
            roles: vec![Role::from("seller"), Role::from("bank")],
        })
    );
    Ok(())
}

#[test]
fn the_choice_is_part_of_the_identity() -> anyhow::Result<()> {
    // The same source text apart from the choice: different descriptors, different code
    // hashes, so different contract identities.
    let home = descriptor_of(&with_sync(None))?;
    let endorsed = descriptor_of(&with_sync(Some(
        "{ protocol: \"endorsed\", policy: { kind: \"all\" } }",
    )))?;
    assert_ne!(home, endorsed);
    assert_ne!(home.code_hash, endorsed.code_hash);
    Ok(())
}

#[test]
fn mistakes_in_the_choice_are_refused_at_deploy_naming_them() {
    let cases = [
        (
            "{ protocol: \"gossip\" }",
            SyncChoiceError::UnknownProtocol("gossip".into()),
        ),
        ("{ protocol: \"endorsed\" }", SyncChoiceError::MissingPolicy),
        (
            "{ protocol: \"endorsed\", policy: { kind: \"k_of_n\", k: 0 } }",
            SyncChoiceError::ZeroK,
        ),
        (
            "{ protocol: \"endorsed\", policy: { kind: \"k_of_n\" } }",
            SyncChoiceError::ZeroK,
        ),
        (
            "{ protocol: \"endorsed\", policy: { kind: \"roles\", roles: [] } }",
            SyncChoiceError::NoRoles,
        ),
        (
            "{ protocol: \"endorsed\", policy: { kind: \"roles\" } }",
            SyncChoiceError::NoRoles,
        ),
        (
            "{ protocol: \"endorsed\", policy: { kind: \"roles\", roles: [\"bank\", \"bank\"] } }",
            SyncChoiceError::BadRole("bank".into()),
        ),
        (
            "{ protocol: \"endorsed\", policy: { kind: \"roles\", roles: [\"\"] } }",
            SyncChoiceError::BadRole(String::new()),
        ),
        (
            "{ protocol: \"endorsed\", policy: { kind: \"majority\" } }",
            SyncChoiceError::UnknownPolicy("majority".into()),
        ),
        (
            "{ protocol: \"endorsed\", policy: { kind: \"all\", k: 2 } }",
            SyncChoiceError::FieldNotForKind {
                field: "k",
                kind: "all".into(),
            },
        ),
        (
            "{ protocol: \"endorsed\", policy: { kind: \"all\" }, timeout_ms: 0 }",
            SyncChoiceError::Timeout(0),
        ),
        (
            "{ protocol: \"home\", policy: { kind: \"all\" } }",
            SyncChoiceError::NotForHome("policy"),
        ),
    ];
    for (sync, expected) in cases {
        assert_eq!(refusal(sync), expected.to_string(), "{sync}");
    }
    // Unknown fields are refused too (a misspelt `timeout` would otherwise be ignored).
    let reason = refusal("{ protocol: \"endorsed\", policy: { kind: \"all\" }, timeout: 5 }");
    assert!(reason.contains("unknown field `timeout`"), "{reason}");
}

#[test]
fn a_descriptor_claiming_another_protocol_than_its_source_does_not_load() -> anyhow::Result<()> {
    let source = with_sync(Some(
        "{ protocol: \"endorsed\", policy: { kind: \"all\" } }",
    ));
    let mut descriptor = descriptor_of(&source)?;
    descriptor.sync = None;
    let err = JsEngine::new()
        .load(&descriptor, &source)
        .err()
        .expect("the descriptor's sync differs from the source's");
    assert!(err.reason.contains("sync: descriptor has None"), "{err}");
    Ok(())
}

#[test]
fn the_settlement_contract_is_endorsed_by_both_banks() -> anyhow::Result<()> {
    let descriptor = descriptor_of(sources::SETTLEMENT)?;
    assert_eq!(descriptor.contract.to_string(), "settlement@1");
    assert_eq!(
        descriptor.sync,
        Some(SyncSpec::Endorsed {
            policy: EndorsementPolicy::Roles {
                roles: vec![Role::from("payer_bank"), Role::from("payee_bank")],
            },
            timeout_ms: 5_000,
        })
    );
    assert_eq!(descriptor.methods, ["confirm", "instruct", "settle"]);
    Ok(())
}

fn parties(roles: &[&str]) -> anyhow::Result<Parties> {
    let map: serde_json::Map<String, serde_json::Value> = roles
        .iter()
        .map(|r| ((*r).to_owned(), json!([format!("{r}/actor")])))
        .collect();
    Ok(serde_json::from_value(serde_json::Value::Object(map))?)
}

fn sections(value: serde_json::Value) -> anyhow::Result<Sections> {
    Ok(serde_json::from_value(value)?)
}

#[test]
fn a_settlement_moves_instructed_confirmed_settled_by_the_right_parties() -> anyhow::Result<()> {
    let contract = load(sources::SETTLEMENT)?;
    let payer = Caller::new("acme/treasurer", &["payer"], 1);
    let payer_bank = Caller::new("bank-a/ops", &["payer_bank"], 2);
    let payee_bank = Caller::new("bank-b/ops", &["payee_bank"], 3);

    // Created with all four roles; a missing role or a bad instruction is refused.
    let all = parties(&["payer", "payee", "payer_bank", "payee_bank"])?;
    contract.on_create(&payer.call(), &all, &Sections::new())?;
    let err = contract
        .on_create(
            &payer.call(),
            &parties(&["payer", "payee", "payer_bank"])?,
            &Sections::new(),
        )
        .expect_err("no payee bank");
    assert!(err.to_string().contains("needs a payee_bank"), "{err}");

    let instruction = json!({"amount": 125_000, "currency": "EUR", "reference": "INV-7"});
    let mut state = sections(json!({}))?;
    let out = contract.call(&payer.call(), &state, "instruct", &instruction)?;
    assert_eq!(out.changes["instruction"], instruction);
    assert_eq!(out.changes["status"]["stage"], "instructed");
    state.extend(out.changes);

    // Only the payer's bank confirms, only the payee's bank settles, in that order.
    let err = contract
        .call(&payee_bank.call(), &state, "settle", &json!(null))
        .expect_err("not confirmed yet");
    assert!(err.to_string().contains("that is instructed"), "{err}");
    let err = contract
        .call(&payer.call(), &state, "confirm", &json!(null))
        .expect_err("the payer does not confirm");
    assert!(err.to_string().contains("only the payer's bank"), "{err}");
    let out = contract.call(&payer_bank.call(), &state, "confirm", &json!(null))?;
    assert_eq!(out.changes["status"]["stage"], "confirmed");
    state.extend(out.changes);

    // Frozen once confirmed: neither instruct nor a direct change moves the instruction.
    let err = contract
        .call(&payer.call(), &state, "instruct", &instruction)
        .expect_err("frozen");
    assert!(err.to_string().contains("that is confirmed"), "{err}");
    let err = contract
        .on_change(
            &payer.call(),
            &state,
            &sections(json!({"instruction": instruction}))?,
        )
        .expect_err("frozen");
    assert!(err.to_string().contains("frozen once confirmed"), "{err}");

    let out = contract.call(&payee_bank.call(), &state, "settle", &json!(null))?;
    assert_eq!(out.changes["status"]["stage"], "settled");
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].name, "settled");
    assert_eq!(out.events[0].payload["amount"], 125_000);
    Ok(())
}

#[test]
fn a_settlement_refuses_bad_instructions() -> anyhow::Result<()> {
    let contract = load(sources::SETTLEMENT)?;
    let payer = Caller::new("acme/treasurer", &["payer"], 1);
    let empty = Sections::new();
    for (args, why) in [
        (
            json!({"amount": 0, "currency": "EUR", "reference": "x"}),
            "amount",
        ),
        (
            json!({"amount": 1.5, "currency": "EUR", "reference": "x"}),
            "amount",
        ),
        (
            json!({"amount": 10, "currency": "euro", "reference": "x"}),
            "currency",
        ),
        (
            json!({"amount": 10, "currency": "EUR", "reference": ""}),
            "reference",
        ),
        (json!(null), "must be an object"),
    ] {
        let err = contract
            .call(&payer.call(), &empty, "instruct", &args)
            .expect_err("bad instruction");
        assert!(err.to_string().contains(why), "{args}: {err}");
    }
    Ok(())
}
