//! `sst bench --protocols` (run by `cargo xtask bench protocols`): the two sync protocols on
//! the same three node processes (a home node and two replicas over loopback, HTTP/2 +
//! mutual TLS 1.3, SQLite files) in one run. Two JavaScript contracts that differ only in
//! their `sync` choice are deployed at run time — `bench-home` (the home-node protocol) and
//! `bench-endorsed` (`endorsed`, policy `all`: every participant node, the home included,
//! countersigns each change) — and the same workload runs on each: direct section changes of
//! a few states (`--states`, 8 by default), many in flight, through the home's client API. Each protocol is measured for
//! events/s (at the home node, and until every node holds the last version) and for the
//! latency of a change (submit to verdict), under load and one at a time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::json;
use sst::core::{ActorKey, ContractRecord, ContractRef, HashAlg, StateId};
use sst_client::api::IntentBody;
use sst_client::Client;

use super::bench::{actor, change_sections, in_flight, parties, rate, specs, IN_FLIGHT, NODES};
use super::Running;

/// Longest wait for every node to hold the last versions.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(180);

/// The benchmark contract `name`: one section every party reads and writes, no hooks, and
/// `sync` (a JavaScript expression) when given.
fn contract_source(name: &str, sync: Option<&str>) -> String {
    let sync = sync.map_or(String::new(), |s| format!(",\n  sync: {s}"));
    format!(
        "// `sst bench --protocols`: direct section changes, nothing else.\n\
         export const contract = {{\n  name: \"{name}\",\n  version: 1,\n  \
         sections: {{ common: {{ read: [\"*\"], write: [\"*\"] }} }},\n  supersedes: []{sync}\n}};\n"
    )
}

/// The two protocols: label, contract name, `sync`.
const PROTOCOLS: [(&str, &str, Option<&str>); 2] = [
    ("home", "bench-home", None),
    (
        "endorsed",
        "bench-endorsed",
        Some("{ protocol: \"endorsed\", policy: { kind: \"all\" }, timeout_ms: 10000 }"),
    ),
];

/// What one protocol's run measured.
#[derive(Debug, Clone)]
struct Measured {
    /// Changes applied.
    events: usize,
    /// Until the home answered every change.
    home: Duration,
    /// Until every node held the last version of every state.
    all: Duration,
    /// Submit-to-verdict latencies under load, sorted.
    loaded: Vec<Duration>,
    /// Submit-to-verdict latencies one at a time, sorted.
    single: Vec<Duration>,
}

