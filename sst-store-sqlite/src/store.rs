//! [`SqliteStore`]: the [`Store`] implementation over one writer connection, owned by a
//! long-lived writer thread, and a small pool of read-only connections for lookups (run on the
//! calling thread) and scans (run on tokio's blocking pool).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value as SqlValue};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::Value;
use sst_core::model::{SectionSeal, StateParts};
use sst_core::raw::columns::{
    business_events_from_column, endorsements_from_column, json_text, outcome_from_columns,
    receipt_from_column, to_i64, DerivedEventColumns,
};
use sst_core::raw::{
    check_peer_layout, columns_to_add, CommitPlan, ContractPut, CurrentWrite, DataWrite,
    DisclosureColumn, EventColumns, Lookups, NameCase, RecordDigests, Recorded, StoredEvent,
    RACE_RETRIES,
};
use sst_core::{
    check_prune_keep, check_refusal, check_sink_name, portable, Actor, ActorId, Capabilities,
    Checkpoint, CommitBatch, CommitReceipt, ContractRecord, ContractRef, Digest, EventFilter,
    EventId, EventRecord, HashAlg, LogEntry, LogHead, LogRecord, NodeId, OriginSeq, PreparedBatch,
    Refusal, SignedCheckpoint, State, StateId, Store, StoreError, Timestamp,
};

use crate::checkpoint::Checkpointer;
use crate::config::{Location, SqliteConfig};
use crate::error::{backend, conflict_or_backend, log_race, WriteError};
use crate::schema::{
    add_column, added_columns, ddl, required_columns, section_table, CHECKPOINT_COLUMNS,
    CURRENT_COLUMNS, EVENT_COLUMNS, FIRST_LAYOUT_CURRENT_ONLY, FIRST_LAYOUT_HISTORY_DATA,
    HISTORY_COLUMNS, LOG_COLUMNS,
};
use crate::writer::Writer;
use crate::NAME;

/// Runs `f` on tokio's blocking pool: where scans of a file database run, so that a read whose
/// cost grows with the data never holds up a runtime worker thread.
pub(crate) async fn blocking<T, F>(operation: &'static str, f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::backend(NAME, operation, e))?
}

