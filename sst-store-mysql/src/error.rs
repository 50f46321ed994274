//! Mapping of mysql_async / MySQL / MariaDB errors to [`StoreError`]: the one place that
//! knows a duplicate key (error 1062) or a deadlock (1213) inside a write is a lost race,
//! re-run and, once the retries are spent, reported as [`StoreError::Conflict`].

use sst_core::StoreError;

use crate::NAME;

/// `ER_DUP_ENTRY`.
const DUP_ENTRY: u16 = 1062;

/// Server errors after which the same call may succeed when retried: lock wait timeout,
/// deadlock, too many connections, server shutdown, query interrupted.
fn retryable_code(code: u16) -> bool {
    matches!(code, 1205 | LOCK_DEADLOCK | 1040 | 1053 | 1317 | 1927)
}

/// Whether `e` is a duplicate-key (unique violation) error.
pub(crate) fn is_unique_violation(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == DUP_ENTRY)
}

/// `ER_LOCK_DEADLOCK`: InnoDB rolled the whole transaction back.
const LOCK_DEADLOCK: u16 = 1213;

/// Whether `e` is a deadlock, after which the server has rolled the transaction back.
pub(crate) fn is_deadlock(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == LOCK_DEADLOCK)
}

/// MariaDB's JSON function errors about a document's text or nesting (`ER_JSON_NOT_JSON_CHR`
/// 4036 to `ER_JSON_PATH_ARRAY` 4045: bad characters, syntax, escaping, the 32-level depth
/// limit), and `ER_BAD_NULL_ERROR` 1048 (a JSON function's `NULL` result in a `NOT NULL`
/// column): a `JSON_SET` / `JSON_REMOVE` patch that could not be applied in SQL, so the whole
/// document is written instead.
pub(crate) fn is_json_patch_failure(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if (4036..=4045).contains(&s.code) || s.code == 1048)
}

/// A driver error as [`StoreError::Backend`], retryable for I/O errors, deadlocks and lock
/// wait timeouts.
pub(crate) fn backend(operation: &'static str, e: mysql_async::Error) -> StoreError {
    let retryable = match &e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Server(s) => retryable_code(s.code),
        _ => false,
    };
    StoreError::Backend {
        backend: NAME,
        operation,
        retryable,
        source: Box::new(e),
    }
}

/// Why one attempt of a write transaction stopped.
pub(crate) enum TxError {
    /// A concurrent writer got in between the reads and the writes: a duplicate key (the log
    /// position above all) or a deadlock. `MysqlStore::write` re-runs the whole
    /// transaction; the error is what is reported once the retries are spent.
    Raced(StoreError),
    /// Anything else: reported as it is.
    Failed(StoreError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Failed(e)
    }
}

/// A driver error inside a write transaction: a duplicate key is a lost race reported as
/// `conflict()` once the retries are spent, a deadlock a lost race reported as the
/// (retryable) backend error, anything else a failure.
pub(crate) fn raced_or(
    op: &'static str,
    e: mysql_async::Error,
    conflict: impl FnOnce() -> StoreError,
) -> TxError {
    if is_unique_violation(&e) {
        TxError::Raced(conflict())
    } else if is_deadlock(&e) {
        TxError::Raced(backend(op, e))
    } else {
        TxError::Failed(backend(op, e))
    }
}

/// A `u64` that must fit a signed `BIGINT` (shared with the other adapters).
pub(crate) use sst_core::raw::columns::to_i64;

/// Longest id, in characters, the `VARCHAR` key columns hold.
pub(crate) const MAX_ID_CHARS: usize = 255;

/// A text key that fits its `VARCHAR(255)` column.
pub(crate) fn check_id(path: &str, v: &str) -> Result<(), StoreError> {
    let n = v.chars().count();
    if n > MAX_ID_CHARS {
        return Err(StoreError::InvalidInput {
            path: path.to_owned(),
            reason: format!("{n} characters, more than the {MAX_ID_CHARS} the column holds"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "m".into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn duplicate_key_is_a_conflict_and_deadlock_is_retryable() {
        assert!(is_unique_violation(&server(1062)));
        let c = raced_or("commit", server(1062), || {
            StoreError::stale_version(&"s".into(), 1, 2)
        });
        assert!(matches!(
            c,
            TxError::Raced(StoreError::Conflict {
                expected: 1,
                found: 2,
                ..
            })
        ));
        let TxError::Raced(d) = raced_or("commit", server(1213), || unreachable!()) else {
            panic!("a deadlock is a lost race");
        };
        assert!(d.is_retryable());
        assert!(matches!(
            raced_or("commit", server(1146), || unreachable!()),
            TxError::Failed(_)
        ));
        assert!(is_deadlock(&server(1213)) && !is_deadlock(&server(1062)));
        assert!(is_json_patch_failure(&server(4040)) && is_json_patch_failure(&server(1048)));
        assert!(!is_json_patch_failure(&server(1062)));
        assert!(!is_unique_violation(&server(1213)));
        assert!(d.to_string().starts_with("mysql commit failed (retryable)"));
        assert!(!backend("commit", server(1146)).is_retryable());
    }

    #[test]
    fn ids_longer_than_the_column_are_input_errors() {
        assert!(check_id("id", &"é".repeat(255)).is_ok());
        assert!(
            matches!(check_id("id", &"a".repeat(256)), Err(StoreError::InvalidInput { path, .. }) if path == "id")
        );
        assert!(to_i64("v", u64::MAX).is_err());
    }
}
