//! `cargo xtask integration --sinks all|kafka,rabbitmq,…`: each notification sink's test target
//! (`sst-notify/tests/<sink>.rs`, behind the sink's cargo feature) against its real broker,
//! and one table of passed / failed / skipped / time per sink, like the `--db` one.
//!
//! The Kafka broker (tansu) is started here; the others are the machine's services, checked
//! before their tests run (PostgreSQL is started if it is down). A broker the machine should
//! have that does not answer is a failure (NOT RUN), never a skip; a sink without its test
//! target or its feature is a failure too ("no test target"), so a missing suite shows. All
//! selected targets are built once with every selected feature, and each run uses that same
//! feature set, so nothing is rebuilt per sink.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use crate::integration::{project_root, run_counted, show, table_of, Row};
use crate::services::{self, Availability};

/// The crate whose test targets run.
pub(crate) const PACKAGE: &str = "sst-notify";

const USAGE: &str = "usage: cargo xtask integration --sinks <name>|all (names: kafka, rabbitmq, \
                     nats, mqtt, postgres, redis; several with commas)";

/// Where a sink's broker comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Broker {
    /// Started by xtask: the tansu Kafka-protocol broker ([`crate::kafka_server`]), unless
    /// `SST_KAFKA_URL` already names one that answers.
    Tansu,
    /// A service this machine runs.
    Service {
        /// The URL variable the tests read.
        var: &'static str,
        /// Its default on this machine.
        default: &'static str,
        /// The port when the URL names none.
        default_port: u16,
        /// Checks (and starts) the server; `None`: a TCP connection must succeed.
        ensure: Option<fn(&str) -> anyhow::Result<Availability>>,
    },
}

/// One sink: its name is also its cargo feature and its test target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SinkSpec {
    /// Name used with `--sinks`, the feature and `tests/<name>.rs`.
    pub(crate) name: &'static str,
    /// Its broker.
    pub(crate) broker: Broker,
}

/// Every sink, in `--sinks all` order.
pub(crate) const SINKS: &[SinkSpec] = &[
    SinkSpec {
        name: "kafka",
        broker: Broker::Tansu,
    },
    SinkSpec {
        name: "rabbitmq",
        broker: Broker::Service {
            var: "SST_RABBITMQ_URL",
            default: "amqp://guest:guest@127.0.0.1:5672/%2f",
            default_port: 5672,
            ensure: None,
        },
    },
    SinkSpec {
        name: "nats",
        broker: Broker::Service {
            var: "SST_NATS_URL",
            default: "nats://127.0.0.1:4222",
            default_port: 4222,
            ensure: None,
        },
    },
    SinkSpec {
        name: "mqtt",
        broker: Broker::Service {
            var: "SST_MQTT_URL",
            default: "mqtt://127.0.0.1:1883",
            default_port: 1883,
            ensure: None,
        },
    },
    SinkSpec {
        name: "postgres",
        broker: Broker::Service {
            var: "SST_POSTGRES_URL",
            default: services::POSTGRES_URL,
            default_port: 5432,
            ensure: Some(services::postgres),
        },
    },
    SinkSpec {
        name: "redis",
        broker: Broker::Service {
            var: "SST_REDIS_URL",
            default: "redis://127.0.0.1:6379",
            default_port: 6379,
            ensure: None,
        },
    },
];

/// The sink names selected by `--sinks` values (`all` or comma lists), in table order.
pub(crate) fn parse_sinks(values: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let mut wanted = Vec::new();
    for v in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        if v == "all" {
            wanted.extend(SINKS.iter().map(|s| s.name));
        } else if let Some(s) = SINKS.iter().find(|s| s.name == v) {
            wanted.push(s.name);
        } else {
            bail!("unknown sink `{v}`\n{USAGE}");
        }
    }
    if wanted.is_empty() {
        bail!("--sinks needs a value\n{USAGE}");
    }
    Ok(SINKS
        .iter()
        .map(|s| s.name)
        .filter(|n| wanted.contains(n))
        .collect())
}