/// The columns of `table` (none when it does not exist).
fn table_columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    conn.prepare("SELECT name FROM pragma_table_info(?1)")
        .and_then(|mut s| {
            s.query_map([table], |r| r.get(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(|e| backend("open", e))
}

/// The columns event reads select: [`EVENT_COLUMNS`], except on a read-only store over an
/// event table of a layout before some of the [`added_columns`], which `migrate` would add
/// but a read-only store must leave as it is: there each missing column reads as `NULL` (no
/// business events, no endorsements).
fn event_columns(conn: &Connection, config: &SqliteConfig) -> Result<String, StoreError> {
    let mut columns = EVENT_COLUMNS.to_owned();
    if !config.read_only {
        return Ok(columns);
    }
    let present = table_columns(conn, &config.tables.event)?;
    if present.is_empty() {
        return Ok(columns);
    }
    for (_, added) in added_columns(&config.tables) {
        for column in added {
            if !present.iter().any(|p| p.eq_ignore_ascii_case(column)) {
                columns = columns.replace(column, &format!("NULL AS {column}"));
            }
        }
    }
    Ok(columns)
}

/// Whether a read-only store is over state tables of the first layout, which `migrate` would
/// upgrade but a read-only store must leave as they are: there a version's data is read from
/// its history row, which carries it whole.
fn read_only_first_layout(conn: &Connection, config: &SqliteConfig) -> Result<bool, StoreError> {
    if !config.read_only {
        return Ok(false);
    }
    let history = table_columns(conn, &config.tables.history)?;
    Ok(history
        .iter()
        .any(|c| c.eq_ignore_ascii_case(FIRST_LAYOUT_HISTORY_DATA)))
}

/// SQL text of every statement, with the configured table names filled in.
struct Sql {
    ddl: String,
    recorded_events: String,
    recorded_origins: String,
    current_seals: String,
    current_version: String,
    insert_history: String,
    insert_section: String,
    insert_current: String,
    update_current: (String, String),
    insert_event: String,
    select_state: String,
    select_state_at: String,
    unparsed_section: String,
    state_ids: String,
    select_event: String,
    section_value: String,
    select_events: String,
    last_origin_seq: String,
    upsert_actor: String,
    select_actor: String,
    select_actors: String,
    contract_identity: String,
    insert_contract: String,
    select_contract: String,
    select_contracts: String,
    upsert_refusal: String,
    select_refusals: String,
    delete_refusal: String,
    log_head: String,
    insert_log: String,
    select_log: String,
    checkpoint_head: String,
    insert_checkpoint: String,
    select_checkpoints: String,
    checkpoint_cut: String,
    prune_checkpoints: String,
    select_sink_cursor: String,
    upsert_sink_cursor: String,
}

impl Sql {
    /// The statements for `config`; `event_columns` is what event reads select
    /// ([`EVENT_COLUMNS`], or [`event_columns`]'s stand-in for an older layout), and
    /// `first_layout` says that a read-only store reads state tables of the first layout.
    fn new(config: &SqliteConfig, event_columns: &str, first_layout: bool) -> Self {
        let t = &config.tables;
        let (state, history, event, actor, contract) =
            (&t.state, &t.history, &t.event, &t.actor, &t.contract);
        let (section, versions) = (&t.section, &t.versions);
        let (log, checkpoint, sink_cursor) = (&t.log, &t.checkpoint, &t.sink_cursor);
        // The columns `state_from_row` reads: the current row's (or, for `state_at`, the
        // history row's) id, contract, version and data, then the history row of that version.
        let history_part = "h.version, h.contract_name, h.contract_version, h.parties, h.seals, \
             h.root, h.prev_root, h.last_event, h.updated_at";
        let history_data = if first_layout {
            format!(r#"h.{FIRST_LAYOUT_HISTORY_DATA}, {history_part} FROM "{history}" AS h"#)
        } else {
            format!(
                r#"v.data, {history_part} FROM "{history}" AS h
                   JOIN "{versions}" AS v ON v.id = h.id AND v.version = h.version"#
            )
        };
        Sql {
            ddl: ddl(t),
            // One probe of the unique index per key, all keys in one statement (a JSON array,
            // walked first: `CROSS JOIN` keeps that order).
            recorded_events: format!(
                r#"SELECT e.id FROM json_each(?1) AS j
                   CROSS JOIN "{event}" AS e ON e.id = j.value"#
            ),
            recorded_origins: format!(
                r#"SELECT e.origin_node, e.origin_seq, e.id FROM json_each(?1) AS j
                   CROSS JOIN "{event}" AS e
                     ON e.origin_node = j.value ->> 0 AND e.origin_seq = j.value ->> 1"#
            ),
            current_seals: format!(
                r#"SELECT s.version, h.seals FROM "{state}" AS s
                   LEFT JOIN "{history}" AS h ON h.id = s.id AND h.version = s.version
                   WHERE s.id = ?1"#
            ),
            current_version: format!(r#"SELECT version FROM "{state}" WHERE id = ?1"#),
            insert_history: format!(
                r#"INSERT INTO "{history}" ({HISTORY_COLUMNS})
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"#
            ),
            insert_section: format!(
                r#"INSERT INTO "{section}" (state_id, name, hash, value) VALUES (?1, ?2, ?3, ?4)
                   ON CONFLICT (state_id, name, hash) DO NOTHING"#
            ),
            insert_current: format!(
                r#"INSERT INTO "{state}" ({CURRENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"#
            ),
            update_current: (
                format!(
                    r#"UPDATE "{state}" SET contract_name = ?1, contract_version = ?2,
                         version = ?3, data = "#
                ),
                " WHERE id = ?4 AND version = ?5".to_owned(),
            ),
            insert_event: format!(
                r#"INSERT INTO "{event}" (id, state_id, kind, contract_name, contract_version,
                     actor, origin_node, origin_seq, outcome, reason, reason_detail,
                     new_version, new_root, event, disclosures, receipt, business_events,
                     endorsements)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     ?16, ?17, ?18)"#
            ),
            select_state: format!(
                r#"SELECT s.id, s.contract_name, s.contract_version, s.version, s.data,
                     {history_part}
                   FROM "{state}" AS s
                   LEFT JOIN "{history}" AS h ON h.id = s.id AND h.version = s.version
                   WHERE s.id = ?1"#
            ),
            select_state_at: format!(
                r#"SELECT h.id, h.contract_name, h.contract_version, h.version, {history_data}
                   WHERE h.id = ?1 AND h.version = ?2"#
            ),
            // The first section version that a history row's seals name and whose stored
            // text is not JSON (the section table has no check for it): what makes
            // `select_state_at` fail in the history view's `json(value)`.
            unparsed_section: format!(
                r#"SELECT s.name, s.hash FROM "{history}" AS h, json_each(h.seals) AS j
                   JOIN "{section}" AS s
                     ON s.state_id = h.id AND s.name = j.key
                    AND s.hash = json_extract(j.value, '$.hash')
                   WHERE h.id = ?1 AND h.version = ?2
                     AND json_extract(j.value, '$.salt') IS NOT NULL
                     AND NOT json_valid(s.value)
                   LIMIT 1"#
            ),
            state_ids: format!(r#"SELECT id FROM "{state}" ORDER BY id"#),
            select_event: format!(r#"SELECT {event_columns} FROM "{event}" WHERE id = ?1"#),
            section_value: format!(
                r#"SELECT value FROM "{section}" WHERE state_id = ?1 AND name = ?2 AND hash = ?3"#
            ),
            select_events: format!(r#"SELECT {event_columns} FROM "{event}" WHERE 1 = 1"#),
            last_origin_seq: format!(
                r#"SELECT MAX(origin_seq) FROM "{event}" WHERE origin_node = ?1"#
            ),
            upsert_actor: format!(
                r#"INSERT INTO "{actor}" (id, node, public_key, status) VALUES (?1, ?2, ?3, ?4)
                   ON CONFLICT (id) DO UPDATE SET node = excluded.node,
                     public_key = excluded.public_key, status = excluded.status"#
            ),
            select_actor: format!(
                r#"SELECT id, node, public_key, status FROM "{actor}" WHERE id = ?1"#
            ),
            select_actors: format!(
                r#"SELECT id, node, public_key, status FROM "{actor}" ORDER BY id"#
            ),
            contract_identity: format!(
                r#"SELECT identity FROM "{contract}" WHERE name = ?1 AND version = ?2"#
            ),
            insert_contract: format!(
                r#"INSERT INTO "{contract}" (name, version, identity, deployer, record)
                   VALUES (?1, ?2, ?3, ?4, ?5)"#
            ),
            select_contract: format!(
                r#"SELECT record FROM "{contract}" WHERE name = ?1 AND version = ?2"#
            ),
            select_contracts: format!(r#"SELECT record FROM "{contract}" ORDER BY name, version"#),
            upsert_refusal: format!(
                r#"INSERT INTO "{refusal}"
                     (event_id, state_id, version, from_node, reason, reason_detail, at)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                   ON CONFLICT (event_id) DO UPDATE SET
                     state_id = excluded.state_id, version = excluded.version,
                     from_node = excluded.from_node, reason = excluded.reason,
                     reason_detail = excluded.reason_detail, at = excluded.at"#,
                refusal = t.refusal
            ),
            select_refusals: format!(
                r#"SELECT event_id, state_id, version, from_node, reason_detail, at
                   FROM "{refusal}" WHERE (?1 IS NULL OR state_id = ?1)
                   ORDER BY state_id, version, event_id"#,
                refusal = t.refusal
            ),
            delete_refusal: format!(
                r#"DELETE FROM "{refusal}" WHERE event_id = ?1"#,
                refusal = t.refusal
            ),
            log_head: format!(r#"SELECT {LOG_COLUMNS} FROM "{log}" ORDER BY pos DESC LIMIT 1"#),
            insert_log: format!(
                r#"INSERT INTO "{log}" ({LOG_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"#
            ),
            select_log: format!(
                r#"SELECT {LOG_COLUMNS} FROM "{log}" WHERE pos > ?1 ORDER BY pos LIMIT ?2"#
            ),
            checkpoint_head: format!(
                r#"SELECT head FROM "{checkpoint}" WHERE node = ?1 AND pos = ?2"#
            ),
            insert_checkpoint: format!(
                r#"INSERT INTO "{checkpoint}" ({CHECKPOINT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"#
            ),
            select_checkpoints: format!(
                r#"SELECT {CHECKPOINT_COLUMNS} FROM "{checkpoint}" WHERE node = ?1 ORDER BY pos"#
            ),
            checkpoint_cut: format!(
                r#"SELECT pos FROM "{checkpoint}" WHERE node = ?1
                   ORDER BY pos DESC LIMIT 1 OFFSET ?2"#
            ),
            prune_checkpoints: format!(
                r#"DELETE FROM "{checkpoint}" WHERE node = ?1 AND pos <= ?2"#
            ),
            select_sink_cursor: format!(r#"SELECT pos FROM "{sink_cursor}" WHERE sink = ?1"#),
            upsert_sink_cursor: format!(
                r#"INSERT INTO "{sink_cursor}" (sink, pos) VALUES (?1, ?2)
                   ON CONFLICT (sink) DO UPDATE SET pos = max(pos, excluded.pos)"#
            ),
        }
    }
}

/// The writer thread's state: the write connection and the statements.
struct WriteConn {
    conn: Connection,
    sql: Arc<Sql>,
    /// The checkpointer of a writable file (dropped after `conn`, so that the last connection
    /// to close, its own, checkpoints the rest of the log and removes it).
    _checkpointer: Option<Checkpointer>,
}

impl WriteConn {
    /// After a job panicked: roll back the transaction it may have left open, so the next
    /// job starts clean and nothing of the panicked one is ever committed.
    fn recover(&mut self) {
        if !self.conn.is_autocommit() {
            // Nothing more to do when even this fails: the next `BEGIN` reports the state.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

struct Inner {
    config: SqliteConfig,
    sql: Arc<Sql>,
    /// Idle read-only connections (file databases only).
    readers: Mutex<Vec<Connection>>,
    /// The thread owning the one connection that writes (and, for `:memory:`, also reads).
    writer: Writer<WriteConn>,
}

fn poisoned(operation: &'static str) -> StoreError {
    StoreError::backend(NAME, operation, "connection mutex poisoned by a panic")
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer and commits it. When `f` lost a
/// race for a unique key ([`WriteError::Raced`]: the log position above all), the transaction
/// is rolled back and `f` runs again from the start, re-reading everything, up to
/// [`RACE_RETRIES`] times. The one retry loop of this crate: `commit` and every put write
/// through it. (The writer thread and `BEGIN IMMEDIATE` already serialise the writers of one
/// process; another process writing the same file is what can race.)
fn transact<T>(
    w: &mut WriteConn,
    operation: &'static str,
    mut f: impl FnMut(&Transaction<'_>, &Sql) -> Result<T, WriteError>,
) -> Result<T, StoreError> {
    let mut retries = 0;
    loop {
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| backend(operation, e))?;
        match f(&tx, &w.sql) {
            Ok(v) => {
                tx.commit().map_err(|e| backend(operation, e))?;
                return Ok(v);
            }
            Err(WriteError::Raced(_)) if retries < RACE_RETRIES => retries += 1,
            Err(e) => return Err(e.into_inner()),
        }
    }
}

/// Opens a pooled read-only connection to `path`.
fn open_reader(
    path: &std::path::Path,
    config: &SqliteConfig,
    operation: &'static str,
) -> Result<Connection, StoreError> {
    let c =
        Connection::open_with_flags(path, read_only_flags()).map_err(|e| backend(operation, e))?;
    c.busy_timeout(config.busy_timeout)
        .map_err(|e| backend(operation, e))?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(c)
}

fn read_only_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
}

/// Prepared statements kept per connection: every fixed statement of [`Sql`] fits, with room
/// for the few shapes of `events` filters a node uses.
const STATEMENT_CACHE: usize = 64;

/// Opens the write connection as configured: WAL mode and `synchronous` unless read-only.
fn open_writer(config: &SqliteConfig) -> Result<Connection, StoreError> {
    let writer = match &config.location {
        Location::Memory => Connection::open_in_memory(),
        Location::File(path) if config.read_only => {
            Connection::open_with_flags(path, read_only_flags())
        }
        Location::File(path) => Connection::open(path),
    }
    .map_err(|e| backend("open", e))?;
    writer
        .busy_timeout(config.busy_timeout)
        .map_err(|e| backend("open", e))?;
    if matches!(config.location, Location::File(_)) && !config.read_only {
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| backend("open", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::backend(
                NAME,
                "open",
                format!("could not switch to WAL mode (journal_mode is {mode})"),
            ));
        }
    }
    if !config.read_only {
        writer
            .pragma_update(None, "synchronous", config.synchronous.as_str())
            .map_err(|e| backend("open", e))?;
    }
    writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(writer)
}

impl Inner {
    /// Runs `f` on an idle reader (opening one if none is idle) and returns it to the pool.
    /// File databases only.
    fn with_reader<T>(
        &self,
        path: &std::path::Path,
        operation: &'static str,
        f: impl FnOnce(&Connection, &Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.readers.lock().map_err(|_| poisoned(operation))?.pop();
        let conn = match idle {
            Some(c) => c,
            None => open_reader(path, &self.config, operation)?,
        };
        let result = f(&conn, &self.sql);
        let mut pool = self.readers.lock().map_err(|_| poisoned(operation))?;
        if pool.len() < self.config.readers {
            pool.push(conn);
        }
        result
    }
}

/// An SST [`Store`] in a SQLite database (file or `:memory:`).
///
/// States live in the section-version layout: `sst_state` holds each state's latest version
/// with its disclosed sections in the `data` column as JSON text, queryable with `->>` and
/// `json_extract`; `sst_state_history` a header and the section seals per version;
/// `sst_section` each section version's plaintext once; the view `sst_state_versions` every
/// version's whole `data` document. The file is in WAL mode. One long-lived writer thread owns the write
/// connection and commits each batch in one `BEGIN IMMEDIATE` transaction, in the order the
/// calls were made (see the `writer` module), while a second thread copies the write-ahead
/// log back into the file (see the `checkpoint` module); reads use a small pool of read-only
/// connections. Clones share the same connections; the last clone dropped finishes the
/// writes already handed over and closes the database.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database and sets WAL mode, `synchronous` and the busy
    /// timeout. Call [`Store::migrate`] to create the peer tables. With
    /// [`SqliteConfig::read_only`] the file must exist and is opened without changing it.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for unusable table names; [`StoreError::Backend`] when
    /// the database cannot be opened.
    pub async fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let for_thread = config.clone();
        let (writer, sql) = Writer::spawn("sst-sqlite-writer", move || {
            let conn = open_writer(&for_thread)?;
            let sql = Arc::new(Sql::new(
                &for_thread,
                &event_columns(&conn, &for_thread)?,
                read_only_first_layout(&conn, &for_thread)?,
            ));
            let checkpointer = match &for_thread.location {
                Location::File(path) if !for_thread.read_only => {
                    Some(Checkpointer::start(&conn, path, &for_thread)?)
                }
                _ => None,
            };
            Ok((
                WriteConn {
                    conn,
                    sql: Arc::clone(&sql),
                    _checkpointer: checkpointer,
                },
                sql,
            ))
        })
        .await?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                config,
                sql,
                readers: Mutex::new(Vec::new()),
                writer,
            }),
        })
    }

    /// Opens and migrates in one call.
    ///
    /// # Errors
    /// As [`SqliteStore::open`] and [`Store::migrate`].
    pub async fn open_migrated(config: SqliteConfig) -> Result<Self, StoreError> {
        let store = Self::open(config).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The settings this store was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.inner.config
    }

    /// Runs `f` on the writer thread, after every write handed over before it.
    async fn write<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection, &Sql) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.inner
            .writer
            .run(operation, WriteConn::recover, move |w| {
                f(&mut w.conn, &w.sql)
            })
            .await
    }

    /// [`transact`] on the writer thread.
    async fn write_tx<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnMut(&Transaction<'_>, &Sql) -> Result<T, WriteError> + Send + 'static,
        T: Send + 'static,
    {
        self.inner
            .writer
            .run(operation, WriteConn::recover, move |w| {
                transact(w, operation, f)
            })
            .await
    }

    /// A lookup by key (a primary-key or unique-index probe: a few pages, no scan). On a file
    /// it runs right here on a pooled reader, without a hand-off to another thread: in WAL
    /// mode a reader never waits for the writer, so the call costs what the lookup costs,
    /// like any other short piece of CPU work of the calling task. On `:memory:` it runs on
    /// the writer thread, whose connection holds the database.
    async fn lookup<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection, &Sql) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.inner.config.location {
            Location::File(path) => self.inner.with_reader(path, operation, f),
            Location::Memory => self.on_writer(operation, f).await,
        }
    }

    /// A read whose size grows with the data (a listing or range): on a file it runs on
    /// tokio's blocking pool with a pooled reader, so a long scan never holds up a runtime
    /// worker; on `:memory:` on the writer thread.
    async fn scan<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection, &Sql) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.inner.config.location {
            Location::File(path) => {
                let inner = Arc::clone(&self.inner);
                let path = path.clone();
                blocking(operation, move || inner.with_reader(&path, operation, f)).await
            }
            Location::Memory => self.on_writer(operation, f).await,
        }
    }

    /// A read through the writer connection (`:memory:` stores), ordered after every write
    /// handed over before it.
    async fn on_writer<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection, &Sql) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.write(operation, move |conn, sql| f(conn, sql)).await
    }
}

