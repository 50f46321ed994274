//! The update measurement of one backend and state size (run in a child process of its
//! own): a home node in this process on the backend's store creates one state of the target
//! size through a signed create; then, each round and for each section (small, large), a run
//! of one-field updates as signed change events through the node, then a run of plain
//! `UPDATE … json_set` of the same field on the same JSON in a plain table. Each run is one
//! [`Sample`]: wall and CPU time, bytes written, database growth, peak memory.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use sst_core::{
    Actor, ActorId, ActorKey, ActorStatus, ContractRef, HashAlg, NodeId, NodeKey, NodeRegistry,
    Parties, StateId, Store,
};
use sst_node::contracts::RealEstateDeal;
use sst_node::{ContractRegistry, InProcessNetwork, Intent, Node, NodeConfig, Verdict};

use super::args::Pass;
use super::db::{server_cpu_between, Backend, Db, Side};
use super::payload::{Payload, Section};
use super::probe;
use super::report::{Record, Sample, Updates};
use crate::pipeline::stats::process_cpu_time;

/// The node's id.
const HOME: &str = "home";
/// The actor who creates and updates the state (holding every role of the deal).
const OWNER: &str = "owner/olga";
/// Its key seed (fixed: the workload is the same in every run).
const OWNER_SEED: [u8; 32] = [21; 32];
/// The state's id.
const STATE: &str = "state-size";
/// How long a sample waits after its updates, inside its CPU and I/O window but outside its
/// wall time, so that what the updates set off (the node's checkpoint of its log, at most
/// 200 ms after a commit by default) is counted with them and not with the next sample.
const SETTLE: Duration = Duration::from_millis(400);
/// Bytes of state the SST updates of one sample rewrite at most (their count is this over
/// the state size, between 1 and [`MAX_SST_OPS`]): enough updates that one update's own
/// variation averages out (the process CPU clock itself reads nanoseconds).
const SAMPLE_BYTES: usize = 10_000_000;
/// Most SST updates in one sample.
const MAX_SST_OPS: usize = 500;
/// Plain updates per SST update in a sample (they cost much less, so more are needed for the
/// same resolution).
const PLAIN_OPS_FACTOR: usize = 5;

/// SST updates per sample for a state of `bytes`.
pub(crate) fn sst_ops(bytes: usize) -> usize {
    (SAMPLE_BYTES / bytes.max(1)).clamp(1, MAX_SST_OPS)
}

/// Plain updates per sample for a state of `bytes`.
pub(crate) fn plain_ops(bytes: usize) -> usize {
    sst_ops(bytes) * PLAIN_OPS_FACTOR
}

/// The contract of the state: the native real-estate deal (`common` is the large section,
/// `price` and `inspection` small ones).
fn contract() -> ContractRef {
    ContractRef::new(sst_node::contracts::REAL_ESTATE, 1)
}

fn owner() -> ActorId {
    ActorId::from(OWNER)
}

/// A home node alone on `store`, with the owner registered (its key held by the node) and
/// the contract deployed.
async fn start_node(store: std::sync::Arc<dyn Store>) -> anyhow::Result<Node> {
    let key = NodeKey::generate();
    let registry = NodeRegistry::new().with(NodeId::from(HOME), key.public_key());
    let contracts = ContractRegistry::new().with(RealEstateDeal);
    let owner_key = ActorKey::from_seed(OWNER_SEED);
    let deployment = contracts.deployment(&contract(), HashAlg::Blake3, owner(), &owner_key)?;
    let net = InProcessNetwork::new();
    let (transport, inbox) = net.join(HOME);
    let config = NodeConfig::new(HOME).with_key(key, registry);
    let node = Node::start(config, store, contracts, transport, inbox).await?;
    node.register_actor(Actor {
        id: owner(),
        node: NodeId::from(HOME),
        public_key: owner_key.public_key(),
        status: ActorStatus::Active,
    })
    .await?;
    node.add_key(&owner(), ActorKey::from_seed(OWNER_SEED))?;
    node.deploy(deployment).await?;
    Ok(node)
}

/// Submits `intent` as the owner; fails unless it was applied.
async fn submit(node: &Node, intent: Intent) -> anyhow::Result<()> {
    match node.submit(&owner(), intent).await? {
        Verdict::Applied { .. } => Ok(()),
        other => anyhow::bail!("an update was not applied: {other:?}"),
    }
}

/// Runs `work` (`ops` updates of `side`) as one sample.
async fn sample<F, Fut>(db: &Db, side: Side, ops: usize, work: F) -> anyhow::Result<Sample>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    db.checkpoint().await?;
    let size_before = db.size(side).await?;
    let written_before = db.written().await?;
    let server_before = db.server_clock().await?;
    let resident_before = probe::resident_memory();
    let peak_reset = probe::reset_peak_memory();
    let cpu_before = process_cpu_time();
    let start = Instant::now();
    work().await?;
    let wall = start.elapsed();
    tokio::time::sleep(SETTLE).await;
    // Each side's log pages are checkpointed inside its CPU window: the node's checkpointer
    // thread does it during the settle time, the plain side here (SQLite in this process;
    // PostgreSQL's checkpointer process is counted for neither side).
    db.checkpoint().await?;
    let cpu = match (cpu_before, process_cpu_time()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let peak = if peak_reset {
        probe::peak_memory()
    } else {
        None
    };
    let server_cpu = server_cpu_between(&server_before, &db.server_clock().await?);
    let written = match (written_before, db.written().await?) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let size_after = db.size(side).await?;
    Ok(Sample {
        ops,
        wall,
        cpu,
        server_cpu,
        written,
        growth: i64::try_from(size_after)? - i64::try_from(size_before)?,
        peak,
        resident_before,
    })
}

