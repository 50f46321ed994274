//! The portable-JSON profile: one counterexample per rule (exact rule and exact path), the
//! boundaries, and properties over generated portable values.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::sync::Arc;

use sst_core::portable::{
    self, check, check_at, parse, ProfileError, ProfileRule, MAX_DEPTH, MAX_SAFE_INTEGER,
    MAX_STATE_BYTES,
};
use sst_core::{canonical, Disclosure, HashAlg, Salt};

// A crate root resolves `mod` next to itself, where Cargo would also build it as a test.
#[path = "portable/numbers.rs"]
mod numbers;

/// Asserts that `text` is rejected by `parse` and (when it is valid JSON that serde_json
/// accepts) by `check`, with `rule` at `path`.
#[track_caller]
fn assert_parse_err(text: &str, rule: ProfileRule, path: &str) -> ProfileError {
    let err = parse(text).expect_err(text);
    assert_eq!(
        (err.rule, err.path.as_str()),
        (rule, path),
        "parse {text}: {err}"
    );
    err
}

#[track_caller]
fn assert_check_err(value: &Value, rule: ProfileRule, path: &str) -> ProfileError {
    let err = check(value).expect_err(&value.to_string());
    assert_eq!(
        (err.rule, err.path.as_str()),
        (rule, path),
        "check {value}: {err}"
    );
    err
}

/// Both `parse` and `check` reject `text` with the same rule and path.
#[track_caller]
fn assert_both(text: &str, rule: ProfileRule, path: &str) {
    assert_parse_err(text, rule, path);
    let value: Value = serde_json::from_str(text).expect("serde_json accepts it");
    assert_check_err(&value, rule, path);
}

#[test]
fn integer_out_of_range() {
    assert_both(
        r#"{"a":{"b":[1,{"c":9007199254740992}]}}"#,
        ProfileRule::IntegerOutOfRange,
        "$.a.b[1].c",
    );
    assert_both(
        "[-9007199254740992]",
        ProfileRule::IntegerOutOfRange,
        "$[0]",
    );
    assert_both("18446744073709551615", ProfileRule::IntegerOutOfRange, "$");
    assert_both(
        r#"{"x":-9223372036854775808}"#,
        ProfileRule::IntegerOutOfRange,
        "$.x",
    );
}

#[test]
fn safe_integer_boundaries() {
    for ok in ["9007199254740991", "-9007199254740991", "0", "-0"] {
        let v = parse(ok).expect(ok);
        check(&v).expect(ok);
    }
    check(&json!(MAX_SAFE_INTEGER)).expect("2^53-1");
    check(&json!(-(MAX_SAFE_INTEGER as i64))).expect("-(2^53-1)");
    assert_check_err(
        &json!(MAX_SAFE_INTEGER + 1),
        ProfileRule::IntegerOutOfRange,
        "$",
    );
    assert_check_err(
        &json!(-(MAX_SAFE_INTEGER as i64) - 1),
        ProfileRule::IntegerOutOfRange,
        "$",
    );
    assert_parse_err("9007199254740992", ProfileRule::IntegerOutOfRange, "$");
    assert_parse_err("-9007199254740992", ProfileRule::IntegerOutOfRange, "$");
}

#[test]
fn doubles_are_accepted() {
    for text in [
        "1.5e300",
        "5e-324",
        "-5e-324",
        "1.7976931348623157e308",
        "0.1",
        "-0.0",
    ] {
        let v = parse(text).expect(text);
        check(&v).expect(text);
    }
    check(&json!(1.5e300)).expect("1.5e300");
    check(&json!(5e-324)).expect("5e-324");
    check(&json!(1e21)).expect("1e21 prints as 1e+21");
    check(&json!(9007199254740991.0)).expect("2^53-1 as a double");
}

