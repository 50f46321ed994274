//! The conformance suite on a layout a DBA might choose: the history table created by the
//! user before `migrate`, LIST-partitioned by contract name (the README's example), which
//! `migrate` leaves as it is.

mod common;

/// The README's partitioning example (the suite's contract is named `conformance`).
const PARTITIONED_HISTORY: &str = r#"
CREATE SCHEMA IF NOT EXISTS "{schema}";
CREATE TABLE IF NOT EXISTS "{schema}".sst_state_history (
    id               text    NOT NULL,
    version          bigint  NOT NULL CHECK (version >= 1),
    contract_name    text    NOT NULL,
    contract_version integer NOT NULL,
    parties          jsonb   NOT NULL,
    seals            jsonb   NOT NULL,
    root             text    NOT NULL,
    prev_root        text,
    last_event       text,
    updated_at       bigint  NOT NULL,
    PRIMARY KEY (contract_name, id, version)
) PARTITION BY LIST (contract_name);
CREATE TABLE IF NOT EXISTS "{schema}".sst_state_history_conformance
    PARTITION OF "{schema}".sst_state_history FOR VALUES IN ('conformance');
CREATE TABLE IF NOT EXISTS "{schema}".sst_state_history_other
    PARTITION OF "{schema}".sst_state_history DEFAULT;
"#;

conformance_tests::suite!(common::factory(Some(PARTITIONED_HISTORY)));
