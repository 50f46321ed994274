//! [`MysqlStore`]: the [`Store`] contract on MySQL 8 / MariaDB through a mysql_async pool,
//! with `JSON` columns and one InnoDB transaction per commit batch.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{
    IsolationLevel, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Row, Transaction,
    TxOpts, Value as My,
};
use serde_json::Value;
use sst_core::model::StateParts;
use sst_core::portable::member_path;
use sst_core::raw::columns::{
    business_events_from_column, endorsements_from_column, json_text, outcome_from_columns,
    receipt_from_column, DerivedEventColumns,
};
use sst_core::raw::{
    check_peer_layout, columns_to_add, section_keys, CommitPlan, ContractPut, CurrentWrite,
    DataWrite, DisclosureColumn, EventColumns, Lookups, NameCase, Recorded, SectionKey,
    StoredEvent, RACE_RETRIES,
};
use sst_core::{
    check_prune_keep, check_refusal, check_sink_name, Actor, ActorId, Checkpoint, CommitBatch,
    CommitItem, CommitReceipt, ContractRecord, ContractRef, Digest, EventFilter, EventId,
    EventRecord, LogEntry, LogHead, LogRecord, NodeId, OriginSeq, Refusal, SignedCheckpoint,
    SignedEvent, State, StateId, Store, StoreError, Timestamp,
};

use crate::config::{check_identifier, MysqlConfig, TableNames};
use crate::error::{
    backend, check_id, is_json_patch_failure, is_unique_violation, raced_or, to_i64, TxError,
};
use crate::schema::{self, Flavor, Names, COLLATIONS};
use crate::NAME;

/// Columns of a current-state row, in the order the `INSERT`s below list them.
const CURRENT_COLUMNS: &str = "id, contract_name, contract_version, version, data";

/// Columns of a history row, in the order the `SELECT`s and `INSERT`s below list them.
const HISTORY_COLUMNS: &str = "id, contract_name, contract_version, version, parties, seals, \
                               root, prev_root, last_event, updated_at";

/// Columns of a section row, in the order the `INSERT`s below list them.
const SECTION_COLUMNS: &str = "state_id, name, hash, value";

/// Columns of the history view.
const VERSIONS_COLUMNS: &str =
    "id, version, contract_name, contract_version, root, updated_at, data";

/// Columns of an event row, in the order the `INSERT`s below list them.
const EVENT_COLUMNS: &str = "id, state_id, kind, contract_name, contract_version, actor, \
                             origin_node, origin_seq, outcome, reason, reason_detail, \
                             new_version, new_root, event, disclosures, receipt, business_events, \
                             endorsements";

/// Event columns added after the event table was first released: an event table without them
/// is of an older layout, and `migrate` adds them (nullable).
const ADDED_EVENT_COLUMNS: [&str; 2] = ["business_events", "endorsements"];

/// Tail of the section insert: a section version already stored under its key is kept (the
/// key is its content's salted hash). Not `INSERT IGNORE`, which would swallow other errors.
const SKIP_STORED_SECTION: &str = " ON DUPLICATE KEY UPDATE state_id = state_id";

/// Tail of the section insert of the first-layout upgrade: a key already stored must hold the
/// same value (both texts are serialised here from parsed values); a different one is set to
/// `NULL`, which the `NOT NULL` column refuses (error 1048), so the upgrade stops instead of
/// keeping one of two values silently.
const SAME_STORED_SECTION: &str =
    " ON DUPLICATE KEY UPDATE value = IF(value = VALUES(value), value, NULL)";

/// Most placeholders one statement may carry (the protocol counts them in 16 bits).
const MAX_PLACEHOLDERS: usize = 65_535;

/// Most ids one `IN (…)` list carries; longer lists are split.
const MAX_IN_LIST: usize = 1_000;

/// Rough cap on the bound bytes of one multi-row `INSERT`, well below the servers' default
/// `max_allowed_packet` (16 MiB on MariaDB, 64 MiB on MySQL 8).
const MAX_INSERT_BYTES: usize = 4 << 20;

/// Columns of an event row needed to rebuild an [`EventRecord`] and check its derived
/// columns against it.
const EVENT_SELECT: &str = "id, state_id, kind, contract_name, contract_version, actor, \
                            origin_node, origin_seq, reason, event, disclosures, outcome, \
                            reason_detail, new_version, new_root, receipt, business_events, \
                            endorsements";

/// Columns of a log row, in the order the `INSERT`s and `SELECT`s list them.
const LOG_COLUMNS: &str = "pos, kind, subject, record, prev, hash";

/// Columns of a checkpoint row.
const CHECKPOINT_COLUMNS: &str = "node, pos, head, at, signature";

/// Columns of a refusal row, in the order `put_refusal` binds them.
const REFUSAL_COLUMNS: &str = "event_id, state_id, version, from_node, reason, reason_detail, at";

/// Statements every pooled connection runs once: utf8mb4 on the wire and strict mode, so a
/// value that does not fit is an error and never silently truncated.
const SESSION_INIT: [&str; 2] = [
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
];

/// SQL text, built once per store from the configured names.
#[derive(Debug)]
struct Sql {
    /// `SELECT id, version, seals … WHERE id IN (` — locks the current rows of a batch's
    /// states and reads the seals of their versions from the history.
    lock_states_head: String,
    /// `SELECT id, origin_node, origin_seq … WHERE id IN (` — events already recorded.
    seen_ids_head: String,
    /// `SELECT id, origin_node, origin_seq … WHERE ` — origin sequences already used.
    seen_origins_head: String,
    /// `INSERT INTO <event> (…) VALUES ` — multi-row event insert.
    insert_events_head: String,
    /// `INSERT INTO <state> (…) VALUES ` — multi-row insert of new current rows.
    insert_states_head: String,
    /// `INSERT INTO <history> (…) VALUES ` — multi-row history insert.
    insert_histories_head: String,
    /// `INSERT INTO <section> (…) VALUES ` — multi-row section insert, followed by
    /// [`SKIP_STORED_SECTION`].
    insert_sections_head: String,
    /// Current row joined to the history row of its version.
    state: String,
    /// A history row.
    state_at: String,
    /// `SELECT name, hash, value FROM <section> WHERE state_id = ? AND (` — section rows.
    sections_head: String,
    /// `SELECT state_id, name, hash, value FROM <section> WHERE (state_id, name, hash) IN (`
    /// — section rows by whole key, of several states (a range scan of the primary key; an
    /// `OR` of the same keys plans several times slower).
    section_keys_head: String,
    state_ids: String,
    event: String,
    last_origin_seq: String,
    put_actor: String,
    actor: String,
    actors: String,
    insert_contract: String,
    contract_identity: String,
    contract: String,
    contracts: String,
    put_refusal: String,
    refusals: String,
    clear_refusal: String,
    /// `INSERT INTO <log> (…) VALUES ` — multi-row log insert.
    insert_log_head: String,
    log_head: String,
    log_after: String,
    insert_checkpoint: String,
    checkpoint_head: String,
    checkpoints: String,
    checkpoint_cut: String,
    prune_checkpoints: String,
    sink_cursor: String,
    set_sink_cursor: String,
}

impl Sql {
    fn new(n: &Names) -> Self {
        Sql {
            lock_states_head: format!(
                "SELECT s.id, s.version, h.seals FROM {} AS s LEFT JOIN {} AS h \
                 ON h.id = s.id AND h.version = s.version WHERE s.id IN (",
                n.state, n.history
            ),
            seen_ids_head: format!(
                "SELECT id, origin_node, origin_seq FROM {} WHERE id IN (",
                n.event
            ),
            seen_origins_head: format!(
                "SELECT id, origin_node, origin_seq FROM {} WHERE ",
                n.event
            ),
            insert_events_head: format!("INSERT INTO {} ({EVENT_COLUMNS}) VALUES ", n.event),
            insert_states_head: format!("INSERT INTO {} ({CURRENT_COLUMNS}) VALUES ", n.state),
            insert_histories_head: format!("INSERT INTO {} ({HISTORY_COLUMNS}) VALUES ", n.history),
            insert_sections_head: format!("INSERT INTO {} ({SECTION_COLUMNS}) VALUES ", n.section),
            state: format!(
                "SELECT s.id, s.version, s.contract_name, s.contract_version, s.data, \
                 h.version AS history_version, h.contract_name AS history_contract_name, \
                 h.contract_version AS history_contract_version, h.parties, h.seals, h.root, \
                 h.prev_root, h.last_event, h.updated_at \
                 FROM {} AS s LEFT JOIN {} AS h ON h.id = s.id AND h.version = s.version \
                 WHERE s.id = ?",
                n.state, n.history
            ),
            state_at: format!(
                "SELECT {HISTORY_COLUMNS} FROM {} WHERE id = ? AND version = ?",
                n.history
            ),
            sections_head: format!(
                "SELECT name, hash, value FROM {} WHERE state_id = ? AND (",
                n.section
            ),
            section_keys_head: format!(
                "SELECT state_id, name, hash, value FROM {} WHERE (state_id, name, hash) IN (",
                n.section
            ),
            state_ids: format!("SELECT id FROM {} ORDER BY id", n.state),
            event: format!("SELECT {EVENT_SELECT} FROM {} WHERE id = ?", n.event),
            last_origin_seq: format!(
                "SELECT COALESCE(MAX(origin_seq), 0) FROM {} WHERE origin_node = ?",
                n.event
            ),
            put_actor: format!(
                "INSERT INTO {} (id, node, public_key, status) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE node = VALUES(node), public_key = VALUES(public_key), \
                 status = VALUES(status)",
                n.actor
            ),
            actor: format!(
                "SELECT id, node, public_key, status FROM {} WHERE id = ?",
                n.actor
            ),
            actors: format!(
                "SELECT id, node, public_key, status FROM {} ORDER BY id",
                n.actor
            ),
            insert_contract: format!(
                "INSERT INTO {} (name, version, identity, deployer, record) \
                 VALUES (?, ?, ?, ?, ?)",
                n.contract
            ),
            contract_identity: format!(
                "SELECT identity FROM {} WHERE name = ? AND version = ?",
                n.contract
            ),
            contract: format!(
                "SELECT record FROM {} WHERE name = ? AND version = ?",
                n.contract
            ),
            contracts: format!("SELECT record FROM {} ORDER BY name, version", n.contract),
            put_refusal: format!(
                "INSERT INTO {} ({REFUSAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE state_id = VALUES(state_id), \
                 version = VALUES(version), from_node = VALUES(from_node), \
                 reason = VALUES(reason), reason_detail = VALUES(reason_detail), \
                 at = VALUES(at)",
                n.refusal
            ),
            // The state id is bound twice: `NULL` lists every state's refusals.
            refusals: format!(
                "SELECT {REFUSAL_COLUMNS} FROM {} WHERE ? IS NULL OR state_id = ? \
                 ORDER BY state_id, version, event_id",
                n.refusal
            ),
            clear_refusal: format!("DELETE FROM {} WHERE event_id = ?", n.refusal),
            insert_log_head: format!("INSERT INTO {} ({LOG_COLUMNS}) VALUES ", n.log),
            log_head: format!(
                "SELECT {LOG_COLUMNS} FROM {} ORDER BY pos DESC LIMIT 1",
                n.log
            ),
            // `LIMIT` is appended when the caller sets one.
            log_after: format!(
                "SELECT {LOG_COLUMNS} FROM {} WHERE pos > ? ORDER BY pos",
                n.log
            ),
            insert_checkpoint: format!(
                "INSERT INTO {} ({CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                n.checkpoint
            ),
            checkpoint_head: format!(
                "SELECT head FROM {} WHERE node = ? AND pos = ?",
                n.checkpoint
            ),
            checkpoints: format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM {} WHERE node = ? ORDER BY pos",
                n.checkpoint
            ),
            // MySQL cannot delete from a table its own subquery reads: the newest checkpoint
            // beyond the `keep` latest is read first, then it and everything older goes.
            checkpoint_cut: format!(
                "SELECT pos FROM {} WHERE node = ? ORDER BY pos DESC LIMIT 1 OFFSET ?",
                n.checkpoint
            ),
            prune_checkpoints: format!("DELETE FROM {} WHERE node = ? AND pos <= ?", n.checkpoint),
            sink_cursor: format!("SELECT pos FROM {} WHERE sink = ?", n.sink_cursor),
            set_sink_cursor: format!(
                "INSERT INTO {} (sink, pos) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE pos = GREATEST(pos, VALUES(pos))",
                n.sink_cursor
            ),
        }
    }
}

