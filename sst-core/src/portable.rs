//! The portable-JSON profile: the subset of JSON that round-trips exactly through every engine.
//!
//! SST recomputes hashes from the JSON the database returns, so every stored value must come
//! back bit-for-bit equal (after [canonicalisation](crate::canonical)) from Postgres `jsonb`,
//! MongoDB BSON, MySQL/MariaDB `JSON`, SQLite JSON text and Oracle JSON. The profile is checked
//! before anything touches a store, with the same error on every backend. Each rule is a
//! [`ProfileRule`]; an error names the rule and the JSONPath-style location of the offending
//! value (`$.items[3].name`, `$["a.b"]`).
//!
//! * [`check`] / [`check_at`] validate an in-memory [`Value`];
//! * [`parse`] turns raw text into a [`Value`], additionally catching what `serde_json` hides:
//!   duplicate keys (it silently keeps the last one) and numbers that overflow a double.
//!
//! When a value breaks several rules, one of them is reported; which one is deterministic for a
//! given input and build, but is otherwise unspecified. Size ([`ProfileRule::TooLarge`]) is
//! checked after all other rules.
//!
//! # Which numbers are integers
//!
//! JSON has one number type; what matters is how a number comes back from an engine, which
//! follows its canonical text. A number is an *integer* for [`ProfileRule::IntegerOutOfRange`]
//! when its canonical text is a plain integer literal: every `u64`/`i64` [`Number`], and every
//! double of magnitude below 10^21 with no fractional part (ECMAScript prints 2^53 as a double
//! as `9007199254740992`, which Postgres, MySQL and SQLite read back as an integer). Integers
//! must lie within ±(2^53 − 1). Doubles of magnitude 10^21 and above print with an exponent
//! (`1.5e+300`) and are accepted. This makes the profile closed under canonicalisation:
//! if [`check`] accepts a value, [`parse`] accepts its canonical text. It also catches integer
//! literals beyond 64 bits (`18446744073709551616`), which `serde_json` turns into doubles.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::canonical;

/// Largest allowed nesting depth: a top-level scalar has depth 0, `{"a":1}` and `[]` depth 1.
pub const MAX_DEPTH: usize = 64;

/// Largest allowed canonical (RFC 8785) size of a value, in bytes: 16 MiB.
pub const MAX_STATE_BYTES: usize = 16 * 1024 * 1024;

/// Largest integer magnitude that every engine stores exactly: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// One rule of the portable-JSON profile.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileRule {
    /// An integer with magnitude above 2^53 - 1 (it would be rounded by doubles or by BSON);
    /// see the module documentation for which numbers count as integers.
    IntegerOutOfRange,
    /// A number that does not fit a finite IEEE-754 double (e.g. `1e400`).
    NonFiniteNumber,
    /// A string value or object key containing U+0000 (Postgres `jsonb` rejects it).
    NulInString,
    /// An empty object key.
    EmptyKey,
    /// An object key starting with `$` (reserved by MongoDB).
    DollarKey,
    /// An object key containing `.` (path separator in MongoDB).
    DotInKey,
    /// The same key twice in one object (engines disagree on which one survives).
    DuplicateKey,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Canonical size above [`MAX_STATE_BYTES`].
    TooLarge,
    /// Text that is not JSON at all.
    InvalidJson,
}

impl ProfileRule {
    /// A short, stable, snake_case name for the rule, fit for logs and wire formats.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileRule::IntegerOutOfRange => "integer_out_of_range",
            ProfileRule::NonFiniteNumber => "non_finite_number",
            ProfileRule::NulInString => "nul_in_string",
            ProfileRule::EmptyKey => "empty_key",
            ProfileRule::DollarKey => "dollar_key",
            ProfileRule::DotInKey => "dot_in_key",
            ProfileRule::DuplicateKey => "duplicate_key",
            ProfileRule::TooDeep => "too_deep",
            ProfileRule::TooLarge => "too_large",
            ProfileRule::InvalidJson => "invalid_json",
        }
    }
}

