//! [`PostgresStore`]: the [`Store`] contract on PostgreSQL through an sqlx pool, with `jsonb`
//! columns and one transaction per commit batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{
    AssertSqlSafe, PgConnection, PgPool, Postgres, QueryBuilder, Row, SqlSafeStr, SqlStr,
    Transaction,
};
use sst_core::model::StateParts;
use sst_core::raw::columns::{
    business_events_from_column, endorsements_from_column, json_value, outcome_from_columns,
    receipt_from_column, DerivedEventColumns,
};
use sst_core::raw::{
    check_peer_layout, columns_to_add, CommitPlan, ContractPut, CurrentWrite, DataWrite,
    DisclosureColumn, EventColumns, Lookups, NameCase, Recorded, SectionVersion, StoredEvent,
};
use sst_core::{
    check_prune_keep, check_refusal, check_sink_name, Actor, ActorId, Checkpoint, CommitBatch,
    CommitItem, CommitReceipt, ContractRecord, ContractRef, Digest, EventFilter, EventId,
    EventRecord, LogEntry, LogHead, LogRecord, NodeId, OriginSeq, Refusal, SignedCheckpoint,
    SignedEvent, State, StateId, Store, StoreError, TableNames, Timestamp,
};

use crate::config::PostgresConfig;
use crate::error::{
    backend, check_text, conflict_or_backend, retry_races, sqlstate, to_i64, Attempt, DEADLOCK,
};
use crate::schema::{self, Names};
use crate::NAME;

/// Columns of a history row but `id` and `version`, as the state `SELECT`s read them.
const HISTORY_REST: &str = "contract_name, contract_version, parties, seals, root, prev_root, \
                            last_event, updated_at";

/// Columns of an event row needed to rebuild an [`EventRecord`] and check its derived
/// columns.
const EVENT_SELECT: &str = "id, state_id, kind, contract_name, contract_version, actor, \
                            origin_node, origin_seq, reason, event, disclosures, outcome, \
                            reason_detail, new_version, new_root, receipt, business_events, \
                            endorsements";

/// `SELECT` of event rows (the table aliased `e`, to be followed by a `WHERE`): the
/// [`EVENT_SELECT`] columns, and as `disclosed` the section versions the row's `disclosures`
/// name, `{name: value}` (`NULL` when none), in the same statement. Each is one lookup of
/// the section table's key (`LATERAL … OFFSET 0` keeps it so even in a plan made while the
/// tables were small, rather than a scan of every version of the state). Every entry with a
/// `hash` is looked up; [`DisclosureColumn`] decides which entries are references, and
/// reports one whose version is missing here.
fn select_events(n: &Names) -> String {
    format!(
        "SELECT {EVENT_SELECT}, (SELECT jsonb_object_agg(d.name, x.value) \
         FROM jsonb_each(CASE WHEN jsonb_typeof(e.disclosures) = 'object' \
         THEN e.disclosures END) AS d(name, entry) CROSS JOIN LATERAL \
         (SELECT s.value FROM {section} AS s WHERE s.state_id = e.state_id \
         AND s.name = d.name AND s.hash = d.entry ->> 'hash' OFFSET 0) AS x) AS disclosed \
         FROM {event} AS e",
        section = n.section,
        event = n.event
    )
}

/// Columns of a log row, in [`LogEntry`] order, with the PostgreSQL array type of each.
const LOG_COLUMNS: [(&str, &str); 6] = [
    ("pos", "bigint"),
    ("kind", "text"),
    ("subject", "text"),
    ("record", "text"),
    ("prev", "text"),
    ("hash", "text"),
];

/// Columns of a log row, as the `SELECT`s list them.
const LOG_SELECT: &str = "pos, kind, subject, record, prev, hash";

/// Columns of a checkpoint row, in the order `put_checkpoint` binds them.
const CHECKPOINT_SELECT: &str = "node, pos, head, at, signature";

/// Columns of a refusal row, in the order `put_refusal` binds them.
const REFUSAL_SELECT: &str = "event_id, state_id, version, from_node, reason, reason_detail, at";

/// Prepared SQL text, built once per store from the configured names.
#[derive(Debug)]
struct Sql {
    lock_states: SqlStr,
    read_batch: SqlStr,
    write_batch: SqlStr,
    state: SqlStr,
    state_at: SqlStr,
    state_ids: SqlStr,
    event: SqlStr,
    last_origin_seq: SqlStr,
    put_actor: SqlStr,
    actor: SqlStr,
    actors: SqlStr,
    insert_contract: SqlStr,
    contract_identity: SqlStr,
    contract: SqlStr,
    contracts: SqlStr,
    put_refusal: SqlStr,
    refusals: SqlStr,
    clear_refusal: SqlStr,
    log_head: SqlStr,
    append_log: SqlStr,
    log: SqlStr,
    insert_checkpoint: SqlStr,
    checkpoint_head: SqlStr,
    checkpoints: SqlStr,
    prune_checkpoints: SqlStr,
    sink_cursor: SqlStr,
    set_sink_cursor: SqlStr,
}

/// `columns` (a `, `-separated list) each prefixed with `alias.`.
fn qualified(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sql(s: String) -> SqlStr {
    // Only configuration-validated, quoted identifiers are spliced into these strings; all
    // values are bound parameters.
    AssertSqlSafe(Arc::<str>::from(s)).into_sql_str()
}

/// Event columns written by a commit, with the PostgreSQL array type of each.
const EVENT_COLUMNS: [(&str, &str); 18] = [
    ("id", "text"),
    ("state_id", "text"),
    ("kind", "text"),
    ("contract_name", "text"),
    ("contract_version", "integer"),
    ("actor", "text"),
    ("origin_node", "text"),
    ("origin_seq", "bigint"),
    ("outcome", "text"),
    ("reason", "text"),
    ("reason_detail", "jsonb"),
    ("new_version", "bigint"),
    ("new_root", "text"),
    ("event", "jsonb"),
    ("disclosures", "jsonb"),
    ("receipt", "jsonb"),
    ("business_events", "jsonb"),
    ("endorsements", "jsonb"),
];

/// Event columns added after the event table was first released: an event table without them
/// is of an older layout, and `migrate` adds them (nullable).
const ADDED_EVENT_COLUMNS: [(&str, &str); 2] =
    [("business_events", "jsonb"), ("endorsements", "jsonb")];

/// Columns of the current-state table, with their types.
const CURRENT_COLUMNS: [(&str, &str); 5] = [
    ("id", "text"),
    ("contract_name", "text"),
    ("contract_version", "integer"),
    ("version", "bigint"),
    ("data", "jsonb"),
];

/// What an update of a current-state row binds: the new header, whether `data` is the whole
/// document or the object of the sections to set, the names of the sections to remove (a
/// `jsonb` array), the version the row must still have and, for a patch, the 1-based position
/// in the section arrays of one more section to set, whose value is taken from there instead
/// of being sent (and parsed) twice.
const UPDATE_COLUMNS: [(&str, &str); 9] = [
    ("id", "text"),
    ("contract_name", "text"),
    ("contract_version", "integer"),
    ("version", "bigint"),
    ("whole", "boolean"),
    ("data", "jsonb"),
    ("remove", "jsonb"),
    ("prev", "bigint"),
    ("section", "integer"),
];

/// Columns of the history table, with their types.
const HISTORY_COLUMNS: [(&str, &str); 10] = [
    ("id", "text"),
    ("version", "bigint"),
    ("contract_name", "text"),
    ("contract_version", "integer"),
    ("parties", "jsonb"),
    ("seals", "jsonb"),
    ("root", "text"),
    ("prev_root", "text"),
    ("last_event", "text"),
    ("updated_at", "bigint"),
];

/// Columns of the section table, with their types.
const SECTION_COLUMNS: [(&str, &str); 4] = [
    ("state_id", "text"),
    ("name", "text"),
    ("hash", "text"),
    ("value", "jsonb"),
];

/// Positions of `name` and `value` in [`SECTION_COLUMNS`].
const SECTION_NAME: usize = 1;
const SECTION_VALUE: usize = 3;

/// Columns of the history view.
const VERSIONS_COLUMNS: [&str; 7] = [
    "id",
    "version",
    "contract_name",
    "contract_version",
    "root",
    "updated_at",
    "data",
];

/// `UNNEST($first::t[], …) AS u(c, …)` over `cols`, parameters numbered from `first`.
fn unnest(cols: &[(&str, &str)], first: usize, ordinality: bool) -> String {
    let args: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (_, t))| format!("${}::{t}[]", first + i))
        .collect();
    let mut names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
    if ordinality {
        names.push("ord");
    }
    format!(
        "UNNEST({}){} AS u({})",
        args.join(", "),
        if ordinality { " WITH ORDINALITY" } else { "" },
        names.join(", ")
    )
}

