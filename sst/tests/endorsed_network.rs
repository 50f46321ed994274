//! The `endorsed` sync protocol across node processes (issue 14 acceptance): three `sst node
//! run` processes on SQLite files, talking HTTP/2 over mutual TLS on loopback, the JavaScript
//! settlement contract (`endorsed`, policy: the nodes of the `payer_bank` and `payee_bank`
//! roles) deployed at run time through a client API.
//!
//! Node `bank-h` is the settlement's home (its actor, payee and payee's bank, creates it);
//! `bank-p` runs the payer, `bank-e` the payer's bank: the endorsers are `bank-h` (the home
//! endorses its own outcome) and `bank-e`; the payer's node initiates changes without
//! endorsing them. Tests: the policy met (applied on every node, endorsements stored that `sst
//! verify` accepts under the registry); an endorser's own limit refuses (`not_endorsed`, its
//! reason on the initiator's node); an endorser down (`endorsement_timeout`, and once it is
//! back new proposals apply); a bounded kill loop (kill -9 of the home or an endorser while a
//! proposal is open: afterwards every node holds the same applied events); a forged or a
//! removed endorsement in a node's database (`sst verify` reports it, exit 1).
//!
//! Loopback only; every wait is bounded; every node process is killed when its cluster is
//! dropped, also when a test fails.

#[path = "faults/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use sst::core::{ContractRecord, ContractRef, EventId, HashAlg, Outcome, Parties, StateId};
use sst_client::api::{IntentBody, VerdictBody};
use sst_client::Client;

use cluster::{read_actor_key, sst_bin, Cluster};

/// The home (payee and payee's bank), the payer's node, the payer's bank's node.
const HOME: &str = "bank-h";
const PAYER: &str = "bank-p";
const PAYER_BANK: &str = "bank-e";
/// Longest wait for the nodes to agree.
const CONVERGE: Duration = Duration::from_secs(60);
/// The settlement contract's endorsement timeout (its descriptor's `timeout_ms`).
const TIMEOUT: Duration = Duration::from_secs(5);

fn alice(node: &str) -> String {
    format!("{node}/alice")
}

