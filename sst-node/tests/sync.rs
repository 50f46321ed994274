//! Sync seams: a peer that never answers does not stall its home node, and a second sync
//! protocol runs beside the home-node protocol without touching the sequencer.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use async_trait::async_trait;
use common::{create_deal, create_rfq, values, who, Cluster};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sst_core::{
    CommitItem, Disclosure, EventId, EventKind, EventRecord, NodeId, Outcome, RejectReason,
    SignedEvent, State, StateId,
};
use sst_node::sync::{decode, encode, redacted_change};
use sst_node::{
    Admission, AppliedChange, ForwardedIntent, Inbound, Intent, IntentRefused, NodeConfig,
    NodeContext, NodeError, Pending, ProtocolEnvelope, Rejection, Route, SyncProtocol,
    SyncRegistry, Transport, TransportError,
};
use tokio::sync::watch;

/// A transport whose sends to one peer wait until the gate opens (forever, while closed).
struct Gated {
    inner: Arc<dyn Transport>,
    blocked: NodeId,
    gate: watch::Receiver<bool>,
}

#[async_trait]
impl Transport for Gated {
    fn local(&self) -> &NodeId {
        self.inner.local()
    }
    async fn send(&self, to: &NodeId, envelope: ProtocolEnvelope) -> Result<(), TransportError> {
        if *to == self.blocked {
            let mut gate = self.gate.clone();
            if gate.wait_for(|open| *open).await.is_err() {
                return Err(TransportError::Unreachable(to.clone()));
            }
        }
        self.inner.send(to, envelope).await
    }
    fn queued(&self, to: &NodeId) -> Option<Pending> {
        self.inner.queued(to)
    }
}

