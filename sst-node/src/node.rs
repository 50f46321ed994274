//! [`Node`], the public API of one participant's engine over its own store: it starts the
//! sequencer and inbox tasks over a [`NodeContext`], submits intents, installs actors, keys
//! and contracts (retrying the changes it refused once their cause may be fixed), reads
//! states and outcomes, and reports how far each participant node is ([`Node::sync_status`],
//! [`Node::wait_for`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sst_core::{
    Actor, ActorId, ActorKey, ContractRecord, ContractRef, Disclosure, EventFilter, EventId,
    HashAlg, NodeId, NodeKey, NodeRegistry, Outcome, Refusal, SignedCheckpoint, SignedEvent, State,
    StateId, Store,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::checkpoint;
use crate::context::{NodeContext, ValidationCounts};
use crate::contract::{ContractRegistry, EndorsementGuard};
use crate::error::NodeError;
use crate::inbox;
use crate::message::{Intent, NodeSync, ReplicaRefusal, SyncStatus, Verdict, WitnessAlarm};
use crate::sequencer::{self, Job, JobKind, Pending};
use crate::sync::SyncRegistry;
use crate::transport::outbox::Outbox;
use crate::transport::{Inbox, Transport};
use crate::verify::VerifyPool;

/// How a node runs.
#[derive(Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// Hash algorithm of the states this node creates.
    pub alg: HashAlg,
    /// Most jobs the sequencer group-commits in one store batch.
    pub max_batch: usize,
    /// Most messages queued for one peer; beyond it messages are dropped (logged) and the
    /// peer catches up once it drains its queue.
    pub outbox_capacity: usize,
    /// Sync protocols and which contract uses which (default: [`crate::HomeSync`] for all).
    pub protocols: SyncRegistry,
    /// How long [`Node::start`] waits for its peers' answers to the start handshake (e.g. the
    /// highest origin sequence each recorded for this node) before it sequences anything;
    /// unreachable peers are not waited for.
    pub handshake_timeout: Duration,
    /// This node's key: it signs the receipts of the events this node sequences and the
    /// checkpoints of its log. Its public half must be this node's entry in `registry`.
    pub node_key: Arc<NodeKey>,
    /// The network's node keys (node id → public key), from configuration — never from the
    /// store: receipts and checkpoints of peers are checked against it.
    pub registry: NodeRegistry,
    /// Least time between two log checkpoints while the node is busy (one is always signed
    /// once the log stops growing, and at [`Node::shutdown`]).
    pub checkpoint_interval: Duration,
    /// Threads of the pool that strictly verifies the signatures of incoming signed events
    /// (local submits, forwarded intents, replicated changes) before they reach the
    /// sequencer; `0` (the default) means one per core
    /// ([`std::thread::available_parallelism`]).
    pub verify_workers: usize,
    /// This node's own rule for endorsing proposed changes of states on the `endorsed`
    /// protocol (checked after the change validated; a refusal is answered as
    /// `contract_rejected`); `None` (the default): it endorses every change that validates.
    pub endorsement_guard: Option<Arc<dyn EndorsementGuard>>,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("id", &self.id)
            .field("alg", &self.alg)
            .field("max_batch", &self.max_batch)
            .field("outbox_capacity", &self.outbox_capacity)
            .field("protocols", &self.protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("registry", &self.registry)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("verify_workers", &self.verify_workers)
            .field("endorsement_guard", &self.endorsement_guard.is_some())
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// Defaults: BLAKE3, batches of up to 256 jobs, 65 536 queued messages per peer, the
    /// default [`crate::HomeSync`] protocol for every contract, a 5 s start handshake, a
    /// checkpoint at most every 200 ms, and a **freshly generated node key with a registry
    /// naming only this node** — enough for a node alone; a network gives every node its key
    /// and the one shared registry with [`NodeConfig::with_key`].
    pub fn new(id: impl Into<NodeId>) -> Self {
        let id = id.into();
        let node_key = NodeKey::generate();
        let registry = NodeRegistry::new().with(id.clone(), node_key.public_key());
        NodeConfig {
            id,
            alg: HashAlg::Blake3,
            max_batch: 256,
            outbox_capacity: 1 << 16,
            protocols: SyncRegistry::default(),
            handshake_timeout: Duration::from_secs(5),
            node_key: Arc::new(node_key),
            registry,
            checkpoint_interval: Duration::from_millis(200),
            verify_workers: 0,
            endorsement_guard: None,
        }
    }

    /// Sets [`NodeConfig::endorsement_guard`]: this node's own rule for endorsing proposed
    /// changes (`endorsed` protocol).
    pub fn with_endorsement_guard(mut self, guard: Arc<dyn EndorsementGuard>) -> Self {
        self.endorsement_guard = Some(guard);
        self
    }

    /// Sets [`NodeConfig::verify_workers`]: how many threads verify incoming signatures
    /// (`0` = one per core).
    pub fn with_verify_workers(mut self, n: usize) -> Self {
        self.verify_workers = n;
        self
    }

    /// This node's key and the network's node registry (which must name this node with
    /// `key`'s public half: [`Node::start`] checks it).
    pub fn with_key(mut self, key: impl Into<Arc<NodeKey>>, registry: NodeRegistry) -> Self {
        self.node_key = key.into();
        self.registry = registry;
        self
    }
}

