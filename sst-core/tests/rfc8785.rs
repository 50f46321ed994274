//! RFC 8785 (JCS) conformance of `sst_core::canonical`: the RFC's own examples and number
//! vectors, plus properties (idempotence, independence from input key order).

mod previous;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sst_core::canonical;

/// RFC 8785 Appendix B: IEEE-754 bit patterns and their ECMAScript serialisation.
const APPENDIX_B: &[(u64, &str)] = &[
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7fefffffffffffff, "1.7976931348623157e+308"),
    (0xffefffffffffffff, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xc340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44b52d02c7e14af5, "9.999999999999997e+22"),
    (0x44b52d02c7e14af6, "1e+23"),
    (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
    (0x444b1ae4d6e2ef4e, "999999999999999700000"),
    (0x444b1ae4d6e2ef4f, "999999999999999900000"),
    (0x444b1ae4d6e2ef50, "1e+21"),
    (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
    (0x3eb0c6f7a0b5ed8d, "0.000001"),
    (0x41b3de4355555553, "333333333.3333332"),
    (0x41b3de4355555554, "333333333.33333325"),
    (0x41b3de4355555555, "333333333.3333333"),
    (0x41b3de4355555556, "333333333.3333334"),
    (0x41b3de4355555557, "333333333.33333343"),
    (0xbecbf647612f3696, "-0.0000033333333333333333"),
    (0x43143ff3c1cb0959, "1424953923781206.2"),
];

fn number(bits: u64) -> Value {
    let f = f64::from_bits(bits);
    Value::Number(serde_json::Number::from_f64(f).expect("Appendix B values are finite"))
}

#[test]
fn appendix_b_number_vectors() {
    for &(bits, expected) in APPENDIX_B {
        let value = number(bits);
        assert_eq!(canonical::to_string(&value), expected, "bits {bits:#018x}");
        assert_eq!(
            canonical::encoded_len(&value),
            expected.len(),
            "bits {bits:#018x}"
        );
    }
}

#[test]
fn integers_are_formatted_as_doubles() {
    assert_eq!(canonical::to_string(&json!(0)), "0");
    assert_eq!(canonical::to_string(&json!(-1)), "-1");
    assert_eq!(
        canonical::to_string(&json!(9007199254740991u64)),
        "9007199254740991"
    );
    assert_eq!(
        canonical::to_string(&json!(u64::MAX)),
        "18446744073709552000"
    );
    assert_eq!(
        canonical::to_string(&json!(i64::MIN)),
        "-9223372036854776000"
    );
    assert_eq!(canonical::to_string(&json!(1e21)), "1e+21");
    assert_eq!(canonical::to_string(&json!(1e20)), "100000000000000000000");
    assert_eq!(canonical::to_string(&json!(-0.0)), "0");
    assert_eq!(canonical::to_string(&json!(4.5)), "4.5");
    assert_eq!(canonical::to_string(&json!(0.002)), "0.002");
    assert_eq!(canonical::to_string(&json!(1e-7)), "1e-7");
}

/// Hashes are recomputed from JSON read back from databases, so parsing must give the exact
/// double: serde_json only does so with its `float_roundtrip` feature (its default parser is
/// "best effort" and can be off by one unit in the last place).
#[test]
fn serde_json_parses_doubles_exactly() {
    for &(bits, text) in APPENDIX_B {
        let parsed: f64 = serde_json::from_str(text).expect("valid JSON number");
        assert_eq!(
            parsed.to_bits(),
            f64::from_bits(bits).abs().copysign(parsed).to_bits(),
            "serde_json parsed {text} inexactly: enable serde_json's `float_roundtrip` feature"
        );
    }
    let parsed: f64 = serde_json::from_str("333333333.33333329").expect("valid JSON number");
    assert_eq!(
        parsed.to_bits(),
        0x41b3de4355555555,
        "serde_json parsed 333333333.33333329 inexactly: enable its `float_roundtrip` feature"
    );
}

/// RFC 8785 §3.2.2: the "numbers" / "string" / "literals" example.
#[test]
fn rfc_section_3_2_2_example() {
    let input = r#"{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
    let value: Value = serde_json::from_str(input).expect("valid JSON");
    let expected = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
    assert_eq!(canonical::to_string(&value), expected);
    assert_eq!(canonical::to_vec(&value), expected.as_bytes());
    assert_eq!(canonical::encoded_len(&value), expected.len());
}

/// RFC 8785 §3.2.3: members sorted by UTF-16 code units, not by UTF-8 bytes.
#[test]
fn rfc_section_3_2_3_sorting_example() {
    let input = r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"#;
    let value: Value = serde_json::from_str(input).expect("valid JSON");
    let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                    \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\
                    \"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\
                    \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canonical::to_string(&value), expected);
    // The RFC's listing of the sorted property names, as UTF-16 code units.
    let keys: Vec<Vec<u16>> = {
        let text = canonical::to_string(&value);
        let reparsed: Map<String, Value> = serde_json::from_str(&text).expect("canonical is JSON");
        let mut keys: Vec<&String> = reparsed.keys().collect();
        keys.sort_by(|a, b| canonical::cmp_utf16(a, b));
        keys.iter().map(|k| k.encode_utf16().collect()).collect()
    };
    let expected_units: Vec<Vec<u16>> = vec![
        vec![0x000d],
        vec![0x0031],
        vec![0x0080],
        vec![0x00f6],
        vec![0x20ac],
        vec![0xd83d, 0xde00],
        vec![0xfb33],
    ];
    assert_eq!(keys, expected_units);
}

#[test]
fn utf16_order_differs_from_byte_order() {
    assert_eq!(
        canonical::cmp_utf16("\u{1f600}", "\u{fb33}"),
        std::cmp::Ordering::Less
    );
    assert!("\u{1f600}".as_bytes() > "\u{fb33}".as_bytes());
    assert_eq!(canonical::cmp_utf16("a", "ab"), std::cmp::Ordering::Less);
    assert_eq!(
        canonical::cmp_utf16("\u{e000}", "\u{e000}"),
        std::cmp::Ordering::Equal
    );
    assert_eq!(
        canonical::cmp_utf16("x\u{10000}", "x\u{ffff}"),
        std::cmp::Ordering::Less
    );
}

#[test]
fn string_escaping() {
    let s: String = (0u8..0x20).map(char::from).collect::<String>() + "\"\\/\u{7f}é\u{2028}😀";
    let expected = "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\
                    \\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\
                    \\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\\"\\\\/\u{7f}é\u{2028}😀\"";
    let value = Value::String(s);
    assert_eq!(canonical::to_string(&value), expected);
    assert_eq!(canonical::encoded_len(&value), expected.len());
}

#[test]
fn no_whitespace_and_nesting() {
    let value = json!({"b": [1, {"d": [], "c": {}}], "a": null, "": "e"});
    assert_eq!(
        canonical::to_string(&value),
        r#"{"":"e","a":null,"b":[1,{"c":{},"d":[]}]}"#
    );
}

#[test]
fn write_to_appends() {
    let mut out = String::from("prefix:");
    canonical::write_to(&json!({"b": 1, "a": true}), &mut out);
    canonical::write_to(&json!([false]), &mut out);
    assert_eq!(out, r#"prefix:{"a":true,"b":1}[false]"#);
}

// --- properties ------------------------------------------------------------------------------

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,4}",
        any::<String>(),
        prop::sample::select(vec![
            "\u{20ac}".to_owned(),
            "\r".to_owned(),
            "\u{fb33}".to_owned(),
            "\u{1f600}".to_owned(),
            "\u{ffff}".to_owned(),
            "\u{e000}".to_owned(),
            "\u{10000}".to_owned(),
        ]),
    ]
}

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", serde_json::Number::from_f64)
            .prop_map(Value::Number),
        // Doubles from the full bit range, including subnormals.
        any::<u64>()
            .prop_filter_map("finite", |b| serde_json::Number::from_f64(f64::from_bits(
                b
            )))
            .prop_map(Value::Number),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Rebuilds `value` with every object's members inserted in reverse (or rotated) order.
