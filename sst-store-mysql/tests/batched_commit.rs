//! Large and concurrent commit batches against a real MySQL / MariaDB server
//! (`SST_MYSQL_URL`): the multi-row commit path splits long `IN (…)` lists and inserts,
//! keeps every rule of the Store contract, and starts over (reading what the other writer
//! committed) when a concurrent writer races it.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use common::ScratchDb;
use conformance_tests::fixtures::{actor, change, create, deal_parties, deal_values, values};
use serde_json::json;
use sst_core::{CommitBatch, CommitItem, ConflictKind, EventFilter, StateId, Store, StoreError};
use sst_store_mysql::MysqlStore;

/// A store in a fresh database, dropped when the guard goes.
struct Db {
    store: MysqlStore,
    _scratch: ScratchDb,
}

async fn open() -> anyhow::Result<Option<Db>> {
    let Some(scratch) = ScratchDb::new()? else {
        return Ok(None);
    };
    let store = scratch.store(8).await?;
    store.migrate().await?;
    Ok(Some(Db {
        store,
        _scratch: scratch,
    }))
}

/// `n` items: a create of `id` followed by `n - 1` changes, origin seqs from `first_seq`.
fn chain(id: &StateId, n: usize, first_seq: u64) -> Vec<CommitItem> {
    let (alice, key) = actor("acme", "alice");
    let mut items = vec![create(
        id,
        deal_parties(),
        deal_values(1, 0.5),
        (&alice, &key),
        first_seq,
    )];
    for i in 1..n {
        let prev = items[i - 1]
            .state
            .clone()
            .expect("applied items carry a state");
        items.push(change(
            &prev,
            values([("common", json!({ "step": i }))]),
            (&alice, &key),
            first_seq + i as u64,
        ));
    }
    items
}

/// More items than one `IN (…)` list or one insert carries: every version lands in the
/// history, only the last in the current-state table, events keep their order and read back
/// with their disclosures; a replay of part of it plus new items reports the duplicates in
/// batch order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_batch_with_many_versions_of_one_state_commits_in_order() -> anyhow::Result<()> {
    let Some(db) = open().await? else {
        return Ok(());
    };
    let id = StateId("long".into());
    let items = chain(&id, 1_205, 1);
    let ids: Vec<_> = items.iter().map(|i| i.event.id()).collect();
    let receipt = db
        .store
        .commit(CommitBatch::new(items[..1_100].to_vec()))
        .await?;
    ensure!(receipt.committed == ids[..1_100] && receipt.duplicates.is_empty());
    let now = db.store.state(&id).await?.context("state missing")?;
    ensure!(now == *items[1_099].state.as_deref().context("no state")?);
    for v in [1u64, 500, 1_000, 1_100] {
        let at = db
            .store
            .state_at(&id, v)
            .await?
            .context("version missing")?;
        ensure!(
            Some(&at) == items[v as usize - 1].state.as_deref(),
            "version {v}"
        );
    }

    // Replay 1000..1100 (duplicates) followed by 1100..1205 (new).
    let receipt = db
        .store
        .commit(CommitBatch::new(items[1_000..].to_vec()))
        .await?;
    ensure!(receipt.duplicates == ids[1_000..1_100], "{receipt:?}");
    ensure!(receipt.committed == ids[1_100..], "{receipt:?}");
    let events = db.store.events(&EventFilter::default()).await?;
    let recorded: Vec<_> = events.iter().map(|e| e.id()).collect();
    ensure!(recorded == ids, "events out of order or missing");
    // Each event row names the section versions it disclosed: the listing reads them all
    // back (more keys than one lookup carries) with the values the events disclosed.
    for (read, item) in events.iter().zip(&items) {
        ensure!(
            serde_json::to_value(&read.disclosures)?
                == serde_json::to_value(&item.event.disclosures)?,
            "event {} reads back other disclosures",
            read.id()
        );
    }
    ensure!(
        db.store.state(&id).await?.map(|s| s.version) == Some(1_205),
        "current row is not the last version"
    );
    Ok(())
}

/// A stale version deep in a long batch fails the whole batch with the exact versions, and
/// an origin sequence used twice in one batch is a conflict too; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_deep_in_a_batch_stores_nothing() -> anyhow::Result<()> {
    let Some(db) = open().await? else {
        return Ok(());
    };
    let a = chain(&StateId("a".into()), 5, 1);
    db.store.commit(CommitBatch::new(a[..3].to_vec())).await?;
    // b's items are new, then a's version 3 again (a different event: seq 100) on stored 3.
    let (bob, key) = actor("other", "bob");
    let stale = change(
        a[1].state.as_ref().context("no state")?,
        values([("common", json!("stale"))]),
        (&bob, &key),
        100,
    );
    let mut batch = chain(&StateId("b".into()), 4, 10);
    batch.push(stale);
    match db.store.commit(CommitBatch::new(batch)).await {
        Err(StoreError::Conflict {
            kind,
            expected,
            found,
            ..
        }) => ensure!(
            (kind, expected, found) == (ConflictKind::StaleVersion, 2, 3),
            "{kind} {expected} {found}"
        ),
        other => bail!("expected a conflict, got {other:?}"),
    }
    ensure!(db.store.state(&StateId("b".into())).await?.is_none());

    // Two different events with the same (origin_node, origin_seq) in one batch.
    let mut batch = chain(&StateId("c".into()), 2, 50);
    batch.extend(chain(&StateId("d".into()), 1, 51));
    match db.store.commit(CommitBatch::new(batch)).await {
        Err(StoreError::Conflict {
            kind,
            expected,
            found,
            ..
        }) => ensure!(
            (kind, expected, found) == (ConflictKind::OriginTaken, 50, 51),
            "{kind} {expected} {found}"
        ),
        other => bail!("expected an origin conflict, got {other:?}"),
    }
    ensure!(db.store.state(&StateId("c".into())).await?.is_none());
    ensure!(db.store.events(&EventFilter::default()).await?.len() == 3);
    Ok(())
}

/// The same batch committed by several tasks at once: each commit succeeds, every event is
/// committed by exactly one of them and reported as a duplicate by the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_of_one_batch_commit_each_event_once() -> anyhow::Result<()> {
    const WRITERS: usize = 4;
    let Some(db) = open().await? else {
        return Ok(());
    };
    let store = Arc::new(db.store.clone());
    for round in 0..5u64 {
        let mut items = chain(&StateId(format!("x{round}")), 6, round * 100 + 1);
        items.extend(chain(&StateId(format!("y{round}")), 6, round * 100 + 50));
        let ids: BTreeSet<_> = items.iter().map(|i| i.event.id()).collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let (store, barrier, items) = (Arc::clone(&store), Arc::clone(&barrier), items.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.commit(CommitBatch::new(items)).await
            }));
        }
        let mut committed = Vec::new();
        for t in tasks {
            let receipt = t.await??;
            let all: BTreeSet<_> = receipt
                .committed
                .iter()
                .chain(&receipt.duplicates)
                .copied()
                .collect();
            ensure!(
                all == ids,
                "round {round}: receipt misses events: {receipt:?}"
            );
            committed.extend(receipt.committed);
        }
        committed.sort();
        let expected: Vec<_> = ids.iter().copied().collect();
        ensure!(
            committed == expected,
            "round {round}: events committed twice or never"
        );
        let x = store.state(&StateId(format!("x{round}"))).await?;
        ensure!(x.map(|s| s.version) == Some(6), "round {round}");
    }
    Ok(())
}
