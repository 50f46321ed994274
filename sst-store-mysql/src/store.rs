//! [`MysqlStore`]: the [`Store`] contract on MySQL 8 / MariaDB through a mysql_async pool,
//! with `JSON` columns and one InnoDB transaction per commit batch.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{
    IsolationLevel, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Row, Transaction,
    TxOpts, Value as My,
};
use serde_json::Value;
use sst_core::model::StateParts;
use sst_core::raw::columns::{json_text, outcome_from_columns};
use sst_core::raw::EventColumns;
use sst_core::{
    Actor, ActorId, CommitBatch, CommitReceipt, ContractRecord, ContractRef, Disclosure,
    EventFilter, EventId, EventRecord, NodeId, OriginSeq, SignedEvent, State, StateId, Store,
    StoreError,
};

use crate::config::{check_identifier, MysqlConfig};
use crate::error::{
    backend, check_id, conflict_or_backend, is_deadlock, is_unique_violation, to_i64,
};
use crate::schema::{self, Flavor, Names, COLLATIONS};
use crate::NAME;

/// Columns of a state row, in the order the `SELECT`s and `INSERT`s below list them.
const STATE_COLUMNS: &str = "id, contract_name, contract_version, version, parties, seals, \
                             data, root, prev_root, last_event, updated_at";

/// Columns of an event row, in the order the `INSERT`s below list them.
const EVENT_COLUMNS: &str = "id, state_id, kind, contract_name, contract_version, actor, \
                             origin_node, origin_seq, outcome, reason, reason_detail, \
                             new_version, new_root, event, disclosures";

/// Most placeholders one statement may carry (the protocol counts them in 16 bits).
const MAX_PLACEHOLDERS: usize = 65_535;

/// Most ids one `IN (…)` list carries; longer lists are split.
const MAX_IN_LIST: usize = 1_000;

/// Rough cap on the bound bytes of one multi-row `INSERT`, well below the servers' default
/// `max_allowed_packet` (16 MiB on MariaDB, 64 MiB on MySQL 8).
const MAX_INSERT_BYTES: usize = 4 << 20;

/// Columns of an event row needed to rebuild an [`EventRecord`].
const EVENT_SELECT: &str = "event, disclosures, outcome, reason_detail, new_version, new_root";

/// Statements every pooled connection runs once: utf8mb4 on the wire and strict mode, so a
/// value that does not fit is an error and never silently truncated.
const SESSION_INIT: [&str; 2] = [
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
];

/// SQL text, built once per store from the configured names.
#[derive(Debug)]
struct Sql {
    /// `SELECT id, version … WHERE id IN (` — locks the current rows of a batch's states.
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
    /// `ON DUPLICATE KEY UPDATE …` of every state column but the id (rows known to exist).
    update_states_tail: String,
    event_exists: String,
    insert_event: String,
    lock_state: String,
    state_version: String,
    insert_state: String,
    update_state: String,
    insert_history: String,
    state: String,
    state_at: String,
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
}

