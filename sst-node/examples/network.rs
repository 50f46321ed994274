//! A home node and three replicas in one process on SQLite files (synchronous=NORMAL), as
//! `sst bench` runs them: events/s of changes sequenced at the home with `in_flight` callers,
//! until every replica holds them.
//!
//! `cargo run --release -p sst-node --example network -- [events] [in_flight] [verify_workers]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use common::{deal_parties, values, who, Cluster, ROLES};
use serde_json::json;
use sst_core::{ContractRef, Store};
use sst_node::{Intent, Verdict};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (events, in_flight, workers) = (arg(0, 3000), arg(1, 64), arg(2, 0));
    let dir = std::env::temp_dir().join(format!("sst-network-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut stores: BTreeMap<String, Arc<dyn Store>> = BTreeMap::new();
    for r in ROLES {
        stores.insert(
            r.to_string(),
            common::sqlite_store(&dir.join(format!("{r}.db"))).await?,
        );
    }
    let c = Cluster::start_with(
        stores,
        |r: &str| common::config(r).with_verify_workers(workers),
        |_: &str, t| t,
    )
    .await?;
    let seller = Arc::clone(c.node("seller"));
    let create = Intent::create(
        "bench-deal",
        ContractRef::new("real-estate-deal", 1),
        deal_parties(),
        values([("common", json!({"revision": 0}))]),
    );
    let v = seller.submit(&who("seller"), create).await?;
    anyhow::ensure!(v.is_applied(), "{v:?}");
    c.net.settled().await;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut applied = 0usize;
    for i in 0..events {
        if set.len() >= in_flight {
            if let Some(r) = set.join_next().await {
                applied += usize::from(matches!(r??, Verdict::Applied { .. }));
            }
        }
        let s = Arc::clone(&seller);
        let change = values([(
            "common",
            json!({"address": "12 Harbour Lane", "revision": i, "notes": "x".repeat(200)}),
        )]);
        set.spawn(async move {
            s.submit(&who("seller"), Intent::change("bench-deal", change))
                .await
        });
    }
    while let Some(r) = set.join_next().await {
        applied += usize::from(matches!(r??, Verdict::Applied { .. }));
    }
    let home = t.elapsed().as_secs_f64();
    c.net.settled().await;
    let all = t.elapsed().as_secs_f64();
    anyhow::ensure!(applied == events, "only {applied} of {events} applied");
    println!(
        "home + 3 replicas (NORMAL, {in_flight} in flight, verify_workers {workers}): {events} events: \
         {:.0} events/s at the home, {:.0} events/s replicated",
        events as f64 / home,
        events as f64 / all
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
