//! `sst audit --config FILE`: what one node can prove locally, then what only its peers can
//! tell. First the node's database is verified like `sst verify` (against the registry from
//! the node's configuration); then each configured peer is asked over the node-to-node
//! listener (mutual TLS as this node) for its signed log head, the latest checkpoint it
//! witnessed of this node's log and the heads of the states both take part in
//! ([`sst_net::audit`]). A log whose tail was cut, or rewritten together with its own
//! checkpoints, is found here: the peers still hold what they witnessed.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sst_net::audit::{self, PeerAudit};
use sst_net::tls::{self, H2Client, Identity};

use super::config::DaemonConfig;

/// Per-peer request timeout.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the audit concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditVerdict {
    /// Locally clean and every peer agrees.
    Clean,
    /// Something does not verify or a peer contradicts this node.
    Problems,
    /// Nothing was found, but not every peer could be asked.
    Incomplete,
}

/// Audits the node of the config at `config_path`.
///
/// # Errors
/// An invalid config, a store that cannot be opened.
pub(crate) async fn run(config_path: &Path) -> anyhow::Result<AuditVerdict> {
    let config = DaemonConfig::load(config_path)?;
    let registry = config.registry();
    println!("audit of node {} ({})", config.id, config.store.label());
    let locally_clean = crate::verify::run_with_registry(
        std::slice::from_ref(&config.store),
        registry.clone(),
        &[config.id.to_string()],
    )
    .await?;
    let store = config.store.open_for_verify().await?;
    let identity = Identity::from_node_key(&config.node_key).context("node key for TLS")?;
    let mut problems = !locally_clean;
    let mut unreachable = 0;
    for peer in &config.peers {
        let client = H2Client::new(
            peer.address.to_string(),
            tls::client_config(&identity, peer.key).context("TLS client configuration")?,
        );
        let answer = match audit::ask(&client, PEER_TIMEOUT).await {
            Ok(a) => a,
            Err(e) => {
                unreachable += 1;
                println!("peer {} ({}): NOT AUDITED: {e}", peer.id, peer.address);
                continue;
            }
        };
        client.disconnect().await;
        let result = audit::compare(&config.id, &peer.id, &answer, &registry, store.as_ref())
            .await
            .with_context(|| format!("comparing with peer {}", peer.id))?;
        print_peer(&peer.id.to_string(), &peer.address.to_string(), &result);
        problems |= !result.findings.is_empty();
    }
    let verdict = if problems {
        AuditVerdict::Problems
    } else if unreachable > 0 {
        AuditVerdict::Incomplete
    } else {
        AuditVerdict::Clean
    };
    println!(
        "audit: {} ({} peer(s) asked, {unreachable} unreachable)",
        match verdict {
            AuditVerdict::Clean => "clean",
            AuditVerdict::Problems => "PROBLEMS FOUND",
            AuditVerdict::Incomplete => "incomplete",
        },
        config.peers.len()
    );
    Ok(verdict)
}

fn print_peer(id: &str, address: &str, r: &PeerAudit) {
    println!(
        "peer {id} ({address}): log head {}, witnessed this log at {}; shared states: {} agree, {} behind there, {} behind here",
        r.peer_head,
        r.witnessed_us_at
            .map_or_else(|| "no position yet".to_owned(), |p| format!("position {p}")),
        r.states.agree,
        r.states.peer_behind,
        r.states.we_are_behind,
    );
    for f in &r.findings {
        println!("   [peer/{}] {f}", f.rule());
    }
}