// ---------------------------------------------------------------------------------------------
// model <-> rows

/// The history row of a state version as bound parameters, in [`HISTORY_COLUMNS`] order: the
/// columns of [`State::to_parts`] but `data`, with the JSON columns serialised straight from
/// the state (the same text as serialising `to_parts`' values, without building and dropping
/// a copy of every section value first).
struct HistoryRow([SqlValue; 10]);

impl HistoryRow {
    fn new(s: &State, at: &str) -> Result<Self, StoreError> {
        let digest = |d: Option<String>| d.map_or(SqlValue::Null, SqlValue::Text);
        Ok(HistoryRow([
            SqlValue::Text(s.id.0.clone()),
            SqlValue::Integer(to_i64(&format!("{at}.version"), s.version)?),
            SqlValue::Text(s.contract.name.clone()),
            SqlValue::Integer(i64::from(s.contract.version)),
            SqlValue::Text(json_text(&format!("{at}.parties"), &s.parties)?),
            SqlValue::Text(json_text(&format!("{at}.seals"), &SealsColumn(s))?),
            SqlValue::Text(s.root.to_string()),
            digest(s.prev_root.map(|r| r.to_string())),
            digest(s.last_event.map(|e| e.to_string())),
            SqlValue::Integer(s.updated_at.0),
        ]))
    }
}

/// The `seals` column of a state: what [`State::seals`] returns (name → hash and salt),
/// serialised without building that map.
struct SealsColumn<'a>(&'a State);

impl serde::Serialize for SealsColumn<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_map(self.0.sections.iter().map(|(name, section)| {
            let seal = SectionSeal {
                hash: section.hash,
                salt: section.disclosure.as_ref().map(|d| d.salt),
            };
            (name, seal)
        }))
    }
}

/// The data document of a state's first version, serialised ahead of the writer thread: a
/// create stores every disclosed section and its whole document, so that work is known before
/// the plan. One text: the document, with each section's value a slice of it.
struct CreatedData {
    /// The document, as [`data_text`] gives it.
    data: String,
    /// Where each disclosed section's value lies in `data`, by name.
    values: BTreeMap<String, Range<usize>>,
}

impl CreatedData {
    fn new(s: &State, at: &str) -> Result<Self, StoreError> {
        let mut values = BTreeMap::new();
        let data = data_text(
            s,
            &format!("{at}.data"),
            |_| None,
            |name, range| {
                values.insert(name.to_owned(), range);
            },
        )?;
        Ok(CreatedData { data, values })
    }

    /// The value text of section `name`, if disclosed.
    fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|r| self.data.get(r.clone()))
    }
}

/// One batch item with every column computed, ready for the writer.
struct ItemRow {
    id: String,
    event: [SqlValue; 18],
    state: Option<(String, u64, HistoryRow)>,
    /// For a state's first version: its data document and section values.
    created: Option<CreatedData>,
    /// Texts of the state's sections that the event discloses (for a change, the sections it
    /// changed: those the writer stores and patches), by name.
    disclosed: BTreeMap<String, SectionTexts>,
}

/// The texts the writer binds for one section version, formatted by the calling task.
struct SectionTexts {
    /// The section hash.
    hash: String,
    /// The value as JSON (absent when [`ItemRow::created`] holds it): the canonical text the
    /// node kept when it hashed the value, where that reads back as the same value
    /// ([`sst_core::canonical::reads_back_equal`]), so a large section is not serialised
    /// again; otherwise serialised here.
    value: Option<Arc<str>>,
}

impl ItemRow {
    fn new(i: usize, item: &sst_core::CommitItem) -> Result<Self, StoreError> {
        let at = format!("items[{i}]");
        let rec = &item.event;
        let c = EventColumns::from_item(&at, item)?;
        let text = |v: Option<String>| v.map_or(SqlValue::Null, SqlValue::Text);
        let event = [
            SqlValue::Text(c.id.clone()),
            SqlValue::Text(c.state_id),
            SqlValue::Text(c.kind.to_owned()),
            SqlValue::Text(c.contract_name),
            SqlValue::Integer(i64::from(c.contract_version)),
            SqlValue::Text(c.actor),
            SqlValue::Text(c.origin_node),
            SqlValue::Integer(c.origin_seq),
            SqlValue::Text(c.outcome.to_owned()),
            text(c.reason.map(str::to_owned)),
            text(c.reason_detail.map(|v| v.to_string())),
            c.new_version.map_or(SqlValue::Null, SqlValue::Integer),
            text(c.new_root),
            SqlValue::Text(c.signed.to_string()),
            SqlValue::Text(c.disclosures.to_string()),
            text(c.receipt.map(|v| v.to_string())),
            text(c.business_events.map(|v| v.to_string())),
            text(c.endorsements.map(|v| v.to_string())),
        ];
        let state = match &item.state {
            Some(s) => Some((
                s.id.0.clone(),
                s.version,
                HistoryRow::new(s, &format!("{at}.state"))?,
            )),
            None => None,
        };
        let created = match &item.state {
            Some(s) if s.version == 1 => Some(CreatedData::new(s, &format!("{at}.state"))?),
            _ => None,
        };
        let mut disclosed = BTreeMap::new();
        if let Some(s) = &item.state {
            for name in rec.disclosures.keys() {
                let Some(section) = s.sections.get(name) else {
                    continue;
                };
                let value = match &section.disclosure {
                    Some(d) if created.is_none() => Some(
                        match d
                            .canonical_text()
                            .filter(|_| sst_core::canonical::reads_back_equal(&d.value))
                        {
                            Some(text) => text,
                            None => {
                                Arc::from(json_text(&format!("{at}.state.data.{name}"), &*d.value)?)
                            }
                        },
                    ),
                    _ => None,
                };
                let hash = section.hash.to_string();
                disclosed.insert(name.clone(), SectionTexts { hash, value });
            }
        }
        Ok(ItemRow {
            id: c.id,
            event,
            state,
            created,
            disclosed,
        })
    }
}

/// What a commit looks up before planning, with the keys as the JSON arrays its statements
/// take, and the digests of the log records it appends: computed by the calling task, before
/// the hand-off to the writer thread.
struct BatchKeys {
    lookups: Lookups,
    /// The batch's event log records' digests (the log's usual algorithm; a log of another
    /// one has them computed in the transaction).
    digests: RecordDigests,
    /// `["<event id>", …]`: every event id of the batch, in batch order.
    events: String,
    /// `[["<origin node>", <origin seq>], …]`: the batch's distinct origins.
    origins: String,
}

