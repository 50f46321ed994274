//! Four participant nodes (buyer, seller, inspector, regulator), each on its own SQLite file,
//! connected by the in-process transport: the setup `demo` and `bench` share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sst::core::{
    Actor, ActorId, ActorKey, ActorStatus, ContractRef, HashAlg, NodeId, NodeKey, NodeRegistry,
    Parties, Store,
};
use sst::node::contracts::{RealEstateDeal, Rfq};
use sst::node::{ContractRegistry, InProcessNetwork, Node, NodeConfig};
use sst::sqlite::{SqliteConfig, SqliteStore};

/// Participants: node id and actor name.
pub(crate) const PARTICIPANTS: [(&str, &str); 4] = [
    ("buyer", "bob"),
    ("seller", "sue"),
    ("inspector", "ina"),
    ("regulator", "rex"),
];

/// The running network.
pub(crate) struct Cluster {
    pub(crate) net: InProcessNetwork,
    pub(crate) nodes: BTreeMap<&'static str, Arc<Node>>,
    pub(crate) files: BTreeMap<&'static str, PathBuf>,
    /// Every node's public node key (written to `registry.json` in the directory).
    pub(crate) node_registry: NodeRegistry,
    /// Where the registry file is.
    pub(crate) registry_file: PathBuf,
}

/// The actor id of participant `node`.
pub(crate) fn who(node: &str) -> ActorId {
    let name = PARTICIPANTS
        .iter()
        .find(|(n, _)| *n == node)
        .map_or("x", |(_, a)| a);
    ActorId::from(format!("{node}/{name}").as_str())
}

/// The deal's parties: each participant in its role.
pub(crate) fn deal_parties() -> Parties {
    PARTICIPANTS
        .iter()
        .fold(Parties::default(), |p, (n, _)| p.with(*n, who(n).as_str()))
}

impl Cluster {
    /// Fresh SQLite files in `dir` (old ones removed), four nodes, actors registered
    /// everywhere, each node holding its own actor's key, and the real-estate contract
    /// deployed (signed by the seller) on every node.
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let registry = ContractRegistry::new().with(RealEstateDeal).with(Rfq);
        let keys: BTreeMap<&str, ActorKey> = PARTICIPANTS
            .iter()
            .map(|(n, _)| (*n, ActorKey::generate()))
            .collect();
        let actors: Vec<Actor> = PARTICIPANTS
            .iter()
            .map(|(n, _)| Actor {
                id: who(n),
                node: NodeId::from(*n),
                public_key: keys[n].public_key(),
                status: ActorStatus::Active,
            })
            .collect();
        let deployment = registry.deployment(
            &ContractRef::new("real-estate-deal", 1),
            HashAlg::Blake3,
            who("seller"),
            &keys["seller"],
        )?;
        let mut node_keys: BTreeMap<&str, NodeKey> = PARTICIPANTS
            .iter()
            .map(|(n, _)| (*n, NodeKey::generate()))
            .collect();
        let node_registry = node_keys.iter().fold(NodeRegistry::new(), |r, (n, k)| {
            r.with(NodeId::from(*n), k.public_key())
        });
        let registry_file = dir.join("registry.json");
        std::fs::write(
            &registry_file,
            serde_json::to_string_pretty(&node_registry)?,
        )
        .with_context(|| format!("writing {}", registry_file.display()))?;
        let net = InProcessNetwork::new();
        let mut nodes = BTreeMap::new();
        let mut files = BTreeMap::new();
        for (name, _) in PARTICIPANTS {
            let file = dir.join(format!("{name}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let f = PathBuf::from(format!("{}{suffix}", file.display()));
                if f.exists() {
                    std::fs::remove_file(&f)
                        .with_context(|| format!("removing {}", f.display()))?;
                }
            }
            let store: Arc<dyn Store> =
                Arc::new(SqliteStore::open_migrated(SqliteConfig::file(&file)).await?);
            let (transport, inbox) = net.join(name);
            let node_key = node_keys
                .remove(name)
                .with_context(|| format!("no node key for {name}"))?;
            let node = Node::start(
                NodeConfig::new(name).with_key(node_key, node_registry.clone()),
                store,
                registry.clone(),
                transport,
                inbox,
            )
            .await?;
            for a in &actors {
                node.register_actor(a.clone()).await?;
            }
            let key = ActorKey::from_pkcs8_pem(&keys[name].to_pkcs8_pem()?)?;
            node.add_key(&who(name), key)?;
            node.deploy(deployment.clone()).await?;
            nodes.insert(name, Arc::new(node));
            files.insert(name, file);
        }
        Ok(Cluster {
            net,
            nodes,
            files,
            node_registry,
            registry_file,
        })
    }

    /// The node of participant `name`.
    pub(crate) fn node(&self, name: &str) -> anyhow::Result<&Arc<Node>> {
        self.nodes
            .get(name)
            .with_context(|| format!("no node {name}"))
    }
}
