//! [`MongoStore`]: the [`Store`] contract on MongoDB. The current document of a state holds
//! its id, contract, version and `data` (`{section: value}`); each version's header and seals
//! live in the history, each section version's plaintext once in the section collection, and
//! events in their own collection. An applied event's document names the section versions it
//! disclosed (`{salt, hash}`) instead of carrying their values again; reads look them up in
//! the section collection (documents written before keep the values inline and read as they
//! are).
//!
//! A batch commits in one multi-document transaction on a replica set or sharded cluster.
//! Elsewhere (a standalone server) it commits through a recoverable protocol:
//!
//! 1. every event of the batch is inserted *pending* (tagged with the batch id and size),
//!    then every new section version (an upsert that only inserts; undoing the batch leaves
//!    them, unreferenced, since another version may hold the same key);
//! 2. every new state version is inserted into the history, whose unique `(id, version)`
//!    index lets exactly one writer claim a version; once all of them are in, the batch is
//!    committed (this is the commit point);
//! 3. the current-state documents move forward with a version guard (only the changed
//!    sections of `data` when the stored version's seals are known);
//! 4. the events are marked applied (the pending tag removed).
//!
//! Every record kept is also bound by an entry of the hash-chained log (collection `sst_log`,
//! `_id` = position). In a transaction the entries are inserted with their records; a writer
//! that lost the race for a position (duplicate key) or met a transient error re-runs the
//! whole transaction ([`RACE_RETRIES`] times at most, in one place: `MongoStore::run`). In
//! the recoverable protocol a batch's entries are appended once it passed its commit point,
//! before its events lose their pending tag; recovery appends the ones a crash left out.
//!
//! Readers ignore pending events and the history versions their batch wrote beyond the
//! current state (any other version is shown, committed or planted behind SST's back). A
//! failure before the commit point undoes steps 1–2; a failure after it completes steps 3–4;
//! and opening the store does the same for batches a crashed writer left pending.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};
use serde_json::Value;
use sst_core::model::{SectionSeal, StateParts};
use sst_core::raw::columns::{
    business_events_from_column, endorsements_from_column, json_value, receipt_from_column, to_i64,
    DerivedEventColumns,
};
use sst_core::raw::{
    section_keys, CommitPlan, ContractPut, CurrentRow, CurrentWrite, DataWrite, DisclosureColumn,
    EventColumns, Lookups, Recorded, SectionKey, StoredEvent, RACE_RETRIES,
};
use sst_core::{
    check_prune_keep, check_refusal, check_sink_name, Actor, ActorId, Capabilities, Checkpoint,
    CommitBatch, CommitItem, CommitReceipt, ConflictKind, ContractRecord, ContractRef, Digest,
    EventFilter, EventId, EventRecord, LogEntry, LogHead, LogKind, LogRecord, NodeId, OriginSeq,
    Outcome, Refusal, SignedCheckpoint, State, StateId, Store, StoreError, Timestamp,
};

use crate::config::{CollectionNames, MongoConfig, TransactionMode};
use crate::error::{self, backend, conflict_or_backend, internal, invalid_input};
use crate::schema;
use crate::value::{from_bson, from_document, to_bson, to_document};
use crate::NAME;

/// Provisional `pos` of pending event number `n` of the counter: `PENDING_POS + n`, below
/// every recorded event's position (its log position, from 1), in reservation order.
const PENDING_POS: i64 = i64::MIN;

/// Where a simulated crash stops a recoverable commit (tests of the recovery protocol).
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrashPoint {
    /// After the first event of the batch was inserted pending.
    MidEvents,
    /// After all events were inserted pending.
    AfterEvents,
    /// After all history versions were inserted (the commit point).
    AfterHistory,
    /// After the current-state documents moved, before the events were marked applied.
    AfterStates,
}

/// What [`MongoStore::recover`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Batches completed (they had reached their commit point).
    pub completed: Vec<String>,
    /// Batches undone (they had not).
    pub undone: Vec<String>,
}

/// An SST store in a MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoStore {
    client: Client,
    db: Database,
    names: CollectionNames,
    transactions: bool,
    replicated: bool,
    recover_after: Duration,
    #[cfg(feature = "fault-injection")]
    crash_at: Option<CrashPoint>,
}

/// An error inside a commit attempt: either already final, or a driver error still to be
/// classified (duplicate key → conflict, transient → retry).
enum Fail {
    Store(StoreError),
    Mongo(&'static str, mongodb::error::Error),
}

impl Fail {
    /// The error as the caller sees it (a driver error unclassified: backend).
    fn into_store(self) -> StoreError {
        match self {
            Fail::Store(e) => e,
            Fail::Mongo(op, e) => backend(op, e),
        }
    }
}

/// Whether a failed attempt lost a race (a unique key, the log position above all) or met a
/// transient transaction error (write conflict, failover): re-running the whole write may
/// succeed, or report the real conflict.
fn lost_race(f: &Fail) -> bool {
    matches!(f, Fail::Mongo(_, e) if error::is_duplicate_key(e) || error::is_transient_transaction_error(e))
}

/// Runs a driver action inside the transaction of `$session` (an
/// `Option<&mut ClientSession>`) when there is one.
macro_rules! in_session {
    ($session:expr, $action:expr) => {
        match $session.as_deref_mut() {
            Some(s) => $action.session(s).await,
            None => $action.await,
        }
    };
}

/// Runs the upsert that closure `$put` builds, inside the transaction of `$session` when
/// there is one. Outside a transaction, an upsert that lost its insert to a concurrent one
/// of the same key (duplicate key) is run again: the document exists now, so it updates it.
macro_rules! upsert {
    ($session:expr, $put:expr, $op:expr) => {
        match in_session!($session, $put()) {
            Ok(_) => Ok(()),
            Err(e) if $session.is_none() && error::is_duplicate_key(&e) => {
                $put().await.map(drop).at($op)
            }
            Err(e) => Err(Fail::Mongo($op, e)),
        }
    };
}

/// One write that appends to the log, as [`MongoStore::run`] re-runs it.
#[derive(Clone, Copy)]
enum Write<'a> {
    Commit(&'a CommitBatch),
    Actor(&'a Actor),
    Contract(&'a ContractRecord),
    Refusal(&'a Refusal),
    ClearRefusal(&'a EventId),
}

impl Write<'_> {
    fn op(self) -> &'static str {
        match self {
            Write::Commit(_) => "commit",
            Write::Actor(_) => "put_actor",
            Write::Contract(_) => "put_contract",
            Write::Refusal(_) => "put_refusal",
            Write::ClearRefusal(_) => "clear_refusal",
        }
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

trait MongoResult<T> {
    fn at(self, op: &'static str) -> Result<T, Fail>;
}

impl<T> MongoResult<T> for Result<T, mongodb::error::Error> {
    fn at(self, op: &'static str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Mongo(op, e))
    }
}

/// The documents one batch writes.
struct BatchDocs<'a> {
    events: Vec<Document>,
    history: Vec<Document>,
    /// New section versions: the key filter and the update inserting the value if absent.
    sections: Vec<(Document, Document)>,
    moves: Vec<CurrentMove<'a>>,
}

/// How one state's current document moves to `state`: inserted, or updated behind a guard
/// on the version the plan was made against (only the changed sections when `patch`).
struct CurrentMove<'a> {
    id: String,
    write: CurrentWrite,
    state: &'a State,
    /// The update changing only the sections that differ, when the plan patches.
    patch: Option<Document>,
}

impl CurrentMove<'_> {
    /// The stored version the move starts from (0: the state is new).
    fn base(&self) -> u64 {
        match self.write {
            CurrentWrite::Insert => 0,
            CurrentWrite::Update { from } => from,
        }
    }

    /// The version the move ends at.
    fn last(&self) -> u64 {
        self.state.version
    }

    /// The whole current document.
    fn whole(&self) -> Result<Document, StoreError> {
        current_doc(self.state)
    }
}

/// What the store holds about a batch, read before planning.
#[derive(Default)]
struct Found {
    /// What the core's plan needs.
    recorded: Recorded,
    /// Batch event ids that belong to an unfinished batch (still tagged `pending`).
    pending: BTreeSet<EventId>,
}

/// The conflict for an event that belongs to an unfinished batch (a concurrent writer's, or
/// a crashed one's that the next open recovers): not recorded yet, but its origin sequence is
/// held, so it is reported as [`ConflictKind::OriginTaken`]. Retrying later sees it recorded
/// (a duplicate) or gone.
fn unfinished(item: &CommitItem) -> StoreError {
    let e = item.event.event();
    StoreError::conflict(
        ConflictKind::OriginTaken,
        format!(
            "origin {} seq {} (event {} is part of an unfinished batch: a concurrent writer, \
             or a crashed one that the next open recovers)",
            e.origin_node,
            e.origin_seq,
            item.event.id()
        ),
        e.origin_seq.0.saturating_sub(1),
        e.origin_seq.0,
    )
}

fn now_ms() -> i64 {
    sst_core::Timestamp::now().0
}

fn json_doc(field: &str, v: &Value) -> Result<Document, StoreError> {
    to_document(v).map_err(|e| invalid_input(field, e))
}

fn json_bson(field: &str, v: &Value) -> Result<Bson, StoreError> {
    to_bson(v).map_err(|e| invalid_input(field, e))
}

fn opt_str(s: Option<String>) -> Bson {
    s.map_or(Bson::Null, Bson::String)
}

/// The history document of one state version: its header and seals, no plaintext.
fn history_doc(state: &State, batch: &str) -> Result<Document, StoreError> {
    let p = state.to_parts();
    Ok(doc! {
        "id": p.id.as_str(),
        "contract_name": p.contract.name.as_str(),
        "contract_version": i64::from(p.contract.version),
        "version": to_i64("state.version", p.version)?,
        "parties": json_doc("state.parties", &p.parties)?,
        "seals": json_doc("state.seals", &p.seals)?,
        "root": p.root,
        "prev_root": opt_str(p.prev_root),
        "last_event": opt_str(p.last_event),
        "updated_at": DateTime::from_millis(p.updated_at),
        "batch": batch,
    })
}

/// The current-state document of `state`: id, contract, version and the whole `data`.
fn current_doc(state: &State) -> Result<Document, StoreError> {
    current_doc_with(
        state.id.as_str(),
        &state.contract,
        state.version,
        json_doc("state.data", &state.data())?,
    )
}

fn current_doc_with(
    id: &str,
    contract: &ContractRef,
    version: u64,
    data: Document,
) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": id,
        "contract_name": contract.name.as_str(),
        "contract_version": i64::from(contract.version),
        "version": to_i64("state.version", version)?,
        "data": data,
    })
}

