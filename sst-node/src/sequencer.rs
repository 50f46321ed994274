//! The sequencer: the one writer task of a node. It drains the job channel, runs each job
//! through the pipeline on top of the versions produced earlier in the same batch, commits
//! the whole batch in one store transaction (group commit), and only then publishes outbound
//! messages (outbox) and answers callers. Also the inbox task that turns peer messages into
//! jobs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sst_core::{
    ActorChange, Base, CommitBatch, CommitItem, Disclosure, Event, EventKind, EventRecord, NodeId,
    OriginSeq, Outcome, RejectReason, Section, SignedEvent, State, StateId, StoreError, Timestamp,
};
use tokio::sync::{mpsc, oneshot};

use crate::contract::MIGRATE_METHOD;
use crate::error::NodeError;
use crate::message::{AppliedChange, Intent, Message, Verdict};
use crate::node::NodeContext;
use crate::pipeline::{self, Eval};
use crate::transport::Inbox;

type Reply = oneshot::Sender<Result<Verdict, NodeError>>;

/// A unit of work for the sequencer.
pub(crate) struct Job {
    pub(crate) kind: JobKind,
    pub(crate) reply: Option<Reply>,
}

/// A local intent once signed: kept so that a retry reuses the same event and origin seq.
#[derive(Clone)]
pub(crate) struct Prepared {
    signed: SignedEvent,
    disclosures: BTreeMap<String, Disclosure>,
    home: NodeId,
}

pub(crate) enum JobKind {
    /// A local actor's intent.
    Local {
        actor: sst_core::ActorId,
        intent: Intent,
        prepared: Option<Box<Prepared>>,
    },
    /// A signed intent this node sequences as home (`from`: forwarding node).
    Sequence {
        from: Option<NodeId>,
        signed: SignedEvent,
        disclosures: BTreeMap<String, Disclosure>,
    },
    /// A change applied by a home node, to replicate here.
    Replicate {
        from: NodeId,
        change: Box<AppliedChange>,
    },
    /// A home node rejected one of this node's intents.
    Rejected {
        signed: SignedEvent,
        reason: RejectReason,
    },
}

/// What one job needs after the batch committed.
#[derive(Default)]
struct Planned {
    item: Option<CommitItem>,
    /// Whether this node sequenced the item (then the sync protocol publishes it).
    sequenced: bool,
    verdict: Option<Result<Verdict, NodeError>>,
    sends: Vec<(NodeId, Message)>,
    /// Forward an intent to its home and wait for the outcome coming back.
    forward: Option<(NodeId, Message, sst_core::EventId)>,
    /// An applied actor change: the new record, put in the directory after the commit.
    actor: Option<sst_core::Actor>,
}

/// States and origins produced earlier in the batch being planned.
#[derive(Default)]
struct Overlay {
    states: HashMap<StateId, State>,
}

struct Writer {
    ctx: Arc<NodeContext>,
    next_seq: u64,
}

/// The sequencer task.
pub(crate) async fn run(
    ctx: Arc<NodeContext>,
    mut rx: mpsc::Receiver<Job>,
    next_seq: u64,
    max_batch: usize,
) {
    let mut w = Writer { ctx, next_seq };
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        w.run_batch(jobs).await;
    }
}

impl Writer {
    async fn current(&self, ov: &Overlay, id: &StateId) -> Result<Option<State>, NodeError> {
        if let Some(s) = ov.states.get(id) {
            return Ok(Some(s.clone()));
        }
        Ok(self.ctx.store().state(id).await?)
    }

    /// Plans and commits the drained jobs. An applied actor change ends a group commit: the
    /// jobs after it are planned only once the directory holds the new key or status.
    async fn run_batch(&mut self, jobs: Vec<Job>) {
        let mut queue: VecDeque<Job> = jobs.into();
        while !queue.is_empty() {
            let mut ov = Overlay::default();
            let mut jobs = Vec::new();
            let mut plans = Vec::new();
            while let Some(mut job) = queue.pop_front() {
                let plan = self.plan(&mut job, &mut ov).await;
                let cut = plan.actor.is_some();
                jobs.push(job);
                plans.push(plan);
                if cut {
                    break;
                }
            }
            self.commit_group(jobs, plans).await;
        }
    }

