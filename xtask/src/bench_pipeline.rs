//! `cargo xtask bench pipeline [--events N] [--rounds N]`: the node's throughput against this
//! machine's own limits, in one run (`sst-bench pipeline`, release mode): (a) strict signature
//! verification on every core and on one, (b) a plain SQLite insert of the same state JSON at
//! the node's group size, (c) the home node alone (verification pool on every core and on
//! one) and (d) the home with two replicas in one process, for `synchronous=FULL` and
//! `NORMAL`. It prints one table: events/s, cores used and the ratios to (a) and (b), the
//! median of the rounds.

use std::process::Command;

use anyhow::{bail, Context};

/// The `cargo` invocation of the benchmark with the arguments passed through (`sst-bench`
/// checks them: one place for their rules).
fn command(extra: &[String]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--release", "-p", "sst-bench", "--", "pipeline"])
        .args(extra);
    cmd
}

/// Entry point: `args` are the words after `bench pipeline` (`--events N`, `--rounds N`).
pub(crate) fn cli(args: &[String]) -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let mut cmd = command(args);
    cmd.current_dir(root);
    println!("$ {}", crate::bench::echo(&cmd));
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("the pipeline benchmark failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_sst_bench_pipeline_in_release_mode_with_the_arguments() {
        let cmd = command(&[
            "--events".into(),
            "500".into(),
            "--rounds".into(),
            "5".into(),
        ]);
        let line = crate::bench::echo(&cmd);
        assert!(
            line.ends_with(" run --release -p sst-bench -- pipeline --events 500 --rounds 5"),
            "{line}"
        );
        assert!(command(&[])
            .get_args()
            .last()
            .is_some_and(|a| a == "pipeline"));
    }
}
