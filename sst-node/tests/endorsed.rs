//! The `endorsed` sync protocol over the in-process transport, on four nodes (buyer, seller,
//! inspector, regulator): a settlement contract whose descriptor chooses `endorsed` with
//! each policy (payer = buyer, payee = seller, bank = inspector; the seller's node is the
//! home, the regulator is no participant). A change is applied everywhere only once the
//! policy is met, with endorsements every replica and `verify` accept; a refusal by the
//! bank's own rule, an endorser that does not answer in time, and a home that stops
//! mid-proposal leave the state unchanged on every node; and home-protocol states keep
//! flowing beside endorsed ones.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context};
use common::{config, values, who, Cluster, ROLES};
use serde_json::{json, Value};
use sst_core::{
    check_endorsements, ContractPolicy, ContractRef, EndorsementPolicy, EventFilter, EventId,
    NodeId, Outcome, Parties, RejectReason, Role, SectionPolicy, StateId, Store, SyncSpec,
    TrustAnchors,
};
use sst_node::contracts::RealEstateDeal;
use sst_node::{
    AppliedChange, Call, Contract, ContractError, ContractRegistry, EndorsementGuard, HomeMessage,
    InProcessNetwork, Intent, MethodOutput, Node, Sections, Transport, Verdict,
};
use tokio::sync::Notify;

/// How long any single step may take before the test fails.
const STEP: Duration = Duration::from_secs(20);

/// A settlement between a payer and a payee, which their bank settles: `terms` (amount)
/// written by payer and payee, `status` set by the `settle` method. Each version chooses
/// the `endorsed` protocol with its own policy and timeout.
struct Settlement {
    version: u32,
    sync: SyncSpec,
}

impl Settlement {
    fn new(version: u32, policy: EndorsementPolicy, timeout_ms: u64) -> Self {
        Settlement {
            version,
            sync: SyncSpec::Endorsed { policy, timeout_ms },
        }
    }
}

impl Contract for Settlement {
    fn contract(&self) -> ContractRef {
        ContractRef::new("settlement", self.version)
    }
    fn policy(&self) -> ContractPolicy {
        ContractPolicy::default()
            .section("terms", SectionPolicy::new(["*"], ["payer", "payee"]))
            .section(
                "status",
                SectionPolicy::new(["*"], ["payer", "payee", "bank"]),
            )
    }
    fn methods(&self) -> Vec<String> {
        vec!["settle".into()]
    }
    fn source(&self) -> &str {
        "settlement: settle copies the agreed amount into the status"
    }
    fn sync(&self) -> Option<SyncSpec> {
        Some(self.sync.clone())
    }
    fn call(
        &self,
        call: &Call<'_>,
        current: &Sections,
        method: &str,
        _args: &Value,
    ) -> Result<MethodOutput, ContractError> {
        if method != "settle" || !call.has_role("payer") {
            return Err(ContractError::new("only the payer settles"));
        }
        let amount = current
            .get("terms")
            .and_then(|t| t.get("amount"))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(MethodOutput::from(
            [(
                "status".to_owned(),
                json!({"settled": true, "amount": amount}),
            )]
            .into_iter()
            .collect::<Sections>(),
        ))
    }
}

/// Settlement versions: policy all, k of n (2), role bank, all with a short timeout, all
/// with a long one.
fn settlement(version: u32) -> ContractRef {
    ContractRef::new("settlement", version)
}
const ALL: u32 = 1;
const TWO_OF_N: u32 = 2;
const BANK_ROLE: u32 = 3;
const ALL_SHORT: u32 = 4;
const ALL_LONG: u32 = 5;
/// Held by every node but deployed only at run time, by a signed deployment event.
const DEPLOYED_LATER: u32 = 6;

fn registry() -> ContractRegistry {
    ContractRegistry::new()
        .with(RealEstateDeal)
        .with(Settlement::new(ALL, EndorsementPolicy::All, 5_000))
        .with(Settlement::new(
            TWO_OF_N,
            EndorsementPolicy::KOfN { k: 2 },
            5_000,
        ))
        .with(Settlement::new(
            BANK_ROLE,
            EndorsementPolicy::Roles {
                roles: vec![Role::from("bank")],
            },
            5_000,
        ))
        .with(Settlement::new(ALL_SHORT, EndorsementPolicy::All, 300))
        .with(Settlement::new(ALL_LONG, EndorsementPolicy::All, 60_000))
        .with(Settlement::new(
            DEPLOYED_LATER,
            EndorsementPolicy::All,
            5_000,
        ))
}

