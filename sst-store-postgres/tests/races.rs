//! Races the conformance suite does not stage, on a real server (`SST_POSTGRES_URL`): the
//! same batch replayed by several connections at once, and one new state created by several
//! writers at once. `commit` reads before it writes and re-reads when a concurrent writer got
//! in between, so these must end exactly as if the commits had run one after another.

mod common;

use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use conformance_tests::fixtures::{actor, change, create, deal_parties, deal_values, state_id};
use conformance_tests::BackendFactory;
use sst_core::{CommitBatch, CommitReceipt, ConflictKind, EventFilter, StateId, Store, StoreError};

const WRITERS: usize = 6;

/// Runs `batches[i]` on its own task, all released at once.
async fn race(
    store: &Arc<dyn Store>,
    batches: Vec<CommitBatch>,
) -> anyhow::Result<Vec<Result<CommitReceipt, StoreError>>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(batches.len()));
    let mut tasks = Vec::new();
    for batch in batches {
        let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.commit(batch).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await?);
    }
    Ok(results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_replayed_concurrently_is_committed_once_and_duplicate_elsewhere(
) -> anyhow::Result<()> {
    let Some(f) = common::factory(None).await? else {
        return Ok(());
    };
    let b = f.open().await?;
    let (alice, ka) = actor("acme", "alice");
    for round in 0..4u64 {
        let (x, y) = (state_id("x"), state_id("y"));
        let seq = round * 10;
        let x1 = create(
            &x,
            deal_parties(),
            deal_values(1, 1.0),
            (&alice, &ka),
            seq + 1,
        );
        let x1_state = x1.state.clone().context("x1 has a state")?;
        let x2 = change(&x1_state, deal_values(2, 2.0), (&alice, &ka), seq + 2);
        let y1 = create(
            &y,
            deal_parties(),
            deal_values(3, 3.0),
            (&alice, &ka),
            seq + 3,
        );
        let items = vec![x1, x2, y1];
        let ids: Vec<_> = items.iter().map(|i| i.event.id()).collect();
        let batches = (0..WRITERS)
            .map(|_| CommitBatch::new(items.clone()))
            .collect();
        let mut committed = 0;
        for r in race(&b.store, batches).await? {
            let r = r.with_context(|| format!("round {round}: a replay failed"))?;
            if r.committed == ids && r.duplicates.is_empty() {
                committed += 1;
            } else if r.duplicates != ids || !r.committed.is_empty() {
                bail!("round {round}: receipt is neither all committed nor all duplicate: {r:?}");
            }
        }
        ensure!(
            committed == 1,
            "round {round}: {committed} replays committed"
        );
        let stored = b.store.state(&x).await?.context("x missing")?;
        ensure!(stored.version == 2, "x is at version {}", stored.version);
        for id in [&x, &y] {
            let events = b
                .store
                .events(&EventFilter {
                    state_id: Some(StateId::clone(id)),
                    ..Default::default()
                })
                .await?;
            let want = if id == &x { 2 } else { 1 };
            ensure!(events.len() == want, "{} events of {id}", events.len());
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_state_created_concurrently_has_one_creator_and_exact_conflicts() -> anyhow::Result<()> {
    let Some(f) = common::factory(None).await? else {
        return Ok(());
    };
    let b = f.open().await?;
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| actor(&format!("node{i}"), "writer"))
        .collect();
    for round in 0..4u64 {
        let id = state_id("new");
        let batches = writers
            .iter()
            .enumerate()
            .map(|(i, (w, k))| {
                let item = create(
                    &id,
                    deal_parties(),
                    deal_values(i as i64, 1.0),
                    (w, k),
                    round + 1,
                );
                CommitBatch::new(vec![item])
            })
            .collect::<Vec<_>>();
        let events: Vec<_> = batches.iter().map(|b| b.items[0].event.id()).collect();
        let mut winner = None;
        for (i, r) in race(&b.store, batches).await?.into_iter().enumerate() {
            match r {
                Ok(receipt) => {
                    ensure!(receipt.committed == vec![events[i]], "receipt {receipt:?}");
                    ensure!(
                        winner.replace(events[i]).is_none(),
                        "round {round}: two creators"
                    );
                }
                Err(StoreError::Conflict {
                    kind: ConflictKind::StaleVersion,
                    expected: 0,
                    found: 1,
                    ..
                }) => {
                    ensure!(
                        b.store.event(&events[i]).await?.is_none(),
                        "a losing event was recorded"
                    );
                }
                Err(other) => bail!("round {round}: writer {i} failed with {other}"),
            }
        }
        let winner = winner.context("no creator won")?;
        let stored = b.store.state(&id).await?.context("state missing")?;
        ensure!(
            stored.version == 1 && stored.last_event == Some(winner),
            "stored state is not the winner's"
        );
    }
    Ok(())
}
