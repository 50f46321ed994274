//! [`OracleStore`]: the [`Store`] contract on Oracle Database through the `oracle` crate
//! (ODPI-C, which loads the Oracle Client library at run time). Every driver call runs on
//! tokio's blocking pool via one helper; a batch commits in one transaction on one pooled
//! connection: what is recorded about the batch is read (the touched current-state rows locked
//! with `SELECT … FOR UPDATE`, with the seals of their versions), sst-core's [`CommitPlan`]
//! decides, and the plan is written (new section versions once, the current row patched, an
//! applied event's row naming the section versions it disclosed instead of their values);
//! the primary and unique keys decide races the read could not see (ORA-00001 →
//! [`StoreError::Conflict`]). Event reads look the named versions up in the section table
//! (rows written before keep their values inline and read as they are).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use oracle::pool::{Pool, PoolBuilder};
use oracle::sql_type::{OracleType, ToSql};
use oracle::{Connection, Row, SqlValue};
use serde_json::Value;
use sst_core::canonical;
use sst_core::hash::{hash_parts, Domain};
use sst_core::model::{SectionSeal, StateParts};
use sst_core::raw::columns::{
    business_events_from_column, endorsements_from_column, json_value, receipt_from_column, to_i64,
    DerivedEventColumns,
};
use sst_core::raw::{
    section_keys, CommitPlan, ContractPut, CurrentWrite, DisclosureColumn, EventColumns, Lookups,
    Recorded, SectionKey, StoredEvent, RACE_RETRIES,
};
use sst_core::{
    check_prune_keep, check_refusal, check_sink_name, Actor, ActorId, Checkpoint, CommitBatch,
    CommitItem, CommitReceipt, ContractRecord, ContractRef, Digest, EventFilter, EventId,
    EventRecord, HashAlg, LogEntry, LogHead, LogRecord, NodeId, OriginSeq, Outcome, Refusal,
    SignedCheckpoint, State, StateId, Store, StoreError, Timestamp,
};

use crate::config::{JsonColumn, OracleConfig};
use crate::error::{backend, is_unique_violation, raced_or, tx_err, TxError};
use crate::schema::{
    check_peer_columns, layout_upgrade, required_columns, upgrade_ddl, DataSql, JsonMode,
    LayoutStep, Sql, IN_LIST_MAX,
};
use crate::value;
use crate::NAME;

/// Runs blocking driver work on tokio's blocking pool: the one place this crate leaves the
/// async runtime.
async fn blocking<T, F>(op: &'static str, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::backend(NAME, op, e))?
}

/// Loads the Oracle Client library (once per process) without connecting anywhere.
///
/// # Errors
/// [`StoreError::Backend`] wrapping DPI-1047 when no client library is installed (see
/// [`store_error_is_client_missing`](crate::store_error_is_client_missing)).
pub fn load_client() -> Result<(), StoreError> {
    oracle::InitParams::new()
        .init()
        .map(|_| ())
        .map_err(|e| backend("load_client", e))
}

/// A JSON value bound to a JSON column: text for the native type (through
/// `JSON(:n EXTENDED)`), UTF-8 bytes for a BLOB column.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonBind {
    /// CLOB text (native `JSON` column).
    Text(String),
    /// BLOB bytes (`BLOB … IS JSON` column).
    Bytes(Vec<u8>),
    /// SQL NULL of the mode's type.
    Null(JsonMode),
}

impl JsonBind {
    /// Encodes `v` for `mode` (see [`crate::value`]).
    pub fn new(mode: JsonMode, v: &Value) -> Self {
        match mode {
            JsonMode::Native => JsonBind::Text(value::encode_native(v)),
            JsonMode::Blob => JsonBind::Bytes(value::encode_blob(v)),
        }
    }
}

impl ToSql for JsonBind {
    fn oratype(&self, _conn: &Connection) -> oracle::Result<OracleType> {
        Ok(match self {
            JsonBind::Text(_) | JsonBind::Null(JsonMode::Native) => OracleType::CLOB,
            JsonBind::Bytes(_) | JsonBind::Null(JsonMode::Blob) => OracleType::BLOB,
        })
    }
    fn to_sql(&self, val: &mut SqlValue) -> oracle::Result<()> {
        match self {
            JsonBind::Text(s) => s.as_str().to_sql(val),
            JsonBind::Bytes(b) => b.as_slice().to_sql(val),
            JsonBind::Null(_) => val.set_null(),
        }
    }
}

/// The bind values of one history row, in the order of [`Sql::insert_history`]: the
/// version's header and seals, no plaintext.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    id: String,
    contract_name: String,
    contract_version: i64,
    version: i64,
    parties: JsonBind,
    seals: JsonBind,
    root: String,
    prev_root: Option<String>,
    last_event: Option<String>,
    updated_at: i64,
}

impl HistoryRow {
    /// Converts a state version for `mode` (its data is not serialised).
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for a version beyond `NUMBER(19)`; the parties or seals
    /// failing to serialise.
    pub fn new(mode: JsonMode, s: &State) -> Result<Self, StoreError> {
        Ok(HistoryRow {
            id: s.id.0.clone(),
            contract_name: s.contract.name.clone(),
            contract_version: i64::from(s.contract.version),
            version: to_i64("state.version", s.version)?,
            parties: JsonBind::new(mode, &json_value("state.parties", &s.parties)?),
            seals: JsonBind::new(mode, &json_value("state.seals", &s.seals())?),
            root: s.root.to_string(),
            prev_root: s.prev_root.map(|r| r.to_string()),
            last_event: s.last_event.map(|e| e.to_string()),
            updated_at: s.updated_at.0,
        })
    }

    /// Binds 1–10 of [`Sql::insert_history`].
    pub fn params(&self) -> [&dyn ToSql; 10] {
        [
            &self.id,
            &self.contract_name,
            &self.contract_version,
            &self.version,
            &self.parties,
            &self.seals,
            &self.root,
            &self.prev_root,
            &self.last_event,
            &self.updated_at,
        ]
    }
}

/// The bind values of a current-state row's write: the header, and the data document or its
/// changed sections.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentBinds {
    id: String,
    contract_name: String,
    contract_version: i64,
    version: i64,
    /// The whole document ([`DataSql::Whole`], and inserts), or the values of the set
    /// sections ([`DataSql::Patch`]), in statement order.
    data: Vec<JsonBind>,
}

impl CurrentBinds {
    /// The binds of `state`'s current row written as `data` says (for an insert:
    /// [`DataSql::Whole`]). A set section without a value falls back to the whole document.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for a version beyond `NUMBER(19)`.
    pub fn new(
        mode: JsonMode,
        state: &State,
        data: DataSql,
    ) -> Result<(Self, DataSql), StoreError> {
        let set_values = match &data {
            DataSql::Patch { set, .. } => set
                .iter()
                .map(|p| {
                    let value = state.sections.get(p.name())?.value()?;
                    Some(JsonBind::new(mode, value))
                })
                .collect::<Option<Vec<_>>>(),
            DataSql::Keep => Some(Vec::new()),
            DataSql::Whole => None,
        };
        let (data, binds) = match set_values {
            Some(values) => (data, values),
            None => (DataSql::Whole, vec![JsonBind::new(mode, &state.data())]),
        };
        Ok((
            CurrentBinds {
                id: state.id.0.clone(),
                contract_name: state.contract.name.clone(),
                contract_version: i64::from(state.contract.version),
                version: to_i64("state.version", state.version)?,
                data: binds,
            },
            data,
        ))
    }

    /// Binds 1–5 of [`Sql::insert_state`] (built with [`DataSql::Whole`]).
    pub fn insert_params(&self) -> Vec<&dyn ToSql> {
        let mut out: Vec<&dyn ToSql> = vec![
            &self.id,
            &self.contract_name,
            &self.contract_version,
            &self.version,
        ];
        out.extend(self.data.iter().map(|d| d as &dyn ToSql));
        out
    }

    /// Binds of [`Sql::update_current`]: the header, the data binds, the id and the version
    /// `base` the row must still have.
    pub fn update_params<'a>(&'a self, base: &'a i64) -> Vec<&'a dyn ToSql> {
        let mut out: Vec<&dyn ToSql> =
            vec![&self.contract_name, &self.contract_version, &self.version];
        out.extend(self.data.iter().map(|d| d as &dyn ToSql));
        out.push(&self.id);
        out.push(base);
        out
    }
}

/// The bind values of one event row, in the order of [`Sql::insert_event`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    id: String,
    state_id: String,
    kind: &'static str,
    contract_name: String,
    contract_version: i64,
    actor: String,
    origin_node: String,
    origin_seq: i64,
    outcome: &'static str,
    reason: Option<&'static str>,
    reason_detail: JsonBind,
    new_version: Option<i64>,
    new_root: Option<String>,
    event: JsonBind,
    disclosures: JsonBind,
    receipt: JsonBind,
    business_events: JsonBind,
    endorsements: JsonBind,
}

