//! Whole-store verification: treat every peer table as hostile input. Recompute every stored
//! state version's section hashes and root from what the store reads back (its native,
//! user-queryable columns), bind every version to the applied event that produced it and every
//! applied event to its version, check that the current-state row is exactly the latest
//! version the log says was applied, that each create/change wrote exactly the section hashes
//! its signed event names (and left the others unchanged), every event's id and strict
//! signature (rejected ones too, where the pipeline had checked it), and every contract
//! record's identity and deployer signature.
//!
//! Then the log: the hash chain has no gap, duplicate, reordering or rewritten entry; every
//! event, actor, contract and refusal row is exactly the record its (latest) log entry binds,
//! and no entry binds a row that is gone; events are recorded in log order. With
//! [`TrustAnchors`] (the node registry from configuration), every event's sequencing receipt
//! and every checkpoint signature is checked too, and the node's own checkpoints must match
//! the chain (a log cut below a surviving checkpoint is caught here; a cut that also removed
//! the checkpoints is caught by the peers that witnessed them).
//!
//! Endorsements too, with [`TrustAnchors`]: every applied state event of a contract version
//! whose verified record chooses the `endorsed` protocol must carry endorsements that verify
//! under the endorsing nodes' registered keys and meet the record's policy, for the
//! participant nodes of the version the event was based on (of the created version, for a
//! create), each actor on the node its signed actor changes (or its directory row) name
//! ([`crate::model::check_endorsements`], the rule the nodes apply).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::error::StoreError;
use crate::hash::{Digest, EventId, HashAlg, StateRoot};
use crate::log::{LogEntry, LogHead, LogKind, LogRecord};
use crate::model::{
    check_endorsements, participant_nodes, Actor, ActorChange, ActorId, ActorStatus, ChangePayload,
    ContractRecord, ContractRef, CreatePayload, EndorsementPolicy, EventKind, EventRecord, NodeId,
    NodeRegistry, Outcome, Parties, Refusal, RejectReason, Role, SequencingReceipt, State, StateId,
};
use crate::parallel::{self, available_workers};
use crate::sign::{verify_strict_many, PublicKey};

use futures_util::{stream, StreamExt, TryStreamExt};

/// How many states [`verify_store_with`] reads at once (their store round trips overlap).
const STATE_CONCURRENCY: usize = 8;

/// How many states are read before their checks run, spread over every core.
const STATE_GROUP: usize = 64;

/// Below this many items per thread, a parallel check runs on one thread.
const MIN_PER_THREAD: usize = 32;

use crate::store::{EventFilter, Store};

/// The peer table a [`Finding`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PeerTable {
    /// The current-state table (`sst_state`), the one users query.
    State,
    /// The state history (`sst_state_history`).
    History,
    /// The event log (`sst_event`).
    Event,
    /// The contract table (`sst_contract`).
    Contract,
    /// The actor directory (`sst_actor`).
    Actor,
    /// The refusal table (`sst_refusal`).
    Refusal,
    /// The hash-chained log (`sst_log`).
    Log,
    /// The checkpoint table (`sst_checkpoint`).
    Checkpoint,
}

impl fmt::Display for PeerTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerTable::State => "state",
            PeerTable::History => "history",
            PeerTable::Event => "event",
            PeerTable::Contract => "contract",
            PeerTable::Actor => "actor",
            PeerTable::Refusal => "refusal",
            PeerTable::Log => "log",
            PeerTable::Checkpoint => "checkpoint",
        })
    }
}

/// The rule a [`Finding`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// A row cannot be read back into the model (malformed, or a value changed so that it no
    /// longer hashes to its section hash / root).
    Integrity,
    /// A version's `prev_root` is not the root of the version before it.
    HistoryChain,
    /// A version the log says was applied is missing from the history.
    VersionMissing,
    /// A history version that no applied event in the log produced (inserted, or its event
    /// deleted).
    UnboundVersion,
    /// The current-state row is missing, older or newer than the latest applied version, or
    /// differs from it.
    CurrentRow,
    /// Two applied events claim the same version of a state, or a state's applied events are
    /// out of version order in the log.
    EventOrder,
    /// A version's section hashes differ from those its signed create/change event wrote, or a
    /// section the event did not name changed.
    SignedSections,
    /// An event id is not the hash of its body.
    EventId,
    /// A signature is missing or does not verify strictly under the key valid at that point.
    Signature,
    /// An applied event is signed by an actor unknown at that point, or revoked.
    Actor,
    /// A contract record's identity or deployer signature does not verify.
    Contract,
    /// The log's hash chain is broken: a position missing, repeated or out of order, an
    /// entry whose hash is not the hash of its fields, or one that does not link to the entry
    /// before it.
    LogChain,
    /// A row differs from the record its log entry binds, has no log entry, or a log entry
    /// binds a row that is gone.
    LogRecord,
    /// A checkpoint's signature does not verify under the node's registered key, or the log
    /// no longer holds the head it signed (rewritten or cut).
    Checkpoint,
    /// An event's sequencing receipt is missing or does not verify under the sequencing
    /// node's registered key.
    Receipt,
    /// An applied event of a contract on the `endorsed` protocol lacks the endorsements its
    /// policy requires, or carries one that does not verify under the node's registered key
    /// (forged, or over another outcome), comes from a node that is not a participant of the
    /// state, or repeats a node.
    Endorsement,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Integrity => "integrity",
            Rule::HistoryChain => "history_chain",
            Rule::VersionMissing => "version_missing",
            Rule::UnboundVersion => "unbound_version",
            Rule::CurrentRow => "current_row",
            Rule::EventOrder => "event_order",
            Rule::SignedSections => "signed_sections",
            Rule::EventId => "event_id",
            Rule::Signature => "signature",
            Rule::Actor => "actor",
            Rule::Contract => "contract",
            Rule::LogChain => "log_chain",
            Rule::LogRecord => "log_record",
            Rule::Checkpoint => "checkpoint",
            Rule::Receipt => "receipt",
            Rule::Endorsement => "endorsement",
        })
    }
}

