//! Crash safety of the sequencer: a failure injected between "batch built" and "commit
//! acknowledged" (before the database commit, or after it but before the node learns of it),
//! then a restart from the same SQLite file. Nothing acknowledged is lost, nothing is
//! recorded twice, origin sequences resume without reuse, and peers converge (outbox).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context};
use async_trait::async_trait;
use common::{deal_parties, values, who, Cluster, TempDir};
use serde_json::json;
use sst_core::{
    Actor, ActorId, CommitBatch, CommitReceipt, ContractRecord, ContractRef, EventFilter, EventId,
    EventRecord, LogEntry, LogHead, NodeId, OriginSeq, SignedCheckpoint, State, StateId, Store,
    StoreError,
};
use sst_node::{Intent, NodeError, Verdict};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fail {
    /// The node dies after building the batch, before the database commit.
    BeforeCommit,
    /// The database commits, then the node dies before it hears back.
    AfterCommit,
    /// One transient (retryable) error.
    Transient,
    /// The first commit of more than one item from the `n`-th on is refused as a conflict
    /// (nothing recorded; the sequencer replays its items one by one); every commit takes
    /// [`SLOW_COMMIT`], so that the sequencer plans and launches the next group meanwhile.
    Conflict,
}

/// How long each commit takes under [`Fail::Conflict`].
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(30);

/// Delegates to `inner`; the `n`-th commit fails as `mode` says, and (except for
/// `Transient`) every commit after it fails too: the node is dead until restarted.
struct FailingStore {
    inner: Arc<dyn Store>,
    mode: Fail,
    n: usize,
    commits: AtomicUsize,
    /// A conflict was injected ([`Fail::Conflict`]).
    refused: AtomicBool,
}

fn crashed() -> StoreError {
    StoreError::backend("failing", "commit", "injected crash")
}

#[async_trait]
impl Store for FailingStore {
    fn backend(&self) -> &'static str {
        "failing"
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }
    async fn commit(&self, batch: CommitBatch) -> Result<CommitReceipt, StoreError> {
        let i = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if self.mode == Fail::Conflict {
            tokio::time::sleep(SLOW_COMMIT).await;
        }
        match self.mode {
            Fail::Conflict
                if i >= self.n
                    && batch.items.len() > 1
                    && !self.refused.swap(true, Ordering::SeqCst) =>
            {
                Err(StoreError::stale_version(
                    &StateId::from("deal-void-0"),
                    1,
                    2,
                ))
            }
            Fail::Transient if i == self.n => Err(StoreError::Backend {
                backend: "failing",
                operation: "commit",
                retryable: true,
                source: "injected timeout".into(),
            }),
            Fail::BeforeCommit if i >= self.n => Err(crashed()),
            Fail::AfterCommit if i == self.n => {
                self.inner.commit(batch).await?;
                Err(crashed())
            }
            Fail::AfterCommit if i > self.n => Err(crashed()),
            _ => self.inner.commit(batch).await,
        }
    }
    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError> {
        self.inner.state(id).await
    }
    async fn state_at(&self, id: &StateId, v: u64) -> Result<Option<State>, StoreError> {
        self.inner.state_at(id, v).await
    }
    async fn state_ids(&self) -> Result<Vec<StateId>, StoreError> {
        self.inner.state_ids().await
    }
    async fn events(&self, f: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.events(f).await
    }
    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.inner.event(id).await
    }
    async fn last_origin_seq(&self, node: &NodeId) -> Result<OriginSeq, StoreError> {
        self.inner.last_origin_seq(node).await
    }
    async fn put_actor(&self, a: &Actor) -> Result<(), StoreError> {
        self.inner.put_actor(a).await
    }
    async fn actor(&self, id: &ActorId) -> Result<Option<Actor>, StoreError> {
        self.inner.actor(id).await
    }
    async fn actors(&self) -> Result<Vec<Actor>, StoreError> {
        self.inner.actors().await
    }
    async fn put_contract(&self, c: &ContractRecord) -> Result<(), StoreError> {
        self.inner.put_contract(c).await
    }
    async fn contract(&self, c: &ContractRef) -> Result<Option<ContractRecord>, StoreError> {
        self.inner.contract(c).await
    }
    async fn put_refusal(&self, r: &sst_core::Refusal) -> Result<(), StoreError> {
        self.inner.put_refusal(r).await
    }
    async fn refusals(&self, s: Option<&StateId>) -> Result<Vec<sst_core::Refusal>, StoreError> {
        self.inner.refusals(s).await
    }
    async fn clear_refusal(&self, e: &EventId) -> Result<(), StoreError> {
        self.inner.clear_refusal(e).await
    }
    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        self.inner.contracts().await
    }
    async fn log(&self, after: u64, limit: Option<usize>) -> Result<Vec<LogEntry>, StoreError> {
        self.inner.log(after, limit).await
    }
    async fn log_head(&self) -> Result<LogHead, StoreError> {
        self.inner.log_head().await
    }
    async fn put_checkpoint(&self, c: &SignedCheckpoint) -> Result<(), StoreError> {
        self.inner.put_checkpoint(c).await
    }
    async fn checkpoints(&self, node: &NodeId) -> Result<Vec<SignedCheckpoint>, StoreError> {
        self.inner.checkpoints(node).await
    }
    async fn prune_checkpoints(&self, node: &NodeId, keep: usize) -> Result<usize, StoreError> {
        self.inner.prune_checkpoints(node, keep).await
    }
    async fn sink_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        self.inner.sink_cursor(sink).await
    }
    async fn set_sink_cursor(&self, sink: &str, position: u64) -> Result<(), StoreError> {
        self.inner.set_sink_cursor(sink, position).await
    }
}

