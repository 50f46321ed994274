//! Rewrites a namespace's state tables into SST's first layout (before the section-version
//! layout), for the tests of the in-place upgrade: the conformance suite's
//! `downgrade_to_first_layout` and the upgrade tests of `tests/layout.rs`.

use rusqlite::Connection;
use sst_store_sqlite::TableNames;

/// The first layout's state table (current and history alike), exactly as `migrate` created
/// it before the section-version layout: every row carries its whole data document.
fn first_layout_table(name: &str, key: &str) -> String {
    format!(
        r#"CREATE TABLE "{name}" (
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

/// Rewrites the current-state and history tables of `t` into the first layout, filled from the
/// section-version tables (every history row with its whole data document from the history
/// view), puts the disclosed values back into the event rows that name section versions (the
/// first layout's event rows carried them inline), and drops the section table and the view,
/// in one transaction.
pub fn downgrade(c: &mut Connection, t: &TableNames) -> anyhow::Result<()> {
    let (state, history) = (&t.state, &t.history);
    let (section, versions, event) = (&t.section, &t.versions, &t.event);
    let cols = "id, contract_name, contract_version, version, parties, seals, data, root, \
                prev_root, last_event, updated_at";
    let tx = c.transaction()?;
    tx.execute_batch(&format!(
        r#"{current}
           INSERT INTO "first_current" ({cols})
           SELECT s.id, s.contract_name, s.contract_version, s.version, h.parties,
                  h.seals, s.data, h.root, h.prev_root, h.last_event, h.updated_at
           FROM "{state}" AS s
           JOIN "{history}" AS h ON h.id = s.id AND h.version = s.version;
           {first_history}
           INSERT INTO "first_history" ({cols})
           SELECT h.id, h.contract_name, h.contract_version, h.version, h.parties,
                  h.seals, v.data, h.root, h.prev_root, h.last_event, h.updated_at
           FROM "{history}" AS h
           JOIN "{versions}" AS v ON v.id = h.id AND v.version = h.version;
           UPDATE "{event}" SET disclosures = (
               SELECT json_group_object(j.key,
                        CASE WHEN json_type(j.value, '$.value') IS NOT NULL THEN json(j.value)
                             ELSE json_object('salt', j.value ->> 'salt', 'value', json(s.value))
                        END)
               FROM json_each("{event}".disclosures) AS j
               LEFT JOIN "{section}" AS s
                 ON s.state_id = "{event}".state_id AND s.name = j.key
                AND s.hash = j.value ->> 'hash');
           DROP VIEW "{versions}";
           DROP TABLE "{section}";
           DROP TABLE "{state}";
           DROP TABLE "{history}";
           ALTER TABLE "first_current" RENAME TO "{state}";
           ALTER TABLE "first_history" RENAME TO "{history}";"#,
        current = first_layout_table("first_current", "PRIMARY KEY (id)"),
        first_history = first_layout_table("first_history", "PRIMARY KEY (id, version)"),
    ))?;
    tx.commit()?;
    Ok(())
}
