//! [`Network`]: several participants' nodes in one process, each on its own store, built in a
//! few lines — actors and their keys, contracts deployed by a signed record, nodes connected
//! by the in-process transport — for programs, examples and tests.
//!
//! ```no_run
//! # use sst::network::Network;
//! # async fn demo(my_contract: impl sst::node::Contract + 'static) -> Result<(), sst::network::NetworkError> {
//! let net = Network::builder()
//!     .sqlite_node("acme", "acme.db")        // participant `acme`, its own SQLite file
//!     .sqlite_node("globex", "globex.db")
//!     .actor("acme/alice")                   // actor `alice` of node `acme` (key generated)
//!     .actor("globex/bob")
//!     .contract(my_contract, "acme/alice")   // every node holds it; deployed, signed by alice
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Every node registers every actor; each node holds the signing keys of its own actors only
//! (the part of an actor id before `/` names its node). [`Network::submit`] sends an intent
//! through the signing actor's node, [`Network::wait_replicated`] waits for the
//! acknowledgements of every participant node ([`Node::wait_for`] on the state's home node).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sst_core::{
    Actor, ActorId, ActorKey, ActorStatus, ContractRecord, ContractRef, HashAlg, NodeId, NodeKey,
    NodeRegistry, StateId, Store, StoreError,
};
use sst_node::{
    Contract, ContractRegistry, InProcessNetwork, Intent, Node, NodeConfig, NodeError, Verdict,
};

/// Why building or using a [`Network`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// No node of that id is part of the network.
    #[error("no node `{0}` in this network")]
    UnknownNode(String),
    /// No actor of that id was declared with [`NetworkBuilder::actor`].
    #[error("no actor `{0}` in this network")]
    UnknownActor(String),
    /// An actor's id does not name one of the network's nodes before its `/`.
    #[error("actor `{actor}` belongs to node `{node}`, which is not in this network")]
    ActorWithoutNode {
        /// Actor id.
        actor: String,
        /// The node its id names.
        node: String,
    },
    /// No node holds the state.
    #[error("no node of this network holds state `{0}`")]
    UnknownState(String),
    /// A node operation failed (start, deploy, submit, wait: see [`NodeError`]).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Two nodes were declared with the same id.
    #[error("node `{0}` is declared twice")]
    DuplicateNode(String),
    /// A node key file could not be read or written.
    #[error("node key file {path}: {detail}")]
    NodeKeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

/// The node key kept beside a SQLite node's file (`<file>.node-key.pem`): read when present,
/// else generated and written, so a node restarted on its file keeps its key (its own
/// checkpoints keep verifying).
#[cfg(feature = "sqlite")]
fn node_key_beside(db: &std::path::Path) -> Result<NodeKey, NetworkError> {
    let path = PathBuf::from(format!("{}.node-key.pem", db.display()));
    let fail = |detail: String| NetworkError::NodeKeyFile {
        path: path.display().to_string(),
        detail,
    };
    if path.exists() {
        let pem = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        return NodeKey::from_pkcs8_pem(&pem).map_err(|e| fail(e.to_string()));
    }
    let key = NodeKey::generate();
    let pem = key.to_pkcs8_pem().map_err(|e| fail(e.to_string()))?;
    std::fs::write(&path, pem).map_err(|e| fail(e.to_string()))?;
    Ok(key)
}

/// Where a node keeps its data.
enum Source {
    Store(Arc<dyn Store>),
    #[cfg(feature = "sqlite")]
    Sqlite(PathBuf),
}

/// Builds a [`Network`] ([`Network::builder`]).
pub struct NetworkBuilder {
    nodes: Vec<(NodeId, Source)>,
    node_keys: BTreeMap<NodeId, NodeKey>,
    actors: Vec<(ActorId, ActorKey)>,
    registry: ContractRegistry,
    deployments: Vec<(ContractRef, ActorId)>,
    alg: HashAlg,
}

impl std::fmt::Debug for NetworkBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkBuilder")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.0).collect::<Vec<_>>(),
            )
            .field(
                "actors",
                &self.actors.iter().map(|a| &a.0).collect::<Vec<_>>(),
            )
            .field("contracts", &self.registry)
            .finish()
    }
}

/// The node an actor id names: the part before its first `/`.
fn node_of(actor: &ActorId) -> NodeId {
    NodeId::from(actor.as_str().split('/').next().unwrap_or_default())
}

