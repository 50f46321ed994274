//! Domain-separated hashing (BLAKE3 by default, SHA-256 selectable) and the digest newtypes
//! that name what was hashed: [`SectionHash`], [`StateRoot`], [`EventId`].
//!
//! Every hash is `H(len(domain) || domain || len(part_1) || part_1 || …)`: each part is
//! prefixed with its length as a little-endian `u64`, so no two different part lists can
//! produce the same input. Digests print as `<alg>:<hex>` (e.g. `blake3:9f2c…`) so the
//! algorithm always travels with the value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// Hash algorithm of a [`Digest`]. BLAKE3 is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum HashAlg {
    /// BLAKE3, 256-bit output.
    #[default]
    Blake3,
    /// SHA-256 (FIPS 180-4).
    Sha256,
}

impl HashAlg {
    /// The algorithm id written in front of every digest (`blake3`, `sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlg::Blake3 => "blake3",
            HashAlg::Sha256 => "sha256",
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HashAlg {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blake3" => Ok(HashAlg::Blake3),
            "sha256" => Ok(HashAlg::Sha256),
            other => Err(DigestParseError(format!(
                "unknown hash algorithm `{other}`"
            ))),
        }
    }
}

impl Serialize for HashAlg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for HashAlg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A digest string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest: {0}")]
pub struct DigestParseError(pub String);

/// A 256-bit digest together with the algorithm that produced it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    alg: HashAlg,
    bytes: [u8; 32],
}

impl Digest {
    /// Builds a digest from raw parts.
    pub fn from_parts(alg: HashAlg, bytes: [u8; 32]) -> Self {
        Digest { alg, bytes }
    }
    /// The algorithm id.
    pub fn alg(&self) -> HashAlg {
        self.alg
    }
    /// The raw 32 digest bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// Longest algorithm id (`blake3`, `sha256`).
const MAX_ALG_LEN: usize = 6;

/// The `<alg>:<hex>` text of a digest in a stack buffer: what hash layouts that cover a
/// digest's text form hash, without a heap allocation per digest.
pub(crate) struct DigestText {
    buf: [u8; MAX_ALG_LEN + 1 + 64],
    len: usize,
}

impl DigestText {
    /// The text's bytes (ASCII).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text (always ASCII).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// Lower-case hex of `bytes` written into `buf` (exactly twice as long), without a heap
/// allocation: how the fixed-size byte types serialise.
pub(crate) fn hex_in<'a>(bytes: &[u8], buf: &'a mut [u8]) -> &'a str {
    // `buf` is sized by every caller to twice `bytes`: this cannot fail, and hex is ASCII.
    let _ = hex::encode_to_slice(bytes, buf);
    std::str::from_utf8(buf).unwrap_or_default()
}

impl Digest {
    /// The [`Display`](fmt::Display) text of this digest, as bytes on the stack.
    pub(crate) fn text(&self) -> DigestText {
        let alg = self.alg.as_str().as_bytes();
        let mut buf = [0u8; MAX_ALG_LEN + 1 + 64];
        buf[..alg.len()].copy_from_slice(alg);
        buf[alg.len()] = b':';
        let hex_at = alg.len() + 1;
        // The buffer holds exactly 64 hex digits after the prefix: this cannot fail.
        let _ = hex::encode_to_slice(self.bytes, &mut buf[hex_at..hex_at + 64]);
        DigestText {
            buf,
            len: hex_at + 64,
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `alg:hex`, formatted on the stack (digests are written as text on every commit).
        f.write_str(self.text().as_str())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex_part) = s
            .split_once(':')
            .ok_or_else(|| DigestParseError(format!("`{s}` has no `<alg>:` prefix")))?;
        let alg: HashAlg = alg.parse()?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|e| DigestParseError(format!("`{s}`: {e}")))?;
        Ok(Digest { alg, bytes })
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The Display text, from a stack buffer.
        s.serialize_str(self.text().as_str())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashing domains: one per kind of thing hashed, so a hash of one kind can never be
/// replayed as a hash of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Domain {
    /// `sst/section/v1`: one section value of a state.
    Section,
    /// `sst/state/v1`: a state root (header + section hashes).
    State,
    /// `sst/event/v1`: an event body; its digest is the [`EventId`].
    Event,
    /// `sst/contract/v1`: a contract artifact (its identity).
    Contract,
    /// `sst/envelope/v1`: any other enveloped content.
    Envelope,
    /// `sst/sig/v1`: the message an Ed25519 signature covers.
    Signature,
    /// `sst/receipt/v1`: what a sequencing node signs about an event's outcome.
    Receipt,
    /// `sst/record/v1`: one record (event, refusal, contract, actor) as the log binds it.
    LogRecord,
    /// `sst/log/v1`: one entry of a node's hash-chained log.
    Log,
    /// `sst/checkpoint/v1`: a node-signed log head.
    Checkpoint,
    /// `sst/endorsement/v1`: what an endorsing node signs about a proposed outcome.
    Endorsement,
}