/// The one statement that writes a whole batch: events (in batch order, so `pos` follows it),
/// new current-state rows, updates of current-state rows still at the version read (`prev`),
/// whose `data` is either replaced whole or patched in SQL (`(data - remove) || set`, so the
/// sections that stay are neither sent nor rewritten by the client, and one set section is
/// `jsonb_set` from the section arrays, where its new version is sent anyway: a large section
/// is parsed once, not twice, and the document is not concatenated whole), history rows, the new
/// section versions and log entries. Every insert skips rows that hit a unique key (a section
/// version already stored is simply kept); the returned rows (`k` = `e`vent, `i`nserted state,
/// `u`pdated state, `h`istory, `l`og position) tell the caller which were written, so a
/// concurrent writer becomes a retry, or an exact [`StoreError::Conflict`], there.
fn write_batch(n: &Names) -> String {
    // Parameters: event arrays, inserted-state arrays, update arrays, history arrays, section
    // arrays, log arrays.
    let cols = |c: &[(&str, &str)]| c.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
    let (ev_cols, log_cols) = (cols(&EVENT_COLUMNS), cols(&LOG_COLUMNS));
    let (st_cols, hi_cols, se_cols) = (
        cols(&CURRENT_COLUMNS),
        cols(&HISTORY_COLUMNS),
        cols(&SECTION_COLUMNS),
    );
    let ins = 1 + EVENT_COLUMNS.len();
    let upd = ins + CURRENT_COLUMNS.len();
    let hist = upd + UPDATE_COLUMNS.len();
    let sec = hist + HISTORY_COLUMNS.len();
    let lg = sec + SECTION_COLUMNS.len();
    format!(
        "WITH ev AS (INSERT INTO {event} ({ev_cols}) SELECT {ev_cols} FROM {ev_u} ORDER BY ord \
         ON CONFLICT DO NOTHING RETURNING id), \
         ins AS (INSERT INTO {state} ({st_cols}) SELECT {st_cols} FROM {ins_u} \
         ON CONFLICT (id) DO NOTHING RETURNING id), \
         upd AS (UPDATE {state} AS t SET contract_name = u.contract_name, \
         contract_version = u.contract_version, version = u.version, \
         data = CASE WHEN u.whole THEN u.data \
         WHEN u.section IS NULL \
         THEN (t.data - ARRAY(SELECT jsonb_array_elements_text(u.remove))) || u.data \
         ELSE jsonb_set((t.data - ARRAY(SELECT jsonb_array_elements_text(u.remove))) || u.data, \
         ARRAY[(${sec_name}::text[])[u.section]], (${sec_value}::jsonb[])[u.section]) END \
         FROM {upd_u} WHERE t.id = u.id AND t.version = u.prev RETURNING t.id), \
         hist AS (INSERT INTO {history} ({hi_cols}) SELECT {hi_cols} FROM {hist_u} \
         ON CONFLICT DO NOTHING RETURNING id, version), \
         sec AS (INSERT INTO {section} ({se_cols}) SELECT {se_cols} FROM {sec_u} \
         ON CONFLICT DO NOTHING), \
         lg AS (INSERT INTO {log} ({log_cols}) SELECT {log_cols} FROM {log_u} \
         ON CONFLICT (pos) DO NOTHING RETURNING pos) \
         SELECT 'e' AS k, id, NULL::bigint AS version FROM ev \
         UNION ALL SELECT 'i', id, NULL FROM ins \
         UNION ALL SELECT 'u', id, NULL FROM upd \
         UNION ALL SELECT 'h', id, version FROM hist \
         UNION ALL SELECT 'l', NULL, pos FROM lg",
        event = n.event,
        state = n.state,
        history = n.history,
        section = n.section,
        log = n.log,
        ev_u = unnest(&EVENT_COLUMNS, 1, true),
        ins_u = unnest(&CURRENT_COLUMNS, ins, false),
        upd_u = unnest(&UPDATE_COLUMNS, upd, false),
        hist_u = unnest(&HISTORY_COLUMNS, hist, false),
        sec_u = unnest(&SECTION_COLUMNS, sec, false),
        log_u = unnest(&LOG_COLUMNS, lg, false),
        sec_name = sec + SECTION_NAME,
        sec_value = sec + SECTION_VALUE,
    )
}

impl Sql {
    fn new(n: &Names) -> Self {
        Sql {
            lock_states: sql(format!(
                "SELECT id FROM {} WHERE id = ANY($1) ORDER BY id COLLATE \"C\" FOR UPDATE",
                n.state
            )),
            // One index lookup per key (LATERAL … OFFSET 0 keeps the lookups nested even in a
            // generic plan made while the tables were small). A state's row carries the seals
            // of its current version, from that version's history row.
            read_batch: sql(format!(
                "SELECT 's' AS k, t.id, t.version, NULL::text AS node, t.seals \
                 FROM UNNEST($1::text[]) AS q(id) CROSS JOIN LATERAL \
                 (SELECT s.id, s.version, h.seals FROM {st} s LEFT JOIN {hi} h \
                 ON h.id = s.id AND h.version = s.version WHERE s.id = q.id OFFSET 0) t \
                 UNION ALL SELECT 'e', t.id, t.origin_seq, t.origin_node, NULL::jsonb \
                 FROM UNNEST($2::text[]) AS q(id) CROSS JOIN LATERAL \
                 (SELECT id, origin_seq, origin_node FROM {ev} e WHERE e.id = q.id OFFSET 0) t \
                 UNION ALL SELECT 'o', t.id, t.origin_seq, t.origin_node, NULL \
                 FROM UNNEST($3::text[], $4::bigint[]) AS q(node, seq) CROSS JOIN LATERAL \
                 (SELECT id, origin_seq, origin_node FROM {ev} e \
                 WHERE e.origin_node = q.node AND e.origin_seq = q.seq OFFSET 0) t \
                 UNION ALL SELECT 'l', h.hash, h.pos, NULL, NULL FROM \
                 (SELECT pos, hash FROM {lg} ORDER BY pos DESC LIMIT 1) h",
                st = n.state,
                hi = n.history,
                ev = n.event,
                lg = n.log,
            )),
            write_batch: sql(write_batch(n)),
            // The current row with the history row of its version (absent: malformed).
            state: sql(format!(
                "SELECT s.id, s.version, s.data, s.contract_name AS current_contract_name, \
                 s.contract_version AS current_contract_version, \
                 h.version IS NOT NULL AS in_history, {} \
                 FROM {} s LEFT JOIN {} h ON h.id = s.id AND h.version = s.version \
                 WHERE s.id = $1",
                qualified("h", HISTORY_REST),
                n.state,
                n.history
            )),
            // A history row with the document its section rows make up.
            state_at: sql(format!(
                "SELECT h.id, h.version, {}, {} AS data FROM {} h \
                 WHERE h.id = $1 AND h.version = $2",
                qualified("h", HISTORY_REST),
                schema::version_data(n, "h"),
                n.history
            )),
            state_ids: sql(format!(
                "SELECT id FROM {} ORDER BY id COLLATE \"C\"",
                n.state
            )),
            event: sql(format!("{} WHERE id = $1", select_events(n))),
            last_origin_seq: sql(format!(
                "SELECT COALESCE(MAX(origin_seq), 0) FROM {} WHERE origin_node = $1",
                n.event
            )),
            put_actor: sql(format!(
                "INSERT INTO {} (id, node, public_key, status) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET node = EXCLUDED.node, \
                 public_key = EXCLUDED.public_key, status = EXCLUDED.status",
                n.actor
            )),
            actor: sql(format!(
                "SELECT id, node, public_key, status FROM {} WHERE id = $1",
                n.actor
            )),
            actors: sql(format!(
                "SELECT id, node, public_key, status FROM {} ORDER BY id COLLATE \"C\"",
                n.actor
            )),
            insert_contract: sql(format!(
                "INSERT INTO {} (name, version, identity, deployer, record) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, version) DO NOTHING",
                n.contract
            )),
            contract_identity: sql(format!(
                "SELECT identity FROM {} WHERE name = $1 AND version = $2",
                n.contract
            )),
            contract: sql(format!(
                "SELECT record FROM {} WHERE name = $1 AND version = $2",
                n.contract
            )),
            contracts: sql(format!(
                "SELECT record FROM {} ORDER BY name COLLATE \"C\", version",
                n.contract
            )),
            put_refusal: sql(format!(
                "INSERT INTO {} ({REFUSAL_SELECT}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (event_id) DO UPDATE SET state_id = EXCLUDED.state_id, \
                 version = EXCLUDED.version, from_node = EXCLUDED.from_node, \
                 reason = EXCLUDED.reason, reason_detail = EXCLUDED.reason_detail, \
                 at = EXCLUDED.at",
                n.refusal
            )),
            refusals: sql(format!(
                "SELECT {REFUSAL_SELECT} FROM {} WHERE $1::text IS NULL OR state_id = $1 \
                 ORDER BY state_id COLLATE \"C\", version, event_id COLLATE \"C\"",
                n.refusal
            )),
            clear_refusal: sql(format!("DELETE FROM {} WHERE event_id = $1", n.refusal)),
            log_head: sql(format!(
                "SELECT {LOG_SELECT} FROM {} ORDER BY pos DESC LIMIT 1",
                n.log
            )),
            append_log: sql(format!(
                "INSERT INTO {} ({LOG_SELECT}) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (pos) DO NOTHING",
                n.log
            )),
            log: sql(format!(
                "SELECT {LOG_SELECT} FROM {} WHERE pos > $1 ORDER BY pos LIMIT $2",
                n.log
            )),
            insert_checkpoint: sql(format!(
                "INSERT INTO {} ({CHECKPOINT_SELECT}) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (node, pos) DO NOTHING",
                n.checkpoint
            )),
            checkpoint_head: sql(format!(
                "SELECT head FROM {} WHERE node = $1 AND pos = $2",
                n.checkpoint
            )),
            checkpoints: sql(format!(
                "SELECT {CHECKPOINT_SELECT} FROM {} WHERE node = $1 ORDER BY pos",
                n.checkpoint
            )),
            // Everything from the newest checkpoint beyond the `keep` latest down.
            prune_checkpoints: sql(format!(
                "DELETE FROM {cp} WHERE node = $1 AND pos <= \
                 (SELECT pos FROM {cp} WHERE node = $1 ORDER BY pos DESC OFFSET $2 LIMIT 1)",
                cp = n.checkpoint
            )),
            sink_cursor: sql(format!("SELECT pos FROM {} WHERE sink = $1", n.sink_cursor)),
            set_sink_cursor: sql(format!(
                "INSERT INTO {sc} AS c (sink, pos) VALUES ($1, $2) \
                 ON CONFLICT (sink) DO UPDATE SET pos = GREATEST(c.pos, EXCLUDED.pos)",
                sc = n.sink_cursor
            )),
        }
    }
}

