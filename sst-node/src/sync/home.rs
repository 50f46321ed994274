//! [`HomeSync`], the default sync protocol (name `home`), with its messages
//! ([`HomeMessage`]) and receive rules:
//!
//! - the **home node** of a state is the node that created it; it sequences every event of
//!   the state (race-free: one writer decides the order, stale bases are rejected);
//! - other nodes forward intents to it ([`HomeMessage::Intent`]) with the plaintext of what
//!   they write;
//! - after commit (outbox), it sends each participant node (the nodes of the state's
//!   parties) the applied change **redacted to what that node may read**: salt + value of
//!   readable sections, hashes only for the rest ([`HomeMessage::Applied`]); rejections go
//!   back to the initiating node ([`HomeMessage::Rejected`]);
//! - a receiver accepts a change only from the state's home node (as the transport
//!   authenticated the sender), checks the signature, actor, contract, base (version and
//!   root), and the writer's permissions, rebuilds the version and compares the root with
//!   the home's; a version gap (a missed message) triggers a [`HomeMessage::CatchUp`] from
//!   the home node, which resends the missing versions in order. Origin sequences are unique
//!   per origin node in every store, so a replayed or re-sequenced event never lands twice;
//! - applied actor changes (key rotations, revocations: [`sst_core::EventKind::ActorChange`])
//!   are sequenced by the actor's own node and sent to **every** peer node, which checks
//!   them against the key valid before the change and records them; a catch-up answer
//!   relays every actor change the answering node recorded first, in log order;
//! - a (re)started node sends [`HomeMessage::CatchUp`] and [`HomeMessage::Hello`] to its
//!   peers, so both what it missed and what it committed but had not yet published are
//!   delivered; a peer that lost messages in an overflowing outbox gets a `Hello` too;
//! - a replica **acknowledges** what it applied ([`HomeMessage::Ack`], cumulative per state,
//!   one message per batch) and **reports what it refused** ([`HomeMessage::ChangeRefused`],
//!   after recording it on its own store); the home keeps both in its sync ledger
//!   ([`crate::Node::sync_status`], [`crate::Node::wait_for`]). A replica asks again for the
//!   versions it refused ([`HomeMessage::Resend`]) once the cause may be fixed (a contract
//!   deployed or an actor registered there); a `CatchUp` counts as an acknowledgement of the
//!   versions it lists, and a replica answers a home's `Hello` with its refusals too;
//! - **origin sequences are never reused**: a node's forwarded intents are recorded only on
//!   their home, so each peer answers a `CatchUp` with the highest origin sequence it recorded
//!   for the asking node ([`HomeMessage::OriginSeen`]) and a (re)started node sequences
//!   nothing before every reachable peer answered; should a forwarded intent still hit a
//!   taken sequence, the home asks for it again under a fresh one
//!   ([`HomeMessage::Resequence`]) instead of refusing it.
//! - **receipts and witnesses**: every applied change and rejection carries the home's signed
//!   [`sst_core::SequencingReceipt`]; a receiver refuses (records and reports, `bad_receipt`)
//!   a change whose receipt is missing, signed by another node or not verifying under the
//!   registry, and stores it unchanged otherwise. Nodes send their signed log checkpoints
//!   ([`HomeMessage::Checkpoint`]) after they sign one, first in their start handshake, and
//!   in answer to a `Hello`; the receiver witnesses them ([`NodeContext::witness`]).
//! - **state witnesses**: a replica's `Ack` carries its node-signed statement of the version
//!   and root it now holds of each acknowledged state ([`crate::StateWitness`]), and so does
//!   its `CatchUp` for each state homed at the receiver (dated before it read what it holds);
//!   a replica that refuses a change of a state it holds acknowledges what it holds too. The
//!   home verifies each statement against the node registry, compares the root with its own
//!   at that version and the version with what the replica acknowledged before
//!   ([`NodeContext::witness_state`]): a different root, or an older version stated later
//!   (a state missing from a `CatchUp` counts as version 0), raises a witness alarm naming
//!   the replica and the state. Conversely a replica raises one about the home when a change's
//!   base root, its rebuilt root, or the root of a version it already holds differs from its
//!   own copy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sst_core::{
    CommitItem, Disclosure, EventFilter, EventId, EventKind, EventRecord, NodeId, OriginSeq,
    Outcome, OutcomeKind, Refusal, RejectReason, SignedCheckpoint, SignedEvent, State, StateId,
    StateRoot, Timestamp,
};
use tracing::{debug, warn};

