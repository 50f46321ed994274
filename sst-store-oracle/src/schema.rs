//! DDL of the peer tables for both JSON column types, every SQL statement the store runs
//! (generated once from the configured table names, so they are unit-tested without a
//! server), the check `migrate` makes of peer tables that already exist, and the in-place
//! upgrade of state tables of the first layout to the section-version layout.

use sst_core::raw::{
    check_peer_layout, columns_to_add, DataWrite, NameCase, FIRST_LAYOUT_CURRENT_ONLY,
};
use sst_core::StoreError;

use crate::config::TableNames;
use crate::NAME;

/// The JSON column type actually used (after [`JsonColumn::Auto`](crate::JsonColumn) is
/// resolved from the server version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonMode {
    /// `JSON` (Oracle 21c+).
    Native,
    /// `BLOB CHECK (… IS JSON)` (Oracle 19c).
    Blob,
}

impl JsonMode {
    /// The mode for a server of major version `major`.
    pub fn for_server(major: i32) -> Self {
        if major >= 21 {
            JsonMode::Native
        } else {
            JsonMode::Blob
        }
    }

    /// Column definition of a JSON column named `col`.
    pub fn column(self, col: &str, nullable: bool) -> String {
        let null = if nullable { "" } else { " NOT NULL" };
        match self {
            JsonMode::Native => format!("{col} JSON{null}"),
            JsonMode::Blob => format!(
                "{col} BLOB{null} CONSTRAINT {{t}}_{col}_json CHECK ({col} IS JSON STRICT WITH UNIQUE KEYS)"
            ),
        }
    }

    /// Placeholder for binding JSON into a column (`:n` is the bind position).
    pub fn bind(self, n: usize) -> String {
        match self {
            JsonMode::Native => format!("JSON(:{n} EXTENDED)"),
            JsonMode::Blob => format!(":{n}"),
        }
    }

    /// Expression reading a JSON column as text (native) or bytes (BLOB).
    pub fn read(self, col: &str) -> String {
        match self {
            JsonMode::Native => format!("JSON_SERIALIZE({col} RETURNING CLOB)"),
            JsonMode::Blob => col.to_owned(),
        }
    }
}

/// Wraps DDL so that re-running it is a no-op: ORA-00955 (name already used), ORA-01408
/// (columns already indexed), ORA-02260/02261 (key already exists) are ignored.
pub fn idempotent(ddl: &str) -> String {
    let escaped = ddl.replace('\'', "''");
    format!(
        "BEGIN EXECUTE IMMEDIATE '{escaped}'; EXCEPTION WHEN OTHERS THEN \
         IF SQLCODE NOT IN (-955, -1408, -2260, -2261) THEN RAISE; END IF; END;"
    )
}

/// Columns of the current-state table: the header users filter on and the queryable `data`
/// document, nothing else (parties, seals and roots live in the history row of that version).
fn current_columns(mode: JsonMode, table: &str) -> String {
    format!(
        "id VARCHAR2(512) NOT NULL, \
         contract_name VARCHAR2(256) NOT NULL, \
         contract_version NUMBER(10) NOT NULL, \
         version NUMBER(19) NOT NULL CHECK (version >= 1), \
         {}",
        mode.column("data", false).replace("{t}", table)
    )
}

/// Columns of the history table: every version's header and section seals, no plaintext.
fn history_columns(mode: JsonMode, table: &str) -> String {
    let json = |c: &str| mode.column(c, false).replace("{t}", table);
    format!(
        "id VARCHAR2(512) NOT NULL, \
         contract_name VARCHAR2(256) NOT NULL, \
         contract_version NUMBER(10) NOT NULL, \
         version NUMBER(19) NOT NULL CHECK (version >= 1), \
         {}, {}, \
         root VARCHAR2(128) NOT NULL, \
         prev_root VARCHAR2(128), \
         last_event VARCHAR2(128), \
         updated_at NUMBER(19) NOT NULL",
        json("parties"),
        json("seals"),
    )
}

/// The column holding a section version's value. Native: `JSON`, which takes any JSON value.
/// BLOB mode: a plain `BLOB` of UTF-8 JSON text without an `IS JSON` check, because 19c's
/// `IS JSON` refuses a top-level scalar, which a section value may be.
fn section_value_column(mode: JsonMode) -> &'static str {
    match mode {
        JsonMode::Native => "value JSON NOT NULL",
        JsonMode::Blob => "value BLOB NOT NULL",
    }
}

/// `CREATE TABLE` of the section table: one row per section version, written once.
fn section_table(t: &TableNames, mode: JsonMode) -> String {
    format!(
        "CREATE TABLE {sc} (state_id VARCHAR2(512) NOT NULL, \
         name VARCHAR2(1024) NOT NULL, hash VARCHAR2(128) NOT NULL, {value}, \
         CONSTRAINT {sc}_pk PRIMARY KEY (state_id, name, hash))",
        sc = t.section,
        value = section_value_column(mode)
    )
}

/// The disclosed sections of the version whose history row is aliased `h`, as one JSON object
/// `{name: value}` (`{}` when none): the seals that have a salt (`JSON_TABLE` over the seal
/// objects), each joined to its section row by state and hash. A section hash commits to the
/// section's name, so the hash picks the row of that name.
fn version_data(t: &TableNames, mode: JsonMode) -> String {
    let (input, returning, empty) = match mode {
        JsonMode::Native => ("h.seals", "JSON", "JSON('{}')"),
        JsonMode::Blob => (
            "h.seals FORMAT JSON",
            "BLOB",
            "TO_BLOB(UTL_RAW.CAST_TO_RAW('{}'))",
        ),
    };
    let value = match mode {
        JsonMode::Native => "s.value",
        JsonMode::Blob => "s.value FORMAT JSON",
    };
    format!(
        "COALESCE((SELECT JSON_OBJECTAGG(KEY s.name VALUE {value} RETURNING {returning}) \
         FROM JSON_TABLE({input}, '$.*' COLUMNS (hash VARCHAR2(128) PATH '$.hash', \
         salted VARCHAR2(5) EXISTS PATH '$.salt')) j \
         JOIN {sc} s ON s.state_id = h.id AND s.hash = j.hash \
         WHERE j.salted = 'true'), {empty})",
        sc = t.section
    )
}

/// `CREATE OR REPLACE VIEW` of the history view: every version's header and its full
/// queryable `data` document, assembled from the history and section tables. Read-only.
pub fn versions_view(t: &TableNames, mode: JsonMode) -> String {
    format!(
        "CREATE OR REPLACE VIEW {vw} (id, version, contract_name, contract_version, root, \
         updated_at, data) AS SELECT h.id, h.version, h.contract_name, h.contract_version, \
         h.root, h.updated_at, {data} FROM {hi} h WITH READ ONLY",
        vw = t.versions,
        hi = t.history,
        data = version_data(t, mode)
    )
}