impl fmt::Display for ProfileRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A violation of the portable-JSON profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {rule}: {detail}")]
pub struct ProfileError {
    /// JSONPath-style location of the offending value or member, e.g. `$.items[3]["a.b"]`.
    pub path: String,
    /// The rule that was broken.
    pub rule: ProfileRule,
    /// Human-readable detail (the offending number, the limit, the parser's line/column, …).
    pub detail: String,
}

/// Checks `value` against every rule that applies to an in-memory value (all rules except
/// [`ProfileRule::DuplicateKey`] and [`ProfileRule::InvalidJson`]), with paths starting at `$`.
///
/// # Errors
/// The first violation found, see [`ProfileError`].
pub fn check(value: &Value) -> Result<(), ProfileError> {
    check_at(value, "$")
}

/// Like [`check`], but paths in errors start with `path_prefix` (e.g. `$.sections.price`)
/// instead of `$`.
///
/// The size limit is measured once, on the exact canonical length of `value`
/// ([`canonical::encoded_len`]), after the other rules passed.
///
/// # Errors
/// The first violation found, see [`ProfileError`].
pub fn check_at(value: &Value, path_prefix: &str) -> Result<(), ProfileError> {
    let mut path = Vec::new();
    check_value(value, 0, &mut path).map_err(|(rule, detail)| ProfileError {
        path: format_path(path_prefix, &path),
        rule,
        detail,
    })?;
    check_size(value, path_prefix)
}

/// Parses `text` as JSON and checks it against the whole profile, including the rules only
/// visible in text: [`ProfileRule::DuplicateKey`], [`ProfileRule::NonFiniteNumber`] for
/// numbers that overflow a double, and [`ProfileRule::InvalidJson`].
///
/// Paths start at `$`. For [`ProfileRule::InvalidJson`] the path is where the parser was when
/// it failed and the detail carries `serde_json`'s line and column.
///
/// # Errors
/// The first violation found, see [`ProfileError`].
pub fn parse(text: &str) -> Result<Value, ProfileError> {
    let mut state = ParseState {
        path: Vec::new(),
        depth: 0,
        error: None,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let result = ValueSeed { st: &mut state }
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value));
    let value = match result {
        Ok(value) => value,
        Err(err) => return Err(parse_error(text, state, &err)),
    };
    check_size(&value, "$")?;
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Paths

/// One step of a path, borrowed.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Whether `key` may be written as `.key` rather than `["key"]`.
fn is_plain_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn push_seg(out: &mut String, seg: Seg<'_>) {
    match seg {
        Seg::Key(key) if is_plain_identifier(key) => {
            out.push('.');
            out.push_str(key);
        }
        Seg::Key(key) => {
            out.push('[');
            canonical::write_to(&Value::String(key.to_owned()), out);
            out.push(']');
        }
        Seg::Index(i) => {
            out.push('[');
            out.push_str(&i.to_string());
            out.push(']');
        }
    }
}

