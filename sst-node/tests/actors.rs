//! Key rotation and revocation as signed `actor_change` events, on four nodes (in-memory and
//! SQLite): the actor keeps working with its new key, roots converge, its old key is rejected
//! afterwards on every node while older events keep verifying (`verify_store` clean), a node
//! that was offline learns the rotation by catch-up, and a revoked actor's events are
//! rejected everywhere. Also who may rotate or revoke whom.

mod common;

use std::collections::BTreeMap;

use anyhow::{ensure, Context};
use common::{actor, create_deal, values, who, Cluster, TempDir, ROLES};
use serde_json::json;
use sst_core::{
    ActorChange, ActorId, ActorKey, ActorStatus, Event, EventFilter, EventKind, HashAlg, NodeId,
    OriginSeq, Outcome, OutcomeKind, RejectReason, SignedEvent, State, StateId, Timestamp,
};
use sst_node::{Intent, NodeError, Verdict};

async fn converged(c: &Cluster, id: &StateId, version: u64) -> anyhow::Result<()> {
    let roots = c.roots(id).await?;
    ensure!(roots.len() == 4, "not every node holds {id}: {roots:?}");
    let first = roots.values().next().cloned().unwrap_or_default();
    ensure!(
        roots.values().all(|r| *r == first),
        "roots differ: {roots:?}"
    );
    ensure!(first.starts_with(&format!("v{version} ")), "{roots:?}");
    Ok(())
}

async fn all_verify(c: &Cluster) -> anyhow::Result<()> {
    for node in c.nodes.values() {
        let report = sst_core::verify_store(node.store().as_ref(), &mut |_, _| {}).await?;
        ensure!(report.is_clean(), "{}: {:?}", node.id(), report.findings);
    }
    Ok(())
}

/// A price change of `state` by actor `id` of node `node`, signed with `key` (seq `seq`).
fn signed_change(id: &ActorId, node: &str, key: &ActorKey, state: &State, seq: u64) -> SignedEvent {
    let s = sst_core::Section::seal(HashAlg::Blake3, "price", json!({"amount": 1}));
    let event = Event {
        kind: EventKind::ChangeSections,
        state_id: state.id.clone(),
        contract: state.contract.clone(),
        base: Some(sst_core::Base {
            version: state.version,
            root: state.root,
        }),
        origin_node: NodeId::from(node),
        origin_seq: OriginSeq(seq),
        actor: id.clone(),
        payload: json!({"sections": {"price": s.hash.to_string()}}),
        timestamp: Timestamp(1_800_000_000_000),
        alg: HashAlg::Blake3,
    };
    SignedEvent::sign(event, key)
}

/// The rejection reason of a verdict, also when the node had already recorded the event as
/// rejected (the home node sends rejections back to the origin node).
fn rejection(v: &Verdict) -> Option<RejectReason> {
    match v {
        Verdict::Duplicate {
            original: Outcome::Rejected { reason },
            ..
        } => Some(reason.clone()),
        other => other.reason().cloned(),
    }
}

/// Ingests `signed` on every node and checks each rejects it with `expected`.
async fn rejected_everywhere(
    c: &Cluster,
    signed: &SignedEvent,
    expected: &RejectReason,
) -> anyhow::Result<()> {
    for role in ROLES {
        let v = c.node(role).ingest(signed.clone(), BTreeMap::new()).await?;
        ensure!(rejection(&v).as_ref() == Some(expected), "{role}: {v:?}");
    }
    c.net.settled().await;
    Ok(())
}

async fn price(c: &Cluster, role: &str, id: &StateId, amount: u64) -> anyhow::Result<Verdict> {
    Ok(c.node(role)
        .submit(
            &who(role),
            Intent::change(id.clone(), values([("price", json!({"amount": amount}))])),
        )
        .await?)
}

