//! DDL of the peer tables: InnoDB, utf8mb4 with a binary NO PAD collation (ids compare
//! byte-wise, like Rust strings), `JSON` columns (a `LONGTEXT` + `json_valid` check on
//! MariaDB, the binary JSON type on MySQL 8), the unique keys that serialise writers, the
//! history view, and the statements that upgrade state tables of the first layout.

/// Collations tried, best first, for the key columns: byte-wise and without trailing-space
/// padding (`'a'` and `'a '` are different ids). MySQL 8 has the first, MariaDB the second;
/// the last (PAD SPACE) is a fallback for older servers.
pub(crate) const COLLATIONS: [&str; 3] = ["utf8mb4_0900_bin", "utf8mb4_nopad_bin", "utf8mb4_bin"];

/// Quoted, database-qualified table names, ready to splice into SQL (the config validated
/// them as plain identifiers first).
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// `` `db` ``.
    pub(crate) database: String,
    /// `` `db`.`sst_state` ``.
    pub(crate) state: String,
    /// `` `db`.`sst_state_history` ``.
    pub(crate) history: String,
    /// `` `db`.`sst_section` ``.
    pub(crate) section: String,
    /// `` `db`.`sst_state_versions` `` (a view).
    pub(crate) versions: String,
    /// `` `db`.`sst_event` ``.
    pub(crate) event: String,
    /// `` `db`.`sst_actor` ``.
    pub(crate) actor: String,
    /// `` `db`.`sst_contract` ``.
    pub(crate) contract: String,
    /// `` `db`.`sst_refusal` ``.
    pub(crate) refusal: String,
    /// `` `db`.`sst_log` ``.
    pub(crate) log: String,
    /// `` `db`.`sst_checkpoint` ``.
    pub(crate) checkpoint: String,
    /// `` `db`.`sst_sink_cursor` ``.
    pub(crate) sink_cursor: String,
}

impl Names {
    pub(crate) fn new(database: &str, t: &crate::TableNames) -> Self {
        let q = |name: &str| format!("`{database}`.`{name}`");
        Names {
            database: format!("`{database}`"),
            state: q(&t.state),
            history: q(&t.history),
            section: q(&t.section),
            versions: q(&t.versions),
            event: q(&t.event),
            actor: q(&t.actor),
            contract: q(&t.contract),
            refusal: q(&t.refusal),
            log: q(&t.log),
            checkpoint: q(&t.checkpoint),
            sink_cursor: q(&t.sink_cursor),
        }
    }
}

/// Which server family the store talks to (they differ in JSON storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// MySQL 8: `JSON` is a binary type (nesting up to 100 levels).
    Mysql,
    /// MariaDB: `JSON` is `LONGTEXT` plus a `json_valid` check, and `json_valid` refuses
    /// nesting of 32 levels or more.
    Mariadb,
}

impl Flavor {
    /// From `SELECT VERSION()`.
    pub(crate) fn from_version(version: &str) -> Self {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        }
    }

    /// Column type of the columns that hold user JSON values (`data`, `disclosures`,
    /// `event`). The portable profile allows 64 levels of nesting and these columns wrap a
    /// value in one or two more, beyond MariaDB's `json_valid` limit; so on MariaDB they are
    /// `LONGTEXT` (what its `JSON` alias is) without that check. SST writes only valid JSON
    /// and parses strictly on read, and MariaDB's JSON functions work on them unchanged.
    fn user_json(self) -> &'static str {
        match self {
            Flavor::Mysql => "JSON",
            Flavor::Mariadb => "LONGTEXT",
        }
    }
}

pub(crate) use sst_core::raw::FIRST_LAYOUT_CURRENT_ONLY;

/// The current-state table: the queryable `data` document of each state's latest version.
fn state_table(n: &Names, flavor: Flavor, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
    id               VARCHAR(255) NOT NULL,
    contract_name    VARCHAR(255) NOT NULL,
    contract_version INT UNSIGNED NOT NULL,
    version          BIGINT       NOT NULL,
    data             {}     NOT NULL,
    CHECK (version >= 1),
    PRIMARY KEY (id)) {table}",
        n.state,
        flavor.user_json()
    )
}

