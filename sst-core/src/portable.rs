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
//! * [`parse`] turns raw text into a [`Value`], additionally catching what an in-memory value
//!   can no longer show: text that is not JSON, duplicate keys (`serde_json` silently keeps the
//!   last one) and number literals whose value would change on the way in.
//!
//! When a value breaks several rules, one of them is reported; which one is deterministic for a
//! given input and build, but is otherwise unspecified. Two orders are fixed: text that is not
//! JSON is always [`ProfileRule::InvalidJson`] (never a number or key rule, even when a bad
//! number comes before the syntax error), and size ([`ProfileRule::TooLarge`]) is checked after
//! all other rules.
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
//! if [`check`] accepts a value, [`parse`] accepts its canonical text.
//!
//! # Exact numbers in text
//!
//! [`parse`] reads each number literal's exact decimal value *v* from the text and the double
//! *d* it becomes, and accepts the literal only when *d* is what the writer meant:
//!
//! * *v* overflows (*d* is infinite, `1e400`, or a 400-digit integer):
//!   [`ProfileRule::NonFiniteNumber`];
//! * *v* is not zero but *d* is (`1e-400`): [`ProfileRule::NumberUnderflow`];
//! * *v* is an integer beyond ±(2^53 − 1), in whatever form it is written
//!   (`9007199254740993`, `9.007199254740993e15`, `123456789012345678901234567890`,
//!   `1.0e17`): [`ProfileRule::IntegerOutOfRange`] — unless it is a double in the exponent
//!   range written with exactly its own digits, that is *d* ≥ 10^21 and *v* equals the value
//!   of *d*'s shortest round-trip form (`1e300`, `1.5e+300`, `6.02214076e23`, or the same
//!   value spelled `1000000000000000000000`). Every double at or above 2^53 is mathematically
//!   an integer, so refusing them all would remove large doubles from the profile; this keeps
//!   them while refusing any integer whose digits a double cannot hold
//!   (`123456789012345678901234567890` would silently become `1.2345678901234568e+29`);
//! * any other literal (one with a fractional part, such as `0.1` or
//!   `0.1000000000000000055511151231257827`) means the nearest double, as in every JSON
//!   parser, and then obeys the rules for values above (`9007199254740993.5` becomes the
//!   integer 9007199254740994 and is refused).
//!
//! Integers within ±(2^53 − 1) are exact whatever their form (`1.5e1` is 15).

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
    /// A number literal that is not zero but is too small for a double, which would silently
    /// turn it into 0 (e.g. `1e-400`); only [`parse`] can see it.
    NumberUnderflow,
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
    /// Text that is not JSON (RFC 8259; strings must also be valid Unicode, so a lone
    /// surrogate escape such as `"\ud800"` is refused).
    InvalidJson,
}

impl ProfileRule {
    /// A short, stable, snake_case name for the rule, fit for logs and wire formats.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileRule::IntegerOutOfRange => "integer_out_of_range",
            ProfileRule::NonFiniteNumber => "non_finite_number",
            ProfileRule::NumberUnderflow => "number_underflow",
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
    check_sized(value, || path_prefix.to_owned()).map(|_| ())
}

/// [`check_at`] in one walk of `value`, with the path prefix built only for an error.
/// Returns an upper bound of the canonical length of `value` (exact but for numbers other
/// than integers up to 2^53, each counted as [`MAX_NUMBER_LEN`]); the exact length is computed only when that bound is
/// over the limit, so the verdict is exactly [`check_at`]'s.
pub(crate) fn check_sized(
    value: &Value,
    path_prefix: impl FnOnce() -> String,
) -> Result<usize, ProfileError> {
    let mut path = Vec::new();
    let mut bound = 0;
    if let Err((rule, detail)) = check_value(value, 0, &mut path, &mut bound) {
        return Err(ProfileError {
            path: format_path(&path_prefix(), &path),
            rule,
            detail,
        });
    }
    if bound > MAX_STATE_BYTES {
        check_size(value, &path_prefix())?;
    }
    Ok(bound)
}

