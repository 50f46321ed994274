//! Sync protocols. [`SyncProtocol`] decides who sequences a state's events and what goes to
//! whom after a commit; several protocols can run side by side (each [`handles`] some
//! contracts). [`HomeSync`] is the default:
//!
//! - the **home node** of a state is the node that created it; it sequences every event of
//!   the state (race-free: one writer decides the order, stale bases are rejected);
//! - other nodes forward intents to it ([`Message::Intent`]) with the plaintext of what they
//!   write;
//! - after commit (outbox), it sends each participant node (the nodes of the state's
//!   parties) the applied change **redacted to what that node may read**: salt + value of
//!   readable sections, hashes only for the rest ([`Message::Applied`]); rejections go back
//!   to the initiating node ([`Message::Rejected`]);
//! - a receiver checks the signature, actor, contract, base (version and root), and the
//!   writer's permissions, rebuilds the version and compares the root with the home's;
//!   a version gap (a missed message) triggers a [`Message::CatchUp`] from the home node,
//!   which resends the missing versions in order. Origin sequences are unique per origin
//!   node in every store, so a replayed or re-sequenced event never lands twice;
//! - applied actor changes (key rotations, revocations: [`sst_core::EventKind::ActorChange`])
//!   are sequenced by the actor's own node and sent to **every** peer node, which checks
//!   them against the key valid before the change and records them; a catch-up answer
//!   relays every actor change the answering node recorded first, in log order;
//! - a restarted node sends [`Message::Hello`] and [`Message::CatchUp`] to its peers, so
//!   both what it missed and what it committed but had not yet published are delivered.
//!
//! [`handles`]: SyncProtocol::handles

use std::collections::BTreeMap;

use async_trait::async_trait;
use sst_core::{
    ContractRef, EventFilter, EventKind, EventRecord, NodeId, OriginSeq, Outcome, OutcomeKind,
    State, StateId,
};

use crate::error::NodeError;
use crate::message::{AppliedChange, Message};
use crate::node::NodeContext;

/// A synchronisation protocol between nodes.
#[async_trait]
pub trait SyncProtocol: Send + Sync {
    /// Protocol name.
    fn name(&self) -> &'static str;

    /// Whether this protocol synchronises states of `contract`.
    fn handles(&self, _contract: &ContractRef) -> bool {
        true
    }

    /// Messages to send after `item` was committed on `ctx`'s node because that node
    /// sequenced it (outbox: never called before the commit).
    ///
    /// # Errors
    /// Store errors while reading what to send.
    async fn outbound(
        &self,
        ctx: &NodeContext,
        item: &sst_core::CommitItem,
    ) -> Result<Vec<(NodeId, Message)>, NodeError>;

    /// Messages answering `peer`'s catch-up request.
    ///
    /// # Errors
    /// Store errors.
    async fn catch_up(
        &self,
        ctx: &NodeContext,
        peer: &NodeId,
        held: &BTreeMap<StateId, u64>,
        own_after: OriginSeq,
    ) -> Result<Vec<Message>, NodeError>;

    /// Messages telling `peer` what became of an event it sent again (a replay).
    ///
    /// # Errors
    /// Store errors.
    async fn replay(
        &self,
        ctx: &NodeContext,
        record: &EventRecord,
        peer: &NodeId,
    ) -> Result<Vec<Message>, NodeError>;
}

/// The default protocol: per-state home node sequencing with redacted distribution.
#[derive(Debug, Clone, Copy, Default)]
pub struct HomeSync;

impl HomeSync {
    /// The applied change as `node` may see it.
    fn applied_for(
        ctx: &NodeContext,
        record: &EventRecord,
        state: &State,
        node: &NodeId,
    ) -> Option<Message> {
        let policy = ctx.policy(&state.contract)?;
        let readable = ctx.node_access(node, &policy, &state.parties).read;
        let effects = record
            .disclosures
            .keys()
            .filter_map(|n| state.sections.get(n).map(|s| (n.clone(), s.hash)))
            .collect();
        let disclosures = record
            .disclosures
            .iter()
            .filter(|(n, _)| readable.contains(*n))
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect();
        Some(Message::Applied(Box::new(AppliedChange {
            signed: record.signed.clone(),
            disclosures,
            effects,
            version: state.version,
            root: state.root,
        })))
    }

    /// An applied actor change as broadcast to every peer (no disclosures, version 0).
    fn actor_change(record: &EventRecord, version: u64, root: sst_core::StateRoot) -> Message {
        Message::Applied(Box::new(AppliedChange {
            signed: record.signed.clone(),
            disclosures: BTreeMap::new(),
            effects: BTreeMap::new(),
            version,
            root,
        }))
    }

