//! DDL of the peer tables and the column lists the store reads and writes.

use crate::config::TableNames;

/// Columns of both state tables, in the order [`crate::store`] binds and reads them.
pub(crate) const STATE_COLUMNS: &str = "id, contract_name, contract_version, version, parties, \
     seals, data, root, prev_root, last_event, updated_at";

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

fn state_table(name: &str, key: &str) -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS "{name}" (
    id               TEXT    NOT NULL,
    contract_name    TEXT    NOT NULL,
    contract_version INTEGER NOT NULL,
    version          INTEGER NOT NULL CHECK (version >= 1),
    parties          TEXT    NOT NULL CHECK (json_valid(parties)),
    seals            TEXT    NOT NULL CHECK (json_valid(seals)),
    data             TEXT    NOT NULL CHECK (json_valid(data)),
    root             TEXT    NOT NULL,
    prev_root        TEXT,
    last_event       TEXT,
    updated_at       INTEGER NOT NULL,
    {key}
);"#
    )
}

/// Every statement `migrate` runs, each idempotent (`IF NOT EXISTS`).
pub(crate) fn ddl(t: &TableNames) -> String {
    let mut sql = String::new();
    sql.push_str(&state_table(&t.state, "PRIMARY KEY (id)"));
    sql.push_str(&state_table(&t.history, "PRIMARY KEY (id, version)"));
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
    reason_detail    TEXT    CHECK (reason_detail IS NULL OR json_valid(reason_detail)),
    new_version      INTEGER,
    new_root         TEXT,
    event            TEXT    NOT NULL CHECK (json_valid(event)),
    disclosures      TEXT    NOT NULL CHECK (json_valid(disclosures)),
    receipt          TEXT    CHECK (receipt IS NULL OR json_valid(receipt)),
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

/// Every peer table with the columns SST reads and writes in it: a pre-existing table of that
/// name lacking one of them belongs to something else.
pub(crate) fn required_columns(t: &TableNames) -> [(&str, &'static [&'static str]); 9] {
    const STATE: &[&str] = &[
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
        (&t.state, STATE),
        (&t.history, STATE),
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
    fn ddl_runs_twice_and_creates_the_nine_tables() {
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
                "p_sink_cursor",
                "p_state",
                "p_state_history"
            ]
        );
    }
}