/// Whether a value passes every rule [`check_sized`] applies but size, learnt from the
/// canonical write of the value ([`canonical::to_string_seen`]) instead of a walk of its own.
/// It records only pass or fail: a failing value is checked again by [`check_sized`], which
/// names the rule and the path.
#[derive(Debug)]
pub(crate) struct Passes(bool);

impl Passes {
    /// Nothing seen yet: passing.
    pub(crate) fn new() -> Self {
        Passes(true)
    }
    /// Whether everything seen passed, and `encoded_len` (the exact canonical length of the
    /// value) is within [`MAX_STATE_BYTES`]: then [`check_sized`] passes too.
    pub(crate) fn passed(&self, encoded_len: usize) -> bool {
        self.0 && encoded_len <= MAX_STATE_BYTES
    }
}

impl canonical::Seen for Passes {
    fn number(&mut self, n: &Number) {
        self.0 &= check_number(n).is_ok();
    }
    fn string(&mut self, s: &str) {
        self.0 &= check_str(s).is_ok();
    }
    fn key(&mut self, key: &str) {
        self.0 &= check_key(key).is_ok();
    }
    fn container(&mut self, depth: usize) {
        self.0 &= check_depth(depth).is_ok();
    }
}

/// No number prints longer than this in canonical form (the longest are 25 bytes, e.g.
/// `-0.0000033333333333333333`).
pub(crate) const MAX_NUMBER_LEN: usize = 32;

