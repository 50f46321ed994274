//! The daemon's peer transport, isolated here so the rest of the daemon sees only a
//! [`Transport`] and an [`Inbox`]: for now a standalone in-process network holding this node
//! alone (peers are unreachable; sends fail and sync catches up once they are reachable).

use std::sync::Arc;

use sst::node::{InProcessNetwork, Inbox, Transport};

use super::config::DaemonConfig;

/// A running peer transport: the sending half [`sst::node::Node::start`] takes, and what must
/// live as long as the node.
pub(crate) struct PeerLink {
    /// Sends to peers.
    pub(crate) transport: Arc<dyn Transport>,
    /// Kept alive while the node runs.
    _network: InProcessNetwork,
}

impl PeerLink {
    /// Starts the transport for `config`: the link and the node's inbox.
    ///
    /// # Errors
    /// The listener cannot be bound.
    pub(crate) async fn start(config: &DaemonConfig) -> anyhow::Result<(Self, Inbox)> {
        let network = InProcessNetwork::new();
        let (transport, inbox) = network.join(config.id.clone());
        for peer in &config.peers {
            tracing::warn!(
                node = %config.id, peer = %peer.id, address = %peer.address,
                "no network transport in this build: peer unreachable"
            );
        }
        let link = PeerLink {
            transport,
            _network: network,
        };
        Ok((link, inbox))
    }

    /// Stops the transport (after the node stopped).
    pub(crate) async fn shutdown(self) {}
}
