//! Measurements (c) and (d): real nodes on SQLite files in this process, joined by the
//! in-process transport — the home node alone, or the home with replicas — sequencing the
//! workload's change intents with many in flight.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context};
use sst_core::{
    Actor, ActorId, ActorKey, ActorStatus, HashAlg, NodeId, NodeKey, NodeRegistry, OriginSeq,
};
use sst_node::contracts::RealEstateDeal;
use sst_node::{ContractRegistry, InProcessNetwork, Node, NodeConfig, Verdict};
use sst_store_sqlite::{SqliteConfig, SqliteStore, Synchronous};
use tokio::task::JoinSet;

use super::stats::{Sample, Stopwatch};
use super::workload::{self, HOME};

/// Which nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topology {
    /// (c): the home node with no peers; every actor is homed there.
    Alone,
    /// (d): the home node and two replicas (the buyer's and the inspector's nodes), which
    /// receive every change.
    WithTwoReplicas,
}

/// The replicas' node ids in [`Topology::WithTwoReplicas`].
const REPLICAS: [&str; 2] = ["replica-1", "replica-2"];

/// One node run's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    /// Which nodes.
    pub(crate) topology: Topology,
    /// Durability of every node's SQLite file (always WAL).
    pub(crate) synchronous: Synchronous,
    /// [`NodeConfig::verify_workers`] of every node (`0` = one per core).
    pub(crate) verify_workers: usize,
}

/// What one node run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    /// From the first submit until the home node answered the last one.
    pub(crate) home: Sample,
    /// From the first submit until every replica applied every change (replicas only).
    pub(crate) replicated: Option<Sample>,
}

/// The group size of the node: [`NodeConfig::max_batch`] of a default configuration.
pub(crate) fn group_size() -> usize {
    NodeConfig::new(HOME).max_batch
}

/// How many intents the benchmark keeps in flight: four full groups (what the node's intake
/// queue holds), so that each stage of the node's pipeline has a group to work on at once:
/// one planned by the sequencer, one prepared (receipts signed, batch validated), one written
/// and synced, one being answered. With two groups (the figure before the pipeline had three
/// stages) at most two stages were ever busy: (c) used 1.3-1.5 cores, with four 1.6.
pub(crate) fn in_flight() -> usize {
    4 * group_size()
}

/// The nodes of `topology`, home first.
fn node_names(topology: Topology) -> Vec<&'static str> {
    match topology {
        Topology::Alone => vec![HOME],
        Topology::WithTwoReplicas => std::iter::once(HOME).chain(REPLICAS).collect(),
    }
}

/// The three actors and the node each is homed at.
fn actors(topology: Topology) -> Vec<Actor> {
    let homes = match topology {
        Topology::Alone => [HOME; 3],
        Topology::WithTwoReplicas => [HOME, REPLICAS[0], REPLICAS[1]],
    };
    [
        (workload::SELLER, workload::SELLER_SEED),
        (workload::BUYER, workload::BUYER_SEED),
        (workload::INSPECTOR, workload::INSPECTOR_SEED),
    ]
    .into_iter()
    .zip(homes)
    .map(|((id, seed), node)| Actor {
        id: ActorId::from(id),
        node: NodeId::from(node),
        public_key: ActorKey::from_seed(seed).public_key(),
        status: ActorStatus::Active,
    })
    .collect()
}

/// The running nodes of one measurement.
struct Nodes {
    net: InProcessNetwork,
    /// Home first, then the replicas.
    nodes: Vec<Arc<Node>>,
}