    async fn commit_group(&mut self, jobs: Vec<Job>, plans: Vec<Planned>) {
        let items: Vec<CommitItem> = plans.iter().filter_map(|p| p.item.clone()).collect();
        match self.commit(items).await {
            Ok(()) => {
                for (job, plan) in jobs.into_iter().zip(plans) {
                    self.finish(job, plan).await;
                }
            }
            Err(CommitFailure::Logical(_)) if jobs.len() > 1 => {
                // Replay precisely: every job again on its own, against what is stored.
                for mut job in jobs {
                    let mut ov = Overlay::default();
                    let plan = self.plan(&mut job, &mut ov).await;
                    self.run_single(job, plan).await;
                }
            }
            Err(CommitFailure::Logical(e)) => {
                for (job, plan) in jobs.into_iter().zip(plans) {
                    self.run_refused(job, plan, e.to_string()).await;
                }
            }
            Err(CommitFailure::Fatal(e)) => {
                for (job, plan) in jobs.into_iter().zip(plans) {
                    Self::interrupted(job, &plan, &e);
                }
            }
        }
    }

    /// The batch's fate is unknown (the store failed for good): each caller learns which
    /// of its events to look up after a restart.
    fn interrupted(job: Job, plan: &Planned, e: &StoreError) {
        let events: Vec<_> = plan
            .item
            .as_ref()
            .map(|i| i.event.id())
            .or_else(|| plan.forward.as_ref().map(|f| f.2))
            .into_iter()
            .collect();
        if let Some(r) = job.reply {
            let _ = r.send(Err(NodeError::Interrupted {
                events,
                source: StoreError::backend("node", "commit", e.to_string()),
            }));
        }
    }

    async fn run_single(&mut self, job: Job, plan: Planned) {
        let items: Vec<CommitItem> = plan.item.iter().cloned().collect();
        match self.commit(items).await {
            Ok(()) => self.finish(job, plan).await,
            Err(CommitFailure::Logical(e)) => self.run_refused(job, plan, e.to_string()).await,
            Err(CommitFailure::Fatal(e)) => Self::interrupted(job, &plan, &e),
        }
    }

    /// The item could not be recorded at all (its origin seq is taken, or the store refused
    /// it as invalid input): tell the caller / initiator, record nothing.
    async fn run_refused(&mut self, job: Job, plan: Planned, detail: String) {
        let Some(item) = plan.item else {
            return self.finish(job, Planned { item: None, ..plan }).await;
        };
        let event = item.event.id();
        let reason = RejectReason::InvalidPayload {
            path: "$".into(),
            reason: format!("not recordable: {detail}"),
        };
        if let JobKind::Sequence {
            from: Some(from), ..
        } = &job.kind
        {
            let _ = self
                .ctx
                .transport()
                .send(
                    from,
                    Message::Refused {
                        event,
                        reason: reason.clone(),
                    },
                )
                .await;
        }
        if let Some(r) = job.reply {
            let _ = r.send(Ok(Verdict::Refused { event, reason }));
        }
    }

    async fn commit(&self, items: Vec<CommitItem>) -> Result<(), CommitFailure> {
        if items.is_empty() {
            return Ok(());
        }
        let batch = CommitBatch::new(items);
        let mut attempt = 0u32;
        loop {
            match self.ctx.store().commit(batch.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() && attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(e @ (StoreError::Conflict { .. } | StoreError::InvalidInput { .. })) => {
                    return Err(CommitFailure::Logical(e))
                }
                Err(e) => return Err(CommitFailure::Fatal(e)),
            }
        }
    }

