//! Real nodes over the network: states created on one node converge on the others, a
//! replayed message changes nothing, and a node that was down catches up after its restart.

mod common;

use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;
use common::Net;
use sst_core::NodeId;
use sst_node::{Pending, ProtocolEnvelope, Transport, TransportError};

/// Two nodes: the seller creates a deal, the buyer changes it (its intent travels to the
/// seller, the home node), and both hold the same root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_converge_over_mutual_tls() -> anyhow::Result<()> {
    let net = Net::start(&["seller", "buyer"]).await?;
    let id = net.create_deal("deal-2").await?;
    net.wait_replicated(&id, 1).await?;
    net.assert_converged(&id, 1).await?;
    net.change("buyer", &id, 1).await?;
    net.wait_replicated(&id, 2).await?;
    net.assert_converged(&id, 2).await
}

/// Three nodes: changes from two of them reach all three, at one root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge() -> anyhow::Result<()> {
    let net = Net::start(&["seller", "buyer", "inspector"]).await?;
    let id = net.create_deal("deal-3").await?;
    net.wait_replicated(&id, 1).await?;
    net.change("buyer", &id, 1).await?;
    net.change("seller", &id, 2).await?;
    net.wait_replicated(&id, 3).await?;
    net.change("buyer", &id, 3).await?;
    net.wait_replicated(&id, 4).await?;
    net.assert_converged(&id, 4).await
}

/// Records every envelope the seller sends to the buyer.
struct Recorder {
    inner: Arc<dyn Transport>,
    seen: Arc<Mutex<Vec<ProtocolEnvelope>>>,
}

#[async_trait]
impl Transport for Recorder {
    fn local(&self) -> &NodeId {
        self.inner.local()
    }
    async fn send(&self, to: &NodeId, envelope: ProtocolEnvelope) -> Result<(), TransportError> {
        if to.as_str() == "buyer" {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(envelope.clone());
        }
        self.inner.send(to, envelope).await
    }
    fn queued(&self, to: &NodeId) -> Option<Pending> {
        self.inner.queued(to)
    }
}

/// Every message the seller sent the buyer, sent again later over the network (a captured
/// message replayed by the authenticated seller), is accepted and handled, and changes
/// neither the buyer's state nor its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_message_changes_nothing() -> anyhow::Result<()> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let wrap = move |role: &str, inner: Arc<dyn Transport>| -> Arc<dyn Transport> {
        if role == "seller" {
            Arc::new(Recorder {
                inner,
                seen: recorded.clone(),
            })
        } else {
            inner
        }
    };
    let net = Net::start_with(&["seller", "buyer"], &wrap).await?;
    let id = net.create_deal("deal-replay").await?;
    net.change("seller", &id, 1).await?;
    net.wait_replicated(&id, 2).await?;
    net.change("buyer", &id, 2).await?;
    net.wait_replicated(&id, 3).await?;
    net.assert_converged(&id, 3).await?;

    let buyer = net.node("buyer")?;
    let state_before = buyer.state(&id).await?.context("buyer holds the deal")?;
    let log_before = buyer.store().log_head().await?;
    let captured: Vec<ProtocolEnvelope> = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    anyhow::ensure!(
        captured.len() >= 3,
        "the seller sent the buyer at least the three changes: {}",
        captured.len()
    );
    let seller_transport = net.members["seller"].transport.clone();
    let buyer_id = NodeId::from("buyer");
    for envelope in &captured {
        seller_transport.send(&buyer_id, envelope.clone()).await?;
    }
    // Every replay was answered only once handled, so the buyer is settled here.
    let state_after = buyer.state(&id).await?.context("buyer holds the deal")?;
    anyhow::ensure!(
        (state_after.version, state_after.root) == (state_before.version, state_before.root),
        "replays changed the state: v{} {} -> v{} {}",
        state_before.version,
        state_before.root,
        state_after.version,
        state_after.root
    );
    let log_after = buyer.store().log_head().await?;
    anyhow::ensure!(
        log_after.pos == log_before.pos,
        "replays grew the buyer's log: {} -> {}",
        log_before.pos,
        log_after.pos
    );
    net.assert_converged(&id, 3).await
}

/// While the buyer is down the seller's sends to it are `Unreachable` and the seller goes on
/// committing; once the buyer restarts on its store (same address) it catches up and both
/// hold the same root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_down_is_unreachable_then_catches_up() -> anyhow::Result<()> {
    let mut net = Net::start(&["seller", "buyer"]).await?;
    let id = net.create_deal("deal-down").await?;
    net.wait_replicated(&id, 1).await?;

    net.stop("buyer").await?;
    let probe = ProtocolEnvelope::new("probe", 1, &serde_json::json!({}))?;
    let sent = net.members["seller"]
        .transport
        .send(&NodeId::from("buyer"), probe)
        .await;
    anyhow::ensure!(
        sent == Err(TransportError::Unreachable(NodeId::from("buyer"))),
        "a down peer is unreachable: {sent:?}"
    );
    net.change("seller", &id, 1).await?;
    net.change("seller", &id, 2).await?;

    net.restart("buyer").await?;
    net.wait_replicated(&id, 3).await?;
    net.assert_converged(&id, 3).await
}
