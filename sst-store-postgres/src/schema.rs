//! DDL of the peer tables: `jsonb` columns for everything JSON, unique keys that serialise
//! concurrent writers (`(id, version)` on history, `id` and `(origin_node, origin_seq)` on
//! events, `pos` on the log), created idempotently inside the configured schema.

use crate::config::PostgresConfig;

/// Quoted, schema-qualified table names, ready to splice into SQL (the config validated
/// them as plain identifiers first).
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// `"schema"`.
    pub(crate) schema: String,
    /// `"schema"."sst_state"`.
    pub(crate) state: String,
    /// `"schema"."sst_state_history"`.
    pub(crate) history: String,
    /// `"schema"."sst_event"`.
    pub(crate) event: String,
    /// `"schema"."sst_actor"`.
    pub(crate) actor: String,
    /// `"schema"."sst_contract"`.
    pub(crate) contract: String,
    /// `"schema"."sst_refusal"`.
    pub(crate) refusal: String,
    /// `"schema"."sst_log"`.
    pub(crate) log: String,
    /// `"schema"."sst_checkpoint"`.
    pub(crate) checkpoint: String,
    /// `"schema"."sst_sink_cursor"`.
    pub(crate) sink_cursor: String,
    /// Unqualified event table name, for index and constraint names.
    event_bare: String,
    history_bare: String,
    state_bare: String,
    refusal_bare: String,
    log_bare: String,
    checkpoint_bare: String,
    sink_cursor_bare: String,
}

impl Names {
    pub(crate) fn new(c: &PostgresConfig) -> Self {
        let q = |t: &str| format!("\"{}\".\"{t}\"", c.schema);
        Names {
            schema: format!("\"{}\"", c.schema),
            state: q(&c.tables.state),
            history: q(&c.tables.history),
            event: q(&c.tables.event),
            actor: q(&c.tables.actor),
            contract: q(&c.tables.contract),
            refusal: q(&c.tables.refusal),
            log: q(&c.tables.log),
            checkpoint: q(&c.tables.checkpoint),
            sink_cursor: q(&c.tables.sink_cursor),
            event_bare: c.tables.event.clone(),
            history_bare: c.tables.history.clone(),
            state_bare: c.tables.state.clone(),
            refusal_bare: c.tables.refusal.clone(),
            log_bare: c.tables.log.clone(),
            checkpoint_bare: c.tables.checkpoint.clone(),
            sink_cursor_bare: c.tables.sink_cursor.clone(),
        }
    }
}

/// Columns shared by the current-state and history tables.
const STATE_COLUMNS: &str = "
    id               text        NOT NULL,
    contract_name    text        NOT NULL,
    contract_version integer     NOT NULL,
    version          bigint      NOT NULL CHECK (version >= 1),
    parties          jsonb       NOT NULL,
    seals            jsonb       NOT NULL,
    data             jsonb       NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    root             text        NOT NULL,
    prev_root        text,
    last_event       text,
    updated_at       bigint      NOT NULL";