/// One problem found by [`verify_store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// State concerned (empty for records without a state).
    pub state_id: StateId,
    /// Version concerned, when the problem is in one state version.
    pub version: Option<u64>,
    /// Event concerned, when the problem is in an event.
    pub event: Option<String>,
    /// The table whose row is wrong (or missing).
    pub table: PeerTable,
    /// The rule it breaks.
    pub rule: Rule,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}/{}] {}", self.table, self.rule, self.state_id)?;
        if let Some(v) = self.version {
            write!(f, " v{v}")?;
        }
        if let Some(e) = &self.event {
            write!(f, " event {e}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Result of [`verify_store`].
///
/// Event signatures are checked against the key valid at each event's position in the log:
/// events are walked in recording order, each actor starts with the `previous_key` of its
/// first applied [`crate::EventKind::ActorChange`] event (or its current directory key when it
/// has none), and every applied actor change switches to the key (and status) it records.
/// An applied event signed after its actor's revocation is reported.
///
/// What local verification cannot see: a consistent rewrite of records, log and checkpoints by
/// someone holding this node's own key, and a log whose tail was cut together with its records
/// and this node's checkpoints past the cut. Peers that witnessed this node's checkpoints can
/// (sst-node raises a witness alarm).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// States walked.
    pub states: usize,
    /// State versions recomputed.
    pub versions: usize,
    /// Events checked.
    pub events: usize,
    /// Contract records checked.
    pub contracts: usize,
    /// Log entries checked.
    pub log_entries: usize,
    /// Checkpoints checked (own and witnessed).
    pub checkpoints: usize,
    /// Applied state events of contracts on the `endorsed` protocol (by their verified
    /// contract records); their endorsements were checked when [`VerifyReport::anchored`].
    pub endorsed: usize,
    /// Whether receipts, endorsements and checkpoint signatures were checked against a node
    /// registry.
    pub anchored: bool,
    /// Everything that did not verify (empty = store verified).
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// An applied state event as the log records it.
struct Applied<'a> {
    version: u64,
    root: StateRoot,
    record: &'a EventRecord,
}

/// Reasons under which the pipeline refused an intent before (or because) its signature
/// checked out: such rejected records are kept as evidence even when their signature is bad.
fn signature_unchecked(reason: &RejectReason) -> bool {
    matches!(
        reason,
        RejectReason::BadSignature { .. }
            | RejectReason::UnknownActor { .. }
            | RejectReason::RevokedActor { .. }
            | RejectReason::InvalidPayload { .. }
    )
}

/// What verification trusts from outside the database it checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    /// The network's node keys, from configuration. Empty: receipts, endorsements and
    /// checkpoint signatures cannot be checked (the report says so: [`VerifyReport::anchored`]
    /// is false).
    pub registry: NodeRegistry,
    /// The node whose database this is: its own checkpoints are compared with its log.
    pub node: Option<NodeId>,
}

impl TrustAnchors {
    /// Anchors for the database of `node` in a network with `registry`.
    pub fn new(registry: NodeRegistry, node: Option<NodeId>) -> Self {
        TrustAnchors { registry, node }
    }
}

/// [`verify_store_with`] without trust anchors: everything the database can prove about
/// itself (receipts, endorsements and checkpoint signatures are not checked).
///
/// # Errors
/// As [`verify_store_with`].
pub async fn verify_store(
    store: &dyn Store,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<VerifyReport, StoreError> {
    verify_store_with(store, &TrustAnchors::default(), progress).await
}

/// Verifies every state version, every event, every contract record and the log of `store`,
/// checking receipts, endorsements and checkpoints against `anchors`. `progress(done,
/// total)` is called after each state (for progress bars). Backend failures abort with an
/// error; integrity problems are collected as findings naming the table, the rule, and the
/// exact state, version, event or log position.
///
/// # Errors
/// [`StoreError::Backend`] when the store cannot be read at all.
pub async fn verify_store_with(
    store: &dyn Store,
    anchors: &TrustAnchors,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let records = read_records(store, &mut report).await?;
    let events = &records.events;
    report.events = events.len();

    // What the log says was applied, per state, in recording order.
    let mut applied: BTreeMap<&StateId, Vec<Applied<'_>>> = BTreeMap::new();
    for rec in events {
        if let Outcome::Applied { version, root } = rec.outcome {
            if version > 0 {
                applied
                    .entry(&rec.event().state_id)
                    .or_default()
                    .push(Applied {
                        version,
                        root,
                        record: rec,
                    });
            }
        }
    }

    // The versions whose parties decide who had to endorse an event of an endorsed contract.
    // The stored descriptors only choose what to keep here; whether a contract is endorsed is
    // decided below from the records that verify.
    let endorsed_contracts: BTreeSet<&ContractRef> = match &records.contracts {
        Ok(contracts) => contracts
            .iter()
            .filter(|c| c.descriptor.endorsement_policy().is_some())
            .map(ContractRecord::contract)
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    let mut endorsers_from: BTreeMap<&StateId, BTreeSet<u64>> = BTreeMap::new();
    for a in applied.values().flatten() {
        let e = a.record.event();
        if let Some(v) = endorsed_contracts
            .contains(&e.contract)
            .then(|| participants_version(e.kind, a.version))
            .flatten()
        {
            endorsers_from.entry(&e.state_id).or_default().insert(v);
        }
    }

    // Every state that has a row or an applied event: a state deleted from both state tables
    // is still named by its events.
    let mut ids: BTreeSet<StateId> = store.state_ids().await?.into_iter().collect();
    ids.extend(applied.keys().map(|s| (*s).clone()));
    report.states = ids.len();
    // States are independent: a group of them is read (their store round trips overlap),
    // then checked on every core, and their findings are merged in state order.
    let workers = available_workers();
    let ids: Vec<&StateId> = ids.iter().collect();
    let log_of = |id: &StateId| applied.get(id).map(Vec::as_slice).unwrap_or_default();
    let no_versions = BTreeSet::new();
    let mut parties: BTreeMap<&StateId, BTreeMap<u64, Parties>> = BTreeMap::new();
    let mut done = 0;
    for group in ids.chunks(STATE_GROUP) {
        let rows: Vec<(&StateId, StateRows)> = stream::iter(group.iter().map(|id| {
            let log_latest = log_of(id).iter().map(|a| a.version).max().unwrap_or(0);
            async move { read_state(store, id, log_latest).await.map(|r| (*id, r)) }
        }))
        .buffered(STATE_CONCURRENCY)
        .try_collect()
        .await?;
        let parts = parallel::map(&rows, workers, 1, |(id, rows)| {
            let mut part = VerifyReport::default();
            let wanted = endorsers_from.get(id).unwrap_or(&no_versions);
            let held = check_state(id, log_of(id), rows, wanted, &mut part);
            (part, held)
        });
        for ((id, _), (mut part, held)) in rows.iter().zip(parts) {
            report.versions += part.versions;
            report.findings.append(&mut part.findings);
            if !held.is_empty() {
                parties.insert(*id, held);
            }
            done += 1;
            progress(done, report.states);
        }
    }

    let held = verify_events(store, events, &mut report).await?;
    let policies = verify_contracts(store, &held, &mut report).await?;
    verify_endorsements(&records, &policies, &parties, anchors, &mut report);
    verify_log_bindings(store, &records, anchors, &mut report).await?;
    Ok(report)
}

/// The log part of [`verify_store_with`] alone: the chain, every row's binding to its entry,
/// receipts and checkpoints, without recomputing states or event signatures. Cheap enough for
/// a node to run at every start.
///
/// # Errors
/// [`StoreError::Backend`] when the store cannot be read at all.
pub async fn verify_log(
    store: &dyn Store,
    anchors: &TrustAnchors,
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let records = read_records(store, &mut report).await?;
    report.events = records.events.len();
    verify_log_bindings(store, &records, anchors, &mut report).await?;
    Ok(report)
}

/// The log and every row it binds, read so that they belong together.
struct Records {
    entries: Vec<LogEntry>,
    events: Vec<EventRecord>,
    actors: Vec<Actor>,
    /// `Err` holds an unreadable table's integrity error (reported elsewhere or here).
    contracts: Result<Vec<ContractRecord>, StoreError>,
    refusals: Result<Vec<Refusal>, StoreError>,
}

/// How often [`read_records`] re-reads when the log moved while it read (a live node).
const SNAPSHOT_ATTEMPTS: usize = 5;

/// Reads the rows, then the log, and checks that the log head did not move since before the
/// rows were read: entries are committed in the same transaction as their rows, so then every
/// row read has its entry and every entry its row. On a node that keeps writing, it re-reads
/// (a few times) instead of reporting a commit that landed mid-read as tampering.
async fn read_records(store: &dyn Store, report: &mut VerifyReport) -> Result<Records, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut scratch = VerifyReport::default();
        let before = match store.log_head().await {
            Ok(h) => Some(h),
            Err(StoreError::Integrity { .. }) => None,
            Err(e) => return Err(e),
        };
        let events = read_events(store, &mut scratch).await?;
        let actors = store.actors().await?;
        let contracts = match store.contracts().await {
            Err(e @ StoreError::Integrity { .. }) => Err(e),
            Err(e) => return Err(e),
            Ok(c) => Ok(c),
        };
        let refusals = match store.refusals(None).await {
            Err(e @ StoreError::Integrity { .. }) => Err(e),
            Err(e) => return Err(e),
            Ok(r) => Ok(r),
        };
        let entries = read_log(store, &mut scratch).await?;
        let after = entries.last().map_or(0, |e| e.pos);
        let settled = before.is_none_or(|h| h.pos == after);
        if settled || attempt >= SNAPSHOT_ATTEMPTS {
            report.log_entries = scratch.log_entries;
            report.findings.append(&mut scratch.findings);
            return Ok(Records {
                entries,
                events,
                actors,
                contracts,
                refusals,
            });
        }
    }
}

