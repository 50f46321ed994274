//! Peers as witnesses of shared states (issue 17, deliverable 4): replicas acknowledge
//! changes with a node-signed statement of the version and root they hold, the home compares
//! it with its own copy and with what each replica acknowledged before; a replica whose copy
//! was rewritten behind its back, or restarted on a database rolled back to an older version,
//! raises a witness alarm on the home naming the replica and the state; a statement altered
//! in transit does not verify and counts for nothing. A clean network — several states,
//! several replicas, a restart — raises none.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use common::{
    create_deal, create_rfq, create_two_party_deal, eventually, registry, sqlite_store, values,
    who, Cluster, TempDir,
};
use serde_json::json;
use sst_core::{
    ContractRef, Digest, Disclosure, HashAlg, MemoryStore, NodeId, StateId, StateRoot, Store,
};
use sst_node::{
    Delivery, HomeMessage, InProcessNetwork, Inbox, Intent, Node, WitnessAlarm, WitnessAlarmKind,
};
use tokio::sync::mpsc;

fn deal() -> ContractRef {
    ContractRef::new("real-estate-deal", 1)
}

/// `actor`'s node changes `section` of `id` to `value`; the change must apply.
async fn change(
    node: &Node,
    actor: &str,
    id: &StateId,
    section: &str,
    value: serde_json::Value,
) -> anyhow::Result<()> {
    let v = node
        .submit(
            &who(actor),
            Intent::change(id.clone(), values([(section, value)])),
        )
        .await?;
    ensure!(v.is_applied(), "{actor} changing {id}.{section}: {v:?}");
    Ok(())
}

