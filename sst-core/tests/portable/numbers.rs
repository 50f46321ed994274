//! Exact numbers in `portable::parse`: a number literal is accepted only when the double it
//! becomes is what its writer meant, and text that is not JSON is `invalid_json`, never a
//! number rule. Unit cases, the JSONTestSuite parsing cases, and properties.

use std::path::Path;

use proptest::prelude::*;
use serde::de::IgnoredAny;
use serde_json::Value;
use sst_core::canonical;
use sst_core::portable::{check, parse, ProfileRule, MAX_SAFE_INTEGER};

use super::assert_parse_err;

/// `literal` is accepted as the double Rust's (correctly rounding) parser makes of it, and its
/// canonical text is accepted too.
#[track_caller]
fn assert_accepted(literal: &str) {
    let value = parse(literal).unwrap_or_else(|e| panic!("parse {literal}: {e}"));
    let expected: f64 = literal.parse().expect("a number");
    assert_eq!(value.as_f64(), Some(expected), "{literal}");
    check(&value).unwrap_or_else(|e| panic!("check {literal}: {e}"));
    let canonical = canonical::to_string(&value);
    parse(&canonical).unwrap_or_else(|e| panic!("parse canonical {canonical}: {e}"));
}

#[test]
fn integers_beyond_the_range_are_refused_in_any_form() {
    for literal in [
        "9007199254740992",
        "9007199254740993",
        "-9007199254740993",
        "9.007199254740993e15",
        "9007199254740993e0",
        "90071992547409930e-1",
        "0.9007199254740993e16",
        "9007199254740993.000",
        "1e17",
        "1.0E+17",
        "100000000000000000000",
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "1.23456789012345678901234567890e29",
        "12345678901234567890123",
        // Rounds to the double 1e21, which is not what was written.
        "999999999999999999999",
        // Rounds to the largest double, whose shortest form is ...157e308.
        "1.7976931348623158e308",
        // A fractional literal that becomes an integer beyond the range.
        "9007199254740993.5",
    ] {
        let text = format!(r#"{{"ids":[0,{literal}]}}"#);
        assert_parse_err(&text, ProfileRule::IntegerOutOfRange, "$.ids[1]");
    }
    let err = assert_parse_err(
        "123456789012345678901234567890",
        ProfileRule::IntegerOutOfRange,
        "$",
    );
    assert!(err.detail.contains("1.2345678901234568e+29"), "{err}");
    assert!(
        err.detail.contains("123456789012345678901234567890"),
        "{err}"
    );
}

#[test]
fn doubles_written_with_their_own_digits_are_accepted() {
    for literal in [
        "1e21",
        "1E21",
        "1e+21",
        "1000000000000000000000",
        "1e300",
        "1.5e300",
        "1.5e+300",
        "15e299",
        "6.02214076e23",
        "1.7976931348623157e308",
        "-1.7976931348623157e308",
        "1.2345678901234568e29",
        "123456789012345680000000000000",
        "5e-324",
        "3e-324",
        "1e-320",
        "0.1",
        "0.1000000000000000055511151231257827",
        "9007199254740991",
        "-9007199254740991",
        "9.007199254740991e15",
        "-90071992547409910e-1",
        "1.5e1",
        "0e999999",
        "-0.0e-999999",
        "0.0000000000000000000000000000000000000001",
        // A fraction means "the nearest double", as in every JSON parser.
        "1000000000000000000000.5",
    ] {
        assert_accepted(literal);
    }
}

#[test]
fn overflow_and_underflow_are_refused() {
    let long_int = format!("1{}", "0".repeat(309));
    let tiny = format!("0.{}1", "0".repeat(400));
    for (literal, rule) in [
        ("1e309", ProfileRule::NonFiniteNumber),
        ("-1e309", ProfileRule::NonFiniteNumber),
        ("1.8e308", ProfileRule::NonFiniteNumber),
        ("1e99999999999999999999999999", ProfileRule::NonFiniteNumber),
        (long_int.as_str(), ProfileRule::NonFiniteNumber),
        ("1e-400", ProfileRule::NumberUnderflow),
        ("-1e-400", ProfileRule::NumberUnderflow),
        ("2e-324", ProfileRule::NumberUnderflow),
        (
            "1e-99999999999999999999999999",
            ProfileRule::NumberUnderflow,
        ),
        (tiny.as_str(), ProfileRule::NumberUnderflow),
    ] {
        let text = format!(r#"[{{"m":{literal}}}]"#);
        let err = assert_parse_err(&text, rule, "$[0].m");
        // Long literals are shortened in the detail.
        assert!(err.detail.len() < 200, "{err}");
    }
    assert_eq!(ProfileRule::NumberUnderflow.as_str(), "number_underflow");
}

#[test]
fn malformed_text_is_invalid_json_even_after_a_bad_number() {
    for (text, path) in [
        ("[1e400,]", "$[1]"),
        ("[123456789012345678901234567890", "$[0]"),
        (r#"{"a":1e-400 "b":1}"#, "$.a"),
        ("[1e400 1]", "$[0]"),
        ("1e400 x", "$"),
        (r#"{"a" 1e400}"#, "$.a"),
        ("[9007199254740993,]", "$[1]"),
        ("[-]", "$[0]"),
        ("[1.]", "$[0]"),
        ("[.5]", "$[0]"),
        ("[1e]", "$[0]"),
        ("[1e+]", "$[0]"),
        ("[01e400]", "$[0]"),
        ("[-01]", "$[0]"),
        ("[+1]", "$[0]"),
        ("[1e400", "$[0]"),
        ("[NaN]", "$[0]"),
        ("[Infinity]", "$[0]"),
        (r#"{"a":[0,{"b":1e999}}"#, "$.a[1]"),
    ] {
        let err = assert_parse_err(text, ProfileRule::InvalidJson, path);
        assert!(err.detail.contains("line 1 column"), "{err}");
    }
    let err = assert_parse_err("[1,\n 1e400,\n ]", ProfileRule::InvalidJson, "$[2]");
    assert!(err.detail.contains("line 3 column 2"), "{err}");
    // Unbalanced nesting far deeper than the depth limit is not JSON either (the texts of
    // JSONTestSuite's n_structure_100000_opening_arrays and n_structure_open_array_object).
    for (text, path) in [
        ("[".repeat(100_000), format!("${}", "[0]".repeat(100_000))),
        (
            r#"[{"":"#.repeat(50_000),
            format!("${}", r#"[0][""]"#.repeat(50_000)),
        ),
    ] {
        let err = parse(&text).expect_err("unbalanced");
        assert_eq!(err.rule, ProfileRule::InvalidJson, "{}", err.detail);
        assert!(err.path == path, "path of {} characters", err.path.len());
    }
}

/// Every `n_` text of JSONTestSuite is `invalid_json` (or not even UTF-8), every `y_` text is
/// JSON (some break other profile rules), and the `i_number_` texts get the number rules.
#[test]
fn json_test_suite() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jsontestsuite");
    let mut counts = [0usize; 3];
    for entry in std::fs::read_dir(&dir).expect("test data") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        let text = std::str::from_utf8(&bytes);
        let result = text.map(parse);
        if name.starts_with("y_") {
            counts[0] += 1;
            let result = result.unwrap_or_else(|e| panic!("{name}: not UTF-8: {e}"));
            if let Err(err) = result {
                assert!(
                    matches!(
                        err.rule,
                        ProfileRule::DuplicateKey
                            | ProfileRule::NulInString
                            | ProfileRule::EmptyKey
                    ),
                    "{name}: {err}"
                );
            }
        } else if name.starts_with("n_") {
            counts[1] += 1;
            if let Ok(result) = result {
                let err = result.expect_err(&name);
                assert_eq!(err.rule, ProfileRule::InvalidJson, "{name}: {err}");
            }
        } else if name.starts_with("i_number_") {
            counts[2] += 1;
            let err = result.expect("UTF-8").expect_err(&name);
            let expected = if name.contains("underflow") || name.contains("neg_exp") {
                ProfileRule::NumberUnderflow
            } else if name.contains("int") && !name.contains("exp") {
                ProfileRule::IntegerOutOfRange
            } else {
                ProfileRule::NonFiniteNumber
            };
            assert_eq!(
                (err.rule, err.path.as_str()),
                (expected, "$[0]"),
                "{name}: {err}"
            );
        } else if let Ok(Ok(value)) = result {
            // Implementation-defined texts: whatever is accepted is portable.
            check(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    assert!(
        counts[0] >= 90 && counts[1] >= 180 && counts[2] == 10,
        "{counts:?}"
    );
}

// --- properties ------------------------------------------------------------------------------

/// Literals with the value `sign` × `digits` (digits without leading zeros), in several forms.
fn integer_forms(negative: bool, digits: &str) -> Vec<String> {
    let sign = if negative { "-" } else { "" };
    let len = digits.len();
    let mut forms = vec![
        digits.to_owned(),
        format!("{digits}.000"),
        format!("{digits}e0"),
        format!("0.{digits}e{len}"),
    ];
    if digits != "0" {
        forms.push(format!("{digits}00e-2"));
        let (first, rest) = digits.split_at(1);
        let rest = rest.trim_end_matches('0');
        if rest.is_empty() {
            forms.push(format!("{first}E+{}", len - 1));
        } else {
            forms.push(format!("{first}.{rest}e+{}", len - 1));
        }
        let trimmed = digits.trim_end_matches('0');
        if trimmed.len() < len {
            forms.push(format!("{trimmed}e{}", len - trimmed.len()));
        }
    }
    forms.into_iter().map(|f| format!("{sign}{f}")).collect()
}

/// A place to put a literal: the text around `{}` and the path of that place.
fn place() -> impl Strategy<Value = (String, String)> {
    let seg = prop_oneof![
        "[a-y][a-z0-9_]{0,5}".prop_map(|k| (Some(k), 0usize)),
        (0usize..3).prop_map(|i| (None, i)),
    ];
    prop::collection::vec(seg, 0..5).prop_map(|segs| {
        let mut text = String::from("{}");
        for (key, index) in segs.iter().rev() {
            text = match key {
                Some(k) => format!(r#"{{"z":0,"{k}":{text}}}"#),
                None => format!("[{}{text}]", "0,".repeat(*index)),
            };
        }
        let mut path = String::from("$");
        for (key, index) in &segs {
            match key {
                Some(k) => path.push_str(&format!(".{k}")),
                None => path.push_str(&format!("[{index}]")),
            }
        }
        (text, path)
    })
}

/// Integers beyond ±(2^53 − 1) that no double holds with the same digits: below 10^21, or
/// with at least 18 significant digits.
fn big_integer_digits() -> impl Strategy<Value = String> {
    prop_oneof![
        (u128::from(MAX_SAFE_INTEGER) + 1..10u128.pow(21)).prop_map(|n| n.to_string()),
        ("[1-9][0-9]{16,38}[1-9]", 0usize..250).prop_map(|(d, zeros)| d + &"0".repeat(zeros)),
    ]
}

const TEMPLATES: [&str; 5] = [
    r#"{"a":[1e400,123456789012345678901234567890,1e-400]}"#,
    r#"[9007199254740993, {"b": -1e999}]"#,
    "1e400",
    "123456789012345678901234567890",
    r#"{"x":{"y":[0.5,1e-999,"s\u0041"]}}"#,
];

/// JSON-looking text: random strings over JSON's alphabet, and the templates (full of bad
/// numbers) with one character inserted, removed or replaced.
fn json_like() -> impl Strategy<Value = String> {
    let alphabet = prop::sample::select(
        "[]{}\",:0123456789eE.+- \\uatrlfsn"
            .chars()
            .collect::<Vec<_>>(),
    );
    prop_oneof![
        any::<String>(),
        "[\\[\\]{}\",:0-9eE.+\\- \\\\u]{0,24}",
        (
            0..TEMPLATES.len(),
            any::<prop::sample::Index>(),
            0..3,
            alphabet
        )
            .prop_map(|(t, at, op, c)| {
                let mut s = TEMPLATES[t].to_owned();
                let i = at.index(s.len() + 1);
                match op {
                    0 => s.insert(i, c),
                    1 if i < s.len() => {
                        s.remove(i);
                    }
                    _ if i < s.len() => s.replace_range(i..=i, &c.to_string()),
                    _ => s.push(c),
                }
                s
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every integer within ±(2^53 − 1) is accepted exactly, in every form.
    #[test]
    fn safe_integers_round_trip_in_any_form(
        n in -(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64,
        (around, _path) in place(),
    ) {
        for literal in integer_forms(n < 0, &n.unsigned_abs().to_string()) {
            let text = around.replace("{}", &literal);
            let value = parse(&text).map_err(|e| TestCaseError::fail(format!("{literal}: {e}")))?;
            let plain: Value = serde_json::from_str(&text).expect("JSON");
            prop_assert_eq!(&value, &plain);
            let canonical = canonical::to_string(&value);
            prop_assert_eq!(canonical, canonical::to_string(&serde_json::from_str::<Value>(&around.replace("{}", &n.to_string())).expect("JSON")));
        }
    }

    /// An integer-valued literal beyond ±(2^53 − 1), in decimal or exponent form, is refused
    /// as `integer_out_of_range` at its path.
    #[test]
    fn big_integers_are_refused_in_any_form(
        negative in any::<bool>(),
        digits in big_integer_digits(),
        (around, path) in place(),
    ) {
        for literal in integer_forms(negative, &digits) {
            let text = around.replace("{}", &literal);
            let err = parse(&text).expect_err(&text);
            prop_assert_eq!((err.rule, err.path.as_str()), (ProfileRule::IntegerOutOfRange, path.as_str()), "{}: {}", literal, err);
        }
    }

    /// A finite double printed in shortest round-trip form (ECMAScript, Rust plain and Rust
    /// exponent) parses back to the same double, unless it is an integer beyond the range
    /// below 10^21, which `check` refuses too.
    #[test]
    fn shortest_doubles_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let portable = check(&Value::from(f)).is_ok();
        for text in [ryu_js::Buffer::new().format_finite(f).to_owned(), format!("{f}"), format!("{f:e}")] {
            match parse(&text) {
                Ok(value) => {
                    prop_assert!(portable, "{} accepted", text);
                    prop_assert_eq!(value.as_f64(), Some(f), "{}", text);
                }
                Err(err) => {
                    prop_assert!(!portable, "{}: {}", text, err);
                    prop_assert_eq!((err.rule, err.path.as_str()), (ProfileRule::IntegerOutOfRange, "$"));
                }
            }
        }
    }

    /// Literals beyond the largest double overflow; nonzero literals below half the smallest
    /// subnormal underflow.
    #[test]
    fn overflow_and_underflow_are_refused_at_their_path(
        mantissa in "-?[1-9](\\.[0-9]{1,20})?",
        exponent in prop_oneof![309u64..400, 400u64..1_000_000_000_000],
        (around, path) in place(),
    ) {
        let big = around.replace("{}", &format!("{mantissa}e{exponent}"));
        let err = parse(&big).expect_err(&big);
        prop_assert_eq!((err.rule, err.path.as_str()), (ProfileRule::NonFiniteNumber, path.as_str()));
        let small = around.replace("{}", &format!("{mantissa}E-{}", exponent + 16));
        let err = parse(&small).expect_err(&small);
        prop_assert_eq!((err.rule, err.path.as_str()), (ProfileRule::NumberUnderflow, path.as_str()));
    }

    /// Text that is not JSON is `invalid_json`, never a number (or any other) rule; JSON text
    /// (without escapes, where serde_json's syntax-only pass does not check surrogates) is
    /// never `invalid_json`.
    #[test]
    fn text_that_is_not_json_is_invalid_json(text in json_like()) {
        let is_json = serde_json::from_str::<IgnoredAny>(&text).is_ok();
        let result = parse(&text);
        if !is_json {
            let err = result.expect_err(&text);
            prop_assert_eq!(err.rule, ProfileRule::InvalidJson, "{:?}: {}", text, err);
        } else if !text.contains('\\') {
            if let Err(err) = result {
                prop_assert_ne!(err.rule, ProfileRule::InvalidJson, "{:?}: {}", text, err);
            }
        }
    }
}
