//! Two participants, `acme` (supplier) and `globex` (customer), share an invoice under their
//! own small contract, each node on its own SQLite file: build the network, create, pay, wait
//! until both nodes hold the change, query the peer table with plain SQL, verify.
//!
//! `cargo run -p sst --example two_participants` (CI runs the same code: `sst/tests/quick_start.rs`).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sst::core::{ContractPolicy, ContractRef, Parties, SectionPolicy};
use sst::node::{Call, Contract, ContractError, Intent, MethodOutput, Sections};
use sst::Network;

/// The invoice contract: the supplier writes the terms, the customer pays; both read all.
struct Invoice;

impl Contract for Invoice {
    fn contract(&self) -> ContractRef {
        ContractRef::new("invoice", 1)
    }
    fn policy(&self) -> ContractPolicy {
        ContractPolicy::default()
            .section("terms", SectionPolicy::new(["*"], ["supplier"]))
            .section("payment", SectionPolicy::new(["*"], ["customer"]))
    }
    fn methods(&self) -> Vec<String> {
        vec!["pay".into()]
    }
    fn source(&self) -> &str {
        include_str!("two_participants.rs") // the code's hash is part of the contract's identity
    }
    fn call(
        &self,
        _: &Call<'_>,
        current: &Sections,
        method: &str,
        args: &Value,
    ) -> Result<MethodOutput, ContractError> {
        let due = &current
            .get("terms")
            .ok_or_else(|| ContractError::new("no terms"))?["amount"];
        match method {
            "pay" if args["amount"] == *due => Ok(Sections::from([(
                "payment".into(),
                json!({"paid": true, "amount": due}),
            )])
            .into()),
            "pay" => Err(ContractError::new(format!("pay exactly {due}"))),
            other => Err(ContractError::new(format!("unknown method `{other}`"))),
        }
    }
}

/// The whole program, on SQLite files in `dir`.
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let net = Network::builder()
        .sqlite_node("acme", dir.join("acme.db"))
        .sqlite_node("globex", dir.join("globex.db"))
        .actor("acme/alice")
        .actor("globex/bob")
        .contract(Invoice, "acme/alice")
        .start()
        .await?;

    let parties = Parties::default()
        .with("supplier", "acme/alice")
        .with("customer", "globex/bob");
    let terms = Sections::from([(
        "terms".to_owned(),
        json!({"amount": 1200, "currency": "EUR"}),
    )]);
    let v = net
        .submit(
            "acme/alice",
            Intent::create("inv-1", Invoice.contract(), parties, terms),
        )
        .await?;
    println!("alice creates inv-1: {v:?}");
    // globex learns of inv-1 by replication: wait for it before bob acts on it there.
    net.wait_replicated("inv-1", 1, Duration::from_secs(10))
        .await?;
    let v = net
        .submit(
            "globex/bob",
            Intent::call("inv-1", "pay", json!({"amount": 1200})),
        )
        .await?;
    println!("bob pays: {v:?}");
    anyhow::ensure!(v.is_applied(), "payment refused: {v:?}");
    net.wait_replicated("inv-1", 2, Duration::from_secs(10))
        .await?;

    // Plain SQL on globex's own database file: the peer table's JSON column.
    let db = rusqlite::Connection::open(dir.join("globex.db"))?;
    let (amount, paid): (i64, bool) = db.query_row(
        "SELECT data ->> '$.terms.amount', data ->> '$.payment.paid' FROM sst_state WHERE id = 'inv-1'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    println!("globex.db: inv-1 amount {amount}, paid {paid}");
    anyhow::ensure!(amount == 1200 && paid);

    for (id, node) in net.nodes() {
        let report = sst::core::verify_store(node.store().as_ref(), &mut |_, _| {}).await?;
        println!(
            "{id}: {} versions, {} events verified, clean: {}",
            report.versions,
            report.events,
            report.is_clean()
        );
        anyhow::ensure!(report.is_clean(), "{id}: {:?}", report.findings);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("sst-two-participants-{}", std::process::id()));
    run(&dir).await?;
    println!("the two node databases are in {}", dir.display());
    Ok(())
}