/// SST's peer tables in a MySQL 8 or MariaDB (10.11+) database.
///
/// * every JSON column is `JSON`, queryable with `JSON_VALUE(data, '$.inspection.radon')` and
///   indexable through generated columns; values come back as text and are canonicalised by
///   sst-core before hashing, so formatting differences between servers do not matter;
///   the plaintext column is parsed strictly (a duplicate key written behind SST's back is an
///   integrity error, because MariaDB keeps the text and its `JSON_VALUE` reads the first);
/// * states are stored in the section-version layout: the current-state table holds each
///   state's id, contract, version and `data` document; the history one row per version
///   (header and seals, no plaintext); the section table each section version's plaintext
///   once, keyed by state, name and hash; the view `sst_state_versions` shows every version's
///   whole document;
/// * an applied event's row names the section versions it disclosed (`{salt, hash}` in its
///   `disclosures` column, [`DisclosureColumn`]) instead of carrying their values again;
///   `event` and `events` read them from the section table (every key of a listing at once),
///   and rows of the older inline form read back unchanged;
/// * `commit` runs one `READ COMMITTED` InnoDB transaction per batch: it locks the
///   current-state rows with `SELECT … FOR UPDATE` (reading the seals of their versions from
///   the history in the same query), reads recorded event ids and origin sequences with one
///   more query, lets [`CommitPlan`] decide and writes the plan with one multi-row `INSERT`
///   per table (new section versions only) and one guarded `UPDATE … CASE id …` of the
///   existing current rows, which patches only the changed sections with `JSON_SET` /
///   `JSON_REMOVE`. A concurrent writer that got in between the read and the inserts
///   (duplicate key 1062 or a deadlock) makes the batch start over, reading what that writer
///   committed; the unique keys `(id, version)` of the history and
///   `(origin_node, origin_seq)` of the events are the backstop.
#[derive(Debug, Clone)]
pub struct MysqlStore {
    pool: Pool,
    config: Arc<MysqlConfig>,
    database: String,
    names: Arc<Names>,
    sql: Arc<Sql>,
}

/// An existing current row the plan updates.
struct CurrentUpdate<'a> {
    /// Where the state is in the batch, for error paths.
    at: String,
    /// The state the row takes.
    state: &'a State,
    /// The version the row must still be at.
    from: u64,
    /// How its data document changes.
    data: &'a DataWrite,
}

/// The bound pieces of one current row's guarded update.
struct RowUpdate {
    /// Index of its [`CurrentUpdate`].
    index: usize,
    id: String,
    contract_name: My,
    contract_version: My,
    /// SQL expression of the new data, and its bound values.
    expr: String,
    data: Vec<My>,
    version: My,
    from: My,
    /// The state, the version its writer built on and the version the plan found, for the
    /// conflict reported if the row is no longer there.
    stale: (StateId, u64, u64),
}

impl RowUpdate {
    /// `u`'s update, its data patched when `patch` and the plan allow it, whole otherwise.
    fn new(u: &CurrentUpdate<'_>, patch: bool) -> Result<Self, StoreError> {
        let (at, state) = (u.at.as_str(), u.state);
        let patched = match (patch, u.data) {
            (true, DataWrite::Patch { set, remove }) => data_patch(at, state, set, remove)?,
            _ => None,
        };
        let (expr, data) = match patched {
            Some(p) => p,
            None => ("?".to_owned(), vec![My::from(data_text(at, state)?)]),
        };
        Ok(RowUpdate {
            index: 0,
            id: state.id.0.clone(),
            contract_name: My::from(state.contract.name.as_str()),
            contract_version: My::from(state.contract.version),
            expr,
            data,
            version: My::from(to_i64(&format!("{at}.version"), state.version)?),
            from: My::from(to_i64(&format!("{at}.version"), u.from)?),
            stale: (state.id.clone(), state.version.saturating_sub(1), u.from),
        })
    }

    /// The same update, numbered.
    fn at(mut self, index: usize) -> Self {
        self.index = index;
        self
    }

    /// The conflict of a row no longer at the version the plan was made against.
    fn moved(&self) -> StoreError {
        let (id, expected, found) = &self.stale;
        StoreError::stale_version(id, *expected, *found)
    }

    /// Placeholders it binds in one `UPDATE`.
    fn placeholders(&self) -> usize {
        10 + self.data.len()
    }

    /// Bytes it binds, roughly.
    fn bytes(&self) -> usize {
        self.data.iter().map(value_bytes).sum::<usize>() + 8 * 9
    }
}

/// Most rows one `UPDATE … CASE id …` carries (each `CASE` is scanned per row).
const MAX_UPDATE_ROWS: usize = 100;

/// `rows` split into groups for one `UPDATE` each, within the row, placeholder and packet
/// limits (a group holds at least one row).
fn update_groups(rows: &[RowUpdate]) -> Vec<&[RowUpdate]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let (mut end, mut bytes, mut slots) = (start, 0, 0);
        while end < rows.len() && end - start < MAX_UPDATE_ROWS {
            let (b, p) = (rows[end].bytes(), rows[end].placeholders());
            if end > start && (bytes + b > MAX_INSERT_BYTES || slots + p > MAX_PLACEHOLDERS) {
                break;
            }
            (bytes, slots) = (bytes + b, slots + p);
            end += 1;
        }
        groups.push(&rows[start..end]);
        start = end;
    }
    groups
}

/// Every row of `group` was updated: locked since the read, each was still at its `from`
/// version; only a writer outside SST's locking moves one.
fn check_updated(tx: &Transaction<'static>, group: &[RowUpdate]) -> Result<(), TxError> {
    if usize::try_from(tx.affected_rows()).ok() == Some(group.len()) {
        Ok(())
    } else {
        Err(TxError::Raced(group[0].moved()))
    }
}

/// A new state version of a batch, checked and converted before the database is touched: the
/// bound values of its history row, in [`HISTORY_COLUMNS`] order. Its plaintext goes to the
/// section and current-state rows the plan names, converted when they are written.
struct StateRow {
    id: String,
    version: i64,
    history: Vec<My>,
}

impl StateRow {
    fn new(at: &str, s: &State) -> Result<Self, StoreError> {
        check_id(&format!("{at}.id"), s.id.as_str())?;
        check_id(&format!("{at}.contract.name"), &s.contract.name)?;
        for name in s.sections.keys() {
            check_id(&member_path(&format!("{at}.sections"), name), name)?;
        }
        let version = to_i64(&format!("{at}.version"), s.version)?;
        let history = vec![
            My::from(s.id.as_str()),
            My::from(s.contract.name.as_str()),
            My::from(s.contract.version),
            My::from(version),
            My::from(json_text(&format!("{at}.parties"), &s.parties)?),
            My::from(json_text(&format!("{at}.seals"), &s.seals())?),
            My::from(s.root.to_string()),
            My::from(s.prev_root.map(|r| r.to_string())),
            My::from(s.last_event.map(|e| e.to_string())),
            My::from(s.updated_at.0),
        ];
        Ok(StateRow {
            id: s.id.0.clone(),
            version,
            history,
        })
    }
}

/// The text of a state's queryable data document, `{section: value}` of its disclosed
/// sections, serialised from the sections in place (nothing is copied).
fn data_text(at: &str, s: &State) -> Result<String, StoreError> {
    let doc: BTreeMap<&str, &Value> = s
        .sections
        .iter()
        .filter_map(|(name, section)| Some((name.as_str(), section.value()?)))
        .collect();
    json_text(&format!("{at}.data"), &doc)
}

/// Bound values of one current-state row, in [`CURRENT_COLUMNS`] order.
fn current_values(at: &str, s: &State) -> Result<Vec<My>, StoreError> {
    Ok(vec![
        My::from(s.id.as_str()),
        My::from(s.contract.name.as_str()),
        My::from(s.contract.version),
        My::from(to_i64(&format!("{at}.version"), s.version)?),
        My::from(data_text(at, s)?),
    ])
}

/// `$."name"`: the JSON path of a top-level member, `None` for a name the double-quoted path
/// syntax cannot carry as it is (one holding `"` or `\`).
fn member_json_path(name: &str) -> Option<String> {
    (!name.contains(['"', '\\'])).then(|| format!("$.\"{name}\""))
}

