//! `cargo xtask bench contracts [--events N] [--rounds N]`: pipeline events per second with
//! the JavaScript real-estate contract next to the native one, in the same run (the
//! `pipeline_bench` example of sst-contract-js, release mode): four nodes on SQLite files,
//! `set_price` calls sequenced by the seller's node and re-executed by the buyer's. It prints
//! `javascript N ev/s, native M ev/s, ratio R`.

use std::process::Command;

use anyhow::{bail, Context};

/// The `cargo` invocation of the benchmark with the arguments passed through.
fn command(extra: &[String]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "run",
        "--release",
        "-p",
        "sst-contract-js",
        "--example",
        "pipeline_bench",
        "--",
    ])
    .args(extra);
    cmd
}

/// Entry point: `args` are the words after `bench contracts`.
pub(crate) fn cli(args: &[String]) -> anyhow::Result<()> {
    let mut extra = Vec::new();
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--events" | "--rounds" => {
                let n = rest.next().with_context(|| format!("{a} needs a value"))?;
                n.parse::<usize>()
                    .with_context(|| format!("{a}: `{n}` is not a count"))?;
                extra.extend([a.clone(), n.clone()]);
            }
            other => bail!(
                "unknown argument `{other}`\nusage: cargo xtask bench contracts [--events N] [--rounds N]"
            ),
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let mut cmd = command(&extra);
    cmd.current_dir(root);
    println!(
        "$ {}",
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("the contracts benchmark failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_pipeline_example_in_release_mode_with_the_arguments() {
        let cmd = command(&["--events".into(), "500".into()]);
        let args: Vec<String> = cmd
            .get_args()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args.join(" "),
            "run --release -p sst-contract-js --example pipeline_bench -- --events 500"
        );
    }
}