/// The statements `migrate` runs, in order, each idempotent.
pub(crate) fn ddl(n: &Names) -> Vec<String> {
    let (ev, hi, st, rf, lg, cp, sc) = (
        &n.event_bare,
        &n.history_bare,
        &n.state_bare,
        &n.refusal_bare,
        &n.log_bare,
        &n.checkpoint_bare,
        &n.sink_cursor_bare,
    );
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", n.schema),
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({STATE_COLUMNS},
                CONSTRAINT \"{st}_pkey\" PRIMARY KEY (id))",
            n.state
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({STATE_COLUMNS},
                CONSTRAINT \"{hi}_pkey\" PRIMARY KEY (id, version))",
            n.history
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                pos              bigint GENERATED ALWAYS AS IDENTITY,
                id               text    NOT NULL,
                state_id         text    NOT NULL,
                kind             text    NOT NULL,
                contract_name    text    NOT NULL,
                contract_version integer NOT NULL,
                actor            text    NOT NULL,
                origin_node      text    NOT NULL,
                origin_seq       bigint  NOT NULL,
                outcome          text    NOT NULL CHECK (outcome IN ('applied', 'rejected')),
                reason           text,
                reason_detail    jsonb,
                new_version      bigint,
                new_root         text,
                event            jsonb   NOT NULL,
                disclosures      jsonb   NOT NULL,
                receipt          jsonb,
                business_events  jsonb,
                endorsements     jsonb,
                recorded_at      timestamptz NOT NULL DEFAULT now(),
                CONSTRAINT \"{ev}_pkey\" PRIMARY KEY (pos),
                CONSTRAINT \"{ev}_id_key\" UNIQUE (id),
                CONSTRAINT \"{ev}_origin_key\" UNIQUE (origin_node, origin_seq))",
            n.event
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{ev}_state_idx\" ON {} (state_id, pos)",
            n.event
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{ev}_actor_idx\" ON {} (actor, pos)",
            n.event
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                id         text  PRIMARY KEY,
                node       text  NOT NULL,
                public_key text  NOT NULL,
                status     text  NOT NULL)",
            n.actor
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                name       text    NOT NULL,
                version    integer NOT NULL,
                identity   text    NOT NULL,
                deployer   text    NOT NULL,
                record     jsonb   NOT NULL,
                PRIMARY KEY (name, version))",
            n.contract
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                event_id      text   NOT NULL,
                state_id      text   NOT NULL,
                version       bigint NOT NULL,
                from_node     text   NOT NULL,
                reason        text   NOT NULL,
                reason_detail jsonb  NOT NULL,
                at            bigint NOT NULL,
                CONSTRAINT \"{rf}_pkey\" PRIMARY KEY (event_id))",
            n.refusal
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"{rf}_state_idx\" ON {} (state_id, version)",
            n.refusal
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                pos     bigint        NOT NULL,
                kind    varchar(32)   NOT NULL,
                subject varchar(1024) NOT NULL,
                record  varchar(80)   NOT NULL,
                prev    varchar(80)   NOT NULL,
                hash    varchar(80)   NOT NULL,
                CONSTRAINT \"{lg}_pkey\" PRIMARY KEY (pos))",
            n.log
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                node      text        NOT NULL,
                pos       bigint      NOT NULL,
                head      varchar(80) NOT NULL,
                at        bigint      NOT NULL,
                signature text        NOT NULL,
                CONSTRAINT \"{cp}_pkey\" PRIMARY KEY (node, pos))",
            n.checkpoint
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                sink varchar(128) NOT NULL,
                pos  bigint       NOT NULL CHECK (pos >= 0),
                CONSTRAINT \"{sc}_pkey\" PRIMARY KEY (sink))",
            n.sink_cursor
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_qualified() {
        let c = PostgresConfig::new("postgres://x").schema("node_a");
        let n = Names::new(&c);
        assert_eq!(n.state, "\"node_a\".\"sst_state\"");
        assert_eq!(n.history, "\"node_a\".\"sst_state_history\"");
        let ddl = ddl(&n).join(";\n");
        assert!(ddl.contains("CREATE SCHEMA IF NOT EXISTS \"node_a\""));
        assert!(ddl.contains("UNIQUE (origin_node, origin_seq)"));
        assert!(ddl.contains("PRIMARY KEY (id, version)"));
        assert!(ddl.contains("\"node_a\".\"sst_refusal\""));
        assert!(ddl.contains(
            "\"sst_refusal_state_idx\" ON \"node_a\".\"sst_refusal\" (state_id, version)"
        ));
        assert!(ddl.contains("receipt          jsonb,"));
        assert!(ddl.contains("business_events  jsonb,"));
        assert!(ddl.contains("endorsements     jsonb,"));
        assert!(ddl.contains("CONSTRAINT \"sst_sink_cursor_pkey\" PRIMARY KEY (sink)"));
        assert!(ddl.contains("\"node_a\".\"sst_log\""));
        assert!(ddl.contains("CONSTRAINT \"sst_log_pkey\" PRIMARY KEY (pos)"));
        assert!(ddl.contains("CONSTRAINT \"sst_checkpoint_pkey\" PRIMARY KEY (node, pos)"));
    }
}
