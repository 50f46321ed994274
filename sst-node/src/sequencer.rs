//! The sequencer: the one writer task of a node. It drains the job channel, runs each job
//! through the pipeline on top of the versions produced earlier in the same batch, commits
//! the whole batch in one store transaction (group commit), and only then hands outbound
//! messages to the outbox and answers callers. Up to [`MAX_IN_FLIGHT`] groups are in flight:
//! while one is written, the next has its receipts signed and its batch validated and
//! prepared by the store ([`sst_core::Store::prepare`]), and the one after is planned; each
//! reaches the store only once the group before it committed as planned (else it is void
//! and its jobs are planned again). It never waits for a peer: routing,
//! admission of received changes and what to send come from the contract's
//! [`SyncProtocol`](crate::SyncProtocol), sending from the per-peer outbox senders.
//!
//! A received change it cannot apply is recorded as a [`sst_core::Refusal`] on this node and
//! reported to its sender; what it applies is acknowledged to the sender once per batch
//! (cumulative per state, with this node's signed statement of the version and root it
//! holds, [`crate::StateWitness`]; a refused change of a state held here is answered with
//! that statement too, so the home sees a diverged copy). A change whose base root differs
//! from this node's root at the base version raises a witness alarm about its sender besides
//! the refusal. Origin sequences start above every sequence of this node known to
//! be used ([`NodeContext::origin_floor`]), and a local intent whose sequence turns out to be
//! taken is built again under a fresh one, never refused for it.
//!
//! For a contract whose protocol endorses ([`crate::SyncProtocol::endorsement`]), an applied
//! outcome this node sequences is not committed: it stays an **open proposal** (later jobs
//! about that state wait, parked in arrival order; other states keep flowing through the
//! pipelined group commit) while the protocol's proposals go to the endorsers, after the
//! commit of the group it was planned in. Endorsers' answers and the proposal's deadline
//! arrive as jobs; once the policy is met, fails or times out, the outcome is committed as
//! this node sequenced it (applied with the endorsements, or rejected) and the parked jobs
//! go next. As an endorser, it checks a proposal on its current copy exactly as a received
//! change, commits nothing, and answers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sst_core::{
    CommitBatch, CommitItem, ConflictKind, ContractRecord, Disclosure, Endorsement,
    EndorsementPolicy, EndorserRefusal, EventId, EventKind, EventRecord, NodeId, OriginSeq,
    Outcome, PolicyProgress, PreparedBatch, Refusal, RejectReason, Role, SequencingReceipt,
    SignedEvent, State, StateId, StateRoot, StoreError, Timestamp,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::build::EventBuilder;
use crate::context::{NodeContext, Resubmit};
use crate::contract::Contract;
use crate::error::NodeError;
use crate::message::{
    EndorsementAnswer, EndorsementGiven, EndorsementRefused, Intent, ProtocolEnvelope,
    ReplicaRefusal, Verdict,
};
use crate::pipeline::{self, Built, Eval};
use crate::sync::{Admission, Route, SyncRegistry};
use crate::verify::{SignedRef, Verified, Vetted, VettedChange};

type Reply = oneshot::Sender<Result<Verdict, NodeError>>;

/// A unit of work for the sequencer.
pub(crate) struct Job {
    pub(crate) kind: JobKind,
    pub(crate) reply: Option<Reply>,
}

/// A job on its way to the sequencer: ready, or its signed event being verified on the
/// pool. Every job passes through one ordered channel ([`forward`]), so jobs reach the
/// sequencer in the order they were submitted, whichever verification finished first.
pub(crate) enum Pending {
    Ready(Box<Job>),
    Sequence {
        from: Option<NodeId>,
        signed: oneshot::Receiver<Vetted>,
        disclosures: BTreeMap<String, Disclosure>,
        reply: Reply,
    },
    Replicate {
        from: NodeId,
        change: oneshot::Receiver<VettedChange>,
        reply: Reply,
    },
    /// A proposal to endorse, its event verified on the pool like a received change's.
    Endorse {
        from: NodeId,
        change: oneshot::Receiver<VettedChange>,
        reply: Reply,
    },
}

impl Pending {
    /// The job, once its verification is done (`None`: the node is stopping).
    async fn ready(self) -> Option<Job> {
        let (kind, reply) = match self {
            Pending::Ready(job) => return Some(*job),
            Pending::Sequence {
                from,
                signed,
                disclosures,
                reply,
            } => (
                JobKind::Sequence {
                    from,
                    signed: signed.await.ok()?,
                    disclosures,
                },
                reply,
            ),
            Pending::Replicate {
                from,
                change,
                reply,
            } => (
                JobKind::Replicate {
                    from,
                    change: change.await.ok()?,
                },
                reply,
            ),
            Pending::Endorse {
                from,
                change,
                reply,
            } => (
                JobKind::Endorse {
                    from,
                    proposal: change.await.ok()?,
                },
                reply,
            ),
        };
        Some(Job {
            kind,
            reply: Some(reply),
        })
    }
}

/// Hands the jobs to the sequencer in the order they were made, each once verified.
pub(crate) async fn forward(mut pending: mpsc::Receiver<Pending>, jobs: mpsc::Sender<Job>) {
    while let Some(p) = pending.recv().await {
        let Some(job) = p.ready().await else {
            return;
        };
        if jobs.send(job).await.is_err() {
            return;
        }
    }
}

/// A local intent once signed: kept so that a retry reuses the same event and origin seq.
#[derive(Clone)]
pub(crate) struct Prepared {
    signed: Verified,
    disclosures: BTreeMap<String, Disclosure>,
    route: Route,
}

pub(crate) enum JobKind {
    /// A local actor's intent.
    Local {
        actor: sst_core::ActorId,
        intent: Intent,
        prepared: Option<Box<Prepared>>,
        /// How often it was built again because its origin sequence was taken.
        resequenced: u8,
    },
    /// A signed intent this node sequences as home (`from`: forwarding node).
    Sequence {
        from: Option<NodeId>,
        signed: Vetted,
        disclosures: BTreeMap<String, Disclosure>,
    },
    /// A change applied by a home node, to replicate here.
    Replicate { from: NodeId, change: VettedChange },
    /// A home node (`from`) rejected one of this node's intents.
    Rejected {
        from: NodeId,
        signed: SignedEvent,
        reason: RejectReason,
        receipt: Option<SequencingReceipt>,
    },
    /// A home node (`from`) proposes a change for this node to endorse (endorsed protocol):
    /// validate it on this node's copy, commit nothing, answer.
    Endorse {
        from: NodeId,
        proposal: VettedChange,
    },
    /// An endorser (`from`) answered one of this node's open proposals.
    Endorsement {
        from: NodeId,
        answer: EndorsementAnswer,
    },
    /// The time of the open proposal of `state` (for `event`) may be up.
    EndorsementDeadline { state: StateId, event: EventId },
    /// A proposal was decided: commit this outcome (kept in the job, so that a job planned
    /// again commits the same).
    Decided(Box<Decided>),
}

/// A proposal's outcome, to commit as this node sequenced it.
pub(crate) struct Decided {
    signed: SignedEvent,
    /// The tentative version (applied) or the reason (rejected).
    eval: Eval,
    /// The endorsements of an applied outcome, sorted by node.
    endorsements: Vec<Endorsement>,
}

/// A change this node (the home of its state) sequenced tentatively and holds open until
/// its endorsement policy is met, fails, or times out. Nothing of it is committed before.
struct OpenProposal {
    signed: SignedEvent,
    built: Box<Built>,
    policy: EndorsementPolicy,
    /// Participant nodes of the version it builds on, with their roles.
    participants: BTreeMap<NodeId, BTreeSet<Role>>,
    /// The endorsers asked (this node included when it is one).
    asked: BTreeSet<NodeId>,
    endorsed: BTreeMap<NodeId, Endorsement>,
    refused: BTreeMap<NodeId, RejectReason>,
    timeout_ms: u64,
    deadline: Instant,
    /// Whoever waits for the outcome (the local caller, or the delivery of a forwarded intent).
    reply: Option<Reply>,
}

impl OpenProposal {
    /// Whether the answers so far decide it: applied (met), rejected (failed), or not yet.
    fn decision(&self) -> Option<Decided> {
        let endorsed: BTreeSet<NodeId> = self.endorsed.keys().cloned().collect();
        let refused: BTreeSet<NodeId> = self.refused.keys().cloned().collect();
        let eval = match self
            .policy
            .progress(&self.participants, &endorsed, &refused)
        {
            PolicyProgress::Met => Eval::Apply(self.built.clone()),
            PolicyProgress::Failed => Eval::Reject(RejectReason::NotEndorsed {
                refusals: self
                    .refused
                    .iter()
                    .map(|(node, reason)| EndorserRefusal {
                        node: node.clone(),
                        reason: reason.clone(),
                    })
                    .collect(),
            }),
            PolicyProgress::Open => return None,
        };
        Some(self.decided(eval))
    }

    /// Rejected `endorsement_timeout`, naming the endorsers that did not answer.
    fn timed_out(&self) -> Decided {
        let missing = self
            .asked
            .iter()
            .filter(|n| !self.endorsed.contains_key(*n) && !self.refused.contains_key(*n))
            .cloned()
            .collect();
        self.decided(Eval::Reject(RejectReason::EndorsementTimeout {
            missing,
            timeout_ms: self.timeout_ms,
        }))
    }