impl Sql {
    fn new(n: &Names) -> Self {
        let eleven = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";
        Sql {
            lock_states_head: format!("SELECT id, version FROM {} WHERE id IN (", n.state),
            seen_ids_head: format!(
                "SELECT id, origin_node, origin_seq FROM {} WHERE id IN (",
                n.event
            ),
            seen_origins_head: format!(
                "SELECT id, origin_node, origin_seq FROM {} WHERE ",
                n.event
            ),
            insert_events_head: format!("INSERT INTO {} ({EVENT_COLUMNS}) VALUES ", n.event),
            insert_states_head: format!("INSERT INTO {} ({STATE_COLUMNS}) VALUES ", n.state),
            insert_histories_head: format!("INSERT INTO {} ({STATE_COLUMNS}) VALUES ", n.history),
            update_states_tail: format!(
                " ON DUPLICATE KEY UPDATE {}",
                STATE_COLUMNS
                    .split(',')
                    .map(str::trim)
                    .filter(|c| *c != "id")
                    .map(|c| format!("{c} = VALUES({c})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            event_exists: format!("SELECT 1 FROM {} WHERE id = ?", n.event),
            insert_event: format!(
                "INSERT INTO {} ({EVENT_COLUMNS}) VALUES ({eleven}, ?, ?, ?, ?)",
                n.event
            ),
            lock_state: format!("SELECT version FROM {} WHERE id = ? FOR UPDATE", n.state),
            state_version: format!("SELECT version FROM {} WHERE id = ?", n.state),
            insert_state: format!(
                "INSERT INTO {} ({STATE_COLUMNS}) VALUES ({eleven})",
                n.state
            ),
            update_state: format!(
                "UPDATE {} SET contract_name = ?, contract_version = ?, version = ?, \
                 parties = ?, seals = ?, data = ?, root = ?, prev_root = ?, last_event = ?, \
                 updated_at = ? WHERE id = ?",
                n.state
            ),
            insert_history: format!(
                "INSERT INTO {} ({STATE_COLUMNS}) VALUES ({eleven})",
                n.history
            ),
            state: format!("SELECT {STATE_COLUMNS} FROM {} WHERE id = ?", n.state),
            state_at: format!(
                "SELECT {STATE_COLUMNS} FROM {} WHERE id = ? AND version = ?",
                n.history
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
/// * `commit` runs one `READ COMMITTED` InnoDB transaction per batch and locks the
///   current-state rows with `SELECT … FOR UPDATE`; a batch of several items is checked with
///   two queries and written with multi-row `INSERT`s; the unique keys `(id, version)` of the
///   history and `(origin_node, origin_seq)` of the events are the backstop (duplicate key
///   1062 is a [`StoreError::Conflict`]).
#[derive(Debug, Clone)]
pub struct MysqlStore {
    pool: Pool,
    config: Arc<MysqlConfig>,
    database: String,
    names: Arc<Names>,
    sql: Arc<Sql>,
}

/// Bound values of one state row, in [`STATE_COLUMNS`] order.
struct StateRow {
    id: String,
    version: i64,
    values: Vec<My>,
}

impl StateRow {
    fn new(at: &str, s: &State) -> Result<Self, StoreError> {
        let p = s.to_parts();
        check_id(&format!("{at}.id"), p.id.as_str())?;
        check_id(&format!("{at}.contract.name"), &p.contract.name)?;
        let version = to_i64(&format!("{at}.version"), p.version)?;
        let values = vec![
            My::from(p.id.as_str()),
            My::from(p.contract.name),
            My::from(p.contract.version),
            My::from(version),
            My::from(json_text(&format!("{at}.parties"), &p.parties)?),
            My::from(json_text(&format!("{at}.seals"), &p.seals)?),
            My::from(json_text(&format!("{at}.data"), &p.data)?),
            My::from(p.root),
            My::from(p.prev_root),
            My::from(p.last_event),
            My::from(p.updated_at),
        ];
        Ok(StateRow {
            id: p.id.0,
            version,
            values,
        })
    }

    /// Parameters of `UPDATE … SET <all but id> WHERE id = ?`.
    fn update_params(&self) -> Vec<My> {
        let mut v: Vec<My> = self.values[1..].to_vec();
        v.push(self.values[0].clone());
        v
    }
}

/// Bound values of one event row, in `insert_event` order.
struct EventRow {
    id: EventId,
    origin_node: String,
    origin_seq: u64,
    values: Vec<My>,
}

impl EventRow {
    fn new(at: &str, r: &EventRecord) -> Result<Self, StoreError> {
        let e = r.event();
        for (field, v) in [
            ("state_id", e.state_id.as_str()),
            ("contract.name", &e.contract.name),
            ("actor", e.actor.as_str()),
            ("origin_node", e.origin_node.as_str()),
        ] {
            check_id(&format!("{at}.event.{field}"), v)?;
        }
        let c = EventColumns::from_record(at, r)?;
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

fn state_from_row(mut row: Row) -> Result<State, StoreError> {
    let id: String = take(&mut row, "id", &|| "state row".to_owned())?;
    let version: i64 = take(&mut row, "version", &|| format!("state {id}"))?;
    let what = || format!("state {id} version {version}");
    let parts = StateParts {
        id: StateId(id.clone()),
        contract: ContractRef::new(
            take::<String>(&mut row, "contract_name", &what)?,
            take::<u32>(&mut row, "contract_version", &what)?,
        ),
        version: u64::try_from(version).map_err(|e| StoreError::malformed(what(), e))?,
        parties: take_json(&mut row, "parties", &what)?,
        seals: take_json(&mut row, "seals", &what)?,
        data: take_portable(&mut row, "data", &what)?,
        root: take(&mut row, "root", &what)?,
        prev_root: take(&mut row, "prev_root", &what)?,
        last_event: take(&mut row, "last_event", &what)?,
        updated_at: take(&mut row, "updated_at", &what)?,
    };
    State::from_parts(parts).map_err(|source| StoreError::Integrity {
        what: what(),
        source,
    })
}

fn event_from_row(mut row: Row) -> Result<EventRecord, StoreError> {
    let what = || "event row".to_owned();
    let signed: SignedEvent = serde_json::from_value(take_json(&mut row, "event", &what)?)
        .map_err(|e| StoreError::malformed(what(), format!("event: {e}")))?;
    let what = || format!("event {}", signed.id);
    let disclosures: BTreeMap<String, Disclosure> =
        serde_json::from_value(take_portable(&mut row, "disclosures", &what)?)
            .map_err(|e| StoreError::malformed(what(), format!("disclosures: {e}")))?;
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
    Ok(EventRecord {
        signed,
        disclosures,
        outcome,
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

fn contract_from_row(mut row: Row) -> Result<ContractRecord, StoreError> {
    let what = || "contract row".to_owned();
    serde_json::from_value(take_json(&mut row, "record", &what)?)
        .map_err(|e| StoreError::malformed(what(), e))
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
    tx: &mut Transaction<'static>,
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

    /// Starts the `READ COMMITTED` transaction of one commit batch.
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

    /// Commits a batch with a fixed number of statements: lock the current rows of every
    /// touched state (one `SELECT … FOR UPDATE`, in id order), look up recorded event ids and
    /// used origin sequences (one `UNION ALL` query), check every item in order exactly as
    /// [`Self::commit_per_item`] does, then write events, history rows, new and updated
    /// current rows with one multi-row `INSERT` each (split only past the placeholder or
    /// packet limits). Returns `None`, with nothing written, when an insert hits a duplicate
    /// key or a deadlock: a concurrent writer got there between the checks and the insert.
    async fn commit_batched(
        &self,
        rows: &[(EventRow, Option<StateRow>)],
    ) -> Result<Option<CommitReceipt>, StoreError> {
        let op = "commit";
        let mut tx = self.begin(op).await?;
        match self.check_and_write(&mut tx, rows).await {
            Ok(Some(receipt)) => {
                tx.commit().await.map_err(|e| backend(op, e))?;
                Ok(Some(receipt))
            }
            Ok(None) => {
                tx.rollback().await.map_err(|e| backend(op, e))?;
                Ok(None)
            }
            Err(e) => {
                // The error is the answer; a failed rollback ends with the connection.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn check_and_write(
        &self,
        tx: &mut Transaction<'static>,
        rows: &[(EventRow, Option<StateRow>)],
    ) -> Result<Option<CommitReceipt>, StoreError> {
        let op = "commit";
        // Lock first: a concurrent writer of the same states finishes before the event
        // lookups below, so its events read as recorded (duplicates), as item by item.
        let state_ids: BTreeSet<&str> = rows
            .iter()
            .filter_map(|(_, s)| s.as_ref().map(|s| s.id.as_str()))
            .collect();
        let state_ids: Vec<&str> = state_ids.into_iter().collect();
        let mut stored: HashMap<String, i64> = HashMap::new();
        for chunk in state_ids.chunks(MAX_IN_LIST) {
            let sql = format!(
                "{}{}) ORDER BY id FOR UPDATE",
                self.sql.lock_states_head,
                placeholders(chunk.len(), 1)
            );
            let found: Vec<(String, i64)> = tx
                .exec(
                    sql,
                    chunk.iter().map(|id| My::from(*id)).collect::<Vec<_>>(),
                )
                .await
                .map_err(|e| backend(op, e))?;
            stored.extend(found);
        }
        let mut recorded: HashSet<String> = HashSet::new();
        let mut used: HashSet<(String, u64)> = HashSet::new();
        for chunk in rows.chunks(MAX_IN_LIST) {
            let sql = format!(
                "{}{}) UNION ALL {}{}",
                self.sql.seen_ids_head,
                placeholders(chunk.len(), 1),
                self.sql.seen_origins_head,
                vec!["(origin_node = ? AND origin_seq = ?)"; chunk.len()].join(" OR ")
            );
            let mut values: Vec<My> = chunk.iter().map(|(ev, _)| ev.values[0].clone()).collect();
            for (ev, _) in chunk {
                values.push(ev.values[6].clone());
                values.push(ev.values[7].clone());
            }
            let found: Vec<(String, String, i64)> =
                tx.exec(sql, values).await.map_err(|e| backend(op, e))?;
            for (id, node, seq) in found {
                recorded.insert(id);
                if let Ok(seq) = u64::try_from(seq) {
                    used.insert((node, seq));
                }
            }
        }
        // The same checks, in the same order, as `commit_per_item`.
        let mut receipt = CommitReceipt::default();
        let mut events: Vec<&[My]> = Vec::with_capacity(rows.len());
        let mut history: Vec<&[My]> = Vec::new();
        let mut versions: HashMap<&str, i64> = HashMap::new();
        let mut latest: BTreeMap<&str, &StateRow> = BTreeMap::new();
        let mut origins: HashSet<(&str, u64)> = HashSet::new();
        for (ev, state) in rows {
            if recorded.contains(&ev.id.to_string()) {
                receipt.duplicates.push(ev.id);
                continue;
            }
            let origin = (ev.origin_node.as_str(), ev.origin_seq);
            if used.contains(&(ev.origin_node.clone(), ev.origin_seq)) || !origins.insert(origin) {
                return Err(StoreError::conflict(
                    sst_core::ConflictKind::OriginTaken,
                    format!("origin {} seq {}", ev.origin_node, ev.origin_seq),
                    ev.origin_seq.saturating_sub(1),
                    ev.origin_seq,
                ));
            }
            if let Some(s) = state {
                let current = versions
                    .get(s.id.as_str())
                    .or_else(|| stored.get(&s.id))
                    .copied()
                    .unwrap_or(0);
                if current + 1 != s.version {
                    return Err(StoreError::conflict(
                        sst_core::ConflictKind::StaleVersion,
                        format!("state {}", s.id),
                        (s.version - 1) as u64,
                        current as u64,
                    ));
                }
                versions.insert(&s.id, s.version);
                latest.insert(&s.id, s);
                history.push(&s.values);
            }
            events.push(&ev.values);
            receipt.committed.push(ev.id);
        }
        let (updated, created): (Vec<&StateRow>, Vec<&StateRow>) = latest
            .into_values()
            .partition(|s| stored.contains_key(&s.id));
        let created: Vec<&[My]> = created.iter().map(|s| s.values.as_slice()).collect();
        let updated: Vec<&[My]> = updated.iter().map(|s| s.values.as_slice()).collect();
        for (head, tail, rows) in [
            (&self.sql.insert_events_head, "", &events),
            (&self.sql.insert_histories_head, "", &history),
            (&self.sql.insert_states_head, "", &created),
            (
                &self.sql.insert_states_head,
                self.sql.update_states_tail.as_str(),
                &updated,
            ),
        ] {
            match insert_rows(tx, head, tail, rows).await {
                Ok(()) => {}
                // A concurrent writer of the same events: a duplicate key, or a deadlock
                // when it waits on one row while this insert needs the gap before it.
                Err(e) if is_unique_violation(&e) || is_deadlock(&e) => return Ok(None),
                Err(e) => return Err(backend(op, e)),
            }
        }
        Ok(Some(receipt))
    }

    /// Commits a batch one statement per check and row: single items, and batches that raced
    /// a concurrent writer in [`Self::commit_batched`].
    async fn commit_per_item(
        &self,
        rows: Vec<(EventRow, Option<StateRow>)>,
    ) -> Result<CommitReceipt, StoreError> {
        let op = "commit";
        let mut receipt = CommitReceipt::default();
        let mut tx = self.begin(op).await?;
        for (ev, state) in rows {
            let id_param = || vec![ev.values[0].clone()];
            let seen: Option<i64> = tx
                .exec_first(self.sql.event_exists.as_str(), id_param())
                .await
                .map_err(|e| backend(op, e))?;
            if seen.is_some() {
                receipt.duplicates.push(ev.id);
                continue;
            }
            if let Err(e) = tx
                .exec_drop(self.sql.insert_event.as_str(), ev.values.clone())
                .await
            {
                if !is_unique_violation(&e) {
                    return Err(backend(op, e));
                }
                // Either a concurrent writer recorded the same event meanwhile (a replay:
                // skip it) or another event holds this (origin_node, origin_seq).
                let seen: Option<i64> = tx
                    .exec_first(self.sql.event_exists.as_str(), id_param())
                    .await
                    .map_err(|e| backend(op, e))?;
                if seen.is_some() {
                    receipt.duplicates.push(ev.id);
                    continue;
                }
                return Err(conflict_or_backend(op, e, || {
                    StoreError::origin_taken(
                        &ev.origin_node.as_str().into(),
                        OriginSeq(ev.origin_seq),
                    )
                }));
            }
            if let Some(s) = state {
                let conflict = |found: i64| {
                    StoreError::conflict(
                        sst_core::ConflictKind::StaleVersion,
                        format!("state {}", s.id),
                        (s.version - 1) as u64,
                        found as u64,
                    )
                };
                let current: Option<i64> = tx
                    .exec_first(self.sql.lock_state.as_str(), vec![My::from(s.id.as_str())])
                    .await
                    .map_err(|e| backend(op, e))?;
                match current {
                    None if s.version == 1 => {
                        if let Err(e) = tx
                            .exec_drop(self.sql.insert_state.as_str(), s.values.clone())
                            .await
                        {
                            if !is_unique_violation(&e) {
                                return Err(backend(op, e));
                            }
                            // A concurrent writer created the state first.
                            let found: Option<i64> = tx
                                .exec_first(
                                    self.sql.state_version.as_str(),
                                    vec![My::from(s.id.as_str())],
                                )
                                .await
                                .map_err(|e| backend(op, e))?;
                            return Err(conflict(found.unwrap_or(1)));
                        }
                    }
                    Some(c) if c + 1 == s.version => {
                        tx.exec_drop(self.sql.update_state.as_str(), s.update_params())
                            .await
                            .map_err(|e| backend(op, e))?;
                    }
                    other => return Err(conflict(other.unwrap_or(0))),
                }
                tx.exec_drop(self.sql.insert_history.as_str(), s.values.clone())
                    .await
                    .map_err(|e| {
                        conflict_or_backend(op, e, || {
                            let v = s.version as u64;
                            StoreError::stale_version(&s.id.as_str().into(), v - 1, v)
                        })
                    })?;
            }
            receipt.committed.push(ev.id);
        }
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(receipt)
    }

    async fn conn(&self, op: &'static str) -> Result<mysql_async::Conn, StoreError> {
        self.pool.get_conn().await.map_err(|e| backend(op, e))
    }

    async fn fetch_state(
        &self,
        sql: &str,
        values: Vec<My>,
        op: &'static str,
    ) -> Result<Option<State>, StoreError> {
        let mut conn = self.conn(op).await?;
        let row: Option<Row> = conn
            .exec_first(sql, params(values))
            .await
            .map_err(|e| backend(op, e))?;
        row.map(state_from_row).transpose()
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
        // MySQL/MariaDB DDL commits implicitly: each statement is idempotent on its own.
        for stmt in schema::ddl(&self.names, collation, flavor) {
            conn.query_drop(stmt).await.map_err(|e| backend(op, e))?;
        }
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
            rows.push((EventRow::new(&at, &item.event)?, state));
        }
        // One item needs no more statements item by item; batching pays from two on.
        if rows.len() > 1 {
            if let Some(receipt) = self.commit_batched(&rows).await? {
                return Ok(receipt);
            }
        }
        // Item by item: a single item, or a batch that raced a concurrent writer (duplicate
        // key or deadlock on a multi-row insert, which does not say which row; nothing was
        // written) and
        // is redone here, where each race resolves exactly.
        self.commit_per_item(rows).await
    }

    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError> {
        self.fetch_state(&self.sql.state, vec![My::from(id.as_str())], "state")
            .await
    }

    async fn state_at(&self, id: &StateId, version: u64) -> Result<Option<State>, StoreError> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        self.fetch_state(
            &self.sql.state_at,
            vec![My::from(id.as_str()), My::from(v)],
            "state_at",
        )
        .await
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
        rows.into_iter().map(event_from_row).collect()
    }

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let mut conn = self.conn("event").await?;
        let row: Option<Row> = conn
            .exec_first(self.sql.event.as_str(), vec![My::from(id.to_string())])
            .await
            .map_err(|e| backend("event", e))?;
        row.map(event_from_row).transpose()
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
        let mut conn = self.conn("put_actor").await?;
        conn.exec_drop(
            self.sql.put_actor.as_str(),
            vec![
                My::from(actor.id.as_str()),
                My::from(actor.node.as_str()),
                My::from(key.as_str().unwrap_or_default()),
                My::from(actor.status.as_str()),
            ],
        )
        .await
        .map_err(|e| backend("put_actor", e))
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
        let identity = contract.identity.to_string();
        let mut conn = self.conn(op).await?;
        let inserted = conn
            .exec_drop(
                self.sql.insert_contract.as_str(),
                vec![
                    My::from(key.name.as_str()),
                    My::from(key.version),
                    My::from(identity.as_str()),
                    My::from(contract.deployer.as_str()),
                    My::from(record.to_string()),
                ],
            )
            .await;
        match inserted {
            Ok(()) => return Ok(()),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(backend(op, e)),
        }
        let existing: Option<String> = conn
            .exec_first(
                self.sql.contract_identity.as_str(),
                vec![My::from(key.name.as_str()), My::from(key.version)],
            )
            .await
            .map_err(|e| backend(op, e))?;
        match existing {
            Some(existing) if existing == identity => Ok(()),
            existing => Err(StoreError::conflict(
                sst_core::ConflictKind::ContractIdentity,
                format!(
                    "contract {key} (identity {} vs {identity})",
                    existing.unwrap_or_default()
                ),
                u64::from(key.version),
                u64::from(key.version),
            )),
        }
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
}
