//! Mapping of rusqlite / SQLite errors to [`StoreError`]: the one place where a unique or
//! primary-key violation (`SQLITE_CONSTRAINT_UNIQUE`, `SQLITE_CONSTRAINT_PRIMARYKEY`) becomes
//! a [`StoreError::Conflict`] — marked as a lost race ([`WriteError::Raced`]) so that the
//! write transaction is re-run — and where the writer thread's own failures
//! ([`WriterError`]) become [`StoreError::Backend`].

use rusqlite::ffi;
use sst_core::StoreError;

use crate::NAME;

/// Whether `e` is a unique-key or primary-key violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error(),
        Some(ffi::Error { extended_code, .. })
            if *extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || *extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// A driver error as [`StoreError::Backend`]; retryable when another connection or process
/// held a lock for longer than the busy timeout.
pub(crate) fn backend(operation: &'static str, e: rusqlite::Error) -> StoreError {
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    StoreError::Backend {
        backend: NAME,
        operation,
        retryable,
        source: Box::new(e),
    }
}

/// Why a job sent to the store's writer thread produced no result of its own. Reported as the
/// `source` of a [`StoreError::Backend`] (not retryable), so callers can tell it apart with
/// `source.downcast_ref::<WriterError>()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriterError {
    /// The job panicked. Its transaction, if one was open, was rolled back, so nothing of it
    /// was stored; the writer thread carries on with the next job.
    #[error("the job panicked on the writer thread (rolled back): {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The writer thread is gone (it could not start, or the store is being dropped).
    #[error("the writer thread has stopped")]
    Stopped,
}

/// `e` as the [`StoreError::Backend`] of `operation`.
pub(crate) fn writer_error(operation: &'static str, e: WriterError) -> StoreError {
    StoreError::Backend {
        backend: NAME,
        operation,
        retryable: false,
        source: Box::new(e),
    }
}

/// Why one attempt at a write transaction failed.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// A unique key was taken by a concurrent writer after this one read it free: re-running
    /// the whole transaction (re-reading what it read) decides again. Carries the error to
    /// report once the retries are used up.
    Raced(StoreError),
    /// Anything else: reported as is.
    Failed(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Failed(e)
    }
}

impl WriteError {
    /// The error to report.
    pub(crate) fn into_inner(self) -> StoreError {
        match self {
            WriteError::Raced(e) | WriteError::Failed(e) => e,
        }
    }
}

/// The error a write reports when it lost the race for the next log position on every
/// attempt (another process kept appending to the same file): retryable.
pub(crate) fn log_race(operation: &'static str, pos: u64) -> StoreError {
    StoreError::Backend {
        backend: NAME,
        operation,
        retryable: true,
        source: format!(
            "log position {pos} was taken by a concurrent writer on every attempt \
             ({} retries)",
            sst_core::raw::RACE_RETRIES
        )
        .into(),
    }
}

/// A unique violation as a lost race reporting the [`StoreError::Conflict`] `conflict` builds
/// (the rule the violated key enforces); any other error as [`backend`].
pub(crate) fn conflict_or_backend(
    operation: &'static str,
    e: rusqlite::Error,
    conflict: impl FnOnce() -> StoreError,
) -> WriteError {
    if is_unique_violation(&e) {
        WriteError::Raced(conflict())
    } else {
        WriteError::Failed(backend(operation, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(sql: &str) -> rusqlite::Error {
        let c = rusqlite::Connection::open_in_memory().expect("memory db");
        c.execute_batch(
            "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT UNIQUE, c TEXT NOT NULL);
             INSERT INTO t VALUES (1, 'x', 'c');",
        )
        .expect("setup");
        c.execute(sql, []).expect_err("statement should fail")
    }

    #[test]
    fn unique_and_primary_key_violations_are_conflicts() {
        for sql in [
            "INSERT INTO t VALUES (1, 'y', 'c')",
            "INSERT INTO t VALUES (2, 'x', 'c')",
        ] {
            let e = conflict_or_backend("commit", violation(sql), || {
                StoreError::stale_version(&"t".into(), 1, 2)
            });
            assert!(
                matches!(
                    e,
                    WriteError::Raced(StoreError::Conflict {
                        expected: 1,
                        found: 2,
                        ..
                    })
                ),
                "{sql}: {e:?}"
            );
        }
    }

    #[test]
    fn other_constraint_failures_are_backend_errors() {
        let e = conflict_or_backend(
            "commit",
            violation("INSERT INTO t VALUES (3, 'z', NULL)"),
            || StoreError::stale_version(&"t".into(), 0, 0),
        );
        assert!(
            matches!(
                e,
                WriteError::Failed(StoreError::Backend {
                    backend: "sqlite",
                    operation: "commit",
                    retryable: false,
                    ..
                })
            ),
            "{e:?}"
        );
    }
}
