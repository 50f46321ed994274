//! Ed25519 signing with **strict** verification, batch verification for many envelopes, PKCS#8
//! PEM key files, and the generic [`Envelope`] cryptowrap (canonical bytes → hash → signatures).
//!
//! Signatures always cover `H(sst/sig/v1, alg, digest)` of a content digest, never raw
//! content, so a signature made for one hash algorithm or domain cannot be replayed in another.

use std::fmt;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

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
        s.serialize_str(&hex::encode(self.0))
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
        s.serialize_str(&hex::encode(self.to_bytes()))
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

/// Whether `R` of a signature is a canonical, torsion-free, non-identity point: the condition
/// under which batch acceptance implies strict acceptance.
fn r_is_prime_order(sig: &SignatureBytes) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig.0[..32]);
    match CompressedEdwardsY(r).decompress() {
        Some(p) => p.compress().to_bytes() == r && !p.is_small_order() && p.is_torsion_free(),
        None => false,
    }
}

/// Verifies many `(key, digest, signature)` triples.
///
/// ed25519-dalek's batch equation is used as a fast path only. Its acceptance equals strict
/// acceptance exactly when every key and every `R` lies in the prime-order subgroup (keys are
/// checked when a [`PublicKey`] is parsed; `R` is checked here), so any entry outside that
/// subgroup, and any batch failure, is decided by strict single verification. On failure the
/// error names the first failing entry.
pub fn verify_batch(items: &[(PublicKey, Digest, SignatureBytes)]) -> Result<(), CryptoError> {
    if items.is_empty() {
        return Ok(());
    }
    let all_prime_order = items.iter().all(|(_, _, s)| r_is_prime_order(s));
    if all_prime_order {
        let messages: Vec<[u8; 32]> = items.iter().map(|(_, d, _)| signing_message(d)).collect();
        let msg_refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
        let sigs: Vec<Signature> = items
            .iter()
            .map(|(_, _, s)| Signature::from_bytes(&s.0))
            .collect();
        let keys: Vec<VerifyingKey> = items.iter().map(|(k, _, _)| k.0).collect();
        if ed25519_dalek::verify_batch(&msg_refs, &sigs, &keys).is_ok() {
            return Ok(());
        }
    }
    for (index, (key, digest, sig)) in items.iter().enumerate() {
        key.verify_digest(digest, sig)
            .map_err(|e| CryptoError::BatchEntry {
                index,
                source: Box::new(e),
            })?;
    }
    Ok(())
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