/// Whether a section name is written as a `data.<name>` update path. MongoDB takes any name
/// without `.` that does not start with `$`; this adapter patches only names of ASCII
/// letters, digits, `_` and `-`, because the nx-27017 emulator its suite runs on mishandles
/// paths with other characters (`$`, quotes, backslashes, brackets, non-ASCII letters). The
/// current document of a state with another name changed is written whole.
fn plain_path(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The update moving a current document to `state` by changing only the sections `set` and
/// `remove` of its `data`; `None` when a name cannot be written as a path (the whole
/// document is written then).
fn patch_update(
    state: &State,
    set: &[String],
    remove: &[String],
) -> Result<Option<Document>, StoreError> {
    if !set.iter().chain(remove).all(|n| plain_path(n)) {
        return Ok(None);
    }
    let mut fields = doc! {
        "contract_name": state.contract.name.as_str(),
        "contract_version": i64::from(state.contract.version),
        "version": to_i64("state.version", state.version)?,
    };
    for name in set {
        let Some(value) = state.sections.get(name).and_then(|s| s.value()) else {
            return Ok(None);
        };
        fields.insert(format!("data.{name}"), json_bson("state.data", value)?);
    }
    let mut update = doc! { "$set": fields };
    if !remove.is_empty() {
        let unset: Document = remove
            .iter()
            .map(|n| (format!("data.{n}"), Bson::from("")))
            .collect();
        update.insert("$unset", unset);
    }
    Ok(Some(update))
}

/// The seals of a history document, `None` when they do not parse.
fn seals_of(h: &Document) -> Option<BTreeMap<String, SectionSeal>> {
    let v = from_bson(h.get("seals")?).ok()?;
    serde_json::from_value(v).ok()
}

/// `(name, hash)` of every section `seals` discloses (those with a salt).
fn disclosed(seals: &BTreeMap<String, SectionSeal>) -> Vec<(&str, String)> {
    seals
        .iter()
        .filter(|(_, s)| s.salt.is_some())
        .map(|(n, s)| (n.as_str(), s.hash.to_string()))
        .collect()
}

/// How many section versions one `find` of [`MongoStore::resolve_events`] looks up (the
/// clauses of its `$or`).
const SECTION_LOOKUP_BATCH: usize = 256;

/// The filter of one section version document.
fn section_key(state_id: &str, name: &str, hash: &str) -> Document {
    doc! { "state_id": state_id, "name": name, "hash": hash }
}

/// What the upgrade moves out of one first-layout history document.
struct FirstLayoutVersion {
    id: String,
    version: u64,
    /// `(name, hash, value)` of each section its seals disclose, the value from `data`.
    sections: Vec<(String, String, Bson)>,
}

/// The sections of a first-layout history document. A disclosed section missing from `data`
/// is left out (reading that version then reports it, as it did before the upgrade).
fn first_layout_sections(h: &Document) -> Result<FirstLayoutVersion, StoreError> {
    let id = get_str(h, "id", "first-layout history document")?;
    let what = format!("state {id} (first layout)");
    let version = get_u64(h, "version", &what)?;
    let seals = seals_of(h).ok_or_else(|| {
        StoreError::malformed(
            &what,
            "history seals do not parse: its data is left where it is",
        )
    })?;
    let data = match h.get("data") {
        Some(Bson::Document(d)) => d.clone(),
        _ => Document::new(),
    };
    let sections = disclosed(&seals)
        .into_iter()
        .filter_map(|(name, hash)| Some((name.to_owned(), hash, data.get(name)?.clone())))
        .collect();
    Ok(FirstLayoutVersion {
        id,
        version,
        sections,
    })
}

/// A digest of a section value's canonical JSON (number types of the server aside).
fn value_digest(id: &str, value: &Bson) -> Result<u64, StoreError> {
    use std::hash::{Hash, Hasher};
    let json = from_bson(value)
        .map_err(|e| StoreError::malformed(format!("state {id} (first layout)"), e))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sst_core::canonical::to_vec(&json).hash(&mut h);
    Ok(h.finish())
}

/// Integrity error for a current document whose version the history lacks.
fn no_history(id: &str, version: u64) -> StoreError {
    StoreError::malformed(
        format!("state {id}"),
        format!("current row of {id} is at version {version}, which the history does not hold"),
    )
}

fn get_str(d: &Document, key: &str, what: &str) -> Result<String, StoreError> {
    d.get_str(key)
        .map(str::to_owned)
        .map_err(|e| StoreError::malformed(what, format!("field `{key}`: {e}")))
}

fn get_opt_str(d: &Document, key: &str, what: &str) -> Result<Option<String>, StoreError> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(StoreError::malformed(
            what,
            format!("field `{key}` is {other}"),
        )),
    }
}

fn get_int(d: &Document, key: &str, what: &str) -> Result<i64, StoreError> {
    match d.get(key) {
        Some(Bson::Int64(i)) => Ok(*i),
        Some(Bson::Int32(i)) => Ok(i64::from(*i)),
        Some(other) => Err(StoreError::malformed(
            what,
            format!("field `{key}` is {other}"),
        )),
        None => Err(StoreError::malformed(
            what,
            format!("field `{key}` is missing"),
        )),
    }
}

fn get_u64(d: &Document, key: &str, what: &str) -> Result<u64, StoreError> {
    let i = get_int(d, key, what)?;
    u64::try_from(i).map_err(|_| StoreError::malformed(what, format!("field `{key}` is negative")))
}

/// A time in milliseconds since the epoch, stored as a BSON date (or a plain integer).
fn get_millis(d: &Document, key: &str, what: &str) -> Result<i64, StoreError> {
    match d.get(key) {
        Some(Bson::DateTime(t)) => Ok(t.timestamp_millis()),
        Some(Bson::Int64(i)) => Ok(*i),
        other => Err(StoreError::malformed(
            what,
            format!("field `{key}` is {other:?}"),
        )),
    }
}

fn get_json(d: &Document, key: &str, what: &str) -> Result<Value, StoreError> {
    match d.get(key) {
        Some(Bson::Document(inner)) => from_document(inner)
            .map_err(|e| StoreError::malformed(what, format!("field `{key}`: {e}"))),
        Some(other) => {
            from_bson(other).map_err(|e| StoreError::malformed(what, format!("field `{key}`: {e}")))
        }
        None => Err(StoreError::malformed(
            what,
            format!("field `{key}` is missing"),
        )),
    }
}

/// The state version of history document `d` with its disclosed sections `data`.
fn state_from_history(d: &Document, data: Value) -> Result<State, StoreError> {
    let id = get_str(d, "id", "state document")?;
    let what = match d.get("version") {
        Some(v) => format!("state {id} version {v}"),
        None => format!("state {id}"),
    };
    let contract_version = u32::try_from(get_int(d, "contract_version", &what)?)
        .map_err(|_| StoreError::malformed(&what, "contract_version out of range"))?;
    let updated_at = get_millis(d, "updated_at", &what)?;
    let parts = StateParts {
        id: StateId(id),
        contract: ContractRef::new(get_str(d, "contract_name", &what)?, contract_version),
        version: get_u64(d, "version", &what)?,
        parties: get_json(d, "parties", &what)?,
        seals: get_json(d, "seals", &what)?,
        data,
        root: get_str(d, "root", &what)?,
        prev_root: get_opt_str(d, "prev_root", &what)?,
        last_event: get_opt_str(d, "last_event", &what)?,
        updated_at,
    };
    State::from_parts(parts).map_err(|source| StoreError::Integrity { what, source })
}

/// The event document of a commit item: an applied event's disclosures name the section
/// versions of its new state (`{salt, hash}`, keys of the section collection) instead of
/// carrying their values again ([`EventColumns::from_item`]).
fn event_doc(
    item: &CommitItem,
    pos: i64,
    batch: &str,
    pending: Option<(usize, i64)>,
) -> Result<Document, StoreError> {
    let c = EventColumns::from_item("", item)?;
    let detail = match &c.reason_detail {
        Some(v) => json_bson("event.outcome.reason", v)?,
        None => Bson::Null,
    };
    let mut d = doc! {
        "_id": c.id,
        "pos": pos,
        "batch": batch,
        "state_id": c.state_id,
        "kind": c.kind,
        "contract_name": c.contract_name,
        "contract_version": i64::from(c.contract_version),
        "actor": c.actor,
        "origin_node": c.origin_node,
        "origin_seq": c.origin_seq,
        "outcome": c.outcome,
        "reason": c.reason,
        "reason_detail": detail,
        "new_version": c.new_version,
        "new_root": c.new_root,
        "signed": json_doc("event", &c.signed)?,
        "disclosures": json_doc("disclosures", &c.disclosures)?,
        "receipt": match &c.receipt {
            Some(r) => json_bson("event.receipt", r)?,
            None => Bson::Null,
        },
        "business_events": match &c.business_events {
            Some(b) => json_bson("event.business_events", b)?,
            None => Bson::Null,
        },
        "endorsements": match &c.endorsements {
            Some(e) => json_bson("event.endorsements", e)?,
            None => Bson::Null,
        },
    };
    if let Some((items, since)) = pending {
        d.insert(
            "pending",
            doc! { "items": to_i64("batch.items", items as u64)?, "since": since },
        );
    }
    Ok(d)
}

/// Reads one event document back, checking the derived fields against the signed event; the
/// disclosures are resolved by [`MongoStore::resolve_events`].
fn event_from_doc(d: &Document) -> Result<StoredEvent, StoreError> {
    let what = format!("event {}", d.get_str("_id").unwrap_or("?"));
    let bad =
        |field: &str, e: serde_json::Error| StoreError::malformed(&what, format!("{field}: {e}"));
    let signed =
        serde_json::from_value(get_json(d, "signed", &what)?).map_err(|e| bad("signed", e))?;
    let disclosures = DisclosureColumn::parse(&what, get_json(d, "disclosures", &what)?)?;
    let outcome = match d.get_str("outcome") {
        Ok("applied") => Outcome::Applied {
            version: get_u64(d, "new_version", &what)?,
            root: get_str(d, "new_root", &what)?
                .parse()
                .map_err(|e| StoreError::malformed(&what, format!("new_root: {e}")))?,
        },
        Ok("rejected") => Outcome::Rejected {
            reason: serde_json::from_value(get_json(d, "reason_detail", &what)?)
                .map_err(|e| bad("reason_detail", e))?,
        },
        other => return Err(StoreError::malformed(&what, format!("outcome {other:?}"))),
    };
    // A nullable field as JSON; absent (a document written before the field existed) is
    // `None`, like `null`: no business events, no endorsements.
    let field = |name: &str| {
        d.get(name)
            .map(|b| from_bson(b).map_err(|e| StoreError::malformed(&what, format!("{name}: {e}"))))
            .transpose()
    };
    let record = EventRecord {
        signed,
        disclosures: BTreeMap::new(),
        outcome,
        receipt: receipt_from_column(&what, field("receipt")?)?,
        business_events: business_events_from_column(&what, field("business_events")?)?,
        endorsements: endorsements_from_column(&what, field("endorsements")?)?,
    };
    let derived = DerivedEventColumns {
        id: get_str(d, "_id", &what)?,
        state_id: get_str(d, "state_id", &what)?,
        kind: get_str(d, "kind", &what)?,
        contract_name: get_str(d, "contract_name", &what)?,
        contract_version: get_int(d, "contract_version", &what)?,
        actor: get_str(d, "actor", &what)?,
        origin_node: get_str(d, "origin_node", &what)?,
        origin_seq: get_int(d, "origin_seq", &what)?,
        reason: get_opt_str(d, "reason", &what)?,
    };
    EventColumns::check_derived(&record, &derived)?;
    Ok(StoredEvent {
        record,
        disclosures,
    })
}

