//! [`NodeContext`]: what the pipeline, the sync protocols and the node's tasks share — the
//! node's id, store, actor directory and signing keys, installed contracts, the outbox, the
//! callers waiting for an outcome, which sync protocol each contract uses, the **sync
//! ledger** (per state and participant node: the version acknowledged and any refusal, as
//! the protocols report them), this node's own recorded refusals, the **origin floor**
//! (the highest origin sequence of this node known to be used anywhere), and the **witness**
//! side of tamper evidence: peers' log checkpoints and state statements compared with what
//! was witnessed before and with this node's own copy, and the alarms raised; and what the
//! `endorsed` protocol needs of the node: the policy its installed contract versions
//! choose, participant nodes with their roles, the node-key endorsement, and the node's own
//! endorsement rule ([`crate::EndorsementGuard`]). It sits below
//! every task that reads it (it imports only contracts, messages and the transport).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sst_core::{
    Access, Actor, ActorChange, ActorId, ActorKey, ActorStatus, BusinessEvent, Checkpoint,
    CommitItem, CommitReceipt, ContractPolicy, ContractRecord, ContractRef, Digest, Endorsement,
    EndorsementPolicy, Event, EventFilter, EventId, EventKind, HashAlg, NodeId, NodeKey,
    NodeRegistry, Outcome, OutcomeKind, Parties, Refusal, RejectReason, Role, SequencingReceipt,
    SignedCheckpoint, SignedEvent, StateId, StateRoot, Store, SyncSpec, Timestamp, Witnessed,
};
use tokio::sync::{oneshot, watch, Notify};
use tracing::{debug, error, warn};

use crate::contract::{Contract, ContractRegistry, EndorsementGuard};
use crate::error::NodeError;
use crate::message::{
    AppliedChange, DeployPayload, Intent, NodeSync, ProtocolEnvelope, ReplicaRefusal, StateWitness,
    Verdict, WitnessAlarm, WitnessAlarmKind,
};
use crate::transport::outbox::{Done, Outbox};
use crate::transport::TransportError;
use crate::verify::{VerifyPool, Vetted, VettedChange};

/// Checkpoints kept per node (its own and each witnessed peer's); older ones are pruned.
pub(crate) const CHECKPOINTS_KEPT: usize = 16;

pub(crate) type Waiter = oneshot::Sender<Result<Verdict, NodeError>>;

/// A local intent forwarded to its sequencing node, kept so that it can be built again with
/// a fresh origin sequence when the sequencing node finds its sequence already taken.
#[derive(Debug, Clone)]
pub(crate) struct Resubmit {
    pub(crate) actor: ActorId,
    pub(crate) intent: Intent,
}

struct Waiting {
    waiter: Waiter,
    resubmit: Option<Resubmit>,
    /// The node the intent was forwarded to and the message, sent again when that node
    /// restarts before the outcome arrived ([`NodeContext::forward_again`]).
    forwarded: Option<(NodeId, ProtocolEnvelope)>,
}

/// What a participant node acknowledged of one state, and its latest refusal.
#[derive(Debug, Clone, Default)]
struct PeerSync {
    acknowledged: u64,
    /// The earliest time of a signed statement of the node that it holds `acknowledged`
    /// (`None`: acknowledged without one): a later statement of an older version is a
    /// rollback.
    acknowledged_at: Option<Timestamp>,
    refusal: Option<ReplicaRefusal>,
    /// The latest version the node validated by re-executing its method.
    validated: u64,
}

/// Received method calls a node re-executed and compared with the home's result, and those
/// it applied on the home's signed receipt alone ([`NodeContext::validation_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationCounts {
    /// Re-executed, same result as the home.
    pub re_executed: u64,
    /// Applied on the home's signed receipt (this node cannot read every section).
    pub on_receipt: u64,
}

#[derive(Debug, Default)]
struct ValidationCounters {
    re_executed: AtomicU64,
    on_receipt: AtomicU64,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which sync protocol (by name) synchronises the states of each contract: an entry per
/// contract name, otherwise the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolChoice {
    default: String,
    by_contract: BTreeMap<String, String>,
}

impl ProtocolChoice {
    /// Every contract uses protocol `default`.
    pub fn new(default: impl Into<String>) -> Self {
        ProtocolChoice {
            default: default.into(),
            by_contract: BTreeMap::new(),
        }
    }
    /// States of contract `name` (every version) use protocol `protocol`.
    pub fn set(&mut self, name: impl Into<String>, protocol: impl Into<String>) {
        self.by_contract.insert(name.into(), protocol.into());
    }
    /// The protocol name for `contract`.
    pub fn protocol_of(&self, contract: &ContractRef) -> &str {
        self.by_contract
            .get(&contract.name)
            .unwrap_or(&self.default)
    }
}

/// A contract version installed on this node: its code and its deployment record, whose
/// identity was checked against the code once, when it was deployed or loaded.
#[derive(Clone)]
struct Installed {
    code: Arc<dyn Contract>,
    record: ContractRecord,
    /// `code.policy()`, computed once at installation (the pipeline reads it per event).
    policy: Arc<ContractPolicy>,
}

impl Installed {
    fn new(code: Arc<dyn Contract>, record: ContractRecord) -> Self {
        let policy = Arc::new(code.policy());
        Installed {
            code,
            record,
            policy,
        }
    }
}

/// What a sequencing receipt covers: event, state, outcome, business events.
pub(crate) type ReceiptInput = (EventId, StateId, Outcome, Vec<BusinessEvent>);

