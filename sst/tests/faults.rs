//! Fault tests across node processes (issue 10, deliverable 6), run by `cargo xtask faults`
//! (ignored in the plain `cargo test`: they need PostgreSQL, MariaDB/MySQL and a MongoDB
//! server, whose URLs `SST_POSTGRES_URL`, `SST_MYSQL_URL`, `SST_MONGO_URL` name):
//!
//! - **kills**: four `sst node run` processes on four backends while intents flow; kill -9 a
//!   replica and the home at seeded random points, restart them on the same store; nothing
//!   acknowledged is lost or applied twice, versions are consecutive, roots converge;
//! - **partition**: a fault-injecting TCP proxy ([`proxy`]) between the home and a replica
//!   delays, cuts and blackholes traffic, then heals; the home keeps answering, the cut-off
//!   replica falls behind, and after healing every node converges; the TLS bytes of a
//!   captured connection replayed later change nothing;
//! - **intruders**: a stranger's key (peer or client) is refused at the handshake; a sync
//!   message captured by a relay holding the nodes' keys and replayed later changes nothing;
//!   a registered node sending a change of a state it does not sequence is refused and the
//!   refusal recorded on the receiver.
//!
//! Each prints one `faults:` line with its counts. Loopback only; every loop is bounded in
//! count and time; every node process is killed when its cluster is dropped.

#[path = "faults/cluster.rs"]
mod cluster;
#[path = "faults/proxy.rs"]
mod proxy;

#[path = "support/rng.rs"]
mod rng;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use sst::core::{
    ActorKey, ContractRef, EventId, NodeKey, NodeRegistry, OriginSeq, Outcome, Parties,
    SectionHash, State, StateId, StateRoot, Store,
};
use sst::node::{AppliedChange, EventBuilder, HomeMessage, Intent, ProtocolEnvelope};
use sst_client::api::{ErrorCode, IntentBody, SignedIntent, VerdictBody};
use sst_client::{Client, ClientError};

use cluster::{read_actor_key, Cluster};
use proxy::{Mode, Proxy};
use rng::Rng;

/// Longest wait for replicas to converge.
const CONVERGE: Duration = Duration::from_secs(60);
/// Pause between two intents ("a few per second").
const PACE: Duration = Duration::from_millis(200);

/// The seed: `SST_FAULTS_SEED`, else the clock.
fn seed() -> anyhow::Result<u64> {
    match std::env::var("SST_FAULTS_SEED") {
        Ok(s) => s.parse().context("SST_FAULTS_SEED is not a number"),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64),
    }
}

/// A server URL from `var`, which `cargo xtask faults` sets.
fn server_url(var: &str) -> anyhow::Result<String> {
    std::env::var(var)
        .ok()
        .filter(|u| !u.is_empty())
        .with_context(|| format!("{var} is not set: run these tests with `cargo xtask faults`"))
}

/// A name unique to this run (schema, database, collection prefix).
fn unique(tag: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    format!("sst_faults_{tag}_{}_{now}", std::process::id())
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{name}={value}")
}

fn values(v: Value) -> anyhow::Result<BTreeMap<String, Value>> {
    Ok(serde_json::from_value(v)?)
}

/// A deal homed at the cluster's first node: its `alice` buys, `ops` sells, every other
/// node's `alice` is a regulator (so every node holds it).
async fn create_deal(c: &Cluster, home: &Client, id: &str) -> anyhow::Result<StateId> {
    let mut parties = Parties::default()
        .with("buyer", format!("{}/alice", c.nodes[0].id))
        .with("seller", c.ops.as_str());
    for n in &c.nodes[1..] {
        parties = parties.with("regulator", format!("{}/alice", n.id));
    }
    let state = StateId::from(id);
    let verdict = home
        .submit(IntentBody::Create {
            state_id: state.clone(),
            contract: ContractRef::new("real-estate-deal", 1),
            parties,
            sections: values(json!({"common": {"address": format!("{id} Loop Road")}}))?,
        })
        .await?;
    ensure!(verdict.is_applied(), "create {id}: {verdict:?}");
    Ok(state)
}

fn change(state: &StateId, n: u64) -> IntentBody {
    let sections = BTreeMap::from([(
        "common".to_owned(),
        json!({"address": format!("{state} Loop Road"), "n": n}),
    )]);
    IntentBody::Change {
        state_id: state.clone(),
        sections,
    }
}

