//! [`EndorsedSync`], the second sync protocol (name `endorsed`), chosen by a contract version
//! whose descriptor says `sync: {"protocol": "endorsed", "policy": …, "timeout_ms": …}`
//! ([`sst_core::SyncSpec::Endorsed`]). A change becomes applied only once the version's
//! [`sst_core::EndorsementPolicy`] is met by participant nodes' endorsements:
//!
//! - **same home mechanics**: the state's home node (its creator) sequences its events,
//!   other nodes forward intents to it, committed changes are distributed redacted to each
//!   participant, replicas acknowledge, refuse, catch up and hand-shake exactly as in
//!   [`HomeSync`] — this protocol delegates all of that to a [`HomeSync`] and its messages
//!   (tagged `home`, so the peer's home protocol receives them and hands each change back to
//!   the protocol of its contract for admission);
//! - **proposal**: when the home's pipeline applies an event of such a contract, the
//!   sequencer does not commit it; it holds the tentative outcome open (later events of that
//!   state wait, other states keep flowing) and sends each endorser
//!   ([`sst_core::EndorsementPolicy::endorsers`] of the participant nodes of the version the
//!   event is based on) an [`EndorsedMessage::Proposal`] redacted to what it may read. The
//!   home endorses directly when it is an endorser itself;
//! - **endorsement**: an endorser validates the proposal against its own copy exactly as a
//!   replica validates a received change (signature, actor, contract, base, permissions,
//!   re-execution of a method it can read the inputs of, the root), then applies its own
//!   rule ([`crate::EndorsementGuard`]), commits nothing, and answers with its node-key
//!   [`sst_core::Endorsement`] ([`EndorsedMessage::Endorsed`]) or a typed refusal
//!   ([`EndorsedMessage::Refused`]);
//! - **decision**: once the policy is met the home commits the event `applied` with the
//!   endorsements (sorted by node) and its usual receipt, and distributes it; once refusals
//!   make it impossible, `rejected` with `not_endorsed` naming each refusing node and its
//!   reason; when `timeout_ms` passes first, `rejected` with `endorsement_timeout` naming the
//!   silent nodes. A rejection reaches the initiating node as any rejection does;
//! - **admission**: a replica applies a received change of such a contract only when its
//!   endorsements pass [`sst_core::model::check_endorsements`] under the policy of the
//!   contract version and the participants of the base version (refused `bad_receipt`
//!   otherwise), and stores them with the event.
//!
//! Its [`SyncProtocol::start`] and [`SyncProtocol::retry`] send nothing: the home protocol's
//! handshake, catch-up and requests for refused changes cover states of both protocols
//! ([`HomeSync::carries`]).
//!
//! Nothing about a proposal is recorded before its outcome: a home that stops mid-proposal
//! leaves nothing applied anywhere. An intent another node forwarded is sent again when the
//! restarted home says hello (the forwarding node keeps it until its outcome arrives); a
//! local caller's submit fails with the node and is submitted again. An endorser that is
//! behind the version a proposal builds on (counting what it has queued) refuses it
//! (`stale_base`) and asks the home for the missed changes from its sequencer.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sst_core::model::check_endorsements;
use sst_core::{
    CommitItem, ContractRef, CreatePayload, Disclosure, EndorsementPolicy, EventId, EventKind,
    EventRecord, NodeId, OriginSeq, Outcome, RejectReason, SignedEvent, State, StateId,
};
use tracing::debug;

use super::{decode, redacted_change, Admission, Inbound, Route, SyncProtocol};
use crate::context::NodeContext;
use crate::error::NodeError;
use crate::message::{
    AppliedChange, EndorsementAnswer, EndorsementGiven, EndorsementRefused, Proposal,
    ProtocolEnvelope, ReplicaRefusal, StateWitness,
};
use crate::sync::HomeSync;

