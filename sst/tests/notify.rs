//! Notifications from `sst node run` processes (issue 12), against the Redis server
//! (`SST_REDIS_URL`, default `redis://127.0.0.1:6379`), so ignored by the plain `cargo test`;
//! run them with `cargo test -p sst --test notify -- --ignored --nocapture`:
//!
//! - **kill -9** (acceptance): one node on a SQLite store with a Redis Streams `[[sink]]` is
//!   killed with SIGKILL at seeded random points while a client commits intents through its
//!   API — between commits and publishes — 100+ times within a bounded time, and restarted on
//!   the same store each time. After the last restart every committed event's notification
//!   is on the stream (none lost), and every entry carries an id of a committed event
//!   (duplicates only repeat ids already seen). Prints one `notify-kill:` line with its
//!   counts. Knobs: `SST_NOTIFY_KILLS` (default 100), `SST_FAULTS_SEED`.
//! - **daemon**: a `[[sink]]` with a filter publishes exactly what the client API's
//!   CloudEvents stream with the same filter returns, byte for byte (one formatter, one
//!   filter); `/metrics` counts it; a bad topic template stops `sst node run` at start with
//!   an error naming the sink.

#[path = "support/ports.rs"]
mod ports;
#[path = "support/rng.rs"]
mod rng;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use rng::Rng;
use serde_json::json;
use sst::core::{ActorKey, ContractRef, Parties, PublicKey, StateId};
use sst_client::api::IntentBody;
use sst_client::Client;

/// The whole test (kills and the final catch-up) must end within this.
const BUDGET: Duration = Duration::from_secs(90);
/// Longest wait for the node's API after a (re)start.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A private copy of the `sst` binary (another build may rewrite `target/debug/sst` while
/// this runs).
fn private_bin(dir: &Path) -> anyhow::Result<PathBuf> {
    let bin = dir.join("sst");
    std::fs::copy(env!("CARGO_BIN_EXE_sst"), &bin)
        .with_context(|| format!("copying {}", env!("CARGO_BIN_EXE_sst")))?;
    Ok(bin)
}

