//! Tamper evidence kept by the nodes (issue 17): every record carries the sequencing node's
//! receipt, replicas refuse changes whose receipt is missing or forged, nodes sign
//! checkpoints of their log that their peers witness, a node restarted on a truncated
//! database is caught by the peer that witnessed more, and a node whose log was edited
//! refuses to start.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context};
use common::{
    create_deal, create_two_party_deal, eventually, node_registry, registry, sqlite_store, values,
    who, Cluster, TempDir,
};
use serde_json::json;
use sst_core::{
    ActorChange, ContractRef, EventFilter, EventKind, MemoryStore, NodeId, Outcome, Rule,
    SequencingReceipt, Store, TrustAnchors,
};
use sst_node::{
    Delivery, HomeMessage, InProcessNetwork, Inbox, Intent, Node, NodeError, WitnessAlarmKind,
};
use tokio::sync::mpsc;

fn deal() -> ContractRef {
    ContractRef::new("real-estate-deal", 1)
}

/// Every event `store` holds carries a receipt that verifies under the registry, signed by
/// the node that sequences it (the state's home; the actor's node for an actor change).
async fn receipts_verify(store: &dyn Store, homes: &[(&str, &str)]) -> anyhow::Result<usize> {
    let reg = node_registry();
    let events = store.events(&EventFilter::default()).await?;
    for rec in &events {
        let e = rec.event();
        let receipt = rec
            .receipt
            .as_ref()
            .with_context(|| format!("event {} has no receipt", rec.id()))?;
        let sequencer = if e.kind == EventKind::ActorChange {
            e.origin_node.clone()
        } else {
            let home = homes
                .iter()
                .find(|(s, _)| *s == e.state_id.as_str())
                .map(|(_, h)| *h)
                .context("state's home")?;
            NodeId::from(home)
        };
        ensure!(
            receipt.node == sequencer,
            "{}: signed by {}",
            rec.id(),
            receipt.node
        );
        receipt.verify(&reg, rec)?;
    }
    Ok(events.len())
}

