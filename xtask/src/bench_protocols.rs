//! `cargo xtask bench protocols [--events N] [--states N]`: the home-node and the endorsed
//! sync protocols on the same three networked node processes in one run (`sst bench
//! --protocols`, release mode): events/s at the home node and end to end, latency p50/p99
//! under load and one at a time, for each protocol, and the ratio endorsed/home. Every result
//! line starts with `protocols `.

use std::process::Command;

/// What `cargo` runs.
const ARGS: &str = "run --release -p sst -- bench --protocols";

/// The `cargo` invocation of the benchmark with the arguments passed through (`sst bench`
/// checks them: one place for their rules).
fn command(extra: &[String]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(ARGS.split(' ')).args(extra);
    cmd
}

/// Entry point: `args` are the words after `bench protocols` (`--events N`, `--states N`).
pub(crate) fn cli(args: &[String]) -> anyhow::Result<()> {
    crate::bench::run_from_root(command(args), "the protocols benchmark")
}

#[cfg(test)]
mod tests {
    use super::ARGS;

    #[test]
    fn runs_sst_bench_protocols_in_release_mode_with_the_arguments() {
        let cmd = super::command(&["--events".into(), "500".into()]);
        let args: Vec<_> = cmd.get_args().filter_map(|a| a.to_str()).collect();
        assert_eq!(args.join(" "), format!("{ARGS} --events 500"));
    }
}
