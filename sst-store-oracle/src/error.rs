//! Mapping of `oracle` crate errors to [`StoreError`]: ORA-00001 (unique constraint) is
//! recognised here and nowhere else; DPI-1047 (no Oracle client library) is told apart so
//! that tests can report "not run here".

use sst_core::StoreError;

use crate::NAME;

/// ORA-00001: unique constraint violated.
const UNIQUE_VIOLATION: i32 = 1;
/// DPI-1047: the Oracle Client library cannot be loaded.
const CLIENT_NOT_LOADED: i32 = 1047;
/// Oracle codes a retry may get past: deadlock, serialization failure, lost or refused
/// connections, resource busy.
const RETRYABLE: [i32; 9] = [60, 54, 8177, 3113, 3114, 3135, 12170, 12541, 12514];

/// Whether `e` is ORA-00001.
pub(crate) fn is_unique_violation(e: &oracle::Error) -> bool {
    e.oci_code() == Some(UNIQUE_VIOLATION)
}

/// Whether `e` is DPI-1047: no Oracle Client library on this machine.
pub fn is_client_missing(e: &oracle::Error) -> bool {
    e.dpi_code() == Some(CLIENT_NOT_LOADED)
}

/// Whether a [`StoreError`] from this crate wraps DPI-1047 (the only condition under which
/// the Oracle suite reports itself as not run).
pub fn store_error_is_client_missing(e: &StoreError) -> bool {
    match e {
        StoreError::Backend { source, .. } => source
            .downcast_ref::<oracle::Error>()
            .is_some_and(is_client_missing),
        _ => false,
    }
}

fn is_retryable(e: &oracle::Error) -> bool {
    e.oci_code().is_some_and(|c| RETRYABLE.contains(&c))
}

/// A driver error as [`StoreError::Backend`].
pub(crate) fn backend(operation: &'static str, e: oracle::Error) -> StoreError {
    StoreError::Backend {
        backend: NAME,
        operation,
        retryable: is_retryable(&e),
        source: Box::new(e),
    }
}

/// ORA-00001 becomes what `conflict` builds; anything else [`StoreError::Backend`]. The one
/// place where a unique violation turns into a conflict.
pub(crate) fn conflict_or_backend(
    operation: &'static str,
    e: oracle::Error,
    conflict: impl FnOnce() -> StoreError,
) -> StoreError {
    if is_unique_violation(&e) {
        conflict()
    } else {
        backend(operation, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oracle::{DbError, Error};

    #[allow(deprecated)] // the crate's enum variants are the only public constructors
    fn oci(code: i32) -> Error {
        Error::OciError(DbError::new(
            code,
            0,
            format!("ORA-{code:05}: test"),
            "fn",
            "action",
        ))
    }

    #[allow(deprecated)]
    fn dpi(message: &str) -> Error {
        Error::DpiError(DbError::new(
            0,
            0,
            message,
            "dpiContext_createWithParams",
            "",
        ))
    }

    #[test]
    fn ora_00001_is_the_only_conflict() {
        let c = || StoreError::conflict(sst_core::ConflictKind::StaleVersion, "x", 1, 2);
        assert_eq!(
            conflict_or_backend("commit", oci(1), c).conflict_kind(),
            Some(sst_core::ConflictKind::StaleVersion)
        );
        assert!(matches!(
            conflict_or_backend("commit", oci(2291), c),
            StoreError::Backend {
                retryable: false,
                ..
            }
        ));
    }

    #[test]
    fn deadlocks_are_retryable() {
        match backend("commit", oci(60)) {
            StoreError::Backend {
                backend,
                operation,
                retryable,
                ..
            } => {
                assert_eq!((backend, operation, retryable), ("oracle", "commit", true));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_dpi_1047_means_client_missing() {
        let missing = dpi("DPI-1047: Cannot locate a 64-bit Oracle Client library");
        assert!(is_client_missing(&missing));
        assert!(store_error_is_client_missing(&backend("open", missing)));
        assert!(!is_client_missing(&dpi("DPI-1010: not connected")));
        assert!(!is_client_missing(&oci(1047)), "ORA-01047 is not DPI-1047");
        assert!(!store_error_is_client_missing(&backend("open", oci(12541))));
    }
}
