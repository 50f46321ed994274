//! Conformance cases of what notifications build on: business events stored beside their
//! event and covered by verify, the sink cursors' durable bookkeeping, and checkpoint pruning.

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use sst_core::{
    BusinessEvent, Checkpoint, NodeId, NodeKey, PeerTable, Rule, StoreError, Timestamp,
};

use crate::fixtures::{actor, emitting, sequencer};
use crate::log_cases::{expect_finding, verify};
use crate::setups::{created_then_changed, reads_back_exactly, CreatedThenChanged};
use crate::{Backend, BackendFactory, EventColumn, Mutation};

/// Business events of every JSON shape the portable profile allows.
fn business_events() -> Vec<BusinessEvent> {
    vec![
        BusinessEvent {
            name: "price_agreed".into(),
            payload: json!({
                "amount": 250_000,
                "currency": "EUR",
                "ratio": 0.125,
                "parties": ["acme/alice", "globex/bob"],
                "nested": {"zeta": null, "alpha": true, "ünïcode": "naïve ✓"},
            }),
        },
        BusinessEvent {
            name: "inspection.due-v2".into(),
            payload: Value::Null,
        },
    ]
}

/// A state created, then changed by an event that emitted [`business_events`].
async fn business_setup(b: &Backend) -> anyhow::Result<CreatedThenChanged> {
    created_then_changed(b, "business", |x| Ok(emitting(x, business_events()))).await
}

/// Business events round-trip exactly through commit and every read (`event`, `events`, the
/// log entry binding the record), an event without any reads back with none, and verify
/// stays clean.
pub async fn business_events_round_trip_and_verify(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let s = business_setup(&b).await?;
    ensure!(
        !s.changed.business_events.is_empty() && s.plain.business_events.is_empty(),
        "fixture: only the change emits business events"
    );
    reads_back_exactly(&b, &s, "business events").await?;
    let report = verify(&b).await?;
    ensure!(
        report.is_clean(),
        "business events do not verify: {:?}",
        report.findings
    );
    Ok(())
}

/// The business events of an event edited in their column (one payload value changed) are
/// reported by verify on the event table.
pub async fn edited_business_event_payload_is_reported(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let s = business_setup(&b).await?;
    let mut forged = business_events();
    forged[0].payload["amount"] = json!(1);
    let done = b
        .raw
        .mutate(&Mutation::SetEventColumn {
            event: s.changed.id(),
            column: EventColumn::BusinessEvents,
            value: serde_json::to_value(&forged)?,
        })
        .await?;
    ensure!(done, "the store has no business_events column to edit");
    expect_finding(
        &verify(&b).await?,
        "edited_business_event_payload_is_reported",
        PeerTable::Event,
        &[Rule::Integrity, Rule::Receipt, Rule::LogRecord],
    )
}

fn invalid_at(result: Result<impl std::fmt::Debug, StoreError>, path: &str) -> anyhow::Result<()> {
    match result {
        Err(StoreError::InvalidInput { path: p, .. }) if p == path => Ok(()),
        other => bail!("expected InvalidInput at `{path}`, got {other:?}"),
    }
}