fn log_doc(e: &LogEntry) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": to_i64("log.pos", e.pos)?,
        "kind": e.kind.as_str(),
        "subject": e.subject.as_str(),
        "record": e.record.to_string(),
        "prev": e.prev.to_string(),
        "hash": e.hash.to_string(),
    })
}

fn log_from_doc(d: &Document) -> Result<LogEntry, StoreError> {
    let what = "log entry";
    LogEntry::from_columns(
        get_int(d, "_id", what)?,
        &get_str(d, "kind", what)?,
        get_str(d, "subject", what)?,
        &get_str(d, "record", what)?,
        &get_str(d, "prev", what)?,
        &get_str(d, "hash", what)?,
    )
}

fn checkpoint_doc(cp: &SignedCheckpoint) -> Result<Document, StoreError> {
    let c = &cp.checkpoint;
    let signature = json_value("checkpoint.signature", &cp.signature)?;
    Ok(doc! {
        "node": c.node.as_str(),
        "pos": to_i64("checkpoint.pos", c.pos)?,
        "head": c.head.to_string(),
        "at": c.at.0,
        "signature": json_bson("checkpoint.signature", &signature)?,
    })
}

fn checkpoint_from_doc(d: &Document) -> Result<SignedCheckpoint, StoreError> {
    let node = get_str(d, "node", "checkpoint")?;
    let what = format!("checkpoint of node {node}");
    let checkpoint = Checkpoint {
        node: NodeId(node),
        pos: get_u64(d, "pos", &what)?,
        head: get_str(d, "head", &what)?
            .parse()
            .map_err(|e| StoreError::malformed(&what, format!("head: {e}")))?,
        at: Timestamp(get_millis(d, "at", &what)?),
    };
    let signature = serde_json::from_value(get_json(d, "signature", &what)?)
        .map_err(|e| StoreError::malformed(&what, format!("signature: {e}")))?;
    Ok(SignedCheckpoint {
        checkpoint,
        signature,
    })
}

/// Filter matching events that are recorded (not part of an unfinished batch).
fn recorded() -> Document {
    doc! { "pending": { "$exists": false } }
}

impl MongoStore {
    /// Connects, decides between transactions and the recoverable protocol, and finishes or
    /// undoes batches a crashed writer left pending (see [`MongoConfig::recover_after`]).
    /// Call [`Store::migrate`] once to create the collections and indexes.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL is invalid or the server cannot be reached.
    pub async fn open(config: MongoConfig) -> Result<Self, StoreError> {
        let client = Client::with_uri_str(&config.url)
            .await
            .map_err(|e| backend("open", e))?;
        Self::with_client(client, config).await
    }

    /// As [`MongoStore::open`] on an existing client (its pool is shared).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the server cannot be reached.
    pub async fn with_client(client: Client, config: MongoConfig) -> Result<Self, StoreError> {
        let db = client.database(&config.database);
        let replicated = is_replicated(&client).await?;
        let transactions = match config.transactions {
            TransactionMode::Always => true,
            TransactionMode::Never => false,
            _ => replicated,
        };
        let store = MongoStore {
            client,
            db,
            names: config.collections,
            transactions,
            replicated,
            recover_after: config.recover_after,
            #[cfg(feature = "fault-injection")]
            crash_at: None,
        };
        store.recover().await?;
        Ok(store)
    }

    /// Whether commits use multi-document transactions (else the recoverable protocol).
    pub fn uses_transactions(&self) -> bool {
        self.transactions
    }

    /// The database holding the peer collections (for queries of your own).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The collection names in use.
    pub fn collection_names(&self) -> &CollectionNames {
        &self.names
    }

    /// Makes the next recoverable commits stop at `point` as if the process had crashed
    /// there (nothing is undone). Test hook for the recovery protocol.
    #[cfg(feature = "fault-injection")]
    pub fn crash_at(&mut self, point: Option<CrashPoint>) {
        self.crash_at = point;
    }

    #[cfg(feature = "fault-injection")]
    fn crash_point(&self, here: CrashPoint) -> Result<(), Fail> {
        if self.crash_at == Some(here) {
            return Err(Fail::Store(internal(
                "commit",
                format!("simulated crash at {here:?}"),
            )));
        }
        Ok(())
    }

