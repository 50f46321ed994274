//! The `sst verify` step of `cargo xtask integration`: writes a PostgreSQL and a MariaDB/MySQL
//! node database with the adapters' `postgres_deals` / `mysql_deals` examples (schema and
//! database `sst_demo`), then runs `sst verify` on each by store URL; a verify that fails (or
//! finds a problem) fails the integration run.

use std::process::Command;

use anyhow::{bail, Context};

use crate::integration::{project_root, show};

/// Schema / database the deals examples write.
const DEMO: &str = "sst_demo";

/// `url` with query parameter `name=value` appended.
pub(crate) fn with_param(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{name}={value}")
}

/// Runs `cargo args…` in the project root with `env`, echoed first; fails unless it succeeds.
fn cargo(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root()?).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    println!("+ {}", show(&cmd));
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(&cmd));
    }
    Ok(())
}

/// Writes the two node databases and verifies each by URL.
pub(crate) fn run(postgres_url: &str, mysql_url: &str) -> anyhow::Result<()> {
    println!("\n=== sst verify by URL ===");
    cargo(
        &[
            "run",
            "-q",
            "-p",
            "sst-store-postgres",
            "--example",
            "postgres_deals",
        ],
        &[("SST_POSTGRES_URL", postgres_url)],
    )?;
    cargo(
        &[
            "run",
            "-q",
            "-p",
            "sst-store-mysql",
            "--example",
            "mysql_deals",
        ],
        &[("SST_MYSQL_URL", mysql_url)],
    )?;
    // One database per call: the two examples write unrelated states under the same ids.
    for url in [
        with_param(postgres_url, "schema", DEMO),
        with_param(mysql_url, "database", DEMO),
    ] {
        cargo(
            &[
                "run",
                "-q",
                "-p",
                "sst",
                "--features",
                "postgres,mysql",
                "--",
                "verify",
                "--db",
                &url,
            ],
            &[],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_appended() {
        assert_eq!(
            with_param("postgres://p@h:5432/postgres", "schema", "s"),
            "postgres://p@h:5432/postgres?schema=s"
        );
        assert_eq!(
            with_param("mysql://root@h:3306?ssl-mode=disabled", "database", "d"),
            "mysql://root@h:3306?ssl-mode=disabled&database=d"
        );
    }
}
