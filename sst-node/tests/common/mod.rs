//! Shared test scaffolding: a four-node real-estate network (buyer, seller, inspector,
//! regulator) over the in-process transport, on any store.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use sst_core::{
    Actor, ActorId, ActorKey, ActorStatus, ContractRef, HashAlg, NodeId, NodeKey, NodeRegistry,
    Parties, Store,
};
use sst_node::contracts::{RealEstateDeal, RealEstateDealV2, Rfq};
use sst_node::{ContractRegistry, InProcessNetwork, Inbox, Node, NodeConfig, Transport};

/// The four participants: node name and its actor's name.
pub const ROLES: [&str; 4] = ["buyer", "seller", "inspector", "regulator"];

/// Deterministic actor `node/name`.
pub fn actor(node: &str, name: &str) -> (Actor, ActorKey) {
    let mut seed = [7u8; 32];
    for (i, b) in format!("{node}/{name}").bytes().enumerate() {
        seed[i % 32] ^= b.wrapping_mul(31).wrapping_add(i as u8);
    }
    let key = ActorKey::from_seed(seed);
    (
        Actor {
            id: format!("{node}/{name}").into(),
            node: NodeId::from(node),
            public_key: key.public_key(),
            status: ActorStatus::Active,
        },
        key,
    )
}

/// Deterministic node key of node `node`.
pub fn node_key(node: &str) -> NodeKey {
    let mut seed = [42u8; 32];
    for (i, b) in node.bytes().enumerate() {
        seed[i % 32] ^= b.wrapping_mul(17).wrapping_add(i as u8);
    }
    NodeKey::from_seed(seed)
}

/// The one node registry every test network shares: every role of [`ROLES`] and the extra
/// node ids some tests start.
pub fn node_registry() -> NodeRegistry {
    ROLES
        .iter()
        .copied()
        .chain(["x", "n", "outsider"])
        .fold(NodeRegistry::new(), |r, n| {
            r.with(NodeId::from(n), node_key(n).public_key())
        })
}

/// The configuration of node `node` in the test network: its deterministic key and the
/// shared registry.
pub fn config(node: &str) -> NodeConfig {
    NodeConfig::new(node).with_key(node_key(node), node_registry())
}

/// The actor id of the participant playing `role` (node `role`, actor `role/a`).
pub fn who(role: &str) -> ActorId {
    ActorId::from(format!("{role}/a").as_str())
}

/// Contracts every node holds (v2 optional).
pub fn registry(with_v2: bool) -> ContractRegistry {
    let r = ContractRegistry::new().with(RealEstateDeal).with(Rfq);
    if with_v2 {
        r.with(RealEstateDealV2)
    } else {
        r
    }
}

/// The standard deal parties.
pub fn deal_parties() -> Parties {
    ROLES
        .iter()
        .fold(Parties::default(), |p, r| p.with(*r, who(r).as_str()))
}

/// `{name: value}`.
pub fn values<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A running network of nodes named after [`ROLES`].
pub struct Cluster {
    pub net: InProcessNetwork,
    pub nodes: BTreeMap<String, Arc<Node>>,
    pub stores: BTreeMap<String, Arc<dyn Store>>,
}

impl Cluster {
    pub fn node(&self, role: &str) -> &Arc<Node> {
        &self.nodes[role]
    }

    /// Starts (or restarts) one node on its store with the directory, keys and contracts.
    pub async fn start_node(
        net: &InProcessNetwork,
        role: &str,
        store: Arc<dyn Store>,
        registry: ContractRegistry,
        deploy: &[ContractRef],
    ) -> anyhow::Result<Node> {
        let (transport, inbox) = net.join(role);
        let config = config(role);
        Self::start_node_on(config, store, registry, deploy, transport, inbox).await
    }

    /// As [`Cluster::start_node`], with a given configuration and transport.
    pub async fn start_node_on(
        config: NodeConfig,
        store: Arc<dyn Store>,
        registry: ContractRegistry,
        deploy: &[ContractRef],
        transport: Arc<dyn Transport>,
        inbox: Inbox,
    ) -> anyhow::Result<Node> {
        let role = config.id.to_string();
        let role = role.as_str();
        let node = Node::start(config, store, registry.clone(), transport, inbox).await?;
        for r in ROLES {
            let (a, key) = actor(r, "a");
            node.register_actor(a.clone()).await?;
            if r == role {
                node.add_key(&a.id, key)?;
            }
        }
        let (_, deployer_key) = actor("seller", "a");
        for c in deploy {
            let rec = registry.deployment(c, HashAlg::Blake3, who("seller"), &deployer_key)?;
            node.deploy(rec).await?;
        }
        Ok(node)
    }

    /// Starts all four nodes on the given stores; every node holds and deploys v1 of the
    /// deal and the RFQ.
    pub async fn start(stores: BTreeMap<String, Arc<dyn Store>>) -> anyhow::Result<Cluster> {
        Self::start_with(stores, config, |_: &str, t| t).await
    }