    fn col(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    fn states(&self) -> Collection<Document> {
        self.col(&self.names.state)
    }
    fn history(&self) -> Collection<Document> {
        self.col(&self.names.history)
    }
    fn sections_col(&self) -> Collection<Document> {
        self.col(&self.names.section)
    }
    fn events_col(&self) -> Collection<Document> {
        self.col(&self.names.event)
    }
    fn actors_col(&self) -> Collection<Document> {
        self.col(&self.names.actor)
    }
    fn contracts_col(&self) -> Collection<Document> {
        self.col(&self.names.contract)
    }
    fn meta(&self) -> Collection<Document> {
        self.col(&self.names.meta)
    }
    fn refusals_col(&self) -> Collection<Document> {
        self.col(&self.names.refusal)
    }
    fn log_col(&self) -> Collection<Document> {
        self.col(&self.names.log)
    }
    fn checkpoints_col(&self) -> Collection<Document> {
        self.col(&self.names.checkpoint)
    }
    fn sink_cursors_col(&self) -> Collection<Document> {
        self.col(&self.names.sink_cursor)
    }

    /// The head of the log (its highest position), read inside the transaction of `session`.
    /// The filter (positions start at 1) is what a real server ignores; the nx-27017
    /// emulator sorts an unfiltered `_id` as text (9 after 10), a filtered one by value.
    async fn read_head(&self, mut session: Option<&mut ClientSession>) -> Result<LogHead, Fail> {
        let last = in_session!(
            session,
            self.log_col()
                .find_one(doc! { "_id": { "$gt": 0_i64 } })
                .sort(doc! { "_id": -1 })
        )
        .at("log_head")?;
        Ok(match last {
            Some(d) => log_from_doc(&d)?.head(),
            None => LogHead::default(),
        })
    }

    /// Appends one entry per record after the head. Inside a transaction the head is read
    /// and the entries inserted once: a lost race fails the attempt, and [`MongoStore::run`]
    /// re-runs the whole transaction. Without one the record is already written and only the
    /// append can be re-run: each entry re-reads the head until it wins a position (at most
    /// [`RACE_RETRIES`] lost races per entry).
    async fn append(
        &self,
        records: &[LogRecord<'_>],
        session: Option<&mut ClientSession>,
    ) -> Result<Vec<LogEntry>, Fail> {
        let op = "log";
        let mut appended = Vec::with_capacity(records.len());
        if let Some(s) = session {
            let mut head = self.read_head(Some(&mut *s)).await?;
            let mut docs = Vec::with_capacity(records.len());
            for r in records {
                let entry = head.append(r);
                head = entry.head();
                docs.push(log_doc(&entry)?);
                appended.push(entry);
            }
            if !docs.is_empty() {
                self.log_col().insert_many(docs).session(s).await.at(op)?;
            }
            return Ok(appended);
        }
        let mut head = self.read_head(None).await?;
        for r in records {
            let mut lost = 0;
            loop {
                let entry = head.append(r);
                match self.log_col().insert_one(log_doc(&entry)?).await.at(op) {
                    Ok(_) => {
                        head = entry.head();
                        appended.push(entry);
                        break;
                    }
                    Err(f) if lost_race(&f) && lost < RACE_RETRIES => {
                        lost += 1;
                        head = self.read_head(None).await?;
                    }
                    Err(f) => return Err(f),
                }
            }
        }
        Ok(appended)
    }

    /// Step 4 of the recoverable protocol for a batch past its commit point: appends the log
    /// entries of `events` (in order) that the log does not hold yet, then gives each event
    /// its log position as `pos` and removes its pending tag. Idempotent (recovery re-runs
    /// it); returns the log head after the batch's entries.
    async fn record_events(&self, events: &[&EventRecord]) -> Result<LogHead, Fail> {
        let op = "commit";
        let ids: Vec<String> = events.iter().map(|r| r.id().to_string()).collect();
        let held = self
            .find_all(
                &self.log_col(),
                doc! { "kind": LogKind::Event.as_str(), "subject": { "$in": &ids } },
                doc! { "subject": 1 },
                None,
            )
            .await?;
        let mut at: BTreeMap<String, i64> = BTreeMap::new();
        for d in &held {
            let pos = get_int(d, "_id", "log entry")?;
            let p = at.entry(get_str(d, "subject", "log entry")?).or_insert(pos);
            *p = (*p).min(pos);
        }
        let missing: Vec<LogRecord<'_>> = events
            .iter()
            .zip(&ids)
            .filter(|(_, id)| !at.contains_key(*id))
            .map(|(r, _)| LogRecord::Event(r))
            .collect();
        let appended = self.append(&missing, None).await?;
        for e in &appended {
            at.insert(e.subject.clone(), to_i64("log.pos", e.pos)?);
        }
        for (id, pos) in &at {
            self.events_col()
                .update_one(
                    doc! { "_id": id, "pending": { "$exists": true } },
                    doc! { "$set": { "pos": pos }, "$unset": { "pending": "" } },
                )
                .await
                .at(op)?;
        }
        match appended.last() {
            Some(e) => Ok(e.head()),
            None => self.read_head(None).await,
        }
    }

    /// Runs one write to the end, the single place where lost races are retried: with
    /// transactions, an attempt that lost a race or met a transient error is re-run whole
    /// (re-reading the head and lookups, re-planning) up to [`RACE_RETRIES`] times; the last
    /// failure is then mapped by [`MongoStore::settle`]. Without transactions the write runs
    /// once (its log append re-runs itself, see [`MongoStore::append`]).
    async fn run(&self, w: Write<'_>) -> Result<Option<CommitReceipt>, StoreError> {
        let mut retries = 0;
        loop {
            let result = if self.transactions {
                self.in_transaction(w).await
            } else {
                self.attempt(w, None).await
            };
            match result {
                Ok(r) => return Ok(r),
                Err(f) if self.transactions && lost_race(&f) && retries < RACE_RETRIES => {
                    retries += 1;
                }
                Err(f) => return self.settle(w, f).await,
            }
        }
    }

    /// One attempt of `w` inside a new transaction, committed or aborted.
    async fn in_transaction(&self, w: Write<'_>) -> Result<Option<CommitReceipt>, Fail> {
        let op = w.op();
        let mut s = self.client.start_session().await.at(op)?;
        s.start_transaction().await.at(op)?;
        match self.attempt(w, Some(&mut s)).await {
            Ok(r) => s.commit_transaction().await.map(|()| r).at(op),
            Err(f) => {
                // Aborting can fail too (e.g. lost connection); the server then aborts on its
                // own when the session times out, and the first error is the news.
                if let Err(e) = s.abort_transaction().await {
                    tracing::warn!(backend = NAME, operation = op, error = %e, "aborting the failed transaction failed");
                }
                Err(f)
            }
        }
    }

    /// One attempt of `w`: its record written and its log entry appended, inside the
    /// transaction of `session` when there is one.
    async fn attempt(
        &self,
        w: Write<'_>,
        mut session: Option<&mut ClientSession>,
    ) -> Result<Option<CommitReceipt>, Fail> {
        let op = w.op();
        let record = match w {
            Write::Commit(batch) => return self.write_batch(batch, session).await.map(Some),
            Write::Actor(actor) => {
                let mut d = json_doc("actor", &json_value("actor", actor)?)?;
                d.insert("_id", actor.id.as_str());
                let col = self.actors_col();
                let put = col
                    .replace_one(doc! { "_id": actor.id.as_str() }, d)
                    .upsert(true);
                in_session!(session, put).at(op)?;
                LogRecord::Actor(actor)
            }
            Write::Contract(contract) => {
                let key = contract.contract().to_string();
                let stored = self.contract_identity(&key, session.as_deref_mut()).await?;
                if ContractPut::decide(stored.as_ref(), contract)? == ContractPut::AlreadyRecorded {
                    return Ok(None);
                }
                let d = contract_doc(contract)?;
                in_session!(session, self.contracts_col().insert_one(d)).at(op)?;
                LogRecord::Contract(contract)
            }
            Write::Refusal(refusal) => {
                let d = refusal_doc(refusal)?;
                let key = doc! { "_id": refusal.event.to_string() };
                let col = self.refusals_col();
                let put = || col.replace_one(key.clone(), d.clone()).upsert(true);
                // Two upserts of the same new event may race: the loser replaces again.
                upsert!(session, put, op)?;
                LogRecord::Refusal(refusal)
            }
            Write::ClearRefusal(event) => {
                let col = self.refusals_col();
                let delete = col.delete_one(doc! { "_id": event.to_string() });
                if in_session!(session, delete).at(op)?.deleted_count == 0 {
                    return Ok(None);
                }
                LogRecord::RefusalCleared(event)
            }
        };
        self.append(&[record], session).await?;
        Ok(None)
    }

    /// The error a failed write reports. A duplicate key is mapped here as the contract words
    /// it: a commit's conflict as [`MongoStore::explain_conflict`] finds it, a contract
    /// decided again against what the winner recorded.
    async fn settle(&self, w: Write<'_>, f: Fail) -> Result<Option<CommitReceipt>, StoreError> {
        let (op, e) = match f {
            Fail::Store(e) => return Err(e),
            Fail::Mongo(op, e) if error::is_duplicate_key(&e) => (op, e),
            Fail::Mongo(op, e) => return Err(backend(op, e)),
        };
        match w {
            Write::Commit(batch) => {
                let explained = self.explain_conflict(batch).await;
                Err(conflict_or_backend(op, e, || explained))
            }
            Write::Contract(contract) => {
                let c = contract.contract();
                let stored = self
                    .contract_identity(&c.to_string(), None)
                    .await
                    .map_err(Fail::into_store)?;
                match ContractPut::decide(stored.as_ref(), contract)? {
                    // The winner recorded it (with its log entry); a lost log race of this
                    // put's own insert (op `log`) is not that.
                    ContractPut::AlreadyRecorded if op != "log" => Ok(None),
                    _ => Err(conflict_or_backend(op, e, || {
                        StoreError::contract_identity(c, "(concurrent)", contract.identity)
                    })),
                }
            }
            _ => Err(backend(op, e)),
        }
    }

    /// Finishes or undoes every batch left pending by a crashed writer at least
    /// [`MongoConfig::recover_after`] ago. Runs on open; safe to call at any time.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for database failures; [`StoreError::Integrity`] when a batch
    /// past its commit point cannot be completed because its state was changed meanwhile.
    pub async fn recover(&self) -> Result<RecoveryReport, StoreError> {
        let cutoff = now_ms().saturating_sub(self.recover_after.as_millis() as i64);
        let mut cursor = self
            .events_col()
            .find(doc! { "pending.since": { "$lte": cutoff } })
            .projection(doc! { "batch": 1 })
            .await
            .map_err(|e| backend("recover", e))?;
        let mut batches = BTreeSet::new();
        while cursor.advance().await.map_err(|e| backend("recover", e))? {
            let d = cursor
                .deserialize_current()
                .map_err(|e| backend("recover", e))?;
            batches.insert(get_str(&d, "batch", "pending event")?);
        }
        let mut report = RecoveryReport::default();
        for b in batches {
            if self.resolve_batch(&b).await? {
                report.completed.push(b);
            } else {
                report.undone.push(b);
            }
        }
        Ok(report)
    }

    /// Completes batch `b` if it reached its commit point (all history versions present),
    /// else undoes it. Returns whether it was completed. Idempotent.
    async fn resolve_batch(&self, b: &str) -> Result<bool, StoreError> {
        let op = "recover";
        let mut cursor = self
            .events_col()
            .find(doc! { "batch": b })
            .sort(doc! { "pos": 1 })
            .await
            .map_err(|e| backend(op, e))?;
        let mut events = Vec::new();
        while cursor.advance().await.map_err(|e| backend(op, e))? {
            events.push(cursor.deserialize_current().map_err(|e| backend(op, e))?);
        }
        let Some(items) = events
            .iter()
            .find_map(|d| d.get_document("pending").ok())
            .map(|p| get_int(p, "items", "pending batch"))
            .transpose()?
        else {
            return Ok(true); // nothing pending any more
        };
        let ids: Vec<String> = events
            .iter()
            .map(|d| get_str(d, "_id", "pending event"))
            .collect::<Result<_, _>>()?;
        // (state id, version) that each event of the batch produced.
        let mut produced = Vec::new();
        for d in &events {
            if d.get_str("outcome") == Ok("applied") {
                let v = get_u64(d, "new_version", "pending event")?;
                if v > 0 {
                    produced.push((get_str(d, "state_id", "pending event")?, v));
                }
            }
        }
        let mut complete = events.len() as i64 == items;
        if complete {
            let found = self
                .history()
                .count_documents(doc! { "batch": b, "last_event": { "$in": &ids } })
                .await
                .map_err(|e| backend(op, e))?;
            complete = found == produced.len() as u64;
        }
        if !complete {
            self.history()
                .delete_many(doc! { "batch": b, "last_event": { "$in": &ids } })
                .await
                .map_err(|e| backend(op, e))?;
            self.events_col()
                .delete_many(doc! { "batch": b, "pending": { "$exists": true } })
                .await
                .map_err(|e| backend(op, e))?;
            return Ok(false);
        }
        // Past the commit point: move every touched state to the batch's last version.
        let mut span: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (id, v) in produced {
            let e = span.entry(id).or_insert((v, v));
            e.0 = e.0.min(v);
            e.1 = e.1.max(v);
        }
        for (id, (first, last)) in span {
            let h = self
                .history()
                .find_one(doc! { "id": &id, "version": to_i64("version", last)? })
                .await
                .map_err(|e| backend(op, e))?
                .ok_or_else(|| internal(op, format!("history of {id} v{last} vanished")))?;
            let state = self.version_from_history(&h, op).await?;
            self.advance_current(&id, first - 1, last, current_doc(&state)?)
                .await
                .map_err(Fail::into_store)?;
        }
        let rows = events
            .iter()
            .map(event_from_doc)
            .collect::<Result<Vec<_>, _>>()?;
        let records = self.resolve_events(rows, op).await?;
        let records: Vec<&EventRecord> = records.iter().collect();
        self.record_events(&records)
            .await
            .map_err(Fail::into_store)?;
        Ok(true)
    }

    /// The records of `rows`, each section version their disclosures name read from the
    /// section collection: one `find` per [`SECTION_LOOKUP_BATCH`] distinct versions, none
    /// when every disclosure is inline (rejected events, documents written before events named
    /// section versions). A named version that is not stored is an integrity error naming the
    /// event ([`DisclosureColumn::resolve`]).
    async fn resolve_events(
        &self,
        rows: Vec<StoredEvent>,
        op: &'static str,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let keys = section_keys(&rows);
        let mut values: BTreeMap<SectionKey, Arc<Value>> = BTreeMap::new();
        for chunk in keys.chunks(SECTION_LOOKUP_BATCH) {
            let any: Vec<Document> = chunk
                .iter()
                .map(|(state, name, hash)| section_key(state, name, hash))
                .collect();
            let found = self
                .collect(&self.sections_col(), doc! { "$or": any }, doc! {}, None, op)
                .await?;
            for d in &found {
                let what = "section version";
                let key = (
                    get_str(d, "state_id", what)?,
                    get_str(d, "name", what)?,
                    get_str(d, "hash", what)?,
                );
                let what = format!("section version {} {} of state {}", key.1, key.2, key.0);
                let value = get_json(d, "value", &what)?;
                values.insert(key, Arc::new(value));
            }
        }
        rows.into_iter()
            .map(|row| row.resolve(|key| Ok(values.get(key).cloned())))
            .collect()
    }

    /// The disclosed sections `{name: value}` of history document `h`: its seals with a
    /// salt, each read from its section version (one `find`). A section version that is
    /// missing is left out, which [`State::from_parts`] reports.
    async fn section_data(&self, h: &Document, op: &'static str) -> Result<Value, StoreError> {
        let id = get_str(h, "id", "history document")?;
        let seals = seals_of(h).ok_or_else(|| {
            StoreError::malformed(format!("state {id}"), "history seals do not parse")
        })?;
        let keys = disclosed(&seals);
        let mut data = serde_json::Map::new();
        if keys.is_empty() {
            return Ok(Value::Object(data));
        }
        let any: Vec<Document> = keys
            .iter()
            .map(|(n, h)| doc! { "name": *n, "hash": h.as_str() })
            .collect();
        let found = self
            .collect(
                &self.sections_col(),
                doc! { "state_id": &id, "$or": any },
                doc! { "name": 1 },
                None,
                op,
            )
            .await?;
        for d in &found {
            let what = format!("section version of state {id}");
            let (name, hash) = (get_str(d, "name", &what)?, get_str(d, "hash", &what)?);
            if keys.iter().any(|(n, h)| *n == name && *h == hash) {
                data.insert(name, get_json(d, "value", &what)?);
            }
        }
        Ok(Value::Object(data))
    }

    /// The state version history document `h` holds, with its section versions.
    async fn version_from_history(
        &self,
        h: &Document,
        op: &'static str,
    ) -> Result<State, StoreError> {
        let data = self.section_data(h, op).await?;
        state_from_history(h, data)
    }

    /// Moves the current document of `id` from version `base` to `doc`, the whole document
    /// of version `last`; a no-op if it is already at `last` or beyond.
    async fn advance_current(
        &self,
        id: &str,
        base: u64,
        last: u64,
        doc: Document,
    ) -> Result<(), Fail> {
        let op = "commit";
        let current = self
            .states()
            .find_one(doc! { "_id": id })
            .projection(doc! { "version": 1 })
            .await
            .at(op)?;
        let at = match &current {
            Some(d) => get_u64(d, "version", id)?,
            None => 0,
        };
        if at >= last {
            return Ok(());
        }
        if at != base {
            // The version guard failed: another writer moved the document meanwhile.
            return Err(Fail::Store(StoreError::stale_version(
                &StateId::from(id),
                base,
                at,
            )));
        }
        if current.is_none() {
            self.states().insert_one(doc).await.at(op)?;
        } else {
            let r = self
                .states()
                .replace_one(doc! { "_id": id, "version": to_i64("version", base)? }, doc)
                .await
                .at(op)?;
            if r.matched_count != 1 {
                return Err(Fail::Store(internal(
                    op,
                    format!("state {id} left version {base} during commit"),
                )));
            }
        }
        Ok(())
    }

    /// Runs `find` and collects every document, inside the transaction when `session` is
    /// given.
    async fn find_all(
        &self,
        col: &Collection<Document>,
        filter: Document,
        projection: Document,
        session: Option<&mut ClientSession>,
    ) -> Result<Vec<Document>, Fail> {
        let op = "commit";
        let mut out = Vec::new();
        match session {
            Some(s) => {
                let mut c = col
                    .find(filter)
                    .projection(projection)
                    .session(&mut *s)
                    .await
                    .at(op)?;
                while c.advance(s).await.at(op)? {
                    out.push(c.deserialize_current().at(op)?);
                }
            }
            None => {
                let mut c = col.find(filter).projection(projection).await.at(op)?;
                while c.advance().await.at(op)? {
                    out.push(c.deserialize_current().at(op)?);
                }
            }
        }
        Ok(out)
    }

    /// Reads what is stored about `batch` ([`Lookups`]): one `find` for its event ids, one
    /// for its origin sequences, one for its states.
    async fn read_recorded(
        &self,
        batch: &CommitBatch,
        mut session: Option<&mut ClientSession>,
    ) -> Result<Found, Fail> {
        let lookups = Lookups::of(batch);
        let mut found = Found::default();
        let ids: BTreeMap<String, EventId> = lookups
            .events
            .iter()
            .map(|id| (id.to_string(), *id))
            .collect();
        let keys: Vec<&str> = ids.keys().map(String::as_str).collect();
        let docs = self
            .find_all(
                &self.events_col(),
                doc! { "_id": { "$in": keys } },
                doc! { "pending": 1 },
                session.as_deref_mut(),
            )
            .await?;
        for d in docs {
            let Some(id) = ids.get(&get_str(&d, "_id", "event")?) else {
                continue;
            };
            if d.contains_key("pending") {
                found.pending.insert(*id);
            } else {
                found.recorded.events.insert(*id);
            }
        }
        let mut seqs: BTreeMap<&NodeId, Vec<i64>> = BTreeMap::new();
        for (node, seq) in &lookups.origins {
            seqs.entry(node)
                .or_default()
                .push(to_i64("event.origin_seq", seq.0)?);
        }
        let mut clauses: Vec<Document> = seqs
            .iter()
            .map(
                |(node, seqs)| doc! { "origin_node": node.as_str(), "origin_seq": { "$in": seqs } },
            )
            .collect();
        let filter = match clauses.len() {
            0 => None,
            1 => clauses.pop(),
            _ => Some(doc! { "$or": clauses }),
        };
        if let Some(filter) = filter {
            let docs = self
                .find_all(
                    &self.events_col(),
                    filter,
                    doc! { "origin_node": 1, "origin_seq": 1 },
                    session.as_deref_mut(),
                )
                .await?;
            for d in docs {
                let id = get_str(&d, "_id", "event")?;
                let key = (
                    NodeId::from(get_str(&d, "origin_node", &id)?),
                    OriginSeq(get_u64(&d, "origin_seq", &id)?),
                );
                let owner = id
                    .parse::<EventId>()
                    .map_err(|e| StoreError::malformed(format!("event {id}"), e))?;
                found.recorded.origins.insert(key, owner);
            }
        }
        if !lookups.states.is_empty() {
            let states: Vec<&str> = lookups.states.iter().map(StateId::as_str).collect();
            let docs = self
                .find_all(
                    &self.states(),
                    doc! { "_id": { "$in": states } },
                    doc! { "version": 1 },
                    session.as_deref_mut(),
                )
                .await?;
            let mut at = Vec::with_capacity(docs.len());
            for d in docs {
                let id = get_str(&d, "_id", "state")?;
                let version = get_u64(&d, "version", &id)?;
                at.push(doc! { "id": &id, "version": to_i64("version", version)? });
                found.recorded.versions.insert(StateId(id), version);
            }
            // The seals of each current version, from its history document: the plan then
            // writes only the sections that changed. Seals that do not parse leave the state
            // out, and it is written in full.
            if !at.is_empty() {
                let docs = self
                    .find_all(
                        &self.history(),
                        doc! { "$or": at },
                        doc! { "id": 1, "version": 1, "seals": 1 },
                        session.as_deref_mut(),
                    )
                    .await?;
                for d in docs {
                    let id = StateId(get_str(&d, "id", "history document")?);
                    let version = get_u64(&d, "version", id.as_str())?;
                    if found.recorded.versions.get(&id) != Some(&version) {
                        continue;
                    }
                    if let Some(seals) = seals_of(&d) {
                        found.recorded.seals.insert(id, seals);
                    }
                }
            }
        }
        // Without a transaction the entries are appended after the commit point (whatever
        // the head is then), so the head only matters inside one.
        if session.is_some() {
            found.recorded.log_head = self.read_head(session).await?;
        }
        Ok(found)
    }

    /// Reads what is recorded and lets the core decide ([`CommitPlan`]). One case is this
    /// adapter's own: an event of the batch that belongs to an unfinished batch (see
    /// [`unfinished`]).
    async fn plan(
        &self,
        batch: &CommitBatch,
        session: Option<&mut ClientSession>,
    ) -> Result<CommitPlan, Fail> {
        let found = self.read_recorded(batch, session).await?;
        if let Some(item) = batch
            .items
            .iter()
            .find(|i| found.pending.contains(&i.event.id()))
        {
            return Err(Fail::Store(unfinished(item)));
        }
        Ok(CommitPlan::new(batch, &found.recorded)?)
    }

    /// Reserves `n` consecutive provisional event positions (counted from 1); returns the
    /// first.
    async fn reserve_positions(&self, n: usize) -> Result<i64, Fail> {
        let n = to_i64("batch.items", n as u64)?;
        let meta = self.meta();
        let action = meta
            .find_one_and_update(
                doc! { "_id": schema::EVENT_POSITION_COUNTER },
                doc! { "$inc": { "value": n } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After);
        let d = action
            .await
            .at("commit")?
            .ok_or_else(|| internal("commit", "position counter missing after upsert"))?;
        Ok(get_int(&d, "value", "position counter")? - n + 1)
    }

    /// Builds the documents the plan writes: an event per recorded item, a history
    /// version per recorded state, each new section version, and how the current document
    /// of each touched state moves.
    fn documents<'a>(
        &self,
        batch: &'a CommitBatch,
        plan: &CommitPlan,
        first_pos: i64,
        batch_id: &str,
        pending: bool,
    ) -> Result<BatchDocs<'a>, StoreError> {
        let pend = pending.then_some((plan.record.len(), now_ms()));
        let current: BTreeMap<usize, &CurrentRow> =
            plan.current.iter().map(|r| (r.item, r)).collect();
        let mut docs = BatchDocs {
            events: Vec::with_capacity(plan.record.len()),
            history: Vec::new(),
            sections: Vec::with_capacity(plan.sections.len()),
            moves: Vec::with_capacity(current.len()),
        };
        for (n, &i) in plan.record.iter().enumerate() {
            let item = &batch.items[i];
            docs.events
                .push(event_doc(item, first_pos + n as i64, batch_id, pend)?);
            let Some(state) = item.state.as_deref() else {
                continue;
            };
            if let Some(row) = current.get(&i) {
                let patch = match &row.data {
                    DataWrite::Patch { set, remove } => patch_update(state, set, remove)?,
                    _ => None,
                };
                docs.moves.push(CurrentMove {
                    id: state.id.to_string(),
                    write: row.write,
                    state,
                    patch,
                });
            }
            let mut d = history_doc(state, batch_id)?;
            d.insert("_id", ObjectId::new());
            docs.history.push(d);
        }
        for v in plan.section_versions(batch) {
            docs.sections.push((
                section_key(v.state.as_str(), v.name, &v.hash.to_string()),
                doc! { "$setOnInsert": { "value": json_bson("section.value", v.value)? } },
            ));
        }
        docs.moves.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(docs)
    }

    /// Inserts each section version whose key is absent (an upsert that only sets the value
    /// on insert), inside the transaction of `session` when there is one. Without one, an
    /// upsert that lost the insert to a concurrent identical one is run again as the update
    /// it now is.
    async fn put_sections(
        &self,
        sections: &[(Document, Document)],
        mut session: Option<&mut ClientSession>,
    ) -> Result<(), Fail> {
        let op = "commit";
        let col = self.sections_col();
        for (key, update) in sections {
            let put = || col.update_one(key.clone(), update.clone()).upsert(true);
            upsert!(session, put, op)?;
        }
        Ok(())
    }

    /// One commit: read what is recorded, let the core plan, write the plan — inside a
    /// transaction when `session` is given, else through the recoverable protocol.
    async fn write_batch(
        &self,
        batch: &CommitBatch,
        mut session: Option<&mut ClientSession>,
    ) -> Result<CommitReceipt, Fail> {
        let plan = self.plan(batch, session.as_deref_mut()).await?;
        let mut receipt = plan.receipt();
        if plan.is_empty() {
            return Ok(receipt);
        }
        let batch_id = ObjectId::new().to_hex();
        // An event's `pos` is its log position, so events list in log order. A pending event
        // (recoverable protocol) holds a provisional one below every recorded position until
        // its log entry is appended.
        let first = match (&session, plan.log.first()) {
            (Some(_), Some(entry)) => to_i64("log.pos", entry.pos)?,
            _ => PENDING_POS + self.reserve_positions(plan.record.len()).await?,
        };
        let docs = self.documents(batch, &plan, first, &batch_id, session.is_none())?;
        match session {
            Some(s) => {
                self.write_transactional(&mut *s, docs).await?;
                let log = plan
                    .log
                    .iter()
                    .map(log_doc)
                    .collect::<Result<Vec<_>, _>>()?;
                self.log_col()
                    .insert_many(log)
                    .session(s)
                    .await
                    .at("commit")?;
            }
            None => {
                let events: Vec<&EventRecord> =
                    plan.record.iter().map(|&i| &batch.items[i].event).collect();
                receipt.log_head = Some(self.write_recoverable(&batch_id, docs, &events).await?);
            }
        }
        Ok(receipt)
    }

    /// The writes of a plan inside the transaction of `s`.
    async fn write_transactional(
        &self,
        s: &mut ClientSession,
        docs: BatchDocs<'_>,
    ) -> Result<(), Fail> {
        let op = "commit";
        self.events_col()
            .insert_many(docs.events)
            .session(&mut *s)
            .await
            .at(op)?;
        if !docs.history.is_empty() {
            self.history()
                .insert_many(docs.history)
                .session(&mut *s)
                .await
                .at(op)?;
        }
        self.put_sections(&docs.sections, Some(&mut *s)).await?;
        for m in docs.moves {
            match m.write {
                CurrentWrite::Insert => {
                    self.states()
                        .insert_one(m.whole()?)
                        .session(&mut *s)
                        .await
                        .at(op)?;
                }
                CurrentWrite::Update { from } => {
                    let guard = doc! { "_id": &m.id, "version": to_i64("version", from)? };
                    let r = match m.patch {
                        Some(ref u) => {
                            self.states()
                                .update_one(guard, u.clone())
                                .session(&mut *s)
                                .await
                        }
                        None => {
                            self.states()
                                .replace_one(guard, m.whole()?)
                                .session(&mut *s)
                                .await
                        }
                    }
                    .at(op)?;
                    if r.matched_count != 1 {
                        // The version guard failed: report what the document holds now.
                        let found = self
                            .states()
                            .find_one(doc! { "_id": &m.id })
                            .projection(doc! { "version": 1 })
                            .session(&mut *s)
                            .await
                            .at(op)?
                            .map(|d| get_u64(&d, "version", &m.id))
                            .transpose()?
                            .unwrap_or(0);
                        return Err(Fail::Store(StoreError::stale_version(
                            &StateId(m.id),
                            from,
                            found,
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves the current document behind its version guard, only the changed sections when
    /// the plan patches; whether the guard matched.
    async fn move_current(&self, m: &CurrentMove<'_>) -> Result<bool, Fail> {
        let guard = doc! { "_id": m.id.as_str(), "version": to_i64("version", m.base())? };
        let r = match &m.patch {
            Some(u) => self.states().update_one(guard, u.clone()).await,
            None => self.states().replace_one(guard, m.whole()?).await,
        };
        Ok(matches!(r, Ok(ref r) if r.matched_count == 1))
    }

    /// Steps 1–4 of the recoverable protocol (see the module docs), the batch's log entries
    /// appended between 3 and 4; returns the log head after them.
    async fn write_recoverable(
        &self,
        batch_id: &str,
        docs: BatchDocs<'_>,
        events: &[&EventRecord],
    ) -> Result<LogHead, Fail> {
        let op = "commit";
        // 1. Events, pending.
        #[cfg(feature = "fault-injection")]
        if self.crash_at == Some(CrashPoint::MidEvents) {
            if let Some(first) = docs.events.first() {
                self.events_col().insert_one(first.clone()).await.at(op)?;
            }
            self.crash_point(CrashPoint::MidEvents)?;
        }
        if let Err(e) = self.events_col().insert_many(docs.events).await.at(op) {
            self.undo(batch_id).await?;
            return Err(e);
        }
        #[cfg(feature = "fault-injection")]
        self.crash_point(CrashPoint::AfterEvents)?;
        // New section versions, before the history that references them. An undone batch
        // leaves the ones it inserted: unreferenced, they show nowhere, and another batch
        // may already reference the same key (never removed, so never lost).
        if let Err(e) = self.put_sections(&docs.sections, None).await {
            self.undo(batch_id).await?;
            return Err(e);
        }
        // 2. History: the unique (id, version) index admits one writer per version.
        if !docs.history.is_empty() {
            if let Err(e) = self.history().insert_many(docs.history).await.at(op) {
                self.undo(batch_id).await?;
                return Err(e);
            }
        }
        #[cfg(feature = "fault-injection")]
        self.crash_point(CrashPoint::AfterHistory)?;
        // Committed. 3. Current states, version-guarded; 4. events applied.
        let finish = async {
            // New states in one insert, existing ones each behind a version guard; anything
            // unexpected (e.g. a retry after a partial write) goes the careful way.
            let (created, moved): (Vec<CurrentMove<'_>>, Vec<CurrentMove<'_>>) = docs
                .moves
                .into_iter()
                .partition(|m| m.write == CurrentWrite::Insert);
            if !created.is_empty() {
                let rows: Vec<Document> = created
                    .iter()
                    .map(CurrentMove::whole)
                    .collect::<Result<_, _>>()?;
                if self.states().insert_many(rows).await.is_err() {
                    for m in created {
                        self.advance_current(&m.id, m.base(), m.last(), m.whole()?)
                            .await?;
                    }
                }
            }
            for m in moved {
                if !self.move_current(&m).await? {
                    self.advance_current(&m.id, m.base(), m.last(), m.whole()?)
                        .await?;
                }
            }
            #[cfg(feature = "fault-injection")]
            self.crash_point(CrashPoint::AfterStates)?;
            self.record_events(events).await
        };
        match finish.await {
            Ok(head) => Ok(head),
            #[cfg(feature = "fault-injection")]
            Err(f) if self.crash_at.is_some() => Err(f),
            Err(_) => {
                // Past the commit point: completing is the only way left, and it is idempotent.
                if self.resolve_batch(batch_id).await? {
                    self.read_head(None).await
                } else {
                    Err(Fail::Store(internal(
                        op,
                        "batch undone after its commit point",
                    )))
                }
            }
        }
    }

    /// Removes everything a recoverable batch wrote before its commit point.
    async fn undo(&self, batch_id: &str) -> Result<(), Fail> {
        self.history()
            .delete_many(doc! { "batch": batch_id })
            .await
            .at("commit")?;
        self.events_col()
            .delete_many(doc! { "batch": batch_id })
            .await
            .at("commit")?;
        Ok(())
    }

    /// After a duplicate-key error (a race the plan could not see): the conflict as the
    /// contract words it. The other writer's documents are visible now, so the plan is made
    /// again; if it still sees nothing, the winner has claimed a history version (or recorded
    /// an event) without finishing yet, and the violated index names the conflict.
    async fn explain_conflict(&self, batch: &CommitBatch) -> StoreError {
        let plan = match self.plan(batch, None).await {
            Err(Fail::Store(e)) => return e,
            Err(Fail::Mongo(op, e)) => return backend(op, e),
            Ok(plan) => plan,
        };
        for &i in &plan.record {
            let Some(state) = &batch.items[i].state else {
                continue;
            };
            let claimed = self
                .history()
                .find_one(doc! { "id": state.id.as_str() })
                .sort(doc! { "version": -1 })
                .projection(doc! { "version": 1 })
                .await
                .ok()
                .flatten()
                .and_then(|d| get_u64(&d, "version", "history").ok())
                .unwrap_or(0);
            if claimed >= state.version {
                return StoreError::stale_version(&state.id, state.version - 1, claimed);
            }
        }
        let e = batch.items[plan.record.first().copied().unwrap_or(0)]
            .event
            .event();
        StoreError::conflict(
            ConflictKind::OriginTaken,
            format!(
                "origin {} seq {} (a concurrent writer recorded the same event or origin \
                 sequence)",
                e.origin_node, e.origin_seq
            ),
            e.origin_seq.0.saturating_sub(1),
            e.origin_seq.0,
        )
    }

    /// Whether history document `d` was written by a batch whose events are still pending
    /// (a commit in flight, or a crashed one that recovery will finish or undo).
    async fn in_flight(&self, d: &Document) -> Result<bool, StoreError> {
        let Ok(batch) = d.get_str("batch") else {
            return Ok(false);
        };
        let pending = self
            .events_col()
            .find_one(doc! { "batch": batch, "pending": { "$exists": true } })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(|e| backend("state_at", e))?;
        Ok(pending.is_some())
    }

    /// The identity recorded for the contract document `_id` = `key`, if any.
    async fn contract_identity(
        &self,
        key: &str,
        mut session: Option<&mut ClientSession>,
    ) -> Result<Option<Digest>, Fail> {
        let what = format!("contract {key}");
        let col = self.contracts_col();
        let find = col
            .find_one(doc! { "_id": key })
            .projection(doc! { "identity": 1 });
        Ok(in_session!(session, find)
            .at("put_contract")?
            .map(|d| {
                get_str(&d, "identity", &what)?
                    .parse::<Digest>()
                    .map_err(|e| StoreError::malformed(&what, e))
            })
            .transpose()?)
    }

    async fn collect(
        &self,
        col: &Collection<Document>,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
        op: &'static str,
    ) -> Result<Vec<Document>, StoreError> {
        let mut find = col.find(filter).sort(sort);
        if let Some(l) = limit {
            find = find.limit(l);
        }
        let mut cursor = find.await.map_err(|e| backend(op, e))?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(|e| backend(op, e))? {
            out.push(cursor.deserialize_current().map_err(|e| backend(op, e))?);
        }
        Ok(out)
    }
}

/// How many first-layout history documents `migrate` upgrades per round.
const UPGRADE_BATCH: i64 = 256;

impl MongoStore {
    /// Upgrades state collections of the first layout in place: each history document that
    /// still carries `data` has its disclosed sections stored as section versions (keys
    /// already stored are kept), then loses `data`; then current documents lose the fields
    /// only the history keeps. Every step is idempotent, so a crash midway is repaired by
    /// running `migrate` again.
    async fn upgrade_first_layout(&self) -> Result<(), StoreError> {
        let op = "migrate";
        self.check_first_layout().await?;
        loop {
            let docs = self
                .collect(
                    &self.history(),
                    doc! { "data": { "$exists": true } },
                    doc! { "_id": 1 },
                    Some(UPGRADE_BATCH),
                    op,
                )
                .await?;
            if docs.is_empty() {
                break;
            }
            for h in docs {
                let v = first_layout_sections(&h)?;
                for (name, hash, value) in v.sections {
                    self.upgrade_section(&v.id, v.version, &name, &hash, value)
                        .await?;
                }
                let key = h.get("_id").cloned().unwrap_or(Bson::Null);
                self.history()
                    .update_one(doc! { "_id": key }, doc! { "$unset": { "data": "" } })
                    .await
                    .map_err(|e| backend(op, e))?;
            }
        }
        let extra = schema::first_layout_state_extra();
        let any: Vec<Document> = extra
            .clone()
            .map(|f| doc! { f: { "$exists": true } })
            .collect();
        let unset: Document = extra.map(|f| (f.to_owned(), Bson::from(""))).collect();
        self.states()
            .update_many(doc! { "$or": any }, doc! { "$unset": unset })
            .await
            .map_err(|e| backend(op, e))?;
        Ok(())
    }

    /// Refuses the upgrade, before anything is changed, when two first-layout history
    /// documents hold one section version (same state, name and hash) with different values:
    /// it is stored once, so one of them was edited behind SST's back.
    async fn check_first_layout(&self) -> Result<(), StoreError> {
        let op = "migrate";
        let mut cursor = self
            .history()
            .find(doc! { "data": { "$exists": true } })
            .await
            .map_err(|e| backend(op, e))?;
        // Per section version: a digest of its canonical value and the version holding it.
        let mut seen: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
        while cursor.advance().await.map_err(|e| backend(op, e))? {
            let h = cursor.deserialize_current().map_err(|e| backend(op, e))?;
            let FirstLayoutVersion {
                id,
                version,
                sections,
            } = first_layout_sections(&h)?;
            for (name, hash, value) in sections {
                let digest = value_digest(&id, &value)?;
                match seen.entry((id.clone(), name.clone(), hash)) {
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert((digest, version));
                    }
                    std::collections::btree_map::Entry::Occupied(e) if e.get().0 != digest => {
                        return Err(sst_core::raw::first_layout_disagreement(
                            &id,
                            &name,
                            e.get().1,
                            version,
                        ));
                    }
                    std::collections::btree_map::Entry::Occupied(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Stores one section version of a first-layout history document unless its key is
    /// stored; a stored one (another version holding it, or an upgrade interrupted earlier)
    /// must hold the same value.
    async fn upgrade_section(
        &self,
        id: &str,
        version: u64,
        name: &str,
        hash: &str,
        value: Bson,
    ) -> Result<(), StoreError> {
        let op = "migrate";
        let key = section_key(id, name, hash);
        let col = self.sections_col();
        let put = col
            .update_one(
                key.clone(),
                doc! { "$setOnInsert": { "value": value.clone() } },
            )
            .upsert(true);
        let inserted = match put.await {
            Ok(r) => r.upserted_id.is_some(),
            // A concurrent migrate inserted it first: compared as stored.
            Err(e) if error::is_duplicate_key(&e) => false,
            Err(e) => return Err(backend(op, e)),
        };
        if inserted {
            return Ok(());
        }
        let held = col
            .find_one(key)
            .await
            .map_err(|e| backend(op, e))?
            .and_then(|d| d.get("value").cloned())
            .unwrap_or(Bson::Null);
        if value_digest(id, &held)? != value_digest(id, &value)? {
            return Err(sst_core::raw::first_layout_disagreement(
                id, name, version, version,
            ));
        }
        Ok(())
    }

    /// Creates the history view ([`CollectionNames::versions`] on
    /// [`schema::versions_pipeline`]) unless it exists. A server without views (the nx-27017
    /// emulator accepts the command and makes a plain collection, dropped again) is left
    /// without it: run the pipeline on the history collection instead. A collection of that
    /// name that holds documents is refused.
    async fn create_versions_view(&self) -> Result<(), StoreError> {
        let op = "migrate";
        let name = self.names.versions.as_str();
        match self.collection_type(name).await?.as_deref() {
            Some("view") => return Ok(()),
            Some(kind) => {
                // An empty plain collection is what a server without views made of an
                // earlier `create` (the nx-27017 emulator ignores `viewOn`): dropped and tried
                // again. Anything else of that name is not ours.
                let col = self.col(name);
                let held = col.find_one(doc! {}).await.map_err(|e| backend(op, e))?;
                if held.is_some() {
                    return Err(StoreError::Schema {
                        backend: NAME,
                        table: name.to_owned(),
                        detail: format!(
                            "a {kind} holding documents exists where SST keeps its history \
                             view; choose other collection names (MongoConfig::with_prefix) \
                             or move it away"
                        ),
                    });
                }
                col.drop().await.map_err(|e| backend(op, e))?;
            }
            None => {}
        }
        let create = doc! {
            "create": name,
            "viewOn": self.names.history.as_str(),
            "pipeline": schema::versions_pipeline(&self.names),
        };
        if let Err(e) = self.db.run_command(create).await {
            // 48 = NamespaceExists: another process created it first.
            let exists =
                matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 48);
            if !exists {
                return Err(backend(op, e));
            }
        }
        if let Some(kind) = self.collection_type(name).await? {
            if kind != "view" {
                // The server accepted the command but made a plain collection: no views here.
                self.col(name).drop().await.map_err(|e| backend(op, e))?;
                tracing::info!(
                    backend = NAME,
                    view = name,
                    "the server makes no views; run schema::versions_pipeline on the history \
                     collection instead"
                );
            }
        }
        Ok(())
    }

    /// The type (`collection`, `view`, …) of collection `name`, if it exists.
    async fn collection_type(&self, name: &str) -> Result<Option<String>, StoreError> {
        let op = "migrate";
        let reply = self
            .db
            .run_command(doc! { "listCollections": 1, "filter": { "name": name } })
            .await
            .map_err(|e| backend(op, e))?;
        let batch = reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .map_err(|e| internal(op, format!("listCollections reply: {e}")))?;
        Ok(batch
            .iter()
            .filter_map(Bson::as_document)
            .find(|d| d.get_str("name") == Ok(name))
            .map(|d| d.get_str("type").unwrap_or("collection").to_owned()))
    }
}

/// Whether the server is a replica-set member or a `mongos`, where multi-document
/// transactions are available.
async fn is_replicated(client: &Client) -> Result<bool, StoreError> {
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .map_err(|e| backend("open", e))?;
    Ok(hello.contains_key("setName") || hello.get_str("msg") == Ok("isdbgrid"))
}

#[async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        NAME
    }

    /// Concurrent writers are serialised by unique indexes (recoverable protocol) or by
    /// MongoDB's transaction isolation — which only replica sets and sharded clusters offer.
    /// Transactions forced ([`TransactionMode::Always`]) on a server that advertises neither
    /// are outside MongoDB's guarantees, so concurrent writers are not declared there.
    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.concurrent_writers = !self.transactions || self.replicated;
        c
    }

    /// Refuses (with [`StoreError::Schema`]) a collection carrying a peer collection's name
    /// whose documents are not SST's, checked on one document of each before anything is
    /// created; and one on which SST's unique indexes cannot be built. State collections of
    /// the first layout (history documents carrying `data`) are upgraded in place, in an
    /// order that a re-run repairs after a crash midway. The history view is created where
    /// the server supports views.
    async fn migrate(&self) -> Result<(), StoreError> {
        let op = "migrate";
        let existing = self
            .db
            .list_collection_names()
            .await
            .map_err(|e| backend(op, e))?;
        for shape in schema::shapes(&self.names) {
            if !existing.contains(&shape.collection) {
                continue;
            }
            let sample = self
                .col(&shape.collection)
                .find_one(doc! {})
                .await
                .map_err(|e| backend(op, e))?;
            if let Some(detail) = sample.and_then(|d| shape.mismatch(&d)) {
                return Err(StoreError::Schema {
                    backend: NAME,
                    table: shape.collection,
                    detail,
                });
            }
        }
        for name in schema::collections(&self.names) {
            if !existing.iter().any(|n| n == name) {
                if let Err(e) = self.db.create_collection(name).await {
                    // 48 = NamespaceExists: another process created it first.
                    let exists = matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 48);
                    if !exists {
                        return Err(backend(op, e));
                    }
                }
            }
        }
        for spec in schema::indexes(&self.names) {
            let model = IndexModel::builder()
                .keys(spec.keys.clone())
                .options(
                    IndexOptions::builder()
                        .name(spec.name.to_owned())
                        .unique(spec.unique)
                        .build(),
                )
                .build();
            if let Err(e) = self.col(&spec.collection).create_index(model).await {
                if !error::is_index_conflict(&e) {
                    return Err(backend(op, e));
                }
                let unique = if spec.unique { "unique " } else { "" };
                return Err(StoreError::Schema {
                    backend: NAME,
                    detail: format!(
                        "cannot create the {unique}index `{}` on {}: {e}",
                        spec.name, spec.keys
                    ),
                    table: spec.collection,
                });
            }
        }
        self.upgrade_first_layout().await?;
        self.create_versions_view().await
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReceipt, StoreError> {
        batch.validate()?;
        let receipt = self.run(Write::Commit(&batch)).await?;
        receipt.ok_or_else(|| internal("commit", "a commit attempt returned no receipt"))
    }

    /// The current document's `data` with the rest of the history document of its version;
    /// a current document whose version the history lacks, or whose contract differs from
    /// that version's, is [`StoreError::Integrity`].
    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError> {
        let op = "state";
        let Some(current) = self
            .states()
            .find_one(doc! { "_id": id.as_str() })
            .await
            .map_err(|e| backend(op, e))?
        else {
            return Ok(None);
        };
        let what = format!("state {id}");
        let version = get_u64(&current, "version", &what)?;
        let Some(h) = self
            .history()
            .find_one(doc! { "id": id.as_str(), "version": to_i64("version", version)? })
            .await
            .map_err(|e| backend(op, e))?
        else {
            return Err(no_history(id.as_str(), version));
        };
        let contract = |d: &Document| -> Result<(String, i64), StoreError> {
            Ok((
                get_str(d, "contract_name", &what)?,
                get_int(d, "contract_version", &what)?,
            ))
        };
        let (held, of_version) = (contract(&current)?, contract(&h)?);
        if held != of_version {
            return Err(StoreError::malformed(
                &what,
                format!(
                    "current row of {id} has contract {} v{}, its history version {version} {} v{}",
                    held.0, held.1, of_version.0, of_version.1
                ),
            ));
        }
        let data = get_json(&current, "data", &what)?;
        state_from_history(&h, data).map(Some)
    }

    async fn state_at(&self, id: &StateId, version: u64) -> Result<Option<State>, StoreError> {
        let op = "state_at";
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        let current = self
            .states()
            .find_one(doc! { "_id": id.as_str() })
            .projection(doc! { "version": 1 })
            .await
            .map_err(|e| backend(op, e))?;
        let latest = match current {
            Some(d) => get_u64(&d, "version", id.as_str())?,
            None => 0,
        };
        let Some(d) = self
            .history()
            .find_one(doc! { "id": id.as_str(), "version": v })
            .await
            .map_err(|e| backend(op, e))?
        else {
            return Ok(None);
        };
        // A version newer than the current document may belong to a batch still in flight
        // (its events are pending): not committed yet, so not shown. Any other such version
        // is shown, so that `verify_store` sees a history row nobody committed.
        if version > latest && self.in_flight(&d).await? {
            return Ok(None);
        }
        self.version_from_history(&d, op).await.map(Some)
    }

    async fn state_ids(&self) -> Result<Vec<StateId>, StoreError> {
        let op = "state_ids";
        let docs = self
            .collect(&self.states(), doc! {}, doc! { "_id": 1 }, None, op)
            .await?;
        let mut ids: Vec<StateId> = docs
            .iter()
            .map(|d| get_str(d, "_id", "state").map(StateId))
            .collect::<Result<_, _>>()?;
        ids.sort();
        Ok(ids)
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let mut f = recorded();
        if let Some(s) = &filter.state_id {
            f.insert("state_id", s.as_str());
        }
        if let Some(a) = &filter.actor {
            f.insert("actor", a.as_str());
        }
        if let Some(n) = &filter.origin_node {
            f.insert("origin_node", n.as_str());
        }
        if let Some(s) = filter.after_origin_seq {
            match i64::try_from(s.0) {
                Ok(s) => f.insert("origin_seq", doc! { "$gt": s }),
                Err(_) => return Ok(Vec::new()),
            };
        }
        if let Some(o) = filter.outcome {
            f.insert("outcome", o.as_str());
        }
        if let Some(k) = filter.kind {
            f.insert("kind", k.as_str());
        }
        let limit = match filter.limit {
            Some(0) => return Ok(Vec::new()),
            Some(l) => Some(i64::try_from(l).unwrap_or(i64::MAX)),
            None => None,
        };
        let rows = self
            .collect(&self.events_col(), f, doc! { "pos": 1 }, limit, "events")
            .await?
            .iter()
            .map(event_from_doc)
            .collect::<Result<Vec<_>, _>>()?;
        self.resolve_events(rows, "events").await
    }

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let mut f = recorded();
        f.insert("_id", id.to_string());
        let Some(d) = self
            .events_col()
            .find_one(f)
            .await
            .map_err(|e| backend("event", e))?
        else {
            return Ok(None);
        };
        let row = event_from_doc(&d)?;
        Ok(self.resolve_events(vec![row], "event").await?.pop())
    }

    async fn last_origin_seq(&self, node: &NodeId) -> Result<OriginSeq, StoreError> {
        let mut f = recorded();
        f.insert("origin_node", node.as_str());
        let d = self
            .events_col()
            .find_one(f)
            .sort(doc! { "origin_seq": -1 })
            .projection(doc! { "origin_seq": 1 })
            .await
            .map_err(|e| backend("last_origin_seq", e))?;
        Ok(match d {
            Some(d) => OriginSeq(get_u64(&d, "origin_seq", "event")?),
            None => OriginSeq(0),
        })
    }

    async fn put_actor(&self, actor: &Actor) -> Result<(), StoreError> {
        self.run(Write::Actor(actor)).await.map(drop)
    }

    async fn actor(&self, id: &ActorId) -> Result<Option<Actor>, StoreError> {
        self.actors_col()
            .find_one(doc! { "_id": id.as_str() })
            .await
            .map_err(|e| backend("actor", e))?
            .map(|d| actor_from_doc(&d))
            .transpose()
    }

    async fn actors(&self) -> Result<Vec<Actor>, StoreError> {
        let docs = self
            .collect(
                &self.actors_col(),
                doc! {},
                doc! { "_id": 1 },
                None,
                "actors",
            )
            .await?;
        let mut actors: Vec<Actor> = docs.iter().map(actor_from_doc).collect::<Result<_, _>>()?;
        actors.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(actors)
    }

    async fn put_contract(&self, contract: &ContractRecord) -> Result<(), StoreError> {
        self.run(Write::Contract(contract)).await.map(drop)
    }

    async fn contract(&self, contract: &ContractRef) -> Result<Option<ContractRecord>, StoreError> {
        self.contracts_col()
            .find_one(doc! { "_id": contract.to_string() })
            .await
            .map_err(|e| backend("contract", e))?
            .map(|d| contract_from_doc(&d))
            .transpose()
    }

    /// One document per refused event (`_id` = the event id), replaced when the event is
    /// refused again; `reason` holds the reason's code, `reason_detail` the whole reason.
    async fn put_refusal(&self, refusal: &Refusal) -> Result<(), StoreError> {
        check_refusal(refusal)?;
        self.run(Write::Refusal(refusal)).await.map(drop)
    }

    async fn refusals(&self, state: Option<&StateId>) -> Result<Vec<Refusal>, StoreError> {
        let filter = match state {
            Some(s) => doc! { "state_id": s.as_str() },
            None => doc! {},
        };
        let docs = self
            .collect(
                &self.refusals_col(),
                filter,
                doc! { "state_id": 1, "version": 1, "_id": 1 },
                None,
                "refusals",
            )
            .await?;
        let mut out: Vec<Refusal> = docs
            .iter()
            .map(refusal_from_doc)
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| {
            (&a.state_id, a.version, a.event).cmp(&(&b.state_id, b.version, b.event))
        });
        Ok(out)
    }

    async fn clear_refusal(&self, event: &EventId) -> Result<(), StoreError> {
        self.run(Write::ClearRefusal(event)).await.map(drop)
    }

    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        let docs = self
            .collect(
                &self.contracts_col(),
                doc! {},
                doc! { "name": 1, "version": 1 },
                None,
                "contracts",
            )
            .await?;
        let mut out: Vec<ContractRecord> = docs
            .iter()
            .map(contract_from_doc)
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| a.contract().cmp(b.contract()));
        Ok(out)
    }

    async fn log(&self, after: u64, limit: Option<usize>) -> Result<Vec<LogEntry>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let limit = match limit {
            Some(0) => return Ok(Vec::new()),
            Some(l) => Some(i64::try_from(l).unwrap_or(i64::MAX)),
            None => None,
        };
        self.collect(
            &self.log_col(),
            doc! { "_id": { "$gt": after } },
            doc! { "_id": 1 },
            limit,
            "log",
        )
        .await?
        .iter()
        .map(log_from_doc)
        .collect()
    }

    async fn log_head(&self) -> Result<LogHead, StoreError> {
        self.read_head(None).await.map_err(Fail::into_store)
    }

    /// One document per `(node, pos)` (a unique index): a second put at the same position
    /// loses the insert and is compared with what is held.
    async fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let op = "put_checkpoint";
        let Err(e) = self
            .checkpoints_col()
            .insert_one(checkpoint_doc(checkpoint)?)
            .await
        else {
            return Ok(());
        };
        let cp = &checkpoint.checkpoint;
        let held = if error::is_duplicate_key(&e) {
            self.checkpoints_col()
                .find_one(
                    doc! { "node": cp.node.as_str(), "pos": to_i64("checkpoint.pos", cp.pos)? },
                )
                .await
                .map_err(|e| backend(op, e))?
        } else {
            None
        };
        match held {
            Some(d) if checkpoint_from_doc(&d)?.checkpoint.head == cp.head => Ok(()),
            Some(_) => Err(StoreError::checkpoint_conflict(&cp.node, cp.pos)),
            None => Err(backend(op, e)),
        }
    }

    async fn checkpoints(&self, node: &NodeId) -> Result<Vec<SignedCheckpoint>, StoreError> {
        self.collect(
            &self.checkpoints_col(),
            doc! { "node": node.as_str() },
            doc! { "pos": 1 },
            None,
            "checkpoints",
        )
        .await?
        .iter()
        .map(checkpoint_from_doc)
        .collect()
    }

    async fn prune_checkpoints(&self, node: &NodeId, keep: usize) -> Result<usize, StoreError> {
        let op = "prune_checkpoints";
        check_prune_keep(keep)?;
        // The positions in Rust order (not the server's sort), so the cut is the same on
        // every server: the newest checkpoint beyond the `keep` latest and everything older.
        let positions: Vec<u64> = self
            .checkpoints(node)
            .await?
            .iter()
            .map(|c| c.checkpoint.pos)
            .collect();
        let Some(cut) = positions.len().checked_sub(keep + 1).map(|i| positions[i]) else {
            return Ok(0);
        };
        let deleted = self
            .checkpoints_col()
            .delete_many(doc! {
                "node": node.as_str(),
                "pos": { "$lte": to_i64("checkpoint.pos", cut)? },
            })
            .await
            .map_err(|e| backend(op, e))?;
        Ok(usize::try_from(deleted.deleted_count).unwrap_or(usize::MAX))
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        let op = "sink_cursor";
        check_sink_name(sink)?;
        let held = self
            .sink_cursors_col()
            .find_one(doc! { "_id": sink })
            .await
            .map_err(|e| backend(op, e))?;
        held.map(|d| get_u64(&d, "pos", &format!("cursor of sink {sink}")))
            .transpose()
    }

    /// One document per sink (`_id` = its name) moved with `$max`, so a lower position never
    /// lowers it; two first puts racing on the upsert lose one insert, which is tried again
    /// as an update.
    async fn set_sink_cursor(&self, sink: &str, position: u64) -> Result<(), StoreError> {
        let op = "set_sink_cursor";
        check_sink_name(sink)?;
        let pos = to_i64("position", position)?;
        let mut tries = 0;
        loop {
            let moved = self
                .sink_cursors_col()
                .update_one(doc! { "_id": sink }, doc! { "$max": { "pos": pos } })
                .upsert(true)
                .await;
            match moved {
                Ok(_) => return Ok(()),
                Err(e) if error::is_duplicate_key(&e) && tries < RACE_RETRIES => tries += 1,
                Err(e) => return Err(backend(op, e)),
            }
        }
    }
}

fn contract_doc(contract: &ContractRecord) -> Result<Document, StoreError> {
    let c = contract.contract();
    Ok(doc! {
        "_id": c.to_string(),
        "name": c.name.as_str(),
        "version": i64::from(c.version),
        "identity": contract.identity.to_string(),
        "record": json_doc("contract", &json_value("contract", contract)?)?,
    })
}

fn actor_from_doc(d: &Document) -> Result<Actor, StoreError> {
    let mut d = d.clone();
    d.remove("_id");
    let what = format!("actor {}", d.get_str("id").unwrap_or("?"));
    let v = from_document(&d).map_err(|e| StoreError::malformed(&what, e))?;
    serde_json::from_value(v).map_err(|e| StoreError::malformed(&what, e))
}

fn refusal_doc(r: &Refusal) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": r.event.to_string(),
        "state_id": r.state_id.as_str(),
        "version": to_i64("refusal.version", r.version)?,
        "from_node": r.from_node.as_str(),
        "reason": r.reason.code(),
        "reason_detail": json_doc("refusal.reason", &json_value("refusal.reason", &r.reason)?)?,
        "at": DateTime::from_millis(r.at.0),
    })
}

fn refusal_from_doc(d: &Document) -> Result<Refusal, StoreError> {
    let event = get_str(d, "_id", "refusal")?;
    let what = format!("refusal of event {event}");
    let at = get_millis(d, "at", &what)?;
    Ok(Refusal {
        event: event.parse().map_err(|e| StoreError::malformed(&what, e))?,
        state_id: StateId(get_str(d, "state_id", &what)?),
        version: get_u64(d, "version", &what)?,
        from_node: NodeId(get_str(d, "from_node", &what)?),
        reason: serde_json::from_value(get_json(d, "reason_detail", &what)?)
            .map_err(|e| StoreError::malformed(&what, format!("reason_detail: {e}")))?,
        at: Timestamp(at),
    })
}

fn contract_from_doc(d: &Document) -> Result<ContractRecord, StoreError> {
    let what = format!("contract {}", d.get_str("_id").unwrap_or("?"));
    serde_json::from_value(get_json(d, "record", &what)?)
        .map_err(|e| StoreError::malformed(&what, e))
}
