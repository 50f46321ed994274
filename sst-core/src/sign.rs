//! Ed25519 signing with **strict** verification, batch verification for many envelopes, PKCS#8
//! PEM key files, and the generic [`Envelope`] cryptowrap (canonical bytes → hash → signatures).
//!
//! Signatures always cover `H(sst/sig/v1, alg, digest)` of a content digest, never raw
//! content, so a signature made for one hash algorithm or domain cannot be replayed in another.

use std::fmt;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest as _, Sha512};

use crate::canonical;
use crate::hash::{Digest, Domain, HashAlg, Hasher};
use crate::model::ActorId;

/// Why a signature, key or envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The public key is malformed, small-order or has a torsion component.
    #[error("invalid public key: {0}")]
    InvalidKey(String),
    /// The signature does not verify under strict rules.
    #[error("signature does not verify (strict)")]
    BadSignature,
    /// No signature by the expected signer.
    #[error("no signature by `{0}`")]
    MissingSignature(String),
    /// Content does not match its hash.
    #[error("integrity: {0}")]
    Integrity(String),
    /// A PEM / PKCS#8 key could not be read or written.
    #[error("key file: {0}")]
    KeyFile(String),
    /// Entry `index` of a batch failed.
    #[error("batch entry {index}: {source}")]
    BatchEntry {
        /// Position in the batch.
        index: usize,
        /// Why it failed.
        source: Box<CryptoError>,
    },
}

/// The message a signature covers for `digest`.
fn signing_message(digest: &Digest) -> [u8; 32] {
    let mut h = Hasher::new(HashAlg::Blake3, Domain::Signature);
    h.part(digest.alg().as_str().as_bytes())
        .part(digest.bytes());
    *h.finish().bytes()
}

/// A 64-byte Ed25519 signature, hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({})", hex::encode(self.0))
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::hash::hex_in(&self.0, &mut [0u8; 128]))
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut b = [0u8; 64];
        hex::decode_to_slice(&s, &mut b).map_err(serde::de::Error::custom)?;
        Ok(SignatureBytes(b))
    }
}

/// One signature with the id of its signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Signer.
    pub signer: ActorId,
    /// Signature over the envelope hash.
    pub signature: SignatureBytes,
}

macro_rules! signing_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name(SigningKey);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.public_key())
            }
        }

        impl $name {
            /// A fresh key from the OS CSPRNG.
            ///
            /// # Panics
            /// Only if the OS random source is unavailable.
            pub fn generate() -> Self {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).expect("operating system random source unavailable");
                $name(SigningKey::from_bytes(&seed))
            }
            /// A key from a 32-byte seed (deterministic tests and fixtures).
            pub fn from_seed(seed: [u8; 32]) -> Self {
                $name(SigningKey::from_bytes(&seed))
            }
            /// Reads a PKCS#8 PEM private key.
            pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CryptoError> {
                SigningKey::from_pkcs8_pem(pem)
                    .map($name)
                    .map_err(|e| CryptoError::KeyFile(e.to_string()))
            }
            /// Writes the key as PKCS#8 v1 PEM (RFC 8410 `PrivateKeyInfo`, the seed only):
            /// the form OpenSSL 3.0 reads too (it refuses v2 files that also carry the public
            /// key), so the same file serves `openssl req -x509` and `curl --key`.
            pub fn to_pkcs8_pem(&self) -> Result<String, CryptoError> {
                ed25519_dalek::pkcs8::KeypairBytes {
                    secret_key: self.0.to_bytes(),
                    public_key: None,
                }
                .to_pkcs8_pem(Default::default())
                .map(|z| z.to_string())
                .map_err(|e| CryptoError::KeyFile(e.to_string()))
            }
            /// The public half.
            pub fn public_key(&self) -> PublicKey {
                PublicKey(self.0.verifying_key())
            }
            /// Signs a content digest.
            pub fn sign_digest(&self, digest: &Digest) -> SignatureBytes {
                SignatureBytes(self.0.sign(&signing_message(digest)).to_bytes())
            }
        }
    };
}

signing_key!(
    /// An actor's Ed25519 signing key: signs intents (events) and contract deployments.
    ActorKey
);

signing_key!(
    /// A node's Ed25519 signing key: signs the receipts of the events the node sequences and
    /// the checkpoints of its log. Its public half is the node's entry in the network's
    /// [`NodeRegistry`](crate::NodeRegistry), which comes from configuration, never from a
    /// peer table.
    NodeKey
);

