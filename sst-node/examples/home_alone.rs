//! A home node alone on a SQLite file: events/s of intents sequenced and group-committed
//! with `in_flight` callers at once, all changing one state (as `sst bench` does).
//!
//! `cargo run --release -p sst-node --example home_alone -- [events] [in_flight]
//! [verify_workers] [full|normal|memory]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sst_core::{Actor, ActorKey, ActorStatus, ContractRef, NodeId, Parties, Store};
use sst_node::contracts::RealEstateDeal;
use sst_node::{ContractRegistry, InProcessNetwork, Intent, Node, NodeConfig, Verdict};
use sst_store_sqlite::{SqliteConfig, SqliteStore, Synchronous};

fn change(i: usize) -> Intent {
    let v = BTreeMap::from([(
        "common".to_owned(),
        json!({"address": "12 Harbour Lane", "revision": i, "notes": "x".repeat(200)}),
    )]);
    Intent::change("bench-deal", v)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (events, in_flight, workers) = (arg(0, 5000), arg(1, 64), arg(2, 0));
    let mode = args.get(3).map_or("full", String::as_str).to_owned();
    let dir = std::env::temp_dir().join(format!("sst-home-alone-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store: Arc<dyn Store> = match mode.as_str() {
        "memory" => Arc::new(sst_core::MemoryStore::new()),
        m => {
            let sync = if m == "normal" {
                Synchronous::Normal
            } else {
                Synchronous::Full
            };
            let config = SqliteConfig::file(dir.join("home.db")).synchronous(sync);
            Arc::new(SqliteStore::open(config).await?)
        }
    };
    let net = InProcessNetwork::new();
    let (transport, inbox) = net.join("home");
    let config = NodeConfig::new("home").with_verify_workers(workers);
    let registry = ContractRegistry::new().with(RealEstateDeal);
    let node = Arc::new(Node::start(config, store, registry.clone(), transport, inbox).await?);
    let key = ActorKey::from_seed([9; 32]);
    let actor = Actor {
        id: "home/a".into(),
        node: NodeId::from("home"),
        public_key: key.public_key(),
        status: ActorStatus::Active,
    };
    node.register_actor(actor.clone()).await?;
    node.add_key(&actor.id, ActorKey::from_seed([9; 32]))?;
    let contract = ContractRef::new("real-estate-deal", 1);
    let rec = registry.deployment(&contract, sst_core::HashAlg::Blake3, actor.id.clone(), &key)?;
    node.deploy(rec).await?;
    let parties = Parties::default()
        .with("buyer", actor.id.as_str())
        .with("seller", actor.id.as_str());
    let sections = BTreeMap::from([("common".to_owned(), json!({"revision": 0}))]);
    let v = node
        .submit(
            &actor.id,
            Intent::create("bench-deal", contract, parties, sections),
        )
        .await?;
    anyhow::ensure!(v.is_applied(), "{v:?}");
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut applied = 0usize;
    for i in 0..events {
        if set.len() >= in_flight {
            if let Some(r) = set.join_next().await {
                applied += usize::from(matches!(r??, Verdict::Applied { .. }));
            }
        }
        let (n, a) = (Arc::clone(&node), actor.id.clone());
        set.spawn(async move { n.submit(&a, change(i)).await });
    }
    while let Some(r) = set.join_next().await {
        applied += usize::from(matches!(r??, Verdict::Applied { .. }));
    }
    let took = t.elapsed().as_secs_f64();
    anyhow::ensure!(applied == events, "only {applied} of {events} applied");
    println!(
        "home alone ({mode}, {in_flight} in flight, verify_workers {workers}): {events} events in {took:.2} s = {:.0} events/s",
        events as f64 / took
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