use super::{decode, redacted_change, Admission, Inbound, Route, SyncProtocol};
use crate::context::NodeContext;
use crate::error::NodeError;
use crate::message::{
    Acknowledged, AppliedChange, DeployPayload, ForwardedIntent, IntentRefused, ProtocolEnvelope,
    Rejection, ReplicaRefusal, StateWitness,
};

/// Messages of the home-node protocol (format version 1), carried in a
/// [`ProtocolEnvelope`] tagged `home`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    content = "body",
    rename_all = "snake_case",
    deny_unknown_fields
)]
#[non_exhaustive]
pub enum HomeMessage {
    /// An initiator forwards a signed intent (with full disclosures) to the state's home node.
    Intent(ForwardedIntent),
    /// The home node distributes an applied change (redacted for the receiver).
    Applied(Box<AppliedChange>),
    /// The home node tells the initiator its intent was rejected (and recorded as such).
    Rejected(Rejection),
    /// The home node could not record the intent at all.
    Refused(IntentRefused),
    /// A (re)started node announces itself; peers answer with a [`HomeMessage::CatchUp`] so
    /// that changes it sequenced but had not yet published reach them.
    Hello,
    /// Ask a home node for everything the sender missed: applied versions after `held` for
    /// states the sender participates in, and rejections of the sender's own intents after
    /// `own_after`.
    CatchUp {
        /// State → latest version the sender holds (absent: none).
        held: BTreeMap<StateId, u64>,
        /// Highest origin sequence of the sender that it has recorded.
        own_after: OriginSeq,
        /// The sender's signed statements of the version and root it holds of each state
        /// homed at the receiver (the receiver witnesses them).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        witness: Vec<StateWitness>,
        /// When the sender started reading what it holds: a state homed at the receiver and
        /// missing from `held` counts as a statement of version 0 made then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<Timestamp>,
    },
    /// Ask a home node for the versions after the given one of exactly these states (a gap,
    /// or a retry of refused changes).
    Resend {
        /// State → latest version the sender holds (0: none).
        states: BTreeMap<StateId, u64>,
    },
    /// A replica acknowledges the versions it holds (cumulative per state).
    Ack(Acknowledged),
    /// A replica could not apply a change the home sent, and recorded why.
    ChangeRefused(ReplicaRefusal),
    /// Answer to a [`HomeMessage::CatchUp`]: the highest origin sequence of the asking node
    /// that the answering node recorded (its forwarded intents are recorded only there).
    OriginSeen {
        /// That sequence (0: none).
        last: OriginSeq,
    },
    /// A node's latest signed log checkpoint, sent after it signs one and in the start
    /// handshake (and in answer to a `Hello`): the receiver verifies it against the node
    /// registry and compares it with the latest it witnessed from the sender.
    Checkpoint(SignedCheckpoint),
    /// The home found the origin sequence of a forwarded intent taken by another event of
    /// the same origin node: the origin builds the intent again with a sequence above `above`.
    Resequence {
        /// The intent as forwarded.
        event: EventId,
        /// The highest origin sequence of the origin node recorded by the home.
        above: OriginSeq,
    },
}

impl HomeMessage {
    /// This message in its envelope.
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when it cannot be represented as JSON.
    pub fn envelope(&self) -> Result<ProtocolEnvelope, NodeError> {
        super::wrap(HomeSync::NAME, HomeSync::VERSION, self)
    }
}

/// What a node holds at one moment: when it started reading, and per state its version, root
/// and home node (if known).
struct Held {
    at: Timestamp,
    states: BTreeMap<StateId, (u64, StateRoot, Option<NodeId>)>,
}

/// How long a replica waits for the answer to a gap request before it asks again for the
/// same missing versions (a lost answer is asked for again; a burst of out-of-order
/// deliveries does not make the home resend the same versions once per delivery).
const GAP_RETRY: Duration = Duration::from_millis(500);

/// The default protocol: per-state home node sequencing with redacted distribution.
#[derive(Debug, Default)]
pub struct HomeSync {
    /// State → (version held when the missing versions were asked for, when).
    asked: Mutex<HashMap<StateId, (u64, Instant)>>,
}

