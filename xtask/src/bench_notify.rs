//! `cargo xtask bench notify [--sinks all|kafka,redis,…] [--count N] [--rounds R]`: starts the
//! Kafka test broker when Kafka is selected, checks the machine's other brokers, and runs the
//! `bench_notify` example of sst-notify in release mode with the selected sinks' features. It
//! prints one line per sink: `<sink>: sink N/s, bare producer M/s, ratio R` (the sink's
//! `publish` of a batch against a bare producer loop of the same client library with the same
//! confirmation guarantee, same payloads, same run).

use std::process::Command;

use anyhow::{bail, Context};

use crate::integration::{project_root, show};
use crate::sinks::{self, has_feature, parse_sinks, PACKAGE, SINKS};

const USAGE: &str =
    "usage: cargo xtask bench notify [--sinks <name>|all] [--count N] [--rounds R] (default: all \
     sinks, 5000 notifications, 3 rounds)";

/// The `cargo run` of the benchmark example.
fn bench_command(features: &str, sinks: &str, count: usize, rounds: usize) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "run",
        "--release",
        "-p",
        PACKAGE,
        "--example",
        "bench_notify",
    ])
    .args(["--features", &format!("{features},server-tests"), "--"])
    .args(["--sinks", sinks])
    .args(["--count", &count.to_string()])
    .args(["--rounds", &rounds.to_string()]);
    cmd
}

/// Entry point: `args` are the words after `bench notify`.
pub(crate) fn cli(args: &[String]) -> anyhow::Result<()> {
    let mut sink_values = Vec::new();
    let mut count = 5000usize;
    let mut rounds = 3usize;
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        let mut value = |what: &str| rest.next().with_context(|| format!("{what} needs a value"));
        match a.as_str() {
            "--sinks" => sink_values.push(value("--sinks")?.clone()),
            "--count" => {
                let n = value("--count")?;
                count = n
                    .parse()
                    .with_context(|| format!("--count: `{n}` is not a count"))?;
            }
            "--rounds" => {
                let n = value("--rounds")?;
                rounds = n
                    .parse()
                    .with_context(|| format!("--rounds: `{n}` is not a count"))?;
            }
            "help" | "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if count == 0 || rounds == 0 {
        bail!("--count and --rounds must be at least 1\n{USAGE}");
    }
    if sink_values.is_empty() {
        sink_values.push("all".into());
    }
    let names = parse_sinks(&sink_values)?;
    let root = project_root()?;
    let manifest_path = root.join(PACKAGE).join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    // A sink without its feature still goes to the example, which reports it as FAILED.
    let features: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| has_feature(&manifest, n))
        .collect();
    let mut cmd = bench_command(&features.join(","), &names.join(","), count, rounds);
    cmd.current_dir(&root);
    let mut kafka = None;
    let mut unreachable = Vec::new();
    for name in &names {
        let spec = SINKS
            .iter()
            .find(|s| s.name == *name)
            .context("sink vanished")?;
        match sinks::prepare(&root, spec, &mut kafka)? {
            Ok(env) => {
                for (k, v) in env {
                    cmd.env(k, v);
                }
            }
            Err(row) => unreachable.push(format!("{name}: {row:?}")),
        }
    }
    if !unreachable.is_empty() {
        bail!(
            "brokers the machine should have do not answer:\n{}",
            unreachable.join("\n")
        );
    }
    println!("$ {}", show(&cmd));
    let status = cmd.status().context("running cargo")?;
    drop(kafka);
    if !status.success() {
        bail!("the notification benchmark failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_runs_the_example_in_release_with_the_sinks_features() {
        let line = show(&bench_command("kafka,redis", "kafka,redis,mqtt", 500, 2));
        assert!(
            line.ends_with(
                "run --release -p sst-notify --example bench_notify --features \
                 kafka,redis,server-tests -- \
                 --sinks kafka,redis,mqtt --count 500 --rounds 2"
            ),
            "{line}"
        );
    }
}
