//! [`MemoryStore`]: the in-memory reference implementation of the [`Store`] contract, used by
//! the conformance suite as the model every database adapter must match, and by unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::hash::EventId;
use crate::model::{
    Actor, ActorId, ContractRecord, ContractRef, EventRecord, NodeId, OriginSeq, State, StateId,
};
use crate::store::{Capabilities, CommitBatch, CommitReceipt, EventFilter, Store};

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

    /// Test hook: runs `f` on the stored versions of `id` behind the contract's back, the way
    /// a raw SQL `UPDATE` would tamper with a database.
    pub fn tamper(&self, id: &StateId, f: impl FnOnce(&mut Vec<State>)) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        let versions = t.states.get_mut(id).ok_or_else(|| StoreError::NotFound {
            what: format!("state {id}"),
        })?;
        f(versions);
        Ok(())
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
        // Check every item against the stored tables plus the batch so far, then apply:
        // either the whole batch lands or nothing does.
        let mut receipt = CommitReceipt::default();
        let mut versions: BTreeMap<StateId, u64> = BTreeMap::new();
        let mut origins: BTreeMap<(NodeId, OriginSeq), EventId> = BTreeMap::new();
        let mut plan = Vec::with_capacity(batch.items.len());
        for item in batch.items {
            let id = item.event.id();
            if t.event_index.contains_key(&id) {
                receipt.duplicates.push(id);
                continue;
            }
            let e = item.event.event();
            let key = (e.origin_node.clone(), e.origin_seq);
            if let Some(other) = t.origin.get(&key).or_else(|| origins.get(&key)) {
                if *other != id {
                    return Err(StoreError::Conflict {
                        what: format!("origin {} seq {}", key.0, key.1),
                        expected: key.1 .0.saturating_sub(1),
                        found: key.1 .0,
                    });
                }
            }
            if let Some(state) = &item.state {
                let current = match versions.get(&state.id) {
                    Some(v) => *v,
                    None => t.states.get(&state.id).map_or(0, |v| v.len() as u64),
                };
                if state.version != current + 1 {
                    return Err(StoreError::Conflict {
                        what: format!("state {}", state.id),
                        expected: state.version - 1,
                        found: current,
                    });
                }
                versions.insert(state.id.clone(), state.version);
            }
            origins.insert(key, id);
            plan.push(item);
        }
        for item in plan {
            let id = item.event.id();
            if let Some(state) = item.state {
                t.states.entry(state.id.clone()).or_default().push(state);
            }
            let e = item.event.event();
            t.origin.insert((e.origin_node.clone(), e.origin_seq), id);
            t.event_index.insert(id, t.events.len());
            t.events.push(item.event);
            receipt.committed.push(id);
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
        self.lock()?.actors.insert(actor.id.clone(), actor.clone());
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
        if let Some(existing) = t.contracts.get(&key) {
            if existing.identity != contract.identity {
                return Err(StoreError::Conflict {
                    what: format!(
                        "contract {key} (identity {} vs {})",
                        existing.identity, contract.identity
                    ),
                    expected: u64::from(key.version),
                    found: u64::from(key.version),
                });
            }
            return Ok(());
        }
        t.contracts.insert(key, contract.clone());
        Ok(())
    }

    async fn contract(&self, contract: &ContractRef) -> Result<Option<ContractRecord>, StoreError> {
        Ok(self.lock()?.contracts.get(contract).cloned())
    }

    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        Ok(self.lock()?.contracts.values().cloned().collect())
    }
}