/// `verify_log` with the network's registry finds nothing on `store` of node `node`.
async fn log_verifies(store: &dyn Store, node: &str) -> anyhow::Result<()> {
    let anchors = TrustAnchors::new(node_registry(), Some(NodeId::from(node)));
    let report = sst_core::verify_log(store, &anchors).await?;
    ensure!(
        report.is_clean() && report.anchored,
        "{node}: {:?}",
        report.findings
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_on_every_node_carries_a_receipt_that_verifies() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let id = create_deal(&c, "deal-r").await?;
    // An applied change forwarded to the home, a rejected one (the inspector may not write
    // the price: the rejection travels back to it with the home's receipt), a key rotation.
    let v = c
        .node("buyer")
        .submit(
            &who("buyer"),
            Intent::change(id.clone(), values([("price", json!({"amount": 1}))])),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    let v = c
        .node("inspector")
        .submit(
            &who("inspector"),
            Intent::change(id.clone(), values([("price", json!({"amount": 2}))])),
        )
        .await?;
    ensure!(!v.is_applied(), "{v:?}");
    let new_key = sst_core::ActorKey::from_seed([9; 32]);
    let v = c.node("buyer").rotate_key(&who("buyer"), new_key).await?;
    ensure!(v.is_applied(), "{v:?}");
    c.net.settled().await;
    let mut total = 0;
    for (role, node) in &c.nodes {
        let n = receipts_verify(node.store().as_ref(), &[("deal-r", "seller")]).await?;
        ensure!(n >= 2, "{role} holds {n} events");
        total += n;
    }
    let inspector = c.node("inspector").store().clone();
    let rejected = inspector
        .events(&EventFilter {
            outcome: Some(sst_core::OutcomeKind::Rejected),
            ..Default::default()
        })
        .await?;
    ensure!(rejected.len() == 1, "inspector recorded {rejected:?}");
    ensure!(total >= 12, "{total} events");
    let rotated = c
        .node("regulator")
        .store()
        .event(&v.event())
        .await?
        .context("rotation replicated")?;
    ensure!(rotated.event().state_id == ActorChange::state_id(&who("buyer")));
    Ok(())
}

/// What the relay in front of the buyer's inbox does to the home's applied changes.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Relay {
    Pass,
    StripReceipt,
    ForgeReceipt,
}

/// The buyer's deliveries pass through a relay that can strip or forge the receipt of the
/// changes the seller (the home) sends.
fn relayed_inbox(mut from_net: Inbox, mode: Arc<Mutex<Relay>>) -> Inbox {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(d) = from_net.recv().await {
            let (from, mut envelope, _receipt) = d.into_parts();
            let m = *mode.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(HomeMessage::Applied(mut ch)) = envelope.decode::<HomeMessage>() {
                match m {
                    Relay::Pass => {}
                    Relay::StripReceipt => ch.receipt = None,
                    Relay::ForgeReceipt => {
                        // Signed in the home's name with another node's key.
                        let outcome = Outcome::Applied {
                            version: ch.version,
                            root: ch.root,
                        };
                        ch.receipt = Some(SequencingReceipt::sign(
                            NodeId::from("seller"),
                            &common::node_key("inspector"),
                            &ch.signed.id,
                            &ch.signed.event.state_id,
                            &outcome,
                            &[],
                        ));
                    }
                }
                if let Ok(e) = HomeMessage::Applied(ch).envelope() {
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
async fn a_replica_refuses_a_change_whose_receipt_is_missing_or_forged() -> anyhow::Result<()> {
    let net = InProcessNetwork::new();
    let seller = Cluster::start_node(
        &net,
        "seller",
        Arc::new(MemoryStore::new()),
        registry(false),
        &[deal()],
    )
    .await?;
    let mode = Arc::new(Mutex::new(Relay::Pass));
    let (transport, inbox) = net.join("buyer");
    let buyer = Cluster::start_node_on(
        common::config("buyer"),
        Arc::new(MemoryStore::new()),
        registry(false),
        &[deal()],
        transport,
        relayed_inbox(inbox, mode.clone()),
    )
    .await?;
    let b = NodeId::from("buyer");
    let id = create_two_party_deal(&seller, "deal-receipt", json!({"rev": 1})).await?;
    seller
        .wait_for(&id, 1, std::slice::from_ref(&b), Duration::from_secs(10))
        .await?;

    let refusal_detail = |detail: &'static str| {
        let buyer = &buyer;
        let id = id.clone();
        move || {
            let id = id.clone();
            async move {
                let r = buyer.refusals(Some(&id)).await?;
                Ok(r.iter().any(|r| {
                    matches!(&r.reason, sst_core::RejectReason::BadReceipt { detail: d } if d.contains(detail))
                }))
            }
        }
    };
    *mode.lock().unwrap_or_else(|e| e.into_inner()) = Relay::StripReceipt;
    let v = seller
        .submit(
            &who("seller"),
            Intent::change(id.clone(), values([("common", json!({"rev": 2}))])),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    eventually(
        10,
        "missing receipt refused",
        refusal_detail("no sequencing receipt"),
    )
    .await?;
    ensure!(buyer.state(&id).await?.context("state")?.version == 1);
    ensure!(
        buyer.outcome(&v.event()).await?.is_none(),
        "recorded without receipt"
    );
    // The home learns why the buyer is behind.
    let err = seller
        .wait_for(&id, 2, std::slice::from_ref(&b), Duration::from_millis(300))
        .await
        .err()
        .context("the buyer cannot hold v2")?;
    ensure!(err.to_string().contains("bad_receipt"), "{err}");

    // Asked again, the change comes back with a receipt signed by the wrong key.
    *mode.lock().unwrap_or_else(|e| e.into_inner()) = Relay::ForgeReceipt;
    buyer.retry_refused().await?;
    eventually(
        10,
        "forged receipt refused",
        refusal_detail("does not verify"),
    )
    .await?;
    ensure!(buyer.state(&id).await?.context("state")?.version == 1);

    // Untouched, it applies, the refusal is cleared and the stored receipt verifies.
    *mode.lock().unwrap_or_else(|e| e.into_inner()) = Relay::Pass;
    buyer.retry_refused().await?;
    seller
        .wait_for(&id, 2, std::slice::from_ref(&b), Duration::from_secs(10))
        .await?;
    eventually(5, "refusal cleared", || async {
        Ok(buyer.refusals(None).await?.is_empty())
    })
    .await?;
    receipts_verify(buyer.store().as_ref(), &[("deal-receipt", "seller")]).await?;
    log_verifies(buyer.store().as_ref(), "buyer").await?;
    log_verifies(seller.store().as_ref(), "seller").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sign_checkpoints_of_their_log_and_peers_witness_them() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let id = create_deal(&c, "deal-cp").await?;
    for rev in 0..20 {
        let v = c
            .node("seller")
            .submit(
                &who("seller"),
                Intent::change(id.clone(), values([("common", json!({"rev": rev}))])),
            )
            .await?;
        ensure!(v.is_applied(), "{v:?}");
    }
    c.net.settled().await;
    let reg = node_registry();
    for (role, node) in &c.nodes {
        let store = node.store().clone();
        let me = NodeId::from(role.as_str());
        // Once idle, the latest checkpoint names the log head.
        eventually(10, "checkpoint at the head", || {
            let (store, me) = (store.clone(), me.clone());
            async move {
                let head = store.log_head().await?;
                let cps = store.checkpoints(&me).await?;
                Ok(cps.last().is_some_and(|c| {
                    c.checkpoint.pos == head.pos && c.checkpoint.head == head.hash
                }))
            }
        })
        .await?;
        let cps = store.checkpoints(&me).await?;
        // Throttled: far fewer checkpoints than log entries.
        let head = store.log_head().await?;
        ensure!(
            (cps.len() as u64) < head.pos,
            "{role}: {} checkpoints for {} entries",
            cps.len(),
            head.pos
        );
        let entries = store.log(0, None).await?;
        for cp in &cps {
            cp.verify(&reg)?;
            let at = cp.checkpoint.pos;
            if at > 0 {
                let e = &entries[usize::try_from(at - 1)?];
                ensure!(
                    e.hash == cp.checkpoint.head,
                    "{role}: checkpoint {at} off the chain"
                );
            }
        }
        log_verifies(store.as_ref(), role).await?;
    }
    // Every peer witnessed the seller's latest checkpoint.
    let seller_head = c.node("seller").store().log_head().await?;
    for role in ["buyer", "inspector", "regulator"] {
        let store = c.node(role).store().clone();
        eventually(10, "seller's checkpoint witnessed", || {
            let store = store.clone();
            async move {
                let cps = store.checkpoints(&NodeId::from("seller")).await?;
                Ok(cps
                    .last()
                    .is_some_and(|c| c.checkpoint.pos == seller_head.pos))
            }
        })
        .await?;
        ensure!(
            c.node(role).witness_alarms().is_empty(),
            "{role}: false alarm"
        );
    }
    Ok(())
}

/// The seller changes `id` `n` times (`common.rev` = 1..=n), each applied.
async fn seller_revisions(seller: &Node, id: &sst_core::StateId, n: i64) -> anyhow::Result<()> {
    for rev in 1..=n {
        let intent = Intent::change(id.clone(), values([("common", json!({ "rev": rev }))]));
        let v = seller.submit(&who("seller"), intent).await?;
        ensure!(v.is_applied(), "{v:?}");
    }
    Ok(())
}

/// Runs `sql` on the SQLite file; returns the rows changed.
fn raw(path: &Path, sql: &str) -> anyhow::Result<usize> {
    let conn = rusqlite::Connection::open(path)?;
    Ok(conn.execute(sql, [])?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_restarted_on_a_truncated_log_is_caught_by_its_replica() -> anyhow::Result<()> {
    let dir = TempDir::new("sst-truncate")?;
    let (seller_db, buyer_db) = (dir.0.join("seller.db"), dir.0.join("buyer.db"));
    let net = InProcessNetwork::new();
    let start = |role: &'static str, path: std::path::PathBuf| {
        let net = net.clone();
        async move {
            let store = sqlite_store(&path).await?;
            Cluster::start_node(&net, role, store, registry(false), &[deal()]).await
        }
    };
    let seller = start("seller", seller_db.clone()).await?;
    let buyer = start("buyer", buyer_db.clone()).await?;
    let b = NodeId::from("buyer");
    let id = create_two_party_deal(&seller, "deal-cut", json!({"rev": 0})).await?;
    seller_revisions(&seller, &id, 3).await?;
    seller
        .wait_for(&id, 4, std::slice::from_ref(&b), Duration::from_secs(10))
        .await?;
    // The buyer witnesses the seller's checkpoint of its head.
    let head = seller.store().log_head().await?;
    let witnessed = buyer.store().clone();
    eventually(10, "the buyer witnessed the seller's head", || {
        let store = witnessed.clone();
        async move {
            let cps = store.checkpoints(&NodeId::from("seller")).await?;
            Ok(cps.last().is_some_and(|c| c.checkpoint.pos == head.pos))
        }
    })
    .await?;
    seller.shutdown().await?;

    // Behind its back: cut the last two log entries (the changes to v3 and v4), their event
    // rows and the seller's own checkpoints beyond the cut.
    let cut = head.pos - 2;
    let events = raw(
        &seller_db,
        &format!(
            "DELETE FROM sst_event WHERE id IN \
             (SELECT subject FROM sst_log WHERE kind = 'event' AND pos > {cut})"
        ),
    )?;
    ensure!(events == 2, "{events} event rows cut");
    ensure!(
        raw(
            &seller_db,
            &format!("DELETE FROM sst_log WHERE pos > {cut}")
        )? == 2
    );
    raw(
        &seller_db,
        &format!("DELETE FROM sst_checkpoint WHERE node = 'seller' AND pos > {cut}"),
    )?;

    // Its own start check cannot tell (the chain's prefix is intact) …
    let seller = start("seller", seller_db.clone()).await?;
    // … but the buyer, which witnessed position `head`, raises a rollback alarm.
    eventually(10, "rollback alarm", || async {
        let status = buyer.sync_status(&id).await?.context("status")?;
        Ok(status.witness_alarms.iter().any(|a| {
            a.node == NodeId::from("seller")
                && a.kind
                    == WitnessAlarmKind::RolledBack {
                        witnessed: head.pos,
                        reported: cut,
                    }
        }))
    })
    .await?;
    // Nothing the rolled-back home sequences applies silently: the buyer refuses it,
    // records why, and the home hears of it.
    let v = seller
        .submit(
            &who("seller"),
            Intent::change(id.clone(), values([("common", json!({"rev": 5}))])),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    eventually(10, "the change is refused", || async {
        let r = buyer.refusals(Some(&id)).await?;
        Ok(r.iter().any(|r| {
            r.event == v.event()
                && matches!(&r.reason, sst_core::RejectReason::BadReceipt { detail } if detail.contains("witness alarm"))
        }))
    })
    .await?;
    ensure!(buyer.state(&id).await?.context("state")?.version == 4);
    ensure!(buyer.outcome(&v.event()).await?.is_none());
    ensure!(!buyer.witness_alarms().is_empty());
    ensure!(
        seller.witness_alarms().is_empty(),
        "the seller alarmed about the buyer"
    );
    Ok(())
}

/// A one-node network on a SQLite file with a deal and a few changes, stopped.
async fn stopped_node(path: &Path) -> anyhow::Result<u64> {
    let net = InProcessNetwork::new();
    let seller = Cluster::start_node(
        &net,
        "seller",
        sqlite_store(path).await?,
        registry(false),
        &[deal()],
    )
    .await?;
    let id = create_two_party_deal(&seller, "deal-edit", json!({"rev": 0})).await?;
    seller_revisions(&seller, &id, 3).await?;
    let head = seller.store().log_head().await?;
    let cp = seller.shutdown().await?.context("checkpoint")?;
    ensure!(
        cp.checkpoint.pos == head.pos,
        "shutdown checkpoint {}",
        cp.checkpoint.pos
    );
    Ok(head.pos)
}

async fn restart(path: &Path) -> Result<Node, NodeError> {
    common::restart_on_file("seller", path).await
}

/// The rules the start check reported.
fn rules(err: &NodeError) -> anyhow::Result<Vec<Rule>> {
    match err {
        NodeError::LogDoesNotVerify { findings, .. } => {
            Ok(findings.iter().map(|f| f.rule).collect())
        }
        other => anyhow::bail!("unexpected error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_log_was_edited_refuses_to_start() -> anyhow::Result<()> {
    let dir = TempDir::new("sst-log-edit")?;
    // Untouched, it restarts.
    let path = dir.0.join("clean.db");
    stopped_node(&path).await?;
    restart(&path).await?.shutdown().await?;

    // A log entry rewritten.
    let path = dir.0.join("edited.db");
    stopped_node(&path).await?;
    ensure!(
        raw(
            &path,
            "UPDATE sst_log SET subject = 'someone-else' WHERE pos = 3"
        )? == 1
    );
    let err = restart(&path)
        .await
        .err()
        .context("started on an edited log")?;
    ensure!(rules(&err)?.contains(&Rule::LogChain), "{err}");
    ensure!(err.to_string().contains("seller"), "{err}");

    // The tail cut, the checkpoints left: the latest checkpoint names a position the log
    // no longer holds.
    let path = dir.0.join("cut.db");
    let head = stopped_node(&path).await?;
    raw(
        &path,
        &format!(
            "DELETE FROM sst_event WHERE id IN \
             (SELECT subject FROM sst_log WHERE kind = 'event' AND pos = {head})"
        ),
    )?;
    ensure!(raw(&path, &format!("DELETE FROM sst_log WHERE pos = {head}"))? == 1);
    let err = restart(&path).await.err().context("started on a cut log")?;
    ensure!(rules(&err)?.contains(&Rule::Checkpoint), "{err}");

    // An event row deleted, its log entry left: the entry binds a row that is gone.
    let path = dir.0.join("row.db");
    stopped_node(&path).await?;
    let n = raw(
        &path,
        "DELETE FROM sst_event WHERE pos = (SELECT max(pos) FROM sst_event)",
    )?;
    ensure!(n == 1);
    let err = restart(&path)
        .await
        .err()
        .context("started with an event row gone")?;
    ensure!(rules(&err)?.contains(&Rule::LogRecord), "{err}");

    // A key that is not the one the registry holds for the node.
    let path = dir.0.join("key.db");
    stopped_node(&path).await?;
    let net = InProcessNetwork::new();
    let (transport, inbox) = net.join("seller");
    let config = common::config("seller").with_key(common::node_key("buyer"), node_registry());
    let err = Node::start(
        config,
        sqlite_store(&path).await?,
        registry(false),
        transport,
        inbox,
    )
    .await
    .err()
    .context("started with another node's key")?;
    ensure!(
        matches!(err, NodeError::NodeKeyNotRegistered { .. }),
        "{err}"
    );
    Ok(())
}
