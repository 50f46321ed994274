//! `sst demo`: the real-estate deal end to end on four nodes, each with its own SQLite file.

use std::path::Path;

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use sst::core::{ContractRef, NodeId, StateId};
use sst::node::{Intent, Verdict};

use crate::cluster::{deal_parties, who, Cluster, PARTICIPANTS};

fn values<const N: usize>(pairs: [(&str, Value); N]) -> std::collections::BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn step(n: u32, what: &str) {
    println!("\n── {n}. {what}");
}

fn show(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Applied { version, root, .. } => {
            format!("applied → version {version}, root {root}")
        }
        Verdict::Rejected { reason, .. } => format!(
            "REJECTED ({}): {}",
            reason.code(),
            serde_json::to_string(reason).unwrap_or_default()
        ),
        other => format!("{other:?}"),
    }
}

/// Runs a query on a node's SQLite file and prints the rows as a small table.
fn query(file: &Path, sql: &str) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(file)?;
    let mut stmt = conn.prepare(sql)?;
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    println!("     {}", names.join(" | "));
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let mut cells = Vec::new();
        for i in 0..names.len() {
            let v: rusqlite::types::Value = row.get(i)?;
            cells.push(match v {
                rusqlite::types::Value::Null => "NULL".to_owned(),
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Real(f) => f.to_string(),
                rusqlite::types::Value::Text(t) => t,
                rusqlite::types::Value::Blob(b) => format!("<{} bytes>", b.len()),
            });
        }
        println!("     {}", cells.join(" | "));
    }
    Ok(())
}

