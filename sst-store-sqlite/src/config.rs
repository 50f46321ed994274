//! Location, naming, durability and pool settings of a [`SqliteStore`](crate::SqliteStore).

use std::path::PathBuf;
use std::time::Duration;

use sst_core::StoreError;

pub use sst_core::TableNames;

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A database file (created if missing), shared with the participant's other tables.
    File(PathBuf),
    /// A private in-memory database that lives as long as the store (`:memory:`). Reads go
    /// through the writer connection, so they always see every commit.
    Memory,
}

/// SQLite's `synchronous` setting for the writer connection (in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// Every commit is flushed to disk before it returns: a commit survives a power loss.
    Full,
    /// Commits survive a crash of the process but the last ones may be lost on power loss.
    Normal,
}

impl Synchronous {
    /// The pragma value.
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Settings of a [`SqliteStore`](crate::SqliteStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// File or `:memory:`.
    pub location: Location,
    /// Table names.
    pub tables: TableNames,
    /// Largest number of pooled read-only connections (file databases only).
    pub readers: usize,
    /// How long a connection waits for a lock held by another connection or process.
    pub busy_timeout: Duration,
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Open the file read-only: no journal-mode switch, no pragma that writes, every write
    /// refused by SQLite itself. For verifiers, which must never change what they check.
    pub read_only: bool,
}

impl SqliteConfig {
    /// Settings for the database file at `path` with default names, 4 readers, a 5 s busy
    /// timeout and `synchronous = FULL`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::at(Location::File(path.into()))
    }

    /// Settings for a private in-memory database.
    pub fn memory() -> Self {
        Self::at(Location::Memory)
    }

    /// `":memory:"` gives [`SqliteConfig::memory`], anything else a file path.
    pub fn parse(location: &str) -> Self {
        if location == ":memory:" {
            Self::memory()
        } else {
            Self::file(location)
        }
    }

    fn at(location: Location) -> Self {
        SqliteConfig {
            location,
            tables: TableNames::default(),
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Full,
            read_only: false,
        }
    }

    /// Opens the file read-only (see [`SqliteConfig::read_only`]); `migrate` and `commit`
    /// then fail with a backend error and the file stays byte-identical.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Uses `tables` as the table names.
    pub fn tables(mut self, tables: TableNames) -> Self {
        self.tables = tables;
        self
    }

    /// Sets the largest number of pooled reader connections (at least 1).
    pub fn readers(mut self, n: usize) -> Self {
        self.readers = n.max(1);
        self
    }

    /// Sets the busy timeout.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets the durability of commits.
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Checks that the table names are plain identifiers (ASCII letter or `_`, then letters,
    /// digits or `_`) and pairwise distinct, so they can be quoted safely into SQL.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] naming the offending setting.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.tables.validate(SQLITE_MAX_IDENTIFIER)?;
        for (field, name) in self.tables.fields() {
            if name.to_ascii_lowercase().starts_with("sqlite_") {
                return Err(StoreError::InvalidInput {
                    path: format!("config.{field}"),
                    reason: format!("`{name}` uses SQLite's reserved sqlite_ prefix"),
                });
            }
        }
        Ok(())
    }
}

/// SQLite has no identifier length limit of its own; this keeps names portable.
const SQLITE_MAX_IDENTIFIER: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_the_conventions() {
        let c = SqliteConfig::file("x.db");
        assert_eq!(c.tables.state, "sst_state");
        assert_eq!(c.tables.history, "sst_state_history");
        assert_eq!(c.tables.event, "sst_event");
        assert_eq!(c.tables.actor, "sst_actor");
        assert_eq!(c.tables.contract, "sst_contract");
        assert_eq!(c.tables.refusal, "sst_refusal");
        assert_eq!(c.tables.log, "sst_log");
        assert_eq!(c.tables.checkpoint, "sst_checkpoint");
        assert_eq!(c.synchronous, Synchronous::Full);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn memory_location_is_parsed() {
        assert_eq!(SqliteConfig::parse(":memory:").location, Location::Memory);
        assert_eq!(
            SqliteConfig::parse("a/b.db").location,
            Location::File("a/b.db".into())
        );
    }

    #[test]
    fn unsafe_or_clashing_names_are_refused_with_the_setting() {
        let bad = SqliteConfig::memory().tables(TableNames {
            event: "x; DROP TABLE t".into(),
            ..TableNames::default()
        });
        match bad.validate() {
            Err(StoreError::InvalidInput { path, .. }) => assert_eq!(path, "config.tables.event"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        let clash = SqliteConfig::memory().tables(TableNames {
            actor: "SST_STATE".into(),
            ..TableNames::default()
        });
        match clash.validate() {
            Err(StoreError::InvalidInput { path, .. }) => assert_eq!(path, "config.tables.actor"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
}