    fn decided(&self, eval: Eval) -> Decided {
        let endorsements = match eval {
            Eval::Apply(_) => self.endorsed.values().cloned().collect(),
            Eval::Reject(_) => Vec::new(),
        };
        Decided {
            signed: self.signed.clone(),
            eval,
            endorsements,
        }
    }
}

/// What one job needs after the batch committed.
#[derive(Default)]
struct Planned {
    item: Option<CommitItem>,
    /// Whether this node sequenced the item (then the sync protocol publishes it).
    sequenced: bool,
    /// This node signs the item's receipt before committing it.
    sign: bool,
    verdict: Option<Result<Verdict, NodeError>>,
    sends: Vec<(NodeId, ProtocolEnvelope)>,
    /// Forward an intent to its sequencing node and wait for the outcome coming back.
    forward: Option<(NodeId, ProtocolEnvelope, sst_core::EventId)>,
    /// An applied actor change: the new record, put in the directory after the commit.
    actor: Option<sst_core::Actor>,
    /// A received change this node refuses: record it here and report it to its sender.
    refusal: Option<(NodeId, ReplicaRefusal)>,
    /// A received change this node holds after the commit (or refused, of a state it holds):
    /// acknowledge (sender, state, version held, its root).
    ack: Option<(NodeId, StateId, u64, StateRoot)>,
    /// The state version of `item`, shared with the batch overlay (and, once committed, the
    /// cache of owned states).
    state: Option<Arc<State>>,
    /// The version `state` follows, as this node held it (read from the store, or planned
    /// and checked before): the commit's validation takes its unchanged sections as checked.
    base: Option<Arc<State>>,
    /// An applied deployment: the record and its loaded code, installed after the commit.
    contract: Option<(ContractRecord, Arc<dyn Contract>)>,
    /// A received method call applied here: whether this node re-executed it (validated)
    /// or relied on the home's receipt.
    validated: Option<bool>,
    /// The job opened a proposal of this state: whoever waits for the job waits for the
    /// proposal's outcome.
    proposed: Option<StateId>,
}

/// Most times a local intent is built again because its origin sequence was taken.
const MAX_RESEQUENCE: u8 = 4;

/// States produced earlier in the batch being planned, and the states it read from the
/// store (each read once per batch).
#[derive(Default)]
struct Overlay {
    states: HashMap<StateId, Arc<State>>,
    read: HashMap<StateId, Option<Arc<State>>>,
}

/// What a batch acknowledges to one sender: state → (version held, its root), and state →
/// latest version validated by re-execution.
#[derive(Default)]
struct HeldStates {
    held: BTreeMap<StateId, (u64, StateRoot)>,
    validated: BTreeMap<StateId, u64>,
}

struct Writer {
    ctx: Arc<NodeContext>,
    sync: Arc<SyncRegistry>,
    next_seq: u64,
    /// Acknowledgements gathered during a batch: (protocol, sender) → state → (version,
    /// root).
    acks: BTreeMap<(&'static str, NodeId), HeldStates>,
    /// The committed current version of each state this node sequenced (it owns them: no
    /// other writer changes them), so that sequencing reads no state back from the store.
    /// Emptied on every commit that fails and updated by every commit that succeeds; a
    /// replicated change removes its state (a replica's copy is always read from the store).
    owned: HashMap<StateId, Arc<State>>,
    /// The groups being committed, oldest first (at most [`MAX_IN_FLIGHT`]): each commits
    /// only once the one before it committed as planned.
    inflight: VecDeque<InFlight>,
    /// Jobs of groups that were planned on top of a group not committed as planned (so never
    /// committed themselves), in order: planned again before anything else.
    replan: VecDeque<Job>,
    /// Open proposals of states this node is the home of (endorsed protocol), by state.
    open: HashMap<StateId, OpenProposal>,
    /// Jobs about a state with an open proposal, in arrival order: planned once it is
    /// decided (the state stays serialised; other states keep flowing).
    parked: HashMap<StateId, VecDeque<Job>>,
    /// Parked jobs whose proposal was decided, to plan next, in order.
    unparked: VecDeque<Job>,
}

/// The sequencer task.
pub(crate) async fn run(
    ctx: Arc<NodeContext>,
    sync: Arc<SyncRegistry>,
    mut rx: mpsc::Receiver<Job>,
    next_seq: u64,
    max_batch: usize,
) {
    let mut w = Writer {
        ctx,
        sync,
        next_seq,
        acks: BTreeMap::new(),
        owned: HashMap::new(),
        inflight: VecDeque::new(),
        replan: VecDeque::new(),
        open: HashMap::new(),
        parked: HashMap::new(),
        unparked: VecDeque::new(),
    };
    loop {
        if !w.replan.is_empty() {
            let jobs = std::mem::take(&mut w.replan).into();
            w.run_batch(jobs).await;
            continue;
        }
        if !w.unparked.is_empty() {
            let jobs = std::mem::take(&mut w.unparked).into();
            w.run_batch(jobs).await;
            continue;
        }
        // While a group commits, the next jobs are planned; with none waiting, the group is
        // finished as soon as its commit returns. An open proposal's deadline wakes it too.
        let deadline = w.open.values().map(|p| p.deadline).min();
        let wake = {
            let commit = async {
                match w.inflight.front_mut() {
                    Some(f) => Some((&mut f.commit.0).await),
                    None => std::future::pending().await,
                }
            };
            let expiry = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                done = commit => Wake::Committed(done),
                job = rx.recv() => Wake::Job(job),
                () = expiry => Wake::Deadline,
            }
        };
        let first = match wake {
            Wake::Committed(Some(done)) => {
                w.complete_with(done).await;
                continue;
            }
            Wake::Committed(None) => continue,
            Wake::Deadline => {
                let jobs = w.expired();
                w.run_batch(jobs).await;
                continue;
            }
            Wake::Job(job) => job,
        };
        let Some(first) = first else { break };
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        w.run_batch(jobs).await;
    }
    w.complete().await;
}

/// What the commit task gives back: the plans it committed, and how that went.
type Committed = (Vec<Planned>, Result<(), CommitFailure>);

/// How many planned groups may be committing at once. The next group's receipts are signed
/// and its batch validated while the group before it is written and synced; it is handed to
/// the store only once that group committed as planned (one writer, in order).
const MAX_IN_FLIGHT: usize = 2;

/// What woke the sequencer (a value that lives for one turn of its loop: boxing the job
/// would cost an allocation per job).
#[allow(clippy::large_enum_variant)]
enum Wake {
    /// The group being committed finished.
    Committed(Option<Result<Committed, tokio::task::JoinError>>),
    /// A job arrived (`None`: every sender is gone).
    Job(Option<Job>),
    /// An open proposal's deadline passed.
    Deadline,
}

/// The commit task of a group; aborted when the sequencer stops (like a crash: nothing is
/// committed after the node is gone, beyond a store call already running).
struct CommitTask(JoinHandle<Committed>);

impl Drop for CommitTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A planned group being committed while the next one is planned on top of it.
struct InFlight {
    /// Whether it was committed as planned; the group launched after it waits for this.
    committed: Option<oneshot::Receiver<bool>>,
    commit: CommitTask,
    jobs: Vec<Job>,
    /// The latest version of each state the group planned (the next group builds on it).
    states: HashMap<StateId, Arc<State>>,
    /// The group's events: a job about one of them waits for the commit.
    events: HashSet<EventId>,
    /// States the group creates (their planned homes are forgotten once committed).
    created: Vec<StateId>,
    /// The group ends with an actor change or a deployment: nothing after it is planned
    /// before it is committed and the directory or contract installed.
    cut: bool,
}

impl Writer {
    /// The version a job of the batch being planned builds on: planned earlier in the
    /// batch, else owned and cached, else read from the store (once per batch).
    async fn current(
        &self,
        ov: &mut Overlay,
        id: &StateId,
    ) -> Result<Option<Arc<State>>, NodeError> {
        let planned = ov.states.get(id).or_else(|| {
            self.inflight
                .iter()
                .rev()
                .find_map(|f| f.states.get(id))
                .or_else(|| self.owned.get(id))
        });
        if let Some(s) = planned {
            return Ok(Some(s.clone()));
        }
        if let Some(s) = ov.read.get(id) {
            return Ok(s.clone());
        }
        let s = self.ctx.store().state(id).await?;
        // A version read from the table is hostile input until checked: the commit's
        // validation takes the sections a new version keeps from it as already checked
        // (`CommitBatch::validated_after`), so a value edited behind SST's back must be
        // refused here, once per read (versions this node then builds on are cached).
        if let Some(state) = &s {
            state.verify().map_err(|source| StoreError::Integrity {
                what: format!("state {id} version {} as stored", state.version),
                source,
            })?;
        }
        let s = s.map(Arc::new);
        ov.read.insert(id.clone(), s.clone());
        Ok(s)
    }

    /// After a commit: the states this node sequenced in it are its current versions; a
    /// state changed by a replicated change is no longer cached. After a failed commit
    /// nothing is cached (the store says what holds).
    fn note_committed(&mut self, plans: &[Planned], committed: bool) {
        if !committed {
            self.owned.clear();
            return;
        }
        for p in plans {
            let Some(item) = &p.item else { continue };
            let id = &item.event.event().state_id;
            match &item.state {
                Some(state) if p.sequenced => {
                    let state = p.state.clone().unwrap_or_else(|| state.clone());
                    self.owned.insert(id.clone(), state);
                }
                _ if !p.sequenced => {
                    self.owned.remove(id);
                }
                _ => {}
            }
        }
    }