impl Nodes {
    /// Fresh SQLite files in `dir`, every node started (all joined the network first), the
    /// actors registered on each, the seller's key at the home and the real-estate contract
    /// deployed everywhere.
    async fn start(dir: &Path, setup: Setup) -> anyhow::Result<Nodes> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let names = node_names(setup.topology);
        let mut keys: BTreeMap<&str, NodeKey> =
            names.iter().map(|n| (*n, NodeKey::generate())).collect();
        let node_registry = keys.iter().fold(NodeRegistry::new(), |r, (n, k)| {
            r.with(NodeId::from(*n), k.public_key())
        });
        let contracts = ContractRegistry::new().with(RealEstateDeal);
        let seller_key = ActorKey::from_seed(workload::SELLER_SEED);
        let deployment = contracts.deployment(
            &workload::contract(),
            HashAlg::Blake3,
            workload::seller(),
            &seller_key,
        )?;
        let actors = actors(setup.topology);
        let net = InProcessNetwork::new();
        // Every node joins before any starts, so what the first ones send at start (their
        // checkpoints) waits in the others' inboxes.
        let joined: Vec<_> = names.iter().map(|n| net.join(*n)).collect();
        let mut nodes = Vec::new();
        for (name, (transport, inbox)) in names.iter().copied().zip(joined) {
            let key = keys.remove(name).context("every node has a key")?;
            let store = SqliteStore::open_migrated(
                SqliteConfig::file(dir.join(format!("{name}.db"))).synchronous(setup.synchronous),
            )
            .await?;
            let config = NodeConfig::new(name)
                .with_key(key, node_registry.clone())
                .with_verify_workers(setup.verify_workers);
            let node =
                Node::start(config, Arc::new(store), contracts.clone(), transport, inbox).await?;
            for a in &actors {
                node.register_actor(a.clone()).await?;
            }
            if name == HOME {
                node.add_key(
                    &workload::seller(),
                    ActorKey::from_seed(workload::SELLER_SEED),
                )?;
            }
            node.deploy(deployment.clone()).await?;
            nodes.push(Arc::new(node));
        }
        Ok(Nodes { net, nodes })
    }

    fn home(&self) -> anyhow::Result<&Arc<Node>> {
        self.nodes.first().context("no home node")
    }

    /// Stops every node (each signs its last checkpoint).
    async fn shutdown(self) -> anyhow::Result<()> {
        drop(self.net);
        for node in self.nodes {
            let node = Arc::try_unwrap(node)
                .map_err(|_| anyhow::anyhow!("a node is still shared at shutdown"))?;
            node.shutdown().await?;
        }
        Ok(())
    }
}

/// Submits `intents` as the seller at `home`, at most `in_flight` at a time; fails unless
/// every one was applied.
async fn submit_all(
    home: &Arc<Node>,
    intents: impl IntoIterator<Item = sst_node::Intent>,
    in_flight: usize,
) -> anyhow::Result<()> {
    all_applied(home, intents, in_flight, |node, intent| async move {
        node.submit(&workload::seller(), intent).await
    })
    .await
}

