//! The writer thread seen from the `Store` API: commits from many tasks are applied one batch
//! at a time (each batch's log entries contiguous and in batch order, each task's batches in
//! the order it made them), a conflicting batch leaves none of its items behind, everything
//! works on a `current_thread` runtime, and dropping the store finishes the commits already
//! handed over before it closes the file.

mod temp_db;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Waker};

use anyhow::{bail, ensure, Context as _};
use conformance_tests::fixtures::{
    actor, change, create, deal_parties, deal_values, state_id, values,
};
use serde_json::json;
use sst_core::{CommitBatch, CommitItem, CommitReceipt, EventId, Store, StoreError};
use sst_store_sqlite::{SqliteConfig, SqliteStore};
use temp_db::TempDb;

const TASKS: usize = 8;
const BATCHES: usize = 6;
const ITEMS: usize = 4;

/// `BATCHES` batches of `ITEMS` creates signed by an actor of node `n{task}`.
fn batches_of(task: usize) -> Vec<CommitBatch> {
    let (a, k) = actor(&format!("n{task}"), "writer");
    (0..BATCHES)
        .map(|b| {
            let items: Vec<CommitItem> = (0..ITEMS)
                .map(|i| {
                    let seq = (b * ITEMS + i + 1) as u64;
                    let id = state_id(&format!("t{task}"));
                    create(&id, deal_parties(), deal_values(100, 1.0), (&a, &k), seq)
                })
                .collect();
            CommitBatch::new(items)
        })
        .collect()
}

/// Runs `TASKS` tasks that each commit their batches one after the other, all at once, and
/// checks the log: every batch is one contiguous run of entries in batch order ending at its
/// receipt's head, and each task's runs follow one another in the order it committed them.
async fn commit_from_many_tasks(store: Arc<dyn Store>) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        let batches = batches_of(t);
        tasks.push(tokio::spawn(async move {
            let mut done: Vec<(Vec<EventId>, CommitReceipt)> = Vec::new();
            for b in batches {
                let ids: Vec<EventId> = b.items.iter().map(|i| i.event.id()).collect();
                let receipt = store.commit(b).await?;
                done.push((ids, receipt));
            }
            Ok::<_, StoreError>(done)
        }));
    }
    let log = store.log(0, None).await?;
    let _ = log; // read while commits run: must not block them nor fail
    let mut per_task = Vec::new();
    for t in tasks {
        per_task.push(t.await??);
    }
    let log = store.log(0, None).await?;
    ensure!(
        log.len() == TASKS * BATCHES * ITEMS,
        "{} log entries for {} events",
        log.len(),
        TASKS * BATCHES * ITEMS
    );
    let pos: BTreeMap<&str, u64> = log.iter().map(|e| (e.subject.as_str(), e.pos)).collect();
    for (t, done) in per_task.iter().enumerate() {
        let mut last_end = 0;
        for (ids, receipt) in done {
            ensure!(&receipt.committed == ids, "task {t}: receipt {receipt:?}");
            let head = receipt
                .log_head
                .as_ref()
                .context("no head after a commit")?;
            let at: Vec<u64> = ids
                .iter()
                .map(|id| pos.get(id.to_string().as_str()).copied())
                .collect::<Option<_>>()
                .context("a committed event is missing from the log")?;
            let first = head.pos + 1 - ITEMS as u64;
            ensure!(
                at == (first..=head.pos).collect::<Vec<_>>(),
                "task {t}: batch at positions {at:?}, head {}: not one run in batch order",
                head.pos
            );
            ensure!(
                first > last_end,
                "task {t}: a batch was applied before an earlier one"
            );
            last_end = head.pos;
        }
    }
    ensure!(store.state_ids().await?.len() == TASKS * BATCHES * ITEMS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_from_many_tasks_keep_their_order_and_atomicity_on_a_file() -> anyhow::Result<()> {
    let db = TempDb::new("writer-order");
    let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    commit_from_many_tasks(Arc::new(store)).await
}

#[tokio::test(flavor = "current_thread")]
async fn commits_from_many_tasks_on_a_current_thread_runtime_do_not_deadlock() -> anyhow::Result<()>
{
    let db = TempDb::new("writer-current");
    let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    commit_from_many_tasks(Arc::new(store)).await?;
    let memory = SqliteStore::open_migrated(SqliteConfig::memory()).await?;
    commit_from_many_tasks(Arc::new(memory)).await
}

/// Batches racing for the same state version, each also creating a state of its own: one
/// wins, and a losing batch stores neither of its items.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_loses_a_race_stores_none_of_its_items() -> anyhow::Result<()> {
    let db = TempDb::new("writer-atomic");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?);
    let (alice, ka) = actor("home", "alice");
    let shared = state_id("shared");
    let first = create(
        &shared,
        deal_parties(),
        deal_values(1, 0.5),
        (&alice, &ka),
        1,
    );
    store.commit(CommitBatch::new(vec![first])).await?;
    let base = store.state(&shared).await?.context("shared state")?;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (a, k) = actor(&format!("n{t}"), "racer");
        let own = state_id(&format!("own{t}"));
        let mine = create(&own, deal_parties(), deal_values(2, 0.5), (&a, &k), 1);
        let bump = change(&base, values([("common", json!({"by": t}))]), (&a, &k), 2);
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let result = store.commit(CommitBatch::new(vec![mine, bump])).await;
            (own, result)
        }));
    }
    let mut winners = 0;
    for t in tasks {
        let (own, result) = t.await?;
        let stored = store.state(&own).await?;
        match result {
            Ok(_) => {
                winners += 1;
                ensure!(stored.is_some(), "a winner's own state is missing");
            }
            Err(StoreError::Conflict { .. }) => {
                ensure!(
                    stored.is_none(),
                    "a losing batch left its first item behind"
                );
            }
            Err(other) => bail!("unexpected error {other}"),
        }
    }
    ensure!(winners == 1, "{winners} winners");
    let now = store.state(&shared).await?.context("shared state")?;
    ensure!(now.version == 2);
    Ok(())
}

/// Commits whose callers stopped waiting right after handing them over are still committed
/// when the store is dropped, and the drop returns only once the file is closed (its WAL
/// checkpointed and removed by the last connection).
#[tokio::test(flavor = "current_thread")]
async fn dropping_the_store_finishes_the_commits_already_handed_over() -> anyhow::Result<()> {
    let db = TempDb::new("writer-drop");
    let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    ensure!(store.state_ids().await?.is_empty(), "fresh store");
    let batches: Vec<CommitBatch> = (0..3).flat_map(batches_of).collect();
    let expected = batches.iter().map(|b| b.items.len()).sum::<usize>();
    let mut cx = Context::from_waker(Waker::noop());
    for b in batches {
        // One poll validates the batch and hands it to the writer thread; the future (the
        // only one waiting for the answer) is then dropped.
        let mut commit = store.commit(b);
        let _ = commit.as_mut().poll(&mut cx);
    }
    drop(store);
    let mut wal = db.0.clone().into_os_string();
    wal.push("-wal");
    ensure!(
        !std::path::Path::new(&wal).exists(),
        "the WAL is still there: the database was not closed by the drop"
    );
    let reopened = SqliteStore::open(SqliteConfig::file(&db.0).read_only()).await?;
    let stored = reopened.state_ids().await?.len();
    ensure!(
        stored == expected,
        "{stored} of {expected} handed-over states stored"
    );
    ensure!(reopened.log_head().await?.pos == expected as u64);
    Ok(())
}
