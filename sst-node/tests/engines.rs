//! Contracts deployed at run time: a `DeployContract` event reaches every node (one offline
//! gets it by catch-up) and the version is installed without a restart; engine-run contracts
//! are re-loaded from their verified stored source at start (a changed byte refuses the
//! start); business events travel with the change and are covered by the receipts;
//! replicas that read every section re-execute method calls and refuse a different result;
//! a call that runs out of its budget is rejected `contract_limit`.
//!
//! The engine here is a small, real interpreter ([`TableEngine`]): its artifact is a JSON
//! method table (role checks, argument checks, section templates, business events, a tick
//! budget), so these tests do not depend on the JavaScript engine.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use common::{
    actor, deal_parties, eventually, node_registry, registry, values, who, Cluster, ROLES,
};
use serde::Deserialize;
use serde_json::{json, Value};
use sst_core::{
    BusinessEvent, ContractDescriptor, ContractLimits, ContractPolicy, ContractRecord, ContractRef,
    EngineRef, EventFilter, EventKind, HashAlg, MemoryStore, OriginSeq, RejectReason,
    SectionPolicy, SequencingReceipt, StateId, Store,
};
use sst_node::{
    Call, Contract, ContractEngine, ContractError, ContractRegistry, EventBuilder,
    InProcessNetwork, Intent, LoadError, MethodOutput, Node, NodeError, RecordProblem, Sections,
    Verdict,
};

// ---------------------------------------------------------------------------------------
// The table engine: a method table interpreted with a deterministic tick budget.
// ---------------------------------------------------------------------------------------

/// One method of a table contract.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Method {
    /// The role the caller must hold.
    role: String,
    /// Numeric arguments that must be at least the given value.
    #[serde(default)]
    at_least: BTreeMap<String, f64>,
    /// Section → template of its new value.
    #[serde(default)]
    set: BTreeMap<String, Value>,
    /// Business events: name → payload template.
    #[serde(default)]
    emit: Vec<(String, Value)>,
    /// Extra ticks the call spends (a template; e.g. `"$args.n"`).
    #[serde(default)]
    spin: Option<Value>,
}

/// A table contract's artifact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Program {
    methods: BTreeMap<String, Method>,
}

/// The engine id the table engine runs.
fn table_engine() -> EngineRef {
    EngineRef::new("table", "1")
}

/// Interprets method tables. `clock_skew` models a node whose engine does not take the
/// clock from the signed event alone (it adds a skew to `$now`): its results differ.
#[derive(Debug, Default)]
struct TableEngine {
    clock_skew: i64,
}

impl ContractEngine for TableEngine {
    fn engine(&self) -> EngineRef {
        table_engine()
    }

    fn load(
        &self,
        descriptor: &ContractDescriptor,
        source: &str,
    ) -> Result<Arc<dyn Contract>, LoadError> {
        let refuse = |reason: String| LoadError {
            contract: descriptor.contract.clone(),
            engine: table_engine().to_string(),
            reason,
        };
        let program: Program =
            serde_json::from_str(source).map_err(|e| refuse(format!("not a method table: {e}")))?;
        let methods: Vec<String> = program.methods.keys().cloned().collect();
        let mut declared = descriptor.methods.clone();
        declared.sort();
        if methods != declared {
            return Err(refuse(format!(
                "the table defines {methods:?}, the descriptor declares {declared:?}"
            )));
        }
        let limits = descriptor
            .limits
            .ok_or_else(|| refuse("a table contract needs limits".into()))?;
        Ok(Arc::new(TableContract {
            descriptor: descriptor.clone(),
            source: source.to_owned(),
            program,
            limits,
            clock_skew: self.clock_skew,
        }))
    }
}

struct TableContract {
    descriptor: ContractDescriptor,
    source: String,
    program: Program,
    limits: ContractLimits,
    clock_skew: i64,
}

/// What a template may refer to.
struct Scope<'a> {
    call: &'a Call<'a>,
    args: &'a Value,
    clock_skew: i64,
}

