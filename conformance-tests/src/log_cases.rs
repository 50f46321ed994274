//! Conformance cases of the hash-chained log and checkpoints (the `Store` contract's log
//! sentences), and the log half of the tamper matrix: every peer table's rows rewritten,
//! deleted, duplicated, reordered or cut behind the store's back, each reported by
//! `verify_store_with` on the right table under the right rule.

use std::sync::Arc;

use anyhow::{bail, ensure};
use serde_json::{json, Value};
use sst_core::{
    verify_store_with, ActorKey, Checkpoint, CommitBatch, ConflictKind, ContractRef, Digest,
    EventId, HashAlg, LogEntry, LogHead, LogKind, NodeId, PeerTable, Refusal, RejectReason, Rule,
    StateId, StoreError, Timestamp, TrustAnchors, VerifyReport,
};

use crate::fixtures::{
    actor, change, contract_record, create, deal_parties, deal_values, foreign_digest, registry,
    rejected, sequencer, state_id, values,
};
use crate::{Backend, BackendFactory, EventColumn, Mutation};

/// The anchors the fixtures sign under: the fixture sequencer is "this node".
pub fn anchors() -> TrustAnchors {
    TrustAnchors::new(registry(), Some(sequencer().0))
}

/// `verify_store_with` under the fixture [`anchors`].
pub(crate) async fn verify(b: &Backend) -> anyhow::Result<VerifyReport> {
    Ok(verify_store_with(b.store.as_ref(), &anchors(), &mut |_, _| {}).await?)
}

/// Checks that `log` is a whole chain from position 1.
fn chained(log: &[LogEntry]) -> anyhow::Result<()> {
    let mut head = LogHead::default();
    for e in log {
        ensure!(
            e.pos == head.pos + 1,
            "position {} follows {}",
            e.pos,
            head.pos
        );
        ensure!(e.prev == head.hash, "entry {} does not link back", e.pos);
        ensure!(e.hash_ok(), "entry {} does not hash to its hash", e.pos);
        head = e.head();
    }
    Ok(())
}

fn refusal_of(byte: u8, state: &StateId) -> Refusal {
    Refusal {
        event: EventId(foreign_digest(byte)),
        state_id: state.clone(),
        version: 2,
        from_node: NodeId::from("home"),
        reason: RejectReason::UnknownState,
        at: Timestamp(1_700_000_000_000 + i64::from(byte)),
    }
}

/// Every recorded event, put actor, inserted contract, put refusal and cleared refusal appends
/// exactly one chained log entry; duplicates and no-op puts append nothing; `log(after,
/// limit)` pages by position and `log_head` names the last entry, as the commit reports it.
pub async fn every_write_appends_one_chained_log_entry(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    ensure!(
        b.store.log_head().await? == LogHead::default(),
        "a new store's log is not empty"
    );
    let (alice, ka) = actor("acme", "alice");
    let (ines, ki) = actor("insp", "ines");
    b.store.put_actor(&alice).await?;
    b.store.put_actor(&ines).await?;
    let id = state_id("logged");
    let c = create(&id, deal_parties(), deal_values(100, 1.0), (&alice, &ka), 1);
    let v1 = c.state.clone().ok_or_else(|| anyhow::anyhow!("no state"))?;
    let x = change(
        &v1,
        values([("inspection", json!({"radon": 1.5, "passed": true}))]),
        (&ines, &ki),
        1,
    );
    let r = rejected(&id, None, (&ines, &ki), 2, RejectReason::UnknownState);
    let receipt = b
        .store
        .commit(CommitBatch::new(vec![c.clone(), x, r]))
        .await?;
    let after_commit = b.store.log_head().await?;
    ensure!(
        receipt.log_head == Some(after_commit) && after_commit.pos == 5,
        "commit reported log head {:?}, the store holds {after_commit:?}",
        receipt.log_head
    );
    // A replayed event is skipped and logs nothing.
    b.store.commit(CommitBatch::new(vec![c])).await?;
    let record = contract_record("logged", 1, "code", (&alice, &ka));
    b.store.put_contract(&record).await?;
    b.store.put_contract(&record).await?;
    let refused = refusal_of(41, &id);
    b.store.put_refusal(&refused).await?;
    b.store.clear_refusal(&refused.event).await?;
    b.store.clear_refusal(&refused.event).await?;
    let log = b.store.log(0, None).await?;
    chained(&log)?;
    let kinds: Vec<LogKind> = log.iter().map(|e| e.kind).collect();
    ensure!(
        kinds
            == vec![
                LogKind::Actor,
                LogKind::Actor,
                LogKind::Event,
                LogKind::Event,
                LogKind::Event,
                LogKind::Contract,
                LogKind::Refusal,
                LogKind::RefusalCleared,
            ],
        "log kinds {kinds:?}"
    );
    ensure!(
        log[0].subject == alice.id.to_string() && log[5].subject == "logged@1",
        "log subjects {:?}",
        log.iter().map(|e| e.subject.clone()).collect::<Vec<_>>()
    );
    let page = b.store.log(3, Some(2)).await?;
    ensure!(
        page.iter().map(|e| e.pos).collect::<Vec<_>>() == vec![4, 5],
        "log(3, 2) gave {:?}",
        page.iter().map(|e| e.pos).collect::<Vec<_>>()
    );
    ensure!(
        b.store.log_head().await? == log[7].head(),
        "log_head is not the last entry"
    );
    let report = verify(&b).await?;
    ensure!(
        report.is_clean(),
        "log does not verify: {:?}",
        report.findings
    );
    ensure!(
        report.log_entries == 8,
        "verify walked {} entries",
        report.log_entries
    );
    Ok(())
}

