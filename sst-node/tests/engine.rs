//! End-to-end behaviour of the node engine on in-memory stores: the real-estate deal with
//! redaction, every rejection reason, replay, offline catch-up, contract versions, the RFQ.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{ensure, Context};
use common::{actor, create_deal, create_rfq, registry, values, who, Cluster};
use serde_json::json;
use sst_core::{
    ActorStatus, ContractRef, Event, EventKind, HashAlg, NodeId, OriginSeq, RejectReason,
    SignedEvent, StateId, Store, Timestamp,
};
use sst_node::{HomeMessage, Intent, Transport, Verdict};

async fn all_equal(c: &Cluster, id: &StateId) -> anyhow::Result<String> {
    let roots = c.roots(id).await?;
    ensure!(roots.len() == 4, "not every node holds {id}: {roots:?}");
    let first = roots.values().next().cloned().unwrap_or_default();
    ensure!(
        roots.values().all(|r| *r == first),
        "roots differ: {roots:?}"
    );
    Ok(first)
}

#[tokio::test]
async fn deal_converges_and_each_node_holds_only_what_it_may_read() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let id = create_deal(&c, "deal-1").await?;
    // The buyer (not home) changes the price: forwarded to the seller's node, sequenced there.
    let v = c
        .node("buyer")
        .submit(
            &who("buyer"),
            Intent::change("deal-1", values([("price", json!({"amount": 480000}))])),
        )
        .await?;
    ensure!(matches!(v, Verdict::Applied { version: 2, .. }), "{v:?}");
    // The inspector records radon through a contract method.
    let v = c
        .node("inspector")
        .submit(
            &who("inspector"),
            Intent::call("deal-1", "record_inspection", json!({"radon": 2.5})),
        )
        .await?;
    ensure!(matches!(v, Verdict::Applied { version: 3, .. }), "{v:?}");
    c.net.settled().await;
    all_equal(&c, &id).await?;
    for role in ["inspector", "regulator"] {
        let s = c.node(role).state(&id).await?.context("state")?;
        ensure!(
            s.sections["price"].disclosure.is_none(),
            "{role} holds price plaintext"
        );
        ensure!(
            s.sections["inspection"].value().is_some(),
            "{role} cannot read inspection"
        );
        ensure!(
            !s.data().to_string().contains("480000"),
            "{role} data leaks the price"
        );
        s.verify()?;
        for rec in c.node(role).store().events(&Default::default()).await? {
            ensure!(
                !rec.disclosures.contains_key("price"),
                "{role} event table leaks the price"
            );
        }
    }
    for role in ["buyer", "seller"] {
        let s = c.node(role).state(&id).await?.context("state")?;
        ensure!(
            s.sections["price"].value() == Some(&json!({"amount": 480000})),
            "{role}"
        );
    }
    let insp = c.node("regulator").state(&id).await?.context("state")?;
    ensure!(
        insp.sections["inspection"]
            .value()
            .and_then(|v| v.get("inspector"))
            == Some(&json!("inspector/a"))
    );
    for node in c.nodes.values() {
        let report = sst_core::verify_store(node.store().as_ref(), &mut |_, _| {}).await?;
        ensure!(report.is_clean(), "{}: {:?}", node.id(), report.findings);
    }
    Ok(())
}