/// The `CREATE TABLE` / `CREATE INDEX` statements `migrate` runs first, in order, each made
/// idempotent by [`idempotent`] (the history view, [`versions_view`], comes last, after any
/// [`layout_upgrade`]).
pub fn ddl(t: &TableNames, mode: JsonMode) -> Vec<String> {
    let json =
        |table: &str, c: &str, nullable: bool| mode.column(c, nullable).replace("{t}", table);
    let raw = [
        format!(
            "CREATE TABLE {st} ({cols}, CONSTRAINT {st}_pk PRIMARY KEY (id))",
            st = t.state,
            cols = current_columns(mode, &t.state)
        ),
        format!(
            "CREATE TABLE {hi} ({cols}, CONSTRAINT {hi}_pk PRIMARY KEY (id, version))",
            hi = t.history,
            cols = history_columns(mode, &t.history)
        ),
        section_table(t, mode),
        format!(
            "CREATE TABLE {ev} (\
             pos NUMBER(19) GENERATED ALWAYS AS IDENTITY NOT NULL, \
             id VARCHAR2(128) NOT NULL, \
             state_id VARCHAR2(512) NOT NULL, \
             kind VARCHAR2(32) NOT NULL, \
             contract_name VARCHAR2(256) NOT NULL, \
             contract_version NUMBER(10) NOT NULL, \
             actor VARCHAR2(512) NOT NULL, \
             origin_node VARCHAR2(512) NOT NULL, \
             origin_seq NUMBER(19) NOT NULL, \
             outcome VARCHAR2(16) NOT NULL CHECK (outcome IN ('applied', 'rejected')), \
             reason VARCHAR2(64), \
             {reason_detail}, \
             new_version NUMBER(19), \
             new_root VARCHAR2(128), \
             {event}, {disclosures}, {receipt}, {business_events}, {endorsements}, \
             CONSTRAINT {ev}_pk PRIMARY KEY (id), \
             CONSTRAINT {ev}_origin_uq UNIQUE (origin_node, origin_seq), \
             CONSTRAINT {ev}_pos_uq UNIQUE (pos))",
            ev = t.event,
            reason_detail = json(&t.event, "reason_detail", true),
            event = json(&t.event, "event", false),
            disclosures = json(&t.event, "disclosures", false),
            receipt = json(&t.event, "receipt", true),
            business_events = json(&t.event, "business_events", true),
            endorsements = json(&t.event, "endorsements", true),
        ),
        format!(
            "CREATE INDEX {ev}_state_ix ON {ev} (state_id, pos)",
            ev = t.event
        ),
        format!(
            "CREATE TABLE {ac} (id VARCHAR2(512) NOT NULL, node VARCHAR2(512) NOT NULL, \
             public_key VARCHAR2(256) NOT NULL, status VARCHAR2(16) NOT NULL, \
             CONSTRAINT {ac}_pk PRIMARY KEY (id))",
            ac = t.actor
        ),
        format!(
            "CREATE TABLE {co} (name VARCHAR2(256) NOT NULL, version NUMBER(10) NOT NULL, \
             identity VARCHAR2(128) NOT NULL, {record}, \
             CONSTRAINT {co}_pk PRIMARY KEY (name, version))",
            co = t.contract,
            record = json(&t.contract, "record", false),
        ),
        format!(
            "CREATE TABLE {rf} (event_id VARCHAR2(128) NOT NULL, \
             state_id VARCHAR2(512) NOT NULL, version NUMBER(19) NOT NULL, \
             from_node VARCHAR2(512) NOT NULL, reason VARCHAR2(64) NOT NULL, \
             {reason_detail}, at NUMBER(19) NOT NULL, \
             CONSTRAINT {rf}_pk PRIMARY KEY (event_id))",
            rf = t.refusal,
            reason_detail = json(&t.refusal, "reason_detail", false),
        ),
        format!(
            "CREATE INDEX {rf}_state_ix ON {rf} (state_id, version)",
            rf = t.refusal
        ),
        format!(
            "CREATE TABLE {lg} (pos NUMBER(19) NOT NULL, kind VARCHAR2(32) NOT NULL, \
             subject VARCHAR2(1024) NOT NULL, record VARCHAR2(128) NOT NULL, \
             prev VARCHAR2(128) NOT NULL, hash VARCHAR2(128) NOT NULL, \
             CONSTRAINT {lg}_pk PRIMARY KEY (pos))",
            lg = t.log
        ),
        format!(
            "CREATE TABLE {cp} (node VARCHAR2(512) NOT NULL, pos NUMBER(19) NOT NULL, \
             head VARCHAR2(128) NOT NULL, at NUMBER(19) NOT NULL, \
             signature VARCHAR2(256) NOT NULL, \
             CONSTRAINT {cp}_pk PRIMARY KEY (node, pos))",
            cp = t.checkpoint
        ),
        format!(
            "CREATE TABLE {sc} (sink VARCHAR2(128) NOT NULL, \
             pos NUMBER(19) NOT NULL CHECK (pos >= 0), \
             CONSTRAINT {sc}_pk PRIMARY KEY (sink))",
            sc = t.sink_cursor
        ),
    ];
    raw.iter().map(|d| idempotent(d)).collect()
}

/// Event columns added after the event table was first released: an event table without them
/// is of an older layout, and `migrate` adds them (nullable).
const ADDED_EVENT_COLUMNS: &[&str] = &["business_events", "endorsements"];

/// The `ALTER TABLE` statements that bring existing peer tables of an older layout up to
/// date: `present` as for [`check_peer_columns`] (which must have accepted them).
pub fn upgrade_ddl(t: &TableNames, mode: JsonMode, present: &[(String, String)]) -> Vec<String> {
    let added = [(t.event.as_str(), ADDED_EVENT_COLUMNS)];
    columns_to_add(&added, present, NameCase::Insensitive)
        .into_iter()
        .map(|(table, column)| {
            let definition = mode.column(column, true).replace("{t}", table);
            format!("ALTER TABLE {table} ADD ({definition})")
        })
        .collect()
}

/// Most binds in one `IN` list (Oracle allows 1000 expressions, ORA-01795): lookups are
/// made in chunks of this many keys.
pub const IN_LIST_MAX: usize = 500;

/// `:first, …, :first+n-1`.
fn binds(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!(":{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Columns of the current-state table (section-version layout).
const CURRENT_COLUMNS: &[&str] = &["id", "contract_name", "contract_version", "version", "data"];

/// Columns of the history table (section-version layout).
const HISTORY_COLUMNS: &[&str] = &[
    "id",
    "contract_name",
    "contract_version",
    "version",
    "parties",
    "seals",
    "root",
    "prev_root",
    "last_event",
    "updated_at",
];

/// Columns of the section table.
const SECTION_COLUMNS: &[&str] = &["state_id", "name", "hash", "value"];

/// One step of the in-place upgrade of state tables of the first layout (every history row
/// carrying its whole `data` document, the current row every history column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutStep {
    /// Run this statement (DDL: Oracle commits it implicitly).
    Run(String),
    /// Write a section row for every salted seal of every history row (value = that row's
    /// `data[name]`), skipping keys already stored, committing batch by batch
    /// ([`Sql::first_layout_history`], [`Sql::merge_section`]). `migrate` first reads every
    /// row and refuses, before running any step or other DDL, when two rows hold one section
    /// version with different values.
    CopySections,
}

/// The in-place upgrade of the state tables of the first layout, in order: `present` as for
/// [`check_peer_columns`]. Oracle DDL commits implicitly, so the steps are ordered for a crash
/// anywhere to be repaired by running `migrate` again: the section table is created and filled
/// (idempotently) while the history still holds `data`, and `data` is dropped only after that;
/// the current table's extra columns go last, looked up again on the next run. Run after the
/// tables of [`ddl`] (the section table among them) and before the view. Empty for tables of
/// the section-version layout (or none yet).
pub fn layout_upgrade(t: &TableNames, present: &[(String, String)]) -> Vec<LayoutStep> {
    let has = |table: &str, column: &str| {
        present
            .iter()
            .any(|(tb, c)| tb.eq_ignore_ascii_case(table) && c.eq_ignore_ascii_case(column))
    };
    let mut steps = Vec::new();
    if has(&t.history, "data") {
        steps.push(LayoutStep::CopySections);
        steps.push(LayoutStep::Run(format!(
            "ALTER TABLE {} DROP COLUMN data",
            t.history
        )));
    }
    let extra: Vec<&str> = FIRST_LAYOUT_CURRENT_ONLY
        .iter()
        .copied()
        .filter(|c| has(&t.state, c))
        .collect();
    if !extra.is_empty() {
        steps.push(LayoutStep::Run(format!(
            "ALTER TABLE {} DROP ({})",
            t.state,
            extra.join(", ")
        )));
    }
    steps
}

/// The columns the store reads and writes in each peer table.
pub fn required_columns(t: &TableNames) -> [(&str, &'static [&'static str]); 10] {
    const EVENT: &[&str] = &[
        "pos",
        "id",
        "state_id",
        "kind",
        "contract_name",
        "contract_version",
        "actor",
        "origin_node",
        "origin_seq",
        "outcome",
        "reason",
        "reason_detail",
        "new_version",
        "new_root",
        "event",
        "disclosures",
        "receipt",
    ];
    [
        (&t.state, CURRENT_COLUMNS),
        (&t.history, HISTORY_COLUMNS),
        (&t.event, EVENT),
        (&t.actor, &["id", "node", "public_key", "status"]),
        (&t.contract, &["name", "version", "identity", "record"]),
        (
            &t.refusal,
            &[
                "event_id",
                "state_id",
                "version",
                "from_node",
                "reason",
                "reason_detail",
                "at",
            ],
        ),
        (&t.log, LOG_COLUMNS),
        (&t.checkpoint, CHECKPOINT_COLUMNS),
        (&t.sink_cursor, &["sink", "pos"]),
        (&t.section, SECTION_COLUMNS),
    ]
}

