//! The typed errors of this crate: building TLS material ([`TlsError`]), talking to a server
//! ([`ClientError`]) and starting a networked node ([`NetError`]).

use std::net::SocketAddr;

use sst_core::NodeId;

/// Why TLS material (a certificate from a key, a rustls configuration) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The Ed25519 key could not be turned into a TLS key or certificate.
    #[error("bad key: {0}")]
    Key(String),
    /// rustls refused the configuration (protocol versions, key, certificate).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Why a request to a server failed. Every variant means the server may be down or
/// unreachable now; a retry later may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No TCP connection to the address (refused, unresolvable, unreachable).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The `host:port` dialled.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The TLS handshake failed: the server's key is not the pinned one, the server refused
    /// this client's key, or the connection broke.
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        /// The `host:port` dialled.
        addr: String,
        /// What rustls or the socket reported.
        source: std::io::Error,
    },
    /// The server did not negotiate HTTP/2 (ALPN `h2`).
    #[error("{addr} did not negotiate HTTP/2")]
    NotHttp2 {
        /// The `host:port` dialled.
        addr: String,
    },
    /// The HTTP/2 connection or request failed.
    #[error("HTTP/2 request to {addr} failed: {source}")]
    Http {
        /// The `host:port` dialled.
        addr: String,
        /// What hyper reported.
        source: hyper::Error,
    },
}

/// Why a networked node could not start ([`crate::start`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The listening socket could not be bound (address in use, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The node's key is not its key in the node registry (its peers would refuse it).
    #[error("the key of node `{0}` is not its key in the node registry")]
    NotRegistered(NodeId),
    /// A configured peer is not in the node registry, so its key cannot be pinned.
    #[error("peer `{0}` is not in the node registry")]
    UnknownPeer(NodeId),
    /// The node key or the TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
}
