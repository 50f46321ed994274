//! DDL of the peer tables (section-version layout), the column lists the store reads and
//! writes, and what `migrate` needs to recognise and upgrade the first layout.

use crate::config::TableNames;

/// Columns of the current-state table, in the order [`crate::store`] inserts them: the state's
/// id, contract and version, and the queryable `data` document. Everything else of that
/// version lives in its history row.
pub(crate) const CURRENT_COLUMNS: &str = "id, contract_name, contract_version, version, data";

/// Columns of the history table, in the order [`crate::store`] binds them: a version's header
/// and section seals, without plaintext (that lives once per section version in the section
/// table).
pub(crate) const HISTORY_COLUMNS: &str = "id, version, contract_name, contract_version, \
     parties, seals, root, prev_root, last_event, updated_at";

pub(crate) use sst_core::raw::FIRST_LAYOUT_CURRENT_ONLY;

/// The history table's columns, as [`required_columns`] checks them.
const HISTORY: &[&str] = &[
    "id",
    "version",
    "contract_name",
    "contract_version",
    "parties",
    "seals",
    "root",
    "prev_root",
    "last_event",
    "updated_at",
];

/// The column whose presence in the history table marks the first layout (every history row
/// carrying its whole data document).
pub(crate) const FIRST_LAYOUT_HISTORY_DATA: &str = "data";

/// Columns of the event table that rebuild an [`sst_core::EventRecord`] (the first nine)
/// followed by the columns derived from the signed event, which a read checks against it.
pub(crate) const EVENT_COLUMNS: &str = "event, disclosures, outcome, new_version, new_root, \
     reason_detail, receipt, business_events, endorsements, id, state_id, kind, contract_name, \
     contract_version, actor, origin_node, origin_seq, reason";

/// The event table's business-events column (nullable JSON), as created with the table and as
/// `migrate` adds it to an event table of an older layout.
pub(crate) const BUSINESS_EVENTS_COLUMN: &str =
    "business_events TEXT CHECK (business_events IS NULL OR json_valid(business_events))";

/// The event table's endorsements column (nullable JSON array; `NULL` for every event of a
/// contract on the `home` protocol), as created with the table and as `migrate` adds it to an
/// event table of an older layout.
pub(crate) const ENDORSEMENTS_COLUMN: &str =
    "endorsements TEXT CHECK (endorsements IS NULL OR json_valid(endorsements))";

/// Columns of the log table, in the order [`sst_core::LogEntry::from_columns`] takes them.
pub(crate) const LOG_COLUMNS: &str = "pos, kind, subject, record, prev, hash";

/// Columns of the checkpoint table, in the order [`crate::store`] binds and reads them.
pub(crate) const CHECKPOINT_COLUMNS: &str = "node, pos, head, at, signature";

/// The current-state table. `data` carries no `CHECK (json_valid(data))`: SST only writes it
/// whole from serialised JSON or through `json_set`/`json_remove` (whose output is JSON), and a
/// check would re-parse the whole document on every update (measured: ~40 ms for a 5 MB state,
/// as much as the `json_set` itself), so the table updates like a plain `(id, data)` table.
/// What an edit behind SST's back leaves there is read strictly ([`sst_core::portable`]) and
/// reported by `verify`.
fn current_table(name: &str) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS "{name}" (
    id               TEXT    NOT NULL PRIMARY KEY,
    contract_name    TEXT    NOT NULL,
    contract_version INTEGER NOT NULL,
    version          INTEGER NOT NULL CHECK (version >= 1),
    data             TEXT    NOT NULL
);"#
    )
}

fn history_table(name: &str) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS "{name}" (
    id               TEXT    NOT NULL,
    version          INTEGER NOT NULL CHECK (version >= 1),
    contract_name    TEXT    NOT NULL,
    contract_version INTEGER NOT NULL,
    parties          TEXT    NOT NULL CHECK (json_valid(parties)),
    seals            TEXT    NOT NULL CHECK (json_valid(seals)),
    root             TEXT    NOT NULL,
    prev_root        TEXT,
    last_event       TEXT,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);"#
    )
}

/// The section table: one row per section version (`value` its plaintext as JSON text),
/// written once and referenced by every history row whose seals name it. Created by [`ddl`],
/// and first of all by the in-place upgrade of the first layout, which fills it.
///
/// `value` carries no `CHECK (json_valid(value))`: SST writes it only from serialised JSON,
/// and the check parsed every new section version once more on the writer thread (~20 ms for
/// a 5 MB section). Every read parses it strictly ([`sst_core::portable`]); a row edited
/// behind SST's back into something else makes the history view's `json(value)` fail, which
/// `state_at` reports as an integrity error naming the section version, and `verify` reports
/// it. Tables created before keep their check: SQLite cannot drop a `CHECK` without
/// rebuilding the table, and a rebuild would copy every section version.
pub(crate) fn section_table(t: &TableNames) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS "{section}" (
    state_id TEXT NOT NULL,
    name     TEXT NOT NULL,
    hash     TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (state_id, name, hash)
);"#,
        section = t.section
    )
}