/// An Ed25519 public key. Parsing rejects non-canonical encodings, small-order keys and keys
/// with a torsion component, so that strict single and batch verification agree.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses and validates 32 key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        let point = CompressedEdwardsY(*bytes)
            .decompress()
            .ok_or_else(|| CryptoError::InvalidKey("not a curve point".into()))?;
        if point.compress().to_bytes() != *bytes {
            return Err(CryptoError::InvalidKey("non-canonical encoding".into()));
        }
        if point.is_small_order() {
            return Err(CryptoError::InvalidKey("small-order key".into()));
        }
        if !point.is_torsion_free() {
            return Err(CryptoError::InvalidKey(
                "key has a torsion component".into(),
            ));
        }
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|e| CryptoError::InvalidKey(e.to_string()))
    }
    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// Strictly verifies `sig` over `digest` (`verify_strict`: rejects small-order R and keys,
    /// non-canonical S).
    pub fn verify_digest(&self, digest: &Digest, sig: &SignatureBytes) -> Result<(), CryptoError> {
        let signature = Signature::from_bytes(&sig.0);
        self.0
            .verify_strict(&signing_message(digest), &signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.to_bytes()))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::hash::hex_in(self.0.as_bytes(), &mut [0u8; 64]))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut b = [0u8; 32];
        hex::decode_to_slice(&s, &mut b).map_err(serde::de::Error::custom)?;
        PublicKey::from_bytes(&b).map_err(serde::de::Error::custom)
    }
}

/// The canonical encoding of the identity point: the one small-order `R` that strict
/// verification could otherwise meet as a recomputed `[s]B - [k]A`.
const IDENTITY_ENCODING: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

/// Strict verification of many entries at once, one result per entry, in order.
///
/// This is `verify_strict`'s own equation, not a batch equation: for each entry it checks
/// that `S` is canonical, computes `R' = [s]B - [k]A` (`k = SHA-512(R ‖ A ‖ M)`) and accepts
/// exactly when the 32 bytes of `R` equal the encoding of `R'`. Only the final compression
/// of all the `R'` shares one field inversion (Montgomery's trick), and `R` is never
/// decompressed: every key is in the prime-order subgroup ([`PublicKey::from_bytes`] checks
/// it), so `R'` is too, and `R == encode(R')` implies that `R` is a canonical encoding of a
/// point of prime order unless `R'` is the identity, which strict verification refuses as a
/// small-order `R`. Acceptance is therefore the same as `verify_strict`'s; every refusal is
/// confirmed by `verify_strict` itself, so its error is the single path's.
fn strict_each(items: &[(PublicKey, Digest, SignatureBytes)]) -> Vec<Result<(), CryptoError>> {
    let mut results: Vec<Result<(), CryptoError>> =
        vec![Err(CryptoError::BadSignature); items.len()];
    let mut points = Vec::with_capacity(items.len());
    let mut slots = Vec::with_capacity(items.len());
    for (index, (key, digest, sig)) in items.iter().enumerate() {
        let (r, s) = sig.0.split_at(32);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(s);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            continue;
        };
        if r == IDENTITY_ENCODING {
            continue;
        }
        let mut h = Sha512::new();
        h.update(r);
        h.update(key.0.as_bytes());
        h.update(signing_message(digest));
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let minus_a = -key.0.to_edwards();
        points.push(EdwardsPoint::vartime_double_scalar_mul_basepoint(
            &k, &minus_a, &s,
        ));
        slots.push(index);
    }
    let encoded = EdwardsPoint::compress_batch_alloc(&points);
    for (index, recomputed) in slots.into_iter().zip(encoded) {
        if recomputed.as_bytes()[..] == items[index].2 .0[..32] {
            results[index] = Ok(());
        }
    }
    for (result, (key, digest, sig)) in results.iter_mut().zip(items) {
        if result.is_err() {
            *result = key.verify_digest(digest, sig);
        }
    }
    results
}

/// The number of threads [`verify_strict_many`] uses when asked for all cores.
pub fn available_workers() -> usize {
    crate::parallel::available_workers()
}

/// Below this many entries per worker, splitting over threads costs more than it saves.
const MIN_PER_WORKER: usize = 32;

