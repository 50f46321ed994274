//! Request authentication by actor key: the client signs each request's method, path and
//! query, time and body hash with its Ed25519 actor key; the node checks the signature
//! against the actor's registered public key, the time against a window, and refuses a
//! signature it has already seen (replay).
//!
//! Headers: [`ACTOR_HEADER`] (actor id), [`TIME_HEADER`] (ms since the Unix epoch),
//! [`NONCE_HEADER`] (unique per request of one client, so that two equal requests in the
//! same millisecond are not taken for a replay), [`SIGNATURE_HEADER`] (hex of the 64-byte
//! signature over [`request_digest`]).

use sst_core::{ActorId, ActorKey, Digest, HashAlg, PublicKey, SignatureBytes};

/// The signing actor's id.
pub const ACTOR_HEADER: &str = "x-sst-actor";
/// When the request was signed, in ms since the Unix epoch.
pub const TIME_HEADER: &str = "x-sst-time";
/// A value unique per request of the signing client.
pub const NONCE_HEADER: &str = "x-sst-nonce";
/// Hex of the Ed25519 signature over [`request_digest`].
pub const SIGNATURE_HEADER: &str = "x-sst-signature";
/// How far a request's time may be from the node's clock, in ms.
pub const MAX_SKEW_MS: i64 = 120_000;

/// The digest a request signature covers: BLAKE3 (keyed by the context
/// `sst/client-request/v1`) over the length-prefixed method, path with query, actor id, time,
/// nonce and the BLAKE3 hash of the body.
pub fn request_digest(
    method: &str,
    path_and_query: &str,
    actor: &ActorId,
    (time_ms, nonce): (i64, &str),
    body: &[u8],
) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("sst/client-request/v1");
    let body_hash = blake3::hash(body);
    let time = time_ms.to_be_bytes();
    for part in [
        method.as_bytes(),
        path_and_query.as_bytes(),
        actor.as_str().as_bytes(),
        &time,
        nonce.as_bytes(),
        body_hash.as_bytes(),
    ] {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part);
    }
    Digest::from_parts(HashAlg::Blake3, *h.finalize().as_bytes())
}

/// The four header values (actor, time, nonce, signature) for a request signed by `key` now.
pub fn sign_request(
    key: &ActorKey,
    actor: &ActorId,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> [(&'static str, String); 4] {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let time = now_ms();
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let nonce = format!("{:x}-{nanos:x}-{count:x}", std::process::id());
    let digest = request_digest(method, path_and_query, actor, (time, &nonce), body);
    [
        (ACTOR_HEADER, actor.as_str().to_owned()),
        (TIME_HEADER, time.to_string()),
        (SIGNATURE_HEADER, hex::encode(key.sign_digest(&digest).0)),
        (NONCE_HEADER, nonce),
    ]
}

/// Why a request's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A header is missing or malformed.
    #[error("header {0} is missing or malformed")]
    Header(&'static str),
    /// The signing time is too far from the node's clock.
    #[error("request time {time} ms is more than {MAX_SKEW_MS} ms from the node's clock")]
    Stale {
        /// The request's time.
        time: i64,
    },
    /// The signature does not verify under the actor's key.
    #[error("the request signature does not verify under the key of {0}")]
    BadSignature(ActorId),
}

/// A parsed, not yet verified request signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSignature {
    /// Who claims to sign.
    pub actor: ActorId,
    /// When.
    pub time_ms: i64,
    /// The request's nonce.
    pub nonce: String,
    /// The signature.
    pub signature: [u8; 64],
}

impl RequestSignature {
    /// Parses the four header values, looked up by name with `header`.
    ///
    /// # Errors
    /// [`AuthError::Header`] naming the missing or malformed header.
    pub fn parse<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Result<Self, AuthError> {
        let (actor, time, signature) = (
            header(ACTOR_HEADER),
            header(TIME_HEADER),
            header(SIGNATURE_HEADER),
        );
        let nonce = header(NONCE_HEADER)
            .filter(|n| !n.is_empty() && n.len() <= 128)
            .ok_or(AuthError::Header(NONCE_HEADER))?
            .to_owned();
        let actor = actor
            .filter(|a| !a.is_empty())
            .ok_or(AuthError::Header(ACTOR_HEADER))?;
        let time_ms = time
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or(AuthError::Header(TIME_HEADER))?;
        let mut sig = [0u8; 64];
        signature
            .and_then(|s| hex::decode_to_slice(s, &mut sig).ok())
            .ok_or(AuthError::Header(SIGNATURE_HEADER))?;
        Ok(RequestSignature {
            actor: ActorId::from(actor),
            time_ms,
            nonce,
            signature: sig,
        })
    }

    /// Checks the time window and the signature of the request (`method`, `path_and_query`,
    /// `body`) under `key`, the actor's registered key.
    ///
    /// # Errors
    /// [`AuthError::Stale`], [`AuthError::BadSignature`].
    pub fn verify(
        &self,
        key: &PublicKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), AuthError> {
        if (now_ms() - self.time_ms).abs() > MAX_SKEW_MS {
            return Err(AuthError::Stale { time: self.time_ms });
        }
        let digest = request_digest(
            method,
            path_and_query,
            &self.actor,
            (self.time_ms, &self.nonce),
            body,
        );
        key.verify_digest(&digest, &SignatureBytes(self.signature))
            .map_err(|_| AuthError::BadSignature(self.actor.clone()))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    sst_core::Timestamp::now().0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(h: &'a [(&'static str, String); 4], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_does_not() -> Result<(), AuthError> {
        let key = ActorKey::generate();
        let actor = ActorId::from("acme/alice");
        let h = sign_request(&key, &actor, "POST", "/v1/submit", b"{}");
        let sig = RequestSignature::parse(|n| header(&h, n))?;
        let again = sign_request(&key, &actor, "POST", "/v1/submit", b"{}");
        assert_ne!(
            header(&h, SIGNATURE_HEADER),
            header(&again, SIGNATURE_HEADER)
        );
        sig.verify(&key.public_key(), "POST", "/v1/submit", b"{}")?;
        let other = ActorKey::generate().public_key();
        assert!(sig.verify(&other, "POST", "/v1/submit", b"{}").is_err());
        assert!(sig
            .verify(&key.public_key(), "POST", "/v1/submit", b"{ }")
            .is_err());
        assert!(sig
            .verify(&key.public_key(), "GET", "/v1/submit", b"{}")
            .is_err());
        assert!(sig
            .verify(&key.public_key(), "POST", "/v1/intents", b"{}")
            .is_err());
        Ok(())
    }

    #[test]
    fn missing_or_old_headers_are_refused() {
        let only_time = |n: &str| (n == TIME_HEADER).then_some("1");
        assert_eq!(
            RequestSignature::parse(only_time),
            Err(AuthError::Header(NONCE_HEADER))
        );
        let no_actor = |n: &str| (n != ACTOR_HEADER).then_some("00");
        assert_eq!(
            RequestSignature::parse(no_actor),
            Err(AuthError::Header(ACTOR_HEADER))
        );
        let key = ActorKey::generate();
        let actor = ActorId::from("a/b");
        let time = now_ms() - 2 * MAX_SKEW_MS;
        let d = request_digest("GET", "/x", &actor, (time, "n"), b"");
        let sig = RequestSignature {
            actor,
            time_ms: time,
            nonce: "n".into(),
            signature: key.sign_digest(&d).0,
        };
        assert_eq!(
            sig.verify(&key.public_key(), "GET", "/x", b""),
            Err(AuthError::Stale { time })
        );
    }
}