/// The history table: header and section seals of every version, no plaintext.
fn history_table(n: &Names, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
    id               VARCHAR(255) NOT NULL,
    contract_name    VARCHAR(255) NOT NULL,
    contract_version INT UNSIGNED NOT NULL,
    version          BIGINT       NOT NULL,
    parties          JSON         NOT NULL,
    seals            JSON         NOT NULL,
    root             VARCHAR(80)  NOT NULL,
    prev_root        VARCHAR(80)  NULL,
    last_event       VARCHAR(80)  NULL,
    updated_at       BIGINT       NOT NULL,
    CHECK (version >= 1),
    PRIMARY KEY (id, version)) {table}",
        n.history
    )
}

/// The section table: each section version's plaintext, once.
fn section_table(n: &Names, flavor: Flavor, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
    state_id VARCHAR(255) NOT NULL,
    name     VARCHAR(255) NOT NULL,
    hash     VARCHAR(80)  NOT NULL,
    value    {}     NOT NULL,
    PRIMARY KEY (state_id, name, hash)) {table}",
        n.section,
        flavor.user_json()
    )
}

/// Bytes below which MariaDB's history view assembles a version's document as text: under
/// the 1 MiB default of `group_concat_max_len`, which would truncate a longer `GROUP_CONCAT`.
const VIEW_CONCAT_LIMIT: usize = 1_000_000;

/// The read-only history view: every version's `{name: value}` document over its seals that
/// carry a salt, each joined to its section row; `{}` when none.
///
/// MariaDB has no function listing an object's members with their values, so the seals'
/// names come from `JSON_TABLE` over `JSON_KEYS(seals)` and each one's hash and salt from a
/// path built with `JSON_QUOTE` (any name, quotes and backslashes included). The names and
/// hashes `JSON_TABLE`/`JSON_VALUE` return carry the JSON column's collation, so they are
/// compared under the tables' `collation`; `JSON_CONTAINS_PATH` misses members whose quoted
/// name holds a `\uXXXX` escape (where `JSON_VALUE` finds them), so a salt is tested with
/// `JSON_VALUE … IS NOT NULL`. On MariaDB, `JSON_OBJECTAGG` quotes a `LONGTEXT` value as a
/// string unless it comes out of a JSON function, and every JSON function stops at 32 levels
/// of nesting (a deeper section would read as `null`), so a document under
/// [`VIEW_CONCAT_LIMIT`] bytes is concatenated as text, any depth, and a larger one
/// aggregated with `JSON_OBJECTAGG(name, JSON_EXTRACT(value, '$'))`, any size.
pub(crate) fn versions_view(n: &Names, collation: &str, flavor: Flavor) -> String {
    let path = |member: &str| format!("CONCAT('$.', JSON_QUOTE(j.name), '.{member}')");
    let document = match flavor {
        Flavor::Mysql => "JSON_OBJECTAGG(s.name, s.value)".to_owned(),
        Flavor::Mariadb => format!(
            "CASE WHEN SUM(LENGTH(s.name) * 6 + LENGTH(s.value) + 4) < {VIEW_CONCAT_LIMIT}
      THEN CONCAT('{{', GROUP_CONCAT(JSON_QUOTE(s.name), ':', s.value
        ORDER BY s.name SEPARATOR ','), '}}')
      ELSE JSON_OBJECTAGG(s.name, JSON_EXTRACT(s.value, '$')) END"
        ),
    };
    format!(
        "CREATE OR REPLACE VIEW {view} AS
SELECT h.id, h.version, h.contract_name, h.contract_version, h.root, h.updated_at,
  COALESCE((
    SELECT {document}
    FROM JSON_TABLE(JSON_KEYS(h.seals), '$[*]' COLUMNS (
      name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation} PATH '$')) AS j
    JOIN {section} AS s ON s.state_id = h.id AND s.name = j.name
      AND s.hash = JSON_VALUE(h.seals, {hash}) COLLATE {collation}
    WHERE JSON_VALUE(h.seals, {salt}) IS NOT NULL
  ), '{{}}') AS data
FROM {history} AS h",
        view = n.versions,
        section = n.section,
        history = n.history,
        hash = path("hash"),
        salt = path("salt"),
    )
}

/// `ALTER TABLE` dropping the first layout's `data` column from the history (after its
/// section versions were copied to the section table).
pub(crate) fn drop_history_data(n: &Names) -> String {
    format!("ALTER TABLE {} DROP COLUMN data", n.history)
}