/// Every `common.rev` value in the seller's history of `id`, in version order.
async fn revs(store: &dyn Store, id: &StateId) -> anyhow::Result<Vec<i64>> {
    let latest = store.state(id).await?.context("state")?.version;
    let mut out = Vec::new();
    for v in 2..=latest {
        let s = store.state_at(id, v).await?.context("version")?;
        if let Some(r) = s.sections["common"].value().and_then(|c| c["rev"].as_i64()) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Creates `id` through the seller (its `common.rev` 0) and waits until every node holds it.
async fn create_deal(c: &Cluster, id: &str) -> anyhow::Result<()> {
    let v = c
        .node("seller")
        .submit(
            &who("seller"),
            Intent::create(
                id,
                ContractRef::new("real-estate-deal", 1),
                deal_parties(),
                values([("common", json!({"rev": 0}))]),
            ),
        )
        .await?;
    ensure!(v.is_applied(), "{v:?}");
    Ok(())
}

/// Restarts the seller on its store wrapped in a [`FailingStore`] that fails as `mode` says
/// from its `n`-th commit; returns the wrapper and the restarted node.
async fn restart_failing(
    c: &mut Cluster,
    mode: Fail,
    n: usize,
) -> anyhow::Result<(Arc<FailingStore>, Arc<sst_node::Node>)> {
    let inner = c.stores["seller"].clone();
    c.nodes.remove("seller");
    let failing = Arc::new(FailingStore {
        inner,
        mode,
        n,
        commits: AtomicUsize::new(0),
        refused: AtomicBool::new(false),
    });
    let seller = Cluster::start_node(
        &c.net,
        "seller",
        failing.clone(),
        common::registry(false),
        &[ContractRef::new("real-estate-deal", 1)],
    )
    .await?;
    Ok((failing, Arc::new(seller)))
}

async fn crash_and_resume(mode: Fail) -> anyhow::Result<()> {
    let dir = TempDir::new("sst-crash")?;
    let mut c = Cluster::sqlite(&dir.0).await?;
    let id = StateId::from("deal-crash");
    create_deal(&c, id.as_str()).await?;
    c.net.settled().await;

    // Restart the seller on a store that fails its 3rd commit from now.
    let (_, seller) = restart_failing(&mut c, mode, 3).await?;
    // 40 intents in waves of 4 concurrent ones, so the sequencer groups them into batches.
    let mut acked = BTreeMap::new();
    let mut unknown = BTreeMap::new();
    for wave in 0..10i64 {
        let mut set = tokio::task::JoinSet::new();
        for rev in wave * 4 + 1..=wave * 4 + 4 {
            let s = seller.clone();
            set.spawn(async move {
                let intent =
                    Intent::change("deal-crash", values([("common", json!({"rev": rev}))]));
                (rev, s.submit(&who("seller"), intent).await)
            });
        }
        while let Some(r) = set.join_next().await {
            let (rev, r) = r?;
            match r {
                Ok(Verdict::Applied { event, .. }) => {
                    acked.insert(rev, event);
                }
                Err(NodeError::Interrupted { events, .. }) => {
                    ensure!(events.len() == 1, "rev {rev}: {events:?}");
                    unknown.insert(rev, events[0]);
                }
                other => anyhow::bail!("rev {rev}: unexpected {other:?}"),
            }
        }
    }
    if mode == Fail::Transient {
        ensure!(
            unknown.is_empty() && acked.len() == 40,
            "a retryable error lost intents"
        );
    } else {
        ensure!(!unknown.is_empty(), "the injected crash hit no intent");
    }
    // Crash: drop the node; restart it on the same file (a new connection).
    drop(seller);
    let path = dir.0.join("seller.db");
    let reopened = common::sqlite_store(&path).await?;
    let seller = Arc::new(
        Cluster::start_node(
            &c.net,
            "seller",
            reopened.clone(),
            common::registry(false),
            &[ContractRef::new("real-estate-deal", 1)],
        )
        .await?,
    );
    // Precise resume: every acknowledged intent is recorded; interrupted ones are recorded
    // (crash after commit) or absent (crash before), never half; the client resubmits the
    // absent ones.
    for (rev, ev) in &acked {
        ensure!(
            seller.outcome(ev).await?.is_some(),
            "acknowledged rev {rev} lost"
        );
    }
    let mut resubmit = Vec::new();
    for (rev, ev) in &unknown {
        let landed = seller.outcome(ev).await?.is_some();
        match mode {
            Fail::BeforeCommit => ensure!(!landed, "rev {rev}: landed although never committed"),
            Fail::AfterCommit | Fail::Transient | Fail::Conflict => {}
        }
        if !landed {
            resubmit.push(*rev);
        }
    }
    if mode == Fail::AfterCommit {
        // The batch that crashed after its commit is recorded in full.
        let landed = count_recorded(&seller, unknown.values()).await?;
        ensure!(landed > 0, "the committed batch is missing after restart");
    }
    for rev in &resubmit {
        let v = seller
            .submit(
                &who("seller"),
                Intent::change("deal-crash", values([("common", json!({"rev": rev}))])),
            )
            .await?;
        ensure!(v.is_applied(), "resubmitted rev {rev}: {v:?}");
    }
    // Every rev exactly once in the history.
    let mut seen = revs(reopened.as_ref(), &id).await?;
    seen.sort_unstable();
    ensure!(
        seen == (1..=40).collect::<Vec<_>>(),
        "history revs: {seen:?}"
    );
    // Origin sequences are unique and resumed above everything recorded.
    let evs = reopened
        .events(&EventFilter {
            origin_node: Some(NodeId::from("seller")),
            ..Default::default()
        })
        .await?;
    let mut seqs: Vec<u64> = evs.iter().map(|r| r.event().origin_seq.0).collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    ensure!(seqs.len() == n, "an origin sequence was reused");
    let report = sst_core::verify_store(reopened.as_ref(), &mut |_, _| {}).await?;
    ensure!(report.is_clean(), "{:?}", report.findings);
    // Peers converge, including on what was committed but not published before the crash.
    c.nodes.insert("seller".into(), seller);
    c.net.settled().await;
    let roots = c.roots(&id).await?;
    let first = roots.values().next().cloned().unwrap_or_default();
    ensure!(
        roots.len() == 4 && roots.values().all(|r| *r == first),
        "{roots:?}"
    );
    Ok(())
}

async fn count_recorded<'a>(
    node: &sst_node::Node,
    events: impl Iterator<Item = &'a EventId>,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for ev in events {
        if node.outcome(ev).await?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_commit_loses_nothing_acknowledged() -> anyhow::Result<()> {
    crash_and_resume(Fail::BeforeCommit).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_commit_records_once_and_publishes_after_restart() -> anyhow::Result<()> {
    crash_and_resume(Fail::AfterCommit).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_store_error_is_retried() -> anyhow::Result<()> {
    crash_and_resume(Fail::Transient).await
}

/// A group the store refuses as a whole (a conflict) while the group planned on top of it
/// waits to be committed: the refused group's jobs are replayed one by one, the waiting
/// group never reaches the store and is planned again after them. Every intent is applied
/// exactly once, each state's versions follow one another, and the store verifies clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_planned_on_a_refused_group_is_planned_again() -> anyhow::Result<()> {
    const STATES: i64 = 4;
    const CHANGES: i64 = 200;
    let dir = TempDir::new("sst-void")?;
    let mut c = Cluster::sqlite(&dir.0).await?;
    let ids: Vec<String> = (0..STATES).map(|i| format!("deal-void-{i}")).collect();
    for id in &ids {
        create_deal(&c, id).await?;
    }
    c.net.settled().await;
    let inner = c.stores["seller"].clone();
    let (failing, seller) = restart_failing(&mut c, Fail::Conflict, 2).await?;
    // All at once: while one group commits (slowly), the next is planned and launched.
    let mut set = tokio::task::JoinSet::new();
    for rev in 1..=CHANGES {
        let s = seller.clone();
        let id = ids[usize::try_from(rev % STATES)?].clone();
        set.spawn(async move {
            let intent = Intent::change(id.as_str(), values([("common", json!({"rev": rev}))]));
            (rev, s.submit(&who("seller"), intent).await)
        });
    }
    while let Some(r) = set.join_next().await {
        let (rev, r) = r?;
        ensure!(matches!(r, Ok(Verdict::Applied { .. })), "rev {rev}: {r:?}");
    }
    ensure!(
        failing.refused.load(Ordering::SeqCst),
        "no group of more than one item was committed: nothing was refused"
    );
    for (i, id) in ids.iter().enumerate() {
        let id = StateId::from(id.as_str());
        let state = inner.state(&id).await?.context("state")?;
        ensure!(
            state.version == 1 + u64::try_from(CHANGES / STATES)?,
            "{id}: version {}",
            state.version
        );
        let mut seen = revs(inner.as_ref(), &id).await?;
        seen.sort_unstable();
        let expected: Vec<i64> = (1..=CHANGES)
            .filter(|r| r % STATES == i64::try_from(i).unwrap_or(-1))
            .collect();
        ensure!(seen == expected, "{id}: revs {seen:?}");
    }
    let report = sst_core::verify_store(inner.as_ref(), &mut |_, _| {}).await?;
    ensure!(report.is_clean(), "{:?}", report.findings);
    Ok(())
}