/// The read-only history view: every version's header with its full data document
/// `{name: value}`, assembled from the seals that carry a salt (disclosed sections) and the
/// section rows they name; `{}` when the version discloses nothing.
fn versions_view(t: &TableNames) -> String {
    format!(
        r#"
CREATE VIEW IF NOT EXISTS "{versions}"
    (id, version, contract_name, contract_version, root, updated_at, data) AS
SELECT h.id, h.version, h.contract_name, h.contract_version, h.root, h.updated_at,
       (SELECT json_group_object(j.key, json(s.value))
          FROM json_each(h.seals) AS j
          JOIN "{section}" AS s
            ON s.state_id = h.id AND s.name = j.key
           AND s.hash = json_extract(j.value, '$.hash')
         WHERE json_extract(j.value, '$.salt') IS NOT NULL)
FROM "{history}" AS h;"#,
        versions = t.versions,
        section = t.section,
        history = t.history,
    )
}

/// Every statement `migrate` runs, each idempotent (`IF NOT EXISTS`).
///
/// The event table's `event`, `disclosures`, `receipt` and `reason_detail` columns carry no
/// `CHECK (json_valid(…))`: SST writes them only from serialised records, a check parsed
/// about a kilobyte of JSON per event on the writer thread, and every read parses them
/// strictly, so a row edited into something else is an integrity finding of `verify` (with
/// its event id) like any other edit. The section `value` has none either, for the same
/// reason ([`section_table`]). The columns that SQL itself reads as JSON keep their check:
/// the history's `seals` (the history view), and `business_events` and `endorsements`
/// (queried with `json_each`).
pub(crate) fn ddl(t: &TableNames) -> String {
    let mut sql = String::new();
    sql.push_str(&current_table(&t.state));
    sql.push_str(&history_table(&t.history));
    sql.push_str(&section_table(t));
    sql.push_str(&versions_view(t));
    sql.push_str(&format!(
        r#"
CREATE TABLE IF NOT EXISTS "{event}" (
    pos              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    state_id         TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    contract_name    TEXT    NOT NULL,
    contract_version INTEGER NOT NULL,
    actor            TEXT    NOT NULL,
    origin_node      TEXT    NOT NULL,
    origin_seq       INTEGER NOT NULL,
    outcome          TEXT    NOT NULL CHECK (outcome IN ('applied', 'rejected')),
    reason           TEXT,
    reason_detail    TEXT,
    new_version      INTEGER,
    new_root         TEXT,
    event            TEXT    NOT NULL,
    disclosures      TEXT    NOT NULL,
    receipt          TEXT,
    {business_events},
    {endorsements},
    UNIQUE (origin_node, origin_seq)
);
CREATE INDEX IF NOT EXISTS "{event}_state_pos" ON "{event}" (state_id, pos);
CREATE INDEX IF NOT EXISTS "{event}_actor_pos" ON "{event}" (actor, pos);
CREATE INDEX IF NOT EXISTS "{event}_outcome_pos" ON "{event}" (outcome, pos);
CREATE TABLE IF NOT EXISTS "{actor}" (
    id         TEXT NOT NULL PRIMARY KEY,
    node       TEXT NOT NULL,
    public_key TEXT NOT NULL,
    status     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS "{contract}" (
    name     TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    identity TEXT    NOT NULL,
    deployer TEXT    NOT NULL,
    record   TEXT    NOT NULL CHECK (json_valid(record)),
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS "{refusal}" (
    event_id      TEXT    NOT NULL PRIMARY KEY,
    state_id      TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    from_node     TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    reason_detail TEXT    NOT NULL CHECK (json_valid(reason_detail)),
    at            INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS "{refusal}_state" ON "{refusal}" (state_id, version);
CREATE TABLE IF NOT EXISTS "{log}" (
    pos     INTEGER NOT NULL PRIMARY KEY,
    kind    TEXT    NOT NULL CHECK (length(kind) <= 32),
    subject TEXT    NOT NULL CHECK (length(subject) <= 1024),
    record  TEXT    NOT NULL CHECK (length(record) <= 80),
    prev    TEXT    NOT NULL CHECK (length(prev) <= 80),
    hash    TEXT    NOT NULL CHECK (length(hash) <= 80)
);
CREATE TABLE IF NOT EXISTS "{checkpoint}" (
    node      TEXT    NOT NULL,
    pos       INTEGER NOT NULL,
    head      TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    signature TEXT    NOT NULL,
    PRIMARY KEY (node, pos)
);
CREATE TABLE IF NOT EXISTS "{sink_cursor}" (
    sink TEXT    NOT NULL PRIMARY KEY CHECK (length(sink) BETWEEN 1 AND 128),
    pos  INTEGER NOT NULL CHECK (pos >= 0)
);
"#,
        event = t.event,
        actor = t.actor,
        contract = t.contract,
        refusal = t.refusal,
        log = t.log,
        checkpoint = t.checkpoint,
        sink_cursor = t.sink_cursor,
        business_events = BUSINESS_EVENTS_COLUMN,
        endorsements = ENDORSEMENTS_COLUMN,
    ));
    sql
}

/// Every peer table (and the history view) with the columns SST reads and writes in it: a
/// pre-existing table of that name lacking one of them belongs to something else. A state
/// table of the first layout has more columns than these, so it passes, and `migrate` then
/// upgrades it.
pub(crate) fn required_columns(t: &TableNames) -> [(&str, &'static [&'static str]); 11] {
    const CURRENT: &[&str] = &["id", "contract_name", "contract_version", "version", "data"];
    const SECTION: &[&str] = &["state_id", "name", "hash", "value"];
    const VERSIONS: &[&str] = &[
        "id",
        "version",
        "contract_name",
        "contract_version",
        "root",
        "updated_at",
        "data",
    ];
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
        (&t.state, CURRENT),
        (&t.history, HISTORY),
        (&t.section, SECTION),
        (&t.versions, VERSIONS),
        (&t.event, EVENT),
        (&t.actor, &["id", "node", "public_key", "status"]),
        (
            &t.contract,
            &["name", "version", "identity", "deployer", "record"],
        ),
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
        (
            &t.log,
            &["pos", "kind", "subject", "record", "prev", "hash"],
        ),
        (&t.checkpoint, &["node", "pos", "head", "at", "signature"]),
        (&t.sink_cursor, &["sink", "pos"]),
    ]
}

/// Columns later releases added to a peer table: an existing table without them is of an
/// older layout, and `migrate` adds them (see [`sst_core::raw::columns_to_add`]).
pub(crate) fn added_columns(t: &TableNames) -> [(&str, &'static [&'static str]); 1] {
    [(&t.event, &["business_events", "endorsements"])]
}