/// SST's peer tables in a PostgreSQL schema.
///
/// * every JSON column is `jsonb`, so users query and index states with plain SQL
///   (`data->'inspection'->>'radon'`); values are canonicalised by sst-core before hashing, so
///   jsonb's key reordering and number rewriting do not affect verification;
/// * states are kept in the section-version layout: the current-state table holds only `id`,
///   the contract, `version` and `data` (so it scans like a plain table of the same JSON), a
///   history row per version holds its header and section seals, each section version's
///   plaintext is one row of the section table, and the view `sst_state_versions` shows every
///   version's whole `data`. `migrate` upgrades tables of the first layout in place, in its
///   one transaction;
/// * section values are compressed with lz4 where the server has it (PostgreSQL 14 or later
///   built with lz4; `migrate` declares it on a section table an earlier version created, for
///   the values written from then on), since each update of a large section writes one; the
///   current `data` keeps the server's default, like a plain table's column;
/// * an applied event's row names the section versions it disclosed (`disclosures` holds
///   `{name: {"salt": …, "hash": …}}`, [`DisclosureColumn`]) instead of carrying their values a
///   second time; `event` and `events` read those values from the section table in the same
///   statement, and rows written before (values inline) read as they are;
/// * `commit` runs one transaction per batch with a fixed number of statements whatever its
///   size: one read of the touched states' versions (with their history rows' seals), of the
///   already recorded event ids and origin seqs and of the log head, from which [`CommitPlan`]
///   decides duplicates, conflicts, the rows to write and their log entries, then one
///   statement writing all event, current-state, history, new section-version and log rows
///   (`UNNEST` of column arrays; a current row's `data` patched in SQL with only the changed
///   sections sent, each once: a section whose new version is stored by the same statement is
///   set from that row's value). Its updates only apply
///   to rows still at the version read and its inserts skip taken keys, so a concurrent writer
///   that got in between (another state's writer included, which took the next log position)
///   is noticed; the batch is then tried again with the touched current-state rows locked by
///   `SELECT … FOR UPDATE` in id order, which ends exactly as if the commits had run one after
///   another (a duplicate, or a [`StoreError::Conflict`] with exact versions). The unique keys
///   `(id, version)` of the history and `(origin_node, origin_seq)` of the events remain the
///   backstop;
/// * `put_actor`, `put_contract`, `put_refusal` and `clear_refusal` write their row and its log
///   entry in one transaction, run again likewise when another writer took the log position.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    config: Arc<PostgresConfig>,
    names: Arc<Names>,
    sql: Arc<Sql>,
}

/// Bound values of one history row (a state version's header and seals; its plaintext goes
/// to section rows and the current row, straight from the [`State`]).
struct HistoryRow {
    id: String,
    contract_name: String,
    contract_version: i32,
    version: i64,
    parties: Value,
    seals: Value,
    root: String,
    prev_root: Option<String>,
    last_event: Option<String>,
    updated_at: i64,
}

impl HistoryRow {
    fn new(at: &str, s: &State) -> Result<Self, StoreError> {
        check_text(&format!("{at}.id"), s.id.as_str())?;
        check_text(&format!("{at}.contract.name"), &s.contract.name)?;
        Ok(HistoryRow {
            id: s.id.0.clone(),
            contract_name: s.contract.name.clone(),
            contract_version: contract_version(
                &format!("{at}.contract.version"),
                s.contract.version,
            )?,
            version: to_i64(&format!("{at}.version"), s.version)?,
            parties: json_value(&format!("{at}.parties"), &s.parties)?,
            seals: json_value(&format!("{at}.seals"), &s.seals())?,
            root: s.root.to_string(),
            prev_root: s.prev_root.map(|r| r.to_string()),
            last_event: s.last_event.map(|e| e.to_string()),
            updated_at: s.updated_at.0,
        })
    }
}

/// Bound values of one event row: the shared columns, with the contract version as
/// PostgreSQL's `integer`.
struct EventRow {
    c: EventColumns,
    contract_version: i32,
}

fn contract_version(path: &str, v: u32) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::InvalidInput {
        path: path.to_owned(),
        reason: format!("contract version {v} does not fit an integer column"),
    })
}

impl EventRow {
    /// The row of a validated commit item: an applied event's disclosures name the section
    /// versions of its new state instead of repeating their values.
    fn new(at: &str, item: &CommitItem) -> Result<Self, StoreError> {
        let e = item.event.event();
        for (field, v) in [
            ("state_id", e.state_id.as_str()),
            ("contract.name", &e.contract.name),
            ("actor", e.actor.as_str()),
            ("origin_node", e.origin_node.as_str()),
        ] {
            check_text(&format!("{at}.event.{field}"), v)?;
        }
        let c = EventColumns::from_item(at, item)?;
        let contract_version =
            contract_version(&format!("{at}.event.contract.version"), c.contract_version)?;
        Ok(EventRow {
            c,
            contract_version,
        })
    }
}

/// One converted batch item: event id, event columns, history columns of its new state.
type Item = (EventId, EventRow, Option<HistoryRow>);

/// Columns of the actor table SST reads and writes.
const ACTOR_COLUMNS: [&str; 4] = ["id", "node", "public_key", "status"];

/// Columns of the contract table SST reads and writes.
const CONTRACT_COLUMNS: [&str; 5] = ["name", "version", "identity", "deployer", "record"];

