//! Mutual TLS 1.3 where identities are Ed25519 keys, not certificates: each side presents a
//! self-signed certificate made from its key ([`Identity`]) and pins the peer's key — a client
//! pins the one key it expects of the server ([`client_config`]), a server maps each client
//! key to an identity ([`ClientAuth`], [`ServerTls`]). No CA, no names, no expiry: only the
//! key matters, and the TLS 1.3 handshake signature proves the peer holds it. Also the HTTP/2
//! plumbing on top: [`serve`] an axum router (handlers see the client's [`Authenticated`]
//! identity as a request extension) and an [`H2Client`]. Used by the node transport and by
//! the client API.

mod client;
mod serve;
mod verify;

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ServerConfig};
use sst_core::{ActorKey, NodeKey, NodeRegistry, PublicKey};

pub use client::H2Client;
pub use serve::{serve, NetServer};

use crate::error::TlsError;

/// The ALPN protocol both ends require: HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// The one crypto provider: *ring*, whose Ed25519 signs and verifies the handshakes.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS identity made from an Ed25519 key (a [`NodeKey`] or an [`ActorKey`]): the key and a
/// self-signed certificate that carries its public half. The certificate has no trust of its
/// own; peers accept it only for its key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    public: PublicKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.public)
            .finish()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            public: self.public,
        }
    }
}

impl Identity {
    /// The identity of a node, from its node key.
    ///
    /// # Errors
    /// [`TlsError::Key`] when the key cannot be encoded or a certificate cannot be made.
    pub fn from_node_key(key: &NodeKey) -> Result<Self, TlsError> {
        let pem = key
            .to_pkcs8_pem()
            .map_err(|e| TlsError::Key(e.to_string()))?;
        Self::from_pkcs8_pem(&pem, key.public_key())
    }

    /// The identity of an actor (a client of the client API), from its actor key.
    ///
    /// # Errors
    /// As [`Identity::from_node_key`].
    pub fn from_actor_key(key: &ActorKey) -> Result<Self, TlsError> {
        let pem = key
            .to_pkcs8_pem()
            .map_err(|e| TlsError::Key(e.to_string()))?;
        Self::from_pkcs8_pem(&pem, key.public_key())
    }

    fn from_pkcs8_pem(pem: &str, public: PublicKey) -> Result<Self, TlsError> {
        let bad = |e: &dyn fmt::Display| TlsError::Key(e.to_string());
        let key = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| bad(&e))?;
        let pair = rcgen::KeyPair::try_from(&key).map_err(|e| bad(&e))?;
        let params = rcgen::CertificateParams::new(vec!["sst".to_owned()]).map_err(|e| bad(&e))?;
        let cert = params
            .self_signed(&pair)
            .map_err(|e| bad(&e))?
            .der()
            .clone();
        if verify::ed25519_key(&cert) != Some(public) {
            return Err(TlsError::Key(
                "the certificate does not carry the key's Ed25519 public key".into(),
            ));
        }
        Ok(Identity { cert, key, public })
    }

    /// The Ed25519 public key peers pin.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// Maps a client's Ed25519 key to an identity, or `None` for a key not allowed in.
pub type KeyLookup = Arc<dyn Fn(&PublicKey) -> Option<String> + Send + Sync>;

/// Which clients a server lets in, and as whom. A client whose key maps to no identity is
/// refused during the TLS handshake.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// The nodes of a registry; the identity is the node id whose registered key the client
    /// presented (a key registered for two nodes is refused, as it names neither).
    Nodes(NodeRegistry),
    /// Any key the lookup maps to an identity (e.g. an actor key to its actor id). The lookup
    /// runs at every handshake, so it may follow a changing directory.
    Keys(KeyLookup),
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Nodes(r) => f.debug_tuple("Nodes").field(r).finish(),
            ClientAuth::Keys(_) => f.write_str("Keys(..)"),
        }
    }
}

impl ClientAuth {
    /// The identity `key` authenticates, if any.
    pub fn identify(&self, key: &PublicKey) -> Option<String> {
        match self {
            ClientAuth::Nodes(registry) => {
                let mut ids = registry.0.iter().filter(|(_, k)| *k == key);
                match (ids.next(), ids.next()) {
                    (Some((id, _)), None) => Some(id.to_string()),
                    _ => None,
                }
            }
            ClientAuth::Keys(lookup) => lookup(key),
        }
    }
}

/// The authenticated client of a connection, inserted by [`serve`] into every request's
/// extensions: read it in an axum handler with `Extension<Authenticated>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The identity [`ClientAuth`] mapped the client's key to (a node id, an actor id…).
    pub id: String,
    /// The client's Ed25519 public key, proven by the TLS 1.3 handshake.
    pub key: PublicKey,
}

/// A server's TLS side: the rustls configuration (TLS 1.3 only, HTTP/2 only, a client
/// certificate required and pinned by `auth`) and the lookup [`serve`] uses to name each
/// connection's client.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    auth: Arc<ClientAuth>,
}

impl ServerTls {
    /// A server presenting `identity` that lets in the clients `auth` knows.
    ///
    /// # Errors
    /// [`TlsError::Config`] when rustls refuses the key or the protocol settings.
    pub fn new(identity: &Identity, auth: ClientAuth) -> Result<Self, TlsError> {
        let provider = provider();
        let auth = Arc::new(auth);
        let verifier = verify::PinnedClients::new(auth.clone(), &provider);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(identity.chain(), identity.private_key())?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        // No resumption: every connection proves its key with a full handshake.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(ServerTls {
            config: Arc::new(config),
            auth,
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Who the client presenting `key` is, if it may come in.
    pub fn identify(&self, key: &PublicKey) -> Option<Authenticated> {
        self.auth
            .identify(key)
            .map(|id| Authenticated { id, key: *key })
    }
}

/// A client configuration presenting `identity` (a node's or an actor's) to a server whose
/// key must be `server_key`: TLS 1.3 only, HTTP/2 only, no session resumption.
///
/// # Errors
/// [`TlsError::Config`] when rustls refuses the key or the protocol settings.
pub fn client_config(
    identity: &Identity,
    server_key: PublicKey,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = verify::PinnedServer::new(server_key, &provider);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(identity.chain(), identity.private_key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_carry_the_key_they_are_made_from() -> Result<(), TlsError> {
        let node = NodeKey::from_seed([3; 32]);
        let id = Identity::from_node_key(&node)?;
        assert_eq!(verify::ed25519_key(&id.cert), Some(node.public_key()));
        let actor = ActorKey::from_seed([4; 32]);
        let id = Identity::from_actor_key(&actor)?;
        assert_eq!(verify::ed25519_key(&id.cert), Some(actor.public_key()));
        assert_ne!(actor.public_key(), node.public_key());
        Ok(())
    }

    #[test]
    fn a_registry_names_the_one_node_of_a_key() {
        let a = NodeKey::from_seed([1; 32]).public_key();
        let b = NodeKey::from_seed([2; 32]).public_key();
        let c = NodeKey::from_seed([5; 32]).public_key();
        let registry = NodeRegistry::new()
            .with("a".into(), a)
            .with("b".into(), b)
            .with("b2".into(), b);
        let auth = ClientAuth::Nodes(registry);
        assert_eq!(auth.identify(&a).as_deref(), Some("a"));
        assert_eq!(
            auth.identify(&b),
            None,
            "a key shared by two nodes names neither"
        );
        assert_eq!(auth.identify(&c), None);
    }
}
