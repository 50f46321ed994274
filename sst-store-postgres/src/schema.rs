//! DDL of the peer tables: `jsonb` columns for everything JSON, unique keys that serialise
//! concurrent writers (`(id, version)` on history, `id` and `(origin_node, origin_seq)` on
//! events, `pos` on the log), created idempotently inside the configured schema, in the
//! section-version layout (a lean current-state table, history rows without plaintext, each
//! section version once, and the history view), plus the in-place upgrade of the first layout
//! and the lz4 compression of section values where the server has it.

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
    /// `"schema"."sst_section"`.
    pub(crate) section: String,
    /// `"schema"."sst_state_versions"` (a view).
    pub(crate) versions: String,
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
    section_bare: String,
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
            section: q(&c.tables.section),
            versions: q(&c.tables.versions),
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
            section_bare: c.tables.section.clone(),
            refusal_bare: c.tables.refusal.clone(),
            log_bare: c.tables.log.clone(),
            checkpoint_bare: c.tables.checkpoint.clone(),
            sink_cursor_bare: c.tables.sink_cursor.clone(),
        }
    }
}

/// Columns of the current-state table: only what users query (the rest of a version lives in
/// its history row), so a row scans like a plain `(id, data)` table of the same JSON.
const CURRENT_COLUMNS: &str = "
    id               text        NOT NULL,
    contract_name    text        NOT NULL,
    contract_version integer     NOT NULL,
    version          bigint      NOT NULL CHECK (version >= 1),
    data             jsonb       NOT NULL CHECK (jsonb_typeof(data) = 'object')";

/// Columns of the history table: a version's header and section seals, no plaintext.
const HISTORY_COLUMNS: &str = "
    id               text        NOT NULL,
    version          bigint      NOT NULL CHECK (version >= 1),
    contract_name    text        NOT NULL,
    contract_version integer     NOT NULL,
    parties          jsonb       NOT NULL,
    seals            jsonb       NOT NULL,
    root             text        NOT NULL,
    prev_root        text,
    last_event       text,
    updated_at       bigint      NOT NULL";

/// Columns the first layout's current-state table has beyond [`CURRENT_COLUMNS`]; the
/// upgrade drops them.
pub(crate) use sst_core::raw::FIRST_LAYOUT_CURRENT_ONLY as FIRST_LAYOUT_CURRENT_EXTRA;

/// The queryable document of the history row aliased `h`: `{name: value}` over its seals that
/// have a salt, each value from the section table; `{}` when none. Shared by the view and
/// `state_at`.
pub(crate) fn version_data(n: &Names, h: &str) -> String {
    format!(
        "COALESCE((SELECT jsonb_object_agg(e.name, x.value) \
         FROM jsonb_each({h}.seals) AS e(name, seal) \
         JOIN {section} AS x ON x.state_id = {h}.id AND x.name = e.name \
         AND x.hash = e.seal ->> 'hash' \
         WHERE e.seal ->> 'salt' IS NOT NULL), '{{}}'::jsonb)",
        section = n.section
    )
}

/// The history view: every version's header and full queryable document (read-only).
pub(crate) fn versions_view(n: &Names) -> String {
    format!(
        "CREATE OR REPLACE VIEW {} AS SELECT h.id, h.version, h.contract_name, \
         h.contract_version, h.root, h.updated_at, {} AS data FROM {} AS h",
        n.versions,
        version_data(n, "h"),
        n.history
    )
}

/// The first layout's upgrade, after the tables of [`ddl`] exist and
/// [`first_layout_disagreement`] found nothing: each history row's disclosed sections become
/// section rows (a key already stored is kept), then the plaintext column of the
/// history and the columns the current-state table no longer holds are dropped (see
/// [`rewrite_current_data`] for their bytes).
pub(crate) fn upgrade_first_layout(n: &Names, current_extra: &[&str]) -> Vec<String> {
    let mut stmts = vec![
        format!(
            "INSERT INTO {section} (state_id, name, hash, value) \
             SELECT h.id, e.name, e.seal ->> 'hash', h.data -> e.name \
             FROM {history} AS h CROSS JOIN LATERAL jsonb_each(h.seals) AS e(name, seal) \
             WHERE e.seal ->> 'salt' IS NOT NULL AND e.seal ->> 'hash' IS NOT NULL \
             AND h.data ? e.name \
             ORDER BY h.id, h.version \
             ON CONFLICT DO NOTHING",
            section = n.section,
            history = n.history
        ),
        format!("ALTER TABLE {} DROP COLUMN data", n.history),
    ];
    if !current_extra.is_empty() {
        let drops: Vec<String> = current_extra
            .iter()
            .map(|c| format!("DROP COLUMN {c}"))
            .collect();
        stmts.push(format!("ALTER TABLE {} {}", n.state, drops.join(", ")));
    }
    stmts
}