impl Scope<'_> {
    /// Fills a template: `$args`, `$args.<member>`, `$now` (the event's timestamp), `$actor`,
    /// `$event`; objects and arrays recursively; anything else literally.
    fn fill(&self, template: &Value, ticks: &mut u64) -> Value {
        *ticks += 1;
        match template {
            Value::String(s) if s == "$args" => self.args.clone(),
            Value::String(s) if s == "$now" => json!(self.call.timestamp.0 + self.clock_skew),
            Value::String(s) if s == "$actor" => json!(self.call.actor.as_str()),
            Value::String(s) if s == "$event" => json!(self.call.event.to_string()),
            Value::String(s) if s.starts_with("$args.") => self
                .args
                .get(&s["$args.".len()..])
                .cloned()
                .unwrap_or(Value::Null),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.fill(v, ticks)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.fill(v, ticks)).collect()),
            other => other.clone(),
        }
    }
}

impl Contract for TableContract {
    fn contract(&self) -> ContractRef {
        self.descriptor.contract.clone()
    }
    fn policy(&self) -> ContractPolicy {
        self.descriptor.policy.clone()
    }
    fn methods(&self) -> Vec<String> {
        self.descriptor.methods.clone()
    }
    fn supersedes(&self) -> Vec<ContractRef> {
        self.descriptor.supersedes.clone()
    }
    fn source(&self) -> &str {
        &self.source
    }
    fn engine(&self) -> Option<EngineRef> {
        self.descriptor.engine.clone()
    }
    fn limits(&self) -> Option<ContractLimits> {
        Some(self.limits)
    }

