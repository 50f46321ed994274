//! The `sst` binary end to end: `demo` on four SQLite files, then `verify` on those files
//! (clean), on a copy with a value changed behind SST's back (detected, exit code 1), on a
//! copy that must stay byte-identical, on databases with no state in common and on a file
//! without SST tables; and `--help` / `--version`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
impl Dir {
    fn new(name: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("sst-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Dir(dir))
    }
    fn file(&self, name: &str) -> anyhow::Result<String> {
        Ok(self.0.join(name).to_str().context("utf-8 path")?.to_owned())
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The four node files of one `sst demo` run, shared by the tests of this binary (the demo
/// runs once; tests copy the files they change).
fn demo() -> anyhow::Result<&'static [String; 4]> {
    static DEMO: OnceLock<Result<[String; 4], String>> = OnceLock::new();
    let run = || -> anyhow::Result<[String; 4]> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sst-cli-demo");
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.to_str().context("utf-8 path")?;
        let (code, out) = sst(&["demo", "--dir", d])?;
        ensure!(code == 0, "demo failed:\n{out}");
        ensure!(
            out.contains("REJECTED (forbidden)"),
            "no rejected write shown:\n{out}"
        );
        ensure!(out.contains("All 4 roots equal"), "{out}");
        // The same nodes run a settlement on the `endorsed` protocol beside the deal: every
        // step endorsed by both banks' nodes (the buyer's and the seller's).
        ensure!(
            out.matches("endorsed by buyer, seller").count() == 4,
            "settlement endorsements:\n{out}"
        );
        ensure!(
            out.contains("settlement-42  endorsed") && out.contains("deal-42        home"),
            "protocol per state:\n{out}"
        );
        ensure!(
            out.contains("deal-42 | 12 Harbour Lane | 2.1 | NULL"),
            "regulator query:\n{out}"
        );
        Ok(["buyer", "inspector", "regulator", "seller"].map(|n| format!("{d}/{n}.db")))
    };
    DEMO.get_or_init(|| run().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Copies the SQLite database `from` to `to` as a whole: the file and, when present, its
/// write-ahead log and shared-memory index (the demo's nodes are still open when it exits, so
/// its last commits are in the `-wal` file).
fn copy_db(from: &str, to: &str) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let src = format!("{from}{suffix}");
        if Path::new(&src).exists() {
            std::fs::copy(&src, format!("{to}{suffix}"))?;
        }
    }
    Ok(())
}

/// `verify --db f` for each of `files`.
fn verify(files: &[&str]) -> anyhow::Result<(i32, String)> {
    let mut args = vec!["verify"];
    for f in files {
        args.extend(["--db", f]);
    }
    sst(&args)
}

#[test]
fn demo_then_verify_and_detect_tampering() -> anyhow::Result<()> {
    let files = demo()?;
    let (code, out) = verify(&files.each_ref().map(String::as_str))?;
    ensure!(
        code == 0
            && out.contains(
                "2 state(s) held by more than one of the 4 databases compared: roots agree"
            ),
        "verify:\n{out}"
    );

    // Change the radon level in a copy of the regulator's peer table behind SST's back.
    let dir = Dir::new("tamper")?;
    let copy = dir.file("regulator.db")?;
    copy_db(&files[2], &copy)?;
    let conn = rusqlite::Connection::open(&copy)?;
    let n = conn.execute(
        "UPDATE sst_state SET data = json_set(data, '$.inspection.radon', 1.0) WHERE id = 'deal-42'",
        [],
    )?;
    ensure!(n == 1);
    drop(conn);
    let (code, out) = verify(&[&files[0], &copy])?;
    ensure!(code == 1, "tampering not reported (exit {code}):\n{out}");
    ensure!(
        out.contains("section `inspection`: value does not match its section hash"),
        "{out}"
    );
    let (code, out) = verify(&[&dir.file("missing.db")?])?;
    ensure!(code == 2 && out.contains("no such database file"), "{out}");
    Ok(())
}

#[test]
fn verify_leaves_the_file_byte_identical() -> anyhow::Result<()> {
    let files = demo()?;
    let dir = Dir::new("readonly")?;
    let copy = dir.file("seller.db")?;
    copy_db(&files[3], &copy)?;
    // The database file and its log; the shared-memory index (`-shm`) is a cache that any
    // reader may rebuild, not content.
    let wal = format!("{copy}-wal");
    let content = || -> anyhow::Result<(Vec<u8>, Option<Vec<u8>>)> {
        Ok((std::fs::read(&copy)?, std::fs::read(&wal).ok()))
    };
    let before = content()?;
    let listing = || -> anyhow::Result<Vec<String>> {
        let mut names = std::fs::read_dir(&dir.0)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    };
    let files_before = listing()?;
    for url in [copy.clone(), format!("sqlite:{copy}")] {
        let (code, out) = verify(&[&url])?;
        ensure!(code == 0 && out.contains("history OK"), "{out}");
    }
    ensure!(content()? == before, "verify changed the database");
    ensure!(
        listing()? == files_before,
        "verify left files behind: {:?}",
        listing()?
    );

    // An ordinary (rollback-journal) SQLite file stays one: no switch to WAL, no new file.
    let plain = dir.file("plain.db")?;
    copy_db(&files[3], &plain)?;
    let conn = rusqlite::Connection::open(&plain)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    ensure!(mode == "delete", "{mode}");
    drop(conn);
    let files_before = listing()?;
    let before = std::fs::read(&plain)?;
    let (code, out) = verify(&[&plain])?;
    ensure!(code == 0 && out.contains("history OK"), "{out}");
    ensure!(std::fs::read(&plain)? == before, "verify changed plain.db");
    ensure!(
        listing()? == files_before,
        "verify left files behind: {:?}",
        listing()?
    );
    Ok(())
}

#[tokio::test]
async fn databases_without_a_common_state_compare_nothing() -> anyhow::Result<()> {
    use sst::core::Store;
    use sst::sqlite::{SqliteConfig, SqliteStore};
    let files = demo()?;
    let dir = Dir::new("disjoint")?;
    let fresh = dir.file("fresh.db")?;
    let store = SqliteStore::open(SqliteConfig::file(&fresh)).await?;
    store.migrate().await?;
    drop(store);
    let (code, out) = verify(&[&files[0], &fresh])?;
    ensure!(code == 0, "{out}");
    ensure!(out.contains("0 states compared"), "{out}");
    ensure!(!out.contains("roots agree"), "{out}");
    Ok(())
}

#[test]
fn a_file_without_sst_tables_is_named_as_such() -> anyhow::Result<()> {
    let dir = Dir::new("foreign")?;
    let file = dir.file("app.db")?;
    let conn = rusqlite::Connection::open(&file)?;
    conn.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)",
        [],
    )?;
    drop(conn);
    let before = std::fs::read(&file)?;
    let (code, out) = verify(&[&file])?;
    ensure!(code != 0, "exit {code}:\n{out}");
    ensure!(out.contains("holds no SST tables"), "{out}");
    ensure!(!out.contains("no such table"), "{out}");
    ensure!(std::fs::read(&file)? == before, "file changed");
    Ok(())
}

