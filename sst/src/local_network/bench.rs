//! `sst bench --network` (run by `cargo xtask bench network`): one workload — a home node
//! sequencing N changes of one state, 64 in flight, each replicated to two replica nodes —
//! measured end to end twice in the same run: on three node processes over loopback
//! (HTTP/2 + mutual TLS 1.3 between the nodes, intents through the home's client API over
//! mutual TLS, custody-signed like [`sst::node::Node::submit`]), and on three nodes in this
//! process ([`sst::Network`], in-process transport). SQLite files in both cases.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use sst::core::{ContractRef, Parties, StateId};
use sst::node::contracts::RealEstateDeal;
use sst::node::Intent;
use sst_client::api::IntentBody;

use super::{Backend, NodeSpec, Running};

/// The three nodes: id and its actor (the home's is held in custody).
pub(super) const NODES: [(&str, &str); 3] =
    [("home", "ops"), ("replica1", "bob"), ("replica2", "rex")];
/// The benchmarked state.
const STATE: &str = "bench-deal";
/// Intents in flight at once.
pub(super) const IN_FLIGHT: usize = 64;
/// Longest wait for the replicas to acknowledge the last change.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(120);

/// The actor id of node `i` of [`NODES`].
pub(super) fn actor(i: usize) -> String {
    format!("{}/{}", NODES[i].0, NODES[i].1)
}

/// The benchmarked states' parties: the home's actor sells, the replicas' buy and observe.
pub(super) fn parties() -> Parties {
    Parties::default()
        .with("seller", actor(0).as_str())
        .with("buyer", actor(1).as_str())
        .with("regulator", actor(2).as_str())
}

/// The `i`-th change: a 200-byte `common` section.
pub(super) fn change_sections(i: usize) -> BTreeMap<String, Value> {
    BTreeMap::from([(
        "common".to_owned(),
        json!({"address": "12 Harbour Lane", "revision": i, "notes": "x".repeat(200)}),
    )])
}

fn create_sections() -> BTreeMap<String, Value> {
    BTreeMap::from([("common".to_owned(), json!({"revision": 0}))])
}

/// Timings of one run.
#[derive(Debug, Clone)]
struct Timing {
    /// Until the home answered every intent.
    home: Duration,
    /// Until both replicas acknowledged the last version.
    all: Duration,
    /// CPU seconds each process spent during the measured part (`None` without `/proc`).
    cpu: Vec<(String, Option<f64>)>,
}

/// User + system CPU seconds of process `pid` (`"self"` for this one) so far, from
/// `/proc/PID/stat` (Linux; clock ticks of 1/100 s).
pub(super) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds spent by each of `pids` between `before` and now.
fn cpu_since(pids: &[(String, String)], before: &[Option<f64>]) -> Vec<(String, Option<f64>)> {
    pids.iter()
        .zip(before)
        .map(|((label, pid), b)| (label.clone(), cpu_seconds(pid).zip(*b).map(|(a, b)| a - b)))
        .collect()
}

impl Timing {
    /// CPU seconds of every measured process together, when all could be read.
    fn cpu_total(&self) -> Option<f64> {
        self.cpu.iter().map(|(_, s)| *s).sum()
    }
}

pub(super) fn rate(events: usize, d: Duration) -> f64 {
    events as f64 / d.as_secs_f64()
}

fn print(label: &str, events: usize, t: &Timing) {
    println!(
        "{label}: {events} applied in {:.2} s = {:.0} events/s at the home node; replicated to \
         2 nodes after {:.2} s = {:.0} events/s end to end",
        t.home.as_secs_f64(),
        rate(events, t.home),
        t.all.as_secs_f64(),
        rate(events, t.all)
    );
    let cpu: Vec<String> = t
        .cpu
        .iter()
        .map(|(label, s)| match s {
            Some(s) => format!("{label} {s:.2} s"),
            None => format!("{label} -"),
        })
        .collect();
    println!("   CPU time meanwhile: {}", cpu.join(", "));
}