    fn call(
        &self,
        call: &Call<'_>,
        _current: &Sections,
        method: &str,
        args: &Value,
    ) -> Result<MethodOutput, ContractError> {
        let m = self
            .program
            .methods
            .get(method)
            .ok_or_else(|| ContractError::new(format!("unknown method `{method}`")))?;
        if !call.has_role(&m.role) {
            return Err(ContractError::new(format!(
                "`{method}` is for the {}",
                m.role
            )));
        }
        for (arg, min) in &m.at_least {
            let v = args.get(arg).and_then(Value::as_f64);
            if v.is_none_or(|v| v < *min) {
                return Err(ContractError::new(format!(
                    "`{arg}` must be at least {min}"
                )));
            }
        }
        let scope = Scope {
            call,
            args,
            clock_skew: self.clock_skew,
        };
        let mut ticks = 0u64;
        if let Some(spin) = &m.spin {
            let n = scope.fill(spin, &mut ticks).as_u64().unwrap_or(0);
            // Spends one tick per step, stopping at the budget like an interrupt handler.
            for _ in 0..n {
                ticks += 1;
                if ticks > self.limits.ticks {
                    break;
                }
            }
        }
        let mut out = MethodOutput::default();
        for (section, template) in &m.set {
            out.changes
                .insert(section.clone(), scope.fill(template, &mut ticks));
        }
        for (name, template) in &m.emit {
            out.events.push(BusinessEvent {
                name: name.clone(),
                payload: scope.fill(template, &mut ticks),
            });
        }
        if ticks > self.limits.ticks {
            return Err(ContractError::Limit {
                limit: "ticks".into(),
                detail: format!("more than {} ticks", self.limits.ticks),
            });
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// The contract deployed in these tests, and the network.
// ---------------------------------------------------------------------------------------

/// `board@1`: the seller stamps the terms (everyone reads them), the buyer bids (everyone
/// reads it), the memo is between buyer and seller (so the inspector and the regulator cannot
/// re-execute calls: they rely on the home's receipt).
fn board() -> ContractRef {
    ContractRef::new("board", 1)
}

const BOARD_SOURCE: &str = r#"{
  "methods": {
    "stamp": {
      "role": "seller",
      "set": {"terms": {"note": "$args.note", "at": "$now", "by": "$actor"}},
      "emit": [["stamped", {"note": "$args.note", "event": "$event"}]]
    },
    "bid": {
      "role": "buyer",
      "at_least": {"amount": 1},
      "set": {"bid": {"amount": "$args.amount"}},
      "emit": [["bid_placed", {"amount": "$args.amount"}], ["bid_logged", null]]
    },
    "spin": {
      "role": "seller",
      "spin": "$args.n",
      "set": {"terms": {"note": "spun"}}
    }
  }
}"#;

fn board_descriptor() -> ContractDescriptor {
    let contract = board();
    ContractDescriptor {
        sync: None,
        code_hash: ContractDescriptor::code_hash_of(&contract, BOARD_SOURCE),
        policy: ContractPolicy::default()
            .section("terms", SectionPolicy::new(["*"], ["seller"]))
            .section("bid", SectionPolicy::new(["*"], ["buyer"]))
            .section("memo", SectionPolicy::new(["seller", "buyer"], ["seller"])),
        methods: vec!["bid".into(), "spin".into(), "stamp".into()],
        supersedes: Vec::new(),
        engine: Some(table_engine()),
        limits: Some(ContractLimits {
            ticks: 1_000,
            memory_bytes: 1 << 20,
            stack_bytes: 1 << 16,
        }),
        contract,
    }
}

/// `board@1` deployed by the seller's actor, with its source.
fn board_record() -> ContractRecord {
    let (_, key) = actor("seller", "a");
    ContractRecord::sign(board_descriptor(), HashAlg::Blake3, who("seller"), &key)
        .with_source(BOARD_SOURCE)
}

/// The contracts of a node: the native ones every test node holds, and the table engine
/// (none: the node cannot run table contracts).
fn contracts(engine: Option<TableEngine>) -> ContractRegistry {
    match engine {
        Some(e) => registry(false).with_engine(Arc::new(e)),
        None => registry(false),
    }
}

/// Four nodes; `engine(role)` is each node's table engine.
struct Net {
    net: InProcessNetwork,
    nodes: BTreeMap<String, Node>,
    stores: BTreeMap<String, Arc<dyn Store>>,
}

impl Net {
    /// Four nodes on fresh in-memory stores.
    async fn start(engine: impl Fn(&str) -> Option<TableEngine>) -> anyhow::Result<Net> {
        let stores = ROLES
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    Arc::new(MemoryStore::new()) as Arc<dyn Store>,
                )
            })
            .collect();
        Self::start_on(stores, engine).await
    }

    /// Four nodes on the given stores.
    async fn start_on(
        stores: BTreeMap<String, Arc<dyn Store>>,
        engine: impl Fn(&str) -> Option<TableEngine>,
    ) -> anyhow::Result<Net> {
        let net = InProcessNetwork::new();
        let mut nodes = BTreeMap::new();
        for (role, store) in &stores {
            let node = Cluster::start_node(&net, role, store.clone(), contracts(engine(role)), &[])
                .await?;
            nodes.insert(role.clone(), node);
        }
        Ok(Net { net, nodes, stores })
    }

    fn node(&self, role: &str) -> &Node {
        &self.nodes[role]
    }

    /// (Re)starts `role` on its store.
    async fn restart(&mut self, role: &str, engine: Option<TableEngine>) -> anyhow::Result<()> {
        self.nodes.remove(role);
        let store = self.stores[role].clone();
        let node = Cluster::start_node(&self.net, role, store, contracts(engine), &[]).await?;
        self.nodes.insert(role.to_owned(), node);
        Ok(())
    }

    /// Waits until `role` holds `board@1` deployed and recorded by a deployment event.
    async fn wait_installed(&self, role: &str) -> anyhow::Result<()> {
        let store = self.stores[role].clone();
        eventually(10, &format!("board@1 deployed on {role}"), || {
            let store = store.clone();
            async move {
                let recorded = deployments(store.as_ref()).await? == 1;
                Ok(recorded && store.contract(&board()).await?.is_some())
            }
        })
        .await
    }

    /// The seller creates board state `id` (terms and memo) with the standard parties.
    async fn create(&self, id: &str) -> anyhow::Result<StateId> {
        let sections = values([
            ("terms", json!({"note": "open"})),
            ("memo", json!({"floor": 400_000})),
        ]);
        let v = self
            .node("seller")
            .submit(
                &who("seller"),
                Intent::create(id, board(), deal_parties(), sections),
            )
            .await?;
        ensure!(v.is_applied(), "create: {v:?}");
        Ok(StateId::from(id))
    }

    /// `role`'s actor calls `method` of state `id`.
    async fn call(
        &self,
        role: &str,
        id: &str,
        method: &str,
        args: Value,
    ) -> anyhow::Result<Verdict> {
        Ok(self
            .node(role)
            .submit(&who(role), Intent::call(id, method, args))
            .await?)
    }

    /// As [`Net::call`], which must be applied.
    async fn applied(
        &self,
        role: &str,
        id: &str,
        method: &str,
        args: Value,
    ) -> anyhow::Result<Verdict> {
        let v = self.call(role, id, method, args).await?;
        ensure!(v.is_applied(), "{role} {method} on {id}: {v:?}");
        Ok(v)
    }

    /// The seller deploys `board@1`; it must be applied and installed on each of `roles`.
    async fn deploy_board(&self, roles: &[&str]) -> anyhow::Result<Verdict> {
        let v = self.node("seller").deploy_contract(board_record()).await?;
        ensure!(v.is_applied(), "deploy: {v:?}");
        for role in roles {
            self.wait_installed(role).await?;
        }
        Ok(v)
    }

    /// Each node records `event` with `n` business events, and its store verifies.
    async fn ensure_recorded_everywhere(&self, event: &Verdict, n: usize) -> anyhow::Result<()> {
        for (role, store) in &self.stores {
            let rec = store.event(&event.event()).await?.context("recorded")?;
            ensure!(rec.business_events.len() == n, "{role}: {rec:?}");
            rec.receipt
                .as_ref()
                .context("receipt")?
                .verify(&node_registry(), &rec)?;
            let report = sst_core::verify_store(store.as_ref(), &mut |_, _| {}).await?;
            ensure!(report.is_clean(), "{role}: {:?}", report.findings);
        }
        Ok(())
    }

    /// `role` is stopped and its `store` holds an edited source: `verify` reports it, and
    /// `role` refuses to start on it, naming the source.
    async fn ensure_edited_source_refused(
        &mut self,
        role: &str,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let report = sst_core::verify_store(store.as_ref(), &mut |_, _| {}).await?;
        ensure!(
            report
                .findings
                .iter()
                .any(|f| f.problem.contains("stored source hashes to")),
            "verify did not report the source: {:?}",
            report.findings
        );
        self.stores.insert(role.into(), store);
        let err = self
            .restart(role, Some(TableEngine::default()))
            .await
            .err()
            .context("started on an edited source")?
            .downcast::<NodeError>()?;
        ensure!(
            matches!(
                &err,
                NodeError::ContractRecord { contract, problem: RecordProblem::SourceEdited { .. } }
                    if *contract == board()
            ),
            "{err}"
        );
        Ok(())
    }
}

