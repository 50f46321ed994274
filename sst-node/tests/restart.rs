//! Restart without refusals (issue 16, item 8): a node killed right after it forwarded an
//! intent — recorded only on the home node, possibly before the applied change came back —
//! resumes above every origin sequence it used, so its first intent after the restart is
//! applied, never refused for a reused sequence. A kill is a drop without shutdown (as in
//! tests/crash.rs): the node's tasks stop wherever they are and the SQLite file is reopened
//! by a new connection.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use common::{create_two_party_deal, registry, sqlite_store, values, who, Cluster, TempDir};
use serde_json::json;
use sst_core::{ContractRef, EventFilter, MemoryStore, NodeId, RejectReason, StateId, Store};
use sst_node::{InProcessNetwork, Intent, Node, Verdict};

const RESTARTS: usize = 60;

fn deal() -> ContractRef {
    ContractRef::new("real-estate-deal", 1)
}

async fn start_buyer(net: &InProcessNetwork, store: Arc<dyn Store>) -> anyhow::Result<Node> {
    Cluster::start_node(net, "buyer", store, registry(false), &[deal()]).await
}

fn rev(id: &StateId, n: usize) -> Intent {
    Intent::change(id.clone(), values([("common", json!({"rev": n}))]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_after_forwarding_never_reuses_an_origin_sequence() -> anyhow::Result<()> {
    kill_loop(false).await
}

/// When the home is unreachable while the node restarts, the node cannot learn the
/// sequences recorded there and reuses one; the home then has the origin re-sequence the
/// intent: still never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_origin_sequence_is_re_sequenced_not_refused() -> anyhow::Result<()> {
    kill_loop(true).await
}

async fn kill_loop(home_offline_at_restart: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = TempDir::new("sst-restart")?;
    let path = dir.0.join("buyer.db");
    let net = InProcessNetwork::new();
    let seller_store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let seller = Cluster::start_node(
        &net,
        "seller",
        seller_store.clone(),
        registry(false),
        &[deal()],
    )
    .await?;
    let mut buyer = start_buyer(&net, sqlite_store(&path).await?).await?;
    let b = NodeId::from("buyer");
    let id = create_two_party_deal(&seller, "deal-restarts", json!({"rev": 0})).await?;
    seller
        .wait_for(&id, 1, std::slice::from_ref(&b), Duration::from_secs(10))
        .await?;

    let mut refused = Vec::new();
    // Restarts where the buyer's own file did not hold its last forwarded intent: without
    // the home's record it would have reused that sequence.
    let mut hazards = 0;
    let mut resubmitted = 0;
    let mut n = 0;
    for round in 0..RESTARTS {
        // Forward an intent; kill the node as soon as the home recorded it.
        n += 1;
        let recorded_before = seller_store.last_origin_seq(&b).await?;
        {
            let me = who("buyer");
            let submit = buyer.submit(&me, rev(&id, n));
            tokio::pin!(submit);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                tokio::select! {
                    verdict = &mut submit => {
                        ensure!(verdict?.is_applied(), "round {round}: forwarded intent not applied");
                        break;
                    }
                    _ = tokio::time::sleep(Duration::from_micros(200)) => {
                        if seller_store.last_origin_seq(&b).await? > recorded_before {
                            break;
                        }
                        ensure!(Instant::now() < deadline, "round {round}: the home never recorded the intent");
                    }
                }
            }
        }
        drop(buyer);
        // Restart on the same file.
        let store = sqlite_store(&path).await?;
        let home_record = seller_store.last_origin_seq(&b).await?;
        if store.last_origin_seq(&b).await? < home_record {
            hazards += 1;
        }
        let s = NodeId::from("seller");
        if home_offline_at_restart {
            net.set_online(&s, false);
        }
        buyer = start_buyer(&net, store).await?;
        net.set_online(&s, true);
        // The first intent after the restart.
        n += 1;
        match buyer.submit(&who("buyer"), rev(&id, n)).await? {
            Verdict::Applied { .. } => {}
            Verdict::Refused { reason, .. } => refused.push((round, reason)),
            Verdict::Rejected {
                reason: RejectReason::StaleBase { .. },
                ..
            } => {
                // Built on a version this replica had not caught up with yet: a real
                // rejection (not an origin refusal); the client submits again.
                // The home sends the versions it lacked with the rejection.
                resubmitted += 1;
                let mut v = buyer.submit(&who("buyer"), rev(&id, n)).await?;
                for _ in 0..5 {
                    if v.is_applied() || v.reason().is_some_and(|r| r.code() != "stale_base") {
                        break;
                    }
                    v = buyer.submit(&who("buyer"), rev(&id, n)).await?;
                }
                ensure!(v.is_applied(), "round {round}: resubmitted: {v:?}");
            }
            other => anyhow::bail!("round {round}: {other:?}"),
        }
    }
    println!(
        "home offline at restart: {home_offline_at_restart}: {RESTARTS} kill/restart rounds in {:?}: {hazards} restarts where the node's own file \
         lacked its last forwarded sequence, {} intents refused, {resubmitted} stale-base \
         rejections resubmitted",
        started.elapsed(),
        refused.len()
    );
    ensure!(refused.is_empty(), "refused after a restart: {refused:?}");

    // Every origin sequence of the buyer is recorded once on the home; both converge.
    let events = seller_store
        .events(&EventFilter {
            origin_node: Some(b.clone()),
            ..Default::default()
        })
        .await?;
    let mut seqs: Vec<u64> = events.iter().map(|r| r.event().origin_seq.0).collect();
    let all = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    ensure!(seqs.len() == all, "an origin sequence was recorded twice");
    let latest = seller.state(&id).await?.context("state")?;
    seller
        .wait_for(&id, latest.version, &[b], Duration::from_secs(10))
        .await?;
    let replica = buyer.state(&id).await?.context("replica")?;
    ensure!(replica.root == latest.root, "roots differ");
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}