/// Runs the benchmark with `events` changes in each setting; files under `dir`.
///
/// # Errors
/// A node that does not start; an intent not applied; replicas that do not catch up in
/// time; roots that differ.
pub(crate) async fn run(dir: &Path, events: usize) -> anyhow::Result<()> {
    ensure!(events > 0, "--events must be at least 1");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    println!(
        "home node + 2 replicas, {events} changes of one state, {IN_FLIGHT} in flight; SQLite \
         files in {} (synchronous=FULL, WAL)",
        dir.display()
    );
    let in_process = in_process(&dir.join("in-process"), events).await?;
    print("in one process (in-process transport)", events, &in_process);
    let networked = networked(&dir.join("networked"), events).await?;
    print(
        "3 node processes (HTTP/2 + mutual TLS 1.3 on loopback, client API over mutual TLS)",
        events,
        &networked,
    );
    println!(
        "ratio networked / in-process, end to end: {:.2} ({:.0} / {:.0} events/s); at the home \
         node: {:.2}",
        rate(events, networked.all) / rate(events, in_process.all),
        rate(events, networked.all),
        rate(events, in_process.all),
        rate(events, networked.home) / rate(events, in_process.home),
    );
    if let (Some(net), Some(one)) = (networked.cpu_total(), in_process.cpu_total()) {
        println!(
            "CPU per event: {:.0} us in one process, {:.0} us across the node processes and the \
             client; in-process / networked: {:.2} (what the rate ratio tends to when the cores \
             are the limit)",
            one * 1e6 / events as f64,
            net * 1e6 / events as f64,
            one / net
        );
    }
    Ok(())
}

/// The workload on [`sst::Network`] in this process.
async fn in_process(dir: &Path, events: usize) -> anyhow::Result<Timing> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut builder = sst::Network::builder();
    for (i, (node, _)) in NODES.iter().enumerate() {
        builder = builder
            .sqlite_node(*node, dir.join(format!("{node}.db")))
            .actor(actor(i).as_str());
    }
    let net = Arc::new(
        builder
            .contract(RealEstateDeal, actor(0).as_str())
            .start()
            .await?,
    );
    let deal = ContractRef::new("real-estate-deal", 1);
    let v = net
        .submit(
            &actor(0),
            Intent::create(STATE, deal, parties(), create_sections()),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    net.wait_replicated(STATE, 1, REPLICATION_DEADLINE).await?;
    let home = actor(0);
    let pids = [("this process".to_owned(), "self".to_owned())];
    let before: Vec<_> = pids.iter().map(|(_, p)| cpu_seconds(p)).collect();
    let t = Instant::now();
    let applied = pipelined(events, |i| {
        let (net, home) = (net.clone(), home.clone());
        async move {
            let v = net
                .submit(&home, Intent::change(STATE, change_sections(i)))
                .await?;
            Ok(v.is_applied())
        }
    })
    .await?;
    let at_home = t.elapsed();
    ensure!(applied == events, "only {applied} of {events} applied");
    net.wait_replicated(STATE, events as u64 + 1, REPLICATION_DEADLINE)
        .await?;
    let all = t.elapsed();
    let mut roots = Vec::new();
    for node in net.nodes().values() {
        roots.push(
            node.state(&STATE.into())
                .await?
                .map(|s| (s.version, s.root)),
        );
    }
    ensure!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "in-process roots differ: {roots:?}"
    );
    Ok(Timing {
        home: at_home,
        all,
        cpu: cpu_since(&pids, &before),
    })
}

/// Runs `count` jobs made by `job`, [`IN_FLIGHT`] at a time; how many returned `true`.
async fn pipelined<F, Fut>(count: usize, job: F) -> anyhow::Result<usize>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send + 'static,
{
    let done = in_flight(count, IN_FLIGHT, job).await?;
    Ok(done.into_iter().filter(|ok| *ok).count())
}

