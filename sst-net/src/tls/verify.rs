//! Key pinning instead of a CA: certificate verifiers that accept a peer iff its certificate's
//! Ed25519 public key is the one expected (a server's pinned key, or a client key the caller's
//! lookup knows), and that check the TLS 1.3 handshake signature with the provider's
//! algorithms. Names, issuers, extensions and validity dates are ignored: the certificate only
//! carries the key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use sst_core::PublicKey;

use super::ClientAuth;

/// DER of an Ed25519 `SubjectPublicKeyInfo` up to its 32 key bytes (RFC 8410):
/// `SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING (0 unused bits) }`.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The Ed25519 public key of a certificate, read from the `subjectPublicKeyInfo` field as
/// webpki parses it (the same field the handshake signature is then verified against), or
/// `None` when the certificate does not parse or its key is not a valid Ed25519 key.
pub(crate) fn ed25519_key(cert: &CertificateDer<'_>) -> Option<PublicKey> {
    let parsed = ParsedCertificate::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    let bytes: &[u8; 32] = key.try_into().ok()?;
    PublicKey::from_bytes(bytes).ok()
}

fn refused(cert: &CertificateDer<'_>, accept: impl FnOnce(&PublicKey) -> bool) -> Option<Error> {
    match ed25519_key(cert) {
        Some(key) if accept(&key) => None,
        Some(_) => Some(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )),
        None => Some(Error::InvalidCertificate(CertificateError::BadEncoding)),
    }
}

/// The handshake-signature methods both verifiers share: TLS 1.2 is never offered, TLS 1.3
/// signatures are checked against the certificate's key with the provider's algorithms
/// (`self.algorithms`), and Ed25519 is the only scheme asked for, since keys are Ed25519.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            Err(Error::General("TLS 1.2 is not offered".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
    };
}

/// A client's verifier of the server: the server's key must be `expected`.
#[derive(Debug)]
pub(crate) struct PinnedServer {
    expected: PublicKey,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedServer {
    pub(crate) fn new(expected: PublicKey, provider: &CryptoProvider) -> Self {
        PinnedServer {
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match refused(end_entity, |key| *key == self.expected) {
            None => Ok(ServerCertVerified::assertion()),
            Some(e) => Err(e),
        }
    }

    handshake_signatures!();
}

/// A server's verifier of its clients: a client certificate is mandatory and its key must
/// map to an identity under `auth`.
#[derive(Debug)]
pub(crate) struct PinnedClients {
    auth: Arc<ClientAuth>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClients {
    pub(crate) fn new(auth: Arc<ClientAuth>, provider: &CryptoProvider) -> Self {
        PinnedClients {
            auth,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for PinnedClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match refused(end_entity, |key| self.auth.identify(key).is_some()) {
            None => Ok(ClientCertVerified::assertion()),
            Some(e) => Err(e),
        }
    }

    handshake_signatures!();
}
