//! The `sst` command line: `demo` (the real-estate deal on four SQLite nodes), `verify`
//! (re-check node databases and compare their roots) and `bench` (pipeline throughput).
#![forbid(unsafe_code)]

mod bench;
mod cluster;
mod demo;
mod verify;

use std::path::PathBuf;

use anyhow::{bail, Context};

const USAGE: &str = "\
sst — Synchronized Systems Technology

USAGE:
    sst demo   [--dir DIR]                 run the real-estate deal on four SQLite nodes
    sst verify --db FILE [--db FILE ...]   re-check hashes and signatures, compare roots
    sst bench  [--events N] [--dir DIR]    events/s through the pipeline on SQLite
    sst help

Store adapters in this build: ";

/// Command-line arguments after the subcommand: `--flag value` pairs and bare values.
struct Args {
    rest: Vec<String>,
}

impl Args {
    /// All values of `--name` (`--name v` or `--name=v`).
    fn values(&mut self, name: &str) -> anyhow::Result<Vec<String>> {
        let flag = format!("--{name}");
        let mut out = Vec::new();
        let mut keep = Vec::new();
        let mut it = std::mem::take(&mut self.rest).into_iter();
        while let Some(a) = it.next() {
            if a == flag {
                out.push(it.next().with_context(|| format!("{flag} needs a value"))?);
            } else if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                out.push(v.to_owned());
            } else {
                keep.push(a);
            }
        }
        self.rest = keep;
        Ok(out)
    }
    fn value(&mut self, name: &str) -> anyhow::Result<Option<String>> {
        let mut v = self.values(name)?;
        if v.len() > 1 {
            bail!("--{name} given {} times", v.len());
        }
        Ok(v.pop())
    }
    fn finish(self) -> anyhow::Result<Vec<String>> {
        if let Some(flag) = self.rest.iter().find(|a| a.starts_with("--")) {
            bail!(
                "unknown option {flag}\n\n{USAGE}{}",
                sst::adapters().join(", ")
            );
        }
        Ok(self.rest)
    }
}

fn work_dir(arg: Option<String>, name: &str) -> PathBuf {
    arg.map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("sst-{name}-{}", std::process::id())))
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

async fn run() -> anyhow::Result<()> {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_else(|| "help".into());
    let mut args = Args {
        rest: argv.collect(),
    };
    match cmd.as_str() {
        "demo" => {
            let dir = work_dir(args.value("dir")?, "demo");
            args.finish()?;
            demo::run(&dir).await
        }
        "verify" => {
            let mut dbs = args.values("db")?;
            dbs.extend(args.finish()?);
            if dbs.is_empty() {
                bail!("sst verify needs at least one --db FILE");
            }
            let clean = verify::run(&dbs.iter().map(PathBuf::from).collect::<Vec<_>>()).await?;
            if !clean {
                std::process::exit(1);
            }
            Ok(())
        }
        "bench" => {
            let events = match args.value("events")? {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("--events {n}: not a number"))?,
                None => 2000,
            };
            let dir = work_dir(args.value("dir")?, "bench");
            args.finish()?;
            bench::run(&dir, events).await
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}{}", sst::adapters().join(", "));
            Ok(())
        }
        other => bail!(
            "unknown command `{other}`\n\n{USAGE}{}",
            sst::adapters().join(", ")
        ),
    }
}
