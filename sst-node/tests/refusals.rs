//! Replica refusals are recorded, travel back to the home node, and are retried once their
//! cause is fixed, without restarting anything; `Node::wait_for` is built on the replicas'
//! acknowledgements (issue 16, items 1 and 2).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context};
use common::{actor, create_two_party_deal, registry, values, who, Cluster};
use serde_json::json;
use sst_core::{ActorId, ContractRef, HashAlg, MemoryStore, NodeId, RejectReason, StateId, Store};
use sst_node::{Delivery, InProcessNetwork, Inbox, Intent, Node, NodeError};
use tokio::sync::mpsc;

fn deal() -> ContractRef {
    ContractRef::new("real-estate-deal", 1)
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// The seller changes the deal (a second version).
async fn change(seller: &Node, id: &StateId) -> anyhow::Result<()> {
    let v = seller
        .submit(
            &who("seller"),
            Intent::change(id.clone(), values([("common", json!({"rev": 2}))])),
        )
        .await?;
    ensure!(v.is_applied(), "change: {v:?}");
    Ok(())
}

/// The buyer's refusal as the home sees it, once it arrived.
async fn refusal_seen_by_home(
    seller: &Node,
    id: &StateId,
    buyer: &NodeId,
) -> anyhow::Result<RejectReason> {
    let err = seller
        .wait_for(
            id,
            1,
            std::slice::from_ref(buyer),
            Duration::from_millis(300),
        )
        .await
        .err()
        .context("the buyer cannot hold the deal yet")?;
    let NodeError::Behind { behind, .. } = &err else {
        anyhow::bail!("{err}");
    };
    ensure!(behind.len() == 1 && &behind[0].node == buyer, "{err}");
    let status = seller.sync_status(id).await?.context("status")?;
    let entry = status.node(buyer).context("buyer listed")?;
    ensure!(entry.acknowledged == 0, "{status:?}");
    let r = entry
        .refusal
        .clone()
        .context("refusal reported to the home")?;
    ensure!(
        Some(&r) == behind[0].refusal.as_ref(),
        "{status:?} vs {err}"
    );
    Ok(r.reason)
}

/// Both nodes hold `id` at `version` with the same root.
async fn same_root(a: &Node, b: &Node, id: &StateId, version: u64) -> anyhow::Result<()> {
    let x = a.state(id).await?.context("home state")?;
    let y = b.state(id).await?.context("replica state")?;
    ensure!(
        x.version == version && y.version == version && x.root == y.root,
        "v{} {} vs v{} {}",
        x.version,
        x.root,
        y.version,
        y.root
    );
    Ok(())
}

/// The home's `wait_for` sees `nodes` at `version` within `timeout`, the replica holds the
/// home's root, and none of its refusals is left.
async fn caught_up(
    home: &Node,
    replica: &Node,
    id: &StateId,
    version: u64,
    nodes: &[NodeId],
    timeout: Duration,
) -> anyhow::Result<()> {
    home.wait_for(id, version, nodes, timeout).await?;
    same_root(home, replica, id, version).await?;
    ensure!(
        replica.store().refusals(None).await?.is_empty(),
        "refusal not cleared"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_missing_on_a_replica_is_refused_reported_and_retried_once_deployed(
) -> anyhow::Result<()> {
    let net = InProcessNetwork::new();
    let seller = Cluster::start_node(&net, "seller", memory(), registry(false), &[deal()]).await?;
    // The buyer's node holds the code but the contract is not deployed there.
    let buyer = Cluster::start_node(&net, "buyer", memory(), registry(false), &[]).await?;
    let b = NodeId::from("buyer");
    let id = create_two_party_deal(&seller, "deal-missing-contract", json!({"rev": 1})).await?;
    net.settled().await;

    // Recorded on the replica, with its typed reason…
    let recorded = buyer.store().refusals(Some(&id)).await?;
    ensure!(recorded.len() == 1, "{recorded:?}");
    let r = &recorded[0];
    ensure!(
        r.reason == RejectReason::UnknownContract { contract: deal() }
            && r.version == 1
            && r.from_node == NodeId::from("seller"),
        "{r:?}"
    );
    // …and in the home's sync status.
    let reason = refusal_seen_by_home(&seller, &id, &b).await?;
    ensure!(
        reason == RejectReason::UnknownContract { contract: deal() },
        "{reason:?}"
    );
    // The home goes on meanwhile.
    change(&seller, &id).await?;

    // Deploying the contract on the replica lets it catch up, without restarting anything.
    let (_, deployer_key) = actor("seller", "a");
    let record =
        registry(false).deployment(&deal(), HashAlg::Blake3, who("seller"), &deployer_key)?;
    buyer.deploy(record).await?;
    let b1 = std::slice::from_ref(&b);
    caught_up(&seller, &buyer, &id, 2, b1, Duration::from_secs(10)).await?;
    let status = seller.sync_status(&id).await?.context("status")?;
    let entry = status.node(&b).context("buyer listed")?;
    ensure!(
        entry.acknowledged == 2 && entry.refusal.is_none(),
        "{status:?}"
    );
    // The replica's own view: it holds v2, nothing refused.
    let own = buyer.sync_status(&id).await?.context("own status")?;
    ensure!(
        own.home == NodeId::from("seller") && own.node(&b).is_some_and(|n| n.acknowledged == 2),
        "{own:?}"
    );
    // Waiting for a node on a node that is not the home is an error, not a silent timeout.
    let err = buyer
        .wait_for(&id, 2, &[NodeId::from("seller")], Duration::from_millis(10))
        .await;
    ensure!(matches!(err, Err(NodeError::Invalid(_))), "{err:?}");
    Ok(())
}

/// A node's deliveries pass through here; while closed, they are held back in order.
#[derive(Clone)]
struct Gate {
    held: Arc<Mutex<(bool, Vec<Delivery>)>>,
    tx: mpsc::Sender<Delivery>,
}

impl Gate {
    /// Joins `id` to `net` behind a gate (open): the inbox to start the node with.
    fn join(net: &InProcessNetwork, id: &str) -> (Gate, Arc<sst_node::InProcessTransport>, Inbox) {
        let (transport, mut real) = net.join(id);
        let (tx, rx) = mpsc::channel(1024);
        let gate = Gate {
            held: Arc::new(Mutex::new((false, Vec::new()))),
            tx,
        };
        let relay = gate.clone();
        tokio::spawn(async move {
            while let Some(d) = real.recv().await {
                let mut held = relay.held.lock().expect("gate");
                if held.0 {
                    held.1.push(d);
                } else if relay.tx.try_send(d).is_err() {
                    return;
                }
            }
        });
        (gate, transport, Inbox::from_receiver(rx))
    }

    fn close(&self) {
        self.held.lock().expect("gate").0 = true;
    }

    fn held(&self) -> usize {
        self.held.lock().expect("gate").1.len()
    }

    /// Delivers everything held back at once, then lets deliveries through again.
    fn open(&self) -> anyhow::Result<()> {
        let mut held = self.held.lock().expect("gate");
        held.0 = false;
        for d in held.1.drain(..) {
            self.tx
                .try_send(d)
                .map_err(|_| anyhow::anyhow!("inbox full"))?;
        }
        Ok(())
    }
}

/// The versions resent after a retry reach the replica together, so its sequencer plans the
/// create (v1) and the change (v2) in one batch: v2 must find the home of the state created
/// earlier in that batch (not yet committed) and be applied, not taken for a missing create
/// and dropped as a gap already asked about (it would then wait for a v3 forever).
/// Single-threaded, so that both deliveries are queued before the sequencer runs.
#[tokio::test(flavor = "current_thread")]
async fn a_create_and_a_change_resent_together_are_applied_in_one_batch() -> anyhow::Result<()> {
    let net = InProcessNetwork::new();
    let seller = Cluster::start_node(&net, "seller", memory(), registry(false), &[deal()]).await?;
    let (gate, transport, inbox) = Gate::join(&net, "buyer");
    let buyer = Cluster::start_node_on(
        common::config("buyer"),
        memory(),
        registry(false),
        &[],
        transport,
        inbox,
    )
    .await?;
    let b = NodeId::from("buyer");
    let id = create_two_party_deal(&seller, "deal-one-batch", json!({"rev": 1})).await?;
    change(&seller, &id).await?;
    net.settled().await;
    ensure!(
        buyer.state(&id).await?.is_none(),
        "the buyer cannot hold it yet"
    );
    ensure!(
        buyer.refusals(Some(&id)).await?.len() == 1,
        "the create is refused"
    );

    // The retry's answer (v1 and v2) is held back, then delivered at once.
    gate.close();
    let (_, deployer_key) = actor("seller", "a");
    let record =
        registry(false).deployment(&deal(), HashAlg::Blake3, who("seller"), &deployer_key)?;
    buyer.deploy(record).await?;
    tokio::time::timeout(Duration::from_secs(10), async {
        while gate.held() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .context("the retry is answered with v1 and v2")?;
    gate.open()?;
    let b1 = std::slice::from_ref(&b);
    caught_up(&seller, &buyer, &id, 2, b1, Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_unknown_on_a_replica_is_refused_and_retried_once_registered() -> anyhow::Result<()>
{
    let net = InProcessNetwork::new();
    let seller = Cluster::start_node(&net, "seller", memory(), registry(false), &[deal()]).await?;
    // The buyer's node knows only its own actor (and deploys the contract as that actor).
    let (transport, inbox) = net.join("buyer");
    let buyer = Node::start(
        common::config("buyer"),
        memory(),
        registry(false),
        transport,
        inbox,
    )
    .await?;
    let (me, key) = actor("buyer", "a");
    buyer.register_actor(me.clone()).await?;
    let record = registry(false).deployment(&deal(), HashAlg::Blake3, me.id.clone(), &key)?;
    buyer.add_key(&me.id, key)?;
    buyer.deploy(record).await?;
    let b = NodeId::from("buyer");

    let id = create_two_party_deal(&seller, "deal-unknown-actor", json!({"rev": 1})).await?;
    net.settled().await;
    let recorded = buyer.store().refusals(Some(&id)).await?;
    let seller_actor = ActorId::from("seller/a");
    ensure!(
        recorded.len() == 1
            && recorded[0].reason
                == RejectReason::UnknownActor {
                    actor: seller_actor.clone()
                },
        "{recorded:?}"
    );
    let reason = refusal_seen_by_home(&seller, &id, &b).await?;
    ensure!(
        matches!(reason, RejectReason::UnknownActor { .. }),
        "{reason:?}"
    );

    // Registering the actor on the replica retries the refused change.
    buyer.register_actor(actor("seller", "a").0).await?;
    caught_up(&seller, &buyer, &id, 1, &[], Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_returns_once_every_participant_acknowledged() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let seller = c.node("seller");
    let id = StateId::from("deal-wait");
    let v = seller
        .submit(
            &who("seller"),
            Intent::create(
                id.as_str(),
                deal(),
                common::deal_parties(),
                values([("common", json!({"rev": 1}))]),
            ),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    // No settling, no sleeping: the acknowledgements wake the wait.
    seller
        .wait_for(&id, 1, &[], Duration::from_secs(10))
        .await?;
    for role in common::ROLES {
        let s = c.node(role).state(&id).await?.context(role)?;
        ensure!(s.version == 1, "{role} holds v{}", s.version);
    }
    let status = seller.sync_status(&id).await?.context("status")?;
    ensure!(
        status.nodes.len() == 3 && status.nodes.iter().all(|n| n.acknowledged == 1),
        "{status:?}"
    );
    // An offline participant makes the wait fail with a typed error naming it.
    c.net.set_online(&NodeId::from("regulator"), false);
    let v = seller
        .submit(
            &who("seller"),
            Intent::change(id.clone(), values([("common", json!({"rev": 2}))])),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    let err = seller
        .wait_for(&id, 2, &[], Duration::from_millis(300))
        .await
        .err()
        .context("the regulator is offline")?;
    let NodeError::Behind { behind, .. } = &err else {
        anyhow::bail!("{err}");
    };
    ensure!(
        behind.len() == 1
            && behind[0].node == NodeId::from("regulator")
            && behind[0].acknowledged == 1
            && behind[0].refusal.is_none(),
        "{err}"
    );
    Ok(())
}
