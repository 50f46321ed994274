//! [`Node`]: one participant's engine over its own store — actor directory, held contracts,
//! local signing keys, the sequencer task and the inbox task — and [`NodeContext`], the
//! shared view the pipeline and sync protocols read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use sst_core::{
    Access, Actor, ActorChange, ActorId, ActorKey, ActorStatus, ContractPolicy, ContractRecord,
    ContractRef, Disclosure, EventFilter, EventId, EventKind, HashAlg, NodeId, Outcome, Parties,
    SignedEvent, State, StateId, Store,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::contract::{Contract, ContractRegistry};
use crate::error::NodeError;
use crate::message::{Intent, Message, Verdict};
use crate::sequencer::{self, Job, JobKind};
use crate::sync::{HomeSync, SyncProtocol};
use crate::transport::{Inbox, Transport};

type Waiter = oneshot::Sender<Result<Verdict, NodeError>>;

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a node runs.
#[derive(Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// Hash algorithm of the states this node creates.
    pub alg: HashAlg,
    /// Most jobs the sequencer group-commits in one store batch.
    pub max_batch: usize,
    /// Sync protocols, first match (by [`SyncProtocol::handles`]) wins.
    pub protocols: Vec<Arc<dyn SyncProtocol>>,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("id", &self.id)
            .field("alg", &self.alg)
            .field("max_batch", &self.max_batch)
            .field(
                "protocols",
                &self.protocols.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl NodeConfig {
    /// Defaults: BLAKE3, batches of up to 256 jobs, the default [`HomeSync`] protocol.
    pub fn new(id: impl Into<NodeId>) -> Self {
        NodeConfig {
            id: id.into(),
            alg: HashAlg::Blake3,
            max_batch: 256,
            protocols: vec![Arc::new(HomeSync)],
        }
    }
}

/// What the pipeline and the sync protocols see of a node: its id, store, actor directory,
/// held and deployed contracts, and transport.
pub struct NodeContext {
    id: NodeId,
    alg: HashAlg,
    store: Arc<dyn Store>,
    registry: ContractRegistry,
    deployed: RwLock<BTreeMap<ContractRef, ContractRecord>>,
    actors: RwLock<BTreeMap<ActorId, Actor>>,
    keys: RwLock<BTreeMap<ActorId, Arc<ActorKey>>>,
    homes: Mutex<HashMap<StateId, NodeId>>,
    pending: Mutex<HashMap<EventId, Waiter>>,
    transport: Arc<dyn Transport>,
    protocols: Vec<Arc<dyn SyncProtocol>>,
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
    /// The transport.
    pub fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
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
    /// The code and deployment record of a contract version, if this node holds both and
    /// their identities agree. Events naming any other version are refused.
    pub fn held(&self, contract: &ContractRef) -> Option<(Arc<dyn Contract>, ContractRecord)> {
        let code = self.registry.get(contract)?.clone();
        let record = read(&self.deployed).get(contract)?.clone();
        let identity = ContractRecord::identity_of(&code.descriptor(), record.identity.alg());
        (identity == record.identity).then_some((code, record))
    }
    /// The section policy of a held contract version.
    pub fn policy(&self, contract: &ContractRef) -> Option<ContractPolicy> {
        self.held(contract).map(|(_, r)| r.descriptor.policy)
    }
    /// The sync protocol responsible for `contract`.
    pub fn protocol_for(&self, contract: &ContractRef) -> Option<Arc<dyn SyncProtocol>> {
        self.protocols.iter().find(|p| p.handles(contract)).cloned()
    }
    /// Every configured protocol.
    pub fn protocols(&self) -> &[Arc<dyn SyncProtocol>] {
        &self.protocols
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

    pub(crate) fn note_home(&self, state: &StateId, home: &NodeId) {
        lock(&self.homes).insert(state.clone(), home.clone());
    }

    /// Applies a recorded (committed) actor change to the directory: the actor table, the
    /// in-memory directory, and this node's signing keys (a key that no longer matches the
    /// actor's record, or of a revoked actor, is dropped). The in-memory directory changes
    /// even when the table write fails; [`Node::start`] repairs the table from the log.
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

    pub(crate) fn wait_for(&self, event: EventId, waiter: Waiter) {
        lock(&self.pending).insert(event, waiter);
    }

    pub(crate) fn resolve(&self, event: &EventId, verdict: Result<Verdict, NodeError>) {
        if let Some(w) = lock(&self.pending).remove(event) {
            let _ = w.send(verdict);
        }
    }

    /// Versions of every state this node holds.
    pub(crate) async fn held_versions(&self) -> Result<BTreeMap<StateId, u64>, NodeError> {
        let mut held = BTreeMap::new();
        for id in self.store.state_ids().await? {
            if let Some(s) = self.store.state(&id).await? {
                held.insert(id, s.version);
            }
        }
        Ok(held)
    }
}

/// A running node: the one writer (sequencer) of its store plus the task that handles
/// messages from other nodes. Dropping it stops both tasks (like a crash: what was committed
/// stays, what was not is lost, and a restart resumes from the store).
pub struct Node {
    ctx: Arc<NodeContext>,
    jobs: mpsc::Sender<Job>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.ctx.id)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Node {
    /// Migrates the store, loads actors and deployed contracts, resumes the origin sequence
    /// from the store, starts the sequencer and inbox tasks, and asks peers for what this
    /// node missed (best effort: unreachable peers are skipped).
    ///
    /// # Errors
    /// [`NodeError::Store`] when the store cannot be migrated or read.
    pub async fn start(
        config: NodeConfig,
        store: Arc<dyn Store>,
        registry: ContractRegistry,
        transport: Arc<dyn Transport>,
        inbox: Inbox,
    ) -> Result<Node, NodeError> {
        store.migrate().await?;
        let actors = store
            .actors()
            .await?
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect();
        let deployed = store
            .contracts()
            .await?
            .into_iter()
            .map(|c| (c.contract().clone(), c))
            .collect();
        let mut actors: BTreeMap<ActorId, Actor> = actors;
        // Repair a crash between an actor change's commit and its directory update: when the
        // directory still holds exactly the record an applied change replaced, apply it.
        let changes = store
            .events(&EventFilter {
                kind: Some(EventKind::ActorChange),
                outcome: Some(sst_core::OutcomeKind::Applied),
                ..Default::default()
            })
            .await?;
        for rec in changes {
            let Ok(change) = ActorChange::from_payload(&rec.event().payload) else {
                continue;
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
        let next_seq = store.last_origin_seq(&config.id).await?.0 + 1;
        let ctx = Arc::new(NodeContext {
            id: config.id.clone(),
            alg: config.alg,
            store,
            registry,
            deployed: RwLock::new(deployed),
            actors: RwLock::new(actors),
            keys: RwLock::new(BTreeMap::new()),
            homes: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            transport,
            protocols: config.protocols.clone(),
        });
        let (jobs, rx) = mpsc::channel(config.max_batch.max(1) * 4);
        let writer = tokio::spawn(sequencer::run(
            ctx.clone(),
            rx,
            next_seq,
            config.max_batch.max(1),
        ));
        let reader = tokio::spawn(sequencer::inbox_loop(ctx.clone(), jobs.clone(), inbox));
        let node = Node {
            ctx,
            jobs,
            tasks: vec![writer, reader],
        };
        node.resync().await?;
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.ctx.id
    }
    /// This node's store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.ctx.store
    }
    /// The shared context (directory, contracts, transport).
    pub fn context(&self) -> &Arc<NodeContext> {
        &self.ctx
    }

    /// Registers (or updates) an actor in this node's directory, out of band: nothing is
    /// recorded in the log or sent to peers. Use it to introduce actors; rotate keys and
    /// revoke with [`Node::rotate_key`] / [`Node::revoke`], which are signed events that every
    /// node checks and [`sst_core::verify_store`] replays.
    ///
    /// # Errors
    /// [`NodeError::Store`] when the actor table cannot be written.
    pub async fn register_actor(&self, actor: Actor) -> Result<(), NodeError> {
        self.ctx.store.put_actor(&actor).await?;
        write(&self.ctx.actors).insert(actor.id.clone(), actor);
        Ok(())
    }

    /// Gives this node the signing key of one of its own actors.
    ///
    /// # Errors
    /// [`NodeError::NotLocal`] unless the actor is registered, belongs to this node, is
    /// active and has this key's public key.
    pub fn add_key(&self, actor: &ActorId, key: ActorKey) -> Result<(), NodeError> {
        let ok = self.ctx.actor(actor).is_some_and(|a| {
            a.node == self.ctx.id
                && a.status == ActorStatus::Active
                && a.public_key == key.public_key()
        });
        if !ok {
            return Err(NodeError::NotLocal {
                actor: actor.clone(),
                node: self.ctx.id.clone(),
            });
        }
        write(&self.ctx.keys).insert(actor.clone(), Arc::new(key));
        Ok(())
    }

    /// Installs a deployed contract version: the deployer must be a registered actor whose
    /// signature over the identity verifies (strict), and this node must hold code with that
    /// exact identity. Re-installing the same record is a no-op.
    ///
    /// # Errors
    /// [`NodeError::Contract`] naming what does not match; [`NodeError::Store`].
    pub async fn deploy(&self, record: ContractRecord) -> Result<(), NodeError> {
        let contract = record.contract().clone();
        let bad = |reason: String| NodeError::Contract {
            contract: contract.clone(),
            reason,
        };
        let deployer = self
            .ctx
            .actor(&record.deployer)
            .ok_or_else(|| bad(format!("deployer {} is not a known actor", record.deployer)))?;
        if deployer.status != ActorStatus::Active {
            return Err(bad(format!("deployer {} is revoked", record.deployer)));
        }
        record
            .verify(&deployer.public_key)
            .map_err(|e| bad(format!("deployment record does not verify: {e}")))?;
        let code = self
            .ctx
            .registry
            .get(&contract)
            .ok_or_else(|| bad("this node does not hold its code".into()))?;
        let identity = ContractRecord::identity_of(&code.descriptor(), record.identity.alg());
        if identity != record.identity {
            return Err(bad(format!(
                "the code held here has identity {identity}, the record says {}",
                record.identity
            )));
        }
        self.ctx.store.put_contract(&record).await?;
        write(&self.ctx.deployed).insert(contract, record);
        Ok(())
    }

    async fn run(&self, kind: JobKind) -> Result<Verdict, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                kind,
                reply: Some(tx),
            })
            .await
            .map_err(|_| NodeError::Stopped(self.ctx.id.clone()))?;
        rx.await
            .map_err(|_| NodeError::Stopped(self.ctx.id.clone()))?
    }

    /// Has local actor `actor` make `intent`: the sequencer assigns the next origin sequence,
    /// signs the event, and either runs it through the pipeline (this node is the state's
    /// home) or forwards it to the home node. Resolves once the outcome is recorded here
    /// (dispatch-and-wait; wrap it in `tokio::time::timeout` for a deadline — a home node
    /// that crashes after receiving the intent answers after its restart and resync).
    ///
    /// # Errors
    /// [`NodeError::NoKey`] / [`NodeError::NotLocal`] for actors this node cannot sign for;
    /// [`NodeError::Invalid`] when the target state is unknown here; transport and store
    /// errors. A rejection is not an error: see [`Verdict::Rejected`].
    pub async fn submit(&self, actor: &ActorId, intent: Intent) -> Result<Verdict, NodeError> {
        self.run(JobKind::Local {
            actor: actor.clone(),
            intent,
            prepared: None,
        })
        .await
    }

    /// Rotates local actor `actor`'s key to `new_key`: submits [`Intent::rotate_key`] (signed
    /// with the actor's current key, which this node must hold), and once it is applied —
    /// recorded here and broadcast to every peer node — installs `new_key` as the actor's
    /// signing key. From then on events signed with the old key are rejected
    /// (`bad_signature`) while older events keep verifying against it.
    ///
    /// # Errors
    /// As [`Node::submit`]. A rejection is not an error: see [`Verdict::Rejected`].
    pub async fn rotate_key(
        &self,
        actor: &ActorId,
        new_key: ActorKey,
    ) -> Result<Verdict, NodeError> {
        let verdict = self
            .submit(
                actor,
                Intent::rotate_key(actor.clone(), new_key.public_key()),
            )
            .await?;
        if verdict.is_applied() {
            self.add_key(actor, new_key)?;
        }
        Ok(verdict)
    }

    /// Revokes `target` as local actor `by` (an active actor of the target's node, possibly
    /// the target itself) through a signed [`Intent::revoke`] event broadcast to every peer
    /// node; the target's later events are rejected (`revoked_actor`) everywhere.
    ///
    /// # Errors
    /// As [`Node::submit`].
    pub async fn revoke(&self, by: &ActorId, target: &ActorId) -> Result<Verdict, NodeError> {
        self.submit(by, Intent::revoke(target.clone())).await
    }

    /// Runs an already signed intent through this node's pipeline as its sequencer (e.g. an
    /// intent received out of band). Replays of recorded events change nothing.
    ///
    /// # Errors
    /// Store errors.
    pub async fn ingest(
        &self,
        signed: SignedEvent,
        disclosures: BTreeMap<String, Disclosure>,
    ) -> Result<Verdict, NodeError> {
        self.run(JobKind::Sequence {
            from: None,
            signed,
            disclosures,
        })
        .await
    }

    /// Announces this node to its peers and asks each for what it missed (catch-up).
    /// Unreachable peers are skipped.
    ///
    /// # Errors
    /// Store errors while reading what this node holds.
    pub async fn resync(&self) -> Result<(), NodeError> {
        let held = self.ctx.held_versions().await?;
        let own_after = self.ctx.store.last_origin_seq(&self.ctx.id).await?;
        for peer in self.ctx.peers() {
            let catch_up = Message::CatchUp {
                held: held.clone(),
                own_after,
            };
            if self.ctx.transport.send(&peer, catch_up).await.is_ok() {
                let _ = self.ctx.transport.send(&peer, Message::Hello).await;
            }
        }
        Ok(())
    }

    /// The latest version of a state as this node holds it (redacted to what it may read).
    ///
    /// # Errors
    /// Store errors.
    pub async fn state(&self, id: &StateId) -> Result<Option<State>, NodeError> {
        Ok(self.ctx.store.state(id).await?)
    }

    /// The recorded outcome of an event, if this node recorded it.
    ///
    /// # Errors
    /// Store errors.
    pub async fn outcome(&self, id: &EventId) -> Result<Option<Outcome>, NodeError> {
        Ok(self.ctx.store.event(id).await?.map(|r| r.outcome))
    }

    /// Rejected events recorded here, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn rejections(&self) -> Result<Vec<sst_core::EventRecord>, NodeError> {
        Ok(self
            .ctx
            .store
            .events(&EventFilter {
                outcome: Some(sst_core::OutcomeKind::Rejected),
                ..Default::default()
            })
            .await?)
    }
}
