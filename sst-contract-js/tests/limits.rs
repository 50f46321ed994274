//! Budgets and failures: a runaway loop, a memory bomb and deep recursion run out of their
//! budget (`contract_limit` naming it) and the next call works; a thrown error is a refusal
//! with its message; a result that is not portable JSON is refused naming the section.

mod support;

use serde_json::json;
use sst_node::{ContractError, MethodOutput, Sections};
use support::{load, module, Caller};

const BODY: &str = r#"
export function ok(sections, args, ctx) { return { s: { n: args.n } }; }
export function spin(sections, args, ctx) { for (;;) {} }
export function hog(sections, args, ctx) {
  const a = [];
  for (;;) { a.push("x".repeat(1024) + a.length); }
}
export function deep(sections, args, ctx) {
  function down(n) { return down(n + 1) + 1; }
  return { s: down(0) };
}
export function refuse(sections, args, ctx) { throw new Error("the price is too low"); }
export function refuse_type(sections, args, ctx) { null.x; }
export function refuse_value(sections, args, ctx) { throw "plain string"; }
export function nan(sections, args, ctx) { return { s: { v: 0 / 0 } }; }
export function map(sections, args, ctx) { return { s: new Map() }; }
export function undef(sections, args, ctx) { return { s: { v: undefined } }; }
export function big(sections, args, ctx) { return { s: 9007199254740993 }; }
export function scalar(sections, args, ctx) { return 5; }
export function catches(sections, args, ctx) {
  try { for (;;) {} } catch (e) { return { s: "caught" }; }
}
"#;

fn expect_limit(result: Result<MethodOutput, ContractError>, limit: &str) {
    match result {
        Err(ContractError::Limit { limit: l, detail }) => {
            assert_eq!(l, limit, "{detail}");
        }
        other => panic!("expected a {limit} limit, got {other:?}"),
    }
}

#[test]
fn runaway_loops_memory_bombs_and_deep_recursion_run_out_and_the_next_call_works(
) -> anyhow::Result<()> {
    let contract = load(&module(BODY))?;
    let caller = Caller::new("a/alice", &["buyer"], 1);
    let call = caller.call();
    let none = Sections::new();
    for (method, limit) in [
        ("spin", "ticks"),
        ("hog", "memory"),
        ("deep", "stack"),
        ("catches", "ticks"),
    ] {
        expect_limit(contract.call(&call, &none, method, &json!({})), limit);
        // The runtime is not poisoned: a normal call right after works.
        let out = contract.call(&call, &none, "ok", &json!({"n": 7}))?;
        assert_eq!(out.changes["s"], json!({"n": 7}), "after {method}");
    }
    Ok(())
}

#[test]
fn thrown_errors_are_refusals_with_their_message() -> anyhow::Result<()> {
    let contract = load(&module(BODY))?;
    let caller = Caller::new("a/alice", &["buyer"], 1);
    let call = caller.call();
    let none = Sections::new();
    for (method, message) in [
        ("refuse", "the price is too low"),
        ("refuse_type", "TypeError: cannot read property 'x' of null"),
        ("refuse_value", "plain string"),
        ("nope", "unknown method `nope`"),
    ] {
        assert_eq!(
            contract.call(&call, &none, method, &json!({})),
            Err(ContractError::Rejected(message.into())),
            "{method}"
        );
    }
    Ok(())
}

#[test]
fn results_that_are_not_portable_json_are_refused_naming_the_section() -> anyhow::Result<()> {
    let contract = load(&module(BODY))?;
    let caller = Caller::new("a/alice", &["buyer"], 1);
    let call = caller.call();
    let none = Sections::new();
    for (method, fragment) in [
        ("nan", "`nan` section `s`: $.v: NaN is not a finite number"),
        (
            "map",
            "`map` section `s`: $: an object that is not a plain object",
        ),
        ("undef", "`undef` section `s`: $.v: a undefined is not JSON"),
        ("big", "`big` section `s`: $: integer_out_of_range"),
        (
            "scalar",
            "`scalar` must return a plain object of changed sections",
        ),
    ] {
        match contract.call(&call, &none, method, &json!({})) {
            Err(ContractError::Rejected(m)) => assert!(m.contains(fragment), "{method}: {m}"),
            other => panic!("{method}: expected a refusal, got {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn a_module_that_runs_away_while_loading_is_refused_at_deploy() {
    let err = sst_contract_js::descriptor_of(&module("for (;;) {}"))
        .expect_err("a module that never finishes loading");
    assert!(err.reason.contains("ticks"), "{err}");
}
