//! The deterministic profile: what contract code can and cannot reach, and deploy-time
//! refusal of platform-dependent maths.

mod support;

use serde_json::{json, Value};
use sst_contract_js::descriptor_of;
use sst_node::{ContractError, Sections};
use support::{load, module, Caller};

/// Calls `probe` of a module whose `probe` body is `body` and expects a `TypeError` refusal
/// (an assignment a frozen intrinsic refuses: modules are strict).
fn expect_type_error(body: &str, why: &str) -> anyhow::Result<()> {
    let contract = load(&module(&format!(
        "export function probe(sections, args, ctx) {{ {body} }}"
    )))?;
    let caller = Caller::new("a/alice", &["buyer"], 1);
    let err = contract
        .call(&caller.call(), &Sections::new(), "probe", &json!({}))
        .expect_err(why);
    assert!(
        matches!(&err, ContractError::Rejected(m) if m.starts_with("TypeError")),
        "{why}: {err:?}"
    );
    Ok(())
}

/// Runs `expr` inside a method and returns what it evaluated to (as section `s`).
fn eval_in_contract(expr: &str) -> anyhow::Result<Value> {
    let source = module(&format!(
        "export function probe(sections, args, ctx) {{ return {{ s: {expr} }}; }}"
    ));
    let contract = load(&source)?;
    let caller = Caller::new("a/alice", &["buyer"], 1);
    let out = contract.call(&caller.call(), &Sections::new(), "probe", &json!({}))?;
    Ok(out.changes["s"].clone())
}

#[test]
fn the_clock_randomness_and_code_from_strings_are_absent() -> anyhow::Result<()> {
    for name in [
        "Date",
        "eval",
        "Function",
        "Promise",
        "WeakRef",
        "FinalizationRegistry",
        "performance",
        "Proxy",
        "ArrayBuffer",
    ] {
        assert_eq!(
            eval_in_contract(&format!("typeof globalThis[{name:?}]"))?,
            json!("undefined"),
            "{name} must be absent"
        );
    }
    assert_eq!(eval_in_contract("typeof Math.random")?, json!("undefined"));
    // Reached through an alias (which the deploy-time scan cannot see): removed all the same.
    for transcendental in ["sin", "log", "exp", "atan2", "hypot", "pow"] {
        assert_eq!(
            eval_in_contract(&format!("typeof ((m) => m[{transcendental:?}])(Math)"))?,
            json!("undefined")
        );
    }
    Ok(())
}

#[test]
fn function_constructors_reached_through_prototypes_refuse_code_from_strings() -> anyhow::Result<()>
{
    for maker in [
        "(function () {}).constructor",
        "(function* () {}).constructor",
        "(async function () {}).constructor",
    ] {
        let source = module(&format!(
            "export function probe(sections, args, ctx) {{ return {{ s: {maker}(\"return 1\")() }}; }}"
        ));
        let contract = load(&source)?;
        let caller = Caller::new("a/alice", &["buyer"], 1);
        let err = contract
            .call(&caller.call(), &Sections::new(), "probe", &json!({}))
            .expect_err("code from strings must be refused");
        assert_eq!(
            err,
            ContractError::Rejected(
                "TypeError: code generation from strings is not allowed in SST contracts".into()
            ),
            "{maker}"
        );
    }
    Ok(())
}

#[test]
fn intrinsics_are_frozen() -> anyhow::Result<()> {
    assert_eq!(
        eval_in_contract(
            "[Object.isFrozen(globalThis), Object.isFrozen(Array.prototype), \
              Object.isFrozen(Object.prototype), Object.isFrozen(Math), Object.isFrozen(JSON)]"
        )?,
        json!([true, true, true, true, true])
    );
    expect_type_error(
        "Array.prototype.push = null; return {};",
        "assigning to a frozen intrinsic throws in a module (strict mode)",
    )?;
    Ok(())
}

#[test]
fn built_in_functions_are_frozen_and_per_context_error_settings_are_gone() -> anyhow::Result<()> {
    // A context serves many calls: no built-in object may carry anything from one to the next.
    assert_eq!(
        eval_in_contract(
            "[Object.isFrozen(Array.prototype.map), Object.isFrozen(JSON.parse), \
              Object.isFrozen(Object.getOwnPropertyDescriptor(Object.prototype, '__proto__').get), \
              Object.isFrozen(Object.getPrototypeOf([].values().map((x) => x))), \
              Object.isFrozen(Array.prototype[Symbol.unscopables]), \
              'prepareStackTrace' in Error, 'stackTraceLimit' in Error]"
        )?,
        json!([true, true, true, true, true, false, false])
    );
    for _ in 0..3 {
        expect_type_error(
            "const before = Array.prototype.map.calls; Array.prototype.map.calls = 1; \
             return { s: before === undefined };",
            "a property on a frozen built-in function cannot be added",
        )?;
    }
    Ok(())
}