/// The demo.
pub(crate) async fn run(dir: &Path) -> anyhow::Result<()> {
    println!("SST demo: a real-estate deal shared by four participants, each node on its own SQLite file");
    let c = Cluster::start(dir).await?;
    for (name, file) in &c.files {
        println!("   {name:<9} node → {}", file.display());
    }
    let deal = ContractRef::new("real-estate-deal", 1);
    let rec = c
        .node("seller")?
        .store()
        .contract(&deal)
        .await?
        .context("contract not deployed")?;
    println!(
        "   contract {deal}: identity {} (code {}), signed by {}",
        rec.identity, rec.descriptor.code_hash, rec.deployer
    );
    println!("   sections: common (read all, write buyer+seller) · price (buyer+seller only) · inspection (read all, write inspector); regulator observes");

    step(1, "the seller creates the deal (its node becomes the state's home node and sequences every change)");
    let v = c
        .node("seller")?
        .submit(
            &who("seller"),
            Intent::create(
                "deal-42",
                deal.clone(),
                deal_parties(),
                values([
                    (
                        "common",
                        json!({"address": "12 Harbour Lane", "built": 1931, "bedrooms": 3}),
                    ),
                    ("price", json!({"amount": 500000, "currency": "USD"})),
                ]),
            ),
        )
        .await?;
    println!("   seller/sue create deal-42: {}", show(&v));
    ensure!(v.is_applied(), "create failed");
    c.net.settled().await; // every participant has applied it

    step(
        2,
        "the buyer counter-offers (its node forwards the signed intent to the home node)",
    );
    let v = c
        .node("buyer")?
        .submit(
            &who("buyer"),
            Intent::change(
                "deal-42",
                values([("price", json!({"amount": 480000, "currency": "USD"}))]),
            ),
        )
        .await?;
    println!("   buyer/bob change price → 480000: {}", show(&v));
    ensure!(v.is_applied(), "counter-offer failed");
    c.net.settled().await; // every participant has applied it

    step(
        3,
        "the inspector records the radon level through a contract method",
    );
    let v = c
        .node("inspector")?
        .submit(
            &who("inspector"),
            Intent::call("deal-42", "record_inspection", json!({"radon": 2.1})),
        )
        .await?;
    println!(
        "   inspector/ina record_inspection(radon 2.1): {}",
        show(&v)
    );
    ensure!(v.is_applied(), "inspection failed");
    c.net.settled().await; // every participant has applied it

    step(
        4,
        "the inspector tries to change the price — not allowed by the contract",
    );
    let v = c
        .node("inspector")?
        .submit(
            &who("inspector"),
            Intent::change("deal-42", values([("price", json!({"amount": 1}))])),
        )
        .await?;
    println!("   inspector/ina change price → 1: {}", show(&v));
    ensure!(
        v.reason().map(|r| r.code()) == Some("forbidden"),
        "the unauthorized write was not rejected as forbidden: {v:?}"
    );
    c.net.settled().await;

    step(5, "what each node's peer table (sst_state) holds");
    let peer_sql = "SELECT id, version, data, \
        (SELECT group_concat(key, ',') FROM json_each(s.seals) WHERE json_type(value, '$.salt') IS NULL) AS hash_only \
        FROM sst_state s";
    println!("   SQL: {peer_sql}");
    for (name, _) in PARTICIPANTS {
        println!("   [{name}]");
        query(&c.files[name], peer_sql)?;
    }
    for name in ["inspector", "regulator"] {
        let conn = rusqlite::Connection::open(&c.files[name])?;
        let leaks: i64 = conn.query_row(
            "SELECT (SELECT count(*) FROM sst_state WHERE data -> '$.price' IS NOT NULL) + \
                    (SELECT count(*) FROM sst_state_history WHERE data -> '$.price' IS NOT NULL) + \
                    (SELECT count(*) FROM sst_event WHERE disclosures -> '$.price' IS NOT NULL)",
            [],
            |r| r.get(0),
        )?;
        ensure!(leaks == 0, "{name} holds price plaintext");
        println!("   {name}: 0 rows with price plaintext in sst_state, sst_state_history, sst_event (hash only)");
    }

    step(
        6,
        "the SQL a participant runs on its own database — no SST API involved",
    );
    let user_sql = "SELECT id, data ->> '$.common.address' AS address, data ->> '$.inspection.radon' AS radon, \
        data ->> '$.price.amount' AS price FROM sst_state WHERE data ->> '$.inspection.radon' < 4";
    println!("   SQL: {user_sql}");
    for name in ["buyer", "regulator"] {
        println!("   [{name}]");
        query(&c.files[name], user_sql)?;
    }
    let events_sql =
        "SELECT origin_node, origin_seq, actor, kind, outcome, coalesce(reason, '') AS reason, \
        coalesce(new_version, '') AS version FROM sst_event ORDER BY pos";
    println!("   the home node's event table — intents and outcomes, rejections included:");
    println!("   SQL: {events_sql}");
    println!("   [seller]");
    query(&c.files["seller"], events_sql)?;
    println!("   [inspector] (the rejection travelled back to the initiator)");
    query(&c.files["inspector"], "SELECT origin_seq, actor, outcome, reason, reason_detail FROM sst_event WHERE outcome = 'rejected'")?;

    step(7, "every node re-verifies its database and all roots agree");
    let id = StateId::from("deal-42");
    let mut roots = Vec::new();
    for (name, _) in PARTICIPANTS {
        let node = c.node(name)?;
        node.checkpoint().await?;
        let anchors =
            sst::core::TrustAnchors::new(c.node_registry.clone(), Some(NodeId::from(name)));
        let report =
            sst::core::verify_store_with(node.store().as_ref(), &anchors, &mut |_, _| {}).await?;
        ensure!(report.is_clean(), "{name}: {:?}", report.findings);
        let s = node.state(&id).await?.context("state missing")?;
        println!(
            "   {name:<9} version {} root {}  (verified {} versions, {} events, {} log entries, receipts and {} checkpoint(s) under the node registry)",
            s.version, s.root, report.versions, report.events, report.log_entries, report.checkpoints
        );
        roots.push((s.version, s.root));
    }
    ensure!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "roots differ: {roots:?}"
    );
    println!("\nAll 4 roots equal. Re-check the files any time with:");
    let files: Vec<String> = c
        .files
        .iter()
        .map(|(name, f)| format!("--db {} --node {name}", f.display()))
        .collect();
    println!(
        "   cargo run --release -p sst -- verify --registry {} {}",
        c.registry_file.display(),
        files.join(" ")
    );
    Ok(())
}