/// Each peer table's name with the columns SST's statements name in it.
fn needed_columns(t: &TableNames) -> [(&str, Vec<&'static str>); 11] {
    let names = |cols: &[(&'static str, &str)]| cols.iter().map(|(c, _)| *c).collect();
    let event = std::iter::once("pos")
        .chain(EVENT_COLUMNS.iter().map(|(c, _)| *c))
        .filter(|c| !ADDED_EVENT_COLUMNS.iter().any(|(a, _)| a == c))
        .collect();
    [
        (&t.state, names(&CURRENT_COLUMNS)),
        (&t.history, names(&HISTORY_COLUMNS)),
        (&t.section, names(&SECTION_COLUMNS)),
        (&t.versions, VERSIONS_COLUMNS.to_vec()),
        (&t.event, event),
        (&t.actor, ACTOR_COLUMNS.to_vec()),
        (&t.contract, CONTRACT_COLUMNS.to_vec()),
        (&t.refusal, REFUSAL_SELECT.split(", ").collect()),
        (&t.log, LOG_COLUMNS.iter().map(|(c, _)| *c).collect()),
        (&t.checkpoint, CHECKPOINT_SELECT.split(", ").collect()),
        (&t.sink_cursor, vec!["sink", "pos"]),
    ]
}

/// A history row `(id, version)` the unique key refused: another writer holds this version.
fn history_taken(s: &HistoryRow) -> StoreError {
    let v = s.version.unsigned_abs();
    StoreError::stale_version(&s.id.as_str().into(), v - 1, v)
}

/// What the batch read found, as the plan takes it: `s` rows are the versions of the
/// touched states with the seals of those versions (left out when they do not parse: the
/// plan then writes that state in full), `e` rows the batch's event ids already recorded, `o` rows the event
/// holding each taken `(origin_node, origin_seq)`, the `l` row (absent for an empty log) the
/// log head's hash and position.
fn recorded(read: &[PgRow], lookups: &Lookups, rows: &[Item]) -> Result<Recorded, StoreError> {
    let batch_ids: HashMap<&str, EventId> = rows
        .iter()
        .zip(&lookups.events)
        .map(|((_, ev, _), id)| (ev.c.id.as_str(), *id))
        .collect();
    let event_id = |id: &str| match batch_ids.get(id) {
        Some(id) => Ok(*id),
        None => id
            .parse::<EventId>()
            .map_err(|e| StoreError::malformed(format!("event {id}"), e)),
    };
    let mut recorded = Recorded::default();
    for r in read {
        let what = || "read row".to_owned();
        let k: String = col(r, "k", &what)?;
        let id: String = col(r, "id", &what)?;
        let v: i64 = col(r, "version", &what)?;
        match k.as_str() {
            "s" => {
                let version = u64::try_from(v)
                    .map_err(|e| StoreError::malformed(format!("state {id}"), e))?;
                let seals: Option<Value> = col(r, "seals", &what)?;
                if let Some(seals) = seals.and_then(|s| serde_json::from_value(s).ok()) {
                    recorded.seals.insert(StateId(id.clone()), seals);
                }
                recorded.versions.insert(StateId(id), version);
            }
            "e" => {
                recorded.events.insert(event_id(&id)?);
            }
            "l" => recorded.log_head = log_head(v, &id)?,
            _ => {
                let node: String = col(r, "node", &what)?;
                let seq = u64::try_from(v)
                    .map_err(|e| StoreError::malformed(format!("event {id}"), e))?;
                recorded
                    .origins
                    .insert((NodeId(node), OriginSeq(seq)), event_id(&id)?);
            }
        }
    }
    Ok(recorded)
}

/// The `jsonb` binding of a document given as its sections: `{name: value}`, serialised
/// from borrowed values (nothing is copied to build it).
type Doc<'a> = Json<BTreeMap<&'a str, &'a Value>>;

/// `state`'s disclosed sections named in `names` (all of them with `None`) but `except`, as a
/// document.
fn doc<'a>(state: &'a State, names: Option<&[String]>, except: Option<&str>) -> Doc<'a> {
    let pick = |name: &str| {
        names.is_none_or(|n| n.iter().any(|x| x == name)) && except.is_none_or(|e| e != name)
    };
    Json(
        state
            .sections
            .iter()
            .filter(|(name, _)| pick(name))
            .filter_map(|(name, s)| Some((name.as_str(), s.value()?)))
            .collect(),
    )
}

/// Column arrays of the current-state rows a commit writes (inserts, or updates with the
/// version each row must still have), each bound as one `UNNEST` argument.
#[derive(Default)]
struct CurrentArrays<'a> {
    id: Vec<&'a str>,
    contract_name: Vec<&'a str>,
    contract_version: Vec<i32>,
    version: Vec<i64>,
    whole: Vec<bool>,
    data: Vec<Doc<'a>>,
    remove: Vec<Value>,
    prev: Vec<i64>,
    section: Vec<Option<i32>>,
}

impl<'a> CurrentArrays<'a> {
    /// Adds the row of `state` (its history columns `h`): `data` written as `write` says; a
    /// patch takes the first section it sets that `sections` holds from there.
    fn push(
        &mut self,
        h: &'a HistoryRow,
        state: &'a State,
        write: &'a DataWrite,
        sections: &SectionPositions<'_>,
    ) {
        self.id.push(&h.id);
        self.contract_name.push(&h.contract_name);
        self.contract_version.push(h.contract_version);
        self.version.push(h.version);
        match write {
            DataWrite::Patch { set, remove } => {
                let found = set.iter().find_map(|name| {
                    let hash = state.sections.get(name)?.hash.to_string();
                    let i = sections.get(&(h.id.as_str(), name.as_str(), &*hash))?;
                    Some((name.as_str(), i32::try_from(i + 1).ok()?))
                });
                self.whole.push(false);
                self.data
                    .push(doc(state, Some(set), found.map(|(name, _)| name)));
                self.remove.push(Value::from(remove.clone()));
                self.section.push(found.map(|(_, i)| i));
            }
            DataWrite::Whole => {
                self.whole.push(true);
                self.data.push(doc(state, None, None));
                self.remove.push(Value::Array(Vec::new()));
                self.section.push(None);
            }
        }
    }

    /// Binds the columns of an insert.
    fn bind_insert<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.id)
            .bind(&self.contract_name)
            .bind(&self.contract_version)
            .bind(&self.version)
            .bind(&self.data)
    }

    /// Binds the columns of an update ([`UPDATE_COLUMNS`]).
    fn bind_update<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.id)
            .bind(&self.contract_name)
            .bind(&self.contract_version)
            .bind(&self.version)
            .bind(&self.whole)
            .bind(&self.data)
            .bind(&self.remove)
            .bind(&self.prev)
            .bind(&self.section)
    }
}

/// Column arrays of history rows, each bound as one `UNNEST` argument.
#[derive(Default)]
struct HistoryArrays<'a> {
    id: Vec<&'a str>,
    version: Vec<i64>,
    contract_name: Vec<&'a str>,
    contract_version: Vec<i32>,
    parties: Vec<&'a Value>,
    seals: Vec<&'a Value>,
    root: Vec<&'a str>,
    prev_root: Vec<Option<&'a str>>,
    last_event: Vec<Option<&'a str>>,
    updated_at: Vec<i64>,
}

impl<'a> HistoryArrays<'a> {
    fn push(&mut self, s: &'a HistoryRow) {
        self.id.push(&s.id);
        self.version.push(s.version);
        self.contract_name.push(&s.contract_name);
        self.contract_version.push(s.contract_version);
        self.parties.push(&s.parties);
        self.seals.push(&s.seals);
        self.root.push(&s.root);
        self.prev_root.push(s.prev_root.as_deref());
        self.last_event.push(s.last_event.as_deref());
        self.updated_at.push(s.updated_at);
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.id)
            .bind(&self.version)
            .bind(&self.contract_name)
            .bind(&self.contract_version)
            .bind(&self.parties)
            .bind(&self.seals)
            .bind(&self.root)
            .bind(&self.prev_root)
            .bind(&self.last_event)
            .bind(&self.updated_at)
    }
}

/// Positions in [`SectionArrays`] by `(state id, name, hash)`.
type SectionPositions<'s> = HashMap<(&'s str, &'s str, &'s str), usize>;

/// Column arrays of the new section versions, each bound as one `UNNEST` argument.
#[derive(Default)]
struct SectionArrays<'a> {
    state_id: Vec<&'a str>,
    name: Vec<&'a str>,
    hash: Vec<String>,
    value: Vec<&'a Value>,
}

impl<'a> SectionArrays<'a> {
    /// Where each section version `(state id, name, hash)` is (its first place).
    fn positions(&self) -> SectionPositions<'_> {
        let mut at = HashMap::with_capacity(self.name.len());
        for (i, ((id, name), hash)) in self
            .state_id
            .iter()
            .zip(&self.name)
            .zip(&self.hash)
            .enumerate()
        {
            at.entry((*id, *name, hash.as_str())).or_insert(i);
        }
        at
    }

    fn push(&mut self, v: SectionVersion<'a>) {
        self.state_id.push(v.state.as_str());
        self.name.push(v.name);
        self.hash.push(v.hash.to_string());
        self.value.push(v.value);
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.state_id)
            .bind(&self.name)
            .bind(&self.hash)
            .bind(&self.value)
    }
}

/// Column arrays of event rows, each bound as one `UNNEST` argument.
#[derive(Default)]
struct EventArrays<'a> {
    id: Vec<&'a str>,
    state_id: Vec<&'a str>,
    kind: Vec<&'a str>,
    contract_name: Vec<&'a str>,
    contract_version: Vec<i32>,
    actor: Vec<&'a str>,
    origin_node: Vec<&'a str>,
    origin_seq: Vec<i64>,
    outcome: Vec<&'a str>,
    reason: Vec<Option<&'a str>>,
    reason_detail: Vec<Option<&'a Value>>,
    new_version: Vec<Option<i64>>,
    new_root: Vec<Option<&'a str>>,
    event: Vec<&'a Value>,
    disclosures: Vec<&'a Value>,
    receipt: Vec<Option<&'a Value>>,
    business_events: Vec<Option<&'a Value>>,
    endorsements: Vec<Option<&'a Value>>,
}