/// An event signed by `role`'s actor with an explicit seq, for attacks.
fn signed_change(
    role: &str,
    state: &sst_core::State,
    sections: BTreeMap<String, serde_json::Value>,
    seq: u64,
) -> (SignedEvent, BTreeMap<String, sst_core::Disclosure>) {
    let (a, key) = actor(role, "a");
    let sealed: BTreeMap<_, _> = sections
        .into_iter()
        .map(|(n, v)| {
            let s = sst_core::Section::seal(HashAlg::Blake3, &n, v);
            (n, s)
        })
        .collect();
    let hashes = sealed.iter().map(|(n, s)| (n.clone(), s.hash)).collect();
    let event = Event {
        kind: EventKind::ChangeSections,
        state_id: state.id.clone(),
        contract: state.contract.clone(),
        base: Some(sst_core::Base {
            version: state.version,
            root: state.root,
        }),
        origin_node: a.node.clone(),
        origin_seq: OriginSeq(seq),
        actor: a.id.clone(),
        payload: sst_core::ChangePayload { sections: hashes }.to_payload(),
        timestamp: Timestamp(1_800_000_000_000),
        alg: HashAlg::Blake3,
    };
    let disclosures = sealed
        .into_iter()
        .filter_map(|(n, s)| s.disclosure.map(|d| (n, d)))
        .collect();
    (SignedEvent::sign(event, &key), disclosures)
}

async fn unchanged(c: &Cluster, id: &StateId, before: &str) -> anyhow::Result<()> {
    c.net.settled().await;
    let now = all_equal(c, id).await?;
    ensure!(now == before, "state changed: {before} -> {now}");
    Ok(())
}

