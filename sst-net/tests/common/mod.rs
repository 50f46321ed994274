//! Shared test scaffolding: deterministic node and actor keys, and a small network of real
//! `sst_node::Node`s on in-memory stores talking over `NetTransport` on 127.0.0.1.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use sst_core::{
    Actor, ActorId, ActorKey, ActorStatus, ContractRef, HashAlg, MemoryStore, NodeId, NodeKey,
    NodeRegistry, Parties, StateId, Store,
};
use sst_net::{NetConfig, NetServer, NetTransport};
use sst_node::contracts::RealEstateDeal;
use sst_node::{ContractRegistry, Intent, Node, NodeConfig, Transport};
use tokio::net::TcpListener;

/// How long a test waits for replication before failing.
pub const WAIT: Duration = Duration::from_secs(20);

fn seed(salt: u8, name: &str) -> [u8; 32] {
    let mut seed = [salt; 32];
    for (i, b) in name.bytes().enumerate() {
        seed[i % 32] ^= b.wrapping_mul(31).wrapping_add(i as u8);
    }
    seed
}

/// Deterministic node key of node `node`.
pub fn node_key(node: &str) -> NodeKey {
    NodeKey::from_seed(seed(42, node))
}

/// A key no registry of these tests holds.
pub fn stranger_key() -> NodeKey {
    NodeKey::from_seed(seed(99, "stranger"))
}

/// The registry naming `nodes` with their deterministic keys.
pub fn registry(nodes: &[&str]) -> NodeRegistry {
    nodes.iter().fold(NodeRegistry::new(), |r, n| {
        r.with(NodeId::from(*n), node_key(n).public_key())
    })
}

/// The one actor of node `node`: `node/a`, deterministic key.
pub fn actor(node: &str) -> (Actor, ActorKey) {
    let key = ActorKey::from_seed(seed(7, node));
    (
        Actor {
            id: who(node),
            node: NodeId::from(node),
            public_key: key.public_key(),
            status: ActorStatus::Active,
        },
        key,
    )
}

/// The actor id of node `node`'s actor.
pub fn who(node: &str) -> ActorId {
    ActorId::from(format!("{node}/a").as_str())
}

/// `{name: value}`.
pub fn values<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A listener on 127.0.0.1 with an OS-chosen port.
pub async fn loopback() -> anyhow::Result<TcpListener> {
    Ok(TcpListener::bind("127.0.0.1:0").await?)
}

/// One participant of a [`Net`].
pub struct Member {
    pub node: Option<Node>,
    pub server: Option<NetServer>,
    pub transport: Arc<NetTransport>,
    pub store: Arc<dyn Store>,
    pub addr: SocketAddr,
}

/// Real nodes on in-memory stores, each with its own server on 127.0.0.1, sending to each
/// other over `NetTransport` with mutual TLS.
pub struct Net {
    pub roles: Vec<String>,
    pub members: BTreeMap<String, Member>,
}

/// Wraps a node's transport (e.g. to record what it sends).
pub type Wrap = dyn Fn(&str, Arc<dyn Transport>) -> Arc<dyn Transport>;

impl Net {
    /// Nodes named `roles`, each knowing the others as peers.
    pub async fn start(roles: &[&str]) -> anyhow::Result<Net> {
        Self::start_with(roles, &|_, t| t).await
    }

    /// As [`Net::start`], each node's transport wrapped by `wrap`. Every server listens
    /// before any node starts, so the nodes' start handshakes find their peers.
    pub async fn start_with(roles: &[&str], wrap: &Wrap) -> anyhow::Result<Net> {
        let mut listeners = BTreeMap::new();
        for r in roles {
            let l = loopback().await?;
            listeners.insert(r.to_string(), (l.local_addr()?, l));
        }
        let addrs: BTreeMap<String, SocketAddr> = listeners
            .iter()
            .map(|(r, (a, _))| (r.clone(), *a))
            .collect();
        let mut net = Net {
            roles: roles.iter().map(|r| r.to_string()).collect(),
            members: BTreeMap::new(),
        };
        let mut started = Vec::new();
        for (role, (addr, listener)) in listeners {
            let config = net.config(&role, addr, &addrs);
            let n = sst_net::start_on(config, listener).await?;
            started.push((role, addr, n));
        }
        for (role, addr, n) in started {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let transport: Arc<dyn Transport> = n.transport.clone();
            let node = net
                .start_node(&role, store.clone(), wrap(&role, transport), n.inbox)
                .await?;
            net.members.insert(
                role,
                Member {
                    node: Some(node),
                    server: Some(n.server),
                    transport: n.transport,
                    store,
                    addr,
                },
            );
        }
        Ok(net)
    }

    /// The network configuration of `role` listening on `addr`.
    pub fn config(
        &self,
        role: &str,
        addr: SocketAddr,
        addrs: &BTreeMap<String, SocketAddr>,
    ) -> NetConfig {
        let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        let mut config = NetConfig::new(role, node_key(role), registry(&roles), addr);
        config.request_timeout = Duration::from_secs(10);
        for (peer, a) in addrs {
            if peer != role {
                config = config.with_peer(peer.as_str(), a.to_string());
            }
        }
        config
    }

