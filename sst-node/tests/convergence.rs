//! Property: four nodes in one process, 1,000 random intents from random actors (many of
//! them unauthorized or racing on stale bases), submitted concurrently in waves — afterwards
//! every node holds every state at the same version with the same root, and the redacted
//! nodes hold no plaintext they may not read.

mod common;

use std::sync::Arc;

use anyhow::{ensure, Context};
use common::{deal_parties, values, who, Cluster, ROLES};
use proptest::prelude::*;
use serde_json::json;
use sst_core::{ContractRef, Parties, StateId};
use sst_node::{Intent, Verdict};

const STATES: [&str; 3] = ["deal-a", "deal-b", "rfq-c"];

#[derive(Debug, Clone)]
struct Op {
    node: usize,
    state: usize,
    kind: u8,
    value: i64,
}

fn op() -> impl Strategy<Value = Op> {
    (0..4usize, 0..3usize, 0..5u8, 1..1_000_000i64).prop_map(|(node, state, kind, value)| Op {
        node,
        state,
        kind,
        value,
    })
}

fn intent(op: &Op) -> Intent {
    let id = STATES[op.state];
    if op.state == 2 {
        return if op.kind % 2 == 0 {
            Intent::call(id, "submit_quote", json!({"price": op.value}))
        } else {
            Intent::change(id, values([("request", json!({"item": op.value}))]))
        };
    }
    match op.kind {
        0 => Intent::change(id, values([("common", json!({"v": op.value}))])),
        1 => Intent::change(id, values([("price", json!({"amount": op.value}))])),
        2 => Intent::call(id, "record_inspection", json!({"radon": op.value % 10})),
        3 => Intent::call(id, "set_price", json!({"amount": op.value})),
        _ => Intent::change(id, values([("inspection", json!({"radon": op.value % 7}))])),
    }
}

async fn setup(c: &Cluster) -> anyhow::Result<()> {
    let deal = |id: &str| {
        Intent::create(
            id,
            ContractRef::new("real-estate-deal", 1),
            deal_parties(),
            values([("common", json!({"v": 0})), ("price", json!({"amount": 1}))]),
        )
    };
    ensure!(c
        .node("seller")
        .submit(&who("seller"), deal("deal-a"))
        .await?
        .is_applied());
    ensure!(c
        .node("buyer")
        .submit(&who("buyer"), deal("deal-b"))
        .await?
        .is_applied());
    let rfq = Intent::create(
        "rfq-c",
        ContractRef::new("rfq", 1),
        Parties::default()
            .with("requester", who("buyer").as_str())
            .with("supplier", who("seller").as_str())
            .with("supplier", who("inspector").as_str())
            .with("auditor", who("regulator").as_str()),
        values([("request", json!({"item": 0})), ("quotes", json!([]))]),
    );
    ensure!(c
        .node("buyer")
        .submit(&who("buyer"), rfq)
        .await?
        .is_applied());
    c.net.settled().await;
    Ok(())
}

async fn run(ops: Vec<Op>) -> anyhow::Result<()> {
    let c = Cluster::in_memory().await?;
    setup(&c).await?;
    let mut applied = 0usize;
    for wave in ops.chunks(8) {
        let mut set = tokio::task::JoinSet::new();
        for op in wave {
            let role = ROLES[op.node];
            let node = Arc::clone(c.node(role));
            let intent = intent(op);
            set.spawn(async move { node.submit(&who(role), intent).await });
        }
        while let Some(r) = set.join_next().await {
            match r?? {
                Verdict::Applied { .. } => applied += 1,
                Verdict::Rejected { .. } => {}
                other => anyhow::bail!("unexpected verdict {other:?}"),
            }
        }
    }
    c.net.settled().await;
    let mut versions = 0;
    for id in STATES {
        let id = StateId::from(id);
        let roots = c.roots(&id).await?;
        let first = roots.values().next().cloned().context("no root")?;
        ensure!(roots.len() == 4, "{id} missing on some node: {roots:?}");
        ensure!(
            roots.values().all(|r| *r == first),
            "{id} diverged: {roots:?}"
        );
        versions += c.node("buyer").state(&id).await?.context("state")?.version - 1;
    }
    ensure!(
        versions as usize == applied,
        "{applied} applied but {versions} new versions"
    );
    for (role, hidden) in [("inspector", "deal-a"), ("regulator", "deal-b")] {
        let s = c
            .node(role)
            .state(&StateId::from(hidden))
            .await?
            .context("state")?;
        ensure!(
            s.sections["price"].disclosure.is_none(),
            "{role} holds price plaintext"
        );
    }
    for role in ["seller", "inspector"] {
        let s = c
            .node(role)
            .state(&StateId::from("rfq-c"))
            .await?
            .context("state")?;
        ensure!(
            s.sections["quotes"].disclosure.is_none(),
            "supplier {role} reads quotes"
        );
    }
    for node in c.nodes.values() {
        let report = sst_core::verify_store(node.store().as_ref(), &mut |_, _| {}).await?;
        ensure!(report.is_clean(), "{}: {:?}", node.id(), report.findings);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]

    #[test]
    fn four_nodes_converge_after_1000_random_events(ops in proptest::collection::vec(op(), 1000)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        rt.block_on(run(ops)).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    }
}
