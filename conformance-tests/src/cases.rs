//! The conformance cases: one `pub async fn` per sentence of the `Store` contract (see the
//! `# Contract` section of [`sst_core::Store`]) and per behaviour the store issue lists.
//!
//! Every case opens its own fresh namespace through the factory, registers the actors it
//! signs with, and checks behaviour only through the `Store` trait, [`sst_core::verify_store`]
//! and the adapter's [`crate::RawAccess`] hook.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Context};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};
use sst_core::{
    canonical, portable, verify_store, Actor, ActorKey, ActorStatus, CommitBatch, CommitItem,
    CommitReceipt, ContractRef, EventFilter, EventId, EventKind, EventRecord, NodeId, OriginSeq,
    OutcomeKind, Refusal, RejectReason, State, StateId, StoreError, Timestamp, VerifyReport,
};

use crate::fixtures::{
    actor, change, contract_record, create, create_redacted, deal_parties, deal_values, deploy,
    rejected, state_id, values,
};
use crate::{Backend, BackendFactory};

pub use crate::endorsement_cases::{
    added_endorsement_is_reported, edited_endorsement_signature_is_reported,
    endorsements_round_trip_exactly, event_table_without_endorsements_gains_them_on_migrate,
    malformed_endorsements_column_is_an_integrity_error, removed_endorsement_is_reported,
};
pub use crate::log_cases::{
    added_business_event_is_reported, anchors, checkpoints_are_kept_per_node_and_position,
    concurrent_writers_never_fork_the_log, deleted_event_row_leaves_its_entry_unbound,
    deleted_log_entry_is_reported, deleted_refusal_is_reported, duplicated_log_entry_is_reported,
    edited_contract_policy_is_reported, every_write_appends_one_chained_log_entry,
    log_cut_below_a_checkpoint_is_reported, removed_event_receipt_is_reported,
    reordered_log_entries_are_reported, replaced_actor_key_is_reported,
    rewritten_event_actor_is_reported, rewritten_event_origin_seq_is_reported,
    rewritten_event_reason_is_reported, rewritten_event_root_is_reported,
    rewritten_event_state_is_reported,
};
pub use crate::notify_cases::{
    business_events_round_trip_and_verify, edited_business_event_payload_is_reported,
    pruning_keeps_the_latest_checkpoints, sink_cursors_move_forward_per_sink,
};

// ---------------------------------------------------------------------------------------------
// helpers

/// Commits `items` as one batch.
async fn commit(b: &Backend, items: Vec<CommitItem>) -> anyhow::Result<CommitReceipt> {
    Ok(b.store.commit(CommitBatch::new(items)).await?)
}

/// The state version an applied fixture item carries.
fn state_of(item: &CommitItem) -> anyhow::Result<State> {
    item.state
        .as_deref()
        .cloned()
        .context("fixture item carries no state")
}

/// Registers actors so that `verify_store` can check their signatures.
async fn register(b: &Backend, actors: &[&Actor]) -> anyhow::Result<()> {
    for a in actors {
        b.store.put_actor(a).await?;
    }
    Ok(())
}

/// Canonical text of any serialisable value (number formatting and key order of the engine
/// do not matter; values must be equal as JSON).
fn canon<T: serde::Serialize>(v: &T) -> anyhow::Result<String> {
    Ok(canonical::to_string(&serde_json::to_value(v)?))
}

/// Checks that a read-back state is the written one: header, section hashes and salts, the
/// disclosed values (as canonical JSON) and the root, and that it verifies.
fn same_state(read: &State, written: &State) -> anyhow::Result<()> {
    let what = format!("state {} version {}", written.id, written.version);
    ensure!(
        read.id == written.id && read.version == written.version,
        "{what}: read back {} version {}",
        read.id,
        read.version
    );
    ensure!(
        read.contract == written.contract,
        "{what}: contract differs"
    );
    ensure!(read.parties == written.parties, "{what}: parties differ");
    ensure!(
        read.prev_root == written.prev_root
            && read.last_event == written.last_event
            && read.updated_at == written.updated_at,
        "{what}: prev_root, last_event or updated_at differ"
    );
    ensure!(
        read.seals() == written.seals(),
        "{what}: section hashes or salts differ"
    );
    ensure!(
        canonical::to_string(&read.data()) == canonical::to_string(&written.data()),
        "{what}: disclosed values differ after the round trip"
    );
    read.verify()
        .map_err(|e| anyhow!("{what}: read-back state does not verify: {e}"))?;
    ensure!(
        read.root == written.root && read.compute_root() == written.root,
        "{what}: root differs"
    );
    Ok(())
}

/// Ids of records, in order.
fn ids(records: &[EventRecord]) -> Vec<EventId> {
    records.iter().map(EventRecord::id).collect()
}

/// Everything a failed commit must leave untouched.
#[derive(Debug, PartialEq)]
struct Snapshot {
    state_ids: Vec<StateId>,
    latest: BTreeMap<StateId, (u64, String)>,
    events: Vec<String>,
    origin: Vec<OriginSeq>,
}

async fn snapshot(b: &Backend, nodes: &[&NodeId]) -> anyhow::Result<Snapshot> {
    let state_ids = b.store.state_ids().await?;
    let mut latest = BTreeMap::new();
    for id in &state_ids {
        if let Some(s) = b.store.state(id).await? {
            latest.insert(id.clone(), (s.version, s.root.to_string()));
        }
    }
    let events = b
        .store
        .events(&EventFilter::default())
        .await?
        .iter()
        .map(canon)
        .collect::<anyhow::Result<_>>()?;
    let mut origin = Vec::new();
    for n in nodes {
        origin.push(b.store.last_origin_seq(n).await?);
    }
    Ok(Snapshot {
        state_ids,
        latest,
        events,
        origin,
    })
}

/// The `(expected, found)` of a `Conflict`, or an error saying what came instead.
fn conflict(r: Result<CommitReceipt, StoreError>, what: &str) -> anyhow::Result<(u64, u64)> {
    match r {
        Err(StoreError::Conflict {
            expected, found, ..
        }) => Ok((expected, found)),
        Err(other) => bail!("{what}: expected Conflict, got error {other}"),
        Ok(receipt) => bail!("{what}: expected Conflict, but it committed: {receipt:?}"),
    }
}

