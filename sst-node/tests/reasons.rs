//! Precise reasons: each mistake a new user makes is refused with its own typed reason or
//! error — a typo in a section name, an empty change, a create without (registered) parties,
//! a wrong key for `add_key`, and contract code changed under an existing version.

mod common;

use std::sync::Arc;

use anyhow::ensure;
use common::{actor, create_deal, deal_parties, values, who, Cluster};
use serde_json::{json, Value};
use sst_core::{ActorKey, ContractPolicy, ContractRef, MemoryStore, Parties, RejectReason, Store};
use sst_node::contracts::RealEstateDeal;
use sst_node::{Contract, ContractRegistry, InProcessNetwork, Intent, NodeError};

fn deal() -> ContractRef {
    ContractRef::new("real-estate-deal", 1)
}

#[tokio::test]
async fn a_typo_in_a_section_name_is_unknown_section_not_forbidden() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let id = create_deal(&c, "deal-typo").await?;
    let v = c
        .node("buyer")
        .submit(
            &who("buyer"),
            Intent::change(id.clone(), values([("prise", json!({"amount": 1}))])),
        )
        .await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::UnknownSection {
                section: "prise".into()
            }),
        "{v:?}"
    );
    // In a create too, before the permission check.
    let v = c
        .node("seller")
        .submit(
            &who("seller"),
            Intent::create(
                "deal-typo-2",
                deal(),
                deal_parties(),
                values([("comon", json!({"address": "x"}))]),
            ),
        )
        .await?;
    ensure!(
        v.reason().map(RejectReason::code) == Some("unknown_section"),
        "{v:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_empty_change_is_refused_and_makes_no_version() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let id = create_deal(&c, "deal-empty").await?;
    let v = c
        .node("seller")
        .submit(&who("seller"), Intent::change(id.clone(), values([])))
        .await?;
    ensure!(v.reason() == Some(&RejectReason::EmptyChange), "{v:?}");
    let s = c.node("seller").state(&id).await?;
    ensure!(s.map(|s| s.version) == Some(1), "a new version was made");
    Ok(())
}

#[tokio::test]
async fn a_create_without_parties_is_missing_parties() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let v = c
        .node("seller")
        .submit(
            &who("seller"),
            Intent::create(
                "deal-nobody",
                deal(),
                Parties::default(),
                values([("common", json!({"address": "x"}))]),
            ),
        )
        .await?;
    ensure!(v.reason() == Some(&RejectReason::MissingParties), "{v:?}");
    Ok(())
}

#[tokio::test]
async fn a_party_naming_an_unregistered_actor_is_unknown_party() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let parties = deal_parties().with("inspector", "nobody/x");
    let v = c
        .node("seller")
        .submit(
            &who("seller"),
            Intent::create(
                "deal-ghost",
                deal(),
                parties,
                values([("common", json!({"address": "x"}))]),
            ),
        )
        .await?;
    ensure!(
        v.reason()
            == Some(&RejectReason::UnknownParty {
                role: "inspector".into(),
                actor: "nobody/x".into()
            }),
        "{v:?}"
    );
    ensure!(
        c.node("seller")
            .state(&"deal-ghost".into())
            .await?
            .is_none(),
        "the state was created"
    );
    Ok(())
}

#[tokio::test]
async fn add_key_with_the_wrong_key_says_the_key_does_not_match() -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    let (seller, _) = actor("seller", "a");
    let err = c
        .node("seller")
        .add_key(&seller.id, ActorKey::generate())
        .expect_err("a wrong key was accepted");
    ensure!(
        matches!(&err, NodeError::WrongKey { actor, .. } if *actor == seller.id),
        "{err:?}"
    );
    ensure!(err.to_string().contains("does not match"), "{err}");
    // An actor of another node is still not local.
    let (buyer, buyer_key) = actor("buyer", "a");
    let err = c
        .node("seller")
        .add_key(&buyer.id, buyer_key)
        .expect_err("another node's actor was accepted");
    ensure!(matches!(err, NodeError::NotLocal { .. }), "{err:?}");
    Ok(())
}

/// The real-estate deal v1 with its source edited but its version not bumped.
struct EditedDeal;

impl Contract for EditedDeal {
    fn contract(&self) -> ContractRef {
        deal()
    }
    fn policy(&self) -> ContractPolicy {
        RealEstateDeal.policy()
    }
    fn methods(&self) -> Vec<String> {
        RealEstateDeal.methods()
    }
    fn source(&self) -> &str {
        "// edited without a new version\n"
    }
    fn call(
        &self,
        call: &sst_node::Call<'_>,
        current: &sst_node::Sections,
        method: &str,
        args: &Value,
    ) -> Result<sst_node::MethodOutput, sst_node::ContractError> {
        RealEstateDeal.call(call, current, method, args)
    }
}

#[tokio::test]
async fn changed_contract_code_under_the_same_version_refuses_start_and_says_bump_it(
) -> anyhow::Result<()> {
    let net = InProcessNetwork::new();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let registry = ContractRegistry::new().with(RealEstateDeal);
    let node = Cluster::start_node(&net, "seller", store.clone(), registry, &[deal()]).await?;
    drop(node);
    let edited = ContractRegistry::new().with(EditedDeal);
    let (transport, inbox) = net.join("seller");
    let err = sst_node::Node::start(
        common::config("seller"),
        store,
        edited.clone(),
        transport,
        inbox,
    )
    .await
    .expect_err("the node started with changed code under a deployed version");
    ensure!(
        matches!(&err, NodeError::ContractChanged { contract, held, .. }
            if *contract == deal() && Some(*held) == edited.identity(&deal(), sst_core::HashAlg::Blake3)),
        "{err:?}"
    );
    let msg = err.to_string();
    ensure!(
        msg.contains("identity changed") && msg.contains("bump its version"),
        "{msg}"
    );
    Ok(())
}