/// `ALTER TABLE` dropping `columns` (of [`FIRST_LAYOUT_CURRENT_ONLY`]) from the current-state
/// table, in one statement.
pub(crate) fn drop_current_columns(n: &Names, columns: &[&str]) -> String {
    let drops: Vec<String> = columns.iter().map(|c| format!("DROP COLUMN {c}")).collect();
    format!("ALTER TABLE {} {}", n.state, drops.join(", "))
}

/// The `CREATE` statements `migrate` runs, in order, each idempotent (the history view comes
/// after the upgrade of a first layout, [`versions_view`]). `collation` is one of
/// [`COLLATIONS`].
pub(crate) fn ddl(n: &Names, collation: &str, flavor: Flavor) -> Vec<String> {
    let table = format!("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}");
    let user_json = flavor.user_json();
    vec![
        format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE {collation}",
            n.database
        ),
        state_table(n, flavor, &table),
        history_table(n, &table),
        section_table(n, flavor, &table),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                pos              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
                id               VARCHAR(80)  NOT NULL,
                state_id         VARCHAR(255) NOT NULL,
                kind             VARCHAR(32)  NOT NULL,
                contract_name    VARCHAR(255) NOT NULL,
                contract_version INT UNSIGNED NOT NULL,
                actor            VARCHAR(255) NOT NULL,
                origin_node      VARCHAR(255) NOT NULL,
                origin_seq       BIGINT       NOT NULL,
                outcome          VARCHAR(16)  NOT NULL,
                reason           VARCHAR(64)  NULL,
                reason_detail    JSON         NULL,
                new_version      BIGINT       NULL,
                new_root         VARCHAR(80)  NULL,
                event            {user_json}     NOT NULL,
                disclosures      {user_json}     NOT NULL,
                receipt          JSON         NULL,
                business_events  {user_json}     NULL,
                endorsements     JSON         NULL,
                recorded_at      TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                PRIMARY KEY (pos),
                UNIQUE KEY event_id (id),
                UNIQUE KEY event_origin (origin_node, origin_seq),
                KEY event_state (state_id, pos),
                KEY event_actor (actor, pos),
                CHECK (outcome IN ('applied', 'rejected'))
            ) {table}",
            n.event
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                id         VARCHAR(255) NOT NULL,
                node       VARCHAR(255) NOT NULL,
                public_key VARCHAR(64)  NOT NULL,
                status     VARCHAR(16)  NOT NULL,
                PRIMARY KEY (id)
            ) {table}",
            n.actor
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                name     VARCHAR(255) NOT NULL,
                version  INT UNSIGNED NOT NULL,
                identity VARCHAR(80)  NOT NULL,
                deployer VARCHAR(255) NOT NULL,
                record   JSON         NOT NULL,
                PRIMARY KEY (name, version)
            ) {table}",
            n.contract
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                event_id      VARCHAR(80)  NOT NULL,
                state_id      VARCHAR(255) NOT NULL,
                version       BIGINT       NOT NULL,
                from_node     VARCHAR(255) NOT NULL,
                reason        VARCHAR(64)  NOT NULL,
                reason_detail JSON         NOT NULL,
                at            BIGINT       NOT NULL,
                PRIMARY KEY (event_id),
                KEY refusal_state (state_id, version)
            ) {table}",
            n.refusal
        ),
        // `pos` is signed: positions start at 1, and a raw reorder may park a row below 0.
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                pos     BIGINT        NOT NULL,
                kind    VARCHAR(32)   NOT NULL,
                subject VARCHAR(1024) NOT NULL,
                record  VARCHAR(80)   NOT NULL,
                prev    VARCHAR(80)   NOT NULL,
                hash    VARCHAR(80)   NOT NULL,
                PRIMARY KEY (pos)
            ) {table}",
            n.log
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                node      VARCHAR(255) NOT NULL,
                pos       BIGINT       NOT NULL,
                head      VARCHAR(80)  NOT NULL,
                at        BIGINT       NOT NULL,
                signature VARCHAR(255) NOT NULL,
                PRIMARY KEY (node, pos)
            ) {table}",
            n.checkpoint
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                sink VARCHAR(128) NOT NULL,
                pos  BIGINT       NOT NULL,
                PRIMARY KEY (sink),
                CHECK (pos >= 0)
            ) {table}",
            n.sink_cursor
        ),
    ]
}