impl HomeSync {
    /// The protocol name.
    pub const NAME: &'static str = "home";
    /// Version of its message format.
    pub const VERSION: u16 = 1;

    /// Whether this protocol's messages carry the committed changes, catch-up and handshake
    /// of states on `protocol`: its own, and those of [`super::EndorsedSync`], which adds
    /// endorsement before the commit to the same mechanics.
    pub fn carries(protocol: &str) -> bool {
        protocol == Self::NAME || protocol == super::EndorsedSync::NAME
    }

    /// Whether to ask the home for the versions of `state` after `held` now.
    pub(super) fn should_ask(&self, state: &StateId, held: u64) -> bool {
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match asked.get(state) {
            Some((h, at)) if *h == held && now.duration_since(*at) < GAP_RETRY => false,
            _ => {
                asked.insert(state.clone(), (held, now));
                true
            }
        }
    }

    /// The applied change as `node` may see it.
    fn applied_for(
        ctx: &NodeContext,
        record: &EventRecord,
        state: &State,
        node: &NodeId,
    ) -> Option<HomeMessage> {
        redacted_change(ctx, record, state, node).map(|c| HomeMessage::Applied(Box::new(c)))
    }

    /// An applied actor change as broadcast to every peer (no disclosures, version 0).
    fn actor_change(record: &EventRecord, version: u64, root: sst_core::StateRoot) -> HomeMessage {
        HomeMessage::Applied(Box::new(AppliedChange {
            signed: record.signed.clone(),
            disclosures: BTreeMap::new(),
            effects: BTreeMap::new(),
            version,
            root,
            receipt: record.receipt.clone(),
            business_events: Vec::new(),
            endorsements: Vec::new(),
        }))
    }

    /// The rejection of `record` as its initiator learns it (with the receipt).
    fn rejection(record: &EventRecord, reason: &RejectReason) -> HomeMessage {
        HomeMessage::Rejected(Rejection {
            signed: record.signed.clone(),
            reason: reason.clone(),
            receipt: record.receipt.clone(),
        })
    }

    /// This node's latest checkpoint, as a message (none before the first one).
    fn own_checkpoint(ctx: &NodeContext) -> Option<HomeMessage> {
        ctx.own_checkpoint().map(HomeMessage::Checkpoint)
    }

    /// What this node holds: when it started reading, and per state its version, root and
    /// home node.
    async fn held_states(ctx: &NodeContext) -> Result<Held, NodeError> {
        let at = Timestamp::now();
        let mut states = BTreeMap::new();
        for id in ctx.store().state_ids().await? {
            if let Some(s) = ctx.store().state(&id).await? {
                let home = ctx.home_of(&id).await?;
                states.insert(id, (s.version, s.root, home));
            }
        }
        Ok(Held { at, states })
    }

    /// What this node holds (`held`), as a catch-up request to `peer`: with a signed
    /// statement of each state homed at `peer`.
    async fn catch_up_request(
        ctx: &NodeContext,
        held: &Held,
        peer: &NodeId,
    ) -> Result<HomeMessage, NodeError> {
        let witness = held
            .states
            .iter()
            .filter(|(_, (_, _, home))| home.as_ref() == Some(peer))
            .map(|(id, (version, root, _))| ctx.state_witness(id, *version, *root, held.at))
            .collect();
        Ok(HomeMessage::CatchUp {
            held: held
                .states
                .iter()
                .map(|(id, (version, _, _))| (id.clone(), *version))
                .collect(),
            own_after: ctx.store().last_origin_seq(ctx.id()).await?,
            witness,
            at: Some(held.at),
        })
    }

    /// A request for the versions of `state` after `held` only (no rejections).
    pub(super) fn gap_request(state: &StateId, held: u64) -> HomeMessage {
        HomeMessage::Resend {
            states: BTreeMap::from([(state.clone(), held)]),
        }
    }

