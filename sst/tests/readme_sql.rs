//! The README's SQLite snippets return rows on the demo's own data: runs `sst demo`, then
//! every SQL statement of the README's SQLite section on the buyer's file (each SELECT must
//! return at least one row) and checks what the README says the regulator's file shows.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context};

/// The statements of the ```sql blocks of the README's `### SQLite` section.
fn sqlite_statements() -> anyhow::Result<Vec<String>> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let start = readme.find("\n### SQLite").context("no SQLite section")?;
    let rest = &readme[start + 1..];
    let section = &rest[..rest[1..].find("\n### ").map_or(rest.len(), |i| i + 1)];
    let mut out = Vec::new();
    for block in section.split("```sql").skip(1) {
        let body = block.split("```").next().unwrap_or_default();
        let sql: String = body
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        out.extend(
            sql.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(out)
}

fn rows(
    conn: &rusqlite::Connection,
    sql: &str,
) -> anyhow::Result<Vec<Vec<rusqlite::types::Value>>> {
    let mut stmt = conn.prepare(sql)?;
    let n = stmt.column_count();
    let mut out = Vec::new();
    let mut rs = stmt.query([])?;
    while let Some(r) = rs.next()? {
        out.push((0..n).map(|i| r.get(i)).collect::<Result<_, _>>()?);
    }
    Ok(out)
}

#[test]
fn readme_sqlite_snippets_return_rows_on_the_demo_files() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sst-readme-sql");
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_sst"))
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()?;
    ensure!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let statements = sqlite_statements()?;
    ensure!(
        statements.len() >= 4,
        "README SQLite statements: {statements:?}"
    );
    let buyer = rusqlite::Connection::open(dir.join("buyer.db"))?;
    for sql in &statements {
        if sql.to_uppercase().starts_with("SELECT") {
            let found = rows(&buyer, sql)?;
            ensure!(
                !found.is_empty(),
                "no row on the demo's buyer.db for:\n{sql}"
            );
        } else {
            buyer.execute_batch(sql).with_context(|| sql.clone())?;
        }
    }
    // What the README says of the regulator's file: the price is NULL / absent.
    let regulator = rusqlite::Connection::open(dir.join("regulator.db"))?;
    let selects: Vec<&String> = statements
        .iter()
        .filter(|s| s.starts_with("SELECT"))
        .collect();
    let first = rows(&regulator, selects[0])?;
    ensure!(
        first.len() == 1 && first[0].last() == Some(&rusqlite::types::Value::Null),
        "regulator, first query: {first:?}"
    );
    ensure!(
        rows(&regulator, selects[1])?.is_empty(),
        "the regulator holds a price"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
