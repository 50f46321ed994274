//! Connection and naming settings of a [`PostgresStore`](crate::PostgresStore).

use sst_core::StoreError;

/// Default schema the peer tables live in.
pub const DEFAULT_SCHEMA: &str = "public";

/// Names of the five peer tables (unquoted, unqualified identifiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    /// Latest version of every state.
    pub state: String,
    /// Every committed state version.
    pub history: String,
    /// Every recorded event (applied and rejected).
    pub event: String,
    /// Known actors.
    pub actor: String,
    /// Deployed contract versions.
    pub contract: String,
}

impl Default for TableNames {
    fn default() -> Self {
        Self::with_prefix("sst_")
    }
}

impl TableNames {
    /// `{prefix}state`, `{prefix}state_history`, `{prefix}event`, `{prefix}actor`,
    /// `{prefix}contract`.
    pub fn with_prefix(prefix: &str) -> Self {
        TableNames {
            state: format!("{prefix}state"),
            history: format!("{prefix}state_history"),
            event: format!("{prefix}event"),
            actor: format!("{prefix}actor"),
            contract: format!("{prefix}contract"),
        }
    }
}

/// Settings of a [`PostgresStore`](crate::PostgresStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Connection URL, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
    pub url: String,
    /// Schema holding the peer tables; `migrate` creates it if missing. Several nodes can
    /// share one server by using one schema each.
    pub schema: String,
    /// Table names inside the schema.
    pub tables: TableNames,
    /// Largest number of pooled connections.
    pub max_connections: u32,
}

impl PostgresConfig {
    /// Settings for `url` with the default schema (`public`), table names and pool size (8).
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            schema: DEFAULT_SCHEMA.to_owned(),
            tables: TableNames::default(),
            max_connections: 8,
        }
    }

    /// Settings from the `SST_POSTGRES_URL` environment variable, if set and non-empty.
    pub fn from_env() -> Option<Self> {
        std::env::var("SST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .map(Self::new)
    }

    /// Uses `schema` for the peer tables.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Uses `tables` as the table names.
    pub fn tables(mut self, tables: TableNames) -> Self {
        self.tables = tables;
        self
    }

    /// Sets the pool size (at least 1).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Checks that the schema and table names are plain identifiers (ASCII letter or `_`,
    /// then letters, digits or `_`, at most 63 bytes), so they can be quoted safely.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] naming the offending setting.
    pub fn validate(&self) -> Result<(), StoreError> {
        let t = &self.tables;
        for (field, name) in [
            ("schema", &self.schema),
            ("tables.state", &t.state),
            ("tables.history", &t.history),
            ("tables.event", &t.event),
            ("tables.actor", &t.actor),
            ("tables.contract", &t.contract),
        ] {
            check_identifier(field, name)?;
        }
        Ok(())
    }
}

fn check_identifier(field: &str, name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            path: format!("config.{field}"),
            reason: format!(
                "`{name}` is not a plain identifier (letter or _, then letters, digits, _; \
                 at most 63 bytes)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_the_conventions() {
        let c = PostgresConfig::new("postgres://x");
        assert_eq!(c.schema, "public");
        assert_eq!(c.tables.state, "sst_state");
        assert_eq!(c.tables.history, "sst_state_history");
        assert_eq!(c.tables.event, "sst_event");
        assert_eq!(c.tables.actor, "sst_actor");
        assert_eq!(c.tables.contract, "sst_contract");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unsafe_identifiers_are_refused_with_the_setting_named() {
        for bad in ["", "1abc", "a-b", "a\"b", "a b", &"x".repeat(64)] {
            let err = PostgresConfig::new("postgres://x")
                .schema(bad)
                .validate()
                .expect_err(bad);
            match err {
                StoreError::InvalidInput { path, .. } => assert_eq!(path, "config.schema"),
                other => panic!("unexpected {other:?}"),
            }
        }
        let err = PostgresConfig::new("postgres://x")
            .tables(TableNames::with_prefix("my-"))
            .validate()
            .expect_err("prefix with dash");
        assert!(
            matches!(err, StoreError::InvalidInput { path, .. } if path == "config.tables.state")
        );
    }
}