/// The SQL expression and bound values patching the stored `data` document to `state`'s:
/// `JSON_SET(JSON_REMOVE(data, ?…), ?, JSON_EXTRACT(?, '$')…)`. `None` when a name cannot be
/// written as a path ([`member_json_path`]): the whole document is written instead.
fn data_patch(
    at: &str,
    state: &State,
    set: &[String],
    remove: &[String],
) -> Result<Option<(String, Vec<My>)>, StoreError> {
    let mut expr = "data".to_owned();
    let mut values = Vec::with_capacity(remove.len() + 2 * set.len());
    if !remove.is_empty() {
        for name in remove {
            let Some(path) = member_json_path(name) else {
                return Ok(None);
            };
            values.push(My::from(path));
        }
        expr = format!(
            "JSON_REMOVE({expr}, {})",
            vec!["?"; remove.len()].join(", ")
        );
    }
    if !set.is_empty() {
        for name in set {
            let (Some(path), Some(value)) = (
                member_json_path(name),
                state.sections.get(name).and_then(|s| s.value()),
            ) else {
                return Ok(None);
            };
            values.push(My::from(path));
            values.push(My::from(json_text(
                &member_path(&format!("{at}.sections"), name),
                value,
            )?));
        }
        expr = format!(
            "JSON_SET({expr}, {})",
            vec!["?, JSON_EXTRACT(?, '$')"; set.len()].join(", ")
        );
    }
    Ok(Some((expr, values)))
}

/// Bound values of one event row, in [`EVENT_COLUMNS`] order. An applied event's
/// `disclosures` name the section versions of its new state ([`DisclosureColumn::of_item`])
/// instead of carrying their values again.
struct EventRow {
    id: EventId,
    origin_node: String,
    origin_seq: u64,
    values: Vec<My>,
}

impl EventRow {
    fn new(at: &str, item: &CommitItem) -> Result<Self, StoreError> {
        let r = &item.event;
        let e = r.event();
        for (field, v) in [
            ("state_id", e.state_id.as_str()),
            ("contract.name", &e.contract.name),
            ("actor", e.actor.as_str()),
            ("origin_node", e.origin_node.as_str()),
        ] {
            check_id(&format!("{at}.event.{field}"), v)?;
        }
        let c = EventColumns::from_item(at, item)?;
        let values = vec![
            My::from(c.id),
            My::from(c.state_id),
            My::from(c.kind),
            My::from(c.contract_name),
            My::from(c.contract_version),
            My::from(c.actor),
            My::from(c.origin_node),
            My::from(c.origin_seq),
            My::from(c.outcome),
            My::from(c.reason),
            My::from(c.reason_detail.map(|v| v.to_string())),
            My::from(c.new_version),
            My::from(c.new_root),
            My::from(c.signed.to_string()),
            My::from(c.disclosures.to_string()),
            My::from(c.receipt.map(|v| v.to_string())),
            My::from(c.business_events.map(|v| v.to_string())),
            My::from(c.endorsements.map(|v| v.to_string())),
        ];
        Ok(EventRow {
            id: r.id(),
            origin_node: e.origin_node.0.clone(),
            origin_seq: e.origin_seq.0,
            values,
        })
    }
}

fn take<T: FromValue>(
    row: &mut Row,
    name: &str,
    what: &dyn Fn() -> String,
) -> Result<T, StoreError> {
    row.take_opt(name)
        .ok_or_else(|| StoreError::malformed(what(), format!("no column {name}")))?
        .map_err(|e| StoreError::malformed(what(), format!("column {name}: {e}")))
}

/// A JSON column (text on the wire; MariaDB sends it as a BLOB) parsed leniently.
fn take_json(row: &mut Row, name: &str, what: &dyn Fn() -> String) -> Result<Value, StoreError> {
    let text: String = take(row, name, what)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::malformed(what(), format!("column {name}: {e}")))
}

/// A nullable JSON column (`NULL` is `None`), its text parsed as [`take_json`] does.
fn take_nullable_json(
    row: &mut Row,
    name: &str,
    what: &dyn Fn() -> String,
) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = take(row, name, what)?;
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| StoreError::malformed(what(), format!("{name}: {e}")))
}

/// A JSON column holding user values, parsed under the portable profile: duplicate keys and
/// other non-portable JSON written behind SST's back are integrity errors.
fn take_portable(
    row: &mut Row,
    name: &str,
    what: &dyn Fn() -> String,
) -> Result<Value, StoreError> {
    let text: String = take(row, name, what)?;
    sst_core::portable::parse(&text)
        .map_err(|e| StoreError::malformed(what(), format!("column {name}: {e}")))
}

/// The contract named by a row's `{prefix}contract_name` and `{prefix}contract_version`.
fn take_contract(
    row: &mut Row,
    prefix: &str,
    what: &dyn Fn() -> String,
) -> Result<ContractRef, StoreError> {
    Ok(ContractRef::new(
        take::<String>(row, &format!("{prefix}contract_name"), what)?,
        take::<u32>(row, &format!("{prefix}contract_version"), what)?,
    ))
}

/// The parts of a state version a history row holds (named as in [`HISTORY_COLUMNS`]), with
/// `data` from where the caller read it.
fn history_parts(
    row: &mut Row,
    id: &str,
    version: i64,
    contract: ContractRef,
    data: Value,
    what: &dyn Fn() -> String,
) -> Result<StateParts, StoreError> {
    Ok(StateParts {
        id: StateId(id.to_owned()),
        contract,
        version: u64::try_from(version).map_err(|e| StoreError::malformed(what(), e))?,
        parties: take_json(row, "parties", what)?,
        seals: take_json(row, "seals", what)?,
        data,
        root: take(row, "root", what)?,
        prev_root: take(row, "prev_root", what)?,
        last_event: take(row, "last_event", what)?,
        updated_at: take(row, "updated_at", what)?,
    })
}

/// [`State::from_parts`], a misfit reported as [`StoreError::Integrity`] on `what`.
fn state_from_parts(parts: StateParts, what: &dyn Fn() -> String) -> Result<State, StoreError> {
    State::from_parts(parts).map_err(|source| StoreError::Integrity {
        what: what(),
        source,
    })
}

/// A current-state row joined to the history row of its version: data from the current row,
/// everything else from the history. A current row whose version the history lacks, or whose
/// contract differs from that history row's, is an integrity error.
fn current_state_from_row(mut row: Row) -> Result<State, StoreError> {
    let id: String = take(&mut row, "id", &|| "state row".to_owned())?;
    let version: i64 = take(&mut row, "version", &|| format!("state {id}"))?;
    let what = || format!("state {id} version {version}");
    let held: Option<i64> = take(&mut row, "history_version", &what)?;
    if held.is_none() {
        return Err(StoreError::malformed(
            format!("state {id}"),
            format!("current row of {id} is at version {version}, which the history does not hold"),
        ));
    }
    let contract = take_contract(&mut row, "", &what)?;
    let recorded = take_contract(&mut row, "history_", &what)?;
    if contract != recorded {
        return Err(StoreError::malformed(
            what(),
            format!(
                "current row names contract {contract}, the history row of its version {recorded}"
            ),
        ));
    }
    let data = take_portable(&mut row, "data", &what)?;
    let parts = history_parts(&mut row, &id, version, contract, data, &what)?;
    state_from_parts(parts, &what)
}

/// `(name, hash)` of each seal with a salt in a seals document (whatever does not have that
/// shape is left to [`State::from_parts`] to report).
fn disclosed_seals(seals: &Value) -> Vec<(&str, &str)> {
    let Some(map) = seals.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, seal)| seal.get("salt").is_some_and(|s| !s.is_null()))
        .filter_map(|(name, seal)| Some((name.as_str(), seal.get("hash")?.as_str()?)))
        .collect()
}

/// Reads one event row ([`EVENT_SELECT`]) back, checking the derived columns against the
/// signed event; the section versions its disclosures name are read by
/// [`MysqlStore::resolve_events`].
fn event_from_row(mut row: Row) -> Result<StoredEvent, StoreError> {
    let what = || "event row".to_owned();
    let derived = DerivedEventColumns {
        id: take(&mut row, "id", &what)?,
        state_id: take(&mut row, "state_id", &what)?,
        kind: take(&mut row, "kind", &what)?,
        contract_name: take(&mut row, "contract_name", &what)?,
        contract_version: take(&mut row, "contract_version", &what)?,
        actor: take(&mut row, "actor", &what)?,
        origin_node: take(&mut row, "origin_node", &what)?,
        origin_seq: take(&mut row, "origin_seq", &what)?,
        reason: take(&mut row, "reason", &what)?,
    };
    let what = || format!("event row {}", derived.id);
    let signed: SignedEvent = serde_json::from_value(take_json(&mut row, "event", &what)?)
        .map_err(|e| StoreError::malformed(what(), format!("event: {e}")))?;
    let what = || format!("event {}", signed.id);
    let disclosures =
        DisclosureColumn::parse(&what(), take_portable(&mut row, "disclosures", &what)?)?;
    let outcome: String = take(&mut row, "outcome", &what)?;
    let reason_detail: Option<String> = take(&mut row, "reason_detail", &what)?;
    let outcome = outcome_from_columns(
        &what(),
        &outcome,
        take(&mut row, "new_version", &what)?,
        take(&mut row, "new_root", &what)?,
        reason_detail
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::malformed(what(), format!("reason: {e}")))?,
    )?;
    let receipt = receipt_from_column(&what(), take_nullable_json(&mut row, "receipt", &what)?)?;
    let business_events = business_events_from_column(
        &what(),
        take_nullable_json(&mut row, "business_events", &what)?,
    )?;
    let endorsements = endorsements_from_column(
        &what(),
        take_nullable_json(&mut row, "endorsements", &what)?,
    )?;
    let record = EventRecord {
        signed,
        disclosures: BTreeMap::new(),
        outcome,
        receipt,
        business_events,
        endorsements,
    };
    EventColumns::check_derived(&record, &derived)?;
    Ok(StoredEvent {
        record,
        disclosures,
    })
}

fn log_entry_from_row(mut row: Row) -> Result<LogEntry, StoreError> {
    let what = || "log row".to_owned();
    let pos: i64 = take(&mut row, "pos", &what)?;
    let what = || format!("log entry {pos}");
    LogEntry::from_columns(
        pos,
        &take::<String>(&mut row, "kind", &what)?,
        take(&mut row, "subject", &what)?,
        &take::<String>(&mut row, "record", &what)?,
        &take::<String>(&mut row, "prev", &what)?,
        &take::<String>(&mut row, "hash", &what)?,
    )
}