fn reorder(value: &Value, rotate: usize) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| reorder(v, rotate)).collect()),
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.reverse();
            if !members.is_empty() {
                let k = rotate % members.len();
                members.rotate_left(k);
            }
            Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k.clone(), reorder(v, rotate)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Canonical output, parsed back and canonicalised again, is byte-identical.
    #[test]
    fn canonicalisation_is_idempotent(value in arb_value()) {
        let first = canonical::to_string(&value);
        let reparsed: Value = serde_json::from_str(&first).expect("canonical output is JSON");
        let second = canonical::to_string(&reparsed);
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(canonical::encoded_len(&value), first.len());
    }

    /// The bounded length is the length when it fits the limit and `None` when it does not,
    /// for limits around the length and far from it.
    #[test]
    fn bounded_length_is_the_length_within_the_limit(
        value in arb_value(),
        offset in -40i64..40,
        far in any::<usize>(),
    ) {
        let len = canonical::encoded_len(&value);
        let near = usize::try_from((len as i64 + offset).max(0)).expect("non-negative");
        for limit in [near, far, 0, len, len.saturating_sub(1)] {
            prop_assert_eq!(
                canonical::encoded_len_at_most(&value, limit),
                (len <= limit).then_some(len),
                "limit {}", limit
            );
        }
    }

    /// `reads_back_equal` says exactly whether serde_json reads the canonical text back as
    /// an equal value.
    #[test]
    fn reads_back_equal_is_what_serde_json_reads(value in arb_value()) {
        let back: Value = serde_json::from_str(&canonical::to_string(&value))
            .expect("canonical output is JSON");
        prop_assert_eq!(canonical::reads_back_equal(&value), back == value);
    }

    /// The insertion order of object members never changes the output.
    #[test]
    fn key_order_does_not_matter(value in arb_value(), rotate in 0usize..8) {
        let reordered = reorder(&value, rotate);
        prop_assert_eq!(canonical::to_vec(&value), canonical::to_vec(&reordered));
    }

    /// Members come out sorted by UTF-16 code units.
    #[test]
    fn members_sorted_by_utf16(keys in prop::collection::vec(arb_key(), 0..12)) {
        let map: Map<String, Value> = keys.iter().map(|k| (k.clone(), Value::Null)).collect();
        let mut sorted: Vec<Vec<u16>> = map.keys().map(|k| k.encode_utf16().collect()).collect();
        sorted.sort();
        let mut expected = String::from("{");
        for (i, units) in sorted.iter().enumerate() {
            if i > 0 {
                expected.push(',');
            }
            let key = String::from_utf16(units).expect("valid UTF-16");
            canonical::write_to(&Value::String(key), &mut expected);
            expected.push_str(":null");
        }
        expected.push('}');
        prop_assert_eq!(canonical::to_string(&Value::Object(map)), expected);
    }
}