fn deployed() -> Vec<ContractRef> {
    let mut list = vec![ContractRef::new("real-estate-deal", 1)];
    list.extend((ALL..=ALL_LONG).map(settlement));
    list
}

/// The bank's own rule: it refuses to endorse a settlement of more than 1000, and tells
/// whoever waits each time it was asked.
#[derive(Default)]
struct BankLimit {
    asked: Mutex<Vec<(StateId, Sections)>>,
    notify: Notify,
}

impl EndorsementGuard for BankLimit {
    fn check(
        &self,
        _contract: &ContractRef,
        state: &StateId,
        sections: &Sections,
    ) -> Result<(), String> {
        self.asked
            .lock()
            .map_err(|e| e.to_string())?
            .push((state.clone(), sections.clone()));
        self.notify.notify_waiters();
        let amount = sections
            .get("status")
            .and_then(|s| s.get("amount"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if amount > 1000 {
            return Err(format!(
                "settlement of {amount} is above the bank's limit of 1000"
            ));
        }
        Ok(())
    }
}

impl BankLimit {
    /// Waits until the guard was asked about `state` at least `times` times.
    async fn asked_about(&self, state: &StateId, times: usize) -> anyhow::Result<()> {
        tokio::time::timeout(STEP, async {
            loop {
                let notified = self.notify.notified();
                let n = self
                    .asked
                    .lock()
                    .map(|a| a.iter().filter(|(s, _)| s == state).count())
                    .unwrap_or(0);
                if n >= times {
                    return;
                }
                notified.await;
            }
        })
        .await
        .context("the guard was never asked")
    }
}

/// Four nodes on in-memory stores, every contract deployed; `guards` per node.
async fn network(guards: &BTreeMap<&str, Arc<BankLimit>>) -> anyhow::Result<Cluster> {
    network_on(Cluster::memory_stores(), guards).await
}

/// As [`network`], on the given stores.
async fn network_on(
    stores: BTreeMap<String, Arc<dyn Store>>,
    guards: &BTreeMap<&str, Arc<BankLimit>>,
) -> anyhow::Result<Cluster> {
    let net = InProcessNetwork::new();
    let mut nodes = BTreeMap::new();
    for role in ROLES {
        let node = start(&net, role, stores[role].clone(), guards.get(role)).await?;
        nodes.insert(role.to_owned(), Arc::new(node));
    }
    Ok(Cluster { net, nodes, stores })
}

/// Starts (or restarts) node `role` on `store`.
async fn start(
    net: &InProcessNetwork,
    role: &str,
    store: Arc<dyn Store>,
    guard: Option<&Arc<BankLimit>>,
) -> anyhow::Result<Node> {
    let (transport, inbox) = net.join(role);
    let mut cfg = config(role);
    if let Some(g) = guard {
        cfg = cfg.with_endorsement_guard(g.clone());
    }
    tokio::time::timeout(
        STEP,
        Cluster::start_node_on(cfg, store, registry(), &deployed(), transport, inbox),
    )
    .await
    .context("node start timed out")?
}

fn parties() -> Parties {
    Parties::default()
        .with("payer", who("buyer").as_str())
        .with("payee", who("seller").as_str())
        .with("bank", who("inspector").as_str())
}

/// Participant nodes of a settlement: payer, payee and bank.
const PARTICIPANTS: [&str; 3] = ["buyer", "seller", "inspector"];

/// Submits `intent` as the actor of node `role`, bounded.
async fn submit(c: &Cluster, role: &str, intent: Intent) -> anyhow::Result<Verdict> {
    tokio::time::timeout(STEP, c.node(role).submit(&who(role), intent))
        .await
        .context("submit timed out")?
        .map_err(Into::into)
}

/// The seller (home) creates settlement `id` of `version` for `amount`.
async fn create(c: &Cluster, id: &str, version: u32, amount: i64) -> anyhow::Result<Verdict> {
    submit(
        c,
        "seller",
        Intent::create(
            id,
            settlement(version),
            parties(),
            values([("terms", json!({"amount": amount}))]),
        ),
    )
    .await
}

/// The seller creates settlement `id` of `version` for `amount`, applied and held by every
/// participant node; returns the state and the create's event.
async fn settled_create(
    c: &Cluster,
    id: &str,
    version: u32,
    amount: i64,
) -> anyhow::Result<(StateId, EventId)> {
    let event = applied(&create(c, id, version, amount).await?)?;
    let id = StateId::from(id);
    held_at(c, &PARTICIPANTS, &id, 1).await?;
    Ok((id, event))
}

/// Node `role`'s actor sets the terms of settlement `id` to `amount`.
async fn set_terms(c: &Cluster, role: &str, id: &StateId, amount: i64) -> anyhow::Result<Verdict> {
    let intent = Intent::change(id.as_str(), values([("terms", json!({"amount": amount}))]));
    submit(c, role, intent).await
}

/// Waits until every node of `roles` holds `state` at `version`.
async fn held_at(c: &Cluster, roles: &[&str], state: &StateId, version: u64) -> anyhow::Result<()> {
    common::eventually(
        20,
        &format!("{state} at v{version} on {roles:?}"),
        || async {
            for r in roles {
                if c.node(r).state(state).await?.map(|s| s.version) != Some(version) {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await
}

/// Versions of `state` on every node (absent: not held).
async fn versions(c: &Cluster, state: &StateId) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (role, node) in &c.nodes {
        if let Some(s) = node.state(state).await? {
            out.insert(role.clone(), s.version);
        }
    }
    Ok(out)
}

/// Every node's store verifies clean against the network's node keys.
async fn all_verify(c: &Cluster) -> anyhow::Result<()> {
    for (role, node) in &c.nodes {
        let anchors = TrustAnchors::new(common::node_registry(), Some(NodeId::from(role.as_str())));
        let report =
            sst_core::verify_store_with(node.store().as_ref(), &anchors, &mut |_, _| {}).await?;
        ensure!(report.is_clean(), "{role}: {:?}", report.findings);
    }
    Ok(())
}

/// Checks that `event`'s record on node `role` carries endorsements (sorted by node) that
/// meet `policy` for the settlement participants.
async fn endorsed_on(
    c: &Cluster,
    role: &str,
    event: EventId,
    policy: &EndorsementPolicy,
) -> anyhow::Result<Vec<String>> {
    let node = c.node(role);
    let rec = node
        .store()
        .event(&event)
        .await?
        .with_context(|| format!("{event} not recorded on {role}"))?;
    let participants = sst_core::participant_nodes(&parties(), |a| node.actor(a).map(|a| a.node));
    check_endorsements(policy, &participants, node.node_registry(), &rec)
        .with_context(|| format!("endorsements on {role}"))?;
    let nodes: Vec<String> = rec
        .endorsements
        .iter()
        .map(|e| e.node.to_string())
        .collect();
    let mut sorted = nodes.clone();
    sorted.sort();
    ensure!(
        nodes == sorted,
        "endorsements not sorted by node: {nodes:?}"
    );
    Ok(nodes)
}

/// Every participant node holds `event` with the endorsements of all three.
async fn endorsed_by_all(c: &Cluster, event: EventId) -> anyhow::Result<()> {
    for role in PARTICIPANTS {
        let nodes = endorsed_on(c, role, event, &EndorsementPolicy::All).await?;
        ensure!(
            nodes == ["buyer", "inspector", "seller"],
            "{role}: {nodes:?}"
        );
    }
    Ok(())
}

fn applied(v: &Verdict) -> anyhow::Result<EventId> {
    ensure!(v.is_applied(), "not applied: {v:?}");
    Ok(v.event())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_all_met_applies_everywhere_with_endorsements_that_verify() -> anyhow::Result<()> {
    let c = network(&BTreeMap::new()).await?;
    let (id, created) = settled_create(&c, "settle-all", ALL, 700).await?;
    // The buyer's change is forwarded to the seller (home), endorsed by all three nodes.
    let v = submit(&c, "buyer", Intent::call(id.as_str(), "settle", json!({}))).await?;
    let settled = applied(&v)?;
    held_at(&c, &PARTICIPANTS, &id, 2).await?;
    ensure!(
        c.node("regulator").state(&id).await?.is_none(),
        "the regulator is no participant"
    );
    endorsed_by_all(&c, created).await?;
    endorsed_by_all(&c, settled).await?;
    for role in PARTICIPANTS {
        let s = c.node(role).state(&id).await?.context("state")?;
        ensure!(
            s.sections["status"].value() == Some(&json!({"settled": true, "amount": 700})),
            "{role}: {:?}",
            s.sections["status"]
        );
    }
    ensure!(c.node("seller").protocol_of(&settlement(ALL)) == "endorsed");
    let status = c.node("seller").sync_status(&id).await?.context("status")?;
    ensure!(status.protocol.as_deref() == Some("endorsed"), "{status:?}");
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn k_of_n_is_met_by_two_nodes_while_the_third_is_offline() -> anyhow::Result<()> {
    let c = network(&BTreeMap::new()).await?;
    let (id, _) = settled_create(&c, "settle-k", TWO_OF_N, 10).await?;
    c.net.set_online(&NodeId::from("inspector"), false);
    let v = set_terms(&c, "buyer", &id, 20).await?;
    let event = applied(&v)?;
    held_at(&c, &["buyer", "seller"], &id, 2).await?;
    let policy = EndorsementPolicy::KOfN { k: 2 };
    for role in ["buyer", "seller"] {
        let nodes = endorsed_on(&c, role, event, &policy).await?;
        ensure!(nodes == ["buyer", "seller"], "{role}: {nodes:?}");
    }
    // Back online (no resync), the inspector catches up from the next change: it asks the
    // home for the version it missed, and accepts the endorsements of both.
    c.net.set_online(&NodeId::from("inspector"), true);
    let next = set_terms(&c, "buyer", &id, 30).await?;
    let next = applied(&next)?;
    held_at(&c, &PARTICIPANTS, &id, 3).await?;
    endorsed_on(&c, "inspector", event, &policy).await?;
    endorsed_on(&c, "inspector", next, &policy).await?;
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_policy_needs_only_the_banks_node() -> anyhow::Result<()> {
    let c = network(&BTreeMap::new()).await?;
    let (id, _) = settled_create(&c, "settle-roles", BANK_ROLE, 10).await?;
    // The payer's node is offline: the payee changes the terms, endorsed by the bank alone.
    c.net.set_online(&NodeId::from("buyer"), false);
    let v = set_terms(&c, "seller", &id, 30).await?;
    let event = applied(&v)?;
    held_at(&c, &["seller", "inspector"], &id, 2).await?;
    let policy = EndorsementPolicy::Roles {
        roles: vec![Role::from("bank")],
    };
    for role in ["seller", "inspector"] {
        let nodes = endorsed_on(&c, role, event, &policy).await?;
        ensure!(nodes == ["inspector"], "{role}: {nodes:?}");
    }
    c.net.set_online(&NodeId::from("buyer"), true);
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endorser_refusing_by_its_own_rule_rejects_not_endorsed_on_the_initiators_node(
) -> anyhow::Result<()> {
    let bank = Arc::new(BankLimit::default());
    let c = network(&BTreeMap::from([("inspector", bank.clone())])).await?;
    let (id, _) = settled_create(&c, "settle-big", ALL, 5000).await?;
    let before = versions(&c, &id).await?;
    // The payer (buyer, not the home) settles 5000: the bank's node refuses.
    let v = submit(&c, "buyer", Intent::call(id.as_str(), "settle", json!({}))).await?;
    let Verdict::Rejected { event, reason } = &v else {
        anyhow::bail!("expected a rejection, got {v:?}");
    };
    let RejectReason::NotEndorsed { refusals } = reason else {
        anyhow::bail!("expected not_endorsed, got {reason:?}");
    };
    ensure!(reason.code() == "not_endorsed");
    ensure!(
        refusals.len() == 1 && refusals[0].node == NodeId::from("inspector"),
        "{refusals:?}"
    );
    ensure!(
        matches!(&refusals[0].reason, RejectReason::ContractRejected { message } if message.contains("above the bank's limit")),
        "{refusals:?}"
    );
    // Recorded as rejected on the initiator's node and on the home; the state is unchanged
    // everywhere.
    for role in ["buyer", "seller"] {
        let outcome = c.node(role).outcome(event).await?.context("outcome")?;
        ensure!(
            matches!(
                &outcome,
                Outcome::Rejected {
                    reason: RejectReason::NotEndorsed { .. }
                }
            ),
            "{role}: {outcome:?}"
        );
    }
    ensure!(versions(&c, &id).await? == before, "state changed");
    // A settlement under the limit is endorsed by the same bank.
    let (small, _) = settled_create(&c, "settle-small", ALL, 900).await?;
    applied(
        &submit(
            &c,
            "buyer",
            Intent::call(small.as_str(), "settle", json!({})),
        )
        .await?,
    )?;
    held_at(&c, &PARTICIPANTS, &small, 2).await?;
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_endorser_times_out_and_later_proposals_succeed() -> anyhow::Result<()> {
    let c = network(&BTreeMap::new()).await?;
    let (id, _) = settled_create(&c, "settle-timeout", ALL_SHORT, 10).await?;
    let inspector = NodeId::from("inspector");
    c.net.set_online(&inspector, false);
    let change =
        |amount: i64| Intent::change(id.as_str(), values([("terms", json!({"amount": amount}))]));
    let v = submit(&c, "buyer", change(20)).await?;
    match v.reason() {
        Some(RejectReason::EndorsementTimeout {
            missing,
            timeout_ms,
        }) => {
            ensure!(missing == &vec![inspector.clone()], "{missing:?}");
            ensure!(*timeout_ms == 300);
        }
        other => anyhow::bail!("expected endorsement_timeout, got {other:?} ({v:?})"),
    }
    ensure!(matches!(v, Verdict::Rejected { .. }), "{v:?}");
    ensure!(
        versions(&c, &id).await?.values().all(|v| *v == 1),
        "{:?}",
        versions(&c, &id).await?
    );
    // Back online: the next proposal is endorsed by all three.
    c.net.set_online(&inspector, true);
    let event = applied(&submit(&c, "buyer", change(30)).await?)?;
    held_at(&c, &PARTICIPANTS, &id, 2).await?;
    endorsed_on(&c, "inspector", event, &EndorsementPolicy::All).await?;
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn home_and_endorsed_states_flow_side_by_side() -> anyhow::Result<()> {
    let c = network(&BTreeMap::new()).await?;
    let deal = StateId::from("deal-side");
    let settle = StateId::from("settle-side");
    let deal_intent = Intent::create(
        deal.as_str(),
        ContractRef::new("real-estate-deal", 1),
        common::deal_parties(),
        values([
            ("common", json!({"address": "1 Elm St"})),
            ("price", json!({"amount": 1})),
        ]),
    );
    let (d, s) = tokio::join!(
        submit(&c, "seller", deal_intent),
        create(&c, settle.as_str(), ALL, 10)
    );
    applied(&d?)?;
    applied(&s?)?;
    held_at(&c, &ROLES, &deal, 1).await?;
    held_at(&c, &PARTICIPANTS, &settle, 1).await?;
    // Changes of both at the same time, from the buyer's node (forwarded to the seller, the
    // home of both): each flow waits for its own outcomes only.
    let deals = async {
        for i in 0..5 {
            let intent = Intent::change(
                deal.as_str(),
                values([("price", json!({"amount": 100 + i}))]),
            );
            applied(&submit(&c, "buyer", intent).await?)?;
        }
        anyhow::Ok(())
    };
    let settlements = async {
        for i in 0..5 {
            applied(&set_terms(&c, "buyer", &settle, 10 + i).await?)?;
        }
        anyhow::Ok(())
    };
    let (d, s) = tokio::join!(deals, settlements);
    d?;
    s?;
    held_at(&c, &ROLES, &deal, 6).await?;
    held_at(&c, &PARTICIPANTS, &settle, 6).await?;
    let seller = c.node("seller");
    ensure!(seller.protocol_of(&ContractRef::new("real-estate-deal", 1)) == "home");
    ensure!(seller.protocol_of_state(&settle).await?.as_deref() == Some("endorsed"));
    ensure!(seller.protocol_of_state(&deal).await?.as_deref() == Some("home"));
    let deal_events = seller
        .store()
        .events(&EventFilter {
            state_id: Some(deal.clone()),
            ..Default::default()
        })
        .await?;
    ensure!(
        deal_events.iter().all(|r| r.endorsements.is_empty()),
        "home-protocol events carry no endorsements"
    );
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_home_stopped_mid_proposal_leaves_nothing_applied_and_a_retry_succeeds(
) -> anyhow::Result<()> {
    let observer = Arc::new(BankLimit::default());
    let mut c = network(&BTreeMap::from([("buyer", observer.clone())])).await?;
    let (id, _) = settled_create(&c, "settle-crash", ALL_LONG, 10).await?;
    let inspector = NodeId::from("inspector");
    c.net.set_online(&inspector, false);
    // The seller (home) proposes a change; the buyer endorses it, the inspector cannot
    // answer: the proposal stays open until the home is stopped.
    let seller = c.nodes.remove("seller").context("seller")?;
    let pending = {
        let seller = seller.clone();
        let intent = Intent::change(id.as_str(), values([("terms", json!({"amount": 99}))]));
        tokio::spawn(async move { seller.submit(&who("seller"), intent).await })
    };
    observer.asked_about(&id, 2).await?;
    pending.abort();
    let stopped = pending.await;
    ensure!(stopped.is_err(), "the proposal was decided: {stopped:?}");
    drop(seller);
    // Nothing about the change is applied anywhere.
    let store = c.stores["seller"].clone();
    ensure!(store.state(&id).await?.map(|s| s.version) == Some(1));
    c.net.set_online(&inspector, true);
    for role in ["buyer", "inspector"] {
        ensure!(
            c.node(role).state(&id).await?.map(|s| s.version) == Some(1),
            "{role}"
        );
    }
    // Restarted from its store, the home takes the same change again: endorsed by all.
    let restarted = start(&c.net, "seller", store, None).await?;
    c.nodes.insert("seller".into(), Arc::new(restarted));
    let v = set_terms(&c, "seller", &id, 99).await?;
    let event = applied(&v)?;
    held_at(&c, &PARTICIPANTS, &id, 2).await?;
    endorsed_by_all(&c, event).await?;
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_intent_forwarded_to_a_home_stopped_mid_proposal_resolves_once_it_restarts(
) -> anyhow::Result<()> {
    let observer = Arc::new(BankLimit::default());
    let mut c = network(&BTreeMap::from([("buyer", observer.clone())])).await?;
    let (id, _) = settled_create(&c, "settle-reforward", ALL_LONG, 10).await?;
    let inspector = NodeId::from("inspector");
    c.net.set_online(&inspector, false);
    // The buyer's change goes to the seller (home), which proposes it; the inspector cannot
    // answer, so the proposal is open when the home stops.
    let pending = {
        let buyer = c.nodes["buyer"].clone();
        let intent = Intent::change(id.as_str(), values([("terms", json!({"amount": 77}))]));
        tokio::spawn(async move { buyer.submit(&who("buyer"), intent).await })
    };
    observer.asked_about(&id, 2).await?;
    let seller = c.nodes.remove("seller").context("seller")?;
    drop(seller);
    let store = c.stores["seller"].clone();
    ensure!(store.state(&id).await?.map(|s| s.version) == Some(1));
    c.net.set_online(&inspector, true);
    // Restarted, the home announces itself; the buyer forwards its undecided intent again
    // and its original submit resolves, without the caller submitting anything again.
    let restarted = start(&c.net, "seller", store, None).await?;
    c.nodes.insert("seller".into(), Arc::new(restarted));
    let v = tokio::time::timeout(STEP, pending)
        .await
        .context("the forwarded intent never resolved after the home restarted")???;
    let event = applied(&v)?;
    held_at(&c, &PARTICIPANTS, &id, 2).await?;
    endorsed_by_all(&c, event).await?;
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_deployed_at_run_time_uses_the_protocol_its_descriptor_chooses(
) -> anyhow::Result<()> {
    let c = network(&BTreeMap::new()).await?;
    let later = settlement(DEPLOYED_LATER);
    for role in ROLES {
        ensure!(
            c.node(role).protocol_of(&later) == "home",
            "{role}: not installed yet"
        );
    }
    let (_, key) = common::actor("seller", "a");
    let record = registry().deployment(&later, sst_core::HashAlg::Blake3, who("seller"), &key)?;
    let v = tokio::time::timeout(STEP, c.node("seller").deploy_contract(record)).await??;
    applied(&v)?;
    common::eventually(20, "installed on every node", || async {
        Ok(ROLES
            .iter()
            .all(|r| c.node(r).protocol_of(&later) == "endorsed"))
    })
    .await?;
    let (_, event) = settled_create(&c, "settle-later", DEPLOYED_LATER, 10).await?;
    endorsed_by_all(&c, event).await?;
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_refuses_a_change_with_missing_or_forged_endorsements() -> anyhow::Result<()> {
    let mut c = network(&BTreeMap::new()).await?;
    let (id, _) = settled_create(&c, "settle-forged", TWO_OF_N, 10).await?;
    let inspector = NodeId::from("inspector");
    c.net.set_online(&inspector, false);
    let v = set_terms(&c, "buyer", &id, 20).await?;
    let event = applied(&v)?;
    held_at(&c, &["buyer", "seller"], &id, 2).await?;
    // Someone speaking as the home sends the inspector that change with its endorsements
    // removed, then with one forged (another node's signature under the buyer's name).
    let seller = c.node("seller");
    let rec = seller.store().event(&event).await?.context("record")?;
    let state = seller.state(&id).await?.context("state")?;
    let change = AppliedChange {
        signed: rec.signed.clone(),
        disclosures: rec.disclosures.clone(),
        effects: rec
            .disclosures
            .keys()
            .map(|n| (n.clone(), state.sections[n].hash))
            .collect(),
        version: state.version,
        root: state.root,
        receipt: rec.receipt.clone(),
        business_events: Vec::new(),
        endorsements: Vec::new(),
    };
    let mut forged = change.clone();
    forged.endorsements = rec.endorsements.clone();
    for e in &mut forged.endorsements {
        if e.node == NodeId::from("buyer") {
            e.signature = rec
                .endorsements
                .iter()
                .find(|o| o.node != e.node)
                .context("another endorsement")?
                .signature;
        }
    }
    // Every message sent meanwhile is handled (those to the inspector dropped) before it
    // is back; the real home is stopped first, so that the inspector cannot catch up the
    // genuine change before the bad ones arrive (it would then take them as duplicates).
    tokio::time::timeout(STEP, c.net.settled()).await?;
    drop(c.nodes.remove("seller").context("seller")?);
    c.net.set_online(&inspector, true);
    let (as_home, _inbox) = c.net.join("seller");
    let cases = [
        ("missing", change, "of the required 2"),
        ("forged", forged, "does not verify"),
    ];
    for (what, bad, detail) in cases {
        as_home
            .send(&inspector, HomeMessage::Applied(Box::new(bad)).envelope()?)
            .await?;
        common::eventually(20, &format!("{what} endorsements refused"), || async {
            let refusals = c.node("inspector").refusals(Some(&id)).await?;
            Ok(refusals.iter().any(|r| {
                matches!(&r.reason, RejectReason::BadReceipt { detail: d }
                    if d.contains("endorsements") && d.contains(detail))
            }))
        })
        .await?;
        let refusals = c.node("inspector").refusals(Some(&id)).await?;
        ensure!(
            refusals.iter().all(|r| matches!(&r.reason, RejectReason::BadReceipt { detail } if detail.contains("endorsements"))),
            "{what}: {refusals:?}"
        );
        ensure!(
            c.node("inspector").state(&id).await?.map(|s| s.version) == Some(1),
            "{what}: applied"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_proposal_holds_its_state_only() -> anyhow::Result<()> {
    let c = network(&BTreeMap::new()).await?;
    let (id, _) = settled_create(&c, "settle-open", ALL_LONG, 10).await?;
    let deal = common::create_deal(&c, "deal-open").await?;
    // The inspector cannot answer: the seller's proposal stays open (long timeout).
    c.net.set_online(&NodeId::from("inspector"), false);
    let seller = c.node("seller").clone();
    let open = {
        let (seller, id) = (seller.clone(), id.clone());
        tokio::spawn(async move {
            let intent = Intent::change(id.as_str(), values([("terms", json!({"amount": 1}))]));
            seller.submit(&who("seller"), intent).await
        })
    };
    // A later change of the same state waits behind it...
    let behind = {
        let (seller, id) = (seller.clone(), id.clone());
        tokio::spawn(async move {
            let intent = Intent::change(id.as_str(), values([("terms", json!({"amount": 2}))]));
            seller.submit(&who("seller"), intent).await
        })
    };
    // ...while other states (home protocol, sequenced by the same node) keep flowing.
    for i in 0..3 {
        let intent = Intent::change(deal.as_str(), values([("price", json!({"amount": 1 + i}))]));
        applied(&submit(&c, "seller", intent).await?)?;
    }
    ensure!(
        !open.is_finished() && !behind.is_finished(),
        "the settlement was decided"
    );
    ensure!(seller.state(&id).await?.map(|s| s.version) == Some(1));
    open.abort();
    behind.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endorsements_are_stored_and_verify_on_sqlite() -> anyhow::Result<()> {
    let dir = common::TempDir::new("sst-endorsed")?;
    let mut stores = BTreeMap::new();
    for role in ROLES {
        let store = common::sqlite_store(&dir.0.join(format!("{role}.db"))).await?;
        stores.insert(role.to_owned(), store);
    }
    let c = network_on(stores, &BTreeMap::new()).await?;
    let (id, created) = settled_create(&c, "settle-sqlite", ALL, 10).await?;
    let settled =
        applied(&submit(&c, "buyer", Intent::call(id.as_str(), "settle", json!({}))).await?)?;
    held_at(&c, &PARTICIPANTS, &id, 2).await?;
    endorsed_by_all(&c, created).await?;
    endorsed_by_all(&c, settled).await?;
    all_verify(&c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_home_killed_at_any_point_of_a_proposal_leaves_participants_converged(
) -> anyhow::Result<()> {
    let mut c = network(&BTreeMap::new()).await?;
    let (id, _) = settled_create(&c, "settle-kill", ALL, 10).await?;
    let store = c.stores["seller"].clone();
    for round in 0..5u64 {
        // The buyer's change is forwarded to the home, which is killed a little later each
        // round: before, during or after the proposal, the commit or the distribution.
        let buyer = c.node("buyer").clone();
        let amount = 100 + i64::try_from(round)?;
        let pending = tokio::spawn({
            let id = id.clone();
            async move {
                let intent =
                    Intent::change(id.as_str(), values([("terms", json!({"amount": amount}))]));
                buyer.submit(&who("buyer"), intent).await
            }
        });
        tokio::time::sleep(Duration::from_millis(round * 4)).await;
        drop(c.nodes.remove("seller").context("seller")?);
        let restarted = start(&c.net, "seller", store.clone(), None).await?;
        c.nodes.insert("seller".into(), Arc::new(restarted));
        // The buyer's submit always resolves: recorded before the kill, or forwarded again
        // when the restarted home says hello and decided then; only an intent that never
        // reached the home fails (a transport error), and its caller submits it again.
        let outcome = tokio::time::timeout(STEP, pending)
            .await
            .with_context(|| format!("round {round}: the buyer's intent never resolved"))??;
        match outcome {
            Ok(verdict) => ensure!(verdict.is_applied(), "round {round}: {verdict:?}"),
            Err(e) => {
                ensure!(
                    store.state(&id).await?.context("state")?.version == round + 1,
                    "round {round}: {e} but the home recorded the change"
                );
                applied(&set_terms(&c, "buyer", &id, amount).await?)?;
            }
        }
        // Exactly one change per round, held by every participant.
        held_at(&c, &PARTICIPANTS, &id, round + 2).await?;
        ensure!(store.state(&id).await?.context("state")?.version == round + 2);
    }
    all_verify(&c).await
}