impl EventRow {
    /// Converts the event of a commit item for `mode`: an applied event's disclosures name
    /// the section versions of its new state (`{salt, hash}`, keys of the section table)
    /// instead of carrying their values again ([`EventColumns::from_item`]).
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for numbers beyond `NUMBER(19)`.
    pub fn new(mode: JsonMode, item: &CommitItem) -> Result<Self, StoreError> {
        let c = EventColumns::from_item("", item)?;
        Ok(EventRow {
            id: c.id,
            state_id: c.state_id,
            kind: c.kind,
            contract_name: c.contract_name,
            contract_version: i64::from(c.contract_version),
            actor: c.actor,
            origin_node: c.origin_node,
            origin_seq: c.origin_seq,
            outcome: c.outcome,
            reason: c.reason,
            reason_detail: c
                .reason_detail
                .map_or(JsonBind::Null(mode), |v| JsonBind::new(mode, &v)),
            new_version: c.new_version,
            new_root: c.new_root,
            event: JsonBind::new(mode, &c.signed),
            disclosures: JsonBind::new(mode, &c.disclosures),
            receipt: c
                .receipt
                .map_or(JsonBind::Null(mode), |v| JsonBind::new(mode, &v)),
            business_events: c
                .business_events
                .map_or(JsonBind::Null(mode), |v| JsonBind::new(mode, &v)),
            endorsements: c
                .endorsements
                .map_or(JsonBind::Null(mode), |v| JsonBind::new(mode, &v)),
        })
    }

    /// Binds 1–18.
    pub fn params(&self) -> [&dyn ToSql; 18] {
        [
            &self.id,
            &self.state_id,
            &self.kind,
            &self.contract_name,
            &self.contract_version,
            &self.actor,
            &self.origin_node,
            &self.origin_seq,
            &self.outcome,
            &self.reason,
            &self.reason_detail,
            &self.new_version,
            &self.new_root,
            &self.event,
            &self.disclosures,
            &self.receipt,
            &self.business_events,
            &self.endorsements,
        ]
    }
}

/// The bind values of one refusal row, for [`Sql::insert_refusal`] and
/// [`Sql::update_refusal`].
#[derive(Debug, Clone, PartialEq)]
pub struct RefusalRow {
    event_id: String,
    state_id: String,
    version: i64,
    from_node: String,
    reason: &'static str,
    reason_detail: JsonBind,
    at: i64,
}

impl RefusalRow {
    /// Converts a refusal for `mode`: `reason` is the reason's code, `reason_detail` the
    /// whole reason.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for a version beyond `NUMBER(19)`.
    pub fn new(mode: JsonMode, r: &Refusal) -> Result<Self, StoreError> {
        Ok(RefusalRow {
            event_id: r.event.to_string(),
            state_id: r.state_id.0.clone(),
            version: to_i64("refusal.version", r.version)?,
            from_node: r.from_node.0.clone(),
            reason: r.reason.code(),
            reason_detail: JsonBind::new(mode, &json_value("refusal.reason", &r.reason)?),
            at: r.at.0,
        })
    }

    /// Binds 1–7 of [`Sql::insert_refusal`] (the event id first).
    pub fn params(&self) -> [&dyn ToSql; 7] {
        [
            &self.event_id,
            &self.state_id,
            &self.version,
            &self.from_node,
            &self.reason,
            &self.reason_detail,
            &self.at,
        ]
    }

    /// Binds 1–7 of [`Sql::update_refusal`] (the event id last).
    pub fn update_params(&self) -> [&dyn ToSql; 7] {
        let [event_id, rest @ ..] = self.params();
        let mut out = [event_id; 7];
        out[..6].copy_from_slice(&rest);
        out
    }
}

/// Reads JSON column `idx` of a row selected with [`JsonMode::read`].
fn json_at(mode: JsonMode, row: &Row, idx: usize, what: &str) -> Result<Option<Value>, StoreError> {
    let decoded = match mode {
        JsonMode::Native => row
            .get::<_, Option<String>>(idx)
            .map_err(|e| backend("read", e))?
            .map(|t| value::decode(&t)),
        JsonMode::Blob => row
            .get::<_, Option<Vec<u8>>>(idx)
            .map_err(|e| backend("read", e))?
            .map(|b| value::decode_bytes(&b)),
    };
    decoded
        .transpose()
        .map_err(|e| StoreError::malformed(what, e))
}

fn required(v: Option<Value>, what: &str, col: &str) -> Result<Value, StoreError> {
    v.ok_or_else(|| StoreError::malformed(what, format!("{col} is NULL")))
}

fn get<T: oracle::sql_type::FromSql>(row: &Row, idx: usize) -> Result<T, StoreError> {
    row.get(idx).map_err(|e| backend("read", e))
}

fn state_from_row(mode: JsonMode, row: &Row) -> Result<State, StoreError> {
    let id: String = get(row, 0)?;
    let version: i64 = get(row, 3)?;
    let what = format!("state {id} version {version}");
    let contract_version: i64 = get(row, 2)?;
    let parts = StateParts {
        id: StateId(id.clone()),
        contract: ContractRef::new(
            get::<String>(row, 1)?,
            u32::try_from(contract_version).map_err(|e| StoreError::malformed(&what, e))?,
        ),
        version: u64::try_from(version).map_err(|e| StoreError::malformed(&what, e))?,
        parties: required(json_at(mode, row, 4, &what)?, &what, "parties")?,
        seals: required(json_at(mode, row, 5, &what)?, &what, "seals")?,
        data: required(json_at(mode, row, 6, &what)?, &what, "data")?,
        root: get(row, 7)?,
        prev_root: get(row, 8)?,
        last_event: get(row, 9)?,
        updated_at: get(row, 10)?,
    };
    State::from_parts(parts).map_err(|source| StoreError::Integrity { what, source })
}

/// A row of [`Sql::state`]: the current row checked against the history row of its version
/// (selected after the state's columns), then read as [`state_from_row`].
fn current_state_from_row(mode: JsonMode, row: &Row) -> Result<State, StoreError> {
    let id: String = get(row, 0)?;
    let version: i64 = get(row, 3)?;
    let what = format!("state {id}");
    let Some(history_version) = get::<Option<i64>>(row, 11)? else {
        return Err(StoreError::malformed(
            what,
            format!("current row of {id} is at version {version}, which the history does not hold"),
        ));
    };
    let current: (String, i64) = (get(row, 1)?, get(row, 2)?);
    let history: (Option<String>, Option<i64>) = (get(row, 12)?, get(row, 13)?);
    if history_version != version
        || history.0.as_deref() != Some(current.0.as_str())
        || history.1 != Some(current.1)
    {
        return Err(StoreError::malformed(
            what,
            format!(
                "current row of {id} names contract {} v{} at version {version}, its history row \
                 {:?} v{:?} at version {history_version}",
                current.0, current.1, history.0, history.1
            ),
        ));
    }
    state_from_row(mode, row)
}

/// Reads one event row ([`Sql::select_events`] order) back, checking the derived columns
/// against the signed event; the disclosures are resolved by [`resolve_events`].
fn event_from_row(mode: JsonMode, row: &Row) -> Result<StoredEvent, StoreError> {
    let id: String = get(row, 0)?;
    let what = format!("event {id}");
    let bad = |e: serde_json::Error| StoreError::malformed(&what, e);
    let outcome: String = get(row, 1)?;
    let outcome = match outcome.as_str() {
        "applied" => Outcome::Applied {
            version: u64::try_from(get::<i64>(row, 2)?)
                .map_err(|e| StoreError::malformed(&what, e))?,
            root: get::<String>(row, 3)?
                .parse()
                .map_err(|e| StoreError::malformed(&what, e))?,
        },
        "rejected" => Outcome::Rejected {
            reason: serde_json::from_value(required(
                json_at(mode, row, 4, &what)?,
                &what,
                "reason_detail",
            )?)
            .map_err(bad)?,
        },
        other => return Err(StoreError::malformed(&what, format!("outcome {other:?}"))),
    };
    let disclosures = DisclosureColumn::parse(
        &what,
        required(json_at(mode, row, 6, &what)?, &what, "disclosures")?,
    )?;
    let record = EventRecord {
        signed: serde_json::from_value(required(json_at(mode, row, 5, &what)?, &what, "event")?)
            .map_err(bad)?,
        disclosures: BTreeMap::new(),
        outcome,
        receipt: receipt_from_column(&what, json_at(mode, row, 7, &what)?)?,
        business_events: business_events_from_column(&what, json_at(mode, row, 8, &what)?)?,
        endorsements: endorsements_from_column(&what, json_at(mode, row, 9, &what)?)?,
    };
    let derived = DerivedEventColumns {
        id,
        state_id: get(row, 10)?,
        kind: get(row, 11)?,
        contract_name: get(row, 12)?,
        contract_version: get(row, 13)?,
        actor: get(row, 14)?,
        origin_node: get(row, 15)?,
        origin_seq: get(row, 16)?,
        reason: get(row, 17)?,
    };
    EventColumns::check_derived(&record, &derived)?;
    Ok(StoredEvent {
        record,
        disclosures,
    })
}