/// What the pipeline and the sync protocols see of a node: its id, store, actor directory,
/// installed contracts, and outbox.
pub struct NodeContext {
    id: NodeId,
    alg: HashAlg,
    store: Arc<dyn Store>,
    registry: ContractRegistry,
    installed: RwLock<BTreeMap<ContractRef, Installed>>,
    actors: RwLock<BTreeMap<ActorId, Actor>>,
    keys: RwLock<BTreeMap<ActorId, Arc<ActorKey>>>,
    homes: Mutex<HashMap<StateId, NodeId>>,
    /// Homes of the states created in the batch the sequencer is planning (not yet
    /// committed), so that a later change of the same batch finds its home like it finds
    /// the planned version; emptied once the batch's commit returned.
    planned_homes: Mutex<HashMap<StateId, NodeId>>,
    pending: Mutex<HashMap<EventId, Waiting>>,
    outbox: Outbox,
    choice: ProtocolChoice,
    /// State → participant node → what it acknowledged / refused (kept by the home node).
    ledger: Mutex<HashMap<StateId, BTreeMap<NodeId, PeerSync>>>,
    /// Bumped whenever the ledger or this node's store moved (wakes [`crate::Node::wait_for`]).
    sync_changed: watch::Sender<u64>,
    /// This node's recorded refusals: state → refused event → the version it would produce.
    refused: Mutex<BTreeMap<StateId, BTreeMap<EventId, u64>>>,
    /// Highest origin sequence of this node known to be used (here or on any peer).
    origin_floor: AtomicU64,
    /// Peers whose answer to the start handshake is still awaited.
    handshake: watch::Sender<BTreeSet<NodeId>>,
    /// This node's key: signs sequencing receipts and log checkpoints.
    node_key: Arc<NodeKey>,
    /// The network's node keys (from configuration, never from the store).
    nodes: NodeRegistry,
    /// This node's latest signed checkpoint (what it tells its peers).
    own_checkpoint: Mutex<Option<SignedCheckpoint>>,
    /// Woken whenever this node's log may have grown (the checkpoint task waits on it).
    log_grew: Notify,
    /// Events this node committed since it started: applied, rejected.
    committed: [AtomicU64; 2],
    /// The roots of the state versions this node committed most recently (what peers'
    /// statements about them are compared with, without reading the version back).
    recent_roots: Mutex<RecentRoots>,
    /// Peer → the latest checkpoint witnessed from it (loaded from the store on first use).
    witnessed: Mutex<HashMap<NodeId, Option<Checkpoint>>>,
    /// Alarms raised about peers' logs.
    alarms: Mutex<Vec<WitnessAlarm>>,
    /// State → latest version this node validated by re-executing its method.
    validated: Mutex<HashMap<StateId, u64>>,
    /// Received method calls re-executed / applied on receipt.
    validation: ValidationCounters,
    /// Verifies incoming signatures ahead of the sequencer.
    verify: VerifyPool,
    /// This node's own rule for endorsing proposed changes (`endorsed` protocol), if any.
    guard: Option<Arc<dyn EndorsementGuard>>,
}

impl std::fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeContext")
            .field("id", &self.id)
            .field("store", &self.store.backend())
            .finish()
    }
}

