//! `cargo xtask …`: project automation (local servers, integration suites, benchmarks).
#![forbid(unsafe_code)]

mod bench;
mod bench_contracts;
mod bench_notify;
mod bench_pipeline;
mod bench_protocols;
mod bench_state_size;
mod faults;
mod integration;
mod kafka_server;
mod mongo_server;
mod node_verify;
mod services;
mod sinks;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help") => {
            println!(
                "usage: cargo xtask <command>\n\ncommands: help, mongo-server start|stop|status, kafka-server start|stop|status, bench store --backend <db> [--count N], bench network [--events N], bench contracts [--events N] [--rounds N], bench pipeline [--events N] [--rounds N], bench protocols [--events N] [--states N], bench state-size [--rounds N] [--scan-states N] [--backend <db>|all], bench notify [--sinks <sink>|all] [--count N] [--rounds R], integration [--db <db>|all] [--sinks <sink>|all], services [--db <db>|all]"
            );
            Ok(())
        }
        Some("mongo-server") => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .ok_or_else(|| anyhow::anyhow!("xtask has no parent directory"))?;
            mongo_server::cli(root, &args[1..])
        }
        Some("kafka-server") => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .ok_or_else(|| anyhow::anyhow!("xtask has no parent directory"))?;
            kafka_server::cli(root, &args[1..])
        }
        Some("bench") => bench::cli(&args[1..]),
        Some("faults") => faults::cli(&args[1..]),
        Some("integration") => integration::cli(&args[1..]),
        Some("services") => services::cli(&args[1..]),
        Some(other) => anyhow::bail!("unknown xtask command `{other}` (try `cargo xtask help`)"),
    }
}