#[tokio::test]
async fn bad_events_are_rejected_with_their_reason_and_change_nothing() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let id = create_deal(&c, "deal-2").await?;
    let before = all_equal(&c, &id).await?;
    let seller = c.node("seller");
    let cur = seller.state(&id).await?.context("state")?;

    // Unauthorized: the inspector tries to change the price (forwarded, rejected at home,
    // the rejection travels back and is recorded on the inspector's node too).
    let v = c
        .node("inspector")
        .submit(
            &who("inspector"),
            Intent::change("deal-2", values([("price", json!({"amount": 1}))])),
        )
        .await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::Forbidden {
                section: "price".into()
            }),
        "{v:?}"
    );
    unchanged(&c, &id, &before).await?;
    let at_inspector = c.node("inspector").outcome(&v.event()).await?;
    ensure!(
        matches!(at_inspector, Some(sst_core::Outcome::Rejected { .. })),
        "{at_inspector:?}"
    );
    ensure!(
        seller
            .rejections()
            .await?
            .iter()
            .any(|r| r.id() == v.event()),
        "rejection not queryable at home"
    );

    // Regulator is read-only.
    let v = c
        .node("regulator")
        .submit(
            &who("regulator"),
            Intent::change("deal-2", values([("common", json!({"x": 1}))])),
        )
        .await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::Forbidden {
                section: "common".into()
            }),
        "{v:?}"
    );

    // Forged: a body changed after signing.
    let (mut forged, d) = signed_change(
        "buyer",
        &cur,
        values([("price", json!({"amount": 2}))]),
        900,
    );
    forged.event.payload = json!({"sections": {}});
    let v = seller.ingest(forged, d).await?;
    ensure!(
        matches!(v.reason(), Some(RejectReason::BadSignature { .. })),
        "{v:?}"
    );
    // Forged: signed by a different key than the actor's.
    let (mut forged, d) = signed_change(
        "buyer",
        &cur,
        values([("price", json!({"amount": 3}))]),
        901,
    );
    let (_, other_key) = actor("mallory", "m");
    forged.signatures[0].signature = other_key.sign_digest(&forged.id.0);
    let v = seller.ingest(forged, d).await?;
    ensure!(
        matches!(v.reason(), Some(RejectReason::BadSignature { .. })),
        "{v:?}"
    );
    unchanged(&c, &id, &before).await?;

    // Unknown actor.
    let (s, d) = signed_change("mallory", &cur, values([("common", json!({"x": 1}))]), 1);
    let v = seller.ingest(s, d).await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::UnknownActor {
                actor: "mallory/a".into()
            }),
        "{v:?}"
    );

    // Stale: built on an old base.
    let ok = c
        .node("buyer")
        .submit(
            &who("buyer"),
            Intent::change("deal-2", values([("price", json!({"amount": 490000}))])),
        )
        .await?;
    ensure!(ok.is_applied(), "{ok:?}");
    c.net.settled().await;
    let before = all_equal(&c, &id).await?;
    let (stale, d) = signed_change(
        "buyer",
        &cur,
        values([("price", json!({"amount": 4}))]),
        950,
    );
    let v = seller.ingest(stale, d).await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::StaleBase {
                expected_version: 1,
                found_version: 2
            }),
        "{v:?}"
    );

    // Replayed: the applied change sent again changes nothing.
    let rec = seller
        .store()
        .event(&ok.event())
        .await?
        .context("recorded")?;
    let v = seller
        .ingest(rec.signed.clone(), rec.disclosures.clone())
        .await?;
    ensure!(matches!(v, Verdict::Duplicate { .. }), "{v:?}");
    // ... and a different event reusing its origin sequence is refused, not recorded.
    let now = seller.state(&id).await?.context("state")?;
    let (reuse, d) = signed_change(
        "buyer",
        &now,
        values([("price", json!({"amount": 5}))]),
        rec.event().origin_seq.0,
    );
    let v = seller.ingest(reuse, d).await?;
    ensure!(matches!(v, Verdict::Refused { .. }), "{v:?}");
    ensure!(
        seller.outcome(&v.event()).await?.is_none(),
        "refused event was recorded"
    );

    // Revoked actor.
    let (mut inspector, _) = actor("inspector", "a");
    inspector.status = ActorStatus::Revoked;
    seller.register_actor(inspector.clone()).await?;
    let now = seller.state(&id).await?.context("state")?;
    let (s, d) = signed_change(
        "inspector",
        &now,
        values([("inspection", json!({"radon": 1.0}))]),
        50,
    );
    let v = seller.ingest(s, d).await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::RevokedActor {
                actor: inspector.id.clone()
            }),
        "{v:?}"
    );

    // Contract logic: a non-positive price.
    let v = c
        .node("buyer")
        .submit(
            &who("buyer"),
            Intent::change("deal-2", values([("price", json!({"amount": -1}))])),
        )
        .await?;
    ensure!(
        matches!(v.reason(), Some(RejectReason::ContractRejected { .. })),
        "{v:?}"
    );
    unchanged(&c, &id, &before).await?;

    // Every rejection is queryable with its code at the home node.
    let codes: Vec<&str> = seller
        .rejections()
        .await?
        .iter()
        .filter_map(|r| match &r.outcome {
            sst_core::Outcome::Rejected { reason } => Some(reason.code()),
            _ => None,
        })
        .collect::<Vec<_>>();
    for code in [
        "forbidden",
        "bad_signature",
        "unknown_actor",
        "stale_base",
        "revoked_actor",
        "contract_rejected",
    ] {
        ensure!(codes.contains(&code), "no {code} in {codes:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_forged_change_pushed_to_a_replica_is_refused() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let id = create_deal(&c, "deal-3").await?;
    let before = all_equal(&c, &id).await?;
    // The buyer's node pretends to be home and pushes a change to the regulator.
    let cur = c.node("buyer").state(&id).await?.context("state")?;
    let (s, _) = signed_change("buyer", &cur, values([("common", json!({"x": 1}))]), 77);
    let change = sst_node::AppliedChange {
        effects: sst_core::ChangePayload::from_payload(&s.event.payload)?.sections,
        signed: s,
        disclosures: BTreeMap::new(),
        version: 2,
        root: cur.root,
        receipt: None,
        business_events: Vec::new(),
        endorsements: Vec::new(),
    };
    let forged_id = change.signed.id;
    let (t, _inbox) = c.net.join("intruder");
    t.send(
        &NodeId::from("regulator"),
        HomeMessage::Applied(Box::new(change)).envelope()?,
    )
    .await?;
    unchanged(&c, &id, &before).await?;
    ensure!(
        c.node("regulator").outcome(&forged_id).await?.is_none(),
        "the replica recorded a change its home never made"
    );
    Ok(())
}

#[tokio::test]
async fn an_offline_node_catches_up() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let id = create_deal(&c, "deal-4").await?;
    c.net.set_online(&NodeId::from("regulator"), false);
    for amount in [1u32, 2, 3] {
        let v = c
            .node("buyer")
            .submit(
                &who("buyer"),
                Intent::change("deal-4", values([("common", json!({"rev": amount}))])),
            )
            .await?;
        ensure!(v.is_applied(), "{v:?}");
    }
    c.net.settled().await;
    let reg = c.node("regulator").state(&id).await?.context("state")?;
    ensure!(reg.version == 1, "offline node got updates");
    c.net.set_online(&NodeId::from("regulator"), true);
    // The next change reveals the gap; the regulator asks the home node for what it missed.
    let v = c
        .node("seller")
        .submit(
            &who("seller"),
            Intent::change("deal-4", values([("common", json!({"rev": 4}))])),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    c.net.settled().await;
    ensure!(all_equal(&c, &id).await?.starts_with("v5 "), "not at v5");
    // A state created while offline arrives through an explicit resync.
    c.net.set_online(&NodeId::from("regulator"), false);
    let id2 = create_deal(&c, "deal-5").await?;
    ensure!(c.node("regulator").state(&id2).await?.is_none());
    c.net.set_online(&NodeId::from("regulator"), true);
    c.node("regulator").resync().await?;
    c.net.settled().await;
    all_equal(&c, &id2).await?;
    Ok(())
}

#[tokio::test]
async fn contract_versions_are_named_held_and_migrated() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let id = create_deal(&c, "deal-6").await?;
    let v2 = ContractRef::new("real-estate-deal", 2);
    // Nobody holds v2 yet: migrating is refused for an unknown contract version.
    let v = c
        .node("seller")
        .submit(
            &who("seller"),
            Intent::Migrate {
                state_id: id.clone(),
                to: v2.clone(),
            },
        )
        .await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::UnknownContract {
                contract: v2.clone()
            }),
        "{v:?}"
    );
    // A record whose identity does not match the code is refused by deploy.
    let reg = common::registry(true);
    let (_, key) = actor("seller", "a");
    let mut rec = reg.deployment(&v2, HashAlg::Blake3, who("seller"), &key)?;
    rec.descriptor.methods.push("steal".into());
    ensure!(
        c.node("seller").deploy(rec).await.is_err(),
        "tampered descriptor deployed"
    );
    Ok(())
}

