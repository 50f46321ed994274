//! Four participant nodes (buyer, seller, inspector, regulator), each on its own SQLite file,
//! connected by the in-process transport: the setup `demo` and `bench` share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sst::core::ContractRecord;
use sst::core::{
    Actor, ActorId, ActorKey, ActorStatus, ContractRef, HashAlg, NodeId, NodeKey, NodeRegistry,
    Parties, Store,
};
use sst::node::contracts::{RealEstateDeal, Rfq};
use sst::node::{ContractRegistry, InProcessNetwork, Node, NodeConfig, Verdict};
use sst::sqlite::{SqliteConfig, SqliteStore};
use sst_contract_js::JsEngine;

/// Participants: node id and actor name.
pub(crate) const PARTICIPANTS: [(&str, &str); 4] = [
    ("buyer", "bob"),
    ("seller", "sue"),
    ("inspector", "ina"),
    ("regulator", "rex"),
];

/// Bank desks, for the settlement the demo runs on the `endorsed` protocol next to the deal:
/// each an actor (id) run by a participant's node (the payer's bank on the buyer's node, the
/// payee's bank on the seller's), registered everywhere, its key held by that node.
pub(crate) const BANK_DESKS: [(&str, &str); 2] =
    [("buyer", "buyer/bank-desk"), ("seller", "seller/bank-desk")];

/// The JavaScript port of the real-estate deal, version 1 (`sst demo` deploys it at run time).
pub(crate) const REAL_ESTATE_JS: &str =
    include_str!("../../sst-contract-js/contracts/real-estate-v1.js");

/// How the real-estate contract reaches the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DealContract {
    /// The native (Rust) contract compiled into every node, deployed on each by its record.
    Native,
    /// The JavaScript port: the nodes hold only the JavaScript engine; the seller deploys the
    /// source at run time with a signed `DeployContract` event, replicated to every node.
    JavaScript,
}

/// The running network.
pub(crate) struct Cluster {
    pub(crate) net: InProcessNetwork,
    pub(crate) nodes: BTreeMap<&'static str, Arc<Node>>,
    pub(crate) files: BTreeMap<&'static str, PathBuf>,
    /// Every node's public node key (written to `registry.json` in the directory).
    pub(crate) node_registry: NodeRegistry,
    /// Where the registry file is.
    pub(crate) registry_file: PathBuf,
    /// Each participant's actor key.
    keys: BTreeMap<&'static str, ActorKey>,
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
    /// everywhere, each node holding its own actor's key, and the native real-estate contract
    /// deployed (signed by the seller) on every node.
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Cluster> {
        Self::start_with(dir, DealContract::Native).await
    }

    /// As [`Cluster::start`]; with [`DealContract::JavaScript`] the nodes hold the JavaScript
    /// engine instead of the native real-estate code, and no contract is deployed yet
    /// ([`Cluster::deploy_javascript_deal`]).
    pub(crate) async fn start_with(dir: &Path, deal: DealContract) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let registry = match deal {
            DealContract::Native => ContractRegistry::new().with(RealEstateDeal).with(Rfq),
            DealContract::JavaScript => ContractRegistry::new()
                .with(Rfq)
                .with_engine(Arc::new(JsEngine::new())),
        };
        let keys: BTreeMap<&str, ActorKey> = PARTICIPANTS
            .iter()
            .map(|(n, _)| (*n, ActorKey::generate()))
            .collect();
        let bank_keys: BTreeMap<&str, ActorKey> = BANK_DESKS
            .iter()
            .map(|(_, a)| (*a, ActorKey::generate()))
            .collect();
        let actors: Vec<Actor> = PARTICIPANTS
            .iter()
            .map(|(n, _)| Actor {
                id: who(n),
                node: NodeId::from(*n),
                public_key: keys[n].public_key(),
                status: ActorStatus::Active,
            })
            .chain(BANK_DESKS.iter().map(|(n, a)| Actor {
                id: ActorId::from(*a),
                node: NodeId::from(*n),
                public_key: bank_keys[a].public_key(),
                status: ActorStatus::Active,
            }))
            .collect();
        let deployment = match deal {
            DealContract::Native => Some(registry.deployment(
                &ContractRef::new("real-estate-deal", 1),
                HashAlg::Blake3,
                who("seller"),
                &keys["seller"],
            )?),
            DealContract::JavaScript => None,
        };
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
        // Every node joins before any starts, so what the first ones send at start (their
        // checkpoints) waits in the others' inboxes instead of failing.
        let mut joined: BTreeMap<&str, _> = PARTICIPANTS
            .iter()
            .map(|(name, _)| (*name, net.join(*name)))
            .collect();
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
            let (transport, inbox) = joined
                .remove(name)
                .with_context(|| format!("{name} did not join"))?;
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
            for (desk_node, desk) in BANK_DESKS.iter().filter(|(n, _)| *n == name) {
                let key = ActorKey::from_pkcs8_pem(&bank_keys[desk].to_pkcs8_pem()?)?;
                node.add_key(&ActorId::from(*desk), key)
                    .with_context(|| format!("{desk_node}: key of {desk}"))?;
            }
            if let Some(record) = &deployment {
                node.deploy(record.clone()).await?;
            }
            nodes.insert(name, Arc::new(node));
            files.insert(name, file);
        }
        Ok(Cluster {
            net,
            nodes,
            files,
            node_registry,
            registry_file,
            keys,
        })
    }

    /// The seller deploys the JavaScript real-estate deal at run time: its descriptor read
    /// from the source, signed by the seller's actor, sequenced by the seller's node as a
    /// `DeployContract` event and replicated to every node, which installs it without a
    /// restart. Returns the record and the verdict.
    pub(crate) async fn deploy_javascript_deal(&self) -> anyhow::Result<(ContractRecord, Verdict)> {
        self.deploy_javascript("seller", REAL_ESTATE_JS).await
    }

    /// Participant `by` deploys the JavaScript contract `source` at run time (as
    /// [`Cluster::deploy_javascript_deal`] does the deal).
    pub(crate) async fn deploy_javascript(
        &self,
        by: &str,
        source: &str,
    ) -> anyhow::Result<(ContractRecord, Verdict)> {
        let descriptor = sst_contract_js::descriptor_of(source)?;
        let key = self
            .keys
            .get(by)
            .with_context(|| format!("no participant {by}"))?;
        let record =
            ContractRecord::sign(descriptor, HashAlg::Blake3, who(by), key).with_source(source);
        let verdict = self.node(by)?.deploy_contract(record.clone()).await?;
        self.net.settled().await;
        Ok((record, verdict))
    }

    /// The node of participant `name`.
    pub(crate) fn node(&self, name: &str) -> anyhow::Result<&Arc<Node>> {
        self.nodes
            .get(name)
            .with_context(|| format!("no node {name}"))
    }
}
