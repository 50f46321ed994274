//! `sst demo`: the real-estate deal end to end on four nodes, each with its own SQLite file;
//! then, on the same nodes at the same time, the deal on the home-node protocol and a
//! settlement on the `endorsed` protocol.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use sst::core::{ContractRef, NodeId, StateId};
use sst::node::{Intent, Verdict};
use sst_client::api::{IntentBody, VerdictBody};

use crate::cluster::{deal_parties, who, Cluster, DealContract, BANK_DESKS, PARTICIPANTS};

fn values<const N: usize>(pairs: [(&str, Value); N]) -> std::collections::BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The deal's four intents: the seller's create, the buyer's counter-offer, the inspector's
/// `record_inspection` call, and the inspector's price change the contract forbids.
fn deal_intents() -> [IntentBody; 4] {
    let id = || StateId::from("deal-42");
    [
        IntentBody::Create {
            state_id: id(),
            contract: ContractRef::new("real-estate-deal", 1),
            parties: deal_parties(),
            sections: values([
                (
                    "common",
                    json!({"address": "12 Harbour Lane", "built": 1931, "bedrooms": 3}),
                ),
                ("price", json!({"amount": 500000, "currency": "USD"})),
            ]),
        },
        IntentBody::Change {
            state_id: id(),
            sections: values([("price", json!({"amount": 480000, "currency": "USD"}))]),
        },
        IntentBody::Call {
            state_id: id(),
            method: "record_inspection".to_owned(),
            args: json!({"radon": 2.1}),
        },
        IntentBody::Change {
            state_id: id(),
            sections: values([("price", json!({"amount": 1}))]),
        },
    ]
}

fn step(n: u32, what: &str) {
    println!("\n── {n}. {what}");
}

