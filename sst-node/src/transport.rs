//! The [`Transport`] trait that carries [`Message`]s between nodes, and an in-process
//! implementation over tokio channels ([`InProcessNetwork`]) with switchable reachability
//! (to simulate offline nodes) and quiescence detection for tests and demos.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use sst_core::NodeId;
use tokio::sync::{mpsc, watch};

use crate::message::Message;

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer (or this node) is offline or unknown to the network.
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
}

/// Sends messages to other nodes. Implementations must deliver the messages one sender sends
/// to one receiver in the order they were sent (or not at all: the sync protocol recovers
/// lost messages by catch-up).
#[async_trait]
pub trait Transport: Send + Sync {
    /// The node this transport sends from.
    fn local(&self) -> &NodeId;
    /// Sends `message` to `to`.
    ///
    /// # Errors
    /// [`TransportError::Unreachable`] when the peer cannot be reached now.
    async fn send(&self, to: &NodeId, message: Message) -> Result<(), TransportError>;
}

/// Decrements the network's in-flight counter when a delivery has been fully handled.
struct Ticket(Arc<NetInner>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A received message. Dropping it marks it handled.
pub struct Delivery {
    /// Sending node.
    pub from: NodeId,
    /// The message.
    pub message: Message,
    _ticket: Option<Ticket>,
}

impl Delivery {
    /// A delivery from a transport without in-flight accounting.
    pub fn new(from: NodeId, message: Message) -> Self {
        Delivery {
            from,
            message,
            _ticket: None,
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("from", &self.from)
            .field("message", &self.message)
            .finish()
    }
}

/// The receiving end of a node's transport.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<Delivery>,
}

impl Inbox {
    /// An inbox fed by `rx` (for other transports).
    pub fn from_receiver(rx: mpsc::UnboundedReceiver<Delivery>) -> Self {
        Inbox { rx }
    }
    /// The next delivery; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

struct Slot {
    tx: mpsc::UnboundedSender<Delivery>,
    online: bool,
}

struct NetInner {
    nodes: Mutex<HashMap<NodeId, Slot>>,
    in_flight: watch::Sender<usize>,
}

impl NetInner {
    fn nodes(&self) -> MutexGuard<'_, HashMap<NodeId, Slot>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An in-process network: every joined node gets a [`Transport`] and an [`Inbox`]; messages
/// travel over unbounded tokio channels (FIFO per sender and receiver).
#[derive(Clone)]
pub struct InProcessNetwork {
    inner: Arc<NetInner>,
}

impl Default for InProcessNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InProcessNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<NodeId> = self.inner.nodes().keys().cloned().collect();
        f.debug_struct("InProcessNetwork")
            .field("nodes", &nodes)
            .finish()
    }
}

impl InProcessNetwork {
    /// An empty network.
    pub fn new() -> Self {
        InProcessNetwork {
            inner: Arc::new(NetInner {
                nodes: Mutex::new(HashMap::new()),
                in_flight: watch::channel(0).0,
            }),
        }
    }

    /// Joins (or re-joins after a restart) node `id`: messages sent to it from now on go to
    /// the returned inbox. The node starts online.
    pub fn join(&self, id: impl Into<NodeId>) -> (Arc<InProcessTransport>, Inbox) {
        let id = id.into();
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .nodes()
            .insert(id.clone(), Slot { tx, online: true });
        (
            Arc::new(InProcessTransport {
                local: id,
                net: self.inner.clone(),
            }),
            Inbox { rx },
        )
    }

    /// Takes a node offline (`false`: nothing reaches it and it reaches nobody) or back.
    pub fn set_online(&self, id: &NodeId, online: bool) {
        if let Some(slot) = self.inner.nodes().get_mut(id) {
            slot.online = online;
        }
    }

    /// Waits until every sent message has been handled by its receiver, including the
    /// messages that handling sent in turn.
    pub async fn settled(&self) {
        let mut rx = self.inner.in_flight.subscribe();
        // The sender lives as long as `self`; an error cannot happen while we hold it.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// The sending half of a node's in-process connection.
pub struct InProcessTransport {
    local: NodeId,
    net: Arc<NetInner>,
}

impl std::fmt::Debug for InProcessTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InProcessTransport({})", self.local)
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    fn local(&self) -> &NodeId {
        &self.local
    }

    async fn send(&self, to: &NodeId, message: Message) -> Result<(), TransportError> {
        let nodes = self.net.nodes();
        if !nodes.get(&self.local).is_some_and(|s| s.online) {
            return Err(TransportError::Unreachable(self.local.clone()));
        }
        let slot = match nodes.get(to) {
            Some(s) if s.online => s,
            _ => return Err(TransportError::Unreachable(to.clone())),
        };
        self.net.in_flight.send_modify(|n| *n += 1);
        let delivery = Delivery {
            from: self.local.clone(),
            message,
            _ticket: Some(Ticket(self.net.clone())),
        };
        // On failure the delivery (and its ticket) is dropped, which undoes the increment.
        slot.tx
            .send(delivery)
            .map_err(|_| TransportError::Unreachable(to.clone()))
    }
}
