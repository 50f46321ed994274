//! Starting a node's network side: [`NetConfig`], the server that feeds the node's inbox from
//! `POST /sst/v1/sync` (answering once the node handled the message) and [`start`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use sst_core::{NodeId, NodeKey, NodeRegistry};
use sst_node::{Delivery, Inbox, ProtocolEnvelope};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::audit::{self, AuditSlot, AUDIT_PATH};
use crate::error::NetError;
use crate::tls::{self, Authenticated, ClientAuth, H2Client, Identity, NetServer, ServerTls};
use crate::transport::{NetTransport, SYNC_BATCH_PATH, SYNC_PATH};

/// The largest message body the server accepts (a catch-up batch can be large).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How a node takes part in the network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// This node's id (its entry in `registry`).
    pub node: NodeId,
    /// This node's key: it signs the TLS handshakes (and, in the node, receipts and
    /// checkpoints). Its public half must be `registry`'s key for `node`.
    pub key: Arc<NodeKey>,
    /// The network's node registry: the only nodes let in, each with the key it must present.
    pub registry: NodeRegistry,
    /// Where the server listens (port 0: the OS picks; see [`NetServer::local_addr`]).
    pub listen: SocketAddr,
    /// The peers this node sends to, as `host:port` (each must be in `registry`).
    pub peers: BTreeMap<NodeId, String>,
    /// Capacity of the node's inbox; a full inbox holds the senders' requests (backpressure).
    pub inbox_capacity: usize,
    /// How long one send may take, connecting and the peer's handling included.
    pub request_timeout: Duration,
}

impl NetConfig {
    /// A configuration listening on `listen`, with no peers yet, an inbox of 1024 messages and
    /// a 30 s request timeout.
    pub fn new(
        node: impl Into<NodeId>,
        key: impl Into<Arc<NodeKey>>,
        registry: NodeRegistry,
        listen: SocketAddr,
    ) -> Self {
        NetConfig {
            node: node.into(),
            key: key.into(),
            registry,
            listen,
            peers: BTreeMap::new(),
            inbox_capacity: 1024,
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Adds (or replaces) peer `id` at `addr` (`host:port`).
    pub fn with_peer(mut self, id: impl Into<NodeId>, addr: impl Into<String>) -> Self {
        self.peers.insert(id.into(), addr.into());
        self
    }
}

/// A node's network side, to hand to [`sst_node::Node::start`]: the transport it sends with
/// and the inbox its server fills, plus the server itself.
#[derive(Debug)]
pub struct NetNode {
    /// Sends to the configured peers.
    pub transport: Arc<NetTransport>,
    /// What peers sent, each delivery tagged with the node id its key authenticated.
    pub inbox: Inbox,
    /// The listening server (stop it with [`NetServer::shutdown`]).
    pub server: NetServer,
    /// Where to put the node once started, for the audit route ([`crate::audit`]) to answer
    /// peers' audit requests from it.
    pub audit: AuditSlot,
}

/// Checks `config`, builds the TLS identity from the node key, binds `config.listen` and
/// starts the server ([`start_on`]).
///
/// # Errors
/// As [`start_on`]; [`NetError::Bind`] when the address cannot be bound.
pub async fn start(config: NetConfig) -> Result<NetNode, NetError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| NetError::Bind {
            addr: config.listen,
            source,
        })?;
    start_on(config, listener).await
}

/// As [`start`], serving on an already bound `listener` (`config.listen` is not used): how a
/// set of nodes learns each other's ports before any starts, or a listener handed over by
/// the system. Each `POST /sst/v1/sync` from a registry node becomes a
/// [`Delivery::with_receipt`] in the returned inbox (waiting while it is full), and is
/// answered `204` once the node handled the delivery — `503` when the node stopped before or
/// meanwhile (the sender then counts the message as not delivered; sync catches up).
///
/// # Errors
/// [`NetError::NotRegistered`] when `key` is not `node`'s key in the registry;
/// [`NetError::UnknownPeer`] for a peer not in the registry; [`NetError::Tls`] when the key
/// cannot be used for TLS; [`NetError::Bind`] when the listener's address cannot be read.
pub async fn start_on(config: NetConfig, listener: TcpListener) -> Result<NetNode, NetError> {
    if config.registry.key(&config.node) != Some(&config.key.public_key()) {
        return Err(NetError::NotRegistered(config.node));
    }
    let identity = Identity::from_node_key(&config.key)?;
    let mut peers = BTreeMap::new();
    for (id, addr) in &config.peers {
        let key = config
            .registry
            .key(id)
            .ok_or_else(|| NetError::UnknownPeer(id.clone()))?;
        let client = tls::client_config(&identity, *key)?;
        peers.insert(id.clone(), H2Client::new(addr.clone(), client));
    }
    let server_tls = ServerTls::new(&identity, ClientAuth::Nodes(config.registry.clone()))?;
    let (tx, rx) = mpsc::channel(config.inbox_capacity.max(1));
    let audit = AuditSlot::default();
    let router = sync_router(tx).merge(
        Router::new()
            .route(AUDIT_PATH, get(audit::answer))
            .with_state(audit.clone()),
    );
    let server = tls::serve(router, listener, server_tls).map_err(|source| NetError::Bind {
        addr: config.listen,
        source,
    })?;
    Ok(NetNode {
        transport: Arc::new(NetTransport::new(
            config.node,
            peers,
            config.request_timeout,
        )),
        inbox: Inbox::from_receiver(rx),
        server,
        audit,
    })
}

fn sync_router(inbox: mpsc::Sender<Delivery>) -> Router {
    Router::new()
        .route(SYNC_PATH, post(receive))
        .route(SYNC_BATCH_PATH, post(receive_batch))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(inbox)
}

/// One message from an authenticated peer: into the inbox, answered once handled.
async fn receive(
    State(inbox): State<mpsc::Sender<Delivery>>,
    Extension(peer): Extension<Authenticated>,
    Json(envelope): Json<ProtocolEnvelope>,
) -> Response {
    let from = NodeId::from(peer.id.as_str());
    let (handled, done) = oneshot::channel::<()>();
    let delivery = Delivery::with_receipt(from.clone(), envelope, Box::new(handled));
    if inbox.send(delivery).await.is_err() {
        return stopped(&from);
    }
    // The receipt (our sender half) is dropped once the node handled the delivery — or
    // dropped it unhandled because it stopped, which a closed inbox tells apart.
    let _ = done.await;
    if inbox.is_closed() {
        return stopped(&from);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Several messages from an authenticated peer, in order: each into the inbox, answered once
/// every one was handled.
async fn receive_batch(
    State(inbox): State<mpsc::Sender<Delivery>>,
    Extension(peer): Extension<Authenticated>,
    Json(envelopes): Json<Vec<ProtocolEnvelope>>,
) -> Response {
    let from = NodeId::from(peer.id.as_str());
    let mut handled = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let (receipt, done) = oneshot::channel::<()>();
        let delivery = Delivery::with_receipt(from.clone(), envelope, Box::new(receipt));
        if inbox.send(delivery).await.is_err() {
            return stopped(&from);
        }
        handled.push(done);
    }
    for done in handled {
        let _ = done.await;
    }
    if inbox.is_closed() {
        return stopped(&from);
    }
    StatusCode::NO_CONTENT.into_response()
}

fn stopped(from: &NodeId) -> Response {
    warn!(peer = %from, "message not handled: the node stopped");
    (StatusCode::SERVICE_UNAVAILABLE, "node stopped").into_response()
}