    /// Messages answering `peer`'s catch-up request: every state homed here that `peer`
    /// participates in (`only`: just these), the versions after those it `held`; with the
    /// latest version read of each of those states. `stated`: the request's signed
    /// statements and date, witnessed first (a state missing from `held` is stated as
    /// version 0).
    async fn catch_up(
        &self,
        ctx: &NodeContext,
        peer: &NodeId,
        held: &BTreeMap<StateId, u64>,
        own_after: OriginSeq,
        only: bool,
        stated: Option<(&[StateWitness], Timestamp)>,
    ) -> Result<(Vec<HomeMessage>, BTreeMap<StateId, u64>), NodeError> {
        let store = ctx.store();
        // Every actor change recorded here first, in log order (relayed, whoever sequenced
        // it): the versions below may be signed with the keys they install; then every
        // contract deployment recorded here (the versions below may name those contracts).
        let mut out: Vec<HomeMessage> = Vec::new();
        for kind in [EventKind::ActorChange, EventKind::DeployContract] {
            let recorded = store
                .events(&EventFilter {
                    kind: Some(kind),
                    outcome: Some(OutcomeKind::Applied),
                    ..Default::default()
                })
                .await?;
            out.extend(recorded.iter().filter_map(|rec| match rec.outcome {
                Outcome::Applied { version, root } => Some(Self::actor_change(rec, version, root)),
                Outcome::Rejected { .. } => None,
            }));
        }
        let mut read = BTreeMap::new();
        let ids = if only {
            held.keys().cloned().collect()
        } else {
            store.state_ids().await?
        };
        for id in ids {
            let Some(latest) = store.state(&id).await? else {
                continue;
            };
            if !Self::carries(ctx.protocol_of(&latest.contract))
                || ctx.home_of(&id).await?.as_ref() != Some(ctx.id())
                || !ctx.participants(&latest.parties).contains(peer)
            {
                continue;
            }
            let from = held.get(&id).copied().unwrap_or(0);
            if let Some((witness, at)) = stated {
                match witness.iter().find(|w| w.state_id == id) {
                    Some(w) => ctx.witness_state(peer, w).await,
                    None if from == 0 => ctx.note_statement(peer, &id, 0, at),
                    None => {
                        debug!(node = %ctx.id(), %peer, state = %id, "catch-up without a statement of a held state")
                    }
                }
            }
            // What the peer says it holds counts as its acknowledgement.
            ctx.note_ack(peer, &id, from.min(latest.version));
            out.extend(Self::versions_for(ctx, &id, from, latest.version, peer).await?);
            read.insert(id, latest.version.max(from));
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
                    out.push(Self::rejection(&rec, reason));
                }
            }
        }
        Ok((out, read))
    }

    /// Sends `peer` the answer to its catch-up request, then the versions of the same
    /// states committed since the answer was read, until none were. The answer is read and
    /// queued here while the sequencer keeps committing and queuing `Applied` messages: a
    /// version committed after the read can be queued *before* the answer, reach the peer
    /// while it still lacks the versions it builds on, and be dropped as a gap the peer has
    /// already asked about (it asks once per [`GAP_RETRY`]). Every version queued before the
    /// answer's last message is therefore part of the answer, so the peer catches up to the
    /// latest version without asking again.
    async fn answer(
        &self,
        ctx: &NodeContext,
        peer: &NodeId,
        (messages, mut read): (Vec<HomeMessage>, BTreeMap<StateId, u64>),
    ) -> Result<(), NodeError> {
        for m in messages {
            ctx.send(peer, m.envelope()?);
        }
        loop {
            let mut more = false;
            for (id, upto) in &mut read {
                let Some(latest) = ctx.store().state(id).await? else {
                    continue;
                };
                if latest.version <= *upto {
                    continue;
                }
                for m in Self::versions_for(ctx, id, *upto, latest.version, peer).await? {
                    ctx.send(peer, m.envelope()?);
                }
                debug!(
                    node = %ctx.id(), %peer, state = %id, from = *upto + 1, to = latest.version,
                    "versions committed while answering a catch-up sent too"
                );
                *upto = latest.version;
                more = true;
            }
            if !more {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl SyncProtocol for HomeSync {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn version(&self) -> u16 {
        Self::VERSION
    }

    async fn route(&self, ctx: &NodeContext, signed: &SignedEvent) -> Result<Route, NodeError> {
        let e = &signed.event;
        if matches!(
            e.kind,
            EventKind::Create | EventKind::ActorChange | EventKind::DeployContract
        ) {
            return Ok(Route::Here);
        }
        match ctx.home_of(&e.state_id).await? {
            Some(home) if home == *ctx.id() => Ok(Route::Here),
            Some(home) => Ok(Route::Forward(home)),
            None => Err(NodeError::Invalid(format!(
                "state {} is unknown on node {}",
                e.state_id,
                ctx.id()
            ))),
        }
    }

    fn forward(
        &self,
        signed: &SignedEvent,
        disclosures: &BTreeMap<String, Disclosure>,
    ) -> Result<ProtocolEnvelope, NodeError> {
        HomeMessage::Intent(ForwardedIntent {
            signed: signed.clone(),
            disclosures: disclosures.clone(),
        })
        .envelope()
    }

    async fn receive(
        &self,
        ctx: &NodeContext,
        from: &NodeId,
        envelope: &ProtocolEnvelope,
    ) -> Result<Vec<Inbound>, NodeError> {
        Ok(match decode::<HomeMessage>(envelope)? {
            HomeMessage::Intent(intent) => vec![Inbound::Sequence(intent)],
            HomeMessage::Applied(change) => vec![Inbound::Replicate(change)],
            HomeMessage::Rejected(rejection) => vec![Inbound::Rejected(rejection)],
            HomeMessage::Refused(refusal) => vec![Inbound::Refused(refusal)],
            HomeMessage::Hello => {
                // Intents forwarded to it before it (re)started and still undecided.
                ctx.forward_again(from);
                // The (re)started node witnesses this node's log too.
                if let Some(m) = Self::own_checkpoint(ctx) {
                    ctx.send(from, m.envelope()?);
                }
                let held = Self::held_states(ctx).await?;
                let request = Self::catch_up_request(ctx, &held, from).await?;
                ctx.send(from, request.envelope()?);
                // A restarted home learns again why this node is behind.
                for r in Self::stored_refusals(ctx).await {
                    if &r.from_node == from {
                        let m = HomeMessage::ChangeRefused(ReplicaRefusal::from(&r));
                        ctx.send(from, m.envelope()?);
                    }
                }
                Vec::new()
            }
            HomeMessage::CatchUp {
                held,
                own_after,
                witness,
                at,
            } => {
                let last = ctx.store().last_origin_seq(from).await?;
                ctx.send(from, HomeMessage::OriginSeen { last }.envelope()?);
                let stated = at.map(|at| (witness.as_slice(), at));
                let answer = self
                    .catch_up(ctx, from, &held, own_after, false, stated)
                    .await?;
                self.answer(ctx, from, answer).await?;
                Vec::new()
            }
            HomeMessage::Resend { states } => {
                let none = OriginSeq(u64::MAX);
                let answer = self.catch_up(ctx, from, &states, none, true, None).await?;
                self.answer(ctx, from, answer).await?;
                Vec::new()
            }
            HomeMessage::Ack(ack) => {
                for (state, version) in &ack.validated {
                    if ctx.home_of(state).await?.as_ref() == Some(ctx.id()) {
                        ctx.note_validated_by(from, state, *version);
                    }
                }
                for w in &ack.witness {
                    if ctx.home_of(&w.state_id).await?.as_ref() == Some(ctx.id()) {
                        ctx.witness_state(from, w).await;
                    }
                }
                for (state, version) in &ack.states {
                    if ack.witness.iter().any(|w| &w.state_id == state) {
                        continue;
                    }
                    if ctx.home_of(state).await?.as_ref() == Some(ctx.id()) {
                        ctx.note_ack(from, state, *version);
                    }
                }
                Vec::new()
            }
            HomeMessage::ChangeRefused(r) => {
                if ctx.home_of(&r.state_id).await?.as_ref() == Some(ctx.id()) {
                    warn!(
                        node = %ctx.id(), peer = %from, event = %r.event, state = %r.state_id,
                        version = r.version, reason = r.reason.code(), detail = ?r.reason,
                        "participant node refused a change"
                    );
                    ctx.note_peer_refusal(from, r);
                } else if DeployPayload::is_deploy_state(&r.state_id) {
                    // A deployment this node sent (sequenced or relayed) that the peer could
                    // not install: visible here too, not only on the peer.
                    warn!(
                        node = %ctx.id(), peer = %from, event = %r.event, deployment = %r.state_id,
                        reason = r.reason.code(), detail = ?r.reason,
                        "participant node refused a contract deployment"
                    );
                } else {
                    debug!(peer = %from, event = %r.event, state = %r.state_id, "refusal of a state not homed here ignored");
                }
                Vec::new()
            }
            HomeMessage::OriginSeen { last } => {
                ctx.note_origin_used(last.0);
                ctx.answered(from);
                Vec::new()
            }
            HomeMessage::Checkpoint(cp) => {
                ctx.witness(from, cp).await;
                Vec::new()
            }
            HomeMessage::Resequence { event, above } => vec![Inbound::Resequence { event, above }],
        })
    }

    async fn admit(
        &self,
        ctx: &NodeContext,
        from: &NodeId,
        ch: &AppliedChange,
        current: Option<&State>,
    ) -> Result<Admission, NodeError> {
        let e = &ch.signed.event;
        let home = ctx.home_of_event(e).await?;
        let held = current.map_or(0, |s| s.version);
        let catch_up = |held: u64| -> Result<Admission, NodeError> {
            let mut send = Vec::new();
            if self.should_ask(&e.state_id, held) {
                send.push((
                    from.clone(),
                    Self::gap_request(&e.state_id, held).envelope()?,
                ));
            }
            Ok(Admission::CatchUp { send })
        };
        if home.is_none() && e.kind != EventKind::Create {
            // We missed (or refused) the create: ask the sender (the home) for the state.
            return catch_up(held);
        }
        if home.as_ref() != Some(from) {
            return Ok(Admission::Ignore {
                reason: RejectReason::InvalidPayload {
                    path: "$.from".into(),
                    reason: format!("node {from} is not the home node of {}", e.state_id),
                },
            });
        }
        if ch.version <= held {
            // Already applied (duplicate delivery or catch-up overlap): nothing to do, but the
            // home announces the root of a version held here: it must be this node's.
            let ours = match current {
                Some(s) if s.version == ch.version => Some(s.root),
                _ => ctx
                    .store()
                    .state_at(&e.state_id, ch.version)
                    .await?
                    .map(|s| s.root),
            };
            if let Some(ours) = ours.filter(|r| *r != ch.root) {
                ctx.state_diverged(from, &e.state_id, ch.version, Some(ours), ch.root);
            }
            return Ok(Admission::Duplicate);
        }
        if ch.version > held + 1 {
            return catch_up(held);
        }
        Ok(Admission::Apply)
    }

    async fn outbound(
        &self,
        ctx: &NodeContext,
        item: &CommitItem,
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
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
                        out.push((node, m.envelope()?));
                    }
                }
            }
            (Outcome::Applied { version, root }, None)
                if matches!(e.kind, EventKind::ActorChange | EventKind::DeployContract) =>
            {
                // Key rotations, revocations and deployments concern every node.
                let m = Self::actor_change(record, *version, *root).envelope()?;
                for node in ctx.peers() {
                    out.push((node, m.clone()));
                }
            }
            (Outcome::Rejected { reason }, _) if e.origin_node != *ctx.id() => {
                let m = Self::rejection(record, reason);
                out.push((e.origin_node.clone(), m.envelope()?));
                if let RejectReason::StaleBase {
                    expected_version,
                    found_version,
                } = reason
                {
                    // The initiator built on an old version: send it what it lacks, so that
                    // its next attempt starts from the current one.
                    for m in Self::versions_for(
                        ctx,
                        &e.state_id,
                        *expected_version,
                        *found_version,
                        &e.origin_node,
                    )
                    .await?
                    {
                        out.push((e.origin_node.clone(), m.envelope()?));
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    async fn replay(
        &self,
        ctx: &NodeContext,
        record: &EventRecord,
        peer: &NodeId,
    ) -> Result<Vec<ProtocolEnvelope>, NodeError> {
        let e = record.event();
        let message = match &record.outcome {
            Outcome::Rejected { reason } => Some(Self::rejection(record, reason)),
            Outcome::Applied { version, .. } => {
                let state = if e.kind == EventKind::Create || *version > 0 {
                    ctx.store().state_at(&e.state_id, *version).await?
                } else {
                    None
                };
                state
                    .filter(|s| ctx.participants(&s.parties).contains(peer))
                    .and_then(|s| Self::applied_for(ctx, record, &s, peer))
            }
        };
        message.iter().map(HomeMessage::envelope).collect()
    }

    fn refused(
        &self,
        event: EventId,
        reason: &RejectReason,
    ) -> Result<ProtocolEnvelope, NodeError> {
        HomeMessage::Refused(IntentRefused {
            event,
            reason: reason.clone(),
        })
        .envelope()
    }

    async fn start(&self, ctx: &NodeContext) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
        let held = Self::held_states(ctx).await?;
        let hello = HomeMessage::Hello.envelope()?;
        // Peers witness this node's log head first: a node restarted on a truncated
        // database is caught before it sequences anything.
        let checkpoint = Self::own_checkpoint(ctx)
            .map(|m| m.envelope())
            .transpose()?;
        let peers = ctx.peers();
        // Nothing is sequenced before each reachable peer said which origin sequences of
        // this node it recorded (an answer to the catch-up request).
        ctx.expect_answers(peers.clone());
        let mut out = Vec::new();
        for peer in peers {
            if let Some(cp) = &checkpoint {
                out.push((peer.clone(), cp.clone()));
            }
            let catch_up = Self::catch_up_request(ctx, &held, &peer).await?;
            out.push((peer.clone(), catch_up.envelope()?));
            out.push((peer, hello.clone()));
        }
        Ok(out)
    }

    fn witness(
        &self,
        checkpoint: &SignedCheckpoint,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        HomeMessage::Checkpoint(checkpoint.clone())
            .envelope()
            .map(Some)
    }

    fn reconnect(&self) -> Option<ProtocolEnvelope> {
        HomeMessage::Hello.envelope().ok()
    }

    fn acknowledge(
        &self,
        witnesses: &[StateWitness],
        validated: &BTreeMap<StateId, u64>,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        let ack = Acknowledged {
            states: witnesses
                .iter()
                .map(|w| (w.state_id.clone(), w.version))
                .collect(),
            witness: witnesses.to_vec(),
            validated: validated.clone(),
        };
        HomeMessage::Ack(ack).envelope().map(Some)
    }

    fn refuse_change(
        &self,
        refusal: &ReplicaRefusal,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        HomeMessage::ChangeRefused(refusal.clone())
            .envelope()
            .map(Some)
    }

    fn resequence(&self, event: EventId, above: OriginSeq) -> Result<ProtocolEnvelope, NodeError> {
        HomeMessage::Resequence { event, above }.envelope()
    }

    async fn retry(
        &self,
        ctx: &NodeContext,
        refusals: &[Refusal],
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
        let mut asks: BTreeMap<NodeId, BTreeMap<StateId, u64>> = BTreeMap::new();
        for r in refusals {
            let held = ctx
                .store()
                .state(&r.state_id)
                .await?
                .map_or(0, |s| s.version);
            asks.entry(r.from_node.clone())
                .or_default()
                .insert(r.state_id.clone(), held);
        }
        let mut out = Vec::new();
        for (home, states) in asks {
            {
                let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
                for (state, held) in &states {
                    asked.insert(state.clone(), (*held, Instant::now()));
                }
            }
            debug!(node = %ctx.id(), %home, states = states.len(), "asking again for refused changes");
            out.push((home, HomeMessage::Resend { states }.envelope()?));
        }
        Ok(out)
    }
}

impl HomeSync {
    /// The applied versions `after + 1 ..= upto` of `state` as `peer` may see them (none when
    /// it does not participate).
    async fn versions_for(
        ctx: &NodeContext,
        state: &StateId,
        after: u64,
        upto: u64,
        peer: &NodeId,
    ) -> Result<Vec<HomeMessage>, NodeError> {
        let store = ctx.store();
        let mut out = Vec::new();
        for v in after + 1..=upto {
            let Some(s) = store.state_at(state, v).await? else {
                break;
            };
            if !ctx.participants(&s.parties).contains(peer) {
                break;
            }
            let Some(ev) = s.last_event else { break };
            let Some(rec) = store.event(&ev).await? else {
                break;
            };
            out.extend(Self::applied_for(ctx, &rec, &s, peer));
        }
        Ok(out)
    }

    /// This node's recorded refusals (none, logged, when the store cannot list them).
    async fn stored_refusals(ctx: &NodeContext) -> Vec<Refusal> {
        match ctx.store().refusals(None).await {
            Ok(list) => list,
            Err(e) => {
                warn!(node = %ctx.id(), error = %e, "recorded refusals not readable");
                Vec::new()
            }
        }
    }
}