fn show(verdict: &Verdict) -> String {
    VerdictBody::from_verdict(verdict).map_or_else(|| format!("{verdict:?}"), |v| show_body(&v))
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

/// Steps 5 and 6: what each node's peer table holds (no price plaintext on the inspector's
/// and the regulator's), and the SQL a participant runs on its own database.
fn show_tables(files: &BTreeMap<&'static str, PathBuf>) -> anyhow::Result<()> {
    step(5, "what each node's peer table (sst_state) holds");
    let peer_sql = "SELECT s.id, s.version, s.data, \
        (SELECT group_concat(key, ',') FROM json_each(h.seals) WHERE json_type(value, '$.salt') IS NULL) AS hash_only \
        FROM sst_state s JOIN sst_state_history h ON h.id = s.id AND h.version = s.version";
    println!("   SQL: {peer_sql}");
    for (name, _) in PARTICIPANTS {
        println!("   [{name}]");
        query(&files[name], peer_sql)?;
    }
    for name in ["inspector", "regulator"] {
        let conn = rusqlite::Connection::open(&files[name])?;
        let leaks: i64 = conn.query_row(
            "SELECT (SELECT count(*) FROM sst_state WHERE data -> '$.price' IS NOT NULL) + \
                    (SELECT count(*) FROM sst_section WHERE name = 'price') + \
                    (SELECT count(*) FROM sst_state_versions WHERE data -> '$.price' IS NOT NULL) + \
                    (SELECT count(*) FROM sst_event WHERE disclosures -> '$.price' IS NOT NULL)",
            [],
            |r| r.get(0),
        )?;
        ensure!(leaks == 0, "{name} holds price plaintext");
        println!("   {name}: 0 rows with price plaintext in sst_state, sst_section, sst_state_versions, sst_event (hash only)");
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
        query(&files[name], user_sql)?;
    }
    let events_sql =
        "SELECT origin_node, origin_seq, actor, kind, outcome, coalesce(reason, '') AS reason, \
        coalesce(new_version, '') AS version FROM sst_event ORDER BY pos";
    println!("   the home node's event table — intents and outcomes, rejections included:");
    println!("   SQL: {events_sql}");
    println!("   [seller]");
    query(&files["seller"], events_sql)?;
    println!("   [inspector] (the rejection travelled back to the initiator)");
    query(&files["inspector"], "SELECT origin_seq, actor, outcome, reason, reason_detail FROM sst_event WHERE outcome = 'rejected'")?;
    Ok(())
}

/// Verifies node `name`'s store under the node registry and prints the state `id` it holds;
/// its version and root.
async fn verify_node(
    name: &str,
    store: &dyn sst::core::Store,
    registry: &sst::core::NodeRegistry,
    id: &StateId,
) -> anyhow::Result<(u64, sst::core::StateRoot)> {
    let anchors = sst::core::TrustAnchors::new(registry.clone(), Some(NodeId::from(name)));
    let report = sst::core::verify_store_with(store, &anchors, &mut |_, _| {}).await?;
    ensure!(report.is_clean(), "{name}: {:?}", report.findings);
    let s = store.state(id).await?.context("state missing")?;
    println!(
        "   {name:<9} version {} root {}  (verified {} versions, {} events, {} log entries, receipts and {} checkpoint(s) under the node registry)",
        s.version, s.root, report.versions, report.events, report.log_entries, report.checkpoints
    );
    Ok((s.version, s.root))
}

/// The demo.
pub(crate) async fn run(dir: &Path) -> anyhow::Result<()> {
    println!("SST demo: a real-estate deal shared by four participants, each node on its own SQLite file");
    let c = Cluster::start_with(dir, DealContract::JavaScript).await?;
    for (name, file) in &c.files {
        println!("   {name:<9} node → {}", file.display());
    }
    step(
        0,
        "the seller deploys the deal's contract at run time: JavaScript source, signed, replicated to every node",
    );
    let (record, v) = c.deploy_javascript_deal().await?;
    println!(
        "   seller/sue deploy {} ({}, {} bytes of source): {}",
        record.contract(),
        record
            .descriptor
            .engine
            .as_ref()
            .map_or_else(|| "native".to_owned(), ToString::to_string),
        record.source.as_ref().map_or(0, String::len),
        show(&v)
    );
    ensure!(v.is_applied(), "the deployment was not applied");
    let deal = ContractRef::new("real-estate-deal", 1);
    for (name, _) in PARTICIPANTS {
        let rec = c
            .node(name)?
            .store()
            .contract(&deal)
            .await?
            .with_context(|| format!("{name}: contract not installed"))?;
        ensure!(rec.identity == record.identity, "{name}: another identity");
    }
    println!(
        "   installed on all 4 nodes without a restart: identity {} (code {}), signed by {}",
        record.identity, record.descriptor.code_hash, record.deployer
    );
    println!("   sections: common (read all, write buyer+seller) · price (buyer+seller only) · inspection (read all, write inspector); regulator observes");

    let [create, offer, inspection, forbidden] = deal_intents();
    step(1, "the seller creates the deal (its node becomes the state's home node and sequences every change)");
    let v = c
        .node("seller")?
        .submit(&who("seller"), Intent::from(create))
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
        .submit(&who("buyer"), Intent::from(offer))
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
        .submit(&who("inspector"), Intent::from(inspection))
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
        .submit(&who("inspector"), Intent::from(forbidden))
        .await?;
    println!("   inspector/ina change price → 1: {}", show(&v));
    ensure!(
        v.reason().map(|r| r.code()) == Some("forbidden"),
        "the unauthorized write was not rejected as forbidden: {v:?}"
    );
    c.net.settled().await;

    show_tables(&c.files)?;

    step(7, "every node re-verifies its database and all roots agree");
    let id = StateId::from("deal-42");
    let mut roots = Vec::new();
    for (name, _) in PARTICIPANTS {
        let node = c.node(name)?;
        node.checkpoint().await?;
        roots.push(verify_node(name, node.store().as_ref(), &c.node_registry, &id).await?);
    }
    ensure!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "roots differ: {roots:?}"
    );
    println!("\nAll 4 roots equal.");

    both_protocols(&c).await?;

    println!("\nRe-check the files any time with:");
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

/// The settlement's id.
const SETTLEMENT_ID: &str = "settlement-42";

/// The settlement's parties: the buyer pays the seller through the bank desks; the
/// regulator observes (a participant node that is not asked to endorse).
fn settlement_parties() -> sst::core::Parties {
    sst::core::Parties::default()
        .with("payer", who("buyer").as_str())
        .with("payee", who("seller").as_str())
        .with("payer_bank", BANK_DESKS[0].1)
        .with("payee_bank", BANK_DESKS[1].1)
        .with("regulator", who("regulator").as_str())
}

/// The settlement's four steps: who submits, on which node, what.
fn settlement_intents() -> [(&'static str, sst::core::ActorId, IntentBody); 4] {
    let id = || StateId::from(SETTLEMENT_ID);
    let call = |method: &str, args: Value| IntentBody::Call {
        state_id: id(),
        method: method.to_owned(),
        args,
    };
    [
        (
            "buyer",
            who("buyer"),
            IntentBody::Create {
                state_id: id(),
                contract: ContractRef::new("settlement", 1),
                parties: settlement_parties(),
                sections: BTreeMap::new(),
            },
        ),
        (
            "buyer",
            who("buyer"),
            call(
                "instruct",
                json!({"amount": 48_000_000, "currency": "USD", "reference": "deal-42 purchase price"}),
            ),
        ),
        (
            BANK_DESKS[0].0,
            sst::core::ActorId::from(BANK_DESKS[0].1),
            call("confirm", json!(null)),
        ),
        (
            BANK_DESKS[1].0,
            sst::core::ActorId::from(BANK_DESKS[1].1),
            call("settle", json!(null)),
        ),
    ]
}

/// The sync protocol of the state `id` on `node`, from the descriptor of the contract version
/// it holds the state at (what `sst status` shows).
async fn protocol_of(node: &sst::node::Node, id: &StateId) -> anyhow::Result<String> {
    let state = node.store().state(id).await?.context("state missing")?;
    let record = node
        .store()
        .contract(&state.contract)
        .await?
        .with_context(|| format!("contract {} missing", state.contract))?;
    Ok(match record.descriptor.endorsement_policy() {
        Some(policy) => format!(
            "{} ({})",
            record.descriptor.protocol(),
            serde_json::to_string(policy)?
        ),
        None => record.descriptor.protocol().to_owned(),
    })
}

/// Steps 8 to 10: the settlement contract (JavaScript, `endorsed`: both banks' nodes must
/// endorse) is deployed, the deal (home protocol) and the settlement run at the same time on
/// the same nodes, each state's protocol is shown with the endorsements the settlement got,
/// and every node verifies both states.
async fn both_protocols(c: &Cluster) -> anyhow::Result<()> {
    step(8, "a second protocol on the same nodes: the buyer deploys a settlement contract that chooses `endorsed` (a change applies only once the payer's and the payee's banks' nodes endorsed it)");
    let (record, v) = c
        .deploy_javascript("buyer", sst_contract_js::sources::SETTLEMENT)
        .await?;
    println!(
        "   buyer/bob deploy {} ({} bytes of source): {}",
        record.contract(),
        record.source.as_ref().map_or(0, String::len),
        show(&v)
    );
    ensure!(v.is_applied(), "the settlement deployment was not applied");
    println!(
        "   sync: {}",
        serde_json::to_string(&record.descriptor.sync)?
    );

    step(9, "at the same time: the seller accepts the counter-offer on the deal (home protocol) while the buyer pays through the banks (endorsed protocol)");
    let deal = async {
        let v = c
            .node("seller")?
            .submit(
                &who("seller"),
                Intent::from(IntentBody::Call {
                    state_id: StateId::from("deal-42"),
                    method: "set_price".to_owned(),
                    args: json!({"amount": 480000}),
                }),
            )
            .await?;
        anyhow::Ok(vec![format!(
            "   [home]     seller/sue set_price(480000) on deal-42: {}",
            show(&v)
        )])
    };
    let settlement = async {
        let mut lines = Vec::new();
        let mut events = Vec::new();
        for (node, actor, intent) in settlement_intents() {
            let what = match &intent {
                IntentBody::Create { .. } => "create".to_owned(),
                IntentBody::Call { method, .. } => method.clone(),
                _ => "change".to_owned(),
            };
            let v = c.node(node)?.submit(&actor, Intent::from(intent)).await?;
            lines.push(format!(
                "   [endorsed] {actor} {what} on {SETTLEMENT_ID}: {}",
                show(&v)
            ));
            ensure!(v.is_applied(), "settlement step {what} failed: {v:?}");
            events.push((what, v.event()));
            // The next step is built on the submitting node's copy: wait until it holds this one.
            c.net.settled().await;
        }
        anyhow::Ok((lines, events))
    };
    let (deal, settlement) = tokio::join!(deal, settlement);
    let (settlement_lines, settlement_events) = settlement?;
    for line in deal?.into_iter().chain(settlement_lines) {
        println!("{line}");
    }
    c.net.settled().await;
    println!("   endorsements the settlement's events got (stored with each event on every node):");
    let home = c.node("buyer")?;
    for (what, event) in &settlement_events {
        let record = home
            .store()
            .event(event)
            .await?
            .with_context(|| format!("event {event} missing on the buyer node"))?;
        let by: Vec<String> = record
            .endorsements
            .iter()
            .map(|e| e.node.to_string())
            .collect();
        ensure!(
            !by.is_empty(),
            "the settlement's {what} carries no endorsement"
        );
        println!("     {what:<9} endorsed by {}", by.join(", "));
    }

    step(10, "which protocol each state uses (as `sst status` shows it), and every node re-verifies its database, endorsements included");
    for id in [StateId::from("deal-42"), StateId::from(SETTLEMENT_ID)] {
        let mut seen = BTreeMap::new();
        for (name, _) in PARTICIPANTS {
            let node = c.node(name)?;
            if node.store().state(&id).await?.is_some() {
                seen.insert(name, protocol_of(node, &id).await?);
            }
        }
        let protocols: std::collections::BTreeSet<&String> = seen.values().collect();
        ensure!(protocols.len() == 1, "{id}: nodes disagree: {seen:?}");
        let held: Vec<&str> = seen.keys().copied().collect();
        println!(
            "   {:<14} {}  — held by {}",
            id.as_str(),
            protocols.into_iter().next().map_or("?", String::as_str),
            held.join(", ")
        );
    }
    for (name, _) in PARTICIPANTS {
        let node = c.node(name)?;
        node.checkpoint().await?;
        let anchors =
            sst::core::TrustAnchors::new(c.node_registry.clone(), Some(NodeId::from(name)));
        let report =
            sst::core::verify_store_with(node.store().as_ref(), &anchors, &mut |_, _| {}).await?;
        ensure!(report.is_clean(), "{name}: {:?}", report.findings);
        let holds = node
            .store()
            .state(&StateId::from(SETTLEMENT_ID))
            .await?
            .is_some();
        let expected = if holds { 4 } else { 0 };
        ensure!(
            report.endorsed == expected,
            "{name}: {} endorsed events verified, not {expected}",
            report.endorsed
        );
        println!(
            "   {name:<9} clean: {} versions, {} events ({} endorsed: endorsements checked under the node registry), {} log entries",
            report.versions, report.events, report.endorsed, report.log_entries
        );
    }
    Ok(())
}

/// A verdict as the demo prints it (also a node's client API answer).
fn show_body(verdict: &VerdictBody) -> String {
    match verdict {
        VerdictBody::Applied { version, root, .. } => {
            format!("applied → version {version}, root {root}")
        }
        VerdictBody::Rejected { reason, .. } => format!(
            "REJECTED ({}): {}",
            reason.code(),
            serde_json::to_string(reason).unwrap_or_default()
        ),
        other => format!("{other:?}"),
    }
}

/// Waits (bounded) until every participant's node holds `version` of deal-42, read through
/// each participant's own client.
async fn replicated(
    clients: &BTreeMap<&str, sst_client::Client>,
    version: u64,
) -> anyhow::Result<()> {
    let id = StateId::from("deal-42");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for (name, client) in clients {
        loop {
            let held = client.state(&id).await?.map_or(0, |s| s.version);
            if held >= version {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the {name} node holds version {held} of deal-42, not {version}, after 60 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// The steps of the deal through the four nodes' client APIs.
async fn network_deal(clients: &BTreeMap<&str, sst_client::Client>) -> anyhow::Result<()> {
    let client = |name: &str| {
        clients
            .get(name)
            .with_context(|| format!("no client {name}"))
    };
    let [create, offer, inspection, forbidden] = deal_intents();
    step(1, "the seller creates the deal: sue's client signs it (the node never sees her key), the seller node sequences it and becomes its home");
    let v = client("seller")?.submit(create).await?;
    println!("   seller/sue create deal-42: {}", show_body(&v));
    ensure!(v.is_applied(), "create failed");
    replicated(clients, 1).await?;

    step(
        2,
        "the buyer counter-offers (the buyer node signs for bob, whose key it holds in custody, and forwards the intent to the home node)",
    );
    let v = client("buyer")?.submit_custody(who("buyer"), offer).await?;
    println!("   buyer/bob change price → 480000: {}", show_body(&v));
    ensure!(v.is_applied(), "counter-offer failed");
    replicated(clients, 2).await?;

    step(
        3,
        "the inspector records the radon level through a contract method (forwarded to the home node)",
    );
    let v = client("inspector")?
        .submit_custody(who("inspector"), inspection)
        .await?;
    println!(
        "   inspector/ina record_inspection(radon 2.1): {}",
        show_body(&v)
    );
    ensure!(v.is_applied(), "inspection failed");
    replicated(clients, 3).await?;

    step(
        4,
        "the inspector tries to change the price — not allowed by the contract",
    );
    let v = client("inspector")?
        .submit_custody(who("inspector"), forbidden)
        .await?;
    println!("   inspector/ina change price → 1: {}", show_body(&v));
    let code = match &v {
        VerdictBody::Rejected { reason, .. } => Some(reason.code()),
        _ => None,
    };
    ensure!(
        code == Some("forbidden"),
        "the unauthorized write was not rejected as forbidden: {v:?}"
    );
    Ok(())
}

/// The demo across four node processes (`sst demo --network`): started like `sst network
/// up`, the deal through their client APIs, then the nodes stopped and every node's database
/// re-verified, read-only, and the roots compared.
pub(crate) async fn run_network(dir: &Path) -> anyhow::Result<()> {
    use crate::local_network::{specs, Backend, Running};
    println!("SST demo across four node processes: a real-estate deal, each participant's node its own `sst node run` process on its own SQLite file, nodes talking HTTP/2 over mutual TLS 1.3");
    let running = Running::up(dir, &specs(PARTICIPANTS.len(), &[Backend::Sqlite])?).await?;
    for n in &running.manifest.nodes {
        println!(
            "   {:<9} node → pid {}, client API {}, peers {}, {}",
            n.id, n.pid, n.api, n.listen, n.store
        );
    }
    let manifest = running.manifest.clone();
    let mut clients = BTreeMap::new();
    for (name, _) in PARTICIPANTS {
        clients.insert(name, manifest.node(name)?.client(who(name).as_str())?);
    }
    let files: BTreeMap<&'static str, PathBuf> = PARTICIPANTS
        .iter()
        .map(|(name, _)| (*name, manifest.dir.join(name).join(format!("{name}.db"))))
        .collect();
    let steps = async {
        network_deal(&clients).await?;
        show_tables(&files)
    };
    let outcome = steps.await;
    drop(clients);
    step(7, "the nodes stop (SIGTERM: each writes a last checkpoint), every node's database is re-verified read-only and all roots agree");
    let stopped = running.stop().await?;
    outcome?;
    for (n, how) in manifest.nodes.iter().zip(&stopped) {
        println!("   {:<9} pid {:<7} {how}", n.id, n.pid);
    }
    let id = StateId::from("deal-42");
    let mut roots = Vec::new();
    for n in &manifest.nodes {
        let store = crate::store_url::StoreUrl::parse(&n.store)?
            .open_for_verify()
            .await?;
        roots.push(verify_node(&n.id, store.as_ref(), &manifest.registry, &id).await?);
    }
    ensure!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "roots differ: {roots:?}"
    );
    println!(
        "\nAll {} roots equal. Re-check the databases any time with:",
        roots.len()
    );
    let dbs: Vec<String> = manifest
        .nodes
        .iter()
        .map(|n| format!("--db {} --node {}", n.store, n.id))
        .collect();
    println!(
        "   cargo run --release -p sst -- verify --registry {} {}",
        manifest.dir.join("registry.json").display(),
        dbs.join(" ")
    );
    Ok(())
}
