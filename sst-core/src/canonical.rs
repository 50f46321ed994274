//! RFC 8785 (JSON Canonicalization Scheme, JCS) serialisation of `serde_json` values.
//!
//! The canonical form is what SST hashes and signs, so it must be byte-identical on every
//! machine and every backend:
//!
//! * no insignificant whitespace;
//! * object members sorted by the UTF-16 code units of their names (RFC 8785 §3.2.3), which is
//!   *not* UTF-8 byte order once characters above U+FFFF meet characters in U+E000..=U+FFFF;
//! * strings escaped per §3.2.2.2: only `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t` and
//!   `\u00xx` (lowercase hex) for the remaining C0 controls; everything else is literal UTF-8;
//! * every number, integer or not, is converted to an IEEE-754 double and printed like
//!   ECMAScript's `Number.prototype.toString` (§3.2.2.3), using `ryu-js`; `-0` prints as `0`.
//!
//! Integers above 2^53 therefore lose precision here by design of RFC 8785; the
//! [portable profile](crate::portable) rejects them before they get this far.
//!
//! The output does not depend on the iteration order of [`serde_json::Map`], so it is the same
//! whether or not serde_json's `preserve_order` feature is enabled somewhere in the build.

use serde::ser::{self, Serialize};
use serde_json::{Map, Number, Value};

/// Returns the canonical (RFC 8785) UTF-8 bytes of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    to_string(value).into_bytes()
}

/// Returns the canonical (RFC 8785) text of `value`, in one walk of the tree.
pub fn to_string(value: &Value) -> String {
    let mut out = String::with_capacity(INITIAL_CAPACITY);
    write_to(value, &mut out);
    out
}

/// What [`to_string`] and [`to_vec_of`] reserve up front: most hashed values (event bodies,
/// receipts, headers) fit, and a larger one grows the buffer geometrically.
const INITIAL_CAPACITY: usize = 512;

/// Appends the canonical (RFC 8785) text of `value` to `out`, without clearing it.
///
/// This lets callers (e.g. hashing) stream several canonical values into one reused buffer.
pub fn write_to(value: &Value, out: &mut String) {
    write_seen(value, 0, out, &mut Unseen);
}

/// What a canonical write shows, on its way through the tree, to a [`Seen`] observer.
pub(crate) trait Seen {
    /// A number.
    fn number(&mut self, n: &Number);
    /// A string value.
    fn string(&mut self, s: &str);
    /// An object member's name, before its value.
    fn key(&mut self, key: &str);
    /// An array or object entered, at nesting depth `depth` (1 for the outermost).
    fn container(&mut self, depth: usize);
}

/// The observer of a plain write: shown nothing (every call compiles away).
struct Unseen;

impl Seen for Unseen {
    #[inline(always)]
    fn number(&mut self, _: &Number) {}
    #[inline(always)]
    fn string(&mut self, _: &str) {}
    #[inline(always)]
    fn key(&mut self, _: &str) {}
    #[inline(always)]
    fn container(&mut self, _: usize) {}
}

/// [`to_string`], showing every number, string, member name and container to `seen` in the
/// same walk (so a check of the value costs no walk of its own).
pub(crate) fn to_string_seen(value: &Value, seen: &mut impl Seen) -> String {
    let mut out = String::with_capacity(INITIAL_CAPACITY);
    write_seen(value, 0, &mut out, seen);
    out
}

/// [`write_to`] of `value` at nesting depth `depth`, showing what it writes to `seen`.
fn write_seen<S: Seen>(value: &Value, depth: usize, out: &mut String, seen: &mut S) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            seen.number(n);
            write_number(n, out);
        }
        Value::String(s) => {
            seen.string(s);
            write_string(s, out);
        }
        Value::Array(items) => {
            seen.container(depth + 1);
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_seen(item, depth + 1, out, seen);
            }
            out.push(']');
        }
        Value::Object(map) => {
            seen.container(depth + 1);
            out.push('{');
            let mut write_member = |i: usize, key: &str, item: &Value| {
                if i > 0 {
                    out.push(',');
                }
                seen.key(key);
                write_string(key, out);
                out.push(':');
                write_seen(item, depth + 1, out, seen);
            };
            if in_canonical_order(map) {
                for (i, (key, item)) in map.iter().enumerate() {
                    write_member(i, key, item);
                }
            } else {
                for (i, (key, item)) in sorted_members(map).into_iter().enumerate() {
                    write_member(i, key, item);
                }
            }
            out.push('}');
        }
    }
}