/// A running node: the one writer (sequencer) of its store plus the task that handles
/// messages from other nodes. Dropping it stops both tasks (like a crash: what was committed
/// stays, what was not is lost, and a restart resumes from the store).
pub struct Node {
    ctx: Arc<NodeContext>,
    sync: Arc<SyncRegistry>,
    /// Every job goes to the sequencer through one ordered channel ([`sequencer::forward`]).
    jobs: mpsc::Sender<Pending>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.ctx.id())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.ctx.outbox().shutdown();
    }
}

impl Node {
    /// Migrates the store, loads actors and deployed contracts, resumes the origin sequence
    /// from the store, starts the sequencer and inbox tasks, and asks peers for what this
    /// node missed (best effort: unreachable peers are skipped). Returns once every reachable
    /// peer answered the start handshake (or [`NodeConfig::handshake_timeout`] passed), so
    /// that no origin sequence this node used before a crash — possibly recorded only on the
    /// peer it forwarded the intent to — is used again.
    ///
    /// Before anything else it checks its own log ([`sst_core::verify_log`]): the hash chain,
    /// the rows it binds and its latest own checkpoint; it then signs a checkpoint of its log
    /// head and sends it to its peers first, so that a node restarted on a truncated
    /// database is caught by the peers that witnessed more.
    ///
    /// # Errors
    /// [`NodeError::Store`] when the store cannot be migrated or read;
    /// [`NodeError::NodeKeyNotRegistered`] when the configured key is not this node's key in
    /// the configured registry; [`NodeError::LogDoesNotVerify`] naming what does not verify
    /// in its log; [`NodeError::ContractRecord`] / [`NodeError::ContractChanged`] when a
    /// stored contract record does not verify or differs from the code `registry` holds for
    /// it ([`crate::contract::check_deployed`]).
    pub async fn start(
        config: NodeConfig,
        store: Arc<dyn Store>,
        registry: ContractRegistry,
        transport: Arc<dyn Transport>,
        inbox: Inbox,
    ) -> Result<Node, NodeError> {
        store.migrate().await?;
        // The contract check first: it names the contract and what is wrong with its record.
        crate::contract::check_deployed(store.as_ref(), &registry).await?;
        checkpoint::check_own_log(
            store.as_ref(),
            &config.id,
            &config.node_key,
            &config.registry,
        )
        .await?;
        let handshake_timeout = config.handshake_timeout;
        let sync = Arc::new(config.protocols);
        let reconnect = sync.protocols().filter_map(|p| p.reconnect()).collect();
        let outbox = Outbox::new(transport, config.outbox_capacity, reconnect);
        let next_seq = store.last_origin_seq(&config.id).await?.0 + 1;
        let ctx = Arc::new(
            NodeContext::load(
                config.id.clone(),
                config.alg,
                (config.node_key, config.registry.clone()),
                store,
                registry,
                outbox,
                sync.choice().clone(),
                VerifyPool::new(
                    config.id.as_str(),
                    config.verify_workers,
                    config.registry.clone(),
                ),
                config.endorsement_guard.clone(),
            )
            .await?,
        );
        let max_batch = config.max_batch.max(1);
        let (to_sequencer, rx) = mpsc::channel(max_batch * 4);
        let (jobs, pending) = mpsc::channel(max_batch * 4);
        let forwarder = tokio::spawn(sequencer::forward(pending, to_sequencer));
        let writer = tokio::spawn(sequencer::run(
            ctx.clone(),
            sync.clone(),
            rx,
            next_seq,
            max_batch,
        ));
        let reader = tokio::spawn(inbox::run(ctx.clone(), sync.clone(), jobs.clone(), inbox));
        // The start checkpoint: what the handshake tells the peers this node's log holds.
        ctx.checkpoint().await?;
        let checkpoints = tokio::spawn(checkpoint::run(
            ctx.clone(),
            sync.clone(),
            config.checkpoint_interval,
        ));
        let node = Node {
            ctx,
            sync,
            jobs,
            tasks: vec![writer, forwarder, reader, checkpoints],
        };
        node.resync().await?;
        let silent = node.ctx.await_answers(handshake_timeout).await;
        if !silent.is_empty() {
            warn!(
                node = %node.ctx.id(), peers = ?silent, origin_floor = node.ctx.origin_floor(),
                "peers did not answer the start handshake in time; starting without them"
            );
        }
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        self.ctx.id()
    }