/// Strictly verifies every `(key, digest, signature)` on up to `workers` threads and returns
/// one result per entry, in the order given: `Ok(())` exactly where
/// [`PublicKey::verify_digest`] (strict single verification) accepts, and the same error
/// where it refuses. The answer never depends on `workers` (0 counts as 1) or on the
/// machine.
///
/// Entries are split into contiguous chunks, one per worker; each chunk is checked as in
/// [`verify_batch`] (one shared field inversion per chunk), which is faster than verifying
/// one by one even on a single thread.
pub fn verify_strict_many(
    items: &[(PublicKey, Digest, SignatureBytes)],
    workers: usize,
) -> Vec<Result<(), CryptoError>> {
    crate::parallel::map_chunks(items, workers, MIN_PER_WORKER, strict_each)
}

/// Verifies many `(key, digest, signature)` triples under strict rules, faster than one by
/// one (see [`verify_strict_many`] for how; this is its single-thread form).
///
/// Accepts exactly when every entry verifies under [`PublicKey::verify_digest`]; on failure
/// the error names the first failing entry.
pub fn verify_batch(items: &[(PublicKey, Digest, SignatureBytes)]) -> Result<(), CryptoError> {
    first_failure(strict_each(items))
}

/// [`verify_batch`] on up to `workers` threads: the same answer, sooner on many cores.
pub fn verify_batch_parallel(
    items: &[(PublicKey, Digest, SignatureBytes)],
    workers: usize,
) -> Result<(), CryptoError> {
    first_failure(verify_strict_many(items, workers))
}

fn first_failure(results: Vec<Result<(), CryptoError>>) -> Result<(), CryptoError> {
    match results.into_iter().enumerate().find(|(_, r)| r.is_err()) {
        Some((index, Err(e))) => Err(CryptoError::BatchEntry {
            index,
            source: Box::new(e),
        }),
        _ => Ok(()),
    }
}

/// The generic cryptowrap: a JSON body, the hash of its canonical bytes (algorithm included)
/// and signatures over that hash with their signers' ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The wrapped content (portable JSON).
    pub body: Value,
    /// `H(domain, canonical(body))`.
    pub hash: Digest,
    /// Signatures over `hash`.
    pub signatures: Vec<EnvelopeSignature>,
}

impl Envelope {
    /// Hashes `body` in the generic envelope domain; no signatures yet.
    pub fn seal(body: Value, alg: HashAlg) -> Self {
        let hash = Self::hash_of(&body, alg);
        Envelope {
            body,
            hash,
            signatures: Vec::new(),
        }
    }

    fn hash_of(body: &Value, alg: HashAlg) -> Digest {
        let mut h = Hasher::new(alg, Domain::Envelope);
        h.part(&canonical::to_vec(body));
        h.finish()
    }

    /// RFC 8785 canonical bytes of the body.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical::to_vec(&self.body)
    }

    /// Adds a signature by `signer`.
    pub fn sign(mut self, signer: ActorId, key: &ActorKey) -> Self {
        let signature = key.sign_digest(&self.hash);
        self.signatures
            .push(EnvelopeSignature { signer, signature });
        self
    }

    /// Checks that the hash matches the body (envelopes made by [`Envelope::seal`]).
    pub fn verify_hash(&self) -> Result<(), CryptoError> {
        let computed = Self::hash_of(&self.body, self.hash.alg());
        if computed != self.hash {
            return Err(CryptoError::Integrity(format!(
                "envelope hash {} does not match body ({computed})",
                self.hash
            )));
        }
        Ok(())
    }

    /// Strictly verifies the signature of `signer` with `key`.
    pub fn verify_signer(&self, signer: &ActorId, key: &PublicKey) -> Result<(), CryptoError> {
        let sig = self
            .signatures
            .iter()
            .find(|s| &s.signer == signer)
            .ok_or_else(|| CryptoError::MissingSignature(signer.to_string()))?;
        key.verify_digest(&self.hash, &sig.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_parts;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let k = ActorKey::generate();
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.contains("BEGIN PRIVATE KEY"));
        let k2 = ActorKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(k.public_key(), k2.public_key());
        assert!(ActorKey::from_pkcs8_pem("not a pem").is_err());
    }

    #[test]
    fn batch_names_the_failing_entry() {
        let keys: Vec<ActorKey> = (0..5u8).map(|i| ActorKey::from_seed([i; 32])).collect();
        let mut items: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let d = hash_parts(HashAlg::Blake3, Domain::Envelope, &[&[i as u8]]);
                (k.public_key(), d, k.sign_digest(&d))
            })
            .collect();
        assert_eq!(verify_batch(&items), Ok(()));
        items[3].2 .0[40] ^= 1;
        match verify_batch(&items) {
            Err(CryptoError::BatchEntry { index, .. }) => assert_eq!(index, 3),
            other => panic!("expected entry 3 to fail, got {other:?}"),
        }
    }
}
