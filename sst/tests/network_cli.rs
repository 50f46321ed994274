//! `sst network up|status|down` and `sst demo --network` as a user runs them: node processes
//! on SQLite files in a temporary directory, reached through their client APIs over mutual
//! TLS on loopback. Every wait is bounded; a guard kills every node process started under
//! the test's directory, even when the test fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use sst::core::{ActorKey, ContractRef, Parties, PublicKey, StateId};
use sst_client::api::IntentBody;
use sst_client::Client;

/// Longest run of one `sst` command, and longest wait for a replica.
const DEADLINE: Duration = Duration::from_secs(180);

/// A fresh directory; dropping it kills (SIGKILL) every process whose command line names a
/// path under it — the node processes started there — and removes it.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> anyhow::Result<Self> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sst-network-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Dir(dir))
    }

    fn str(&self) -> anyhow::Result<&str> {
        self.0.to_str().context("utf-8 path")
    }

    /// PIDs of the running processes whose arguments name a path under this directory.
    fn processes(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let prefix = format!("{}/", self.0.display());
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| alive(*pid))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    c.split(|b| *b == 0)
                        .any(|a| a.starts_with(prefix.as_bytes()))
                })
            })
            .collect()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `pid` runs (a zombie does not count).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X")
    })
}

/// Runs `sst args` for at most [`DEADLINE`] (killed after it), stdout to a file in `dir`;
/// exit code, stdout, stderr.
fn sst(dir: &Dir, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let out = dir.0.join("cli.out");
    let err = dir.0.join("cli.err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sst"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?)
        .spawn()?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "sst {args:?} still running after {DEADLINE:?}:\n{}",
                std::fs::read_to_string(&out)?
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok((
        status.code().context("killed by a signal")?,
        std::fs::read_to_string(&out)?,
        std::fs::read_to_string(&err)?,
    ))
}

fn sst_ok(dir: &Dir, args: &[&str]) -> anyhow::Result<String> {
    let (code, out, err) = sst(dir, args)?;
    ensure!(code == 0, "sst {args:?} exited {code}:\n{out}\n{err}");
    Ok(out)
}

