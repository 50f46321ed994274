//! `cargo xtask …`: project automation (local servers, integration suites, benchmarks).

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help") => {
            println!("usage: cargo xtask <command>\n\ncommands: help");
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown xtask command `{other}` (try `cargo xtask help`)"),
    }
}
