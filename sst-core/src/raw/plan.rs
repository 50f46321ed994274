//! The commit decision, once for every backend: given a validated batch and what the store
//! has recorded about it, which items are duplicates, which conflict, and which rows to write.
//!
//! An adapter's `commit` is then three steps: read what [`Lookups`] names and the log head
//! (inside its transaction, with the touched rows locked where the engine needs it), call
//! [`CommitPlan::new`], and write the plan, log entries included. The adapter never decides
//! itself.
//!
//! Every other write (`put_actor`, `put_contract`, `put_refusal`, `clear_refusal`) likewise
//! reads the log head and appends [`LogHead::append`]'s entry in the same transaction as the
//! record. Two writers that read the same head race for the same log position: the loser
//! hits the log table's unique position, and the adapter re-runs its whole transaction (up to
//! [`RACE_RETRIES`] times), so the re-read plan either succeeds or reports the real conflict.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::StoreError;
use serde_json::Value;

use crate::hash::{Digest, EventId, HashAlg, SectionHash};
use crate::log::{LogEntry, LogHead, LogRecord};
use crate::model::{ContractRecord, NodeId, OriginSeq, SectionSeal, State, StateId};
use crate::store::{CommitBatch, CommitItem, CommitReceipt};

/// How many times an adapter re-runs a write transaction that lost a race for a unique key
/// (the log position above all) before reporting the error. A write loses only when another
/// one commits, so a writer among `n` concurrent ones that each write `k` times can lose at
/// most `n·k − 1` times in a row; a node is its store's only writer, and 16 covers the
/// bursts of several writers on one store (the conformance suite's race: 6 writers, 2 writes
/// each), even on a loaded machine where the same writer can keep losing.
pub const RACE_RETRIES: usize = 16;

/// What a store must look up before planning a batch: the touched states' current versions,
/// whether the batch's event ids are recorded, and who holds the batch's origin sequences.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lookups {
    /// Distinct ids of the states the batch writes, sorted (lock them in this order).
    pub states: Vec<StateId>,
    /// Ids of every event in the batch, in batch order.
    pub events: Vec<EventId>,
    /// Distinct `(origin_node, origin_seq)` of the batch's events, sorted.
    pub origins: Vec<(NodeId, OriginSeq)>,
}

impl Lookups {
    /// What `batch` needs looked up.
    pub fn of(batch: &CommitBatch) -> Self {
        let mut states = BTreeSet::new();
        let mut origins = BTreeSet::new();
        let mut events = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let e = item.event.event();
            events.push(item.event.id());
            origins.insert((e.origin_node.clone(), e.origin_seq));
            if let Some(s) = &item.state {
                states.insert(s.id.clone());
            }
        }
        Lookups {
            states: states.into_iter().collect(),
            events,
            origins: origins.into_iter().collect(),
        }
    }
}

/// What the store holds for the keys of a [`Lookups`]. Absent entries mean "nothing recorded":
/// a state without an entry does not exist (version 0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recorded {
    /// Current stored version of each touched state that exists.
    pub versions: BTreeMap<StateId, u64>,
    /// Batch event ids already recorded.
    pub events: BTreeSet<EventId>,
    /// The event recorded under each taken `(origin_node, origin_seq)` of the batch.
    pub origins: BTreeMap<(NodeId, OriginSeq), EventId>,
    /// The head of the log (its last entry), [`LogHead::default`] for an empty log.
    pub log_head: LogHead,
    /// The section seals of each touched state's stored current version, as its history row
    /// holds them (section-version layout). A state that exists without an entry here is
    /// written in full: every disclosed section of its first new version, and the whole data
    /// document of its current row.
    pub seals: BTreeMap<StateId, BTreeMap<String, SectionSeal>>,
}

/// How the queryable data document of a current-state row changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataWrite {
    /// Write the whole document (a new state, or a stored one whose seals are unknown).
    Whole,
    /// Set these sections (their plaintext in the row's new state) and remove those; every
    /// other section of the stored document stays as it is.
    Patch {
        /// Sections whose disclosed version differs from the stored one, by name.
        set: Vec<String>,
        /// Sections the stored document holds that the new state does not disclose.
        remove: Vec<String>,
    },
}

