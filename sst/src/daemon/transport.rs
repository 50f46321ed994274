//! The daemon's peer transport, isolated here so the rest of the daemon sees only a
//! [`Transport`] and an [`Inbox`]: [`sst_net`] — HTTP/2 over mutual TLS 1.3 where each node
//! presents its node key and pins its peers' registry keys (a key not in the registry is
//! refused at the handshake).

use std::sync::Arc;

use anyhow::Context;
use sst::node::{Inbox, Transport};
use sst_net::audit::AuditSlot;
use sst_net::{NetConfig, NetServer};

use super::config::DaemonConfig;

/// A running peer transport: the sending half [`sst::node::Node::start`] takes, and the
/// listening server, which must live as long as the node.
pub(crate) struct PeerLink {
    /// Sends to peers.
    pub(crate) transport: Arc<dyn Transport>,
    server: NetServer,
    /// Where the started node goes, for peers' audit requests (`sst audit`).
    pub(crate) audit: AuditSlot,
}

impl PeerLink {
    /// Starts the transport for `config`: binds the peer listener; returns the link and the
    /// node's inbox.
    ///
    /// # Errors
    /// The listener cannot be bound; the node key is not this node's in the registry.
    pub(crate) async fn start(config: &DaemonConfig) -> anyhow::Result<(Self, Inbox)> {
        let net = config.peers.iter().fold(
            NetConfig::new(
                config.id.clone(),
                config.node_key.clone(),
                config.registry(),
                config.listen,
            ),
            |net, peer| net.with_peer(peer.id.clone(), peer.address.to_string()),
        );
        let node = sst_net::start(net)
            .await
            .with_context(|| format!("starting the peer transport on {}", config.listen))?;
        let link = PeerLink {
            transport: node.transport,
            server: node.server,
            audit: node.audit,
        };
        Ok((link, node.inbox))
    }

    /// Stops the peer listener (after the node stopped).
    pub(crate) async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
