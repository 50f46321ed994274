//! A temporary database file for the SQLite tests, removed (with its WAL files) on drop.

use std::path::PathBuf;

/// A temporary database file path under the system temp dir, removed with its `-wal` and
/// `-shm` companions when dropped.
pub struct TempDb(pub PathBuf);

impl TempDb {
    /// A fresh path `sst-<label>-<uuid>.db`.
    pub fn new(label: &str) -> Self {
        TempDb(std::env::temp_dir().join(format!("sst-{label}-{}.db", uuid::Uuid::new_v4())))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}
