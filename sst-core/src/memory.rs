//! [`MemoryStore`]: the in-memory reference implementation of the [`Store`] contract, used by
//! the conformance suite as the model every database adapter must match, and by unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::hash::EventId;
use crate::log::{LogEntry, LogHead, LogRecord, SignedCheckpoint};
use crate::model::{
    Actor, ActorId, ContractRecord, ContractRef, EventRecord, NodeId, OriginSeq, Refusal, State,
    StateId,
};
use crate::raw::columns::to_i64;
use crate::raw::{CommitPlan, ContractPut, Lookups, Recorded};
use crate::store::{
    check_prune_keep, check_refusal, check_sink_name, Capabilities, CommitBatch, CommitItem,
    CommitReceipt, EventFilter, Store,
};

#[derive(Default)]
struct Tables {
    /// state id → every version, index = version - 1.
    states: BTreeMap<StateId, Vec<State>>,
    /// recording order.
    events: Vec<EventRecord>,
    event_index: BTreeMap<EventId, usize>,
    origin: BTreeMap<(NodeId, OriginSeq), EventId>,
    actors: BTreeMap<ActorId, Actor>,
    contracts: BTreeMap<ContractRef, ContractRecord>,
    refusals: BTreeMap<EventId, Refusal>,
    log: Vec<LogEntry>,
    checkpoints: BTreeMap<(NodeId, u64), SignedCheckpoint>,
    /// sink name → log position published up to.
    sink_cursors: BTreeMap<String, u64>,
}

impl Tables {
    fn head(&self) -> LogHead {
        self.log.last().map(LogEntry::head).unwrap_or_default()
    }

    fn append(&mut self, record: &LogRecord<'_>) {
        let entry = self.head().append(record);
        self.log.push(entry);
    }
}

/// An in-memory [`Store`]: real behaviour (atomic batches, conflicts, history, idempotence),
/// no durability.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Tables>, StoreError> {
        self.tables
            .lock()
            .map_err(|_| StoreError::backend("memory", "lock", "store mutex poisoned"))
    }

    /// Test hook (feature `test-util`): runs `f` on the stored versions of `id` behind the contract's back, the way
    /// a raw SQL `UPDATE` would tamper with a database.
    #[cfg(feature = "test-util")]
    pub fn tamper(&self, id: &StateId, f: impl FnOnce(&mut Vec<State>)) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        let versions = t.states.get_mut(id).ok_or_else(|| StoreError::NotFound {
            what: format!("state {id}"),
        })?;
        f(versions);
        Ok(())
    }

    /// Test hook (feature `test-util`): runs `f` on the recorded events (in recording order) behind the contract's
    /// back, the way a raw SQL `DELETE`/`UPDATE` of the event table would, then rebuilds the
    /// id and origin indexes from what is left.
    #[cfg(feature = "test-util")]
    pub fn tamper_events(&self, f: impl FnOnce(&mut Vec<EventRecord>)) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        f(&mut t.events);
        let t = &mut *t;
        t.event_index = t
            .events
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id(), i))
            .collect();
        t.origin = t
            .events
            .iter()
            .map(|r| {
                let e = r.event();
                ((e.origin_node.clone(), e.origin_seq), r.id())
            })
            .collect();
        Ok(())
    }
}

/// Test hooks (feature `test-util`) on the tables beside states and events, each the way a raw
/// SQL statement on that table would change it.
#[cfg(feature = "test-util")]
impl MemoryStore {
    fn tamper_with<T>(&self, f: impl FnOnce(&mut Tables) -> T) -> Result<T, StoreError> {
        Ok(f(&mut *self.lock()?))
    }

    /// Runs `f` on the log entries (in position order).
    pub fn tamper_log(&self, f: impl FnOnce(&mut Vec<LogEntry>)) -> Result<(), StoreError> {
        self.tamper_with(|t| f(&mut t.log))
    }

    /// Runs `f` on the actor directory.
    pub fn tamper_actors(
        &self,
        f: impl FnOnce(&mut BTreeMap<ActorId, Actor>),
    ) -> Result<(), StoreError> {
        self.tamper_with(|t| f(&mut t.actors))
    }