/// Columns of a log row, in the order [`Sql::insert_log`] binds and [`Sql::log_head`] selects
/// them.
const LOG_COLUMNS: &[&str] = &["pos", "kind", "subject", "record", "prev", "hash"];

/// Columns of a checkpoint row, in the order [`Sql::insert_checkpoint`] binds and
/// [`Sql::checkpoints`] selects them.
const CHECKPOINT_COLUMNS: &[&str] = &["node", "pos", "head", "at", "signature"];

/// The decision of `migrate` on the tables that already exist: `present` holds
/// `(table_name, column_name)` of the peer tables as the data dictionary lists them
/// ([`Sql::peer_columns`], upper case). A table that exists but lacks a column SST needs is
/// not an SST peer table.
///
/// # Errors
/// [`StoreError::Schema`] naming the first such table and its first missing column.
pub fn check_peer_columns(t: &TableNames, present: &[(String, String)]) -> Result<(), StoreError> {
    // The dictionary reports upper-case names; list them as SST writes them.
    let present: Vec<(String, String)> = present
        .iter()
        .map(|(table, column)| (table.clone(), column.to_lowercase()))
        .collect();
    check_peer_layout(
        NAME,
        &required_columns(t),
        &present,
        NameCase::Insensitive,
        "choose other table names (OracleConfig::with_prefix) or move that table away",
    )
}

/// The columns of a state version, in the order the reads select them: the header of row
/// `{head}` (the current row, or the history row), the rest from history row `h`, the data
/// document `{data}` (the current row's, or the view's).
const STATE_SELECT: &str = "{head}.id, {head}.contract_name, {head}.contract_version, \
     {head}.version, {parties}, {seals}, {data}, h.root, h.prev_root, h.last_event, h.updated_at";

/// Whether `name` can be spliced into a JSON_TRANSFORM path `'$."name"'` as it is: not empty,
/// no `"` or `\` (the path's escapes), no `'` (the SQL literal's quote), no control character.
pub fn path_safe(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '"' || c == '\\' || c == '\'' || c.is_control())
}

/// The JSON path of a top-level key whose name [`path_safe`] accepts, as a SQL literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPath {
    name: String,
    sql: String,
}

