//! Connection and naming settings of a [`MysqlStore`](crate::MysqlStore).

use sst_core::StoreError;

/// Names of the eight peer tables (shared by every adapter; see [`sst_core::TableNames`]).
pub use sst_core::TableNames;

/// Settings of a [`MysqlStore`](crate::MysqlStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlConfig {
    /// Connection URL, e.g. `mysql://root@127.0.0.1:3306/app`.
    pub url: String,
    /// Database (schema) holding the peer tables; `migrate` creates it if missing. `None`
    /// uses the database named in the URL.
    pub database: Option<String>,
    /// Table names inside the database.
    pub tables: TableNames,
    /// Largest number of pooled connections.
    pub max_connections: usize,
}

impl MysqlConfig {
    /// Settings for `url` with the default table names and pool size (8).
    pub fn new(url: impl Into<String>) -> Self {
        MysqlConfig {
            url: url.into(),
            database: None,
            tables: TableNames::default(),
            max_connections: 8,
        }
    }

    /// Settings from the `SST_MYSQL_URL` environment variable, if set and non-empty.
    pub fn from_env() -> Option<Self> {
        std::env::var("SST_MYSQL_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .map(Self::new)
    }

    /// Keeps the peer tables in `database` (instead of the URL's database).
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    /// Uses `tables` as the table names.
    pub fn tables(mut self, tables: TableNames) -> Self {
        self.tables = tables;
        self
    }

    /// Sets the pool size (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Checks that the table and database names are plain identifiers (ASCII letter or `_`,
    /// then letters, digits or `_`, at most 64 bytes), so they can be quoted safely.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] naming the offending setting.
    pub fn validate(&self) -> Result<(), StoreError> {
        if let Some(db) = &self.database {
            check_identifier("database", db)?;
        }
        self.tables.validate(64)?;
        Ok(())
    }
}

pub(crate) fn check_identifier(field: &str, name: &str) -> Result<(), StoreError> {
    sst_core::tables::check_identifier(field, name, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_the_conventions() {
        let c = MysqlConfig::new("mysql://x");
        assert_eq!(c.database, None);
        assert_eq!(c.tables.state, "sst_state");
        assert_eq!(c.tables.history, "sst_state_history");
        assert_eq!(c.tables.event, "sst_event");
        assert_eq!(c.tables.actor, "sst_actor");
        assert_eq!(c.tables.contract, "sst_contract");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unsafe_identifiers_are_refused_with_the_setting_named() {
        for bad in ["", "1abc", "a-b", "a`b", "a b", &"x".repeat(65)] {
            let err = MysqlConfig::new("mysql://x")
                .database(bad)
                .validate()
                .expect_err(bad);
            assert!(
                matches!(&err, StoreError::InvalidInput { path, .. } if path == "config.database"),
                "{err:?}"
            );
        }
        let err = MysqlConfig::new("mysql://x")
            .tables(TableNames::with_prefix("my-"))
            .validate()
            .expect_err("prefix with dash");
        assert!(
            matches!(&err, StoreError::InvalidInput { path, .. } if path == "config.tables.state")
        );
    }
}
