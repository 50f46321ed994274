//! Mapping of sqlx / PostgreSQL errors to [`StoreError`]: the one place where a unique
//! violation (SQLSTATE 23505) becomes a [`StoreError::Conflict`], and where a write
//! transaction that lost a race to a concurrent writer is run again ([`retry_races`]).

use std::future::Future;

use sst_core::raw::RACE_RETRIES;
use sst_core::StoreError;

use crate::NAME;

/// SQLSTATE of `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// SQLSTATE of `deadlock_detected`.
pub(crate) const DEADLOCK: &str = "40P01";

/// SQLSTATEs after which the same call may succeed when retried: serialization failure,
/// deadlock, too many connections, admin shutdown / crash recovery, and connection failures
/// (class 08).
fn retryable_code(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
    ) || code.starts_with("08")
}

/// The SQLSTATE of a database error.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether `e` is a unique-key violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    sqlstate(e).as_deref() == Some(UNIQUE_VIOLATION)
}

/// A driver error as [`StoreError::Backend`], retryable for lost connections, pool timeouts,
/// deadlocks and serialization failures.
pub(crate) fn backend(operation: &'static str, e: sqlx::Error) -> StoreError {
    let retryable = match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => sqlstate(&e).is_some_and(|c| retryable_code(&c)),
        _ => false,
    };
    StoreError::Backend {
        backend: NAME,
        operation,
        retryable,
        source: Box::new(e),
    }
}

/// A unique violation as the [`StoreError::Conflict`] `conflict` builds (the rule the violated
/// key enforces); any other error as [`backend`].
pub(crate) fn conflict_or_backend(
    operation: &'static str,
    e: sqlx::Error,
    conflict: impl FnOnce() -> StoreError,
) -> StoreError {
    if is_unique_violation(&e) {
        conflict()
    } else {
        backend(operation, e)
    }
}

/// How one attempt at a write transaction ended.
#[derive(Debug)]
pub(crate) enum Attempt<T> {
    /// Committed, or decided without writing.
    Done(T),
    /// Rolled back because a concurrent writer took a key this one had read free (a log
    /// position above all, which every writer appends to) or a deadlock broke the tie: the
    /// whole transaction, reads included, runs again.
    Raced,
}

/// Runs `attempt(0)`, then `attempt(1)`, … (each one whole write transaction) until one is
/// [`Attempt::Done`], at most `1 + RACE_RETRIES` times: the one retry loop of every write
/// (`commit`, `put_actor`, `put_contract`, `put_refusal`, `clear_refusal`).
///
/// # Errors
/// The attempt's own error at once; a retryable [`StoreError::Backend`] when every attempt
/// lost its race.
pub(crate) async fn retry_races<T, F, Fut>(
    operation: &'static str,
    mut attempt: F,
) -> Result<T, StoreError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Attempt<T>, StoreError>>,
{
    for n in 0..=RACE_RETRIES {
        if let Attempt::Done(t) = attempt(n).await? {
            return Ok(t);
        }
    }
    Err(StoreError::Backend {
        backend: NAME,
        operation,
        retryable: true,
        source: format!(
            "concurrent writers took the log position (or the rows) this write read free on \
             every attempt ({RACE_RETRIES} retries)"
        )
        .into(),
    })
}

/// A `u64` that must fit PostgreSQL's `bigint` (shared with the other adapters).
pub(crate) use sst_core::raw::columns::to_i64;

/// A text value that PostgreSQL `text` can hold (no U+0000).
pub(crate) fn check_text(path: &str, v: &str) -> Result<(), StoreError> {
    if v.contains('\0') {
        return Err(StoreError::InvalidInput {
            path: path.to_owned(),
            reason: "contains U+0000, which PostgreSQL text cannot store".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes() {
        assert!(retryable_code("40001"));
        assert!(retryable_code("40P01"));
        assert!(retryable_code("08006"));
        assert!(!retryable_code("23505"));
        assert!(!retryable_code("42P01"));
    }

    #[test]
    fn pool_timeouts_are_retryable_and_name_the_backend() {
        let e = backend("commit", sqlx::Error::PoolTimedOut);
        assert!(e.is_retryable());
        assert!(e
            .to_string()
            .starts_with("postgres commit failed (retryable)"));
    }

    #[tokio::test]
    async fn lost_races_are_retried_a_bounded_number_of_times() {
        let mut calls = 0;
        let done = retry_races("put_actor", |n| {
            calls += 1;
            async move {
                Ok(if n < 2 {
                    Attempt::Raced
                } else {
                    Attempt::Done(n)
                })
            }
        })
        .await;
        assert_eq!((done.ok(), calls), (Some(2), 3));

        let mut calls = 0;
        let lost = retry_races("commit", |_| {
            calls += 1;
            async { Ok::<Attempt<()>, _>(Attempt::Raced) }
        })
        .await
        .expect_err("always raced");
        assert_eq!(calls, RACE_RETRIES + 1);
        assert!(lost.is_retryable(), "{lost}");

        let failed = retry_races("commit", |_| async {
            Err::<Attempt<()>, _>(StoreError::malformed("x", "y"))
        })
        .await;
        assert!(matches!(failed, Err(StoreError::Integrity { .. })));
    }

    #[test]
    fn bigint_range_and_nul_are_input_errors() {
        assert_eq!(to_i64("x", 5).ok(), Some(5));
        assert!(
            matches!(to_i64("x", u64::MAX), Err(StoreError::InvalidInput { path, .. }) if path == "x")
        );
        assert!(check_text("id", "a\0b").is_err());
        assert!(check_text("id", "ab").is_ok());
    }
}