fn sst_ok(bin: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(bin).args(args).output()?;
    ensure!(
        out.status.success(),
        "sst {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The node process and how to reach it.
struct NodeProc {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    api: SocketAddr,
    public: PublicKey,
    ops_key: PathBuf,
    /// The claims on its peer and API ports ([`ports`]), held across kills and restarts.
    _ports: [ports::Port; 2],
    child: Option<Child>,
}

impl NodeProc {
    fn client(&self) -> anyhow::Result<Client> {
        let key = ActorKey::from_pkcs8_pem(&std::fs::read_to_string(&self.ops_key)?)
            .map_err(|e| anyhow::anyhow!("ops key: {e}"))?;
        Ok(Client::with_tls(self.api, "acme/ops", key, self.public)?)
    }

    fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.child = Some(
            Command::new(&self.bin)
                .args(["node", "run", "--config"])
                .arg(&self.config)
                .env("SST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()?,
        );
        let probe = self.client()?;
        let started = Instant::now();
        loop {
            if !self.running() {
                bail!("node exited at start:\n{}", self.log_tail());
            }
            if probe.health().await.is_ok() {
                return Ok(());
            }
            ensure!(
                started.elapsed() < START_DEADLINE,
                "node not up after {START_DEADLINE:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("not started")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let child = self.child.take().context("not started")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM failed");
        let mut child = child;
        child.wait()?;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn redis_url() -> String {
    std::env::var("SST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// The `id` field of every entry of `stream`, in stream order.
async fn stream_ids(stream: &str) -> anyhow::Result<Vec<String>> {
    stream_field(stream, "id").await
}

/// Field `field` of every entry of `stream`, in stream order.
async fn stream_field(stream: &str, field: &str) -> anyhow::Result<Vec<String>> {
    let client = redis::Client::open(redis_url().as_str())?;
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("Redis at {} does not answer", redis_url()))?;
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await?;
    entries
        .into_iter()
        .map(|(entry, fields)| {
            fields
                .chunks(2)
                .find(|kv| kv[0] == field)
                .map(|kv| kv[1].clone())
                .with_context(|| format!("stream entry {entry} without {field}"))
        })
        .collect()
}

/// A node directory `acme` (node key, custody actor `acme/ops`, the real-estate contract
/// deployed by it) under a fresh directory named after `tag`, with `extra` appended to its
/// node.toml; nothing runs yet. Returns the directory (removed by the caller) and the node.
fn prepare(tag: &str, extra: &str) -> anyhow::Result<(PathBuf, NodeProc)> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sst-notify-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let bin = private_bin(&dir)?;
    let node_dir = dir.join("acme");
    let claims = [ports::claim()?, ports::claim()?];
    let (listen, api) = (claims[0].addr(), claims[1].addr());
    let path = |p: &Path| p.to_str().map(str::to_owned).context("utf-8 path");
    let public_hex = sst_ok(
        &bin,
        &[
            "node",
            "init",
            "--id",
            "acme",
            "--dir",
            &path(&node_dir)?,
            "--listen",
            &listen.to_string(),
            "--api",
            &api.to_string(),
        ],
    )?;
    let public: PublicKey = serde_json::from_value(json!(public_hex))?;
    let ops_key = node_dir.join("ops.pem");
    sst_ok(&bin, &["keygen", "--out", &path(&ops_key)?])?;
    let ops_public = ActorKey::from_pkcs8_pem(&std::fs::read_to_string(&ops_key)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .public_key();
    let config = node_dir.join("node.toml");
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        "\n[[actor]]\nid = \"acme/ops\"\nkey = \"{}\"\n\n[[custody]]\nactor = \"acme/ops\"\nkey = \"ops.pem\"\n\n\
         [[contract]]\ncontract = \"real-estate-deal@1\"\ndeployer = \"acme/ops\"\n\n{extra}",
        hex::encode(ops_public.to_bytes()),
    ));
    std::fs::write(&config, text)?;
    let node = NodeProc {
        bin,
        config,
        log: dir.join("acme.log"),
        api,
        public,
        ops_key,
        _ports: claims,
        child: None,
    };
    Ok((dir, node))
}

/// Commits intents through `client` until it fails (the node was killed): a create, then
/// price changes, per deal; counts the verdicts received.
async fn submit_until_killed(client: Client, round: usize, answered: Arc<AtomicUsize>) {
    let ops = "acme/ops";
    for deal in 0.. {
        let state = StateId::from(format!("deal-{round}-{deal}").as_str());
        let create = IntentBody::Create {
            state_id: state.clone(),
            contract: ContractRef::new("real-estate-deal", 1),
            parties: Parties::default().with("buyer", ops).with("seller", ops),
            sections: [
                (
                    "common".to_owned(),
                    json!({"address": format!("{deal} Main St")}),
                ),
                ("price".to_owned(), json!({"amount": 500_000})),
            ]
            .into_iter()
            .collect(),
        };
        if client.submit_custody(ops, create).await.is_err() {
            return;
        }
        answered.fetch_add(1, Ordering::SeqCst);
        for step in 1..=3 {
            let change = IntentBody::Change {
                state_id: state.clone(),
                sections: [("price".to_owned(), json!({"amount": 500_000 - step * 1000}))]
                    .into_iter()
                    .collect(),
            };
            if client.submit_custody(ops, change).await.is_err() {
                return;
            }
            answered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Redis server; run by cargo xtask faults (see the file's doc)"]
async fn kill_9_between_commit_and_publish_loses_no_notification() -> anyhow::Result<()> {
    let started = Instant::now();
    let kills: usize = std::env::var("SST_NOTIFY_KILLS")
        .ok()
        .map(|s| s.parse())
        .transpose()
        .context("SST_NOTIFY_KILLS")?
        .unwrap_or(100);
    let seed = match std::env::var("SST_FAULTS_SEED") {
        Ok(s) => s.parse().context("SST_FAULTS_SEED")?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    let mut rng = Rng(seed);
    let run = format!("{:x}", seed & 0xffff_ffff);
    let stream = format!("sst-notify-kill-{run}");
    let (dir, mut node) = prepare(
        &format!("kill-{run}"),
        &format!(
            "[[sink]]\nname = \"kill-test\"\nkind = \"redis\"\nurl = \"{}\"\n\
             topic = \"{stream}\"\nbatch = 16\n",
            redis_url()
        ),
    )?;

    let answered = Arc::new(AtomicUsize::new(0));
    let mut restarts = 0;
    for round in 0..kills {
        ensure!(
            started.elapsed() < BUDGET,
            "only {round} of {kills} kills within {BUDGET:?}"
        );
        node.start().await?;
        restarts += 1;
        let submitter = tokio::spawn(submit_until_killed(node.client()?, round, answered.clone()));
        tokio::time::sleep(Duration::from_millis(rng.range(20, 180))).await;
        node.kill9()?;
        // The client sees its connection break and stops.
        tokio::time::timeout(Duration::from_secs(15), submitter)
            .await
            .context("the submitter did not notice the kill")??;
    }

    // The last run: no kill; wait until everything committed is on the stream.
    node.start().await?;
    restarts += 1;
    let client = node.client()?;
    let mut committed = Vec::new();
    let mut events = client.events(0, false).await?;
    while let Some(e) = events.next().await? {
        committed.push(e.record.id().to_string());
    }
    let want: BTreeSet<String> = committed.iter().cloned().collect();
    ensure!(want.len() == committed.len(), "an event listed twice");
    let ids = loop {
        let ids = stream_ids(&stream).await?;
        let seen: BTreeSet<&String> = ids.iter().collect();
        if want.iter().all(|id| seen.contains(id)) {
            break ids;
        }
        ensure!(
            started.elapsed() < BUDGET + Duration::from_secs(30),
            "{} of {} committed events never published:\n{}",
            want.iter().filter(|id| !seen.contains(id)).count(),
            want.len(),
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    node.stop()?;
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for id in &ids {
        *counts.entry(id).or_default() += 1;
    }
    let strangers: Vec<_> = counts.keys().filter(|id| !want.contains(**id)).collect();
    ensure!(
        strangers.is_empty(),
        "published ids of no committed event: {strangers:?}"
    );
    // The stream's first copies come in commit order.
    let mut first = Vec::new();
    let mut seen = BTreeSet::new();
    for id in &ids {
        if seen.insert(id) {
            first.push(id.clone());
        }
    }
    ensure!(first == committed, "first copies out of commit order");
    let duplicates = ids.len() - want.len();
    let elapsed = started.elapsed();
    println!(
        "notify-kill: kills {kills}, restarts {restarts}, events committed {}, answered {}, \
         notifications {}, lost 0, duplicates {duplicates} (all of ids already seen), seed {seed}, \
         {:.1} s",
        want.len(),
        answered.load(Ordering::SeqCst),
        ids.len(),
        elapsed.as_secs_f64()
    );
    ensure!(
        want.len() >= kills,
        "too few events committed: {}",
        want.len()
    );
    ensure!(
        answered.load(Ordering::SeqCst) <= want.len(),
        "more verdicts than committed events"
    );
    tidy_up(&stream, &dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Redis server; run by cargo xtask faults (see the file's doc)"]
async fn a_sink_publishes_what_the_cloudevents_stream_shows_with_the_same_filter(
) -> anyhow::Result<()> {
    let run = format!("{:x}", std::process::id());
    let stream = format!("sst-notify-daemon-{run}");
    let (dir, mut node) = prepare(
        &format!("daemon-{run}"),
        &format!(
            "[[sink]]\nname = \"applied-deals\"\nkind = \"redis\"\nurl = \"{}\"\n\
             topic = \"{stream}\"\n[sink.filter]\noutcomes = [\"applied\"]\n\
             state_prefixes = [\"deal-\"]\n",
            redis_url()
        ),
    )?;
    node.start().await?;
    let client = node.client()?;
    let ops = "acme/ops";
    let parties = Parties::default().with("buyer", ops).with("seller", ops);
    for state in ["deal-1", "other-1"] {
        let create = IntentBody::Create {
            state_id: StateId::from(state),
            contract: ContractRef::new("real-estate-deal", 1),
            parties: parties.clone(),
            sections: [
                ("common".to_owned(), json!({"address": "1 Main St"})),
                ("price".to_owned(), json!({"amount": 500_000})),
            ]
            .into_iter()
            .collect(),
        };
        ensure!(client.submit_custody(ops, create).await?.is_applied());
    }
    let change = |section: &str, value| IntentBody::Change {
        state_id: StateId::from("deal-1"),
        sections: [(section.to_owned(), value)].into_iter().collect(),
    };
    ensure!(client
        .submit_custody(ops, change("price", json!({"amount": 490_000})))
        .await?
        .is_applied());
    // Rejected: not a section of the contract.
    ensure!(!client
        .submit_custody(ops, change("colour", json!("blue")))
        .await?
        .is_applied());
    let filter = sst_notify::FilterSpec {
        outcomes: vec!["applied".into()],
        state_prefixes: vec!["deal-".into()],
        ..Default::default()
    };
    let mut streamed = Vec::new();
    let mut lines = client.notifications(0, false, &filter).await?;
    while let Some(n) = lines.next_notification().await? {
        streamed.push(n.to_json());
    }
    ensure!(streamed.len() == 2, "{streamed:#?}");
    let published = {
        let started = Instant::now();
        loop {
            let events = stream_events(&stream).await?;
            if events.len() >= streamed.len() {
                break events;
            }
            ensure!(
                started.elapsed() < START_DEADLINE,
                "published {events:?}:\n{}",
                node.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    ensure!(
        published == streamed,
        "sink {published:#?}\nstream {streamed:#?}"
    );
    // The rejection's entry (filtered out) may still be ahead of the cursor: wait for lag 0.
    let started = Instant::now();
    loop {
        let metrics = client.metrics().await?;
        if metrics.contains("sst_notify_published_total{sink=\"applied-deals\"} 2\n")
            && metrics.contains("sst_notify_lag{sink=\"applied-deals\"} 0\n")
        {
            break;
        }
        ensure!(started.elapsed() < START_DEADLINE, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A bad filter on the API is a bad request naming it.
    let err = client
        .notifications(
            0,
            false,
            &sst_notify::FilterSpec {
                outcomes: vec!["done".into()],
                ..Default::default()
            },
        )
        .await
        .err()
        .context("a bad filter was accepted")?;
    ensure!(err.to_string().contains("done"), "{err}");
    node.stop()?;

    // A bad topic template stops the daemon at start, naming the sink.
    let text = std::fs::read_to_string(&node.config)?;
    std::fs::write(
        &node.config,
        text.replace(
            &format!("topic = \"{stream}\""),
            "topic = \"sst.{contrct}\"",
        ),
    )?;
    let out = Command::new(&node.bin)
        .args(["node", "run", "--config"])
        .arg(&node.config)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("applied-deals") && err.contains("contrct"),
        "{}: {err}",
        out.status
    );
    tidy_up(&stream, &dir).await
}

/// Removes a test's stream and directory (both kept when a test fails, for a look).
async fn tidy_up(stream: &str, dir: &Path) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url().as_str())?;
    let mut c = client.get_multiplexed_async_connection().await?;
    redis::cmd("DEL")
        .arg(stream)
        .query_async::<()>(&mut c)
        .await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// The `event` field (the CloudEvents JSON) of every entry of `stream`, in stream order.
async fn stream_events(stream: &str) -> anyhow::Result<Vec<String>> {
    stream_field(stream, "event").await
}