/// The records of `events`, each section version their disclosures name read from the
/// section table: one [`Sql::section_values`] query per [`IN_LIST_MAX`] distinct versions,
/// none when every disclosure is inline (rejected events, rows written before event rows named
/// section versions). A named version that is not stored is an integrity error naming the
/// event ([`DisclosureColumn::resolve`]).
fn resolve_events(
    conn: &Connection,
    sql: &Sql,
    events: Vec<StoredEvent>,
    op: &'static str,
) -> Result<Vec<EventRecord>, StoreError> {
    let keys = section_keys(&events);
    let mut values: BTreeMap<SectionKey, Arc<Value>> = BTreeMap::new();
    for chunk in keys.chunks(IN_LIST_MAX) {
        let params: Vec<&dyn ToSql> = chunk
            .iter()
            .flat_map(|(state, name, hash)| [state as &dyn ToSql, name, hash])
            .collect();
        let rows = conn
            .query(&sql.section_values(chunk.len()), &params)
            .map_err(|e| backend(op, e))?;
        for row in rows {
            let row = row.map_err(|e| backend(op, e))?;
            let key: SectionKey = (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?);
            let what = format!("section version {} {} of state {}", key.1, key.2, key.0);
            let value = required(json_at(sql.mode, &row, 3, &what)?, &what, "value")?;
            values.insert(key, Arc::new(value));
        }
    }
    events
        .into_iter()
        .map(|e| e.resolve(|key| Ok(values.get(key).cloned())))
        .collect()
}

/// A log row selected with the log columns (pos, kind, subject, record, prev, hash).
fn log_entry_from_row(row: &Row) -> Result<LogEntry, StoreError> {
    LogEntry::from_columns(
        get(row, 0)?,
        &get::<String>(row, 1)?,
        get(row, 2)?,
        &get::<String>(row, 3)?,
        &get::<String>(row, 4)?,
        &get::<String>(row, 5)?,
    )
}

/// A checkpoint row (node, pos, head, at, signature).
fn checkpoint_from_row(row: &Row) -> Result<SignedCheckpoint, StoreError> {
    let node: String = get(row, 0)?;
    let pos: i64 = get(row, 1)?;
    let what = format!("checkpoint of node {node} at {pos}");
    Ok(SignedCheckpoint {
        checkpoint: Checkpoint {
            node: NodeId(node),
            pos: u64::try_from(pos).map_err(|e| StoreError::malformed(&what, e))?,
            head: get::<String>(row, 2)?
                .parse()
                .map_err(|e| StoreError::malformed(&what, format!("head: {e}")))?,
            at: Timestamp(get(row, 3)?),
        },
        signature: serde_json::from_value(Value::String(get(row, 4)?))
            .map_err(|e| StoreError::malformed(&what, format!("signature: {e}")))?,
    })
}

/// The log head on `conn` ([`LogHead::default`] for an empty log).
fn read_head(conn: &Connection, sql: &Sql, op: &'static str) -> Result<LogHead, TxError> {
    let rows = conn.query(&sql.log_head, &[]).map_err(tx_err(op))?;
    match rows.into_iter().next() {
        Some(row) => Ok(log_entry_from_row(&row.map_err(tx_err(op))?)?.head()),
        None => Ok(LogHead::default()),
    }
}

/// Inserts one log entry (uncommitted).
fn insert_log(conn: &Connection, sql: &Sql, op: &'static str, e: &LogEntry) -> Result<(), TxError> {
    let pos = to_i64("log.pos", e.pos)?;
    let (record, prev, hash) = (e.record.to_string(), e.prev.to_string(), e.hash.to_string());
    conn.execute(
        &sql.insert_log,
        &[&pos, &e.kind.as_str(), &e.subject, &record, &prev, &hash],
    )
    .map_err(tx_err(op))?;
    Ok(())
}

/// Reads the head and appends `record`'s entry after it (uncommitted).
fn append_log(
    conn: &Connection,
    sql: &Sql,
    op: &'static str,
    record: &LogRecord<'_>,
) -> Result<(), TxError> {
    let entry = read_head(conn, sql, op)?.append(record);
    insert_log(conn, sql, op, &entry)
}

/// Runs `attempt` as one transaction on `conn` and commits it: the one retry loop of every
/// write. An attempt that lost a race ([`TxError::Raced`]: a concurrent writer took the log
/// position or a key it planned, or a deadlock) is rolled back and re-run whole, reads and
/// plan included, up to [`RACE_RETRIES`] times.
fn transact<T>(
    conn: &Connection,
    op: &'static str,
    mut attempt: impl FnMut() -> Result<T, TxError>,
) -> Result<T, StoreError> {
    let mut retries = 0;
    loop {
        let err = match attempt() {
            Ok(v) => {
                conn.commit().map_err(|e| backend(op, e))?;
                return Ok(v);
            }
            Err(e) => e,
        };
        // The error is the news; a failed rollback ends the session, which rolls back too.
        if let Err(rb) = conn.rollback() {
            tracing::warn!(backend = NAME, operation = op, error = %rb, "rollback after a failed write failed");
        }
        match err {
            TxError::Raced(_) if retries < RACE_RETRIES => retries += 1,
            TxError::Raced(e) | TxError::Failed(e) => return Err(e),
        }
    }
}

/// An SST store in an Oracle schema.
#[derive(Clone)]
pub struct OracleStore {
    pool: Arc<Pool>,
    sql: Arc<Sql>,
}

impl std::fmt::Debug for OracleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OracleStore")
            .field("mode", &self.sql.mode)
            .finish_non_exhaustive()
    }
}

impl OracleStore {
    /// Loads the Oracle Client library, opens a connection pool and resolves the JSON column
    /// type (native `JSON` from 21c on, `BLOB … IS JSON` before, unless configured). Call
    /// [`Store::migrate`] once to create the tables.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for bad table names; [`StoreError::Backend`] when the
    /// client library is missing (DPI-1047, see
    /// [`store_error_is_client_missing`](crate::store_error_is_client_missing)) or the
    /// server refuses the connection.
    pub async fn open(config: OracleConfig) -> Result<Self, StoreError> {
        config.validate()?;
        blocking("open", move || {
            let pool = PoolBuilder::new(
                config.username.as_str(),
                config.password.as_str(),
                config.connect_string.as_str(),
            )
            .max_connections(config.max_connections)
            .build()
            .map_err(|e| backend("open", e))?;
            let mode = match config.json {
                JsonColumn::Native => JsonMode::Native,
                JsonColumn::Blob => JsonMode::Blob,
                _ => {
                    let conn = pool.get().map_err(|e| backend("open", e))?;
                    let (version, _) = conn.server_version().map_err(|e| backend("open", e))?;
                    JsonMode::for_server(version.major())
                }
            };
            Ok(OracleStore {
                pool: Arc::new(pool),
                sql: Arc::new(Sql::new(&config.tables, mode)),
            })
        })
        .await
    }

    /// The JSON column type in use.
    pub fn json_mode(&self) -> JsonMode {
        self.sql.mode
    }

    /// Runs `f` on a pooled connection on the blocking pool.
    async fn with_conn<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Sql) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = Arc::clone(&self.pool);
        let sql = Arc::clone(&self.sql);
        blocking(op, move || {
            let conn = pool.get().map_err(|e| backend(op, e))?;
            f(&conn, &sql)
        })
        .await
    }

    /// Runs `attempt` in [`transact`]'s retry loop on a pooled connection.
    async fn write<T, F>(&self, op: &'static str, mut attempt: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection, &Sql) -> Result<T, TxError> + Send + 'static,
    {
        self.with_conn(op, move |conn, sql| {
            transact(conn, op, || attempt(conn, sql))
        })
        .await
    }
}