/// The `ALTER TABLE` adding `column`, one of the event columns later releases added, to an
/// event table of an older layout (`None` for a column this version does not know).
pub(crate) fn add_event_column(n: &Names, column: &str, flavor: Flavor) -> Option<String> {
    match column {
        "business_events" => Some(format!(
            "ALTER TABLE {} ADD COLUMN business_events {} NULL",
            n.event,
            flavor.user_json()
        )),
        "endorsements" => Some(format!(
            "ALTER TABLE {} ADD COLUMN endorsements JSON NULL",
            n.event
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_qualified() {
        let n = Names::new("node_a", &crate::TableNames::default());
        assert_eq!(n.state, "`node_a`.`sst_state`");
        assert_eq!(n.event, "`node_a`.`sst_event`");
        let ddl = ddl(&n, "utf8mb4_nopad_bin", Flavor::Mariadb).join(";\n");
        assert!(ddl.contains("CREATE DATABASE IF NOT EXISTS `node_a`"));
        assert!(ddl.contains("UNIQUE KEY event_origin (origin_node, origin_seq)"));
        assert!(ddl.contains("PRIMARY KEY (id, version)"));
        assert!(ddl.contains("COLLATE=utf8mb4_nopad_bin"));
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS `node_a`.`sst_refusal`"));
        assert!(ddl.contains("KEY refusal_state (state_id, version)"));
        assert!(ddl.contains("data             LONGTEXT"));
        assert!(ddl.contains("receipt          JSON         NULL"));
        assert!(ddl.contains("business_events  LONGTEXT     NULL"));
        assert!(ddl.contains("endorsements     JSON         NULL"));
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS `node_a`.`sst_log`"));
        assert!(ddl.contains("PRIMARY KEY (node, pos)"));
        let mysql = super::ddl(&n, "utf8mb4_0900_bin", Flavor::Mysql).join(";\n");
        assert!(mysql.contains("data             JSON"));
        assert!(!mysql.contains("LONGTEXT"));
    }

    #[test]
    fn state_tables_are_of_the_section_version_layout() {
        let n = Names::new("node_a", &crate::TableNames::default());
        let ddl = ddl(&n, "utf8mb4_nopad_bin", Flavor::Mariadb);
        let table = |name: &str| {
            ddl.iter()
                .find(|s| s.contains(&format!("EXISTS `node_a`.`{name}` (")))
                .cloned()
                .unwrap_or_default()
        };
        let (state, history, section) = (
            table("sst_state"),
            table("sst_state_history"),
            table("sst_section"),
        );
        assert!(state.contains("data             LONGTEXT") && !state.contains("seals"));
        assert!(history.contains("seals") && !history.contains("data"));
        assert!(section.contains("value    LONGTEXT     NOT NULL"));
        assert!(section.contains("PRIMARY KEY (state_id, name, hash)"));
        let view = versions_view(&n, "utf8mb4_nopad_bin", Flavor::Mariadb);
        assert!(view.starts_with("CREATE OR REPLACE VIEW `node_a`.`sst_state_versions` AS"));
        assert!(view.contains("JSON_OBJECTAGG(s.name, JSON_EXTRACT(s.value, '$'))"));
        assert!(view.contains("COLLATE utf8mb4_nopad_bin"));
        assert!(view.contains("'{}') AS data"));
        let mysql = versions_view(&n, "utf8mb4_0900_bin", Flavor::Mysql);
        assert!(
            mysql.contains("JSON_OBJECTAGG(s.name, s.value)") && !mysql.contains("GROUP_CONCAT")
        );
        assert_eq!(
            drop_current_columns(&n, &["seals", "root"]),
            "ALTER TABLE `node_a`.`sst_state` DROP COLUMN seals, DROP COLUMN root"
        );
        assert_eq!(
            drop_history_data(&n),
            "ALTER TABLE `node_a`.`sst_state_history` DROP COLUMN data"
        );
    }

    #[test]
    fn flavor_comes_from_the_version_string() {
        assert_eq!(
            Flavor::from_version("10.11.19-MariaDB-0+deb12u1"),
            Flavor::Mariadb
        );
        assert_eq!(Flavor::from_version("8.0.36"), Flavor::Mysql);
    }
}