    /// Stops the node's tasks, then signs and stores a last checkpoint of its log head (a
    /// dropped node stops the same way, without that checkpoint).
    ///
    /// # Errors
    /// Store errors while writing the checkpoint.
    pub async fn shutdown(mut self) -> Result<Option<SignedCheckpoint>, NodeError> {
        for t in self.tasks.drain(..) {
            t.abort();
            if let Err(e) = t.await {
                if !e.is_cancelled() {
                    warn!(node = %self.ctx.id(), error = %e, "node task failed");
                }
            }
        }
        self.ctx.checkpoint().await?;
        Ok(self.ctx.own_checkpoint())
    }

    /// Signs and stores a checkpoint of this node's log head now (if it moved since the last
    /// one) and sends it to the peers; returns the latest checkpoint.
    ///
    /// # Errors
    /// Store errors.
    pub async fn checkpoint(&self) -> Result<Option<SignedCheckpoint>, NodeError> {
        checkpoint::checkpoint_and_publish(&self.ctx, &self.sync).await;
        Ok(self.ctx.own_checkpoint())
    }

    /// The alarms this node raised about its peers, oldest first: about a peer's log (a
    /// rolled-back or forked log, a checkpoint that does not verify) — changes sequenced by
    /// that peer are then refused here (`bad_receipt`) until this node restarts — and about a
    /// peer's copy of a state (a different root at the same version, an older version stated
    /// than acknowledged, a state statement that does not verify), which concern that state
    /// only.
    pub fn witness_alarms(&self) -> Vec<WitnessAlarm> {
        self.ctx.witness_alarms()
    }

