//! `cargo xtask integration [--db sqlite|postgres|mysql|all]`: for each backend, make sure its
//! server answers (starting the machine's own server if needed), run the adapter's
//! conformance suite and its other server-backed test targets (built with the adapter's
//! `server-tests` feature, which the plain `cargo test --workspace` leaves off) against it with
//! `SST_REQUIRE_BACKEND=1`, and print one table of
//! passed / failed / skipped / time. A backend whose server could not be reached is NOT RUN,
//! never passed, and fails the command unless the machine does not provide it at all.
//! Each test case makes (and drops) its own uniquely named schema / database. When both
//! PostgreSQL and MariaDB/MySQL answer, `sst verify` then checks a node database on each by URL
//! ([`crate::node_verify`]); its failure fails the command too.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::services::{self, Availability};

/// What `conformance_tests::not_run` prints for a case a backend cannot run.
const NOT_RUN_MARKER: &str = "SST-NOT-RUN";

const USAGE: &str =
    "usage: cargo xtask integration [--db <name>|all] [--sinks <name>|all] (databases: sqlite, \
                     postgres, mysql, mongo, oracle; sinks: kafka, rabbitmq, nats, mqtt, postgres, \
                     redis; several with commas or repeated options; default --db all)";

/// One backend the integration run knows.
pub(crate) struct BackendSpec {
    /// Name used with `--db` and in the table.
    pub(crate) name: &'static str,
    /// The adapter crate whose `tests/conformance.rs` runs the suite.
    pub(crate) package: &'static str,
    /// For server backends: the URL variable the tests read and its default on this machine.
    pub(crate) url: Option<(&'static str, &'static str)>,
    /// For server backends: checks (and starts) the server at the URL. Return
    /// [`Availability::NotProvided`] for a server this machine does not have at all (e.g.
    /// Oracle without its client library): that backend is reported NOT RUN without failing
    /// the command.
    pub(crate) ensure: Option<fn(&str) -> anyhow::Result<Availability>>,
    /// For server backends whose URL variable is unset and whose default is empty: starts a
    /// test server, returning its URL and a guard that stops it when dropped.
    pub(crate) start: Option<StartServer>,
    /// The adapter's test targets that run the suite (`tests/<name>.rs`).
    pub(crate) tests: Targets,
    /// A backend whose every case reports NOT RUN with this text in the reason is one the
    /// machine does not provide (Oracle: `DPI-1047`, no client library): not a failure.
    pub(crate) not_provided_when: Option<&'static str>,
}

/// Which test targets of an adapter the run builds and runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Targets {
    /// These targets, built without extra features.
    Listed(&'static [&'static str]),
    /// Every target the adapter's Cargo.toml declares with
    /// `required-features = ["server-tests"]`, built with `--features server-tests`. Those
    /// server-backed targets are left out of the plain `cargo test --workspace` (there they
    /// could only skip and be counted as passed); read from the manifest so that a new one
    /// runs here without being listed twice.
    ServerTests,
}