/// Measures the updates of a state of `target` bytes in `db` (of `backend`), `rounds`
/// times, with as many updates per sample as `pass` wants.
///
/// # Errors
/// A database or node failure, an update not applied, or a side whose final JSON is not
/// what its updates wrote.
pub(crate) async fn measure(
    db: &Db,
    backend: Backend,
    target: usize,
    rounds: usize,
    pass: Pass,
) -> anyhow::Result<Updates> {
    let mut sst_doc = Payload::new(target);
    // The last value each plain update run wrote (the plain row is the SST JSON with these).
    let mut plain_last: BTreeMap<&str, i64> = BTreeMap::new();
    let state_bytes = sst_doc.data_len();
    let node = start_node(db.store()).await?;
    let id = StateId(STATE.to_owned());
    let parties = Parties::default()
        .with("seller", OWNER)
        .with("buyer", OWNER)
        .with("inspector", OWNER);
    let create = Intent::create(id.clone(), contract(), parties, sst_doc.sections().clone());
    submit(&node, create).await.context("creating the state")?;
    db.plain_insert(&[(STATE.to_owned(), serde_json::to_string(&sst_doc.data())?)])
        .await?;

    let mut records = Vec::new();
    let mut sst_updates = 0usize;
    let mut next = BTreeMap::from([
        (Section::Small.label(), 0usize),
        (Section::Large.label(), 0),
    ]);
    let mut plain_next = next.clone();
    for round in 0..rounds {
        for section in Section::BOTH {
            eprintln!(
                "state-size child: {} {} bytes, round {} of {rounds}, {} section",
                backend.name(),
                state_bytes,
                round + 1,
                section.label()
            );
            // The change events are built (and the state JSON cloned) before timing starts:
            // building them is the client's work, not the node's.
            let ops = match pass {
                Pass::Cost => sst_ops(state_bytes),
                Pass::Memory => 1,
            };
            let counter = next.entry(section.label()).or_default();
            let intents: Vec<Intent> = (0..ops)
                .map(|_| {
                    sst_doc.set(section, Payload::value_for(section, *counter));
                    *counter += 1;
                    let sections = BTreeMap::from([(
                        section.name().to_owned(),
                        sst_doc.section_value(section),
                    )]);
                    Intent::change(id.clone(), sections)
                })
                .collect();
            let node_ref = &node;
            let s = sample(db, Side::Sst, ops, || async move {
                for intent in intents {
                    submit(node_ref, intent).await?;
                }
                Ok(())
            })
            .await?;
            sst_updates += ops;
            records.push(Record {
                round,
                section,
                side: Side::Sst,
                sample: s,
            });

            let ops = match pass {
                Pass::Cost => plain_ops(state_bytes),
                Pass::Memory => 1,
            };
            let counter = plain_next.entry(section.label()).or_default();
            let values: Vec<i64> = (0..ops)
                .map(|_| {
                    let v = Payload::value_for(section, *counter);
                    *counter += 1;
                    v
                })
                .collect();
            if let Some(last) = values.last() {
                plain_last.insert(section.label(), *last);
            }
            let s = sample(db, Side::Plain, ops, || async move {
                for v in values {
                    db.plain_update(STATE, section, v).await?;
                }
                Ok(())
            })
            .await?;
            records.push(Record {
                round,
                section,
                side: Side::Plain,
                sample: s,
            });
        }
    }

    let state = node
        .state(&id)
        .await?
        .context("the state is missing at the node")?;
    ensure!(
        state.version == 1 + sst_updates as u64,
        "the state is at version {} after {sst_updates} updates",
        state.version
    );
    ensure!(
        state.data() == sst_doc.data(),
        "the node's state is not what the updates wrote"
    );
    let mut plain_doc = sst_doc;
    for section in Section::BOTH {
        if let Some(v) = plain_last.get(section.label()) {
            plain_doc.set(section, *v);
        }
    }
    ensure!(
        db.plain_data(STATE).await? == plain_doc.data(),
        "the plain row is not what the plain updates wrote"
    );
    node.shutdown().await?;
    Ok(Updates {
        backend,
        state_bytes,
        pass,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_hold_more_updates_for_smaller_states() {
        assert_eq!(sst_ops(1_000), 500);
        assert_eq!(sst_ops(100_000), 100);
        assert_eq!(sst_ops(5_000_000), 2);
        assert_eq!(sst_ops(20_000_000), 1);
        assert_eq!(sst_ops(0), 500);
        assert_eq!(plain_ops(1_000), 2500);
        assert_eq!(plain_ops(5_000_000), 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_sqlite_state_is_updated_through_the_node_and_in_the_plain_table(
    ) -> anyhow::Result<()> {
        let run = crate::state_size::test_run()?;
        let u = super::super::db::with_db(Backend::Sqlite, &run, async |db| {
            measure(db, Backend::Sqlite, 20_000, 1, Pass::Cost).await
        })
        .await?;
        assert_eq!(u.records.len(), 4);
        for r in &u.records {
            let expected = match r.side {
                Side::Sst => sst_ops(u.state_bytes),
                Side::Plain => plain_ops(u.state_bytes),
            };
            assert_eq!(r.sample.ops, expected);
            assert!(r.sample.wall > Duration::ZERO);
            assert!(r.sample.cpu.is_some());
            assert!(r.sample.peak.is_some());
        }
        // The SST side keeps every version: it grows.
        let sst_growth: i64 = u
            .records
            .iter()
            .filter(|r| r.side == Side::Sst)
            .map(|r| r.sample.growth)
            .sum();
        assert!(sst_growth > 0, "{sst_growth}");
        Ok(())
    }
}