fn checkpoint_from_row(mut row: Row) -> Result<SignedCheckpoint, StoreError> {
    let node: String = take(&mut row, "node", &|| "checkpoint row".to_owned())?;
    let pos: i64 = take(&mut row, "pos", &|| format!("checkpoint of node {node}"))?;
    let what = || format!("checkpoint of node {node} at {pos}");
    let head: String = take(&mut row, "head", &what)?;
    let signature: String = take(&mut row, "signature", &what)?;
    Ok(SignedCheckpoint {
        checkpoint: Checkpoint {
            node: NodeId(node.clone()),
            pos: u64::try_from(pos).map_err(|e| StoreError::malformed(what(), e))?,
            head: head
                .parse()
                .map_err(|e| StoreError::malformed(what(), format!("head: {e}")))?,
            at: Timestamp(take(&mut row, "at", &what)?),
        },
        signature: serde_json::from_value(Value::String(signature))
            .map_err(|e| StoreError::malformed(what(), format!("signature: {e}")))?,
    })
}

fn actor_from_row(mut row: Row) -> Result<Actor, StoreError> {
    let what = || "actor row".to_owned();
    let id: String = take(&mut row, "id", &what)?;
    let v = serde_json::json!({
        "id": id,
        "node": take::<String>(&mut row, "node", &what)?,
        "public_key": take::<String>(&mut row, "public_key", &what)?,
        "status": take::<String>(&mut row, "status", &what)?,
    });
    serde_json::from_value(v).map_err(|e| StoreError::malformed(format!("actor {id}"), e))
}

fn refusal_from_row(mut row: Row) -> Result<Refusal, StoreError> {
    let event: String = take(&mut row, "event_id", &|| "refusal row".to_owned())?;
    let what = || format!("refusal of event {event}");
    let version: i64 = take(&mut row, "version", &what)?;
    Ok(Refusal {
        event: event
            .parse()
            .map_err(|e| StoreError::malformed(what(), e))?,
        state_id: StateId(take(&mut row, "state_id", &what)?),
        version: u64::try_from(version).map_err(|e| StoreError::malformed(what(), e))?,
        from_node: NodeId(take(&mut row, "from_node", &what)?),
        reason: serde_json::from_value(take_json(&mut row, "reason_detail", &what)?)
            .map_err(|e| StoreError::malformed(what(), format!("reason_detail: {e}")))?,
        at: Timestamp(take(&mut row, "at", &what)?),
    })
}

fn contract_from_row(mut row: Row) -> Result<ContractRecord, StoreError> {
    let what = || "contract row".to_owned();
    serde_json::from_value(take_json(&mut row, "record", &what)?)
        .map_err(|e| StoreError::malformed(what(), e))
}

/// Columns of the actor table SST reads and writes.
const ACTOR_COLUMNS: [&str; 4] = ["id", "node", "public_key", "status"];

/// Columns of the contract table SST reads and writes.
const CONTRACT_COLUMNS: [&str; 5] = ["name", "version", "identity", "deployer", "record"];

/// Each peer table's name with the columns SST's statements name in it.
fn needed_columns(t: &TableNames) -> [(&str, Vec<&'static str>); 11] {
    let list = |cols: &'static str| cols.split(',').map(str::trim).collect::<Vec<_>>();
    let event = std::iter::once("pos")
        .chain(list(EVENT_COLUMNS))
        .filter(|c| !ADDED_EVENT_COLUMNS.contains(c))
        .collect();
    [
        (&t.state, list(CURRENT_COLUMNS)),
        (&t.history, list(HISTORY_COLUMNS)),
        (&t.section, list(SECTION_COLUMNS)),
        (&t.versions, list(VERSIONS_COLUMNS)),
        (&t.event, event),
        (&t.actor, ACTOR_COLUMNS.to_vec()),
        (&t.contract, CONTRACT_COLUMNS.to_vec()),
        (&t.refusal, list(REFUSAL_COLUMNS)),
        (&t.log, list(LOG_COLUMNS)),
        (&t.checkpoint, list(CHECKPOINT_COLUMNS)),
        (&t.sink_cursor, vec!["sink", "pos"]),
    ]
}

/// `(?, …), (?, …)`: `rows` groups of `width` placeholders.
fn placeholders(rows: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row.as_str(); rows].join(", ")
}

/// Bytes a bound value adds to the statement, roughly.
fn value_bytes(v: &My) -> usize {
    match v {
        My::Bytes(b) => b.len() + 9,
        _ => 9,
    }
}

/// Inserts `rows` (all of one width) with as few multi-row statements as the placeholder
/// and packet limits allow, in order.
async fn insert_rows(
    tx: &mut impl Queryable,
    head: &str,
    tail: &str,
    rows: &[&[My]],
) -> Result<(), mysql_async::Error> {
    let Some(width) = rows.first().map(|r| r.len()) else {
        return Ok(());
    };
    let max_rows = (MAX_PLACEHOLDERS / width.max(1)).max(1);
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rows.len() && end - start < max_rows {
            let b: usize = rows[end].iter().map(value_bytes).sum();
            if end > start && bytes + b > MAX_INSERT_BYTES {
                break;
            }
            bytes += b;
            end += 1;
        }
        let sql = format!("{head}{}{tail}", placeholders(end - start, width));
        let values: Vec<My> = rows[start..end]
            .iter()
            .flat_map(|r| r.iter().cloned())
            .collect();
        tx.exec_drop(sql, values).await?;
        start = end;
    }
    Ok(())
}

/// The conflict a duplicate key on a commit's inserts stands for (a race the plan could not
/// see): on the event table, the origin of the first recorded item; on a state table, the
/// version of the first recorded state.
fn key_taken(
    record: &[usize],
    rows: &[(EventRow, Option<StateRow>)],
    on_events: bool,
) -> StoreError {
    let state = record.iter().find_map(|&i| rows[i].1.as_ref());
    match (state, record.first()) {
        (Some(s), _) if !on_events => {
            let v = s.version.unsigned_abs();
            StoreError::stale_version(&s.id.as_str().into(), v - 1, v)
        }
        (_, Some(&i)) => {
            let ev = &rows[i].0;
            StoreError::origin_taken(&ev.origin_node.as_str().into(), OriginSeq(ev.origin_seq))
        }
        (_, None) => StoreError::backend(NAME, "commit", "duplicate key with nothing to write"),
    }
}

/// [`raced_or`] for statements whose duplicate keys stand for the log: concurrent writers
/// kept taking the position this one planned.
fn tx_err(op: &'static str) -> impl Fn(mysql_async::Error) -> TxError {
    move |e| {
        raced_or(op, e, || StoreError::Backend {
            backend: NAME,
            operation: op,
            retryable: true,
            source: "concurrent writers kept taking the next log position".into(),
        })
    }
}

/// Reads the log head inside `tx` ([`LogHead::default`] for an empty log).
async fn read_head(
    tx: &mut Transaction<'static>,
    sql: &Sql,
    op: &'static str,
) -> Result<LogHead, TxError> {
    let row: Option<Row> = tx
        .exec_first(sql.log_head.as_str(), ())
        .await
        .map_err(tx_err(op))?;
    Ok(row
        .map(log_entry_from_row)
        .transpose()?
        .map(|e| e.head())
        .unwrap_or_default())
}

/// Bound values of one log row, in [`LOG_COLUMNS`] order.
fn log_values(e: &LogEntry) -> Result<Vec<My>, StoreError> {
    Ok(vec![
        My::from(to_i64("log.pos", e.pos)?),
        My::from(e.kind.as_str()),
        My::from(e.subject.as_str()),
        My::from(e.record.to_string()),
        My::from(e.prev.to_string()),
        My::from(e.hash.to_string()),
    ])
}

/// Reads the head and appends `record`'s entry after it, inside `tx`.
async fn append_log(
    tx: &mut Transaction<'static>,
    sql: &Sql,
    op: &'static str,
    record: &LogRecord<'_>,
) -> Result<(), TxError> {
    let entry = read_head(tx, sql, op).await?.append(record);
    let values = log_values(&entry)?;
    insert_rows(tx, &sql.insert_log_head, "", &[&values])
        .await
        .map_err(tx_err(op))
}

fn params(values: Vec<My>) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values)
    }
}

impl MysqlStore {
    /// Opens a pool on `config.url` and checks that the server answers (nothing is created
    /// until [`Store::migrate`]). The pool connects without a default database: every table
    /// name is qualified with the configured database.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for a bad URL, a missing database name or a bad table
    /// name; [`StoreError::Backend`] when the server cannot be reached.
    pub async fn connect(config: MysqlConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let invalid = |reason: String| StoreError::InvalidInput {
            path: "config.url".into(),
            reason,
        };
        let opts = Opts::from_url(&config.url).map_err(|e| invalid(e.to_string()))?;
        let database = config
            .database
            .clone()
            .or_else(|| opts.db_name().map(str::to_owned))
            .ok_or_else(|| StoreError::InvalidInput {
                path: "config.database".into(),
                reason: "no database configured and none in the URL".into(),
            })?;
        check_identifier("database", &database)?;
        let constraints = PoolConstraints::new(0, config.max_connections)
            .ok_or_else(|| invalid("bad pool size".into()))?;
        let opts = OptsBuilder::from_opts(opts)
            .db_name(None::<String>)
            .init(SESSION_INIT.to_vec())
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        let pool = Pool::new(opts);
        // Fail now, not at the first query, when the server is unreachable.
        let conn = pool.get_conn().await.map_err(|e| backend("connect", e))?;
        drop(conn);
        let names = Names::new(&database, &config.tables);
        Ok(MysqlStore {
            pool,
            sql: Arc::new(Sql::new(&names)),
            names: Arc::new(names),
            database,
            config: Arc::new(config),
        })
    }

    /// The connection pool (for the application's own queries on the same server).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The settings this store was opened with.
    pub fn config(&self) -> &MysqlConfig {
        &self.config
    }