/// The rotation scenario on any cluster.
async fn rotation(c: &Cluster) -> anyhow::Result<()> {
    let id = create_deal(c, "deal-rot").await?;
    ensure!(price(c, "buyer", &id, 490_000).await?.is_applied());
    c.net.settled().await;

    // The regulator is offline during the rotation: it learns it by catch-up.
    let regulator = NodeId::from("regulator");
    c.net.set_online(&regulator, false);
    let (buyer, old_key) = actor("buyer", "a");
    let new_key = ActorKey::from_seed([99u8; 32]);
    let v = c
        .node("buyer")
        .rotate_key(&buyer.id, ActorKey::from_seed([99u8; 32]))
        .await?;
    ensure!(matches!(v, Verdict::Applied { version: 0, .. }), "{v:?}");
    c.net.settled().await;
    // The buyer keeps working with the new key (the state's home is the seller's node).
    ensure!(price(c, "buyer", &id, 480_000).await?.is_applied());
    c.net.settled().await;
    c.net.set_online(&regulator, true);
    c.node("regulator").resync().await?;
    c.net.settled().await;
    ensure!(price(c, "buyer", &id, 470_000).await?.is_applied());
    // The inspector's node builds its call on the version it holds: let 470,000 reach it.
    c.net.settled().await;
    let v = c
        .node("inspector")
        .submit(
            &who("inspector"),
            Intent::call(id.clone(), "record_inspection", json!({"radon": 1.5})),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    c.net.settled().await;
    converged(c, &id, 5).await?;

    // Every node's directory and actor table hold the new key; each recorded the event.
    for node in c.nodes.values() {
        let a = node.actor(&buyer.id).context("buyer known")?;
        ensure!(a.public_key == new_key.public_key(), "{}", node.id());
        let stored = node.store().actor(&buyer.id).await?.context("stored")?;
        ensure!(stored == a, "{}: table {stored:?} vs {a:?}", node.id());
        let changes = node
            .store()
            .events(&EventFilter {
                kind: Some(EventKind::ActorChange),
                outcome: Some(OutcomeKind::Applied),
                ..Default::default()
            })
            .await?;
        ensure!(changes.len() == 1, "{}: {changes:?}", node.id());
        let change = ActorChange::from_payload(&changes[0].event().payload)?;
        ensure!(change.previous_key == old_key.public_key());
        ensure!(changes[0].event().state_id == ActorChange::state_id(&buyer.id));
    }
    // The old key cannot be installed again, and events signed with it are rejected.
    ensure!(matches!(
        c.node("buyer").add_key(&buyer.id, actor("buyer", "a").1),
        Err(NodeError::WrongKey { .. })
    ));
    let head = c.node("seller").state(&id).await?.context("head")?;
    let forged = signed_change(&buyer.id, "buyer", &old_key, &head, 1_000);
    let detail = match rejection(
        &c.node("seller")
            .ingest(forged.clone(), BTreeMap::new())
            .await?,
    ) {
        Some(RejectReason::BadSignature { detail }) => detail,
        other => anyhow::bail!("expected bad_signature, got {other:?}"),
    };
    rejected_everywhere(c, &forged, &RejectReason::BadSignature { detail }).await?;
    // A second rotation signed with the (now) old key is rejected too.
    let v = c
        .node("seller")
        .ingest(
            {
                let e = Event {
                    kind: EventKind::ActorChange,
                    state_id: ActorChange::state_id(&buyer.id),
                    contract: ActorChange::contract(),
                    base: None,
                    origin_node: NodeId::from("seller"),
                    origin_seq: OriginSeq(1_001),
                    actor: buyer.id.clone(),
                    payload: ActorChange {
                        actor: buyer.clone(),
                        previous_key: new_key.public_key(),
                    }
                    .to_payload(),
                    timestamp: Timestamp(1_800_000_000_000),
                    alg: HashAlg::Blake3,
                };
                SignedEvent::sign(e, &old_key)
            },
            BTreeMap::new(),
        )
        .await?;
    ensure!(
        matches!(rejection(&v), Some(RejectReason::BadSignature { .. })),
        "{v:?}"
    );
    converged(c, &id, 5).await?;
    // Older events verify against the key valid at their position, newer ones the new key.
    all_verify(c).await
}

#[tokio::test]
async fn a_rotated_key_works_everywhere_and_the_old_one_is_rejected() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    rotation(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_on_four_sqlite_files() -> anyhow::Result<()> {
    let dir = TempDir::new("sst-rotation")?;
    let c = Cluster::sqlite(&dir.0).await?;
    rotation(&c).await
}

/// The revocation scenario on any cluster: a second actor `inspector/b` of the inspector's
/// node revokes `inspector/a`.
async fn revocation(c: &Cluster) -> anyhow::Result<()> {
    let id = create_deal(c, "deal-rev").await?;
    let (b, b_key) = actor("inspector", "b");
    for node in c.nodes.values() {
        node.register_actor(b.clone()).await?;
    }
    c.node("inspector").add_key(&b.id, b_key)?;
    let (target, target_key) = actor("inspector", "a");

    // Who may change whom: another node's actor may not revoke, another actor may not
    // rotate someone else's key; both are recorded as forbidden and change nothing.
    let v = c.node("buyer").revoke(&who("buyer"), &target.id).await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::Forbidden {
                section: "actor".into()
            }),
        "{v:?}"
    );
    let v = c
        .node("inspector")
        .submit(
            &b.id,
            Intent::rotate_key(
                target.id.clone(),
                ActorKey::from_seed([5u8; 32]).public_key(),
            ),
        )
        .await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::Forbidden {
                section: "actor".into()
            }),
        "{v:?}"
    );
    c.net.settled().await;
    for node in c.nodes.values() {
        let a = node.actor(&target.id).context("known")?;
        ensure!(
            a == target,
            "{}: directory changed by a refused change",
            node.id()
        );
    }

    let v = c.node("inspector").revoke(&b.id, &target.id).await?;
    ensure!(matches!(v, Verdict::Applied { version: 0, .. }), "{v:?}");
    c.net.settled().await;
    for node in c.nodes.values() {
        let a = node.actor(&target.id).context("known")?;
        ensure!(a.status == ActorStatus::Revoked, "{}: {a:?}", node.id());
        let stored = node.store().actor(&target.id).await?.context("stored")?;
        ensure!(stored.status == ActorStatus::Revoked, "{}", node.id());
    }
    // Its node no longer signs for it.
    let err = c
        .node("inspector")
        .submit(
            &target.id,
            Intent::call(id.clone(), "record_inspection", json!({"radon": 1.0})),
        )
        .await;
    ensure!(matches!(err, Err(NodeError::NoKey { .. })), "{err:?}");
    // Events it signed anyway are rejected on every node.
    let head = c.node("seller").state(&id).await?.context("head")?;
    let forged = signed_change(&target.id, "inspector", &target_key, &head, 2_000);
    rejected_everywhere(
        c,
        &forged,
        &RejectReason::RevokedActor {
            actor: target.id.clone(),
        },
    )
    .await?;
    // A revoked actor cannot be revoked again or rotated back.
    let v = c.node("inspector").revoke(&b.id, &target.id).await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::RevokedActor {
                actor: target.id.clone()
            }),
        "{v:?}"
    );
    // The others keep working.
    ensure!(price(c, "buyer", &id, 420_000).await?.is_applied());
    c.net.settled().await;
    converged(c, &id, 2).await?;
    all_verify(c).await
}