/// The `path` of an `InvalidInput`, or an error saying what came instead.
fn invalid_path(r: Result<CommitReceipt, StoreError>, what: &str) -> anyhow::Result<String> {
    match r {
        Err(StoreError::InvalidInput { path, .. }) => Ok(path),
        Err(other) => bail!("{what}: expected InvalidInput, got error {other}"),
        Ok(receipt) => bail!("{what}: expected InvalidInput, but it committed: {receipt:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// migrate

/// Migrating twice succeeds and leaves an empty, usable store; migrating a store that holds
/// data keeps the data.
pub async fn migrate_is_idempotent(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    b.store.migrate().await?;
    b.store.migrate().await?;
    ensure!(
        b.store.state_ids().await?.is_empty(),
        "fresh store is not empty"
    );
    let (alice, ka) = actor("acme", "alice");
    let id = state_id("migrate");
    let item = create(&id, deal_parties(), deal_values(1, 1.0), (&alice, &ka), 1);
    let written = state_of(&item)?;
    commit(&b, vec![item]).await?;
    b.store.migrate().await?;
    let read = b
        .store
        .state(&id)
        .await?
        .context("state lost by a second migrate")?;
    same_state(&read, &written)
}

// ---------------------------------------------------------------------------------------------
// commit: all-or-nothing

/// A batch in which one item fails (a stale base version, or a reused origin sequence) leaves
/// no event, state version or origin counter of the batch behind.
pub async fn failed_batch_leaves_nothing_behind(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let (bob, kb) = actor("bank", "bob");
    let existing = state_id("atomic");
    let first = create(
        &existing,
        deal_parties(),
        deal_values(100, 1.0),
        (&alice, &ka),
        1,
    );
    let v1 = state_of(&first)?;
    commit(&b, vec![first]).await?;
    let second = change(
        &v1,
        values([("price", json!({"amount": 200, "currency": "EUR"}))]),
        (&alice, &ka),
        2,
    );
    let v2 = state_of(&second)?;
    commit(&b, vec![second]).await?;
    let nodes = [&alice.node, &bob.node];
    let before = snapshot(&b, &nodes).await?;

    let a = state_id("atomic-a");
    let c = state_id("atomic-c");
    let batch = vec![
        create(&a, deal_parties(), deal_values(1, 1.0), (&bob, &kb), 1),
        create(&c, deal_parties(), deal_values(2, 2.0), (&bob, &kb), 2),
        rejected(&a, None, (&bob, &kb), 3, RejectReason::StateExists),
        // built on version 1, but version 2 is stored
        change(
            &v1,
            values([("price", json!({"amount": 300, "currency": "EUR"}))]),
            (&alice, &ka),
            3,
        ),
    ];
    let batch_ids: Vec<EventId> = batch.iter().map(|i| i.event.id()).collect();
    let (expected, found) = conflict(
        b.store.commit(CommitBatch::new(batch)).await,
        "stale item at the end of a batch",
    )?;
    ensure!(
        (expected, found) == (1, 2),
        "conflict should say expected 1, found 2; got expected {expected}, found {found}"
    );
    ensure!(
        snapshot(&b, &nodes).await? == before,
        "a failed batch (stale version) changed the store"
    );
    for id in &batch_ids {
        ensure!(
            b.store.event(id).await?.is_none(),
            "event {id} of a failed batch is visible"
        );
    }
    ensure!(
        b.store.state(&a).await?.is_none() && b.store.state(&c).await?.is_none(),
        "a state created by a failed batch is visible"
    );

    // Same with the failing item being a different event under an already used origin seq.
    let batch = vec![
        create(&a, deal_parties(), deal_values(1, 1.0), (&bob, &kb), 1),
        change(
            &v2,
            values([("common", json!({"note": "reuses acme seq 2"}))]),
            (&alice, &ka),
            2,
        ),
    ];
    conflict(
        b.store.commit(CommitBatch::new(batch)).await,
        "reused origin seq at the end of a batch",
    )?;
    ensure!(
        snapshot(&b, &nodes).await? == before,
        "a failed batch (reused origin seq) changed the store"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// validation before the database is touched

/// JSON outside the portable profile (an integer of magnitude 2^53, a key with `.`, a key
/// starting with `$`, an empty key, a string holding U+0000, a section name with `.`) is
/// rejected with `InvalidInput` naming its JSON path, and nothing is stored or changed.
pub async fn non_portable_json_is_rejected_with_its_path(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let id = state_id("badinput");
    let first = create(&id, deal_parties(), deal_values(100, 1.0), (&alice, &ka), 1);
    let v1 = state_of(&first)?;
    commit(&b, vec![first]).await?;
    let nodes = [&alice.node];
    let before = snapshot(&b, &nodes).await?;

    let two53 = portable::MAX_SAFE_INTEGER + 1;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "inspection",
            json!({"rooms": [1, two53]}),
            "inspection.rooms[1]",
        ),
        (
            "inspection",
            json!({"radon": -(two53 as i64)}),
            "inspection.radon",
        ),
        ("common", json!({"bad.key": 1}), "common[\"bad.key\"]"),
        ("common", json!({"$where": "1"}), "common[\"$where\"]"),
        ("common", json!({"": true}), "common[\"\"]"),
        ("common", json!({"note": "a\u{0}b"}), "common.note"),
        (
            "common",
            json!([{"deep": ["x", "\u{0}"]}]),
            "common[0].deep[1]",
        ),
        ("a.b", json!(1), "[\"a.b\"]"),
        ("$set", json!(1), "[\"$set\"]"),
    ];
    for (seq, (section, value, suffix)) in (2u64..).zip(cases) {
        let fresh = state_id("badinput-new");
        let attempts = [
            (
                "create",
                create(
                    &fresh,
                    deal_parties(),
                    values([(section, value.clone())]),
                    (&alice, &ka),
                    seq,
                ),
            ),
            (
                "change",
                change(&v1, values([(section, value.clone())]), (&alice, &ka), seq),
            ),
        ];
        for (kind, item) in attempts {
            let what = format!("{kind} with {section} = {value}");
            let path = invalid_path(b.store.commit(CommitBatch::new(vec![item])).await, &what)?;
            ensure!(
                path.ends_with(suffix),
                "{what}: error path `{path}` does not name `{suffix}`"
            );
        }
        ensure!(
            b.store.state(&fresh).await?.is_none(),
            "invalid create stored a state"
        );
    }
    ensure!(
        snapshot(&b, &nodes).await? == before,
        "rejected input changed the store"
    );
    Ok(())
}

/// A batch that is malformed as a whole (an event whose id is not the hash of its body, the
/// same event twice, a state that does not match its outcome or does not verify, a rejected
/// event carrying a state or endorsements, two endorsements by one node) is refused with
/// `InvalidInput` before anything is stored, also
/// when it was marked valid by `CommitBatch::validated` and changed afterwards.
pub async fn malformed_batch_is_refused_before_storage(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let nodes = [&alice.node];
    let before = snapshot(&b, &nodes).await?;
    let id = state_id("malformed");
    let good = create(&id, deal_parties(), deal_values(1, 1.0), (&alice, &ka), 1);

    let mut forged = good.clone();
    forged.event.signed.event.payload = json!({"sections": {}, "forged": true});
    let path = invalid_path(
        b.store.commit(CommitBatch::new(vec![forged])).await,
        "event body changed after signing",
    )?;
    ensure!(path == "items[0].event.id", "path was `{path}`");

    let mut forged = CommitBatch::new(vec![good.clone()]).validated()?;
    forged.items[0].event.signed.event.payload = json!({"sections": {}, "forged": true});
    let path = invalid_path(
        b.store.commit(forged).await,
        "event body changed after the batch was validated",
    )?;
    ensure!(path == "items[0].event.id", "path was `{path}`");
    let mut unsealed = CommitBatch::new(vec![good.clone()]).validated()?;
    if let Some(d) = unsealed.items[0]
        .state
        .as_mut()
        .map(std::sync::Arc::make_mut)
        .and_then(|s| s.sections.get_mut("price"))
        .and_then(|sec| sec.disclosure.as_mut())
    {
        d.value = json!({"amount": 1_000_000, "currency": "EUR"}).into();
    }
    let path = invalid_path(
        b.store.commit(unsealed).await,
        "state changed after the batch was validated",
    )?;
    ensure!(path == "items[0].state", "path was `{path}`");

    let path = invalid_path(
        b.store
            .commit(CommitBatch::new(vec![good.clone(), good.clone()]))
            .await,
        "the same event twice",
    )?;
    ensure!(path == "items[1].event.id", "path was `{path}`");

    let mut unsealed = good.clone();
    if let Some(s) = unsealed.state.as_mut().map(std::sync::Arc::make_mut) {
        if let Some(d) = s
            .sections
            .get_mut("price")
            .and_then(|sec| sec.disclosure.as_mut())
        {
            d.value = json!({"amount": 1_000_000, "currency": "EUR"}).into();
        }
    }
    let path = invalid_path(
        b.store.commit(CommitBatch::new(vec![unsealed])).await,
        "state changed after sealing",
    )?;
    ensure!(path == "items[0].state", "path was `{path}`");

    let mut with_state = rejected(&id, None, (&alice, &ka), 2, RejectReason::UnknownState);
    with_state.state = good.state.clone();
    let path = invalid_path(
        b.store.commit(CommitBatch::new(vec![with_state])).await,
        "rejected event carrying a state",
    )?;
    ensure!(path == "items[0].state", "path was `{path}`");

    let mut no_state = good.clone();
    no_state.state = None;
    let path = invalid_path(
        b.store.commit(CommitBatch::new(vec![no_state])).await,
        "applied state event without its state",
    )?;
    ensure!(path == "items[0].state", "path was `{path}`");

    let mut endorsed_rejection = rejected(&id, None, (&alice, &ka), 3, RejectReason::UnknownState);
    endorsed_rejection.event.endorsements =
        crate::fixtures::endorsed(good.clone(), &crate::fixtures::endorsers())?
            .event
            .endorsements;
    let path = invalid_path(
        b.store
            .commit(CommitBatch::new(vec![endorsed_rejection]))
            .await,
        "rejected event carrying endorsements",
    )?;
    ensure!(path == "items[0].endorsements", "path was `{path}`");

    let mut twice = crate::fixtures::endorsed(good.clone(), &crate::fixtures::endorsers())?;
    let first = twice.event.endorsements[0].clone();
    twice.event.endorsements.push(first);
    let path = invalid_path(
        b.store.commit(CommitBatch::new(vec![twice])).await,
        "two endorsements by one node",
    )?;
    ensure!(path == "items[0].endorsements", "path was `{path}`");

    ensure!(
        snapshot(&b, &nodes).await? == before,
        "a malformed batch changed the store"
    );
    // The well-formed item still commits afterwards.
    commit(&b, vec![good]).await?;
    ensure!(b.store.state(&id).await?.is_some(), "good item not stored");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// versions and conflicts

/// An applied state version must be exactly one more than the stored version (1 for a new
/// state); otherwise the commit fails with `Conflict` whose `expected` is the version the
/// writer built on and `found` the stored one, and nothing changes.
pub async fn version_must_follow_the_stored_version(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let id = state_id("versions");
    let first = create(&id, deal_parties(), deal_values(100, 1.0), (&alice, &ka), 1);
    let v1 = state_of(&first)?;
    commit(&b, vec![first]).await?;

    // A second create of the same state.
    let again = create(&id, deal_parties(), deal_values(7, 7.0), (&alice, &ka), 2);
    let got = conflict(
        b.store.commit(CommitBatch::new(vec![again])).await,
        "second create",
    )?;
    ensure!(got == (0, 1), "second create: (expected, found) = {got:?}");

    let second = change(
        &v1,
        values([("price", json!({"amount": 150, "currency": "EUR"}))]),
        (&alice, &ka),
        3,
    );
    let v2 = state_of(&second)?;
    commit(&b, vec![second]).await?;

    // Another change built on version 1.
    let stale = change(
        &v1,
        values([("price", json!({"amount": 90, "currency": "EUR"}))]),
        (&alice, &ka),
        4,
    );
    let got = conflict(
        b.store.commit(CommitBatch::new(vec![stale])).await,
        "change on a stale base",
    )?;
    ensure!(got == (1, 2), "stale base: (expected, found) = {got:?}");

    // A version that skips one.
    let phantom_v3 = v2.next(BTreeMap::new(), None, v2.updated_at);
    let skipping = change(
        &phantom_v3,
        values([("common", json!({"skips": true}))]),
        (&alice, &ka),
        5,
    );
    let got = conflict(
        b.store.commit(CommitBatch::new(vec![skipping])).await,
        "version 4 on stored version 2",
    )?;
    ensure!(
        got == (3, 2),
        "skipping version: (expected, found) = {got:?}"
    );

    // A change to a state that was never created.
    let ghost = state_id("versions-ghost");
    let ghost_v1 = state_of(&create(
        &ghost,
        deal_parties(),
        deal_values(1, 1.0),
        (&alice, &ka),
        6,
    ))?;
    let orphan = change(
        &ghost_v1,
        values([("common", json!({"orphan": true}))]),
        (&alice, &ka),
        6,
    );
    let got = conflict(
        b.store.commit(CommitBatch::new(vec![orphan])).await,
        "change on a missing state",
    )?;
    ensure!(got == (1, 0), "missing state: (expected, found) = {got:?}");
    ensure!(
        b.store.state(&ghost).await?.is_none(),
        "orphan change created a state"
    );

    let now = b.store.state(&id).await?.context("state vanished")?;
    same_state(&now, &v2)?;
    ensure!(
        b.store.last_origin_seq(&alice.node).await? == OriginSeq(3),
        "failed commits moved the origin counter"
    );
    Ok(())
}

/// Several tasks committing changes built on the same base version at the same time: exactly
/// one succeeds per base version, every other gets `Conflict`, and the winner's event and
/// version are stored while no loser leaves a trace.
pub async fn concurrent_commits_on_one_base_have_exactly_one_winner(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    const WRITERS: usize = 6;
    const ROUNDS: u64 = 4;
    let b = f.open().await?;
    if !b.store.capabilities().concurrent_writers {
        crate::not_run(
            "concurrent_commits_on_one_base_have_exactly_one_winner",
            b.store.backend(),
            "store does not declare concurrent_writers",
        );
        return Ok(());
    }
    let (alice, ka) = actor("acme", "alice");
    let id = state_id("race");
    let first = create(&id, deal_parties(), deal_values(100, 1.0), (&alice, &ka), 1);
    commit(&b, vec![first]).await?;
    let writers: Vec<(Actor, ActorKey)> = (0..WRITERS)
        .map(|i| actor(&format!("node{i}"), "writer"))
        .collect();

    for round in 0..ROUNDS {
        let base = b.store.state(&id).await?.context("state vanished")?;
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for (i, (w, k)) in writers.iter().enumerate() {
            let item = change(
                &base,
                values([("common", json!({"writer": i, "round": round}))]),
                (w, k),
                round + 1,
            );
            let store = Arc::clone(&b.store);
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                let event = item.event.id();
                barrier.wait().await;
                (event, store.commit(CommitBatch::new(vec![item])).await)
            }));
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for t in tasks {
            let (event, result) = t.await?;
            match result {
                Ok(receipt) => {
                    ensure!(
                        receipt.committed == vec![event],
                        "winner's receipt: {receipt:?}"
                    );
                    winners.push(event);
                }
                Err(StoreError::Conflict { expected, .. }) => {
                    ensure!(
                        expected == base.version,
                        "loser's conflict names expected {expected}, built on {}",
                        base.version
                    );
                    losers.push(event);
                }
                Err(other) => bail!("round {round}: a writer failed with {other}"),
            }
        }
        ensure!(
            winners.len() == 1 && losers.len() == WRITERS - 1,
            "round {round}: {} winners and {} conflicts among {WRITERS} writers",
            winners.len(),
            losers.len()
        );
        let now = b.store.state(&id).await?.context("state vanished")?;
        ensure!(
            now.version == base.version + 1 && now.last_event == Some(winners[0]),
            "round {round}: stored version {} by {:?} is not the winner's",
            now.version,
            now.last_event
        );
        ensure!(
            b.store.event(&winners[0]).await?.is_some(),
            "winner's event lost"
        );
        for l in &losers {
            ensure!(
                b.store.event(l).await?.is_none(),
                "a losing event was recorded"
            );
        }
    }
    let events = b
        .store
        .events(&EventFilter {
            state_id: Some(id.clone()),
            ..Default::default()
        })
        .await?;
    ensure!(
        events.len() as u64 == ROUNDS + 1,
        "{} events recorded for {} commits",
        events.len(),
        ROUNDS + 1
    );
    for v in 1..=ROUNDS + 1 {
        ensure!(
            b.store.state_at(&id, v).await?.is_some(),
            "version {v} missing from history"
        );
    }
    Ok(())
}

/// Several versions of one state in one batch commit in order; the receipt lists the events
/// in batch order.
pub async fn batch_may_hold_several_versions_of_one_state(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let id = state_id("multi");
    let ([c, x, y], versions) = three_versions(&id)?;
    let order = vec![c.event.id(), x.event.id(), y.event.id()];
    let receipt = commit(&b, vec![c, x, y]).await?;
    ensure!(
        receipt.committed == order && receipt.duplicates.is_empty(),
        "receipt {receipt:?}"
    );
    reads_back(&b, &id, &versions).await
}

/// A create of `id` by alice and two changes on top of it, with the three versions they make.
fn three_versions(id: &StateId) -> anyhow::Result<([CommitItem; 3], [State; 3])> {
    let (alice, ka) = actor("acme", "alice");
    let c = create(id, deal_parties(), deal_values(1, 1.0), (&alice, &ka), 1);
    let v1 = state_of(&c)?;
    let x = change(&v1, values([("common", json!({"n": 2}))]), (&alice, &ka), 2);
    let v2 = state_of(&x)?;
    let y = change(&v2, values([("common", json!({"n": 3}))]), (&alice, &ka), 3);
    let v3 = state_of(&y)?;
    Ok(([c, x, y], [v1, v2, v3]))
}

/// Every one of `versions` reads back exactly with `state_at`, and the last with `state`.
async fn reads_back(b: &Backend, id: &StateId, versions: &[State]) -> anyhow::Result<()> {
    for written in versions {
        let read = b
            .store
            .state_at(id, written.version)
            .await?
            .with_context(|| format!("version {} missing", written.version))?;
        same_state(&read, written)?;
    }
    let last = versions.last().context("no versions")?;
    same_state(&b.store.state(id).await?.context("state missing")?, last)
}

/// A batch prepared ahead ([`sst_core::Store::prepare`]) commits exactly as the batch itself
/// ([`sst_core::Store::commit_prepared`]): a writer may prepare the next batch, built on the
/// versions of one not yet committed, while that one commits. A prepared batch is checked
/// against what is stored when it commits (a stale one is a conflict and stores nothing), and
/// a malformed one is refused with the path `commit` names, before anything is stored.
pub async fn prepared_batch_commits_as_the_batch_itself(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, _) = actor("acme", "alice");
    let nodes = [&alice.node];
    let id = state_id("prepared");
    let ([c, x, y], versions) = three_versions(&id)?;

    let mut forged = c.clone();
    forged.event.signed.event.payload = json!({"sections": {}, "forged": true});
    let before = snapshot(&b, &nodes).await?;
    let refused = match b.store.prepare(CommitBatch::new(vec![forged])) {
        Err(e) => Err(e),
        Ok(prepared) => b.store.commit_prepared(prepared).await,
    };
    let path = invalid_path(
        refused,
        "prepared batch with an event body changed after signing",
    )?;
    ensure!(path == "items[0].event.id", "path was `{path}`");
    ensure!(
        snapshot(&b, &nodes).await? == before,
        "a malformed prepared batch changed the store"
    );

    // Both prepared before either commits; the second builds on the first.
    let first = b
        .store
        .prepare(CommitBatch::new(vec![c.clone(), x.clone()]).validated()?)?;
    let second = b.store.prepare(CommitBatch::new(vec![y.clone()]))?;
    let got = conflict(
        b.store.commit_prepared(second).await,
        "prepared change committed before the batch it builds on",
    )?;
    ensure!(
        got == (2, 0),
        "stale prepared batch: (expected, found) = {got:?}"
    );
    ensure!(
        b.store.state(&id).await?.is_none(),
        "a refused prepared batch stored its state"
    );
    let receipt = b.store.commit_prepared(first).await?;
    ensure!(
        receipt.committed == vec![c.event.id(), x.event.id()] && receipt.duplicates.is_empty(),
        "receipt {receipt:?}"
    );
    let second = b.store.prepare(CommitBatch::new(vec![y.clone()]))?;
    let receipt = b.store.commit_prepared(second).await?;
    ensure!(
        receipt.committed == vec![y.event.id()],
        "receipt {receipt:?}"
    );
    reads_back(&b, &id, &versions).await?;
    // Prepared again after it committed: recorded once, reported as a duplicate.
    let again = b.store.prepare(CommitBatch::new(vec![y.clone()]))?;
    let receipt = b.store.commit_prepared(again).await?;
    ensure!(
        receipt.committed.is_empty() && receipt.duplicates.len() == 1,
        "replayed prepared batch: {receipt:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// idempotence and origin sequences

/// A batch holding an already recorded event skips it (even though its state version is no
/// longer the next one), reports it in `duplicates`, and commits the rest; replaying
/// everything again records nothing twice.
pub async fn replayed_event_is_skipped_and_reported_as_duplicate(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let id = state_id("replay");
    let c1 = create(&id, deal_parties(), deal_values(1, 1.0), (&alice, &ka), 1);
    let v1 = state_of(&c1)?;
    let r = commit(&b, vec![c1.clone()]).await?;
    ensure!(
        r.committed == vec![c1.event.id()] && r.duplicates.is_empty(),
        "first commit: {r:?}"
    );

    let c2 = change(&v1, values([("common", json!({"n": 2}))]), (&alice, &ka), 2);
    let v2 = state_of(&c2)?;
    let r = commit(&b, vec![c1.clone(), c2.clone()]).await?;
    ensure!(
        r.duplicates == vec![c1.event.id()] && r.committed == vec![c2.event.id()],
        "replay + new: {r:?}"
    );

    let rej = rejected(&id, None, (&alice, &ka), 3, RejectReason::StateExists);
    commit(&b, vec![rej.clone()]).await?;
    let r = commit(&b, vec![c1.clone(), c2.clone(), rej.clone()]).await?;
    ensure!(
        r.committed.is_empty()
            && r.duplicates == vec![c1.event.id(), c2.event.id(), rej.event.id()],
        "full replay: {r:?}"
    );

    same_state(&b.store.state(&id).await?.context("state missing")?, &v2)?;
    let all = b.store.events(&EventFilter::default()).await?;
    ensure!(
        ids(&all) == vec![c1.event.id(), c2.event.id(), rej.event.id()],
        "events after replays: {:?}",
        ids(&all)
    );
    ensure!(
        b.store.last_origin_seq(&alice.node).await? == OriginSeq(3),
        "origin counter after replays"
    );
    Ok(())
}

/// A different event under an `(origin_node, origin_seq)` already recorded (or used earlier in
/// the same batch) is a `Conflict`; the same sequence number from another node is fine.
pub async fn reused_origin_seq_is_a_conflict(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let (bob, kb) = actor("bank", "bob");
    let a = state_id("origin-a");
    commit(
        &b,
        vec![create(
            &a,
            deal_parties(),
            deal_values(1, 1.0),
            (&alice, &ka),
            1,
        )],
    )
    .await?;

    let other = state_id("origin-b");
    conflict(
        b.store
            .commit(CommitBatch::new(vec![create(
                &other,
                deal_parties(),
                deal_values(2, 2.0),
                (&alice, &ka),
                1,
            )]))
            .await,
        "acme seq 1 reused",
    )?;
    ensure!(
        b.store.state(&other).await?.is_none(),
        "conflicting create stored a state"
    );

    let x = state_id("origin-x");
    let y = state_id("origin-y");
    conflict(
        b.store
            .commit(CommitBatch::new(vec![
                create(&x, deal_parties(), deal_values(3, 3.0), (&alice, &ka), 2),
                create(&y, deal_parties(), deal_values(4, 4.0), (&alice, &ka), 2),
            ]))
            .await,
        "acme seq 2 used twice in one batch",
    )?;
    ensure!(
        b.store.state(&x).await?.is_none() && b.store.state(&y).await?.is_none(),
        "batch with an in-batch origin collision stored something"
    );

    commit(
        &b,
        vec![create(
            &other,
            deal_parties(),
            deal_values(2, 2.0),
            (&bob, &kb),
            1,
        )],
    )
    .await?;
    ensure!(
        b.store.last_origin_seq(&alice.node).await? == OriginSeq(1)
            && b.store.last_origin_seq(&bob.node).await? == OriginSeq(1),
        "origin counters"
    );
    Ok(())
}

/// `last_origin_seq` is the highest origin sequence recorded for a node (rejected events
/// included, gaps allowed), independently per node, and 0 for a node never seen.
pub async fn last_origin_seq_is_the_highest_recorded_per_node(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let (bob, kb) = actor("bank", "bob");
    ensure!(
        b.store.last_origin_seq(&alice.node).await? == OriginSeq(0),
        "unknown node should be 0"
    );
    let s = state_id("seq");
    let c = create(&s, deal_parties(), deal_values(1, 1.0), (&alice, &ka), 1);
    let v1 = state_of(&c)?;
    commit(&b, vec![c]).await?;
    let c5 = change(&v1, values([("common", json!({"n": 5}))]), (&alice, &ka), 5);
    let v2 = state_of(&c5)?;
    commit(&b, vec![c5]).await?;
    commit(
        &b,
        vec![change(
            &v2,
            values([("common", json!({"n": 3}))]),
            (&alice, &ka),
            3,
        )],
    )
    .await?;
    ensure!(
        b.store.last_origin_seq(&alice.node).await? == OriginSeq(5),
        "highest of 1, 5, 3"
    );
    commit(
        &b,
        vec![rejected(
            &s,
            None,
            (&alice, &ka),
            9,
            RejectReason::UnknownActor {
                actor: alice.id.clone(),
            },
        )],
    )
    .await?;
    commit(
        &b,
        vec![rejected(
            &s,
            None,
            (&bob, &kb),
            2,
            RejectReason::StateExists,
        )],
    )
    .await?;
    let got = (
        b.store.last_origin_seq(&alice.node).await?,
        b.store.last_origin_seq(&bob.node).await?,
        b.store.last_origin_seq(&NodeId::from("nobody")).await?,
    );
    ensure!(
        got == (OriginSeq(9), OriginSeq(2), OriginSeq(0)),
        "origin counters {got:?}"
    );
    Ok(())
}

/// Origin sequence counters, states and events survive dropping and reopening the store.
pub async fn origin_seq_survives_reopen(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    if !b.store.capabilities().durable {
        crate::not_run(
            "origin_seq_survives_reopen",
            b.store.backend(),
            "store is not durable",
        );
        return Ok(());
    }
    let (alice, ka) = actor("acme", "alice");
    let (bob, kb) = actor("bank", "bob");
    let id = state_id("reopen");
    let c = create(&id, deal_parties(), deal_values(1, 1.0), (&alice, &ka), 1);
    let v1 = state_of(&c)?;
    let x = change(&v1, values([("common", json!({"n": 2}))]), (&bob, &kb), 4);
    let v2 = state_of(&x)?;
    commit(&b, vec![c, x]).await?;
    commit(
        &b,
        vec![rejected(
            &id,
            None,
            (&alice, &ka),
            7,
            RejectReason::StateExists,
        )],
    )
    .await?;
    let before = b.store.events(&EventFilter::default()).await?;
    drop(b);

    let again = f.reopen().await?;
    ensure!(
        again.store.last_origin_seq(&alice.node).await? == OriginSeq(7)
            && again.store.last_origin_seq(&bob.node).await? == OriginSeq(4),
        "origin counters lost on reopen"
    );
    same_state(
        &again
            .store
            .state(&id)
            .await?
            .context("state lost on reopen")?,
        &v2,
    )?;
    let after = again.store.events(&EventFilter::default()).await?;
    ensure!(ids(&after) == ids(&before), "events differ after reopen");
    // The reopened store keeps enforcing the counters.
    conflict(
        again
            .store
            .commit(CommitBatch::new(vec![change(
                &v2,
                values([("common", json!({"n": 3}))]),
                (&alice, &ka),
                7,
            )]))
            .await,
        "reused seq after reopen",
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// history and round trips

/// Every committed version stays readable with `state_at`, `state` returns the latest, and
/// versions that were never committed read as nothing.
pub async fn every_version_stays_readable(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let (ines, ki) = actor("insp", "ines");
    let id = state_id("history");
    let c = create(&id, deal_parties(), deal_values(100, 1.0), (&alice, &ka), 1);
    let mut written = vec![state_of(&c)?];
    commit(&b, vec![c]).await?;
    for i in 0..4u64 {
        let prev = written.last().context("no version")?.clone();
        let item = change(
            &prev,
            values([(
                "inspection",
                json!({"radon": 2.5 + i as f64, "visit": i + 2, "inspector": "Inès Ørsted"}),
            )]),
            (&ines, &ki),
            i + 1,
        );
        written.push(state_of(&item)?);
        commit(&b, vec![item]).await?;
    }
    for w in &written {
        let read = b
            .store
            .state_at(&id, w.version)
            .await?
            .with_context(|| format!("version {} not readable", w.version))?;
        same_state(&read, w)?;
    }
    let latest = b.store.state(&id).await?.context("no latest")?;
    same_state(&latest, written.last().context("no version")?)?;
    ensure!(
        b.store.state_at(&id, 0).await?.is_none() && b.store.state_at(&id, 6).await?.is_none(),
        "uncommitted versions are readable"
    );
    ensure!(
        b.store.state_ids().await? == vec![id],
        "state_ids should list the one state"
    );
    Ok(())
}

fn portable_double(f: f64) -> Option<Value> {
    let v = Value::from(serde_json::Number::from_f64(f)?);
    portable::check(&v).ok().map(|()| v)
}

/// Leaves of generated JSON: every scalar shape, edge integers, doubles, unicode strings and
/// empty containers (`long` adds strings of a few thousand characters).
fn json_leaf(long: bool) -> BoxedStrategy<Value> {
    let max = portable::MAX_SAFE_INTEGER as i64;
    let mut arms: Vec<(u32, BoxedStrategy<Value>)> = vec![
        (1, Just(Value::Null).boxed()),
        (1, Just(json!({})).boxed()),
        (1, Just(json!([])).boxed()),
        (1, Just(json!(-0.0)).boxed()),
        (2, any::<bool>().prop_map(Value::Bool).boxed()),
        (2, any::<i32>().prop_map(Value::from).boxed()),
        (2, (-max..=max).prop_map(Value::from).boxed()),
        (2, (max - 64..=max).prop_map(Value::from).boxed()),
        (2, (max - 64..=max).prop_map(|n| Value::from(-n)).boxed()),
        (
            3,
            any::<f64>()
                .prop_filter_map("portable double", portable_double)
                .boxed(),
        ),
        (
            2,
            (-1.0e16..1.0e16f64)
                .prop_filter_map("portable double", portable_double)
                .boxed(),
        ),
        (3, "\\PC{0,24}".prop_map(Value::String).boxed()),
        (
            2,
            "[\\x{01}-\\x{10FFFF}]{0,16}"
                .prop_map(Value::String)
                .boxed(),
        ),
        (
            1,
            "[\"\\\\/\\x{01}-\\x{1f}\\x{7f}\\x{2028}\\x{2029}\\x{FEFF}]{1,8}"
                .prop_map(Value::String)
                .boxed(),
        ),
    ];
    if long {
        arms.push((1, "\\PC{1500,4000}".prop_map(Value::String).boxed()));
    }
    proptest::strategy::Union::new_weighted(arms).boxed()
}

/// Portable object keys: non-empty, no `.`, no leading `$`, no U+0000.
fn json_key() -> BoxedStrategy<String> {
    prop_oneof!["[a-z_][a-z0-9_]{0,8}", "[^.$\\x{0}][^.\\x{0}]{0,10}",].boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    json_leaf(true)
        .prop_recursive(5, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(json_key(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Generates `n` values of `strategy` deterministically (fixed seed), so every backend sees
/// the same inputs and a failure reproduces.
fn generate<T: std::fmt::Debug>(
    strategy: &BoxedStrategy<T>,
    n: usize,
    runner: &mut TestRunner,
) -> anyhow::Result<Vec<T>> {
    (0..n)
        .map(|_| {
            strategy
                .new_tree(runner)
                .map(|t| t.current())
                .map_err(|e| anyhow!("generating a value: {e}"))
        })
        .collect()
}

/// Writes a state with `sections`, then a second version replacing them with `next`, and
/// checks both read back (latest, history, raw column) with identical hashes and root.
async fn round_trip(
    b: &Backend,
    signer: (&Actor, &ActorKey),
    seq: &mut u64,
    sections: BTreeMap<String, Value>,
    next: BTreeMap<String, Value>,
) -> anyhow::Result<()> {
    let id = state_id("roundtrip");
    *seq += 1;
    let c = create(&id, deal_parties(), sections, signer, *seq);
    let v1 = state_of(&c)?;
    commit(b, vec![c]).await?;
    *seq += 1;
    let x = change(&v1, next, signer, *seq);
    let v2 = state_of(&x)?;
    commit(b, vec![x]).await?;
    for w in [&v1, &v2] {
        let read = b
            .store
            .state_at(&id, w.version)
            .await?
            .with_context(|| format!("{id} version {} missing", w.version))?;
        same_state(&read, w)?;
        let raw = b
            .raw
            .raw_data(&id, w.version)
            .await?
            .with_context(|| format!("{id} version {} has no raw data", w.version))?;
        ensure!(
            canonical::to_string(&raw) == canonical::to_string(&w.data()),
            "{id} version {}: the native column does not hold the written JSON",
            w.version
        );
    }
    same_state(&b.store.state(&id).await?.context("latest missing")?, &v2)
}

/// Any portable-JSON state (generated: nested objects and arrays, unicode, long strings,
/// integers near ±2^53, doubles, empty containers, plus a 10 000-element array and a
/// 60-level nesting) is read back with identical section hashes and root.
pub async fn portable_json_round_trips_with_identical_hashes(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    const CASES: usize = 24;
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let (generated, big) = {
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: CASES as u32,
                ..Config::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        let sections = prop::collection::btree_map(json_key(), json_value(), 1..5).boxed();
        let generated = generate(&sections, CASES + 1, &mut runner)?;
        let big = prop::collection::vec(json_leaf(false), 10_000).boxed();
        let big = generate(&big, 1, &mut runner)?;
        (generated, big)
    };
    let mut seq = 0;
    for pair in generated.windows(2) {
        for (n, v) in pair[0].iter().chain(pair[1].iter()) {
            ensure!(
                portable::check(v).is_ok() && !n.is_empty(),
                "generator produced a non-portable value at {n}"
            );
        }
        round_trip(
            &b,
            (&alice, &ka),
            &mut seq,
            pair[0].clone(),
            pair[1].clone(),
        )
        .await?;
    }
    let big = Value::Array(big.into_iter().flatten().collect());
    ensure!(big.as_array().map(Vec::len) == Some(10_000), "10k array");
    let mut deep = json!("bottom");
    for i in 0..60 {
        deep = if i % 2 == 0 {
            json!([deep])
        } else {
            json!({ "level": deep })
        };
    }
    round_trip(
        &b,
        (&alice, &ka),
        &mut seq,
        values([("big", big), ("deep", deep)]),
        values([("big", json!([])), ("extra", json!({}))]),
    )
    .await
}

/// A state of more than 5 MB (canonical JSON) is stored and read back with identical hashes
/// and root, and a small change on top of it stores a second version.
pub async fn five_megabyte_state_round_trips(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let line = "Grüße from the inspection log — radon 3.7 Bq/m³, ok ✓. ".repeat(16);
    let rows: Vec<Value> = (0..5 * 1024)
        .map(|i| json!({"i": i, "text": line, "ratio": i as f64 / 7.0}))
        .collect();
    let blob = Value::Array(rows);
    let size = canonical::encoded_len(&blob);
    ensure!(size > 5 * 1024 * 1024, "blob is only {size} bytes");
    let mut seq = 0;
    round_trip(
        &b,
        (&alice, &ka),
        &mut seq,
        values([("blob", blob), ("common", json!({"rooms": 4}))]),
        values([("common", json!({"rooms": 5}))]),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// events

/// Rejected intents are recorded and read back like applied ones, with their machine-readable
/// reason, and change no state.
pub async fn rejected_events_are_recorded_with_their_reason(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let (bob, kb) = actor("bank", "bob");
    let id = state_id("rejected");
    let c = create(&id, deal_parties(), deal_values(1, 1.0), (&alice, &ka), 1);
    let v1 = state_of(&c)?;
    commit(&b, vec![c]).await?;
    let base = Some(sst_core::Base {
        version: v1.version,
        root: v1.root,
    });
    let reasons = vec![
        RejectReason::StaleBase {
            expected_version: 1,
            found_version: 2,
        },
        RejectReason::Forbidden {
            section: "price".into(),
        },
        RejectReason::RevokedActor {
            actor: bob.id.clone(),
        },
        RejectReason::UnknownContract {
            contract: ContractRef::new("nope", 9),
        },
        RejectReason::ContractRejected {
            message: "price must be positive — «négatif»".into(),
        },
        RejectReason::InvalidPayload {
            path: "$.payload[\"a.b\"]".into(),
            reason: "dot_in_key".into(),
        },
        RejectReason::BadSignature {
            detail: "not strict".into(),
        },
    ];
    let items: Vec<CommitItem> = reasons
        .iter()
        .enumerate()
        .map(|(i, r)| rejected(&id, base, (&bob, &kb), i as u64 + 1, r.clone()))
        .collect();
    let expected: Vec<String> = items
        .iter()
        .map(|i| canon(&i.event))
        .collect::<anyhow::Result<_>>()?;
    let wanted_ids: Vec<EventId> = items.iter().map(|i| i.event.id()).collect();
    commit(&b, items[..3].to_vec()).await?;
    commit(&b, items[3..].to_vec()).await?;

    let got = b
        .store
        .events(&EventFilter {
            state_id: Some(id.clone()),
            outcome: Some(OutcomeKind::Rejected),
            ..Default::default()
        })
        .await?;
    ensure!(ids(&got) == wanted_ids, "rejected events: {:?}", ids(&got));
    for (rec, want) in got.iter().zip(&expected) {
        ensure!(
            &canon(rec)? == want,
            "rejected event {} read back differently",
            rec.id()
        );
    }
    for (id_, reason) in wanted_ids.iter().zip(&reasons) {
        let rec = b
            .store
            .event(id_)
            .await?
            .with_context(|| format!("event {id_} missing"))?;
        match &rec.outcome {
            sst_core::Outcome::Rejected { reason: r } => ensure!(
                r == reason && r.code() == reason.code(),
                "reason {r:?} instead of {reason:?}"
            ),
            other => bail!("event {id_} came back as {other:?}"),
        }
    }
    same_state(&b.store.state(&id).await?.context("state missing")?, &v1)
}

/// Events are returned in recording order and can be filtered by state, actor, origin node,
/// origin sequence, outcome and kind, with a limit, in any combination.
pub async fn events_are_queryable_by_state_actor_origin_and_outcome(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let (bob, kb) = actor("bank", "bob");
    let s1 = state_id("query-1");
    let s2 = state_id("query-2");
    let e1 = create(&s1, deal_parties(), deal_values(1, 1.0), (&alice, &ka), 1);
    let e2 = create(&s2, deal_parties(), deal_values(2, 2.0), (&bob, &kb), 1);
    let e3 = change(
        &state_of(&e1)?,
        values([("common", json!({"n": 3}))]),
        (&bob, &kb),
        2,
    );
    let e4 = rejected(
        &s2,
        None,
        (&alice, &ka),
        2,
        RejectReason::Forbidden {
            section: "price".into(),
        },
    );
    let e5 = change(
        &state_of(&e2)?,
        values([("common", json!({"n": 5}))]),
        (&bob, &kb),
        3,
    );
    let e6 = deploy(&state_id("query-deploy"), (&alice, &ka), 3);
    let all = [&e1, &e2, &e3, &e4, &e5, &e6];
    let id = |i: usize| all[i - 1].event.id();
    commit(&b, vec![e1.clone(), e2.clone()]).await?;
    commit(&b, vec![e3.clone()]).await?;
    commit(&b, vec![e4.clone(), e5.clone(), e6.clone()]).await?;

    let q = |filter: EventFilter, want: Vec<usize>, what: &'static str| {
        let store = Arc::clone(&b.store);
        let want: Vec<EventId> = want.into_iter().map(id).collect();
        async move {
            let got = ids(&store.events(&filter).await?);
            ensure!(got == want, "{what}: got {got:?}, want {want:?}");
            anyhow::Ok(())
        }
    };
    q(EventFilter::default(), vec![1, 2, 3, 4, 5, 6], "all").await?;
    q(
        EventFilter {
            state_id: Some(s1.clone()),
            ..Default::default()
        },
        vec![1, 3],
        "by state",
    )
    .await?;
    q(
        EventFilter {
            actor: Some(bob.id.clone()),
            ..Default::default()
        },
        vec![2, 3, 5],
        "by actor",
    )
    .await?;
    q(
        EventFilter {
            origin_node: Some(alice.node.clone()),
            ..Default::default()
        },
        vec![1, 4, 6],
        "by origin node",
    )
    .await?;
    q(
        EventFilter {
            origin_node: Some(alice.node.clone()),
            after_origin_seq: Some(OriginSeq(1)),
            ..Default::default()
        },
        vec![4, 6],
        "by origin node after seq 1",
    )
    .await?;
    q(
        EventFilter {
            outcome: Some(OutcomeKind::Rejected),
            ..Default::default()
        },
        vec![4],
        "rejected",
    )
    .await?;
    q(
        EventFilter {
            outcome: Some(OutcomeKind::Applied),
            state_id: Some(s2.clone()),
            ..Default::default()
        },
        vec![2, 5],
        "applied on state 2",
    )
    .await?;
    q(
        EventFilter {
            kind: Some(EventKind::Create),
            ..Default::default()
        },
        vec![1, 2],
        "creates",
    )
    .await?;
    q(
        EventFilter {
            kind: Some(EventKind::DeployContract),
            ..Default::default()
        },
        vec![6],
        "deployments",
    )
    .await?;
    q(
        EventFilter {
            limit: Some(2),
            ..Default::default()
        },
        vec![1, 2],
        "limit 2",
    )
    .await?;
    q(
        EventFilter {
            actor: Some(bob.id.clone()),
            limit: Some(2),
            ..Default::default()
        },
        vec![2, 3],
        "by actor, limit 2",
    )
    .await?;
    q(
        EventFilter {
            state_id: Some(state_id("nothing")),
            ..Default::default()
        },
        vec![],
        "unknown state",
    )
    .await?;

    let stored = b.store.events(&EventFilter::default()).await?;
    for (rec, item) in stored.iter().zip(all) {
        ensure!(
            canon(rec)? == canon(&item.event)?,
            "event {} read back differently",
            rec.id()
        );
        let one = b
            .store
            .event(&rec.id())
            .await?
            .context("event by id missing")?;
        ensure!(canon(&one)? == canon(rec)?, "event by id differs");
    }
    Ok(())
}

/// An applied event that targets no state (a contract deployment, outcome version 0) is
/// recorded without creating a state version.
pub async fn non_state_events_are_applied_without_a_state(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let label = state_id("deploy");
    let d = deploy(&label, (&alice, &ka), 1);
    let r = commit(&b, vec![d.clone()]).await?;
    ensure!(r.committed == vec![d.event.id()], "receipt {r:?}");
    ensure!(
        b.store.state_ids().await?.is_empty() && b.store.state(&label).await?.is_none(),
        "a deployment created a state"
    );
    let rec = b
        .store
        .event(&d.event.id())
        .await?
        .context("deployment event missing")?;
    ensure!(
        canon(&rec)? == canon(&d.event)?,
        "deployment read back differently"
    );
    ensure!(
        b.store.last_origin_seq(&alice.node).await? == OriginSeq(1),
        "deployment did not count as origin seq 1"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// redaction and the native column

/// Redacted sections are stored without plaintext and without salt: the native data column
/// has no trace of their values, the seals column only their hash; the read-back state still
/// verifies with the same root.
pub async fn redacted_sections_store_no_plaintext_or_salt(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (bob, kb) = actor("bank", "bob");
    let id = state_id("redacted");
    let secret = "price-secret-7319";
    let vals = values([
        ("common", json!({"address": "1 Quai"})),
        ("price", json!({"amount": 987_654, "note": secret})),
        ("inspection", json!({"radon": 2.0})),
    ]);
    let full = create(&id, deal_parties(), vals.clone(), (&bob, &kb), 1);
    let full_state = state_of(&full)?;
    let price_salt = full_state
        .sections
        .get("price")
        .and_then(|s| s.disclosure.as_ref())
        .map(|d| serde_json::to_value(d.salt))
        .context("price has no salt")??
        .as_str()
        .context("salt does not serialise as a string")?
        .to_owned();
    // The same event as a node that may not read `price` holds it.
    let mut item = full.clone();
    item.event.disclosures.remove("price");
    item.state = Some(std::sync::Arc::new(full_state.redact(|n| n != "price")));
    let redacted = state_of(&item)?;
    commit(&b, vec![item]).await?;

    let data = b.raw.raw_data(&id, 1).await?.context("no raw data")?;
    let data_text = data.to_string();
    ensure!(
        data.get("price").is_none() && !data_text.contains(secret) && !data_text.contains("987654"),
        "plaintext of a redacted section is stored: {data_text}"
    );
    let seals = b.raw.raw_seals(&id, 1).await?.context("no raw seals")?;
    let seals_text = seals.to_string();
    ensure!(
        !seals_text.contains(&price_salt) && !data_text.contains(&price_salt),
        "the salt of a redacted section is stored"
    );
    let price_seal = seals.get("price").context("no seal for price")?;
    ensure!(
        price_seal.get("salt").is_none_or(Value::is_null),
        "redacted seal carries a salt: {price_seal}"
    );
    ensure!(
        price_seal.get("hash").and_then(Value::as_str)
            == Some(full_state.sections["price"].hash.to_string().as_str()),
        "redacted seal lost its hash"
    );
    let read = b.store.state(&id).await?.context("state missing")?;
    same_state(&read, &redacted)?;
    ensure!(
        read.sections
            .get("price")
            .is_some_and(|s| s.disclosure.is_none())
            && read.root == full_state.root,
        "redacted section came back with plaintext, or the root changed"
    );
    let rec = b
        .store
        .event(&full.event.id())
        .await?
        .context("event missing")?;
    ensure!(
        !rec.disclosures.contains_key("price") && !canon(&rec)?.contains(secret),
        "the event holds the redacted plaintext"
    );

    // A redacted create built with the fixture helper behaves the same.
    let id2 = state_id("redacted-2");
    let item = create_redacted(&id2, deal_parties(), vals, (&bob, &kb), 2, &["common"]);
    commit(&b, vec![item]).await?;
    let data = b.raw.raw_data(&id2, 1).await?.context("no raw data")?;
    ensure!(
        data.as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            == Some(vec!["common".to_owned()]),
        "data column of a state readable only in `common`: {data}"
    );
    Ok(())
}

/// The native data column holds exactly `{section: value}` of the disclosed sections of each
/// version, in the history and for the latest version.
pub async fn data_column_holds_exactly_the_disclosed_sections(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let id = state_id("datacol");
    let c = create(&id, deal_parties(), deal_values(10, 3.5), (&alice, &ka), 1);
    let v1 = state_of(&c)?;
    let x = change(
        &v1,
        values([("inspection", json!({"radon": 4.75, "passed": false}))]),
        (&alice, &ka),
        2,
    );
    let v2 = state_of(&x)?;
    commit(&b, vec![c, x]).await?;
    for w in [&v1, &v2] {
        let raw = b
            .raw
            .raw_data(&id, w.version)
            .await?
            .with_context(|| format!("version {} has no data", w.version))?;
        ensure!(
            canonical::to_string(&raw) == canonical::to_string(&w.data()),
            "version {}: data column {raw} differs from the disclosed sections",
            w.version
        );
        let seals = b
            .raw
            .raw_seals(&id, w.version)
            .await?
            .with_context(|| format!("version {} has no seals", w.version))?;
        ensure!(
            canon(&seals)? == canon(&w.seals())?,
            "version {}: seals column differs",
            w.version
        );
    }
    ensure!(
        b.raw.raw_data(&id, 3).await?.is_none(),
        "raw data for a version never written"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tamper detection

/// Builds two states (one with three versions), checks the store verifies clean, lets
/// `tamper` change the raw rows of the first one behind the store's back, and checks that
/// `verify_store` reports exactly that state and `versions`, and nothing about the other.
async fn tamper_case<Fut>(
    f: &impl BackendFactory,
    versions: &[u64],
    tamper: impl FnOnce(Backend, StateId) -> Fut,
) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let (ines, ki) = actor("insp", "ines");
    register(&b, &[&alice, &ines]).await?;
    let id = state_id("tamper");
    let other = state_id("tamper-other");
    let c = create(
        &id,
        deal_parties(),
        deal_values(250_000, 3.2),
        (&alice, &ka),
        1,
    );
    let v1 = state_of(&c)?;
    let x = change(
        &v1,
        values([(
            "inspection",
            json!({"radon": 4.6, "inspector": "Inès Ørsted", "passed": false}),
        )]),
        (&ines, &ki),
        1,
    );
    let v2 = state_of(&x)?;
    let y = change(
        &v2,
        values([
            (
                "inspection",
                json!({"radon": 3.9, "inspector": "Inès Ørsted", "passed": true}),
            ),
            (
                "common",
                json!({"address": "12 Rue des Lilas, Lyon", "rooms": 5, "tags": ["flat"]}),
            ),
        ]),
        (&ines, &ki),
        2,
    );
    let o = create(
        &other,
        deal_parties(),
        deal_values(1, 1.0),
        (&alice, &ka),
        2,
    );
    commit(&b, vec![c, x, y, o]).await?;

    let clean = verify_store(b.store.as_ref(), &mut |_, _| {}).await?;
    ensure!(
        clean.is_clean() && clean.states == 2 && clean.versions == 4 && clean.events == 4,
        "store does not verify before tampering: {clean:?}"
    );

    tamper(b.clone(), id.clone()).await?;

    let report: VerifyReport = verify_store(b.store.as_ref(), &mut |_, _| {}).await?;
    ensure!(!report.is_clean(), "tampering went unnoticed");
    let mut seen = BTreeSet::new();
    for finding in &report.findings {
        ensure!(
            finding.state_id == id,
            "finding about the wrong state: {finding:?}"
        );
        let v = finding
            .version
            .with_context(|| format!("finding without a version: {finding:?}"))?;
        seen.insert(v);
    }
    let want: BTreeSet<u64> = versions.iter().copied().collect();
    ensure!(
        seen == want,
        "findings name versions {seen:?}, tampered {want:?}: {:?}",
        report.findings
    );
    Ok(())
}

/// A change made only to the current-state row (the table users query), with the history
/// left intact, is reported with that state and its latest version.
pub async fn tampered_current_row_only_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    let probe = f.open().await?;
    if !probe.raw.has_current_state_table() {
        crate::not_run(
            "tampered_current_row_only_is_reported",
            probe.store.backend(),
            "store keeps no separate current-state row",
        );
        return Ok(());
    }
    drop(probe);
    tamper_case(f, &[3], |b, id| async move {
        let mut data = b
            .raw
            .raw_data(&id, 3)
            .await?
            .context("no raw data for version 3")?;
        field(&mut data, "inspection")?.insert("passed".into(), json!(false));
        b.raw.set_current_data_only(&id, data).await?;
        let history = b
            .raw
            .raw_data(&id, 3)
            .await?
            .context("history row vanished")?;
        ensure!(
            history.pointer("/inspection/passed") == Some(&json!(true)),
            "set_current_data_only changed the history row too"
        );
        Ok(())
    })
    .await
}

/// Changes `section` of `version`'s raw data with `edit` and writes it back.
async fn edit_raw(
    b: &Backend,
    id: &StateId,
    version: u64,
    edit: impl FnOnce(&mut Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut data = b
        .raw
        .raw_data(id, version)
        .await?
        .with_context(|| format!("no raw data for version {version}"))?;
    let before = data.clone();
    edit(&mut data)?;
    ensure!(data != before, "the edit changed nothing");
    b.raw.set_raw_data(id, version, data.clone()).await?;
    let after = b.raw.raw_data(id, version).await?.context("row vanished")?;
    ensure!(
        canonical::to_string(&after) == canonical::to_string(&data),
        "raw write did not take effect"
    );
    Ok(())
}

fn field<'a>(
    data: &'a mut Value,
    section: &str,
) -> anyhow::Result<&'a mut serde_json::Map<String, Value>> {
    data.get_mut(section)
        .and_then(Value::as_object_mut)
        .with_context(|| format!("section `{section}` is not an object"))
}

/// A number changed directly in the native column (inspection.radon of a middle version) is
/// reported by `verify_store` with that state and version.
pub async fn tampered_number_is_reported_with_state_and_version(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    tamper_case(f, &[2], |b, id| async move {
        edit_raw(&b, &id, 2, |d| {
            field(d, "inspection")?.insert("radon".into(), json!(3.1));
            Ok(())
        })
        .await
    })
    .await
}

/// A string changed directly in the native column of the latest version is reported with
/// that state and version.
pub async fn tampered_string_is_reported_with_state_and_version(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    tamper_case(f, &[3], |b, id| async move {
        edit_raw(&b, &id, 3, |d| {
            field(d, "common")?.insert("address".into(), json!("13 Rue des Lilas, Lyon"));
            Ok(())
        })
        .await
    })
    .await
}

/// A key added inside a section in the native column is reported with that state and version
/// (the section version is held by version 1 only).
pub async fn added_key_is_reported_with_state_and_version(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    tamper_case(f, &[1], |b, id| async move {
        edit_raw(&b, &id, 1, |d| {
            field(d, "inspection")?.insert("retested".into(), json!(true));
            Ok(())
        })
        .await
    })
    .await
}

/// A section version that several versions hold (`price`, unchanged since the create) is
/// stored once: an edit of it behind SST's back is reported in every version holding it.
pub async fn edited_shared_section_version_is_reported_in_every_version_holding_it(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    tamper_case(f, &[1, 2, 3], |b, id| async move {
        edit_raw(&b, &id, 1, |d| {
            field(d, "price")?.insert("discount".into(), json!(5000));
            Ok(())
        })
        .await?;
        for v in [2, 3] {
            let data = b.raw.raw_data(&id, v).await?.context("version vanished")?;
            ensure!(
                data.pointer("/price/discount") == Some(&json!(5000)),
                "version {v} does not read the edited section version it holds: {data}"
            );
        }
        Ok(())
    })
    .await
}

/// A state changed a section or two at a time, with a section added along the way, reads
/// back exactly at every version (`state_at`, the history view, `state`), and verifies clean:
/// storing only changed section versions loses nothing a full copy per version kept.
pub async fn unchanged_sections_are_stored_once_and_every_version_reads_back(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    register(&b, &[&alice]).await?;
    let id = state_id("sections");
    let c = create(&id, deal_parties(), deal_values(100, 1.5), (&alice, &ka), 1);
    let mut versions = vec![state_of(&c)?];
    let mut items = vec![c];
    let edits = vec![
        values([("price", json!({"amount": 101, "agreed": false}))]),
        values([("annex", json!({"pages": [1, 2, 3], "title": "Plans"}))]),
        values([
            ("price", json!({"amount": 102, "agreed": true})),
            ("annex", json!({"pages": [], "title": "Plans, v2"})),
        ]),
        values([(
            "inspection",
            json!({"radon": 0.5, "passed": true, "notes": null}),
        )]),
    ];
    for (n, edit) in edits.into_iter().enumerate() {
        let prev = versions.last().context("no version")?;
        let x = change(prev, edit, (&alice, &ka), n as u64 + 2);
        versions.push(state_of(&x)?);
        items.push(x);
    }
    // The first two in one batch, the rest one per batch: both paths of the plan.
    let rest = items.split_off(2);
    commit(&b, items).await?;
    for item in rest {
        commit(&b, vec![item]).await?;
    }
    for want in &versions {
        let v = want.version;
        let read = b
            .store
            .state_at(&id, v)
            .await?
            .with_context(|| format!("version {v} missing"))?;
        same_state(&read, want)?;
        let raw = b
            .raw
            .raw_data(&id, v)
            .await?
            .with_context(|| format!("version {v} missing from the history view"))?;
        ensure!(
            canonical::to_string(&raw) == canonical::to_string(&want.data()),
            "version {v}: the history view shows {raw}, not the version's data"
        );
    }
    let latest = versions.last().context("no version")?;
    same_state(&b.store.state(&id).await?.context("state missing")?, latest)?;
    let report = verify_store(b.store.as_ref(), &mut |_, _| {}).await?;
    ensure!(
        report.is_clean() && report.versions == versions.len(),
        "store does not verify clean: {report:?}"
    );
    Ok(())
}

/// An applied event's row names the section versions it disclosed (`{salt, hash}`, the key of
/// the section row) instead of carrying their values a second time, and reads back with the
/// values exactly (`event`, `events`). A row of the older inline form reads back the same and
/// verifies; a row naming a section version that is not stored is an integrity error on that
/// event, and `verify` reports it with the event's id.
pub async fn event_rows_name_the_section_versions_they_disclose(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    const CASE: &str = "event_rows_name_the_section_versions_they_disclose";
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    register(&b, &[&alice]).await?;
    let id = state_id("disclosed");
    let c = create(
        &id,
        deal_parties(),
        deal_values(250_000, 3.2),
        (&alice, &ka),
        1,
    );
    let v1 = state_of(&c)?;
    let x = change(
        &v1,
        values([("inspection", json!({"radon": 4.6, "passed": false}))]),
        (&alice, &ka),
        2,
    );
    let v2 = state_of(&x)?;
    commit(&b, vec![c.clone(), x.clone()]).await?;

    let column_of = |event: EventId| {
        let raw = b.raw.clone();
        async move {
            raw.raw_event_column(&event, crate::EventColumn::Disclosures)
                .await
        }
    };
    if column_of(c.event.id()).await?.is_none() {
        crate::not_run(
            CASE,
            b.store.backend(),
            "store keeps no event rows of its own",
        );
        return Ok(());
    }
    for (item, state) in [(&c, &v1), (&x, &v2)] {
        let event = item.event.id();
        ensure!(
            !item.event.disclosures.is_empty(),
            "fixture event {event} discloses nothing"
        );
        let column = column_of(event)
            .await?
            .with_context(|| format!("event {event} has no row"))?;
        let entries = column
            .as_object()
            .with_context(|| format!("event {event}: disclosures column is {column}"))?;
        ensure!(
            entries.keys().eq(item.event.disclosures.keys()),
            "event {event}: the column names {:?}, the event disclosed {:?}",
            entries.keys().collect::<Vec<_>>(),
            item.event.disclosures.keys().collect::<Vec<_>>()
        );
        for (name, entry) in entries {
            ensure!(
                entry.get("value").is_none(),
                "event {event}: section {name} is stored a second time in the event row: {entry}"
            );
            ensure!(
                entry.get("hash") == Some(&json!(state.sections[name].hash.to_string())),
                "event {event}: section {name} names {entry}, not version {} of the state",
                state.sections[name].hash
            );
        }
        let read = b
            .store
            .event(&event)
            .await?
            .with_context(|| format!("event {event} missing"))?;
        ensure!(
            canon(&read.disclosures)? == canon(&item.event.disclosures)?,
            "event {event} reads back other disclosures"
        );
    }
    let listed = b
        .store
        .events(&EventFilter {
            state_id: Some(id.clone()),
            ..Default::default()
        })
        .await?;
    let written: Vec<&EventRecord> = vec![&c.event, &x.event];
    ensure!(
        canon(&listed)? == canon(&written)?,
        "events() reads back other records"
    );

    // A row written before event rows named section versions: values inline.
    let x_id = x.event.id();
    let inline = serde_json::to_value(&x.event.disclosures)?;
    let named = column_of(x_id).await?.context("event row vanished")?;
    let set = |value: Value| crate::Mutation::SetEventColumn {
        event: x_id,
        column: crate::EventColumn::Disclosures,
        value,
    };
    ensure!(b.raw.mutate(&set(inline)).await?, "event row not found");
    let read = b.store.event(&x_id).await?.context("event missing")?;
    ensure!(
        canon(&read.disclosures)? == canon(&x.event.disclosures)?,
        "an inline disclosures column reads back otherwise"
    );
    let report = verify_store(b.store.as_ref(), &mut |_, _| {}).await?;
    ensure!(
        report.is_clean(),
        "inline disclosures do not verify: {report:?}"
    );

    // A reference to a section version nobody stored.
    let mut dangling = named;
    dangling["inspection"]["hash"] = json!(v2.sections["price"].hash.to_string());
    ensure!(b.raw.mutate(&set(dangling)).await?, "event row not found");
    match b.store.event(&x_id).await {
        Err(StoreError::Integrity { what, source }) => ensure!(
            what.contains(&x_id.to_string()) && source.to_string().contains("inspection"),
            "the error names neither the event nor the section: {what}: {source}"
        ),
        other => bail!("a dangling section version reads as {other:?}"),
    }
    let report = verify_store(b.store.as_ref(), &mut |_, _| {}).await?;
    ensure!(
        report
            .findings
            .iter()
            .any(|f| f.event.as_deref() == Some(x_id.to_string().as_str())),
        "verify does not report the event naming a missing section version: {report:?}"
    );
    Ok(())
}

/// State tables of the first layout (every history row carrying its whole data document)
/// are upgraded in place by `migrate`: every version, the current rows and redacted sections
/// read back exactly, the store verifies clean, a second `migrate` changes nothing, and the
/// next change commits on top.
pub async fn first_layout_is_upgraded_in_place_without_losing_a_version(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let (bob, kb) = actor("bank", "bob");
    register(&b, &[&alice, &bob]).await?;
    let id = state_id("upgrade");
    let c = create(&id, deal_parties(), deal_values(7, 2.5), (&alice, &ka), 1);
    let v1 = state_of(&c)?;
    let x = change(
        &v1,
        values([("price", json!({"amount": 8, "agreed": true}))]),
        (&alice, &ka),
        2,
    );
    let v2 = state_of(&x)?;
    let y = change(
        &v2,
        values([("inspection", json!({"radon": 4.2, "passed": false}))]),
        (&alice, &ka),
        3,
    );
    let v3 = state_of(&y)?;
    let other = state_id("upgrade-redacted");
    let r = create_redacted(
        &other,
        deal_parties(),
        deal_values(9, 1.0),
        (&bob, &kb),
        1,
        &["common"],
    );
    let r1 = state_of(&r)?;
    commit(&b, vec![c, x, y, r]).await?;

    if !b.raw.downgrade_to_first_layout().await? {
        crate::not_run(
            "first_layout_is_upgraded_in_place_without_losing_a_version",
            b.store.backend(),
            "store has no table layout",
        );
        return Ok(());
    }
    let before = b.raw.raw_data(&id, 2).await;
    b.store.migrate().await?;
    let again = f.reopen().await?;
    again.store.migrate().await?;
    for s in [&b, &again] {
        for want in [&v1, &v2, &v3] {
            let read = s
                .store
                .state_at(&id, want.version)
                .await?
                .with_context(|| format!("version {} lost in the upgrade", want.version))?;
            same_state(&read, want)?;
        }
        same_state(&s.store.state(&id).await?.context("state lost")?, &v3)?;
        same_state(
            &s.store
                .state(&other)
                .await?
                .context("redacted state lost")?,
            &r1,
        )?;
    }
    if let Ok(Some(raw)) = before {
        ensure!(
            canonical::to_string(&raw) == canonical::to_string(&v2.data()),
            "the first layout's history did not hold version 2 as committed"
        );
    }
    for want in [&v1, &v2, &v3] {
        let raw = again
            .raw
            .raw_data(&id, want.version)
            .await?
            .context("history view lacks an upgraded version")?;
        ensure!(
            canonical::to_string(&raw) == canonical::to_string(&want.data()),
            "upgraded version {} shows {raw}",
            want.version
        );
    }
    let report = verify_store(again.store.as_ref(), &mut |_, _| {}).await?;
    ensure!(
        report.is_clean() && report.versions == 4 && report.events == 4,
        "upgraded store does not verify clean: {report:?}"
    );
    let z = change(
        &v3,
        values([("price", json!({"amount": 9, "agreed": true}))]),
        (&alice, &ka),
        4,
    );
    let v4 = state_of(&z)?;
    commit(&again, vec![z]).await?;
    same_state(&again.store.state(&id).await?.context("state lost")?, &v4)?;
    same_state(
        &again.store.state_at(&id, 3).await?.context("v3 lost")?,
        &v3,
    )?;
    Ok(())
}

/// A key removed from a section in the native column is reported with that state and version.
pub async fn removed_key_is_reported_with_state_and_version(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    tamper_case(f, &[2], |b, id| async move {
        edit_raw(&b, &id, 2, |d| {
            field(d, "inspection")?
                .remove("passed")
                .context("no `passed` key")?;
            Ok(())
        })
        .await
    })
    .await
}

/// Two history rows whose data documents are swapped are both reported, each with its version.
pub async fn swapped_history_rows_are_reported_with_state_and_versions(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    tamper_case(f, &[1, 2], |b, id| async move {
        let before = b.raw.raw_data(&id, 1).await?.context("no version 1")?;
        b.raw.swap_history_data(&id, 1, 2).await?;
        let after = b.raw.raw_data(&id, 2).await?.context("no version 2")?;
        ensure!(
            canonical::to_string(&before) == canonical::to_string(&after),
            "swap did not take effect"
        );
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// actors, contracts, lookups

/// `put_actor` inserts or replaces (status change, key rotation); `actor` reads one;
/// `actors` lists all sorted by id.
pub async fn actors_are_upserted_and_listed_sorted(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (zed, _) = actor("zulu", "zed");
    let (alice, _) = actor("acme", "alice");
    let (bob, _) = actor("bank", "bob");
    for a in [&zed, &alice, &bob] {
        b.store.put_actor(a).await?;
    }
    let (_, rotated_key) = actor("acme", "alice-rotated");
    let mut alice2 = alice.clone();
    alice2.status = ActorStatus::Revoked;
    alice2.public_key = rotated_key.public_key();
    b.store.put_actor(&alice2).await?;
    let all = b.store.actors().await?;
    ensure!(
        all == vec![alice2.clone(), bob.clone(), zed.clone()],
        "actors: {all:?}"
    );
    ensure!(
        b.store.actor(&alice.id).await? == Some(alice2),
        "actor was not replaced"
    );
    ensure!(
        b.store.actor(&"nobody/none".into()).await?.is_none(),
        "unknown actor found"
    );
    Ok(())
}

/// Re-putting a contract with the same identity is a no-op, a different identity under the
/// same name and version is a `Conflict`, and contracts list sorted by name and version.
pub async fn contracts_are_recorded_once_per_identity(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let deal2 = contract_record("deal", 2, "code v2", (&alice, &ka));
    let deal1 = contract_record("deal", 1, "code v1", (&alice, &ka));
    let lease = contract_record("lease", 1, "lease code", (&alice, &ka));
    let deal10 = contract_record("deal", 10, "code v10", (&alice, &ka));
    for c in [&deal2, &lease, &deal1, &deal10] {
        b.store.put_contract(c).await?;
    }
    b.store.put_contract(&deal1).await?;
    let evil = contract_record("deal", 1, "other code", (&alice, &ka));
    match b.store.put_contract(&evil).await {
        Err(StoreError::Conflict { .. }) => {}
        Err(e) => bail!("different identity: expected Conflict, got {e}"),
        Ok(()) => bail!("different identity under deal@1 was accepted"),
    }
    let all = b.store.contracts().await?;
    let want = [&deal1, &deal2, &deal10, &lease];
    ensure!(
        all.len() == want.len()
            && all
                .iter()
                .zip(want)
                .all(|(got, w)| got.identity == w.identity),
        "contracts: {:?}",
        all.iter()
            .map(|c| c.contract().to_string())
            .collect::<Vec<_>>()
    );
    let one = b
        .store
        .contract(&ContractRef::new("deal", 1))
        .await?
        .context("deal@1 missing")?;
    ensure!(
        canon(&one)? == canon(&deal1)?,
        "deal@1 read back differently (or was replaced)"
    );
    one.verify(&alice.public_key)
        .map_err(|e| anyhow!("stored contract does not verify: {e}"))?;
    ensure!(
        b.store
            .contract(&ContractRef::new("deal", 3))
            .await?
            .is_none(),
        "unknown contract found"
    );
    Ok(())
}

/// Ids, versions and events that were never written read as nothing (not as errors), and
/// `state_ids` lists states sorted.
pub async fn unknown_things_read_as_nothing_and_ids_are_sorted(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    let ghost = state_id("ghost");
    ensure!(b.store.state(&ghost).await?.is_none(), "ghost state");
    ensure!(
        b.store.state_at(&ghost, 1).await?.is_none(),
        "ghost version"
    );
    let unknown_event = EventId(crate::fixtures::foreign_digest(7));
    ensure!(
        b.store.event(&unknown_event).await?.is_none(),
        "ghost event"
    );
    let mut made = Vec::new();
    for (i, p) in ["m", "b", "z", "a"].iter().enumerate() {
        let id = StateId(format!("{p}-{}", uuid::Uuid::new_v4()));
        commit(
            &b,
            vec![create(
                &id,
                deal_parties(),
                deal_values(1, 1.0),
                (&alice, &ka),
                i as u64 + 1,
            )],
        )
        .await?;
        made.push(id);
    }
    made.sort();
    ensure!(
        b.store.state_ids().await? == made,
        "state_ids are not the sorted ids"
    );
    Ok(())
}

/// A refusal is recorded once per event (a second put replaces it), listed sorted by state,
/// version and event id (all of them, or one state's), survives reopening, is gone after
/// `clear_refusal` (clearing twice is fine), and a refusal whose text is not portable JSON is
/// refused with its path.
pub async fn refusals_are_recorded_listed_and_cleared(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let s1 = state_id("refused-a");
    let s2 = state_id("refused-b");
    let refusal = |state: &StateId, version: u64, byte: u8, reason: RejectReason| Refusal {
        event: EventId(crate::fixtures::foreign_digest(byte)),
        state_id: state.clone(),
        version,
        from_node: NodeId::from("home"),
        reason,
        at: Timestamp(1_700_000_000_000 + i64::from(byte)),
    };
    let missing = RejectReason::UnknownContract {
        contract: ContractRef::new("deal", 2),
    };
    let r1 = refusal(&s1, 3, 11, missing.clone());
    let r2 = refusal(&s1, 2, 12, missing.clone());
    let r3 = refusal(&s2, 1, 13, RejectReason::UnknownState);
    for r in [&r1, &r2, &r3] {
        b.store.put_refusal(r).await?;
    }
    let ours = |all: Vec<Refusal>| -> Vec<Refusal> {
        all.into_iter()
            .filter(|r| r.state_id == s1 || r.state_id == s2)
            .collect()
    };
    let mut want = vec![r2.clone(), r1.clone(), r3.clone()];
    want.sort_by(|a, b| (&a.state_id, a.version, a.event).cmp(&(&b.state_id, b.version, b.event)));
    ensure!(
        ours(b.store.refusals(None).await?) == want,
        "refusals are not listed sorted by state, version, event"
    );
    ensure!(
        b.store.refusals(Some(&s1)).await? == vec![r2.clone(), r1.clone()],
        "one state's refusals"
    );
    // Replacing: the same event refused again, now for another reason.
    let again = Refusal {
        reason: RejectReason::UnknownActor {
            actor: "acme/zoe".into(),
        },
        at: Timestamp(1_800_000_000_000),
        ..r1.clone()
    };
    b.store.put_refusal(&again).await?;
    ensure!(
        b.store.refusals(Some(&s1)).await? == vec![r2.clone(), again.clone()],
        "a second put of the same event must replace the first"
    );
    let bad = Refusal {
        reason: RejectReason::ContractRejected {
            message: "nul \u{0} inside".into(),
        },
        ..refusal(&s2, 2, 14, RejectReason::UnknownState)
    };
    match b.store.put_refusal(&bad).await {
        Err(StoreError::InvalidInput { path, .. }) => {
            ensure!(path.starts_with("$.refusal"), "path {path}")
        }
        other => bail!("a non-portable refusal: expected InvalidInput, got {other:?}"),
    }
    if b.store.capabilities().durable {
        let b2 = f.reopen().await?;
        ensure!(
            b2.store.refusals(Some(&s1)).await? == vec![r2.clone(), again.clone()],
            "refusals must survive reopening"
        );
    }
    b.store.clear_refusal(&r2.event).await?;
    b.store.clear_refusal(&r2.event).await?;
    ensure!(
        ours(b.store.refusals(None).await?) == vec![again, r3],
        "cleared refusal still listed"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tamper matrix: rows deleted, added, rolled back or relabelled behind the store's back

/// What `matrix_setup` committed: a state at version 3 (`id`), the events that applied each
/// version, a rejected intent on it, and a second untouched state.
struct MatrixSetup {
    id: StateId,
    applied: Vec<EventId>,
    roots: Vec<sst_core::StateRoot>,
    rejected: EventId,
}

async fn matrix_setup(b: &Backend) -> anyhow::Result<MatrixSetup> {
    let (alice, ka) = actor("acme", "alice");
    let (ines, ki) = actor("insp", "ines");
    register(b, &[&alice, &ines]).await?;
    let id = state_id("matrix");
    let other = state_id("matrix-other");
    let c = create(
        &id,
        deal_parties(),
        deal_values(250_000, 3.2),
        (&alice, &ka),
        1,
    );
    let v1 = state_of(&c)?;
    let x = change(
        &v1,
        values([("inspection", json!({"radon": 4.6, "passed": false}))]),
        (&ines, &ki),
        1,
    );
    let v2 = state_of(&x)?;
    let y = change(
        &v2,
        values([("inspection", json!({"radon": 3.9, "passed": true}))]),
        (&ines, &ki),
        2,
    );
    let v3 = state_of(&y)?;
    let r = rejected(
        &id,
        Some(sst_core::Base {
            version: 1,
            root: v1.root,
        }),
        (&ines, &ki),
        3,
        RejectReason::StaleBase {
            expected_version: 1,
            found_version: 3,
        },
    );
    let o = create(
        &other,
        deal_parties(),
        deal_values(1, 1.0),
        (&alice, &ka),
        2,
    );
    let setup = MatrixSetup {
        id,
        applied: vec![c.event.id(), x.event.id(), y.event.id()],
        roots: vec![v1.root, v2.root, v3.root],
        rejected: r.event.id(),
    };
    commit(b, vec![c, x, y, r, o]).await?;
    let clean = verify_store(b.store.as_ref(), &mut |_, _| {}).await?;
    ensure!(
        clean.is_clean(),
        "store does not verify before tampering: {:?}",
        clean.findings
    );
    Ok(setup)
}

/// Applies the mutations `make` builds and checks that `verify_store` reports a finding on
/// `table` under one of `rules` (at `version` when given), and nothing about the untouched
/// state.
async fn matrix_case(
    f: &impl BackendFactory,
    case: &str,
    make: impl FnOnce(&MatrixSetup) -> Vec<crate::Mutation>,
    table: sst_core::PeerTable,
    rules: &[sst_core::Rule],
    version: Option<u64>,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let setup = matrix_setup(&b).await?;
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
    let report = verify_store(b.store.as_ref(), &mut |_, _| {}).await?;
    ensure!(!report.is_clean(), "{case}: tampering went unnoticed");
    for finding in &report.findings {
        // Findings about log records name no state; none may name the untouched one.
        ensure!(
            finding.state_id == setup.id || finding.state_id.as_str().is_empty(),
            "{case}: finding about the wrong state: {finding}"
        );
    }
    ensure!(
        report.findings.iter().any(|x| x.table == table
            && rules.contains(&x.rule)
            && (version.is_none() || x.version == version)),
        "{case}: expected a {table} finding under {rules:?} at {version:?}, got {:?}",
        report
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// The current-state row deleted (history intact) is reported on the state table.
pub async fn deleted_current_row_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    matrix_case(
        f,
        "deleted_current_row_is_reported",
        |s| vec![crate::Mutation::DeleteCurrentRow(s.id.clone())],
        sst_core::PeerTable::State,
        &[sst_core::Rule::CurrentRow],
        Some(3),
    )
    .await
}

/// The current-state row rolled back to an older version is reported on the state table.
pub async fn rolled_back_current_row_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    matrix_case(
        f,
        "rolled_back_current_row_is_reported",
        |s| {
            vec![crate::Mutation::RollBackCurrentRow {
                id: s.id.clone(),
                version: 1,
            }]
        },
        sst_core::PeerTable::State,
        &[sst_core::Rule::CurrentRow],
        Some(1),
    )
    .await
}

/// The latest version removed from the history and the current row together (the state looks
/// like version 2) is reported: the log applied version 3.
pub async fn latest_version_removed_everywhere_is_reported(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    matrix_case(
        f,
        "latest_version_removed_everywhere_is_reported",
        |s| {
            vec![
                crate::Mutation::RollBackCurrentRow {
                    id: s.id.clone(),
                    version: 2,
                },
                crate::Mutation::DeleteHistoryVersion {
                    id: s.id.clone(),
                    version: 3,
                },
            ]
        },
        sst_core::PeerTable::History,
        &[sst_core::Rule::VersionMissing],
        Some(3),
    )
    .await
}

/// A whole state deleted from every state table is reported through its events.
pub async fn deleted_state_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    matrix_case(
        f,
        "deleted_state_is_reported",
        |s| {
            let mut m = vec![crate::Mutation::DeleteCurrentRow(s.id.clone())];
            m.extend(
                (1..=3).map(|version| crate::Mutation::DeleteHistoryVersion {
                    id: s.id.clone(),
                    version,
                }),
            );
            m
        },
        sst_core::PeerTable::History,
        &[sst_core::Rule::VersionMissing],
        Some(1),
    )
    .await
}

/// A history version that no event produced (a copy of version 3 claiming version 4) is
/// reported at version 4.
pub async fn history_version_nobody_committed_is_reported(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    // The copy's root no longer matches its header (version is hashed): reported as a row
    // that does not verify, or as a version no event produced.
    matrix_case(
        f,
        "history_version_nobody_committed_is_reported",
        |s| {
            vec![crate::Mutation::CopyHistoryVersion {
                id: s.id.clone(),
                from: 3,
                to: 4,
            }]
        },
        sst_core::PeerTable::History,
        &[sst_core::Rule::UnboundVersion, sst_core::Rule::Integrity],
        Some(4),
    )
    .await
}

/// An event row deleted is reported: the version it applied is no longer bound to the log.
pub async fn deleted_event_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    matrix_case(
        f,
        "deleted_event_is_reported",
        |s| vec![crate::Mutation::DeleteEvent(s.applied[1])],
        sst_core::PeerTable::History,
        &[sst_core::Rule::UnboundVersion],
        Some(2),
    )
    .await
}

/// A rejected intent relabelled as applied (claiming an existing version and its root) is
/// reported: that version is now applied twice in the log.
pub async fn rejected_event_relabelled_applied_is_reported(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    matrix_case(
        f,
        "rejected_event_relabelled_applied_is_reported",
        |s| {
            vec![crate::Mutation::RelabelApplied {
                event: s.rejected,
                version: 2,
                root: s.roots[1],
            }]
        },
        sst_core::PeerTable::Event,
        &[sst_core::Rule::EventOrder],
        Some(2),
    )
    .await
}
