//! Pipeline events per second with the JavaScript real-estate contract next to the native
//! one, in the same run: four nodes (buyer, seller, inspector, regulator), each on its own
//! SQLite file, over the in-process transport (the setup of `sst bench`). The seller's node
//! sequences `set_price` method calls (64 in flight); each is replicated to the other three,
//! and the buyer's node, which reads the price, re-executes the call and compares. The JS
//! contract is deployed at run time by a `DeployContract` event; the native one is compiled
//! in. Runs alternate native / JavaScript for `--rounds` rounds (default 2) of `--events`
//! calls (default 2000) and print the rates and their ratio.
//!
//! `cargo xtask bench contracts` runs it in release mode.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use serde_json::json;
use sst_contract_js::{descriptor_of, sources, JsEngine};
use sst_core::{
    Actor, ActorId, ActorKey, ActorStatus, ContractRecord, ContractRef, HashAlg, NodeId, NodeKey,
    NodeRegistry, Parties, Store,
};
use sst_node::contracts::RealEstateDeal;
use sst_node::{ContractRegistry, InProcessNetwork, Intent, Node, NodeConfig, Verdict};
use sst_store_sqlite::{SqliteConfig, SqliteStore};

const NODES: [&str; 4] = ["buyer", "seller", "inspector", "regulator"];
const STATE: &str = "bench-deal";

fn who(node: &str) -> ActorId {
    ActorId::from(format!("{node}/a").as_str())
}

/// Which contract engine a run uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Native,
    JavaScript,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Native => "native",
            Engine::JavaScript => "javascript",
        }
    }
}

struct Net {
    net: InProcessNetwork,
    nodes: BTreeMap<&'static str, Arc<Node>>,
}

/// Four nodes on fresh SQLite files in `dir`, the real-estate contract deployed.
async fn start(dir: &Path, engine: Engine) -> anyhow::Result<Net> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keys: BTreeMap<&str, ActorKey> = NODES.iter().map(|n| (*n, ActorKey::generate())).collect();
    let mut node_keys: BTreeMap<&str, NodeKey> =
        NODES.iter().map(|n| (*n, NodeKey::generate())).collect();
    let node_registry = node_keys.iter().fold(NodeRegistry::new(), |r, (n, k)| {
        r.with(NodeId::from(*n), k.public_key())
    });
    let registry = match engine {
        Engine::Native => ContractRegistry::new().with(RealEstateDeal),
        Engine::JavaScript => ContractRegistry::new().with_engine(Arc::new(JsEngine::new())),
    };
    let net = InProcessNetwork::new();
    let mut nodes = BTreeMap::new();
    for name in NODES {
        let file = dir.join(format!("{name}.db"));
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open_migrated(SqliteConfig::file(&file)).await?);
        let (transport, inbox) = net.join(name);
        let key = node_keys.remove(name).context("node key")?;
        let node = Node::start(
            NodeConfig::new(name).with_key(key, node_registry.clone()),
            store,
            registry.clone(),
            transport,
            inbox,
        )
        .await?;
        for n in NODES {
            node.register_actor(Actor {
                id: who(n),
                node: NodeId::from(n),
                public_key: keys[n].public_key(),
                status: ActorStatus::Active,
            })
            .await?;
        }
        node.add_key(
            &who(name),
            ActorKey::from_pkcs8_pem(&keys[name].to_pkcs8_pem()?)?,
        )?;
        nodes.insert(name, Arc::new(node));
    }
    let seller = &nodes["seller"];
    match engine {
        Engine::Native => {
            let record = registry.deployment(
                &ContractRef::new("real-estate-deal", 1),
                HashAlg::Blake3,
                who("seller"),
                &keys["seller"],
            )?;
            for node in nodes.values() {
                node.deploy(record.clone()).await?;
            }
        }
        Engine::JavaScript => {
            let source = sources::REAL_ESTATE_V1;
            let record = ContractRecord::sign(
                descriptor_of(source)?,
                HashAlg::Blake3,
                who("seller"),
                &keys["seller"],
            )
            .with_source(source);
            let v = seller.deploy_contract(record).await?;
            ensure!(v.is_applied(), "deploying the JavaScript contract: {v:?}");
            net.settled().await;
        }
    }
    let parties = NODES
        .iter()
        .fold(Parties::default(), |p, n| p.with(*n, who(n).as_str()));
    let v = seller
        .submit(
            &who("seller"),
            Intent::create(
                STATE,
                ContractRef::new("real-estate-deal", 1),
                parties,
                BTreeMap::from([("common".to_owned(), json!({"address": "12 Harbour Lane"}))]),
            ),
        )
        .await?;
    ensure!(v.is_applied(), "creating the deal: {v:?}");
    net.settled().await;
    Ok(Net { net, nodes })
}