/// Applied deployment events recorded in `store`.
async fn deployments(store: &dyn Store) -> anyhow::Result<usize> {
    Ok(store
        .events(&EventFilter {
            kind: Some(EventKind::DeployContract),
            outcome: Some(sst_core::OutcomeKind::Applied),
            ..Default::default()
        })
        .await?
        .len())
}

fn all_roles() -> Vec<sst_core::NodeId> {
    ROLES.iter().map(|r| sst_core::NodeId::from(*r)).collect()
}

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// A deployment is a signed event sequenced by the deployer's node: every node records it
/// with the deploying node's receipt and installs the contract without a restart; calls of
/// the new contract then run everywhere, their business events recorded on every node
/// under receipts that cover them, and the stores verify.
#[tokio::test]
async fn a_deployment_event_installs_the_contract_on_every_node_without_a_restart(
) -> anyhow::Result<()> {
    let n = Net::start(|_| Some(TableEngine::default())).await?;
    // Before the deployment the contract is unknown everywhere.
    let early = n
        .node("seller")
        .submit(
            &who("seller"),
            Intent::create(
                "b-0",
                board(),
                deal_parties(),
                values([("terms", json!({}))]),
            ),
        )
        .await?;
    ensure!(
        matches!(early.reason(), Some(RejectReason::UnknownContract { .. })),
        "{early:?}"
    );

    let deployed = n.deploy_board(&ROLES).await?;
    // The deployment record on a replica carries the seller node's receipt.
    let rec = n.stores["regulator"]
        .event(&deployed.event())
        .await?
        .context("deployment recorded on the regulator")?;
    rec.receipt
        .as_ref()
        .context("receipt")?
        .verify(&node_registry(), &rec)?;
    // Another identity under board@1 is rejected.
    let (_, key) = actor("seller", "a");
    let mut changed = board_descriptor();
    changed.methods.retain(|m| m != "spin");
    let other = ContractRecord::sign(changed, HashAlg::Blake3, who("seller"), &key)
        .with_source(BOARD_SOURCE);
    let v = n.node("seller").deploy_contract(other).await?;
    ensure!(
        matches!(v.reason(), Some(RejectReason::ContractRejected { message }) if message.contains("bump its version")),
        "{v:?}"
    );

    let id = n.create("b-1").await?;
    n.applied("seller", "b-1", "stamp", json!({"note": "signed"}))
        .await?;
    let bid = n
        .applied("buyer", "b-1", "bid", json!({"amount": 500_000}))
        .await?;
    n.node("seller")
        .wait_for(&id, 3, &all_roles(), WAIT)
        .await?;
    n.ensure_recorded_everywhere(&bid, 2).await?;
    for store in n.stores.values() {
        let rec = store.event(&bid.event()).await?.context("bid recorded")?;
        let expected = vec![
            BusinessEvent {
                name: "bid_placed".into(),
                payload: json!({"amount": 500_000}),
            },
            BusinessEvent {
                name: "bid_logged".into(),
                payload: Value::Null,
            },
        ];
        ensure!(rec.business_events == expected, "{:?}", rec.business_events);
        // The home's receipt covers them: the same receipt over no business events fails.
        let without =
            SequencingReceipt::digest(&rec.id(), &rec.event().state_id, &rec.outcome, &[]);
        let receipt = rec.receipt.as_ref().context("receipt")?;
        ensure!(receipt.verify_digest(&node_registry(), &without).is_err());
    }
    Ok(())
}