/// The state alarms `node` raised about `state`.
fn state_alarms(node: &Node, state: &StateId) -> Vec<WitnessAlarm> {
    node.witness_alarms()
        .into_iter()
        .filter(|a| a.kind.state() == Some(state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_network_with_several_states_and_a_restart_raises_no_alarm() -> anyhow::Result<()> {
    let mut c = Cluster::in_memory().await?;
    // Two deals homed at the seller, an RFQ homed at the buyer; all four nodes take part.
    let d1 = create_deal(&c, "deal-w1").await?;
    let d2 = create_deal(&c, "deal-w2").await?;
    let rfq = create_rfq(&c, "rfq-w").await?;
    for rev in 0..3 {
        change(
            c.node("seller"),
            "seller",
            &d1,
            "common",
            json!({ "rev": rev }),
        )
        .await?;
    }
    change(c.node("buyer"), "buyer", &d2, "common", json!({"rev": 1})).await?;
    let wait = Duration::from_secs(10);
    c.node("seller").wait_for(&d1, 4, &[], wait).await?;
    c.node("seller").wait_for(&d2, 2, &[], wait).await?;
    c.node("buyer").wait_for(&rfq, 1, &[], wait).await?;
    // Every replica's signed statement reached the home, which lists it at the latest version.
    for (home, id, version) in [("seller", &d1, 4), ("seller", &d2, 2), ("buyer", &rfq, 1)] {
        let status = c
            .node(home)
            .sync_status(id)
            .await?
            .context("home's status")?;
        ensure!(status.nodes.len() == 3, "{id}: {:?}", status.nodes);
        for n in &status.nodes {
            ensure!(n.acknowledged == version, "{id}: {n}");
        }
    }

    // The inspector restarts on its (untouched) store: its catch-up states what it holds,
    // which is what it acknowledged: no rollback, no divergence.
    let inspector = c.nodes.remove("inspector").context("inspector")?;
    let inspector = Arc::try_unwrap(inspector)
        .map_err(|_| anyhow::anyhow!("the inspector node is still shared"))?;
    inspector.shutdown().await?;
    let store = c.stores["inspector"].clone();
    let inspector =
        Cluster::start_node(&c.net, "inspector", store, registry(false), &[deal()]).await?;
    c.nodes.insert("inspector".into(), Arc::new(inspector));
    change(c.node("seller"), "seller", &d1, "common", json!({"rev": 9})).await?;
    c.node("seller").wait_for(&d1, 5, &[], wait).await?;
    c.node("buyer").wait_for(&rfq, 1, &[], wait).await?;
    c.net.settled().await;
    for (role, node) in &c.nodes {
        let alarms = node.witness_alarms();
        ensure!(alarms.is_empty(), "{role}: false alarms {alarms:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_state_rewritten_behind_its_back_is_caught_by_the_home() -> anyhow::Result<()> {
    let net = InProcessNetwork::new();
    let (seller_store, buyer_store) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let seller = Cluster::start_node(
        &net,
        "seller",
        seller_store.clone(),
        registry(false),
        &[deal()],
    )
    .await?;
    let buyer = Cluster::start_node(
        &net,
        "buyer",
        buyer_store.clone(),
        registry(false),
        &[deal()],
    )
    .await?;
    let (s, b) = (NodeId::from("seller"), NodeId::from("buyer"));
    let wait = Duration::from_secs(10);
    let id = create_two_party_deal(&seller, "deal-div", json!({"rev": 0})).await?;
    let other = create_two_party_deal(&seller, "deal-other", json!({"rev": 0})).await?;
    change(&seller, "seller", &id, "common", json!({"rev": 1})).await?;
    seller
        .wait_for(&id, 2, std::slice::from_ref(&b), wait)
        .await?;
    seller
        .wait_for(&other, 1, std::slice::from_ref(&b), wait)
        .await?;
    ensure!(seller.witness_alarms().is_empty() && buyer.witness_alarms().is_empty());

    // Behind the buyer's back, a consistent rewrite of its copy of v2: a new value, its
    // section hash and the root recomputed, as a raw UPDATE computing them would leave it.
    buyer_store.tamper(&id, |versions| {
        if let Some(v2) = versions.last_mut() {
            let alg = v2.alg();
            if let Some(section) = v2.sections.get_mut("common") {
                if let Some(d) = &mut section.disclosure {
                    *d = Disclosure::new(d.salt, json!({"rev": 1, "forged": true}).into());
                    section.hash = d.hash(alg, "common");
                }
            }
            v2.root = v2.compute_root();
        }
    })?;
    let home_root = seller_store.state(&id).await?.context("home v2")?.root;
    let forged_root = buyer_store.state(&id).await?.context("buyer v2")?.root;
    ensure!(home_root != forged_root, "the rewrite kept the root");

    // The next change: the buyer cannot apply it on its rewritten copy and says what it
    // holds; the home sees another root at v2 and raises the alarm naming the buyer.
    change(&seller, "seller", &id, "common", json!({"rev": 2})).await?;
    let diverged = WitnessAlarmKind::StateDiverged {
        state: id.clone(),
        version: 2,
        ours: Some(home_root),
        theirs: forged_root,
    };
    eventually(10, "divergence alarm on the home", || async {
        let status = seller.sync_status(&id).await?.context("status")?;
        Ok(status
            .witness_alarms
            .iter()
            .any(|a| a.node == b && a.kind == diverged))
    })
    .await?;
    let said = seller.witness_alarms()[0].to_string();
    ensure!(
        said.contains("deal-div") && said.contains("buyer"),
        "{said}"
    );
    // The buyer, comparing the home's announced base root with its own, alarms about the
    // home; its copy stays at v2 and the home knows it is behind.
    let announced = WitnessAlarmKind::StateDiverged {
        state: id.clone(),
        version: 2,
        ours: Some(forged_root),
        theirs: home_root,
    };
    eventually(10, "divergence alarm on the replica", || async {
        Ok(buyer
            .witness_alarms()
            .iter()
            .any(|a| a.node == s && a.kind == announced))
    })
    .await?;
    ensure!(buyer.state(&id).await?.context("state")?.version == 2);
    ensure!(
        seller
            .sync_status(&id)
            .await?
            .context("status")?
            .node(&b)
            .context("buyer")?
            .acknowledged
            == 2
    );

    // A state alarm concerns that state only: the other deal keeps replicating, cleanly.
    change(&seller, "seller", &other, "common", json!({"rev": 1})).await?;
    seller
        .wait_for(&other, 2, std::slice::from_ref(&b), wait)
        .await?;
    ensure!(state_alarms(&seller, &other).is_empty());
    ensure!(state_alarms(&buyer, &other).is_empty());
    // Every alarm the home raised is about the buyer's copy of the rewritten state.
    for a in seller.witness_alarms() {
        ensure!(a.node == b && a.kind.state() == Some(&id), "{a}");
    }
    Ok(())
}

/// Removes the SQLite file at `path` with its WAL and shared-memory files.
fn remove_db(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", path.display());
        if Path::new(&p).exists() {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_on_a_rolled_back_database_is_caught_by_the_home() -> anyhow::Result<()>
{
    let dir = TempDir::new("sst-witness-rollback")?;
    let (buyer_db, backup) = (dir.0.join("buyer.db"), dir.0.join("backup.db"));
    let net = InProcessNetwork::new();
    let seller = Cluster::start_node(
        &net,
        "seller",
        Arc::new(MemoryStore::new()),
        registry(false),
        &[deal()],
    )
    .await?;
    let start_buyer = || async {
        let store = sqlite_store(&buyer_db).await?;
        Cluster::start_node(&net, "buyer", store, registry(false), &[deal()]).await
    };
    let buyer = start_buyer().await?;
    let b = NodeId::from("buyer");
    let wait = Duration::from_secs(10);
    let id = create_two_party_deal(&seller, "deal-rb", json!({"rev": 0})).await?;
    let kept = create_two_party_deal(&seller, "deal-kept", json!({"rev": 0})).await?;
    for rev in 1..=2 {
        change(&seller, "seller", &id, "common", json!({ "rev": rev })).await?;
    }
    seller
        .wait_for(&id, 3, std::slice::from_ref(&b), wait)
        .await?;
    seller
        .wait_for(&kept, 1, std::slice::from_ref(&b), wait)
        .await?;
    // A backup of the buyer's database at v3 (a consistent snapshot of the live file).
    rusqlite::Connection::open(&buyer_db)?
        .execute(&format!("VACUUM INTO '{}'", backup.display()), [])?;
    for rev in 3..=5 {
        change(&seller, "seller", &id, "common", json!({ "rev": rev })).await?;
    }
    seller
        .wait_for(&id, 6, std::slice::from_ref(&b), wait)
        .await?;
    ensure!(
        seller.witness_alarms().is_empty(),
        "{:?}",
        seller.witness_alarms()
    );

    // The buyer's database is restored from the backup, and the buyer restarted on it.
    buyer.shutdown().await?;
    remove_db(&buyer_db)?;
    std::fs::copy(&backup, &buyer_db)?;
    let buyer = start_buyer().await?;

    // Its catch-up states v3 of the deal it acknowledged at v6: the home raises the alarm.
    let rolled_back = WitnessAlarmKind::StateRolledBack {
        state: id.clone(),
        acknowledged: 6,
        reported: 3,
    };
    eventually(10, "rollback alarm on the home", || async {
        let status = seller.sync_status(&id).await?.context("status")?;
        Ok(status
            .witness_alarms
            .iter()
            .any(|a| a.node == b && a.kind == rolled_back))
    })
    .await?;
    // The state it did not change since the backup raises nothing; and the home sends the
    // lost versions again, which the buyer applies (it acknowledges v6 again).
    ensure!(state_alarms(&seller, &kept).is_empty());
    seller
        .wait_for(&id, 6, std::slice::from_ref(&b), wait)
        .await?;
    ensure!(buyer.state(&id).await?.context("state")?.version == 6);
    ensure!(
        state_alarms(&seller, &id).len() == 1,
        "{:?}",
        state_alarms(&seller, &id)
    );
    Ok(())
}

/// The seller's deliveries pass through a relay that rewrites the root of every state
/// statement in the acknowledgements it receives (keeping their signatures).
fn forging_inbox(mut from_net: Inbox) -> Inbox {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(d) = from_net.recv().await {
            let (from, mut envelope, _receipt) = d.into_parts();
            if let Ok(HomeMessage::Ack(mut ack)) = envelope.decode::<HomeMessage>() {
                for w in &mut ack.witness {
                    w.root = StateRoot(Digest::from_parts(HashAlg::Blake3, [7; 32]));
                }
                if let Ok(e) = HomeMessage::Ack(ack).envelope() {
                    envelope = e;
                }
            }
            if tx.send(Delivery::new(from, envelope)).await.is_err() {
                return;
            }
        }
    });
    Inbox::from_receiver(rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_statement_altered_in_transit_is_an_alarm_and_no_acknowledgement(
) -> anyhow::Result<()> {
    let net = InProcessNetwork::new();
    let (transport, inbox) = net.join("seller");
    let seller = Cluster::start_node_on(
        common::config("seller"),
        Arc::new(MemoryStore::new()),
        registry(false),
        &[deal()],
        transport,
        forging_inbox(inbox),
    )
    .await?;
    let buyer = Cluster::start_node(
        &net,
        "buyer",
        Arc::new(MemoryStore::new()),
        registry(false),
        &[deal()],
    )
    .await?;
    let b = NodeId::from("buyer");
    let id = create_two_party_deal(&seller, "deal-forged", json!({"rev": 0})).await?;
    change(&seller, "seller", &id, "common", json!({"rev": 1})).await?;
    eventually(10, "the buyer holds v2", || async {
        Ok(buyer.state(&id).await?.is_some_and(|s| s.version == 2))
    })
    .await?;
    eventually(10, "bad signature alarm on the home", || async {
        Ok(seller.witness_alarms().iter().any(|a| {
            a.node == b
                && matches!(&a.kind, WitnessAlarmKind::BadSignature { detail }
                    if detail.contains("deal-forged") && detail.contains("does not verify"))
        }))
    })
    .await?;
    // A statement that does not verify neither acknowledges nor compares anything.
    let status = seller.sync_status(&id).await?.context("status")?;
    ensure!(
        status.node(&b).context("buyer")?.acknowledged == 0,
        "{status:?}"
    );
    ensure!(
        seller
            .witness_alarms()
            .iter()
            .all(|a| matches!(a.kind, WitnessAlarmKind::BadSignature { .. })),
        "{:?}",
        seller.witness_alarms()
    );
    ensure!(buyer.witness_alarms().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_checkpoints_are_pruned_own_and_witnessed_and_the_stores_still_verify(
) -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let d = create_deal(&c, "deal-prune").await?;
    // Each change then an explicit checkpoint: one checkpoint per log position, far more
    // than are kept.
    for rev in 0..40 {
        change(
            c.node("seller"),
            "seller",
            &d,
            "common",
            json!({ "rev": rev }),
        )
        .await?;
        c.node("seller").checkpoint().await?;
    }
    c.node("seller")
        .wait_for(&d, 41, &[], Duration::from_secs(10))
        .await?;
    c.net.settled().await;
    let seller = NodeId::from("seller");
    let head = c.stores["seller"].log_head().await?;
    let own = c.stores["seller"].checkpoints(&seller).await?;
    ensure!(own.len() == 16, "own checkpoints kept: {}", own.len());
    ensure!(
        own.last().map(|cp| cp.checkpoint.pos) == Some(head.pos),
        "the latest own checkpoint is the head"
    );
    for peer in ["buyer", "inspector", "regulator"] {
        let witnessed = c.stores[peer].checkpoints(&seller).await?;
        ensure!(
            !witnessed.is_empty() && witnessed.len() <= 16,
            "{peer} keeps {} checkpoints of the seller",
            witnessed.len()
        );
    }
    for (role, store) in &c.stores {
        let report = sst_core::verify_store_with(
            store.as_ref(),
            &sst_core::TrustAnchors::new(
                common::node_registry(),
                Some(NodeId::from(role.as_str())),
            ),
            &mut |_, _| {},
        )
        .await?;
        ensure!(report.is_clean(), "{role}: {:?}", report.findings);
    }
    Ok(())
}