/// The `[[test]]` targets of `manifest` (a Cargo.toml's text) that require the
/// `server-tests` feature.
pub(crate) fn server_test_targets(manifest: &str) -> Vec<String> {
    manifest
        .split("[[")
        .filter(|section| section.starts_with("test]]"))
        .filter(|section| section.contains(r#"required-features = ["server-tests"]"#))
        .filter_map(|section| {
            section.lines().find_map(|l| {
                let value = l.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
                Some(value.trim().trim_matches('"').to_owned())
            })
        })
        .collect()
}

/// Starts a test server: its URL and a guard that stops it when dropped.
pub(crate) type StartServer = fn() -> anyhow::Result<(String, Box<dyn std::any::Any>)>;

/// Every backend, in `--db all` order. Adapters with a server add their entry here.
pub(crate) const BACKENDS: &[BackendSpec] = &[
    BackendSpec {
        name: "sqlite",
        package: "sst-store-sqlite",
        url: None,
        ensure: None,
        start: None,
        tests: Targets::Listed(&["conformance"]),
        not_provided_when: None,
    },
    BackendSpec {
        name: "postgres",
        package: "sst-store-postgres",
        url: Some(("SST_POSTGRES_URL", services::POSTGRES_URL)),
        ensure: Some(services::postgres),
        start: None,
        tests: Targets::ServerTests,
        not_provided_when: None,
    },
    BackendSpec {
        name: "mysql",
        package: "sst-store-mysql",
        url: Some(("SST_MYSQL_URL", services::MYSQL_URL)),
        ensure: Some(services::mysql),
        start: None,
        tests: Targets::ServerTests,
        not_provided_when: None,
    },
    BackendSpec {
        name: "mongo",
        package: "sst-store-mongo",
        // Unset: the nx-27017 wire server (PyPI) on a free loopback port.
        url: Some(("SST_MONGO_URL", "")),
        ensure: None,
        start: Some(crate::mongo_server::start_test_server),
        // conformance: transactions where the server offers them; conformance_txn: forced
        // transactions; protocol: both commit paths with simulated crashes.
        tests: Targets::ServerTests,
        not_provided_when: None,
    },
    BackendSpec {
        name: "oracle",
        package: "sst-store-oracle",
        url: Some(("SST_ORACLE_URL", "")),
        ensure: None,
        start: None,
        tests: Targets::ServerTests,
        not_provided_when: Some("DPI-1047"),
    },
];

/// The workspace root (the parent of the xtask crate).
pub(crate) fn project_root() -> anyhow::Result<PathBuf> {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// A command as a shell-like line, for echoing (environment assignments first).
pub(crate) fn show(cmd: &Command) -> String {
    cmd.get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())))
        .chain(std::iter::once(
            cmd.get_program().to_string_lossy().into_owned(),
        ))
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The backend names selected by `--db` arguments (default: all), in table order.
pub(crate) fn parse_db(args: &[String]) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        let value = match a.as_str() {
            "--db" => rest.next().context("--db needs a value")?.as_str(),
            other => match other.strip_prefix("--db=") {
                Some(v) => v,
                None => bail!("unknown argument `{other}`\n{USAGE}"),
            },
        };
        for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if v == "all" {
                names.extend(BACKENDS.iter().map(|b| b.name.to_owned()));
            } else if BACKENDS.iter().any(|b| b.name == v) {
                names.push(v.to_owned());
            } else {
                bail!("unknown backend `{v}`\n{USAGE}");
            }
        }
    }
    if names.is_empty() {
        names.extend(BACKENDS.iter().map(|b| b.name.to_owned()));
    }
    // Table order, each once.
    Ok(BACKENDS
        .iter()
        .filter(|b| names.iter().any(|n| n == b.name))
        .map(|b| b.name.to_owned())
        .collect())
}

/// What libtest reported for one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Counts {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) ignored: u64,
    /// Sum of libtest's `finished in` seconds.
    pub(crate) seconds: f64,
    /// Names of failed tests.
    pub(crate) failures: Vec<String>,
    /// Cases that reported they could not run on this backend (`SST-NOT-RUN` lines of
    /// `conformance_tests::not_run`): libtest counted them as passed, this report does not.
    pub(crate) not_run: Vec<String>,
    /// The reason given by each NOT RUN line.
    pub(crate) not_run_reasons: Vec<String>,
    /// Inside libtest's closing `failures:` list.
    in_failure_list: bool,
    /// Whether at least one `test result:` line was seen.
    pub(crate) summarised: bool,
}

