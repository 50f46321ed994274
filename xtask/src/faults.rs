//! `cargo xtask faults`: the fault tests across node processes (`sst/tests/faults.rs`, issue
//! 10 deliverable 6). Makes sure PostgreSQL and MariaDB/MySQL answer (starting the machine's
//! own servers if needed) and that a MongoDB server is there (`SST_MONGO_URL`, else the
//! nx-27017 emulator on a free loopback port, stopped afterwards), builds the `sst` binary
//! with `postgres,mysql,mongo` once, runs the ignored fault tests one at a time with the
//! servers' URLs, and prints their `faults:` lines. Then the notification tests across node
//! processes (`sst/tests/notify.rs`, issue 12: kill -9 of a node with a Redis sink 100 times,
//! and a sink publishing what the CloudEvents stream shows) against Redis (`SST_REDIS_URL`).
//! Fails unless every test passed and each printed its counts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::integration::{project_root, show};
use crate::services::{self, Availability};

/// The fault tests (each prints at least one line starting with [`MARKER`]).
const TESTS: [&str; 3] = [
    "kill_9_of_a_replica_and_the_home_loses_and_duplicates_nothing",
    "a_partition_delays_and_cuts_a_replica_and_healing_converges",
    "strangers_replays_and_changes_from_a_non_home_are_refused",
];

/// How the tests' summary lines start.
const MARKER: &str = "faults: ";

const USAGE: &str =
    "usage: cargo xtask faults [--seed N]  (kill points from seed N; default: the clock)";

/// The server URL of `var`, or this machine's default.
fn url(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Entry point: `args` are the words after `faults`.
pub(crate) fn cli(args: &[String]) -> anyhow::Result<()> {
    let mut seed = None;
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--seed" => {
                let n: u64 = rest
                    .next()
                    .context("--seed needs a value")?
                    .parse()
                    .context("--seed: not a number")?;
                seed = Some(n);
            }
            "help" | "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let started = Instant::now();
    let postgres = url("SST_POSTGRES_URL", services::POSTGRES_URL);
    let mysql = url("SST_MYSQL_URL", services::MYSQL_URL);
    for (name, check, url) in [
        ("PostgreSQL", services::postgres as fn(&str) -> _, &postgres),
        ("MariaDB/MySQL", services::mysql, &mysql),
    ] {
        match check(url)? {
            Availability::Ready => {}
            Availability::NotProvided(why) | Availability::Unreachable(why) => {
                bail!("faults: {name} is needed at {url}: {why}")
            }
        }
    }
    let mut _mongo = None;
    let mongo = match std::env::var(crate::mongo_server::URL_ENV) {
        Ok(u) if !u.is_empty() => u,
        _ => {
            let (u, guard) = crate::mongo_server::start_test_server()?;
            _mongo = Some(guard);
            u
        }
    };
    let root = project_root()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let base = |cmd: &mut Command| {
        cmd.current_dir(&root).args([
            "test",
            "-p",
            "sst",
            "--features",
            "postgres,mysql,mongo",
            "--test",
            "faults",
        ]);
    };
    let mut build = Command::new(&cargo);
    base(&mut build);
    build.arg("--no-run");
    println!("+ {}", show(&build));
    let status = build.status().context("running cargo")?;
    if !status.success() {
        bail!("faults: building the fault tests failed ({status})");
    }
    let mut test = Command::new(&cargo);
    base(&mut test);
    test.env("SST_POSTGRES_URL", &postgres)
        .env("SST_MYSQL_URL", &mysql)
        .env(crate::mongo_server::URL_ENV, &mongo)
        .env("SST_REQUIRE_BACKEND", "1");
    if let Some(seed) = seed {
        test.env("SST_FAULTS_SEED", seed.to_string());
    }
    // One at a time (each starts its own node processes), output as it comes.
    test.args([
        "--",
        "--ignored",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .args(TESTS);
    println!("+ {}", show(&test));
    let mut child = test
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut lines = Vec::new();
    let mut summary = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading the test output")?;
            println!("{line}");
            if let Some(at) = line.find(MARKER) {
                lines.push(line[at..].to_owned());
            }
            if line.starts_with("test result: ") {
                summary = Some(line);
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!(
        "\n=== fault tests ({:.0} s) ===",
        started.elapsed().as_secs_f64()
    );
    for l in &lines {
        println!("{l}");
    }
    let summary = summary.unwrap_or_else(|| "no libtest summary".into());
    println!("{summary}");
    if !status.success() {
        bail!("faults: FAILED ({status}): {summary}");
    }
    if !summary.contains(&format!("{} passed", TESTS.len())) {
        bail!("faults: expected {} tests to pass: {summary}", TESTS.len());
    }
    for test in ["kills ", "partition: ", "intruders: "] {
        if !lines
            .iter()
            .any(|l| l.starts_with(&format!("{MARKER}{test}")) && !l.ends_with(" s"))
        {
            bail!("faults: no `{MARKER}{test}…` counts printed");
        }
    }
    notify_tests(&root, &cargo, seed)
}

/// `sst/tests/notify.rs` (ignored in the plain `cargo test`: it needs Redis): its two tests,
/// one at a time; the kill test must print its `notify-kill:` counts.
fn notify_tests(root: &std::path::Path, cargo: &str, seed: Option<u64>) -> anyhow::Result<()> {
    const NOTIFY_TESTS: usize = 2;
    const KILL_MARKER: &str = "notify-kill: ";
    let mut test = Command::new(cargo);
    test.current_dir(root)
        .args(["test", "-p", "sst", "--test", "notify", "--"])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env(
            "SST_REDIS_URL",
            url("SST_REDIS_URL", "redis://127.0.0.1:6379"),
        );
    if let Some(seed) = seed {
        test.env("SST_FAULTS_SEED", seed.to_string());
    }
    println!("+ {}", show(&test));
    let mut child = test
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().context("cargo test without stdout")?;
    let mut kill_line = None;
    let mut summary = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the test output")?;
        println!("{line}");
        if let Some(at) = line.find(KILL_MARKER) {
            kill_line = Some(line[at..].to_owned());
        }
        if line.starts_with("test result: ") {
            summary = Some(line);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    let summary = summary.unwrap_or_else(|| "no libtest summary".into());
    println!("\n=== notification tests ===");
    println!(
        "{}",
        kill_line.as_deref().unwrap_or("(no notify-kill line)")
    );
    println!("{summary}");
    if !status.success() || !summary.contains(&format!("ok. {NOTIFY_TESTS} passed")) {
        bail!("faults: the notification tests did not all pass: {summary}");
    }
    if kill_line.is_none() {
        bail!("faults: no `{KILL_MARKER}…` counts printed");
    }
    Ok(())
}