impl<'a> EventArrays<'a> {
    fn push(&mut self, e: &'a EventRow) {
        let c = &e.c;
        self.id.push(&c.id);
        self.state_id.push(&c.state_id);
        self.kind.push(c.kind);
        self.contract_name.push(&c.contract_name);
        self.contract_version.push(e.contract_version);
        self.actor.push(&c.actor);
        self.origin_node.push(&c.origin_node);
        self.origin_seq.push(c.origin_seq);
        self.outcome.push(c.outcome);
        self.reason.push(c.reason);
        self.reason_detail.push(c.reason_detail.as_ref());
        self.new_version.push(c.new_version);
        self.new_root.push(c.new_root.as_deref());
        self.event.push(&c.signed);
        self.disclosures.push(&c.disclosures);
        self.receipt.push(c.receipt.as_ref());
        self.business_events.push(c.business_events.as_ref());
        self.endorsements.push(c.endorsements.as_ref());
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.id)
            .bind(&self.state_id)
            .bind(&self.kind)
            .bind(&self.contract_name)
            .bind(&self.contract_version)
            .bind(&self.actor)
            .bind(&self.origin_node)
            .bind(&self.origin_seq)
            .bind(&self.outcome)
            .bind(&self.reason)
            .bind(&self.reason_detail)
            .bind(&self.new_version)
            .bind(&self.new_root)
            .bind(&self.event)
            .bind(&self.disclosures)
            .bind(&self.receipt)
            .bind(&self.business_events)
            .bind(&self.endorsements)
    }
}

/// Column arrays of log entries, each bound as one `UNNEST` argument.
#[derive(Default)]
struct LogArrays {
    pos: Vec<i64>,
    kind: Vec<&'static str>,
    subject: Vec<String>,
    record: Vec<String>,
    prev: Vec<String>,
    hash: Vec<String>,
}

impl LogArrays {
    fn new(entries: &[LogEntry]) -> Result<Self, StoreError> {
        let mut a = LogArrays::default();
        for e in entries {
            check_text("log.subject", &e.subject)?;
            a.pos.push(to_i64("log.pos", e.pos)?);
            a.kind.push(e.kind.as_str());
            a.subject.push(e.subject.clone());
            a.record.push(e.record.to_string());
            a.prev.push(e.prev.to_string());
            a.hash.push(e.hash.to_string());
        }
        Ok(a)
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.pos)
            .bind(&self.kind)
            .bind(&self.subject)
            .bind(&self.record)
            .bind(&self.prev)
            .bind(&self.hash)
    }
}

fn col<'r, T>(row: &'r PgRow, name: &str, what: &dyn Fn() -> String) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name)
        .map_err(|e| StoreError::malformed(what(), format!("column {name}: {e}")))
}

/// A state version from a row of the `state` or `state_at` query (history columns plus
/// `data`).
fn state_from_row(row: &PgRow) -> Result<State, StoreError> {
    let id: String = col(row, "id", &|| "state row".to_owned())?;
    let version: i64 = col(row, "version", &|| format!("state {id}"))?;
    let what = || format!("state {id} version {version}");
    let contract_version: i32 = col(row, "contract_version", &what)?;
    let parts = StateParts {
        id: StateId(id.clone()),
        contract: ContractRef::new(
            col::<String>(row, "contract_name", &what)?,
            u32::try_from(contract_version).map_err(|e| StoreError::malformed(what(), e))?,
        ),
        version: u64::try_from(version).map_err(|e| StoreError::malformed(what(), e))?,
        parties: col(row, "parties", &what)?,
        seals: col(row, "seals", &what)?,
        data: col(row, "data", &what)?,
        root: col(row, "root", &what)?,
        prev_root: col(row, "prev_root", &what)?,
        last_event: col(row, "last_event", &what)?,
        updated_at: col(row, "updated_at", &what)?,
    };
    State::from_parts(parts).map_err(|source| StoreError::Integrity {
        what: what(),
        source,
    })
}

/// The current state from a row of the `state` query: its current row must have a history
/// row at its version, of the same contract.
fn current_from_row(row: &PgRow) -> Result<State, StoreError> {
    let id: String = col(row, "id", &|| "state row".to_owned())?;
    let version: i64 = col(row, "version", &|| format!("state {id}"))?;
    let what = || format!("state {id} version {version}");
    if !col::<bool>(row, "in_history", &what)? {
        return Err(StoreError::malformed(
            what(),
            format!("current row of {id} is at version {version}, which the history does not hold"),
        ));
    }
    let current: (String, i32) = (
        col(row, "current_contract_name", &what)?,
        col(row, "current_contract_version", &what)?,
    );
    let history: (String, i32) = (
        col(row, "contract_name", &what)?,
        col(row, "contract_version", &what)?,
    );
    if current != history {
        return Err(StoreError::malformed(
            what(),
            format!(
                "current row of {id} names contract {} version {}, its history row {} version {}",
                current.0, current.1, history.0, history.1
            ),
        ));
    }
    state_from_row(row)
}

/// An event row (of [`select_events`]) as its record, its derived columns checked against
/// the signed event and the section versions its disclosures name read from `disclosed`.
fn event_from_row(row: &PgRow) -> Result<EventRecord, StoreError> {
    let what = || "event row".to_owned();
    let signed: SignedEvent = serde_json::from_value(col(row, "event", &what)?)
        .map_err(|e| StoreError::malformed(what(), format!("event: {e}")))?;
    let event_id = signed.id;
    let what = || format!("event {event_id}");
    let derived = DerivedEventColumns {
        id: col(row, "id", &what)?,
        state_id: col(row, "state_id", &what)?,
        kind: col(row, "kind", &what)?,
        contract_name: col(row, "contract_name", &what)?,
        contract_version: i64::from(col::<i32>(row, "contract_version", &what)?),
        actor: col(row, "actor", &what)?,
        origin_node: col(row, "origin_node", &what)?,
        origin_seq: col(row, "origin_seq", &what)?,
        reason: col(row, "reason", &what)?,
    };
    let disclosures = DisclosureColumn::parse(&what(), col(row, "disclosures", &what)?)?;
    let outcome: String = col(row, "outcome", &what)?;
    let outcome = outcome_from_columns(
        &what(),
        &outcome,
        col(row, "new_version", &what)?,
        col(row, "new_root", &what)?,
        col(row, "reason_detail", &what)?,
    )?;
    let receipt = receipt_from_column(&what(), col(row, "receipt", &what)?)?;
    let business_events =
        business_events_from_column(&what(), col(row, "business_events", &what)?)?;
    let endorsements = endorsements_from_column(&what(), col(row, "endorsements", &what)?)?;
    let record = EventRecord {
        signed,
        disclosures: BTreeMap::new(),
        outcome,
        receipt,
        business_events,
        endorsements,
    };
    EventColumns::check_derived(&record, &derived)?;
    // The values `disclosed` holds were looked up by the hashes of this very column (and the
    // row's state id, which `check_derived` just matched to the signed event's).
    let mut disclosed = match col::<Option<Value>>(row, "disclosed", &what)? {
        Some(Value::Object(values)) => values,
        _ => serde_json::Map::new(),
    };
    StoredEvent {
        record,
        disclosures,
    }
    .resolve(|(_, name, _)| Ok(disclosed.remove(name).map(Arc::new)))
}

/// The log head at position `pos` with hash `hash` (as read from the log's last row).
fn log_head(pos: i64, hash: &str) -> Result<LogHead, StoreError> {
    let what = || format!("log entry {pos}");
    Ok(LogHead {
        pos: u64::try_from(pos).map_err(|e| StoreError::malformed(what(), e))?,
        hash: hash
            .parse()
            .map_err(|e| StoreError::malformed(what(), format!("hash: {e}")))?,
    })
}

fn log_entry_from_row(row: &PgRow) -> Result<LogEntry, StoreError> {
    let what = || "log row".to_owned();
    LogEntry::from_columns(
        col(row, "pos", &what)?,
        &col::<String>(row, "kind", &what)?,
        col(row, "subject", &what)?,
        &col::<String>(row, "record", &what)?,
        &col::<String>(row, "prev", &what)?,
        &col::<String>(row, "hash", &what)?,
    )
}

fn checkpoint_from_row(row: &PgRow) -> Result<SignedCheckpoint, StoreError> {
    let node: String = col(row, "node", &|| "checkpoint row".to_owned())?;
    let pos: i64 = col(row, "pos", &|| format!("checkpoint of node {node}"))?;
    let what = || format!("checkpoint of node {node} at log position {pos}");
    let head: String = col(row, "head", &what)?;
    let signature: String = col(row, "signature", &what)?;
    Ok(SignedCheckpoint {
        checkpoint: Checkpoint {
            node: NodeId(node.clone()),
            pos: u64::try_from(pos).map_err(|e| StoreError::malformed(what(), e))?,
            head: head
                .parse()
                .map_err(|e| StoreError::malformed(what(), format!("head: {e}")))?,
            at: Timestamp(col(row, "at", &what)?),
        },
        signature: serde_json::from_value(Value::String(signature))
            .map_err(|e| StoreError::malformed(what(), format!("signature: {e}")))?,
    })
}

fn refusal_from_row(row: &PgRow) -> Result<Refusal, StoreError> {
    let event: String = col(row, "event_id", &|| "refusal row".to_owned())?;
    let what = || format!("refusal of event {event}");
    let version: i64 = col(row, "version", &what)?;
    Ok(Refusal {
        event: event
            .parse()
            .map_err(|e| StoreError::malformed(what(), e))?,
        state_id: StateId(col(row, "state_id", &what)?),
        version: u64::try_from(version).map_err(|e| StoreError::malformed(what(), e))?,
        from_node: NodeId(col(row, "from_node", &what)?),
        reason: serde_json::from_value(col(row, "reason_detail", &what)?)
            .map_err(|e| StoreError::malformed(what(), format!("reason_detail: {e}")))?,
        at: Timestamp(col(row, "at", &what)?),
    })
}

