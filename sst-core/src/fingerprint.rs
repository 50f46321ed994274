//! A fast, collision-resistant fingerprint of any `Serialize` value: an unambiguous binary
//! encoding of its serde data model, hashed with BLAKE3. What [`crate::CommitBatch`] binds
//! its validation proof to; never part of any stored or signed hash layout.

use serde::ser::{self, Serialize};

/// The fingerprint of `value` in the context `domain`, or `None` if `value` fails to
/// serialise.
pub(crate) fn of<T: Serialize + ?Sized>(domain: &str, value: &T) -> Option<[u8; 32]> {
    of_in_chunks(domain, value, SINK_CHUNK)
}

/// [`of`], the encoding handed to the hasher every `chunk` bytes (the hash does not depend
/// on `chunk`).
fn of_in_chunks<T: Serialize + ?Sized>(domain: &str, value: &T, chunk: usize) -> Option<[u8; 32]> {
    let mut out = Sink {
        buf: Vec::with_capacity(chunk.min(SINK_CHUNK)),
        chunk,
        hasher: blake3::Hasher::new_derive_key(domain),
    };
    value.serialize(Encoder { out: &mut out }).ok()?;
    out.hasher.update(&out.buf);
    Some(*out.hasher.finalize().as_bytes())
}

/// Bytes the encoding gathers before handing them to the hasher: large values (a state of
/// several MB) are hashed as they are encoded, never held whole in memory.
const SINK_CHUNK: usize = 64 * 1024;

/// The encoding's destination: a chunk buffer in front of the BLAKE3 hasher (the same hash
/// as of the whole encoding at once).
struct Sink {
    buf: Vec<u8>,
    /// Hand `buf` to the hasher once it holds this many bytes.
    chunk: usize,
    hasher: blake3::Hasher,
}

impl Sink {
    fn push(&mut self, byte: u8) {
        self.buf.push(byte);
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.chunk {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
    }
}

/// Token tags. Every token starts with one; variable-length data is length-prefixed and
/// every compound is closed by its own tag, so the encoding is prefix-free: two different
/// token streams never give the same bytes.
mod tag {
    pub(super) const BOOL: u8 = 1;
    pub(super) const SIGNED: u8 = 2;
    pub(super) const UNSIGNED: u8 = 3;
    pub(super) const F64: u8 = 4;
    pub(super) const F32: u8 = 5;
    pub(super) const I128: u8 = 6;
    pub(super) const U128: u8 = 7;
    pub(super) const CHAR: u8 = 8;
    pub(super) const STR: u8 = 9;
    pub(super) const BYTES: u8 = 10;
    pub(super) const NONE: u8 = 11;
    pub(super) const SOME: u8 = 12;
    pub(super) const UNIT: u8 = 13;
    pub(super) const UNIT_STRUCT: u8 = 14;
    pub(super) const UNIT_VARIANT: u8 = 15;
    pub(super) const NEWTYPE_STRUCT: u8 = 16;
    pub(super) const NEWTYPE_VARIANT: u8 = 17;
    pub(super) const SEQ: u8 = 18;
    pub(super) const TUPLE: u8 = 19;
    pub(super) const TUPLE_STRUCT: u8 = 20;
    pub(super) const TUPLE_VARIANT: u8 = 21;
    pub(super) const MAP: u8 = 22;
    pub(super) const STRUCT: u8 = 23;
    pub(super) const STRUCT_VARIANT: u8 = 24;
    pub(super) const ELEMENT: u8 = 25;
    pub(super) const KEY: u8 = 26;
    pub(super) const VALUE: u8 = 27;
    pub(super) const FIELD: u8 = 28;
    pub(super) const SKIPPED: u8 = 29;
    pub(super) const END: u8 = 30;
}

/// A value failed to serialise (its own `Serialize` reported an error).
#[derive(Debug)]
pub(crate) struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("value failed to serialise")
    }
}

impl std::error::Error for Failed {}

impl ser::Error for Failed {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Failed
    }
}

struct Encoder<'a> {
    out: &'a mut Sink,
}