/// Rates of one run: at the home node, and replicated to every node.
struct Rates {
    home: f64,
    end_to_end: f64,
    re_executed: u64,
}

async fn run(dir: &Path, engine: Engine, events: usize) -> anyhow::Result<Rates> {
    let c = start(dir, engine).await?;
    let seller = Arc::clone(&c.nodes["seller"]);
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut applied = 0usize;
    for i in 0..events {
        if set.len() >= 64 {
            if let Some(r) = set.join_next().await {
                applied += usize::from(matches!(r??, Verdict::Applied { .. }));
            }
        }
        let s = Arc::clone(&seller);
        set.spawn(async move {
            s.submit(
                &who("seller"),
                Intent::call(STATE, "set_price", json!({"amount": 100_000 + i})),
            )
            .await
        });
    }
    while let Some(r) = set.join_next().await {
        applied += usize::from(matches!(r??, Verdict::Applied { .. }));
    }
    let home = t.elapsed();
    c.net.settled().await;
    let all = t.elapsed();
    ensure!(applied == events, "only {applied} of {events} applied");
    let mut roots = Vec::new();
    for node in c.nodes.values() {
        roots.push(node.state(&STATE.into()).await?.map(|s| s.root));
    }
    ensure!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "roots differ after the run"
    );
    Ok(Rates {
        home: events as f64 / home.as_secs_f64(),
        end_to_end: events as f64 / all.as_secs_f64(),
        re_executed: c.nodes["buyer"].validation_counts().re_executed,
    })
}

fn arg(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            let v = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .with_context(|| format!("{name}: `{v}` is not a count"))
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(bad) = args
        .iter()
        .find(|a| a.starts_with("--") && *a != "--events" && *a != "--rounds")
    {
        bail!("unknown argument `{bad}` (usage: pipeline_bench [--events N] [--rounds N])");
    }
    let events = arg(&args, "--events", 2000)?;
    let rounds = arg(&args, "--rounds", 2)?;
    ensure!(
        events > 0 && rounds > 0,
        "--events and --rounds must be positive"
    );
    let base: PathBuf =
        std::env::temp_dir().join(format!("sst-bench-contracts-{}", uuid::Uuid::new_v4()));
    println!(
        "{events} set_price calls per run, 4 SQLite nodes in {}, {rounds} round(s) of native then javascript",
        base.display()
    );
    let mut totals = BTreeMap::<&str, (f64, f64)>::new();
    for round in 0..rounds {
        for engine in [Engine::Native, Engine::JavaScript] {
            let dir = base.join(format!("{}-{round}", engine.name()));
            let r = run(&dir, engine, events).await;
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            println!(
                "round {}: {:<10} {:>6.0} ev/s at the home node, {:>6.0} ev/s replicated to 4 nodes \
                 ({} calls re-executed by the buyer's node)",
                round + 1,
                engine.name(),
                r.home,
                r.end_to_end,
                r.re_executed
            );
            let t = totals.entry(engine.name()).or_default();
            t.0 += r.home;
            t.1 += r.end_to_end;
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    let n = rounds as f64;
    let (js_home, js_all) = totals["javascript"];
    let (na_home, na_all) = totals["native"];
    println!(
        "home node:   javascript {:.0} ev/s, native {:.0} ev/s, ratio {:.2}",
        js_home / n,
        na_home / n,
        js_home / na_home
    );
    println!(
        "javascript {:.0} ev/s, native {:.0} ev/s, ratio {:.2} (replicated to 4 nodes, mean of {rounds} round(s))",
        js_all / n,
        na_all / n,
        js_all / na_all
    );
    Ok(())
}