impl MemberPath {
    /// `'$."name"'`, `None` when [`path_safe`] refuses `name`.
    pub fn new(name: &str) -> Option<Self> {
        path_safe(name).then(|| MemberPath {
            name: name.to_owned(),
            sql: format!("'$.\"{name}\"'"),
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQL literal.
    pub fn as_sql(&self) -> &str {
        &self.sql
    }
}

/// How a guarded update of a current-state row writes its `data` document
/// ([`Sql::update_current`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSql {
    /// Leave `data` as it is (no section changed).
    Keep,
    /// Bind the whole document.
    Whole,
    /// `JSON_TRANSFORM` the stored document: remove these top-level keys, set those (one bind
    /// each, in this order).
    Patch {
        /// Keys removed.
        remove: Vec<MemberPath>,
        /// Keys set, one bind each.
        set: Vec<MemberPath>,
    },
}

impl DataSql {
    /// The statement shape for the core's [`DataWrite`]: a patch only on the native `JSON`
    /// type (JSON_TRANSFORM on a 19c `BLOB` depends on its release update, so BLOB mode writes
    /// the whole document), and only when every name is [`path_safe`] (otherwise the whole
    /// document); an empty patch keeps the document.
    pub fn for_write(mode: JsonMode, write: &DataWrite) -> Self {
        let DataWrite::Patch { set, remove } = write else {
            return DataSql::Whole;
        };
        if mode != JsonMode::Native {
            return DataSql::Whole;
        }
        if set.is_empty() && remove.is_empty() {
            return DataSql::Keep;
        }
        let paths = |names: &[String]| names.iter().map(|n| MemberPath::new(n)).collect();
        match (paths(remove), paths(set)) {
            (Some(remove), Some(set)) => DataSql::Patch { remove, set },
            _ => DataSql::Whole,
        }
    }

    /// How many JSON binds the `data` assignment takes.
    pub fn binds(&self) -> usize {
        match self {
            DataSql::Keep => 0,
            DataSql::Whole => 1,
            DataSql::Patch { set, .. } => set.len(),
        }
    }
}

/// Every statement of the store, for one set of table names and one JSON mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    /// Table names the statements use.
    pub tables: TableNames,
    /// JSON column type in use.
    pub mode: JsonMode,
    /// `migrate`: the tables ([`ddl`]).
    pub ddl: Vec<String>,
    /// `migrate`, last: the history view ([`versions_view`]).
    pub versions_view: String,
    /// Inserts an event (18 binds, in [`EventRow::params`](crate::store::EventRow::params)
    /// order).
    pub insert_event: String,
    /// Locks and returns the current version of a state: `:1` id.
    pub lock_state: String,
    /// Identity recorded for a contract version: `:1` name, `:2` version.
    pub contract_identity: String,
    /// Columns of the existing peer tables (`table_name, column_name`): `:1`…`:9` the table
    /// names in upper case, in [`required_columns`] order.
    pub peer_columns: String,
    /// Inserts the current row of a new state: `:1` id, `:2` contract name, `:3` contract
    /// version, `:4` version, `:5` data.
    pub insert_state: String,
    /// Inserts a history row (10 binds, in
    /// [`HistoryRow::params`](crate::store::HistoryRow::params) order).
    pub insert_history: String,
    /// Inserts a section version unless its key is stored: `:1` state id, `:2` name, `:3`
    /// hash, `:4` value.
    pub merge_section: String,
    /// Latest version: `:1` id. The current row joined to the history row of its version:
    /// the state's columns (as [`Sql::state_at`], data from the current row), then the history
    /// row's version, contract name and contract version (NULL when it has none).
    pub state: String,
    /// Given version: `:1` id, `:2` version. The history row and the view's data: id, contract
    /// name and version, version, parties, seals, data, root, prev root, last event, time.
    pub state_at: String,
    /// Every history row of the first layout (`id, version, seals, data`), for
    /// [`LayoutStep::CopySections`].
    pub first_layout_history: String,
    /// All state ids, sorted.
    pub state_ids: String,
    /// Event columns selected by `event` / `events` (append a WHERE clause): id, outcome,
    /// new version and root, reason detail, event, disclosures, receipt, business events,
    /// then the derived
    /// columns checked against the event (state id, kind, contract name and version, actor,
    /// origin node and sequence, reason code).
    pub select_events: String,
    /// Highest origin sequence of a node: `:1` node.
    pub last_origin_seq: String,
    /// Inserts or replaces an actor: `:1` id, `:2` node, `:3` key, `:4` status.
    pub put_actor: String,
    /// One actor: `:1` id.
    pub actor: String,
    /// All actors sorted by id.
    pub actors: String,
    /// Inserts a contract: `:1` name, `:2` version, `:3` identity, `:4` record.
    pub insert_contract: String,
    /// One contract: `:1` name, `:2` version.
    pub contract: String,
    /// All contracts sorted.
    pub contracts: String,
    /// Replaces the refusal of an event: `:1` state id, `:2` version, `:3` sending node, `:4`
    /// reason code, `:5` reason (JSON), `:6` time (ms), `:7` event id. Run first; when it
    /// updates no row, [`Sql::insert_refusal`].
    pub update_refusal: String,
    /// Inserts a refusal: `:1` event id, then the values of [`Sql::update_refusal`]'s
    /// `:1`…`:6` as `:2`…`:7`.
    pub insert_refusal: String,
    /// Every refusal sorted by state id, version and event id (selects event id, state id,
    /// version, sending node, reason JSON, time).
    pub refusals: String,
    /// One state's refusals (`:1` state id), columns and order as [`Sql::refusals`].
    pub state_refusals: String,
    /// Removes the refusal of an event: `:1` event id.
    pub delete_refusal: String,
    /// The last log entry (selects [`LOG_COLUMNS`]), no row for an empty log.
    pub log_head: String,
    /// Appends a log entry: `:1` pos, `:2` kind, `:3` subject, `:4` record, `:5` prev, `:6`
    /// hash.
    pub insert_log: String,
    /// Records a checkpoint: `:1` node, `:2` pos, `:3` head, `:4` time (ms), `:5` signature.
    pub insert_checkpoint: String,
    /// The head recorded for a node's checkpoint: `:1` node, `:2` pos.
    pub checkpoint_head: String,
    /// A node's checkpoints by position (`:1` node), columns as [`Sql::insert_checkpoint`].
    pub checkpoints: String,
    /// The newest checkpoint of a node beyond its `keep` latest: `:1` node, `:2` keep;
    /// selects `pos`, no row when the node has at most `keep`.
    pub checkpoint_cut: String,
    /// Deletes a node's checkpoints up to a position: `:1` node, `:2` position.
    pub prune_checkpoints: String,
    /// A sink's cursor: `:1` sink; selects `pos`.
    pub sink_cursor: String,
    /// Moves a sink's cursor forward only: `:1` sink, `:2` position.
    pub set_sink_cursor: String,
}

impl Sql {
    /// Generates every statement.
    pub fn new(t: &TableNames, mode: JsonMode) -> Self {
        let b = |n| mode.bind(n);
        let refusals = format!(
            "SELECT r.event_id, r.state_id, r.version, r.from_node, {}, r.at FROM {} r",
            mode.read("r.reason_detail"),
            t.refusal
        );
        let refusal_order = "ORDER BY r.state_id, r.version, r.event_id";
        let select = |head: &str, data: &str| {
            STATE_SELECT
                .replace("{head}", head)
                .replace("{parties}", &mode.read("h.parties"))
                .replace("{seals}", &mode.read("h.seals"))
                .replace("{data}", &mode.read(data))
        };
        Sql {
            tables: t.clone(),
            mode,
            ddl: ddl(t, mode),
            versions_view: versions_view(t, mode),
            insert_event: format!(
                "INSERT INTO {} (id, state_id, kind, contract_name, contract_version, actor, \
                 origin_node, origin_seq, outcome, reason, reason_detail, new_version, new_root, \
                 event, disclosures, receipt, business_events, endorsements) VALUES (:1, :2, :3, \
                 :4, :5, :6, :7, :8, :9, :10, {}, :12, :13, {}, {}, {}, {}, {})",
                t.event,
                b(11),
                b(14),
                b(15),
                b(16),
                b(17),
                b(18)
            ),
            lock_state: format!("SELECT version FROM {} WHERE id = :1 FOR UPDATE", t.state),
            contract_identity: format!(
                "SELECT identity FROM {} WHERE name = :1 AND version = :2",
                t.contract
            ),
            peer_columns: format!(
                "SELECT table_name, column_name FROM user_tab_columns WHERE table_name IN ({})",
                binds(1, required_columns(t).len())
            ),
            insert_state: format!(
                "INSERT INTO {} ({}) VALUES (:1, :2, :3, :4, {})",
                t.state,
                CURRENT_COLUMNS.join(", "),
                b(5)
            ),
            insert_history: format!(
                "INSERT INTO {} ({}) VALUES (:1, :2, :3, :4, {}, {}, :7, :8, :9, :10)",
                t.history,
                HISTORY_COLUMNS.join(", "),
                b(5),
                b(6)
            ),
            merge_section: format!(
                "MERGE INTO {} s USING (SELECT :1 state_id, :2 name, :3 hash FROM dual) n \
                 ON (s.state_id = n.state_id AND s.name = n.name AND s.hash = n.hash) \
                 WHEN NOT MATCHED THEN INSERT (state_id, name, hash, value) \
                 VALUES (n.state_id, n.name, n.hash, {})",
                t.section,
                b(4)
            ),
            state: format!(
                "SELECT {}, h.version, h.contract_name, h.contract_version FROM {} c \
                 LEFT JOIN {} h ON h.id = c.id AND h.version = c.version WHERE c.id = :1",
                select("c", "c.data"),
                t.state,
                t.history
            ),
            state_at: format!(
                "SELECT {} FROM {} h JOIN {} v ON v.id = h.id AND v.version = h.version \
                 WHERE h.id = :1 AND h.version = :2",
                select("h", "v.data"),
                t.history,
                t.versions
            ),
            first_layout_history: format!(
                "SELECT id, version, {}, {} FROM {}",
                mode.read("seals"),
                mode.read("data"),
                t.history
            ),
            state_ids: format!("SELECT id FROM {} ORDER BY id", t.state),
            select_events: format!(
                "SELECT id, outcome, new_version, new_root, {}, {}, {}, {}, {}, {}, state_id, \
                 kind, contract_name, contract_version, actor, origin_node, origin_seq, reason \
                 FROM {}",
                mode.read("reason_detail"),
                mode.read("event"),
                mode.read("disclosures"),
                mode.read("receipt"),
                mode.read("business_events"),
                mode.read("endorsements"),
                t.event
            ),
            last_origin_seq: format!(
                "SELECT NVL(MAX(origin_seq), 0) FROM {} WHERE origin_node = :1",
                t.event
            ),
            put_actor: format!(
                "MERGE INTO {} a USING (SELECT :1 id, :2 node, :3 public_key, :4 status FROM dual) s \
                 ON (a.id = s.id) \
                 WHEN MATCHED THEN UPDATE SET a.node = s.node, a.public_key = s.public_key, a.status = s.status \
                 WHEN NOT MATCHED THEN INSERT (id, node, public_key, status) \
                 VALUES (s.id, s.node, s.public_key, s.status)",
                t.actor
            ),
            actor: format!(
                "SELECT id, node, public_key, status FROM {} WHERE id = :1",
                t.actor
            ),
            actors: format!(
                "SELECT id, node, public_key, status FROM {} ORDER BY id",
                t.actor
            ),
            insert_contract: format!(
                "INSERT INTO {} (name, version, identity, record) VALUES (:1, :2, :3, {})",
                t.contract,
                b(4)
            ),
            contract: format!(
                "SELECT {} FROM {} WHERE name = :1 AND version = :2",
                mode.read("record"),
                t.contract
            ),
            contracts: format!(
                "SELECT {} FROM {} ORDER BY name, version",
                mode.read("record"),
                t.contract
            ),
            // `at` is a keyword (AT TIME ZONE), though not a reserved one: always qualified.
            update_refusal: format!(
                "UPDATE {} r SET r.state_id = :1, r.version = :2, r.from_node = :3, \
                 r.reason = :4, r.reason_detail = {}, r.at = :6 WHERE r.event_id = :7",
                t.refusal,
                b(5)
            ),
            insert_refusal: format!(
                "INSERT INTO {} (event_id, state_id, version, from_node, reason, reason_detail, \
                 at) VALUES (:1, :2, :3, :4, :5, {}, :7)",
                t.refusal,
                b(6)
            ),
            state_refusals: format!("{refusals} WHERE r.state_id = :1 {refusal_order}"),
            refusals: format!("{refusals} {refusal_order}"),
            delete_refusal: format!("DELETE FROM {} WHERE event_id = :1", t.refusal),
            log_head: format!(
                "SELECT {} FROM {} ORDER BY pos DESC FETCH FIRST 1 ROWS ONLY",
                LOG_COLUMNS.join(", "),
                t.log
            ),
            insert_log: format!(
                "INSERT INTO {} ({}) VALUES ({})",
                t.log,
                LOG_COLUMNS.join(", "),
                binds(1, LOG_COLUMNS.len())
            ),
            insert_checkpoint: format!(
                "INSERT INTO {} ({}) VALUES ({})",
                t.checkpoint,
                CHECKPOINT_COLUMNS.join(", "),
                binds(1, CHECKPOINT_COLUMNS.len())
            ),
            checkpoint_head: format!(
                "SELECT head FROM {} WHERE node = :1 AND pos = :2",
                t.checkpoint
            ),
            // `at` is a keyword (AT TIME ZONE): qualified, as in the refusal statements.
            checkpoints: format!(
                "SELECT c.node, c.pos, c.head, c.at, c.signature FROM {} c WHERE c.node = :1 \
                 ORDER BY c.pos",
                t.checkpoint
            ),
            checkpoint_cut: format!(
                "SELECT pos FROM {} WHERE node = :1 ORDER BY pos DESC \
                 OFFSET :2 ROWS FETCH NEXT 1 ROWS ONLY",
                t.checkpoint
            ),
            prune_checkpoints: format!(
                "DELETE FROM {} WHERE node = :1 AND pos <= :2",
                t.checkpoint
            ),
            sink_cursor: format!("SELECT pos FROM {} WHERE sink = :1", t.sink_cursor),
            set_sink_cursor: format!(
                "MERGE INTO {} c USING (SELECT :1 sink, :2 pos FROM dual) s \
                 ON (c.sink = s.sink) \
                 WHEN MATCHED THEN UPDATE SET c.pos = GREATEST(c.pos, s.pos) \
                 WHEN NOT MATCHED THEN INSERT (sink, pos) VALUES (s.sink, s.pos)",
                t.sink_cursor
            ),
        }
    }

