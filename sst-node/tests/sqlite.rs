//! The deal on four SQLite files: redacted nodes never hold the plaintext of sections they
//! may not read — checked with raw SQL on their database files — and a rejected write
//! leaves every file unchanged.

mod common;

use anyhow::{ensure, Context};
use common::{deal_parties, values, who, Cluster, TempDir, ROLES};
use serde_json::json;
use sst_core::{ContractRef, RejectReason, StateId};
use sst_node::Intent;

/// Every text cell of every SST table in the file, concatenated per table.
fn raw_dump(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let conn = rusqlite::Connection::open(path)?;
    let mut out = Vec::new();
    for table in ["sst_state", "sst_state_history", "sst_section", "sst_event"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\""))?;
        let cols = stmt.column_count();
        let mut rows = stmt.query([])?;
        let mut text = String::new();
        while let Some(row) = rows.next()? {
            for i in 0..cols {
                if let Ok(Some(s)) = row.get::<_, Option<String>>(i) {
                    text.push_str(&s);
                    text.push('\n');
                }
            }
        }
        out.push((table.to_owned(), text));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_sqlite_files_never_hold_unreadable_plaintext() -> anyhow::Result<()> {
    let dir = TempDir::new("sst-redaction")?;
    let c = Cluster::sqlite(&dir.0).await?;
    // Distinctive values that must never appear in the inspector's or regulator's file.
    let v = c
        .node("seller")
        .submit(
            &who("seller"),
            Intent::create(
                "deal-sql",
                ContractRef::new("real-estate-deal", 1),
                deal_parties(),
                values([
                    ("common", json!({"address": "7 Birch Rd"})),
                    (
                        "price",
                        json!({"amount": 731_337, "note": "SECRET-PRICE-NOTE"}),
                    ),
                ]),
            ),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    // The buyer's node learns of the state (and its home node) only once it has replicated.
    c.net.settled().await;
    let v = c
        .node("buyer")
        // Private data goes in a ChangeSections intent: a method call's args are part of the
        // signed event every participant receives.
        .submit(
            &who("buyer"),
            Intent::change("deal-sql", values([("price", json!({"amount": 699_991}))])),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    c.net.settled().await;
    let v = c
        .node("inspector")
        .submit(
            &who("inspector"),
            Intent::call("deal-sql", "record_inspection", json!({"radon": 4.5})),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    c.net.settled().await;
    let before: Vec<_> = ROLES
        .iter()
        .map(|r| raw_dump(&dir.0.join(format!("{r}.db"))))
        .collect::<anyhow::Result<_>>()?;
    // The inspector tries to change the price: rejected, and no file changes except the
    // event tables that record the rejection.
    let v = c
        .node("inspector")
        .submit(
            &who("inspector"),
            Intent::change("deal-sql", values([("price", json!({"amount": 1}))])),
        )
        .await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::Forbidden {
                section: "price".into()
            }),
        "{v:?}"
    );
    c.net.settled().await;
    for (i, r) in ROLES.iter().enumerate() {
        let after = raw_dump(&dir.0.join(format!("{r}.db")))?;
        ensure!(
            after[0] == before[i][0] && after[1] == before[i][1],
            "{r}: state tables changed"
        );
    }
    // Raw SQL on each file.
    for role in ROLES {
        let path = dir.0.join(format!("{role}.db"));
        let dump = raw_dump(&path)?;
        let all: String = dump.iter().map(|(_, t)| t.as_str()).collect();
        let reads_price = role == "buyer" || role == "seller";
        for secret in ["731337", "699991", "SECRET-PRICE-NOTE"] {
            ensure!(
                all.contains(secret) == reads_price,
                "{role}: plaintext `{secret}` present = {}",
                all.contains(secret)
            );
        }
        let conn = rusqlite::Connection::open(&path)?;
        let (price, radon, seal_salt): (Option<String>, Option<f64>, Option<String>) = conn.query_row(
            "SELECT s.data ->> '$.price.amount', s.data ->> '$.inspection.radon', h.seals -> '$.price.salt' \
             FROM sst_state s JOIN sst_state_history h ON h.id = s.id AND h.version = s.version \
             WHERE s.id = 'deal-sql'",
            [],
            |r| Ok((r.get::<_, Option<i64>>(0)?.map(|v| v.to_string()), r.get(1)?, r.get(2)?)),
        )?;
        ensure!(radon == Some(4.5), "{role}: radon {radon:?}");
        ensure!(
            price.is_some() == reads_price,
            "{role}: price column {price:?}"
        );
        ensure!(
            seal_salt.is_some() == reads_price,
            "{role}: price salt stored = {}",
            seal_salt.is_some()
        );
    }
    // All roots equal and every file verifies.
    let id = StateId::from("deal-sql");
    let roots = c.roots(&id).await?;
    let first = roots.values().next().cloned().context("roots")?;
    ensure!(
        roots.len() == 4 && roots.values().all(|r| *r == first),
        "{roots:?}"
    );
    for node in c.nodes.values() {
        let report = sst_core::verify_store(node.store().as_ref(), &mut |_, _| {}).await?;
        ensure!(report.is_clean(), "{}: {:?}", node.id(), report.findings);
    }
    Ok(())
}