impl Encoder<'_> {
    fn token(&mut self, tag: u8, bytes: &[u8]) -> Result<(), Failed> {
        self.out.push(tag);
        self.out.extend_from_slice(bytes);
        Ok(())
    }
    fn text(&mut self, tag: u8, text: &[u8]) -> Result<(), Failed> {
        self.out.push(tag);
        self.out
            .extend_from_slice(&(text.len() as u64).to_le_bytes());
        self.out.extend_from_slice(text);
        Ok(())
    }
    /// A variant: its index and name.
    fn variant(&mut self, tag: u8, index: u32, name: &str) -> Result<(), Failed> {
        self.token(tag, &index.to_le_bytes())?;
        self.text(tag::STR, name.as_bytes())
    }
    /// Opens a compound named `name` (empty for sequences, tuples and maps).
    fn opened(mut self, tag: u8, name: &str) -> Result<Self, Failed> {
        self.text(tag, name.as_bytes())?;
        Ok(self)
    }
    /// Opens a compound variant.
    fn opened_variant(mut self, tag: u8, index: u32, name: &str) -> Result<Self, Failed> {
        self.variant(tag, index, name)?;
        Ok(self)
    }
    fn reborrow(&mut self) -> Encoder<'_> {
        Encoder {
            out: &mut *self.out,
        }
    }
}

/// `serialize_tuple_variant` and `serialize_struct_variant`: the same signature and encoding
/// but for the tag.
macro_rules! compound_variants {
    ($($method:ident => $tag:expr,)*) => {$(
        fn $method(
            self,
            _: &'static str,
            index: u32,
            variant: &'static str,
            _: usize,
        ) -> Result<Self, Failed> {
            self.opened_variant($tag, index, variant)
        }
    )*};
}

