//! `cargo xtask bench state-size [--rounds N] [--scan-states N] [--backend sqlite|postgres|all]`:
//! what a one-field update of a 1 KB, 100 KB and 5 MB state costs through a node (CPU, bytes
//! written, database growth, peak memory) next to a plain `UPDATE` of the same JSON, and a
//! full scan of the current-state table next to a plain table, on SQLite and PostgreSQL in
//! one run (`sst-bench state-size`, release mode, with the `postgres` feature; issue 13).

use std::process::Command;

/// The `cargo` invocation of the benchmark with the arguments passed through (`sst-bench`
/// checks them: one place for their rules).
fn command(extra: &[String]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "run",
        "--release",
        "-p",
        "sst-bench",
        "--features",
        "postgres",
    ])
    .args(["--", "state-size"])
    .args(extra);
    cmd
}

/// Entry point: `args` are the words after `bench state-size`.
pub(crate) fn cli(args: &[String]) -> anyhow::Result<()> {
    crate::bench::run_from_root(command(args), "the state-size benchmark")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_sst_bench_state_size_in_release_mode_with_postgres_and_the_arguments() {
        let cmd = command(&[
            "--rounds".into(),
            "1".into(),
            "--scan-states".into(),
            "2000".into(),
        ]);
        let line = crate::bench::echo(&cmd);
        assert!(
            line.ends_with(
                " run --release -p sst-bench --features postgres -- state-size --rounds 1 \
                 --scan-states 2000"
            ),
            "{line}"
        );
    }
}
