//! Mapping of MongoDB driver errors to [`StoreError`]: duplicate keys (E11000) are
//! recognised here and nowhere else; everything else becomes [`StoreError::Backend`] naming
//! the backend, the operation and whether a retry may help.

use mongodb::error::{
    Error, ErrorKind, WriteFailure, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use sst_core::StoreError;

use crate::value::MappingError;
use crate::NAME;

/// Server codes of a unique-index violation (11001 is the pre-2.6 spelling).
const DUPLICATE_KEY_CODES: [i32; 2] = [11000, 11001];
/// Server codes that a retry of the same call may get past.
const RETRYABLE_CODES: [i32; 8] = [
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    189,   // PrimarySteppedDown
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
];

/// Whether `e` is a unique-index violation (E11000).
pub(crate) fn is_duplicate_key(e: &Error) -> bool {
    codes(e).iter().any(|c| DUPLICATE_KEY_CODES.contains(c))
}

/// Server codes of an index that cannot be created as specified on an existing collection:
/// IndexOptionsConflict, IndexKeySpecsConflict (another index in the way) and a duplicate
/// key met while building a unique index.
const INDEX_CONFLICT_CODES: [i32; 4] = [85, 86, 11000, 11001];

/// Whether `e` says an index cannot be created because of what the collection already holds.
pub(crate) fn is_index_conflict(e: &Error) -> bool {
    codes(e).iter().any(|c| INDEX_CONFLICT_CODES.contains(c))
}

/// Whether `e` means the whole transaction should simply be run again.
pub(crate) fn is_transient_transaction_error(e: &Error) -> bool {
    e.contains_label(TRANSIENT_TRANSACTION_ERROR)
}

fn codes(e: &Error) -> Vec<i32> {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => vec![w.code],
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => vec![w.code],
        ErrorKind::InsertMany(m) => m
            .write_errors
            .iter()
            .flatten()
            .map(|w| w.code)
            .chain(m.write_concern_error.iter().map(|w| w.code))
            .collect(),
        ErrorKind::Command(c) => vec![c.code],
        _ => Vec::new(),
    }
}

fn is_retryable(e: &Error) -> bool {
    e.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || e.contains_label(RETRYABLE_WRITE_ERROR)
        || e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
        || matches!(
            e.kind.as_ref(),
            ErrorKind::Io(_)
                | ErrorKind::ServerSelection { .. }
                | ErrorKind::ConnectionPoolCleared { .. }
        )
        || codes(e).iter().any(|c| RETRYABLE_CODES.contains(c))
}

/// A driver error as [`StoreError::Backend`].
pub(crate) fn backend(operation: &'static str, e: Error) -> StoreError {
    StoreError::Backend {
        backend: NAME,
        operation,
        retryable: is_retryable(&e),
        source: Box::new(e),
    }
}

/// A duplicate key becomes what `conflict` builds (a [`StoreError::Conflict`] with the
/// details only the caller knows); anything else becomes [`StoreError::Backend`]. The one
/// place where E11000 turns into a conflict.
pub(crate) fn conflict_or_backend(
    operation: &'static str,
    e: Error,
    conflict: impl FnOnce() -> StoreError,
) -> StoreError {
    if is_duplicate_key(&e) {
        conflict()
    } else {
        backend(operation, e)
    }
}

/// A value that cannot be written as BSON: bad input, nothing stored.
pub(crate) fn invalid_input(field: &str, e: MappingError) -> StoreError {
    StoreError::InvalidInput {
        path: format!("{field}{}", e.path.trim_start_matches('$')),
        reason: e.reason,
    }
}

/// A failure of the store's own bookkeeping (not the driver's), e.g. a guard that should not
/// be able to fail.
pub(crate) fn internal(operation: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::backend(NAME, operation, detail.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_retryable_and_not_conflicts() {
        let e: Error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into();
        assert!(!is_duplicate_key(&e));
        match backend("commit", e) {
            StoreError::Backend {
                backend,
                operation,
                retryable,
                ..
            } => {
                assert_eq!(backend, "mongo");
                assert_eq!(operation, "commit");
                assert!(retryable);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn non_duplicate_errors_do_not_become_conflicts() {
        let e: Error = std::io::Error::other("boom").into();
        let mapped = conflict_or_backend("commit", e, || {
            StoreError::conflict(sst_core::ConflictKind::StaleVersion, "x", 0, 1)
        });
        assert!(matches!(mapped, StoreError::Backend { .. }));
    }

    #[test]
    fn mapping_errors_name_the_field_and_path() {
        let e = invalid_input(
            "event",
            MappingError {
                path: "$.payload.n".into(),
                reason: "too big".into(),
            },
        );
        match e {
            StoreError::InvalidInput { path, reason } => {
                assert_eq!(path, "event.payload.n");
                assert_eq!(reason, "too big");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
