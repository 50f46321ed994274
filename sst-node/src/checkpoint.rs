//! Tamper evidence kept by the node: the start check of its own log (chain, bound rows and
//! its latest checkpoints, [`sst_core::verify_log`]) and the checkpoint task, which signs the
//! log head after commits — at most one per interval while busy, always one once the log
//! stops growing — stores it, and sends it to the peers that witness it.

use std::sync::Arc;
use std::time::Duration;

use sst_core::{verify_log, NodeId, NodeKey, NodeRegistry, PeerTable, Rule, Store, TrustAnchors};
use tracing::{debug, warn};

use crate::context::NodeContext;
use crate::error::NodeError;
use crate::sync::SyncRegistry;

/// Checks, before the node starts, that `key` is `node`'s key in `registry`, that its log
/// chain verifies with every row it binds, and that its checkpoints match the chain (signed
/// under its registered key, at a position the log still holds, with the head the chain has
/// there).
///
/// # Errors
/// [`NodeError::NodeKeyNotRegistered`], [`NodeError::LogDoesNotVerify`] naming each finding,
/// store errors.
pub(crate) async fn check_own_log(
    store: &dyn Store,
    node: &NodeId,
    key: &NodeKey,
    registry: &NodeRegistry,
) -> Result<(), NodeError> {
    if registry.key(node) != Some(&key.public_key()) {
        return Err(NodeError::NodeKeyNotRegistered { node: node.clone() });
    }
    let anchors = TrustAnchors::new(registry.clone(), Some(node.clone()));
    let mut attempt = 0;
    loop {
        // verify_log reads the log and the rows in several statements: a write still landing
        // from a predecessor that was stopped mid-commit (same process, other connection)
        // would read as an unbound row. Findings count only on a log that did not move.
        let before = store.log_head().await?;
        let report = verify_log(store, &anchors).await?;
        let findings: Vec<_> = report
            .findings
            .into_iter()
            .filter(|f| {
                matches!(f.rule, Rule::LogChain | Rule::LogRecord | Rule::Checkpoint)
                    || matches!(f.table, PeerTable::Log | PeerTable::Checkpoint)
            })
            .collect();
        if findings.is_empty() {
            debug!(%node, entries = report.log_entries, checkpoints = report.checkpoints, "own log verified");
            return Ok(());
        }
        attempt += 1;
        if store.log_head().await? == before || attempt >= SETTLE_ATTEMPTS {
            return Err(NodeError::LogDoesNotVerify {
                node: node.clone(),
                findings,
            });
        }
        debug!(%node, attempt, "log moved while it was verified; verifying again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How often the start check verifies a log that keeps moving before it reports findings.
const SETTLE_ATTEMPTS: u32 = 5;

/// Signs a checkpoint of the current log head (if it moved) and sends it to every peer
/// through the first sync protocol that carries checkpoints.
pub(crate) async fn checkpoint_and_publish(ctx: &NodeContext, sync: &SyncRegistry) {
    let cp = match ctx.checkpoint().await {
        Ok(Some(cp)) => cp,
        Ok(None) => return,
        Err(e) => {
            warn!(node = %ctx.id(), error = %e, "log checkpoint not written");
            return;
        }
    };
    for protocol in sync.protocols() {
        match protocol.witness(&cp) {
            Ok(Some(m)) => {
                for peer in ctx.peers() {
                    ctx.send(&peer, m.clone());
                }
                return;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(node = %ctx.id(), protocol = protocol.name(), error = %e, "checkpoint not sent")
            }
        }
    }
}

/// The checkpoint task: waits until the log may have grown, checkpoints it, then rests for
/// `every` (so a busy node signs at most one checkpoint per interval, and the last change
/// before it goes idle is always covered).
pub(crate) async fn run(ctx: Arc<NodeContext>, sync: Arc<SyncRegistry>, every: Duration) {
    loop {
        ctx.log_changes().await;
        checkpoint_and_publish(&ctx, &sync).await;
        tokio::time::sleep(every).await;
    }
}