    /// Log entries past `:1` (a position) in position order, at most `limit`.
    pub fn log_after(&self, limit: Option<usize>) -> String {
        let mut sql = format!(
            "SELECT {} FROM {} WHERE pos > :1 ORDER BY pos",
            LOG_COLUMNS.join(", "),
            self.tables.log
        );
        if let Some(l) = limit {
            sql.push_str(&format!(" FETCH FIRST {l} ROWS ONLY"));
        }
        sql
    }

    /// Which of `n` event ids (`:1`…`:n`) are recorded: selects `id`.
    pub fn known_events(&self, n: usize) -> String {
        format!(
            "SELECT id FROM {} WHERE id IN ({})",
            self.tables.event,
            binds(1, n)
        )
    }

    /// Who holds `n` origin pairs (`:1, :2` node and sequence of the first, …): selects
    /// `origin_node, origin_seq, id`.
    pub fn origin_owners(&self, n: usize) -> String {
        let pairs: Vec<String> = (0..n)
            .map(|i| format!("(:{}, :{})", 2 * i + 1, 2 * i + 2))
            .collect();
        format!(
            "SELECT origin_node, origin_seq, id FROM {} WHERE (origin_node, origin_seq) IN ({})",
            self.tables.event,
            pairs.join(", ")
        )
    }

