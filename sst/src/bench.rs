//! `sst bench`: events per second through the pipeline on four SQLite nodes (home-sequenced
//! intents, group-committed, replicated redacted to the three other nodes), and the round
//! trip of intents forwarded from another node.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;
use serde_json::json;
use sst::core::ContractRef;
use sst::node::{Intent, Verdict};

use crate::cluster::{deal_parties, who, Cluster};

fn change(i: usize) -> Intent {
    let v = std::collections::BTreeMap::from([(
        "common".to_owned(),
        json!({"address": "12 Harbour Lane", "revision": i, "notes": "x".repeat(200)}),
    )]);
    Intent::change("bench-deal", v)
}

/// Runs the benchmark with `events` home intents (and a quarter as many forwarded ones).
pub(crate) async fn run(dir: &Path, events: usize) -> anyhow::Result<()> {
    let c = Cluster::start(dir).await?;
    let seller = Arc::clone(c.node("seller")?);
    let v = seller
        .submit(
            &who("seller"),
            Intent::create(
                "bench-deal",
                ContractRef::new("real-estate-deal", 1),
                deal_parties(),
                std::collections::BTreeMap::from([("common".to_owned(), json!({"revision": 0}))]),
            ),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    c.net.settled().await;

    println!("SQLite files in {} (synchronous=FULL, WAL)", dir.display());
    // 1. Intents at the home node, 64 in flight: group commit at the home, then each change
    //    replicated to the other three nodes.
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
        set.spawn(async move { s.submit(&who("seller"), change(i)).await });
    }
    while let Some(r) = set.join_next().await {
        applied += usize::from(matches!(r??, Verdict::Applied { .. }));
    }
    let home = t.elapsed();
    c.net.settled().await;
    let all = t.elapsed();
    ensure!(applied == events, "only {applied} of {events} applied");
    println!(
        "home-sequenced intents: {events} applied in {:.2} s = {:.0} events/s at the home node; \
         replicated to 3 nodes after {:.2} s = {:.0} events/s end to end",
        home.as_secs_f64(),
        events as f64 / home.as_secs_f64(),
        all.as_secs_f64(),
        events as f64 / all.as_secs_f64()
    );
    // 2. Forwarded intents: the buyer's node sends each to the home and waits for the
    //    applied change to come back (one at a time, since each builds on the previous).
    let buyer = c.node("buyer")?;
    let n = (events / 4).max(1);
    let t = Instant::now();
    for i in 0..n {
        let v = buyer.submit(&who("buyer"), change(events + i)).await?;
        ensure!(v.is_applied(), "{v:?}");
    }
    let fwd = t.elapsed();
    println!(
        "forwarded intents (buyer → home → buyer, sequential): {n} in {:.2} s = {:.0} round trips/s, {:.2} ms each",
        fwd.as_secs_f64(),
        n as f64 / fwd.as_secs_f64(),
        fwd.as_secs_f64() * 1000.0 / n as f64
    );
    c.net.settled().await;
    let roots: Vec<_> = {
        let mut r = Vec::new();
        for node in c.nodes.values() {
            r.push(node.state(&"bench-deal".into()).await?.map(|s| s.root));
        }
        r
    };
    ensure!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "roots differ after the bench"
    );
    println!("all 4 roots equal");
    Ok(())
}