impl Counts {
    /// Folds one line of libtest output (run with `--nocapture`) in.
    pub(crate) fn line(&mut self, line: &str) {
        let line = line.trim_end();
        // With --nocapture a case's output may share a line with libtest's `test x ... `.
        if let Some(at) = line.find(NOT_RUN_MARKER) {
            let case = line[at..]
                .split_whitespace()
                .find_map(|w| w.strip_prefix("case="))
                .unwrap_or("?");
            if !self.not_run.iter().any(|c| c == case) {
                self.not_run.push(case.to_owned());
            }
            if let Some((_, reason)) = line[at..].split_once("reason=") {
                self.not_run_reasons.push(reason.to_owned());
            }
            return;
        }
        let mut failed = |name: &str| {
            if !self.failures.iter().any(|f| f == name) {
                self.failures.push(name.to_owned());
            }
        };
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            failed(name);
            return;
        }
        if line == "failures:" {
            self.in_failure_list = true;
            return;
        }
        if self.in_failure_list {
            match line.strip_prefix("    ") {
                Some(name) if !name.is_empty() && !name.contains(' ') => failed(name),
                _ if line.is_empty() || line.starts_with("----") => {}
                _ => self.in_failure_list = false,
            }
        }
        let Some(summary) = line.strip_prefix("test result: ") else {
            return;
        };
        self.in_failure_list = false;
        self.summarised = true;
        for part in summary.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
            match words.as_slice() {
                [_, _, "passed"] => self.passed += number(1).unwrap_or(0),
                [_, "passed"] => self.passed += number(0).unwrap_or(0),
                [_, "failed"] => self.failed += number(0).unwrap_or(0),
                [_, "ignored"] => self.ignored += number(0).unwrap_or(0),
                ["finished", "in", t] => {
                    self.seconds += t.trim_end_matches('s').parse::<f64>().unwrap_or(0.0)
                }
                _ => {}
            }
        }
    }
}

/// The outcome of one backend in the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Row {
    /// The suite ran.
    Ran(Counts),
    /// The server could not be reached: a failure.
    NotRun(String),
    /// The machine does not provide this backend: reported, not a failure.
    NotProvided(String),
    /// Building or running the tests failed before libtest summarised.
    Broken(String),
}

impl Row {
    /// Whether this row makes the command fail.
    pub(crate) fn fails(&self) -> bool {
        match self {
            Row::Ran(c) => c.failed > 0 || c.passed == 0 || !c.summarised,
            Row::NotRun(_) | Row::Broken(_) => true,
            Row::NotProvided(_) => false,
        }
    }
}