/// A section version to store once, keyed by `(state, name, hash)`: history rows and later
/// versions reference it by that key instead of carrying its plaintext again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SectionVersion<'a> {
    /// The state it belongs to.
    pub state: &'a StateId,
    /// Section name.
    pub name: &'a str,
    /// Section hash (salted, so one per version of the section).
    pub hash: SectionHash,
    /// Its plaintext.
    pub value: &'a Value,
}

/// The version a new state version is compared with to find what changed.
#[derive(Clone, Copy)]
enum Before<'a> {
    /// Nothing known: everything is new.
    Unknown,
    /// The stored current version's seals.
    Stored(&'a BTreeMap<String, SectionSeal>),
    /// The version before it in the same batch.
    Batch(&'a State),
}

impl Before<'_> {
    /// Whether `name` was disclosed with exactly `hash`.
    fn holds(&self, name: &str, hash: &SectionHash) -> bool {
        match self {
            Before::Unknown => false,
            Before::Stored(seals) => seals
                .get(name)
                .is_some_and(|s| s.salt.is_some() && s.hash == *hash),
            Before::Batch(state) => state
                .sections
                .get(name)
                .is_some_and(|s| s.disclosure.is_some() && s.hash == *hash),
        }
    }
}

/// How the current-state row of one state is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentWrite {
    /// The state is new: insert its row.
    Insert,
    /// Replace the row that is still at version `from` (a guard against a concurrent writer).
    Update {
        /// The stored version the plan was made against.
        from: u64,
    },
}

/// The final current-state row of one touched state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentRow {
    /// Index in the batch of the item carrying the state's last new version.
    pub item: usize,
    /// Insert or guarded update.
    pub write: CurrentWrite,
    /// How its data document changes.
    pub data: DataWrite,
}

/// The rows one commit writes, as indices into its batch. Apply all of it in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitPlan {
    /// Items to record, in batch order: an event row each, plus a history row for each item
    /// that carries a state version.
    pub record: Vec<usize>,
    /// Items skipped because their event id is already recorded (with their state versions).
    pub duplicates: Vec<usize>,
    /// One current-state row per state the plan writes, ordered by state id.
    pub current: Vec<CurrentRow>,
    /// One log entry per recorded item, in the order of `record`, chained after the head.
    pub log: Vec<LogEntry>,
    /// New section versions as `(item, section name)`, in batch order: each disclosed section
    /// of a recorded state version whose hash differs from that section's in the version
    /// before it (earlier in the batch, or stored per [`Recorded::seals`]). Unchanged sections
    /// are never written again. Insert each under its key, skipping a key already stored (a
    /// section reverted to an earlier version with that version's salt has its key).
    pub sections: Vec<(usize, String)>,
    receipt: CommitReceipt,
}

impl CommitPlan {
    /// Decides a batch against what is recorded. The batch must already have passed
    /// [`CommitBatch::validate`] (ids unique within the batch, versions consecutive per state).
    ///
    /// Rules (the `Store` contract's `# Contract`):
    /// - an event whose id is recorded is a duplicate: skipped with its state version;
    /// - a different event holding the same `(origin_node, origin_seq)`, recorded or earlier in
    ///   the batch, is [`ConflictKind::OriginTaken`](crate::ConflictKind::OriginTaken);
    /// - an applied state version must be exactly one more than the stored version (or the one
    ///   before it in the batch), 1 for a new state; otherwise
    ///   [`ConflictKind::StaleVersion`](crate::ConflictKind::StaleVersion) with `expected` =
    ///   the version the writer built on and `found` = the version held.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] for the first item that breaks a rule; nothing is to be written.
    pub fn new(batch: &CommitBatch, recorded: &Recorded) -> Result<CommitPlan, StoreError> {
        Self::new_with(batch, recorded, None)
    }