/// A node that is down while a contract is deployed and used receives the deployment by
/// catch-up when it comes back (before the versions that name the contract), installs it,
/// and then holds the state like the others. A client-signed deployment handed to its
/// node (`ingest`) is sequenced the same way.
#[tokio::test]
async fn a_node_offline_during_a_deployment_gets_it_by_catch_up() -> anyhow::Result<()> {
    let mut n = Net::start(|_| Some(TableEngine::default())).await?;
    n.nodes.remove("regulator");

    // Signed by the deployer's own client, handed to its node.
    let (_, key) = actor("seller", "a");
    let seq = n.stores["seller"].last_origin_seq(&"seller".into()).await?;
    let built = EventBuilder::new("seller", who("seller"), &key)
        .deploy_contract(OriginSeq(seq.0 + 1), &board_record());
    let v = n
        .node("seller")
        .ingest(built.signed, BTreeMap::new())
        .await?;
    ensure!(v.is_applied(), "ingested deployment: {v:?}");
    for role in ["buyer", "seller", "inspector"] {
        n.wait_installed(role).await?;
    }
    let id = n.create("b-2").await?;
    n.applied("seller", "b-2", "stamp", json!({"note": "x"}))
        .await?;
    ensure!(n.stores["regulator"].contract(&board()).await?.is_none());

    n.restart("regulator", Some(TableEngine::default())).await?;
    n.wait_installed("regulator").await?;
    n.node("seller")
        .wait_for(&id, 2, &["regulator".into()], WAIT)
        .await?;
    let held = n.node("regulator").state(&id).await?.context("state")?;
    ensure!(held.version == 2);
    let refusals = n.node("regulator").refusals(None).await?;
    ensure!(refusals.is_empty(), "regulator refused: {refusals:?}");
    Ok(())
}

/// A node without the engine a deployment names refuses it, recording why (naming the
/// engine); the other nodes install it. Restarted with the engine, the node gets the
/// deployment again by catch-up, installs it and its refusal is cleared.
#[tokio::test]
async fn a_node_without_the_engine_records_a_refusal_naming_it() -> anyhow::Result<()> {
    let mut n = Net::start(|role| (role != "inspector").then(TableEngine::default)).await?;
    let deployment = n
        .deploy_board(&["buyer", "seller", "regulator"])
        .await?
        .event();
    let store = n.stores["inspector"].clone();
    eventually(10, "the inspector's refusal of the deployment", || {
        let store = store.clone();
        async move {
            let refusals = store.refusals(None).await?;
            Ok(refusals.iter().any(|r| {
                r.event == deployment
                    && matches!(&r.reason, RejectReason::ContractRejected { message }
                        if message.contains("engine table@1"))
            }))
        }
    })
    .await?;
    ensure!(store.contract(&board()).await?.is_none());

    n.restart("inspector", Some(TableEngine::default())).await?;
    n.wait_installed("inspector").await?;
    eventually(10, "the inspector's refusal cleared", || {
        let store = store.clone();
        async move { Ok(store.refusals(None).await?.is_empty()) }
    })
    .await?;
    let id = n.create("b-7").await?;
    n.node("seller")
        .wait_for(&id, 1, &all_roles(), WAIT)
        .await?;
    Ok(())
}

