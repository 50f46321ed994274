//! DDL of the peer tables for both JSON column types, every SQL statement the store runs
//! (generated once from the configured table names, so they are unit-tested without a
//! server), and the check `migrate` makes of peer tables that already exist.

use sst_core::raw::{check_peer_layout, columns_to_add, NameCase};
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

fn state_columns(mode: JsonMode, table: &str) -> String {
    let json = |c: &str| mode.column(c, false).replace("{t}", table);
    format!(
        "id VARCHAR2(512) NOT NULL, \
         contract_name VARCHAR2(256) NOT NULL, \
         contract_version NUMBER(10) NOT NULL, \
         version NUMBER(19) NOT NULL CHECK (version >= 1), \
         {}, {}, {}, \
         root VARCHAR2(128) NOT NULL, \
         prev_root VARCHAR2(128), \
         last_event VARCHAR2(128), \
         updated_at NUMBER(19) NOT NULL",
        json("parties"),
        json("seals"),
        json("data")
    )
}

/// The statements `migrate` runs, in order, each idempotent.
pub fn ddl(t: &TableNames, mode: JsonMode) -> Vec<String> {
    let json =
        |table: &str, c: &str, nullable: bool| mode.column(c, nullable).replace("{t}", table);
    let raw = [
        format!(
            "CREATE TABLE {st} ({cols}, CONSTRAINT {st}_pk PRIMARY KEY (id))",
            st = t.state,
            cols = state_columns(mode, &t.state)
        ),
        format!(
            "CREATE TABLE {hi} ({cols}, CONSTRAINT {hi}_pk PRIMARY KEY (id, version))",
            hi = t.history,
            cols = state_columns(mode, &t.history)
        ),
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

const STATE_COLUMNS: &[&str] = &[
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
];

/// The columns the store reads and writes in each peer table.
pub fn required_columns(t: &TableNames) -> [(&str, &'static [&'static str]); 9] {
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
        (&t.state, STATE_COLUMNS),
        (&t.history, STATE_COLUMNS),
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

const STATE_SELECT: &str =
    "id, contract_name, contract_version, version, {parties}, {seals}, {data}, root, prev_root, last_event, updated_at";

/// Every statement of the store, for one set of table names and one JSON mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    /// Table names the statements use.
    pub tables: TableNames,
    /// JSON column type in use.
    pub mode: JsonMode,
    /// `migrate`.
    pub ddl: Vec<String>,
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
    /// Inserts the current row of a new state (11 binds).
    pub insert_state: String,
    /// Replaces the current row: `:1`…`:10` the insert's binds 2–11, `:11` the id, `:12`
    /// the base version (see [`StateRow::update_params`](crate::store::StateRow::update_params)).
    pub update_state: String,
    /// Inserts a history row (11 binds).
    pub insert_history: String,
    /// Latest version: `:1` id.
    pub state: String,
    /// Given version: `:1` id, `:2` version.
    pub state_at: String,
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
        let state_values = format!(
            ":1, :2, :3, :4, {}, {}, {}, :8, :9, :10, :11",
            b(5),
            b(6),
            b(7)
        );
        let state_cols = "id, contract_name, contract_version, version, parties, seals, data, root, prev_root, last_event, updated_at";
        let refusals = format!(
            "SELECT r.event_id, r.state_id, r.version, r.from_node, {}, r.at FROM {} r",
            mode.read("r.reason_detail"),
            t.refusal
        );
        let refusal_order = "ORDER BY r.state_id, r.version, r.event_id";
        let select = STATE_SELECT
            .replace("{parties}", &mode.read("parties"))
            .replace("{seals}", &mode.read("seals"))
            .replace("{data}", &mode.read("data"));
        Sql {
            tables: t.clone(),
            mode,
            ddl: ddl(t, mode),
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
            insert_state: format!("INSERT INTO {} ({state_cols}) VALUES ({state_values})", t.state),
            update_state: format!(
                "UPDATE {} SET contract_name = :1, contract_version = :2, version = :3, \
                 parties = {}, seals = {}, data = {}, root = :7, prev_root = :8, \
                 last_event = :9, updated_at = :10 WHERE id = :11 AND version = :12",
                t.state,
                b(4),
                b(5),
                b(6)
            ),
            insert_history: format!(
                "INSERT INTO {} ({state_cols}) VALUES ({state_values})",
                t.history
            ),
            state: format!("SELECT {select} FROM {} WHERE id = :1", t.state),
            state_at: format!(
                "SELECT {select} FROM {} WHERE id = :1 AND version = :2",
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

    /// Locks the current rows of `n` states (`:1`…`:n`) and selects `id, version`.
    pub fn lock_states(&self, n: usize) -> String {
        format!(
            "SELECT id, version FROM {} WHERE id IN ({}) FOR UPDATE",
            self.tables.state,
            binds(1, n)
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
        assert!(ddl.contains("CONSTRAINT sst_state_history_data_json CHECK"));
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
        assert!(native
            .insert_state
            .contains("JSON(:5 EXTENDED), JSON(:6 EXTENDED), JSON(:7 EXTENDED)"));
        assert!(native
            .update_state
            .ends_with("WHERE id = :11 AND version = :12"));
        assert_eq!(
            native.lock_state,
            "SELECT version FROM sst_state WHERE id = :1 FOR UPDATE"
        );
        assert!(native.state.contains("JSON_SERIALIZE(data RETURNING CLOB)"));
        let blob = Sql::new(&tables(), JsonMode::Blob);
        assert!(
            blob.insert_event
                .contains(":11, :12, :13, :14, :15, :16, :17, :18)"),
            "{}",
            blob.insert_event
        );
        assert!(blob.state.contains(", data, root,"), "{}", blob.state);
        assert!(blob
            .insert_history
            .starts_with("INSERT INTO sst_state_history"));
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
            sql.lock_states(2),
            "SELECT id, version FROM sst_state WHERE id IN (:1, :2) FOR UPDATE"
        );
        assert_eq!(
            sql.contract_identity,
            "SELECT identity FROM sst_contract WHERE name = :1 AND version = :2"
        );
        assert_eq!(
            sql.peer_columns,
            "SELECT table_name, column_name FROM user_tab_columns \
             WHERE table_name IN (:1, :2, :3, :4, :5, :6, :7, :8, :9)"
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
                &sql.update_state,
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
                sql.lock_states(2),
                sql.events(&["state_id =", "origin_seq >"], Some(5)),
                sql.log_after(Some(3)),
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
}