fn record_finding(table: PeerTable, rule: Rule, problem: String) -> Finding {
    Finding {
        state_id: StateId::new(""),
        version: None,
        event: None,
        table,
        rule,
        problem,
    }
}

/// The whole log; an unreadable log is one finding and an empty list.
async fn read_log(
    store: &dyn Store,
    report: &mut VerifyReport,
) -> Result<Vec<LogEntry>, StoreError> {
    match store.log(0, None).await {
        Ok(entries) => {
            report.log_entries = entries.len();
            Ok(entries)
        }
        Err(StoreError::Integrity { what, source }) => {
            report.findings.push(record_finding(
                PeerTable::Log,
                Rule::Integrity,
                format!("{what}: {source}"),
            ));
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// Every event in recording order. When a row cannot be read back (an edited column), the
/// events the log names are read one by one, so each unreadable row becomes its own finding.
async fn read_events(
    store: &dyn Store,
    report: &mut VerifyReport,
) -> Result<Vec<EventRecord>, StoreError> {
    match store.events(&EventFilter::default()).await {
        Ok(events) => return Ok(events),
        Err(StoreError::Integrity { .. }) => {}
        Err(e) => return Err(e),
    }
    let entries = store.log(0, None).await.unwrap_or_default();
    let mut events = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in entries.iter().filter(|e| e.kind == LogKind::Event) {
        let Ok(id) = entry.subject.parse::<EventId>() else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        match store.event(&id).await {
            Ok(Some(rec)) => events.push(rec),
            Ok(None) => {}
            Err(StoreError::Integrity { what, source }) => report.findings.push(Finding {
                event: Some(id.to_string()),
                ..record_finding(
                    PeerTable::Event,
                    Rule::Integrity,
                    format!("{what}: {source}"),
                )
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(events)
}

/// Walks the chain: positions 1, 2, … each hashing to its stored hash and linking to the one
/// before. After a break the walk resynchronises on the entry found, so each break is
/// reported once.
fn check_chain(entries: &[LogEntry], workers: usize, report: &mut VerifyReport) {
    let alg = entries.first().map_or(HashAlg::Blake3, |e| e.prev.alg());
    let mut head = LogHead::genesis(alg);
    // Each entry's own hash is independent of the walk: recomputed on every core first.
    let hashes_ok = parallel::map(entries, workers, MIN_PER_THREAD * 8, LogEntry::hash_ok);
    for (e, hash_ok) in entries.iter().zip(hashes_ok) {
        let at = |problem: String| Finding {
            version: Some(e.pos),
            ..record_finding(PeerTable::Log, Rule::LogChain, problem)
        };
        if e.pos != head.pos + 1 {
            report.findings.push(at(if e.pos <= head.pos {
                format!("position {} repeats or goes back after {}", e.pos, head.pos)
            } else {
                format!("positions {}..{} are missing", head.pos + 1, e.pos - 1)
            }));
        } else if e.prev != head.hash {
            report.findings.push(at(format!(
                "entry {} does not link to the entry before it",
                e.pos
            )));
        }
        if !hash_ok {
            report.findings.push(at(format!(
                "entry {} does not hash to its stored hash (rewritten)",
                e.pos
            )));
        }
        head = e.head();
    }
}

/// For each subject of `kind`, the entries binding it, in log order.
fn entries_of(entries: &[LogEntry], kinds: &[LogKind]) -> BTreeMap<String, Vec<LogEntry>> {
    let mut out: BTreeMap<String, Vec<LogEntry>> = BTreeMap::new();
    for e in entries.iter().filter(|e| kinds.contains(&e.kind)) {
        out.entry(e.subject.clone()).or_default().push(e.clone());
    }
    out
}

/// Checks that `row` (absent = no row) is what the latest of `logged` binds, and returns the
/// finding when it is not. `row_digest`, when given, is the row's digest in the algorithm of
/// that latest entry, computed earlier.
fn binding_finding(
    table: PeerTable,
    what: &str,
    row: Option<&LogRecord<'_>>,
    row_digest: Option<Digest>,
    logged: Option<&Vec<LogEntry>>,
) -> Option<Finding> {
    let latest = logged.and_then(|l| l.last());
    let problem = match (row, latest) {
        (None, None) => None,
        (Some(_), None) => Some(format!("{what} has no log entry (added behind SST's back)")),
        (None, Some(e)) if e.kind == LogKind::RefusalCleared => None,
        (None, Some(e)) => Some(format!(
            "{what}, recorded at log position {}, is missing",
            e.pos
        )),
        (Some(_), Some(e)) if e.kind == LogKind::RefusalCleared => Some(format!(
            "{what} was cleared at log position {} but is back",
            e.pos
        )),
        (Some(r), Some(e))
            if row_digest
                .filter(|d| d.alg() == e.record.alg())
                .unwrap_or_else(|| r.digest(e.record.alg()))
                != e.record =>
        {
            Some(format!(
                "{what} differs from the record log entry {} binds",
                e.pos
            ))
        }
        _ => None,
    };
    problem.map(|problem| Finding {
        version: latest.map(|e| e.pos),
        ..record_finding(table, Rule::LogRecord, problem)
    })
}

async fn verify_log_bindings(
    store: &dyn Store,
    records: &Records,
    anchors: &TrustAnchors,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    let entries = &records.entries;
    let events = &records.events;
    let workers = available_workers();
    check_chain(entries, workers, report);

    // Events: each bound by exactly one entry, recorded in log order.
    let event_entries = entries_of(entries, &[LogKind::Event]);
    let anchored = !anchors.registry.is_empty();
    // The hashing is done first, on every core: each event's subject, the digest of its row
    // in the algorithm of its latest entry, and the digest its receipt signs.
    let hashed = parallel::map(events, workers, MIN_PER_THREAD, |rec| {
        let subject = rec.id().to_string();
        let row_digest = event_entries
            .get(&subject)
            .and_then(|l| l.last())
            .map(|e| LogRecord::Event(rec).digest(e.record.alg()));
        let receipt_digest =
            (anchored && rec.receipt.is_some()).then(|| SequencingReceipt::digest_of(rec));
        (subject, row_digest, receipt_digest)
    });
    let mut receipts = Vec::new();
    let mut receipt_owners = Vec::new();
    let mut last_pos = 0;
    let mut held = BTreeSet::new();
    for (rec, (subject, row_digest, receipt_digest)) in events.iter().zip(hashed) {
        held.insert(subject.clone());
        let logged = event_entries.get(&subject);
        let ev = |rule: Rule, problem: String| Finding {
            state_id: rec.event().state_id.clone(),
            event: Some(subject.clone()),
            ..record_finding(PeerTable::Event, rule, problem)
        };
        if let Some(l) = logged.filter(|l| l.len() > 1) {
            let at: Vec<String> = l.iter().map(|e| e.pos.to_string()).collect();
            report.findings.push(Finding {
                table: PeerTable::Log,
                ..ev(
                    Rule::LogRecord,
                    format!("event bound by several log entries ({})", at.join(", ")),
                )
            });
        }
        // An event row that no longer hashes to its log record (its columns, or a section
        // version its disclosures name, edited) is reported with its state and the version it
        // applied; the log position is in the problem.
        report.findings.extend(
            binding_finding(
                PeerTable::Event,
                &format!("event {subject}"),
                Some(&LogRecord::Event(rec)),
                row_digest,
                logged,
            )
            .map(|f| Finding {
                version: match rec.outcome {
                    Outcome::Applied { version, .. } if version > 0 => Some(version),
                    _ => None,
                },
                ..ev(f.rule, f.problem)
            }),
        );
        if let Some(e) = logged.and_then(|l| l.first()) {
            if e.pos < last_pos {
                report.findings.push(ev(
                    Rule::EventOrder,
                    format!(
                        "event (log position {}) is recorded after the event of position {last_pos}",
                        e.pos
                    ),
                ));
            }
            last_pos = last_pos.max(e.pos);
        }
        if anchored {
            match &rec.receipt {
                None => report.findings.push(ev(
                    Rule::Receipt,
                    "event has no sequencing receipt".to_owned(),
                )),
                Some(r) => match anchors.registry.key(&r.node) {
                    None => report.findings.push(ev(
                        Rule::Receipt,
                        format!(
                            "sequencing receipt: node `{}` is not in the node registry",
                            r.node
                        ),
                    )),
                    Some(key) => {
                        let digest =
                            receipt_digest.unwrap_or_else(|| SequencingReceipt::digest_of(rec));
                        receipts.push((*key, digest, r.signature));
                        receipt_owners.push(rec);
                    }
                },
            }
        }
    }
    // Receipts verify strictly on every core; each refusal is named.
    let verdicts = verify_strict_many(&receipts, workers);
    {
        for (verdict, rec) in verdicts.into_iter().zip(receipt_owners) {
            if let Err(err) = verdict {
                report.findings.push(Finding {
                    state_id: rec.event().state_id.clone(),
                    event: Some(rec.id().to_string()),
                    ..record_finding(
                        PeerTable::Event,
                        Rule::Receipt,
                        format!("sequencing receipt: {err}"),
                    )
                });
            }
        }
    }
    for (subject, logged) in &event_entries {
        if !held.contains(subject) {
            report.findings.extend(binding_finding(
                PeerTable::Event,
                &format!("event {subject}"),
                None,
                None,
                Some(logged),
            ));
        }
    }

    // Actors, contracts and refusals: each row is what its latest entry binds.
    let actor_entries = entries_of(entries, &[LogKind::Actor]);
    let actors = &records.actors;
    for a in actors {
        let what = format!("actor {}", a.id);
        report.findings.extend(binding_finding(
            PeerTable::Actor,
            &what,
            Some(&LogRecord::Actor(a)),
            None,
            actor_entries.get(a.id.as_str()),
        ));
    }
    let held_actors: BTreeSet<&str> = actors.iter().map(|a| a.id.as_str()).collect();
    for (subject, logged) in &actor_entries {
        if !held_actors.contains(subject.as_str()) {
            report.findings.extend(binding_finding(
                PeerTable::Actor,
                &format!("actor {subject}"),
                None,
                None,
                Some(logged),
            ));
        }
    }
    let contract_entries = entries_of(entries, &[LogKind::Contract]);
    // An unreadable contract table is reported by the contract check.
    if let Ok(contracts) = &records.contracts {
        for c in contracts {
            let subject = c.contract().to_string();
            report.findings.extend(binding_finding(
                PeerTable::Contract,
                &format!("contract {subject}"),
                Some(&LogRecord::Contract(c)),
                None,
                contract_entries.get(&subject),
            ));
        }
        let held_contracts: BTreeSet<String> =
            contracts.iter().map(|c| c.contract().to_string()).collect();
        for (subject, logged) in &contract_entries {
            if !held_contracts.contains(subject) {
                report.findings.extend(binding_finding(
                    PeerTable::Contract,
                    &format!("contract {subject}"),
                    None,
                    None,
                    Some(logged),
                ));
            }
        }
    }
    let refusal_entries = entries_of(entries, &[LogKind::Refusal, LogKind::RefusalCleared]);
    match &records.refusals {
        Ok(refusals) => {
            for r in refusals {
                let subject = r.event.to_string();
                report.findings.extend(binding_finding(
                    PeerTable::Refusal,
                    &format!("refusal of event {subject}"),
                    Some(&LogRecord::Refusal(r)),
                    None,
                    refusal_entries.get(&subject),
                ));
            }
            let held_refusals: BTreeSet<String> =
                refusals.iter().map(|r| r.event.to_string()).collect();
            for (subject, logged) in &refusal_entries {
                if !held_refusals.contains(subject) {
                    report.findings.extend(binding_finding(
                        PeerTable::Refusal,
                        &format!("refusal of event {subject}"),
                        None,
                        None,
                        Some(logged),
                    ));
                }
            }
        }
        // Only an integrity error is kept here.
        Err(e) => report.findings.push(record_finding(
            PeerTable::Refusal,
            Rule::Integrity,
            e.to_string(),
        )),
    }

    verify_checkpoints(store, entries, anchors, report).await
}

/// The node's own checkpoints must verify and name a head the log still holds; witnessed
/// checkpoints of peers must verify.
async fn verify_checkpoints(
    store: &dyn Store,
    entries: &[LogEntry],
    anchors: &TrustAnchors,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    report.anchored = !anchors.registry.is_empty();
    let mut nodes: BTreeSet<&NodeId> = anchors.registry.nodes().collect();
    if let Some(own) = &anchors.node {
        nodes.insert(own);
    }
    let head_pos = entries.last().map_or(0, |e| e.pos);
    for node in nodes {
        let own = anchors.node.as_ref() == Some(node);
        let checkpoints = match store.checkpoints(node).await {
            Ok(c) => c,
            Err(StoreError::Integrity { what, source }) => {
                report.findings.push(record_finding(
                    PeerTable::Checkpoint,
                    Rule::Integrity,
                    format!("{what}: {source}"),
                ));
                continue;
            }
            Err(e) => return Err(e),
        };
        for cp in &checkpoints {
            report.checkpoints += 1;
            let c = &cp.checkpoint;
            let at = |table: PeerTable, problem: String| Finding {
                version: Some(c.pos),
                ..record_finding(table, Rule::Checkpoint, problem)
            };
            if report.anchored {
                if let Err(err) = cp.verify(&anchors.registry) {
                    report.findings.push(at(
                        PeerTable::Checkpoint,
                        format!("checkpoint of {node} at position {}: {err}", c.pos),
                    ));
                    continue;
                }
            }
            if !own {
                continue;
            }
            if c.pos > head_pos {
                report.findings.push(at(
                    PeerTable::Log,
                    format!(
                        "the log ends at position {head_pos} but this node signed position {} (its tail was cut)",
                        c.pos
                    ),
                ));
            } else if c.pos > 0 {
                let held = entries.iter().find(|e| e.pos == c.pos).map(|e| e.hash);
                if held != Some(c.head) {
                    report.findings.push(at(
                        PeerTable::Log,
                        format!(
                            "the log at position {} is not the head this node signed (rewritten)",
                            c.pos
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn state_finding(
    id: &StateId,
    version: Option<u64>,
    table: PeerTable,
    rule: Rule,
    problem: String,
) -> Finding {
    Finding {
        state_id: id.clone(),
        version,
        event: None,
        table,
        rule,
        problem,
    }
}

/// One history row as read back.
enum Row {
    /// No row for this version.
    Missing,
    /// A row that cannot be read back into a state (why).
    Unreadable(String),
    /// The row.
    Held(State),
}

/// What the store holds of one state, read before anything is checked (so that the checks,
/// which only hash and compare, can run on any thread).
struct StateRows {
    /// The current-state row; `Err` holds why it is unreadable.
    current: Result<Option<State>, String>,
    /// History versions 1, 2, … as far as anything claims one.
    versions: Vec<Row>,
}

/// Reads the current row of `id` and its history as far as anything claims: the log
/// (`log_latest`), the current row, or history rows past both (found by probing).
async fn read_state(
    store: &dyn Store,
    id: &StateId,
    log_latest: u64,
) -> Result<StateRows, StoreError> {
    let row = |read: Result<Option<State>, StoreError>| match read {
        Ok(Some(s)) => Ok(Row::Held(s)),
        Ok(None) => Ok(Row::Missing),
        Err(StoreError::Integrity { source, .. }) => Ok(Row::Unreadable(source.to_string())),
        Err(e) => Err(e),
    };
    let current = match store.state(id).await {
        Ok(s) => Ok(s),
        Err(StoreError::Integrity { source, .. }) => Err(source.to_string()),
        Err(e) => return Err(e),
    };
    let held_version = current
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map_or(0, |c| c.version);
    let claimed = log_latest.max(held_version);
    let mut versions = Vec::new();
    for v in 1..=claimed {
        versions.push(row(store.state_at(id, v).await)?);
    }
    loop {
        match row(store.state_at(id, versions.len() as u64 + 1).await)? {
            Row::Missing => break,
            found => versions.push(found),
        }
    }
    Ok(StateRows { current, versions })
}

/// Checks one state from what [`read_state`] read: the log's story of it (`log`, its
/// applied events in recording order) against its history rows and its current row.
///
/// Returns the parties of the versions in `wanted` that verify and are exactly what their
/// applied event produced (every other version in `wanted` is reported here already).
fn check_state(
    id: &StateId,
    log: &[Applied<'_>],
    rows: &StateRows,
    wanted: &BTreeSet<u64>,
    report: &mut VerifyReport,
) -> BTreeMap<u64, Parties> {
    let mut parties = BTreeMap::new();
    let find = |version: Option<u64>, table: PeerTable, rule: Rule, problem: String| {
        state_finding(id, version, table, rule, problem)
    };
    // The log's own story of this state: versions 1, 2, … each applied once, in order.
    let mut logged: BTreeMap<u64, &Applied<'_>> = BTreeMap::new();
    let mut last_seen = 0;
    for a in log {
        let problem = if logged.insert(a.version, a).is_some() {
            Some(format!(
                "version {} is applied by more than one event",
                a.version
            ))
        } else if a.version < last_seen {
            Some(format!(
                "version {} is recorded after version {last_seen} in the log",
                a.version
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            report.findings.push(Finding {
                event: Some(a.record.id().to_string()),
                ..find(Some(a.version), PeerTable::Event, Rule::EventOrder, problem)
            });
        }
        last_seen = last_seen.max(a.version);
    }
    let log_latest = logged.keys().next_back().copied().unwrap_or(0);

    let current = match &rows.current {
        Ok(s) => s.as_ref(),
        Err(source) => {
            report.findings.push(find(
                None,
                PeerTable::State,
                Rule::Integrity,
                format!("current-state row unreadable: {source}"),
            ));
            None
        }
    };
    let latest = rows.versions.len() as u64;
    let mut prev: Option<&State> = None;
    let mut history_latest = None;
    for (v, row) in (1..).zip(&rows.versions) {
        report.versions += 1;
        let s = match row {
            Row::Held(s) => s,
            Row::Missing => {
                report.findings.push(find(
                    Some(v),
                    PeerTable::History,
                    Rule::VersionMissing,
                    "version missing from history".into(),
                ));
                prev = None;
                continue;
            }
            Row::Unreadable(source) => {
                report.findings.push(find(
                    Some(v),
                    PeerTable::History,
                    Rule::Integrity,
                    source.clone(),
                ));
                prev = None;
                continue;
            }
        };
        let own_row = s.version == v && &s.id == id;
        if !own_row {
            report.findings.push(find(
                Some(v),
                PeerTable::History,
                Rule::Integrity,
                format!("row holds {} version {}", s.id, s.version),
            ));
        }
        let verified = s.verify();
        if let Err(e) = &verified {
            report.findings.push(find(
                Some(v),
                PeerTable::History,
                Rule::Integrity,
                e.to_string(),
            ));
        }
        if v > 1 && prev.is_some() && s.prev_root != prev.map(|p| p.root) {
            report.findings.push(find(
                Some(v),
                PeerTable::History,
                Rule::HistoryChain,
                format!(
                    "history chain broken: prev_root is not the root of version {}",
                    v - 1
                ),
            ));
        }
        match logged.get(&v) {
            None => report.findings.push(find(
                Some(v),
                PeerTable::History,
                Rule::UnboundVersion,
                "no applied event in the log produced this version".into(),
            )),
            Some(a) => {
                // A root that does not even match its own row is reported above already.
                let root_differs = own_row && verified.is_ok() && a.root != s.root;
                if root_differs || s.last_event != Some(a.record.id()) {
                    report.findings.push(find(
                        Some(v),
                        PeerTable::History,
                        Rule::UnboundVersion,
                        format!(
                            "version differs from what event {} applied (root {})",
                            a.record.id(),
                            a.root
                        ),
                    ));
                } else {
                    if own_row && verified.is_ok() && wanted.contains(&v) {
                        parties.insert(v, s.parties.clone());
                    }
                    if v == 1 || prev.is_some() {
                        // (Without a readable predecessor, unchanged sections cannot be
                        // compared.)
                        check_signed_sections(id, s, prev, a.record, report);
                    }
                }
            }
        }
        prev = Some(s);
        if v == log_latest {
            history_latest = Some(s);
        }
    }
    for v in logged.keys().filter(|v| **v > latest) {
        report.findings.push(find(
            Some(*v),
            PeerTable::History,
            Rule::VersionMissing,
            "the log applied this version but no state table holds it".into(),
        ));
    }
    // The current-state table is what users query: it must be exactly the latest version the
    // log says was applied.
    match (current, log_latest) {
        (None, 0) => {}
        (None, v) => report.findings.push(find(
            Some(v),
            PeerTable::State,
            Rule::CurrentRow,
            format!("current-state row missing; the log applied version {v}"),
        )),
        (Some(cur), v) if cur.version != v => report.findings.push(find(
            Some(cur.version),
            PeerTable::State,
            Rule::CurrentRow,
            format!(
                "current-state row is version {}, the log applied up to version {v}",
                cur.version
            ),
        )),
        (Some(cur), _) => {
            if history_latest != Some(cur) {
                let detail = match cur.verify() {
                    Err(e) => format!("current-state row does not verify: {e}"),
                    Ok(()) => "current-state row differs from its history row".into(),
                };
                report.findings.push(find(
                    Some(cur.version),
                    PeerTable::State,
                    Rule::CurrentRow,
                    detail,
                ));
            }
        }
    }
    parties
}

/// A create/change event signs the section hashes it wrote: version `s` must hold exactly
/// those, and every section it did not name must be unchanged from `prev`.
fn check_signed_sections(
    id: &StateId,
    s: &State,
    prev: Option<&State>,
    rec: &EventRecord,
    report: &mut VerifyReport,
) {
    let e = rec.event();
    let named = match e.kind {
        EventKind::Create => CreatePayload::from_payload(&e.payload).map(|p| p.sections),
        EventKind::ChangeSections => ChangePayload::from_payload(&e.payload).map(|p| p.sections),
        // Method calls: the contract computed the sections; re-execution checks them.
        _ => return,
    };
    let mut problem = |text: String| {
        report.findings.push(Finding {
            event: Some(rec.id().to_string()),
            ..state_finding(
                id,
                Some(s.version),
                PeerTable::History,
                Rule::SignedSections,
                text,
            )
        })
    };
    let named = match named {
        Ok(n) => n,
        Err(err) => {
            problem(format!("the applied event's payload is malformed: {err}"));
            return;
        }
    };
    for (name, hash) in &named {
        match s.sections.get(name) {
            Some(sec) if sec.hash == *hash => {}
            Some(_) => problem(format!(
                "section `{name}` differs from the hash its signed event wrote"
            )),
            None => problem(format!(
                "section `{name}` written by the signed event is missing"
            )),
        }
    }
    for (name, sec) in &s.sections {
        if named.contains_key(name) {
            continue;
        }
        let before = prev.and_then(|p| p.sections.get(name)).map(|p| p.hash);
        if before != Some(sec.hash) {
            problem(format!(
                "section `{name}` changed although its event did not write it"
            ));
        }
    }
    if e.kind == EventKind::Create && s.sections.len() != named.len() {
        problem("a created state holds sections its create did not write".into());
    }
}

/// Checks every event; returns every key each actor held according to the log (for records
/// signed before a rotation).
async fn verify_events(
    store: &dyn Store,
    events: &[EventRecord],
    report: &mut VerifyReport,
) -> Result<BTreeMap<ActorId, Vec<PublicKey>>, StoreError> {
    let mut held: BTreeMap<ActorId, Vec<PublicKey>> = BTreeMap::new();
    // Keys at the start of the log: the key each actor's first applied change replaced.
    let mut keys: BTreeMap<ActorId, (PublicKey, ActorStatus)> = BTreeMap::new();
    for rec in events {
        let e = rec.event();
        if e.kind == EventKind::ActorChange && matches!(rec.outcome, Outcome::Applied { .. }) {
            if let Ok(ch) = ActorChange::from_payload(&e.payload) {
                keys.entry(ch.actor.id.clone())
                    .or_insert((ch.previous_key, ActorStatus::Active));
                let h = held.entry(ch.actor.id.clone()).or_default();
                h.push(ch.previous_key);
                h.push(ch.actor.public_key);
            }
        }
    }
    let workers = available_workers();
    // Every id is recomputed on every core first; the walk below needs them in log order.
    let ids = parallel::map(events, workers, MIN_PER_THREAD, |rec| {
        rec.signed.verify_id()
    });
    let mut to_check = Vec::new();
    let mut owners = Vec::new();
    for (rec, id_check) in events.iter().zip(ids) {
        let e = rec.event();
        let ev_finding = |rule: Rule, problem: String| Finding {
            state_id: e.state_id.clone(),
            version: match rec.outcome {
                Outcome::Applied { version, .. } => Some(version),
                Outcome::Rejected { .. } => None,
            },
            event: Some(rec.id().to_string()),
            table: PeerTable::Event,
            rule,
            problem,
        };
        if let Err(err) = id_check {
            report
                .findings
                .push(ev_finding(Rule::EventId, err.to_string()));
            continue;
        }
        let applied = matches!(rec.outcome, Outcome::Applied { .. });
        if let Outcome::Rejected { reason } = &rec.outcome {
            if signature_unchecked(reason) {
                // Kept as evidence, forged ones included.
                continue;
            }
        }
        let key = match keys.get(&e.actor) {
            Some(k) => Some(*k),
            None => store
                .actor(&e.actor)
                .await?
                .map(|a| (a.public_key, ActorStatus::Active)),
        };
        let Some((key, status)) = key else {
            report.findings.push(ev_finding(
                Rule::Actor,
                format!(
                    "{} event signed by unknown actor {}",
                    if applied { "applied" } else { "rejected" },
                    e.actor
                ),
            ));
            continue;
        };
        if applied && status != ActorStatus::Active {
            report.findings.push(ev_finding(
                Rule::Actor,
                format!("applied event signed by {} after its revocation", e.actor),
            ));
        }
        match rec.signed.signatures.iter().find(|s| s.signer == e.actor) {
            Some(sig) => {
                to_check.push((key, rec.id().0, sig.signature));
                owners.push(rec);
            }
            None => {
                report.findings.push(ev_finding(
                    Rule::Signature,
                    format!("event has no signature by {}", e.actor),
                ));
            }
        }
        if applied && e.kind == EventKind::ActorChange {
            match ActorChange::from_payload(&e.payload) {
                Ok(ch) => {
                    keys.insert(ch.actor.id.clone(), (ch.actor.public_key, ch.actor.status));
                }
                Err(err) => report.findings.push(ev_finding(
                    Rule::Integrity,
                    format!("malformed actor change payload: {err}"),
                )),
            }
        }
    }
    // Every signature strictly, on every core; each refusal becomes a finding, in log order.
    let verdicts = verify_strict_many(&to_check, workers);
    {
        for (verdict, rec) in verdicts.iter().zip(owners) {
            if verdict.is_err() {
                let applied = matches!(rec.outcome, Outcome::Applied { .. });
                report.findings.push(Finding {
                    state_id: rec.event().state_id.clone(),
                    version: None,
                    event: Some(rec.id().to_string()),
                    table: PeerTable::Event,
                    rule: Rule::Signature,
                    problem: format!(
                        "{} event's signature does not verify (strict)",
                        if applied { "applied" } else { "rejected" }
                    ),
                });
            }
        }
    }
    Ok(held)
}

/// Checks each contract record's identity and its deployer's strict signature under a key the
/// deployer held (its directory key, or one the log shows it held before a rotation).
/// Returns the endorsement policy of every verified record that chooses the `endorsed`
/// protocol: a descriptor counts only once its record verifies.
async fn verify_contracts(
    store: &dyn Store,
    held: &BTreeMap<ActorId, Vec<PublicKey>>,
    report: &mut VerifyReport,
) -> Result<BTreeMap<ContractRef, EndorsementPolicy>, StoreError> {
    let mut policies = BTreeMap::new();
    let contracts = match store.contracts().await {
        Ok(c) => c,
        Err(StoreError::Integrity { what, source }) => {
            report.findings.push(Finding {
                state_id: StateId::new(""),
                version: None,
                event: None,
                table: PeerTable::Contract,
                rule: Rule::Contract,
                problem: format!("{what}: {source}"),
            });
            return Ok(policies);
        }
        Err(e) => return Err(e),
    };
    report.contracts = contracts.len();
    for c in contracts {
        let mut keys = held.get(&c.deployer).cloned().unwrap_or_default();
        if let Some(a) = store.actor(&c.deployer).await? {
            keys.push(a.public_key);
        }
        let problem = if keys.is_empty() {
            Some(format!(
                "contract {} deployed by unknown actor {}",
                c.contract(),
                c.deployer
            ))
        } else {
            let mut last = None;
            for k in &keys {
                match c.verify(k) {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(format!("contract {}: {e}", c.contract())),
                }
            }
            last
        };
        match problem {
            Some(problem) => report.findings.push(Finding {
                state_id: StateId::new(""),
                version: None,
                event: None,
                table: PeerTable::Contract,
                rule: Rule::Contract,
                problem,
            }),
            None => {
                if let Some(policy) = c.descriptor.endorsement_policy() {
                    policies.insert(c.contract().clone(), policy.clone());
                }
            }
        }
    }
    Ok(policies)
}

/// The version whose parties name the participant nodes that endorse an event of `kind`
/// applied as `version`: the created version for a create, the version it was based on (the
/// one before) for a change. `None` for events that change no state.
fn participants_version(kind: EventKind, version: u64) -> Option<u64> {
    match kind {
        EventKind::Create => Some(version),
        EventKind::ChangeSections | EventKind::CallMethod => version.checked_sub(1),
        _ => None,
    }
    .filter(|v| *v > 0)
}

/// The node of every actor the store knows: its directory row, or the node its applied actor
/// changes record (signed by actors, so they win over the directory). An actor never moves to
/// another node (the pipeline refuses such a change), so one map serves every position in the
/// log.
fn actor_nodes(events: &[EventRecord], actors: &[Actor]) -> BTreeMap<ActorId, NodeId> {
    let mut nodes: BTreeMap<ActorId, NodeId> = actors
        .iter()
        .map(|a| (a.id.clone(), a.node.clone()))
        .collect();
    for ch in events.iter().filter_map(applied_actor_change) {
        nodes.insert(ch.actor.id, ch.actor.node);
    }
    nodes
}

/// The change an applied actor-change event records (malformed ones are reported by
/// [`verify_events`]).
fn applied_actor_change(rec: &EventRecord) -> Option<ActorChange> {
    let e = rec.event();
    (e.kind == EventKind::ActorChange && matches!(rec.outcome, Outcome::Applied { .. }))
        .then(|| ActorChange::from_payload(&e.payload).ok())
        .flatten()
}

/// How a policy reads in a finding.
fn policy_text(policy: &EndorsementPolicy) -> String {
    match policy {
        EndorsementPolicy::All => "all".to_owned(),
        EndorsementPolicy::KOfN { k } => format!("k_of_n (k = {k})"),
        EndorsementPolicy::Roles { roles } => {
            let roles: Vec<&str> = roles.iter().map(|r| r.0.as_str()).collect();
            format!("roles [{}]", roles.join(", "))
        }
    }
}

/// One applied event whose endorsements are to be checked.
struct EndorsedEvent<'a> {
    record: &'a EventRecord,
    version: u64,
    contract: &'a ContractRef,
    policy: &'a EndorsementPolicy,
    participants: BTreeMap<NodeId, BTreeSet<Role>>,
}

/// Checks the endorsements of every applied state event whose contract (by its verified
/// record, `policies`) is on the `endorsed` protocol with [`check_endorsements`], for the
/// participant nodes of `parties` (per state, per version, from [`check_state`]) with the
/// actors' nodes ([`actor_nodes`]). Without a node registry nothing can be checked (the
/// events are only counted; [`VerifyReport::anchored`] says so), as for receipts. An event
/// whose parties are unavailable (their version missing, unreadable or unbound) is reported
/// by the history checks already, and one whose contract record does not verify by the
/// contract check; endorsements on events of home-protocol contracts are not looked at.
fn verify_endorsements(
    records: &Records,
    policies: &BTreeMap<ContractRef, EndorsementPolicy>,
    parties: &BTreeMap<&StateId, BTreeMap<u64, Parties>>,
    anchors: &TrustAnchors,
    report: &mut VerifyReport,
) {
    if policies.is_empty() {
        return;
    }
    let anchored = !anchors.registry.is_empty();
    let nodes = actor_nodes(&records.events, &records.actors);
    let mut to_check = Vec::new();
    for rec in &records.events {
        let e = rec.event();
        if let (Outcome::Applied { version, .. }, Some((contract, policy))) =
            (&rec.outcome, policies.get_key_value(&e.contract))
        {
            if let Some(v) = participants_version(e.kind, *version) {
                report.endorsed += 1;
                if let Some(held) = parties.get(&e.state_id).and_then(|p| p.get(&v)) {
                    to_check.push(EndorsedEvent {
                        record: rec,
                        version: *version,
                        contract,
                        policy,
                        participants: participant_nodes(held, |a| nodes.get(a).cloned()),
                    });
                }
            }
        }
    }
    if !anchored {
        return;
    }
    // Every endorsement strictly, on every core; each failing event becomes one finding, in
    // log order.
    let verdicts = parallel::map(&to_check, available_workers(), MIN_PER_THREAD, |ev| {
        check_endorsements(ev.policy, &ev.participants, &anchors.registry, ev.record)
    });
    for (ev, verdict) in to_check.iter().zip(verdicts) {
        if let Err(err) = verdict {
            report.findings.push(Finding {
                state_id: ev.record.event().state_id.clone(),
                version: Some(ev.version),
                event: Some(ev.record.id().to_string()),
                table: PeerTable::Event,
                rule: Rule::Endorsement,
                problem: format!(
                    "applied event of {} (endorsed, policy {}): {err}",
                    ev.contract,
                    policy_text(ev.policy)
                ),
            });
        }
    }
}