    /// As [`Cluster::start`], with each node's configuration from `config` and its transport
    /// wrapped by `wrap`.
    pub async fn start_with(
        stores: BTreeMap<String, Arc<dyn Store>>,
        config: impl Fn(&str) -> NodeConfig,
        wrap: impl Fn(&str, Arc<dyn Transport>) -> Arc<dyn Transport>,
    ) -> anyhow::Result<Cluster> {
        let net = InProcessNetwork::new();
        let mut nodes = BTreeMap::new();
        for (role, store) in &stores {
            let (transport, inbox) = net.join(role.as_str());
            let node = Self::start_node_on(
                config(role),
                store.clone(),
                registry(false),
                &[
                    ContractRef::new("real-estate-deal", 1),
                    ContractRef::new("rfq", 1),
                ],
                wrap(role, transport),
                inbox,
            )
            .await?;
            nodes.insert(role.clone(), Arc::new(node));
        }
        Ok(Cluster { net, nodes, stores })
    }

    /// Fresh in-memory stores for the four nodes.
    pub fn memory_stores() -> BTreeMap<String, Arc<dyn Store>> {
        ROLES
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    Arc::new(sst_core::MemoryStore::new()) as Arc<dyn Store>,
                )
            })
            .collect()
    }

    /// Four nodes on fresh in-memory stores.
    pub async fn in_memory() -> anyhow::Result<Cluster> {
        Self::start(Self::memory_stores()).await
    }

    /// Four nodes on fresh SQLite files under `dir`.
    pub async fn sqlite(dir: &std::path::Path) -> anyhow::Result<Cluster> {
        let mut stores = BTreeMap::new();
        for r in ROLES {
            stores.insert(
                r.to_string(),
                sqlite_store(&dir.join(format!("{r}.db"))).await?,
            );
        }
        Self::start(stores).await
    }

    /// Roots of `state` on every node that holds it.
    pub async fn roots(
        &self,
        state: &sst_core::StateId,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (role, node) in &self.nodes {
            if let Some(s) = node.state(state).await? {
                out.insert(role.clone(), format!("v{} {}", s.version, s.root));
            }
        }
        Ok(out)
    }
}

/// A SQLite store on `path` (migrated).
pub async fn sqlite_store(path: &std::path::Path) -> anyhow::Result<Arc<dyn Store>> {
    let store = sst_store_sqlite::SqliteStore::open_migrated(
        sst_store_sqlite::SqliteConfig::file(path)
            .synchronous(sst_store_sqlite::Synchronous::Normal),
    )
    .await?;
    Ok(Arc::new(store))
}

/// Starts node `role` alone (a fresh network, no actors registered, v1 contracts held) on
/// the SQLite file at `path`: how a restart on a file edited behind the node's back looks.
pub async fn restart_on_file(
    role: &str,
    path: &std::path::Path,
) -> Result<Node, sst_node::NodeError> {
    let net = InProcessNetwork::new();
    let (transport, inbox) = net.join(role);
    let store = sqlite_store(path)
        .await
        .map_err(|e| sst_node::NodeError::Invalid(e.to_string()))?;
    Node::start(config(role), store, registry(false), transport, inbox).await
}

/// Polls `check` every 20 ms until it holds, at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<TempDir> {
        let p = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The seller creates a real-estate deal `id` (common + price) and waits until every node
/// has replicated it.
pub async fn create_deal(c: &Cluster, id: &str) -> anyhow::Result<sst_core::StateId> {
    let v = c
        .node("seller")
        .submit(
            &who("seller"),
            sst_node::Intent::create(
                id,
                sst_core::ContractRef::new("real-estate-deal", 1),
                deal_parties(),
                values([
                    (
                        "common",
                        serde_json::json!({"address": "1 Elm St", "built": 1931}),
                    ),
                    (
                        "price",
                        serde_json::json!({"amount": 500000, "currency": "USD"}),
                    ),
                ]),
            ),
        )
        .await?;
    anyhow::ensure!(v.is_applied(), "create: {v:?}");
    c.net.settled().await;
    Ok(sst_core::StateId::from(id))
}

/// The buyer creates an RFQ `id` (the buyer requests, the seller and the inspector act as
/// suppliers, the regulator audits) and waits until every node has replicated it.
pub async fn create_rfq(c: &Cluster, id: &str) -> anyhow::Result<sst_core::StateId> {
    let parties = Parties::default()
        .with("requester", who("buyer").as_str())
        .with("supplier", who("seller").as_str())
        .with("supplier", who("inspector").as_str())
        .with("auditor", who("regulator").as_str());
    let v = c
        .node("buyer")
        .submit(
            &who("buyer"),
            sst_node::Intent::create(
                id,
                ContractRef::new("rfq", 1),
                parties,
                values([
                    (
                        "request",
                        serde_json::json!({"item": "steel beams", "qty": 40}),
                    ),
                    ("quotes", serde_json::json!([])),
                ]),
            ),
        )
        .await?;
    anyhow::ensure!(v.is_applied(), "{v:?}");
    c.net.settled().await;
    Ok(sst_core::StateId::from(id))
}

/// The seller's node creates a real-estate deal `id` (v1) whose only parties are the seller
/// and the buyer, with `common` as its common section (does not wait for replication).
pub async fn create_two_party_deal(
    seller: &Node,
    id: &str,
    common: Value,
) -> anyhow::Result<sst_core::StateId> {
    let parties = Parties::default()
        .with("seller", who("seller").as_str())
        .with("buyer", who("buyer").as_str());
    let intent = sst_node::Intent::create(
        id,
        ContractRef::new("real-estate-deal", 1),
        parties,
        values([("common", common)]),
    );
    let v = seller.submit(&who("seller"), intent).await?;
    anyhow::ensure!(v.is_applied(), "create {id}: {v:?}");
    Ok(sst_core::StateId::from(id))
}
