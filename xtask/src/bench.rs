//! `cargo xtask bench store --backend <db> [--count N]`: builds and runs the `sst-bench`
//! binary in release mode with the backend's Cargo feature. `cargo xtask bench network
//! [--events N]`: runs `sst bench --network` in release mode (a home node and two replicas as
//! processes on loopback against the same workload in one process, and the ratio).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

const USAGE: &str =
    "usage: cargo xtask bench store --backend <sqlite|postgres|mysql|mongo> [--count N]
       cargo xtask bench network [--events N]
       cargo xtask bench contracts [--events N] [--rounds N]
       cargo xtask bench pipeline [--events N] [--rounds N]
       cargo xtask bench protocols [--events N] [--states N]
       cargo xtask bench state-size [--rounds N] [--scan-states N] [--backend sqlite|postgres|all]
       cargo xtask bench notify [--sinks <sink>|all] [--count N] [--rounds R]";

/// The workspace root (the parent of the xtask crate).
fn project_root() -> anyhow::Result<PathBuf> {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// The `cargo` invocation for `backend` with the extra arguments passed through to the bench.
fn bench_command(backend: &str, extra: &[String]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--release", "-p", "sst-bench", "--features", backend])
        .args(["--", "store", "--backend", backend])
        .args(extra);
    cmd
}

/// The command line of `cmd`, as echoed before it runs.
pub(crate) fn echo(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` from the workspace root, echoed before it runs; fails naming `what` when it
/// does not succeed.
pub(crate) fn run_from_root(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    cmd.current_dir(project_root()?);
    println!("$ {}", echo(&cmd));
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The `cargo` invocation of the networked benchmark, with `--events N` when given.
fn network_command(events: Option<&str>) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--release", "-p", "sst", "--", "bench", "--network"]);
    if let Some(n) = events {
        cmd.args(["--events", n]);
    }
    cmd
}

/// `bench network [--events N]`.
fn network(args: &[String]) -> anyhow::Result<()> {
    let mut events = None;
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--events" => {
                let n = rest.next().context("--events needs a value")?;
                n.parse::<usize>()
                    .with_context(|| format!("--events: `{n}` is not a count"))?;
                events = Some(n.as_str());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let mut cmd = network_command(events);
    cmd.current_dir(project_root()?);
    println!("$ {}", echo(&cmd));
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("sst bench --network failed ({status})");
    }
    Ok(())
}

/// Entry point: `args` are the words after `bench`.
pub(crate) fn cli(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("store") => {}
        Some("network") => return network(&args[1..]),
        Some("contracts") => return crate::bench_contracts::cli(&args[1..]),
        Some("pipeline") => return crate::bench_pipeline::cli(&args[1..]),
        Some("protocols") => return crate::bench_protocols::cli(&args[1..]),
        Some("state-size") => return crate::bench_state_size::cli(&args[1..]),
        Some("notify") => return crate::bench_notify::cli(&args[1..]),
        None | Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(other) => bail!("unknown bench `{other}`\n{USAGE}"),
    }
    let mut backend = None;
    let mut extra = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--backend" => backend = Some(rest.next().context("--backend needs a value")?.clone()),
            "--count" => {
                let n = rest.next().context("--count needs a value")?;
                extra.extend(["--count".to_owned(), n.clone()]);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let backend = backend.context(USAGE)?;
    if !backend.chars().all(|c| c.is_ascii_lowercase()) || backend.is_empty() {
        bail!("backend must be a plain name like `sqlite`, got `{backend}`");
    }
    let mut cmd = bench_command(&backend, &extra);
    cmd.current_dir(project_root()?);
    // MongoDB: without SST_MONGO_URL, the nx-27017 test server (stopped when this returns).
    let _mongo = match std::env::var(crate::mongo_server::URL_ENV) {
        Ok(u) if !u.is_empty() => None,
        _ if backend == "mongo" => {
            let server = crate::mongo_server::MongoServer::start(&project_root()?)?;
            cmd.env(crate::mongo_server::URL_ENV, &server.url);
            Some(server)
        }
        _ => None,
    };
    println!("$ {}", echo(&cmd));
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("sst-bench failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_enables_the_backend_feature_and_passes_arguments_through() {
        let cmd = bench_command("sqlite", &["--count".into(), "500".into()]);
        let line = echo(&cmd);
        assert!(
            line.ends_with(
                "run --release -p sst-bench --features sqlite -- store --backend sqlite --count 500"
            ),
            "{line}"
        );
    }

    #[test]
    fn network_command_runs_the_networked_bench_of_sst_in_release_mode() {
        let line = echo(&network_command(Some("500")));
        assert!(
            line.ends_with("run --release -p sst -- bench --network --events 500"),
            "{line}"
        );
        let line = echo(&network_command(None));
        assert!(line.ends_with("-- bench --network"), "{line}");
    }
}
