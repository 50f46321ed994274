//! # sst-net
//!
//! SST over the network. Each participant runs its node next to its own database; nodes talk
//! **HTTP/2 + JSON over mutual TLS 1.3**, where a node's identity is its Ed25519 node key:
//!
//! - **Identity is the key** ([`tls`]): every node presents a self-signed certificate made from
//!   its [`sst_core::NodeKey`]; the certificate carries no trust, only its key matters. Each
//!   side pins the other's key against the network's [`sst_core::NodeRegistry`] — a client
//!   the one key of the node it dials, a server any registry key, the node whose key matched
//!   being the authenticated sender — and the TLS 1.3 handshake signature proves the peer
//!   holds that key. No CA, no expiry; a key not in the registry is refused at the handshake.
//! - **Transport** ([`NetTransport`]): implements [`sst_node::Transport`] with one HTTP/2
//!   connection per peer (`TCP_NODELAY`, reconnect on failure). A message is
//!   `POST /sst/v1/sync` with the [`sst_node::ProtocolEnvelope`] (protocol name and version
//!   inside) as JSON; the server puts it in the node's bounded [`sst_node::Inbox`] (a full
//!   inbox holds the request: backpressure) and answers `204` only once the node handled it,
//!   so a `2xx` means the receiver stored it. Replays change nothing: the node's delivery is
//!   idempotent.
//! - **Starting** ([`start`]): from a [`NetConfig`] to a [`NetNode`] — the transport and inbox
//!   to give [`sst_node::Node::start`], and the [`NetServer`] to shut down.
//!
//! The [`tls`] module is also the base of the client API: a server that maps client
//! (actor) keys to identities ([`tls::ClientAuth::Keys`]) and hands them to axum handlers
//! ([`tls::Authenticated`]), and an HTTP/2 client ([`tls::H2Client`]) that pins the node's key.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod audit;
pub mod error;
mod node;
pub mod tls;
mod transport;

pub use error::{ClientError, NetError, TlsError};
pub use node::{start, start_on, NetConfig, NetNode, MAX_MESSAGE_BYTES};
pub use tls::NetServer;
pub use transport::{NetTransport, SYNC_BATCH_PATH, SYNC_PATH};