impl Domain {
    /// The domain string mixed into the hash.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Section => "sst/section/v1",
            Domain::State => "sst/state/v1",
            Domain::Event => "sst/event/v1",
            Domain::Contract => "sst/contract/v1",
            Domain::Envelope => "sst/envelope/v1",
            Domain::Signature => "sst/sig/v1",
            Domain::Receipt => "sst/receipt/v1",
            Domain::LogRecord => "sst/record/v1",
            Domain::Log => "sst/log/v1",
            Domain::Checkpoint => "sst/checkpoint/v1",
            Domain::Endorsement => "sst/endorsement/v1",
        }
    }
}

enum Inner {
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
}

/// An incremental, domain-separated, length-prefixed hasher.
pub struct Hasher {
    alg: HashAlg,
    inner: Inner,
}

impl Hasher {
    /// Starts a hash in `domain` with `alg`.
    pub fn new(alg: HashAlg, domain: Domain) -> Self {
        let inner = match alg {
            HashAlg::Blake3 => Inner::Blake3(Box::new(blake3::Hasher::new())),
            HashAlg::Sha256 => Inner::Sha256(sha2::Sha256::new()),
        };
        let mut h = Hasher { alg, inner };
        h.part(domain.as_str().as_bytes());
        h
    }

    fn raw(&mut self, bytes: &[u8]) {
        match &mut self.inner {
            Inner::Blake3(h) => {
                h.update(bytes);
            }
            Inner::Sha256(h) => h.update(bytes),
        }
    }

    /// Adds one length-prefixed part.
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.raw(&(bytes.len() as u64).to_le_bytes());
        self.raw(bytes);
        self
    }

    /// Finishes the hash.
    pub fn finish(self) -> Digest {
        let bytes: [u8; 32] = match self.inner {
            Inner::Blake3(h) => *h.finalize().as_bytes(),
            Inner::Sha256(h) => h.finalize().into(),
        };
        Digest {
            alg: self.alg,
            bytes,
        }
    }
}

/// Hashes `parts` in `domain`.
pub fn hash_parts(alg: HashAlg, domain: Domain, parts: &[&[u8]]) -> Digest {
    let mut h = Hasher::new(alg, domain);
    for p in parts {
        h.part(p);
    }
    h.finish()
}

macro_rules! digest_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Digest);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
        impl FromStr for $name {
            type Err = DigestParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

digest_newtype!(
    /// Salted hash of one section value: `H(sst/section/v1, name, salt, canonical(value))`.
    SectionHash
);
digest_newtype!(
    /// Root hash of one state version: `H(sst/state/v1, canonical(header), sorted (name, section hash)…)`.
    StateRoot
);
digest_newtype!(
    /// Identity of an event: `H(sst/event/v1, canonical(event body))`, never of signature bytes.
    EventId
);

/// A fresh random 32-byte salt per section version. Only nodes allowed to read a section
/// receive its salt: without it a redacted section hash cannot be brute-forced.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Salt(pub [u8; 32]);

impl Salt {
    /// Draws a salt from the operating system's CSPRNG.
    ///
    /// # Panics
    /// Only if the OS random source is unavailable, which SST treats as fatal.
    pub fn random() -> Self {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("operating system random source unavailable");
        Salt(b)
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salt({})", hex::encode(self.0))
    }
}

impl Serialize for Salt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hex_in(&self.0, &mut [0u8; 64]))
    }
}

impl<'de> Deserialize<'de> for Salt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut b = [0u8; 32];
        hex::decode_to_slice(&s, &mut b).map_err(serde::de::Error::custom)?;
        Ok(Salt(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_its_string_form() {
        for alg in [HashAlg::Blake3, HashAlg::Sha256] {
            let d = hash_parts(alg, Domain::Event, &[b"a", b"b"]);
            let s = d.to_string();
            assert!(s.starts_with(alg.as_str()));
            assert_eq!(s.parse::<Digest>().unwrap(), d);
        }
    }

    #[test]
    fn parts_are_length_prefixed_and_domains_separate() {
        let a = hash_parts(HashAlg::Blake3, Domain::Event, &[b"ab", b"c"]);
        let b = hash_parts(HashAlg::Blake3, Domain::Event, &[b"a", b"bc"]);
        let c = hash_parts(HashAlg::Blake3, Domain::State, &[b"ab", b"c"]);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn digest_text_is_the_display_form() {
        for alg in [HashAlg::Blake3, HashAlg::Sha256] {
            let d = hash_parts(alg, Domain::State, &[b"x"]);
            let expected = format!("{}:{}", alg.as_str(), hex::encode(d.bytes));
            assert_eq!(d.to_string(), expected);
            assert_eq!(d.text().as_bytes(), expected.as_bytes());
        }
    }

    #[test]
    fn bad_digest_strings_are_rejected() {
        assert!("abc".parse::<Digest>().is_err());
        assert!("md5:00".parse::<Digest>().is_err());
        assert!("blake3:zz".parse::<Digest>().is_err());
    }
}
