//! Mapping of `oracle` crate errors to [`StoreError`]: ORA-00001 (unique constraint) and
//! ORA-00060 (deadlock) inside a write are recognised here and nowhere else, as a lost race
//! that re-runs the transaction and, once the retries are spent, a conflict; DPI-1047 (no Oracle client library) is told apart so
//! that tests can report "not run here".

use sst_core::StoreError;

use crate::NAME;

/// ORA-00001: unique constraint violated.
const UNIQUE_VIOLATION: i32 = 1;
/// ORA-00060: deadlock detected while waiting for resource.
const DEADLOCK: i32 = 60;
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

/// Why one attempt of a write transaction stopped.
#[derive(Debug)]
pub(crate) enum TxError {
    /// A concurrent writer got in between the reads and the writes: ORA-00001 (the log
    /// position above all) or a deadlock. The store's one retry loop re-runs the whole
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

/// A driver error inside a write transaction: ORA-00001 is a lost race reported as
/// `conflict()` once the retries are spent, ORA-00060 a lost race reported as the
/// (retryable) backend error, anything else a failure. The one place where a unique
/// violation turns into a conflict.
pub(crate) fn raced_or(
    operation: &'static str,
    e: oracle::Error,
    conflict: impl FnOnce() -> StoreError,
) -> TxError {
    if is_unique_violation(&e) {
        TxError::Raced(conflict())
    } else if e.oci_code() == Some(DEADLOCK) {
        TxError::Raced(backend(operation, e))
    } else {
        TxError::Failed(backend(operation, e))
    }
}

/// [`raced_or`] for statements whose unique violations stand for the log: concurrent
/// writers kept taking the position this one planned.
pub(crate) fn tx_err(operation: &'static str) -> impl Fn(oracle::Error) -> TxError {
    move |e| {
        raced_or(operation, e, || StoreError::Backend {
            backend: NAME,
            operation,
            retryable: true,
            source: "concurrent writers kept taking the next log position".into(),
        })
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
    fn ora_00001_is_the_only_conflict_and_a_deadlock_a_lost_race() {
        let c = || StoreError::conflict(sst_core::ConflictKind::StaleVersion, "x", 1, 2);
        match raced_or("commit", oci(1), c) {
            TxError::Raced(e) => assert_eq!(
                e.conflict_kind(),
                Some(sst_core::ConflictKind::StaleVersion)
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            raced_or("commit", oci(2291), c),
            TxError::Failed(StoreError::Backend {
                retryable: false,
                ..
            })
        ));
        assert!(matches!(
            raced_or("commit", oci(60), c),
            TxError::Raced(StoreError::Backend {
                retryable: true,
                ..
            })
        ));
        assert!(matches!(
            tx_err("put_actor")(oci(1)),
            TxError::Raced(StoreError::Backend {
                retryable: true,
                ..
            })
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
