//! What the notifier tests share: a real four-node real-estate network (seller = home of the
//! deals, buyer, inspector, regulator) over the in-process transport, each node on its own
//! SQLite file; a deal run through create, changes, a method call and a rejection; and the
//! notifications a node's committed log should produce, computed straight from its store.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use sst_core::{
    Actor, ActorId, ActorKey, ActorStatus, ContractRef, EventId, HashAlg, LogKind, NodeId, NodeKey,
    NodeRegistry, Parties, StateId, Store,
};
use sst_node::contracts::RealEstateDeal;
use sst_node::{ContractRegistry, InProcessNetwork, Intent, Node, NodeConfig, Verdict};
use sst_notify::Notification;

/// The participants, home first.
pub const ROLES: [&str; 4] = ["seller", "buyer", "inspector", "regulator"];

/// How long a test waits for replication or publication.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Deterministic 32-byte seed from a label.
fn seed(label: &str, base: u8) -> [u8; 32] {
    let mut s = [base; 32];
    for (i, b) in label.bytes().enumerate() {
        s[i % 32] ^= b.wrapping_mul(31).wrapping_add(i as u8);
    }
    s
}

/// The actor of node `role`: `<role>/a`.
pub fn who(role: &str) -> ActorId {
    ActorId::from(format!("{role}/a").as_str())
}

fn actor(role: &str) -> (Actor, ActorKey) {
    let key = ActorKey::from_seed(seed(&format!("{role}/a"), 7));
    (
        Actor {
            id: who(role),
            node: NodeId::from(role),
            public_key: key.public_key(),
            status: ActorStatus::Active,
        },
        key,
    )
}

/// A running network; its SQLite files live under `dir` (removed on drop).
pub struct Cluster {
    pub dir: PathBuf,
    pub net: InProcessNetwork,
    pub nodes: BTreeMap<&'static str, Arc<Node>>,
    pub stores: BTreeMap<&'static str, Arc<dyn Store>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A migrated SQLite store on `path`.
pub async fn sqlite_store(path: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let store =
        sst_store_sqlite::SqliteStore::open_migrated(sst_store_sqlite::SqliteConfig::file(path))
            .await?;
    Ok(Arc::new(store))
}

impl Cluster {
    /// Four nodes on fresh SQLite files in a directory named after `test`.
    pub async fn start(test: &str) -> anyhow::Result<Cluster> {
        let dir = std::env::temp_dir().join(format!(
            "sst-notify-{test}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let registry = ROLES.iter().fold(NodeRegistry::new(), |r, n| {
            r.with(
                NodeId::from(*n),
                NodeKey::from_seed(seed(n, 42)).public_key(),
            )
        });
        let code = ContractRegistry::new().with(RealEstateDeal);
        let (_, deployer_key) = actor("seller");
        let deployment = code.deployment(
            &ContractRef::new("real-estate-deal", 1),
            HashAlg::Blake3,
            who("seller"),
            &deployer_key,
        )?;
        let net = InProcessNetwork::new();
        let mut nodes = BTreeMap::new();
        let mut stores = BTreeMap::new();
        for role in ROLES {
            let store = sqlite_store(&dir.join(format!("{role}.db"))).await?;
            let (transport, inbox) = net.join(role);
            let config = NodeConfig::new(role)
                .with_key(NodeKey::from_seed(seed(role, 42)), registry.clone());
            let node = Node::start(config, store.clone(), code.clone(), transport, inbox).await?;
            for r in ROLES {
                let (a, key) = actor(r);
                node.register_actor(a.clone()).await?;
                if r == role {
                    node.add_key(&a.id, key)?;
                }
            }
            node.deploy(deployment.clone()).await?;
            nodes.insert(role, Arc::new(node));
            stores.insert(role, store);
        }
        Ok(Cluster {
            dir,
            net,
            nodes,
            stores,
        })
    }

    /// Submits `intent` as `role`'s actor through `role`'s node.
    pub async fn submit(&self, role: &str, intent: Intent) -> anyhow::Result<Verdict> {
        Ok(self.nodes[role].submit(&who(role), intent).await?)
    }

    /// Waits until every node holds `state` at `version`.
    pub async fn replicated(&self, state: &StateId, version: u64) -> anyhow::Result<()> {
        Ok(self.nodes["seller"]
            .wait_for(state, version, &[], DEADLINE)
            .await?)
    }

    /// Runs deal `state` through its life: the seller creates it with a price (v1), the
    /// buyer changes the price (v2, forwarded to the home), the inspector records an
    /// inspection by method (v3), the regulator tries to change the common section
    /// (rejected: forbidden). Returns the events' ids in that order; every node holds v3.
    pub async fn run_deal(&self, state: &str) -> anyhow::Result<Vec<EventId>> {
        let id = StateId::from(state);
        let parties = ROLES
            .iter()
            .fold(Parties::default(), |p, r| p.with(*r, who(r).as_str()));
        let mut ids = Vec::new();
        let mut expect = |v: Verdict, applied: bool| -> anyhow::Result<()> {
            let ok = matches!(v, Verdict::Applied { .. });
            ensure!(ok == applied, "{v:?}");
            ids.push(v.event());
            Ok(())
        };
        expect(
            self.submit(
                "seller",
                Intent::Create {
                    state_id: id.clone(),
                    contract: ContractRef::new("real-estate-deal", 1),
                    parties,
                    sections: values(json!({
                        "common": {"address": "1 Main St"},
                        "price": {"amount": 500000}
                    }))
                    .into(),
                },
            )
            .await?,
            true,
        )?;
        self.replicated(&id, 1).await?;
        expect(
            self.submit(
                "buyer",
                Intent::Change {
                    state_id: id.clone(),
                    sections: values(json!({"price": {"amount": 480000}})).into(),
                },
            )
            .await?,
            true,
        )?;
        self.replicated(&id, 2).await?;
        expect(
            self.submit(
                "inspector",
                Intent::Call {
                    state_id: id.clone(),
                    method: "record_inspection".into(),
                    args: json!({"radon": 1.5}),
                },
            )
            .await?,
            true,
        )?;
        self.replicated(&id, 3).await?;
        expect(
            self.submit(
                "regulator",
                Intent::Change {
                    state_id: id.clone(),
                    sections: values(json!({"common": {"address": "2 Side St"}})).into(),
                },
            )
            .await?,
            false,
        )?;
        self.replicated(&id, 3).await?;
        Ok(ids)
    }
}

/// `{name: value}` of a JSON object.
pub fn values(v: Value) -> BTreeMap<String, Value> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Every notification `node`'s committed log gives, in log order (what a sink with no
/// filter must publish).
pub async fn expected(node: &str, store: &dyn Store) -> anyhow::Result<Vec<Notification>> {
    let mut out = Vec::new();
    for entry in store.log(0, None).await? {
        if entry.kind != LogKind::Event {
            continue;
        }
        let id: EventId = entry.subject.parse().map_err(anyhow::Error::msg)?;
        let record = store
            .event(&id)
            .await?
            .with_context(|| format!("logged event {id} not found"))?;
        out.extend(sst_notify::notifications(
            &NodeId::from(node),
            entry.pos,
            &record,
        ));
    }
    Ok(out)
}

/// Polls `check` every 50 ms until it yields a value or [`DEADLINE`] passes.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