/// Whether `map` already iterates in canonical member order (always, unless serde_json's
/// `preserve_order` is on or keys mix characters above U+FFFF with U+E000..=U+FFFF).
fn in_canonical_order(map: &Map<String, Value>) -> bool {
    let mut keys = map.keys();
    let Some(mut prev) = keys.next() else {
        return true;
    };
    for key in keys {
        if cmp_utf16(prev, key) != std::cmp::Ordering::Less {
            return false;
        }
        prev = key;
    }
    true
}

/// Returns the canonical (RFC 8785) bytes of what `value` serialises to, exactly as
/// `to_vec(&serde_json::to_value(value).unwrap_or(Value::Null))` would, but written straight
/// from `value` in one pass, without building a [`Value`] tree.
///
/// Whatever the direct writer does not handle identically (floats in map keys, 128-bit
/// integers, byte strings, duplicate member names, serde_json's private types) is handed to
/// that slower path, so the bytes are always the same.
pub fn to_vec_of<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = String::with_capacity(INITIAL_CAPACITY);
    if value.serialize(Canonical { out: &mut out }).is_ok() {
        return out.into_bytes();
    }
    to_vec(&serde_json::to_value(value).unwrap_or(Value::Null))
}

/// Canonical bytes of `value` from the direct writer alone, which also takes
/// [`PreEncoded`] texts verbatim; `None` where [`to_vec_of`] would need its `Value` path
/// (which cannot take pre-encoded texts: the caller then encodes a plain form).
pub(crate) fn to_vec_direct<T: Serialize + ?Sized>(value: &T) -> Option<Vec<u8>> {
    let mut out = String::with_capacity(INITIAL_CAPACITY);
    value
        .serialize(Canonical { out: &mut out })
        .ok()
        .map(|()| out.into_bytes())
}

/// Text that is already the canonical encoding of a value (kept from an earlier
/// [`to_string`] of that very value), written verbatim by [`to_vec_direct`] in its place: a
/// multi-megabyte section is encoded once per commit, not once for its hash and again for
/// each record that binds it. Only [`to_vec_direct`] writes it as JSON; any other serializer
/// would take the text for a string, so nothing else is given it (it is private to this
/// crate, and the log record that uses it falls back to encoding the values whenever the
/// direct writer refuses).
pub(crate) struct PreEncoded<'a>(pub(crate) &'a str);

/// The newtype name [`PreEncoded`] serialises under.
const PRE_ENCODED: &str = "$sst_core::canonical::PreEncoded";

impl Serialize for PreEncoded<'_> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(PRE_ENCODED, &Verbatim(self.0))
    }
}

/// The text inside a [`PreEncoded`], handed over as a string, which the direct writer
/// appends as it is (with [`KeyName`], which appends a string unchanged).
struct Verbatim<'a>(&'a str);

impl Serialize for Verbatim<'_> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

/// The direct writer met something it leaves to the `Value` path.
#[derive(Debug)]
struct Unsupported;

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not handled by the direct canonical writer")
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Unsupported
    }
}

/// Writes canonical JSON straight from `Serialize`, following `serde_json::to_value`'s data
/// model (see [`to_vec_of`]).
struct Canonical<'a> {
    out: &'a mut String,
}

fn write_f64(v: f64, out: &mut String) {
    // `to_value` turns a non-finite float into `null`.
    if v.is_finite() {
        out.push_str(ryu_js::Buffer::new().format_finite(v));
    } else {
        out.push_str("null");
    }
}

/// Integers reach a `Value` as `u64`/`i64` and are printed as the double they convert to.
fn write_integer(v: f64, out: &mut String) {
    out.push_str(ryu_js::Buffer::new().format(v));
}