    fn is_home(ctx: &NodeContext, state: &State, home: Option<&NodeId>) -> bool {
        let _ = state;
        home == Some(ctx.id())
    }
}

#[async_trait]
impl SyncProtocol for HomeSync {
    fn name(&self) -> &'static str {
        "home-sequencer"
    }

    async fn outbound(
        &self,
        ctx: &NodeContext,
        item: &sst_core::CommitItem,
    ) -> Result<Vec<(NodeId, Message)>, NodeError> {
        let record = &item.event;
        let e = record.event();
        let mut out = Vec::new();
        match (&record.outcome, &item.state) {
            (Outcome::Applied { .. }, Some(state)) => {
                for node in ctx.participants(&state.parties) {
                    if node == *ctx.id() {
                        continue;
                    }
                    if let Some(m) = Self::applied_for(ctx, record, state, &node) {
                        out.push((node, m));
                    }
                }
            }
            (Outcome::Applied { version, root }, None) if e.kind == EventKind::ActorChange => {
                // Key rotations and revocations concern every node.
                for node in ctx.peers() {
                    out.push((node, Self::actor_change(record, *version, *root)));
                }
            }
            (Outcome::Rejected { reason }, _) if e.origin_node != *ctx.id() => {
                out.push((
                    e.origin_node.clone(),
                    Message::Rejected {
                        signed: record.signed.clone(),
                        reason: reason.clone(),
                    },
                ));
            }
            _ => {}
        }
        Ok(out)
    }

    async fn catch_up(
        &self,
        ctx: &NodeContext,
        peer: &NodeId,
        held: &BTreeMap<StateId, u64>,
        own_after: OriginSeq,
    ) -> Result<Vec<Message>, NodeError> {
        let store = ctx.store();
        // Every actor change recorded here first, in log order (relayed, whoever sequenced
        // it): the versions below may be signed with the keys they install.
        let mut out: Vec<Message> = store
            .events(&EventFilter {
                kind: Some(EventKind::ActorChange),
                outcome: Some(OutcomeKind::Applied),
                ..Default::default()
            })
            .await?
            .iter()
            .filter_map(|rec| match rec.outcome {
                Outcome::Applied { version, root } => Some(Self::actor_change(rec, version, root)),
                Outcome::Rejected { .. } => None,
            })
            .collect();
        for id in store.state_ids().await? {
            let Some(latest) = store.state(&id).await? else {
                continue;
            };
            if !self.handles(&latest.contract)
                || !Self::is_home(ctx, &latest, ctx.home_of(&id).await?.as_ref())
                || !ctx.participants(&latest.parties).contains(peer)
            {
                continue;
            }
            let from = held.get(&id).copied().unwrap_or(0);
            for v in from + 1..=latest.version {
                let Some(s) = store.state_at(&id, v).await? else {
                    break;
                };
                let Some(ev) = s.last_event else { break };
                let Some(rec) = store.event(&ev).await? else {
                    break;
                };
                if let Some(m) = Self::applied_for(ctx, &rec, &s, peer) {
                    out.push(m);
                }
            }
        }
        if own_after.0 < u64::MAX {
            let rejected = store
                .events(&EventFilter {
                    origin_node: Some(peer.clone()),
                    after_origin_seq: Some(own_after),
                    outcome: Some(OutcomeKind::Rejected),
                    ..Default::default()
                })
                .await?;
            for rec in rejected {
                if let Outcome::Rejected { reason } = &rec.outcome {
                    out.push(Message::Rejected {
                        signed: rec.signed.clone(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn replay(
        &self,
        ctx: &NodeContext,
        record: &EventRecord,
        peer: &NodeId,
    ) -> Result<Vec<Message>, NodeError> {
        let e = record.event();
        match &record.outcome {
            Outcome::Rejected { reason } => Ok(vec![Message::Rejected {
                signed: record.signed.clone(),
                reason: reason.clone(),
            }]),
            Outcome::Applied { version, .. } => {
                let state = if e.kind == EventKind::Create || *version > 0 {
                    ctx.store().state_at(&e.state_id, *version).await?
                } else {
                    None
                };
                Ok(state
                    .filter(|s| ctx.participants(&s.parties).contains(peer))
                    .and_then(|s| Self::applied_for(ctx, record, &s, peer))
                    .into_iter()
                    .collect())
            }
        }
    }
}