fn actor_from_row(row: &PgRow) -> Result<Actor, StoreError> {
    let what = || "actor row".to_owned();
    let id: String = col(row, "id", &what)?;
    let v = serde_json::json!({
        "id": id,
        "node": col::<String>(row, "node", &what)?,
        "public_key": col::<String>(row, "public_key", &what)?,
        "status": col::<String>(row, "status", &what)?,
    });
    serde_json::from_value(v).map_err(|e| StoreError::malformed(format!("actor {id}"), e))
}

fn contract_from_row(row: &PgRow) -> Result<ContractRecord, StoreError> {
    let what = || "contract row".to_owned();
    serde_json::from_value(col(row, "record", &what)?).map_err(|e| StoreError::malformed(what(), e))
}

impl PostgresStore {
    /// Connects a pool to `config.url` (nothing is created until [`Store::migrate`]).
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for a bad URL or table name; [`StoreError::Backend`] when
    /// the server cannot be reached.
    pub async fn connect(config: PostgresConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let options =
            PgConnectOptions::from_str(&config.url).map_err(|e| StoreError::InvalidInput {
                path: "config.url".into(),
                reason: e.to_string(),
            })?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .connect_with(options)
            .await
            .map_err(|e| backend("connect", e))?;
        Ok(Self::with_pool(pool, config))
    }

    /// Uses an existing pool (shared with the application) with `config`'s schema and table
    /// names; `config.url` and `config.max_connections` are ignored.
    ///
    /// # Panics
    /// Never; invalid names are reported by [`Store::migrate`] and every other call.
    pub fn with_pool(pool: PgPool, config: PostgresConfig) -> Self {
        let names = Names::new(&config);
        PostgresStore {
            pool,
            sql: Arc::new(Sql::new(&names)),
            names: Arc::new(names),
            config: Arc::new(config),
        }
    }