impl NodeContext {
    /// Loads the actor directory (repairing a directory left behind the log by a crash) and
    /// installs every deployed contract whose code this node holds with the same identity.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn load(
        id: NodeId,
        alg: HashAlg,
        (node_key, nodes): (Arc<NodeKey>, NodeRegistry),
        store: Arc<dyn Store>,
        registry: ContractRegistry,
        outbox: Outbox,
        choice: ProtocolChoice,
        verify: VerifyPool,
        guard: Option<Arc<dyn EndorsementGuard>>,
    ) -> Result<NodeContext, NodeError> {
        let mut actors: BTreeMap<ActorId, Actor> = store
            .actors()
            .await?
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect();
        // Repair a crash between an actor change's commit and its directory update: when the
        // directory still holds exactly the record an applied change replaced, apply it.
        let changes = store
            .events(&EventFilter {
                kind: Some(EventKind::ActorChange),
                outcome: Some(OutcomeKind::Applied),
                ..Default::default()
            })
            .await?;
        for rec in changes {
            let change = match ActorChange::from_payload(&rec.event().payload) {
                Ok(c) => c,
                Err(e) => {
                    warn!(event = %rec.id(), error = %e, "recorded actor change has a malformed payload");
                    continue;
                }
            };
            let behind = actors.get(&change.actor.id).is_some_and(|a| {
                a.public_key == change.previous_key
                    && a.status == ActorStatus::Active
                    && *a != change.actor
            });
            if behind {
                store.put_actor(&change.actor).await?;
                actors.insert(change.actor.id.clone(), change.actor);
            }
        }
        // Repair a crash between a deployment's commit and its contract-table write: every
        // applied deployment's record is in the table.
        let deployments = store
            .events(&EventFilter {
                kind: Some(EventKind::DeployContract),
                outcome: Some(OutcomeKind::Applied),
                ..Default::default()
            })
            .await?;
        for rec in deployments {
            match DeployPayload::from_payload(&rec.event().payload) {
                Ok(d) if store.contract(d.record.contract()).await?.is_none() => {
                    debug!(node = %id, contract = %d.record.contract(), "deployment recorded, contract table repaired");
                    store.put_contract(&d.record).await?;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(event = %rec.id(), error = %e, "recorded deployment has a malformed payload")
                }
            }
        }
        let mut installed = BTreeMap::new();
        for record in store.contracts().await? {
            let contract = record.contract().clone();
            match registry.load(&record) {
                Ok(code) => {
                    installed.insert(contract, Installed::new(code, record));
                }
                Err(reason) => {
                    debug!(node = %id, %contract, %reason, "deployed contract not installed")
                }
            }
        }
        let mut refused: BTreeMap<StateId, BTreeMap<EventId, u64>> = BTreeMap::new();
        match store.refusals(None).await {
            Ok(list) => {
                for r in list {
                    refused
                        .entry(r.state_id)
                        .or_default()
                        .insert(r.event, r.version);
                }
            }
            Err(e) => warn!(node = %id, error = %e, "recorded refusals not readable; none retried"),
        }
        let origin_floor = AtomicU64::new(store.last_origin_seq(&id).await?.0);
        Ok(NodeContext {
            id,
            alg,
            store,
            registry,
            installed: RwLock::new(installed),
            actors: RwLock::new(actors),
            keys: RwLock::new(BTreeMap::new()),
            homes: Mutex::new(HashMap::new()),
            planned_homes: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            outbox,
            choice,
            ledger: Mutex::new(HashMap::new()),
            sync_changed: watch::channel(0).0,
            refused: Mutex::new(refused),
            origin_floor,
            handshake: watch::channel(BTreeSet::new()).0,
            node_key,
            nodes,
            own_checkpoint: Mutex::new(None),
            log_grew: Notify::new(),
            committed: [AtomicU64::new(0), AtomicU64::new(0)],
            recent_roots: Mutex::new(RecentRoots::default()),
            witnessed: Mutex::new(HashMap::new()),
            alarms: Mutex::new(Vec::new()),
            validated: Mutex::new(HashMap::new()),
            validation: ValidationCounters::default(),
            verify,
            guard,
        })
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }
    /// Hash algorithm for new states.
    pub fn alg(&self) -> HashAlg {
        self.alg
    }
    /// This node's store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
    pub(crate) fn store_arc(&self) -> &Arc<dyn Store> {
        &self.store
    }
    /// A registered actor.
    pub fn actor(&self, id: &ActorId) -> Option<Actor> {
        read(&self.actors).get(id).cloned()
    }
    /// Actors that belong to `node`.
    pub fn actors_of(&self, node: &NodeId) -> Vec<ActorId> {
        read(&self.actors)
            .values()
            .filter(|a| &a.node == node)
            .map(|a| a.id.clone())
            .collect()
    }
    /// Every node some registered actor belongs to, except this one.
    pub fn peers(&self) -> BTreeSet<NodeId> {
        read(&self.actors)
            .values()
            .map(|a| a.node.clone())
            .filter(|n| n != &self.id)
            .collect()
    }
    /// Nodes of the actors that hold a role in `parties` (unknown actors are skipped).
    pub fn participants(&self, parties: &Parties) -> BTreeSet<NodeId> {
        let actors = read(&self.actors);
        parties
            .actors()
            .iter()
            .filter_map(|a| actors.get(a).map(|a| a.node.clone()))
            .collect()
    }
    /// What `node` may read and write in a state with `parties` under `policy`.
    pub fn node_access(&self, node: &NodeId, policy: &ContractPolicy, parties: &Parties) -> Access {
        let actors = self.actors_of(node);
        policy.access_for_actors(actors.iter(), parties)
    }
    /// The code and deployment record of a contract version installed here (held, deployed,
    /// identities equal). Events naming any other version are refused.
    pub fn held(&self, contract: &ContractRef) -> Option<(Arc<dyn Contract>, ContractRecord)> {
        read(&self.installed)
            .get(contract)
            .map(|i| (i.code.clone(), i.record.clone()))
    }
    /// Strictly checks a signed event that arrived here on the verification pool, under its
    /// actor's key in the directory now (an unknown actor's is left to the pipeline).
    pub(crate) fn vet(&self, signed: SignedEvent) -> oneshot::Receiver<Vetted> {
        let key = self.actor(&signed.event.actor).map(|a| a.public_key);
        self.verify.vet(signed, key)
    }

    /// As [`NodeContext::vet`], for the event of a received change.
    pub(crate) fn vet_change(&self, change: Box<AppliedChange>) -> oneshot::Receiver<VettedChange> {
        let key = self.actor(&change.signed.event.actor).map(|a| a.public_key);
        self.verify.vet_change(change, key)
    }

    /// The code of an installed contract version and its section policy (the code's own,
    /// computed once at installation), without copying the deployment record.
    pub(crate) fn code(
        &self,
        contract: &ContractRef,
    ) -> Option<(Arc<dyn Contract>, Arc<ContractPolicy>)> {
        read(&self.installed)
            .get(contract)
            .map(|i| (i.code.clone(), i.policy.clone()))
    }
    /// The section policy of an installed contract version.
    pub fn policy(&self, contract: &ContractRef) -> Option<ContractPolicy> {
        read(&self.installed)
            .get(contract)
            .map(|i| i.record.descriptor.policy.clone())
    }
    /// The name of the sync protocol that synchronises states of `contract`: the one its
    /// installed descriptor chooses ([`sst_core::ContractDescriptor::sync`]), else the one
    /// the node's configuration routes its name to ([`ProtocolChoice`]).
    pub fn protocol_of(&self, contract: &ContractRef) -> &str {
        let chosen = read(&self.installed)
            .get(contract)
            .and_then(|i| i.record.descriptor.sync.as_ref().map(SyncSpec::protocol));
        chosen.unwrap_or_else(|| self.choice.protocol_of(contract))
    }

    /// The endorsement policy and timeout (milliseconds) of an installed contract version
    /// on the `endorsed` protocol (`None`: another protocol, or not installed here).
    pub fn endorsement_of(&self, contract: &ContractRef) -> Option<(EndorsementPolicy, u64)> {
        read(&self.installed)
            .get(contract)
            .and_then(|i| match i.record.descriptor.sync.as_ref() {
                Some(SyncSpec::Endorsed { policy, timeout_ms }) => {
                    Some((policy.clone(), *timeout_ms))
                }
                _ => None,
            })
    }

    /// The participant nodes of a state with `parties` and the roles their actors hold
    /// there ([`sst_core::participant_nodes`] over this node's actor directory).
    pub fn participant_roles(&self, parties: &Parties) -> BTreeMap<NodeId, BTreeSet<Role>> {
        let actors = read(&self.actors);
        sst_core::participant_nodes(parties, |a| actors.get(a).map(|a| a.node.clone()))
    }

    /// This node's endorsement of `event` producing `version` with `root` on `state`, signed
    /// with its node key.
    pub fn endorse(
        &self,
        event: &EventId,
        state: &StateId,
        version: u64,
        root: &StateRoot,
    ) -> Endorsement {
        Endorsement::sign(self.id.clone(), &self.node_key, event, state, version, root)
    }

    /// This node's own endorsement rule, if configured.
    pub(crate) fn endorsement_guard(&self) -> Option<&Arc<dyn EndorsementGuard>> {
        self.guard.as_ref()
    }

    /// Queues `envelope` for `to` in this node's outbox (never waits for the peer; a failed
    /// send is logged and the peer catches up later).
    pub fn send(&self, to: &NodeId, envelope: ProtocolEnvelope) {
        self.outbox.send(to, envelope);
    }

    /// As [`NodeContext::send`]; `done` learns whether the transport took the message.
    pub(crate) fn send_then(&self, to: &NodeId, envelope: ProtocolEnvelope, done: Done) {
        self.outbox.send_then(to, envelope, done);
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The home node of a state: the node that created it (origin of its create event),
    /// including a state whose create the sequencer planned earlier in the batch it is
    /// building (the version a protocol's `admit` sees as current then).
    ///
    /// # Errors
    /// [`NodeError::Store`] when the store cannot be read.
    pub async fn home_of(&self, state: &StateId) -> Result<Option<NodeId>, NodeError> {
        if let Some(h) = lock(&self.homes).get(state) {
            return Ok(Some(h.clone()));
        }
        if let Some(h) = lock(&self.planned_homes).get(state) {
            return Ok(Some(h.clone()));
        }
        let Some(v1) = self.store.state_at(state, 1).await? else {
            return Ok(None);
        };
        let Some(ev) = v1.last_event else {
            return Ok(None);
        };
        let Some(rec) = self.store.event(&ev).await? else {
            return Ok(None);
        };
        let home = rec.event().origin_node.clone();
        lock(&self.homes).insert(state.clone(), home.clone());
        Ok(Some(home))
    }

    /// The home node of the state `event` targets: its origin for a create (the node that
    /// creates the state), otherwise [`NodeContext::home_of`].
    ///
    /// # Errors
    /// [`NodeError::Store`] when the store cannot be read.
    pub async fn home_of_event(&self, event: &Event) -> Result<Option<NodeId>, NodeError> {
        if event.kind == EventKind::Create {
            return Ok(Some(event.origin_node.clone()));
        }
        self.home_of(&event.state_id).await
    }

    pub(crate) fn note_home(&self, state: &StateId, home: &NodeId) {
        lock(&self.homes).insert(state.clone(), home.clone());
    }

    /// The sequencer planned the create of `state` by `home` in the batch it is building.
    pub(crate) fn plan_home(&self, state: &StateId, home: &NodeId) {
        lock(&self.planned_homes).insert(state.clone(), home.clone());
    }

    /// The batch's commit returned: a committed create's home is in the store (and noted
    /// by [`NodeContext::note_home`]), one that was not committed is no home.
    pub(crate) fn forget_planned_homes(&self) {
        lock(&self.planned_homes).clear();
    }

    /// A group's commit returned: the homes of the states it creates are no longer pending
    /// (those of a group planned after it still are).
    pub(crate) fn forget_planned_homes_of(&self, states: &[StateId]) {
        if states.is_empty() {
            return;
        }
        let mut planned = lock(&self.planned_homes);
        for s in states {
            planned.remove(s);
        }
    }

    /// Registers (or updates) an actor out of band.
    pub(crate) async fn register_actor(&self, actor: Actor) -> Result<(), NodeError> {
        self.store.put_actor(&actor).await?;
        self.log_moved();
        write(&self.actors).insert(actor.id.clone(), actor);
        Ok(())
    }

    /// Applies a recorded (committed) actor change to the directory: the actor table, the
    /// in-memory directory, and this node's signing keys (a key that no longer matches the
    /// actor's record, or of a revoked actor, is dropped). The in-memory directory changes
    /// even when the table write fails; a restart repairs the table from the log.
    pub(crate) async fn apply_actor(&self, actor: Actor) -> Result<(), NodeError> {
        let stored = self.store.put_actor(&actor).await;
        self.log_moved();
        {
            let mut keys = write(&self.keys);
            let stale = keys.get(&actor.id).is_some_and(|k| {
                k.public_key() != actor.public_key || actor.status != ActorStatus::Active
            });
            if stale {
                keys.remove(&actor.id);
            }
        }
        write(&self.actors).insert(actor.id.clone(), actor);
        Ok(stored?)
    }

    pub(crate) fn key(&self, actor: &ActorId) -> Option<Arc<ActorKey>> {
        read(&self.keys).get(actor).cloned()
    }

    /// Installs the signing key of a local, active actor whose public key it is.
    pub(crate) fn add_key(&self, actor: &ActorId, key: ActorKey) -> Result<(), NodeError> {
        let local = self
            .actor(actor)
            .filter(|a| a.node == self.id && a.status == ActorStatus::Active)
            .ok_or_else(|| NodeError::NotLocal {
                actor: actor.clone(),
                node: self.id.clone(),
            })?;
        if local.public_key != key.public_key() {
            return Err(NodeError::WrongKey {
                actor: actor.clone(),
                registered: local
                    .public_key
                    .to_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
                node: self.id.clone(),
            });
        }
        write(&self.keys).insert(actor.clone(), Arc::new(key));
        Ok(())
    }

    /// Installs a deployed contract version (see [`crate::Node::deploy`]): the deployer's
    /// signature, and the record's identity against the code held here, are checked once.
    pub(crate) async fn install(&self, record: ContractRecord) -> Result<(), NodeError> {
        let contract = record.contract().clone();
        let bad = |reason: String| NodeError::Contract {
            contract: contract.clone(),
            reason,
        };
        let deployer = self
            .actor(&record.deployer)
            .ok_or_else(|| bad(format!("deployer {} is not a known actor", record.deployer)))?;
        if deployer.status != ActorStatus::Active {
            return Err(bad(format!("deployer {} is revoked", record.deployer)));
        }
        record
            .verify(&deployer.public_key)
            .map_err(|e| bad(format!("deployment record does not verify: {e}")))?;
        let code = self.registry.load(&record)?;
        self.install_loaded(record, code).await
    }

    /// The runnable code of a deployment record on this node ([`ContractRegistry::load`]).
    ///
    /// # Errors
    /// As [`ContractRegistry::load`].
    pub(crate) fn load_code(
        &self,
        record: &ContractRecord,
    ) -> Result<Arc<dyn Contract>, NodeError> {
        self.registry.load(record)
    }

    /// The deployment record installed for `contract`, if any.
    pub(crate) fn installed_record(&self, contract: &ContractRef) -> Option<ContractRecord> {
        read(&self.installed)
            .get(contract)
            .map(|i| i.record.clone())
    }

    /// Records a checked deployment in the contract table and installs its loaded code:
    /// events naming it are accepted from now on, without a restart.
    pub(crate) async fn install_loaded(
        &self,
        record: ContractRecord,
        code: Arc<dyn Contract>,
    ) -> Result<(), NodeError> {
        self.store.put_contract(&record).await?;
        self.log_moved();
        let contract = record.contract().clone();
        write(&self.installed).insert(contract, Installed::new(code, record));
        Ok(())
    }

    /// Notes that this node re-executed the method that made `version` of `state` and found
    /// the home's result (`validated`), or applied it on the home's signed receipt alone.
    pub(crate) fn note_validation(&self, state: &StateId, version: u64, validated: bool) {
        if validated {
            self.validation.re_executed.fetch_add(1, Ordering::Relaxed);
            let mut v = lock(&self.validated);
            let latest = v.entry(state.clone()).or_default();
            *latest = (*latest).max(version);
        } else {
            self.validation.on_receipt.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The latest version of `state` this node validated by re-execution (0: none).
    pub fn validated(&self, state: &StateId) -> u64 {
        lock(&self.validated).get(state).copied().unwrap_or(0)
    }

    /// How many received method calls this node re-executed and found equal to the home's
    /// result, and how many it applied on the home's signed receipt alone (it could not read
    /// every section), since it started.
    pub fn validation_counts(&self) -> ValidationCounts {
        ValidationCounts {
            re_executed: self.validation.re_executed.load(Ordering::Relaxed),
            on_receipt: self.validation.on_receipt.load(Ordering::Relaxed),
        }
    }

    /// Records that `peer` validated `state` up to `version` by re-execution (as its
    /// acknowledgement says).
    pub fn note_validated_by(&self, peer: &NodeId, state: &StateId, version: u64) {
        let moved = self.with_peer_sync(state, peer, |entry| {
            let moved = version > entry.validated;
            entry.validated = entry.validated.max(version);
            moved
        });
        if moved {
            self.sync_moved();
        }
    }

    /// Keeps the caller waiting for `event` (a forwarded intent), with what is needed to
    /// build the intent again under a fresh origin sequence.
    pub(crate) fn wait_for(
        &self,
        event: EventId,
        waiter: Waiter,
        resubmit: Option<Resubmit>,
        forwarded: Option<(NodeId, ProtocolEnvelope)>,
    ) {
        lock(&self.pending).insert(
            event,
            Waiting {
                waiter,
                resubmit,
                forwarded,
            },
        );
    }

    /// Sends again every intent this node forwarded to `to` whose outcome has not arrived:
    /// `to` (re)started, and an intent it held undecided (e.g. waiting for endorsements) is
    /// gone with its memory. It sequences each again, or, if it recorded one before it
    /// stopped, replays that outcome (event ids make this idempotent).
    pub(crate) fn forward_again(&self, to: &NodeId) {
        let again: Vec<(EventId, ProtocolEnvelope)> = lock(&self.pending)
            .iter()
            .filter_map(|(event, w)| match &w.forwarded {
                Some((node, m)) if node == to => Some((*event, m.clone())),
                _ => None,
            })
            .collect();
        // If `to` is gone again, its next start announcement brings this here again.
        for (event, m) in again {
            debug!(%event, node = %to, "forwarding again an intent whose outcome has not arrived");
            self.send(to, m);
        }
    }

    /// Takes the caller waiting for `event` and the intent to build again, if any.
    pub(crate) fn take_waiter(&self, event: &EventId) -> Option<(Waiter, Option<Resubmit>)> {
        lock(&self.pending)
            .remove(event)
            .map(|w| (w.waiter, w.resubmit))
    }

    /// Answers the caller waiting for `event`, if any.
    pub(crate) fn resolve(&self, event: &EventId, verdict: Result<Verdict, NodeError>) {
        if let Some(w) = lock(&self.pending).remove(event) {
            if w.waiter.send(verdict).is_err() {
                debug!(%event, "the caller stopped waiting for this outcome");
            }
        }
    }

    /// Notes that origin sequence `seq` of this node is used (recorded here or on a peer):
    /// the sequencer assigns only sequences above it.
    pub fn note_origin_used(&self, seq: u64) {
        let before = self.origin_floor.fetch_max(seq, Ordering::SeqCst);
        if seq > before {
            debug!(node = %self.id, seq, "origin floor raised");
        }
    }

    /// The highest origin sequence of this node known to be used.
    pub fn origin_floor(&self) -> u64 {
        self.origin_floor.load(Ordering::SeqCst)
    }

    /// The start handshake waits for an answer from each of `peers` (replacing any earlier
    /// set): see [`NodeContext::answered`].
    pub fn expect_answers(&self, peers: BTreeSet<NodeId>) {
        self.handshake.send_replace(peers);
    }

    /// `peer` answered the start handshake, or cannot be reached: stop waiting for it.
    pub fn answered(&self, peer: &NodeId) {
        self.handshake.send_if_modified(|w| w.remove(peer));
    }

    /// Waits until every peer expected by the start handshake answered (or was found
    /// unreachable), at most `timeout`; returns the peers still silent.
    pub(crate) async fn await_answers(&self, timeout: Duration) -> BTreeSet<NodeId> {
        let mut rx = self.handshake.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|w| w.is_empty())).await;
        match waited {
            Ok(Ok(_)) => BTreeSet::new(),
            _ => self.handshake.borrow().clone(),
        }
    }

    /// Records that `peer` holds `state` up to `version` (a cumulative acknowledgement); a
    /// refusal of a version it now holds is forgotten.
    pub fn note_ack(&self, peer: &NodeId, state: &StateId, version: u64) {
        let moved = self.with_peer_sync(state, peer, |entry| {
            let mut moved = false;
            if version > entry.acknowledged {
                entry.acknowledged = version;
                entry.acknowledged_at = None;
                moved = true;
            }
            if entry.refusal.as_ref().is_some_and(|r| r.version <= version) {
                entry.refusal = None;
                moved = true;
            }
            moved
        });
        if moved {
            debug!(node = %self.id, %peer, %state, version, "acknowledged");
            self.sync_moved();
        }
    }

    /// Records that `peer` refused a change of `refusal.state_id` (kept until it acknowledges
    /// that version).
    pub fn note_peer_refusal(&self, peer: &NodeId, refusal: ReplicaRefusal) {
        let state = refusal.state_id.clone();
        let noted = self.with_peer_sync(&state, peer, |entry| {
            if refusal.version <= entry.acknowledged {
                return false;
            }
            entry.refusal = Some(refusal);
            true
        });
        if noted {
            self.sync_moved();
        }
    }

    /// Runs `f` on the ledger entry of `peer` for `state` (created empty when missing).
    fn with_peer_sync<T>(
        &self,
        state: &StateId,
        peer: &NodeId,
        f: impl FnOnce(&mut PeerSync) -> T,
    ) -> T {
        let mut ledger = lock(&self.ledger);
        let entry = ledger
            .entry(state.clone())
            .or_default()
            .entry(peer.clone())
            .or_default();
        f(entry)
    }

    /// What `node` acknowledged of `state`, and its latest refusal, as the ledger holds it.
    pub fn peer_sync(&self, state: &StateId, node: &NodeId) -> NodeSync {
        let ledger = lock(&self.ledger);
        let p = ledger
            .get(state)
            .and_then(|s| s.get(node))
            .cloned()
            .unwrap_or_default();
        NodeSync::new(node.clone(), p.acknowledged, p.refusal).with_validated(p.validated)
    }

    /// Wakes whoever waits on sync progress ([`crate::Node::wait_for`]).
    pub fn sync_moved(&self) {
        self.sync_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn sync_changes(&self) -> watch::Receiver<u64> {
        self.sync_changed.subscribe()
    }

    /// Records on this node's store that it refused a received change (logged when the store
    /// cannot record it: the refusal is still reported to the sender).
    pub(crate) async fn record_refusal(&self, refusal: &Refusal) {
        lock(&self.refused)
            .entry(refusal.state_id.clone())
            .or_default()
            .insert(refusal.event, refusal.version);
        if let Err(e) = self.store.put_refusal(refusal).await {
            warn!(
                node = %self.id, event = %refusal.event, state = %refusal.state_id, error = %e,
                "refusal not recorded in the store"
            );
        }
        self.log_moved();
        self.sync_moved();
    }

    /// Clears this node's recorded refusals of `state` up to `version` (now applied here).
    pub(crate) async fn clear_refusals(&self, state: &StateId, version: u64) {
        let cleared: Vec<EventId> = {
            let mut refused = lock(&self.refused);
            let Some(events) = refused.get_mut(state) else {
                return;
            };
            let cleared = events
                .iter()
                .filter(|(_, v)| **v <= version)
                .map(|(e, _)| *e)
                .collect::<Vec<_>>();
            for e in &cleared {
                events.remove(e);
            }
            if events.is_empty() {
                refused.remove(state);
            }
            cleared
        };
        for event in cleared {
            debug!(node = %self.id, %event, %state, "refused change applied; refusal cleared");
            if let Err(e) = self.store.clear_refusal(&event).await {
                warn!(node = %self.id, %event, %state, error = %e, "refusal not cleared in the store");
            }
            self.log_moved();
        }
    }

    /// Whether this node holds recorded refusals of received changes.
    pub(crate) fn has_refusals(&self) -> bool {
        !lock(&self.refused).is_empty()
    }

    /// Fails the caller waiting for `event` when its forwarded intent could not be sent.
    pub(crate) fn resolve_send(&self, event: &EventId, sent: Result<(), TransportError>) {
        if let Err(e) = sent {
            self.resolve(event, Err(e.into()));
        }
    }

    /// Versions of every state this node holds.
    ///
    /// # Errors
    /// Store errors.
    pub async fn held_versions(&self) -> Result<BTreeMap<StateId, u64>, NodeError> {
        let mut held = BTreeMap::new();
        for id in self.store.state_ids().await? {
            if let Some(s) = self.store.state(&id).await? {
                held.insert(id, s.version);
            }
        }
        Ok(held)
    }

    /// The network's node registry (node id → node public key, from configuration).
    pub fn node_registry(&self) -> &NodeRegistry {
        &self.nodes
    }

    /// This node's receipt over the outcome of `event` on `state`, which it sequenced.
    pub(crate) fn sign_receipt(
        &self,
        event: &EventId,
        state: &StateId,
        outcome: &Outcome,
        business_events: &[BusinessEvent],
    ) -> SequencingReceipt {
        SequencingReceipt::sign(
            self.id.clone(),
            &self.node_key,
            event,
            state,
            outcome,
            business_events,
        )
    }

    /// This node's receipts over many outcomes (as [`NodeContext::sign_receipt`]), signed in
    /// parallel on the verification pool (a few are signed here).
    pub(crate) async fn sign_receipts(&self, items: Vec<ReceiptInput>) -> Vec<SequencingReceipt> {
        let workers = self.verify.workers();
        if items.len() < 4 || workers < 2 {
            return items.iter().map(|i| self.sign_receipt_of(i)).collect();
        }
        let per = items.len().div_ceil(workers);
        let mut parts = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<ReceiptInput> = items.by_ref().take(per).collect();
            let (node, key) = (self.id.clone(), self.node_key.clone());
            let sent = chunk.clone();
            let signed = self.verify.run(move || {
                sent.iter()
                    .map(|(event, state, outcome, business)| {
                        SequencingReceipt::sign(node.clone(), &key, event, state, outcome, business)
                    })
                    .collect::<Vec<_>>()
            });
            parts.push((chunk, signed));
        }
        let mut out = Vec::new();
        for (chunk, signed) in parts {
            match signed.await {
                Ok(receipts) => out.extend(receipts),
                // The pool thread failed: signed here instead (every item gets its receipt).
                Err(_) => out.extend(chunk.iter().map(|i| self.sign_receipt_of(i))),
            }
        }
        out
    }

    fn sign_receipt_of(
        &self,
        (event, state, outcome, business): &ReceiptInput,
    ) -> SequencingReceipt {
        self.sign_receipt(event, state, outcome, business)
    }

    /// Checks the receipt of a received record: present, signed by `sequencer` (the node that
    /// must have sequenced it), verifying under its registered key over `(event, state,
    /// outcome)`; and `sequencer` under no alarm about its log here.
    ///
    /// # Errors
    /// [`RejectReason::BadReceipt`] naming what is wrong.
    pub fn check_receipt(
        &self,
        receipt: Option<&SequencingReceipt>,
        sequencer: &NodeId,
        event: &EventId,
        state: &StateId,
        outcome: &Outcome,
        business_events: &[BusinessEvent],
    ) -> Result<(), RejectReason> {
        self.check_receipt_vetted(
            receipt,
            sequencer,
            event,
            state,
            outcome,
            business_events,
            None,
        )
    }

    /// As [`NodeContext::check_receipt`]; the signature is not checked again when the
    /// verification pool verified this receipt over exactly this digest (`verified`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_receipt_vetted(
        &self,
        receipt: Option<&SequencingReceipt>,
        sequencer: &NodeId,
        event: &EventId,
        state: &StateId,
        outcome: &Outcome,
        business_events: &[BusinessEvent],
        verified: Option<&Digest>,
    ) -> Result<(), RejectReason> {
        let bad = |detail: String| RejectReason::BadReceipt { detail };
        if let Some(alarm) = self.log_alarm_about(sequencer) {
            return Err(bad(format!("witness alarm: {alarm}")));
        }
        let receipt =
            receipt.ok_or_else(|| bad(format!("no sequencing receipt (sequencer {sequencer})")))?;
        if receipt.node != *sequencer {
            return Err(bad(format!(
                "receipt signed by node {}, but {sequencer} sequences this event",
                receipt.node
            )));
        }
        let digest = SequencingReceipt::digest(event, state, outcome, business_events);
        if verified == Some(&digest) {
            return Ok(());
        }
        receipt
            .verify_digest(&self.nodes, &digest)
            .map_err(|e| bad(e.to_string()))
    }

    /// Counts the events `receipt` says the committed `items` newly recorded, by outcome (duplicates
    /// skipped by the store are not counted).
    pub(crate) fn count_committed<'a>(
        &self,
        items: impl Iterator<Item = &'a CommitItem>,
        receipt: &CommitReceipt,
    ) {
        let new: BTreeSet<&EventId> = receipt.committed.iter().collect();
        let mut roots = lock(&self.recent_roots);
        for item in items.filter(|i| new.contains(&i.event.id())) {
            let slot = match item.event.outcome.kind() {
                OutcomeKind::Applied => 0,
                OutcomeKind::Rejected => 1,
            };
            self.committed[slot].fetch_add(1, Ordering::Relaxed);
            if let Some(state) = &item.state {
                roots.insert(&state.id, state.version, state.root);
            }
        }
    }

    /// Events this node committed since it started: `(applied, rejected)`.
    pub(crate) fn committed_counts(&self) -> (u64, u64) {
        (
            self.committed[0].load(Ordering::Relaxed),
            self.committed[1].load(Ordering::Relaxed),
        )
    }

    /// Notes that this node's log may have grown (wakes the checkpoint task).
    pub(crate) fn log_moved(&self) {
        self.log_grew.notify_one();
    }

    /// Waits until the log may have grown since the last wait.
    pub(crate) async fn log_changes(&self) {
        self.log_grew.notified().await;
    }

    /// This node's latest signed checkpoint.
    pub fn own_checkpoint(&self) -> Option<SignedCheckpoint> {
        lock(&self.own_checkpoint).clone()
    }

    /// Signs and stores a checkpoint of this node's log head, unless the latest one already
    /// names that position; returns the new checkpoint, if any.
    ///
    /// # Errors
    /// Store errors.
    pub(crate) async fn checkpoint(&self) -> Result<Option<SignedCheckpoint>, NodeError> {
        let head = self.store.log_head().await?;
        if lock(&self.own_checkpoint)
            .as_ref()
            .is_some_and(|c| c.checkpoint.pos == head.pos && c.checkpoint.head == head.hash)
        {
            return Ok(None);
        }
        let cp = Checkpoint {
            node: self.id.clone(),
            pos: head.pos,
            head: head.hash,
            at: Timestamp::now(),
        }
        .sign(&self.node_key);
        self.store.put_checkpoint(&cp).await?;
        self.prune_checkpoints(&self.id).await;
        let mut own = lock(&self.own_checkpoint);
        // Two writers may race (the checkpoint task and a shutdown): keep the latest.
        if own
            .as_ref()
            .is_none_or(|c| c.checkpoint.pos <= cp.checkpoint.pos)
        {
            *own = Some(cp.clone());
        }
        debug!(node = %self.id, pos = head.pos, "log checkpoint signed");
        Ok(Some(cp))
    }

    /// Witnesses `peer`'s signed checkpoint: verifies it against the node registry,
    /// compares it with the latest one witnessed from `peer` and keeps it when it is newer
    /// and consistent; raises an alarm (logged as an error, listed by
    /// [`NodeContext::witness_alarms`]) when the signature does not verify or the peer's log
    /// was rolled back or forked. A checkpoint older than the one witnessed (an earlier
    /// statement delivered late) is ignored.
    pub async fn witness(&self, peer: &NodeId, cp: SignedCheckpoint) {
        let reported = &cp.checkpoint;
        if reported.node != *peer {
            warn!(node = %self.id, %peer, named = %reported.node, "checkpoint of another node ignored");
            return;
        }
        if let Err(e) = cp.verify(&self.nodes) {
            return self.alarm(
                peer,
                WitnessAlarmKind::BadSignature {
                    detail: e.to_string(),
                },
            );
        }
        let cached = lock(&self.witnessed).get(peer).cloned();
        let latest = match cached {
            Some(latest) => latest,
            None => match self.store.checkpoints(peer).await {
                Ok(list) => {
                    let latest = list.into_iter().next_back().map(|c| c.checkpoint);
                    lock(&self.witnessed).insert(peer.clone(), latest.clone());
                    latest
                }
                Err(e) => {
                    warn!(node = %self.id, %peer, error = %e, "witnessed checkpoints not readable");
                    None
                }
            },
        };
        if let Some(w) = &latest {
            match Witnessed::compare(w, reported) {
                Witnessed::Consistent if reported.pos == w.pos => return,
                Witnessed::Consistent => {}
                Witnessed::RolledBack { .. } if reported.at <= w.at => {
                    debug!(node = %self.id, %peer, pos = reported.pos, "older checkpoint delivered late; ignored");
                    return;
                }
                Witnessed::RolledBack {
                    witnessed,
                    reported,
                } => {
                    return self.alarm(
                        peer,
                        WitnessAlarmKind::RolledBack {
                            witnessed,
                            reported,
                        },
                    )
                }
                Witnessed::Forked { pos } => {
                    return self.alarm(peer, WitnessAlarmKind::Forked { pos })
                }
            }
        }
        if let Err(e) = self.store.put_checkpoint(&cp).await {
            warn!(node = %self.id, %peer, pos = reported.pos, error = %e, "witnessed checkpoint not stored");
            return;
        }
        lock(&self.witnessed).insert(peer.clone(), Some(reported.clone()));
        self.prune_checkpoints(peer).await;
    }

    /// Keeps only the [`CHECKPOINTS_KEPT`] latest checkpoints of `node` in the store (the
    /// latest is what start checks, `verify` and peers compare with; older ones only grow the
    /// table). A failure is logged: the next checkpoint prunes again.
    async fn prune_checkpoints(&self, node: &NodeId) {
        match self.store.prune_checkpoints(node, CHECKPOINTS_KEPT).await {
            Ok(0) => {}
            Ok(n) => debug!(node = %self.id, of = %node, pruned = n, "old checkpoints deleted"),
            Err(e) => warn!(node = %self.id, of = %node, error = %e, "old checkpoints not pruned"),
        }
    }

    /// This node's signed statement that it holds `state` at `version` with `root`, dated
    /// `at` (taken before what it states was read).
    pub fn state_witness(
        &self,
        state: &StateId,
        version: u64,
        root: StateRoot,
        at: Timestamp,
    ) -> StateWitness {
        StateWitness::sign(
            self.id.clone(),
            &self.node_key,
            state.clone(),
            version,
            root,
            at,
        )
    }

    /// Witnesses `peer`'s signed statement about a state this node is the home of: verifies
    /// it against the node registry (an alarm when it does not verify), compares the stated
    /// root with this node's own at that version (a [`WitnessAlarmKind::StateDiverged`] alarm
    /// naming `peer` when they differ, or when this node holds no such version), and with
    /// what `peer` acknowledged before (a [`WitnessAlarmKind::StateRolledBack`] alarm when it
    /// states an older version later than it stated the acknowledged one; an older statement
    /// delivered late is ignored). A consistent statement counts as `peer`'s acknowledgement.
    pub async fn witness_state(&self, peer: &NodeId, w: &StateWitness) {
        if w.node != *peer {
            warn!(node = %self.id, %peer, named = %w.node, state = %w.state_id, "state statement of another node ignored");
            return;
        }
        if let Err(detail) = w.verify(&self.nodes) {
            return self.alarm(peer, WitnessAlarmKind::BadSignature { detail });
        }
        let recent = lock(&self.recent_roots).get(&w.state_id, w.version);
        let read = match recent {
            Some(root) => Ok(Some(root)),
            None => self
                .store
                .state_at(&w.state_id, w.version)
                .await
                .map(|s| s.map(|s| s.root)),
        };
        let ours = match read {
            Ok(root) => root,
            Err(e) => {
                warn!(node = %self.id, %peer, state = %w.state_id, version = w.version, error = %e, "state not readable; statement not compared");
                return;
            }
        };
        if ours != Some(w.root) {
            self.alarm(
                peer,
                WitnessAlarmKind::StateDiverged {
                    state: w.state_id.clone(),
                    version: w.version,
                    ours,
                    theirs: w.root,
                },
            );
        }
        self.note_statement(peer, &w.state_id, w.version, w.at);
    }

    /// `peer` stated at `at` that it holds `version` of `state` (0: none; signed, or
    /// authenticated by the transport): a rollback alarm when it acknowledged a newer version
    /// in a statement made before `at`; otherwise (or then, lowering it to what `peer` now
    /// holds) its acknowledgement.
    pub fn note_statement(&self, peer: &NodeId, state: &StateId, version: u64, at: Timestamp) {
        /// What a statement does to the ledger.
        enum Noted {
            Moved,
            Unchanged,
            RolledBack { acknowledged: u64 },
        }
        let noted = self.with_peer_sync(state, peer, |entry| {
            if version > entry.acknowledged {
                entry.acknowledged = version;
                entry.acknowledged_at = Some(at);
                if entry.refusal.as_ref().is_some_and(|r| r.version <= version) {
                    entry.refusal = None;
                }
                Noted::Moved
            } else if version == entry.acknowledged {
                entry.acknowledged_at = Some(entry.acknowledged_at.map_or(at, |t| t.min(at)));
                Noted::Unchanged
            } else if entry.acknowledged_at.is_some_and(|t| at > t) {
                let acknowledged = entry.acknowledged;
                entry.acknowledged = version;
                entry.acknowledged_at = Some(at);
                Noted::RolledBack { acknowledged }
            } else {
                debug!(node = %self.id, %peer, %state, version, "older statement delivered late; ignored");
                Noted::Unchanged
            }
        });
        match noted {
            Noted::Unchanged => return,
            Noted::Moved => {
                debug!(node = %self.id, %peer, %state, version, "acknowledged (signed)")
            }
            Noted::RolledBack { acknowledged } => self.alarm(
                peer,
                WitnessAlarmKind::StateRolledBack {
                    state: state.clone(),
                    acknowledged,
                    reported: version,
                },
            ),
        }
        self.sync_moved();
    }

    /// Raises a [`WitnessAlarmKind::StateDiverged`] alarm about `peer`, which announced
    /// `theirs` as the root of `state` at `version` where this node holds `ours`.
    pub fn state_diverged(
        &self,
        peer: &NodeId,
        state: &StateId,
        version: u64,
        ours: Option<StateRoot>,
        theirs: StateRoot,
    ) {
        self.alarm(
            peer,
            WitnessAlarmKind::StateDiverged {
                state: state.clone(),
                version,
                ours,
                theirs,
            },
        );
    }

    fn alarm(&self, peer: &NodeId, kind: WitnessAlarmKind) {
        let alarm = WitnessAlarm {
            node: peer.clone(),
            kind,
            at: Timestamp::now(),
        };
        {
            let mut alarms = lock(&self.alarms);
            if alarms
                .iter()
                .any(|a| a.node == alarm.node && a.kind == alarm.kind)
            {
                return;
            }
            match alarm.kind.state() {
                None => {
                    error!(node = %self.id, %peer, alarm = %alarm, "witness alarm: a peer's log does not hold what it signed")
                }
                Some(state) => {
                    error!(node = %self.id, %peer, %state, alarm = %alarm, "witness alarm: a peer's copy of a state is not this node's")
                }
            }
            alarms.push(alarm);
        }
        self.sync_moved();
    }

    /// The witness alarms raised here, oldest first.
    pub fn witness_alarms(&self) -> Vec<WitnessAlarm> {
        lock(&self.alarms).clone()
    }

    /// The first alarm raised about `node`, if any.
    pub fn alarm_about(&self, node: &NodeId) -> Option<WitnessAlarm> {
        lock(&self.alarms).iter().find(|a| &a.node == node).cloned()
    }

    /// The first alarm raised about `node`'s log ([`WitnessAlarmKind::is_about_log`]), if
    /// any: the changes `node` sequences are refused while it stands.
    pub fn log_alarm_about(&self, node: &NodeId) -> Option<WitnessAlarm> {
        lock(&self.alarms)
            .iter()
            .find(|a| &a.node == node && a.kind.is_about_log())
            .cloned()
    }
}

/// The roots of the state versions a node committed most recently, oldest forgotten first
/// (a version's root never changes once committed, so a remembered one is exact).
#[derive(Debug, Default)]
struct RecentRoots {
    roots: HashMap<(StateId, u64), StateRoot>,
    order: std::collections::VecDeque<(StateId, u64)>,
}

impl RecentRoots {
    /// How many versions are remembered.
    const CAPACITY: usize = 16_384;

    fn insert(&mut self, state: &StateId, version: u64, root: StateRoot) {
        let key = (state.clone(), version);
        if self.roots.insert(key.clone(), root).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.roots.remove(&old);
            }
        }
    }

    fn get(&self, state: &StateId, version: u64) -> Option<StateRoot> {
        self.roots.get(&(state.clone(), version)).copied()
    }
}