/// Sink cursors read as absent until set, are kept per sink name, only move forward (a lower
/// position is ignored), survive reopening, append nothing to the log, and names that are not
/// 1..=128 bytes of `[A-Za-z0-9_.-]` are refused with `InvalidInput` at `sink`.
pub async fn sink_cursors_move_forward_per_sink(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let s = &b.store;
    let (kafka, redis) = ("kafka.orders-v1", "redis_stream");
    ensure!(s.sink_cursor(kafka).await?.is_none(), "unset cursor is set");
    let head = s.log_head().await?;
    s.set_sink_cursor(kafka, 5).await?;
    ensure!(
        s.sink_cursor(kafka).await? == Some(5),
        "cursor not set to 5"
    );
    s.set_sink_cursor(kafka, 3).await?;
    ensure!(
        s.sink_cursor(kafka).await? == Some(5),
        "cursor moved back to 3"
    );
    s.set_sink_cursor(kafka, 5).await?;
    s.set_sink_cursor(kafka, 12).await?;
    ensure!(
        s.sink_cursor(kafka).await? == Some(12),
        "cursor not moved to 12"
    );
    ensure!(
        s.sink_cursor(redis).await?.is_none(),
        "another sink shares the cursor"
    );
    s.set_sink_cursor(redis, 0).await?;
    ensure!(s.sink_cursor(redis).await? == Some(0), "cursor 0 not kept");
    ensure!(
        s.sink_cursor(kafka).await? == Some(12),
        "setting one sink moved another"
    );
    let longest = "n".repeat(128);
    s.set_sink_cursor(&longest, i64::MAX as u64).await?;
    ensure!(
        s.sink_cursor(&longest).await? == Some(i64::MAX as u64),
        "128-byte name or largest position not kept"
    );
    ensure!(
        s.log_head().await? == head,
        "sink cursors appended to the log"
    );
    invalid_at(
        s.set_sink_cursor(kafka, i64::MAX as u64 + 1).await,
        "position",
    )?;
    for bad in [
        "",
        "with space",
        "slash/y",
        "ünï",
        "semi;colon",
        &"n".repeat(129),
    ] {
        invalid_at(s.set_sink_cursor(bad, 1).await, "sink")
            .with_context(|| format!("set_sink_cursor({bad:?})"))?;
        invalid_at(s.sink_cursor(bad).await, "sink")
            .with_context(|| format!("sink_cursor({bad:?})"))?;
    }
    if s.capabilities().durable {
        let again = f.reopen().await?;
        ensure!(
            again.store.sink_cursor(kafka).await? == Some(12)
                && again.store.sink_cursor(redis).await? == Some(0),
            "cursors lost on reopen"
        );
    }
    Ok(())
}

/// Pruning keeps the node's `keep` latest checkpoints (by position) and deletes the rest,
/// returning how many; other nodes' checkpoints stay; verify is clean afterwards; `keep` 0
/// is refused with `InvalidInput` at `keep`.
pub async fn pruning_keeps_the_latest_checkpoints(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (node, key) = sequencer();
    for i in 0..5 {
        let (a, _) = actor("acme", &format!("pruned-{i}"));
        b.store.put_actor(&a).await?;
    }
    let log = b.store.log(0, None).await?;
    ensure!(log.len() == 5, "{} log entries, expected 5", log.len());
    for e in &log {
        let head = e.head();
        b.store
            .put_checkpoint(
                &Checkpoint {
                    node: node.clone(),
                    pos: head.pos,
                    head: head.hash,
                    at: Timestamp(1_700_000_000_000 + head.pos as i64),
                }
                .sign(&key),
            )
            .await?;
    }
    let peer = NodeId::from("peer-b");
    let peer_key = NodeKey::from_seed([0x77; 32]);
    for pos in [1, 2, 3] {
        b.store
            .put_checkpoint(
                &Checkpoint {
                    node: peer.clone(),
                    pos,
                    head: log[0].head().hash,
                    at: Timestamp(1_700_000_000_000),
                }
                .sign(&peer_key),
            )
            .await?;
    }
    invalid_at(b.store.prune_checkpoints(&node, 0).await, "keep")?;
    ensure!(
        b.store.checkpoints(&node).await?.len() == 5,
        "a refused prune deleted checkpoints"
    );
    ensure!(
        b.store.prune_checkpoints(&node, 5).await? == 0,
        "keeping all deleted some"
    );
    let deleted = b.store.prune_checkpoints(&node, 2).await?;
    ensure!(deleted == 3, "pruned {deleted} checkpoints, expected 3");
    let kept: Vec<u64> = b
        .store
        .checkpoints(&node)
        .await?
        .iter()
        .map(|c| c.checkpoint.pos)
        .collect();
    ensure!(
        kept == vec![4, 5],
        "kept positions {kept:?}, expected [4, 5]"
    );
    ensure!(
        b.store.checkpoints(&peer).await?.len() == 3,
        "pruning one node's checkpoints touched another's"
    );
    ensure!(
        b.store.prune_checkpoints(&node, 2).await? == 0,
        "a second prune deleted more"
    );
    ensure!(
        b.store
            .prune_checkpoints(&NodeId::from("nobody"), 1)
            .await?
            == 0,
        "pruning a node without checkpoints deleted some"
    );
    let report = verify(&b).await?;
    ensure!(
        report.is_clean() && report.checkpoints == 2,
        "verify after pruning: {} checkpoints, findings {:?}",
        report.checkpoints,
        report.findings
    );
    ensure!(
        b.store.prune_checkpoints(&peer, 1).await? == 2,
        "pruning the peer's checkpoints"
    );
    Ok(())
}
