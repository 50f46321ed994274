//! The writer thread: one long-lived `std::thread` owns the write connection, and every write
//! (and every read of a `:memory:` store) is a job sent to it over a channel and answered
//! through a oneshot.
//!
//! Why a thread of its own rather than tokio's blocking pool: a SQLite file has one writer at a
//! time anyway, so handing each call to whichever pool thread is free bought nothing but a
//! thread hand-off (spawn, wake, park) per call and a mutex around the connection. The writer
//! thread keeps the connection, its prepared-statement cache and its page cache hot, runs jobs
//! strictly in the order they were sent (FIFO: one unbounded tokio mpsc queue, which the
//! thread drains with `blocking_recv`, parking without spinning), and needs nothing from the
//! async runtime: a job's answer goes through a [`tokio::sync::oneshot`], which wakes the
//! waiting task on any runtime flavour, `current_thread` included, so waiting for a job never
//! deadlocks.
//!
//! Measured cost (release, this 2-core VM under load): the hand-off itself is ~6 us to the
//! thread and ~20 us back (medians of 300 commits). But an fsync-bound single-item commit ran
//! ~3.7 ms on this thread against ~1-3 ms for the very same connection and transaction run
//! on tokio's blocking pool in the same process, so at batch size 1 the store is slower
//! (see the commit history); at batch size 100 it is faster. The cause is not understood yet.
//!
//! Lifecycle:
//! - [`Writer::spawn`] starts the thread, which builds its state (opens the connection) and
//!   reports success or failure before it accepts jobs;
//! - a job that panics is answered with a [`StoreError::Backend`] whose source is
//!   [`WriterError::Panicked`]; an open transaction is rolled back and the thread carries on;
//! - a job whose caller stopped waiting (its future was dropped) still runs: a write that was
//!   handed over commits all-or-nothing as if the caller had waited;
//! - dropping the [`Writer`] closes the channel; the thread runs every job already queued,
//!   then drops its state (closing the connection), and the drop waits for that, so that once
//!   the last handle to a store is gone the database file is closed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::{self, JoinHandle};

use sst_core::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::error::{writer_error, WriterError};

/// One unit of work for the thread, given its state.
type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Handle to the writer thread owning a state `S` (the write connection, in this crate).
pub(crate) struct Writer<S> {
    /// Sending side of the job queue; `None` only while dropping.
    jobs: Option<mpsc::UnboundedSender<Job<S>>>,
    /// The thread, joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl<S: 'static> Writer<S> {
    /// Starts a thread called `name` that builds its state with `init` and then runs jobs until
    /// the returned [`Writer`] is dropped. `init`'s second value is handed back to the caller.
    ///
    /// # Errors
    /// What `init` returns, or [`StoreError::Backend`] when no thread can be started.
    pub(crate) async fn spawn<R, F>(name: &str, init: F) -> Result<(Self, R), StoreError>
    where
        F: FnOnce() -> Result<(S, R), StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job<S>>();
        let (ready, started) = oneshot::channel();
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut state = match catch_unwind(AssertUnwindSafe(init)) {
                    Ok(Ok((state, r))) => {
                        if ready.send(Ok(r)).is_err() {
                            return; // the opener gave up waiting: nobody can send jobs
                        }
                        state
                    }
                    Ok(Err(e)) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                    Err(panic) => {
                        let _ = ready.send(Err(panicked("open", panic.as_ref())));
                        return;
                    }
                };
                // `blocking_recv` ends only once every sender is gone and the queue is empty.
                while let Some(job) = queue.blocking_recv() {
                    job(&mut state);
                }
            })
            .map_err(|e| StoreError::backend(crate::NAME, "open", e))?;
        let writer = Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        let r = started
            .await
            .map_err(|_| writer_error("open", WriterError::Stopped))??;
        Ok((writer, r))
    }

    /// Runs `f` on the writer thread after every job sent before it, and returns its result.
    /// When `f` panics, the thread calls `recover` on the state (to roll back what the job
    /// left open) and the caller gets a [`WriterError::Panicked`].
    ///
    /// # Errors
    /// What `f` returns; [`WriterError::Panicked`] or [`WriterError::Stopped`] (as
    /// [`StoreError::Backend`]) when it produced no result.
    pub(crate) async fn run<T, F>(
        &self,
        operation: &'static str,
        recover: fn(&mut S),
        f: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(&mut S) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, result) = oneshot::channel();
        let job: Job<S> = Box::new(move |state: &mut S| {
            let outcome = catch_unwind(AssertUnwindSafe(|| f(state))).unwrap_or_else(|panic| {
                recover(state);
                Err(panicked(operation, panic.as_ref()))
            });
            // The caller may have stopped waiting: the work is done either way.
            let _ = answer.send(outcome);
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| writer_error(operation, WriterError::Stopped))?
            .send(job)
            .map_err(|_| writer_error(operation, WriterError::Stopped))?;
        result
            .await
            .map_err(|_| writer_error(operation, WriterError::Stopped))?
    }
}

