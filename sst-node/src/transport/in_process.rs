//! An in-process network over bounded tokio channels: switchable reachability (to simulate
//! offline nodes) and in-flight accounting, so tests and demos can wait until every message
//! has been handled ([`InProcessNetwork::settled`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use sst_core::NodeId;
use tokio::sync::{mpsc, watch};

use super::{Delivery, Inbox, Pending, Transport, TransportError};
use crate::message::ProtocolEnvelope;

/// Default capacity of each node's inbox.
const INBOX_CAPACITY: usize = 1024;

/// Decrements the network's in-flight counter when dropped.
struct Ticket(Arc<NetInner>);

impl Ticket {
    fn new(net: &Arc<NetInner>) -> Ticket {
        net.in_flight.send_modify(|n| *n += 1);
        Ticket(net.clone())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

struct Slot {
    tx: mpsc::Sender<Delivery>,
    online: bool,
}

struct NetInner {
    nodes: Mutex<HashMap<NodeId, Slot>>,
    in_flight: watch::Sender<usize>,
    inbox_capacity: usize,
}

impl NetInner {
    fn nodes(&self) -> MutexGuard<'_, HashMap<NodeId, Slot>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An in-process network: every joined node gets a [`Transport`] and a bounded [`Inbox`];
/// messages travel over tokio channels (FIFO per sender and receiver). The sender identity a
/// receiver sees is the one the transport was created for by [`InProcessNetwork::join`].
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
    /// An empty network whose inboxes hold up to 1024 messages.
    pub fn new() -> Self {
        Self::with_inbox_capacity(INBOX_CAPACITY)
    }

    /// An empty network whose inboxes hold up to `capacity` messages (at least one); a
    /// sender to a full inbox waits.
    pub fn with_inbox_capacity(capacity: usize) -> Self {
        InProcessNetwork {
            inner: Arc::new(NetInner {
                nodes: Mutex::new(HashMap::new()),
                in_flight: watch::channel(0).0,
                inbox_capacity: capacity.max(1),
            }),
        }
    }

    /// Joins (or re-joins after a restart) node `id`: messages sent to it from now on go to
    /// the returned inbox, and its peers see messages sent through the returned transport as
    /// coming from `id`. The node starts online.
    pub fn join(&self, id: impl Into<NodeId>) -> (Arc<InProcessTransport>, Inbox) {
        let id = id.into();
        let (tx, rx) = mpsc::channel(self.inner.inbox_capacity);
        self.inner
            .nodes()
            .insert(id.clone(), Slot { tx, online: true });
        (
            Arc::new(InProcessTransport {
                local: id,
                net: self.inner.clone(),
            }),
            Inbox::from_receiver(rx),
        )
    }

    /// Takes a node offline (`false`: nothing reaches it and it reaches nobody) or back.
    pub fn set_online(&self, id: &NodeId, online: bool) {
        if let Some(slot) = self.inner.nodes().get_mut(id) {
            slot.online = online;
        }
    }

    /// Waits until every queued or sent message has been handled by its receiver, including
    /// the messages that handling sent in turn.
    pub async fn settled(&self) {
        let mut rx = self.inner.in_flight.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail while we hold it.
        if rx.wait_for(|n| *n == 0).await.is_err() {
            tracing::warn!("in-process network closed while waiting to settle");
        }
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

    async fn send(&self, to: &NodeId, envelope: ProtocolEnvelope) -> Result<(), TransportError> {
        let tx = {
            let nodes = self.net.nodes();
            if !nodes.get(&self.local).is_some_and(|s| s.online) {
                return Err(TransportError::Unreachable(self.local.clone()));
            }
            match nodes.get(to) {
                Some(s) if s.online => s.tx.clone(),
                _ => return Err(TransportError::Unreachable(to.clone())),
            }
        };
        let ticket: Pending = Box::new(Ticket::new(&self.net));
        let delivery = Delivery::with_receipt(self.local.clone(), envelope, ticket);
        // On failure the delivery (and its ticket) is dropped, which undoes the increment.
        tx.send(delivery)
            .await
            .map_err(|_| TransportError::Unreachable(to.clone()))
    }

    fn queued(&self, _to: &NodeId) -> Option<Pending> {
        Some(Box::new(Ticket::new(&self.net)))
    }
}
