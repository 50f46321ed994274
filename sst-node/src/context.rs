//! [`NodeContext`]: what the pipeline, the sync protocols and the node's tasks share — the
//! node's id, store, actor directory and signing keys, installed contracts, the outbox, the
//! callers waiting for an outcome, and which sync protocol each contract uses. It sits below
//! every task that reads it (it imports only contracts, messages and the transport).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use sst_core::{
    Access, Actor, ActorChange, ActorId, ActorKey, ActorStatus, ContractPolicy, ContractRecord,
    ContractRef, Event, EventFilter, EventId, EventKind, HashAlg, NodeId, OutcomeKind, Parties,
    StateId, Store,
};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::contract::{Contract, ContractRegistry};
use crate::error::NodeError;
use crate::message::{ProtocolEnvelope, Verdict};
use crate::transport::outbox::{Done, Outbox};
use crate::transport::TransportError;

pub(crate) type Waiter = oneshot::Sender<Result<Verdict, NodeError>>;

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
}

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
    pending: Mutex<HashMap<EventId, Waiter>>,
    outbox: Outbox,
    choice: ProtocolChoice,
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
    pub(crate) async fn load(
        id: NodeId,
        alg: HashAlg,
        store: Arc<dyn Store>,
        registry: ContractRegistry,
        outbox: Outbox,
        choice: ProtocolChoice,
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
        let mut installed = BTreeMap::new();
        for record in store.contracts().await? {
            let contract = record.contract().clone();
            match Self::check_code(&registry, &record) {
                Ok(code) => {
                    installed.insert(contract, Installed { code, record });
                }
                Err(reason) => {
                    debug!(node = %id, %contract, %reason, "deployed contract not installed")
                }
            }
        }
        Ok(NodeContext {
            id,
            alg,
            store,
            registry,
            installed: RwLock::new(installed),
            actors: RwLock::new(actors),
            keys: RwLock::new(BTreeMap::new()),
            homes: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            outbox,
            choice,
        })
    }

    /// The code held for `record`'s contract version, if its identity is the record's.
    fn check_code(
        registry: &ContractRegistry,
        record: &ContractRecord,
    ) -> Result<Arc<dyn Contract>, String> {
        let code = registry
            .get(record.contract())
            .ok_or_else(|| "this node does not hold its code".to_owned())?;
        let identity = registry
            .identity(record.contract(), record.identity.alg())
            .ok_or_else(|| "this node does not hold its code".to_owned())?;
        if identity != record.identity {
            return Err(format!(
                "the code held here has identity {identity}, the record says {}",
                record.identity
            ));
        }
        Ok(code.clone())
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
    /// The section policy of an installed contract version.
    pub fn policy(&self, contract: &ContractRef) -> Option<ContractPolicy> {
        read(&self.installed)
            .get(contract)
            .map(|i| i.record.descriptor.policy.clone())
    }
    /// The name of the sync protocol that synchronises states of `contract`.
    pub fn protocol_of(&self, contract: &ContractRef) -> &str {
        self.choice.protocol_of(contract)
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

    /// The home node of a state: the node that created it (origin of its create event).
    ///
    /// # Errors
    /// [`NodeError::Store`] when the store cannot be read.
    pub async fn home_of(&self, state: &StateId) -> Result<Option<NodeId>, NodeError> {
        if let Some(h) = lock(&self.homes).get(state) {
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

    /// Registers (or updates) an actor out of band.
    pub(crate) async fn register_actor(&self, actor: Actor) -> Result<(), NodeError> {
        self.store.put_actor(&actor).await?;
        write(&self.actors).insert(actor.id.clone(), actor);
        Ok(())
    }

    /// Applies a recorded (committed) actor change to the directory: the actor table, the
    /// in-memory directory, and this node's signing keys (a key that no longer matches the
    /// actor's record, or of a revoked actor, is dropped). The in-memory directory changes
    /// even when the table write fails; a restart repairs the table from the log.
    pub(crate) async fn apply_actor(&self, actor: Actor) -> Result<(), NodeError> {
        let stored = self.store.put_actor(&actor).await;
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
        let ok = self.actor(actor).is_some_and(|a| {
            a.node == self.id && a.status == ActorStatus::Active && a.public_key == key.public_key()
        });
        if !ok {
            return Err(NodeError::NotLocal {
                actor: actor.clone(),
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
        let code = Self::check_code(&self.registry, &record).map_err(bad)?;
        self.store.put_contract(&record).await?;
        write(&self.installed).insert(contract, Installed { code, record });
        Ok(())
    }

    pub(crate) fn wait_for(&self, event: EventId, waiter: Waiter) {
        lock(&self.pending).insert(event, waiter);
    }

    /// Answers the caller waiting for `event`, if any.
    pub(crate) fn resolve(&self, event: &EventId, verdict: Result<Verdict, NodeError>) {
        if let Some(w) = lock(&self.pending).remove(event) {
            if w.send(verdict).is_err() {
                debug!(%event, "the caller stopped waiting for this outcome");
            }
        }
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
}