/// Runs `count` jobs made by `job`, `width` at a time; their results, in completion order.
pub(super) async fn in_flight<F, Fut, T>(
    count: usize,
    width: usize,
    job: F,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(count);
    for i in 0..count {
        if set.len() >= width.max(1) {
            if let Some(r) = set.join_next().await {
                done.push(r??);
            }
        }
        set.spawn(job(i));
    }
    while let Some(r) = set.join_next().await {
        done.push(r??);
    }
    Ok(done)
}

/// The three [`NODES`] on SQLite files, the home's actor in custody.
pub(super) fn specs() -> Vec<NodeSpec> {
    NODES
        .iter()
        .enumerate()
        .map(|(i, (node, name))| NodeSpec {
            id: (*node).to_owned(),
            actors: vec![((*name).to_owned(), i == 0)],
            backend: Backend::Sqlite,
        })
        .collect()
}

/// The workload on three `sst node run` processes.
async fn networked(dir: &Path, events: usize) -> anyhow::Result<Timing> {
    let _ = std::fs::remove_dir_all(dir);
    let running = Running::up(dir, &specs()).await?;
    for n in &running.manifest.nodes {
        println!("   node {:<8} pid {}", n.id, n.pid);
    }
    let result = measure(&running, events).await;
    let stopped = running.stop().await?;
    ensure!(
        stopped.iter().all(|s| *s == super::Stopped::Terminated),
        "nodes did not all stop on SIGTERM: {stopped:?}"
    );
    result
}

async fn measure(running: &Running, events: usize) -> anyhow::Result<Timing> {
    let home = running.manifest.node(NODES[0].0)?;
    let client = Arc::new(home.client(&actor(0))?);
    let id = StateId::from(STATE);
    let v = client
        .submit(IntentBody::Create {
            state_id: id.clone(),
            contract: ContractRef::new("real-estate-deal", 1),
            parties: parties(),
            sections: create_sections(),
        })
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    replicated(&client, &id, 1).await?;
    let mut pids: Vec<(String, String)> = running
        .manifest
        .nodes
        .iter()
        .map(|n| (n.id.clone(), n.pid.to_string()))
        .collect();
    pids.push(("client (this process)".to_owned(), "self".to_owned()));
    let before: Vec<_> = pids.iter().map(|(_, p)| cpu_seconds(p)).collect();
    let t = Instant::now();
    let applied = pipelined(events, |i| {
        let client = client.clone();
        async move {
            let intent = IntentBody::Change {
                state_id: STATE.into(),
                sections: change_sections(i),
            };
            Ok(client.submit_custody(actor(0), intent).await?.is_applied())
        }
    })
    .await?;
    let at_home = t.elapsed();
    ensure!(applied == events, "only {applied} of {events} applied");
    let last = events as u64 + 1;
    replicated(&client, &id, last).await?;
    let all = t.elapsed();
    let cpu = cpu_since(&pids, &before);
    // Every node holds the same root (read through each node's own actor).
    let mut roots = Vec::new();
    for (i, (node, _)) in NODES.iter().enumerate() {
        let c = running.manifest.node(node)?.client(&actor(i))?;
        let s = c.state(&id).await?.context("state missing")?;
        roots.push((s.version, s.root));
    }
    ensure!(
        roots.windows(2).all(|w| w[0] == w[1]) && roots[0].0 == last,
        "networked roots differ: {roots:?}"
    );
    Ok(Timing {
        home: at_home,
        all,
        cpu,
    })
}

/// Polls the home's sync status (every 5 ms) until both replicas acknowledged `version`.
async fn replicated(client: &sst_client::Client, id: &StateId, version: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let status = client.status(id).await?.context("no sync status")?;
        let acked = status
            .nodes
            .iter()
            .filter(|n| n.node.as_str() != NODES[0].0 && n.acknowledged >= version)
            .count();
        if acked == NODES.len() - 1 {
            return Ok(());
        }
        ensure!(
            start.elapsed() < REPLICATION_DEADLINE,
            "replicas did not acknowledge version {version} within {REPLICATION_DEADLINE:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