/// Runs the conformance suite of `spec` with `env`; streams libtest's output and counts it.
fn run_suite(spec: &BackendSpec, env: &[(&str, String)]) -> anyhow::Result<Row> {
    let root = project_root()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (targets, features): (Vec<String>, &[&str]) = match spec.tests {
        Targets::Listed(names) => (names.iter().map(|t| t.to_string()).collect(), &[]),
        Targets::ServerTests => {
            let manifest = root.join(spec.package).join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            (server_test_targets(&text), &["--features", "server-tests"])
        }
    };
    if targets.is_empty() {
        return Ok(Row::Broken(format!(
            "{}: no test target to run",
            spec.package
        )));
    }
    let base = |cmd: &mut Command| {
        cmd.current_dir(&root)
            .args(["test", "-p", spec.package])
            .args(features)
            .env("SST_REQUIRE_BACKEND", "1");
        for t in &targets {
            cmd.args(["--test", t]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
    };
    let mut build = Command::new(&cargo);
    base(&mut build);
    build.arg("--no-run");
    println!("+ {}", show(&build));
    let status = build.status().context("running cargo")?;
    if !status.success() {
        return Ok(Row::Broken(format!("build failed ({status})")));
    }
    let mut test = Command::new(&cargo);
    base(&mut test);
    run_counted(test)
}

/// Runs a `cargo test` command with `-- --nocapture` (so the NOT RUN markers of skipped cases
/// reach the parser), streams libtest's output and counts it.
pub(crate) fn run_counted(mut test: Command) -> anyhow::Result<Row> {
    test.args(["--", "--nocapture"]);
    println!("+ {}", show(&test));
    let started = Instant::now();
    let mut child = test
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut counts = Counts::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading test output")?;
            println!("{line}");
            counts.line(&line);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if counts.seconds == 0.0 {
        counts.seconds = started.elapsed().as_secs_f64();
    }
    if !counts.summarised {
        return Ok(Row::Broken(format!("no libtest summary ({status})")));
    }
    // libtest counted NOT RUN cases as passed.
    counts.passed = counts.passed.saturating_sub(counts.not_run.len() as u64);
    if !status.success() && counts.failed == 0 {
        counts.failed = 1;
        counts
            .failures
            .push(format!("cargo test exited with {status}"));
    }
    Ok(Row::Ran(counts))
}

/// Prepares and runs one backend.
fn backend(spec: &BackendSpec) -> anyhow::Result<Row> {
    println!("\n=== {} ===", spec.name);
    let mut env = Vec::new();
    let mut _server = None;
    if let Some((var, default)) = spec.url {
        let mut url = server_url(var, default);
        if let (true, Some(start)) = (url.is_empty(), spec.start) {
            let (started, guard) = start()?;
            url = started;
            _server = Some(guard);
        }
        if let Some(ensure) = spec.ensure {
            match ensure(&url)? {
                Availability::Ready => {}
                Availability::NotProvided(why) => return Ok(Row::NotProvided(why)),
                Availability::Unreachable(why) => return Ok(Row::NotRun(why)),
            }
        }
        if !url.is_empty() {
            env.push((var, url));
        }
    }
    let row = run_suite(spec, &env)?;
    if let (Row::Ran(c), Some(marker)) = (&row, spec.not_provided_when) {
        if let Some(why) = not_provided(c, marker) {
            return Ok(Row::NotProvided(why));
        }
    }
    Ok(row)
}

/// The URL of a server backend: its variable when set, else this machine's default.
fn server_url(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The `sst verify` step when PostgreSQL and MariaDB/MySQL were both selected (`None`
/// otherwise): its outcome, an error when either server could not be reached.
fn verify_step(rows: &[(String, Row)]) -> Option<anyhow::Result<()>> {
    let ran = |name: &str| {
        rows.iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| !matches!(r, Row::NotRun(_) | Row::NotProvided(_)))
    };
    match (ran("postgres"), ran("mysql")) {
        (Some(true), Some(true)) => Some(crate::node_verify::run(
            &server_url("SST_POSTGRES_URL", services::POSTGRES_URL),
            &server_url("SST_MYSQL_URL", services::MYSQL_URL),
        )),
        (Some(_), Some(_)) => Some(Err(anyhow::anyhow!(
            "not run: the PostgreSQL or MariaDB server could not be reached"
        ))),
        _ => None,
    }
}

/// Why a run is one the machine does not provide: every case NOT RUN, each for a reason
/// containing `marker`, and nothing failed.
pub(crate) fn not_provided(c: &Counts, marker: &str) -> Option<String> {
    // `passed` already excludes the NOT RUN cases.
    let all_not_run = c.failed == 0 && c.passed == 0 && !c.not_run.is_empty();
    (all_not_run && c.not_run_reasons.iter().all(|r| r.contains(marker))).then(|| {
        let why = c.not_run_reasons.first().cloned().unwrap_or_default();
        format!("every case NOT RUN: {why}")
    })
}

/// Renders the result table.
pub(crate) fn table(rows: &[(String, Row)]) -> String {
    table_of("backend", rows)
}

/// Renders a result table whose first column is headed `what` (`backend`, `sink`).
pub(crate) fn table_of(what: &str, rows: &[(String, Row)]) -> String {
    let mut out = format!(
        "{:<10} {:<13} {:>7} {:>7} {:>8} {:>8} {:>8}\n",
        what, "result", "passed", "failed", "skipped", "not run", "time"
    );
    let mut notes = Vec::new();
    for (name, row) in rows {
        let line = match row {
            Row::Ran(c) => {
                let result = if row.fails() { "FAILED" } else { "ok" };
                for f in &c.failures {
                    notes.push(format!("{name}: failed: {f}"));
                }
                for case in &c.not_run {
                    notes.push(format!("{name}: NOT RUN: {case}"));
                }
                if c.passed == 0 && c.failed == 0 {
                    notes.push(format!("{name}: ran no test"));
                }
                format!(
                    "{name:<10} {result:<13} {:>7} {:>7} {:>8} {:>8} {:>7.1}s",
                    c.passed,
                    c.failed,
                    c.ignored,
                    c.not_run.len(),
                    c.seconds
                )
            }
            Row::NotRun(why) | Row::Broken(why) | Row::NotProvided(why) => {
                let result = match row {
                    Row::NotRun(_) => "NOT RUN",
                    Row::Broken(_) => "BROKEN",
                    _ => "NOT RUN (n/a)",
                };
                notes.push(format!("{name}: {why}"));
                format!(
                    "{name:<10} {result:<13} {:>7} {:>7} {:>8} {:>8} {:>8}",
                    "-", "-", "-", "-", "-"
                )
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// Entry point: `args` are the words after `integration`.
pub(crate) fn cli(args: &[String]) -> anyhow::Result<()> {
    if args
        .iter()
        .any(|a| matches!(a.as_str(), "help" | "--help" | "-h"))
    {
        println!("{USAGE}");
        return Ok(());
    }
    // `--sinks …` selects notification sinks ([`crate::sinks`]); the rest selects databases.
    let mut sink_values = Vec::new();
    let mut db_args = Vec::new();
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        if a == "--sinks" {
            sink_values.push(rest.next().context("--sinks needs a value")?.clone());
        } else if let Some(v) = a.strip_prefix("--sinks=") {
            sink_values.push(v.to_owned());
        } else {
            db_args.push(a.clone());
        }
    }
    if !sink_values.is_empty() {
        let sinks = crate::sinks::parse_sinks(&sink_values)?;
        if db_args.is_empty() {
            return crate::sinks::run(&sinks);
        }
        let databases = databases(&db_args);
        let notifications = crate::sinks::run(&sinks);
        return databases.and(notifications);
    }
    databases(args)
}

/// `--db …`: the database backends' suites and their table.
fn databases(args: &[String]) -> anyhow::Result<()> {
    let names = parse_db(args)?;
    let mut rows = Vec::new();
    for name in &names {
        let spec = BACKENDS
            .iter()
            .find(|b| b.name == name)
            .context("backend vanished")?;
        let row = backend(spec).unwrap_or_else(|e| Row::Broken(format!("{e:#}")));
        rows.push((name.clone(), row));
    }
    let verify = verify_step(&rows);
    println!("\n{}", table(&rows));
    let mut failing: Vec<&str> = rows
        .iter()
        .filter(|(_, r)| r.fails())
        .map(|(n, _)| n.as_str())
        .collect();
    match &verify {
        Some(Ok(())) => println!("sst verify by URL (PostgreSQL and MariaDB node databases): ok"),
        Some(Err(e)) => {
            println!("sst verify by URL: FAILED: {e:#}");
            failing.push("sst verify");
        }
        None => {}
    }
    if !failing.is_empty() {
        bail!("integration failed for: {}", failing.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(lines: &str) -> Counts {
        let mut c = Counts::default();
        lines.lines().for_each(|l| c.line(l));
        c
    }

    #[test]
    fn libtest_summaries_are_summed_and_failures_named() {
        let c = counts(
            "test a ... ok\ntest b ... FAILED\n\
             test result: FAILED. 26 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 6.43s\n\
             test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.50s\n",
        );
        assert_eq!((c.passed, c.failed, c.ignored), (29, 1, 2));
        assert!((c.seconds - 6.93).abs() < 1e-9);
        assert_eq!(c.failures, vec!["b".to_owned()]);
        assert!(c.summarised);
    }

    #[test]
    fn not_run_markers_and_the_closing_failure_list_are_read() {
        let c = counts(
            "running 3 tests\n\
             test durable_case ... SST-NOT-RUN case=origin_seq_survives_reopen backend=memory reason=store is not durable\n\
             ok\n\
             test x ... ok\n\
             failures:\n\
             \n\
             failures:\n    broken_case\n\n\
             test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n",
        );
        assert_eq!(c.not_run, vec!["origin_seq_survives_reopen".to_owned()]);
        assert_eq!(c.failures, vec!["broken_case".to_owned()]);
        assert_eq!((c.passed, c.failed), (2, 1));
        let t = table(&[("memory".into(), Row::Ran(c))]);
        assert!(t.contains("NOT RUN: origin_seq_survives_reopen"), "{t}");
    }

    #[test]
    fn unreachable_and_empty_runs_fail_but_unprovided_backends_do_not() {
        assert!(Row::NotRun("down".into()).fails());
        assert!(!Row::NotProvided("no server here".into()).fails());
        assert!(Row::Ran(counts("test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s")).fails());
        assert!(!Row::Ran(counts("test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.00s")).fails());
        let t = table(&[
            (
                "postgres".into(),
                Row::NotRun("not answering at 127.0.0.1:5432".into()),
            ),
            ("oracle".into(), Row::NotProvided("DPI-1047".into())),
        ]);
        assert!(t.contains("postgres   NOT RUN"), "{t}");
        assert!(t.contains("oracle     NOT RUN (n/a)"), "{t}");
        assert!(!t.contains(" ok "), "{t}");
    }

    #[test]
    fn only_an_all_dpi_1047_run_is_not_provided() {
        let line = |case: &str, reason: &str| {
            format!("SST-NOT-RUN case={case} backend=oracle reason={reason}\n")
        };
        let summary = "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n";
        let mut missing = counts(&format!(
            "{}{}{summary}",
            line("a", "client (DPI-1047: Cannot locate)"),
            line("b", "client (DPI-1047: Cannot locate)")
        ));
        missing.passed -= missing.not_run.len() as u64; // as run_suite does
        assert!(not_provided(&missing, "DPI-1047").is_some_and(|w| w.contains("DPI-1047")));
        let mut other = counts(&format!(
            "{}{summary}",
            line("a", "store does not declare x")
        ));
        other.passed -= other.not_run.len() as u64;
        assert_eq!(
            not_provided(&other, "DPI-1047"),
            None,
            "another reason is not DPI-1047"
        );
        let ran = counts(summary);
        assert_eq!(not_provided(&ran, "DPI-1047"), None, "cases that ran");
    }

    /// Every server-backed test file is behind `server-tests` (so the plain command never
    /// counts it as passed, and this command runs it): a file that opens a server
    /// (`url_or_skip`, the shared `common` factory, the `suite!` macro) must be a
    /// `server-tests` target, and every server adapter has the conformance suite among them.
    #[test]
    fn server_test_targets_are_gated() -> anyhow::Result<()> {
        let root = project_root()?;
        for spec in BACKENDS.iter().filter(|b| b.tests == Targets::ServerTests) {
            let dir = root.join(spec.package);
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
            assert!(
                manifest.contains("server-tests = []"),
                "{}: no server-tests feature",
                spec.package
            );
            let gated = server_test_targets(&manifest);
            assert!(
                gated.iter().any(|t| t == "conformance"),
                "{}: {gated:?}",
                spec.package
            );
            for entry in std::fs::read_dir(dir.join("tests"))? {
                let path = entry?.path();
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if path.extension().is_none_or(|e| e != "rs") || gated.iter().any(|g| g == stem) {
                    continue;
                }
                let text = std::fs::read_to_string(&path)?;
                for needs_server in ["url_or_skip", "mod common", "suite!"] {
                    assert!(
                        !text.contains(needs_server),
                        "{}: `{needs_server}` suggests it needs a server; declare it as a \
                         [[test]] with required-features = [\"server-tests\"]",
                        path.display()
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn gated_targets_are_read_from_the_manifest() {
        let manifest = "[features]\nserver-tests = []\n\n[[test]]\nname = \"conformance\"\n\
                        required-features = [\"server-tests\"]\n\n[[test]]\nname = \"plain\"\n\n\
                        [[test]]\nname = \"races\"\nrequired-features = [\"server-tests\"]\n";
        assert_eq!(server_test_targets(manifest), vec!["conformance", "races"]);
    }

    #[test]
    fn db_selection() -> anyhow::Result<()> {
        let s = |v: &[&str]| parse_db(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let all: Vec<&str> = BACKENDS.iter().map(|b| b.name).collect();
        assert!(all.starts_with(&["sqlite", "postgres", "mysql"]));
        assert_eq!(s(&[])?, all);
        assert_eq!(s(&["--db", "all"])?, all);
        assert_eq!(s(&["--db", "mysql,postgres"])?, vec!["postgres", "mysql"]);
        assert_eq!(s(&["--db=postgres", "--db", "postgres"])?, vec!["postgres"]);
        assert!(s(&["--db", "db2"]).is_err());
        assert!(s(&["--frobnicate"]).is_err());
        Ok(())
    }
}