impl BatchKeys {
    fn new(batch: &CommitBatch, rows: &[ItemRow]) -> Result<Self, StoreError> {
        let lookups = Lookups::of(batch);
        let events = json_text("events", &rows.iter().map(|r| &r.id).collect::<Vec<_>>())?;
        let origins = lookups
            .origins
            .iter()
            .map(|(node, seq)| Ok((node.as_str(), to_i64("origin_seq", seq.0)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let origins = json_text("origins", &origins)?;
        Ok(BatchKeys {
            lookups,
            digests: RecordDigests::of(batch, HashAlg::Blake3),
            events,
            origins,
        })
    }
}

/// One attempt at writing `batch` (its `rows` computed beforehand) inside `tx`: read what is
/// recorded about the batch and the log head, let the core decide, then write the plan with
/// its log entries: history and event rows, the new section versions (each once), and the
/// current rows (a new state's inserted whole, a stored one's data patched in SQL).
fn commit_rows(
    tx: &Transaction<'_>,
    sql: &Sql,
    batch: &CommitBatch,
    keys: &BatchKeys,
    rows: &[ItemRow],
) -> Result<CommitReceipt, WriteError> {
    const OP: &str = "commit";
    let be = |e| backend(OP, e);
    let lookups = &keys.lookups;
    let mut recorded = Recorded::default();
    let found: Vec<String> = tx
        .prepare_cached(&sql.recorded_events)
        .and_then(|mut s| s.query_map([&keys.events], |r| r.get(0))?.collect())
        .map_err(be)?;
    if !found.is_empty() {
        let by_text: BTreeMap<&str, &EventId> = rows
            .iter()
            .map(|row| row.id.as_str())
            .zip(&lookups.events)
            .collect();
        for text in &found {
            if let Some(id) = by_text.get(text.as_str()) {
                recorded.events.insert(**id);
            }
        }
    }
    let owners: Vec<(String, i64, String)> = tx
        .prepare_cached(&sql.recorded_origins)
        .and_then(|mut s| {
            s.query_map([&keys.origins], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(be)?;
    for (node, seq, id) in owners {
        let id = id
            .parse::<EventId>()
            .map_err(|e| StoreError::malformed(format!("event {id}"), e))?;
        recorded
            .origins
            .insert((NodeId(node), OriginSeq(seq.unsigned_abs())), id);
    }
    let mut current = tx.prepare_cached(&sql.current_seals).map_err(be)?;
    for state in &lookups.states {
        let stored: Option<(i64, SqlValue)> = current
            .query_row([state.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(be)?;
        if let Some((v, seals)) = stored {
            recorded.versions.insert(state.clone(), v.unsigned_abs());
            // Seals that are missing or do not parse leave the state out: the plan then
            // writes its sections and current data in full.
            let seals = match seals {
                SqlValue::Text(text) => serde_json::from_str(&text).ok(),
                _ => None,
            };
            if let Some(seals) = seals {
                recorded.seals.insert(state.clone(), seals);
            }
        }
    }
    recorded.log_head = read_log_head(tx, sql, OP)?;
    let plan = CommitPlan::new_with(batch, &recorded, Some(&keys.digests))?;
    let mut history = tx.prepare_cached(&sql.insert_history).map_err(be)?;
    let mut event = tx.prepare_cached(&sql.insert_event).map_err(be)?;
    for &i in &plan.record {
        let row = &rows[i];
        let e = batch.items[i].event.event();
        if let Some((state_id, version, history_row)) = &row.state {
            history
                .execute(rusqlite::params_from_iter(history_row.0.iter()))
                .map_err(|err| {
                    conflict_or_backend(OP, err, || {
                        StoreError::stale_version(&state_id.as_str().into(), version - 1, *version)
                    })
                })?;
        }
        event
            .execute(rusqlite::params_from_iter(row.event.iter()))
            .map_err(|err| {
                conflict_or_backend(OP, err, || {
                    StoreError::origin_taken(&e.origin_node, e.origin_seq)
                })
            })?;
    }
    // The section versions the plan names (`plan.section_versions`, with the item each
    // comes from): a create's were serialised beforehand, and so were the sections an update's
    // event discloses (those it changed); any other is serialised here, and only those, so an
    // update costs what changed, not the size of the state.
    let mut insert = tx.prepare_cached(&sql.insert_section).map_err(be)?;
    for (i, name) in &plan.sections {
        let Some(state) = batch.items[*i].state.as_deref() else {
            continue;
        };
        let Some((name, section)) = state.sections.get_key_value(name) else {
            continue;
        };
        let Some(value) = section.value() else {
            continue;
        };
        let prepared = rows[*i].disclosed.get(name);
        let ready = rows[*i]
            .created
            .as_ref()
            .and_then(|c| c.value(name))
            .or_else(|| prepared.and_then(|p| p.value.as_deref()));
        let text = match ready {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(json_text(
                &format!("state {} section {name}", state.id),
                value,
            )?),
        };
        let hash = match prepared {
            Some(p) => Cow::Borrowed(p.hash.as_str()),
            None => Cow::Owned(section.hash.to_string()),
        };
        insert
            .execute(rusqlite::params![state.id.as_str(), name, hash, text])
            .map_err(be)?;
    }
    for row in &plan.current {
        let Some(state) = batch.items[row.item].state.as_deref() else {
            continue;
        };
        let created = rows[row.item].created.as_ref().map(|c| c.data.as_str());
        let disclosed = &rows[row.item].disclosed;
        write_current(tx, sql, state, created, disclosed, row.write, &row.data)?;
    }
    insert_log(tx, sql, OP, &plan.log)?;
    Ok(plan.receipt())
}

/// Whether SQLite's JSON path `$."name"` addresses the top-level key `name` exactly: a name
/// holding `"` or `\` (or none at all) cannot be quoted into a path safely, and the current
/// row then gets its whole data document instead of a patch.
fn quotable(name: &str) -> bool {
    !name.is_empty() && !name.contains(['"', '\\'])
}

/// Writes the current row of `state`: inserts it whole for a new state, otherwise updates the
/// row that is still at the version the plan was made against. A patch changes only the
/// top-level keys of its data document that `data` names (in SQL, without reading or resending
/// the rest), unless the sections it sets make up most of the document: SQLite would then
/// parse the whole stored document to replace most of it, so the whole new document is
/// written instead, assembled from the section texts already prepared ([`data_text`]).
/// `created` is the state's whole data document when it was serialised beforehand, and
/// `disclosed` the texts of the sections the event discloses.
fn write_current<'a>(
    tx: &Transaction<'_>,
    sql: &Sql,
    state: &'a State,
    created: Option<&'a str>,
    disclosed: &'a BTreeMap<String, SectionTexts>,
    write: CurrentWrite,
    data: &DataWrite,
) -> Result<(), WriteError> {
    const OP: &str = "commit";
    let be = |e| backend(OP, e);
    let id = state.id.as_str();
    let at = format!("state {id}");
    let version = to_i64(&format!("{at}.version"), state.version)?;
    let prepared = |name: &str| disclosed.get(name).and_then(|p| p.value.as_deref());
    let whole = || -> Result<Cow<'_, str>, StoreError> {
        match created {
            Some(text) => Ok(Cow::Borrowed(text)),
            None => data_text(state, &format!("{at}.data"), prepared, |_, _| {}).map(Cow::Owned),
        }
    };
    let from = match write {
        CurrentWrite::Insert => {
            let data = whole()?;
            tx.prepare_cached(&sql.insert_current)
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        id,
                        state.contract.name,
                        state.contract.version,
                        version,
                        data
                    ])
                })
                .map_err(|err| {
                    conflict_or_backend(OP, err, || StoreError::stale_version(&state.id, 0, 1))
                })?;
            return Ok(());
        }
        CurrentWrite::Update { from } => from,
    };
    // Bound as they are: a section text is borrowed from `disclosed`, not copied.
    let mut params: Vec<ToSqlOutput<'a>> = vec![
        ToSqlOutput::from(state.contract.name.as_str()),
        ToSqlOutput::from(i64::from(state.contract.version)),
        ToSqlOutput::from(version),
        ToSqlOutput::from(id),
        ToSqlOutput::from(to_i64(&format!("{at}.from"), from)?),
    ];
    let patch = match data {
        DataWrite::Patch { set, remove }
            if set.iter().chain(remove).all(|n| quotable(n))
                && !sets_most_of(state, set, prepared) =>
        {
            Some((set, remove))
        }
        _ => None,
    };
    let expr = match patch {
        Some((set, remove)) => {
            let mut expr = "data".to_owned();
            let mut next = |v: ToSqlOutput<'a>| -> String {
                params.push(v);
                format!("?{}", params.len())
            };
            if !remove.is_empty() {
                let paths: Vec<String> = remove
                    .iter()
                    .map(|n| next(ToSqlOutput::from(format!("$.\"{n}\""))))
                    .collect();
                expr = format!("json_remove({expr}, {})", paths.join(", "));
            }
            if !set.is_empty() {
                let mut pairs = Vec::with_capacity(set.len());
                for name in set {
                    let value = state
                        .sections
                        .get(name)
                        .and_then(|s| s.value())
                        .ok_or_else(|| {
                            StoreError::backend(
                                NAME,
                                OP,
                                format!("{at}: no value of section {name}"),
                            )
                        })?;
                    let path = next(ToSqlOutput::from(format!("$.\"{name}\"")));
                    let text = match prepared(name) {
                        Some(text) => ToSqlOutput::from(text),
                        None => ToSqlOutput::from(json_text(&format!("{at}.data.{name}"), value)?),
                    };
                    // `jsonb(?)`: the value is parsed once (`json(?)` parsed it, rendered it
                    // as text and `json_set` parsed that again); the document stays text, as
                    // `json_set` on a text document returns text.
                    pairs.push(format!("{path}, jsonb({})", next(text)));
                }
                expr = format!("json_set({expr}, {})", pairs.join(", "));
            }
            expr
        }
        None => {
            params.push(match whole()? {
                Cow::Borrowed(text) => ToSqlOutput::from(text),
                Cow::Owned(text) => ToSqlOutput::from(text),
            });
            format!("?{}", params.len())
        }
    };
    let (head, tail) = &sql.update_current;
    let updated = tx
        .prepare_cached(&format!("{head}{expr}{tail}"))
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(params.iter())))
        .map_err(be)?;
    if updated != 1 {
        // The version guard failed: report what the row holds now.
        let found: Option<i64> = tx
            .prepare_cached(&sql.current_version)
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(be)?;
        return Err(
            StoreError::stale_version(&state.id, from, found.map_or(0, i64::unsigned_abs)).into(),
        );
    }
    Ok(())
}

/// Whether the sections `set` of `state` make up most of its data document, so that writing
/// the whole document costs less than patching it (which parses the stored document in SQL).
/// The set sections count the length of their prepared text (`prepared`) or, failing that,
/// of their canonical encoding; the others (the disclosed ones not set) that of their
/// canonical encoding, added up only until they outweigh the set ones, each walked no further
/// than that ([`sst_core::Disclosure::encoded_len_at_most`]; remembered when the value was
/// hashed): a small change next to a large unchanged section, read back from the store and
/// never hashed, costs a few steps of that section, not a walk of it. Canonical and
/// serialised lengths differ a little (number spelling, escapes), which only moves where the
/// choice tips.
fn sets_most_of<'a>(
    state: &State,
    set: &[String],
    prepared: impl Fn(&str) -> Option<&'a str>,
) -> bool {
    let entry = |name: &str, len: usize| name.len() + len + 4;
    let set_len: usize = set
        .iter()
        .filter_map(|name| {
            let len = match prepared(name) {
                Some(text) => text.len(),
                None => state.sections.get(name)?.disclosure.as_ref()?.encoded_len(),
            };
            Some(entry(name, len))
        })
        .sum();
    let mut rest = 0usize;
    for (name, section) in &state.sections {
        let Some(disclosure) = &section.disclosure else {
            continue;
        };
        if set.contains(name) {
            continue;
        }
        // The rest outweighs the set sections once this entry reaches `set_len - rest`.
        let Some(need) = set_len
            .checked_sub(rest + entry(name, 0))
            .filter(|&n| n > 0)
        else {
            return false;
        };
        match disclosure.encoded_len_at_most(need - 1) {
            Some(len) => rest += entry(name, len),
            None => return false,
        }
    }
    true
}

/// The `data` column of `state` as text: what [`State::data`] returns (`{name: value}` for
/// the disclosed sections, in name order, names escaped as JSON), serialised without cloning
/// the values, each section's value text taken from `prepared` when it holds it and serialised
/// otherwise (errors naming paths below `at`). `placed` learns where each section's value
/// lies in the text.
fn data_text<'a>(
    state: &State,
    at: &str,
    prepared: impl Fn(&str) -> Option<&'a str>,
    mut placed: impl FnMut(&str, Range<usize>),
) -> Result<String, StoreError> {
    let mut entries = Vec::new();
    let mut len = 2;
    for (name, section) in &state.sections {
        let Some(value) = section.value() else {
            continue;
        };
        let key = json_text(at, name)?;
        let text = match prepared(name) {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(json_text(&format!("{at}.{name}"), value)?),
        };
        len += key.len() + 1 + text.len() + 1;
        entries.push((name, key, text));
    }
    let mut data = String::with_capacity(len);
    data.push('{');
    for (name, key, text) in entries {
        if data.len() > 1 {
            data.push(',');
        }
        data.push_str(&key);
        data.push(':');
        let start = data.len();
        data.push_str(&text);
        placed(name, start..data.len());
    }
    data.push('}');
    Ok(data)
}