// --- one pass, and straight from typed values ------------------------------------------------

/// A type that uses every shape serde can give a value, to compare the direct writer with
/// the `Value` path.
#[derive(Debug, Clone, serde::Serialize)]
struct Typed {
    name: String,
    letter: char,
    small: i8,
    count: u32,
    big: u64,
    negative: i64,
    ratio: f64,
    half: f32,
    flag: bool,
    maybe: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
    unit: (),
    list: Vec<Shape>,
    pair: (u8, String),
    nested: std::collections::BTreeMap<String, Value>,
    keyed: std::collections::BTreeMap<Key, i32>,
    tagged: Tagged,
    #[serde(flatten)]
    extra: std::collections::BTreeMap<String, Value>,
    newtype: Wrapper,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(untagged)]
enum Key {
    Text(String),
    Number(u8),
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Shape {
    Unit,
    Newtype(i32),
    Tuple(u8, bool),
    Struct { zeta: String, alpha: Option<f64> },
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
enum Tagged {
    Plain,
    WithFields { reason: String, at: u64 },
}

#[derive(Debug, Clone, serde::Serialize)]
struct Wrapper(String);

fn arb_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        any::<i32>().prop_map(Shape::Newtype),
        (any::<u8>(), any::<bool>()).prop_map(|(a, b)| Shape::Tuple(a, b)),
        (arb_key(), any::<Option<f64>>()).prop_map(|(zeta, alpha)| Shape::Struct { zeta, alpha }),
    ]
}