/// A double whose canonical text is a plain integer literal is an integer for the profile:
/// engines read `9007199254740992` back as an integer.
#[test]
fn integral_doubles_below_1e21_obey_the_integer_range() {
    assert_check_err(
        &json!(9007199254740992.0),
        ProfileRule::IntegerOutOfRange,
        "$",
    );
    assert_check_err(&json!({"n": -1e20}), ProfileRule::IntegerOutOfRange, "$.n");
    assert_check_err(
        &json!([9.99999999999999e20]),
        ProfileRule::IntegerOutOfRange,
        "$[0]",
    );
    let err = assert_parse_err("[1e20]", ProfileRule::IntegerOutOfRange, "$[0]");
    assert!(err.detail.contains("100000000000000000000"), "{err}");
    assert_parse_err("9007199254740992.0", ProfileRule::IntegerOutOfRange, "$");
    // Beyond 64 bits serde_json yields a double; still an out-of-range integer.
    assert_parse_err(
        r#"{"id":18446744073709551616}"#,
        ProfileRule::IntegerOutOfRange,
        "$.id",
    );
    // From 1e21 on the canonical text has an exponent: a double, accepted.
    parse("1000000000000000000000").expect("1e21");
    parse("1e21").expect("1e21");
}

#[test]
fn non_finite_number() {
    let err = assert_parse_err(
        r#"{"a":[0,{"big":1e400}]}"#,
        ProfileRule::NonFiniteNumber,
        "$.a[1].big",
    );
    assert!(err.detail.contains("1e400"), "{err}");
    assert_parse_err("-1E+400", ProfileRule::NonFiniteNumber, "$");
    assert_parse_err(
        "[\n  1,\n  -2.5e999\n]",
        ProfileRule::NonFiniteNumber,
        "$[1]",
    );
    // An integer literal too long for a double.
    let huge = format!(r#"{{"x":1{}}}"#, "0".repeat(400));
    assert_parse_err(&huge, ProfileRule::NonFiniteNumber, "$.x");
}

#[test]
fn nul_in_string() {
    assert_both(
        r#"{"a":["ok","x\u0000y"]}"#,
        ProfileRule::NulInString,
        "$.a[1]",
    );
    assert_both(
        r#"{"a\u0000b":1}"#,
        ProfileRule::NulInString,
        r#"$["a\u0000b"]"#,
    );
}

#[test]
fn empty_key() {
    assert_both(r#"{"a":{"":1}}"#, ProfileRule::EmptyKey, r#"$.a[""]"#);
}

#[test]
fn dollar_key() {
    assert_both(
        r#"{"q":[{"$gt":1}]}"#,
        ProfileRule::DollarKey,
        r#"$.q[0]["$gt"]"#,
    );
    // A `$` elsewhere in a key is fine.
    check(&json!({"price$": 1})).expect("dollar not first");
}

#[test]
fn dot_in_key() {
    assert_both(r#"{"a.b":true}"#, ProfileRule::DotInKey, r#"$["a.b"]"#);
}

#[test]
fn duplicate_key() {
    let err = assert_parse_err(
        r#"{"inspection":{"radon":1,"mold":false,"radon":2}}"#,
        ProfileRule::DuplicateKey,
        "$.inspection.radon",
    );
    assert_eq!(
        err.to_string(),
        format!("$.inspection.radon: duplicate_key: {}", err.detail)
    );
    // Same key in different objects is fine.
    parse(r#"{"a":{"k":1},"b":{"k":1}}"#).expect("distinct objects");
}

fn nested_arrays(levels: usize) -> String {
    "[".repeat(levels) + &"]".repeat(levels)
}

#[test]
fn too_deep() {
    let ok = nested_arrays(MAX_DEPTH);
    check(&parse(&ok).expect("64 levels")).expect("64 levels");
    let too_deep_path = format!("${}", "[0]".repeat(MAX_DEPTH));
    assert_both(
        &nested_arrays(MAX_DEPTH + 1),
        ProfileRule::TooDeep,
        &too_deep_path,
    );

    // Objects count too; a scalar inside the deepest container adds no level.
    let mut text = String::from("1");
    for _ in 0..MAX_DEPTH {
        text = format!(r#"{{"k":{text}}}"#);
    }
    check(&parse(&text).expect("64 object levels")).expect("64 object levels");
    let deeper = format!(r#"{{"k":{text}}}"#);
    assert_both(
        &deeper,
        ProfileRule::TooDeep,
        &format!("${}", ".k".repeat(MAX_DEPTH)),
    );

    // Far deeper than serde_json's own recursion limit: still our rule, not a parse failure.
    assert_parse_err(&nested_arrays(10_000), ProfileRule::TooDeep, &too_deep_path);
}

#[test]
fn too_large() {
    // One string whose canonical form is just over the limit (2 quotes + content).
    let big = "x".repeat(MAX_STATE_BYTES - 1);
    let value = json!({ "blob": big });
    let err = assert_check_err(&value, ProfileRule::TooLarge, "$");
    assert!(err.detail.contains(&MAX_STATE_BYTES.to_string()), "{err}");
    let text = serde_json::to_string(&value).expect("serialise");
    assert_parse_err(&text, ProfileRule::TooLarge, "$");

    // Exactly at the limit is accepted.
    let fits = Value::String("x".repeat(MAX_STATE_BYTES - 2));
    assert_eq!(canonical::encoded_len(&fits), MAX_STATE_BYTES);
    check(&fits).expect("exactly at the limit");

    // Escapes count at their canonical size: 3 MiB of U+0001 is 18 MiB canonical.
    let escaped = Value::String("\u{1}".repeat(3 * 1024 * 1024));
    assert_check_err(&escaped, ProfileRule::TooLarge, "$");
}

#[test]
fn invalid_json() {
    let err = assert_parse_err("{\"a\":\n  [1, 2,", ProfileRule::InvalidJson, "$.a[2]");
    assert!(err.detail.contains("line 2"), "{err}");
    let err = assert_parse_err("nope", ProfileRule::InvalidJson, "$");
    assert!(err.detail.contains("line 1 column"), "{err}");
    assert_parse_err("{} {}", ProfileRule::InvalidJson, "$");
    assert_parse_err("", ProfileRule::InvalidJson, "$");
    assert_parse_err(r#"{"a":1,}"#, ProfileRule::InvalidJson, "$");
    assert_parse_err(r#"["\ud800"]"#, ProfileRule::InvalidJson, "$[0]");
    // Not a number overflow, so not NonFiniteNumber.
    assert_parse_err("[1e]", ProfileRule::InvalidJson, "$[0]");
    assert_parse_err("[01]", ProfileRule::InvalidJson, "$[0]");
}

#[test]
fn check_at_uses_prefix() {
    let err = check_at(
        &json!({"amount": [1, 9007199254740993u64]}),
        "$.sections.price",
    )
    .expect_err("out of range");
    assert_eq!(err.path, "$.sections.price.amount[1]");
    assert_eq!(err.rule, ProfileRule::IntegerOutOfRange);
    assert_eq!(check_at(&json!(1e300), "$.s"), Ok(()));
}

#[test]
fn paths_quote_non_identifiers() {
    let cases = [
        (json!({"a b": {"$x": 1}}), r#"$["a b"]["$x"]"#),
        (json!({"_ok9": {"9no": {"$": 1}}}), r#"$._ok9["9no"]["$"]"#),
        (json!({"café": {"$": 1}}), r#"$["café"]["$"]"#),
        (json!({"q\"uote": {"$": 1}}), r#"$["q\"uote"]["$"]"#),
    ];
    for (value, path) in cases {
        assert_check_err(&value, ProfileRule::DollarKey, path);
    }
}

#[test]
fn rule_names_are_stable() {
    let all = [
        (ProfileRule::IntegerOutOfRange, "integer_out_of_range"),
        (ProfileRule::NonFiniteNumber, "non_finite_number"),
        (ProfileRule::NumberUnderflow, "number_underflow"),
        (ProfileRule::NulInString, "nul_in_string"),
        (ProfileRule::EmptyKey, "empty_key"),
        (ProfileRule::DollarKey, "dollar_key"),
        (ProfileRule::DotInKey, "dot_in_key"),
        (ProfileRule::DuplicateKey, "duplicate_key"),
        (ProfileRule::TooDeep, "too_deep"),
        (ProfileRule::TooLarge, "too_large"),
        (ProfileRule::InvalidJson, "invalid_json"),
    ];
    for (rule, name) in all {
        assert_eq!(rule.as_str(), name);
        assert_eq!(rule.to_string(), name);
    }
}

#[test]
fn accepts_unicode_and_empty_containers() {
    for text in [
        "{}",
        "[]",
        r#"{"a":{},"b":[],"c":[[],{}]}"#,
        r#"{"πρόσωπο":"ünïcödé 😀 \u20ac","日本":["\ud83d\ude00","\u00e9"],"\u0080":"\u007f"}"#,
        r#""""#,
        "null",
        "true",
        r#"{"a$":"b.c","price":500000}"#,
    ] {
        let v = parse(text).expect(text);
        check(&v).expect(text);
        assert_eq!(
            v,
            serde_json::from_str::<Value>(text).expect(text),
            "{text}"
        );
    }
}

#[test]
fn large_documents_are_fast() {
    // A 10k-element array of objects and a ~5 MB document.
    let array: Vec<Value> = (0..10_000)
        .map(|i| json!({"name": format!("item {i}"), "qty": i, "price": i as f64 * 0.25}))
        .collect();
    let array_text = serde_json::to_string(&Value::Array(array)).expect("serialise");

    let mut doc = Map::new();
    for i in 0..2_500 {
        let items: Vec<Value> = (0..20)
            .map(|j| json!({"id": i * 100 + j, "label": "ŝtring with some text in it", "ok": true}))
            .collect();
        doc.insert(
            format!("section_{i}"),
            json!({ "items": items, "note": "x".repeat(900) }),
        );
    }
    let doc_text = serde_json::to_string(&Value::Object(doc)).expect("serialise");
    assert!(doc_text.len() > 5_000_000, "{}", doc_text.len());

    let start = Instant::now();
    for text in [&array_text, &doc_text] {
        let v = parse(text).expect("portable");
        check(&v).expect("portable");
    }
    // Generous even for unoptimised debug builds; quadratic path building would blow it.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );

    // An error at the very end of a long array reports the right index.
    let mut bad: Vec<Value> = (0..10_000).map(Value::from).collect();
    bad.push(json!({"": 1}));
    let bad_text = serde_json::to_string(&bad).expect("serialise");
    assert_parse_err(&bad_text, ProfileRule::EmptyKey, r#"$[10000][""]"#);
}

// --- properties ------------------------------------------------------------------------------

fn portable_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,6}",
        // Any non-empty unicode key without NUL or '.', not starting with '$'.
        "[^\u{0}.$][^\u{0}.]{0,8}",
        prop::sample::select(vec![
            "\u{20ac}".to_owned(),
            "\r".to_owned(),
            "\u{fb33}".to_owned(),
            "\u{1f600}".to_owned(),
            "a b".to_owned(),
        ]),
    ]
}

fn portable_number() -> impl Strategy<Value = Value> {
    let max = MAX_SAFE_INTEGER as i64;
    prop_oneof![
        (-max..=max).prop_map(Value::from),
        (0..=MAX_SAFE_INTEGER).prop_map(Value::from),
        any::<f64>()
            .prop_filter("portable double", |f| {
                f.is_finite() && !(f.abs() > MAX_SAFE_INTEGER as f64 && f.abs() < 1e21)
            })
            .prop_map(Value::from),
        prop::sample::select(vec![0.5, -0.0, 1.5e300, 5e-324, 1e21, 1e-7, 0.1])
            .prop_map(Value::from),
    ]
}

fn portable_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        portable_number(),
        "[^\u{0}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(portable_key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn non_portable_key() -> impl Strategy<Value = (String, ProfileRule)> {
    prop_oneof![
        Just((String::new(), ProfileRule::EmptyKey)),
        "[a-z]{0,3}\u{0}[a-z]{0,3}".prop_map(|k| (k, ProfileRule::NulInString)),
        "\\$[a-z]{0,4}".prop_map(|k| (k, ProfileRule::DollarKey)),
        "[a-z]{1,3}\\.[a-z]{0,3}".prop_map(|k| (k, ProfileRule::DotInKey)),
    ]
}

/// `value` nested `levels` arrays deep.
fn nested(levels: usize, value: Value) -> Value {
    (0..levels).fold(value, |v, _| Value::Array(vec![v]))
}

/// A value that breaks one rule of the profile somewhere inside an otherwise portable value.
fn non_portable_value() -> impl Strategy<Value = Value> {
    let bad = prop_oneof![
        non_portable_key().prop_map(|(k, _)| Value::Object(Map::from_iter([(k, json!(1))]))),
        "[a-z]{0,3}\u{0}[a-z]{0,3}".prop_map(Value::String),
        Just(json!(MAX_SAFE_INTEGER + 1)),
        Just(json!(-(MAX_SAFE_INTEGER as i64) - 1)),
        Just(json!(9_007_199_254_740_994.0_f64)),
        Just(nested(MAX_DEPTH + 1, json!(0))),
    ];
    (portable_value(), bad, 0..3usize).prop_map(|(good, bad, at)| match at {
        0 => json!([good, bad]),
        1 => json!({"v": good, "x": {"y": [bad]}}),
        _ => bad,
    })
}

/// What [`Disclosure::check_portable`] says of `value` after the value was hashed.
fn checked_after_hashing(value: &Value) -> Result<usize, ProfileError> {
    let d = Disclosure::new(Salt::random(), Arc::new(value.clone()));
    let _ = d.hash(HashAlg::Blake3, "s");
    d.check_portable(|| "$.s".to_owned())
}

/// A hashed value over the size limit still fails `check_portable`, though its encoding (the
/// walk that checks the other rules) saw nothing wrong.
#[test]
fn a_hashed_value_over_the_size_limit_still_fails_the_profile() {
    let big = Value::String("x".repeat(MAX_STATE_BYTES));
    let err = checked_after_hashing(&big).expect_err("over the limit");
    assert_eq!(
        (err.rule, err.path.as_str()),
        (ProfileRule::TooLarge, "$.s")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Hashing a disclosure checks the profile in the same walk; what `check_portable` then
    /// says (rule, path, the bound of the canonical length) is what a check of its own says.
    #[test]
    fn a_hashed_disclosure_is_checked_exactly_as_a_fresh_one(
        value in prop_oneof![portable_value(), non_portable_value()]
    ) {
        let fresh = check_at(&value, "$.s");
        match checked_after_hashing(&value) {
            Ok(bound) => {
                prop_assert_eq!(fresh, Ok(()));
                prop_assert!(bound >= canonical::encoded_len(&value));
            }
            Err(err) => prop_assert_eq!(Err(err), fresh),
        }
    }

    /// Generated portable values pass `check`, and their canonical text parses back to a value
    /// with the same canonical form.
    #[test]
    fn portable_values_round_trip(value in portable_value()) {
        prop_assert_eq!(check(&value), Ok(()));
        let text = canonical::to_string(&value);
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&canonical::to_string(&parsed), &text);
        // `parse` agrees with serde_json on everything the profile allows.
        let plain: Value = serde_json::from_str(&text).expect("canonical is JSON");
        prop_assert_eq!(parsed, plain);
    }

    /// The profile is closed under canonicalisation: a number passes `check` exactly when its
    /// canonical text passes `parse`.
    #[test]
    fn numbers_check_iff_canonical_text_parses(
        number in prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", serde_json::Number::from_f64).prop_map(Value::Number),
        ]
    ) {
        let text = canonical::to_string(&number);
        prop_assert_eq!(check(&number).is_ok(), parse(&text).is_ok(), "{}", text);
    }

    /// A single bad key anywhere is reported with its rule and its exact path.
    #[test]
    fn bad_key_is_located(value in portable_value(), (key, rule) in non_portable_key()) {
        let wrapped = json!({ "outer": [value, { key.clone(): 1 }] });
        let mut expected_path = String::from("$.outer[1][");
        canonical::write_to(&Value::String(key), &mut expected_path);
        expected_path.push(']');
        let err = check(&wrapped).expect_err("bad key");
        prop_assert_eq!((err.rule, err.path.as_str()), (rule, expected_path.as_str()));
        let err = parse(&canonical::to_string(&wrapped)).expect_err("bad key");
        prop_assert_eq!((err.rule, err.path.as_str()), (rule, expected_path.as_str()));
    }
}

#[test]
fn module_is_reachable() {
    // Keeps the `portable::` path import exercised (constants re-exported at module level).
    assert_eq!(portable::MAX_DEPTH, 64);
    assert_eq!(portable::MAX_STATE_BYTES, 16 * 1024 * 1024);
}