/// The `q`-quantile of sorted `d` (nearest rank).
fn quantile(d: &[Duration], q: f64) -> Duration {
    if d.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * d.len() as f64).ceil() as usize).clamp(1, d.len());
    d[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the benchmark with `events` changes per protocol spread over `states` states; files
/// under `dir`.
///
/// # Errors
/// A node that does not start; a deployment or change not applied; nodes that do not catch up
/// in time or whose roots differ.
pub(crate) async fn run(dir: &Path, events: usize, states: usize) -> anyhow::Result<()> {
    ensure!(events > 0, "--events must be at least 1");
    ensure!(states > 0, "--states must be at least 1");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let single = (events / 10).clamp(1, 200);
    println!(
        "protocols: home node + 2 replicas as node processes (HTTP/2 + mutual TLS 1.3 on \
         loopback), SQLite files in {}; per protocol {events} changes over {states} states, \
         {IN_FLIGHT} in flight, then {single} one at a time",
        dir.display()
    );
    let running = Running::up(dir, &specs()).await?;
    for n in &running.manifest.nodes {
        println!("   node {:<8} pid {}", n.id, n.pid);
    }
    let result = measure_all(&running, events, states, single).await;
    let stopped = running.stop().await?;
    ensure!(
        stopped.iter().all(|s| *s == super::Stopped::Terminated),
        "nodes did not all stop on SIGTERM: {stopped:?}"
    );
    let measured = result?;
    for (label, m) in &measured {
        println!(
            "protocols {label} events/s {:.0} at the home node, {:.0} end to end (all 3 nodes); \
             latency under load p50 {:.1} ms p99 {:.1} ms; one at a time p50 {:.1} ms p99 {:.1} ms",
            rate(m.events, m.home),
            rate(m.events, m.all),
            ms(quantile(&m.loaded, 0.5)),
            ms(quantile(&m.loaded, 0.99)),
            ms(quantile(&m.single, 0.5)),
            ms(quantile(&m.single, 0.99)),
        );
    }
    if let [(_, home), (_, endorsed)] = measured.as_slice() {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!(
            "protocols ratio endorsed/home events/s {:.2} at the home node, {:.2} end to end; \
             latency p50 under load {:.2}, one at a time {:.2}",
            ratio(
                rate(endorsed.events, endorsed.home),
                rate(home.events, home.home)
            ),
            ratio(
                rate(endorsed.events, endorsed.all),
                rate(home.events, home.all)
            ),
            ratio(
                ms(quantile(&endorsed.loaded, 0.5)),
                ms(quantile(&home.loaded, 0.5))
            ),
            ratio(
                ms(quantile(&endorsed.single, 0.5)),
                ms(quantile(&home.single, 0.5))
            ),
        );
    }
    Ok(())
}

/// Deploys both contracts, then measures each protocol in turn.
async fn measure_all(
    running: &Running,
    events: usize,
    states: usize,
    single: usize,
) -> anyhow::Result<Vec<(&'static str, Measured)>> {
    let home = running.manifest.node(NODES[0].0)?;
    let client = Arc::new(home.client(&actor(0))?);
    let key_file = &home
        .actors
        .first()
        .context("the home node has no actor")?
        .key_file;
    let key = ActorKey::from_pkcs8_pem(
        &std::fs::read_to_string(key_file)
            .with_context(|| format!("reading {}", key_file.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?;
    let mut clients = Vec::new();
    for (i, (node, _)) in NODES.iter().enumerate() {
        clients.push(running.manifest.node(node)?.client(&actor(i))?);
    }
    let mut out = Vec::new();
    for (label, name, sync) in PROTOCOLS {
        let source = contract_source(name, sync);
        let descriptor = sst_contract_js::descriptor_of(&source)?;
        ensure!(descriptor.protocol() == label, "{name}: {descriptor:?}");
        let record = ContractRecord::sign(descriptor, HashAlg::Blake3, actor(0).into(), &key)
            .with_source(source);
        let v = client.deploy(&record).await?;
        ensure!(v.is_applied(), "deploying {name}: {v:?}");
        let measured = measure(&client, &clients, (label, name), events, states, single).await?;
        out.push((label, measured));
    }
    Ok(out)
}

/// One protocol's workload on contract `name`.
async fn measure(
    client: &Arc<Client>,
    clients: &[Client],
    (label, name): (&str, &str),
    events: usize,
    states: usize,
    single: usize,
) -> anyhow::Result<Measured> {
    let ids: Vec<StateId> = (0..states)
        .map(|k| StateId::from(format!("bench-{label}-{k}").as_str()))
        .collect();
    // The contract reaches the replicas asynchronously: a create may briefly find it missing
    // there (endorsed: an endorser that cannot run it refuses), so retry a create a few times.
    for id in &ids {
        let mut tries = 0;
        loop {
            let v = client
                .submit(IntentBody::Create {
                    state_id: id.clone(),
                    contract: ContractRef::new(name, 1),
                    parties: parties(),
                    sections: BTreeMap::from([("common".to_owned(), json!({"revision": 0}))]),
                })
                .await?;
            if v.is_applied() {
                break;
            }
            tries += 1;
            ensure!(tries < 50, "creating {id} on {name}: {v:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut versions: BTreeMap<StateId, u64> = ids.iter().map(|id| (id.clone(), 1)).collect();
    replicated(clients, &versions).await?;

    let t = Instant::now();
    let ids = Arc::new(ids);
    let timed = in_flight(events, IN_FLIGHT, |i| {
        let (client, ids) = (client.clone(), ids.clone());
        async move {
            let intent = IntentBody::Change {
                state_id: ids[i % ids.len()].clone(),
                sections: change_sections(i),
            };
            let start = Instant::now();
            let v = client.submit_custody(actor(0), intent).await?;
            Ok((v.is_applied(), start.elapsed(), format!("{v:?}")))
        }
    })
    .await?;
    let home = t.elapsed();
    if let Some((_, _, v)) = timed.iter().find(|(ok, _, _)| !ok) {
        anyhow::bail!(
            "{label}: only {} of {events} changes applied; first refusal: {v}",
            timed.iter().filter(|(ok, ..)| *ok).count()
        );
    }
    for i in 0..events {
        *versions.entry(ids[i % ids.len()].clone()).or_default() += 1;
    }
    replicated(clients, &versions).await?;
    let all = t.elapsed();
    let mut loaded: Vec<Duration> = timed.into_iter().map(|(_, d, _)| d).collect();
    loaded.sort();

    let mut one = Vec::with_capacity(single);
    for i in 0..single {
        let intent = IntentBody::Change {
            state_id: ids[i % ids.len()].clone(),
            sections: change_sections(events + i),
        };
        let start = Instant::now();
        let v = client.submit_custody(actor(0), intent).await?;
        one.push(start.elapsed());
        ensure!(v.is_applied(), "{label}: one-at-a-time change {i}: {v:?}");
    }
    one.sort();
    Ok(Measured {
        events,
        home,
        all,
        loaded,
        single: one,
    })
}

/// Waits (bounded) until every node holds at least `versions` of each state, read through
/// each node's own actor; then checks that their roots agree.
async fn replicated(clients: &[Client], versions: &BTreeMap<StateId, u64>) -> anyhow::Result<()> {
    let start = Instant::now();
    for (id, version) in versions {
        let mut roots = Vec::new();
        for c in clients {
            loop {
                let held = c.state(id).await?;
                if let Some(s) = held.filter(|s| s.version >= *version) {
                    roots.push((s.version, s.root));
                    break;
                }
                ensure!(
                    start.elapsed() < REPLICATION_DEADLINE,
                    "{id}: a node does not hold version {version} after {REPLICATION_DEADLINE:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        ensure!(
            roots.windows(2).all(|w| w[0] == w[1]),
            "{id}: roots differ: {roots:?}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_contracts_differ_only_in_their_protocol() -> anyhow::Result<()> {
        let home = sst_contract_js::descriptor_of(&contract_source("x", PROTOCOLS[0].2))?;
        let endorsed = sst_contract_js::descriptor_of(&contract_source("x", PROTOCOLS[1].2))?;
        assert_eq!(home.protocol(), "home");
        assert_eq!(endorsed.protocol(), "endorsed");
        assert_eq!(home.policy, endorsed.policy);
        assert_eq!(home.methods, endorsed.methods);
        Ok(())
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&d, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