#[tokio::test]
async fn a_revoked_actor_is_rejected_on_every_node() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    revocation(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_four_sqlite_files() -> anyhow::Result<()> {
    let dir = TempDir::new("sst-revocation")?;
    let c = Cluster::sqlite(&dir.0).await?;
    revocation(&c).await
}

/// A crash between an actor change's commit and the actor-table write leaves the directory
/// behind the log: the next start applies the recorded change.
#[tokio::test]
async fn start_repairs_a_directory_behind_the_log() -> anyhow::Result<()> {
    use sst_core::{CommitBatch, CommitItem, EventRecord, MemoryStore, Store};
    use std::sync::Arc;

    let store = Arc::new(MemoryStore::new());
    let (buyer, old_key) = actor("buyer", "a");
    store.put_actor(&buyer).await?;
    let new_key = ActorKey::from_seed([77u8; 32]);
    let after = sst_core::Actor {
        public_key: new_key.public_key(),
        ..buyer.clone()
    };
    let e = Event {
        kind: EventKind::ActorChange,
        state_id: ActorChange::state_id(&buyer.id),
        contract: ActorChange::contract(),
        base: None,
        origin_node: buyer.node.clone(),
        origin_seq: OriginSeq(1),
        actor: buyer.id.clone(),
        payload: ActorChange {
            actor: after.clone(),
            previous_key: buyer.public_key,
        }
        .to_payload(),
        timestamp: Timestamp(1_800_000_000_000),
        alg: HashAlg::Blake3,
    };
    let signed = SignedEvent::sign(e, &old_key);
    let root = ActorChange::root(signed.id);
    let outcome = Outcome::Applied { version: 0, root };
    let receipt = sst_core::SequencingReceipt::sign(
        buyer.node.clone(),
        &common::node_key("buyer"),
        &signed.id,
        &signed.event.state_id,
        &outcome,
        &[],
    );
    store
        .commit(CommitBatch::new(vec![CommitItem {
            event: EventRecord {
                signed,
                disclosures: BTreeMap::new(),
                outcome,
                receipt: Some(receipt),
                business_events: Vec::new(),
                endorsements: Vec::new(),
            },
            state: None,
        }]))
        .await?;
    ensure!(store.actor(&buyer.id).await? == Some(buyer.clone()));

    let net = sst_node::InProcessNetwork::new();
    let (transport, inbox) = net.join("buyer");
    let node = sst_node::Node::start(
        common::config("buyer"),
        store.clone(),
        common::registry(false),
        transport,
        inbox,
    )
    .await?;
    ensure!(node.actor(&buyer.id) == Some(after.clone()));
    ensure!(store.actor(&buyer.id).await? == Some(after.clone()));
    // The old key is refused, the new one accepted as the actor's signing key.
    ensure!(node.add_key(&buyer.id, old_key).is_err());
    node.add_key(&buyer.id, new_key)?;
    let report = sst_core::verify_store(store.as_ref(), &mut |_, _| {}).await?;
    ensure!(report.is_clean(), "{:?}", report.findings);
    Ok(())
}

/// A rotation signed with `key` by `before`'s actor, on `before`'s node with sequence `seq`,
/// installing `new_key`.
fn signed_rotation(
    before: &sst_core::Actor,
    key: &ActorKey,
    new_key: &ActorKey,
    seq: u64,
) -> SignedEvent {
    let e = Event {
        kind: EventKind::ActorChange,
        state_id: ActorChange::state_id(&before.id),
        contract: ActorChange::contract(),
        base: None,
        origin_node: before.node.clone(),
        origin_seq: OriginSeq(seq),
        actor: before.id.clone(),
        payload: ActorChange {
            actor: sst_core::Actor {
                public_key: new_key.public_key(),
                ..before.clone()
            },
            previous_key: before.public_key,
        }
        .to_payload(),
        timestamp: Timestamp(1_800_000_000_000),
        alg: HashAlg::Blake3,
    };
    SignedEvent::sign(e, key)
}

/// Two rotations queued together (typically drained into one group commit): the second,
/// signed with the key the first installs, is checked only after the first is applied.
#[tokio::test]
async fn a_rotation_signed_with_the_key_installed_just_before_in_the_same_drain_applies(
) -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let (buyer, k0) = actor("buyer", "a");
    let k1 = ActorKey::from_seed([11u8; 32]);
    let k2 = ActorKey::from_seed([12u8; 32]);
    let first = signed_rotation(&buyer, &k0, &k1, 1_000);
    let mid = sst_core::Actor {
        public_key: k1.public_key(),
        ..buyer.clone()
    };
    let second = signed_rotation(&mid, &k1, &k2, 1_001);
    let node = c.node("buyer");
    let (a, b) = tokio::join!(
        node.ingest(first, BTreeMap::new()),
        node.ingest(second, BTreeMap::new())
    );
    let (a, b) = (a?, b?);
    ensure!(a.is_applied() && b.is_applied(), "{a:?} / {b:?}");
    c.net.settled().await;
    for n in c.nodes.values() {
        let now = n.actor(&buyer.id).context("known")?;
        ensure!(now.public_key == k2.public_key(), "{}", n.id());
    }
    all_verify(&c).await
}