/// The log head as `conn` sees it ([`LogHead::default`] for an empty log); inside the write
/// transaction, the head the next entry chains to.
fn read_log_head(
    conn: &Connection,
    sql: &Sql,
    operation: &'static str,
) -> Result<LogHead, StoreError> {
    let last = conn
        .prepare_cached(&sql.log_head)
        .and_then(|mut s| s.query_row([], log_entry_from_row).optional())
        .map_err(|e| backend(operation, e))?
        .transpose()?;
    Ok(last.map_or_else(LogHead::default, |e| e.head()))
}

/// Inserts `entries` into the log; a taken position is a lost race.
fn insert_log(
    tx: &Transaction<'_>,
    sql: &Sql,
    operation: &'static str,
    entries: &[LogEntry],
) -> Result<(), WriteError> {
    let mut stmt = tx
        .prepare_cached(&sql.insert_log)
        .map_err(|e| backend(operation, e))?;
    // Each entry's `prev` is the hash of the one before: its text is formatted once.
    let mut prev: Option<(Digest, String)> = None;
    for e in entries {
        let prev_text = match prev.take() {
            Some((hash, text)) if hash == e.prev => text,
            _ => e.prev.to_string(),
        };
        let hash = e.hash.to_string();
        stmt.execute(rusqlite::params![
            to_i64("log.pos", e.pos)?,
            e.kind.as_str(),
            e.subject,
            e.record.to_string(),
            prev_text,
            hash,
        ])
        .map_err(|err| conflict_or_backend(operation, err, || log_race(operation, e.pos)))?;
        prev = Some((e.hash, hash));
    }
    Ok(())
}

/// Appends the entry binding `record` after the log head, inside the record's transaction.
fn append_log(
    tx: &Transaction<'_>,
    sql: &Sql,
    operation: &'static str,
    record: &LogRecord<'_>,
) -> Result<(), WriteError> {
    let entry = read_log_head(tx, sql, operation)?.append(record);
    insert_log(tx, sql, operation, std::slice::from_ref(&entry))
}

fn log_entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<LogEntry, StoreError>> {
    let kind: String = r.get(1)?;
    let record: String = r.get(3)?;
    let prev: String = r.get(4)?;
    let hash: String = r.get(5)?;
    Ok(LogEntry::from_columns(
        r.get(0)?,
        &kind,
        r.get(2)?,
        &record,
        &prev,
        &hash,
    ))
}

fn checkpoint_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<SignedCheckpoint, StoreError>> {
    let node: String = r.get(0)?;
    let pos: i64 = r.get(1)?;
    let head: String = r.get(2)?;
    let at: i64 = r.get(3)?;
    let signature: String = r.get(4)?;
    let what = format!("checkpoint of node {node} at log position {pos}");
    Ok((|| {
        Ok(SignedCheckpoint {
            checkpoint: Checkpoint {
                node: NodeId(node.clone()),
                pos: u64::try_from(pos).map_err(|e| StoreError::malformed(&what, e))?,
                head: head
                    .parse()
                    .map_err(|e| StoreError::malformed(&what, format!("head: {e}")))?,
                at: Timestamp(at),
            },
            signature: serde_json::from_value(Value::String(signature))
                .map_err(|e| StoreError::malformed(&what, format!("signature: {e}")))?,
        })
    })())
}

/// Reads one state back into a [`State`] from a row of `select_state` (the current row
/// joined to the history row of its version) or `select_state_at` (a history row with its
/// data from the history view): id, contract name and version, version and data first, then
/// the history row's version, contract name and version, parties, seals, root, prev_root,
/// last_event and updated_at. A current row whose version the history does not hold, or
/// whose contract differs from that history row's, is an integrity violation.
fn state_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<State, StoreError>> {
    let id: String = r.get(0)?;
    let contract_name: String = r.get(1)?;
    let contract_version: i64 = r.get(2)?;
    let version: i64 = r.get(3)?;
    let data: String = r.get(4)?;
    let what = format!("state {id} version {version}");
    let history_version: Option<i64> = r.get(5)?;
    if history_version.is_none() {
        return Ok(Err(StoreError::malformed(
            what,
            format!("current row of {id} is at version {version}, which the history does not hold"),
        )));
    }
    let history_contract: (String, i64) = (r.get(6)?, r.get(7)?);
    if history_contract != (contract_name.clone(), contract_version) {
        return Ok(Err(StoreError::malformed(
            what,
            format!(
                "current row names contract {contract_name} v{contract_version}, the history \
                 row of that version {} v{}",
                history_contract.0, history_contract.1
            ),
        )));
    }
    let parties: String = r.get(8)?;
    let seals: String = r.get(9)?;
    let root: String = r.get(10)?;
    let prev_root: Option<String> = r.get(11)?;
    let last_event: Option<String> = r.get(12)?;
    let updated_at: i64 = r.get(13)?;
    let parts = (|| {
        // The data column is user-queryable JSON that must follow the portable profile; a
        // row edited behind SST's back into something else is reported, not guessed at.
        let parse = |col: &str, text: &str| -> Result<Value, StoreError> {
            let parsed = if col == "data" {
                portable::parse(text).map_err(|e| e.to_string())
            } else {
                serde_json::from_str(text).map_err(|e| e.to_string())
            };
            parsed.map_err(|e| StoreError::malformed(&what, format!("column {col}: {e}")))
        };
        Ok(StateParts {
            id: StateId(id.clone()),
            contract: ContractRef {
                name: contract_name,
                version: u32::try_from(contract_version)
                    .map_err(|e| StoreError::malformed(&what, format!("contract_version: {e}")))?,
            },
            version: u64::try_from(version)
                .map_err(|e| StoreError::malformed(&what, format!("version: {e}")))?,
            parties: parse("parties", &parties)?,
            seals: parse("seals", &seals)?,
            data: parse("data", &data)?,
            root,
            prev_root,
            last_event,
            updated_at,
        })
    })();
    Ok(parts.and_then(|p| {
        State::from_parts(p).map_err(|source| StoreError::Integrity {
            what: what.clone(),
            source,
        })
    }))
}

/// Why version `version` of state `id` could not be read, when a section version it discloses
/// holds text that is not JSON (edited behind SST's back): an integrity error naming the
/// section and its version. `None` when none does, or when that cannot be told (the failure
/// was something else, reported as it is).
fn unparsed_section(conn: &Connection, sql: &Sql, id: &str, version: i64) -> Option<StoreError> {
    let (name, hash): (String, String) = conn
        .prepare_cached(&sql.unparsed_section)
        .and_then(|mut s| {
            s.query_row(rusqlite::params![id, version], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .ok()??;
    Some(StoreError::malformed(
        format!("state {id} version {version}"),
        format!("section {name} version {hash}: the stored value is not JSON"),
    ))
}

/// An event row's record with the section versions its disclosures name read from the
/// section table, one primary-key lookup each (nothing is read for inline disclosures).
fn resolve_event(
    conn: &Connection,
    sql: &Sql,
    stored: StoredEvent,
) -> Result<EventRecord, StoreError> {
    stored.resolve_texts(|(state, name, hash)| {
        conn.prepare_cached(&sql.section_value)
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params![state, name, hash], |r| {
                    r.get::<_, String>(0)
                })
                .optional()
            })
            .map_err(|e| backend("events", e))
    })
}

/// Reads one event row ([`EVENT_COLUMNS`] order) back, checking the derived columns against
/// the signed event; the disclosures are resolved by [`resolve_event`].
fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredEvent, StoreError>> {
    let signed: String = r.get(0)?;
    let disclosures: String = r.get(1)?;
    let outcome: String = r.get(2)?;
    let new_version: Option<i64> = r.get(3)?;
    let new_root: Option<String> = r.get(4)?;
    let reason: Option<String> = r.get(5)?;
    let receipt: Option<String> = r.get(6)?;
    let business_events: Option<String> = r.get(7)?;
    let endorsements: Option<String> = r.get(8)?;
    // The integer columns are read as they are stored: a hand-written text there is an
    // integrity finding, not a driver error.
    let int = |i: usize| -> rusqlite::Result<Result<i64, String>> {
        Ok(match r.get::<_, SqlValue>(i)? {
            SqlValue::Integer(v) => Ok(v),
            other => Err(format!("{other:?}")),
        })
    };
    let contract_version = int(13)?;
    let origin_seq = int(16)?;
    let derived = (
        r.get::<_, String>(9)?,
        r.get::<_, String>(10)?,
        r.get::<_, String>(11)?,
        r.get::<_, String>(12)?,
        r.get::<_, String>(14)?,
        r.get::<_, String>(15)?,
        r.get::<_, Option<String>>(17)?,
    );
    Ok((|| {
        let signed: sst_core::SignedEvent = serde_json::from_str(&signed)
            .map_err(|e| StoreError::malformed("event row", format!("signed event: {e}")))?;
        let what = format!("event {}", signed.id);
        // A nullable JSON column's text as a JSON value (`NULL` stays absent).
        let json = |column: &str, text: Option<String>| -> Result<Option<Value>, StoreError> {
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| StoreError::malformed(&what, format!("{column}: {e}")))
        };
        let disclosures = DisclosureColumn::parse_text(&what, &disclosures)?;
        let reason = json("reason", reason)?;
        let outcome = outcome_from_columns(&what, &outcome, new_version, new_root, reason)?;
        let record = EventRecord {
            signed,
            disclosures: BTreeMap::new(),
            outcome,
            receipt: receipt_from_column(&what, json("receipt", receipt)?)?,
            business_events: business_events_from_column(
                &what,
                json("business_events", business_events)?,
            )?,
            endorsements: endorsements_from_column(&what, json("endorsements", endorsements)?)?,
        };
        let integer = |column: &str, v: Result<i64, String>| {
            v.map_err(|found| {
                StoreError::malformed(&what, format!("column `{column}` holds {found}"))
            })
        };
        let (id, state_id, kind, contract_name, actor, origin_node, reason) = derived;
        let derived = DerivedEventColumns {
            id,
            state_id,
            kind,
            contract_name,
            contract_version: integer("contract_version", contract_version)?,
            actor,
            origin_node,
            origin_seq: integer("origin_seq", origin_seq)?,
            reason,
        };
        EventColumns::check_derived(&record, &derived)?;
        Ok(StoredEvent {
            record,
            disclosures,
        })
    })())
}