    /// Runs `f` on the contract table.
    pub fn tamper_contracts(
        &self,
        f: impl FnOnce(&mut BTreeMap<ContractRef, ContractRecord>),
    ) -> Result<(), StoreError> {
        self.tamper_with(|t| f(&mut t.contracts))
    }

    /// Runs `f` on the refusal table.
    pub fn tamper_refusals(
        &self,
        f: impl FnOnce(&mut BTreeMap<EventId, Refusal>),
    ) -> Result<(), StoreError> {
        self.tamper_with(|t| f(&mut t.refusals))
    }

    /// Runs `f` on the sink cursors, keyed by sink name.
    pub fn tamper_sink_cursors(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, u64>),
    ) -> Result<(), StoreError> {
        self.tamper_with(|t| f(&mut t.sink_cursors))
    }

    /// Runs `f` on the checkpoint table, keyed by node and position.
    pub fn tamper_checkpoints(
        &self,
        f: impl FnOnce(&mut BTreeMap<(NodeId, u64), SignedCheckpoint>),
    ) -> Result<(), StoreError> {
        self.tamper_with(|t| f(&mut t.checkpoints))
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            concurrent_writers: true,
            durable: false,
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReceipt, StoreError> {
        batch.validate()?;
        let mut guard = self.lock()?;
        let t = &mut *guard;
        // Read what is recorded, let the core decide, write the plan: all under one lock, so
        // either the whole batch lands or nothing does.
        let lookups = Lookups::of(&batch);
        let recorded = Recorded {
            versions: lookups
                .states
                .iter()
                .filter_map(|id| t.states.get(id).map(|v| (id.clone(), v.len() as u64)))
                .collect(),
            events: lookups
                .events
                .iter()
                .filter(|id| t.event_index.contains_key(id))
                .copied()
                .collect(),
            origins: lookups
                .origins
                .iter()
                .filter_map(|key| t.origin.get(key).map(|id| (key.clone(), *id)))
                .collect(),
            log_head: t.head(),
            // Versions are kept whole here: no section rows to plan.
            seals: Default::default(),
        };
        let plan = CommitPlan::new(&batch, &recorded)?;
        let receipt = plan.receipt();
        t.log.extend(plan.log.iter().cloned());
        let mut items: Vec<Option<CommitItem>> = batch.items.into_iter().map(Some).collect();
        for &i in &plan.record {
            let Some(item) = items[i].take() else {
                continue;
            };
            let id = item.event.id();
            if let Some(state) = item.state {
                t.states
                    .entry(state.id.clone())
                    .or_default()
                    .push(std::sync::Arc::unwrap_or_clone(state));
            }
            let e = item.event.event();
            t.origin.insert((e.origin_node.clone(), e.origin_seq), id);
            t.event_index.insert(id, t.events.len());
            t.events.push(item.event);
        }
        Ok(receipt)
    }

    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError> {
        Ok(self.lock()?.states.get(id).and_then(|v| v.last().cloned()))
    }

    async fn state_at(&self, id: &StateId, version: u64) -> Result<Option<State>, StoreError> {
        let t = self.lock()?;
        Ok(t.states
            .get(id)
            .and_then(|v| v.iter().find(|s| s.version == version).cloned()))
    }

    async fn state_ids(&self) -> Result<Vec<StateId>, StoreError> {
        Ok(self.lock()?.states.keys().cloned().collect())
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let t = self.lock()?;
        Ok(t.events
            .iter()
            .filter(|r| filter.matches(r))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let t = self.lock()?;
        Ok(t.event_index.get(id).map(|&i| t.events[i].clone()))
    }

    async fn last_origin_seq(&self, node: &NodeId) -> Result<OriginSeq, StoreError> {
        let t = self.lock()?;
        Ok(t.origin
            .range((node.clone(), OriginSeq(0))..=(node.clone(), OriginSeq(u64::MAX)))
            .next_back()
            .map(|((_, s), _)| *s)
            .unwrap_or_default())
    }

    async fn put_actor(&self, actor: &Actor) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        t.actors.insert(actor.id.clone(), actor.clone());
        t.append(&LogRecord::Actor(actor));
        Ok(())
    }

    async fn actor(&self, id: &ActorId) -> Result<Option<Actor>, StoreError> {
        Ok(self.lock()?.actors.get(id).cloned())
    }

    async fn actors(&self) -> Result<Vec<Actor>, StoreError> {
        Ok(self.lock()?.actors.values().cloned().collect())
    }

    async fn put_contract(&self, contract: &ContractRecord) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        let key = contract.contract().clone();
        let stored = t.contracts.get(&key).map(|c| c.identity);
        if ContractPut::decide(stored.as_ref(), contract)? == ContractPut::Insert {
            t.contracts.insert(key, contract.clone());
            t.append(&LogRecord::Contract(contract));
        }
        Ok(())
    }

    async fn contract(&self, contract: &ContractRef) -> Result<Option<ContractRecord>, StoreError> {
        Ok(self.lock()?.contracts.get(contract).cloned())
    }

    async fn put_refusal(&self, refusal: &Refusal) -> Result<(), StoreError> {
        check_refusal(refusal)?;
        let mut t = self.lock()?;
        t.refusals.insert(refusal.event, refusal.clone());
        t.append(&LogRecord::Refusal(refusal));
        Ok(())
    }

    async fn refusals(&self, state: Option<&StateId>) -> Result<Vec<Refusal>, StoreError> {
        let t = self.lock()?;
        let mut out: Vec<Refusal> = t
            .refusals
            .values()
            .filter(|r| state.is_none_or(|s| &r.state_id == s))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (&a.state_id, a.version, a.event).cmp(&(&b.state_id, b.version, b.event))
        });
        Ok(out)
    }

    async fn clear_refusal(&self, event: &EventId) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        if t.refusals.remove(event).is_some() {
            t.append(&LogRecord::RefusalCleared(event));
        }
        Ok(())
    }

    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        Ok(self.lock()?.contracts.values().cloned().collect())
    }

    async fn log(&self, after: u64, limit: Option<usize>) -> Result<Vec<LogEntry>, StoreError> {
        let t = self.lock()?;
        Ok(t.log
            .iter()
            .filter(|e| e.pos > after)
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn log_head(&self) -> Result<LogHead, StoreError> {
        Ok(self.lock()?.head())
    }

    async fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        let cp = &checkpoint.checkpoint;
        let key = (cp.node.clone(), cp.pos);
        match t.checkpoints.get(&key) {
            Some(held) if held.checkpoint.head != cp.head => {
                Err(StoreError::checkpoint_conflict(&cp.node, cp.pos))
            }
            Some(_) => Ok(()),
            None => {
                t.checkpoints.insert(key, checkpoint.clone());
                Ok(())
            }
        }
    }

    async fn checkpoints(&self, node: &NodeId) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let t = self.lock()?;
        Ok(t.checkpoints
            .range((node.clone(), 0)..=(node.clone(), u64::MAX))
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn prune_checkpoints(&self, node: &NodeId, keep: usize) -> Result<usize, StoreError> {
        check_prune_keep(keep)?;
        let mut t = self.lock()?;
        let doomed: Vec<(NodeId, u64)> = t
            .checkpoints
            .range((node.clone(), 0)..=(node.clone(), u64::MAX))
            .rev()
            .skip(keep)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            t.checkpoints.remove(key);
        }
        Ok(doomed.len())
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        check_sink_name(sink)?;
        Ok(self.lock()?.sink_cursors.get(sink).copied())
    }

    async fn set_sink_cursor(&self, sink: &str, position: u64) -> Result<(), StoreError> {
        check_sink_name(sink)?;
        to_i64("position", position)?;
        let mut t = self.lock()?;
        let cursor = t.sink_cursors.entry(sink.to_owned()).or_insert(position);
        *cursor = (*cursor).max(position);
        Ok(())
    }
}