/// Why `name` cannot run here (no `tests/<name>.rs`, no `[[test]]`, no feature), if so.
pub(crate) fn missing_target(crate_dir: &Path, manifest: &str, name: &str) -> Option<String> {
    let file = crate_dir.join("tests").join(format!("{name}.rs"));
    if !file.exists() {
        return Some(format!("no test target: {} does not exist", file.display()));
    }
    let declared = manifest.split("[[").any(|section| {
        section.starts_with("test]]")
            && section
                .lines()
                .any(|l| l.replace(' ', "") == format!("name=\"{name}\""))
    });
    if !declared {
        return Some(format!(
            "no test target: {PACKAGE}/Cargo.toml declares no [[test]] `{name}`"
        ));
    }
    if !has_feature(manifest, name) {
        return Some(format!("no test target: {PACKAGE} has no `{name}` feature"));
    }
    None
}

/// Whether `manifest` (sst-notify's Cargo.toml) declares the feature `name`.
pub(crate) fn has_feature(manifest: &str, name: &str) -> bool {
    manifest
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("{name} = [")))
}

/// `cargo test -p sst-notify --features <features> --test <t>…` (the caller adds the rest).
fn cargo_test(root: &Path, features: &str, targets: &[&str]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["test", "-p", PACKAGE, "--features"])
        .arg(format!("{features},server-tests"))
        .env("SST_REQUIRE_BACKEND", "1");
    for t in targets {
        cmd.args(["--test", t]);
    }
    cmd
}

/// The environment for `spec`'s tests (its broker's URL), or the row saying why its broker is
/// not there. A Kafka broker started here is kept in `kafka` (stopped when that is dropped).
pub(crate) fn prepare(
    root: &Path,
    spec: &SinkSpec,
    kafka: &mut Option<crate::kafka_server::KafkaServer>,
) -> anyhow::Result<Result<Vec<(&'static str, String)>, Row>> {
    match spec.broker {
        Broker::Tansu => {
            use crate::kafka_server::{self, BIN_ENV, URL_ENV};
            let given = std::env::var(URL_ENV).ok().filter(|u| !u.is_empty());
            if let Some(url) = given {
                let addr = url
                    .trim_start_matches("kafka://")
                    .parse()
                    .with_context(|| format!("{URL_ENV}: `{url}` is not kafka://ip:port"))?;
                if !kafka_server::answers(addr) {
                    return Ok(Err(Row::NotRun(format!(
                        "no Kafka broker answers at {url} ({URL_ENV})"
                    ))));
                }
                let bin = kafka_server::ensure_installed(root)?;
                return Ok(Ok(vec![
                    (URL_ENV, url),
                    (BIN_ENV, bin.display().to_string()),
                ]));
            }
            if kafka.is_none() {
                match kafka_server::start_test_server() {
                    Ok(started) => *kafka = Some(started),
                    Err(e) => return Ok(Err(Row::NotRun(format!("starting tansu: {e:#}")))),
                }
            }
            let server = kafka
                .as_ref()
                .context("the started Kafka broker vanished")?;
            Ok(Ok(server.env()))
        }
        Broker::Service {
            var,
            default,
            default_port,
            ensure,
        } => {
            let url = std::env::var(var)
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| default.to_owned());
            let availability = match ensure {
                Some(ensure) => ensure(&url)?,
                None => {
                    let (host, port) = services::host_port(&url, default_port)?;
                    if services::tcp_answers(&host, port) {
                        Availability::Ready
                    } else {
                        Availability::Unreachable(format!(
                            "the machine's {} broker does not answer at {host}:{port} ({var})",
                            spec.name
                        ))
                    }
                }
            };
            Ok(match availability {
                Availability::Ready => Ok(vec![(var, url)]),
                // Every one of these brokers is one the machine should have.
                Availability::NotProvided(why) | Availability::Unreachable(why) => {
                    Err(Row::NotRun(why))
                }
            })
        }
    }
}