fn actor_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Actor, StoreError>> {
    let id: String = r.get(0)?;
    let node: String = r.get(1)?;
    let key: String = r.get(2)?;
    let status: String = r.get(3)?;
    let what = format!("actor {id}");
    Ok((|| {
        Ok(Actor {
            public_key: serde_json::from_value(Value::String(key))
                .map_err(|e| StoreError::malformed(&what, format!("public_key: {e}")))?,
            status: serde_json::from_value(Value::String(status))
                .map_err(|e| StoreError::malformed(&what, format!("status: {e}")))?,
            id: ActorId(id.clone()),
            node: NodeId(node),
        })
    })())
}

/// A key or signature in its stored form: the hex string it serialises as.
fn hex_text(path: &str, v: impl serde::Serialize) -> Result<String, StoreError> {
    match serde_json::to_value(v) {
        Ok(Value::String(hex)) => Ok(hex),
        other => Err(StoreError::InvalidInput {
            path: path.into(),
            reason: format!("does not serialise as a hex string: {other:?}"),
        }),
    }
}

fn contract_from_text(text: &str) -> Result<ContractRecord, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::malformed("contract row", e))
}

/// Collects rows mapped by `f`, where `f` separates SQL errors from model errors.
fn collect<T>(
    operation: &'static str,
    rows: impl Iterator<Item = rusqlite::Result<Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    rows.map(|r| r.map_err(|e| backend(operation, e)).and_then(|x| x))
        .collect()
}

/// Refuses a table (not a view) that carries the history view's name: `CREATE VIEW IF NOT
/// EXISTS` would leave it in place, and history reads would then read a foreign table.
fn check_view(tx: &Transaction<'_>, name: &str) -> Result<(), StoreError> {
    let kind: Option<String> = tx
        .query_row(
            "SELECT type FROM sqlite_master WHERE name = ?1 COLLATE NOCASE",
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| backend("migrate", e))?;
    match kind {
        Some(kind) if kind != "view" => Err(StoreError::Schema {
            backend: NAME,
            table: name.to_owned(),
            detail: format!(
                "it is a {kind}, where SST keeps its history view; choose other table names \
                 (SqliteConfig::tables) or move that {kind} away"
            ),
        }),
        _ => Ok(()),
    }
}

/// Upgrades state tables of the first layout (`present` lists the existing tables' columns)
/// in place, inside `migrate`'s transaction, so that a failure leaves them as they were: each
/// history row's disclosed sections become section rows (a key already stored must hold the
/// same value, or the upgrade stops with an integrity error),
/// then the history table loses its `data` column and the current-state table the columns
/// that now live in the history row only. Nothing to do on the section-version layout.
fn upgrade_first_layout(
    tx: &Transaction<'_>,
    tables: &sst_core::TableNames,
    present: &[(String, String)],
) -> Result<(), StoreError> {
    const OP: &str = "migrate";
    let be = |e| backend(OP, e);
    let has = |table: &str, column: &str| {
        present
            .iter()
            .any(|(t, c)| t == table && c.eq_ignore_ascii_case(column))
    };
    let (state, history) = (&tables.state, &tables.history);
    if has(history, FIRST_LAYOUT_HISTORY_DATA) {
        tx.execute_batch(&section_table(tables)).map_err(be)?;
        // Every row is read and moved one at a time; the statements are finished before the
        // table is altered.
        let mut insert = tx
            .prepare(&format!(
                r#"INSERT INTO "{}" (state_id, name, hash, value) VALUES (?1, ?2, ?3, ?4)
                   ON CONFLICT (state_id, name, hash) DO NOTHING"#,
                tables.section
            ))
            .map_err(be)?;
        let mut select = tx
            .prepare(&format!(
                r#"SELECT id, version, seals, data FROM "{history}" ORDER BY id, version"#
            ))
            .map_err(be)?;
        let mut held = tx
            .prepare(&format!(
                r#"SELECT value FROM "{}" WHERE state_id = ?1 AND name = ?2 AND hash = ?3"#,
                tables.section
            ))
            .map_err(be)?;
        let mut rows = select.query([]).map_err(be)?;
        while let Some(row) = rows.next().map_err(be)? {
            let id: String = row.get(0).map_err(be)?;
            let version: i64 = row.get(1).map_err(be)?;
            let seals: String = row.get(2).map_err(be)?;
            let data: String = row.get(3).map_err(be)?;
            for (name, hash, value) in first_layout_sections(&id, version, &seals, &data)? {
                let inserted = insert
                    .execute(rusqlite::params![id, name, hash, value])
                    .map_err(be)?;
                if inserted == 0 {
                    // An earlier version holds this section version: the two copies must be
                    // the same value, or one was edited behind SST's back and keeping either
                    // would hide that from `verify`.
                    let stored: String = held
                        .query_row(rusqlite::params![id, name, hash], |r| r.get(0))
                        .map_err(be)?;
                    let same = serde_json::from_str::<Value>(&stored).ok()
                        == serde_json::from_str::<Value>(&value).ok();
                    if !same {
                        return Err(StoreError::malformed(
                            format!("state {id} version {version}"),
                            format!(
                                "section `{name}` ({hash}) differs from the copy an earlier \
                                 version holds; the first layout was edited behind SST's back \
                                 and is not upgraded (nothing was changed): run `sst verify` \
                                 on it with a node of the previous release"
                            ),
                        ));
                    }
                }
            }
        }
        drop(rows);
        drop((select, insert, held));
        tx.execute_batch(&format!(
            r#"ALTER TABLE "{history}" DROP COLUMN {FIRST_LAYOUT_HISTORY_DATA}"#
        ))
        .map_err(be)?;
    }
    for column in FIRST_LAYOUT_CURRENT_ONLY {
        if has(state, column) {
            tx.execute_batch(&format!(r#"ALTER TABLE "{state}" DROP COLUMN {column}"#))
                .map_err(be)?;
        }
    }
    Ok(())
}

/// The section rows `(name, hash, value)` of one first-layout history row: one per seal with a
/// salt whose section the row's data holds, its hash exactly as the seals column spells it
/// (the history view matches on that text) and its value as JSON text. A row whose seals or
/// data are not JSON objects cannot be upgraded without losing it: an integrity error names it.
fn first_layout_sections(
    id: &str,
    version: i64,
    seals: &str,
    data: &str,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let what = format!("state {id} version {version}");
    let object = |column: &str, text: &str| -> Result<serde_json::Map<String, Value>, StoreError> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(StoreError::malformed(
                &what,
                format!("column {column} is not an object: {other}"),
            )),
            Err(e) => Err(StoreError::malformed(
                &what,
                format!("column {column}: {e}"),
            )),
        }
    };
    let seals = object("seals", seals)?;
    let mut data = object("data", data)?;
    let mut rows = Vec::new();
    for (name, seal) in seals {
        let salted = seal.get("salt").is_some_and(|s| !s.is_null());
        let hash = seal.get("hash").and_then(Value::as_str);
        if let (true, Some(hash), Some(value)) = (salted, hash, data.remove(&name)) {
            rows.push((name, hash.to_owned(), value.to_string()));
        }
    }
    Ok(rows)
}

/// What a commit computes from a batch without a connection — its validation, rows and lookup
/// keys — by the calling task ([`Store::commit`]) or ahead ([`Store::prepare`]), so that it
/// overlaps the writer thread committing (and syncing) the batch before; the writer thread
/// only runs SQL.
struct Ahead {
    rows: Vec<ItemRow>,
    keys: BatchKeys,
}

impl Ahead {
    fn of(batch: &CommitBatch) -> Result<Self, StoreError> {
        batch.validate()?;
        let rows = batch
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| ItemRow::new(i, item))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = BatchKeys::new(batch, &rows)?;
        Ok(Ahead { rows, keys })
    }
}

impl SqliteStore {
    /// Commits `batch` on the writer thread with what was computed from it ahead.
    async fn write_batch(
        &self,
        batch: CommitBatch,
        Ahead { rows, keys }: Ahead,
    ) -> Result<CommitReceipt, StoreError> {
        let (receipt, written) = self
            .inner
            .writer
            .run("commit", WriteConn::recover, move |w| {
                let receipt = transact(w, "commit", |tx, sql| {
                    commit_rows(tx, sql, &batch, &keys, &rows)
                });
                Ok((receipt, (batch, keys, rows)))
            })
            .await?;
        // Freed here rather than on the writer thread, which goes on with the next job.
        drop(written);
        receipt
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.concurrent_writers = true;
        c.durable = matches!(self.inner.config.location, Location::File(_));
        c
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let tables = self.inner.config.tables.clone();
        self.write("migrate", move |conn, sql| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| backend("migrate", e))?;
            // A table that already carries a peer table's name must be one of ours: refuse a
            // foreign one before anything is created, so a refused migrate changes nothing.
            let needed = required_columns(&tables);
            let added = added_columns(&tables);
            let mut present = Vec::new();
            for (table, _) in &needed {
                let mut info = tx
                    .prepare(&format!(r#"PRAGMA table_info("{table}")"#))
                    .map_err(|e| backend("migrate", e))?;
                let columns = info
                    .query_map([], |r| r.get::<_, String>(1))
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| backend("migrate", e))?;
                present.extend(columns.into_iter().map(|c| ((*table).to_owned(), c)));
            }
            check_peer_layout(
                NAME,
                &needed,
                &present,
                NameCase::Exact,
                "choose other table names (SqliteConfig::tables) or move that table away",
            )?;
            check_view(&tx, &tables.versions)?;
            upgrade_first_layout(&tx, &tables, &present)?;
            // An event table of an older layout gains the columns added since.
            for (table, column) in columns_to_add(&added, &present, NameCase::Insensitive) {
                let alter = add_column(table, column).ok_or_else(|| {
                    StoreError::backend(NAME, "migrate", format!("no definition of {column}"))
                })?;
                tx.execute_batch(&alter)
                    .map_err(|e| backend("migrate", e))?;
            }
            tx.execute_batch(&sql.ddl)
                .map_err(|e| backend("migrate", e))?;
            tx.commit().map_err(|e| backend("migrate", e))
        })
        .await
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReceipt, StoreError> {
        let ahead = Ahead::of(&batch)?;
        self.write_batch(batch, ahead).await
    }

    fn prepare(&self, batch: CommitBatch) -> Result<PreparedBatch, StoreError> {
        let ahead = Ahead::of(&batch)?;
        Ok(PreparedBatch::with(batch, ahead))
    }