    /// [`CommitPlan::new`] with the digests of the batch's log records computed beforehand
    /// ([`RecordDigests::of`], e.g. before a writer's transaction): each is used where it is
    /// the digest of that very item under the log's hash algorithm; any other is computed
    /// here. The plan is exactly [`CommitPlan::new`]'s.
    ///
    /// # Errors
    /// As [`CommitPlan::new`].
    pub fn new_with(
        batch: &CommitBatch,
        recorded: &Recorded,
        digests: Option<&RecordDigests>,
    ) -> Result<CommitPlan, StoreError> {
        let mut plan = CommitPlan::default();
        let mut versions: BTreeMap<&StateId, u64> = BTreeMap::new();
        let mut first: BTreeMap<&StateId, u64> = BTreeMap::new();
        let mut last: BTreeMap<&StateId, usize> = BTreeMap::new();
        let mut origins: BTreeSet<(&NodeId, OriginSeq)> = BTreeSet::new();
        let mut before: BTreeMap<&StateId, Before<'_>> = BTreeMap::new();
        for (i, item) in batch.items.iter().enumerate() {
            let id = item.event.id();
            if recorded.events.contains(&id) {
                plan.duplicates.push(i);
                plan.receipt.duplicates.push(id);
                continue;
            }
            let e = item.event.event();
            let key = (e.origin_node.clone(), e.origin_seq);
            let taken = recorded.origins.get(&key).is_some_and(|owner| *owner != id)
                || !origins.insert((&e.origin_node, e.origin_seq));
            if taken {
                return Err(StoreError::origin_taken(&e.origin_node, e.origin_seq));
            }
            if let Some(state) = &item.state {
                let stored = recorded.versions.get(&state.id).copied().unwrap_or(0);
                let current = versions.get(&state.id).copied().unwrap_or(stored);
                if state.version != current + 1 {
                    return Err(StoreError::stale_version(
                        &state.id,
                        state.version.saturating_sub(1),
                        current,
                    ));
                }
                versions.insert(&state.id, state.version);
                first.entry(&state.id).or_insert(stored);
                last.insert(&state.id, i);
                let prior = *before.entry(&state.id).or_insert_with(|| {
                    recorded
                        .seals
                        .get(&state.id)
                        .filter(|_| stored > 0)
                        .map_or(Before::Unknown, Before::Stored)
                });
                for (name, section) in &state.sections {
                    if section.disclosure.is_some() && !prior.holds(name, &section.hash) {
                        plan.sections.push((i, name.clone()));
                    }
                }
                before.insert(&state.id, Before::Batch(state));
            }
            plan.record.push(i);
            plan.receipt.committed.push(id);
        }
        let mut head = recorded.log_head;
        for &i in &plan.record {
            let event = &batch.items[i].event;
            let record = LogRecord::Event(event);
            let entry = match digests.and_then(|d| d.get(i, event.id(), head.hash.alg())) {
                Some(digest) => LogEntry::new(
                    head.pos + 1,
                    record.kind(),
                    record.subject(),
                    digest,
                    head.hash,
                ),
                None => head.append(&record),
            };
            head = entry.head();
            plan.log.push(entry);
        }
        plan.receipt.log_head = Some(head);
        plan.current = last
            .into_iter()
            .map(|(state, item)| {
                let from = first.get(state).copied().unwrap_or(0);
                let stored = recorded.seals.get(state).filter(|_| from > 0);
                let data = match (&batch.items[item].state, stored) {
                    (Some(new), Some(seals)) => data_patch(new, seals),
                    _ => DataWrite::Whole,
                };
                CurrentRow {
                    item,
                    write: if from == 0 {
                        CurrentWrite::Insert
                    } else {
                        CurrentWrite::Update { from }
                    },
                    data,
                }
            })
            .collect();
        Ok(plan)
    }