/// The largest magnitude below which every integer is an exact double: ECMAScript prints such
/// a double as its plain decimal digits (no exponent below 10^21), so these integers are
/// written digit by digit, the same bytes as `ryu-js` gives for the double, without the
/// shortest-float search.
const EXACT_INTEGER_LIMIT: u64 = 1 << 53;

/// Writes the decimal digits of `magnitude` (with a `-` when `negative`) if the integer is
/// exactly representable as a double (see [`EXACT_INTEGER_LIMIT`]); returns whether it did.
fn write_exact_integer(negative: bool, magnitude: u64, out: &mut String) -> bool {
    if magnitude > EXACT_INTEGER_LIMIT {
        return false;
    }
    if negative && magnitude != 0 {
        out.push('-');
    }
    out.push_str(itoa::Buffer::new().format(magnitude));
    true
}

/// Decimal length of an integer written by [`write_exact_integer`], or `None` outside its range.
fn exact_integer_len(negative: bool, magnitude: u64) -> Option<usize> {
    (magnitude <= EXACT_INTEGER_LIMIT).then(|| {
        let digits = magnitude.checked_ilog10().map_or(1, |d| d as usize + 1);
        digits + usize::from(negative && magnitude != 0)
    })
}

/// The exact canonical length of `n` when it is an integer printed digit by digit (see
/// [`write_exact_integer`]), without formatting it; `None` for floats and larger integers.
pub(crate) fn exact_integer_number_len(n: &Number) -> Option<usize> {
    integer_parts(n).and_then(|(negative, magnitude)| exact_integer_len(negative, magnitude))
}