/// Messages of the endorsed protocol (format version 1), carried in a [`ProtocolEnvelope`]
/// tagged `endorsed`. Everything else it sends is a [`crate::HomeMessage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    content = "body",
    rename_all = "snake_case",
    deny_unknown_fields
)]
#[non_exhaustive]
pub enum EndorsedMessage {
    /// The home node asks an endorser to endorse a tentative outcome.
    Proposal(Box<Proposal>),
    /// An endorser endorses it.
    Endorsed(EndorsementGiven),
    /// An endorser refuses it, with its reason.
    Refused(EndorsementRefused),
}

impl EndorsedMessage {
    /// This message in its envelope.
    ///
    /// # Errors
    /// [`NodeError::Invalid`] when it cannot be represented as JSON.
    pub fn envelope(&self) -> Result<ProtocolEnvelope, NodeError> {
        super::wrap(EndorsedSync::NAME, EndorsedSync::VERSION, self)
    }
}

/// The endorsed protocol: the home-node protocol's mechanics, with a change committed only
/// once participant nodes endorsed it (see the module docs).
#[derive(Debug, Default)]
pub struct EndorsedSync {
    /// Routing, distribution, admission of the sequence, catch-up: the home mechanics.
    home: HomeSync,
}

impl EndorsedSync {
    /// The protocol name.
    pub const NAME: &'static str = "endorsed";
    /// Version of its message format.
    pub const VERSION: u16 = 1;

    /// Checks the endorsements `change` carries against the policy of its contract version
    /// (installed here) and the participant nodes of the version it builds on (`current`;
    /// for a create, of the state it creates).
    ///
    /// # Errors
    /// [`RejectReason::BadReceipt`] naming what does not hold.
    pub fn check_change(
        ctx: &NodeContext,
        change: &AppliedChange,
        current: Option<&State>,
    ) -> Result<(), RejectReason> {
        let e = &change.signed.event;
        let Some((policy, _)) = ctx.endorsement_of(&e.contract) else {
            // Not installed here (or not endorsed): the pipeline names what is wrong.
            return Ok(());
        };
        let parties = match (e.kind, current) {
            (EventKind::Create, _) => match CreatePayload::from_payload(&e.payload) {
                Ok(p) => p.parties,
                // Malformed: the pipeline refuses it with the payload's error.
                Err(_) => return Ok(()),
            },
            (_, Some(cur)) => cur.parties.clone(),
            (_, None) => return Ok(()),
        };
        let participants = ctx.participant_roles(&parties);
        let record = EventRecord {
            signed: change.signed.clone(),
            disclosures: BTreeMap::new(),
            outcome: Outcome::Applied {
                version: change.version,
                root: change.root,
            },
            receipt: None,
            business_events: Vec::new(),
            endorsements: change.endorsements.clone(),
        };
        check_endorsements(&policy, &participants, ctx.node_registry(), &record).map_err(|err| {
            RejectReason::BadReceipt {
                detail: format!("endorsements of {} do not hold: {err}", change.signed.id),
            }
        })
    }
}

/// The message asking `home` again for the versions of `state` after `held`: sent by an
/// endorser that is behind the version a proposal builds on (counting the changes it has
/// queued), so that the next proposal finds it current. Asking at the sequencer, not when the
/// proposal arrives: under load the change a proposal builds on is usually still queued
/// there, and asking then made the home answer a catch-up request per proposal.
///
/// # Errors
/// [`NodeError::Invalid`] when the message cannot be built.
pub(crate) fn gap_request(state: &StateId, held: u64) -> Result<ProtocolEnvelope, NodeError> {
    HomeSync::gap_request(state, held).envelope()
}

#[async_trait]
impl SyncProtocol for EndorsedSync {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn version(&self) -> u16 {
        Self::VERSION
    }

    async fn route(&self, ctx: &NodeContext, signed: &SignedEvent) -> Result<Route, NodeError> {
        self.home.route(ctx, signed).await
    }

    fn forward(
        &self,
        signed: &SignedEvent,
        disclosures: &BTreeMap<String, Disclosure>,
    ) -> Result<ProtocolEnvelope, NodeError> {
        self.home.forward(signed, disclosures)
    }