/// The seller (home of the deal) commits `n` changes while its sends to the regulator block;
/// once they go through, every node holds the same root.
async fn blocked_peer(outbox_capacity: usize, n: u32) -> anyhow::Result<()> {
    let (open, gate) = watch::channel(true);
    let c = Cluster::start_with(
        Cluster::memory_stores(),
        |role: &str| NodeConfig {
            outbox_capacity,
            ..common::config(role)
        },
        |role: &str, inner| {
            if role == "seller" {
                Arc::new(Gated {
                    inner,
                    blocked: NodeId::from("regulator"),
                    gate: gate.clone(),
                })
            } else {
                inner
            }
        },
    )
    .await?;
    let id = create_deal(&c, "deal-blocked").await?;
    open.send_replace(false);
    let started = Instant::now();
    for i in 0..n {
        let intent = Intent::change(id.clone(), values([("common", json!({"rev": i}))]));
        let v = tokio::time::timeout(
            Duration::from_secs(30),
            c.node("seller").submit(&who("seller"), intent),
        )
        .await
        .context("the home node stalled behind a blocked peer")??;
        ensure!(v.is_applied(), "{v:?}");
    }
    let elapsed = started.elapsed();
    eprintln!("{n} commits with a blocked peer in {elapsed:?}");
    let reg = c.node("regulator").state(&id).await?.context("state")?;
    ensure!(
        reg.version == 1,
        "the blocked peer received v{}",
        reg.version
    );
    // The peer answers again: it catches up to the same root.
    open.send_replace(true);
    tokio::time::timeout(Duration::from_secs(60), c.net.settled())
        .await
        .context("did not settle")?;
    eprintln!("settled after {:?}", started.elapsed() - elapsed);
    let roots = c.roots(&id).await?;
    let distinct: BTreeSet<_> = roots.values().collect();
    ensure!(
        roots.len() == 4 && distinct.len() == 1,
        "roots differ: {roots:?}"
    );
    let expected = format!("v{} ", n + 1);
    ensure!(
        roots["regulator"].starts_with(&expected),
        "{:?}",
        roots["regulator"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_does_not_stall_the_home_node() -> anyhow::Result<()> {
    blocked_peer(NodeConfig::new("x").outbox_capacity, 200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_outbox_overflowed_catches_up() -> anyhow::Result<()> {
    // 200 changes through a queue of 16: most are dropped, the peer catches up afterwards.
    blocked_peer(16, 200).await
}

/// Messages of the trivial protocol.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
enum DirectMessage {
    Intent(ForwardedIntent),
    Applied(Box<AppliedChange>),
    Rejected(Rejection),
    Refused(IntentRefused),
}

/// A trivial second protocol: the creating node sequences, forwards come to it, and after
/// a commit it sends every participant the change with the sections it may read. No
/// catch-up, no handshake. It notes the states whose messages it carried.
#[derive(Default)]
struct DirectSync {
    carried: Mutex<BTreeSet<StateId>>,
}

impl DirectSync {
    fn note(&self, state: &StateId) {
        self.carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(state.clone());
    }
}

#[async_trait]
impl SyncProtocol for DirectSync {
    fn name(&self) -> &'static str {
        "direct"
    }

    async fn route(&self, ctx: &NodeContext, signed: &SignedEvent) -> Result<Route, NodeError> {
        if signed.event.kind == EventKind::Create {
            return Ok(Route::Here);
        }
        match ctx.home_of(&signed.event.state_id).await? {
            Some(home) if home == *ctx.id() => Ok(Route::Here),
            Some(home) => Ok(Route::Forward(home)),
            None => Err(NodeError::Invalid("unknown state".into())),
        }
    }

    fn forward(
        &self,
        signed: &SignedEvent,
        disclosures: &BTreeMap<String, Disclosure>,
    ) -> Result<ProtocolEnvelope, NodeError> {
        let intent = ForwardedIntent {
            signed: signed.clone(),
            disclosures: disclosures.clone(),
        };
        encode(self, &DirectMessage::Intent(intent))
    }

    async fn receive(
        &self,
        _ctx: &NodeContext,
        _from: &NodeId,
        envelope: &ProtocolEnvelope,
    ) -> Result<Vec<Inbound>, NodeError> {
        Ok(vec![match decode(envelope)? {
            DirectMessage::Intent(i) => {
                self.note(&i.signed.event.state_id);
                Inbound::Sequence(i)
            }
            DirectMessage::Applied(ch) => {
                self.note(&ch.signed.event.state_id);
                Inbound::Replicate(ch)
            }
            DirectMessage::Rejected(r) => Inbound::Rejected(r),
            DirectMessage::Refused(r) => Inbound::Refused(r),
        }])
    }

    async fn admit(
        &self,
        ctx: &NodeContext,
        from: &NodeId,
        ch: &AppliedChange,
        current: Option<&State>,
    ) -> Result<Admission, NodeError> {
        let home = ctx.home_of_event(&ch.signed.event).await?;
        let held = current.map_or(0, |s| s.version);
        Ok(if home.as_ref() != Some(from) {
            Admission::Refuse {
                reason: RejectReason::InvalidPayload {
                    path: "$.from".into(),
                    reason: "not the creating node".into(),
                },
                send: Vec::new(),
            }
        } else if ch.version <= held {
            Admission::Duplicate
        } else if ch.version == held + 1 {
            Admission::Apply
        } else {
            Admission::Refuse {
                reason: RejectReason::StaleBase {
                    expected_version: held + 1,
                    found_version: held,
                },
                send: Vec::new(),
            }
        })
    }

    async fn outbound(
        &self,
        ctx: &NodeContext,
        item: &CommitItem,
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
        let record = &item.event;
        let mut out = Vec::new();
        match (&record.outcome, &item.state) {
            (Outcome::Applied { .. }, Some(state)) => {
                for node in ctx.participants(&state.parties) {
                    if node == *ctx.id() {
                        continue;
                    }
                    if let Some(change) = redacted_change(ctx, record, state, &node) {
                        out.push((node, encode(self, &DirectMessage::Applied(change.into()))?));
                    }
                }
            }
            (Outcome::Rejected { reason }, _) if record.event().origin_node != *ctx.id() => {
                let m = DirectMessage::Rejected(Rejection {
                    signed: record.signed.clone(),
                    reason: reason.clone(),
                    receipt: record.receipt.clone(),
                });
                out.push((record.event().origin_node.clone(), encode(self, &m)?));
            }
            _ => {}
        }
        Ok(out)
    }

    async fn replay(
        &self,
        _ctx: &NodeContext,
        _record: &EventRecord,
        _peer: &NodeId,
    ) -> Result<Vec<ProtocolEnvelope>, NodeError> {
        Ok(Vec::new())
    }

    fn refused(
        &self,
        event: EventId,
        reason: &RejectReason,
    ) -> Result<ProtocolEnvelope, NodeError> {
        let m = DirectMessage::Refused(IntentRefused {
            event,
            reason: reason.clone(),
        });
        encode(self, &m)
    }

    async fn start(
        &self,
        _ctx: &NodeContext,
    ) -> Result<Vec<(NodeId, ProtocolEnvelope)>, NodeError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_second_protocol_runs_beside_the_home_protocol() -> anyhow::Result<()> {
    let direct: BTreeMap<String, Arc<DirectSync>> = common::ROLES
        .iter()
        .map(|r| (r.to_string(), Arc::new(DirectSync::default())))
        .collect();
    let c = Cluster::start_with(
        Cluster::memory_stores(),
        |role: &str| NodeConfig {
            protocols: SyncRegistry::default().route("rfq", direct[role].clone()),
            ..common::config(role)
        },
        |_: &str, t| t,
    )
    .await?;
    // A deal travels with the home protocol…
    let deal = create_deal(&c, "deal-side-by-side").await?;
    let v = c
        .node("buyer")
        .submit(
            &who("buyer"),
            Intent::change(deal.clone(), values([("price", json!({"amount": 1}))])),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    // …and an RFQ with the direct protocol, in the same network.
    let rfq = create_rfq(&c, "rfq-direct").await?;
    for (role, price) in [("seller", 1200), ("inspector", 1100)] {
        let intent = Intent::call(rfq.clone(), "submit_quote", json!({"price": price}));
        let v = c.node(role).submit(&who(role), intent).await?;
        ensure!(v.is_applied(), "{role}: {v:?}");
    }
    // The requester may not quote: its rejection is recorded on the buyer's node.
    let intent = Intent::call(rfq.clone(), "submit_quote", json!({"price": 1}));
    let v = c.node("buyer").submit(&who("buyer"), intent).await?;
    ensure!(
        matches!(v.reason(), Some(RejectReason::ContractRejected { .. })),
        "{v:?}"
    );
    c.net.settled().await;
    for id in [&deal, &rfq] {
        let roots = c.roots(id).await?;
        let distinct: BTreeSet<_> = roots.values().collect();
        ensure!(
            roots.len() == 4 && distinct.len() == 1,
            "{id}: roots differ: {roots:?}"
        );
    }
    ensure!(c.roots(&rfq).await?["regulator"].starts_with("v3 "));
    // Only the RFQ's messages went through the direct protocol.
    for (role, p) in &direct {
        let carried = p.carried.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ensure!(
            carried == BTreeSet::from([rfq.clone()]),
            "{role} carried {carried:?}"
        );
    }
    Ok(())
}
