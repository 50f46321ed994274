//! The `sst` binary end to end: `demo` on four SQLite files, then `verify` on those files
//! (clean), and on a copy with a value changed behind SST's back (detected, exit code 1).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{ensure, Context};

fn sst(args: &[&str]) -> anyhow::Result<(i32, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_sst"))
        .args(args)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().context("killed")?, text))
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn demo_then_verify_and_detect_tampering() -> anyhow::Result<()> {
    let dir = Dir(std::env::temp_dir().join(format!("sst-cli-{}", std::process::id())));
    let d = dir.0.to_str().context("utf-8 path")?;
    let (code, out) = sst(&["demo", "--dir", d])?;
    ensure!(code == 0, "demo failed:\n{out}");
    ensure!(
        out.contains("REJECTED (forbidden)"),
        "no rejected write shown:\n{out}"
    );
    ensure!(out.contains("All 4 roots equal"), "{out}");
    ensure!(
        out.contains("deal-42 | 12 Harbour Lane | 2.1 | NULL"),
        "regulator query:\n{out}"
    );

    let files: Vec<String> = ["buyer", "inspector", "regulator", "seller"]
        .iter()
        .map(|n| format!("{d}/{n}.db"))
        .collect();
    let mut args = vec!["verify"];
    for f in &files {
        args.extend(["--db", f.as_str()]);
    }
    let (code, out) = sst(&args)?;
    ensure!(code == 0 && out.contains("roots agree"), "verify:\n{out}");

    // Change the radon level in the regulator's peer table behind SST's back.
    let conn = rusqlite::Connection::open(&files[2])?;
    let n = conn.execute(
        "UPDATE sst_state SET data = json_set(data, '$.inspection.radon', 1.0)",
        [],
    )?;
    ensure!(n == 1);
    drop(conn);
    let (code, out) = sst(&args)?;
    ensure!(code == 1, "tampering not reported (exit {code}):\n{out}");
    ensure!(
        out.contains("section `inspection`: value does not match its section hash"),
        "{out}"
    );
    let (code, out) = sst(&["verify", "--db", &format!("{d}/missing.db")])?;
    ensure!(code == 2 && out.contains("no such database file"), "{out}");
    Ok(())
}