    /// After a successful commit: remember homes, publish (outbox), answer.
    async fn finish(&mut self, job: Job, plan: Planned) {
        let ctx = self.ctx.clone();
        if let Some(actor) = plan.actor.clone() {
            // Committed: the directory follows (a failed table write is repaired at start).
            let _ = ctx.apply_actor(actor).await;
        }
        if let Some(item) = &plan.item {
            let e = item.event.event();
            if e.kind == EventKind::Create && item.state.is_some() {
                ctx.note_home(&e.state_id, &e.origin_node);
            }
            if plan.sequenced {
                if let Some(p) = ctx.protocol_for(&e.contract) {
                    match p.outbound(&ctx, item).await {
                        Ok(msgs) => {
                            for (to, m) in msgs {
                                // Outbox: a peer that is unreachable now catches up later.
                                let _ = ctx.transport().send(&to, m).await;
                            }
                        }
                        Err(_) => { /* the record is committed; peers catch up */ }
                    }
                }
            }
            let verdict = Verdict::from_outcome(item.event.id(), &item.event.outcome);
            ctx.resolve(&item.event.id(), Ok(verdict));
        }
        for (to, m) in plan.sends {
            let _ = ctx.transport().send(&to, m).await;
        }
        if let Some((to, msg, event)) = plan.forward {
            if let Some(r) = job.reply {
                ctx.wait_for(event, r);
                if let Err(e) = ctx.transport().send(&to, msg).await {
                    ctx.resolve(&event, Err(e.into()));
                }
            }
            return;
        }
        if let (Some(r), Some(v)) = (job.reply, plan.verdict) {
            let _ = r.send(v);
        }
    }

    async fn plan(&mut self, job: &mut Job, ov: &mut Overlay) -> Planned {
        match self.plan_inner(job, ov).await {
            Ok(p) => p,
            Err(e) => Planned {
                verdict: Some(Err(e)),
                ..Default::default()
            },
        }
    }

    async fn plan_inner(&mut self, job: &mut Job, ov: &mut Overlay) -> Result<Planned, NodeError> {
        match &mut job.kind {
            JobKind::Local {
                actor,
                intent,
                prepared,
            } => {
                if prepared.is_none() {
                    *prepared = Some(Box::new(self.prepare(actor, intent, ov).await?));
                }
                let Some(p) = prepared.as_deref() else {
                    return Err(NodeError::Invalid("intent could not be prepared".into()));
                };
                if p.home == *self.ctx.id() {
                    let p = p.clone();
                    self.sequence(&p.signed, &p.disclosures, ov).await
                } else {
                    Ok(Planned {
                        forward: Some((
                            p.home.clone(),
                            Message::Intent {
                                signed: p.signed.clone(),
                                disclosures: p.disclosures.clone(),
                            },
                            p.signed.id,
                        )),
                        ..Default::default()
                    })
                }
            }
            JobKind::Sequence {
                from,
                signed,
                disclosures,
            } => {
                if let Some(from) = from {
                    if *from != signed.event.origin_node {
                        let reason = RejectReason::InvalidPayload {
                            path: "$.origin_node".into(),
                            reason: format!(
                                "node {from} forwarded an intent of origin {}",
                                signed.event.origin_node
                            ),
                        };
                        return Ok(Planned {
                            sends: vec![(
                                from.clone(),
                                Message::Refused {
                                    event: signed.id,
                                    reason: reason.clone(),
                                },
                            )],
                            verdict: Some(Ok(Verdict::Refused {
                                event: signed.id,
                                reason,
                            })),
                            ..Default::default()
                        });
                    }
                }
                if let Err(err) = signed.verify_id() {
                    // The id is not the hash of the body: no store may record it as given.
                    let reason = RejectReason::BadSignature {
                        detail: err.to_string(),
                    };
                    let sends = from
                        .iter()
                        .map(|f| {
                            let m = Message::Refused {
                                event: signed.id,
                                reason: reason.clone(),
                            };
                            (f.clone(), m)
                        })
                        .collect();
                    return Ok(Planned {
                        sends,
                        verdict: Some(Ok(Verdict::Refused {
                            event: signed.id,
                            reason,
                        })),
                        ..Default::default()
                    });
                }
                if let Some(rec) = self.ctx.store().event(&signed.id).await? {
                    // A replay: nothing changes; tell the forwarder what happened first.
                    let mut sends = Vec::new();
                    if let Some(from) = from {
                        if let Some(p) = self.ctx.protocol_for(&rec.event().contract) {
                            sends = p
                                .replay(&self.ctx, &rec, from)
                                .await?
                                .into_iter()
                                .map(|m| (from.clone(), m))
                                .collect();
                        }
                    }
                    return Ok(Planned {
                        sends,
                        verdict: Some(Ok(Verdict::Duplicate {
                            event: rec.id(),
                            original: rec.outcome,
                        })),
                        ..Default::default()
                    });
                }
                let (signed, disclosures) = (signed.clone(), disclosures.clone());
                self.sequence(&signed, &disclosures, ov).await
            }
            JobKind::Replicate { from, change } => self.replicate(from, change, ov).await,
            JobKind::Rejected { signed, reason } => {
                let ok = signed.event.origin_node == *self.ctx.id() && signed.verify_id().is_ok();
                if !ok || self.ctx.store().event(&signed.id).await?.is_some() {
                    return Ok(Planned::default());
                }
                Ok(Planned {
                    item: Some(CommitItem {
                        event: EventRecord {
                            signed: signed.clone(),
                            disclosures: BTreeMap::new(),
                            outcome: Outcome::Rejected {
                                reason: reason.clone(),
                            },
                        },
                        state: None,
                    }),
                    verdict: Some(Ok(Verdict::Rejected {
                        event: signed.id,
                        reason: reason.clone(),
                    })),
                    ..Default::default()
                })
            }
        }
    }