    /// A counter that moves whenever this node commits, records a refusal or hears an
    /// acknowledgement: a cheap wake-up for tasks that follow the committed log (the
    /// notification sinks), which then read the log itself.
    pub fn log_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ctx.sync_changes()
    }

    /// Events this node committed since it started, `(applied, rejected)` (for metrics: a
    /// counter kept as the sequencer commits, so nothing is read back from the store).
    pub fn committed_counts(&self) -> (u64, u64) {
        self.ctx.committed_counts()
    }

    /// The network's node registry this node checks receipts and checkpoints against.
    pub fn node_registry(&self) -> &NodeRegistry {
        self.ctx.node_registry()
    }
    /// This node's store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.ctx.store_arc()
    }
    /// An actor as this node's directory holds it (key and status included).
    pub fn actor(&self, id: &ActorId) -> Option<Actor> {
        self.ctx.actor(id)
    }

    /// Registers (or updates) an actor in this node's directory, out of band: nothing is
    /// recorded in the log or sent to peers. Use it to introduce actors; rotate keys and
    /// revoke with [`Node::rotate_key`] / [`Node::revoke`], which are signed events that every
    /// node checks and [`sst_core::verify_store`] replays.
    ///
    /// # Errors
    /// [`NodeError::Store`] when the actor table cannot be written.
    pub async fn register_actor(&self, actor: Actor) -> Result<(), NodeError> {
        self.ctx.register_actor(actor).await?;
        self.retry_after_fix().await;
        Ok(())
    }

    /// Gives this node the signing key of one of its own actors.
    ///
    /// # Errors
    /// [`NodeError::NotLocal`] unless the actor is registered, belongs to this node and is
    /// active; [`NodeError::WrongKey`] when the key is not the actor's registered public key.
    pub fn add_key(&self, actor: &ActorId, key: ActorKey) -> Result<(), NodeError> {
        self.ctx.add_key(actor, key)
    }

    /// Installs a deployed contract version: the deployer must be a registered actor whose
    /// signature over the identity verifies (strict), and this node must hold code with that
    /// exact identity. Re-installing the same record is a no-op.
    ///
    /// # Errors
    /// [`NodeError::Contract`] naming what does not match; [`NodeError::Store`].
    pub async fn deploy(&self, record: ContractRecord) -> Result<(), NodeError> {
        self.ctx.install(record).await?;
        self.retry_after_fix().await;
        Ok(())
    }

    /// Deploys a contract version **as a signed event in the log**: submits
    /// [`Intent::deploy`] as the record's deployer (a local actor whose key this node holds;
    /// custody), so this node sequences a [`sst_core::EventKind::DeployContract`] event
    /// carrying the record, checks it (deployer signature, identity, source hash, and that
    /// the code loads: native code held, or the source through the engine its descriptor
    /// names), records it applied with a signed receipt and installs the version **without
    /// a restart**; every peer node receives it (a node offline then gets it by catch-up),
    /// checks it the same way and installs it, or records a refusal naming why. A client
    /// that keeps the deployer's key signs the event itself
    /// ([`crate::EventBuilder::deploy_contract`]) and hands it to [`Node::ingest`].
    ///
    /// # Errors
    /// As [`Node::submit`]. A rejection (e.g. `contract_rejected` naming an engine this node
    /// lacks, or another identity deployed under the same version) is not an error: see
    /// [`Verdict::Rejected`].
    pub async fn deploy_contract(&self, record: ContractRecord) -> Result<Verdict, NodeError> {
        let deployer = record.deployer.clone();
        self.submit(&deployer, Intent::deploy(record)).await
    }

    /// Received method calls this node re-executed and found equal to the home's result,
    /// and those it applied on the home's signed receipt alone, since it started.
    pub fn validation_counts(&self) -> ValidationCounts {
        self.ctx.validation_counts()
    }

    /// After a contract was deployed or an actor registered: asks again for the changes this
    /// node refused (logged when that fails; the next start asks again).
    async fn retry_after_fix(&self) {
        if let Err(e) = self.retry_refused().await {
            warn!(node = %self.ctx.id(), error = %e, "refused changes not asked for again");
        }
    }

    /// Asks the senders of the changes this node refused (its recorded
    /// [`sst_core::Refusal`]s) for them again; each is applied — and its refusal cleared —
    /// if its cause is gone, or refused (and recorded) again. [`Node::deploy`] and
    /// [`Node::register_actor`] call it; returns how many refusals were retried.
    ///
    /// # Errors
    /// Store errors.
    pub async fn retry_refused(&self) -> Result<usize, NodeError> {
        if !self.ctx.has_refusals() {
            return Ok(0);
        }
        let refusals = self.ctx.store().refusals(None).await?;
        for protocol in self.sync.protocols() {
            for (to, m) in protocol.retry(&self.ctx, &refusals).await? {
                self.ctx.send(&to, m);
            }
        }
        debug!(node = %self.ctx.id(), refusals = refusals.len(), "refused changes asked for again");
        Ok(refusals.len())
    }

    async fn run(&self, kind: JobKind) -> Result<Verdict, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Pending::Ready(Box::new(Job {
                kind,
                reply: Some(tx),
            })))
            .await
            .map_err(|_| NodeError::Stopped(self.ctx.id().clone()))?;
        rx.await
            .map_err(|_| NodeError::Stopped(self.ctx.id().clone()))?
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
            resequenced: 0,
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

    /// Runs an already signed intent. One whose origin is this node (e.g. signed by a client
    /// that keeps its key) goes where this node's own actors' intents go: sequenced here when
    /// this node is the state's home, otherwise forwarded to the home, resolving once the
    /// outcome is recorded here. One of another origin (received out of band) is sequenced
    /// here. Replays of recorded events change nothing.
    ///
    /// # Errors
    /// Store errors.
    pub async fn ingest(
        &self,
        signed: SignedEvent,
        disclosures: BTreeMap<String, Disclosure>,
    ) -> Result<Verdict, NodeError> {
        // Verified on the pool, off the sequencer (which checks in full what was not), and
        // sequenced in the order it was handed in.
        let (tx, rx) = oneshot::channel();
        let job = Pending::Sequence {
            from: None,
            signed: self.ctx.vet(signed),
            disclosures,
            reply: tx,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| NodeError::Stopped(self.ctx.id().clone()))?;
        rx.await
            .map_err(|_| NodeError::Stopped(self.ctx.id().clone()))?
    }

    /// Runs every sync protocol's start handshake again: announces this node to its peers
    /// and asks each for what it missed (catch-up). Unreachable peers are skipped (logged).
    ///
    /// # Errors
    /// Store errors while reading what this node holds.
    pub async fn resync(&self) -> Result<(), NodeError> {
        for protocol in self.sync.protocols() {
            for (to, m) in protocol.start(&self.ctx).await? {
                let weak = Arc::downgrade(&self.ctx);
                let p = protocol.clone();
                let peer = to.clone();
                let done = Box::new(move |sent: Result<(), crate::TransportError>| {
                    if let (Err(e), Some(ctx)) = (sent, weak.upgrade()) {
                        debug!(node = %ctx.id(), %peer, error = %e, "peer unreachable at start");
                        p.unreachable(&ctx, &peer);
                    }
                });
                self.ctx.send_then(&to, m, done);
            }
        }
        Ok(())
    }

    /// The home node of a state (the node that sequences it), if this node knows the state.
    ///
    /// # Errors
    /// Store errors.
    pub async fn home_of(&self, state: &StateId) -> Result<Option<NodeId>, NodeError> {
        self.ctx.home_of(state).await
    }

    /// Changes this node received but could not apply (all, or one state's), with the
    /// typed reason, as recorded on its store.
    ///
    /// # Errors
    /// Store errors.
    pub async fn refusals(&self, state: Option<&StateId>) -> Result<Vec<Refusal>, NodeError> {
        Ok(self.ctx.store().refusals(state).await?)
    }

    /// How far each participant node is with `state`, typed: on the state's **home node**,
    /// every other participant node with the latest version it acknowledged and, when it is
    /// behind because it refused a change, that refusal (reason included); on any other
    /// node, this node's own entry (the version it holds and its own latest refusal).
    /// `None` when this node neither holds the state nor refused any change of it.
    ///
    /// # Errors
    /// Store errors.
    pub async fn sync_status(&self, state: &StateId) -> Result<Option<SyncStatus>, NodeError> {
        let me = self.ctx.id().clone();
        let held = self.ctx.store().state(state).await?;
        let own = self.ctx.store().refusals(Some(state)).await?;
        let own_refusal = own
            .iter()
            .max_by_key(|r| (r.version, r.at))
            .map(ReplicaRefusal::from);
        let Some(held) = held else {
            let Some(r) = own.last() else {
                return Ok(None);
            };
            return Ok(Some(SyncStatus {
                state_id: state.clone(),
                home: r.from_node.clone(),
                version: 0,
                nodes: vec![NodeSync::new(me, 0, own_refusal)],
                witness_alarms: self.ctx.witness_alarms(),
                protocol: None,
            }));
        };
        let home = self.ctx.home_of(state).await?.unwrap_or_else(|| me.clone());
        let nodes = if home == me {
            self.ctx
                .participants(&held.parties)
                .into_iter()
                .filter(|n| *n != me)
                .map(|n| self.ctx.peer_sync(state, &n))
                .collect()
        } else {
            vec![NodeSync::new(me, held.version, own_refusal)
                .with_validated(self.ctx.validated(state))]
        };
        Ok(Some(SyncStatus {
            state_id: state.clone(),
            home,
            version: held.version,
            nodes,
            witness_alarms: self.ctx.witness_alarms(),
            protocol: Some(self.ctx.protocol_of(&held.contract).to_owned()),
        }))
    }

    /// The name of the sync protocol that synchronises states of `contract` on this node
    /// (`home`, `endorsed`, …): the one its installed descriptor chooses, else the one the
    /// node's [`SyncRegistry`] routes its name to.
    pub fn protocol_of(&self, contract: &ContractRef) -> &str {
        self.ctx.protocol_of(contract)
    }

    /// The name of the sync protocol `state` uses, as [`Node::protocol_of`] its contract
    /// version (`None`: the state is not held here).
    ///
    /// # Errors
    /// Store errors.
    pub async fn protocol_of_state(&self, state: &StateId) -> Result<Option<String>, NodeError> {
        Ok(self
            .ctx
            .store()
            .state(state)
            .await?
            .map(|s| self.ctx.protocol_of(&s.contract).to_owned()))
    }

    /// Waits until each of `nodes` (empty: every participant node of the state) holds
    /// `state` at `version` or later, as acknowledged to this node — no polling: it wakes on
    /// acknowledgements, refusals and local commits. Call it on the state's **home node**
    /// (which receives the acknowledgements; [`Node::home_of`]); any node can wait for
    /// itself. A node that refused the change keeps being waited for: deploying the missing
    /// contract or registering the missing actor there lets it catch up.
    ///
    /// # Errors
    /// [`NodeError::Behind`] at the deadline, naming each node still behind with the version
    /// it acknowledged and the refusal that holds it back, if any; [`NodeError::Invalid`]
    /// when this node is not the state's home and other nodes are asked for; store errors.
    pub async fn wait_for(
        &self,
        state: &StateId,
        version: u64,
        nodes: &[NodeId],
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.ctx.sync_changes();
        loop {
            let behind = self.behind(state, version, nodes).await?;
            if behind.is_empty() {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(NodeError::Stopped(self.ctx.id().clone())),
                Err(_) => {
                    return Err(NodeError::Behind {
                        state_id: state.clone(),
                        version,
                        behind,
                    })
                }
            }
        }
    }

    /// The nodes among `nodes` (empty: every participant) that do not hold `version` yet.
    async fn behind(
        &self,
        state: &StateId,
        version: u64,
        nodes: &[NodeId],
    ) -> Result<Vec<NodeSync>, NodeError> {
        let me = self.ctx.id().clone();
        let held = self.ctx.store().state(state).await?;
        let home = match &held {
            Some(_) => self.ctx.home_of(state).await?,
            None => None,
        };
        let wanted: BTreeSet<NodeId> = if nodes.is_empty() {
            held.as_ref()
                .map(|s| self.ctx.participants(&s.parties))
                .unwrap_or_default()
                .into_iter()
                .chain(std::iter::once(me.clone()))
                .collect()
        } else {
            nodes.iter().cloned().collect()
        };
        let mut behind = Vec::new();
        for node in wanted {
            if node == me {
                let v = held.as_ref().map_or(0, |s| s.version);
                if v < version {
                    let refusal = self
                        .ctx
                        .store()
                        .refusals(Some(state))
                        .await?
                        .iter()
                        .max_by_key(|r| (r.version, r.at))
                        .map(ReplicaRefusal::from);
                    behind.push(NodeSync::new(me.clone(), v, refusal));
                }
                continue;
            }
            if home.as_ref() != Some(&me) {
                return Err(NodeError::Invalid(format!(
                    "node {me} is not the home node of {state}{}: wait for other nodes on the \
                     home node",
                    home.as_ref()
                        .map(|h| format!(" ({h} is)"))
                        .unwrap_or_default()
                )));
            }
            let sync = self.ctx.peer_sync(state, &node);
            if sync.acknowledged < version {
                behind.push(sync);
            }
        }
        Ok(behind)
    }

    /// The latest version of a state as this node holds it (redacted to what it may read).
    ///
    /// # Errors
    /// Store errors.
    pub async fn state(&self, id: &StateId) -> Result<Option<State>, NodeError> {
        Ok(self.ctx.store().state(id).await?)
    }

    /// The recorded outcome of an event, if this node recorded it.
    ///
    /// # Errors
    /// Store errors.
    pub async fn outcome(&self, id: &EventId) -> Result<Option<Outcome>, NodeError> {
        Ok(self.ctx.store().event(id).await?.map(|r| r.outcome))
    }

    /// Rejected events recorded here, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn rejections(&self) -> Result<Vec<sst_core::EventRecord>, NodeError> {
        Ok(self
            .ctx
            .store()
            .events(&EventFilter {
                outcome: Some(sst_core::OutcomeKind::Rejected),
                ..Default::default()
            })
            .await?)
    }
}
