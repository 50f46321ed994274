//! The inbox task: takes each delivery from the node's bounded inbox, hands its envelope to
//! the sync protocol it names (with the sender the transport authenticated), and turns what
//! the protocol asks for into sequencer jobs. A delivery counts as handled once its jobs are
//! done, so the sequencer can group-commit the messages queued meanwhile. Signed events
//! (forwarded intents, replicated changes) are verified on the node's verification pool on
//! their way ([`Pending`]), and reach the sequencer in arrival order.

use std::sync::Arc;

use sst_core::NodeId;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::context::{NodeContext, Resubmit};
use crate::message::{IntentRefused, Verdict};
use crate::sequencer::{Job, JobKind, Pending};
use crate::sync::{Inbound, SyncRegistry};
use crate::transport::Inbox;

/// Runs until the inbox closes or the sequencer stops.
pub(crate) async fn run(
    ctx: Arc<NodeContext>,
    sync: Arc<SyncRegistry>,
    jobs: mpsc::Sender<Pending>,
    mut inbox: Inbox,
) {
    while let Some(delivery) = inbox.recv().await {
        let (from, envelope, receipt) = delivery.into_parts();
        let Some(protocol) = sync.by_name(&envelope.protocol) else {
            warn!(peer = %from, protocol = %envelope.protocol, "message of an unknown protocol dropped");
            continue;
        };
        if !protocol.accepts(envelope.version) {
            warn!(
                peer = %from, protocol = %envelope.protocol, version = envelope.version,
                "message of an unsupported protocol version dropped"
            );
            continue;
        }
        let inbound = match protocol.receive(&ctx, &from, &envelope).await {
            Ok(inbound) => inbound,
            Err(e) => {
                warn!(peer = %from, protocol = %envelope.protocol, error = %e, "message not handled");
                continue;
            }
        };
        let mut replies = Vec::new();
        let mut detached = Vec::new();
        for item in inbound {
            let (tx, rx) = oneshot::channel();
            // Proposals and endorsement answers change nothing durable where they arrive
            // until a decided proposal commits (a proposal lost with a crash is proposed
            // again), so their delivery is let go as soon as they are queued: held until
            // the job's group was committed, each answer would hold the endorser's ordered
            // sender for a commit, and one endorser's answers (to proposals of different
            // states) would be decided one commit apart.
            let hold = !matches!(item, Inbound::Propose(_) | Inbound::Endorsement(_));
            let job = match item {
                Inbound::Sequence(intent) => Pending::Sequence {
                    from: Some(from.clone()),
                    signed: ctx.vet(intent.signed),
                    disclosures: intent.disclosures,
                    reply: tx,
                },
                Inbound::Replicate(change) => Pending::Replicate {
                    from: from.clone(),
                    change: ctx.vet_change(change),
                    reply: tx,
                },
                Inbound::Rejected(r) => Pending::Ready(Box::new(Job {
                    kind: JobKind::Rejected {
                        from: from.clone(),
                        signed: r.signed,
                        reason: r.reason,
                        receipt: r.receipt,
                    },
                    reply: Some(tx),
                })),
                Inbound::Propose(proposal) => Pending::Endorse {
                    from: from.clone(),
                    change: ctx.vet_change(Box::new(proposal.as_change())),
                    reply: tx,
                },
                Inbound::Endorsement(answer) => Pending::Ready(Box::new(Job {
                    kind: JobKind::Endorsement {
                        from: from.clone(),
                        answer,
                    },
                    reply: Some(tx),
                })),
                Inbound::Refused(IntentRefused { event, reason }) => {
                    warn!(%event, peer = %from, reason = reason.code(), "intent refused by its sequencing node");
                    ctx.resolve(&event, Ok(Verdict::Refused { event, reason }));
                    continue;
                }
                Inbound::Resequence { event, above } => {
                    // Never refused for a taken sequence: build it again above `above`.
                    ctx.note_origin_used(above.0);
                    let Some((waiter, resubmit)) = ctx.take_waiter(&event) else {
                        debug!(%event, peer = %from, "re-sequence request for an intent nobody waits for");
                        continue;
                    };
                    let Some(Resubmit { actor, intent }) = resubmit else {
                        warn!(%event, peer = %from, "intent cannot be built again; refused");
                        let reason = sst_core::RejectReason::InvalidPayload {
                            path: "$.origin_seq".into(),
                            reason: format!("origin sequence taken on {from}"),
                        };
                        if waiter.send(Ok(Verdict::Refused { event, reason })).is_err() {
                            debug!(%event, "the caller stopped waiting for this outcome");
                        }
                        continue;
                    };
                    debug!(%event, peer = %from, above = above.0, "re-sequencing a forwarded intent");
                    let job = Job {
                        kind: JobKind::Local {
                            actor,
                            intent,
                            prepared: None,
                            resequenced: 1,
                        },
                        reply: Some(waiter),
                    };
                    if jobs.send(Pending::Ready(Box::new(job))).await.is_err() {
                        debug!(node = %ctx.id(), "sequencer stopped; inbox closes");
                        return;
                    }
                    continue;
                }
            };
            if jobs.send(job).await.is_err() {
                debug!(node = %ctx.id(), "sequencer stopped; inbox closes");
                return;
            }
            if hold {
                replies.push(rx);
            } else {
                detached.push(rx);
            }
        }
        if !detached.is_empty() {
            let peer = from.clone();
            tokio::spawn(async move {
                for rx in detached {
                    log_verdict(&peer, rx.await);
                }
            });
        }
        if replies.is_empty() {
            continue;
        }
        // The delivery (and its receipt) lives until its jobs are done; the next message is
        // queued meanwhile so the sequencer can group-commit them.
        let peer = from.clone();
        tokio::spawn(async move {
            for rx in replies {
                log_verdict(&peer, rx.await);
            }
            drop(receipt);
        });
    }
}

/// Logs what became of a job made from a peer's message (refusals are never silent).
fn log_verdict(
    peer: &NodeId,
    verdict: Result<Result<Verdict, crate::NodeError>, oneshot::error::RecvError>,
) {
    match verdict {
        Ok(Ok(Verdict::Refused { event, reason })) => {
            let quiet = match &reason {
                // A gap is caught up; a taken origin sequence is re-sequenced by its origin.
                sst_core::RejectReason::StaleBase { .. } => true,
                sst_core::RejectReason::InvalidPayload { path, .. } => path == "$.origin_seq",
                _ => false,
            };
            if quiet {
                debug!(%event, %peer, reason = reason.code(), "message from a peer not applied (yet)");
            } else {
                warn!(%event, %peer, reason = reason.code(), detail = ?reason, "change from a peer refused");
            }
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!(%peer, error = %e, "message from a peer failed"),
        Err(_) => debug!(%peer, "message handled without a verdict (or the node stopped first)"),
    }
}