/// Hands each of `items` to `home` with `send`, at most `in_flight` at a time; fails unless
/// every one was applied.
async fn all_applied<T, F>(
    home: &Arc<Node>,
    items: impl IntoIterator<Item = T>,
    in_flight: usize,
    send: impl Fn(Arc<Node>, T) -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<Verdict, sst_node::NodeError>> + Send + 'static,
{
    let mut set = JoinSet::new();
    let (mut sent, mut applied) = (0usize, 0usize);
    let mut answered = |r: Option<Result<Result<Verdict, _>, tokio::task::JoinError>>| {
        if let Some(r) = r {
            match r?? {
                Verdict::Applied { .. } => applied += 1,
                other => anyhow::bail!("an intent was not applied: {other:?}"),
            }
        }
        anyhow::Ok(())
    };
    for item in items {
        if set.len() >= in_flight {
            answered(set.join_next().await)?;
        }
        set.spawn(send(Arc::clone(home), item));
        sent += 1;
    }
    while let Some(r) = set.join_next().await {
        answered(Some(r))?;
    }
    ensure!(applied == sent, "{applied} of {sent} intents applied");
    Ok(())
}

/// Runs one measurement in `dir`: starts the nodes, creates the workload's states (not
/// timed), then times `events` changes submitted at the home with [`in_flight`] of them in
/// flight and, with replicas, until every replica applied them. Checks that the home holds
/// the expected data and every replica the home's roots, then stops the nodes.
pub(crate) async fn measure(dir: &Path, setup: Setup, events: usize) -> anyhow::Result<Measured> {
    let nodes = Nodes::start(dir, setup).await?;
    let home = Arc::clone(nodes.home()?);
    submit_all(
        &home,
        (0..workload::STATES).map(workload::create),
        in_flight(),
    )
    .await?;
    nodes.net.settled().await;

    let watch = Stopwatch::start();
    submit_all(&home, (0..events).map(workload::change), in_flight()).await?;
    let at_home = watch.stop(events);
    let replicated = if nodes.nodes.len() > 1 {
        nodes.net.settled().await;
        Some(watch.stop(events))
    } else {
        None
    };

    for k in 0..workload::STATES {
        let id = workload::state_id(k);
        let state = home
            .state(&id)
            .await?
            .with_context(|| format!("{id} missing"))?;
        ensure!(
            state.version == 1 + workload::changes_of(k, events) as u64,
            "{id} at the home is at version {} after {} changes",
            state.version,
            workload::changes_of(k, events)
        );
        ensure!(
            workload::is_data_of_a_change(k, events, &state.data()),
            "{id} at the home holds data no change wrote"
        );
        for replica in &nodes.nodes[1..] {
            let root = replica.state(&id).await?.map(|s| s.root);
            ensure!(
                root == Some(state.root),
                "{id}: replica {} is at {root:?}, the home at {:?}",
                replica.id(),
                state.root
            );
        }
    }
    drop(home);
    nodes.shutdown().await?;
    Ok(Measured {
        home: at_home,
        replicated,
    })
}

/// The first origin sequence of the client-signed creates of [`measure_signed_creates`], far
/// above those the home node assigns to its own intents.
const FIRST_CLIENT_SEQ: u64 = 1 << 40;

/// Runs one measurement of the home node alone (`setup.topology` is ignored) on events its
/// clients signed: `events` creates signed by the seller with the node library's
/// [`sst_node::EventBuilder`] beforehand (not timed), then handed to the node with
/// [`Node::ingest`] with [`in_flight`] of them in flight, so that each is strictly verified on
/// the node's verification pool before it is sequenced. Checks that every state is at the
/// home, then stops the node.
pub(crate) async fn measure_signed_creates(
    dir: &Path,
    setup: Setup,
    events: usize,
) -> anyhow::Result<Sample> {
    let setup = Setup {
        topology: Topology::Alone,
        ..setup
    };
    let key = ActorKey::from_seed(workload::SELLER_SEED);
    let builder = sst_node::EventBuilder::new(HOME, workload::SELLER, &key);
    let built = (0..events)
        .map(|i| {
            builder.build(
                OriginSeq(FIRST_CLIENT_SEQ + i as u64),
                &workload::create(i),
                None,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let nodes = Nodes::start(dir, setup).await?;
    let home = Arc::clone(nodes.home()?);
    let watch = Stopwatch::start();
    all_applied(&home, built, in_flight(), |node, b| async move {
        node.ingest(b.signed, b.disclosures).await
    })
    .await?;
    let sample = watch.stop(events);
    for k in [0, events / 2, events - 1] {
        let id = workload::state_id(k);
        let state = home.state(&id).await?;
        ensure!(
            state.is_some_and(|s| s.version == 1),
            "{id} is not at version 1 at the home"
        );
    }
    drop(home);
    nodes.shutdown().await?;
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_node_alone_homes_every_actor_and_the_replicas_their_own() {
        assert_eq!(node_names(Topology::Alone), [HOME]);
        assert!(actors(Topology::Alone)
            .iter()
            .all(|a| a.node.as_str() == HOME));
        assert_eq!(
            node_names(Topology::WithTwoReplicas),
            [HOME, "replica-1", "replica-2"]
        );
        let homes: Vec<String> = actors(Topology::WithTwoReplicas)
            .iter()
            .map(|a| a.node.as_str().to_owned())
            .collect();
        assert_eq!(homes, [HOME, "replica-1", "replica-2"]);
    }

    #[test]
    fn four_full_groups_are_kept_in_flight() {
        assert_eq!(in_flight(), 4 * NodeConfig::new("x").max_batch);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_applies_every_change_at_the_home_and_on_both_replicas(
    ) -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("sst-pipeline-test-{}", uuid::Uuid::new_v4()));
        for topology in [Topology::Alone, Topology::WithTwoReplicas] {
            let setup = Setup {
                topology,
                synchronous: Synchronous::Normal,
                verify_workers: 1,
            };
            let m = measure(&dir.join(format!("{topology:?}")), setup, 40).await?;
            assert_eq!(m.home.events, 40);
            assert_eq!(
                m.replicated.is_some(),
                topology == Topology::WithTwoReplicas
            );
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