/// Signs `intent` on `state` as `client`'s actor with `key` (the node never sees the key),
/// ready to post, and to post again with the very same signature.
async fn sign(client: &Client, key: &ActorKey, intent: IntentBody) -> anyhow::Result<SignedIntent> {
    let state = intent.state_id().clone();
    let grant = client.reserve().await?;
    let current = client
        .state(&state)
        .await?
        .with_context(|| format!("state {state} unknown to the home"))?;
    let built = EventBuilder::new(grant.origin_node, client.actor().clone(), key).build(
        grant.origin_seq,
        &Intent::from(intent),
        Some(&current),
    )?;
    Ok(SignedIntent {
        signed: built.signed,
        disclosures: built.disclosures,
    })
}

/// Every state's version and root on `client`'s node.
async fn snapshot(
    client: &Client,
    states: &[StateId],
) -> anyhow::Result<BTreeMap<StateId, (u64, StateRoot)>> {
    let mut out = BTreeMap::new();
    for s in states {
        if let Some(st) = client.state(s).await? {
            out.insert(s.clone(), (st.version, st.root));
        }
    }
    Ok(out)
}

/// Polls until every node holds every state at the home's version and root; the time taken.
async fn converge(clients: &[&(String, Client)], states: &[StateId]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let home = snapshot(&clients[0].1, states).await?;
        let mut behind = Vec::new();
        for (id, c) in &clients[1..] {
            // A node that is restarting does not answer yet: behind, not an error.
            match snapshot(c, states).await {
                Ok(s) if s == home => {}
                Ok(s) => behind.push(format!("{id} at {:?}", versions(&s))),
                Err(e) => behind.push(format!("{id}: {e}")),
            }
        }
        if behind.is_empty() && home.len() == states.len() {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < CONVERGE,
            "not converged after {CONVERGE:?}: home at {:?}; {}",
            versions(&home),
            behind.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every entry of `clients`, by reference.
fn all(clients: &[(String, Client)]) -> Vec<&(String, Client)> {
    clients.iter().collect()
}

fn versions(s: &BTreeMap<StateId, (u64, StateRoot)>) -> BTreeMap<String, u64> {
    s.iter().map(|(k, (v, _))| (k.to_string(), *v)).collect()
}

/// What the workload saw acknowledged.
#[derive(Default)]
struct Tally {
    /// Applied intents: event → (state, version).
    applied: BTreeMap<EventId, (StateId, u64)>,
    /// Intents acknowledged as rejected.
    rejected: u64,
    /// Client-signed intents posted again with the same signature after a failure.
    retried: u64,
    /// Of those, the ones the node had already recorded (answered `duplicate`).
    duplicates: u64,
    /// Custody submissions cut off by a kill: outcome unknown, never acknowledged.
    unknown: u64,
    /// Cut-off client-signed intents whose sequence went to another event meanwhile (so
    /// never recorded): dropped.
    resigned: u64,
}

impl Tally {
    fn record(&mut self, state: &StateId, v: &VerdictBody) -> anyhow::Result<()> {
        match v {
            VerdictBody::Applied { event, version, .. }
            | VerdictBody::Duplicate {
                event,
                original: Outcome::Applied { version, .. },
            } => {
                if self
                    .applied
                    .insert(*event, (state.clone(), *version))
                    .is_some()
                {
                    bail!("event {event} acknowledged as applied twice");
                }
            }
            VerdictBody::Rejected { .. }
            | VerdictBody::Duplicate {
                original: Outcome::Rejected { .. },
                ..
            } => self.rejected += 1,
            other => bail!("intent on {state} neither applied nor rejected: {other:?}"),
        }
        Ok(())
    }
}

fn connection_lost(e: &ClientError) -> bool {
    matches!(e, ClientError::Connection { .. })
}

/// Checks every node's event stream against the acknowledgements: each applied
/// acknowledged event exactly once at its version, each state's applied versions
/// consecutive from 1 to the version held. Returns (lost, duplicated).
async fn audit(
    clients: &[(String, Client)],
    states: &[StateId],
    tally: &Tally,
) -> anyhow::Result<(u64, u64, Vec<String>)> {
    let (mut lost, mut duplicated, mut problems) = (0, 0, Vec::new());
    for (id, c) in clients {
        let mut stream = c.events(0, false).await?;
        let mut seen: BTreeMap<EventId, Vec<u64>> = BTreeMap::new();
        let mut by_state: BTreeMap<StateId, Vec<u64>> = BTreeMap::new();
        let mut count = 0;
        while let Some(e) = stream.next().await? {
            count += 1;
            ensure!(count < 100_000, "{id}: endless event stream");
            let state = &e.record.event().state_id;
            if !states.contains(state) {
                continue;
            }
            if let Outcome::Applied { version, .. } = e.record.outcome {
                seen.entry(e.record.id()).or_default().push(version);
                by_state.entry(state.clone()).or_default().push(version);
            }
        }
        for (event, (state, version)) in &tally.applied {
            match seen.get(event).map(Vec::as_slice) {
                None => {
                    lost += 1;
                    problems.push(format!(
                        "{id}: acknowledged {event} ({state} v{version}) missing"
                    ));
                }
                Some([v]) if v == version => {}
                Some(vs) => {
                    duplicated += 1;
                    problems.push(format!(
                        "{id}: {event} recorded at versions {vs:?}, acknowledged at v{version}"
                    ));
                }
            }
        }
        let held = snapshot(c, states).await?;
        for s in states {
            let mut vs = by_state.remove(s).unwrap_or_default();
            vs.sort_unstable();
            let top = held.get(s).map_or(0, |(v, _)| *v);
            let expected: Vec<u64> = (1..=top).collect();
            if vs != expected {
                duplicated += vs.windows(2).filter(|w| w[0] == w[1]).count() as u64;
                problems.push(format!(
                    "{id}: {s} applied versions {vs:?}, expected 1..={top}"
                ));
            }
        }
    }
    Ok((lost, duplicated, problems))
}

/// `result`, after printing every node's log tail when it is an error.
fn with_logs<F>(cluster: &Cluster, result: anyhow::Result<F>) -> anyhow::Result<F> {
    if result.is_err() {
        for n in &cluster.nodes {
            let text = n.log_text();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("--- last lines of node {} ---", n.id);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, MariaDB/MySQL and MongoDB: run `cargo xtask faults`"]
async fn kill_9_of_a_replica_and_the_home_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let started = Instant::now();
    let seed = seed()?;
    println!("faults: kills: seed {seed} (SST_FAULTS_SEED={seed} repeats it)");
    let mut rng = Rng(seed);
    let name = unique("k");
    let stores = [
        (
            "home",
            with_param(&server_url("SST_POSTGRES_URL")?, "schema", &name),
        ),
        ("lite", "sqlite".to_owned()),
        (
            "maria",
            with_param(&server_url("SST_MYSQL_URL")?, "database", &name),
        ),
        ("mongo", {
            let url = server_url("SST_MONGO_URL")?;
            let (base, query) = url.split_once('?').unwrap_or((&url, ""));
            let base = base.trim_end_matches('/');
            // The database is the URL's path: replace any with this run's.
            let host_end = base.find("://").map_or(0, |i| i + 3);
            let base = match base[host_end..].find('/') {
                Some(i) => &base[..host_end + i],
                None => base,
            };
            if query.is_empty() {
                format!("{base}/{name}")
            } else {
                format!("{base}/{name}?{query}")
            }
        }),
    ];
    let mut cluster = Cluster::prepare("kills", &stores)?;
    cluster.configure(&BTreeMap::new())?;
    let result = kills(&mut cluster, &mut rng).await;
    let result = with_logs(&cluster, result);
    println!("faults: kills: {:.1} s", started.elapsed().as_secs_f64());
    result
}

/// The intents of the kill test, all on the home: client-signed ones (kept until answered,
/// and posted again with the same signature when a kill cut them off) and custody ones.
struct Workload<'a> {
    home: &'a Client,
    alice: ActorKey,
    ops: String,
    states: Vec<StateId>,
    tally: Tally,
    /// A client-signed intent whose answer a kill cut off.
    pending: Option<(StateId, SignedIntent)>,
    /// Intents made so far.
    n: u64,
}

impl Workload<'_> {
    /// One intent (or the pending one again); `Ok(false)` when the home could not be
    /// reached.
    async fn step(&mut self) -> anyhow::Result<bool> {
        let home = self.home;
        if let Some((state, signed)) = self.pending.take() {
            self.tally.retried += 1;
            return match home.post_signed(&signed).await {
                Ok(v) => {
                    if matches!(v, VerdictBody::Duplicate { .. }) {
                        self.tally.duplicates += 1;
                    }
                    self.tally.record(&state, &v)?;
                    Ok(true)
                }
                Err(e) if connection_lost(&e) => {
                    self.tally.retried -= 1;
                    self.pending = Some((state, signed));
                    Ok(false)
                }
                Err(e) if e.code() == Some(ErrorCode::OriginTaken) => {
                    // Its sequence went to another event after the restart: then it was
                    // never recorded, nor acknowledged.
                    let id = signed.signed.id;
                    let found = home.outcome(&id, Duration::ZERO).await?;
                    ensure!(found.is_none(), "{id} recorded, yet its sequence is taken");
                    self.tally.resigned += 1;
                    Ok(true)
                }
                Err(e) => Err(e.into()),
            };
        }
        let i = self.n;
        self.n += 1;
        let state = self.states[(i % 2) as usize].clone();
        if i % 3 == 2 {
            // Custody: the node signs for ops.
            return match home
                .submit_custody(self.ops.as_str(), change(&state, i))
                .await
            {
                Ok(v) => self.tally.record(&state, &v).map(|()| true),
                Err(e) if connection_lost(&e) => {
                    self.tally.unknown += 1;
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            };
        }
        let signed = match sign(home, &self.alice, change(&state, i)).await {
            Ok(s) => s,
            Err(e) => match e.downcast_ref::<ClientError>() {
                Some(ce) if connection_lost(ce) => return Ok(false),
                _ => return Err(e),
            },
        };
        match home.post_signed(&signed).await {
            Ok(v) => self.tally.record(&state, &v).map(|()| true),
            Err(e) if connection_lost(&e) => {
                self.pending = Some((state, signed));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

async fn kills(cluster: &mut Cluster, rng: &mut Rng) -> anyhow::Result<()> {
    cluster.start_all().await?;
    let clients: Vec<(String, Client)> = cluster
        .nodes
        .iter()
        .map(|n| Ok((n.id.clone(), n.client()?)))
        .collect::<anyhow::Result<_>>()?;
    let home = &clients[0].1;
    let states = vec![
        create_deal(cluster, home, "deal-a").await?,
        create_deal(cluster, home, "deal-b").await?,
    ];
    let mut work = Workload {
        home,
        alice: read_actor_key(&cluster.nodes[0].alice)?,
        ops: cluster.ops.clone(),
        states: states.clone(),
        tally: Tally::default(),
        pending: None,
        n: 0,
    };
    const STEPS: u64 = 40;
    const KILLS: u64 = 4;
    /// Most intents sent back to back while a kill is under way.
    const BURST: u64 = 30;
    // One kill in each quarter of the run, replica and home alternating (which replica:
    // random), at a random moment of a burst of intents; each node down for 1 to 3 steps.
    let window = STEPS / KILLS;
    let mut plan: BTreeMap<u64, (usize, u64, u64)> = BTreeMap::new();
    for k in 0..KILLS {
        let at = k * window + rng.range(1, window / 2);
        let target = if k % 2 == 0 {
            rng.range(1, cluster.nodes.len() as u64) as usize
        } else {
            0
        };
        plan.insert(at, (target, rng.range(1, 4), rng.range(0, 200)));
    }
    let (mut kills, mut restarts, mut home_kills) = (0u64, 0u64, 0u64);
    let mut restart_at: BTreeMap<u64, usize> = BTreeMap::new();
    let budget = Instant::now() + Duration::from_secs(120);
    for i in 0..STEPS {
        ensure!(Instant::now() < budget, "workload over its 120 s budget");
        if let Some(node) = restart_at.remove(&i) {
            cluster.start(node).await?;
            restarts += 1;
        }
        let home_up = cluster.nodes[0].running();
        match plan.get(&i).copied() {
            Some((target, down_for, delay_ms)) => {
                // A burst of intents, and the kill somewhere in it.
                let burst = async {
                    for _ in 0..BURST {
                        if !work.step().await? {
                            break;
                        }
                    }
                    Ok::<_, anyhow::Error>(())
                };
                let node = &mut cluster.nodes[target];
                let kill = async {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    node.kill9()
                };
                let (a, b) = tokio::join!(burst, kill);
                a?;
                b?;
                kills += 1;
                home_kills += u64::from(target == 0);
                restart_at.insert(i + down_for, target);
            }
            None if home_up => {
                work.step().await?;
            }
            None => {}
        }
        tokio::time::sleep(PACE).await;
    }
    for (_, node) in std::mem::take(&mut restart_at) {
        cluster.start(node).await?;
        restarts += 1;
    }
    // The last interrupted client-signed intent, posted again with the same signature.
    for _ in 0..50 {
        if work.pending.is_none() {
            break;
        }
        if !work.step().await? {
            tokio::time::sleep(PACE).await;
        }
    }
    ensure!(
        work.pending.is_none(),
        "an interrupted intent never got an answer"
    );
    let tally = work.tally;
    let took = converge(&all(&clients), &states).await?;
    let (lost, duplicated, problems) = audit(&clients, &states, &tally).await?;
    let home_versions = versions(&snapshot(home, &states).await?);
    println!(
        "faults: kills {kills} ({home_kills} of the home), restarts {restarts}, events \
         acknowledged {} (applied {}, rejected {}; {} cut off by a kill and posted again with \
         the same signature, {} of them already recorded, {} never recorded and signed anew), \
         custody answers cut off {}, lost {lost}, duplicated {duplicated}, roots equal on {} \
         nodes (postgres, sqlite, mysql, mongo) {:.1} s after the last restart, versions \
         {home_versions:?}",
        tally.applied.len() as u64 + tally.rejected,
        tally.applied.len(),
        tally.rejected,
        tally.retried,
        tally.duplicates,
        tally.resigned,
        tally.unknown,
        clients.len(),
        took.as_secs_f64(),
    );
    ensure!(
        problems.is_empty(),
        "acknowledged events lost or duplicated:\n{}",
        problems.join("\n")
    );
    ensure!(
        kills == KILLS && restarts == KILLS,
        "kills {kills}, restarts {restarts}"
    );
    ensure!(!tally.applied.is_empty(), "nothing was acknowledged");
    Ok(())
}

/// The home's copy of state `s` on a SQLite node, and its log head position.
async fn sqlite_view(
    node: &cluster::NodeProc,
    s: &StateId,
) -> anyhow::Result<(Option<State>, u64, usize)> {
    let path = node.dir.join(format!("{}.db", node.id));
    let store = sst::sqlite::SqliteStore::open(sst::sqlite::SqliteConfig::file(&path).read_only())
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let state = store.state(s).await?;
    let head = store.log_head().await?.pos;
    let refusals = store.refusals(None).await?.len();
    Ok((state, head, refusals))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "part of `cargo xtask faults`"]
async fn a_partition_delays_and_cuts_a_replica_and_healing_converges() -> anyhow::Result<()> {
    let started = Instant::now();
    let stores = [
        ("home", "sqlite".to_owned()),
        ("cut", "sqlite".to_owned()),
        ("other", "sqlite".to_owned()),
    ];
    let mut cluster = Cluster::prepare("partition", &stores)?;
    // home -> cut and cut -> home both through a proxy.
    let to_cut = Proxy::start(cluster.node("cut")?.listen).await?;
    let to_home = Proxy::start(cluster.node("home")?.listen).await?;
    let via = BTreeMap::from([
        (("home".to_owned(), "cut".to_owned()), to_cut.addr()),
        (("cut".to_owned(), "home".to_owned()), to_home.addr()),
    ]);
    cluster.configure(&via)?;
    let result = partition(&mut cluster, &[&to_cut, &to_home]).await;
    let result = with_logs(&cluster, result);
    println!(
        "faults: partition: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}

async fn partition(cluster: &mut Cluster, proxies: &[&Proxy]) -> anyhow::Result<()> {
    cluster.start_all().await?;
    let clients: Vec<(String, Client)> = cluster
        .nodes
        .iter()
        .map(|n| Ok((n.id.clone(), n.client()?)))
        .collect::<anyhow::Result<_>>()?;
    let home = &clients[0].1;
    let cut = &clients[1].1;
    let states = vec![create_deal(cluster, home, "deal-p").await?];
    let s = &states[0];
    let mut n = 0;
    let mut apply = |count: u64| {
        let start = n;
        n += count;
        async move {
            for i in start..start + count {
                let v = home.submit(change(s, i)).await?;
                ensure!(
                    v.is_applied(),
                    "change {i} during the partition test: {v:?}"
                );
                tokio::time::sleep(PACE / 2).await;
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    apply(3).await?;
    converge(&all(&clients), &states).await?;

    // Delay every chunk both ways.
    for p in proxies {
        p.set(Mode::Delay(Duration::from_millis(150)));
    }
    apply(4).await?;
    let delayed = converge(&all(&clients), &states).await?;

    // Cut: connections closed, new ones refused; then blackholed.
    let held = snapshot(cut, &states).await?[s].0;
    for p in proxies {
        p.set(Mode::Cut);
    }
    apply(4).await?;
    for p in proxies {
        p.set(Mode::Blackhole);
    }
    apply(4).await?;
    // The other replica follows the home; the cut one stays where it was.
    converge(&[&clients[0], &clients[2]], &states).await?;
    let home_version = snapshot(home, &states).await?[s].0;
    let cut_version = snapshot(cut, &states).await?[s].0;
    ensure!(
        cut_version == held && home_version == held + 8,
        "during the partition the home is at v{home_version}, the cut-off replica at \
         v{cut_version} (held v{held} when cut)"
    );
    let refused: u64 = proxies
        .iter()
        .map(|p| {
            p.counts()
                .refused
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    let dropped: u64 = proxies
        .iter()
        .map(|p| {
            p.counts()
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();

    // Heal.
    for p in proxies {
        p.set(Mode::Pass);
    }
    let healed = converge(&all(&clients), &states).await?;

    // The TLS bytes of the first captured home -> cut connection, replayed now on a fresh
    // connection: refused by the TLS handshake, nothing changes on the replica.
    let captured = proxies[0].captured();
    let replay = captured
        .iter()
        .find(|c| !c.is_empty())
        .context("no captured connection")?;
    let before = sqlite_view(&cluster.nodes[1], s).await?;
    let answer = replay_bytes(cluster.nodes[1].listen, replay).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = sqlite_view(&cluster.nodes[1], s).await?;
    ensure!(
        before.1 == after.1
            && before.0.as_ref().map(|s| (s.version, s.root))
                == after.0.as_ref().map(|s| (s.version, s.root)),
        "a replayed connection changed the replica: log head {} -> {}",
        before.1,
        after.1
    );
    println!(
        "faults: partition: delayed 150 ms per chunk, converged in {:.1} s; cut {refused} \
         connections and blackholed {dropped} bytes while the home applied 8 changes \
         (v{held} -> v{home_version}) and the cut-off replica stayed at v{cut_version}; healed: \
         roots equal on {} nodes after {:.1} s; {} captured TLS bytes replayed ({} bytes \
         answered): version, root and log head unchanged",
        delayed.as_secs_f64(),
        clients.len(),
        healed.as_secs_f64(),
        replay.len(),
        answer
    );
    Ok(())
}

/// Writes `bytes` on a fresh connection to `addr` and reads until it closes (at most 2 s);
/// how many bytes came back.
async fn replay_bytes(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<usize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let _ = tcp.write_all(bytes).await;
    let _ = tcp.shutdown().await;
    let mut got = 0;
    let mut buf = vec![0u8; 16 << 10];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => {}
        }
    }
    Ok(got)
}

/// A peer-transport endpoint of the test itself, as node `id` with `key`, sending to `to`.
async fn endpoint(
    id: &str,
    key: NodeKey,
    registry: NodeRegistry,
    to: (&str, SocketAddr),
) -> anyhow::Result<sst_net::NetNode> {
    let config = sst_net::NetConfig::new(id, key, registry, "127.0.0.1:0".parse()?)
        .with_peer(to.0, to.1.to_string());
    Ok(sst_net::start(config).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "part of `cargo xtask faults`"]
async fn strangers_replays_and_changes_from_a_non_home_are_refused() -> anyhow::Result<()> {
    let started = Instant::now();
    let stores = [
        ("home", "sqlite".to_owned()),
        ("r1", "sqlite".to_owned()),
        ("r2", "sqlite".to_owned()),
    ];
    let mut cluster = Cluster::prepare("intruders", &stores)?;
    // home -> r1 through a relay holding both nodes' keys, which keeps what it forwards.
    let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = relay_listener.local_addr()?;
    cluster.configure(&BTreeMap::from([(
        ("home".to_owned(), "r1".to_owned()),
        relay_addr,
    )]))?;
    let registry = cluster.registry();
    let r1 = cluster.node("r1")?;
    let as_r1 = sst_net::start_on(
        sst_net::NetConfig::new("r1", r1.node_key()?, registry.clone(), relay_addr),
        relay_listener,
    )
    .await?;
    let as_home = endpoint(
        "home",
        cluster.node("home")?.node_key()?,
        registry.clone(),
        ("r1", r1.listen),
    )
    .await?;
    let captured: Arc<Mutex<Vec<ProtocolEnvelope>>> = Arc::default();
    let relay = tokio::spawn(relay(
        as_r1.inbox,
        as_home.transport.clone(),
        captured.clone(),
    ));
    let result = intruders(&mut cluster, &registry, &as_home, &captured).await;
    relay.abort();
    as_r1.server.shutdown().await;
    as_home.server.shutdown().await;
    let result = with_logs(&cluster, result);
    println!(
        "faults: intruders: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// Forwards what the home sends to r1, keeping a copy of each applied change.
async fn relay(
    mut inbox: sst::node::Inbox,
    to_r1: Arc<sst_net::NetTransport>,
    captured: Arc<Mutex<Vec<ProtocolEnvelope>>>,
) {
    use sst::node::Transport;
    while let Some(delivery) = inbox.recv().await {
        let (_from, envelope, receipt) = delivery.into_parts();
        if envelope
            .decode::<HomeMessage>()
            .is_ok_and(|m| matches!(m, HomeMessage::Applied(_)))
        {
            captured
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(envelope.clone());
        }
        // Bounded: r1 stays up in this test.
        for _ in 0..100 {
            if to_r1.send(&"r1".into(), envelope.clone()).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(receipt);
    }
}

async fn intruders(
    cluster: &mut Cluster,
    registry: &NodeRegistry,
    as_home: &sst_net::NetNode,
    captured: &Mutex<Vec<ProtocolEnvelope>>,
) -> anyhow::Result<()> {
    use sst::node::Transport;
    cluster.start_all().await?;
    let clients: Vec<(String, Client)> = cluster
        .nodes
        .iter()
        .map(|n| Ok((n.id.clone(), n.client()?)))
        .collect::<anyhow::Result<_>>()?;
    let home = &clients[0].1;
    let states = vec![create_deal(cluster, home, "deal-x").await?];
    let s = &states[0];
    for i in 0..3 {
        ensure!(home.submit(change(s, i)).await?.is_applied());
    }
    converge(&all(&clients), &states).await?;
    let first = captured
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .first()
        .cloned()
        .context("the relay captured no applied change")?;
    let first_version = match first.decode::<HomeMessage>()? {
        HomeMessage::Applied(ch) => ch.version,
        _ => bail!("not an applied change"),
    };
    // Later: two more changes, then the captured message again, as the home would send it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 3..5 {
        ensure!(home.submit(change(s, i)).await?.is_applied());
    }
    converge(&all(&clients), &states).await?;
    let r1 = &cluster.nodes[1];
    let before = sqlite_view(r1, s).await?;
    let key_of = |v: &(Option<State>, u64, usize)| v.0.as_ref().map(|st| (st.version, st.root));
    as_home
        .transport
        .send(&"r1".into(), first.clone())
        .await
        .map_err(|e| anyhow::anyhow!("replay not delivered: {e}"))?;
    let after_replay = sqlite_view(r1, s).await?;
    ensure!(
        key_of(&before) == key_of(&after_replay)
            && before.1 == after_replay.1
            && before.2 == after_replay.2,
        "the replayed v{first_version} changed r1: {:?} log head {} -> {:?} log head {}",
        key_of(&before),
        before.1,
        key_of(&after_replay),
        after_replay.1
    );

    // Strangers: a node key not in the registry, one claiming a registered id, and a client
    // key that is no actor's.
    let mut refused = 0;
    for claimed in ["stranger", "r2"] {
        let key = NodeKey::generate();
        let fake = NodeRegistry::new()
            .with(claimed.into(), key.public_key())
            .with("r1".into(), r1.public);
        let node = endpoint(claimed, key, fake, ("r1", r1.listen)).await?;
        let sent = tokio::time::timeout(
            Duration::from_secs(20),
            node.transport.send(&"r1".into(), first.clone()),
        )
        .await;
        node.server.shutdown().await;
        match sent {
            Ok(Err(_)) => refused += 1,
            Ok(Ok(())) => bail!("r1 took a message from an unregistered key claiming `{claimed}`"),
            Err(_) => bail!("sending as an unregistered `{claimed}` neither failed nor succeeded"),
        }
    }
    let stranger = Client::with_tls(r1.api, "r1/alice", ActorKey::generate(), r1.public)?;
    match stranger.health().await {
        Err(ClientError::Connection { .. }) => refused += 1,
        other => bail!("a client with a stranger's key was let in: {other:?}"),
    }

    // A registered node (r2, with its own key) sends r1 a change of deal-x, which the home
    // sequences: a valid signature of the buyer, a version and root that fit, but the wrong
    // sequencer.
    let current = before.0.clone().context("r1 holds no deal-x")?;
    let alice = read_actor_key(&cluster.nodes[0].alice)?;
    let built = EventBuilder::new("home", "home/alice", &alice).build(
        OriginSeq(1_000_000),
        &Intent::from(change(s, 99)),
        Some(&current),
    )?;
    let next = built
        .applied(Some(&current))
        .and_then(|item| item.state)
        .context("no next version")?;
    let effects: BTreeMap<String, SectionHash> = built
        .disclosures
        .keys()
        .filter_map(|name| next.sections.get(name).map(|sec| (name.clone(), sec.hash)))
        .collect();
    let forged_id = built.signed.id;
    let forged = HomeMessage::Applied(Box::new(AppliedChange {
        signed: built.signed,
        disclosures: built.disclosures,
        effects,
        version: next.version,
        root: next.root,
        receipt: Some(sst::core::SequencingReceipt::sign(
            "r2".into(),
            &cluster.nodes[2].node_key()?,
            &forged_id,
            s,
            &Outcome::Applied {
                version: next.version,
                root: next.root,
            },
            &[],
        )),
        business_events: Vec::new(),
        endorsements: Vec::new(),
    }))
    .envelope()?;
    let as_r2 = endpoint(
        "r2",
        cluster.nodes[2].node_key()?,
        registry.clone(),
        ("r1", r1.listen),
    )
    .await?;
    let sent = as_r2.transport.send(&"r1".into(), forged).await;
    as_r2.server.shutdown().await;
    sent.map_err(|e| anyhow::anyhow!("the forged change was not delivered: {e}"))?;
    let after = sqlite_view(r1, s).await?;
    ensure!(
        key_of(&after) == key_of(&before),
        "r1 applied a change r2 sent for a state the home sequences: {:?} -> {:?}",
        key_of(&before),
        key_of(&after)
    );
    let home_now = snapshot(home, &states).await?;
    ensure!(
        home_now[s].0 == current.version,
        "the home moved to v{} meanwhile",
        home_now[s].0
    );
    let store = sst::sqlite::SqliteStore::open(
        sst::sqlite::SqliteConfig::file(r1.dir.join("r1.db")).read_only(),
    )
    .await?;
    let recorded: BTreeSet<(EventId, String)> = store
        .refusals(Some(s))
        .await?
        .into_iter()
        .map(|r| (r.event, r.from_node.to_string()))
        .collect();
    ensure!(
        recorded.contains(&(forged_id, "r2".to_owned())),
        "r1 refused the change r2 sent for deal-x (sequenced by home) but recorded no refusal \
         of it (refusals on r1: {recorded:?})"
    );
    println!(
        "faults: intruders: {refused} strangers refused at the handshake (peer key not in the \
         registry, unregistered key claiming r2, client key of no actor); the captured v{first_version} \
         replayed at v{} changed nothing (version, root, log head {}); r2's change of a state \
         the home sequences refused and recorded on r1",
        current.version, after_replay.1
    );
    Ok(())
}