    /// Starts the node of `role` on `store`: every member's actor registered, its own
    /// actor's key held, the real-estate deal v1 deployed (signed by the first role's actor).
    async fn start_node(
        &self,
        role: &str,
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
        inbox: sst_node::Inbox,
    ) -> anyhow::Result<Node> {
        let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        let config = NodeConfig::new(role).with_key(node_key(role), registry(&roles));
        let contracts = ContractRegistry::new().with(RealEstateDeal);
        let node = Node::start(config, store, contracts.clone(), transport, inbox).await?;
        for r in &roles {
            let (a, key) = actor(r);
            node.register_actor(a.clone()).await?;
            if *r == role {
                node.add_key(&a.id, key)?;
            }
        }
        let (_, deployer_key) = actor(roles[0]);
        let record = contracts.deployment(
            &ContractRef::new("real-estate-deal", 1),
            HashAlg::Blake3,
            who(roles[0]),
            &deployer_key,
        )?;
        node.deploy(record).await?;
        Ok(node)
    }

    /// The running node of `role`.
    pub fn node(&self, role: &str) -> anyhow::Result<&Node> {
        self.members
            .get(role)
            .and_then(|m| m.node.as_ref())
            .with_context(|| format!("node {role} is not running"))
    }

    /// Stops the node of `role` and its server (its store stays).
    pub async fn stop(&mut self, role: &str) -> anyhow::Result<()> {
        let m = self.members.get_mut(role).context("no such member")?;
        if let Some(node) = m.node.take() {
            node.shutdown().await?;
        }
        if let Some(server) = m.server.take() {
            server.shutdown().await;
        }
        Ok(())
    }

    /// Starts the node of `role` again on its store, listening on its old address.
    pub async fn restart(&mut self, role: &str) -> anyhow::Result<()> {
        let addrs: BTreeMap<String, SocketAddr> = self
            .members
            .iter()
            .map(|(r, m)| (r.clone(), m.addr))
            .collect();
        let m = self.members.get(role).context("no such member")?;
        let (addr, store) = (m.addr, m.store.clone());
        let n = sst_net::start(self.config(role, addr, &addrs)).await?;
        let node = Node::start(
            NodeConfig::new(role).with_key(
                node_key(role),
                registry(&self.roles.iter().map(String::as_str).collect::<Vec<_>>()),
            ),
            store,
            ContractRegistry::new().with(RealEstateDeal),
            n.transport.clone(),
            n.inbox,
        )
        .await?;
        let m = self.members.get_mut(role).context("no such member")?;
        m.node = Some(node);
        m.server = Some(n.server);
        m.transport = n.transport;
        Ok(())
    }

    /// The seller creates a deal `id` whose parties are every member's actor (the seller
    /// and the buyer in their roles, any other member as inspector).
    pub async fn create_deal(&self, id: &str) -> anyhow::Result<StateId> {
        let parties = self.roles.iter().fold(Parties::default(), |p, r| {
            let role = match r.as_str() {
                "seller" | "buyer" => r.as_str(),
                _ => "inspector",
            };
            p.with(role, who(r).as_str())
        });
        let intent = Intent::create(
            id,
            ContractRef::new("real-estate-deal", 1),
            parties,
            values([("common", json!({"address": "1 Elm St", "rev": 0}))]),
        );
        let v = self.node("seller")?.submit(&who("seller"), intent).await?;
        anyhow::ensure!(v.is_applied(), "create {id}: {v:?}");
        Ok(StateId::from(id))
    }

    /// `by` (seller or buyer) sets the deal's common section to revision `rev`.
    pub async fn change(&self, by: &str, id: &StateId, rev: u64) -> anyhow::Result<()> {
        let intent = Intent::change(
            id.clone(),
            values([("common", json!({"address": "1 Elm St", "rev": rev}))]),
        );
        let v = self.node(by)?.submit(&who(by), intent).await?;
        anyhow::ensure!(v.is_applied(), "change by {by}: {v:?}");
        Ok(())
    }

    /// Waits on the seller (the home node) until every other member acknowledged `version`.
    pub async fn wait_replicated(&self, id: &StateId, version: u64) -> anyhow::Result<()> {
        let others: Vec<NodeId> = self
            .roles
            .iter()
            .filter(|r| *r != "seller")
            .map(|r| NodeId::from(r.as_str()))
            .collect();
        self.node("seller")?
            .wait_for(id, version, &others, WAIT)
            .await?;
        Ok(())
    }

    /// `v<version> <root>` of state `id` on every running member that holds it.
    pub async fn roots(&self, id: &StateId) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (role, m) in &self.members {
            if let Some(node) = &m.node {
                if let Some(s) = node.state(id).await? {
                    out.insert(role.clone(), format!("v{} {}", s.version, s.root));
                }
            }
        }
        Ok(out)
    }

    /// Asserts every member holds state `id` at `version` with one and the same root.
    pub async fn assert_converged(&self, id: &StateId, version: u64) -> anyhow::Result<()> {
        let roots = self.roots(id).await?;
        anyhow::ensure!(
            roots.len() == self.roles.len(),
            "not every node holds {id}: {roots:?}"
        );
        let first = roots.values().next().cloned().unwrap_or_default();
        anyhow::ensure!(
            roots.values().all(|r| *r == first),
            "roots differ: {roots:?}"
        );
        anyhow::ensure!(
            first.starts_with(&format!("v{version} ")),
            "not at v{version}: {roots:?}"
        );
        Ok(())
    }
}