impl<'a> ser::Serializer for Encoder<'a> {
    type Ok = ();
    type Error = Failed;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(mut self, v: bool) -> Result<(), Failed> {
        self.token(tag::BOOL, &[u8::from(v)])
    }
    fn serialize_i8(self, v: i8) -> Result<(), Failed> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Failed> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Failed> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(mut self, v: i64) -> Result<(), Failed> {
        self.token(tag::SIGNED, &v.to_le_bytes())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Failed> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Failed> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Failed> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(mut self, v: u64) -> Result<(), Failed> {
        self.token(tag::UNSIGNED, &v.to_le_bytes())
    }
    fn serialize_i128(mut self, v: i128) -> Result<(), Failed> {
        self.token(tag::I128, &v.to_le_bytes())
    }
    fn serialize_u128(mut self, v: u128) -> Result<(), Failed> {
        self.token(tag::U128, &v.to_le_bytes())
    }
    fn serialize_f32(mut self, v: f32) -> Result<(), Failed> {
        self.token(tag::F32, &v.to_bits().to_le_bytes())
    }
    fn serialize_f64(mut self, v: f64) -> Result<(), Failed> {
        self.token(tag::F64, &v.to_bits().to_le_bytes())
    }
    fn serialize_char(mut self, v: char) -> Result<(), Failed> {
        self.token(tag::CHAR, &u32::from(v).to_le_bytes())
    }
    fn serialize_str(mut self, v: &str) -> Result<(), Failed> {
        self.text(tag::STR, v.as_bytes())
    }
    fn serialize_bytes(mut self, v: &[u8]) -> Result<(), Failed> {
        self.text(tag::BYTES, v)
    }
    fn serialize_none(mut self) -> Result<(), Failed> {
        self.token(tag::NONE, &[])
    }
    fn serialize_some<T: Serialize + ?Sized>(mut self, value: &T) -> Result<(), Failed> {
        self.token(tag::SOME, &[])?;
        value.serialize(self)
    }
    fn serialize_unit(mut self) -> Result<(), Failed> {
        self.token(tag::UNIT, &[])
    }
    fn serialize_unit_struct(mut self, name: &'static str) -> Result<(), Failed> {
        self.text(tag::UNIT_STRUCT, name.as_bytes())
    }
    fn serialize_unit_variant(
        mut self,
        _: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<(), Failed> {
        self.variant(tag::UNIT_VARIANT, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Failed> {
        self.text(tag::NEWTYPE_STRUCT, name.as_bytes())?;
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Failed> {
        self.variant(tag::NEWTYPE_VARIANT, index, variant)?;
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Failed> {
        self.opened(tag::SEQ, "")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Failed> {
        self.opened(tag::TUPLE, "")
    }
    fn serialize_tuple_struct(self, name: &'static str, _: usize) -> Result<Self, Failed> {
        self.opened(tag::TUPLE_STRUCT, name)
    }
    compound_variants! {
        serialize_tuple_variant => tag::TUPLE_VARIANT,
        serialize_struct_variant => tag::STRUCT_VARIANT,
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Failed> {
        self.opened(tag::MAP, "")
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, Failed> {
        self.opened(tag::STRUCT, name)
    }
}

/// Elements of sequences and tuples, each marked, then the end.
macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Encoder<'_> {
            type Ok = ();
            type Error = Failed;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
                self.token(tag::ELEMENT, &[])?;
                value.serialize(self.reborrow())
            }
            fn end(mut self) -> Result<(), Failed> {
                self.token(tag::END, &[])
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Encoder<'_> {
    type Ok = ();
    type Error = Failed;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Failed> {
        self.token(tag::KEY, &[])?;
        key.serialize(self.reborrow())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
        self.token(tag::VALUE, &[])?;
        value.serialize(self.reborrow())
    }
    fn end(mut self) -> Result<(), Failed> {
        self.token(tag::END, &[])
    }
}

/// Fields of structs, each with its name (skipped ones too), then the end.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Encoder<'_> {
            type Ok = ();
            type Error = Failed;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Failed> {
                self.text(tag::FIELD, key.as_bytes())?;
                value.serialize(self.reborrow())
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), Failed> {
                self.text(tag::SKIPPED, key.as_bytes())
            }
            fn end(mut self) -> Result<(), Failed> {
                self.token(tag::END, &[])
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Hashing the encoding chunk by chunk gives the hash of the whole encoding at once.
    #[test]
    fn chunked_hashing_equals_hashing_the_whole_encoding() {
        let big = json!({"readings": (0..100_000u64).collect::<Vec<_>>(), "name": "x"});
        let whole = of_in_chunks("test", &big, usize::MAX);
        assert!(whole.is_some());
        assert_eq!(of("test", &big), whole);
        assert_eq!(of_in_chunks("test", &big, 7), whole);
        let mut other = big.clone();
        other["readings"][99_999] = json!(1);
        assert_ne!(of("test", &other), whole);
    }

    #[test]
    fn different_values_have_different_fingerprints() {
        let values = [
            json!(null),
            json!(0),
            json!(0.0),
            json!(-0.0),
            json!(""),
            json!("0"),
            json!([]),
            json!([[]]),
            json!([null]),
            json!({}),
            json!({"": null}),
            json!({"a": "b"}),
            json!({"ab": ""}),
            json!(["a", "b"]),
            json!(["ab"]),
            json!([{"a": 1}, 2]),
            json!([{"a": 1, "b": 2}]),
        ];
        let prints: Vec<_> = values.iter().map(|v| of("test", v)).collect();
        for (i, a) in prints.iter().enumerate() {
            assert!(a.is_some());
            for (j, b) in prints.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{} and {}", values[i], values[j]);
            }
        }
        assert_eq!(
            of("test", &json!({"a": [1]})),
            of("test", &json!({"a": [1]}))
        );
        assert_ne!(of("a", &json!(1)), of("b", &json!(1)), "domains separate");
    }

    fn value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "[a-c]{0,3}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-c]{0,2}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Values that differ never share a fingerprint; equal ones always do.
        #[test]
        fn fingerprints_tell_values_apart(a in value(), b in value()) {
            if a == b {
                // `==` treats 0.0 and -0.0 as equal; their bits (and prints) differ.
                if serde_json::to_vec(&a).ok() == serde_json::to_vec(&b).ok() {
                    proptest::prop_assert_eq!(of("t", &a), of("t", &b));
                }
            } else {
                proptest::prop_assert_ne!(of("t", &a), of("t", &b));
            }
        }
    }
}