    /// Builds and signs the event for a local intent, assigning the next origin sequence.
    async fn prepare(
        &mut self,
        actor: &sst_core::ActorId,
        intent: &Intent,
        ov: &Overlay,
    ) -> Result<Prepared, NodeError> {
        let ctx = self.ctx.clone();
        let me = ctx.id().clone();
        let local = ctx.actor(actor).is_some_and(|a| a.node == me);
        if !local {
            return Err(NodeError::NotLocal {
                actor: actor.clone(),
                node: me,
            });
        }
        let key = ctx.key(actor).ok_or_else(|| NodeError::NoKey {
            actor: actor.clone(),
            node: me.clone(),
        })?;
        let cur = self.current(ov, intent.state_id()).await?;
        let unknown = || {
            NodeError::Invalid(format!(
                "state {} is unknown on node {me}",
                intent.state_id()
            ))
        };
        let seal = |alg, sections: &BTreeMap<String, serde_json::Value>| {
            let sealed: BTreeMap<String, Section> = sections
                .iter()
                .map(|(n, v)| (n.clone(), Section::seal(alg, n, v.clone())))
                .collect();
            let hashes: serde_json::Map<String, serde_json::Value> = sealed
                .iter()
                .map(|(n, s)| (n.clone(), json!(s.hash.to_string())))
                .collect();
            let disclosures: BTreeMap<String, Disclosure> = sealed
                .into_iter()
                .filter_map(|(n, s)| s.disclosure.map(|d| (n, d)))
                .collect();
            (hashes, disclosures)
        };
        let base = cur.as_ref().map(|s| Base {
            version: s.version,
            root: s.root,
        });
        let alg = cur.as_ref().map_or(ctx.alg(), State::alg);
        let (kind, contract, base, payload, disclosures) = match intent {
            Intent::Create {
                contract,
                parties,
                sections,
                ..
            } => {
                let (hashes, d) = seal(alg, sections);
                (
                    EventKind::Create,
                    contract.clone(),
                    None,
                    json!({"parties": parties, "sections": hashes}),
                    d,
                )
            }
            Intent::Change { sections, .. } => {
                let cur = cur.as_ref().ok_or_else(unknown)?;
                let (hashes, d) = seal(alg, sections);
                (
                    EventKind::ChangeSections,
                    cur.contract.clone(),
                    base,
                    json!({ "sections": hashes }),
                    d,
                )
            }
            Intent::Call { method, args, .. } => {
                let cur = cur.as_ref().ok_or_else(unknown)?;
                (
                    EventKind::CallMethod,
                    cur.contract.clone(),
                    base,
                    json!({"method": method, "args": args}),
                    BTreeMap::new(),
                )
            }
            Intent::Migrate { to, .. } => {
                let cur = cur.as_ref().ok_or_else(unknown)?;
                (
                    EventKind::CallMethod,
                    to.clone(),
                    base,
                    json!({"method": MIGRATE_METHOD, "args": {"from": cur.contract}}),
                    BTreeMap::new(),
                )
            }
            Intent::RotateKey {
                actor: target,
                new_key,
                ..
            } => {
                let before = ctx.actor(target).ok_or_else(|| {
                    NodeError::Invalid(format!("actor {target} is unknown on node {me}"))
                })?;
                let after = sst_core::Actor {
                    public_key: *new_key,
                    ..before.clone()
                };
                actor_change(before, after)
            }
            Intent::Revoke { actor: target, .. } => {
                let before = ctx.actor(target).ok_or_else(|| {
                    NodeError::Invalid(format!("actor {target} is unknown on node {me}"))
                })?;
                let after = sst_core::Actor {
                    status: sst_core::ActorStatus::Revoked,
                    ..before.clone()
                };
                actor_change(before, after)
            }
        };
        let home = if matches!(kind, EventKind::Create | EventKind::ActorChange) {
            me.clone()
        } else {
            ctx.home_of(intent.state_id()).await?.ok_or_else(unknown)?
        };
        let event = Event {
            kind,
            state_id: intent.state_id().clone(),
            contract,
            base,
            origin_node: me,
            origin_seq: OriginSeq(self.next_seq),
            actor: actor.clone(),
            payload,
            timestamp: Timestamp::now(),
            alg,
        };
        self.next_seq += 1;
        Ok(Prepared {
            signed: SignedEvent::sign(event, &key),
            disclosures,
            home,
        })
    }