/// The `ALTER TABLE` that adds `column` (one of [`added_columns`]) to `table`.
pub(crate) fn add_column(table: &str, column: &str) -> Option<String> {
    let definition = match column {
        "business_events" => BUSINESS_EVENTS_COLUMN,
        "endorsements" => ENDORSEMENTS_COLUMN,
        _ => return None,
    };
    Some(format!(r#"ALTER TABLE "{table}" ADD COLUMN {definition}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_runs_twice_and_creates_the_ten_tables_and_the_view() {
        let c = rusqlite::Connection::open_in_memory().expect("memory db");
        let t = TableNames::with_prefix("p_");
        c.execute_batch(&ddl(&t)).expect("first migrate");
        c.execute_batch(&ddl(&t)).expect("second migrate");
        let mut names: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'p\\_%' ESCAPE '\\' ORDER BY name")
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()
            })
            .expect("list tables");
        names.sort();
        assert_eq!(
            names,
            [
                "p_actor",
                "p_checkpoint",
                "p_contract",
                "p_event",
                "p_log",
                "p_refusal",
                "p_section",
                "p_sink_cursor",
                "p_state",
                "p_state_history"
            ]
        );
        let view: String = c
            .query_row(
                "SELECT type FROM sqlite_master WHERE name = 'p_state_versions'",
                [],
                |r| r.get(0),
            )
            .expect("the history view exists");
        assert_eq!(view, "view");
    }

    #[test]
    fn the_first_layouts_current_table_loses_the_history_row_columns() {
        assert_eq!(
            FIRST_LAYOUT_CURRENT_ONLY,
            [
                "parties",
                "seals",
                "root",
                "prev_root",
                "last_event",
                "updated_at"
            ]
        );
    }

    /// The view shows a version's disclosed sections from the section rows its seals name,
    /// leaves out a redacted section (seal without salt) and shows `{}` for a version that
    /// discloses nothing.
    #[test]
    fn history_view_assembles_the_disclosed_sections_of_each_version() {
        let c = rusqlite::Connection::open_in_memory().expect("memory db");
        let t = TableNames::default();
        c.execute_batch(&ddl(&t)).expect("migrate");
        c.execute_batch(
            r#"INSERT INTO sst_state_history VALUES
                 ('s', 1, 'deal', 1, '{}', '{"a": {"hash": "h1", "salt": "x"},
                   "b": {"hash": "h2", "salt": "y"}, "c": {"hash": "h3"}}', 'r1', NULL, NULL, 0),
                 ('s', 2, 'deal', 1, '{}', '{"a": {"hash": "h1", "salt": "x"}}', 'r2', 'r1',
                   NULL, 0),
                 ('s', 3, 'deal', 1, '{}', '{"c": {"hash": "h3"}}', 'r3', 'r2', NULL, 0);
               INSERT INTO sst_section VALUES
                 ('s', 'a', 'h1', '{"amount": 4.25, "tags": ["x"]}'),
                 ('s', 'b', 'h2', '"text"');"#,
        )
        .expect("rows");
        let data = |v: i64| -> String {
            c.query_row(
                "SELECT data FROM sst_state_versions WHERE id = 's' AND version = ?1",
                [v],
                |r| r.get(0),
            )
            .expect("view row")
        };
        assert_eq!(data(1), r#"{"a":{"amount":4.25,"tags":["x"]},"b":"text"}"#);
        assert_eq!(data(2), r#"{"a":{"amount":4.25,"tags":["x"]}}"#);
        assert_eq!(data(3), "{}");
    }
}