/// A client of `node` (an entry of network.json) acting as its first actor.
fn client(node: &Value) -> anyhow::Result<Client> {
    let actor = &node["actors"][0];
    let pem = std::fs::read_to_string(actor["key_file"].as_str().context("key_file")?)?;
    let key = ActorKey::from_pkcs8_pem(&pem).map_err(|e| anyhow::anyhow!("{e}"))?;
    let node_key: PublicKey = serde_json::from_value(node["node_key"].clone())?;
    Ok(Client::with_tls(
        node["api"].as_str().context("api")?.parse()?,
        actor["id"].as_str().context("actor id")?,
        key,
        node_key,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_up_starts_three_node_processes_that_sync_and_down_stops_them() -> anyhow::Result<()>
{
    let dir = Dir::new("up")?;
    let out = sst_ok(
        &dir,
        &["network", "up", "--dir", dir.str()?, "--nodes", "3"],
    )?;
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("network.json"))?)?;
    let nodes = manifest["nodes"].as_array().context("nodes")?;
    let ids: Vec<&str> = nodes.iter().filter_map(|n| n["id"].as_str()).collect();
    ensure!(ids == ["buyer", "seller", "inspector"], "{manifest}");
    let pids: Vec<u32> = nodes
        .iter()
        .map(|n| n["pid"].as_u64().map(|p| p as u32).context("pid"))
        .collect::<anyhow::Result<_>>()?;
    for (id, pid) in ids.iter().zip(&pids) {
        ensure!(alive(*pid), "node {id} (pid {pid}) is not running:\n{out}");
        ensure!(out.contains(&format!("pid {pid}")), "{out}");
    }
    ensure!(
        manifest["registry"].as_object().map(|r| r.len()) == Some(3),
        "{manifest}"
    );
    // Each node lists both others as peers, with address and key.
    for n in nodes {
        let config = std::fs::read_to_string(n["config"].as_str().context("config")?)?;
        ensure!(config.matches("[[peer]]").count() == 2, "{config}");
        for other in nodes.iter().filter(|o| o["id"] != n["id"]) {
            let listen = other["listen"].as_str().context("listen")?;
            ensure!(config.contains(listen), "{config}");
        }
    }

    let status = sst_ok(&dir, &["network", "status", "--dir", dir.str()?])?;
    ensure!(status.matches(" healthy").count() == 3, "{status}");

    // A create on the seller through its client API (signed by the seller's actor) reaches
    // the two other node processes.
    let clients: BTreeMap<&str, Client> = ids
        .iter()
        .zip(nodes)
        .map(|(id, n)| Ok((*id, client(n)?)))
        .collect::<anyhow::Result<_>>()?;
    let deal = StateId::from("deal-7");
    let sections = serde_json::from_value(json!({
        "common": {"address": "7 Process Row"},
        "price": {"amount": 700000},
    }))?;
    let verdict = clients["seller"]
        .submit(IntentBody::Create {
            state_id: deal.clone(),
            contract: ContractRef::new("real-estate-deal", 1),
            parties: deal_parties(),
            sections,
        })
        .await?;
    ensure!(verdict.is_applied(), "{verdict:?}");
    for id in ["buyer", "inspector"] {
        let start = Instant::now();
        let state = loop {
            if let Some(s) = clients[id].state(&deal).await? {
                break s;
            }
            ensure!(start.elapsed() < DEADLINE, "deal-7 never reached {id}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        ensure!(state.version == 1, "{id}: {state:?}");
        let address = &state.sections["common"]
            .disclosure
            .as_ref()
            .context("common hidden")?
            .value["address"];
        ensure!(address == "7 Process Row", "{id}: {address}");
        // The inspector may not read the price; its node does not even hold it.
        ensure!(
            (id == "buyer") == state.sections["price"].disclosure.is_some(),
            "{id}: price disclosure {:?}",
            state.sections["price"]
        );
    }

    // curl over the mutual-TLS API: a certificate openssl makes from the actor's own key
    // file, the request signed by `sst sign-request`, which also pins the node's key.
    let seller = nodes
        .iter()
        .find(|n| n["id"] == "seller")
        .context("seller")?;
    let key_file = seller["actors"][0]["key_file"]
        .as_str()
        .context("key_file")?;
    let cert = dir.0.join("sue.crt");
    let made = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-key",
            key_file,
            "-subj",
            "/CN=seller-sue",
        ])
        .args(["-days", "1", "-out", cert.to_str().context("utf-8")?])
        .output()?;
    ensure!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let path = "/v1/states/deal-7";
    let node_key = seller["node_key"].as_str().context("node_key")?;
    let options = sst_ok(
        &dir,
        &[
            "sign-request",
            "--actor",
            "seller/sue",
            "--key",
            key_file,
            "--node-key",
            node_key,
            path,
        ],
    )?;
    let api = seller["api"].as_str().context("api")?;
    let curl = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "--cert",
            cert.to_str().context("utf-8")?,
        ])
        .args(["--key", key_file])
        .args(options.split_whitespace())
        .arg(format!("https://{api}{path}"))
        .output()?;
    let body = String::from_utf8_lossy(&curl.stdout);
    ensure!(
        curl.status.success() && body.contains("\"deal-7\"") && body.contains("700000"),
        "curl: {body} {}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // A second `up` in the same directory is refused while the network runs.
    let (code, _, err) = sst(&dir, &["network", "up", "--dir", dir.str()?])?;
    ensure!(code == 2 && err.contains("a network is up there"), "{err}");

    let down = sst_ok(&dir, &["network", "down", "--dir", dir.str()?])?;
    ensure!(down.matches("stopped (SIGTERM)").count() == 3, "{down}");
    for (id, pid) in ids.iter().zip(&pids) {
        ensure!(!alive(*pid), "node {id} (pid {pid}) still runs after down");
    }
    ensure!(!dir.0.join("network.json").exists(), "network.json kept");
    ensure!(dir.processes().is_empty(), "node processes left");
    // The data stays: the three databases verify against the registry and agree.
    let registry = dir.0.join("registry.json");
    let mut args = vec![
        "verify".to_owned(),
        "--registry".to_owned(),
        registry.display().to_string(),
    ];
    for n in nodes {
        args.extend([
            "--db".to_owned(),
            n["store"].as_str().context("store")?.to_owned(),
            "--node".to_owned(),
            n["id"].as_str().context("id")?.to_owned(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let verified = sst_ok(&dir, &args)?;
    ensure!(verified.contains("roots agree"), "{verified}");
    Ok(())
}

#[test]
fn demo_network_runs_the_deal_across_four_node_processes_and_all_roots_agree() -> anyhow::Result<()>
{
    let dir = Dir::new("demo")?;
    let out = sst_ok(&dir, &["demo", "--network", "--dir", dir.str()?])?;
    ensure!(out.contains("All 4 roots equal"), "{out}");
    let pids: Vec<u32> = out
        .lines()
        .filter_map(|l| {
            l.split_once("node → pid ")?
                .1
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    ensure!(pids.len() == 4, "one PID per node expected:\n{out}");
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    ensure!(distinct.len() == 4, "{pids:?}");
    ensure!(
        pids.iter().all(|p| *p != std::process::id()),
        "a node ran in the test process"
    );
    ensure!(out.matches("stopped (SIGTERM)").count() == 4, "{out}");
    ensure!(
        out.contains("REJECTED (forbidden)"),
        "the forbidden write:\n{out}"
    );
    for pid in &pids {
        ensure!(!alive(*pid), "node pid {pid} still runs after the demo");
    }
    ensure!(dir.processes().is_empty(), "node processes left");
    Ok(())
}

/// The parties of a real-estate deal on a three-node network: each node's first actor.
fn deal_parties() -> Parties {
    Parties::default()
        .with("seller", "seller/sue")
        .with("buyer", "buyer/bob")
        .with("inspector", "inspector/ina")
}

/// `sst network up --nodes N` in `dir`; the manifest it wrote (network.json).
fn network_up(dir: &Dir, nodes: usize) -> anyhow::Result<Value> {
    sst_ok(
        dir,
        &[
            "network",
            "up",
            "--dir",
            dir.str()?,
            "--nodes",
            &nodes.to_string(),
        ],
    )?;
    Ok(serde_json::from_str(&std::fs::read_to_string(
        dir.0.join("network.json"),
    )?)?)
}

/// The manifest entry of node `id`.
fn node_entry<'m>(manifest: &'m Value, id: &str) -> anyhow::Result<&'m Value> {
    manifest["nodes"]
        .as_array()
        .context("nodes")?
        .iter()
        .find(|n| n["id"] == id)
        .with_context(|| format!("node {id}"))
}

/// Waits (bounded) until `pid` has exited.
fn wait_exited(pid: u32) -> anyhow::Result<()> {
    let start = Instant::now();
    while alive(pid) {
        ensure!(start.elapsed() < DEADLINE, "pid {pid} still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Rolls the seller's SQLite database back by its last event, consistently: the event row,
/// its log entry, the seller's own checkpoints from there on, the state's newest history row,
/// and the current-state row replaced by the version before. Nothing left behind refers to
/// what was removed, so the database verifies on its own.
fn roll_back_last_event(db: &Path, state: &str, version: i64) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    let event: String = conn.query_row(
        "SELECT id FROM sst_event WHERE state_id = ?1 AND new_version = ?2",
        rusqlite::params![state, version],
        |r| r.get(0),
    )?;
    let pos: i64 = conn.query_row(
        "SELECT pos FROM sst_log WHERE subject = ?1",
        [&event],
        |r| r.get(0),
    )?;
    let last: i64 = conn.query_row("SELECT MAX(pos) FROM sst_log", [], |r| r.get(0))?;
    ensure!(pos == last, "the event is at {pos}, the log ends at {last}");
    conn.execute_batch(&format!(
        "BEGIN;
         DELETE FROM sst_log WHERE pos >= {pos};
         DELETE FROM sst_checkpoint WHERE node = 'seller' AND pos >= {pos};
         DELETE FROM sst_event WHERE id = '{event}';
         DELETE FROM sst_state_history WHERE id = '{state}' AND version = {version};
         DELETE FROM sst_state WHERE id = '{state}';
         INSERT INTO sst_state (id, contract_name, contract_version, version, data)
             SELECT id, contract_name, contract_version, version, data FROM sst_state_versions
             WHERE id = '{state}' AND version = {};
         COMMIT;",
        version - 1
    ))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_finds_a_rolled_back_log_tail_that_only_the_peers_witnessed() -> anyhow::Result<()> {
    let dir = Dir::new("audit")?;
    let manifest = network_up(&dir, 3)?;
    let node = |id: &str| node_entry(&manifest, id);
    let seller = client(node("seller")?)?;
    let others = [client(node("buyer")?)?, client(node("inspector")?)?];
    let deal = StateId::from("deal-9");
    let verdict = seller
        .submit(IntentBody::Create {
            state_id: deal.clone(),
            contract: ContractRef::new("real-estate-deal", 1),
            parties: deal_parties(),
            sections: serde_json::from_value(json!({"common": {"address": "9 Audit Way"}}))?,
        })
        .await?;
    ensure!(verdict.is_applied(), "{verdict:?}");
    for rev in 1..=3 {
        let verdict = seller
            .submit(IntentBody::Change {
                state_id: deal.clone(),
                sections: serde_json::from_value(
                    json!({"common": {"address": "9 Audit Way", "rev": rev}}),
                )?,
            })
            .await?;
        ensure!(verdict.is_applied(), "{verdict:?}");
    }
    for c in &others {
        let start = Instant::now();
        while c.state(&deal).await?.map(|s| s.version) != Some(4) {
            ensure!(start.elapsed() < DEADLINE, "version 4 never reached a peer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The seller signs a checkpoint at most every 200 ms and sends it with sync.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let config = node("seller")?["config"].as_str().context("config")?;
    let clean = sst_ok(&dir, &["audit", "--config", config])?;
    ensure!(
        clean.contains("audit: clean (2 peer(s) asked, 0 unreachable)"),
        "{clean}"
    );
    ensure!(clean.matches("1 agree").count() == 2, "{clean}");

    // The seller stops; its database loses its last change, consistently.
    let pid = node("seller")?["pid"].as_u64().context("pid")? as u32;
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    wait_exited(pid)?;
    let store = node("seller")?["store"].as_str().context("store")?;
    let db = PathBuf::from(store.strip_prefix("sqlite:").unwrap_or(store));
    roll_back_last_event(&db, "deal-9", 4)?;
    // On its own, the database verifies: nothing in it shows the cut.
    let registry = dir.0.join("registry.json");
    let local = sst_ok(
        &dir,
        &[
            "verify",
            "--registry",
            registry.to_str().context("utf-8")?,
            "--db",
            db.to_str().context("utf-8")?,
            "--node",
            "seller",
        ],
    )?;
    ensure!(local.contains("history OK"), "{local}");
    // Its peers witnessed the log before the cut.
    let (code, out, err) = sst(&dir, &["audit", "--config", config])?;
    ensure!(code == 1, "audit exited {code}:\n{out}\n{err}");
    ensure!(
        out.matches("[peer/own_log]").count() == 2 && out.contains("its tail was cut"),
        "{out}"
    );
    ensure!(out.matches("1 behind here").count() == 2, "{out}");
    ensure!(out.contains("audit: PROBLEMS FOUND"), "{out}");
    sst_ok(&dir, &["network", "down", "--dir", dir.str()?])?;
    Ok(())
}

/// A small JavaScript contract the test deploys at run time.
const ESCROW_JS: &str = r#"
export const contract = {
  name: "escrow",
  version: 1,
  sections: {
    terms: { read: ["*"], write: ["seller"] },
    funds: { read: ["*"], write: ["buyer"] },
  },
};
export function deposit(sections, args, ctx) {
  if (!ctx.roles.includes("buyer")) throw new Error("only the buyer deposits");
  const due = sections.terms.amount;
  if (args.amount !== due) throw new Error(`deposit exactly ${due}`);
  ctx.emit("deposited", { by: ctx.actor });
  return { funds: { deposited: args.amount } };
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_contract_deployed_with_the_cli_runs_on_every_node_process(
) -> anyhow::Result<()> {
    let dir = Dir::new("deploy")?;
    let manifest = network_up(&dir, 3)?;
    let node = |id: &str| node_entry(&manifest, id);
    let file = dir.0.join("escrow.js");
    std::fs::write(&file, ESCROW_JS)?;
    let seller = node("seller")?;
    let out = sst_ok(
        &dir,
        &[
            "contract",
            "deploy",
            "--api",
            seller["api"].as_str().context("api")?,
            "--actor",
            "seller/sue",
            "--key",
            seller["actors"][0]["key_file"]
                .as_str()
                .context("key_file")?,
            "--node-key",
            seller["node_key"].as_str().context("node_key")?,
            file.to_str().context("utf-8")?,
        ],
    )?;
    ensure!(out.contains("\"applied\""), "{out}");

    // The seller's node sequences a state of the new contract; the buyer's node, which got
    // the deployment over the network, runs its method (re-executed by the replicas).
    let seller = client(seller)?;
    let buyer = client(node("buyer")?)?;
    let id = StateId::from("escrow-1");
    let start = Instant::now();
    let verdict = loop {
        let v = seller
            .submit(IntentBody::Create {
                state_id: id.clone(),
                contract: ContractRef::new("escrow", 1),
                parties: Parties::default()
                    .with("seller", "seller/sue")
                    .with("buyer", "buyer/bob"),
                sections: serde_json::from_value(json!({"terms": {"amount": 250}}))?,
            })
            .await?;
        if v.is_applied() || start.elapsed() > DEADLINE {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(verdict.is_applied(), "{verdict:?}");
    let start = Instant::now();
    while buyer.state(&id).await?.is_none() {
        ensure!(
            start.elapsed() < DEADLINE,
            "escrow-1 never reached the buyer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = buyer
        .submit(IntentBody::Call {
            state_id: id.clone(),
            method: "deposit".into(),
            args: json!({"amount": 1}),
        })
        .await?;
    ensure!(
        format!("{refused:?}").contains("deposit exactly 250"),
        "{refused:?}"
    );
    let paid = buyer
        .submit(IntentBody::Call {
            state_id: id.clone(),
            method: "deposit".into(),
            args: json!({"amount": 250}),
        })
        .await?;
    ensure!(paid.is_applied(), "{paid:?}");
    sst_ok(&dir, &["network", "down", "--dir", dir.str()?])?;
    Ok(())
}