    /// Runs the pipeline as the sequencing node.
    async fn sequence(
        &mut self,
        signed: &SignedEvent,
        disclosures: &BTreeMap<String, Disclosure>,
        ov: &mut Overlay,
    ) -> Result<Planned, NodeError> {
        if signed.event.kind == EventKind::ActorChange {
            let checked = if signed.event.origin_node == *self.ctx.id() {
                pipeline::check_actor_change(&self.ctx, signed)
            } else {
                Err(RejectReason::InvalidPayload {
                    path: "$.origin_node".into(),
                    reason: "an actor change is sequenced by the actor's own node".into(),
                })
            };
            return Ok(Self::actor_planned(signed, checked, true));
        }
        let cur = self.current(ov, &signed.event.state_id).await?;
        let eval = pipeline::sequence(&self.ctx, signed, disclosures, cur.as_ref());
        Ok(self.planned(signed, eval, ov, true))
    }

    /// The commit item of a checked actor change: applied with version 0 and no state, or
    /// rejected.
    fn actor_planned(
        signed: &SignedEvent,
        checked: Result<sst_core::Actor, RejectReason>,
        sequenced: bool,
    ) -> Planned {
        let (outcome, actor) = match checked {
            Ok(actor) => (
                Outcome::Applied {
                    version: 0,
                    root: ActorChange::root(signed.id),
                },
                Some(actor),
            ),
            Err(reason) => (Outcome::Rejected { reason }, None),
        };
        let verdict = Verdict::from_outcome(signed.id, &outcome);
        Planned {
            item: Some(CommitItem {
                event: EventRecord {
                    signed: signed.clone(),
                    disclosures: BTreeMap::new(),
                    outcome,
                },
                state: None,
            }),
            sequenced,
            verdict: Some(Ok(verdict)),
            actor,
            ..Default::default()
        }
    }