/// Checkpoints are kept once per node and position (the same one again is a no-op, another
/// head at the same position a checkpoint conflict), listed per node by position, and
/// survive reopening.
pub async fn checkpoints_are_kept_per_node_and_position(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (node, key) = sequencer();
    let other = NodeId::from("peer-b");
    let peer_key = sst_core::NodeKey::from_seed([0x77; 32]);
    let cp = |n: &NodeId, k: &sst_core::NodeKey, pos: u64, byte: u8| {
        Checkpoint {
            node: n.clone(),
            pos,
            head: Digest::from_parts(HashAlg::Blake3, [byte; 32]),
            at: Timestamp(1_700_000_000_000 + pos as i64),
        }
        .sign(k)
    };
    let c5 = cp(&node, &key, 5, 1);
    let c2 = cp(&node, &key, 2, 2);
    let p7 = cp(&other, &peer_key, 7, 3);
    for c in [&c5, &c2, &p7, &c5] {
        b.store.put_checkpoint(c).await?;
    }
    match b.store.put_checkpoint(&cp(&node, &key, 5, 9)).await {
        Err(StoreError::Conflict {
            kind: ConflictKind::Checkpoint,
            ..
        }) => {}
        other => bail!("a second head at position 5 gave {other:?}"),
    }
    ensure!(
        b.store.checkpoints(&node).await? == vec![c2.clone(), c5.clone()],
        "own checkpoints not listed by position"
    );
    ensure!(
        b.store.checkpoints(&other).await? == vec![p7.clone()],
        "peer checkpoints mixed up"
    );
    ensure!(
        b.store
            .checkpoints(&NodeId::from("nobody"))
            .await?
            .is_empty(),
        "unknown node has checkpoints"
    );
    if b.store.capabilities().durable {
        let again = f.reopen().await?;
        ensure!(
            again.store.checkpoints(&node).await? == vec![c2, c5],
            "checkpoints lost on reopen"
        );
    }
    Ok(())
}