/// A started three-node cluster with the settlement contract deployed on every node; `limit`
/// gives the payer bank's node an `[[endorsement_limit]]` on `instruction.amount`.
async fn cluster(name: &str, limit: Option<u64>) -> anyhow::Result<Cluster> {
    let nodes: Vec<(&str, String)> = [HOME, PAYER, PAYER_BANK]
        .iter()
        .map(|n| (*n, "sqlite".to_owned()))
        .collect();
    let mut c = Cluster::prepare(name, &nodes)?;
    c.configure(&BTreeMap::new())?;
    if let Some(max) = limit {
        let config = c.node(PAYER_BANK)?.config();
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str(&format!(
            "\n[[endorsement_limit]]\ncontract = \"settlement\"\npath = \"instruction.amount\"\nmax = {max}\n"
        ));
        std::fs::write(&config, text)?;
    }
    c.start_all().await?;
    // The payee (the home's alice) deploys the settlement contract at run time.
    let home = c.node(HOME)?;
    let descriptor = sst_contract_js::descriptor_of(sst_contract_js::sources::SETTLEMENT)?;
    ensure!(descriptor.protocol() == "endorsed", "{descriptor:?}");
    let record = ContractRecord::sign(
        descriptor,
        HashAlg::Blake3,
        alice(HOME).as_str().into(),
        &read_actor_key(&home.alice)?,
    )
    .with_source(sst_contract_js::sources::SETTLEMENT);
    let v = home.client()?.deploy(&record).await?;
    ensure!(matches!(v, VerdictBody::Applied { .. }), "deploy: {v:?}");
    // The deployment reaches the other nodes asynchronously: probe with creates of fresh
    // states until one is endorsed by both banks' nodes (so both installed the contract).
    let client = home.client()?;
    let start = Instant::now();
    for probe in 0.. {
        let v = client.submit(create(&format!("probe-{probe}"))).await?;
        if matches!(v, VerdictBody::Applied { .. }) {
            break;
        }
        ensure!(
            start.elapsed() < CONVERGE,
            "the settlement contract is not endorsed after {CONVERGE:?}: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(c)
}

fn parties() -> Parties {
    Parties::default()
        .with("payee", alice(HOME).as_str())
        .with("payee_bank", alice(HOME).as_str())
        .with("payer", alice(PAYER).as_str())
        .with("payer_bank", alice(PAYER_BANK).as_str())
}

fn create(id: &str) -> IntentBody {
    IntentBody::Create {
        state_id: id.into(),
        contract: ContractRef::new("settlement", 1),
        parties: parties(),
        sections: BTreeMap::new(),
    }
}

fn call(id: &str, method: &str, args: Value) -> IntentBody {
    IntentBody::Call {
        state_id: id.into(),
        method: method.to_owned(),
        args,
    }
}

fn instruct(id: &str, amount: u64) -> IntentBody {
    call(
        id,
        "instruct",
        json!({"amount": amount, "currency": "EUR", "reference": format!("inv-{amount}")}),
    )
}

fn applied(v: &VerdictBody) -> anyhow::Result<u64> {
    match v {
        VerdictBody::Applied { version, .. } => Ok(*version),
        other => bail!("not applied: {other:?}"),
    }
}

/// Waits (bounded) until every node holds version `version` of `id` with the same root.
async fn converged(c: &Cluster, id: &str, version: u64) -> anyhow::Result<()> {
    let id = StateId::from(id);
    let start = Instant::now();
    loop {
        let mut heads = Vec::new();
        for n in &c.nodes {
            heads.push(
                n.client()?
                    .state(&id)
                    .await
                    .ok()
                    .flatten()
                    .map(|s| (s.version, s.root)),
            );
        }
        if heads.iter().all(|h| h.is_some_and(|(v, _)| v == version))
            && heads.windows(2).all(|w| w[0] == w[1])
        {
            return Ok(());
        }
        ensure!(
            start.elapsed() < CONVERGE,
            "{id}: nodes do not agree on version {version}: {heads:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event of state `id` node `client` holds: id → (outcome, endorsing nodes).
async fn events_of(
    client: &Client,
    id: &str,
) -> anyhow::Result<BTreeMap<EventId, (Outcome, BTreeSet<String>)>> {
    let mut out = BTreeMap::new();
    let mut events = client.events(0, false).await?;
    while let Some(e) = events.next().await? {
        if e.record.event().state_id.as_str() == id {
            let by = e
                .record
                .endorsements
                .iter()
                .map(|x| x.node.to_string())
                .collect();
            out.insert(e.record.id(), (e.record.outcome.clone(), by));
        }
    }
    Ok(out)
}

/// The node registry as a file, for `sst verify --registry`.
fn registry_file(c: &Cluster) -> anyhow::Result<PathBuf> {
    let path = c.dir.join("registry.json");
    std::fs::write(&path, serde_json::to_string_pretty(&c.registry())?)?;
    Ok(path)
}

/// A node's SQLite file (`sst node init`'s default store).
fn db_of(c: &Cluster, node: &str) -> anyhow::Result<PathBuf> {
    Ok(c.node(node)?.dir.join(format!("{node}.db")))
}

/// `sst verify --registry R --db sqlite:FILE --node ID`: exit code and output.
fn verify(registry: &Path, db: &Path, node: &str) -> anyhow::Result<(i32, String)> {
    let out = std::process::Command::new(sst_bin()?)
        .arg("verify")
        .arg("--registry")
        .arg(registry)
        .arg("--db")
        .arg(format!("sqlite:{}", db.display()))
        .args(["--node", node])
        .output()?;
    Ok((
        out.status.code().context("verify killed by a signal")?,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Copies a SQLite database (file, WAL and shared-memory index) to `to`.
fn copy_db(from: &Path, to: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let src = PathBuf::from(format!("{}{suffix}", from.display()));
        if src.exists() {
            std::fs::copy(&src, format!("{}{suffix}", to.display()))?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_met_applies_everywhere_with_endorsements_that_verify_and_forgeries_do_not(
) -> anyhow::Result<()> {
    let mut c = cluster("endorsed-met", None).await?;
    let id = "settle-met";
    let (home, payer) = (c.node(HOME)?.client()?, c.node(PAYER)?.client()?);
    applied(&home.submit(create(id)).await?)?;
    converged(&c, id, 1).await?;
    applied(&payer.submit(instruct(id, 125_000)).await?)?;
    let v = applied(&payer.submit(instruct(id, 126_000)).await?)?;
    ensure!(v == 3, "amended at version {v}");
    converged(&c, id, 3).await?;

    // Every node holds the three applied events, each endorsed by exactly the two banks.
    let banks: BTreeSet<String> = [HOME, PAYER_BANK].map(str::to_owned).into();
    for n in &c.nodes {
        let events = events_of(&n.client()?, id).await?;
        ensure!(events.len() == 3, "{}: {events:?}", n.id);
        for (event, (outcome, by)) in &events {
            ensure!(
                matches!(outcome, Outcome::Applied { .. }) && *by == banks,
                "{}: {event}: {outcome:?} endorsed by {by:?}",
                n.id
            );
        }
    }
    // The status names the protocol.
    let status = home.status(&id.into()).await?.context("no status")?;
    ensure!(status.protocol.as_deref() == Some("endorsed"), "{status:?}");

    // Stop the nodes; every database verifies under the registry, endorsements included.
    for i in 0..c.nodes.len() {
        c.nodes[i].kill9()?;
    }
    let registry = registry_file(&c)?;
    for n in [HOME, PAYER, PAYER_BANK] {
        let (code, out) = verify(&registry, &db_of(&c, n)?, n)?;
        ensure!(code == 0, "{n}: verify exit {code}:\n{out}");
    }

    // A forged endorsement (one byte of a signature changed) and a removed one, each in a
    // copy of the home's database: verify reports them and exits 1.
    let original = db_of(&c, HOME)?;
    for (case, sql) in [
        (
            "forged",
            "UPDATE sst_event SET endorsements = json_set(endorsements, '$[0].signature', \
             (CASE substr(json_extract(endorsements, '$[0].signature'), 1, 1) WHEN '0' THEN '1' \
             ELSE '0' END) || substr(json_extract(endorsements, '$[0].signature'), 2)) \
             WHERE pos = (SELECT max(pos) FROM sst_event WHERE endorsements IS NOT NULL)",
        ),
        (
            "removed",
            "UPDATE sst_event SET endorsements = json_remove(endorsements, '$[1]') \
             WHERE pos = (SELECT max(pos) FROM sst_event WHERE endorsements IS NOT NULL)",
        ),
    ] {
        let copy = c.dir.join(format!("{case}.db"));
        copy_db(&original, &copy)?;
        let conn = rusqlite::Connection::open(&copy)?;
        let before: String = conn.query_row(
            "SELECT endorsements FROM sst_event WHERE endorsements IS NOT NULL ORDER BY pos DESC LIMIT 1",
            [],
            |r| r.get(0),
        )?;
        let changed = conn.execute(sql, [])?;
        let after: String = conn.query_row(
            "SELECT endorsements FROM sst_event WHERE endorsements IS NOT NULL ORDER BY pos DESC LIMIT 1",
            [],
            |r| r.get(0),
        )?;
        drop(conn);
        ensure!(
            changed == 1 && before != after,
            "{case}: {before} → {after}"
        );
        let (code, out) = verify(&registry, &copy, HOME)?;
        ensure!(
            code == 1 && out.contains("[event/endorsement]"),
            "{case} endorsement: verify exit {code}:\n{out}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endorsers_own_limit_refuses_and_the_initiator_sees_why() -> anyhow::Result<()> {
    let c = cluster("endorsed-guard", Some(1_000_000)).await?;
    let id = "settle-guard";
    let payer = c.node(PAYER)?.client()?;
    applied(&c.node(HOME)?.client()?.submit(create(id)).await?)?;
    converged(&c, id, 1).await?;
    // Above the payee bank's limit: refused by that node only, rejected `not_endorsed`.
    let v = payer.submit(instruct(id, 5_000_000)).await?;
    let VerdictBody::Rejected { event, reason } = &v else {
        bail!("an amount above the limit was not rejected: {v:?}");
    };
    ensure!(reason.code() == "not_endorsed", "{reason:?}");
    let text = serde_json::to_string(reason)?;
    ensure!(
        text.contains(PAYER_BANK) && text.contains("above this node's endorsement limit"),
        "the refusal does not name the node and its reason: {text}"
    );
    // Recorded on the initiator's node (the payer's), with the same reason.
    let recorded = payer
        .outcome(event, Duration::from_secs(10))
        .await?
        .context("the rejection is not recorded on the initiator's node")?;
    ensure!(
        matches!(&recorded.outcome, Outcome::Rejected { reason: r, .. } if r == reason),
        "{recorded:?}"
    );
    // Within the limit: endorsed and applied.
    applied(&payer.submit(instruct(id, 900_000)).await?)?;
    converged(&c, id, 2).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endorser_down_times_out_and_once_back_new_proposals_apply() -> anyhow::Result<()> {
    let mut c = cluster("endorsed-down", None).await?;
    let id = "settle-down";
    let payer = c.node(PAYER)?.client()?;
    applied(&c.node(HOME)?.client()?.submit(create(id)).await?)?;
    converged(&c, id, 1).await?;
    let e = c
        .nodes
        .iter()
        .position(|n| n.id == PAYER_BANK)
        .context("no payee bank")?;
    c.nodes[e].kill9()?;
    let started = Instant::now();
    let v = payer.submit(instruct(id, 10_000)).await?;
    let waited = started.elapsed();
    let VerdictBody::Rejected { reason, .. } = &v else {
        bail!("a proposal with an endorser down was not rejected: {v:?}");
    };
    ensure!(reason.code() == "endorsement_timeout", "{reason:?}");
    ensure!(
        serde_json::to_string(reason)?.contains(PAYER_BANK),
        "{reason:?}"
    );
    ensure!(
        waited >= TIMEOUT - Duration::from_millis(500),
        "rejected after {waited:?}, before the {TIMEOUT:?} timeout"
    );
    // Back: new proposals are endorsed and applied on every node.
    c.start(e).await?;
    applied(&payer.submit(instruct(id, 20_000)).await?)?;
    converged(&c, id, 2).await?;
    applied(&payer.submit(instruct(id, 30_000)).await?)?;
    converged(&c, id, 3).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endorser_initiating_a_change_endorses_it_too() -> anyhow::Result<()> {
    // The payer's bank (an endorser) confirms through its own node, which forwards the intent
    // to the home and is then asked to endorse it; the payee's bank settles at the home.
    let c = cluster("endorsed-initiator", None).await?;
    let id = "settle-initiator";
    let (home, payer, bank) = (
        c.node(HOME)?.client()?,
        c.node(PAYER)?.client()?,
        c.node(PAYER_BANK)?.client()?,
    );
    applied(&home.submit(create(id)).await?)?;
    converged(&c, id, 1).await?;
    applied(&payer.submit(instruct(id, 40_000)).await?)?;
    converged(&c, id, 2).await?;
    applied(&bank.submit(call(id, "confirm", json!(null))).await?)?;
    converged(&c, id, 3).await?;
    applied(&home.submit(call(id, "settle", json!(null))).await?)?;
    converged(&c, id, 4).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_home_or_an_endorser_mid_proposal_applies_everywhere_or_nowhere(
) -> anyhow::Result<()> {
    const ROUNDS: u64 = 4;
    let mut c = cluster("endorsed-kills", None).await?;
    let id = "settle-kills";
    applied(&c.node(HOME)?.client()?.submit(create(id)).await?)?;
    converged(&c, id, 1).await?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    println!("endorsed kills: seed {seed}");
    for round in 0..ROUNDS {
        // Alternately the home and the payee bank's node (an endorser), kill -9 a few ms
        // after a proposal starts.
        let victim = if round % 2 == 0 { HOME } else { PAYER_BANK };
        let i = c
            .nodes
            .iter()
            .position(|n| n.id == victim)
            .context("victim")?;
        let payer = c.node(PAYER)?.client()?;
        let proposal = tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(30),
                payer.submit(instruct(id, 1_000 + round)),
            )
            .await
        });
        let delay = u64::from(seed.rotate_left(round as u32 * 7) % 25);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        c.nodes[i].kill9()?;
        let outcome = proposal.await?;
        println!("endorsed kills: round {round}, {victim} killed after {delay} ms: {outcome:?}");
        c.start(i).await?;
    }
    // Afterwards a proposal goes through, and every node holds the same applied events.
    let payer = c.node(PAYER)?.client()?;
    let start = Instant::now();
    let version = loop {
        match payer.submit(instruct(id, 9_999)).await {
            Ok(VerdictBody::Applied { version, .. }) => break version,
            other => {
                ensure!(
                    start.elapsed() < CONVERGE,
                    "no proposal applies after the kills: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    converged(&c, id, version).await?;
    let mut applied_sets = Vec::new();
    for n in &c.nodes {
        let events = events_of(&n.client()?, id).await?;
        let applied: BTreeSet<EventId> = events
            .iter()
            .filter(|(_, (o, _))| matches!(o, Outcome::Applied { .. }))
            .map(|(e, _)| *e)
            .collect();
        ensure!(
            applied.len() as u64 == version,
            "{}: {} applied events for version {version}",
            n.id,
            applied.len()
        );
        applied_sets.push((n.id.clone(), applied));
    }
    ensure!(
        applied_sets.windows(2).all(|w| w[0].1 == w[1].1),
        "the nodes hold different applied events: {applied_sets:?}"
    );
    println!(
        "endorsed kills: {ROUNDS} rounds, {version} versions applied on all 3 nodes, none on only some"
    );
    Ok(())
}