#[tokio::test]
async fn migration_moves_a_state_to_the_superseding_version() -> anyhow::Result<()> {
    use std::sync::Arc;
    let net = sst_node::InProcessNetwork::new();
    let v1 = ContractRef::new("real-estate-deal", 1);
    let v2 = ContractRef::new("real-estate-deal", 2);
    let mut nodes = BTreeMap::new();
    for role in common::ROLES {
        // The regulator does not install v2.
        let deploy = if role == "regulator" {
            vec![v1.clone()]
        } else {
            vec![v1.clone(), v2.clone()]
        };
        let store: Arc<dyn sst_core::Store> = Arc::new(sst_core::MemoryStore::new());
        let n = Cluster::start_node(
            &net,
            role,
            store.clone(),
            common::registry(role != "regulator"),
            &deploy,
        )
        .await?;
        nodes.insert(role.to_string(), Arc::new(n));
    }
    let c = Cluster {
        net,
        nodes,
        stores: BTreeMap::new(),
    };
    let id = create_deal(&c, "deal-7").await?;
    let v = c
        .node("buyer")
        .submit(
            &who("buyer"),
            Intent::Migrate {
                state_id: id.clone(),
                to: v2.clone(),
            },
        )
        .await?;
    ensure!(matches!(v, Verdict::Applied { version: 2, .. }), "{v:?}");
    c.net.settled().await;
    for role in ["buyer", "seller", "inspector"] {
        let s = c.node(role).state(&id).await?.context("state")?;
        ensure!(
            s.contract == v2 && s.version == 2,
            "{role}: {:?} v{}",
            s.contract,
            s.version
        );
        ensure!(s.sections["closing"].value() == Some(&json!({"status": "open"})));
    }
    // The regulator does not hold v2 and refuses the migrated state: it stays at v1.
    let reg = c.node("regulator").state(&id).await?.context("state")?;
    ensure!(reg.version == 1 && reg.contract == v1);
    // New methods of v2 work after the migration.
    let v = c
        .node("seller")
        .submit(&who("seller"), Intent::call("deal-7", "close", json!({})))
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    Ok(())
}