/// Writers racing for the log never fork it: concurrent commits and puts all land, at
/// distinct, gap-free positions.
pub async fn concurrent_writers_never_fork_the_log(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    if !b.store.capabilities().concurrent_writers {
        crate::not_run(
            "concurrent_writers_never_fork_the_log",
            b.store.backend(),
            "store does not take concurrent writers",
        );
        return Ok(());
    }
    let (alice, ka) = actor("acme", "alice");
    b.store.put_actor(&alice).await?;
    let ka = Arc::new(ka);
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let store = b.store.clone();
        let (alice, ka) = (alice.clone(), ka.clone());
        tasks.push(tokio::spawn(async move {
            let id = state_id("race");
            let c = create(
                &id,
                deal_parties(),
                deal_values(i as i64, 1.0),
                (&alice, &ka),
                10 + i,
            );
            store.commit(CommitBatch::new(vec![c])).await?;
            let (extra, _) = actor("acme", &format!("extra-{i}"));
            store.put_actor(&extra).await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let log = b.store.log(0, None).await?;
    chained(&log)?;
    ensure!(log.len() == 13, "{} log entries, expected 13", log.len());
    let report = verify(&b).await?;
    ensure!(
        report.is_clean(),
        "raced log does not verify: {:?}",
        report.findings
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tamper matrix, log half

/// What `log_setup` wrote: a state at version 2 with its events, a rejected intent, actors, a
/// contract, a refusal and a checkpoint of the log head signed by the fixture sequencer.
struct LogSetup {
    applied: Vec<EventId>,
    roots: Vec<sst_core::StateRoot>,
    rejected: EventId,
    refusal: EventId,
    contract: ContractRef,
    descriptor: Value,
    ines: sst_core::ActorId,
    head: u64,
}

async fn log_setup(b: &Backend) -> anyhow::Result<LogSetup> {
    let (alice, ka) = actor("acme", "alice");
    let (ines, ki) = actor("insp", "ines");
    b.store.put_actor(&alice).await?;
    b.store.put_actor(&ines).await?;
    let record = contract_record("conformance", 1, "code", (&alice, &ka));
    b.store.put_contract(&record).await?;
    let id = state_id("logtamper");
    let c = create(
        &id,
        deal_parties(),
        deal_values(250_000, 3.2),
        (&alice, &ka),
        1,
    );
    let v1 = c.state.clone().ok_or_else(|| anyhow::anyhow!("no state"))?;
    let x = change(
        &v1,
        values([("inspection", json!({"radon": 4.6, "passed": false}))]),
        (&ines, &ki),
        1,
    );
    let v2 = x.state.clone().ok_or_else(|| anyhow::anyhow!("no state"))?;
    let r = rejected(
        &id,
        Some(sst_core::Base {
            version: 1,
            root: v1.root,
        }),
        (&ines, &ki),
        2,
        RejectReason::StaleBase {
            expected_version: 1,
            found_version: 2,
        },
    );
    let setup_ids = (c.event.id(), x.event.id(), r.event.id());
    b.store.commit(CommitBatch::new(vec![c, x, r])).await?;
    let refusal = refusal_of(42, &id);
    b.store.put_refusal(&refusal).await?;
    let head = b.store.log_head().await?;
    let (node, key) = sequencer();
    b.store
        .put_checkpoint(
            &Checkpoint {
                node,
                pos: head.pos,
                head: head.hash,
                at: Timestamp(1_700_000_100_000),
            }
            .sign(&key),
        )
        .await?;
    let clean = verify(b).await?;
    ensure!(
        clean.is_clean() && clean.anchored && clean.checkpoints == 1,
        "store does not verify before tampering: {:?}",
        clean.findings
    );
    Ok(LogSetup {
        applied: vec![setup_ids.0, setup_ids.1],
        roots: vec![v1.root, v2.root],
        rejected: setup_ids.2,
        refusal: refusal.event,
        contract: record.contract().clone(),
        descriptor: serde_json::to_value(&record.descriptor)?,
        ines: ines.id,
        head: head.pos,
    })
}

/// Applies the mutations `make` builds to a fresh [`log_setup`] and checks that verify reports
/// a finding on `table` under one of `rules`.
async fn log_case(
    f: &impl BackendFactory,
    case: &str,
    make: impl FnOnce(&LogSetup) -> Vec<Mutation>,
    table: PeerTable,
    rules: &[Rule],
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let setup = log_setup(&b).await?;
    for m in make(&setup) {
        if !b.raw.mutate(&m).await? {
            crate::not_run(
                case,
                b.store.backend(),
                &format!("store has no row for {m:?}"),
            );
            return Ok(());
        }
    }
    let report = verify(&b).await?;
    expect_finding(&report, case, table, rules)
}

/// Checks that `report` holds a finding on `table` under one of `rules`.
pub(crate) fn expect_finding(
    report: &VerifyReport,
    case: &str,
    table: PeerTable,
    rules: &[Rule],
) -> anyhow::Result<()> {
    ensure!(!report.is_clean(), "{case}: tampering went unnoticed");
    ensure!(
        report
            .findings
            .iter()
            .any(|x| x.table == table && rules.contains(&x.rule)),
        "{case}: expected a {table} finding under {rules:?}, got {:?}",
        report
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// Rewrites `column` of the event `pick` chooses in a fresh setup and checks that the event
/// table is reported.
async fn column_case(
    f: &impl BackendFactory,
    column: EventColumn,
    pick: fn(&LogSetup) -> (EventId, Value),
) -> anyhow::Result<()> {
    log_case(
        f,
        &format!("rewritten event column {}", column.name()),
        |s| {
            let (event, value) = pick(s);
            vec![Mutation::SetEventColumn {
                event,
                column,
                value,
            }]
        },
        PeerTable::Event,
        &[
            Rule::Integrity,
            Rule::EventId,
            Rule::LogRecord,
            Rule::Receipt,
        ],
    )
    .await
}

/// An applied event's `state_id` column rewritten is reported on the event table.
pub async fn rewritten_event_state_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    column_case(f, EventColumn::StateId, |s| {
        (s.applied[1], json!("forged-state"))
    })
    .await
}

/// An applied event's `actor` column rewritten is reported on the event table.
pub async fn rewritten_event_actor_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    column_case(f, EventColumn::Actor, |s| {
        (s.applied[1], json!("acme/alice"))
    })
    .await
}

/// An event's `origin_seq` column lowered or raised is reported on the event table.
pub async fn rewritten_event_origin_seq_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    column_case(f, EventColumn::OriginSeq, |s| (s.applied[0], json!(999))).await
}

/// A rejected event's `reason` column rewritten is reported on the event table.
pub async fn rewritten_event_reason_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    column_case(f, EventColumn::Reason, |s| (s.rejected, json!("forbidden"))).await
}

/// An applied event's `new_root` column rewritten is reported on the event table.
pub async fn rewritten_event_root_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    column_case(f, EventColumn::NewRoot, |s| {
        (s.applied[1], json!(s.roots[0].to_string()))
    })
    .await
}

/// An event's sequencing receipt removed is reported on the event table.
pub async fn removed_event_receipt_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    column_case(f, EventColumn::Receipt, |s| (s.applied[0], Value::Null)).await
}

/// A business event added to an applied event's `business_events` column (it emitted none)
/// is reported on the event table: the receipt and the log record cover them.
pub async fn added_business_event_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    column_case(f, EventColumn::BusinessEvents, |s| {
        (
            s.applied[1],
            json!([{"name": "price_agreed", "payload": {"amount": 1}}]),
        )
    })
    .await
}