    /// The values of `n` section versions (`:1, :2, :3` state id, name and hash of the first,
    /// …): selects `state_id, name, hash, value`, no row for a version that is not stored.
    /// What event reads look up for the section versions their disclosures name.
    pub fn section_values(&self, n: usize) -> String {
        let keys: Vec<String> = (0..n)
            .map(|i| format!("(:{}, :{}, :{})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        format!(
            "SELECT state_id, name, hash, {} FROM {} WHERE (state_id, name, hash) IN ({})",
            self.mode.read("value"),
            self.tables.section,
            keys.join(", ")
        )
    }

    /// Locks the current rows of `n` states (`:1`…`:n`) and selects `id, version` and the
    /// seals of the history row of that version (NULL when there is none).
    pub fn lock_states(&self, n: usize) -> String {
        format!(
            "SELECT c.id, c.version, {} FROM {} c LEFT JOIN {} h \
             ON h.id = c.id AND h.version = c.version WHERE c.id IN ({}) FOR UPDATE OF c.version",
            self.mode.read("h.seals"),
            self.tables.state,
            self.tables.history,
            binds(1, n)
        )
    }

    /// The guarded update of a current-state row that was at version `from`: `:1` contract
    /// name, `:2` contract version, `:3` version, then the `data` binds of `data`
    /// ([`DataSql::binds`]), then the id and `from`.
    pub fn update_current(&self, data: &DataSql) -> String {
        let b = |n| self.mode.bind(n);
        let assign = match data {
            DataSql::Keep => String::new(),
            DataSql::Whole => format!(", data = {}", b(4)),
            DataSql::Patch { remove, set } => {
                let ops: Vec<String> = remove
                    .iter()
                    .map(|p| format!("REMOVE {}", p.as_sql()))
                    .chain(
                        set.iter()
                            .enumerate()
                            .map(|(i, p)| format!("SET {} = {}", p.as_sql(), b(4 + i))),
                    )
                    .collect();
                format!(", data = JSON_TRANSFORM(data, {})", ops.join(", "))
            }
        };
        let next = 4 + data.binds();
        format!(
            "UPDATE {} SET contract_name = :1, contract_version = :2, version = :3{assign} \
             WHERE id = :{next} AND version = :{}",
            self.tables.state,
            next + 1
        )
    }

    /// The `events` query for the given conditions (each a column compared with the next
    /// bind), in recording order, limited to `limit` rows.
    pub fn events(&self, conditions: &[&str], limit: Option<usize>) -> String {
        let mut sql = self.select_events.clone();
        for (i, c) in conditions.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            sql.push_str(c);
            sql.push_str(&format!(" :{}", i + 1));
        }
        sql.push_str(" ORDER BY pos");
        if let Some(l) = limit {
            sql.push_str(&format!(" FETCH FIRST {l} ROWS ONLY"));
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> TableNames {
        TableNames::default()
    }

    #[test]
    fn native_mode_uses_the_json_type() {
        let ddl = ddl(&tables(), JsonMode::Native).join("\n");
        assert!(ddl.contains("data JSON NOT NULL"), "{ddl}");
        assert!(ddl.contains("parties JSON NOT NULL"));
        assert!(ddl.contains("reason_detail JSON,"));
        assert!(!ddl.contains("BLOB"));
    }

    #[test]
    fn blob_mode_checks_is_json_with_unique_keys() {
        let ddl = ddl(&tables(), JsonMode::Blob).join("\n");
        assert!(ddl.contains(
            "data BLOB NOT NULL CONSTRAINT sst_state_data_json CHECK (data IS JSON STRICT WITH UNIQUE KEYS)"
        ), "{ddl}");
        assert!(ddl.contains("CONSTRAINT sst_state_history_seals_json CHECK"));
        assert!(
            !ddl.contains("sst_state_history_data_json"),
            "no data in history"
        );
        assert!(!ddl.contains(" JSON NOT NULL"));
    }

    #[test]
    fn uniqueness_comes_from_the_keys() {
        for mode in [JsonMode::Native, JsonMode::Blob] {
            let ddl = ddl(&tables(), mode).join("\n");
            assert!(ddl.contains("CONSTRAINT sst_state_history_pk PRIMARY KEY (id, version)"));
            assert!(ddl.contains("CONSTRAINT sst_event_origin_uq UNIQUE (origin_node, origin_seq)"));
            assert!(ddl.contains("CONSTRAINT sst_event_pk PRIMARY KEY (id)"));
            assert!(ddl.contains("CONSTRAINT sst_contract_pk PRIMARY KEY (name, version)"));
        }
    }

    #[test]
    fn ddl_is_wrapped_to_be_idempotent() {
        for stmt in ddl(&tables(), JsonMode::Native) {
            assert!(stmt.starts_with("BEGIN EXECUTE IMMEDIATE '"), "{stmt}");
            assert!(stmt.contains("SQLCODE NOT IN (-955, -1408, -2260, -2261)"));
        }
        let blob = ddl(&tables(), JsonMode::Blob).join("\n");
        assert!(
            blob.contains("outcome IN (''applied'', ''rejected'')"),
            "quotes doubled"
        );
    }

    #[test]
    fn version_decides_the_mode() {
        assert_eq!(JsonMode::for_server(19), JsonMode::Blob);
        assert_eq!(JsonMode::for_server(21), JsonMode::Native);
        assert_eq!(JsonMode::for_server(23), JsonMode::Native);
    }

    #[test]
    fn commit_statements_bind_json_per_mode_and_guard_versions() {
        let native = Sql::new(&tables(), JsonMode::Native);
        assert!(
            native
                .insert_event
                .contains("JSON(:11 EXTENDED), :12, :13, JSON(:14 EXTENDED), JSON(:15 EXTENDED), JSON(:16 EXTENDED), JSON(:17 EXTENDED), JSON(:18 EXTENDED))"),
            "{}",
            native.insert_event
        );
        assert_eq!(
            native.insert_state,
            "INSERT INTO sst_state (id, contract_name, contract_version, version, data) \
             VALUES (:1, :2, :3, :4, JSON(:5 EXTENDED))"
        );
        assert_eq!(
            native.insert_history,
            "INSERT INTO sst_state_history (id, contract_name, contract_version, version, \
             parties, seals, root, prev_root, last_event, updated_at) \
             VALUES (:1, :2, :3, :4, JSON(:5 EXTENDED), JSON(:6 EXTENDED), :7, :8, :9, :10)"
        );
        assert!(native
            .update_current(&DataSql::Whole)
            .ends_with("data = JSON(:4 EXTENDED) WHERE id = :5 AND version = :6"));
        assert_eq!(
            native.lock_state,
            "SELECT version FROM sst_state WHERE id = :1 FOR UPDATE"
        );
        assert!(native
            .state
            .contains("JSON_SERIALIZE(c.data RETURNING CLOB)"));
        let blob = Sql::new(&tables(), JsonMode::Blob);
        assert!(
            blob.insert_event
                .contains(":11, :12, :13, :14, :15, :16, :17, :18)"),
            "{}",
            blob.insert_event
        );
        assert!(
            blob.state.contains(", h.seals, c.data, h.root,"),
            "{}",
            blob.state
        );
        assert!(blob
            .insert_history
            .ends_with("VALUES (:1, :2, :3, :4, :5, :6, :7, :8, :9, :10)"));
    }

    #[test]
    fn events_query_appends_filters_order_and_limit() {
        let sql = Sql::new(&tables(), JsonMode::Native);
        let q = sql.events(&["state_id =", "origin_seq >"], Some(5));
        assert!(
            q.ends_with(
                "WHERE state_id = :1 AND origin_seq > :2 ORDER BY pos FETCH FIRST 5 ROWS ONLY"
            ),
            "{q}"
        );
        assert!(sql
            .events(&[], None)
            .ends_with("FROM sst_event ORDER BY pos"));
    }

    #[test]
    fn lookups_read_each_kind_in_one_statement() {
        let sql = Sql::new(&tables(), JsonMode::Native);
        assert_eq!(
            sql.known_events(3),
            "SELECT id FROM sst_event WHERE id IN (:1, :2, :3)"
        );
        assert_eq!(
            sql.origin_owners(2),
            "SELECT origin_node, origin_seq, id FROM sst_event \
             WHERE (origin_node, origin_seq) IN ((:1, :2), (:3, :4))"
        );
        assert_eq!(
            sql.contract_identity,
            "SELECT identity FROM sst_contract WHERE name = :1 AND version = :2"
        );
        assert_eq!(
            sql.peer_columns,
            "SELECT table_name, column_name FROM user_tab_columns \
             WHERE table_name IN (:1, :2, :3, :4, :5, :6, :7, :8, :9, :10)"
        );
        assert_eq!(
            sql.section_values(2),
            "SELECT state_id, name, hash, JSON_SERIALIZE(value RETURNING CLOB) FROM sst_section \
             WHERE (state_id, name, hash) IN ((:1, :2, :3), (:4, :5, :6))"
        );
        assert_eq!(
            Sql::new(&tables(), JsonMode::Blob).section_values(1),
            "SELECT state_id, name, hash, value FROM sst_section \
             WHERE (state_id, name, hash) IN ((:1, :2, :3))"
        );
        const { assert!(IN_LIST_MAX <= 1000, "IN lists stay within ORA-01795") };
    }

    fn columns(table: &str, cols: &[&str]) -> Vec<(String, String)> {
        cols.iter()
            .map(|c| (table.to_uppercase(), c.to_uppercase()))
            .collect()
    }

    #[test]
    fn existing_peer_tables_with_every_column_are_accepted() {
        let t = tables();
        assert!(check_peer_columns(&t, &[]).is_ok(), "nothing exists yet");
        let mut present = Vec::new();
        for (table, cols) in required_columns(&t) {
            present.extend(columns(table, cols));
        }
        present.extend(columns(&t.state, &["extra_column_of_a_newer_version"]));
        assert!(check_peer_columns(&t, &present).is_ok());
    }

    #[test]
    fn a_foreign_table_with_a_peer_table_name_is_refused() {
        let t = TableNames::with_prefix("app_sst_");
        let mut present = columns(&t.event, required_columns(&t)[2].1);
        present.extend(columns(&t.state, &["id", "note"]));
        match check_peer_columns(&t, &present) {
            Err(StoreError::Schema {
                backend,
                table,
                detail,
            }) => {
                assert_eq!((backend, table.as_str()), ("oracle", "app_sst_state"));
                assert!(
                    detail.contains("no `contract_name` column (it has: id, note)"),
                    "{detail}"
                );
            }
            other => panic!("expected a Schema error, got {other:?}"),
        }
    }

    #[test]
    fn refusals_are_keyed_by_event_and_indexed_by_state_and_version() {
        for mode in [JsonMode::Native, JsonMode::Blob] {
            let ddl = ddl(&tables(), mode).join("\n");
            assert!(ddl.contains("CREATE TABLE sst_refusal (event_id VARCHAR2(128) NOT NULL"));
            assert!(ddl.contains("reason VARCHAR2(64) NOT NULL"), "{ddl}");
            assert!(ddl.contains("at NUMBER(19) NOT NULL"));
            assert!(ddl.contains("CONSTRAINT sst_refusal_pk PRIMARY KEY (event_id)"));
            assert!(ddl
                .contains("CREATE INDEX sst_refusal_state_ix ON sst_refusal (state_id, version)"));
        }
        let native = ddl(&tables(), JsonMode::Native).join("\n");
        assert!(
            native.contains("reason_detail JSON NOT NULL, at"),
            "{native}"
        );
        let blob = ddl(&tables(), JsonMode::Blob).join("\n");
        assert!(blob.contains(
            "reason_detail BLOB NOT NULL CONSTRAINT sst_refusal_reason_detail_json CHECK"
        ));
        let t = TableNames::with_prefix("p_sst_");
        assert_eq!(required_columns(&t)[5].0, "p_sst_refusal");
    }

    #[test]
    fn refusal_statements_replace_by_event_and_list_in_order() {
        let native = Sql::new(&tables(), JsonMode::Native);
        assert_eq!(
            native.update_refusal,
            "UPDATE sst_refusal r SET r.state_id = :1, r.version = :2, r.from_node = :3, \
             r.reason = :4, r.reason_detail = JSON(:5 EXTENDED), r.at = :6 WHERE r.event_id = :7"
        );
        assert_eq!(
            native.insert_refusal,
            "INSERT INTO sst_refusal (event_id, state_id, version, from_node, reason, \
             reason_detail, at) VALUES (:1, :2, :3, :4, :5, JSON(:6 EXTENDED), :7)"
        );
        assert_eq!(
            native.refusals,
            "SELECT r.event_id, r.state_id, r.version, r.from_node, \
             JSON_SERIALIZE(r.reason_detail RETURNING CLOB), r.at FROM sst_refusal r \
             ORDER BY r.state_id, r.version, r.event_id"
        );
        assert!(native.state_refusals.ends_with(
            "FROM sst_refusal r WHERE r.state_id = :1 ORDER BY r.state_id, r.version, r.event_id"
        ));
        assert_eq!(
            native.delete_refusal,
            "DELETE FROM sst_refusal WHERE event_id = :1"
        );
        let blob = Sql::new(&tables(), JsonMode::Blob);
        assert!(blob.update_refusal.contains("r.reason_detail = :5,"));
        assert!(blob
            .insert_refusal
            .ends_with("VALUES (:1, :2, :3, :4, :5, :6, :7)"));
        assert!(blob
            .refusals
            .contains("r.from_node, r.reason_detail, r.at FROM"));
    }

    /// The numbers of the `:n` placeholders of `stmt`, left to right.
    fn placeholders(stmt: &str) -> Vec<usize> {
        stmt.split(':')
            .skip(1)
            .map_while(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }

    #[test]
    fn placeholders_appear_once_each_in_bind_order() {
        // The driver binds by position, and a position is a placeholder's place in the text
        // (its number is ignored; a repeated one takes a value of its own): every statement
        // lists :1, :2, … once each, left to right, in the order its binds are passed.
        for mode in [JsonMode::Native, JsonMode::Blob] {
            let sql = Sql::new(&tables(), mode);
            let fixed = [
                &sql.insert_event,
                &sql.lock_state,
                &sql.contract_identity,
                &sql.peer_columns,
                &sql.insert_state,
                &sql.merge_section,
                &sql.first_layout_history,
                &sql.insert_history,
                &sql.state,
                &sql.state_at,
                &sql.last_origin_seq,
                &sql.put_actor,
                &sql.actor,
                &sql.insert_contract,
                &sql.contract,
                &sql.update_refusal,
                &sql.insert_refusal,
                &sql.state_refusals,
                &sql.delete_refusal,
                &sql.log_head,
                &sql.insert_log,
                &sql.insert_checkpoint,
                &sql.checkpoint_head,
                &sql.checkpoints,
                &sql.checkpoint_cut,
                &sql.prune_checkpoints,
                &sql.sink_cursor,
                &sql.set_sink_cursor,
            ];
            let built = [
                sql.known_events(3),
                sql.origin_owners(2),
                sql.section_values(3),
                sql.lock_states(2),
                sql.events(&["state_id =", "origin_seq >"], Some(5)),
                sql.log_after(Some(3)),
                sql.update_current(&DataSql::Keep),
                sql.update_current(&DataSql::Whole),
                sql.update_current(&patch(&["a", "b"], &["c"])),
                sql.versions_view.clone(),
            ];
            for stmt in fixed.into_iter().chain(&built) {
                let found = placeholders(stmt);
                let want: Vec<usize> = (1..=found.len()).collect();
                assert_eq!(found, want, "{stmt}");
            }
        }
    }

    #[test]
    fn log_and_checkpoint_tables_are_keyed_by_position() {
        for mode in [JsonMode::Native, JsonMode::Blob] {
            let ddl = ddl(&tables(), mode).join("\n");
            assert!(
                ddl.contains("CREATE TABLE sst_log (pos NUMBER(19) NOT NULL"),
                "{ddl}"
            );
            assert!(ddl.contains("subject VARCHAR2(1024) NOT NULL"));
            assert!(ddl.contains("CONSTRAINT sst_log_pk PRIMARY KEY (pos)"));
            assert!(ddl.contains("CONSTRAINT sst_checkpoint_pk PRIMARY KEY (node, pos)"));
        }
        let native = ddl(&tables(), JsonMode::Native).join("\n");
        assert!(
            native.contains(
                "receipt JSON, business_events JSON, endorsements JSON, CONSTRAINT sst_event_pk"
            ),
            "{native}"
        );
        let blob = ddl(&tables(), JsonMode::Blob).join("\n");
        assert!(blob.contains("receipt BLOB CONSTRAINT sst_event_receipt_json CHECK"));
        let sql = Sql::new(&tables(), JsonMode::Native);
        assert_eq!(
            sql.log_head,
            "SELECT pos, kind, subject, record, prev, hash FROM sst_log \
             ORDER BY pos DESC FETCH FIRST 1 ROWS ONLY"
        );
        assert_eq!(
            sql.insert_log,
            "INSERT INTO sst_log (pos, kind, subject, record, prev, hash) \
             VALUES (:1, :2, :3, :4, :5, :6)"
        );
        assert!(sql
            .log_after(None)
            .ends_with("FROM sst_log WHERE pos > :1 ORDER BY pos"));
        assert!(sql
            .select_events
            .contains("JSON_SERIALIZE(receipt RETURNING CLOB)"));
        let t = TableNames::with_prefix("p_sst_");
        assert_eq!(required_columns(&t)[6].0, "p_sst_log");
        assert_eq!(required_columns(&t)[7].0, "p_sst_checkpoint");
        assert_eq!(required_columns(&t)[8].0, "p_sst_sink_cursor");
        assert!(required_columns(&t)[2].1.contains(&"receipt"));
        assert!(!required_columns(&t)[2].1.contains(&"business_events"));
        assert!(!required_columns(&t)[2].1.contains(&"endorsements"));
        assert!(sql
            .select_events
            .contains("JSON_SERIALIZE(endorsements RETURNING CLOB), state_id"));
    }

    #[test]
    fn an_event_table_of_an_older_layout_gains_the_columns_added_since() {
        let t = tables();
        let event = columns(&t.event, required_columns(&t)[2].1);
        let json_blob = |c: &str| {
            format!("{c} BLOB CONSTRAINT sst_event_{c}_json CHECK ({c} IS JSON STRICT WITH UNIQUE KEYS)")
        };
        for (mode, business_events, endorsements) in [
            (
                JsonMode::Native,
                "business_events JSON".to_owned(),
                "endorsements JSON".to_owned(),
            ),
            (
                JsonMode::Blob,
                json_blob("business_events"),
                json_blob("endorsements"),
            ),
        ] {
            assert!(check_peer_columns(&t, &event).is_ok());
            // Before business events (and endorsements): both are added.
            assert_eq!(
                upgrade_ddl(&t, mode, &event),
                vec![
                    format!("ALTER TABLE sst_event ADD ({business_events})"),
                    format!("ALTER TABLE sst_event ADD ({endorsements})"),
                ]
            );
            // Before endorsements only.
            let mut with_business_events = event.clone();
            with_business_events.extend(columns(&t.event, &["business_events"]));
            assert_eq!(
                upgrade_ddl(&t, mode, &with_business_events),
                vec![format!("ALTER TABLE sst_event ADD ({endorsements})")]
            );
        }
        let mut current = event.clone();
        current.extend(columns(&t.event, &["business_events", "endorsements"]));
        assert!(upgrade_ddl(&t, JsonMode::Native, &current).is_empty());
        assert!(
            upgrade_ddl(&t, JsonMode::Native, &[]).is_empty(),
            "no table yet"
        );
    }

    #[test]
    fn prefixed_tables_appear_everywhere() {
        let sql = Sql::new(&TableNames::with_prefix("t9_sst_"), JsonMode::Blob);
        assert!(sql.state.contains("FROM t9_sst_state "));
        assert!(sql.put_actor.starts_with("MERGE INTO t9_sst_actor"));
        assert!(sql.ddl.iter().all(|d| d.contains("t9_")));
    }

    /// A native patch setting `set` and removing `remove`.
    fn patch(set: &[&str], remove: &[&str]) -> DataSql {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect();
        DataSql::for_write(
            JsonMode::Native,
            &DataWrite::Patch {
                set: names(set),
                remove: names(remove),
            },
        )
    }

    #[test]
    fn a_patch_removes_then_sets_only_the_changed_sections() {
        let sql = Sql::new(&tables(), JsonMode::Native);
        assert_eq!(
            sql.update_current(&patch(&["price", "annex"], &["inspection"])),
            "UPDATE sst_state SET contract_name = :1, contract_version = :2, version = :3, \
             data = JSON_TRANSFORM(data, REMOVE '$.\"inspection\"', \
             SET '$.\"price\"' = JSON(:4 EXTENDED), SET '$.\"annex\"' = JSON(:5 EXTENDED)) \
             WHERE id = :6 AND version = :7"
        );
        assert_eq!(
            sql.update_current(&patch(&[], &["gone"])),
            "UPDATE sst_state SET contract_name = :1, contract_version = :2, version = :3, \
             data = JSON_TRANSFORM(data, REMOVE '$.\"gone\"') WHERE id = :4 AND version = :5"
        );
        assert_eq!(
            sql.update_current(&patch(&[], &[])),
            "UPDATE sst_state SET contract_name = :1, contract_version = :2, version = :3 \
             WHERE id = :4 AND version = :5",
            "nothing changed: data is left alone"
        );
        assert_eq!(patch(&["a"], &[]).binds(), 1);
        assert_eq!(patch(&[], &["a", "b"]).binds(), 0);
        assert_eq!(DataSql::Whole.binds(), 1);
    }

    #[test]
    fn names_the_path_cannot_quote_write_the_whole_document() {
        for bad in ["say \"hi\"", "back\\slash", "o'brien", "tab\there", ""] {
            assert!(!path_safe(bad), "{bad:?}");
            assert_eq!(patch(&[bad], &[]), DataSql::Whole, "set {bad:?}");
            assert_eq!(patch(&["ok"], &[bad]), DataSql::Whole, "remove {bad:?}");
        }
        for good in ["price", "Grüße", "a.b", "a b", "$x", "a:1", "[0]"] {
            assert!(path_safe(good), "{good:?}");
        }
        assert_eq!(
            MemberPath::new("a.b").map(|p| p.as_sql().to_owned()),
            Some("'$.\"a.b\"'".to_owned())
        );
        assert_eq!(
            DataSql::for_write(JsonMode::Native, &DataWrite::Whole),
            DataSql::Whole
        );
        let blob = DataSql::for_write(
            JsonMode::Blob,
            &DataWrite::Patch {
                set: vec!["price".into()],
                remove: vec![],
            },
        );
        assert_eq!(blob, DataSql::Whole, "BLOB mode writes the whole document");
        let sql = Sql::new(&tables(), JsonMode::Blob);
        assert!(sql
            .update_current(&DataSql::Whole)
            .ends_with("version = :3, data = :4 WHERE id = :5 AND version = :6"));
    }

    #[test]
    fn state_tables_split_into_current_history_and_section_rows() {
        let native = ddl(&tables(), JsonMode::Native).join("\n");
        assert!(
            native.contains(
                "CREATE TABLE sst_state (id VARCHAR2(512) NOT NULL, contract_name VARCHAR2(256) \
                 NOT NULL, contract_version NUMBER(10) NOT NULL, version NUMBER(19) NOT NULL \
                 CHECK (version >= 1), data JSON NOT NULL, CONSTRAINT sst_state_pk PRIMARY KEY (id))"
            ),
            "{native}"
        );
        assert!(native.contains("seals JSON NOT NULL, root VARCHAR2(128) NOT NULL"));
        assert!(
            !native.contains("seals JSON NOT NULL, data"),
            "no data in history"
        );
        assert!(native.contains(
            "CREATE TABLE sst_section (state_id VARCHAR2(512) NOT NULL, \
             name VARCHAR2(1024) NOT NULL, hash VARCHAR2(128) NOT NULL, value JSON NOT NULL, \
             CONSTRAINT sst_section_pk PRIMARY KEY (state_id, name, hash))"
        ));
        let blob = ddl(&tables(), JsonMode::Blob).join("\n");
        assert!(
            blob.contains("value BLOB NOT NULL, CONSTRAINT sst_section_pk"),
            "{blob}"
        );
        let t = TableNames::with_prefix("p_sst_");
        assert_eq!(required_columns(&t)[0].1, CURRENT_COLUMNS);
        assert!(!required_columns(&t)[1].1.contains(&"data"));
        assert_eq!(
            required_columns(&t)[9],
            ("p_sst_section", &["state_id", "name", "hash", "value"][..])
        );
        let sql = Sql::new(&t, JsonMode::Native);
        assert_eq!(
            sql.merge_section,
            "MERGE INTO p_sst_section s USING (SELECT :1 state_id, :2 name, :3 hash FROM dual) n \
             ON (s.state_id = n.state_id AND s.name = n.name AND s.hash = n.hash) \
             WHEN NOT MATCHED THEN INSERT (state_id, name, hash, value) \
             VALUES (n.state_id, n.name, n.hash, JSON(:4 EXTENDED))"
        );
        assert!(
            !sql.merge_section.contains("MATCHED THEN UPDATE"),
            "written once"
        );
    }

    #[test]
    fn the_view_assembles_each_version_from_the_configured_tables() {
        let t = TableNames::with_prefix("v7_sst_");
        let native = versions_view(&t, JsonMode::Native);
        assert_eq!(
            native,
            "CREATE OR REPLACE VIEW v7_sst_state_versions (id, version, contract_name, \
             contract_version, root, updated_at, data) AS SELECT h.id, h.version, \
             h.contract_name, h.contract_version, h.root, h.updated_at, \
             COALESCE((SELECT JSON_OBJECTAGG(KEY s.name VALUE s.value RETURNING JSON) \
             FROM JSON_TABLE(h.seals, '$.*' COLUMNS (hash VARCHAR2(128) PATH '$.hash', \
             salted VARCHAR2(5) EXISTS PATH '$.salt')) j \
             JOIN v7_sst_section s ON s.state_id = h.id AND s.hash = j.hash \
             WHERE j.salted = 'true'), JSON('{}')) FROM v7_sst_state_history h WITH READ ONLY"
        );
        let blob = versions_view(&t, JsonMode::Blob);
        assert!(
            blob.contains("VALUE s.value FORMAT JSON RETURNING BLOB"),
            "{blob}"
        );
        assert!(blob.contains("JSON_TABLE(h.seals FORMAT JSON, '$.*'"));
        assert!(blob.contains("TO_BLOB(UTL_RAW.CAST_TO_RAW('{}'))"));
        let sql = Sql::new(&t, JsonMode::Native);
        assert_eq!(sql.versions_view, native);
        assert!(
            sql.ddl.iter().all(|d| !d.contains("VIEW")),
            "the view comes last"
        );
        assert!(
            sql.state_at.contains(
                "FROM v7_sst_state_history h JOIN v7_sst_state_versions v \
                 ON v.id = h.id AND v.version = h.version WHERE h.id = :1 AND h.version = :2"
            ),
            "{}",
            sql.state_at
        );
        assert!(sql
            .state_at
            .contains("JSON_SERIALIZE(v.data RETURNING CLOB), h.root"));
    }

    #[test]
    fn reads_join_the_current_row_to_its_history_row() {
        let sql = Sql::new(&tables(), JsonMode::Native);
        assert_eq!(
            sql.state,
            "SELECT c.id, c.contract_name, c.contract_version, c.version, \
             JSON_SERIALIZE(h.parties RETURNING CLOB), JSON_SERIALIZE(h.seals RETURNING CLOB), \
             JSON_SERIALIZE(c.data RETURNING CLOB), h.root, h.prev_root, h.last_event, \
             h.updated_at, h.version, h.contract_name, h.contract_version FROM sst_state c \
             LEFT JOIN sst_state_history h ON h.id = c.id AND h.version = c.version \
             WHERE c.id = :1"
        );
        assert_eq!(
            sql.lock_states(2),
            "SELECT c.id, c.version, JSON_SERIALIZE(h.seals RETURNING CLOB) FROM sst_state c \
             LEFT JOIN sst_state_history h ON h.id = c.id AND h.version = c.version \
             WHERE c.id IN (:1, :2) FOR UPDATE OF c.version"
        );
    }

    #[test]
    fn the_first_layout_is_upgraded_in_a_crash_safe_order() {
        let t = tables();
        let mut first = Vec::new();
        for table in [&t.state, &t.history] {
            first.extend(columns(
                table,
                &[
                    "id",
                    "contract_name",
                    "contract_version",
                    "version",
                    "parties",
                    "seals",
                    "data",
                    "root",
                    "prev_root",
                    "last_event",
                    "updated_at",
                ],
            ));
        }
        assert!(check_peer_columns(&t, &first).is_ok(), "a superset passes");
        assert_eq!(
            layout_upgrade(&t, &first),
            vec![
                LayoutStep::CopySections,
                LayoutStep::Run("ALTER TABLE sst_state_history DROP COLUMN data".into()),
                LayoutStep::Run(
                    "ALTER TABLE sst_state DROP (parties, seals, root, prev_root, last_event, \
                     updated_at)"
                        .into()
                ),
            ]
        );
        // A crash after the history lost `data`: the re-run finishes the current table.
        let crashed: Vec<(String, String)> = first
            .iter()
            .filter(|(table, c)| !(table == "SST_STATE_HISTORY" && c == "DATA"))
            .cloned()
            .collect();
        assert_eq!(
            layout_upgrade(&t, &crashed),
            vec![LayoutStep::Run(
                "ALTER TABLE sst_state DROP (parties, seals, root, prev_root, last_event, \
                 updated_at)"
                    .into()
            )]
        );
        let mut upgraded = columns(&t.state, CURRENT_COLUMNS);
        upgraded.extend(columns(&t.history, HISTORY_COLUMNS));
        upgraded.extend(columns(&t.section, SECTION_COLUMNS));
        assert!(layout_upgrade(&t, &upgraded).is_empty());
        assert!(layout_upgrade(&t, &[]).is_empty(), "fresh");
        let sql = Sql::new(&t, JsonMode::Native);
        assert_eq!(
            sql.first_layout_history,
            "SELECT id, version, JSON_SERIALIZE(seals RETURNING CLOB), \
             JSON_SERIALIZE(data RETURNING CLOB) FROM sst_state_history"
        );
    }
}