/// Reads what is recorded about `batch` on `conn` ([`Lookups`]): one statement per kind of
/// lookup (per [`IN_LIST_MAX`] keys), with the touched current rows locked.
fn read_recorded(conn: &Connection, sql: &Sql, batch: &CommitBatch) -> Result<Recorded, TxError> {
    let op = "commit";
    let be = tx_err(op);
    let lookups = Lookups::of(batch);
    let mut recorded = Recorded::default();
    for chunk in lookups.states.chunks(IN_LIST_MAX) {
        let ids: Vec<&str> = chunk.iter().map(StateId::as_str).collect();
        let params: Vec<&dyn ToSql> = ids.iter().map(|i| i as &dyn ToSql).collect();
        for row in conn
            .query(&sql.lock_states(ids.len()), &params)
            .map_err(&be)?
        {
            let row = row.map_err(&be)?;
            let id = StateId(get::<String>(&row, 0)?);
            let what = format!("state {id}");
            let version =
                u64::try_from(get::<i64>(&row, 1)?).map_err(|e| StoreError::malformed(&what, e))?;
            // Seals that do not parse (or no history row) leave the state out of
            // `recorded.seals`: the plan then writes it in full.
            let seals = json_at(sql.mode, &row, 2, &what)
                .ok()
                .flatten()
                .and_then(|v| serde_json::from_value::<BTreeMap<String, SectionSeal>>(v).ok());
            if let Some(seals) = seals {
                recorded.seals.insert(id.clone(), seals);
            }
            recorded.versions.insert(id, version);
        }
    }
    let ids: BTreeMap<String, EventId> = lookups
        .events
        .iter()
        .map(|id| (id.to_string(), *id))
        .collect();
    let keys: Vec<&String> = ids.keys().collect();
    for chunk in keys.chunks(IN_LIST_MAX) {
        let params: Vec<&dyn ToSql> = chunk.iter().map(|k| *k as &dyn ToSql).collect();
        for row in conn
            .query_as::<String>(&sql.known_events(chunk.len()), &params)
            .map_err(&be)?
        {
            if let Some(id) = ids.get(&row.map_err(&be)?) {
                recorded.events.insert(*id);
            }
        }
    }
    let origins = lookups
        .origins
        .iter()
        .map(|(node, seq)| Ok((node.as_str(), to_i64("event.origin_seq", seq.0)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    for chunk in origins.chunks(IN_LIST_MAX) {
        let params: Vec<&dyn ToSql> = chunk
            .iter()
            .flat_map(|(node, seq)| [node as &dyn ToSql, seq as &dyn ToSql])
            .collect();
        for row in conn
            .query_as::<(String, i64, String)>(&sql.origin_owners(chunk.len()), &params)
            .map_err(&be)?
        {
            let (node, seq, id) = row.map_err(&be)?;
            let what = || format!("event {id}");
            let seq = u64::try_from(seq).map_err(|e| StoreError::malformed(what(), e))?;
            let owner = id
                .parse::<EventId>()
                .map_err(|e| StoreError::malformed(what(), e))?;
            recorded
                .origins
                .insert((NodeId(node), OriginSeq(seq)), owner);
        }
    }
    // Last, after the locks: the head a concurrent writer of the same states left.
    recorded.log_head = read_head(conn, sql, op)?;
    Ok(recorded)
}

/// Inserts a section version unless its key is stored (uncommitted). A concurrent commit
/// that inserted the same key first is a lost race: the next attempt finds it stored.
fn merge_section(
    conn: &Connection,
    sql: &Sql,
    op: &'static str,
    state: &str,
    name: &str,
    hash: &str,
    value: &Value,
) -> Result<(), TxError> {
    let value = JsonBind::new(sql.mode, value);
    conn.execute(&sql.merge_section, &[&state, &name, &hash, &value])
        .map_err(|e| {
            raced_or(op, e, || StoreError::Backend {
                backend: NAME,
                operation: op,
                retryable: true,
                source: format!("concurrent writers kept storing section {name} of {state}").into(),
            })
        })?;
    Ok(())
}

/// One attempt at `batch` (its history and event rows prepared in batch order) on `conn`:
/// reads what is recorded (the current versions with their seals) and the log head, lets the
/// core plan, writes the plan (history and event rows, the new section versions, the current
/// rows, patched where only some sections changed) and its log entries. [`transact`] commits,
/// or rolls back and re-runs a lost race.
fn commit_rows(
    conn: &Connection,
    sql: &Sql,
    batch: &CommitBatch,
    rows: &[(EventRow, Option<HistoryRow>)],
) -> Result<CommitReceipt, TxError> {
    let op = "commit";
    let be = tx_err(op);
    let recorded = read_recorded(conn, sql, batch)?;
    let plan = CommitPlan::new(batch, &recorded)?;
    // ORA-00001 from here on is a race the plan could not see (a writer that committed
    // after the read): the attempt is re-run, and once the retries are spent the violated
    // key names the rule.
    for &i in &plan.record {
        let (ev, history) = &rows[i];
        if let Some(h) = history {
            conn.execute(&sql.insert_history, &h.params())
                .map_err(|e| {
                    raced_or(op, e, || {
                        let v = h.version.unsigned_abs();
                        StoreError::stale_version(&StateId(h.id.clone()), v - 1, v)
                    })
                })?;
        }
        conn.execute(&sql.insert_event, &ev.params()).map_err(|e| {
            raced_or(op, e, || {
                let o = batch.items[i].event.event();
                StoreError::origin_taken(&o.origin_node, o.origin_seq)
            })
        })?;
    }
    for section in plan.section_versions(batch) {
        merge_section(
            conn,
            sql,
            op,
            section.state.as_str(),
            section.name,
            &section.hash.to_string(),
            section.value,
        )?;
    }
    for row in &plan.current {
        let Some(state) = batch.items[row.item].state.as_deref() else {
            continue;
        };
        let id = || state.id.clone();
        match row.write {
            CurrentWrite::Insert => {
                let (binds, _) = CurrentBinds::new(sql.mode, state, DataSql::Whole)?;
                conn.execute(&sql.insert_state, &binds.insert_params())
                    .map_err(|e| raced_or(op, e, || StoreError::stale_version(&id(), 0, 1)))?;
            }
            CurrentWrite::Update { from } => {
                let base = to_i64("state.version", from)?;
                let wanted = DataSql::for_write(sql.mode, &row.data);
                let (binds, data) = CurrentBinds::new(sql.mode, state, wanted)?;
                let updated = conn
                    .execute(&sql.update_current(&data), &binds.update_params(&base))
                    .and_then(|stmt| stmt.row_count())
                    .map_err(&be)?;
                if updated != 1 {
                    // The version guard failed: report what the row holds now.
                    let found: i64 = conn
                        .query_row_as(&sql.lock_state, &[&state.id.as_str()])
                        .map_err(&be)?;
                    return Err(StoreError::stale_version(&id(), from, found.unsigned_abs()).into());
                }
            }
        }
    }
    for entry in &plan.log {
        insert_log(conn, sql, op, entry)?;
    }
    Ok(plan.receipt())
}

/// History rows copied into the section table per commit of [`LayoutStep::CopySections`].
const COPY_BATCH: usize = 500;

/// Calls `each` with the state id, version and section versions ([`first_layout_sections`])
/// of every first-layout history row, in no particular order.
fn for_each_first_layout_row(
    conn: &Connection,
    sql: &Sql,
    mut each: impl FnMut(&str, i64, Vec<(String, String, Value)>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let op = "migrate";
    let rows = conn
        .query(&sql.first_layout_history, &[])
        .map_err(|e| backend(op, e))?;
    for row in rows {
        let row = row.map_err(|e| backend(op, e))?;
        let id: String = get(&row, 0)?;
        let version: i64 = get(&row, 1)?;
        let what = format!("state {id} version {version}");
        let seals = required(json_at(sql.mode, &row, 2, &what)?, &what, "seals")?;
        let data = required(json_at(sql.mode, &row, 3, &what)?, &what, "data")?;
        each(&id, version, first_layout_sections(&what, &seals, &data)?)?;
    }
    Ok(())
}

/// Refuses the upgrade of the first layout, before `migrate` changes anything, when two
/// history rows hold one section version (same state, name and hash) with different values:
/// the section table stores it once, so keeping either would hide the other from `verify`.
fn check_first_layout_copies(conn: &Connection, sql: &Sql) -> Result<(), StoreError> {
    let mut copies = FirstLayoutCopies::default();
    for_each_first_layout_row(conn, sql, |id, version, sections| {
        copies.add(id, version, &sections)
    })
}

/// The section versions of the first-layout history rows read so far, by state, name and
/// hash: a digest of the value's canonical JSON and the version it was first read in.
#[derive(Debug, Default)]
struct FirstLayoutCopies(BTreeMap<(String, String, String), (Digest, i64)>);

impl FirstLayoutCopies {
    /// Adds the section versions history row `version` of state `id` holds.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] naming the state, both versions and the section when one
    /// was read before with another value.
    fn add(
        &mut self,
        id: &str,
        version: i64,
        sections: &[(String, String, Value)],
    ) -> Result<(), StoreError> {
        for (name, hash, value) in sections {
            let digest = hash_parts(
                HashAlg::Sha256,
                Domain::Envelope,
                &[&canonical::to_vec(value)],
            );
            let key = (id.to_owned(), name.clone(), hash.clone());
            match self.0.get(&key) {
                None => {
                    self.0.insert(key, (digest, version));
                }
                Some((held, first)) if *held != digest => {
                    return Err(sst_core::raw::first_layout_disagreement(
                        id,
                        name,
                        first.unsigned_abs(),
                        version.unsigned_abs(),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// [`LayoutStep::CopySections`]: a section row for every salted seal of every first-layout
/// history row, with the value that row's `data` holds under the section's name, skipping keys
/// already stored (the copies agree: [`check_first_layout_copies`] ran first); committed every
/// [`COPY_BATCH`] history rows, so a re-run after a crash goes on where it stopped.
fn copy_first_layout_sections(conn: &Connection, sql: &Sql) -> Result<(), StoreError> {
    let op = "migrate";
    let mut pending = 0;
    for_each_first_layout_row(conn, sql, |id, _, sections| {
        for (name, hash, value) in sections {
            merge_section(conn, sql, op, id, &name, &hash, &value).map_err(|e| match e {
                TxError::Raced(e) | TxError::Failed(e) => e,
            })?;
        }
        pending += 1;
        if pending == COPY_BATCH {
            conn.commit().map_err(|e| backend(op, e))?;
            pending = 0;
        }
        Ok(())
    })?;
    conn.commit().map_err(|e| backend(op, e))
}

/// The section versions a first-layout history row holds: `(name, hash, value)` per seal with
/// a salt, the value taken from the row's data document.
///
/// # Errors
/// [`StoreError::Integrity`] when the seals do not parse or a salted section has no value.
pub fn first_layout_sections(
    what: &str,
    seals: &Value,
    data: &Value,
) -> Result<Vec<(String, String, Value)>, StoreError> {
    let seals: BTreeMap<String, SectionSeal> = serde_json::from_value(seals.clone())
        .map_err(|e| StoreError::malformed(what, format!("seals: {e}")))?;
    seals
        .into_iter()
        .filter(|(_, seal)| seal.salt.is_some())
        .map(|(name, seal)| {
            let value = data.get(&name).cloned().ok_or_else(|| {
                StoreError::malformed(what, format!("section `{name}` has a salt but no value"))
            })?;
            Ok((name, seal.hash.to_string(), value))
        })
        .collect()
}

/// The identity recorded for `contract`, if any.
fn stored_identity(
    conn: &Connection,
    sql: &Sql,
    contract: &ContractRef,
) -> Result<Option<Digest>, StoreError> {
    let version = i64::from(contract.version);
    match conn.query_row_as::<String>(&sql.contract_identity, &[&contract.name, &version]) {
        Ok(text) => text
            .parse::<Digest>()
            .map(Some)
            .map_err(|e| StoreError::malformed(format!("contract {contract} identity"), e)),
        Err(e) if e.kind() == oracle::ErrorKind::NoDataFound => Ok(None),
        Err(e) => Err(backend("put_contract", e)),
    }
}

#[async_trait]
impl Store for OracleStore {
    fn backend(&self) -> &'static str {
        NAME
    }

    /// Refuses (with [`StoreError::Schema`]) an existing table that carries a peer table's
    /// name but lacks a column SST needs, before any table is created; and (with
    /// [`StoreError::Integrity`]) state tables of the first layout whose history holds one
    /// section version with two values, before anything is changed.
    async fn migrate(&self) -> Result<(), StoreError> {
        self.with_conn("migrate", |conn, sql| {
            let names: Vec<String> = required_columns(&sql.tables)
                .iter()
                .map(|(t, _)| t.to_uppercase())
                .collect();
            let params: Vec<&dyn ToSql> = names.iter().map(|n| n as &dyn ToSql).collect();
            let present = conn
                .query_as::<(String, String)>(&sql.peer_columns, &params)
                .map_err(|e| backend("migrate", e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| backend("migrate", e))?;
            check_peer_columns(&sql.tables, &present)?;
            let upgrade = layout_upgrade(&sql.tables, &present);
            // Oracle DDL commits at once: a first layout holding one section version with two
            // values is refused before any statement runs, so nothing is changed.
            if upgrade.contains(&LayoutStep::CopySections) {
                check_first_layout_copies(conn, sql)?;
            }
            // An event table of an older layout gains the columns added since.
            for alter in upgrade_ddl(&sql.tables, sql.mode, &present) {
                conn.execute(&alter, &[])
                    .map_err(|e| backend("migrate", e))?;
            }
            for ddl in &sql.ddl {
                conn.execute(ddl, &[]).map_err(|e| backend("migrate", e))?;
            }
            // State tables of the first layout are upgraded in place.
            for step in upgrade {
                match step {
                    LayoutStep::Run(ddl) => {
                        conn.execute(&ddl, &[]).map_err(|e| backend("migrate", e))?;
                    }
                    LayoutStep::CopySections => copy_first_layout_sections(conn, sql)?,
                }
            }
            conn.execute(&sql.versions_view, &[])
                .map_err(|e| backend("migrate", e))?;
            Ok(())
        })
        .await
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReceipt, StoreError> {
        batch.validate()?;
        let mode = self.sql.mode;
        let rows = batch
            .items
            .iter()
            .map(|item: &CommitItem| {
                Ok((
                    EventRow::new(mode, item)?,
                    item.state
                        .as_ref()
                        .map(|s| HistoryRow::new(mode, s))
                        .transpose()?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write("commit", move |conn, sql| {
            commit_rows(conn, sql, &batch, &rows)
        })
        .await
    }

    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError> {
        let id = id.0.clone();
        self.with_conn("state", move |conn, sql| {
            let rows = conn
                .query(&sql.state, &[&id])
                .map_err(|e| backend("state", e))?;
            match rows.into_iter().next() {
                Some(row) => Ok(Some(current_state_from_row(
                    sql.mode,
                    &row.map_err(|e| backend("state", e))?,
                )?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn state_at(&self, id: &StateId, version: u64) -> Result<Option<State>, StoreError> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        let id = id.0.clone();
        self.with_conn("state_at", move |conn, sql| {
            let rows = conn
                .query(&sql.state_at, &[&id, &v])
                .map_err(|e| backend("state_at", e))?;
            match rows.into_iter().next() {
                Some(row) => Ok(Some(state_from_row(
                    sql.mode,
                    &row.map_err(|e| backend("state_at", e))?,
                )?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn state_ids(&self) -> Result<Vec<StateId>, StoreError> {
        self.with_conn("state_ids", |conn, sql| {
            let rows = conn
                .query_as::<String>(&sql.state_ids, &[])
                .map_err(|e| backend("state_ids", e))?;
            let mut ids = rows
                .map(|r| r.map(StateId).map_err(|e| backend("state_ids", e)))
                .collect::<Result<Vec<_>, _>>()?;
            ids.sort();
            Ok(ids)
        })
        .await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let mut conds: Vec<&'static str> = Vec::new();
        let mut params: Vec<Box<dyn ToSql + Send>> = Vec::new();
        if let Some(s) = &filter.state_id {
            conds.push("state_id =");
            params.push(Box::new(s.0.clone()));
        }
        if let Some(a) = &filter.actor {
            conds.push("actor =");
            params.push(Box::new(a.0.clone()));
        }
        if let Some(n) = &filter.origin_node {
            conds.push("origin_node =");
            params.push(Box::new(n.0.clone()));
        }
        if let Some(s) = filter.after_origin_seq {
            let Ok(s) = i64::try_from(s.0) else {
                return Ok(Vec::new());
            };
            conds.push("origin_seq >");
            params.push(Box::new(s));
        }
        if let Some(o) = filter.outcome {
            conds.push("outcome =");
            params.push(Box::new(o.as_str()));
        }
        if let Some(k) = filter.kind {
            conds.push("kind =");
            params.push(Box::new(k.as_str()));
        }
        let limit = filter.limit;
        self.with_conn("events", move |conn, sql| {
            let text = sql.events(&conds, limit);
            let refs: Vec<&dyn ToSql> = params.iter().map(|p| p.as_ref() as &dyn ToSql).collect();
            let rows = conn.query(&text, &refs).map_err(|e| backend("events", e))?;
            let events = rows
                .map(|r| event_from_row(sql.mode, &r.map_err(|e| backend("events", e))?))
                .collect::<Result<Vec<_>, _>>()?;
            resolve_events(conn, sql, events, "events")
        })
        .await
    }

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let id = id.to_string();
        self.with_conn("event", move |conn, sql| {
            let text = format!("{} WHERE id = :1", sql.select_events);
            let rows = conn.query(&text, &[&id]).map_err(|e| backend("event", e))?;
            let Some(row) = rows.into_iter().next() else {
                return Ok(None);
            };
            let event = event_from_row(sql.mode, &row.map_err(|e| backend("event", e))?)?;
            Ok(resolve_events(conn, sql, vec![event], "event")?.pop())
        })
        .await
    }

    async fn last_origin_seq(&self, node: &NodeId) -> Result<OriginSeq, StoreError> {
        let node = node.0.clone();
        self.with_conn("last_origin_seq", move |conn, sql| {
            let seq: i64 = conn
                .query_row_as(&sql.last_origin_seq, &[&node])
                .map_err(|e| backend("last_origin_seq", e))?;
            Ok(OriginSeq(u64::try_from(seq).unwrap_or(0)))
        })
        .await
    }

    async fn put_actor(&self, actor: &Actor) -> Result<(), StoreError> {
        let key = match json_value("actor.public_key", &actor.public_key)? {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let (id, node, status) = (
            actor.id.0.clone(),
            actor.node.0.clone(),
            actor.status.as_str(),
        );
        let actor = actor.clone();
        let op = "put_actor";
        self.write(op, move |conn, sql| {
            conn.execute(&sql.put_actor, &[&id, &node, &key, &status])
                .map_err(tx_err(op))?;
            append_log(conn, sql, op, &LogRecord::Actor(&actor))
        })
        .await
    }

    async fn actor(&self, id: &ActorId) -> Result<Option<Actor>, StoreError> {
        let id = id.0.clone();
        self.with_conn("actor", move |conn, sql| {
            let rows = conn
                .query(&sql.actor, &[&id])
                .map_err(|e| backend("actor", e))?;
            match rows.into_iter().next() {
                Some(row) => Ok(Some(actor_from_row(
                    &row.map_err(|e| backend("actor", e))?,
                )?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn actors(&self) -> Result<Vec<Actor>, StoreError> {
        self.with_conn("actors", |conn, sql| {
            let rows = conn
                .query(&sql.actors, &[])
                .map_err(|e| backend("actors", e))?;
            let mut out = rows
                .map(|r| actor_from_row(&r.map_err(|e| backend("actors", e))?))
                .collect::<Result<Vec<_>, _>>()?;
            out.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(out)
        })
        .await
    }

    async fn put_contract(&self, contract: &ContractRecord) -> Result<(), StoreError> {
        let op = "put_contract";
        let record = JsonBind::new(self.sql.mode, &json_value("contract", contract)?);
        let contract = contract.clone();
        self.write(op, move |conn, sql| {
            let key = contract.contract();
            let stored = stored_identity(conn, sql, key)?;
            if ContractPut::decide(stored.as_ref(), &contract)? == ContractPut::AlreadyRecorded {
                return Ok(());
            }
            let version = i64::from(key.version);
            let identity = contract.identity.to_string();
            // A concurrent put got there first: the next attempt decides against what it
            // recorded.
            conn.execute(
                &sql.insert_contract,
                &[&key.name, &version, &identity, &record],
            )
            .map_err(|e| {
                raced_or(op, e, || {
                    StoreError::contract_identity(key, "(concurrent)", contract.identity)
                })
            })?;
            append_log(conn, sql, op, &LogRecord::Contract(&contract))
        })
        .await
    }

    /// One row per refused event (primary key `event_id`), replaced when the event is refused
    /// again: `reason` holds the reason's code, `reason_detail` the whole reason.
    async fn put_refusal(&self, refusal: &Refusal) -> Result<(), StoreError> {
        let op = "put_refusal";
        check_refusal(refusal)?;
        let row = RefusalRow::new(self.sql.mode, refusal)?;
        let refusal = refusal.clone();
        self.write(op, move |conn, sql| {
            upsert_refusal(conn, sql, &row)?;
            append_log(conn, sql, op, &LogRecord::Refusal(&refusal))
        })
        .await
    }

    async fn refusals(&self, state: Option<&StateId>) -> Result<Vec<Refusal>, StoreError> {
        let op = "refusals";
        let state = state.map(|s| s.0.clone());
        self.with_conn(op, move |conn, sql| {
            let rows = match &state {
                Some(s) => conn.query(&sql.state_refusals, &[s]),
                None => conn.query(&sql.refusals, &[]),
            }
            .map_err(|e| backend(op, e))?;
            let mut out = rows
                .map(|r| refusal_from_row(sql.mode, &r.map_err(|e| backend(op, e))?))
                .collect::<Result<Vec<_>, _>>()?;
            // ORDER BY follows NLS_SORT; the contract's order is the binary one.
            out.sort_by(|a, b| {
                (&a.state_id, a.version, a.event).cmp(&(&b.state_id, b.version, b.event))
            });
            Ok(out)
        })
        .await
    }

    async fn clear_refusal(&self, event: &EventId) -> Result<(), StoreError> {
        let op = "clear_refusal";
        let (id, event) = (*event, event.to_string());
        self.write(op, move |conn, sql| {
            let deleted = conn
                .execute(&sql.delete_refusal, &[&event])
                .and_then(|stmt| stmt.row_count())
                .map_err(tx_err(op))?;
            if deleted == 0 {
                return Ok(());
            }
            append_log(conn, sql, op, &LogRecord::RefusalCleared(&id))
        })
        .await
    }

    async fn contract(&self, contract: &ContractRef) -> Result<Option<ContractRecord>, StoreError> {
        let (name, version) = (contract.name.clone(), i64::from(contract.version));
        self.with_conn("contract", move |conn, sql| {
            let rows = conn
                .query(&sql.contract, &[&name, &version])
                .map_err(|e| backend("contract", e))?;
            match rows.into_iter().next() {
                Some(row) => Ok(Some(contract_from_row(
                    sql.mode,
                    &row.map_err(|e| backend("contract", e))?,
                )?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        self.with_conn("contracts", |conn, sql| {
            let rows = conn
                .query(&sql.contracts, &[])
                .map_err(|e| backend("contracts", e))?;
            let mut out = rows
                .map(|r| contract_from_row(sql.mode, &r.map_err(|e| backend("contracts", e))?))
                .collect::<Result<Vec<_>, _>>()?;
            out.sort_by(|a, b| a.contract().cmp(b.contract()));
            Ok(out)
        })
        .await
    }

    async fn log(&self, after: u64, limit: Option<usize>) -> Result<Vec<LogEntry>, StoreError> {
        let op = "log";
        // Positions fit NUMBER(19) as signed 64-bit: none lies past `i64::MAX`.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        self.with_conn(op, move |conn, sql| {
            let rows = conn
                .query(&sql.log_after(limit), &[&after])
                .map_err(|e| backend(op, e))?;
            rows.map(|r| log_entry_from_row(&r.map_err(|e| backend(op, e))?))
                .collect()
        })
        .await
    }

    async fn log_head(&self) -> Result<LogHead, StoreError> {
        let op = "log_head";
        self.with_conn(op, move |conn, sql| {
            read_head(conn, sql, op).map_err(|e| match e {
                TxError::Raced(e) | TxError::Failed(e) => e,
            })
        })
        .await
    }

    async fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let op = "put_checkpoint";
        let cp = checkpoint.checkpoint.clone();
        let pos = to_i64("checkpoint.pos", cp.pos)?;
        let signature = match json_value("checkpoint.signature", &checkpoint.signature)? {
            Value::String(s) => s,
            other => other.to_string(),
        };
        self.with_conn(op, move |conn, sql| {
            let (node, head) = (cp.node.0.clone(), cp.head.to_string());
            match conn.execute(
                &sql.insert_checkpoint,
                &[&node, &pos, &head, &cp.at.0, &signature],
            ) {
                Ok(_) => return conn.commit().map_err(|e| backend(op, e)),
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(backend(op, e)),
            }
            // Already recorded at this position: the same head is the same statement.
            let held: String = conn
                .query_row_as(&sql.checkpoint_head, &[&node, &pos])
                .map_err(|e| backend(op, e))?;
            if held == head {
                Ok(())
            } else {
                Err(StoreError::checkpoint_conflict(&cp.node, cp.pos))
            }
        })
        .await
    }

    async fn checkpoints(&self, node: &NodeId) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let op = "checkpoints";
        let node = node.0.clone();
        self.with_conn(op, move |conn, sql| {
            let rows = conn
                .query(&sql.checkpoints, &[&node])
                .map_err(|e| backend(op, e))?;
            rows.map(|r| checkpoint_from_row(&r.map_err(|e| backend(op, e))?))
                .collect()
        })
        .await
    }

    async fn prune_checkpoints(&self, node: &NodeId, keep: usize) -> Result<usize, StoreError> {
        let op = "prune_checkpoints";
        check_prune_keep(keep)?;
        let node = node.0.clone();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.with_conn(op, move |conn, sql| {
            let cut = match conn.query_row_as::<i64>(&sql.checkpoint_cut, &[&node, &keep]) {
                Ok(cut) => cut,
                Err(e) if e.kind() == oracle::ErrorKind::NoDataFound => return Ok(0),
                Err(e) => return Err(backend(op, e)),
            };
            let deleted = conn
                .execute(&sql.prune_checkpoints, &[&node, &cut])
                .map_err(|e| backend(op, e))?
                .row_count()
                .map_err(|e| backend(op, e))?;
            conn.commit().map_err(|e| backend(op, e))?;
            Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
        })
        .await
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        let op = "sink_cursor";
        check_sink_name(sink)?;
        let sink = sink.to_owned();
        self.with_conn(op, move |conn, sql| {
            match conn.query_row_as::<i64>(&sql.sink_cursor, &[&sink]) {
                Ok(pos) => u64::try_from(pos)
                    .map(Some)
                    .map_err(|e| StoreError::malformed(format!("cursor of sink {sink}"), e)),
                Err(e) if e.kind() == oracle::ErrorKind::NoDataFound => Ok(None),
                Err(e) => Err(backend(op, e)),
            }
        })
        .await
    }

    async fn set_sink_cursor(&self, sink: &str, position: u64) -> Result<(), StoreError> {
        let op = "set_sink_cursor";
        check_sink_name(sink)?;
        let pos = to_i64("position", position)?;
        let sink = sink.to_owned();
        self.with_conn(op, move |conn, sql| {
            // Two first MERGEs of one sink may both insert: the loser merges again.
            for _ in 0..=RACE_RETRIES {
                match conn.execute(&sql.set_sink_cursor, &[&sink, &pos]) {
                    Ok(_) => return conn.commit().map_err(|e| backend(op, e)),
                    Err(e) if is_unique_violation(&e) => {}
                    Err(e) => return Err(backend(op, e)),
                }
            }
            Err(StoreError::Backend {
                backend: NAME,
                operation: op,
                retryable: true,
                source: format!("sink {sink}: every MERGE lost a race to insert").into(),
            })
        })
        .await
    }
}

fn actor_from_row(row: &Row) -> Result<Actor, StoreError> {
    let id: String = get(row, 0)?;
    let what = format!("actor {id}");
    let v = serde_json::json!({
        "id": id,
        "node": get::<String>(row, 1)?,
        "public_key": get::<String>(row, 2)?,
        "status": get::<String>(row, 3)?,
    });
    serde_json::from_value(v).map_err(|e| StoreError::malformed(&what, e))
}

fn refusal_from_row(mode: JsonMode, row: &Row) -> Result<Refusal, StoreError> {
    let event: String = get(row, 0)?;
    let what = format!("refusal of event {event}");
    let reason = required(json_at(mode, row, 4, &what)?, &what, "reason_detail")?;
    Ok(Refusal {
        event: event.parse().map_err(|e| StoreError::malformed(&what, e))?,
        state_id: StateId(get(row, 1)?),
        version: u64::try_from(get::<i64>(row, 2)?).map_err(|e| StoreError::malformed(&what, e))?,
        from_node: NodeId(get(row, 3)?),
        reason: serde_json::from_value(reason)
            .map_err(|e| StoreError::malformed(&what, format!("reason_detail: {e}")))?,
        at: Timestamp(get(row, 5)?),
    })
}

/// Replaces the refusal of `row`'s event, or inserts it (uncommitted). A concurrent put that
/// inserted the same event first is a lost race: the next attempt replaces what it wrote.
fn upsert_refusal(conn: &Connection, sql: &Sql, row: &RefusalRow) -> Result<(), TxError> {
    let op = "put_refusal";
    let updated = conn
        .execute(&sql.update_refusal, &row.update_params())
        .and_then(|stmt| stmt.row_count())
        .map_err(tx_err(op))?;
    if updated == 0 {
        conn.execute(&sql.insert_refusal, &row.params())
            .map_err(tx_err(op))?;
    }
    Ok(())
}

fn contract_from_row(mode: JsonMode, row: &Row) -> Result<ContractRecord, StoreError> {
    let v = required(json_at(mode, row, 0, "contract")?, "contract", "record")?;
    serde_json::from_value(v).map_err(|e| StoreError::malformed("contract", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use conformance_tests::fixtures::{actor, create, rejected, state_id, values};
    use serde_json::json;
    use sst_core::raw::DataWrite;
    use sst_core::{IntegrityError, Parties, RejectReason};

    #[test]
    fn state_rows_carry_every_column_in_bind_order() {
        let (alice, key) = actor("acme", "alice");
        let id = state_id("deal");
        let item = create(
            &id,
            Parties::default().with("buyer", "acme/alice"),
            values([("price", json!({"amount": 1e300, "n": 3}))]),
            (&alice, &key),
            7,
        );
        let state = item.state.clone().expect("state");
        let row = HistoryRow::new(JsonMode::Native, &state).expect("row");
        assert_eq!(row.params().len(), 10);
        assert_eq!(row.id, id.0);
        assert_eq!(row.version, 1);
        match &row.seals {
            JsonBind::Text(t) => assert_eq!(
                value::decode(t).expect("seals"),
                serde_json::to_value(state.seals()).expect("json")
            ),
            other => panic!("{other:?}"),
        }
        let (current, data) =
            CurrentBinds::new(JsonMode::Native, &state, DataSql::Whole).expect("binds");
        assert_eq!(data, DataSql::Whole);
        assert_eq!(current.insert_params().len(), 5);
        let base = 6_i64;
        let update = current.update_params(&base);
        let at = |p: &dyn ToSql| p as *const dyn ToSql as *const u8;
        assert_eq!(
            at(update[0]),
            at(&current.contract_name),
            "SET contract_name = :1"
        );
        assert_eq!(at(update[3]), at(&current.data[0]), "data = :4");
        assert_eq!(at(update[4]), at(&current.id), "WHERE id = :5");
        assert_eq!(at(update[5]), at(&base), "AND version = :6");
        match &current.data[..] {
            [JsonBind::Text(t)] => {
                assert!(t.contains(r#"{"$numberDouble":"1e+300"}"#), "{t}");
                let back = value::decode(t).expect("decodes");
                assert_eq!(back, state.data());
            }
            other => panic!("{other:?}"),
        }
        let (blob, _) = CurrentBinds::new(JsonMode::Blob, &state, DataSql::Whole).expect("binds");
        assert!(matches!(blob.data[..], [JsonBind::Bytes(_)]));
        let blob = HistoryRow::new(JsonMode::Blob, &state).expect("row");
        assert!(matches!(blob.parties, JsonBind::Bytes(_)));
        let ev = EventRow::new(JsonMode::Blob, &item).expect("event row");
        assert_eq!(ev.params().len(), 18);
        assert_eq!((ev.outcome, ev.reason, ev.origin_seq), ("applied", None, 7));
        assert_eq!(ev.reason_detail, JsonBind::Null(JsonMode::Blob));
        assert_eq!(
            matches!(ev.receipt, JsonBind::Bytes(_)),
            item.event.receipt.is_some(),
            "the receipt is bound 16th, NULL when the record has none"
        );
        assert_eq!(
            ev.business_events,
            JsonBind::Null(JsonMode::Blob),
            "business events are bound 17th, NULL when the record has none"
        );
        assert_eq!(
            ev.endorsements,
            JsonBind::Null(JsonMode::Blob),
            "endorsements are bound last, NULL when the record has none"
        );
        let mut emitting = item.clone();
        emitting.event.business_events = vec![sst_core::BusinessEvent {
            name: "price_agreed".into(),
            payload: serde_json::json!({"amount": 5}),
        }];
        let ev = EventRow::new(JsonMode::Native, &emitting).expect("event row");
        match &ev.business_events {
            JsonBind::Text(t) => assert!(t.contains("price_agreed"), "{t}"),
            other => panic!("{other:?}"),
        }
        let mut endorsed = item.clone();
        endorsed.event.endorsements = vec![sst_core::Endorsement {
            node: NodeId::from("bank"),
            signature: sst_core::SignatureBytes([0xab; 64]),
        }];
        let ev = EventRow::new(JsonMode::Native, &endorsed).expect("event row");
        match &ev.endorsements {
            JsonBind::Text(t) => {
                assert!(t.contains("bank") && t.contains(&"ab".repeat(64)), "{t}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusal_rows_bind_the_code_and_the_whole_reason() {
        let (alice, key) = actor("acme", "alice");
        let refused = rejected(
            &state_id("x"),
            None,
            (&alice, &key),
            3,
            RejectReason::UnknownState,
        );
        let r = Refusal {
            event: refused.event.id(),
            state_id: state_id("x"),
            version: 4,
            from_node: NodeId::from("home"),
            reason: RejectReason::UnknownActor {
                actor: "acme/zoe".into(),
            },
            at: Timestamp(1_700_000_000_123),
        };
        let row = RefusalRow::new(JsonMode::Native, &r).expect("row");
        assert_eq!(row.params().len(), 7);
        let at = |p: &dyn ToSql| p as *const dyn ToSql as *const u8;
        let update = row.update_params();
        assert_eq!(at(update[0]), at(&row.state_id), "SET r.state_id = :1");
        assert_eq!(
            at(update[4]),
            at(&row.reason_detail),
            "r.reason_detail = :5"
        );
        assert_eq!(at(update[6]), at(&row.event_id), "WHERE r.event_id = :7");
        assert_eq!(row.event_id, r.event.to_string());
        assert_eq!((row.version, row.at), (4, 1_700_000_000_123));
        assert_eq!(row.reason, "unknown_actor");
        match &row.reason_detail {
            JsonBind::Text(t) => assert_eq!(
                value::decode(t).expect("json"),
                json!({"code": "unknown_actor", "actor": "acme/zoe"})
            ),
            other => panic!("{other:?}"),
        }
        let blob = RefusalRow::new(JsonMode::Blob, &r).expect("row");
        assert!(matches!(blob.reason_detail, JsonBind::Bytes(_)));
        let too_far = Refusal {
            version: u64::MAX,
            ..r
        };
        assert!(matches!(
            RefusalRow::new(JsonMode::Native, &too_far),
            Err(StoreError::InvalidInput { .. })
        ));
    }

    #[test]
    fn rejected_events_bind_their_reason() {
        let (alice, key) = actor("acme", "alice");
        let item = rejected(
            &state_id("x"),
            None,
            (&alice, &key),
            3,
            RejectReason::UnknownState,
        );
        let ev = EventRow::new(JsonMode::Native, &item).expect("row");
        assert_eq!(ev.outcome, "rejected");
        assert_eq!(ev.reason, Some("unknown_state"));
        assert_eq!(ev.new_version, None);
        match ev.reason_detail {
            JsonBind::Text(t) => assert_eq!(
                value::decode(&t).expect("json"),
                json!({"code": "unknown_state"})
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn applied_events_bind_their_disclosures_as_section_versions() {
        let (alice, key) = actor("acme", "alice");
        let item = create(
            &state_id("named"),
            Parties::default().with("buyer", "acme/alice"),
            values([("price", json!({"amount": 1})), ("terms", json!("net 30"))]),
            (&alice, &key),
            1,
        );
        let state = item.state.clone().expect("state");
        assert!(
            !item.event.disclosures.is_empty(),
            "fixture discloses nothing"
        );
        let column = |row: &EventRow| match &row.disclosures {
            JsonBind::Text(t) => value::decode(t).expect("json"),
            other => panic!("{other:?}"),
        };
        // Applied with its new state: each disclosure names the state's section version.
        let named = column(&EventRow::new(JsonMode::Native, &item).expect("row"));
        for (name, d) in &item.event.disclosures {
            assert_eq!(
                named[name],
                json!({"salt": d.salt, "hash": state.sections[name].hash}),
                "{name}"
            );
        }
        // Without a state to name (as a record without its commit item): values inline.
        let mut bare = item.clone();
        bare.state = None;
        let inline = column(&EventRow::new(JsonMode::Native, &bare).expect("row"));
        assert_eq!(
            inline,
            serde_json::to_value(&item.event.disclosures).expect("json")
        );
        // Either form parses back; only the named one has versions to look up.
        let what = "event under test";
        assert!(!DisclosureColumn::parse(what, named)
            .expect("named")
            .is_inline());
        assert!(DisclosureColumn::parse(what, inline)
            .expect("inline")
            .is_inline());
        let blob = EventRow::new(JsonMode::Blob, &item).expect("row");
        assert!(matches!(blob.disclosures, JsonBind::Bytes(_)));
    }

    fn deal() -> State {
        let (alice, key) = actor("acme", "alice");
        let item = create(
            &state_id("deal"),
            Parties::default().with("buyer", "acme/alice"),
            values([
                ("price", json!({"amount": 1})),
                ("terms", json!("net 30")),
                ("notes", json!(null)),
            ]),
            (&alice, &key),
            1,
        );
        item.state.as_deref().cloned().expect("state")
    }

    #[test]
    fn a_patch_binds_the_set_sections_only_in_order() {
        let state = deal();
        let wanted = DataSql::for_write(
            JsonMode::Native,
            &DataWrite::Patch {
                set: vec!["terms".into(), "price".into()],
                remove: vec!["gone".into()],
            },
        );
        let (binds, data) =
            CurrentBinds::new(JsonMode::Native, &state, wanted.clone()).expect("binds");
        assert_eq!(data, wanted);
        let texts: Vec<Value> = binds
            .data
            .iter()
            .map(|b| match b {
                JsonBind::Text(t) => value::decode(t).expect("json"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, vec![json!("net 30"), json!({"amount": 1})]);
        let base = 1_i64;
        assert_eq!(binds.update_params(&base).len(), 3 + 2 + 2);
        // A set section the state does not disclose: the whole document instead.
        let missing = DataSql::for_write(
            JsonMode::Native,
            &DataWrite::Patch {
                set: vec!["absent".into()],
                remove: vec![],
            },
        );
        let (binds, data) = CurrentBinds::new(JsonMode::Native, &state, missing).expect("binds");
        assert_eq!(data, DataSql::Whole);
        assert_eq!(binds.data.len(), 1);
        let (binds, data) =
            CurrentBinds::new(JsonMode::Native, &state, DataSql::Keep).expect("binds");
        assert_eq!((data, binds.data.len()), (DataSql::Keep, 0));
    }

    #[test]
    fn first_layout_rows_yield_a_section_per_salted_seal() {
        let state = deal();
        let mut seals = serde_json::to_value(state.seals()).expect("seals");
        // Redact `terms`: no salt, no value, no section row.
        seals["terms"].as_object_mut().expect("seal").remove("salt");
        let mut data = state.data();
        data.as_object_mut().expect("object").remove("terms");
        let got = first_layout_sections("v1", &seals, &data).expect("sections");
        let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["notes", "price"]);
        assert_eq!(got[0].2, json!(null), "a null section still has its row");
        assert_eq!(got[1].1, state.sections["price"].hash.to_string());
        data.as_object_mut().expect("object").remove("price");
        assert!(matches!(
            first_layout_sections("v1", &seals, &data),
            Err(StoreError::Integrity { .. })
        ));
        assert!(first_layout_sections("v1", &json!([1]), &data).is_err());
    }

    /// The first layout's copies of one section version (state, name, hash) must hold the
    /// same value, compared as canonical JSON; two that differ refuse the upgrade, naming the
    /// state, both versions (in order, whichever was read first) and the section.
    #[test]
    fn first_layout_copies_of_one_section_version_must_agree() {
        let row = |price: Value| {
            vec![
                ("price".to_owned(), "sha256:p1".to_owned(), price),
                ("terms".to_owned(), "sha256:t1".to_owned(), json!("net 30")),
            ]
        };
        let v1 = row(json!({"amount": 1, "currency": "EUR"}));
        let mut copies = FirstLayoutCopies::default();
        copies.add("deal", 1, &v1).expect("first copy");
        // A later version holding the same section versions, its text written differently.
        let respelled = r#"{ "currency" : "EUR", "amount" : 1 }"#;
        let v2 = row(serde_json::from_str(respelled).expect("json"));
        copies.add("deal", 2, &v2).expect("the same values");
        // Another state's section version of the same name and hash is its own.
        let other = row(json!({"amount": 2}));
        copies.add("other", 1, &other).expect("another state");
        // A new section version (another hash) may hold another value.
        let mut v3 = row(json!({"amount": 3}));
        v3[0].1 = "sha256:p3".into();
        copies.add("deal", 3, &v3).expect("another hash");

        let edited = row(json!({"amount": 1, "currency": "USD"}));
        for (a, b) in [((1, &v1), (4, &edited)), ((4, &edited), (1, &v1))] {
            let mut copies = FirstLayoutCopies::default();
            copies.add("deal", a.0, a.1).expect("first copy");
            match copies.add("deal", b.0, b.1) {
                Err(StoreError::Integrity { what, source }) => {
                    assert_eq!(what, "state deal");
                    assert_eq!(
                        source.to_string(),
                        IntegrityError::Malformed(
                            "versions 1 to 4 hold section `price` under one hash with \
                             different values (edited behind SST's back): the first layout \
                             is not upgraded; restore the committed value, then migrate again"
                                .into()
                        )
                        .to_string()
                    );
                }
                other => panic!("expected an integrity error, got {other:?}"),
            }
        }
    }
}