fn format_path(prefix: &str, segs: &[Seg<'_>]) -> String {
    let mut out = String::from(prefix);
    for &seg in segs {
        push_seg(&mut out, seg);
    }
    out
}

/// The path of member `key` of the object at `prefix`, written the way profile errors write
/// paths: `$.sections.price`, or `$.sections["due-diligence"]` for keys that are not plain
/// identifiers.
pub fn member_path(prefix: &str, key: &str) -> String {
    format_path(prefix, &[Seg::Key(key)])
}

// ---------------------------------------------------------------------------------------------
// Rules shared by `check` and `parse`

type Violation = (ProfileRule, String);

fn check_u64(n: u64) -> Result<(), Violation> {
    if n > MAX_SAFE_INTEGER {
        return Err((
            ProfileRule::IntegerOutOfRange,
            format!("integer {n} is outside ±{MAX_SAFE_INTEGER}"),
        ));
    }
    Ok(())
}

fn check_i64(n: i64) -> Result<(), Violation> {
    if n.unsigned_abs() > MAX_SAFE_INTEGER {
        return Err((
            ProfileRule::IntegerOutOfRange,
            format!("integer {n} is outside ±{MAX_SAFE_INTEGER}"),
        ));
    }
    Ok(())
}

/// Smallest magnitude at which ECMAScript (hence RFC 8785) prints a double in exponent form.
const EXPONENT_FORM_FROM: f64 = 1e21;

fn check_f64(f: f64) -> Result<(), Violation> {
    if !f.is_finite() {
        return Err((
            ProfileRule::NonFiniteNumber,
            format!("number {f} is not a finite double"),
        ));
    }
    // A double in this range is integral and its canonical text is a plain integer literal
    // (e.g. 2^53 prints as `9007199254740992`), which engines and parsers read back as an
    // integer: it must obey the integer rule, or the profile would not be closed under
    // canonicalisation. From 1e21 on, canonical text uses an exponent and stays a double.
    let magnitude = f.abs();
    if magnitude > MAX_SAFE_INTEGER as f64 && magnitude < EXPONENT_FORM_FROM {
        return Err((
            ProfileRule::IntegerOutOfRange,
            format!(
                "number {} is an integer outside ±{MAX_SAFE_INTEGER}",
                ryu_js::Buffer::new().format_finite(f)
            ),
        ));
    }
    Ok(())
}

fn check_number(n: &Number) -> Result<(), Violation> {
    if let Some(u) = n.as_u64() {
        check_u64(u)
    } else if let Some(i) = n.as_i64() {
        check_i64(i)
    } else {
        match n.as_f64() {
            Some(f) => check_f64(f),
            None => Err((
                ProfileRule::NonFiniteNumber,
                format!("number {n} is not representable as a double"),
            )),
        }
    }
}

fn check_str(s: &str) -> Result<(), Violation> {
    if s.contains('\0') {
        return Err((
            ProfileRule::NulInString,
            "string contains U+0000".to_owned(),
        ));
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), Violation> {
    if key.contains('\0') {
        return Err((ProfileRule::NulInString, "key contains U+0000".to_owned()));
    }
    if key.is_empty() {
        return Err((ProfileRule::EmptyKey, "object key is empty".to_owned()));
    }
    if key.starts_with('$') {
        return Err((
            ProfileRule::DollarKey,
            "object key starts with '$'".to_owned(),
        ));
    }
    if key.contains('.') {
        return Err((ProfileRule::DotInKey, "object key contains '.'".to_owned()));
    }
    Ok(())
}

/// `depth` is the nesting depth of the container about to be entered.
fn check_depth(depth: usize) -> Result<(), Violation> {
    if depth > MAX_DEPTH {
        return Err((
            ProfileRule::TooDeep,
            format!("nesting deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(())
}

fn check_size(value: &Value, path: &str) -> Result<(), ProfileError> {
    let len = canonical::encoded_len(value);
    if len > MAX_STATE_BYTES {
        return Err(ProfileError {
            path: path.to_owned(),
            rule: ProfileRule::TooLarge,
            detail: format!("canonical size {len} bytes exceeds {MAX_STATE_BYTES} bytes"),
        });
    }
    Ok(())
}

/// Walks `value` (at nesting depth `depth`); on error `path` holds the offending location.
fn check_value<'a>(
    value: &'a Value,
    depth: usize,
    path: &mut Vec<Seg<'a>>,
) -> Result<(), Violation> {
    match value {
        Value::Null | Value::Bool(_) => Ok(()),
        Value::Number(n) => check_number(n),
        Value::String(s) => check_str(s),
        Value::Array(items) => {
            check_depth(depth + 1)?;
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                check_value(item, depth + 1, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Object(map) => {
            check_depth(depth + 1)?;
            for (key, item) in map {
                path.push(Seg::Key(key));
                check_key(key)?;
                check_value(item, depth + 1, path)?;
                path.pop();
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// One step of the parser's current path, owned (keys are moved into the map afterwards).
enum OwnedSeg {
    Key(String),
    Index(usize),
}

struct ParseState {
    /// Path of the value being parsed; left as-is when an error unwinds.
    path: Vec<OwnedSeg>,
    /// Nesting depth of the innermost open container.
    depth: usize,
    /// A profile violation raised by our visitors (serde errors carry no structured payload).
    error: Option<Violation>,
}

impl ParseState {
    /// Records a violation and returns a serde error to unwind the parser with.
    fn fail<E: de::Error>(&mut self, violation: Violation) -> E {
        let err = E::custom(&violation.1);
        self.error = Some(violation);
        err
    }

    fn path_string(&self) -> String {
        let segs: Vec<Seg<'_>> = self
            .path
            .iter()
            .map(|s| match s {
                OwnedSeg::Key(k) => Seg::Key(k),
                OwnedSeg::Index(i) => Seg::Index(*i),
            })
            .collect();
        format_path("$", &segs)
    }
}

/// Turns a parse failure into a [`ProfileError`] at the path where the parser stopped.
fn parse_error(text: &str, state: ParseState, err: &serde_json::Error) -> ProfileError {
    let path = state.path_string();
    if let Some((rule, detail)) = state.error {
        return ProfileError { path, rule, detail };
    }
    if let Some(token) = overflowing_number_at(text, err.line(), err.column()) {
        return ProfileError {
            path,
            rule: ProfileRule::NonFiniteNumber,
            detail: format!(
                "number {token} overflows a double at line {} column {}",
                err.line(),
                err.column()
            ),
        };
    }
    ProfileError {
        path,
        rule: ProfileRule::InvalidJson,
        detail: err.to_string(),
    }
}

/// If serde_json failed at (`line`, `column`) on a JSON number too large for a finite double,
/// returns that number's text.
///
/// serde_json reports this as a syntax error like any other; rather than matching its message
/// text, look at the input: the token at the reported position (columns are byte offsets) must
/// be a number whose value rounds to infinity.
fn overflowing_number_at(text: &str, line: usize, column: usize) -> Option<&str> {
    let bytes = text.as_bytes();
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(line - 2)
            .map(|(i, _)| i + 1)?
    };
    let at = line_start.checked_add(column)?.min(bytes.len());
    let is_num = |b: u8| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E');
    let mut start = at;
    while start > 0 && is_num(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = at;
    while end < bytes.len() && is_num(bytes[end]) {
        end += 1;
    }
    // Only ASCII bytes were crossed, so both ends are char boundaries.
    let token = text.get(start..end)?;
    let first = *token.as_bytes().first()?;
    if !(first.is_ascii_digit() || first == b'-') {
        return None;
    }
    match token.parse::<f64>() {
        Ok(f) if f.is_infinite() => Some(token),
        _ => None,
    }
}

/// Deserializes one JSON value, enforcing the profile as it goes.
struct ValueSeed<'s> {
    st: &'s mut ParseState,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        check_u64(v).map_err(|e| self.st.fail(e))?;
        Ok(Value::Number(v.into()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        check_i64(v).map_err(|e| self.st.fail(e))?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        check_f64(v).map_err(|e| self.st.fail(e))?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        check_str(v).map_err(|e| self.st.fail(e))?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        check_str(&v).map_err(|e| self.st.fail(e))?;
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let st = self.st;
        st.depth += 1;
        check_depth(st.depth).map_err(|e| st.fail(e))?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            st.path.push(OwnedSeg::Index(items.len()));
            match seq.next_element_seed(ValueSeed { st: &mut *st })? {
                Some(item) => items.push(item),
                None => break,
            }
            st.path.pop();
        }
        st.path.pop();
        st.depth -= 1;
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let st = self.st;
        st.depth += 1;
        check_depth(st.depth).map_err(|e| st.fail(e))?;
        let mut map = Map::new();
        while let Some(key) = access.next_key_seed(KeySeed)? {
            let violation = check_key(&key).err().or_else(|| {
                map.contains_key(&key).then(|| {
                    (
                        ProfileRule::DuplicateKey,
                        "key appears more than once in the object".to_owned(),
                    )
                })
            });
            st.path.push(OwnedSeg::Key(key));
            if let Some(violation) = violation {
                return Err(st.fail(violation));
            }
            let value = access.next_value_seed(ValueSeed { st: &mut *st })?;
            match st.path.pop() {
                Some(OwnedSeg::Key(key)) => {
                    map.insert(key, value);
                }
                _ => return Err(de::Error::custom("internal error: path stack out of sync")),
            }
        }
        st.depth -= 1;
        Ok(Value::Object(map))
    }
}

/// Deserializes an object key as an owned string.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}