#[test]
fn help_and_version() -> anyhow::Result<()> {
    let (code, out) = sst(&["--version"])?;
    ensure!(
        code == 0 && out.trim() == format!("sst {}", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    let (code, out) = sst(&["--help"])?;
    ensure!(code == 0, "{out}");
    for cmd in ["demo", "verify", "bench"] {
        ensure!(out.contains(cmd), "{cmd} missing from --help:\n{out}");
        let (code, sub) = sst(&[cmd, "--help"])?;
        ensure!(code == 0 && sub.contains(&format!("sst {cmd}")), "{sub}");
    }
    let (_, out) = sst(&["verify", "--help"])?;
    for form in [
        "sqlite:FILE",
        "postgres://",
        "?schema=",
        "mysql://",
        "?database=",
        "mongodb://",
        "?prefix=",
    ] {
        ensure!(
            out.contains(form),
            "{form} missing from verify --help:\n{out}"
        );
    }
    let (code, out) = sst(&["verify", "--db", "redis://localhost"])?;
    ensure!(
        code == 2 && out.contains("unknown store URL scheme"),
        "{out}"
    );
    let (code, out) = sst(&["frobnicate"])?;
    ensure!(code == 2, "{out}");
    Ok(())
}

/// A backend this binary was built without is refused with the feature to enable.
#[cfg(not(feature = "postgres"))]
#[test]
fn a_backend_not_compiled_in_names_its_feature() -> anyhow::Result<()> {
    let (code, out) = sst(&[
        "verify",
        "--db",
        "postgres://u@127.0.0.1:1/db?schema=node_a",
    ])?;
    ensure!(code == 2, "{out}");
    ensure!(out.contains("`postgres` Cargo feature"), "{out}");
    Ok(())
}

/// With the demo's node registry, `verify` checks receipts and checkpoints and finds an actor
/// key replaced behind SST's back (with the events it signed); without it, it says that
/// receipts and checkpoints were not checked.
#[test]
fn verify_with_the_registry_finds_a_replaced_actor_key() -> anyhow::Result<()> {
    let files = demo()?;
    let registry = Path::new(&files[0])
        .with_file_name("registry.json")
        .to_str()
        .context("utf-8 path")?
        .to_owned();
    let (code, out) = sst(&[
        "verify",
        "--registry",
        &registry,
        "--db",
        &files[0],
        "--node",
        "buyer",
    ])?;
    ensure!(
        code == 0 && out.contains("checked against 4 registered node key(s)"),
        "verify with the registry:\n{out}"
    );
    let (_, out) = verify(&[&files[0]])?;
    ensure!(out.contains("are NOT checked"), "{out}");

    let dir = Dir::new("forged-key")?;
    let copy = dir.file("buyer.db")?;
    copy_db(&files[0], &copy)?;
    let conn = rusqlite::Connection::open(&copy)?;
    let n = conn.execute(
        "UPDATE sst_actor SET public_key = (SELECT public_key FROM sst_actor WHERE id = 'seller/sue') WHERE id = 'buyer/bob'",
        [],
    )?;
    ensure!(n == 1);
    drop(conn);
    let (code, out) = sst(&[
        "verify",
        "--registry",
        &registry,
        "--db",
        &copy,
        "--node",
        "buyer",
    ])?;
    ensure!(code == 1, "replaced key not reported (exit {code}):\n{out}");
    ensure!(
        out.contains("[actor/log_record]") && out.contains("actor buyer/bob differs"),
        "{out}"
    );
    Ok(())
}
