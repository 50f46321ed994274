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

use serde_json::{Map, Number, Value};

/// Returns the canonical (RFC 8785) UTF-8 bytes of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    to_string(value).into_bytes()
}

/// Returns the canonical (RFC 8785) text of `value`.
pub fn to_string(value: &Value) -> String {
    let mut out = String::with_capacity(encoded_len(value));
    write_to(value, &mut out);
    out
}

/// Appends the canonical (RFC 8785) text of `value` to `out`, without clearing it.
///
/// This lets callers (e.g. hashing) stream several canonical values into one reused buffer.
pub fn write_to(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_to(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in sorted_members(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_to(item, out);
            }
            out.push('}');
        }
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
    let mut buf = ryu_js::Buffer::new();
    // `format` equals `format_finite` for finite input (the only kind a `Value` can hold) and
    // prints "NaN"/"Infinity" instead of unspecified output otherwise.
    out.push_str(buf.format(number_as_f64(n)));
}

fn number_len(n: &Number) -> usize {
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

fn string_len(s: &str) -> usize {
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
