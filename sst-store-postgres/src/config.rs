//! Connection and naming settings of a [`PostgresStore`](crate::PostgresStore).

use sst_core::StoreError;

/// Default schema the peer tables live in.
pub const DEFAULT_SCHEMA: &str = "public";

/// Names of the peer tables and the history view (shared by every adapter; see
/// [`sst_core::TableNames`]).
pub use sst_core::TableNames;

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
        check_identifier("schema", &self.schema)?;
        self.tables.validate(63)?;
        Ok(())
    }
}

fn check_identifier(field: &str, name: &str) -> Result<(), StoreError> {
    sst_core::tables::check_identifier(field, name, 63)
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
        assert_eq!(c.tables.section, "sst_section");
        assert_eq!(c.tables.versions, "sst_state_versions");
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