    /// The database holding the peer tables.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Starts a `READ COMMITTED` write transaction.
    async fn begin(&self, op: &'static str) -> Result<Transaction<'static>, StoreError> {
        // READ COMMITTED: locking reads of a missing row take no gap lock, so two writers
        // creating the same state do not deadlock; one waits on the other's insert.
        let mut opts = TxOpts::default();
        opts.with_isolation_level(IsolationLevel::ReadCommitted);
        self.pool
            .start_transaction(opts)
            .await
            .map_err(|e| backend(op, e))
    }

    /// Runs `attempt` in a write transaction and commits it; the one retry loop of every
    /// write. An attempt that lost a race ([`TxError::Raced`]: a concurrent writer took the
    /// log position or a key it planned, or a deadlock) is rolled back and the whole
    /// transaction re-run, reads and plan included, up to [`RACE_RETRIES`] times.
    async fn write<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut(Transaction<'static>) -> Fut,
        Fut: Future<Output = (Transaction<'static>, Result<T, TxError>)>,
    {
        let mut retries = 0;
        loop {
            let (tx, result) = attempt(self.begin(op).await?).await;
            let err = match result {
                Ok(v) => {
                    tx.commit().await.map_err(|e| backend(op, e))?;
                    return Ok(v);
                }
                Err(e) => e,
            };
            // The error is the answer; a failed rollback ends with the connection.
            if let Err(rb) = tx.rollback().await {
                tracing::warn!(backend = NAME, operation = op, error = %rb, "rollback after a failed write failed");
            }
            match err {
                TxError::Raced(_) if retries < RACE_RETRIES => retries += 1,
                TxError::Raced(e) | TxError::Failed(e) => return Err(e),
            }
        }
    }

    /// Reads what is recorded about the batch inside `tx`.
    async fn read_recorded(
        &self,
        tx: &mut Transaction<'static>,
        lookups: &Lookups,
        rows: &[(EventRow, Option<StateRow>)],
    ) -> Result<Recorded, TxError> {
        let op = "commit";
        let mut recorded = Recorded::default();
        // Lock first: a concurrent writer of the same states finishes before the event
        // lookups below, so its events read as recorded.
        for chunk in lookups.states.chunks(MAX_IN_LIST) {
            let sql = format!(
                "{}{}) ORDER BY s.id FOR UPDATE",
                self.sql.lock_states_head,
                placeholders(chunk.len(), 1)
            );
            let found: Vec<(String, i64, Option<String>)> = tx
                .exec(
                    sql,
                    chunk
                        .iter()
                        .map(|id| My::from(id.as_str()))
                        .collect::<Vec<_>>(),
                )
                .await
                .map_err(tx_err(op))?;
            for (id, version, seals) in found {
                let version = u64::try_from(version)
                    .map_err(|e| StoreError::malformed(format!("state {id}"), e))?;
                let id = StateId(id);
                // Seals that do not parse leave the state out: it is written in full.
                if let Some(seals) = seals.and_then(|t| serde_json::from_str(&t).ok()) {
                    recorded.seals.insert(id.clone(), seals);
                }
                recorded.versions.insert(id, version);
            }
        }
        let batch_ids: HashMap<String, EventId> = rows
            .iter()
            .map(|(ev, _)| (ev.id.to_string(), ev.id))
            .collect();
        let (events, origins) = (&lookups.events, &lookups.origins);
        let chunks = events.len().max(origins.len()).div_ceil(MAX_IN_LIST);
        for k in 0..chunks {
            let part = |len: usize| (k * MAX_IN_LIST).min(len)..((k + 1) * MAX_IN_LIST).min(len);
            let (ids, taken) = (&events[part(events.len())], &origins[part(origins.len())]);
            let mut selects = Vec::new();
            let mut values: Vec<My> = Vec::new();
            if !ids.is_empty() {
                selects.push(format!(
                    "{}{})",
                    self.sql.seen_ids_head,
                    placeholders(ids.len(), 1)
                ));
                values.extend(ids.iter().map(|id| My::from(id.to_string())));
            }
            if !taken.is_empty() {
                selects.push(format!(
                    "{}{}",
                    self.sql.seen_origins_head,
                    vec!["(origin_node = ? AND origin_seq = ?)"; taken.len()].join(" OR ")
                ));
                for (node, seq) in taken {
                    values.push(My::from(node.as_str()));
                    values.push(My::from(to_i64("origin_seq", seq.0)?));
                }
            }
            let found: Vec<(String, String, i64)> = tx
                .exec(selects.join(" UNION ALL "), values)
                .await
                .map_err(tx_err(op))?;
            // Every row found is a recorded event holding its origin; those with a batch id
            // are the batch's recorded events.
            for (id, node, seq) in found {
                let event = match batch_ids.get(&id) {
                    Some(event) => {
                        recorded.events.insert(*event);
                        *event
                    }
                    None => id
                        .parse::<EventId>()
                        .map_err(|e| StoreError::malformed(format!("event {id}"), e))?,
                };
                let seq = u64::try_from(seq)
                    .map_err(|e| StoreError::malformed(format!("event {id}"), e))?;
                recorded
                    .origins
                    .insert((NodeId(node), OriginSeq(seq)), event);
            }
        }
        // Last, after the locks: the head a concurrent writer of the same states left.
        recorded.log_head = read_head(tx, &self.sql, op).await?;
        Ok(recorded)
    }

    /// One attempt at a batch, in one transaction: lock the current rows of every touched
    /// state and read the seals of their versions (one `SELECT … FOR UPDATE`, in id order),
    /// look up recorded event ids and taken origin sequences (one `UNION ALL` query) and the
    /// log head, let [`CommitPlan`] decide, then write events, history rows, new section
    /// versions, new current rows and log entries with one multi-row `INSERT` each (split
    /// only past the placeholder or packet limits), and one guarded `UPDATE` of the existing
    /// current rows ([`MysqlStore::update_currents`]). A duplicate key or a deadlock is a lost race: a concurrent writer got
    /// there between the read and the insert, and the next attempt reads what it committed
    /// and plans again.
    async fn try_commit(
        &self,
        tx: &mut Transaction<'static>,
        batch: &CommitBatch,
        lookups: &Lookups,
        rows: &[(EventRow, Option<StateRow>)],
    ) -> Result<CommitReceipt, TxError> {
        let op = "commit";
        let recorded = self.read_recorded(tx, lookups, rows).await?;
        let plan = CommitPlan::new(batch, &recorded)?;
        let mut events: Vec<&[My]> = Vec::with_capacity(plan.record.len());
        let mut history: Vec<&[My]> = Vec::new();
        for &i in &plan.record {
            let (ev, state) = &rows[i];
            events.push(&ev.values);
            if let Some(s) = state {
                history.push(&s.history);
            }
        }
        let sections = plan
            .section_versions(batch)
            .map(|v| {
                Ok(vec![
                    My::from(v.state.as_str()),
                    My::from(v.name),
                    My::from(v.hash.to_string()),
                    My::from(json_text(
                        &member_path(&format!("state {}.sections", v.state), v.name),
                        v.value,
                    )?),
                ])
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sections: Vec<&[My]> = sections.iter().map(Vec::as_slice).collect();
        // Updated rows are locked since the read, so they are still at the version the plan
        // was made against (its `from` guard holds); a new row may meet a concurrent creator.
        let mut created = Vec::new();
        for row in &plan.current {
            if let (CurrentWrite::Insert, Some(s)) = (row.write, &batch.items[row.item].state) {
                created.push(current_values(&format!("items[{}].state", row.item), s)?);
            }
        }
        let created: Vec<&[My]> = created.iter().map(Vec::as_slice).collect();
        for (head, tail, values, is_event) in [
            (&self.sql.insert_events_head, "", &events, true),
            (&self.sql.insert_histories_head, "", &history, false),
            (
                &self.sql.insert_sections_head,
                SKIP_STORED_SECTION,
                &sections,
                false,
            ),
            (&self.sql.insert_states_head, "", &created, false),
        ] {
            // A concurrent writer of the same events or states: a duplicate key, or a
            // deadlock when it waits on one row while this insert needs the gap before it.
            // Still racing after the retries, the key says which rule it enforces.
            insert_rows(tx, head, tail, values)
                .await
                .map_err(|e| raced_or(op, e, || key_taken(&plan.record, rows, is_event)))?;
        }
        let updates: Vec<CurrentUpdate<'_>> = plan
            .current
            .iter()
            .filter_map(|row| match (row.write, &batch.items[row.item].state) {
                (CurrentWrite::Update { from }, Some(state)) => Some(CurrentUpdate {
                    at: format!("items[{}].state", row.item),
                    state,
                    from,
                    data: &row.data,
                }),
                _ => None,
            })
            .collect();
        self.update_currents(tx, &updates).await?;
        let log = plan
            .log
            .iter()
            .map(log_values)
            .collect::<Result<Vec<_>, _>>()?;
        let log: Vec<&[My]> = log.iter().map(Vec::as_slice).collect();
        insert_rows(tx, &self.sql.insert_log_head, "", &log)
            .await
            .map_err(tx_err(op))?;
        Ok(plan.receipt())
    }

    /// The guarded updates of existing current rows, as few `UPDATE … CASE id …` statements
    /// as the row, placeholder and packet limits allow: contract, version and data of each
    /// row still at its `from` version, the data patched in SQL where the plan allows it (only
    /// the changed sections are sent). A statement MariaDB's JSON functions cannot run (a
    /// stored document beyond their 32 levels of nesting, or not valid JSON) is run again
    /// with whole documents.
    async fn update_currents(
        &self,
        tx: &mut Transaction<'static>,
        updates: &[CurrentUpdate<'_>],
    ) -> Result<(), TxError> {
        let patched = updates
            .iter()
            .enumerate()
            .map(|(i, u)| RowUpdate::new(u, true).map(|r| r.at(i)))
            .collect::<Result<Vec<_>, _>>()?;
        for group in update_groups(&patched) {
            match self.run_update(tx, group).await {
                Err(e) if is_json_patch_failure(&e) => {
                    tracing::debug!(backend = NAME, error = %e, "data patch refused by the server, writing whole documents");
                    let whole = group
                        .iter()
                        .map(|r| RowUpdate::new(&updates[r.index], false).map(|w| w.at(r.index)))
                        .collect::<Result<Vec<_>, _>>()?;
                    for group in update_groups(&whole) {
                        self.run_update(tx, group)
                            .await
                            .map_err(|e| raced_or("commit", e, || group[0].moved()))?;
                        check_updated(tx, group)?;
                    }
                }
                Err(e) => return Err(raced_or("commit", e, || group[0].moved())),
                Ok(()) => check_updated(tx, group)?,
            }
        }
        Ok(())
    }

    /// One `UPDATE` of the current rows of `group`.
    async fn run_update(
        &self,
        tx: &mut Transaction<'static>,
        group: &[RowUpdate],
    ) -> Result<(), mysql_async::Error> {
        let mut values = Vec::new();
        let mut arms = |expr: &dyn Fn(&RowUpdate) -> (String, Vec<My>)| {
            let mut sql = "CASE id".to_owned();
            for r in group {
                let (then, bound) = expr(r);
                sql.push_str(&format!(" WHEN ? THEN {then}"));
                values.push(My::from(r.id.as_str()));
                values.extend(bound);
            }
            sql.push_str(" END");
            sql
        };
        let name = arms(&|r| ("?".into(), vec![r.contract_name.clone()]));
        let contract = arms(&|r| ("?".into(), vec![r.contract_version.clone()]));
        let data = arms(&|r| (r.expr.clone(), r.data.clone()));
        let version = arms(&|r| ("?".into(), vec![r.version.clone()]));
        for r in group {
            values.push(My::from(r.id.as_str()));
            values.push(r.from.clone());
        }
        // Assignments run left to right: `version` last, after the guard and the other
        // columns were evaluated against the stored row.
        let sql = format!(
            "UPDATE {} SET contract_name = {name}, contract_version = {contract}, \
             data = {data}, version = {version} WHERE {}",
            self.names.state,
            vec!["(id = ? AND version = ?)"; group.len()].join(" OR ")
        );
        tx.exec_drop(sql, values).await
    }

    /// One attempt at `put_contract`: the stored identity decides; an inserted version is
    /// logged. A concurrent put of the same version makes the next attempt decide against
    /// what it recorded.
    async fn try_put_contract(
        &self,
        tx: &mut Transaction<'static>,
        contract: &ContractRecord,
        values: &[My],
    ) -> Result<(), TxError> {
        let op = "put_contract";
        let key = contract.contract();
        let stored: Option<String> = tx
            .exec_first(
                self.sql.contract_identity.as_str(),
                vec![My::from(key.name.as_str()), My::from(key.version)],
            )
            .await
            .map_err(tx_err(op))?;
        let stored = stored
            .map(|d| {
                d.parse::<Digest>()
                    .map_err(|e| StoreError::malformed(format!("contract {key} identity"), e))
            })
            .transpose()?;
        if ContractPut::decide(stored.as_ref(), contract)? == ContractPut::AlreadyRecorded {
            return Ok(());
        }
        tx.exec_drop(self.sql.insert_contract.as_str(), values.to_vec())
            .await
            .map_err(|e| {
                raced_or(op, e, || {
                    StoreError::contract_identity(key, "(concurrent)", contract.identity)
                })
            })?;
        append_log(tx, &self.sql, op, &LogRecord::Contract(contract)).await
    }

    /// One attempt at a write of one row (`sql` with `values`) with `record`'s log entry;
    /// with `only_if_changed`, the entry is appended only when the statement changed a row
    /// (a cleared refusal).
    async fn try_put_row(
        &self,
        tx: &mut Transaction<'static>,
        op: &'static str,
        sql: &str,
        values: &[My],
        record: &LogRecord<'_>,
        only_if_changed: bool,
    ) -> Result<(), TxError> {
        tx.exec_drop(sql, values.to_vec())
            .await
            .map_err(tx_err(op))?;
        if only_if_changed && tx.affected_rows() == 0 {
            return Ok(());
        }
        append_log(tx, &self.sql, op, record).await
    }

    /// [`MysqlStore::try_put_row`] in [`MysqlStore::write`]'s retry loop.
    async fn put_row(
        &self,
        op: &'static str,
        sql: &str,
        values: Vec<My>,
        record: &LogRecord<'_>,
        only_if_changed: bool,
    ) -> Result<(), StoreError> {
        let values = &values;
        self.write(op, |mut tx| async move {
            let r = self
                .try_put_row(&mut tx, op, sql, values, record, only_if_changed)
                .await;
            (tx, r)
        })
        .await
    }

    /// Copies the plaintext of every history row of the first layout (its `data` column)
    /// into the section table, one section row per seal with a salt, a page of rows per
    /// transaction, keys already stored kept. Each row must read back as a state first: a
    /// row that does not (changed behind SST's back) stops the upgrade before anything of it
    /// is dropped, naming the version.
    async fn copy_first_layout_sections(
        &self,
        conn: &mut mysql_async::Conn,
    ) -> Result<(), StoreError> {
        const PAGE: usize = 64;
        let op = "migrate";
        let select = format!(
            "SELECT {HISTORY_COLUMNS}, data FROM {} WHERE id > ? OR (id = ? AND version > ?) \
             ORDER BY id, version LIMIT {PAGE}",
            self.names.history
        );
        let (mut last_id, mut last_version) = (String::new(), 0i64);
        loop {
            let rows: Vec<Row> = conn
                .exec(
                    select.as_str(),
                    (last_id.as_str(), last_id.as_str(), last_version),
                )
                .await
                .map_err(|e| backend(op, e))?;
            let n = rows.len();
            if n == 0 {
                return Ok(());
            }
            let mut sections = Vec::new();
            let after = format!("state {last_id:?} version {last_version}");
            for mut row in rows {
                let id: String = take(&mut row, "id", &|| "history row".to_owned())?;
                let version: i64 = take(&mut row, "version", &|| format!("state {id}"))?;
                let what = || {
                    format!("state {id} version {version} (upgrading the first layout in place)")
                };
                let contract = take_contract(&mut row, "", &what)?;
                let data = take_portable(&mut row, "data", &what)?;
                let parts = history_parts(&mut row, &id, version, contract, data, &what)?;
                let state = state_from_parts(parts, &what)?;
                for (name, section) in &state.sections {
                    if let Some(value) = section.value() {
                        sections.push(vec![
                            My::from(id.as_str()),
                            My::from(name.as_str()),
                            My::from(section.hash.to_string()),
                            My::from(json_text(&what(), value)?),
                        ]);
                    }
                }
                (last_id, last_version) = (id, version);
            }
            let rows: Vec<&[My]> = sections.iter().map(Vec::as_slice).collect();
            let mut tx = conn
                .start_transaction(TxOpts::default())
                .await
                .map_err(|e| backend(op, e))?;
            let inserted = insert_rows(
                &mut tx,
                &self.sql.insert_sections_head,
                SAME_STORED_SECTION,
                &rows,
            )
            .await;
            match inserted {
                Err(mysql_async::Error::Server(e)) if e.code == 1048 => {
                    drop(tx);
                    let key = self.differing_section(conn, &sections).await?;
                    return Err(StoreError::malformed(
                        key.unwrap_or_else(|| {
                            format!(
                                "first-layout history rows after {after}, up to state \
                                 {last_id} version {last_version}"
                            )
                        }),
                        "two versions hold one section version (same name and hash) with \
                         different values; repair the history, then run migrate again (nothing \
                         was dropped)",
                    ));
                }
                other => other.map_err(|e| backend(op, e))?,
            }
            tx.commit().await.map_err(|e| backend(op, e))?;
            if n < PAGE {
                return Ok(());
            }
        }
    }

    /// The first of `rows` (section rows of the first-layout upgrade) whose key another of
    /// them or a stored row holds with a different value, as "state … section … hash …".
    async fn differing_section(
        &self,
        conn: &mut mysql_async::Conn,
        rows: &[Vec<My>],
    ) -> Result<Option<String>, StoreError> {
        let op = "migrate";
        let select = format!(
            "SELECT value FROM {} WHERE state_id = ? AND name = ? AND hash = ?",
            self.names.section
        );
        let mut seen: Vec<(&[My], &My)> = Vec::new();
        for row in rows {
            let (key, value) = (&row[..3], &row[3]);
            let stored: Option<My> = conn
                .exec_first(select.as_str(), key.to_vec())
                .await
                .map_err(|e| backend(op, e))?;
            let earlier = seen.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            seen.push((key, value));
            if stored.is_some_and(|v| v != *value) || earlier.is_some_and(|v| v != value) {
                let text = |v: &My| String::from_value_opt(v.clone()).unwrap_or_default();
                return Ok(Some(format!(
                    "state {} section {} hash {}",
                    text(&key[0]),
                    text(&key[1]),
                    text(&key[2])
                )));
            }
        }
        Ok(None)
    }

    /// The records of `rows`, the section versions their disclosures name read from the
    /// section table: every key at once, a few hundred per query (none for rows whose
    /// disclosures are all inline). A named version the table does not hold is an integrity
    /// error naming the event ([`DisclosureColumn::resolve`]).
    async fn resolve_events(
        &self,
        conn: &mut mysql_async::Conn,
        op: &'static str,
        rows: Vec<StoredEvent>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let wanted = section_keys(&rows);
        let mut found: HashMap<SectionKey, String> = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(MAX_IN_LIST / 3) {
            let sql = format!(
                "{}{})",
                self.sql.section_keys_head,
                vec!["(?, ?, ?)"; chunk.len()].join(", ")
            );
            let values: Vec<My> = chunk
                .iter()
                .flat_map(|(state, name, hash)| {
                    [
                        My::from(state.as_str()),
                        My::from(name.as_str()),
                        My::from(hash.as_str()),
                    ]
                })
                .collect();
            let rows: Vec<(String, String, String, String)> =
                conn.exec(sql, values).await.map_err(|e| backend(op, e))?;
            found.extend(
                rows.into_iter()
                    .map(|(state, name, hash, value)| ((state, name, hash), value)),
            );
        }
        rows.into_iter()
            .map(|stored| stored.resolve_texts(|key| Ok(found.get(key))))
            .collect()
    }

    async fn conn(&self, op: &'static str) -> Result<mysql_async::Conn, StoreError> {
        self.pool.get_conn().await.map_err(|e| backend(op, e))
    }

    /// Version `version` of `id`: its history row, and the section rows of its seals that
    /// carry a salt (looked up by key, a few hundred at a time).
    async fn fetch_version(&self, id: &StateId, version: i64) -> Result<Option<State>, StoreError> {
        let op = "state_at";
        let mut conn = self.conn(op).await?;
        let row: Option<Row> = conn
            .exec_first(self.sql.state_at.as_str(), (id.as_str(), version))
            .await
            .map_err(|e| backend(op, e))?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        let what = || format!("state {id} version {version}");
        let contract = take_contract(&mut row, "", &what)?;
        let mut parts =
            history_parts(&mut row, id.as_str(), version, contract, Value::Null, &what)?;
        let mut data = serde_json::Map::new();
        let wanted = disclosed_seals(&parts.seals);
        for chunk in wanted.chunks(MAX_IN_LIST / 2) {
            let sql = format!(
                "{}{})",
                self.sql.sections_head,
                vec!["(name = ? AND hash = ?)"; chunk.len()].join(" OR ")
            );
            let mut values = vec![My::from(id.as_str())];
            for (name, hash) in chunk {
                values.push(My::from(*name));
                values.push(My::from(*hash));
            }
            let found: Vec<(String, String, String)> =
                conn.exec(sql, values).await.map_err(|e| backend(op, e))?;
            for (name, _, value) in found {
                let value = sst_core::portable::parse(&value)
                    .map_err(|e| StoreError::malformed(what(), format!("section {name}: {e}")))?;
                data.insert(name, value);
            }
        }
        parts.data = Value::Object(data);
        state_from_parts(parts, &what).map(Some)
    }
}

#[async_trait]
impl Store for MysqlStore {
    fn backend(&self) -> &'static str {
        NAME
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let op = "migrate";
        let mut conn = self.conn(op).await?;
        let available: Vec<String> = conn
            .exec(
                "SELECT COLLATION_NAME FROM information_schema.COLLATIONS \
                 WHERE COLLATION_NAME IN (?, ?, ?)",
                COLLATIONS.to_vec(),
            )
            .await
            .map_err(|e| backend(op, e))?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| backend(op, e))?;
        let flavor = Flavor::from_version(version.as_deref().unwrap_or_default());
        let collation = COLLATIONS
            .into_iter()
            .find(|c| available.iter().any(|a| a == c))
            .unwrap_or("utf8mb4_bin");
        // A table that already carries a peer table's name must be one of ours. DDL commits
        // implicitly here, so a foreign one is refused before anything is created: a refused
        // migrate changes nothing.
        let needed = needed_columns(&self.config.tables);
        let mut values = vec![My::from(self.database.as_str())];
        values.extend(needed.iter().map(|(t, _)| My::from(*t)));
        let present: Vec<(String, String)> = conn
            .exec(
                format!(
                    "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN ({}) ORDER BY ORDINAL_POSITION",
                    vec!["?"; needed.len()].join(", ")
                ),
                values,
            )
            .await
            .map_err(|e| backend(op, e))?;
        check_peer_layout(
            NAME,
            &needed,
            &present,
            NameCase::Insensitive,
            &format!(
                "looked for in database `{}`: choose another database or other table names \
                 (MysqlConfig::database / tables), or move that table away",
                self.database
            ),
        )?;
        let t = &self.config.tables;
        let view_is_table: Option<String> = conn
            .exec_first(
                "SELECT TABLE_TYPE FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND TABLE_TYPE <> 'VIEW'",
                (self.database.as_str(), t.versions.as_str()),
            )
            .await
            .map_err(|e| backend(op, e))?;
        if let Some(kind) = view_is_table {
            return Err(StoreError::Schema {
                backend: NAME,
                table: t.versions.clone(),
                detail: format!(
                    "it is a {kind}, where SST keeps its history view; choose other table names \
                     (MysqlConfig::tables) or move that table away"
                ),
            });
        }
        // An event table of an older layout gains the columns added since.
        let added = [(self.config.tables.event.as_str(), ADDED_EVENT_COLUMNS)];
        for (_, column) in columns_to_add(&added, &present, NameCase::Insensitive) {
            let alter = schema::add_event_column(&self.names, column, flavor).ok_or_else(|| {
                StoreError::backend(NAME, op, format!("no definition of column {column}"))
            })?;
            conn.query_drop(alter).await.map_err(|e| backend(op, e))?;
        }
        // MySQL/MariaDB DDL commits implicitly: each statement is idempotent on its own.
        for stmt in schema::ddl(&self.names, collation, flavor) {
            conn.query_drop(stmt).await.map_err(|e| backend(op, e))?;
        }
        // State tables of the first layout: each step is idempotent and the next one runs
        // only once it is done, so a migrate that stopped midway is finished by the next.
        let has = |table: &str, column: &str| {
            present
                .iter()
                .any(|(t, c)| t.eq_ignore_ascii_case(table) && c.eq_ignore_ascii_case(column))
        };
        if has(&t.history, "data") {
            // 1. every disclosed section version into the section table (keys already
            //    stored are kept); 2. only then the history's plaintext goes.
            self.copy_first_layout_sections(&mut conn).await?;
            conn.query_drop(schema::drop_history_data(&self.names))
                .await
                .map_err(|e| backend(op, e))?;
        }
        // 3. The current rows' copies of history columns (the history holds them).
        let extra: Vec<&str> = schema::FIRST_LAYOUT_CURRENT_ONLY
            .into_iter()
            .filter(|c| has(&t.state, c))
            .collect();
        if !extra.is_empty() {
            conn.query_drop(schema::drop_current_columns(&self.names, &extra))
                .await
                .map_err(|e| backend(op, e))?;
        }
        conn.query_drop(schema::versions_view(&self.names, collation, flavor))
            .await
            .map_err(|e| backend(op, e))?;
        Ok(())
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReceipt, StoreError> {
        batch.validate()?;
        // Everything is converted (and range-checked) before the database is touched.
        let mut rows = Vec::with_capacity(batch.items.len());
        for (i, item) in batch.items.iter().enumerate() {
            let at = format!("items[{i}]");
            let state = item
                .state
                .as_ref()
                .map(|s| StateRow::new(&format!("{at}.state"), s))
                .transpose()?;
            rows.push((EventRow::new(&at, item)?, state));
        }
        // A concurrent writer met between the read and the inserts is read by the next
        // attempt.
        let lookups = Lookups::of(&batch);
        let (batch, lookups, rows) = (&batch, &lookups, &rows);
        self.write("commit", |mut tx| async move {
            let r = self.try_commit(&mut tx, batch, lookups, rows).await;
            (tx, r)
        })
        .await
    }

    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError> {
        let op = "state";
        let mut conn = self.conn(op).await?;
        let row: Option<Row> = conn
            .exec_first(self.sql.state.as_str(), (id.as_str(),))
            .await
            .map_err(|e| backend(op, e))?;
        row.map(current_state_from_row).transpose()
    }

    async fn state_at(&self, id: &StateId, version: u64) -> Result<Option<State>, StoreError> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        self.fetch_version(id, v).await
    }

    async fn state_ids(&self) -> Result<Vec<StateId>, StoreError> {
        let mut conn = self.conn("state_ids").await?;
        let mut ids: Vec<String> = conn
            .query(self.sql.state_ids.as_str())
            .await
            .map_err(|e| backend("state_ids", e))?;
        // The binary collation already orders by code point; sorting here makes the order
        // exactly Rust's on every server and collation.
        ids.sort();
        Ok(ids.into_iter().map(StateId).collect())
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        if filter.limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut sql = format!("SELECT {EVENT_SELECT} FROM {} WHERE TRUE", self.names.event);
        let mut values: Vec<My> = Vec::new();
        let mut cond = |clause: &str, v: My| {
            sql.push_str(clause);
            values.push(v);
        };
        if let Some(s) = &filter.state_id {
            cond(" AND state_id = ?", My::from(s.as_str()));
        }
        if let Some(a) = &filter.actor {
            cond(" AND actor = ?", My::from(a.as_str()));
        }
        if let Some(n) = &filter.origin_node {
            cond(" AND origin_node = ?", My::from(n.as_str()));
        }
        if let Some(s) = filter.after_origin_seq {
            cond(
                " AND origin_seq > ?",
                My::from(i64::try_from(s.0).unwrap_or(i64::MAX)),
            );
        }
        if let Some(o) = filter.outcome {
            cond(" AND outcome = ?", My::from(o.as_str()));
        }
        if let Some(k) = filter.kind {
            cond(" AND kind = ?", My::from(k.as_str()));
        }
        sql.push_str(" ORDER BY pos");
        if let Some(limit) = filter.limit {
            sql.push_str(" LIMIT ?");
            values.push(My::from(u64::try_from(limit).unwrap_or(u64::MAX)));
        }
        let mut conn = self.conn("events").await?;
        let rows: Vec<Row> = conn
            .exec(sql, params(values))
            .await
            .map_err(|e| backend("events", e))?;
        let rows = rows
            .into_iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.resolve_events(&mut conn, "events", rows).await
    }

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let mut conn = self.conn("event").await?;
        let row: Option<Row> = conn
            .exec_first(self.sql.event.as_str(), vec![My::from(id.to_string())])
            .await
            .map_err(|e| backend("event", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored = event_from_row(row)?;
        let mut read = self
            .resolve_events(&mut conn, "event", vec![stored])
            .await?;
        Ok(read.pop())
    }

    async fn last_origin_seq(&self, node: &NodeId) -> Result<OriginSeq, StoreError> {
        let mut conn = self.conn("last_origin_seq").await?;
        let seq: Option<i64> = conn
            .exec_first(
                self.sql.last_origin_seq.as_str(),
                vec![My::from(node.as_str())],
            )
            .await
            .map_err(|e| backend("last_origin_seq", e))?;
        Ok(OriginSeq(
            seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        ))
    }

    async fn put_actor(&self, actor: &Actor) -> Result<(), StoreError> {
        check_id("actor.id", actor.id.as_str())?;
        check_id("actor.node", actor.node.as_str())?;
        let key = serde_json::to_value(actor.public_key).map_err(|e| StoreError::InvalidInput {
            path: "actor.public_key".into(),
            reason: e.to_string(),
        })?;
        let values = vec![
            My::from(actor.id.as_str()),
            My::from(actor.node.as_str()),
            My::from(key.as_str().unwrap_or_default()),
            My::from(actor.status.as_str()),
        ];
        let record = LogRecord::Actor(actor);
        self.put_row("put_actor", &self.sql.put_actor, values, &record, false)
            .await
    }

    async fn actor(&self, id: &ActorId) -> Result<Option<Actor>, StoreError> {
        let mut conn = self.conn("actor").await?;
        let row: Option<Row> = conn
            .exec_first(self.sql.actor.as_str(), vec![My::from(id.as_str())])
            .await
            .map_err(|e| backend("actor", e))?;
        row.map(actor_from_row).transpose()
    }

    async fn actors(&self) -> Result<Vec<Actor>, StoreError> {
        let mut conn = self.conn("actors").await?;
        let rows: Vec<Row> = conn
            .query(self.sql.actors.as_str())
            .await
            .map_err(|e| backend("actors", e))?;
        let mut actors = rows
            .into_iter()
            .map(actor_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        actors.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(actors)
    }

    async fn put_contract(&self, contract: &ContractRecord) -> Result<(), StoreError> {
        let op = "put_contract";
        let key = contract.contract();
        check_id("contract.name", &key.name)?;
        check_id("contract.deployer", contract.deployer.as_str())?;
        let record = serde_json::to_value(contract).map_err(|e| StoreError::InvalidInput {
            path: "contract".into(),
            reason: e.to_string(),
        })?;
        sst_core::portable::check_at(&record, "$.contract")?;
        let values = vec![
            My::from(key.name.as_str()),
            My::from(key.version),
            My::from(contract.identity.to_string()),
            My::from(contract.deployer.as_str()),
            My::from(record.to_string()),
        ];
        let values = &values;
        self.write(op, |mut tx| async move {
            let r = self.try_put_contract(&mut tx, contract, values).await;
            (tx, r)
        })
        .await
    }

    async fn contract(&self, contract: &ContractRef) -> Result<Option<ContractRecord>, StoreError> {
        let mut conn = self.conn("contract").await?;
        let row: Option<Row> = conn
            .exec_first(
                self.sql.contract.as_str(),
                vec![My::from(contract.name.as_str()), My::from(contract.version)],
            )
            .await
            .map_err(|e| backend("contract", e))?;
        row.map(contract_from_row).transpose()
    }

    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        let mut conn = self.conn("contracts").await?;
        let rows: Vec<Row> = conn
            .query(self.sql.contracts.as_str())
            .await
            .map_err(|e| backend("contracts", e))?;
        let mut records = rows
            .into_iter()
            .map(contract_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.contract().cmp(b.contract()));
        Ok(records)
    }

    async fn put_refusal(&self, refusal: &Refusal) -> Result<(), StoreError> {
        check_refusal(refusal)?;
        check_id("$.refusal.state_id", refusal.state_id.as_str())?;
        check_id("$.refusal.from_node", refusal.from_node.as_str())?;
        let values = vec![
            My::from(refusal.event.to_string()),
            My::from(refusal.state_id.as_str()),
            My::from(to_i64("$.refusal.version", refusal.version)?),
            My::from(refusal.from_node.as_str()),
            My::from(refusal.reason.code()),
            My::from(json_text("$.refusal.reason", &refusal.reason)?),
            My::from(refusal.at.0),
        ];
        let record = LogRecord::Refusal(refusal);
        self.put_row("put_refusal", &self.sql.put_refusal, values, &record, false)
            .await
    }

    async fn refusals(&self, state: Option<&StateId>) -> Result<Vec<Refusal>, StoreError> {
        let state = My::from(state.map(StateId::as_str));
        let mut conn = self.conn("refusals").await?;
        let rows: Vec<Row> = conn
            .exec(self.sql.refusals.as_str(), vec![state.clone(), state])
            .await
            .map_err(|e| backend("refusals", e))?;
        let mut refusals = rows
            .into_iter()
            .map(refusal_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // Already in this order under a NO PAD collation; kept exact under the PAD SPACE
        // fallback too, like `actors` and `contracts`.
        refusals.sort_by(|a, b| {
            (&a.state_id, a.version, a.event).cmp(&(&b.state_id, b.version, b.event))
        });
        Ok(refusals)
    }

    async fn clear_refusal(&self, event: &EventId) -> Result<(), StoreError> {
        let record = LogRecord::RefusalCleared(event);
        self.put_row(
            "clear_refusal",
            &self.sql.clear_refusal,
            vec![My::from(event.to_string())],
            &record,
            true,
        )
        .await
    }

    async fn log(&self, after: u64, limit: Option<usize>) -> Result<Vec<LogEntry>, StoreError> {
        let op = "log";
        // Positions are signed 64-bit: none lies past `i64::MAX`.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut sql = self.sql.log_after.clone();
        let mut values = vec![My::from(after)];
        if let Some(limit) = limit {
            sql.push_str(" LIMIT ?");
            values.push(My::from(u64::try_from(limit).unwrap_or(u64::MAX)));
        }
        let mut conn = self.conn(op).await?;
        let rows: Vec<Row> = conn.exec(sql, values).await.map_err(|e| backend(op, e))?;
        rows.into_iter().map(log_entry_from_row).collect()
    }

    async fn log_head(&self) -> Result<LogHead, StoreError> {
        let op = "log_head";
        let mut conn = self.conn(op).await?;
        let row: Option<Row> = conn
            .query_first(self.sql.log_head.as_str())
            .await
            .map_err(|e| backend(op, e))?;
        Ok(row
            .map(log_entry_from_row)
            .transpose()?
            .map(|e| e.head())
            .unwrap_or_default())
    }

    async fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let op = "put_checkpoint";
        let cp = &checkpoint.checkpoint;
        check_id("checkpoint.node", cp.node.as_str())?;
        let pos = to_i64("checkpoint.pos", cp.pos)?;
        let signature =
            serde_json::to_value(checkpoint.signature).map_err(|e| StoreError::InvalidInput {
                path: "checkpoint.signature".into(),
                reason: e.to_string(),
            })?;
        let mut conn = self.conn(op).await?;
        let inserted = conn
            .exec_drop(
                self.sql.insert_checkpoint.as_str(),
                vec![
                    My::from(cp.node.as_str()),
                    My::from(pos),
                    My::from(cp.head.to_string()),
                    My::from(cp.at.0),
                    My::from(signature.as_str().unwrap_or_default()),
                ],
            )
            .await;
        match inserted {
            Ok(()) => return Ok(()),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(backend(op, e)),
        }
        // Already recorded at this position: the same head is the same statement.
        let held: Option<String> = conn
            .exec_first(
                self.sql.checkpoint_head.as_str(),
                vec![My::from(cp.node.as_str()), My::from(pos)],
            )
            .await
            .map_err(|e| backend(op, e))?;
        if held.as_deref() == Some(cp.head.to_string().as_str()) {
            Ok(())
        } else {
            Err(StoreError::checkpoint_conflict(&cp.node, cp.pos))
        }
    }

    async fn checkpoints(&self, node: &NodeId) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let op = "checkpoints";
        let mut conn = self.conn(op).await?;
        let rows: Vec<Row> = conn
            .exec(self.sql.checkpoints.as_str(), vec![My::from(node.as_str())])
            .await
            .map_err(|e| backend(op, e))?;
        rows.into_iter().map(checkpoint_from_row).collect()
    }

    async fn prune_checkpoints(&self, node: &NodeId, keep: usize) -> Result<usize, StoreError> {
        let op = "prune_checkpoints";
        check_prune_keep(keep)?;
        let mut conn = self.conn(op).await?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| backend(op, e))?;
        let cut: Option<i64> = tx
            .exec_first(
                self.sql.checkpoint_cut.as_str(),
                (node.as_str(), u64::try_from(keep).unwrap_or(u64::MAX)),
            )
            .await
            .map_err(|e| backend(op, e))?;
        let Some(cut) = cut else {
            return Ok(0);
        };
        tx.exec_drop(self.sql.prune_checkpoints.as_str(), (node.as_str(), cut))
            .await
            .map_err(|e| backend(op, e))?;
        let deleted = tx.affected_rows();
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        let op = "sink_cursor";
        check_sink_name(sink)?;
        let mut conn = self.conn(op).await?;
        let pos: Option<i64> = conn
            .exec_first(self.sql.sink_cursor.as_str(), (sink,))
            .await
            .map_err(|e| backend(op, e))?;
        pos.map(|p| {
            u64::try_from(p).map_err(|e| StoreError::malformed(format!("cursor of sink {sink}"), e))
        })
        .transpose()
    }

    async fn set_sink_cursor(&self, sink: &str, position: u64) -> Result<(), StoreError> {
        let op = "set_sink_cursor";
        check_sink_name(sink)?;
        let pos = to_i64("position", position)?;
        let mut conn = self.conn(op).await?;
        conn.exec_drop(self.sql.set_sink_cursor.as_str(), (sink, pos))
            .await
            .map_err(|e| backend(op, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_are_quoted_or_refused() {
        assert_eq!(member_json_path("price").as_deref(), Some("$.\"price\""));
        assert_eq!(
            member_json_path("sp ace*[0]é").as_deref(),
            Some("$.\"sp ace*[0]é\"")
        );
        assert_eq!(member_json_path("we\"ird"), None);
        assert_eq!(member_json_path("back\\slash"), None);
    }

    #[test]
    fn updates_are_grouped_within_the_row_and_packet_limits() {
        let row = |index: usize, bytes: usize| RowUpdate {
            index,
            id: format!("s{index}"),
            contract_name: My::from("c"),
            contract_version: My::from(1u32),
            expr: "?".into(),
            data: vec![My::from(vec![b'x'; bytes])],
            version: My::from(2i64),
            from: My::from(1i64),
            stale: (StateId(format!("s{index}")), 1, 1),
        };
        let small: Vec<RowUpdate> = (0..250).map(|i| row(i, 10)).collect();
        let sizes: Vec<usize> = update_groups(&small).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, [MAX_UPDATE_ROWS, MAX_UPDATE_ROWS, 50]);
        let big: Vec<RowUpdate> = (0..3).map(|i| row(i, MAX_INSERT_BYTES)).collect();
        let sizes: Vec<usize> = update_groups(&big).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, [1, 1, 1]);
        assert!(update_groups(&[]).is_empty());
    }

    #[test]
    fn a_patch_sends_only_the_changed_sections() -> Result<(), StoreError> {
        use conformance_tests::fixtures::{actor, create, deal_parties, deal_values, state_id};
        let (alice, key) = actor("acme", "alice");
        let item = create(
            &state_id("patch"),
            deal_parties(),
            deal_values(1, 0.5),
            (&alice, &key),
            1,
        );
        let state = item.state.as_deref().ok_or(StoreError::InvalidInput {
            path: "fixture".into(),
            reason: "no state".into(),
        })?;
        let (expr, values) =
            data_patch("s", state, &["price".into()], &["gone".into()])?.unwrap_or_default();
        assert_eq!(
            expr,
            "JSON_SET(JSON_REMOVE(data, ?), ?, JSON_EXTRACT(?, '$'))"
        );
        assert_eq!(values.len(), 3);
        assert_eq!(values[1], My::from("$.\"price\""));
        assert!(data_patch("s", state, &["no such".into()], &[])?.is_none());
        assert!(data_patch("s", state, &[], &["a\"b".into()])?.is_none());
        assert_eq!(
            data_patch("s", state, &[], &[])?.map(|(e, _)| e).as_deref(),
            Some("data")
        );
        Ok(())
    }
}
