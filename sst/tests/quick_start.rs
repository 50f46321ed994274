//! The README's library quick start runs: the very code of `examples/two_participants.rs`
//! (two participants, their own contract, two SQLite files, wait, SQL, verify), compiled in.

#[allow(dead_code)]
#[path = "../examples/two_participants.rs"]
mod two_participants;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_participants_example_runs() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("sst-quick-start-{}", uuid_like()));
    let result = two_participants::run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A name no earlier run left behind.
fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{t}", std::process::id())
}