    async fn commit_prepared(&self, prepared: PreparedBatch) -> Result<CommitReceipt, StoreError> {
        // Only this crate makes an `Ahead`, from the batch it is kept with (which nothing can
        // change); a batch prepared by another store is prepared here.
        let (batch, ahead) = prepared.into_parts::<Ahead>();
        let ahead = match ahead {
            Some(ahead) => ahead,
            None => Ahead::of(&batch)?,
        };
        self.write_batch(batch, ahead).await
    }

    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError> {
        let id = id.0.clone();
        self.lookup("state", move |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.select_state)
                .map_err(|e| backend("state", e))?;
            stmt.query_row([id], state_from_row)
                .optional()
                .map_err(|e| backend("state", e))?
                .transpose()
        })
        .await
    }

    async fn state_at(&self, id: &StateId, version: u64) -> Result<Option<State>, StoreError> {
        let Ok(version) = i64::try_from(version) else {
            return Ok(None);
        };
        let id = id.0.clone();
        self.lookup("state_at", move |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.select_state_at)
                .map_err(|e| backend("state_at", e))?;
            match stmt
                .query_row(rusqlite::params![id, version], state_from_row)
                .optional()
            {
                Ok(read) => read.transpose(),
                Err(e) => Err(unparsed_section(conn, sql, &id, version)
                    .unwrap_or_else(|| backend("state_at", e))),
            }
        })
        .await
    }

    async fn state_ids(&self) -> Result<Vec<StateId>, StoreError> {
        self.scan("state_ids", |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.state_ids)
                .map_err(|e| backend("state_ids", e))?;
            let rows = stmt
                .query_map([], |r| Ok(Ok(StateId(r.get(0)?))))
                .map_err(|e| backend("state_ids", e))?;
            collect("state_ids", rows)
        })
        .await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let filter = filter.clone();
        self.scan("events", move |conn, sql| {
            let mut text = sql.select_events.clone();
            let mut params: Vec<SqlValue> = Vec::new();
            let mut cond = |column: &str, op: &str, v: SqlValue| {
                text.push_str(&format!(" AND {column} {op} ?{}", params.len() + 1));
                params.push(v);
            };
            if let Some(s) = &filter.state_id {
                cond("state_id", "=", SqlValue::Text(s.0.clone()));
            }
            if let Some(a) = &filter.actor {
                cond("actor", "=", SqlValue::Text(a.0.clone()));
            }
            if let Some(n) = &filter.origin_node {
                cond("origin_node", "=", SqlValue::Text(n.0.clone()));
            }
            if let Some(s) = filter.after_origin_seq {
                let s = i64::try_from(s.0).unwrap_or(i64::MAX);
                cond("origin_seq", ">", SqlValue::Integer(s));
            }
            if let Some(o) = filter.outcome {
                cond("outcome", "=", SqlValue::Text(o.as_str().to_owned()));
            }
            if let Some(k) = filter.kind {
                cond("kind", "=", SqlValue::Text(k.as_str().to_owned()));
            }
            text.push_str(" ORDER BY pos");
            if let Some(l) = filter.limit {
                text.push_str(&format!(" LIMIT ?{}", params.len() + 1));
                params.push(SqlValue::Integer(i64::try_from(l).unwrap_or(i64::MAX)));
            }
            let mut stmt = conn
                .prepare_cached(&text)
                .map_err(|e| backend("events", e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params.iter()), event_from_row)
                .map_err(|e| backend("events", e))?;
            collect("events", rows)?
                .into_iter()
                .map(|e| resolve_event(conn, sql, e))
                .collect()
        })
        .await
    }

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let id = id.to_string();
        self.lookup("event", move |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.select_event)
                .map_err(|e| backend("event", e))?;
            stmt.query_row([id], event_from_row)
                .optional()
                .map_err(|e| backend("event", e))?
                .transpose()?
                .map(|e| resolve_event(conn, sql, e))
                .transpose()
        })
        .await
    }

    async fn last_origin_seq(&self, node: &NodeId) -> Result<OriginSeq, StoreError> {
        let node = node.0.clone();
        self.lookup("last_origin_seq", move |conn, sql| {
            let max: Option<i64> = conn
                .prepare_cached(&sql.last_origin_seq)
                .and_then(|mut s| s.query_row([node], |r| r.get(0)))
                .map_err(|e| backend("last_origin_seq", e))?;
            Ok(OriginSeq(max.map_or(0, i64::unsigned_abs)))
        })
        .await
    }

    async fn put_actor(&self, actor: &Actor) -> Result<(), StoreError> {
        const OP: &str = "put_actor";
        let key = hex_text("actor.public_key", actor.public_key)?;
        let actor = actor.clone();
        self.write_tx(OP, move |tx, sql| {
            tx.prepare_cached(&sql.upsert_actor)
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        actor.id.0,
                        actor.node.0,
                        key,
                        actor.status.as_str()
                    ])
                })
                .map_err(|e| backend(OP, e))?;
            append_log(tx, sql, OP, &LogRecord::Actor(&actor))
        })
        .await
    }

    async fn actor(&self, id: &ActorId) -> Result<Option<Actor>, StoreError> {
        let id = id.0.clone();
        self.lookup("actor", move |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.select_actor)
                .map_err(|e| backend("actor", e))?;
            stmt.query_row([id], actor_from_row)
                .optional()
                .map_err(|e| backend("actor", e))?
                .transpose()
        })
        .await
    }

    async fn actors(&self) -> Result<Vec<Actor>, StoreError> {
        self.scan("actors", |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.select_actors)
                .map_err(|e| backend("actors", e))?;
            let rows = stmt
                .query_map([], actor_from_row)
                .map_err(|e| backend("actors", e))?;
            collect("actors", rows)
        })
        .await
    }

    async fn put_contract(&self, contract: &ContractRecord) -> Result<(), StoreError> {
        const OP: &str = "put_contract";
        let record = json_text("contract", contract)?;
        let key = contract.contract().clone();
        let identity = contract.identity.to_string();
        let deployer = contract.deployer.0.clone();
        let contract = contract.clone();
        self.write_tx(OP, move |tx, sql| {
            let be = |e| backend(OP, e);
            let version = i64::from(key.version);
            let existing: Option<String> = tx
                .prepare_cached(&sql.contract_identity)
                .and_then(|mut s| {
                    s.query_row(rusqlite::params![key.name, version], |r| r.get(0))
                        .optional()
                })
                .map_err(be)?;
            let existing = existing
                .map(|e| {
                    e.parse::<Digest>().map_err(|err| {
                        StoreError::malformed(format!("contract {key} identity"), err)
                    })
                })
                .transpose()?;
            if ContractPut::decide(existing.as_ref(), &contract)? == ContractPut::AlreadyRecorded {
                return Ok(());
            }
            tx.prepare_cached(&sql.insert_contract)
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        key.name, version, identity, deployer, record
                    ])
                })
                .map_err(|e| {
                    conflict_or_backend(OP, e, || {
                        StoreError::contract_identity(&key, "(concurrent)", contract.identity)
                    })
                })?;
            append_log(tx, sql, OP, &LogRecord::Contract(&contract))
        })
        .await
    }

    async fn contract(&self, contract: &ContractRef) -> Result<Option<ContractRecord>, StoreError> {
        let name = contract.name.clone();
        let version = i64::from(contract.version);
        self.lookup("contract", move |conn, sql| {
            let text: Option<String> = conn
                .prepare_cached(&sql.select_contract)
                .and_then(|mut s| {
                    s.query_row(rusqlite::params![name, version], |r| r.get(0))
                        .optional()
                })
                .map_err(|e| backend("contract", e))?;
            text.as_deref().map(contract_from_text).transpose()
        })
        .await
    }

    async fn put_refusal(&self, refusal: &Refusal) -> Result<(), StoreError> {
        const OP: &str = "put_refusal";
        check_refusal(refusal)?;
        let params = (
            refusal.event.to_string(),
            refusal.state_id.0.clone(),
            to_i64("version", refusal.version)?,
            refusal.from_node.0.clone(),
            refusal.reason.code(),
            json_text("reason", &refusal.reason)?,
            refusal.at.0,
        );
        let refusal = refusal.clone();
        self.write_tx(OP, move |tx, sql| {
            tx.prepare_cached(&sql.upsert_refusal)
                .and_then(|mut s| s.execute(params.clone()))
                .map_err(|e| backend(OP, e))?;
            append_log(tx, sql, OP, &LogRecord::Refusal(&refusal))
        })
        .await
    }

    async fn refusals(&self, state: Option<&StateId>) -> Result<Vec<Refusal>, StoreError> {
        const OP: &str = "refusals";
        let state = state.map(|s| s.0.clone());
        self.scan(OP, move |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.select_refusals)
                .map_err(|e| backend(OP, e))?;
            let rows = stmt
                .query_map([state], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| backend(OP, e))?;
            rows.into_iter()
                .map(|(event, state_id, version, from_node, reason, at)| {
                    let what = format!("refusal of event {event}");
                    Ok(Refusal {
                        event: event.parse().map_err(|e| StoreError::malformed(&what, e))?,
                        state_id: StateId(state_id),
                        version: u64::try_from(version)
                            .map_err(|e| StoreError::malformed(&what, e))?,
                        from_node: NodeId(from_node),
                        reason: serde_json::from_str(&reason)
                            .map_err(|e| StoreError::malformed(&what, format!("reason: {e}")))?,
                        at: Timestamp(at),
                    })
                })
                .collect()
        })
        .await
    }

    async fn clear_refusal(&self, event: &EventId) -> Result<(), StoreError> {
        const OP: &str = "clear_refusal";
        let event = *event;
        let id = event.to_string();
        self.write_tx(OP, move |tx, sql| {
            let deleted = tx
                .prepare_cached(&sql.delete_refusal)
                .and_then(|mut s| s.execute([&id]))
                .map_err(|e| backend(OP, e))?;
            if deleted == 0 {
                return Ok(());
            }
            append_log(tx, sql, OP, &LogRecord::RefusalCleared(&event))
        })
        .await
    }

    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        self.scan("contracts", |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.select_contracts)
                .map_err(|e| backend("contracts", e))?;
            let rows = stmt
                .query_map([], |r| Ok(contract_from_text(&r.get::<_, String>(0)?)))
                .map_err(|e| backend("contracts", e))?;
            collect("contracts", rows)
        })
        .await
    }

    async fn log(&self, after: u64, limit: Option<usize>) -> Result<Vec<LogEntry>, StoreError> {
        const OP: &str = "log";
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        // A negative LIMIT is no limit in SQLite.
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        self.scan(OP, move |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.select_log)
                .map_err(|e| backend(OP, e))?;
            let rows = stmt
                .query_map([after, limit], log_entry_from_row)
                .map_err(|e| backend(OP, e))?;
            collect(OP, rows)
        })
        .await
    }

    async fn log_head(&self) -> Result<LogHead, StoreError> {
        self.lookup("log_head", |conn, sql| read_log_head(conn, sql, "log_head"))
            .await
    }

    async fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        const OP: &str = "put_checkpoint";
        let cp = checkpoint.checkpoint.clone();
        let signature = hex_text("checkpoint.signature", checkpoint.signature)?;
        let pos = to_i64("checkpoint.pos", cp.pos)?;
        self.write_tx(OP, move |tx, sql| {
            let held: Option<String> = tx
                .prepare_cached(&sql.checkpoint_head)
                .and_then(|mut s| {
                    s.query_row(rusqlite::params![cp.node.0, pos], |r| r.get(0))
                        .optional()
                })
                .map_err(|e| backend(OP, e))?;
            if let Some(held) = held {
                let held = held.parse::<Digest>().map_err(|e| {
                    let what = format!("checkpoint of node {} at log position {pos}", cp.node);
                    StoreError::malformed(what, format!("head: {e}"))
                })?;
                return if held == cp.head {
                    Ok(())
                } else {
                    Err(StoreError::checkpoint_conflict(&cp.node, cp.pos).into())
                };
            }
            tx.prepare_cached(&sql.insert_checkpoint)
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        cp.node.0,
                        pos,
                        cp.head.to_string(),
                        cp.at.0,
                        signature
                    ])
                })
                .map_err(|e| {
                    conflict_or_backend(OP, e, || StoreError::checkpoint_conflict(&cp.node, cp.pos))
                })?;
            Ok(())
        })
        .await
    }

    async fn checkpoints(&self, node: &NodeId) -> Result<Vec<SignedCheckpoint>, StoreError> {
        const OP: &str = "checkpoints";
        let node = node.0.clone();
        self.scan(OP, move |conn, sql| {
            let mut stmt = conn
                .prepare_cached(&sql.select_checkpoints)
                .map_err(|e| backend(OP, e))?;
            let rows = stmt
                .query_map([node], checkpoint_from_row)
                .map_err(|e| backend(OP, e))?;
            collect(OP, rows)
        })
        .await
    }

    async fn prune_checkpoints(&self, node: &NodeId, keep: usize) -> Result<usize, StoreError> {
        const OP: &str = "prune_checkpoints";
        check_prune_keep(keep)?;
        let node = node.0.clone();
        // The newest checkpoint beyond the `keep` latest; it and everything older goes.
        let skip = i64::try_from(keep).unwrap_or(i64::MAX);
        self.write_tx(OP, move |tx, sql| {
            let cut: Option<i64> = tx
                .prepare_cached(&sql.checkpoint_cut)
                .and_then(|mut s| {
                    s.query_row(rusqlite::params![node, skip], |r| r.get(0))
                        .optional()
                })
                .map_err(|e| backend(OP, e))?;
            let Some(cut) = cut else {
                return Ok(0);
            };
            let deleted = tx
                .prepare_cached(&sql.prune_checkpoints)
                .and_then(|mut s| s.execute(rusqlite::params![node, cut]))
                .map_err(|e| backend(OP, e))?;
            Ok(deleted)
        })
        .await
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        const OP: &str = "sink_cursor";
        check_sink_name(sink)?;
        let sink = sink.to_owned();
        self.lookup(OP, move |conn, sql| {
            let pos: Option<i64> = conn
                .prepare_cached(&sql.select_sink_cursor)
                .and_then(|mut s| s.query_row([&sink], |r| r.get(0)).optional())
                .map_err(|e| backend(OP, e))?;
            pos.map(|p| {
                u64::try_from(p)
                    .map_err(|e| StoreError::malformed(format!("cursor of sink {sink}"), e))
            })
            .transpose()
        })
        .await
    }

    async fn set_sink_cursor(&self, sink: &str, position: u64) -> Result<(), StoreError> {
        const OP: &str = "set_sink_cursor";
        check_sink_name(sink)?;
        let pos = to_i64("position", position)?;
        let sink = sink.to_owned();
        self.write_tx(OP, move |tx, sql| {
            tx.prepare_cached(&sql.upsert_sink_cursor)
                .and_then(|mut s| s.execute(rusqlite::params![sink, pos]))
                .map_err(|e| backend(OP, e))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use conformance_tests::fixtures::state_id;
    use conformance_tests::fixtures::{actor, create, create_redacted, deal_parties, deal_values};

    use super::*;
    use crate::WriterError;

    /// The JSON columns of a history row and the current row's data document, serialised
    /// straight from the sections, are exactly the text of the values [`State::to_parts`]
    /// gives, for disclosed and redacted sections alike.
    #[test]
    fn state_row_json_columns_are_the_text_of_to_parts() {
        let (a, k) = actor("acme", "alice");
        let values = deal_values(500_000, 4.25);
        let full = create(
            &state_id("row"),
            deal_parties(),
            values.clone(),
            (&a, &k),
            1,
        );
        let redacted = create_redacted(
            &state_id("row"),
            deal_parties(),
            values,
            (&a, &k),
            2,
            &["common"],
        );
        for item in [full, redacted] {
            let state = item.state.expect("a create has a state");
            let row = HistoryRow::new(&state, "items[0].state").expect("row");
            let parts = state.to_parts();
            let text = |v: &Value| SqlValue::Text(v.to_string());
            assert_eq!(row.0[4], text(&parts.parties));
            assert_eq!(row.0[5], text(&parts.seals));
            let data = data_text(&state, "data", |_| None, |_, _| {}).expect("data");
            assert_eq!(data, parts.data.to_string());
            // Prepared texts are used as they are, for the sections that have one.
            let price = r#"{"amount":1,"currency":"XTS"}"#;
            let prepared = |name: &str| (name == "price").then_some(price);
            let mut want = parts.data.clone();
            if let Some(p) = want.get_mut("price") {
                *p = serde_json::from_str(price).expect("json");
            }
            let data = data_text(&state, "data", prepared, |_, _| {}).expect("data");
            assert_eq!(data, want.to_string());
            let created = CreatedData::new(&state, "items[0].state").expect("created");
            assert_eq!(created.data, parts.data.to_string());
            for (name, value) in parts.data.as_object().expect("an object") {
                assert_eq!(created.value(name), Some(value.to_string().as_str()));
            }
            assert_eq!(row.0[6], SqlValue::Text(parts.root));
            assert_eq!(
                row.0[7],
                parts.prev_root.map_or(SqlValue::Null, SqlValue::Text)
            );
            assert_eq!(
                row.0[8],
                parts.last_event.map_or(SqlValue::Null, SqlValue::Text)
            );
        }
    }

    /// A patch is written whole when the sections it sets outweigh the rest of the document,
    /// and patched in SQL otherwise.
    #[test]
    fn a_patch_is_written_whole_when_it_sets_most_of_the_document() {
        let (a, k) = actor("acme", "alice");
        let item = create(
            &state_id("most"),
            deal_parties(),
            deal_values(500_000, 4.25),
            (&a, &k),
            1,
        );
        let state = item.state.expect("a create has a state");
        let set = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let big = format!("\"{}\"", "x".repeat(10_000));
        let none = |_: &str| None;
        // The sections' own sizes: `inspection` is the largest of three similar ones.
        assert!(!sets_most_of(&state, &set(&["price"]), none));
        assert!(sets_most_of(
            &state,
            &set(&["common", "inspection", "price"]),
            none
        ));
        assert!(sets_most_of(&state, &set(&["common", "inspection"]), none));
        // A prepared text counts as it is.
        let large = |name: &str| (name == "price").then_some(big.as_str());
        assert!(sets_most_of(&state, &set(&["price"]), large));
        assert!(!sets_most_of(&state, &set(&["common"]), large));
        // Setting nothing is never most of it.
        assert!(!sets_most_of(&state, &[], none));
    }

    /// Only names that `$."name"` quotes exactly are patched in SQL.
    #[test]
    fn names_with_a_quote_or_backslash_are_not_patched() {
        assert!(quotable("price"));
        assert!(quotable("a.b [c] $d é"));
        assert!(!quotable(""));
        assert!(!quotable("say \"hi\""));
        assert!(!quotable("back\\slash"));
    }

    /// A first-layout history row yields a section row per salted seal whose value the data
    /// holds, with the hash as spelt in the seals column; redacted sections yield none.
    #[test]
    fn first_layout_rows_yield_their_disclosed_sections() {
        let rows = first_layout_sections(
            "s",
            1,
            r#"{"a": {"hash": "H:1", "salt": "x"}, "b": {"hash": "H:2"}, "c": {"hash": "H:3", "salt": null}}"#,
            r#"{"a": {"n": 1.5, "t": "é"}}"#,
        )
        .expect("rows");
        assert_eq!(
            rows,
            vec![("a".into(), "H:1".into(), r#"{"n":1.5,"t":"é"}"#.into())]
        );
        assert!(matches!(
            first_layout_sections("s", 1, "[]", "{}"),
            Err(StoreError::Integrity { .. })
        ));
    }

    /// A job that panics inside a transaction it opened is reported as a typed error, its
    /// writes are rolled back, and the writer thread goes on serving the store.
    #[tokio::test(flavor = "current_thread")]
    async fn a_job_panicking_mid_transaction_is_rolled_back_and_reported() {
        let store = SqliteStore::open_migrated(SqliteConfig::memory())
            .await
            .expect("open");
        let err = store
            .write("boom", |conn, sql| -> Result<(), StoreError> {
                conn.execute_batch("BEGIN IMMEDIATE")
                    .map_err(|e| backend("boom", e))?;
                conn.execute(&sql.upsert_sink_cursor, rusqlite::params!["half", 7])
                    .map_err(|e| backend("boom", e))?;
                panic!("bug in a job")
            })
            .await
            .expect_err("a panicking job fails");
        match &err {
            StoreError::Backend {
                operation: "boom",
                retryable: false,
                source,
                ..
            } => assert!(
                matches!(
                    source.downcast_ref::<WriterError>(),
                    Some(WriterError::Panicked { message }) if message == "bug in a job"
                ),
                "{source:?}"
            ),
            other => panic!("expected a Backend error, got {other:?}"),
        }
        assert_eq!(
            store.sink_cursor("half").await.expect("read"),
            None,
            "the panicked job's write was rolled back"
        );
        store.set_sink_cursor("after", 3).await.expect("next write");
        assert_eq!(store.sink_cursor("after").await.expect("read"), Some(3));
    }
}