/// Replicas that may read every section re-execute each method call and compare values and
/// business events with the home's; those that may not rely on the home's receipt. The sync
/// status shows which node validated which version. A replica whose engine computes another
/// result refuses the change (`execution_mismatch`, naming the section), and the home sees
/// the refusal in its sync status.
#[tokio::test]
async fn replicas_that_read_everything_re_execute_calls_and_refuse_a_different_result(
) -> anyhow::Result<()> {
    // The buyer's engine reads a skewed clock: its `$now` differs from the event's time.
    let n = Net::start(|role| {
        Some(TableEngine {
            clock_skew: if role == "buyer" { 1 } else { 0 },
        })
    })
    .await?;
    n.deploy_board(&ROLES).await?;
    let id = n.create("b-3").await?;
    n.node("seller")
        .wait_for(&id, 1, &all_roles(), WAIT)
        .await?;

    // `bid` does not read the clock: the buyer (reads everything) validates it, the
    // inspector and the regulator (no memo) apply it on the receipt.
    n.applied("buyer", "b-3", "bid", json!({"amount": 7}))
        .await?;
    n.node("seller")
        .wait_for(&id, 2, &all_roles(), WAIT)
        .await?;
    eventually(10, "the buyer's validation acknowledged", || {
        let node = n.node("seller");
        let id = id.clone();
        async move {
            let s = node.sync_status(&id).await?.context("status")?;
            Ok(s.node(&"buyer".into()).is_some_and(|b| b.validated == 2))
        }
    })
    .await?;
    let seller = n.node("seller").sync_status(&id).await?.context("status")?;
    for role in ["inspector", "regulator"] {
        let entry = seller.node(&role.into()).context("entry")?;
        ensure!(entry.validated == 0, "{role} validated: {entry:?}");
        ensure!(n.node(role).validation_counts().on_receipt >= 1);
        ensure!(n.node(role).validation_counts().re_executed == 0);
    }
    ensure!(n.node("buyer").validation_counts().re_executed == 1);

    // `stamp` reads the clock: the buyer's result differs and it refuses the change.
    n.applied("seller", "b-3", "stamp", json!({"note": "n"}))
        .await?;
    n.node("seller")
        .wait_for(&id, 3, &["inspector".into(), "regulator".into()], WAIT)
        .await?;
    let behind = n
        .node("seller")
        .wait_for(&id, 3, &["buyer".into()], Duration::from_secs(2))
        .await;
    let Err(NodeError::Behind { behind, .. }) = behind else {
        anyhow::bail!("the buyer applied a result its engine computes differently: {behind:?}");
    };
    let refusal = behind[0].refusal.as_ref().context("the buyer's refusal")?;
    ensure!(
        matches!(&refusal.reason, RejectReason::ExecutionMismatch { detail } if detail.contains("section `terms`")),
        "{refusal:?}"
    );
    let own = n.node("buyer").refusals(Some(&id)).await?;
    ensure!(own.iter().any(|r| r.reason.code() == "execution_mismatch"));
    ensure!(n.node("buyer").state(&id).await?.context("state")?.version == 2);
    Ok(())
}

/// A call that runs out of the tick budget in the contract's descriptor is rejected with
/// `contract_limit` (recorded), and the node goes on.
#[tokio::test]
async fn a_call_over_its_tick_budget_is_rejected_contract_limit() -> anyhow::Result<()> {
    let n = Net::start(|_| Some(TableEngine::default())).await?;
    n.deploy_board(&["seller"]).await?;
    let id = n.create("b-4").await?;
    let v = n
        .call("seller", "b-4", "spin", json!({"n": 1_000_000}))
        .await?;
    let Verdict::Rejected { reason, event } = v else {
        anyhow::bail!("a runaway call was not rejected: {v:?}");
    };
    ensure!(
        matches!(&reason, RejectReason::ContractLimit { limit, .. } if limit == "ticks"),
        "{reason:?}"
    );
    let recorded = n
        .node("seller")
        .outcome(&event)
        .await?
        .context("recorded")?;
    ensure!(matches!(
        recorded,
        sst_core::Outcome::Rejected {
            reason: RejectReason::ContractLimit { .. }
        }
    ));
    n.applied("seller", "b-4", "spin", json!({"n": 10})).await?;
    ensure!(n.node("seller").state(&id).await?.context("state")?.version == 2);
    Ok(())
}