/// A log entry deleted breaks the chain.
pub async fn deleted_log_entry_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    log_case(
        f,
        "deleted_log_entry_is_reported",
        |_| vec![Mutation::DeleteLogEntry(3)],
        PeerTable::Log,
        &[Rule::LogChain],
    )
    .await
}

/// A log entry duplicated past the head breaks the chain.
pub async fn duplicated_log_entry_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    log_case(
        f,
        "duplicated_log_entry_is_reported",
        |s| {
            vec![Mutation::CopyLogEntry {
                from: 4,
                to: s.head + 1,
            }]
        },
        PeerTable::Log,
        &[Rule::LogChain],
    )
    .await
}

/// Two log entries swapped break the chain.
pub async fn reordered_log_entries_are_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    log_case(
        f,
        "reordered_log_entries_are_reported",
        |_| vec![Mutation::SwapLogEntries { a: 4, b: 5 }],
        PeerTable::Log,
        &[Rule::LogChain],
    )
    .await
}

/// The log cut below a surviving checkpoint is reported against the checkpoint, and the
/// records it bound are left without entries.
pub async fn log_cut_below_a_checkpoint_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    log_case(
        f,
        "log_cut_below_a_checkpoint_is_reported",
        |s| vec![Mutation::TruncateLog { from: s.head - 1 }],
        PeerTable::Log,
        &[Rule::Checkpoint],
    )
    .await
}

/// An actor's key replaced in the directory (the forged-key attack) is reported on the actor
/// table.
pub async fn replaced_actor_key_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    log_case(
        f,
        "replaced_actor_key_is_reported",
        |s| {
            vec![Mutation::SetActorKey {
                actor: s.ines.clone(),
                key: ActorKey::from_seed([0x66; 32]).public_key(),
            }]
        },
        PeerTable::Actor,
        &[Rule::LogRecord],
    )
    .await
}

/// A contract's stored policy edited (every role may write everything) is reported on the
/// contract table.
pub async fn edited_contract_policy_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    log_case(
        f,
        "edited_contract_policy_is_reported",
        |s| {
            let mut descriptor = s.descriptor.clone();
            if let Some(sections) = descriptor
                .pointer_mut("/policy/sections")
                .and_then(Value::as_object_mut)
            {
                for section in sections.values_mut() {
                    section["write"] = json!(["*"]);
                }
            }
            vec![Mutation::SetContractDescriptor {
                contract: s.contract.clone(),
                descriptor,
            }]
        },
        PeerTable::Contract,
        &[Rule::Contract, Rule::LogRecord],
    )
    .await
}

/// A refusal deleted behind SST's back is reported on the refusal table.
pub async fn deleted_refusal_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    log_case(
        f,
        "deleted_refusal_is_reported",
        |s| vec![Mutation::DeleteRefusal(s.refusal)],
        PeerTable::Refusal,
        &[Rule::LogRecord],
    )
    .await
}

/// An event row deleted together with its log entry at the tail still breaks the node's
/// checkpoint; a deleted event row alone leaves its entry binding nothing.
pub async fn deleted_event_row_leaves_its_entry_unbound(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    log_case(
        f,
        "deleted_event_row_leaves_its_entry_unbound",
        |s| vec![Mutation::DeleteEvent(s.rejected)],
        PeerTable::Event,
        &[Rule::LogRecord],
    )
    .await
}