/// Parses `text` as JSON and checks it against the whole profile, including the rules only
/// visible in text: [`ProfileRule::InvalidJson`], [`ProfileRule::DuplicateKey`], and the
/// number rules for literals whose value would change on the way in
/// ([`ProfileRule::NonFiniteNumber`], [`ProfileRule::NumberUnderflow`],
/// [`ProfileRule::IntegerOutOfRange`]; see the [module documentation](self)).
///
/// Paths start at `$`. Text that is not JSON is always [`ProfileRule::InvalidJson`], whatever
/// else is wrong with it; the path is that of the value the syntax error is in and the detail
/// carries the line and column (both 1-based, the column in characters).
///
/// # Errors
/// The first violation found, see [`ProfileError`].
pub fn parse(text: &str) -> Result<Value, ProfileError> {
    // Syntax and number literals first, on the text itself: serde_json reports some bad
    // numbers as syntax errors and silently rounds others, and would stop at a bad number
    // before seeing that the text is not JSON at all.
    scan(text)?;
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
        Err(err) => return Err(parse_error(state, &err)),
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
/// Adds to `bound` the canonical length of `value`, numbers other than integers up to 2^53
/// counted as [`MAX_NUMBER_LEN`].
fn check_value<'a>(
    value: &'a Value,
    depth: usize,
    path: &mut Vec<Seg<'a>>,
    bound: &mut usize,
) -> Result<(), Violation> {
    match value {
        Value::Null | Value::Bool(true) => *bound += 4,
        Value::Bool(false) => *bound += 5,
        Value::Number(n) => {
            check_number(n)?;
            // Integers (the common case) are counted exactly, so that a large state of
            // integers does not need the exact-length walk.
            *bound += canonical::exact_integer_number_len(n).unwrap_or(MAX_NUMBER_LEN);
        }
        Value::String(s) => {
            check_str(s)?;
            *bound += canonical::string_len(s);
        }
        Value::Array(items) => {
            check_depth(depth + 1)?;
            *bound += 2 + items.len().saturating_sub(1);
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                check_value(item, depth + 1, path, bound)?;
                path.pop();
            }
        }
        Value::Object(map) => {
            check_depth(depth + 1)?;
            *bound += 2 + map.len().saturating_sub(1);
            for (key, item) in map {
                path.push(Seg::Key(key));
                check_key(key)?;
                *bound += canonical::string_len(key) + 1;
                check_value(item, depth + 1, path, bound)?;
                path.pop();
            }
        }
    }
    Ok(())
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
fn parse_error(state: ParseState, err: &serde_json::Error) -> ProfileError {
    let path = state.path_string();
    if let Some((rule, detail)) = state.error {
        return ProfileError { path, rule, detail };
    }
    // [`scan`] accepted the text, so this is a disagreement with serde_json on what JSON is;
    // it is still not portable JSON.
    ProfileError {
        path,
        rule: ProfileRule::InvalidJson,
        detail: err.to_string(),
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

// ---------------------------------------------------------------------------------------------
// Syntax and number literals

/// One open container while [`scan`] reads text.
enum Frame {
    /// An array; `index` is the position of the element being read.
    Array { index: usize },
    /// An object; `key` is the byte range of the current member's key (quotes included), once
    /// it has been read.
    Object { key: Option<(usize, usize)> },
}

/// Which kind of container is innermost, without borrowing it.
#[derive(Clone, Copy)]
enum Top {
    Nothing,
    Array,
    Object,
}

/// A JSON syntax checker (RFC 8259, plus Unicode-valid `\u` escapes) that also checks every
/// number literal against the number rules, keeping the literal's exact text.
///
/// It runs before `serde_json` builds the value, so that text that is not JSON is reported as
/// [`ProfileRule::InvalidJson`] even when a bad number comes first, and so that a number is
/// judged on its literal rather than on the double `serde_json` made of it. It keeps a stack
/// instead of recursing, so nesting depth costs no native stack.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    stack: Vec<Frame>,
    /// The first number literal that breaks a number rule, reported only if the whole text
    /// turns out to be JSON.
    bad_number: Option<ProfileError>,
}

/// Checks that `text` is one JSON value (surrounded by optional whitespace) and that its number
/// literals survive exactly, see the module documentation.
///
/// # Errors
/// [`ProfileRule::InvalidJson`] for the first syntax error; otherwise the first number literal
/// that breaks a number rule.
fn scan(text: &str) -> Result<(), ProfileError> {
    let mut sc = Scanner {
        text,
        pos: 0,
        stack: Vec::new(),
        bad_number: None,
    };
    sc.value_sequence()?;
    match sc.bad_number {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn top(&self) -> Top {
        match self.stack.last() {
            None => Top::Nothing,
            Some(Frame::Array { .. }) => Top::Array,
            Some(Frame::Object { .. }) => Top::Object,
        }
    }

    /// The path of the value being read.
    fn path(&self) -> String {
        let mut out = String::from("$");
        for frame in &self.stack {
            match *frame {
                Frame::Array { index } => push_seg(&mut out, Seg::Index(index)),
                Frame::Object {
                    key: Some((start, end)),
                } => {
                    // The key was fully checked, so it decodes.
                    let key: String =
                        serde_json::from_str(&self.text[start..end]).unwrap_or_default();
                    push_seg(&mut out, Seg::Key(&key));
                }
                Frame::Object { key: None } => {}
            }
        }
        out
    }

    /// An [`ProfileRule::InvalidJson`] error at the current position.
    fn syntax_error(&self, what: &str) -> ProfileError {
        let before = &self.text.as_bytes()[..self.pos.min(self.text.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Count characters, not bytes: UTF-8 continuation bytes do not start one.
        let column = 1 + before[line_start..]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count();
        ProfileError {
            path: self.path(),
            rule: ProfileRule::InvalidJson,
            detail: format!("{what} at line {line} column {column}"),
        }
    }

    /// `what` if the text ended here, `otherwise` if it goes on with something unexpected.
    fn unexpected(&self, what: &str, otherwise: &str) -> ProfileError {
        if self.pos >= self.text.len() {
            self.syntax_error(&format!("EOF while parsing {what}"))
        } else {
            self.syntax_error(otherwise)
        }
    }

    /// Reads the whole text: one value, with containers handled by the explicit stack.
    fn value_sequence(&mut self) -> Result<(), ProfileError> {
        self.skip_ws();
        'value: loop {
            // A value starts here.
            match self.peek() {
                Some(b'{') => {
                    if !self.open_is_empty(b'}') {
                        self.stack.push(Frame::Object { key: None });
                        self.member_key()?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    if !self.open_is_empty(b']') {
                        self.stack.push(Frame::Array { index: 0 });
                        continue 'value;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.keyword("true")?,
                Some(b'f') => self.keyword("false")?,
                Some(b'n') => self.keyword("null")?,
                _ => return Err(self.unexpected("a value", "expected value")),
            }
            // A value ended here: close containers until another value is due.
            loop {
                self.skip_ws();
                match (self.top(), self.peek()) {
                    (Top::Nothing, None) => return Ok(()),
                    (Top::Nothing, Some(_)) => return Err(self.syntax_error("trailing characters")),
                    (Top::Array, Some(b',')) => {
                        if let Some(Frame::Array { index }) = self.stack.last_mut() {
                            *index += 1;
                        }
                        self.pos += 1;
                        self.skip_ws();
                        continue 'value;
                    }
                    (Top::Array, Some(b']')) | (Top::Object, Some(b'}')) => {
                        self.pos += 1;
                        self.stack.pop();
                    }
                    (Top::Array, _) => {
                        return Err(self.unexpected("a list", "expected `,` or `]`"));
                    }
                    (Top::Object, Some(b',')) => {
                        if let Some(Frame::Object { key }) = self.stack.last_mut() {
                            *key = None;
                        }
                        self.pos += 1;
                        self.skip_ws();
                        self.member_key()?;
                        continue 'value;
                    }
                    (Top::Object, _) => {
                        return Err(self.unexpected("an object", "expected `,` or `}`"));
                    }
                }
            }
        }
    }

    /// Reads an opening bracket and the whitespace after it; if `close` follows at once, reads
    /// it too and returns `true` (an empty container, which needs no frame).
    fn open_is_empty(&mut self, close: u8) -> bool {
        self.pos += 1;
        self.skip_ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.pos += 1;
        }
        empty
    }

    /// Reads `"key" :` at the current position (whitespace before it already skipped) and
    /// records the key in the innermost object frame.
    fn member_key(&mut self) -> Result<(), ProfileError> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("an object", "expected a string key"));
        }
        let start = self.pos;
        self.string()?;
        if let Some(Frame::Object { key }) = self.stack.last_mut() {
            *key = Some((start, self.pos));
        }
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.unexpected("an object", "expected `:`"));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    fn keyword(&mut self, word: &str) -> Result<(), ProfileError> {
        for &expected in word.as_bytes() {
            if self.peek() != Some(expected) {
                return Err(self.unexpected("a value", "expected value"));
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// Reads a string starting at its opening quote.
    fn string(&mut self) -> Result<(), ProfileError> {
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(self.syntax_error("EOF while parsing a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1;
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            self.unicode_escape()?;
                        }
                        None => return Err(self.syntax_error("EOF while parsing a string")),
                        Some(_) => return Err(self.syntax_error("invalid escape")),
                    }
                }
                Some(b) if b < 0x20 => {
                    return Err(self.syntax_error("control character in string (must be escaped)"));
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Reads the four hex digits after `\u` (and a low surrogate after a high one).
    fn unicode_escape(&mut self) -> Result<(), ProfileError> {
        let unit = self.hex4()?;
        match unit {
            0xD800..=0xDBFF => {
                if self.peek() != Some(b'\\') {
                    return Err(self.syntax_error("lone leading surrogate in hex escape"));
                }
                self.pos += 1;
                if self.peek() != Some(b'u') {
                    return Err(self.syntax_error("lone leading surrogate in hex escape"));
                }
                self.pos += 1;
                if !(0xDC00..=0xDFFF).contains(&self.hex4()?) {
                    return Err(self.syntax_error("lone leading surrogate in hex escape"));
                }
                Ok(())
            }
            0xDC00..=0xDFFF => Err(self.syntax_error("lone trailing surrogate in hex escape")),
            _ => Ok(()),
        }
    }

    fn hex4(&mut self) -> Result<u32, ProfileError> {
        let mut unit = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.unexpected("a string", "invalid \\u escape"))?;
            unit = unit * 16 + digit;
            self.pos += 1;
        }
        Ok(unit)
    }

    /// Reads a number literal (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) and checks
    /// its value.
    fn number(&mut self) -> Result<(), ProfileError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.syntax_error("invalid number: leading zero"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.unexpected("a number", "invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a number", "invalid number: no digit after `.`"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a number", "invalid number: no digit in exponent"));
            }
            self.digits();
        }
        if self.bad_number.is_none() {
            if let Err((rule, detail)) = check_literal(&self.text[start..self.pos]) {
                self.bad_number = Some(ProfileError {
                    path: self.path(),
                    rule,
                    detail,
                });
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }
}

/// The exact decimal value of a JSON number literal, without allocating: its significant
/// digits are `int` followed by `frac`, minus `lead` leading and `trail` trailing zeros.
#[derive(Clone, Copy)]
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    lead: usize,
    trail: usize,
    /// Decimal exponent of the first significant digit (`123` → 2, `0.05` → -2), saturated.
    sci_exp: i64,
}

impl<'a> Decimal<'a> {
    /// `literal` must match the JSON number grammar (a `+` in the exponent is allowed).
    fn parse(literal: &'a str) -> Self {
        let (negative, rest) = match literal.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, literal),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let (exp_negative, exp_digits) = match exp.as_bytes().first() {
            Some(b'-') => (true, &exp[1..]),
            Some(b'+') => (false, &exp[1..]),
            _ => (false, exp),
        };
        // Saturate far beyond any double's range; the extra margin absorbs the digit count.
        const CAP: i64 = 1 << 62;
        let mut exp: i64 = 0;
        for b in exp_digits.bytes() {
            exp = exp
                .saturating_mul(10)
                .saturating_add(i64::from(b - b'0'))
                .min(CAP);
        }
        if exp_negative {
            exp = -exp;
        }
        let total = int.len() + frac.len();
        let digits = int.bytes().chain(frac.bytes());
        let lead = digits.clone().take_while(|&b| b == b'0').count();
        let trail = if lead == total {
            0
        } else {
            frac.bytes()
                .rev()
                .chain(int.bytes().rev())
                .take_while(|&b| b == b'0')
                .count()
        };
        // The first significant digit is digit `lead`; the point follows digit `int.len()`.
        let point = i64::try_from(int.len()).unwrap_or(CAP);
        let first = i64::try_from(lead).unwrap_or(CAP);
        let sci_exp = (point - first - 1).saturating_add(exp);
        Decimal {
            negative,
            int,
            frac,
            lead,
            trail,
            sci_exp,
        }
    }

    fn is_zero(&self) -> bool {
        self.lead == self.int.len() + self.frac.len()
    }

    /// The significant digits, as ASCII bytes (none for zero).
    fn significant(&self) -> impl Iterator<Item = u8> + Clone + 'a {
        let count = (self.int.len() + self.frac.len()).saturating_sub(self.lead + self.trail);
        self.int
            .bytes()
            .chain(self.frac.bytes())
            .skip(self.lead)
            .take(count)
    }

    fn significant_len(&self) -> usize {
        (self.int.len() + self.frac.len()).saturating_sub(self.lead + self.trail)
    }

    /// Whether the value has no fractional part.
    fn is_integer(&self) -> bool {
        self.is_zero()
            || i64::try_from(self.significant_len()).is_ok_and(|len| len - 1 <= self.sci_exp)
    }

    /// Whether the value is an integer within ±[`MAX_SAFE_INTEGER`].
    fn is_safe_integer(&self) -> bool {
        if self.is_zero() {
            return true;
        }
        // MAX_SAFE_INTEGER has 16 digits, so a safe integer has sci_exp ≤ 15.
        if !self.is_integer() || self.sci_exp > 15 {
            return false;
        }
        let mut n: u64 = 0;
        for b in self.significant() {
            n = n * 10 + u64::from(b - b'0');
        }
        for _ in 0..(self.sci_exp + 1 - self.significant_len() as i64) {
            n *= 10;
        }
        n <= MAX_SAFE_INTEGER
    }

    /// Whether both denote the same number (`-0` equals `0`).
    fn same_value(&self, other: &Decimal<'_>) -> bool {
        if self.is_zero() || other.is_zero() {
            return self.is_zero() && other.is_zero();
        }
        self.negative == other.negative
            && self.sci_exp == other.sci_exp
            && self.significant().eq(other.significant())
    }
}

/// A literal shortened for error details (literals can be megabytes long).
fn shown(literal: &str) -> String {
    const MAX: usize = 40;
    if literal.len() <= MAX {
        literal.to_owned()
    } else {
        // Literals are ASCII, so any byte index is a char boundary.
        format!("{}… ({} characters)", &literal[..MAX], literal.len())
    }
}

/// Checks one number literal (JSON number grammar) against the number rules; see the module
/// documentation.
fn check_literal(literal: &str) -> Result<(), Violation> {
    // Fast path: a plain integer of at most 15 digits is below 10^15 < 2^53 and exact.
    let unsigned = literal.strip_prefix('-').unwrap_or(literal);
    if unsigned.len() <= 15 && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    // Rust's parser rounds correctly, as serde_json's `float_roundtrip` does.
    let Ok(double) = literal.parse::<f64>() else {
        return Err((
            ProfileRule::InvalidJson,
            format!("number {} cannot be read", shown(literal)),
        ));
    };
    if double.is_infinite() {
        return Err((
            ProfileRule::NonFiniteNumber,
            format!("number {} overflows a double", shown(literal)),
        ));
    }
    let exact = Decimal::parse(literal);
    if exact.is_zero() {
        return Ok(());
    }
    if double == 0.0 {
        return Err((
            ProfileRule::NumberUnderflow,
            format!(
                "number {} is not zero but a double would hold it as 0",
                shown(literal)
            ),
        ));
    }
    if exact.is_integer() && !exact.is_safe_integer() {
        let mut buf = ryu_js::Buffer::new();
        let shortest = buf.format_finite(double);
        let kept =
            double.abs() >= EXPONENT_FORM_FROM && exact.same_value(&Decimal::parse(shortest));
        if !kept {
            return Err((
                ProfileRule::IntegerOutOfRange,
                format!(
                    "number {} is an integer outside ±{MAX_SAFE_INTEGER}; a double would hold it as {shortest}",
                    shown(literal)
                ),
            ));
        }
    }
    check_f64(double)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn no_number_prints_longer_than_the_bound() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut longest = 0;
        for _ in 0..200_000 {
            // xorshift64*: bit patterns from the whole double range, subnormals included.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let bits = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            for n in [
                Number::from_f64(f64::from_bits(bits)),
                Some(Number::from(bits)),
                Some(Number::from(bits as i64)),
            ]
            .into_iter()
            .flatten()
            {
                longest = longest.max(canonical::encoded_len(&Value::Number(n)));
            }
        }
        let extreme = Number::from_f64(-0.000_003_333_333_333_333_333_3).expect("finite");
        longest = longest.max(canonical::encoded_len(&Value::Number(extreme)));
        assert_eq!(longest, 25);
        assert!(longest <= MAX_NUMBER_LEN);
    }

    #[test]
    fn the_size_bound_is_exact_without_numbers_and_never_below_the_size() {
        for v in [
            json!(null),
            json!({"a": [true, false, "x\ny"], "b\u{1}": {}}),
            json!({"n": [1, -2.5, 1e300, 0.000_001], "s": "\u{10000}"}),
        ] {
            let bound = check_sized(&v, || "$".to_owned()).expect("portable");
            let exact = canonical::encoded_len(&v);
            assert!(bound >= exact, "{v}");
            if !v.to_string().contains(|c: char| c.is_ascii_digit()) {
                assert_eq!(bound, exact, "{v}");
            }
        }
        // Integers up to 2^53 are counted exactly.
        let integers = json!({"n": [0, 7, -7, 1_000_000, -9_007_199_254_740_991_i64,
                                     9_007_199_254_740_991_u64]});
        let bound = check_sized(&integers, || "$".to_owned()).expect("portable");
        assert_eq!(bound, canonical::encoded_len(&integers));
    }
}