impl NetworkBuilder {
    /// A participant node `id` on `store` (any backend; migrated when the node starts).
    pub fn node(mut self, id: impl Into<NodeId>, store: Arc<dyn Store>) -> Self {
        self.nodes.push((id.into(), Source::Store(store)));
        self
    }

    /// A participant node `id` on the SQLite file `path` (created if missing).
    #[cfg(feature = "sqlite")]
    pub fn sqlite_node(mut self, id: impl Into<NodeId>, path: impl Into<PathBuf>) -> Self {
        self.nodes.push((id.into(), Source::Sqlite(path.into())));
        self
    }

    /// Gives node `id` the node key `key` (signs its receipts and checkpoints). Without one, a
    /// SQLite node keeps its key beside its file (`<file>.node-key.pem`, created on first
    /// start and reused on restart) and a node on another store gets a fresh key.
    pub fn node_key(mut self, id: impl Into<NodeId>, key: NodeKey) -> Self {
        self.node_keys.insert(id.into(), key);
        self
    }

    /// An actor `node/name` with a freshly generated key, held by its node only.
    pub fn actor(self, id: impl Into<ActorId>) -> Self {
        self.actor_with_key(id, ActorKey::generate())
    }

    /// An actor `node/name` whose signing key is `key` (e.g. loaded from PKCS#8 PEM).
    pub fn actor_with_key(mut self, id: impl Into<ActorId>, key: ActorKey) -> Self {
        self.actors.push((id.into(), key));
        self
    }

    /// Contract code every node holds, deployed on every node by a record signed by
    /// `deployer` (one of the network's actors).
    pub fn contract(mut self, code: impl Contract + 'static, deployer: impl Into<ActorId>) -> Self {
        let contract = code.contract();
        self.registry.insert(Arc::new(code));
        self.deployments.push((contract, deployer.into()));
        self
    }

    /// Hash algorithm of the states the nodes create (default BLAKE3).
    pub fn hash(mut self, alg: HashAlg) -> Self {
        self.alg = alg;
        self
    }

    /// Opens the stores, starts every node, registers every actor on every node, gives each
    /// node its own actors' keys and deploys the contracts.
    ///
    /// # Errors
    /// [`NetworkError::ActorWithoutNode`] / [`NetworkError::UnknownActor`] for an actor or a
    /// deployer that does not fit the declared nodes and actors; store and node errors
    /// (e.g. [`NodeError::ContractChanged`] when a store was deployed with other code).
    pub async fn start(self) -> Result<Network, NetworkError> {
        let node_ids: Vec<NodeId> = self.nodes.iter().map(|(id, _)| id.clone()).collect();
        let mut directory = Vec::new();
        for (id, key) in &self.actors {
            let node = node_of(id);
            if !node_ids.contains(&node) {
                return Err(NetworkError::ActorWithoutNode {
                    actor: id.to_string(),
                    node: node.to_string(),
                });
            }
            directory.push(Actor {
                id: id.clone(),
                node,
                public_key: key.public_key(),
                status: ActorStatus::Active,
            });
        }
        let mut records: Vec<ContractRecord> = Vec::new();
        for (contract, deployer) in &self.deployments {
            let (_, key) = self
                .actors
                .iter()
                .find(|(a, _)| a == deployer)
                .ok_or_else(|| NetworkError::UnknownActor(deployer.to_string()))?;
            records.push(
                self.registry
                    .deployment(contract, self.alg, deployer.clone(), key)?,
            );
        }
        let mut keys: Vec<(ActorId, ActorKey)> = self.actors;
        // Every node's key first: each node checks its peers' receipts and checkpoints against
        // the one registry of the whole network.
        let mut node_keys = self.node_keys;
        for (id, source) in &self.nodes {
            if node_keys.contains_key(id) {
                continue;
            }
            let key = match source {
                #[cfg(feature = "sqlite")]
                Source::Sqlite(path) => node_key_beside(path)?,
                Source::Store(_) => NodeKey::generate(),
            };
            node_keys.insert(id.clone(), key);
        }
        let registry = node_keys.iter().fold(NodeRegistry::new(), |r, (id, key)| {
            r.with(id.clone(), key.public_key())
        });
        let net = InProcessNetwork::new();
        // Every node joins before any starts, so what the first ones send at start (their
        // checkpoints) waits in the others' inboxes instead of failing.
        let mut joined: BTreeMap<NodeId, _> = self
            .nodes
            .iter()
            .map(|(id, _)| (id.clone(), net.join(id.clone())))
            .collect();
        let mut nodes = BTreeMap::new();
        for (id, source) in self.nodes {
            let store: Arc<dyn Store> = match source {
                Source::Store(s) => s,
                #[cfg(feature = "sqlite")]
                Source::Sqlite(path) => Arc::new(
                    sst_store_sqlite::SqliteStore::open(sst_store_sqlite::SqliteConfig::file(
                        &path,
                    ))
                    .await?,
                ),
            };
            let (transport, inbox) = joined
                .remove(&id)
                .ok_or_else(|| NetworkError::DuplicateNode(id.to_string()))?;
            let key = node_keys
                .remove(&id)
                .ok_or_else(|| NetworkError::DuplicateNode(id.to_string()))?;
            let mut config = NodeConfig::new(id.clone()).with_key(key, registry.clone());
            config.alg = self.alg;
            let node = Node::start(config, store, self.registry.clone(), transport, inbox).await?;
            for actor in &directory {
                node.register_actor(actor.clone()).await?;
            }
            let (own, rest): (Vec<_>, Vec<_>) =
                keys.into_iter().partition(|(a, _)| node_of(a) == id);
            keys = rest;
            for (actor, key) in own {
                node.add_key(&actor, key)?;
            }
            for record in &records {
                node.deploy(record.clone()).await?;
            }
            nodes.insert(id, Arc::new(node));
        }
        let actors = directory.into_iter().map(|a| (a.id, a.node)).collect();
        Ok(Network {
            net,
            nodes,
            actors,
            registry,
        })
    }
}