/// Sign and magnitude of an integer-valued `n` (`None` for a float).
fn integer_parts(n: &Number) -> Option<(bool, u64)> {
    if let Some(u) = n.as_u64() {
        Some((false, u))
    } else {
        n.as_i64().map(|i| (i < 0, i.unsigned_abs()))
    }
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        if !write_exact_integer(v < 0, v.unsigned_abs(), self.out) {
            write_integer(v as f64, self.out);
        }
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        if !write_exact_integer(false, v, self.out) {
            write_integer(v as f64, self.out);
        }
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Result<(), Unsupported> {
        Err(Unsupported)
    }
    fn serialize_u128(self, _: u128) -> Result<(), Unsupported> {
        Err(Unsupported)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        write_f64(f64::from(v), self.out);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        write_f64(v, self.out);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        write_string(v.encode_utf8(&mut [0u8; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Unsupported> {
        Err(Unsupported)
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        if name == PRE_ENCODED {
            return value.serialize(KeyName { keys: self.out });
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.out.push('{');
        write_string(variant, self.out);
        self.out.push(':');
        value.serialize(Canonical {
            out: &mut *self.out,
        })?;
        self.out.push('}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, Unsupported> {
        self.out.push('[');
        Ok(Seq {
            out: self.out,
            first: true,
            close_variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Seq<'a>, Unsupported> {
        self.out.push('{');
        write_string(variant, self.out);
        self.out.push_str(":[");
        Ok(Seq {
            out: self.out,
            first: true,
            close_variant: true,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a>, Unsupported> {
        Ok(Object::open(self.out, false))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Object<'a>, Unsupported> {
        // serde_json's own number and raw-value tokens (with its optional features).
        if name.starts_with("$serde_json::") {
            return Err(Unsupported);
        }
        Ok(Object::open(self.out, false))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Object<'a>, Unsupported> {
        self.out.push('{');
        write_string(variant, self.out);
        self.out.push(':');
        Ok(Object::open(self.out, true))
    }
}

/// An array being written.
struct Seq<'a> {
    out: &'a mut String,
    first: bool,
    /// Also close the `{"variant":` around it.
    close_variant: bool,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        value.serialize(Canonical {
            out: &mut *self.out,
        })
    }
    fn close(self) -> Result<(), Unsupported> {
        self.out.push(']');
        if self.close_variant {
            self.out.push('}');
        }
        Ok(())
    }
}

macro_rules! seq_impl {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
                self.element(value)
            }
            fn end(self) -> Result<(), Unsupported> {
                self.close()
            }
        }
    )*};
}

seq_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// One member written so far: its name and where `"name":value` sits in the output.
struct Member {
    key: Key,
    start: usize,
    end: usize,
}

/// A member's name: a struct field's, or a map key's text in [`Object::keys`].
enum Key {
    Field(&'static str),
    Map(usize, usize),
}

impl Key {
    fn text<'k>(&'k self, keys: &'k str) -> &'k str {
        match self {
            Key::Field(name) => name,
            Key::Map(from, to) => &keys[*from..*to],
        }
    }
}

/// An object being written. Members are written in the order they come; if that is not
/// canonical order, they are moved into it when the object closes.
struct Object<'a> {
    out: &'a mut String,
    /// Where the members begin (just after `{`).
    start: usize,
    members: Vec<Member>,
    /// The map keys of this object, one after the other (one buffer, not one per key).
    keys: String,
    /// The key given by `serialize_key`, waiting for its value.
    key: Option<Key>,
    /// Also close the `{"variant":` around it.
    close_variant: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut String, close_variant: bool) -> Self {
        out.push('{');
        let start = out.len();
        Object {
            out,
            start,
            members: Vec::new(),
            keys: String::new(),
            key: None,
            close_variant,
        }
    }

    fn member<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) -> Result<(), Unsupported> {
        if !self.members.is_empty() {
            self.out.push(',');
        }
        let start = self.out.len();
        write_string(key.text(&self.keys), self.out);
        self.out.push(':');
        value.serialize(Canonical {
            out: &mut *self.out,
        })?;
        self.members.push(Member {
            key,
            start,
            end: self.out.len(),
        });
        Ok(())
    }

    fn close(mut self) -> Result<(), Unsupported> {
        let keys = &self.keys;
        let cmp = |a: &Member, b: &Member| cmp_utf16(a.key.text(keys), b.key.text(keys));
        let sorted = self
            .members
            .windows(2)
            .all(|w| cmp(&w[0], &w[1]) == std::cmp::Ordering::Less);
        if !sorted {
            self.members.sort_by(cmp);
            if self
                .members
                .windows(2)
                .any(|w| cmp(&w[0], &w[1]) == std::cmp::Ordering::Equal)
            {
                // A repeated name: `to_value` keeps the last one; leave that to it.
                return Err(Unsupported);
            }
            let written = self.out.split_off(self.start);
            for (i, m) in self.members.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out
                    .push_str(&written[m.start - self.start..m.end - self.start]);
            }
        }
        self.out.push('}');
        if self.close_variant {
            self.out.push('}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        let from = self.keys.len();
        key.serialize(KeyName {
            keys: &mut self.keys,
        })?;
        self.key = Some(Key::Map(from, self.keys.len()));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        let key = self.key.take().ok_or(Unsupported)?;
        self.member(key, value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

macro_rules! struct_impl {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Unsupported> {
                self.member(Key::Field(key), value)
            }
            fn end(self) -> Result<(), Unsupported> {
                self.close()
            }
        }
    )*};
}

struct_impl!(SerializeStruct, SerializeStructVariant);

/// A map key, appended to `keys`: only the forms that `to_value` turns into the same plain
/// string.
struct KeyName<'a> {
    keys: &'a mut String,
}

/// `fn $name(self, _: $ty) -> Result<(), Unsupported>` refusing every argument.
macro_rules! refuse_keys {
    ($($name:ident($($ty:ty),*);)*) => {$(
        fn $name(self, $(_: $ty),*) -> Result<(), Unsupported> {
            Err(Unsupported)
        }
    )*};
}

impl ser::Serializer for KeyName<'_> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = ser::Impossible<(), Unsupported>;
    type SerializeTuple = ser::Impossible<(), Unsupported>;
    type SerializeTupleStruct = ser::Impossible<(), Unsupported>;
    type SerializeTupleVariant = ser::Impossible<(), Unsupported>;
    type SerializeMap = ser::Impossible<(), Unsupported>;
    type SerializeStruct = ser::Impossible<(), Unsupported>;
    type SerializeStructVariant = ser::Impossible<(), Unsupported>;

    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        self.keys.push_str(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        self.keys.push(v);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    // `to_value` prints these as text; leave them to it.
    refuse_keys! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Unsupported> {
        Err(Unsupported)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(Unsupported)
    }
}

/// Returns the exact length in bytes of the canonical text of `value`, without building it.
///
/// Always equal to `to_vec(value).len()`; used for size limits and buffer pre-allocation.
pub fn encoded_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => number_len(n),
        Value::String(s) => string_len(s),
        Value::Array(items) => {
            2 + items.len().saturating_sub(1) + items.iter().map(encoded_len).sum::<usize>()
        }
        Value::Object(map) => {
            2 + map.len().saturating_sub(1)
                + map
                    .iter()
                    .map(|(k, v)| string_len(k) + 1 + encoded_len(v))
                    .sum::<usize>()
        }
    }
}

/// Whether `serde_json` reads the canonical text of `value` back as a value equal to it: true
/// unless it holds a floating-point number with an integral value that prints as an integer
/// fitting 64 bits (`2.0` prints as `2`, `-0.0` as `0`, and read back as integers), or an
/// integer beyond 2^53 whose nearest double prints other digits (the
/// [portable profile](crate::portable) refuses those). Where it is true, the canonical text
/// can stand for the value in a store that keeps JSON text as written.
pub fn reads_back_equal(value: &Value) -> bool {
    match value {
        Value::Number(n) if n.is_f64() => n.as_f64().is_none_or(|f| {
            if f.fract() != 0.0 || f.abs() >= 1e21 {
                return true;
            }
            // Printed as integer digits: read back as a double only when they do not fit
            // an `i64` or a `u64` (serde_json's integers).
            let mut buffer = ryu_js::Buffer::new();
            let text = buffer.format(f);
            text.parse::<i64>().is_err() && text.parse::<u64>().is_err()
        }),
        // Beyond 2^53 an integer prints as its nearest double: equal only when that has the
        // same digits.
        Value::Number(n) => {
            exact_integer_number_len(n).is_some()
                || ryu_js::Buffer::new().format(number_as_f64(n)) == n.to_string()
        }
        Value::Array(items) => items.iter().all(reads_back_equal),
        Value::Object(map) => map.values().all(reads_back_equal),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

/// [`encoded_len`] of `value` when it is at most `limit`, `None` when it is longer: the walk
/// stops as soon as the length passes `limit`, so asking whether a multi-megabyte value is
/// longer than a few bytes costs a few steps, not a walk of the whole tree.
pub fn encoded_len_at_most(value: &Value, limit: usize) -> Option<usize> {
    let mut budget = limit;
    charge_encoded(value, &mut budget).then(|| limit - budget)
}

/// Takes `value`'s canonical length from `budget`; `false` (the budget partly spent) once
/// it does not fit.
fn charge_encoded(value: &Value, budget: &mut usize) -> bool {
    let mut take = |n: usize| match budget.checked_sub(n) {
        Some(left) => {
            *budget = left;
            true
        }
        None => false,
    };
    match value {
        Value::Null | Value::Bool(true) => take(4),
        Value::Bool(false) => take(5),
        Value::Number(n) => take(number_len(n)),
        Value::String(s) => take(string_len(s)),
        Value::Array(items) => {
            take(2 + items.len().saturating_sub(1))
                && items.iter().all(|item| charge_encoded(item, budget))
        }
        Value::Object(map) => {
            take(2 + map.len().saturating_sub(1))
                && map.iter().all(|(k, v)| {
                    budget
                        .checked_sub(string_len(k) + 1)
                        .map(|left| *budget = left)
                        .is_some()
                        && charge_encoded(v, budget)
                })
        }
    }
}

/// Compares two strings by their UTF-16 code unit sequences, as RFC 8785 §3.2.3 requires.
pub fn cmp_utf16(a: &str, b: &str) -> std::cmp::Ordering {
    // UTF-8 byte order equals code point order, which equals UTF-16 order except when a
    // supplementary character (surrogate pair, 0xD800..) meets a character in U+E000..=U+FFFF.
    // Only fall back to the UTF-16 walk when the byte comparison could be affected.
    let ab = a.as_bytes();
    let bb = b.as_bytes();
    let common = ab.iter().zip(bb).take_while(|(x, y)| x == y).count();
    match (ab.get(common), bb.get(common)) {
        // Both lead bytes >= 0xEE (U+E000 and above): the pair may be reordered by UTF-16.
        (Some(&x), Some(&y)) if x >= 0xEE && y >= 0xEE => a.encode_utf16().cmp(b.encode_utf16()),
        _ => ab.cmp(bb),
    }
}

/// Object members in canonical order.
fn sorted_members(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_unstable_by(|(a, _), (b, _)| cmp_utf16(a, b));
    members
}

/// The double an RFC 8785 serialiser sees for a JSON number.
fn number_as_f64(n: &Number) -> f64 {
    if let Some(u) = n.as_u64() {
        u as f64
    } else if let Some(i) = n.as_i64() {
        i as f64
    } else {
        // Without serde_json's `arbitrary_precision` feature this is always `Some`; with it, an
        // unparsable number yields NaN, which prints as "NaN" rather than panicking.
        n.as_f64().unwrap_or(f64::NAN)
    }
}

fn write_number(n: &Number, out: &mut String) {
    if let Some((negative, magnitude)) = integer_parts(n) {
        if write_exact_integer(negative, magnitude, out) {
            return;
        }
    }
    let mut buf = ryu_js::Buffer::new();
    // `format` equals `format_finite` for finite input (the only kind a `Value` can hold) and
    // prints "NaN"/"Infinity" instead of unspecified output otherwise.
    out.push_str(buf.format(number_as_f64(n)));
}

fn number_len(n: &Number) -> usize {
    if let Some(len) = exact_integer_number_len(n) {
        return len;
    }
    ryu_js::Buffer::new().format(number_as_f64(n)).len()
}

/// The escape for byte `b` if RFC 8785 requires one (`b` is ASCII).
fn short_escape(b: u8) -> Option<&'static str> {
    Some(match b {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        0x08 => "\\b",
        0x0c => "\\f",
        b'\n' => "\\n",
        b'\r' => "\\r",
        b'\t' => "\\t",
        _ => return None,
    })
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn write_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        // `i` is at an ASCII byte, hence at a char boundary; same for `start`.
        out.push_str(&s[start..i]);
        match short_escape(b) {
            Some(esc) => out.push_str(esc),
            None => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The canonical length of string `s`, quotes and escapes included.
pub(crate) fn string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| {
            if !needs_escape(b) {
                1
            } else if short_escape(b).is_some() {
                2
            } else {
                6
            }
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ryu-js` prints for the double an integer converts to (the rule of RFC 8785).
    fn via_double(v: f64) -> String {
        ryu_js::Buffer::new().format(v).to_owned()
    }

    #[test]
    fn integers_print_as_the_double_they_convert_to() {
        let limit = EXACT_INTEGER_LIMIT as i64;
        let mut samples: Vec<i64> = vec![
            0,
            1,
            -1,
            9,
            10,
            99,
            100,
            123_456_789,
            -987_654_321,
            limit - 1,
            limit,
            limit + 1,
            limit + 2,
            -limit,
            -limit - 1,
            -limit - 3,
            i64::MAX,
            i64::MIN,
        ];
        samples.extend((0..19).map(|p| 10i64.pow(p)));
        samples.extend((0..19).map(|p| -(10i64.pow(p)) + 1));
        for v in samples {
            let expected = via_double(v as f64);
            assert_eq!(to_string(&Value::from(v)), expected, "Value {v}");
            assert_eq!(
                String::from_utf8(to_vec_of(&v)).ok(),
                Some(expected.clone()),
                "typed {v}"
            );
            assert_eq!(encoded_len(&Value::from(v)), expected.len(), "length {v}");
        }
        for v in [u64::MAX, u64::MAX - 1, 1 << 53, (1 << 53) + 1, 1 << 63] {
            let expected = via_double(v as f64);
            assert_eq!(to_string(&Value::from(v)), expected, "Value {v}");
            assert_eq!(
                String::from_utf8(to_vec_of(&v)).ok(),
                Some(expected.clone())
            );
            assert_eq!(encoded_len(&Value::from(v)), expected.len(), "length {v}");
        }
    }
}