/// Runs the selected sinks' tests and prints the table.
///
/// # Errors
/// When any sink failed, could not run, or has no test target.
pub(crate) fn run(names: &[&'static str]) -> anyhow::Result<()> {
    let root = project_root()?;
    let crate_dir = root.join(PACKAGE);
    let manifest_path = crate_dir.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let mut rows: Vec<(String, Row)> = Vec::new();
    let mut runnable = Vec::new();
    for &name in names {
        match missing_target(&crate_dir, &manifest, name) {
            Some(why) => rows.push((name.to_owned(), Row::Broken(why))),
            None => runnable.push(name),
        }
    }
    let features = runnable.join(",");
    let built = if runnable.is_empty() {
        Ok(())
    } else {
        println!("\n=== build: {features} ===");
        let mut build = cargo_test(&root, &features, &runnable);
        build.arg("--no-run");
        println!("+ {}", show(&build));
        let status = build.status().context("running cargo")?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("build failed ({status})"))
        }
    };
    let mut kafka = None;
    for &name in &runnable {
        let spec = SINKS
            .iter()
            .find(|s| s.name == name)
            .context("sink vanished")?;
        println!("\n=== sink {name} ===");
        let row = match &built {
            Err(why) => Row::Broken(why.clone()),
            Ok(()) => match prepare(&root, spec, &mut kafka) {
                Err(e) => Row::Broken(format!("{e:#}")),
                Ok(Err(row)) => row,
                Ok(Ok(env)) => {
                    let mut test = cargo_test(&root, &features, &[name]);
                    for (k, v) in env {
                        test.env(k, v);
                    }
                    run_counted(test).unwrap_or_else(|e| Row::Broken(format!("{e:#}")))
                }
            },
        };
        rows.push((name.to_owned(), row));
    }
    drop(kafka);
    rows.sort_by_key(|(n, _)| SINKS.iter().position(|s| s.name == n));
    println!("\n{}", table_of("sink", &rows));
    let failing: Vec<&str> = rows
        .iter()
        .filter(|(_, r)| r.fails())
        .map(|(n, _)| n.as_str())
        .collect();
    if !failing.is_empty() {
        bail!("sink integration failed for: {}", failing.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_selection() -> anyhow::Result<()> {
        let s = |v: &[&str]| parse_sinks(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let all: Vec<&str> = SINKS.iter().map(|s| s.name).collect();
        assert_eq!(
            all,
            ["kafka", "rabbitmq", "nats", "mqtt", "postgres", "redis"]
        );
        assert_eq!(s(&["all"])?, all);
        assert_eq!(s(&["redis,kafka"])?, vec!["kafka", "redis"]);
        assert_eq!(s(&["nats", "nats"])?, vec!["nats"]);
        assert!(s(&["solace"]).is_err());
        assert!(s(&[]).is_err());
        Ok(())
    }

    #[test]
    fn a_sink_without_its_file_target_or_feature_has_no_test_target() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("sst-xtask-sinks-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tests"))?;
        std::fs::write(dir.join("tests").join("kafka.rs"), "")?;
        let declared = "[features]\nkafka = [\"dep:rdkafka\"]\n\n[[test]]\nname = \"kafka\"\n\
                        required-features = [\"kafka\"]\n";
        assert_eq!(missing_target(&dir, declared, "kafka"), None);
        let why = missing_target(&dir, declared, "mqtt").unwrap_or_default();
        assert!(
            why.starts_with("no test target") && why.contains("mqtt.rs"),
            "{why}"
        );
        let undeclared = "[features]\nkafka = [\"dep:rdkafka\"]\n";
        assert!(missing_target(&dir, undeclared, "kafka").is_some_and(|w| w.contains("[[test]]")));
        let no_feature = "[[test]]\nname = \"kafka\"\n";
        assert!(missing_target(&dir, no_feature, "kafka").is_some_and(|w| w.contains("feature")));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