#[test]
fn exports_other_than_declarations_are_refused_at_deploy() {
    for body in [
        "function m(s, a, ctx) { return {}; }\nexport { m };",
        "export default function (s, a, ctx) { return {}; }",
    ] {
        let err = descriptor_of(&module(body)).expect_err("only declarations are exported");
        assert!(
            err.reason.contains("only declarations can be exported") && err.reason.contains("line"),
            "{err}"
        );
    }
}

#[test]
fn imports_are_refused_at_deploy() {
    for body in [
        "import * as me from \"contract.js\";\nexport function m(s, a, ctx) { return {}; }",
        "export function m(s, a, ctx) { return { s: import.meta.url }; }",
        "export async function m(s, a, ctx) { await import(\"contract.js\"); return {}; }",
    ] {
        let err = descriptor_of(&module(body)).expect_err("imports must be refused");
        assert!(err.reason.contains("imports are refused"), "{err}");
    }
}

#[test]
fn exact_maths_json_maps_sets_and_regexps_are_available() -> anyhow::Result<()> {
    assert_eq!(
        eval_in_contract(
            "[Math.sqrt(2), Math.floor(2.5), Math.max(1, 3), JSON.stringify({a: [1]}), \
              new Map([[1, 2]]).get(1), new Set([1, 1]).size, /b+/.test('abbc'), \
              (0.1 + 0.2).toFixed(5)]"
        )?,
        json!([2f64.sqrt(), 2, 3, "{\"a\":[1]}", 2, 1, true, "0.30000"])
    );
    Ok(())
}

#[test]
fn ctx_carries_the_signed_event_s_clock_and_seed() -> anyhow::Result<()> {
    let source = module(
        "export function probe(sections, args, ctx) { \
           return { s: [ctx.actor, ctx.roles, ctx.state, ctx.now, ctx.seed] }; }",
    );
    let contract = load(&source)?;
    let caller = Caller::new("a/alice", &["buyer", "seller"], 9);
    let out = contract.call(&caller.call(), &Sections::new(), "probe", &json!({}))?;
    assert_eq!(
        out.changes["s"],
        json!([
            "a/alice",
            ["buyer", "seller"],
            "deal-1",
            1_700_000_000_000u64,
            sst_contract_js::seed_of(&caller.event)
        ])
    );
    let other = Caller::new("a/alice", &["buyer", "seller"], 10);
    assert_ne!(
        sst_contract_js::seed_of(&caller.event),
        sst_contract_js::seed_of(&other.event),
        "each event has its own seed"
    );
    Ok(())
}

#[test]
fn transcendental_maths_and_the_power_operator_are_refused_at_deploy() {
    for (body, named) in [
        (
            "export function m(s, a, ctx) { return { s: Math.sin(a.x) }; }",
            "Math.sin",
        ),
        (
            "export function m(s, a, ctx) { return { s: Math[\"log\"](2) }; }",
            "Math.log",
        ),
        (
            "export function m(s, a, ctx) { return { s: a.x ** 2 }; }",
            "`**`",
        ),
    ] {
        let err = descriptor_of(&module(body)).expect_err("platform maths must be refused");
        assert!(
            err.reason.contains("platform-dependent maths is refused")
                && err.reason.contains(named),
            "{err}"
        );
        assert_eq!(err.contract.to_string(), "test-contract@1");
    }
    // The same names in comments and strings are fine.
    descriptor_of(&module(
        "// Math.sin(x) ** 2\nexport function m(s, a, ctx) { return { s: \"Math.cos\" }; }",
    ))
    .expect("comments and strings are not code");
}

#[test]
fn a_syntax_error_or_a_missing_manifest_is_a_load_error_saying_so() {
    let err = descriptor_of("export function m( {").expect_err("syntax error");
    assert!(err.reason.contains("SyntaxError"), "{err}");
    let err = descriptor_of("export function m() {}").expect_err("no manifest");
    assert!(err.reason.contains("does not export `contract`"), "{err}");
    let err =
        descriptor_of(&module("export const onCreate = 3;")).expect_err("hook not a function");
    assert!(
        err.reason.contains("`onCreate` must be a function"),
        "{err}"
    );
    let err = descriptor_of(
        "export const contract = { name: \"x\", version: 1, sections: { s: { read: [], write: [] } }, \
         limits: { stack_bytes: 1073741824 } };",
    )
    .expect_err("stack budget too large");
    assert!(err.reason.contains("contract.limits.stack_bytes"), "{err}");
}