    /// The new section versions to store ([`CommitPlan::sections`]) with their keys and
    /// plaintext, in batch order.
    pub fn section_versions<'a>(
        &'a self,
        batch: &'a CommitBatch,
    ) -> impl Iterator<Item = SectionVersion<'a>> + 'a {
        self.sections.iter().filter_map(move |(i, name)| {
            let state = batch.items[*i].state.as_deref()?;
            let (name, section) = state.sections.get_key_value(name)?;
            Some(SectionVersion {
                state: &state.id,
                name,
                hash: section.hash,
                value: section.value()?,
            })
        })
    }

    /// What the commit reports once the plan is written.
    pub fn receipt(&self) -> CommitReceipt {
        self.receipt.clone()
    }

    /// Whether nothing is to be written (every item a duplicate, or an empty batch).
    pub fn is_empty(&self) -> bool {
        self.record.is_empty()
    }

    /// The items to record, in batch order.
    pub fn recorded_items<'a>(
        &'a self,
        batch: &'a CommitBatch,
    ) -> impl Iterator<Item = &'a CommitItem> + 'a {
        self.record.iter().map(move |&i| &batch.items[i])
    }

    /// The new state versions to append to the history, in batch order.
    pub fn history<'a>(&'a self, batch: &'a CommitBatch) -> impl Iterator<Item = &'a State> + 'a {
        self.recorded_items(batch)
            .filter_map(|item| item.state.as_deref())
    }

    /// The final current-state rows with the state each one holds.
    pub fn current_states<'a>(
        &'a self,
        batch: &'a CommitBatch,
    ) -> impl Iterator<Item = (&'a State, CurrentWrite)> + 'a {
        self.current.iter().filter_map(move |row| {
            batch.items[row.item]
                .state
                .as_deref()
                .map(|state| (state, row.write))
        })
    }
}

/// The change from the stored document (its sections per `stored`) to `new`'s disclosed
/// sections.
fn data_patch(new: &State, stored: &BTreeMap<String, SectionSeal>) -> DataWrite {
    let before = Before::Stored(stored);
    let set = new
        .sections
        .iter()
        .filter(|(name, s)| s.disclosure.is_some() && !before.holds(name, &s.hash))
        .map(|(name, _)| name.clone())
        .collect();
    let remove = stored
        .iter()
        .filter(|(name, seal)| {
            seal.salt.is_some()
                && new
                    .sections
                    .get(*name)
                    .is_none_or(|s| s.disclosure.is_none())
        })
        .map(|(name, _)| name.clone())
        .collect();
    DataWrite::Patch { set, remove }
}

/// What [`Store::put_contract`](crate::Store::put_contract) does with a contract record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractPut {
    /// Not recorded yet: insert it.
    Insert,
    /// The same identity is recorded under this name and version: nothing to do.
    AlreadyRecorded,
}

impl ContractPut {
    /// The redeploy rule: given the identity recorded under the record's name and version (if
    /// any), insert, do nothing, or refuse.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] of kind
    /// [`ConflictKind::ContractIdentity`](crate::ConflictKind::ContractIdentity) when a
    /// different identity is recorded.
    pub fn decide(stored: Option<&Digest>, offered: &ContractRecord) -> Result<Self, StoreError> {
        match stored {
            None => Ok(ContractPut::Insert),
            Some(d) if *d == offered.identity => Ok(ContractPut::AlreadyRecorded),
            Some(d) => Err(StoreError::contract_identity(
                offered.contract(),
                d,
                offered.identity,
            )),
        }
    }
}

/// The digests of a batch's event log records ([`LogRecord::digest`]) under one hash
/// algorithm, computed before the commit that appends them (they need no store), each kept
/// with the event id it belongs to.
#[derive(Debug, Clone)]
pub struct RecordDigests {
    alg: HashAlg,
    digests: Vec<(EventId, Digest)>,
}

impl RecordDigests {
    /// The digest of every item's event record of `batch` under `alg` (the log's, normally
    /// [`HashAlg::Blake3`]: a log of another algorithm computes its own).
    pub fn of(batch: &CommitBatch, alg: HashAlg) -> Self {
        RecordDigests {
            alg,
            digests: batch
                .items
                .iter()
                .map(|item| (item.event.id(), LogRecord::Event(&item.event).digest(alg)))
                .collect(),
        }
    }

    /// The digest of item `i`, if it was computed for event `id` under `alg`.
    fn get(&self, i: usize, id: EventId, alg: HashAlg) -> Option<Digest> {
        if self.alg != alg {
            return None;
        }
        self.digests
            .get(i)
            .filter(|(for_id, _)| *for_id == id)
            .map(|(_, digest)| *digest)
    }
}
