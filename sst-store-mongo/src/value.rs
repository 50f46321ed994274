//! JSON ⇄ BSON mapping, by hand (not via extended JSON): integers become `Int64`, every
//! other number a `Double`, objects become documents with their key order kept, and the way
//! back turns them into the very same `serde_json` values, so canonical hashes recomputed from
//! what MongoDB returns are identical to the ones computed before the write.

use mongodb::bson::{Bson, Document};
use serde_json::{Map, Number, Value};

/// Why a value could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct MappingError {
    /// JSON path of the offending value (`$.a.b[2]`).
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

fn err(path: &str, reason: impl Into<String>) -> MappingError {
    MappingError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn child_key(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn child_index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// JSON value → BSON value. Integers that fit `i64` become `Int64`; other numbers `Double`.
///
/// # Errors
/// An unsigned integer above `i64::MAX` (outside the portable profile), or a non-finite
/// number, with its path.
pub fn to_bson(value: &Value) -> Result<Bson, MappingError> {
    to_bson_at(value, "$")
}

fn to_bson_at(value: &Value, path: &str) -> Result<Bson, MappingError> {
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => number_to_bson(n, path)?,
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_bson_at(v, &child_index(path, i)))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Bson::Document(map_to_document(map, path)?),
    })
}

fn number_to_bson(n: &Number, path: &str) -> Result<Bson, MappingError> {
    if let Some(i) = n.as_i64() {
        return Ok(Bson::Int64(i));
    }
    if n.is_u64() {
        return Err(err(
            path,
            format!("integer {n} does not fit a signed 64-bit BSON Int64"),
        ));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => Ok(Bson::Double(f)),
        _ => Err(err(path, format!("number {n} is not a finite double"))),
    }
}

fn map_to_document(map: &Map<String, Value>, path: &str) -> Result<Document, MappingError> {
    let mut doc = Document::new();
    for (k, v) in map {
        if k.contains('\0') {
            return Err(err(
                path,
                format!("key {k:?} contains NUL, which BSON cannot store"),
            ));
        }
        doc.insert(k.clone(), to_bson_at(v, &child_key(path, k))?);
    }
    Ok(doc)
}

/// A JSON object → BSON document.
///
/// # Errors
/// As [`to_bson`]; also when `value` is not an object.
pub fn to_document(value: &Value) -> Result<Document, MappingError> {
    match value {
        Value::Object(map) => map_to_document(map, "$"),
        other => Err(err("$", format!("expected an object, found {other}"))),
    }
}

/// BSON value → JSON value: the inverse of [`to_bson`]. `Int32` (which this adapter never
/// writes, but a user's shell may) maps to the same integer.
///
/// # Errors
/// A BSON type that JSON cannot represent without loss (dates, ObjectIds, binary, decimals,
/// non-finite doubles, …), with its path: such a value was written behind SST's back.
pub fn from_bson(value: &Bson) -> Result<Value, MappingError> {
    from_bson_at(value, "$")
}

fn from_bson_at(value: &Bson, path: &str) -> Result<Value, MappingError> {
    Ok(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::Number(Number::from(*i)),
        Bson::Int64(i) => Value::Number(Number::from(*i)),
        Bson::Double(f) => Value::Number(
            Number::from_f64(*f).ok_or_else(|| err(path, format!("double {f} is not finite")))?,
        ),
        Bson::String(s) => Value::String(s.clone()),
        Bson::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| from_bson_at(v, &child_index(path, i)))
                .collect::<Result<_, _>>()?,
        ),
        Bson::Document(doc) => Value::Object(document_to_map(doc, path)?),
        other => {
            return Err(err(
                path,
                format!(
                    "BSON {:?} has no JSON equivalent in SST",
                    other.element_type()
                ),
            ))
        }
    })
}

fn document_to_map(doc: &Document, path: &str) -> Result<Map<String, Value>, MappingError> {
    let mut map = Map::new();
    for (k, v) in doc {
        map.insert(k.clone(), from_bson_at(v, &child_key(path, k))?);
    }
    Ok(map)
}

/// A BSON document → JSON object.
///
/// # Errors
/// As [`from_bson`].
pub fn from_document(doc: &Document) -> Result<Value, MappingError> {
    Ok(Value::Object(document_to_map(doc, "$")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn integers_become_int64_and_other_numbers_double() {
        let b =
            to_bson(&json!({"i": 5, "n": -7, "f": 1.5, "whole": 2.0, "big": 9007199254740991i64}))
                .expect("maps");
        let d = b.as_document().expect("document");
        assert_eq!(d.get("i"), Some(&Bson::Int64(5)));
        assert_eq!(d.get("n"), Some(&Bson::Int64(-7)));
        assert_eq!(d.get("f"), Some(&Bson::Double(1.5)));
        assert_eq!(d.get("whole"), Some(&Bson::Double(2.0)));
        assert_eq!(d.get("big"), Some(&Bson::Int64(9_007_199_254_740_991)));
    }

    #[test]
    fn round_trip_keeps_number_kinds_and_canonical_bytes() {
        let v = json!({"a": [1, 2.5, -0.0, 1e300, {"b": null, "c": true}], "s": "x\u{1F600}", "z": 2.0});
        let back = from_bson(&to_bson(&v).expect("maps")).expect("maps back");
        assert_eq!(back, v);
        assert_eq!(
            sst_core::canonical::to_vec(&back),
            sst_core::canonical::to_vec(&v)
        );
    }

    #[test]
    fn int32_written_by_a_shell_reads_as_the_same_integer() {
        assert_eq!(from_bson(&Bson::Int32(42)).expect("maps"), json!(42));
    }

    #[test]
    fn foreign_bson_types_are_refused_with_their_path() {
        let mut doc = Document::new();
        doc.insert(
            "when",
            Bson::DateTime(mongodb::bson::DateTime::from_millis(0)),
        );
        let e = from_bson(&Bson::Document(doc)).expect_err("a date is not JSON");
        assert_eq!(e.path, "$.when");
        let e = from_bson(&Bson::Double(f64::NAN)).expect_err("NaN is not JSON");
        assert_eq!(e.path, "$");
    }

    #[test]
    fn unsigned_beyond_i64_is_refused() {
        let e = to_bson(&json!({"x": [u64::MAX]})).expect_err("too big");
        assert_eq!(e.path, "$.x[0]");
    }

    #[test]
    fn non_objects_are_not_documents() {
        assert!(to_document(&json!([1])).is_err());
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
        fn every_portable_value_round_trips_exactly(v in portable_json()) {
            let back = from_bson(&to_bson(&v).expect("portable values map"))
                .expect("and map back");
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(sst_core::canonical::to_vec(&back), sst_core::canonical::to_vec(&v));
        }
    }
}
