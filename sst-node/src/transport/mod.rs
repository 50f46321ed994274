//! The [`Transport`] seam that carries [`ProtocolEnvelope`]s between nodes, what a node
//! receives ([`Delivery`], [`Inbox`]), the per-peer outbox senders, and an in-process
//! implementation ([`InProcessNetwork`]) for tests, demos and benchmarks.

mod in_process;
pub(crate) mod outbox;

use async_trait::async_trait;
use sst_core::NodeId;
use tokio::sync::mpsc;

use crate::message::ProtocolEnvelope;

pub use in_process::{InProcessNetwork, InProcessTransport};

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer (or this node) is offline or unknown to the network.
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
    /// This node's outbox to the peer is full (the peer is slow or unreachable); the message
    /// was dropped and the peer catches up later.
    #[error("the outbox to node {0} is full")]
    Backlog(NodeId),
}

/// Something a transport keeps alive while a message is on its way (e.g. an in-flight
/// counter's ticket); dropping it marks the message handled.
pub type Pending = Box<dyn Send + Sync>;

/// Sends protocol envelopes to other nodes. Implementations deliver the messages one sender
/// sends to one receiver in the order they were sent (or not at all: sync protocols recover
/// lost messages by catch-up), and report to the receiver the **authenticated** identity of
/// the sending node ([`Delivery::from`]).
///
/// A node never calls `send` from its sequencer: one sender task per peer does (the outbox),
/// so a slow or dead peer delays only the messages addressed to it.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The node this transport sends from (the identity its peers authenticate).
    fn local(&self) -> &NodeId;
    /// Sends `envelope` to `to`; may wait while the peer applies backpressure.
    ///
    /// # Errors
    /// [`TransportError::Unreachable`] when the peer cannot be reached now.
    async fn send(&self, to: &NodeId, envelope: ProtocolEnvelope) -> Result<(), TransportError>;

    /// Sends several envelopes to `to`, in order (the outbox hands over everything queued for
    /// a peer at once). By default one [`Transport::send`] each, stopping at the first error;
    /// a network transport sends them in one request, so a peer's round trip is paid once per
    /// batch, not once per message.
    ///
    /// # Errors
    /// As [`Transport::send`]; on an error some of the envelopes may have been delivered
    /// (delivery is idempotent: the peer ignores what it already holds).
    async fn send_batch(
        &self,
        to: &NodeId,
        envelopes: Vec<ProtocolEnvelope>,
    ) -> Result<(), TransportError> {
        for envelope in envelopes {
            self.send(to, envelope).await?;
        }
        Ok(())
    }
    /// Called when a message to `to` enters this node's outbox; the returned value is dropped
    /// once [`Transport::send`] has returned for it. Transports that account for traffic in
    /// flight (the in-process one, for [`InProcessNetwork::settled`]) count it; by default
    /// nothing is tracked.
    fn queued(&self, _to: &NodeId) -> Option<Pending> {
        None
    }
}

/// A received message: the sending node as the transport authenticated it, and the
/// envelope. Dropping it marks it handled.
pub struct Delivery {
    from: NodeId,
    envelope: ProtocolEnvelope,
    receipt: Receipt,
}

/// Kept while a delivery is being handled; dropping it tells the transport it is done.
#[derive(Default)]
pub struct Receipt {
    _held: Option<Pending>,
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipt")
    }
}

impl Delivery {
    /// A delivery from `from`, which the transport has authenticated (for a network
    /// transport: the peer's pinned node key).
    pub fn new(from: NodeId, envelope: ProtocolEnvelope) -> Self {
        Delivery {
            from,
            envelope,
            receipt: Receipt::default(),
        }
    }
    /// As [`Delivery::new`], with something dropped once the receiver handled the message.
    pub fn with_receipt(from: NodeId, envelope: ProtocolEnvelope, receipt: Pending) -> Self {
        Delivery {
            from,
            envelope,
            receipt: Receipt {
                _held: Some(receipt),
            },
        }
    }
    /// The authenticated sending node.
    pub fn from(&self) -> &NodeId {
        &self.from
    }
    /// The envelope.
    pub fn envelope(&self) -> &ProtocolEnvelope {
        &self.envelope
    }
    /// Sender, envelope, and the receipt to drop once the message is handled.
    pub fn into_parts(self) -> (NodeId, ProtocolEnvelope, Receipt) {
        (self.from, self.envelope, self.receipt)
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("from", &self.from)
            .field("protocol", &self.envelope.protocol)
            .field("version", &self.envelope.version)
            .finish()
    }
}

/// The receiving end of a node's transport: a **bounded** queue, so a node that falls behind
/// slows its senders down (backpressure) instead of growing without limit.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Delivery>,
}

impl Inbox {
    /// An inbox fed by `rx` (for other transports).
    pub fn from_receiver(rx: mpsc::Receiver<Delivery>) -> Self {
        Inbox { rx }
    }
    /// The next delivery; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}