    /// Records an actor change broadcast by the actor's node (or relayed by any node during
    /// catch-up: the sender is not trusted, the signature is), checked against this node's
    /// directory (the keys valid before the change). Never records a rejection.
    async fn replicate_actor_change(&mut self, ch: &AppliedChange) -> Result<Planned, NodeError> {
        let id = ch.signed.id;
        let refused = |reason: RejectReason| {
            Ok(Planned {
                verdict: Some(Ok(Verdict::Refused { event: id, reason })),
                ..Default::default()
            })
        };
        if let Some(rec) = self.ctx.store().event(&id).await? {
            return Ok(Planned {
                verdict: Some(Ok(Verdict::Duplicate {
                    event: id,
                    original: rec.outcome,
                })),
                ..Default::default()
            });
        }
        if ch.version != 0 || ch.root != ActorChange::root(id) {
            return refused(RejectReason::InvalidPayload {
                path: "$.version".into(),
                reason: "an actor change is applied with version 0 and the event id as root".into(),
            });
        }
        match pipeline::check_actor_change(&self.ctx, &ch.signed) {
            Ok(actor) => Ok(Self::actor_planned(&ch.signed, Ok(actor), false)),
            Err(reason) => refused(reason),
        }
    }

    fn planned(
        &self,
        signed: &SignedEvent,
        eval: Eval,
        ov: &mut Overlay,
        sequenced: bool,
    ) -> Planned {
        let (record, state) = match eval {
            Eval::Apply { state, disclosures } => (
                EventRecord {
                    signed: signed.clone(),
                    disclosures,
                    outcome: Outcome::Applied {
                        version: state.version,
                        root: state.root,
                    },
                },
                Some(*state),
            ),
            Eval::Reject(reason) => (
                EventRecord {
                    signed: signed.clone(),
                    disclosures: BTreeMap::new(),
                    outcome: Outcome::Rejected { reason },
                },
                None,
            ),
        };
        if let Some(s) = &state {
            ov.states.insert(s.id.clone(), s.clone());
        }
        let verdict = Verdict::from_outcome(signed.id, &record.outcome);
        Planned {
            item: Some(CommitItem {
                event: record,
                state,
            }),
            sequenced,
            verdict: Some(Ok(verdict)),
            ..Default::default()
        }
    }

    /// Applies a change distributed by a home node, after checking it.
    async fn replicate(
        &mut self,
        from: &NodeId,
        ch: &AppliedChange,
        ov: &mut Overlay,
    ) -> Result<Planned, NodeError> {
        let e = &ch.signed.event;
        if e.kind == EventKind::ActorChange {
            return self.replicate_actor_change(ch).await;
        }
        let refused = |reason: RejectReason| {
            Ok(Planned {
                verdict: Some(Ok(Verdict::Refused {
                    event: ch.signed.id,
                    reason,
                })),
                ..Default::default()
            })
        };
        let home = if e.kind == EventKind::Create {
            Some(e.origin_node.clone())
        } else {
            self.ctx.home_of(&e.state_id).await?
        };
        let cur = self.current(ov, &e.state_id).await?;
        let held = cur.as_ref().map_or(0, |s| s.version);
        if home.is_none() && e.kind != EventKind::Create {
            // We missed the create: ask the sender (the home) for everything.
            return Ok(self.catch_up(from, &e.state_id, 0, ch.signed.id));
        }
        if home.as_ref() != Some(from) {
            return refused(RejectReason::InvalidPayload {
                path: "$.from".into(),
                reason: format!("node {from} is not the home node of {}", e.state_id),
            });
        }
        if ch.version <= held {
            // Already applied (duplicate delivery or catch-up overlap): nothing to do.
            return Ok(Planned {
                verdict: Some(Ok(Verdict::Duplicate {
                    event: ch.signed.id,
                    original: Outcome::Applied {
                        version: ch.version,
                        root: ch.root,
                    },
                })),
                ..Default::default()
            });
        }
        if ch.version > held + 1 {
            return Ok(self.catch_up(from, &e.state_id, held, ch.signed.id));
        }
        match pipeline::replicate(&self.ctx, ch, cur.as_ref()) {
            eval @ Eval::Apply { .. } => Ok(self.planned(&ch.signed, eval, ov, false)),
            // A receiver never records a rejection of what its home applied (that would
            // block the event id); it refuses the message and keeps its replica unchanged.
            Eval::Reject(reason) => refused(reason),
        }
    }

