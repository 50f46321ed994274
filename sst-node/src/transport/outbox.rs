//! The outbox: one sender task per peer, fed through a bounded queue. The sequencer and the
//! inbox hand messages over without waiting; only the sender task of a peer waits for that
//! peer, so a slow or dead peer never stalls commits or the other peers. A queue that
//! overflows drops messages (logged) and, once the peer drains it again, sends the
//! protocols' reconnect messages so the peer asks for what it lost (catch-up).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sst_core::NodeId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Pending, Transport, TransportError};
use crate::message::ProtocolEnvelope;

/// Called with the transport's result once a message was handed to it (or dropped).
pub(crate) type Done = Box<dyn FnOnce(Result<(), TransportError>) + Send>;

struct Outgoing {
    envelope: ProtocolEnvelope,
    /// The transport's in-flight token, dropped once `send` returned.
    pending: Option<Pending>,
    done: Option<Done>,
}

struct Peer {
    tx: mpsc::Sender<Outgoing>,
    /// Set when a message to this peer was dropped (queue full).
    lost: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// Per-peer sender tasks over one transport.
pub(crate) struct Outbox {
    transport: Arc<dyn Transport>,
    capacity: usize,
    reconnect: Arc<Vec<ProtocolEnvelope>>,
    peers: Mutex<HashMap<NodeId, Peer>>,
}

impl Outbox {
    /// An outbox whose per-peer queues hold up to `capacity` messages; `reconnect` is sent
    /// to a peer that lost messages once it accepts messages again.
    pub(crate) fn new(
        transport: Arc<dyn Transport>,
        capacity: usize,
        reconnect: Vec<ProtocolEnvelope>,
    ) -> Self {
        Outbox {
            transport,
            capacity: capacity.max(1),
            reconnect: Arc::new(reconnect),
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<NodeId, Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `envelope` for `to` without waiting.
    pub(crate) fn send(&self, to: &NodeId, envelope: ProtocolEnvelope) {
        self.push(to, envelope, None);
    }

    /// Queues `envelope` for `to` without waiting; `done` learns the transport's result.
    pub(crate) fn send_then(&self, to: &NodeId, envelope: ProtocolEnvelope, done: Done) {
        self.push(to, envelope, Some(done));
    }

    fn push(&self, to: &NodeId, envelope: ProtocolEnvelope, done: Option<Done>) {
        let item = Outgoing {
            envelope,
            pending: self.transport.queued(to),
            done,
        };
        let mut peers = self.peers();
        let peer = peers
            .entry(to.clone())
            .or_insert_with(|| self.spawn_sender(to));
        let (item, error) = match peer.tx.try_send(item) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(item)) => {
                peer.lost.store(true, Ordering::SeqCst);
                warn!(
                    peer = %to,
                    protocol = %item.envelope.protocol,
                    capacity = self.capacity,
                    "outbox full, message dropped; the peer catches up once it drains"
                );
                (item, TransportError::Backlog(to.clone()))
            }
            Err(mpsc::error::TrySendError::Closed(item)) => {
                warn!(peer = %to, protocol = %item.envelope.protocol, "outbox closed, message dropped");
                (item, TransportError::Unreachable(to.clone()))
            }
        };
        drop(peers);
        if let Some(done) = item.done {
            done(Err(error));
        }
    }

    fn spawn_sender(&self, to: &NodeId) -> Peer {
        let (tx, rx) = mpsc::channel(self.capacity);
        let lost = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(sender(
            self.transport.clone(),
            to.clone(),
            rx,
            lost.clone(),
            self.reconnect.clone(),
        ));
        Peer { tx, lost, task }
    }

    /// Stops every sender task; queued messages are dropped (a node that stops is like a
    /// crash: peers catch up after its restart).
    pub(crate) fn shutdown(&self) {
        for (_, peer) in self.peers().drain() {
            peer.task.abort();
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Most messages one [`Transport::send_batch`] carries.
const MAX_BATCH: usize = 256;

/// The sender task of one peer: sends in queue order, everything queued at once (up to
/// [`MAX_BATCH`] messages per batch).
async fn sender(
    transport: Arc<dyn Transport>,
    to: NodeId,
    mut rx: mpsc::Receiver<Outgoing>,
    lost: Arc<AtomicBool>,
    reconnect: Arc<Vec<ProtocolEnvelope>>,
) {
    while let Some(first) = rx.recv().await {
        let mut items = vec![first];
        while items.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        let mut envelopes = Vec::with_capacity(items.len());
        let mut held = Vec::with_capacity(items.len());
        for item in items {
            envelopes.push(item.envelope);
            held.push((item.done, item.pending));
        }
        let count = envelopes.len();
        let result = if count == 1 {
            match envelopes.pop() {
                Some(envelope) => transport.send(&to, envelope).await,
                None => Ok(()),
            }
        } else {
            transport.send_batch(&to, envelopes).await
        };
        if let Err(e) = &result {
            warn!(peer = %to, messages = count, error = %e, "send failed; the peer catches up later");
        }
        for (done, pending) in held {
            if let Some(done) = done {
                done(result.clone());
            }
            drop(pending);
        }
        if rx.is_empty() && lost.swap(false, Ordering::SeqCst) {
            debug!(peer = %to, "outbox drained after an overflow: asking the peer to catch up");
            for envelope in reconnect.iter() {
                let pending = transport.queued(&to);
                if let Err(e) = transport.send(&to, envelope.clone()).await {
                    warn!(peer = %to, protocol = %envelope.protocol, error = %e, "reconnect failed");
                    lost.store(true, Ordering::SeqCst);
                }
                drop(pending);
            }
        }
    }
}