fn arb_typed() -> impl Strategy<Value = Typed> {
    (
        (
            any::<String>(),
            any::<char>(),
            any::<i8>(),
            any::<u32>(),
            any::<u64>(),
            any::<i64>(),
            any::<f64>(),
            any::<f32>(),
            any::<bool>(),
            any::<Option<u16>>(),
        ),
        (
            any::<Option<String>>(),
            prop::collection::vec(arb_shape(), 0..4),
            (any::<u8>(), arb_key()),
            prop::collection::btree_map(arb_key(), arb_value(), 0..4),
            prop::collection::btree_map(
                prop_oneof![
                    arb_key().prop_map(Key::Text),
                    any::<u8>().prop_map(Key::Number)
                ],
                any::<i32>(),
                0..3,
            ),
            prop_oneof![
                Just(Tagged::Plain),
                (arb_key(), any::<u64>())
                    .prop_map(|(reason, at)| Tagged::WithFields { reason, at }),
            ],
            // Flattened members may repeat a field name ("name", "count"): `to_value` keeps
            // the last one.
            prop::collection::btree_map(
                prop_oneof![arb_key(), Just("name".to_owned()), Just("count".to_owned())],
                arb_value(),
                0..3,
            ),
            arb_key(),
        ),
    )
        .prop_map(
            |(
                (name, letter, small, count, big, negative, ratio, half, flag, maybe),
                (skipped, list, pair, nested, keyed, tagged, extra, newtype),
            )| Typed {
                name,
                letter,
                small,
                count,
                big,
                negative,
                ratio,
                half,
                flag,
                maybe,
                skipped,
                unit: (),
                list,
                pair,
                nested,
                keyed,
                tagged,
                extra,
                newtype: Wrapper(newtype),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The one-pass canonicaliser prints exactly what the previous one did.
    #[test]
    fn one_pass_output_is_byte_identical_to_the_previous_implementation(
        value in arb_value(),
        rotate in 0usize..8,
    ) {
        let previous = previous::canonical(&value);
        prop_assert_eq!(&canonical::to_string(&value), &previous);
        prop_assert_eq!(canonical::to_string(&reorder(&value, rotate)), previous);
    }

    /// Writing a `Value` straight through `Serialize` gives its canonical bytes.
    #[test]
    fn direct_writer_matches_the_value_path_on_values(value in arb_value(), rotate in 0usize..8) {
        let reordered = reorder(&value, rotate);
        prop_assert_eq!(canonical::to_vec_of(&reordered), canonical::to_vec(&value));
    }

    /// Writing a typed value straight from `Serialize` gives exactly the canonical bytes of
    /// its `serde_json::to_value` tree, for every shape serde produces (non-finite floats,
    /// non-string map keys and repeated names included).
    #[test]
    fn direct_writer_matches_the_value_path_on_typed_values(typed in arb_typed()) {
        let via_value = canonical::to_vec(
            &serde_json::to_value(&typed).unwrap_or(Value::Null),
        );
        prop_assert_eq!(canonical::to_vec_of(&typed), via_value);
    }
}

/// Doubles with an integral value and integers beyond 2^53 do not read back as they were; any
/// other number does.
#[test]
fn integral_doubles_and_huge_integers_do_not_read_back_equal() {
    for v in [
        json!(1.0),
        json!(-0.0),
        json!([1, {"a": 2.0}]),
        json!(9_007_199_254_740_993u64),
    ] {
        assert!(!canonical::reads_back_equal(&v), "{v}");
    }
    for v in [
        json!(1),
        json!(1.5),
        json!(1e21),
        json!({"a": [0.1, -3, "x", null]}),
    ] {
        assert!(canonical::reads_back_equal(&v), "{v}");
    }
}
