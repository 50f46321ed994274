//! The MongoDB wire server for tests: `nx-27017` (PyPI, 0.8.x, a MongoDB wire-protocol server
//! on SQLite), installed into a project-local venv (`target/mongo-venv`) and started on a free
//! loopback port. No real `mongod` is installable here; a real server is used instead whenever
//! `SST_MONGO_URL` is already set. `cargo xtask mongo-server start|stop|status`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The PyPI requirement installed into the venv.
pub const REQUIREMENT: &str = "nx-27017>=0.8,<0.9";
/// Environment variable the Mongo tests read.
pub const URL_ENV: &str = "SST_MONGO_URL";

fn venv(root: &Path) -> PathBuf {
    root.join("target").join("mongo-venv")
}

fn server_bin(root: &Path) -> PathBuf {
    venv(root).join("bin").join("nx-27017")
}

fn state_dir(root: &Path) -> PathBuf {
    root.join("target").join("mongo-server")
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Installs `nx-27017` into `target/mongo-venv` unless it is already there; returns the
/// server executable.
///
/// # Errors
/// When `python3 -m venv` or `pip install` fails.
pub fn ensure_installed(root: &Path) -> anyhow::Result<PathBuf> {
    let bin = server_bin(root);
    if bin.exists() {
        return Ok(bin);
    }
    let venv = venv(root);
    if !venv.join("bin").join("pip").exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        REQUIREMENT,
    ]))?;
    if !bin.exists() {
        bail!(
            "pip installed {REQUIREMENT} but {} is missing",
            bin.display()
        );
    }
    Ok(bin)
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

fn wait_until_listening(port: u16, child: &mut Child, log: &Path) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("nx-27017 exited with {status} before listening:\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "nx-27017 did not listen on {addr} within 30 s (log: {})",
        log.display()
    )
}

/// A running test server; stopped when dropped.
pub struct MongoServer {
    child: Child,
    /// `mongodb://127.0.0.1:<port>/?directConnection=true`
    pub url: String,
    data: PathBuf,
}

impl MongoServer {
    /// Installs (if needed) and starts `nx-27017` on a free loopback port with a fresh data
    /// directory under `target/mongo-server/`.
    ///
    /// # Errors
    /// When installing or starting fails, or the server does not listen within 30 s.
    pub fn start(root: &Path) -> anyhow::Result<MongoServer> {
        let bin = ensure_installed(root)?;
        let port = free_port()?;
        let data = state_dir(root).join(format!("run-{port}"));
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        std::fs::create_dir_all(&data)?;
        let log = data.join("server.log");
        let mut cmd = Command::new(bin);
        cmd.arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--log-file")
            .arg(&log)
            .arg("--pid-file")
            .arg(data.join("server.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        eprintln!("+ {cmd:?}");
        let mut child = cmd.spawn().context("starting nx-27017")?;
        if let Err(e) = wait_until_listening(port, &mut child, &log) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(MongoServer {
            child,
            url: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            data,
        })
    }

    /// Leaves the server running after this handle is gone (for `mongo-server start`).
    pub fn detach(self) -> (u32, String) {
        let me = std::mem::ManuallyDrop::new(self);
        (me.child.id(), me.url.clone())
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn pid_file(root: &Path) -> PathBuf {
    state_dir(root).join("detached.pid")
}

fn url_file(root: &Path) -> PathBuf {
    state_dir(root).join("detached.url")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `cargo xtask mongo-server start|stop|status`: a detached server for running the Mongo
/// tests by hand (`export SST_MONGO_URL=…` from the printed line).
///
/// # Errors
/// On unknown arguments or when the server cannot be started or stopped.
pub fn cli(root: &Path, args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("start") => {
            if let Some(url) = running(root)? {
                println!("export {URL_ENV}='{url}'");
                return Ok(());
            }
            let server = MongoServer::start(root)?;
            std::fs::write(
                state_dir(root).join("detached.data"),
                server.data.as_os_str().as_encoded_bytes(),
            )?;
            let (pid, url) = server.detach();
            std::fs::write(pid_file(root), pid.to_string())?;
            std::fs::write(url_file(root), &url)?;
            eprintln!("nx-27017 running as pid {pid}");
            println!("export {URL_ENV}='{url}'");
            Ok(())
        }
        Some("stop") => {
            let Ok(pid) = std::fs::read_to_string(pid_file(root)) else {
                eprintln!("no detached nx-27017 recorded");
                return Ok(());
            };
            let pid = pid.trim().to_owned();
            if alive(pid.parse()?) {
                run(Command::new("kill").arg(&pid))?;
            }
            std::fs::remove_file(pid_file(root))?;
            std::fs::remove_file(url_file(root))?;
            let data = state_dir(root).join("detached.data");
            if let Ok(dir) = std::fs::read_to_string(&data) {
                let _ = std::fs::remove_dir_all(dir);
                std::fs::remove_file(data)?;
            }
            Ok(())
        }
        Some("status") => {
            match running(root)? {
                Some(url) => println!("running: {URL_ENV}={url}"),
                None => println!("not running"),
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask mongo-server start|stop|status"),
    }
}

/// The URL of the detached server started by `mongo-server start`, if it still runs.
///
/// # Errors
/// When the recorded pid file is unreadable.
pub fn running(root: &Path) -> anyhow::Result<Option<String>> {
    let Ok(pid) = std::fs::read_to_string(pid_file(root)) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .context("parsing the mongo-server pid file")?;
    if !alive(pid) {
        return Ok(None);
    }
    Ok(std::fs::read_to_string(url_file(root)).ok())
}

/// For `cargo xtask integration` and `bench`: a fresh test server, its URL and the guard that
/// stops it.
///
/// # Errors
/// As [`MongoServer::start`].
pub fn start_test_server() -> anyhow::Result<(String, Box<dyn std::any::Any>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let server = MongoServer::start(root)?;
    Ok((server.url.clone(), Box::new(server)))
}