    /// The connection pool (for the application's own queries on the same database).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The settings this store was opened with.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    fn query(
        &self,
        s: &SqlStr,
    ) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(s.clone())
    }

    /// The identity recorded under a contract's name and version, if any.
    async fn contract_identity(
        &self,
        tx: &mut PgConnection,
        key: &ContractRef,
        version: i32,
    ) -> Result<Option<Digest>, StoreError> {
        let stored: Option<String> = sqlx::query_scalar(self.sql.contract_identity.clone())
            .bind(&key.name)
            .bind(version)
            .fetch_optional(tx)
            .await
            .map_err(|e| backend("put_contract", e))?;
        stored
            .map(|d| {
                d.parse::<Digest>()
                    .map_err(|e| StoreError::malformed(format!("contract {key} identity"), e))
            })
            .transpose()
    }

    /// A transaction for one attempt of the write `op`.
    async fn begin(&self, op: &'static str) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(|e| backend(op, e))
    }

    /// Appends `record`'s entry after the log head read inside `tx`, then commits `tx`: the
    /// end of every write but `commit`. When a concurrent writer took that position first, `tx`
    /// is rolled back and the write [`Attempt::Raced`].
    async fn append_and_commit(
        &self,
        mut tx: Transaction<'static, Postgres>,
        op: &'static str,
        record: &LogRecord<'_>,
    ) -> Result<Attempt<()>, StoreError> {
        let head = self
            .query(&self.sql.log_head)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?
            .as_ref()
            .map(log_entry_from_row)
            .transpose()?
            .map_or_else(LogHead::default, |e| e.head());
        let entry = head.append(record);
        check_text("log.subject", &entry.subject)?;
        let appended = self
            .query(&self.sql.append_log)
            .bind(to_i64("log.pos", entry.pos)?)
            .bind(entry.kind.as_str())
            .bind(&entry.subject)
            .bind(entry.record.to_string())
            .bind(entry.prev.to_string())
            .bind(entry.hash.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        if appended.rows_affected() == 0 {
            tx.rollback().await.map_err(|e| backend(op, e))?;
            return Ok(Attempt::Raced);
        }
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(Attempt::Done(()))
    }

    async fn fetch_state(
        &self,
        s: &SqlStr,
        id: &StateId,
        version: Option<i64>,
        op: &'static str,
    ) -> Result<Option<State>, StoreError> {
        self.config.validate()?;
        let mut q = self.query(s).bind(id.as_str());
        let from_row = match version {
            Some(v) => {
                q = q.bind(v);
                state_from_row
            }
            None => current_from_row,
        };
        let row = q
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend(op, e))?;
        row.as_ref().map(from_row).transpose()
    }

    /// One transaction for `batch` (converted to `rows`): read what is recorded about it (the
    /// touched states' versions, which event ids and origin seqs are taken, the log head) with
    /// one statement, let [`CommitPlan`] decide, then write the plan, log entries included,
    /// with one statement whose updates only apply to rows still at the version read.
    ///
    /// With `lock`, the touched states are first locked with `SELECT … FOR UPDATE` in id
    /// order (so concurrent batches neither deadlock nor change them meanwhile). Without it
    /// (the first attempt: fewer round trips) a concurrent writer may change a state, record
    /// an event or create a state meanwhile. With or without it, another writer may take the
    /// next log position, or a deadlock may be detected. Then [`Attempt::Raced`] tells the
    /// caller to try again with `lock`, which reads what that writer committed and plans
    /// again.
    async fn try_commit(
        &self,
        batch: &CommitBatch,
        lookups: &Lookups,
        rows: &[Item],
        lock: bool,
    ) -> Result<Attempt<CommitReceipt>, StoreError> {
        let op = "commit";
        // Generic plans: the statements below take arrays, whose custom plans (re-planned on
        // every call) the plan cache would otherwise prefer for small batches.
        let mut tx = self
            .pool
            .begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
            .await
            .map_err(|e| backend(op, e))?;
        // Sorted by code point, as `COLLATE "C"` orders the locks.
        let state_ids: Vec<&str> = lookups.states.iter().map(StateId::as_str).collect();
        if lock && !state_ids.is_empty() {
            sqlx::query(self.sql.lock_states.clone())
                .bind(&state_ids)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
        }
        let ids: Vec<&str> = rows.iter().map(|(_, ev, _)| ev.c.id.as_str()).collect();
        let nodes: Vec<&str> = lookups.origins.iter().map(|(n, _)| n.as_str()).collect();
        let seqs: Vec<i64> = lookups
            .origins
            .iter()
            .map(|(_, s)| to_i64("origin_seq", s.0))
            .collect::<Result<_, _>>()?;
        let read = self
            .query(&self.sql.read_batch)
            .bind(&state_ids)
            .bind(&ids)
            .bind(&nodes)
            .bind(&seqs)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        let recorded = recorded(&read, lookups, rows)?;
        let plan = CommitPlan::new(batch, &recorded)?;
        if plan.is_empty() {
            tx.commit().await.map_err(|e| backend(op, e))?;
            return Ok(Attempt::Done(plan.receipt()));
        }
        let log = LogArrays::new(&plan.log)?;

        let (mut events, mut history) = (EventArrays::default(), HistoryArrays::default());
        for &i in &plan.record {
            let (_, ev, state) = &rows[i];
            events.push(ev);
            if let Some(s) = state {
                history.push(s);
            }
        }
        let mut sections = SectionArrays::default();
        for v in plan.section_versions(batch) {
            sections.push(v);
        }
        let (mut inserts, mut updates) = (CurrentArrays::default(), CurrentArrays::default());
        let positions = sections.positions();
        for row in &plan.current {
            let (Some(h), Some(state)) =
                (&rows[row.item].2, batch.items[row.item].state.as_deref())
            else {
                continue;
            };
            match row.write {
                CurrentWrite::Insert => inserts.push(h, state, &DataWrite::Whole, &positions),
                CurrentWrite::Update { from } => {
                    updates.push(h, state, &row.data, &positions);
                    updates.prev.push(to_i64("version", from)?);
                }
            }
        }
        let q = events.bind(self.query(&self.sql.write_batch));
        let q = sections.bind(history.bind(updates.bind_update(inserts.bind_insert(q))));
        let done = match log.bind(q).fetch_all(&mut *tx).await {
            Ok(done) => done,
            Err(e) if sqlstate(&e).as_deref() == Some(DEADLOCK) => {
                tx.rollback().await.map_err(|e| backend(op, e))?;
                return Ok(Attempt::Raced);
            }
            Err(e) => {
                // Every insert skips taken keys, so this is only a key the DBA added.
                let (_, ev, state) = &rows[plan.record[0]];
                return Err(conflict_or_backend(op, e, || match state {
                    Some(s) => history_taken(s),
                    None => StoreError::origin_taken(
                        &ev.c.origin_node.as_str().into(),
                        OriginSeq(ev.c.origin_seq.unsigned_abs()),
                    ),
                }));
            }
        };
        let mut done_events = HashSet::new();
        let mut done_states = HashSet::new();
        let mut done_history = HashSet::new();
        let mut done_log = 0;
        for r in &done {
            let what = || "written row".to_owned();
            let k: String = col(r, "k", &what)?;
            if k == "l" {
                done_log += 1;
                continue;
            }
            let id: String = col(r, "id", &what)?;
            match k.as_str() {
                "e" => done_events.insert(id),
                "h" => done_history.insert((id, col::<i64>(r, "version", &what)?)),
                _ => done_states.insert(id),
            };
        }
        let raced = done_log != plan.log.len()
            || plan
                .record
                .iter()
                .any(|&i| !done_events.contains(&rows[i].1.c.id))
            || plan.current.iter().any(|row| {
                rows[row.item]
                    .2
                    .as_ref()
                    .is_some_and(|s| !done_states.contains(&s.id))
            });
        if raced {
            // A concurrent writer recorded an event id or origin seq, created or changed a
            // state, or appended to the log after the read: read and plan again (its commit
            // decides duplicate or conflict, or this batch follows it in the log).
            tx.rollback().await.map_err(|e| backend(op, e))?;
            return Ok(Attempt::Raced);
        }
        for &i in &plan.record {
            if let (_, _, Some(s)) = &rows[i] {
                if !done_history.contains(&(s.id.clone(), s.version)) {
                    // The history's unique key `(id, version)` skipped this row although the
                    // current row was at the version before: the key is the backstop.
                    return Err(history_taken(s));
                }
            }
        }
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(Attempt::Done(plan.receipt()))
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        NAME
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.config.validate()?;
        let op = "migrate";
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        // Concurrent migrations of the same schema wait for each other instead of racing on
        // the catalog (CREATE … IF NOT EXISTS is not atomic across sessions).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("sst-migrate:{}", self.config.schema))
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        // A table that already carries a peer table's name must be one of ours: refuse a
        // foreign one before anything is created (the transaction then rolls back, so a
        // refused migrate changes nothing).
        let needed = needed_columns(&self.config.tables);
        let tables: Vec<&str> = needed.iter().map(|(t, _)| *t).collect();
        let present: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = ANY($2) ORDER BY ordinal_position",
        )
        .bind(&self.config.schema)
        .bind(&tables)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| backend(op, e))?;
        check_peer_layout(
            NAME,
            &needed,
            &present,
            NameCase::Exact,
            &format!(
                "looked for in schema `{}`: choose another schema or other table names \
                 (PostgresConfig::schema / tables), or move that table away",
                self.config.schema
            ),
        )?;
        // An event table of an older layout gains the columns added since.
        let added = [(
            self.config.tables.event.as_str(),
            ADDED_EVENT_COLUMNS.map(|(c, _)| c),
        )];
        for (_, column) in columns_to_add(&added, &present, NameCase::Exact) {
            let ty = ADDED_EVENT_COLUMNS
                .iter()
                .find(|(c, _)| *c == column)
                .map_or("jsonb", |(_, t)| *t);
            sqlx::query(AssertSqlSafe(format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {column} {ty}",
                self.names.event
            )))
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        }
        // Section versions are compressed with lz4 where the server has it (see
        // `schema::ddl`); a server without it keeps its default, and opens all the same.
        let lz4: bool = sqlx::query_scalar(schema::LZ4_SUPPORTED)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        let mut stmts = schema::ddl(&self.names, lz4);
        // State tables of the first layout (history rows carrying the whole `data` document)
        // are upgraded in place, inside this transaction: all of it or nothing.
        let has =
            |table: &str, column: &str| present.iter().any(|(t, c)| t == table && c == column);
        let t = &self.config.tables;
        if has(&t.history, "data") {
            let extra: Vec<&str> = schema::FIRST_LAYOUT_CURRENT_EXTRA
                .into_iter()
                .filter(|c| has(&t.state, c))
                .collect();
            let disagreement: Option<(String, String, i64, i64)> = sqlx::query_as(AssertSqlSafe(
                schema::first_layout_disagreement(&self.names),
            ))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
            if let Some((id, name, low, high)) = disagreement {
                return Err(sst_core::raw::first_layout_disagreement(
                    &id,
                    &name,
                    low.unsigned_abs(),
                    high.unsigned_abs(),
                ));
            }
            stmts.extend(schema::upgrade_first_layout(&self.names, &extra));
            if !extra.is_empty() {
                let rules: i64 = sqlx::query_scalar(schema::DATA_USED_BY_A_RULE)
                    .bind(&self.names.state)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| backend(op, e))?;
                // With a user's view on `data`, its rows are left as they are: each is
                // rewritten plain by the next commit that changes it.
                if rules == 0 {
                    stmts.push(schema::rewrite_current_data(&self.names));
                }
            }
        }
        stmts.push(schema::versions_view(&self.names));
        for stmt in stmts {
            sqlx::query(AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
        }
        if lz4 {
            // A section table created by an earlier version (no method declared) is switched
            // to lz4 for the values written from now on; a method a DBA declared is kept.
            let declared: String = sqlx::query_scalar(schema::SECTION_VALUE_COMPRESSION)
                .bind(&self.names.section)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
            if declared.is_empty() {
                sqlx::query(AssertSqlSafe(schema::section_value_lz4(&self.names)))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| backend(op, e))?;
            }
        }
        tx.commit().await.map_err(|e| backend(op, e))
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReceipt, StoreError> {
        batch.validate()?;
        self.config.validate()?;
        // Everything is converted (and range-checked) before the database is touched.
        let mut rows = Vec::with_capacity(batch.items.len());
        for (i, item) in batch.items.iter().enumerate() {
            let at = format!("items[{i}]");
            let state = item
                .state
                .as_ref()
                .map(|s| HistoryRow::new(&format!("{at}.state"), s))
                .transpose()?;
            rows.push((item.event.id(), EventRow::new(&at, item)?, state));
        }
        // The first attempt reads without locking; if a concurrent writer got in between,
        // the batch is tried again with the touched states locked, where only a concurrent
        // write of one of these event ids, a creation of one of these states or another
        // writer's log entry can intervene, and each is seen by the next attempt.
        let lookups = Lookups::of(&batch);
        let (batch, rows) = (&batch, &rows);
        retry_races("commit", |attempt| {
            self.try_commit(batch, &lookups, rows, attempt > 0)
        })
        .await
    }

    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError> {
        self.fetch_state(&self.sql.state, id, None, "state").await
    }

    async fn state_at(&self, id: &StateId, version: u64) -> Result<Option<State>, StoreError> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        self.fetch_state(&self.sql.state_at, id, Some(v), "state_at")
            .await
    }

    async fn state_ids(&self) -> Result<Vec<StateId>, StoreError> {
        self.config.validate()?;
        let ids: Vec<String> = sqlx::query_scalar(self.sql.state_ids.clone())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("state_ids", e))?;
        Ok(ids.into_iter().map(StateId).collect())
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        self.config.validate()?;
        if filter.limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("{} WHERE TRUE", select_events(&self.names)));
        if let Some(s) = &filter.state_id {
            q.push(" AND state_id = ").push_bind(s.0.clone());
        }
        if let Some(a) = &filter.actor {
            q.push(" AND actor = ").push_bind(a.0.clone());
        }
        if let Some(n) = &filter.origin_node {
            q.push(" AND origin_node = ").push_bind(n.0.clone());
        }
        if let Some(s) = filter.after_origin_seq {
            q.push(" AND origin_seq > ")
                .push_bind(i64::try_from(s.0).unwrap_or(i64::MAX));
        }
        if let Some(o) = filter.outcome {
            q.push(" AND outcome = ").push_bind(o.as_str());
        }
        if let Some(k) = filter.kind {
            q.push(" AND kind = ").push_bind(k.as_str());
        }
        q.push(" ORDER BY pos");
        if let Some(limit) = filter.limit {
            q.push(" LIMIT ")
                .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("events", e))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.config.validate()?;
        let row = self
            .query(&self.sql.event)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("event", e))?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn last_origin_seq(&self, node: &NodeId) -> Result<OriginSeq, StoreError> {
        self.config.validate()?;
        let seq: i64 = sqlx::query_scalar(self.sql.last_origin_seq.clone())
            .bind(node.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend("last_origin_seq", e))?;
        Ok(OriginSeq(u64::try_from(seq).unwrap_or(0)))
    }

    async fn put_actor(&self, actor: &Actor) -> Result<(), StoreError> {
        self.config.validate()?;
        check_text("actor.id", actor.id.as_str())?;
        check_text("actor.node", actor.node.as_str())?;
        let key = json_value("actor.public_key", &actor.public_key)?;
        let key = key.as_str().unwrap_or_default().to_owned();
        let op = "put_actor";
        retry_races(op, |_| async {
            let mut tx = self.begin(op).await?;
            self.query(&self.sql.put_actor)
                .bind(actor.id.as_str())
                .bind(actor.node.as_str())
                .bind(&key)
                .bind(actor.status.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
            self.append_and_commit(tx, op, &LogRecord::Actor(actor))
                .await
        })
        .await
    }

    async fn actor(&self, id: &ActorId) -> Result<Option<Actor>, StoreError> {
        self.config.validate()?;
        let row = self
            .query(&self.sql.actor)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("actor", e))?;
        row.as_ref().map(actor_from_row).transpose()
    }

    async fn actors(&self) -> Result<Vec<Actor>, StoreError> {
        self.config.validate()?;
        let rows = self
            .query(&self.sql.actors)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("actors", e))?;
        rows.iter().map(actor_from_row).collect()
    }

    async fn put_contract(&self, contract: &ContractRecord) -> Result<(), StoreError> {
        self.config.validate()?;
        let op = "put_contract";
        let key = contract.contract();
        check_text("contract.name", &key.name)?;
        let version = contract_version("contract.version", key.version)?;
        let record = json_value("contract", contract)?;
        sst_core::portable::check_at(&record, "$.contract")?;
        retry_races(op, |_| async {
            let mut tx = self.begin(op).await?;
            let stored = self.contract_identity(&mut tx, key, version).await?;
            if ContractPut::decide(stored.as_ref(), contract)? == ContractPut::AlreadyRecorded {
                tx.commit().await.map_err(|e| backend(op, e))?;
                return Ok(Attempt::Done(()));
            }
            let inserted = self
                .query(&self.sql.insert_contract)
                .bind(&key.name)
                .bind(version)
                .bind(contract.identity.to_string())
                .bind(contract.deployer.as_str())
                .bind(&record)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
            if inserted.rows_affected() == 0 {
                // A concurrent put recorded this name and version first: the next attempt
                // decides against its record.
                tx.rollback().await.map_err(|e| backend(op, e))?;
                return Ok(Attempt::Raced);
            }
            self.append_and_commit(tx, op, &LogRecord::Contract(contract))
                .await
        })
        .await
    }

    async fn contract(&self, contract: &ContractRef) -> Result<Option<ContractRecord>, StoreError> {
        self.config.validate()?;
        let Ok(version) = i32::try_from(contract.version) else {
            return Ok(None);
        };
        let row = self
            .query(&self.sql.contract)
            .bind(&contract.name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("contract", e))?;
        row.as_ref().map(contract_from_row).transpose()
    }

    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        self.config.validate()?;
        let rows = self
            .query(&self.sql.contracts)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("contracts", e))?;
        rows.iter().map(contract_from_row).collect()
    }

    async fn put_refusal(&self, refusal: &Refusal) -> Result<(), StoreError> {
        check_refusal(refusal)?;
        self.config.validate()?;
        let op = "put_refusal";
        let version = to_i64("$.refusal.version", refusal.version)?;
        let reason = json_value("$.refusal.reason", &refusal.reason)?;
        retry_races(op, |_| async {
            let mut tx = self.begin(op).await?;
            self.query(&self.sql.put_refusal)
                .bind(refusal.event.to_string())
                .bind(refusal.state_id.as_str())
                .bind(version)
                .bind(refusal.from_node.as_str())
                .bind(refusal.reason.code())
                .bind(&reason)
                .bind(refusal.at.0)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
            self.append_and_commit(tx, op, &LogRecord::Refusal(refusal))
                .await
        })
        .await
    }

    async fn refusals(&self, state: Option<&StateId>) -> Result<Vec<Refusal>, StoreError> {
        self.config.validate()?;
        let rows = self
            .query(&self.sql.refusals)
            .bind(state.map(StateId::as_str))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("refusals", e))?;
        rows.iter().map(refusal_from_row).collect()
    }

    async fn clear_refusal(&self, event: &EventId) -> Result<(), StoreError> {
        self.config.validate()?;
        let op = "clear_refusal";
        retry_races(op, |_| async {
            let mut tx = self.begin(op).await?;
            let deleted = self
                .query(&self.sql.clear_refusal)
                .bind(event.to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
            if deleted.rows_affected() == 0 {
                // Nothing to clear: nothing to log.
                tx.commit().await.map_err(|e| backend(op, e))?;
                return Ok(Attempt::Done(()));
            }
            self.append_and_commit(tx, op, &LogRecord::RefusalCleared(event))
                .await
        })
        .await
    }

    async fn log(&self, after: u64, limit: Option<usize>) -> Result<Vec<LogEntry>, StoreError> {
        self.config.validate()?;
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let rows = self
            .query(&self.sql.log)
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("log", e))?;
        rows.iter().map(log_entry_from_row).collect()
    }

    async fn log_head(&self) -> Result<LogHead, StoreError> {
        self.config.validate()?;
        let row = self
            .query(&self.sql.log_head)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("log_head", e))?;
        Ok(row
            .as_ref()
            .map(log_entry_from_row)
            .transpose()?
            .map_or_else(LogHead::default, |e| e.head()))
    }

    async fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        self.config.validate()?;
        let op = "put_checkpoint";
        let cp = &checkpoint.checkpoint;
        check_text("checkpoint.node", cp.node.as_str())?;
        let pos = to_i64("checkpoint.pos", cp.pos)?;
        let signature = json_value("checkpoint.signature", &checkpoint.signature)?;
        let inserted = self
            .query(&self.sql.insert_checkpoint)
            .bind(cp.node.as_str())
            .bind(pos)
            .bind(cp.head.to_string())
            .bind(cp.at.0)
            .bind(signature.as_str().unwrap_or_default())
            .execute(&self.pool)
            .await
            .map_err(|e| backend(op, e))?;
        if inserted.rows_affected() == 1 {
            return Ok(());
        }
        // A checkpoint is recorded at this position already (rows are never updated): the
        // same head is this one again, another head a second history signed by the node.
        let held: Option<String> = sqlx::query_scalar(self.sql.checkpoint_head.clone())
            .bind(cp.node.as_str())
            .bind(pos)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend(op, e))?;
        match held {
            Some(head) if head == cp.head.to_string() => Ok(()),
            Some(_) => Err(StoreError::checkpoint_conflict(&cp.node, cp.pos)),
            None => Err(StoreError::Backend {
                backend: NAME,
                operation: op,
                retryable: true,
                source: format!(
                    "the checkpoint of node {} at log position {} was deleted while put",
                    cp.node, cp.pos
                )
                .into(),
            }),
        }
    }

    async fn checkpoints(&self, node: &NodeId) -> Result<Vec<SignedCheckpoint>, StoreError> {
        self.config.validate()?;
        let rows = self
            .query(&self.sql.checkpoints)
            .bind(node.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("checkpoints", e))?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn prune_checkpoints(&self, node: &NodeId, keep: usize) -> Result<usize, StoreError> {
        self.config.validate()?;
        check_prune_keep(keep)?;
        let deleted = self
            .query(&self.sql.prune_checkpoints)
            .bind(node.as_str())
            .bind(i64::try_from(keep).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(|e| backend("prune_checkpoints", e))?;
        Ok(usize::try_from(deleted.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        self.config.validate()?;
        check_sink_name(sink)?;
        let pos: Option<i64> = sqlx::query_scalar(self.sql.sink_cursor.clone())
            .bind(sink)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("sink_cursor", e))?;
        pos.map(|p| {
            u64::try_from(p).map_err(|e| StoreError::malformed(format!("cursor of sink {sink}"), e))
        })
        .transpose()
    }

    async fn set_sink_cursor(&self, sink: &str, position: u64) -> Result<(), StoreError> {
        self.config.validate()?;
        check_sink_name(sink)?;
        let pos = to_i64("position", position)?;
        self.query(&self.sql.set_sink_cursor)
            .bind(sink)
            .bind(pos)
            .execute(&self.pool)
            .await
            .map_err(|e| backend("set_sink_cursor", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_takes_its_one_section_from_the_section_arrays() {
        assert_eq!(SECTION_COLUMNS[SECTION_NAME].0, "name");
        assert_eq!(SECTION_COLUMNS[SECTION_VALUE].0, "value");
        let sql = write_batch(&Names::new(&PostgresConfig::new("postgres://x")));
        let sec = 1
            + EVENT_COLUMNS.len()
            + CURRENT_COLUMNS.len()
            + UPDATE_COLUMNS.len()
            + HISTORY_COLUMNS.len();
        let (name, value) = (sec + 1, sec + 3);
        assert!(sql.contains(&format!(
            "UNNEST(${sec}::text[], ${name}::text[], ${}::text[], ${value}::jsonb[]) \
             AS u(state_id, name, hash, value)",
            sec + 2
        )));
        assert!(sql.contains(&format!(
            "ARRAY[(${name}::text[])[u.section]], (${value}::jsonb[])[u.section]) END"
        )));
        assert!(sql.contains("WHEN u.section IS NULL"));
    }
}
