//! JSON values as Oracle stores them. In `BLOB … IS JSON` columns (19c) the UTF-8 text is
//! stored as written and read back byte for byte. The native `JSON` type (21c+) keeps
//! numbers as Oracle `NUMBER` (exact decimals, but only for magnitudes from 1e-130 to below
//! 1e126), so doubles outside that range are written as extended-JSON scalars
//! (`{"$numberDouble": "1e300"}`, read with `JSON(… EXTENDED)` into `BINARY_DOUBLE`). On the
//! way back such extended scalars become plain numbers again. Portable JSON never has keys
//! starting with `$`, so these objects cannot be confused with user data.

use serde_json::{Map, Number, Value};

/// Smallest magnitude Oracle `NUMBER` holds.
const NUMBER_MIN: f64 = 1e-130;
/// Magnitudes at or above this do not fit Oracle `NUMBER`.
const NUMBER_LIMIT: f64 = 1e126;

/// Whether the native `JSON` type's `NUMBER` holds `f` exactly (as the decimal that prints
/// it shortest, which parses back to the same double).
pub fn fits_number(f: f64) -> bool {
    f == 0.0 || (f.abs() >= NUMBER_MIN && f.abs() < NUMBER_LIMIT)
}

/// The text bound for a native `JSON` column (`JSON(:n EXTENDED)`).
pub fn encode_native(value: &Value) -> String {
    let mut out = String::new();
    write_native(value, &mut out);
    out
}

fn write_native(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && !fits_number(f) => {
                out.push_str("{\"$numberDouble\":\"");
                out.push_str(&n.to_string());
                out.push_str("\"}");
            }
            _ => out.push_str(&n.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_native(v, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_native(v, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The bytes bound for a `BLOB … IS JSON` column: UTF-8 JSON text.
pub fn encode_blob(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// Why stored JSON could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Parses JSON text read from either column type, turning extended scalars
/// (`$numberDouble`, `$numberDecimal`, `$numberLong`, `$numberInt`) back into numbers.
///
/// # Errors
/// Text that is not JSON, or an extended scalar whose number does not parse.
pub fn decode(text: &str) -> Result<Value, DecodeError> {
    let v: Value = serde_json::from_str(text).map_err(|e| DecodeError(e.to_string()))?;
    unextend(v)
}

/// As [`decode`] for BLOB bytes.
///
/// # Errors
/// As [`decode`]; also bytes that are not UTF-8.
pub fn decode_bytes(bytes: &[u8]) -> Result<Value, DecodeError> {
    decode(std::str::from_utf8(bytes).map_err(|e| DecodeError(e.to_string()))?)
}

fn unextend(v: Value) -> Result<Value, DecodeError> {
    Ok(match v {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some((k, Value::String(s))) = map.iter().next() {
                    if matches!(
                        k.as_str(),
                        "$numberDouble" | "$numberDecimal" | "$numberLong" | "$numberInt"
                    ) {
                        return parse_number(s);
                    }
                }
            }
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k, unextend(v)?);
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(unextend).collect::<Result<_, _>>()?)
        }
        other => other,
    })
}

fn parse_number(s: &str) -> Result<Value, DecodeError> {
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Value::Number(i.into()));
    }
    s.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| DecodeError(format!("extended number {s:?} is not a finite number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn doubles_outside_number_range_become_extended_scalars() {
        let v = json!({"big": 1e300, "tiny": 5e-324, "ok": 0.1, "i": 9007199254740991i64});
        let text = encode_native(&v);
        assert!(
            text.contains(r#""big":{"$numberDouble":"1e+300"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""tiny":{"$numberDouble":"5e-324"}"#),
            "{text}"
        );
        assert!(text.contains(r#""ok":0.1"#), "{text}");
        assert!(text.contains(r#""i":9007199254740991"#), "{text}");
        assert_eq!(decode(&text).expect("decodes"), v);
    }

    #[test]
    fn number_range_edges() {
        assert!(fits_number(0.0) && fits_number(-0.0));
        assert!(fits_number(1e-130) && fits_number(9.99e125) && fits_number(-9.99e125));
        assert!(!fits_number(1e126) && !fits_number(1e-131) && !fits_number(f64::MAX));
    }

    #[test]
    fn extended_scalars_as_oracle_may_print_them_read_back_as_numbers() {
        let v = decode(r#"{"a":{"$numberDouble":"1.0E300"},"b":[{"$numberDecimal":"12.5"}],"c":{"$numberLong":"7"}}"#)
            .expect("decodes");
        assert_eq!(v, json!({"a": 1e300, "b": [12.5], "c": 7}));
        assert!(decode(r#"{"$numberDouble":"NaN"}"#).is_err());
    }

    #[test]
    fn blob_text_is_plain_json_utf8() {
        let v = json!({"s": "grüße \u{1F600}", "n": [1, 2.5]});
        let bytes = encode_blob(&v);
        assert_eq!(decode_bytes(&bytes).expect("decodes"), v);
        assert!(decode_bytes(&[0xff, 0xfe]).is_err());
    }

    fn portable_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(|i| json!(i)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[^\u{0}]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z][a-z0-9_]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn both_encodings_decode_to_the_same_canonical_json(v in portable_json()) {
            let native = decode(&encode_native(&v)).expect("native text decodes");
            let blob = decode_bytes(&encode_blob(&v)).expect("blob text decodes");
            let canonical = sst_core::canonical::to_vec(&v);
            prop_assert_eq!(sst_core::canonical::to_vec(&native), canonical.clone());
            prop_assert_eq!(sst_core::canonical::to_vec(&blob), canonical);
            prop_assert_eq!(native, v);
        }
    }
}