#[tokio::test]
async fn rfq_appends_quote_tuples_that_suppliers_cannot_read() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    create_rfq(&c, "rfq-1").await?;
    for (role, price) in [("seller", 1200), ("inspector", 1100)] {
        let v = c
            .node(role)
            .submit(
                &who(role),
                Intent::call("rfq-1", "submit_quote", json!({"price": price})),
            )
            .await?;
        ensure!(v.is_applied(), "{role}: {v:?}");
    }
    // The requester may not quote.
    let v = c
        .node("buyer")
        .submit(
            &who("buyer"),
            Intent::call("rfq-1", "submit_quote", json!({"price": 1})),
        )
        .await?;
    ensure!(
        matches!(v.reason(), Some(RejectReason::ContractRejected { .. })),
        "{v:?}"
    );
    c.net.settled().await;
    let id = StateId::from("rfq-1");
    all_equal(&c, &id).await?;
    let quotes = c.node("buyer").state(&id).await?.context("state")?.sections["quotes"]
        .value()
        .cloned()
        .context("requester reads quotes")?;
    let arr = quotes.as_array().context("array")?;
    ensure!(arr.len() == 2, "{quotes}");
    ensure!(arr[0][0] == json!("seller/a") && arr[0][1] == json!(1200) && arr[0][2].is_i64());
    ensure!(arr[1][0] == json!("inspector/a") && arr[1][1] == json!(1100));
    for role in ["seller", "inspector"] {
        let s = c.node(role).state(&id).await?.context("state")?;
        ensure!(
            s.sections["quotes"].disclosure.is_none(),
            "supplier {role} reads quotes"
        );
    }
    let audit = c.node("regulator").state(&id).await?.context("state")?;
    ensure!(
        audit.sections["quotes"].value().is_some(),
        "auditor cannot read quotes"
    );
    Ok(())
}

#[tokio::test]
async fn a_home_refuses_to_build_on_a_version_edited_behind_its_back() -> anyhow::Result<()> {
    // The seller's (home's) copy of the deal lives in a memory store this test can edit.
    let seller_store = Arc::new(sst_core::MemoryStore::new());
    let mut stores = Cluster::memory_stores();
    stores.insert("seller".into(), seller_store.clone() as Arc<dyn Store>);
    let mut c = Cluster::start(stores).await?;
    let id = create_deal(&c, "deal-edited").await?;
    // Restarted, the home reads the deal from its table (nothing cached)...
    drop(c.nodes.remove("seller").context("seller")?);
    // ...where a raw UPDATE changed a section the next change does not touch, its hash left
    // as it was.
    seller_store.tamper(&id, |versions| {
        if let Some(d) = versions
            .last_mut()
            .and_then(|v| v.sections.get_mut("common"))
            .and_then(|s| s.disclosure.as_mut())
        {
            d.value = json!({"address": "2 Elm St", "built": 1931}).into();
        }
    })?;
    let seller =
        Cluster::start_node(&c.net, "seller", seller_store.clone(), registry(false), &[]).await?;
    let outcome = seller
        .submit(
            &who("seller"),
            Intent::change("deal-edited", values([("price", json!({"amount": 1}))])),
        )
        .await;
    ensure!(
        matches!(&outcome, Err(e) if e.to_string().contains("deal-edited")),
        "a change built on the edited version: {outcome:?}"
    );
    // Nothing was committed on top of it.
    let stored = seller_store.state(&id).await?.context("state")?;
    ensure!(stored.version == 1, "version {}", stored.version);
    Ok(())
}