/// At start a node re-loads engine-run contracts from their verified stored source; a
/// changed byte in the stored source is reported by `verify` and the node refuses to start,
/// naming the contract and the source.
#[tokio::test]
async fn a_tampered_stored_source_is_reported_and_the_node_refuses_to_start() -> anyhow::Result<()>
{
    let memory: BTreeMap<String, Arc<MemoryStore>> = ROLES
        .iter()
        .map(|r| (r.to_string(), Arc::new(MemoryStore::new())))
        .collect();
    let stores = memory
        .iter()
        .map(|(r, s)| (r.clone(), s.clone() as Arc<dyn Store>))
        .collect();
    let mut n = Net::start_on(stores, |_| Some(TableEngine::default())).await?;
    n.deploy_board(&ROLES).await?;
    // A restart re-loads the contract from the stored source: it runs right away.
    n.restart("buyer", Some(TableEngine::default())).await?;
    let id = n.create("b-5").await?;
    n.applied("buyer", "b-5", "bid", json!({"amount": 3}))
        .await?;
    n.node("seller")
        .wait_for(&id, 2, &all_roles(), WAIT)
        .await?;

    // One byte of the buyer's stored source changed (the minimum bid lowered to 0).
    n.nodes.remove("buyer");
    let store = memory["buyer"].clone();
    store.tamper_contracts(|table| {
        if let Some(rec) = table.get_mut(&board()) {
            rec.source = rec
                .source
                .as_ref()
                .map(|s| s.replacen(r#""amount": 1"#, r#""amount": 0"#, 1));
        }
    })?;
    n.ensure_edited_source_refused("buyer", store).await
}

/// The same on SQLite files: the deployment, the source and the business events are stored
/// in the node databases and verify; a restarted node runs the contract from its file; a
/// source edited with plain SQL is reported by `verify` and refuses the start.
#[tokio::test]
async fn on_sqlite_a_deployed_source_reloads_and_an_edited_one_refuses_the_start(
) -> anyhow::Result<()> {
    let dir = common::TempDir::new("sst-engines")?;
    let mut stores = BTreeMap::new();
    for role in ROLES {
        let path = dir.0.join(format!("{role}.db"));
        stores.insert(role.to_string(), common::sqlite_store(&path).await?);
    }
    let mut n = Net::start_on(stores, |_| Some(TableEngine::default())).await?;
    n.deploy_board(&ROLES).await?;
    let id = n.create("b-6").await?;
    let bid = n
        .applied("buyer", "b-6", "bid", json!({"amount": 9}))
        .await?;
    n.node("seller")
        .wait_for(&id, 2, &all_roles(), WAIT)
        .await?;
    n.ensure_recorded_everywhere(&bid, 2).await?;

    // The seller restarts and runs the contract from the stored source.
    n.restart("seller", Some(TableEngine::default())).await?;
    n.applied("seller", "b-6", "stamp", json!({"note": "again"}))
        .await?;

    // The buyer's stored source edited with plain SQL while it is stopped.
    n.nodes.remove("buyer");
    n.stores.remove("buyer");
    let path = dir.0.join("buyer.db");
    let conn = rusqlite::Connection::open(&path)?;
    let edited = conn.execute(
        "UPDATE sst_contract SET record = json_set(record, '$.source', \
         replace(json_extract(record, '$.source'), '\"amount\": 1', '\"amount\": 0')) \
         WHERE name = 'board' AND version = 1",
        [],
    )?;
    ensure!(edited == 1, "no contract row edited");
    drop(conn);
    let store = common::sqlite_store(&path).await?;
    n.ensure_edited_source_refused("buyer", store).await
}