impl<S> Drop for Writer<S> {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish the queued jobs and then stop.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // A job never holds a handle to its own writer, but never wait for oneself.
            if thread.thread().id() != thread::current().id() {
                // The thread catches every job's panic, so joining cannot fail.
                let _ = thread.join();
            }
        }
    }
}

/// A panic payload as the error the job's caller receives.
fn panicked(operation: &'static str, panic: &(dyn std::any::Any + Send)) -> StoreError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    writer_error(operation, WriterError::Panicked { message })
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    fn no_recovery(_: &mut Vec<u32>) {}

    async fn writer() -> Writer<Vec<u32>> {
        let (w, ()) = Writer::spawn("test-writer", || Ok((Vec::new(), ())))
            .await
            .expect("spawn");
        w
    }

    fn source(e: &StoreError) -> Option<&WriterError> {
        match e {
            StoreError::Backend { source, .. } => source.downcast_ref::<WriterError>(),
            _ => None,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_run_in_the_order_sent_on_a_current_thread_runtime() {
        let w = writer().await;
        for i in 0..100u32 {
            let seen = w
                .run("push", no_recovery, move |v| {
                    v.push(i);
                    Ok(v.clone())
                })
                .await
                .expect("run");
            assert_eq!(seen, (0..=i).collect::<Vec<_>>());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_job_is_a_typed_error_and_the_thread_carries_on() {
        let w = writer().await;
        let recovered = Arc::new(Mutex::new(false));
        let err = w
            .run(
                "boom",
                |v| v.push(99),
                |_| -> Result<(), StoreError> { panic!("job exploded") },
            )
            .await
            .expect_err("a panic is an error");
        match (&err, source(&err)) {
            (
                StoreError::Backend {
                    backend: "sqlite",
                    operation: "boom",
                    retryable: false,
                    ..
                },
                Some(WriterError::Panicked { message }),
            ) => assert_eq!(message, "job exploded"),
            other => panic!("expected a Panicked backend error, got {other:?}"),
        }
        let flag = Arc::clone(&recovered);
        let state = w
            .run("after", no_recovery, move |v| {
                *flag.lock().expect("flag") = true;
                Ok(v.clone())
            })
            .await
            .expect("the thread still runs jobs");
        assert_eq!(state, vec![99], "recover ran on the state after the panic");
        assert!(*recovered.lock().expect("flag"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_or_panicking_init_is_reported_to_the_opener() {
        let failed = Writer::<()>::spawn("test-writer", || {
            Err::<((), ()), _>(StoreError::backend(crate::NAME, "open", "no such file"))
        })
        .await;
        assert!(matches!(
            failed,
            Err(StoreError::Backend {
                operation: "open",
                ..
            })
        ));
        let panicked = Writer::<()>::spawn("test-writer", || -> Result<((), ()), StoreError> {
            panic!("init exploded")
        })
        .await
        .err()
        .expect("a panicking init is an error");
        assert!(
            matches!(source(&panicked), Some(WriterError::Panicked { message }) if message == "init exploded"),
            "{panicked:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_writer_finishes_queued_jobs_then_drops_the_state() {
        struct Probe(Arc<Mutex<Vec<&'static str>>>);
        impl Drop for Probe {
            fn drop(&mut self) {
                self.0.lock().expect("log").push("state dropped");
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let state_log = Arc::clone(&log);
        let (w, ()) = Writer::spawn("test-writer", move || Ok((Probe(state_log), ())))
            .await
            .expect("spawn");
        // Queue slow jobs whose callers stop waiting at once (their futures are dropped
        // after the job is sent), then drop the writer.
        for _ in 0..3 {
            let job = w.run(
                "slow",
                |_| {},
                |p: &mut Probe| {
                    std::thread::sleep(Duration::from_millis(20));
                    p.0.lock().expect("log").push("job");
                    Ok(())
                },
            );
            let mut job = Box::pin(job);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(
                job.as_mut().poll(&mut cx).is_pending(),
                "sent, not yet answered"
            );
        }
        drop(w);
        assert_eq!(
            *log.lock().expect("log"),
            vec!["job", "job", "job", "state dropped"],
            "every queued job ran before the state was dropped, and drop waited for it"
        );
    }
}