    /// Plans the drained jobs in groups and starts each group's commit (group commit),
    /// planning the next group while the previous one commits: groups are committed one
    /// after the other, in order, each only once the one before it was committed (one
    /// writer). A group planned on top of one that was then not committed as planned is
    /// planned again on what the store holds, as if it had been part of that group. An
    /// applied actor change or deployment ends a group, and the jobs after it are planned
    /// only once it is committed and the directory holds the new key or status (or the
    /// contract is installed); so is a job about an event of the group being committed.
    async fn run_batch(&mut self, jobs: Vec<Job>) {
        let mut queue: VecDeque<Job> = jobs.into();
        'groups: while !queue.is_empty() {
            let wait = self.inflight.iter().any(|f| {
                f.cut
                    || queue
                        .iter()
                        .any(|j| job_event(j).is_some_and(|e| f.events.contains(&e)))
            });
            if wait && !self.complete().await {
                self.requeue(&mut queue, Vec::new());
                continue;
            }
            let mut ov = Overlay::default();
            let mut jobs = Vec::new();
            let mut plans = Vec::new();
            let mut cut = false;
            while let Some(mut job) = queue.pop_front() {
                if let Some(state) = self.waits_for_proposal(&job) {
                    debug!(node = %self.ctx.id(), %state, "job waits for the open proposal of its state");
                    release_delivery(&mut job);
                    self.parked.entry(state).or_default().push_back(job);
                    continue;
                }
                let plan = self.plan(&mut job, &mut ov).await;
                // A decided proposal lets the jobs that waited for it go next, in order.
                while let Some(j) = self.unparked.pop_back() {
                    queue.push_front(j);
                }
                // The jobs after an actor change or a deployment see the new directory or
                // the installed contract.
                cut = plan.actor.is_some() || plan.contract.is_some();
                jobs.push(job);
                plans.push(plan);
                let finished = self
                    .inflight
                    .front()
                    .is_some_and(|f| f.commit.0.is_finished());
                let committed = if cut {
                    self.complete().await
                } else if finished {
                    self.complete_front().await
                } else {
                    true
                };
                if !committed {
                    // Planned on top of a group that was not committed as planned.
                    self.requeue(&mut queue, jobs);
                    continue 'groups;
                }
                if cut {
                    break;
                }
            }
            if !self.make_room().await {
                self.requeue(&mut queue, jobs);
                continue;
            }
            self.launch(jobs, plans, cut);
        }
    }

    /// Puts jobs planned on top of a group that was not committed as planned back at the
    /// front of `queue`, in their order: those of groups launched after it first, then
    /// `jobs` (the group being planned).
    fn requeue(&mut self, queue: &mut VecDeque<Job>, jobs: Vec<Job>) {
        for job in jobs.into_iter().rev() {
            queue.push_front(job);
        }
        while let Some(job) = self.replan.pop_back() {
            queue.push_front(job);
        }
    }

    /// Starts committing a planned group in the background, after the groups being
    /// committed already.
    fn launch(&mut self, jobs: Vec<Job>, plans: Vec<Planned>, cut: bool) {
        let mut states = HashMap::new();
        let mut events = HashSet::new();
        let mut created = Vec::new();
        for p in &plans {
            if let Some(item) = &p.item {
                events.insert(item.event.id());
                if item.event.event().kind == EventKind::Create && item.state.is_some() {
                    created.push(item.event.event().state_id.clone());
                }
            }
            if let Some(s) = &p.state {
                states.insert(s.id.clone(), s.clone());
            }
        }
        let ctx = self.ctx.clone();
        let after = self.inflight.back_mut().and_then(|f| f.committed.take());
        let (done, committed) = oneshot::channel();
        let commit = tokio::spawn(async move {
            let mut plans = plans;
            let result = commit_items(&ctx, &mut plans, after).await;
            // The next group is handed to the store only after this one committed (a
            // dropped sender, when this task is aborted, says the same as `false`).
            if done.send(result.is_ok()).is_err() {
                debug!(
                    items = plans.len(),
                    committed = result.is_ok(),
                    "no group waits for this one's commit (the sequencer stopped)"
                );
            }
            (plans, result)
        });
        self.inflight.push_back(InFlight {
            committed: Some(committed),
            commit: CommitTask(commit),
            jobs,
            states,
            events,
            created,
            cut,
        });
    }

    /// Waits for every group being committed and finishes each, oldest first. Returns
    /// whether all were committed as planned (else the jobs of the groups after the first
    /// that was not are in `replan`, and what was planned on top of them is void).
    async fn complete(&mut self) -> bool {
        while !self.inflight.is_empty() {
            if !self.complete_front().await {
                return false;
            }
        }
        true
    }

    /// Waits for groups being committed until fewer than [`MAX_IN_FLIGHT`] are, finishing
    /// each (as [`Writer::complete`]).
    async fn make_room(&mut self) -> bool {
        while self.inflight.len()
            >= std::env::var("TMP_MAX")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(MAX_IN_FLIGHT)
        {
            if !self.complete_front().await {
                return false;
            }
        }
        true
    }

    /// Waits for the oldest group being committed (if any) and finishes it: publishes,
    /// answers, acknowledges. Returns whether it was committed as planned (else its jobs
    /// were replayed one by one or interrupted, the jobs of the groups planned on top of it
    /// are in `replan`, and what is being planned on top of them is void).
    async fn complete_front(&mut self) -> bool {
        let Some(f) = self.inflight.front_mut() else {
            return true;
        };
        let done = (&mut f.commit.0).await;
        self.complete_with(done).await
    }

    /// As [`Writer::complete_front`], with the oldest group's commit result.
    async fn complete_with(&mut self, done: Result<Committed, tokio::task::JoinError>) -> bool {
        let Some(f) = self.inflight.pop_front() else {
            return true;
        };
        let (plans, result) = match done {
            Ok(done) => done,
            Err(e) => {
                // The commit task failed (a panic): the group's fate is unknown.
                let err = StoreError::backend("node", "commit", e.to_string());
                let plans = f.jobs.iter().map(|_| Planned::default()).collect();
                (plans, Err(CommitFailure::Fatal(err)))
            }
        };
        let committed = result.is_ok();
        if !committed {
            // The groups launched after it were planned on top of it: none of them reaches
            // the store (each waits for the one before it), so their jobs are planned again.
            while let Some(mut later) = self.inflight.pop_front() {
                if let Ok((_, Ok(()))) = (&mut later.commit.0).await {
                    // Cannot happen (it waits for this group's `false`); never silently.
                    tracing::error!(
                        node = %self.ctx.id(), events = ?later.events,
                        "a group planned on a group not committed as planned was committed"
                    );
                }
                self.replan.extend(later.jobs);
            }
        }
        self.note_committed(&plans, committed);
        if committed {
            self.ctx.forget_planned_homes_of(&f.created);
        } else {
            self.ctx.forget_planned_homes();
        }
        self.handle_commit(f.jobs, plans, result).await;
        self.flush_acks();
        self.ctx.sync_moved();
        committed
    }

    /// Sends the acknowledgements gathered during the batch: one message per sender, with
    /// this node's signed statement of each state's version and root (dated now: after the
    /// commit that produced them).
    fn flush_acks(&mut self) {
        let at = Timestamp::now();
        for ((protocol, to), states) in std::mem::take(&mut self.acks) {
            let Some(p) = self.sync.by_name(protocol) else {
                continue;
            };
            let witnesses: Vec<_> = states
                .held
                .iter()
                .map(|(state, (version, root))| self.ctx.state_witness(state, *version, *root, at))
                .collect();
            match p.acknowledge(&witnesses, &states.validated) {
                Ok(Some(m)) => self.ctx.send(&to, m),
                Ok(None) => {}
                Err(e) => warn!(peer = %to, protocol, error = %e, "acknowledgement not sent"),
            }
        }
    }

    /// After a group's commit: finishes its jobs, or replays them one by one after a
    /// logical failure, or tells their callers the store failed.
    async fn handle_commit(
        &mut self,
        jobs: Vec<Job>,
        plans: Vec<Planned>,
        result: Result<(), CommitFailure>,
    ) {
        match result {
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
                    if let Some(mut job) = self.run_refused(job, plan, &e).await {
                        let plan = self.plan(&mut job, &mut Overlay::default()).await;
                        self.run_single(job, plan).await;
                    }
                }
            }
            Err(CommitFailure::Fatal(e)) => {
                for (job, plan) in jobs.into_iter().zip(plans) {
                    Self::interrupted(job, &plan, &e);
                }
            }
            Err(CommitFailure::Void) => self.replan.extend(jobs),
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
        warn!(?events, error = %e, "commit failed; the events' fate is unknown until a restart");
        if let Some(r) = job.reply {
            answer(
                r,
                Err(NodeError::Interrupted {
                    events,
                    source: StoreError::backend("node", "commit", e.to_string()),
                }),
            );
        }
    }

    async fn run_single(&mut self, mut job: Job, mut plan: Planned) {
        loop {
            match self.commit(std::slice::from_mut(&mut plan)).await {
                Ok(()) => return self.finish(job, plan).await,
                Err(CommitFailure::Logical(e)) => match self.run_refused(job, plan, &e).await {
                    Some(again) => {
                        job = again;
                        plan = self.plan(&mut job, &mut Overlay::default()).await;
                    }
                    None => return,
                },
                Err(CommitFailure::Fatal(e)) => return Self::interrupted(job, &plan, &e),
                // Not waiting for any group (`commit` passes none): planned again if ever.
                Err(CommitFailure::Void) => return self.replan.push_back(job),
            }
        }
    }

    /// The item could not be recorded at all (its origin seq is taken, or the store refused
    /// it as invalid input), so nothing is recorded. A local intent whose origin sequence is
    /// taken comes back to be built again under a fresh sequence; a forwarded one goes back
    /// to its origin to be re-sequenced there; a received change is recorded as refused
    /// (and reported); anything else is refused to the caller / initiator.
    async fn run_refused(&mut self, mut job: Job, plan: Planned, err: &StoreError) -> Option<Job> {
        let Some(item) = plan.item.clone() else {
            self.finish(job, Planned { item: None, ..plan }).await;
            return None;
        };
        let event = item.event.id();
        let e = item.event.event();
        let origin_taken = matches!(
            err,
            StoreError::Conflict {
                kind: ConflictKind::OriginTaken,
                ..
            }
        );
        let detail = err.to_string();
        let mut reason = RejectReason::InvalidPayload {
            path: "$".into(),
            reason: format!("not recordable: {detail}"),
        };
        match &mut job.kind {
            JobKind::Local {
                prepared,
                resequenced,
                ..
            } if origin_taken && *resequenced < MAX_RESEQUENCE => {
                // A sequence of ours came back recorded (e.g. an intent forwarded before a
                // crash, replicated here since): build the intent again above it.
                match self.ctx.store().last_origin_seq(self.ctx.id()).await {
                    Ok(last) => self.ctx.note_origin_used(last.0),
                    Err(e) => warn!(%event, error = %e, "origin sequence not readable"),
                }
                self.ctx.note_origin_used(e.origin_seq.0);
                *prepared = None;
                *resequenced += 1;
                debug!(%event, seq = e.origin_seq.0, "origin sequence taken; building the intent again");
                return Some(job);
            }
            JobKind::Sequence {
                from: Some(from), ..
            } if origin_taken && *from == e.origin_node => {
                let above = self
                    .ctx
                    .store()
                    .last_origin_seq(from)
                    .await
                    .unwrap_or(e.origin_seq)
                    .max(e.origin_seq);
                let protocol = self.sync.for_contract(&self.ctx, &e.contract);
                tracing::info!(
                    %event, peer = %from, seq = e.origin_seq.0, above = above.0,
                    "forwarded intent reuses a taken origin sequence; its origin re-sequences it"
                );
                match protocol.resequence(event, above) {
                    Ok(m) => self.ctx.send(from, m),
                    Err(e) => {
                        warn!(%event, peer = %from, error = %e, "re-sequence request not sent")
                    }
                }
                reason = RejectReason::InvalidPayload {
                    path: "$.origin_seq".into(),
                    reason: format!("origin sequence taken; {from} re-sequences the intent"),
                };
            }
            JobKind::Sequence {
                from: Some(from), ..
            } => {
                warn!(%event, %detail, "event not recordable; refused");
                let protocol = self.sync.for_contract(&self.ctx, &e.contract);
                match protocol.refused(event, &reason) {
                    Ok(m) => self.ctx.send(from, m),
                    Err(e) => warn!(%event, peer = %from, error = %e, "refusal not sent"),
                }
            }
            JobKind::Replicate { from, change } => {
                let refusal = ReplicaRefusal {
                    event,
                    state_id: e.state_id.clone(),
                    version: change.change().version,
                    reason: reason.clone(),
                };
                let from = from.clone();
                self.report_refusal(&from, &e.contract, refusal).await;
            }
            _ => warn!(%event, %detail, "event not recordable; refused"),
        }
        if let Some(r) = job.reply {
            answer(r, Ok(Verdict::Refused { event, reason }));
        }
        None
    }

    /// Records a refused received change here and reports it to the node that sent it.
    async fn report_refusal(
        &self,
        from: &NodeId,
        contract: &sst_core::ContractRef,
        refusal: ReplicaRefusal,
    ) {
        warn!(
            node = %self.ctx.id(), event = %refusal.event, state = %refusal.state_id,
            version = refusal.version, peer = %from, reason = refusal.reason.code(),
            detail = ?refusal.reason, "received change refused; recorded and reported"
        );
        self.ctx
            .record_refusal(&Refusal {
                event: refusal.event,
                state_id: refusal.state_id.clone(),
                version: refusal.version,
                from_node: from.clone(),
                reason: refusal.reason.clone(),
                at: Timestamp::now(),
            })
            .await;
        let protocol = self.sync.for_contract(&self.ctx, contract);
        match protocol.refuse_change(&refusal) {
            Ok(Some(m)) => self.ctx.send(from, m),
            Ok(None) => {}
            Err(e) => {
                warn!(event = %refusal.event, peer = %from, error = %e, "refusal not reported")
            }
        }
    }

    /// Commits the items of `plans` in one store batch; afterwards (whatever the result) the
    /// homes of the creates planned for it are no longer pending
    /// ([`NodeContext::forget_planned_homes`]) and the cache of owned states follows.
    async fn commit(&mut self, plans: &mut [Planned]) -> Result<(), CommitFailure> {
        let result = commit_items(&self.ctx, plans, None).await;
        self.ctx.forget_planned_homes();
        self.note_committed(plans, result.is_ok());
        result
    }

    /// After a successful commit: remember homes, publish (outbox), record and report
    /// refusals, gather acknowledgements, answer.
    async fn finish(&mut self, job: Job, plan: Planned) {
        let ctx = self.ctx.clone();
        if let Some((from, refusal)) = plan.refusal.clone() {
            if let JobKind::Replicate { change, .. } = &job.kind {
                let contract = change.change().signed.event.contract.clone();
                self.report_refusal(&from, &contract, refusal).await;
            }
        }
        if let Some((from, state, version, root)) = plan.ack.clone() {
            if let JobKind::Replicate { change, .. } = &job.kind {
                let protocol = self
                    .sync
                    .for_contract(&self.ctx, &change.change().signed.event.contract)
                    .name();
                let states = self.acks.entry((protocol, from)).or_default();
                match states.held.get(&state) {
                    Some((held, _)) if *held >= version => {}
                    _ => {
                        states.held.insert(state.clone(), (version, root));
                    }
                }
                if let Some(validated) = plan.validated {
                    ctx.note_validation(&state, version, validated);
                    if validated {
                        let v = states.validated.entry(state.clone()).or_default();
                        *v = (*v).max(version);
                    }
                }
            }
            if ctx.has_refusals() {
                ctx.clear_refusals(&state, version).await;
            }
        }
        if let Some((record, code)) = plan.contract.clone() {
            // Committed: the contract is installed now (a failed table write is repaired at
            // start from the recorded deployment), and refused changes naming it asked again.
            let contract = record.contract().clone();
            match ctx.install_loaded(record, code).await {
                Ok(()) => {
                    tracing::info!(node = %ctx.id(), %contract, "contract deployed and installed");
                    self.retry_refused().await;
                }
                Err(e) => {
                    warn!(node = %ctx.id(), %contract, error = %e, "deployed contract not installed; repaired at restart")
                }
            }
        }
        if let Some(actor) = plan.actor.clone() {
            // Committed: the directory follows (a failed table write is repaired at start).
            let id = actor.id.clone();
            if let Err(e) = ctx.apply_actor(actor).await {
                warn!(actor = %id, error = %e, "actor table not updated; repaired at restart");
            }
        }
        if let Some(item) = &plan.item {
            let e = item.event.event();
            let event = item.event.id();
            if e.kind == EventKind::Create && item.state.is_some() {
                ctx.note_home(&e.state_id, &e.origin_node);
            }
            if e.origin_node == *ctx.id() {
                ctx.note_origin_used(e.origin_seq.0);
            }
            let stateless = matches!(e.kind, EventKind::ActorChange | EventKind::DeployContract);
            if !plan.sequenced && stateless && ctx.has_refusals() {
                // Recorded now: a refusal of this actor change or deployment is resolved.
                ctx.clear_refusals(&e.state_id, 0).await;
            }
            if plan.sequenced {
                let protocol = self.sync.for_contract(&self.ctx, &e.contract);
                match protocol.outbound(&ctx, item).await {
                    Ok(msgs) => {
                        for (to, m) in msgs {
                            ctx.send(&to, m);
                        }
                    }
                    Err(err) => warn!(
                        %event, state = %e.state_id, protocol = protocol.name(), error = %err,
                        "committed, but not published; peers catch up"
                    ),
                }
            }
            let verdict = Verdict::from_outcome(event, &item.event.outcome);
            ctx.resolve(&event, Ok(verdict));
        }
        for (to, m) in plan.sends {
            ctx.send(&to, m);
        }
        if let Some((to, msg, event)) = plan.forward {
            if let Some(r) = job.reply {
                let resubmit = match job.kind {
                    JobKind::Local { actor, intent, .. } => Some(Resubmit { actor, intent }),
                    _ => None,
                };
                ctx.wait_for(event, r, resubmit, Some((to.clone(), msg.clone())));
                let weak = Arc::downgrade(&ctx);
                ctx.send_then(
                    &to,
                    msg,
                    Box::new(move |sent| {
                        if let Some(ctx) = weak.upgrade() {
                            ctx.resolve_send(&event, sent);
                        }
                    }),
                );
            }
            return;
        }
        if let (Some(r), Some(v)) = (job.reply, plan.verdict) {
            answer(r, v);
        }
    }

    /// Answers whoever waits for `event` (an intent this node forwarded) with the outcome this
    /// node already recorded. A forwarded intent's waiter is otherwise answered when the
    /// outcome is committed here; when that outcome arrived and was committed before the
    /// waiter was registered (the sequencing node answered an earlier copy of the same
    /// intent), the sequencing node's replay of it is what answers the waiter.
    fn resolve_recorded(&self, event: &sst_core::EventId, outcome: &Outcome) {
        self.ctx
            .resolve(event, Ok(Verdict::from_outcome(*event, outcome)));
    }

    async fn plan(&mut self, job: &mut Job, ov: &mut Overlay) -> Planned {
        let planned = match self.plan_inner(job, ov).await {
            Ok(p) => p,
            Err(e) => Planned {
                verdict: Some(Err(e)),
                ..Default::default()
            },
        };
        if let Some(open) = planned.proposed.as_ref().and_then(|s| self.open.get_mut(s)) {
            release_delivery(job);
            if open.reply.is_none() {
                open.reply = job.reply.take();
            }
        }
        planned
    }

    /// The state with an open proposal a job must wait for, if any (an intent about it).
    fn waits_for_proposal(&self, job: &Job) -> Option<StateId> {
        if self.open.is_empty() {
            return None;
        }
        let state = match &job.kind {
            JobKind::Local { intent, .. } => intent.state_id(),
            JobKind::Sequence { signed, .. } => &signed.signed().event.state_id,
            _ => return None,
        };
        self.open.contains_key(state).then(|| state.clone())
    }

    /// Jobs deciding the open proposals whose deadline passed.
    fn expired(&self) -> Vec<Job> {
        let now = Instant::now();
        self.open
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(state, p)| Job {
                kind: JobKind::EndorsementDeadline {
                    state: state.clone(),
                    event: p.signed.id,
                },
                reply: None,
            })
            .collect()
    }

    async fn plan_inner(&mut self, job: &mut Job, ov: &mut Overlay) -> Result<Planned, NodeError> {
        match &mut job.kind {
            JobKind::Local {
                actor,
                intent,
                prepared,
                ..
            } => {
                if prepared.is_none() {
                    *prepared = Some(Box::new(self.prepare(actor, intent, ov).await?));
                }
                let Some(p) = prepared.as_deref() else {
                    return Err(NodeError::Invalid("intent could not be prepared".into()));
                };
                match &p.route {
                    Route::Here => self.sequence(p.signed.as_ref(), &p.disclosures, ov).await,
                    Route::Forward(to) => {
                        let signed = p.signed.signed();
                        let protocol = self.sync.for_contract(&self.ctx, &signed.event.contract);
                        let msg = protocol.forward(signed, &p.disclosures)?;
                        Ok(Planned {
                            forward: Some((to.clone(), msg, signed.id)),
                            ..Default::default()
                        })
                    }
                }
            }
            JobKind::Sequence {
                from,
                signed: vetted,
                disclosures,
            } => {
                let signed = vetted.signed();
                if let Some(from) = from {
                    if *from != signed.event.origin_node {
                        let reason = RejectReason::InvalidPayload {
                            path: "$.origin_node".into(),
                            reason: format!(
                                "node {from} forwarded an intent of origin {}",
                                signed.event.origin_node
                            ),
                        };
                        let protocol = self.sync.for_contract(&self.ctx, &signed.event.contract);
                        return Ok(Planned {
                            sends: vec![(from.clone(), protocol.refused(signed.id, &reason)?)],
                            verdict: Some(Ok(Verdict::Refused {
                                event: signed.id,
                                reason,
                            })),
                            ..Default::default()
                        });
                    }
                }
                if let Err(err) = vetted.verify_id() {
                    // The id is not the hash of the body: no store may record it as given.
                    let reason = RejectReason::BadSignature {
                        detail: err.to_string(),
                    };
                    let protocol = self.sync.for_contract(&self.ctx, &signed.event.contract);
                    let mut sends = Vec::new();
                    if let Some(f) = from {
                        sends.push((f.clone(), protocol.refused(signed.id, &reason)?));
                    }
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
                        let protocol = self.sync.for_contract(&self.ctx, &rec.event().contract);
                        sends = protocol
                            .replay(&self.ctx, &rec, from)
                            .await?
                            .into_iter()
                            .map(|m| (from.clone(), m))
                            .collect();
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
                if from.is_none() && signed.event.origin_node == *self.ctx.id() {
                    // Signed by a client for this node and handed to it: the state's home
                    // sequences it, as for this node's own actors.
                    let protocol = self.sync.for_contract(&self.ctx, &signed.event.contract);
                    if let Route::Forward(to) = protocol.route(&self.ctx, signed).await? {
                        let msg = protocol.forward(signed, disclosures)?;
                        return Ok(Planned {
                            forward: Some((to, msg, signed.id)),
                            ..Default::default()
                        });
                    }
                }
                self.sequence(vetted.as_ref(), disclosures, ov).await
            }
            JobKind::Replicate { from, change } => self.replicate(from, change, ov).await,
            JobKind::Endorse { from, proposal } => {
                let (from, proposal) = (from.clone(), proposal.clone());
                self.endorse(&from, &proposal, ov).await
            }
            JobKind::Endorsement { from, answer } => {
                let (from, answer) = (from.clone(), answer.clone());
                let Some(decided) = self.note_answer(&from, &answer) else {
                    return Ok(Planned::default());
                };
                Ok(self.decide(job, decided, ov))
            }
            JobKind::EndorsementDeadline { state, event } => {
                let decided = match self.open.get(state) {
                    Some(p) if p.signed.id == *event && p.deadline <= Instant::now() => {
                        p.timed_out()
                    }
                    _ => return Ok(Planned::default()),
                };
                Ok(self.decide(job, decided, ov))
            }
            JobKind::Decided(d) => {
                let d = Decided {
                    signed: d.signed.clone(),
                    eval: d.eval.clone(),
                    endorsements: d.endorsements.clone(),
                };
                Ok(self.decided_plan(&d, ov))
            }
            JobKind::Rejected {
                from,
                signed,
                reason,
                receipt,
            } => {
                let ok = signed.event.origin_node == *self.ctx.id() && signed.verify_id().is_ok();
                if !ok {
                    return Ok(Planned::default());
                }
                if let Some(rec) = self.ctx.store().event(&signed.id).await? {
                    // Recorded already: the sequencing node's first answer arrived while this
                    // node forwarded the same intent again, and this is its replay.
                    self.resolve_recorded(&rec.id(), &rec.outcome);
                    return Ok(Planned::default());
                }
                let outcome = Outcome::Rejected {
                    reason: reason.clone(),
                };
                let checked = self.ctx.check_receipt(
                    receipt.as_ref(),
                    from,
                    &signed.id,
                    &signed.event.state_id,
                    &outcome,
                    &[],
                );
                if let Err(bad) = checked {
                    // Not recorded: the rejection is not what its sequencing node signed.
                    warn!(
                        node = %self.ctx.id(), event = %signed.id, peer = %from, detail = ?bad,
                        "rejection from the sequencing node not recorded: bad receipt"
                    );
                    return Ok(Planned {
                        verdict: Some(Ok(Verdict::Refused {
                            event: signed.id,
                            reason: bad,
                        })),
                        ..Default::default()
                    });
                }
                Ok(Planned {
                    item: Some(CommitItem {
                        event: EventRecord {
                            signed: signed.clone(),
                            disclosures: BTreeMap::new(),
                            outcome,
                            receipt: receipt.clone(),
                            business_events: Vec::new(),
                            endorsements: Vec::new(),
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

    /// Builds and signs the event for a local intent, assigning the next origin sequence,
    /// and asks the contract's protocol who sequences it.
    async fn prepare(
        &mut self,
        actor: &sst_core::ActorId,
        intent: &Intent,
        ov: &mut Overlay,
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
        let builder = EventBuilder::new(me.clone(), actor.clone(), &key).alg(ctx.alg());
        // Above every sequence used here or recorded by a peer (forwarded intents).
        self.next_seq = self.next_seq.max(ctx.origin_floor() + 1);
        let seq = OriginSeq(self.next_seq);
        let unknown_actor = |target: &sst_core::ActorId| {
            NodeError::Invalid(format!("actor {target} is unknown on node {me}"))
        };
        let built = match intent {
            Intent::RotateKey {
                actor: target,
                new_key,
                ..
            } => {
                let before = ctx.actor(target).ok_or_else(|| unknown_actor(target))?;
                let after = sst_core::Actor {
                    public_key: *new_key,
                    ..before.clone()
                };
                builder.actor_change_here(seq, &before, after)
            }
            Intent::Revoke { actor: target, .. } => {
                let before = ctx.actor(target).ok_or_else(|| unknown_actor(target))?;
                let after = sst_core::Actor {
                    status: sst_core::ActorStatus::Revoked,
                    ..before.clone()
                };
                builder.actor_change_here(seq, &before, after)
            }
            _ => {
                let cur = self.current(ov, intent.state_id()).await?;
                builder.build_here(seq, intent, cur.as_deref())?
            }
        };
        let signed = built.verified.signed();
        let protocol = self.sync.for_contract(&self.ctx, &signed.event.contract);
        let route = protocol.route(&ctx, signed).await?;
        self.next_seq += 1;
        Ok(Prepared {
            signed: built.verified,
            disclosures: built.disclosures,
            route,
        })
    }

    /// Runs the pipeline as the sequencing node.
    async fn sequence(
        &mut self,
        s: SignedRef<'_>,
        disclosures: &BTreeMap<String, Disclosure>,
        ov: &mut Overlay,
    ) -> Result<Planned, NodeError> {
        let signed = s.signed();
        if matches!(
            signed.event.kind,
            EventKind::ActorChange | EventKind::DeployContract
        ) {
            let checked = if signed.event.origin_node == *self.ctx.id() {
                check_stateless(&self.ctx, s)
            } else {
                Err(RejectReason::InvalidPayload {
                    path: "$.origin_node".into(),
                    reason: format!(
                        "a {} event is sequenced by its signer's own node",
                        signed.event.kind.as_str()
                    ),
                })
            };
            let mut planned = Self::stateless_planned(signed, checked, true);
            self.sign_receipt(&mut planned);
            return Ok(planned);
        }
        let cur = self.current(ov, &signed.event.state_id).await?;
        let eval = pipeline::sequence(&self.ctx, s, disclosures, cur.as_deref());
        if let Eval::Apply(built) = eval {
            let protocol = self.sync.for_contract(&self.ctx, &signed.event.contract);
            if let Some((policy, timeout_ms)) =
                protocol.endorsement(&self.ctx, &signed.event.contract)
            {
                return self.propose(signed, built, cur.as_deref(), (policy, timeout_ms), ov);
            }
            let mut planned = self.planned(signed, Eval::Apply(built), ov, true);
            planned.base = cur;
            self.sign_receipt(&mut planned);
            return Ok(planned);
        }
        let mut planned = self.planned(signed, eval, ov, true);
        self.sign_receipt(&mut planned);
        Ok(planned)
    }

    /// An applied outcome of a contract on a protocol that endorses: held open (nothing
    /// committed) while the endorsers other than this node are asked, after the commit of
    /// the group it is planned in (so each holds the version it builds on); decided at once
    /// when this node's own endorsement or refusal decides it.
    fn propose(
        &mut self,
        signed: &SignedEvent,
        built: Box<Built>,
        cur: Option<&State>,
        (policy, timeout_ms): (EndorsementPolicy, u64),
        ov: &mut Overlay,
    ) -> Result<Planned, NodeError> {
        let e = &signed.event;
        if let Some(open) = self.open.get(&e.state_id) {
            // The same intent planned again (its group was planned over again): still open.
            if open.signed.id == signed.id {
                return Ok(Planned {
                    proposed: Some(e.state_id.clone()),
                    ..Default::default()
                });
            }
            // Jobs about a state with an open proposal wait for it (`waits_for_proposal`).
            return Err(NodeError::Invalid(format!(
                "{} has an open proposal ({}); {} is not sequenced beside it",
                e.state_id, open.signed.id, signed.id
            )));
        }
        let parties = match cur {
            Some(c) if e.kind != EventKind::Create => &c.parties,
            _ => &built.state.parties,
        };
        let participants = self.ctx.participant_roles(parties);
        if let Err(err) = policy.satisfiable(&participants) {
            let reason = RejectReason::ContractRejected {
                message: format!("the endorsement policy cannot be met: {err}"),
            };
            let mut planned = self.planned(signed, Eval::Reject(reason), ov, true);
            self.sign_receipt(&mut planned);
            return Ok(planned);
        }
        let asked = policy.endorsers(&participants);
        let me = self.ctx.id().clone();
        let mut open = OpenProposal {
            signed: signed.clone(),
            built,
            policy,
            participants,
            asked,
            endorsed: BTreeMap::new(),
            refused: BTreeMap::new(),
            timeout_ms,
            deadline: Instant::now() + Duration::from_millis(timeout_ms),
            reply: None,
        };
        if open.asked.contains(&me) {
            // The home endorses its own tentative outcome (under its own rule too).
            let state = &open.built.state;
            match self.guard(&e.contract, state) {
                Ok(()) => {
                    let endorsement =
                        self.ctx
                            .endorse(&signed.id, &e.state_id, state.version, &state.root);
                    open.endorsed.insert(me.clone(), endorsement);
                }
                Err(reason) => {
                    open.refused.insert(me.clone(), reason);
                }
            }
        }
        if let Some(decided) = open.decision() {
            return Ok(self.decided_plan(&decided, ov));
        }
        let record = EventRecord {
            signed: signed.clone(),
            disclosures: open.built.disclosures.clone(),
            outcome: Outcome::Applied {
                version: open.built.state.version,
                root: open.built.state.root,
            },
            receipt: None,
            business_events: open.built.business_events.clone(),
            endorsements: Vec::new(),
        };
        let others: BTreeSet<NodeId> = open.asked.iter().filter(|n| **n != me).cloned().collect();
        let protocol = self.sync.for_contract(&self.ctx, &e.contract).clone();
        let sends = protocol.propose(&self.ctx, &record, &open.built.state, &others)?;
        debug!(
            node = %self.ctx.id(), event = %signed.id, state = %e.state_id,
            endorsers = ?others, "change proposed for endorsement"
        );
        self.open.insert(e.state_id.clone(), open);
        Ok(Planned {
            sends,
            proposed: Some(e.state_id.clone()),
            ..Default::default()
        })
    }

    /// This node's own endorsement rule on the version a proposal would produce.
    fn guard(&self, contract: &sst_core::ContractRef, state: &State) -> Result<(), RejectReason> {
        match self.ctx.endorsement_guard() {
            Some(g) => g
                .check(contract, &state.id, &pipeline::view(state))
                .map_err(|message| RejectReason::ContractRejected { message }),
            None => Ok(()),
        }
    }

    /// Records an endorser's answer to an open proposal; returns its decision once the
    /// answers decide it. Answers of nodes not asked, to another proposal, or repeated are
    /// ignored (logged); an endorsement that does not verify counts as a refusal.
    fn note_answer(&mut self, from: &NodeId, answer: &EndorsementAnswer) -> Option<Decided> {
        let node = self.ctx.id().clone();
        let registry = self.ctx.node_registry().clone();
        let Some(open) = self.open.get_mut(answer.state_id()) else {
            debug!(%node, peer = %from, event = %answer.event(), "answer to no open proposal ignored");
            return None;
        };
        let stray = open.signed.id != answer.event()
            || !open.asked.contains(from)
            || open.endorsed.contains_key(from)
            || open.refused.contains_key(from);
        if stray {
            debug!(%node, peer = %from, event = %answer.event(), "stray or repeated endorsement answer ignored");
            return None;
        }
        let state = &open.built.state;
        match answer {
            EndorsementAnswer::Given(g) => {
                let checked = if g.endorsement.node != *from {
                    Err(format!("signed as node {}", g.endorsement.node))
                } else {
                    g.endorsement
                        .verify(
                            &registry,
                            &open.signed.id,
                            &state.id,
                            state.version,
                            &state.root,
                        )
                        .map_err(|e| e.to_string())
                };
                match checked {
                    Ok(()) => {
                        open.endorsed.insert(from.clone(), g.endorsement.clone());
                    }
                    Err(detail) => {
                        warn!(%node, peer = %from, event = %g.event, %detail, "endorsement does not verify; counted as a refusal");
                        open.refused.insert(
                            from.clone(),
                            RejectReason::BadReceipt {
                                detail: format!("endorsement does not verify: {detail}"),
                            },
                        );
                    }
                }
            }
            EndorsementAnswer::Refused(r) => {
                warn!(
                    %node, peer = %from, event = %r.event, state = %r.state_id,
                    reason = r.reason.code(), detail = ?r.reason, "endorser refused a proposal"
                );
                open.refused.insert(from.clone(), r.reason.clone());
            }
        }
        open.decision()
    }

    /// Closes the open proposal `decided` decides: the job now commits it, answering whoever
    /// waited for the proposal, and the jobs that waited for its state go next.
    fn decide(&mut self, job: &mut Job, decided: Decided, ov: &mut Overlay) -> Planned {
        let state = decided.signed.event.state_id.clone();
        if let Some(mut open) = self.open.remove(&state) {
            if let Some(reply) = open.reply.take() {
                job.reply = Some(reply);
            }
        }
        if let Some(waiting) = self.parked.remove(&state) {
            self.unparked.extend(waiting);
        }
        let planned = self.decided_plan(&decided, ov);
        debug!(
            node = %self.ctx.id(), event = %decided.signed.id, %state,
            outcome = ?planned.verdict, "proposal decided"
        );
        job.kind = JobKind::Decided(Box::new(decided));
        planned
    }

    /// The commit of a decided proposal, sequenced (and receipted) by this node.
    fn decided_plan(&mut self, d: &Decided, ov: &mut Overlay) -> Planned {
        let mut planned = self.planned(&d.signed, d.eval.clone(), ov, true);
        if let Some(item) = &mut planned.item {
            item.event.endorsements = d.endorsements.clone();
        }
        self.sign_receipt(&mut planned);
        planned
    }

    /// As an endorser: checks a proposed change on this node's copy exactly as a received
    /// change (nothing is committed), applies this node's own rule, and answers the home.
    async fn endorse(
        &mut self,
        from: &NodeId,
        vetted: &VettedChange,
        ov: &mut Overlay,
    ) -> Result<Planned, NodeError> {
        let proposal = vetted.change();
        let e = &proposal.signed.event;
        let event = proposal.signed.id;
        let home = self.ctx.home_of_event(e).await?;
        let checked = if home.as_ref() != Some(from) {
            Err(RejectReason::InvalidPayload {
                path: "$.from".into(),
                reason: format!("node {from} is not the home node of {}", e.state_id),
            })
        } else {
            let cur = self.current(ov, &e.state_id).await?;
            let held = cur.as_ref().map_or(0, |s| s.version);
            if e.base.as_ref().is_some_and(|b| held < b.version) {
                // Behind what the proposal builds on, counting what is queued or being
                // committed here: changes were missed (this node was offline when they were
                // distributed). Refused below (`stale_base`); ask the home for them so that
                // the next proposal finds this node current.
                debug!(node = %self.ctx.id(), home = %from, state = %e.state_id, held, "behind a proposal's base; asking the home");
                self.ctx
                    .send(from, crate::sync::endorsed::gap_request(&e.state_id, held)?);
            }
            match pipeline::replicate(&self.ctx, from, vetted, cur.as_deref()) {
                Eval::Apply(built) => self.guard(&e.contract, &built.state),
                Eval::Reject(reason) => Err(reason),
            }
        };
        let answer = match &checked {
            Ok(()) => EndorsementAnswer::Given(EndorsementGiven {
                event,
                state_id: e.state_id.clone(),
                endorsement: self.ctx.endorse(
                    &event,
                    &e.state_id,
                    proposal.version,
                    &proposal.root,
                ),
            }),
            Err(reason) => EndorsementAnswer::Refused(EndorsementRefused {
                event,
                state_id: e.state_id.clone(),
                reason: reason.clone(),
            }),
        };
        // Sent now, not after the commit of the group this job is planned in: an answer
        // records nothing here (a change is applied only when the decided outcome arrives),
        // so it need not wait for this node's commit — the home waits for it.
        let protocol = self.sync.for_contract(&self.ctx, &e.contract);
        if let Some(m) = protocol.answer_proposal(&answer)? {
            self.ctx.send(from, m);
        }
        Ok(Planned {
            verdict: checked
                .err()
                .map(|reason| Ok(Verdict::Refused { event, reason })),
            ..Default::default()
        })
    }

    /// This node sequenced the planned item: it signs the receipt over its outcome before
    /// the item is committed ([`sign_receipts`], in parallel for a whole group).
    fn sign_receipt(&self, planned: &mut Planned) {
        planned.sign = planned.item.is_some();
    }

    /// The commit item of a checked event that changes no state (an actor change, a
    /// deployment): applied with version 0 and the event id as root — the directory entry or
    /// contract it registers taken up after the commit — or rejected.
    fn stateless_planned(
        signed: &SignedEvent,
        checked: Result<Registered, RejectReason>,
        sequenced: bool,
    ) -> Planned {
        let (outcome, registered) = match checked {
            Ok(registered) => (
                Outcome::Applied {
                    version: 0,
                    root: StateRoot(signed.id.0),
                },
                Some(registered),
            ),
            Err(reason) => (Outcome::Rejected { reason }, None),
        };
        let verdict = Verdict::from_outcome(signed.id, &outcome);
        let mut planned = Planned {
            item: Some(CommitItem {
                event: EventRecord {
                    signed: signed.clone(),
                    disclosures: BTreeMap::new(),
                    outcome,
                    receipt: None,
                    business_events: Vec::new(),
                    endorsements: Vec::new(),
                },
                state: None,
            }),
            sequenced,
            verdict: Some(Ok(verdict)),
            ..Default::default()
        };
        match registered {
            Some(Registered::Actor(actor)) => planned.actor = Some(actor),
            Some(Registered::Contract(record, code)) => planned.contract = Some((record, code)),
            None => {}
        }
        planned
    }

    /// Records an event that changes no state — an actor change or a deployment — broadcast
    /// by its signer's node (or relayed by any node during catch-up: the sender is not
    /// trusted, the signatures and the sequencing node's receipt are), checked against this
    /// node's directory (the keys valid before an actor change) and, for a deployment, that
    /// its code loads here. What this node cannot take (e.g. a contract whose engine it
    /// lacks) is recorded as a refusal naming why and reported; never recorded as rejected.
    async fn replicate_stateless(
        &mut self,
        from: &NodeId,
        vetted: &VettedChange,
    ) -> Result<Planned, NodeError> {
        let ch = vetted.change();
        let id = ch.signed.id;
        let refused = |reason: RejectReason| {
            Ok(Planned {
                refusal: Some((
                    from.clone(),
                    ReplicaRefusal {
                        event: id,
                        state_id: ch.signed.event.state_id.clone(),
                        version: 0,
                        reason: reason.clone(),
                    },
                )),
                verdict: Some(Ok(Verdict::Refused { event: id, reason })),
                ..Default::default()
            })
        };
        if let Some(rec) = self.ctx.store().event(&id).await? {
            self.resolve_recorded(&id, &rec.outcome);
            return Ok(Planned {
                verdict: Some(Ok(Verdict::Duplicate {
                    event: id,
                    original: rec.outcome,
                })),
                ..Default::default()
            });
        }
        if ch.version != 0 || ch.root != StateRoot(id.0) {
            return refused(RejectReason::InvalidPayload {
                path: "$.version".into(),
                reason: format!(
                    "a {} event is applied with version 0 and the event id as root",
                    ch.signed.event.kind.as_str()
                ),
            });
        }
        // Sequenced by the signer's own node, whoever relays it.
        let outcome = Outcome::Applied {
            version: ch.version,
            root: ch.root,
        };
        let sequencer = &ch.signed.event.origin_node;
        if let Err(reason) = self.ctx.check_receipt_vetted(
            ch.receipt.as_ref(),
            sequencer,
            &id,
            &ch.signed.event.state_id,
            &outcome,
            &[],
            vetted.receipt_verified(),
        ) {
            return refused(reason);
        }
        match check_stateless(&self.ctx, vetted.signed_ref()) {
            Ok(registered) => {
                let mut planned = Self::stateless_planned(&ch.signed, Ok(registered), false);
                if let Some(item) = &mut planned.item {
                    item.event.receipt = ch.receipt.clone();
                }
                Ok(planned)
            }
            Err(reason) => refused(reason),
        }
    }

    /// Asks the senders of the changes this node refused for them again (after a contract
    /// was installed: a change naming it may have arrived before its deployment).
    async fn retry_refused(&self) {
        if !self.ctx.has_refusals() {
            return;
        }
        let refusals = match self.ctx.store().refusals(None).await {
            Ok(r) => r,
            Err(e) => {
                warn!(node = %self.ctx.id(), error = %e, "recorded refusals not readable; not asked again");
                return;
            }
        };
        for protocol in self.sync.protocols() {
            match protocol.retry(&self.ctx, &refusals).await {
                Ok(msgs) => {
                    for (to, m) in msgs {
                        self.ctx.send(&to, m);
                    }
                }
                Err(e) => {
                    warn!(node = %self.ctx.id(), protocol = protocol.name(), error = %e, "refused changes not asked again")
                }
            }
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
            Eval::Apply(built) => (
                EventRecord {
                    signed: signed.clone(),
                    disclosures: built.disclosures,
                    outcome: Outcome::Applied {
                        version: built.state.version,
                        root: built.state.root,
                    },
                    receipt: None,
                    business_events: built.business_events,
                    endorsements: Vec::new(),
                },
                Some(built.state),
            ),
            Eval::Reject(reason) => (
                EventRecord {
                    signed: signed.clone(),
                    disclosures: BTreeMap::new(),
                    outcome: Outcome::Rejected { reason },
                    receipt: None,
                    business_events: Vec::new(),
                    endorsements: Vec::new(),
                },
                None,
            ),
        };
        // One copy of the new version, shared by the item to commit and the node's view.
        let state = state.map(Arc::new);
        let shared = state.clone();
        if let Some(s) = &shared {
            if signed.event.kind == EventKind::Create {
                // Later jobs of this batch (a change of the new state) find its home.
                self.ctx.plan_home(&s.id, &signed.event.origin_node);
            }
            ov.states.insert(s.id.clone(), s.clone());
        }
        let verdict = Verdict::from_outcome(signed.id, &record.outcome);
        Planned {
            item: Some(CommitItem {
                event: record,
                state,
            }),
            state: shared,
            sequenced,
            verdict: Some(Ok(verdict)),
            ..Default::default()
        }
    }

    /// Applies a change another node sequenced, once its protocol admits it on top of the
    /// version held here and the pipeline checked it.
    async fn replicate(
        &mut self,
        from: &NodeId,
        vetted: &VettedChange,
        ov: &mut Overlay,
    ) -> Result<Planned, NodeError> {
        let ch = vetted.change();
        let e = &ch.signed.event;
        if matches!(e.kind, EventKind::ActorChange | EventKind::DeployContract) {
            return self.replicate_stateless(from, vetted).await;
        }
        let cur = self.current(ov, &e.state_id).await?;
        let held = cur.as_ref().map_or(0, |s| s.version);
        // A refusal of a change of a state held here states what this node holds (version
        // and root) to the home, which compares it with its own copy.
        let held_ack = cur
            .as_ref()
            .map(|s| (from.clone(), s.id.clone(), s.version, s.root));
        let refused = |reason: RejectReason, sends| Planned {
            sends,
            ack: held_ack.clone(),
            refusal: Some((
                from.clone(),
                ReplicaRefusal {
                    event: ch.signed.id,
                    state_id: e.state_id.clone(),
                    version: ch.version,
                    reason: reason.clone(),
                },
            )),
            verdict: Some(Ok(Verdict::Refused {
                event: ch.signed.id,
                reason,
            })),
            ..Default::default()
        };
        let protocol = self.sync.for_contract(&self.ctx, &e.contract).clone();
        match protocol.admit(&self.ctx, from, ch, cur.as_deref()).await? {
            Admission::Apply => {}
            Admission::Duplicate => {
                self.resolve_recorded(
                    &ch.signed.id,
                    &Outcome::Applied {
                        version: ch.version,
                        root: ch.root,
                    },
                );
                return Ok(Planned {
                    ack: held_ack,
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
            Admission::CatchUp { send } => {
                return Ok(Planned {
                    sends: send,
                    verdict: Some(Ok(Verdict::Refused {
                        event: ch.signed.id,
                        reason: RejectReason::StaleBase {
                            expected_version: held + 1,
                            found_version: held,
                        },
                    })),
                    ..Default::default()
                });
            }
            Admission::Ignore { reason } => {
                // Not applied and not answered, but recorded with the sender, so a change
                // sent by a node that may not send it (not the state's home) is visible here.
                warn!(
                    node = %self.ctx.id(), event = %ch.signed.id, state = %e.state_id,
                    peer = %from, detail = ?reason, "received change ignored"
                );
                // Actor changes are relayed by every node: only a state change is recorded.
                let state_change = matches!(
                    e.kind,
                    EventKind::Create | EventKind::ChangeSections | EventKind::CallMethod
                );
                if state_change {
                    self.ctx
                        .record_refusal(&Refusal {
                            event: ch.signed.id,
                            state_id: e.state_id.clone(),
                            version: ch.version,
                            from_node: from.clone(),
                            reason: reason.clone(),
                            at: Timestamp::now(),
                        })
                        .await;
                }
                return Ok(Planned {
                    verdict: Some(Ok(Verdict::Refused {
                        event: ch.signed.id,
                        reason,
                    })),
                    ..Default::default()
                });
            }
            Admission::Refuse { reason, send } => return Ok(refused(reason, send)),
        }
        // The home (the sender, as `admit` checked) signed this outcome; the pipeline below
        // checks that the version and root it signed are what this node rebuilds.
        let outcome = Outcome::Applied {
            version: ch.version,
            root: ch.root,
        };
        let receipt = self.ctx.check_receipt_vetted(
            ch.receipt.as_ref(),
            from,
            &ch.signed.id,
            &e.state_id,
            &outcome,
            &ch.business_events,
            vetted.receipt_verified(),
        );
        if let Err(reason) = receipt {
            return Ok(refused(reason, Vec::new()));
        }
        if let (Some(cur), Some(base)) = (cur.as_ref(), e.base) {
            // The home applied the change on top of its version `base.version` with root
            // `base.root` (it checked the base): this node's copy of that version differs.
            if base.version == cur.version && base.root != cur.root {
                self.ctx
                    .state_diverged(from, &e.state_id, cur.version, Some(cur.root), base.root);
            }
        }
        match pipeline::replicate(&self.ctx, from, vetted, cur.as_deref()) {
            Eval::Apply(built) => {
                let validated = (e.kind == EventKind::CallMethod).then_some(built.validated);
                let mut planned = self.planned(&ch.signed, Eval::Apply(built), ov, false);
                planned.validated = validated;
                planned.base = cur;
                if let Some(item) = &mut planned.item {
                    item.event.receipt = ch.receipt.clone();
                    item.event.endorsements = ch.endorsements.clone();
                }
                planned.ack = Some((from.clone(), e.state_id.clone(), ch.version, ch.root));
                Ok(planned)
            }
            // A receiver never records a rejection of what its home applied (that would
            // block the event id); it refuses the message, keeps its replica unchanged, and
            // records the refusal on its own (refusal) table.
            Eval::Reject(reason) => Ok(refused(reason, Vec::new())),
        }
    }
}

/// What an applied event that changes no state registers once committed.
enum Registered {
    /// An actor change: the actor's new record.
    Actor(sst_core::Actor),
    /// A deployment: the record and its loaded code.
    Contract(ContractRecord, Arc<dyn Contract>),
}

/// Checks an actor change or a deployment ([`pipeline::check_actor_change`],
/// [`pipeline::check_deploy`]).
fn check_stateless(ctx: &NodeContext, s: SignedRef<'_>) -> Result<Registered, RejectReason> {
    if s.signed().event.kind == EventKind::DeployContract {
        pipeline::check_deploy(ctx, s).map(|(record, code)| Registered::Contract(record, code))
    } else {
        pipeline::check_actor_change(ctx, s).map(Registered::Actor)
    }
}

/// Commits the items of `plans` in one store batch, retrying what the store says may
/// succeed on retry.
async fn commit_items(
    ctx: &NodeContext,
    plans: &mut [Planned],
    after: Option<oneshot::Receiver<bool>>,
) -> Result<(), CommitFailure> {
    let empty = plans.iter().all(|p| p.item.is_none());
    // Receipts, validation and the store's own preparation need no connection: done while
    // the group before is still being written, then handed to the store only once that
    // group committed as planned.
    let mut ready = None;
    if !empty {
        sign_receipts(ctx, plans).await;
        ready = Some(prepared_batch(ctx, plans));
    }
    if let Some(after) = after {
        if !after.await.unwrap_or(false) {
            return Err(CommitFailure::Void);
        }
    }
    if empty {
        return Ok(());
    }
    let mut attempt = 0u32;
    loop {
        let batch = match ready.take() {
            Some(batch) => batch?,
            None => prepared_batch(ctx, plans)?,
        };
        match ctx.store().commit_prepared(batch).await {
            Ok(receipt) => {
                ctx.count_committed(plans.iter().filter_map(|p| p.item.as_ref()), &receipt);
                ctx.log_moved();
                return Ok(());
            }
            Err(e) if e.is_retryable() && attempt < 3 => {
                attempt += 1;
                debug!(attempt, error = %e, "retrying a commit");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            Err(e @ (StoreError::Conflict { .. } | StoreError::InvalidInput { .. })) => {
                return Err(CommitFailure::Logical(e))
            }
            Err(e) => return Err(CommitFailure::Fatal(e)),
        }
    }
}

/// One copy of the items of `plans` (the plans keep theirs to publish), validated against
/// the versions the items follow (their unchanged sections are not hashed again; the store
/// then only confirms the batch is unchanged) and prepared by the store. A copy per commit
/// attempt.
fn prepared_batch(ctx: &NodeContext, plans: &[Planned]) -> Result<PreparedBatch, CommitFailure> {
    let bases: Vec<&State> = plans.iter().filter_map(|p| p.base.as_deref()).collect();
    let batch = CommitBatch::new(plans.iter().filter_map(|p| p.item.clone()).collect())
        .validated_after(&bases)
        .map_err(CommitFailure::Logical)?;
    ctx.store().prepare(batch).map_err(|e| match e {
        StoreError::Conflict { .. } | StoreError::InvalidInput { .. } => CommitFailure::Logical(e),
        e => CommitFailure::Fatal(e),
    })
}

/// Signs the receipts of the items this node sequenced that have none yet, in parallel.
async fn sign_receipts(ctx: &NodeContext, plans: &mut [Planned]) {
    let mut todo: Vec<&mut EventRecord> = plans
        .iter_mut()
        .filter(|p| p.sign)
        .filter_map(|p| p.item.as_mut().map(|i| &mut i.event))
        .filter(|r| r.receipt.is_none())
        .collect();
    if todo.is_empty() {
        return;
    }
    let inputs = todo
        .iter()
        .map(|r| {
            (
                r.signed.id,
                r.signed.event.state_id.clone(),
                r.outcome.clone(),
                r.business_events.clone(),
            )
        })
        .collect();
    let receipts = ctx.sign_receipts(inputs).await;
    for (r, receipt) in todo.iter_mut().zip(receipts) {
        r.receipt = Some(receipt);
    }
}

/// The event a job from outside names (a job about an event being committed waits for it).
/// Lets the delivery of a forwarded intent go (its transport receipt and the sender's ordered
/// queue behind it) when the intent waits for endorsements or for an open proposal of its
/// state. Its origin node learns the outcome from the change or rejection this node sends
/// once the proposal is decided, not from the delivery; holding the delivery would block
/// everything the origin sends this node meanwhile — its own endorsement of that very
/// proposal included, when the origin is an endorser.
fn release_delivery(job: &mut Job) {
    if let JobKind::Sequence { from: Some(_), .. } = job.kind {
        job.reply = None;
    }
}

fn job_event(job: &Job) -> Option<EventId> {
    match &job.kind {
        JobKind::Local { .. } => None,
        JobKind::Sequence { signed, .. } => Some(signed.signed().id),
        JobKind::Replicate { change, .. } => Some(change.change().signed.id),
        JobKind::Rejected { signed, .. } => Some(signed.id),
        JobKind::Endorse { .. }
        | JobKind::Endorsement { .. }
        | JobKind::EndorsementDeadline { .. }
        | JobKind::Decided(_) => None,
    }
}

enum CommitFailure {
    /// Conflict or invalid input: replay the jobs one by one.
    Logical(StoreError),
    /// The store is down (or the node "crashed" between steps).
    Fatal(StoreError),
    /// Not handed to the store: the group before it was not committed as planned, and this
    /// one was planned on top of it (plan its jobs again).
    Void,
}

/// Answers a caller; one that stopped waiting (dropped its future) is only noted.
fn answer(reply: Reply, verdict: Result<Verdict, NodeError>) {
    if reply.send(verdict).is_err() {
        debug!("the caller stopped waiting for its verdict");
    }
}