/// Participants' nodes running in this process, connected by [`InProcessNetwork`].
/// Dropping it stops every node (what was committed stays in the stores).
pub struct Network {
    net: InProcessNetwork,
    nodes: BTreeMap<NodeId, Arc<Node>>,
    actors: BTreeMap<ActorId, NodeId>,
    registry: NodeRegistry,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("actors", &self.actors)
            .finish()
    }
}

impl Network {
    /// An empty builder.
    pub fn builder() -> NetworkBuilder {
        NetworkBuilder {
            nodes: Vec::new(),
            node_keys: BTreeMap::new(),
            actors: Vec::new(),
            registry: ContractRegistry::new(),
            deployments: Vec::new(),
            alg: HashAlg::Blake3,
        }
    }

    /// The network's node registry (each node's public node key), the trust anchor of
    /// [`sst_core::verify_store_with`].
    pub fn registry(&self) -> &NodeRegistry {
        &self.registry
    }

    /// The node `id`.
    ///
    /// # Errors
    /// [`NetworkError::UnknownNode`].
    pub fn node(&self, id: &str) -> Result<&Arc<Node>, NetworkError> {
        self.nodes
            .get(&NodeId::from(id))
            .ok_or_else(|| NetworkError::UnknownNode(id.to_owned()))
    }

    /// Every node, by id.
    pub fn nodes(&self) -> &BTreeMap<NodeId, Arc<Node>> {
        &self.nodes
    }

    /// The in-process transport connecting the nodes (e.g. to take one offline).
    pub fn transport(&self) -> &InProcessNetwork {
        &self.net
    }

    /// Has `actor` make `intent` on its own node ([`Node::submit`]): resolves with the
    /// recorded outcome, applied or rejected with its reason.
    ///
    /// # Errors
    /// [`NetworkError::UnknownActor`]; node errors.
    pub async fn submit(&self, actor: &str, intent: Intent) -> Result<Verdict, NetworkError> {
        let id = ActorId::from(actor);
        let node = self
            .actors
            .get(&id)
            .ok_or_else(|| NetworkError::UnknownActor(actor.to_owned()))?;
        Ok(self.node(node.as_str())?.submit(&id, intent).await?)
    }

    /// Waits until every participant node of `state` holds `version` (or later), as
    /// acknowledged to the state's home node ([`Node::wait_for`]).
    ///
    /// # Errors
    /// [`NetworkError::UnknownState`] when no node holds the state;
    /// [`NodeError::Behind`] at the deadline, naming each node still behind and why.
    pub async fn wait_replicated(
        &self,
        state: &str,
        version: u64,
        timeout: Duration,
    ) -> Result<(), NetworkError> {
        let id = StateId::from(state);
        for node in self.nodes.values() {
            if let Some(home) = node.home_of(&id).await? {
                let home = self.node(home.as_str())?;
                return Ok(home.wait_for(&id, version, &[], timeout).await?);
            }
        }
        Err(NetworkError::UnknownState(state.to_owned()))
    }
}