    fn catch_up(
        &self,
        home: &NodeId,
        state: &StateId,
        held: u64,
        event: sst_core::EventId,
    ) -> Planned {
        let mut h = BTreeMap::new();
        if held > 0 {
            h.insert(state.clone(), held);
        }
        // `own_after = MAX`: only the missing versions, no rejections.
        let msg = Message::CatchUp {
            held: h,
            own_after: OriginSeq(u64::MAX),
        };
        Planned {
            sends: vec![(home.clone(), msg)],
            verdict: Some(Ok(Verdict::Refused {
                event,
                reason: RejectReason::StaleBase {
                    expected_version: held + 1,
                    found_version: held,
                },
            })),
            ..Default::default()
        }
    }
}

type Prepped = (
    EventKind,
    sst_core::ContractRef,
    Option<Base>,
    serde_json::Value,
    BTreeMap<String, Disclosure>,
);

/// Event kind, contract, base, payload and disclosures of an actor change.
fn actor_change(before: sst_core::Actor, after: sst_core::Actor) -> Prepped {
    let payload = ActorChange {
        actor: after,
        previous_key: before.public_key,
    }
    .to_payload();
    (
        EventKind::ActorChange,
        ActorChange::contract(),
        None,
        payload,
        BTreeMap::new(),
    )
}

enum CommitFailure {
    /// Conflict or invalid input: replay the jobs one by one.
    Logical(StoreError),
    /// The store is down (or the node "crashed" between steps).
    Fatal(StoreError),
}

/// The inbox task: turns peer messages into sequencer jobs and answers catch-up requests.
pub(crate) async fn inbox_loop(ctx: Arc<NodeContext>, jobs: mpsc::Sender<Job>, mut inbox: Inbox) {
    while let Some(d) = inbox.recv().await {
        let from = d.from.clone();
        let kind = match d.message.clone() {
            Message::Intent {
                signed,
                disclosures,
            } => Some(JobKind::Sequence {
                from: Some(from.clone()),
                signed,
                disclosures,
            }),
            Message::Applied(change) => Some(JobKind::Replicate {
                from: from.clone(),
                change,
            }),
            Message::Rejected { signed, reason } => Some(JobKind::Rejected { signed, reason }),
            Message::Refused { event, reason } => {
                ctx.resolve(&event, Ok(Verdict::Refused { event, reason }));
                None
            }
            Message::Hello => {
                if let (Ok(held), Ok(own)) = (
                    ctx.held_versions().await,
                    ctx.store().last_origin_seq(ctx.id()).await,
                ) {
                    let _ = ctx
                        .transport()
                        .send(
                            &from,
                            Message::CatchUp {
                                held,
                                own_after: own,
                            },
                        )
                        .await;
                }
                None
            }
            Message::CatchUp { held, own_after } => {
                for p in ctx.protocols() {
                    if let Ok(msgs) = p.catch_up(&ctx, &from, &held, own_after).await {
                        for m in msgs {
                            let _ = ctx.transport().send(&from, m).await;
                        }
                    }
                }
                None
            }
        };
        if let Some(kind) = kind {
            let (tx, rx) = oneshot::channel();
            if jobs
                .send(Job {
                    kind,
                    reply: Some(tx),
                })
                .await
                .is_err()
            {
                break;
            }
            // The delivery (and its in-flight ticket) lives until the job is done; the next
            // message is queued meanwhile so the sequencer can group-commit them.
            tokio::spawn(async move {
                let _ = rx.await;
                drop(d);
            });
        }
    }
}