    async fn receive(
        &self,
        _ctx: &NodeContext,
        from: &NodeId,
        envelope: &ProtocolEnvelope,
    ) -> Result<Vec<Inbound>, NodeError> {
        Ok(match decode::<EndorsedMessage>(envelope)? {
            EndorsedMessage::Proposal(p) => {
                debug!(peer = %from, event = %p.signed.id, state = %p.signed.event.state_id, "proposal to endorse");
                vec![Inbound::Propose(p)]
            }
            EndorsedMessage::Endorsed(g) => vec![Inbound::Endorsement(EndorsementAnswer::Given(g))],
            EndorsedMessage::Refused(r) => {
                vec![Inbound::Endorsement(EndorsementAnswer::Refused(r))]
            }
        })
    }

    async fn admit(
        &self,
        ctx: &NodeContext,
        from: &NodeId,
        change: &AppliedChange,
        current: Option<&State>,
    ) -> Result<Admission, NodeError> {
        let admission = self.home.admit(ctx, from, change, current).await?;
        if !matches!(admission, Admission::Apply) {
            return Ok(admission);
        }
        Ok(match Self::check_change(ctx, change, current) {
            Ok(()) => Admission::Apply,
            Err(reason) => Admission::Refuse {
                reason,
                send: Vec::new(),
            },
        })
    }

    async fn outbound(
        &self,
        ctx: &NodeContext,
        item: &CommitItem,
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
        self.home.outbound(ctx, item).await
    }

    async fn replay(
        &self,
        ctx: &NodeContext,
        record: &EventRecord,
        peer: &NodeId,
    ) -> Result<Vec<ProtocolEnvelope>, NodeError> {
        self.home.replay(ctx, record, peer).await
    }

    fn refused(
        &self,
        event: EventId,
        reason: &RejectReason,
    ) -> Result<ProtocolEnvelope, NodeError> {
        self.home.refused(event, reason)
    }

    /// Nothing of its own: the home protocol's handshake and catch-up carry the states of
    /// this protocol too ([`HomeSync::carries`]).
    async fn start(
        &self,
        _ctx: &NodeContext,
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
        Ok(Vec::new())
    }

    fn acknowledge(
        &self,
        witnesses: &[StateWitness],
        validated: &BTreeMap<StateId, u64>,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        self.home.acknowledge(witnesses, validated)
    }

    fn refuse_change(
        &self,
        refusal: &ReplicaRefusal,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        self.home.refuse_change(refusal)
    }

    fn resequence(&self, event: EventId, above: OriginSeq) -> Result<ProtocolEnvelope, NodeError> {
        self.home.resequence(event, above)
    }

    fn endorsement(
        &self,
        ctx: &NodeContext,
        contract: &ContractRef,
    ) -> Option<(EndorsementPolicy, u64)> {
        ctx.endorsement_of(contract)
    }

    fn propose(
        &self,
        ctx: &NodeContext,
        record: &EventRecord,
        state: &State,
        endorsers: &BTreeSet<NodeId>,
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
        let mut out = Vec::new();
        for node in endorsers {
            let Some(change) = redacted_change(ctx, record, state, node) else {
                continue;
            };
            let proposal = Proposal {
                base: change.signed.event.base,
                signed: change.signed,
                disclosures: change.disclosures,
                effects: change.effects,
                version: change.version,
                root: change.root,
                business_events: change.business_events,
            };
            out.push((
                node.clone(),
                EndorsedMessage::Proposal(Box::new(proposal)).envelope()?,
            ));
        }
        Ok(out)
    }

    fn answer_proposal(
        &self,
        answer: &EndorsementAnswer,
    ) -> Result<Option<ProtocolEnvelope>, NodeError> {
        let message = match answer {
            EndorsementAnswer::Given(g) => EndorsedMessage::Endorsed(g.clone()),
            EndorsementAnswer::Refused(r) => EndorsedMessage::Refused(r.clone()),
        };
        message.envelope().map(Some)
    }
}