/// Whether the server can compress a column with lz4 (PostgreSQL 14 or later built
/// `--with-lz4`): `lz4` is then an accepted value of `default_toast_compression`, a setting
/// older servers do not have at all (no row: `false`).
pub(crate) const LZ4_SUPPORTED: &str = "SELECT EXISTS (SELECT 1 FROM pg_settings \
     WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals))";

/// The compression method declared on the section table's `value` column (`$1`: the
/// qualified table name): `l` lz4, `p` pglz, empty when none was declared (the server's
/// `default_toast_compression`, pglz unless a DBA changed it). Only for servers with
/// [`LZ4_SUPPORTED`] (older ones have no `attcompression`).
pub(crate) const SECTION_VALUE_COMPRESSION: &str = "SELECT a.attcompression::text \
     FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attname = 'value'";

/// Declares lz4 on the `value` column of a section table created without a compression
/// method (by an earlier version): values written from now on are compressed with lz4, those
/// already stored stay pglz and read back as before (a catalog change, no rewrite).
pub(crate) fn section_value_lz4(n: &Names) -> String {
    format!(
        "ALTER TABLE {} ALTER COLUMN value SET COMPRESSION lz4",
        n.section
    )
}

/// The statements `migrate` runs, in order, each idempotent. With `lz4`, the section table's
/// `value` column is created `COMPRESSION lz4`: each update of a large section writes a new
/// section version beside the new current row, and lz4 compresses it several times faster
/// than the default pglz. The current-state `data` keeps the server's default, exactly like
/// a plain table's column, so that user queries and scans cost what they cost there.
pub(crate) fn ddl(n: &Names, lz4: bool) -> Vec<String> {
    let (se, ev, hi, st, rf, lg, cp, sc) = (
        &n.section_bare,
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
            "CREATE TABLE IF NOT EXISTS {} ({CURRENT_COLUMNS},
                CONSTRAINT \"{st}_pkey\" PRIMARY KEY (id))",
            n.state
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({HISTORY_COLUMNS},
                CONSTRAINT \"{hi}_pkey\" PRIMARY KEY (id, version))",
            n.history
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                state_id text  NOT NULL,
                name     text  NOT NULL,
                hash     text  NOT NULL,
                value    jsonb {value_compression}NOT NULL,
                CONSTRAINT \"{se}_pkey\" PRIMARY KEY (state_id, name, hash))",
            n.section,
            value_compression = if lz4 { "COMPRESSION lz4 " } else { "" },
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

/// Finds one section version that two first-layout history rows hold with different values
/// (edited behind SST's back): `id`, `name` and the lowest and highest version holding it.
/// The upgrade stores each section version once, so it refuses rather than keep one value.
pub(crate) fn first_layout_disagreement(n: &Names) -> String {
    format!(
        "SELECT h.id, e.name, min(h.version) AS low, max(h.version) AS high \
         FROM {} AS h CROSS JOIN LATERAL jsonb_each(h.seals) AS e(name, seal) \
         WHERE e.seal ->> 'salt' IS NOT NULL AND h.data ? e.name \
         GROUP BY h.id, e.name, e.seal ->> 'hash' \
         HAVING count(DISTINCT h.data -> e.name) > 1 \
         ORDER BY h.id COLLATE \"C\", e.name COLLATE \"C\" LIMIT 1",
        n.history
    )
}

/// Rewrites every current-state row with its `data` decompressed: a first-layout row was
/// wider than the TOAST threshold (~2 KB), so PostgreSQL stored its `data` compressed inline,
/// and dropping the other columns neither removes their bytes nor decompresses it; scans of
/// such a table measured 2.5–3x those of a plain `(id, data)` table of the same JSON, and
/// after this rewrite the same as it (the new rows are stored exactly as the plain table's).
/// `ALTER … TYPE … USING` rewrites the table in this transaction; it is refused while a view
/// or rule uses the column, so `migrate` runs it only when [`DATA_USED_BY_A_RULE`] counts none.
pub(crate) fn rewrite_current_data(n: &Names) -> String {
    format!(
        "ALTER TABLE {} ALTER COLUMN data TYPE jsonb USING data || '{{}}'::jsonb",
        n.state
    )
}

/// Counts the views and rules using the current-state table's `data` column (`$1`: the
/// qualified table name).
pub(crate) const DATA_USED_BY_A_RULE: &str = "SELECT count(*) FROM pg_depend d \
     JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1::regclass \
     AND a.attname = 'data'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_qualified() {
        let c = PostgresConfig::new("postgres://x").schema("node_a");
        let n = Names::new(&c);
        assert_eq!(n.state, "\"node_a\".\"sst_state\"");
        assert_eq!(n.history, "\"node_a\".\"sst_state_history\"");
        let ddl = ddl(&n, false).join(";\n");
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
        assert!(ddl.contains(
            "\"node_a\".\"sst_section\" (
                state_id text  NOT NULL,"
        ));
        assert!(ddl.contains("CONSTRAINT \"sst_section_pkey\" PRIMARY KEY (state_id, name, hash)"));
    }

    #[test]
    fn current_table_is_lean_and_history_holds_no_plaintext() {
        let ddl = ddl(&Names::new(&PostgresConfig::new("postgres://x")), true);
        let state = ddl
            .iter()
            .find(|s| s.contains("\"public\".\"sst_state\" ("))
            .expect("state");
        for gone in FIRST_LAYOUT_CURRENT_EXTRA {
            assert!(!state.contains(&format!("{gone} ")), "{gone} in {state}");
        }
        assert!(state.contains("data             jsonb"));
        let history = ddl
            .iter()
            .find(|s| s.contains("\"public\".\"sst_state_history\" ("))
            .expect("history");
        assert!(!history.contains("data "), "{history}");
        assert!(history.contains("seals            jsonb"));
    }

    #[test]
    fn only_section_values_are_declared_lz4_and_only_when_the_server_has_it() {
        let n = Names::new(&PostgresConfig::new("postgres://x").schema("node_a"));
        let with = ddl(&n, true);
        let compressed: Vec<&String> = with.iter().filter(|s| s.contains("COMPRESSION")).collect();
        assert_eq!(compressed.len(), 1, "{compressed:?}");
        assert!(compressed[0].contains("\"node_a\".\"sst_section\" ("));
        assert!(compressed[0].contains("value    jsonb COMPRESSION lz4 NOT NULL,"));
        let without = ddl(&n, false);
        assert!(without.iter().all(|s| !s.contains("COMPRESSION")));
        assert!(without
            .iter()
            .any(|s| s.contains("value    jsonb NOT NULL,")));
        assert_eq!(
            section_value_lz4(&n),
            "ALTER TABLE \"node_a\".\"sst_section\" ALTER COLUMN value SET COMPRESSION lz4"
        );
    }

    #[test]
    fn view_assembles_each_version_from_its_disclosed_seals() {
        let n = Names::new(&PostgresConfig::new("postgres://x").schema("node_a"));
        let view = versions_view(&n);
        assert!(view.starts_with("CREATE OR REPLACE VIEW \"node_a\".\"sst_state_versions\" AS"));
        assert!(view.contains("jsonb_object_agg(e.name, x.value)"));
        assert!(view.contains("jsonb_each(h.seals)"));
        assert!(view.contains("WHERE e.seal ->> 'salt' IS NOT NULL), '{}'::jsonb) AS data"));
        assert!(view.contains("FROM \"node_a\".\"sst_state_history\" AS h"));
    }

    #[test]
    fn first_layout_upgrade_moves_plaintext_before_dropping_it() {
        let n = Names::new(&PostgresConfig::new("postgres://x"));
        let up = upgrade_first_layout(&n, &["parties", "root"]);
        assert_eq!(up.len(), 3);
        assert!(up[0].starts_with("INSERT INTO \"public\".\"sst_section\""));
        assert!(up[0].contains("ON CONFLICT DO NOTHING"));
        assert_eq!(
            up[1],
            "ALTER TABLE \"public\".\"sst_state_history\" DROP COLUMN data"
        );
        assert_eq!(
            up[2],
            "ALTER TABLE \"public\".\"sst_state\" DROP COLUMN parties, DROP COLUMN root"
        );
        assert_eq!(upgrade_first_layout(&n, &[]).len(), 2);
        let check = first_layout_disagreement(&n);
        assert!(check.contains("GROUP BY h.id, e.name, e.seal ->> 'hash'"));
        assert!(check.contains("HAVING count(DISTINCT h.data -> e.name) > 1"));
    }
}
