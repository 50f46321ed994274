//! The checkpointer: a thread with a connection of its own that copies the write-ahead log back
//! into the database file, so that the writer thread, the store's throughput bound, does not.
//!
//! SQLite's automatic checkpoint runs on the connection that commits, right after the commit
//! that takes the log past 1000 pages: on the writer thread, where it cost about a quarter of
//! the writer's time per event (copying the pages and syncing the database file). Here the
//! writer connection's WAL hook (which replaces the automatic checkpoint) only asks this
//! thread for a passive checkpoint at the same threshold and goes on with the next commit.
//!
//! The log restarts from its beginning only at a commit whose transaction began with every
//! frame already copied, which a checkpoint running beside a busy writer rarely achieves; so
//! once the log passes [`INLINE_PAGES`] the hook also checkpoints on the writer thread, as
//! SQLite would, copying only what this thread has not copied yet, and the next commit
//! restarts the log. The hook does the same when this thread is gone. Like SQLite's automatic
//! checkpoint, a checkpoint that finds the log busy simply copies less this time.

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::{self, JoinHandle};

use rusqlite::hooks::{CheckpointMode, Wal};
use rusqlite::{Connection, OpenFlags};
use sst_core::StoreError;

use crate::config::SqliteConfig;
use crate::error::backend;

/// Log size (pages) at which a checkpoint is asked for: SQLite's default `wal_autocheckpoint`.
pub(crate) const AUTOCHECKPOINT_PAGES: i32 = 1000;

/// Log size (pages) from which the writer thread checkpoints itself after a commit, so that
/// the next commit restarts the log (bounding it near this size plus one commit: 32 MB with
/// 4 KB pages). That checkpoint copies what the thread has not copied yet, about one commit's
/// pages, so the writer's share of the copying is about one commit in this many pages
/// (measured on batches of 220 events: with a limit of 4000 the writer spent ~2 us/event more).
pub(crate) const INLINE_PAGES: i32 = 8 * AUTOCHECKPOINT_PAGES;

thread_local! {
    /// The checkpointer of the writer connection on this thread (set on the writer thread).
    static CURRENT: RefCell<Weak<Shared>> = const { RefCell::new(Weak::new()) };
}

/// What the writer thread and the checkpointer thread share.
#[derive(Default)]
struct Shared {
    signal: Mutex<Signal>,
    wake: Condvar,
    /// Set while the thread runs (cleared when it ends, panics included).
    running: AtomicBool,
    /// Held by whichever of the two threads checkpoints: the writer's checkpoint waits for the
    /// thread's to finish instead of finding the log busy and copying nothing.
    checkpointing: Mutex<()>,
}

#[derive(Default)]
struct Signal {
    requested: bool,
    stop: bool,
}

impl Shared {
    /// Asks for a checkpoint; `false` when the thread is gone and nobody will run it.
    fn request(&self) -> bool {
        if !self.running.load(Ordering::Acquire) {
            return false;
        }
        match self.signal.lock() {
            Ok(mut s) => s.requested = true,
            Err(_) => return false,
        }
        self.wake.notify_one();
        true
    }

    /// Runs `checkpoint` while no other checkpoint of this store runs.
    fn exclusive<T>(&self, checkpoint: impl FnOnce() -> T) -> T {
        let _held = self
            .checkpointing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        checkpoint()
    }

    /// Waits for a request; `false` once asked to stop.
    fn wait(&self) -> bool {
        let Ok(mut s) = self.signal.lock() else {
            return false;
        };
        loop {
            if s.stop {
                return false;
            }
            if s.requested {
                s.requested = false;
                return true;
            }
            s = match self.wake.wait(s) {
                Ok(s) => s,
                Err(_) => return false,
            };
        }
    }
}

/// Clears [`Shared::running`] however the thread ends.
struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// Handle to the checkpointer thread of one store; dropping it stops the thread (after the
/// checkpoint it may be running) and closes its connection.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection to the database file at `path` (already in WAL mode), starts the
    /// thread and hooks `writer`'s commits to it. Call on the writer thread, which owns
    /// `writer`: the hook finds the checkpointer through that thread.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the connection cannot be opened or set up, or no thread
    /// can be started.
    pub(crate) fn start(
        writer: &Connection,
        path: &Path,
        config: &SqliteConfig,
    ) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| backend("open", e))?;
        // A checkpoint syncs the database file as the writer's setting says.
        conn.pragma_update(None, "synchronous", config.synchronous.as_str())
            .map_err(|e| backend("open", e))?;
        let shared = Arc::new(Shared::default());
        shared.running.store(true, Ordering::Release);
        let running = Running(Arc::clone(&shared));
        let thread = thread::Builder::new()
            .name("sst-sqlite-ckpt".to_owned())
            .spawn(move || run(&conn, running))
            .map_err(|e| StoreError::backend(crate::NAME, "open", e))?;
        hook(writer, &shared);
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.signal.lock() {
            s.stop = true;
        }
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // Nothing is left to clean up after a panic there; it is logged, not lost.
            if thread.join().is_err() {
                tracing::warn!("the sqlite checkpointer thread panicked; the writer checkpointed the log itself since");
            }
        }
    }
}

/// Hooks `writer`'s commits (on this thread) to the checkpointer sharing `shared`.
fn hook(writer: &Connection, shared: &Arc<Shared>) {
    CURRENT.with(|c| *c.borrow_mut() = Arc::downgrade(shared));
    writer.wal_hook(Some(wal_written));
}

/// The thread: a passive checkpoint per request until stopped.
fn run(conn: &Connection, running: Running) {
    while running.0.wait() {
        let done = running
            .0
            .exclusive(|| conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())));
        if let Err(e) = done {
            tracing::warn!(error = %e, "sqlite checkpoint failed; the writer checkpoints the log itself once it grows");
        }
    }
}

/// The writer connection's WAL hook, called after each commit with the log's size in pages.
fn wal_written(wal: &Wal, pages: i32) -> rusqlite::Result<()> {
    if pages < AUTOCHECKPOINT_PAGES {
        return Ok(());
    }
    let shared = CURRENT.with(|c| c.borrow().upgrade());
    if pages < INLINE_PAGES && shared.as_ref().is_some_and(|s| s.request()) {
        return Ok(());
    }
    // As SQLite's automatic checkpoint: passive, and a busy log (another process's
    // checkpoint, a reader) is no error of the commit: the next commit tries again.
    let checkpoint = || wal.checkpoint_v2(CheckpointMode::PASSIVE);
    let done = match &shared {
        Some(s) => s.exclusive(checkpoint),
        None => checkpoint(),
    };
    if let Err(e) = done {
        tracing::debug!(error = %e, pages, "sqlite checkpoint on the writer thread copied less");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A connection to a fresh WAL-mode file in `dir` with one table, hooked to a checkpointer.
    fn hooked(dir: &Path) -> anyhow::Result<(Connection, Checkpointer)> {
        let path = dir.join("db");
        let conn = Connection::open(&path)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch("CREATE TABLE t (v BLOB NOT NULL)")?;
        let checkpointer = Checkpointer::start(&conn, &path, &SqliteConfig::file(&path))?;
        Ok((conn, checkpointer))
    }

    /// Commits about `pages` pages of new rows in one transaction.
    fn commit_pages(conn: &mut Connection, pages: usize) -> anyhow::Result<()> {
        let tx = conn.transaction()?;
        for _ in 0..pages {
            tx.execute("INSERT INTO t (v) VALUES (zeroblob(4000))", [])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn len(path: std::path::PathBuf) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    #[test]
    fn a_log_past_the_threshold_is_copied_back_by_the_thread_not_the_writer() -> anyhow::Result<()>
    {
        let dir = tempfile_dir("threshold")?;
        let (mut conn, checkpointer) = hooked(&dir)?;
        // Past the threshold, below the writer's own limit: the commit only asks the thread
        // (kept from checkpointing here), so it returns with the pages still in the log...
        let held = checkpointer.shared.checkpointing.lock();
        commit_pages(&mut conn, 1500)?;
        anyhow::ensure!(len(dir.join("db")) < 100 * 4096, "the writer checkpointed");
        drop(held);
        // ...and the thread copies them back into the database file.
        let deadline = Instant::now() + Duration::from_secs(20);
        while len(dir.join("db")) < 1400 * 4096 {
            anyhow::ensure!(Instant::now() < deadline, "no checkpoint within 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn the_log_stays_bounded_when_the_thread_cannot_keep_up() -> anyhow::Result<()> {
        let dir = tempfile_dir("bounded")?;
        let (mut conn, checkpointer) = hooked(&dir)?;
        drop(checkpointer);
        // A checkpointer that is running but never gets to the requests (as beside a writer
        // that begins its next transaction before a checkpoint ends).
        let stuck = Arc::new(Shared::default());
        stuck.running.store(true, Ordering::Release);
        hook(&conn, &stuck);
        let per_commit = 300;
        for _ in 0..50 {
            commit_pages(&mut conn, per_commit)?;
        }
        // 15000 pages written; past its limit the writer checkpoints and the log restarts.
        let frame = 4096 + 24;
        let bound = (INLINE_PAGES as u64 + 2 * per_commit as u64) * frame;
        let wal = len(dir.join("db-wal"));
        anyhow::ensure!(wal <= bound, "log of {wal} bytes, bound {bound}");
        drop(conn);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn without_the_thread_the_writer_checkpoints_at_the_threshold() -> anyhow::Result<()> {
        let dir = tempfile_dir("gone")?;
        let (mut conn, checkpointer) = hooked(&dir)?;
        drop(checkpointer);
        commit_pages(&mut conn, 1500)?;
        anyhow::ensure!(
            len(dir.join("db")) >= 1400 * 4096,
            "the commit past the threshold did not checkpoint"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// A fresh directory under the system's temporary directory.
    fn tempfile_dir(name: &str) -> anyhow::Result<std::path::PathBuf> {
        let dir = std::env::temp_dir().join(format!(
            "sst-sqlite-checkpoint-{name}-{}",
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}
