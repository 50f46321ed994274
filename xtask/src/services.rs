//! The machine's database servers: check that one answers and, when it does not, start it
//! with the machine's own commands (`pg_ctlcluster`, `start-stop-daemon … mariadbd`), saying
//! what was done. `cargo xtask services [--db postgres|mysql|all]` runs just this part.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Default URL of the machine's PostgreSQL (trust auth).
pub(crate) const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Default URL of the machine's MariaDB / MySQL (root, no password).
pub(crate) const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

/// How long a started server gets to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a backend's server can be used, and if not, whether that is a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Availability {
    /// The server answers (possibly after being started).
    Ready,
    /// This machine has no such server at all (nothing to start): not a failure.
    NotProvided(String),
    /// The machine has the server but it does not answer, even after trying to start it.
    Unreachable(String),
}

/// `host` and `port` of a `scheme://[user[:password]@]host[:port][/path][?query]` URL.
pub(crate) fn host_port(url: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .with_context(|| format!("`{url}` is not a URL"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6
                .split_once(']')
                .with_context(|| format!("unclosed `[` in `{url}`"))?;
            (h, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    let port = match port {
        Some(p) => p
            .parse()
            .with_context(|| format!("bad port `{p}` in `{url}`"))?,
        None => default_port,
    };
    let host = host.to_owned();
    if host.is_empty() {
        bail!("no host in `{url}`");
    }
    Ok((host, port))
}

fn is_local(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

/// Whether something accepts TCP connections at `host:port` within a second.
pub(crate) fn tcp_answers(host: &str, port: u16) -> bool {
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(_) => return false,
    };
    addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok())
}

/// Whether `program` is on the PATH (or is an existing path).
fn have(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Runs `cmd` quietly after echoing it; `true` when it exits 0.
fn run_quiet(cmd: &mut Command) -> bool {
    println!("+ {}", crate::integration::show(cmd));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` after echoing it, output shown; `Ok` when it exits 0.
fn run_loud(cmd: &mut Command) -> anyhow::Result<()> {
    println!("+ {}", crate::integration::show(cmd));
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", crate::integration::show(cmd)))?;
    if !status.success() {
        bail!("{} exited with {status}", crate::integration::show(cmd));
    }
    Ok(())
}

/// One server: how to ask it, how to start it.
struct Server {
    name: &'static str,
    host: String,
    port: u16,
    /// The client-side readiness probe (beyond TCP), when its tool is installed.
    probe: Option<Command>,
    /// The commands that start it, or why this machine cannot.
    start: Result<Vec<Command>, String>,
}

impl Server {
    fn answers(&mut self) -> bool {
        if !tcp_answers(&self.host, self.port) {
            return false;
        }
        match &mut self.probe {
            Some(probe) => run_quiet(probe),
            None => true,
        }
    }

    /// Checks, starts if needed and possible, waits; reports what it did.
    fn ensure(mut self) -> Availability {
        let at = format!("{}:{}", self.host, self.port);
        if self.answers() {
            println!("{}: answering at {at}", self.name);
            return Availability::Ready;
        }
        if !is_local(&self.host) {
            return Availability::Unreachable(format!(
                "not answering at {at} (not a local server, so not started)"
            ));
        }
        let commands = match std::mem::replace(&mut self.start, Ok(Vec::new())) {
            Ok(c) => c,
            Err(why) => return Availability::NotProvided(why),
        };
        println!("{}: not answering at {at}; starting it", self.name);
        for mut cmd in commands {
            if let Err(e) = run_loud(&mut cmd) {
                return Availability::Unreachable(format!("start failed: {e:#}"));
            }
        }
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if self.answers() {
                println!(
                    "{}: started, answering at {at} after {:.1}s",
                    self.name,
                    started.elapsed().as_secs_f64()
                );
                return Availability::Ready;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Availability::Unreachable(format!(
            "still not answering at {at} {}s after the start command",
            START_TIMEOUT.as_secs()
        ))
    }
}

/// Makes the PostgreSQL server of `url` answer.
pub(crate) fn postgres(url: &str) -> anyhow::Result<Availability> {
    let (host, port) = host_port(url, 5432)?;
    let probe = have("pg_isready").then(|| {
        let mut c = Command::new("pg_isready");
        c.args(["-q", "-h", &host, "-p", &port.to_string()]);
        c
    });
    let start = match std::fs::read_dir("/etc/postgresql") {
        Ok(versions) if have("pg_ctlcluster") => {
            let mut versions: Vec<String> = versions
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            versions.sort();
            match versions.last() {
                Some(v) => {
                    let mut c = Command::new("pg_ctlcluster");
                    c.args(["--skip-systemctl-redirect", v, "main", "start"]);
                    Ok(vec![c])
                }
                None => Err("no cluster under /etc/postgresql".to_owned()),
            }
        }
        _ => Err(
            "this machine has no PostgreSQL cluster (no /etc/postgresql, no pg_ctlcluster)"
                .to_owned(),
        ),
    };
    Ok(Server {
        name: "postgres",
        host,
        port,
        probe,
        start,
    }
    .ensure())
}

/// Makes the MariaDB / MySQL server of `url` answer.
pub(crate) fn mysql(url: &str) -> anyhow::Result<Availability> {
    let (host, port) = host_port(url, 3306)?;
    let admin = ["mariadb-admin", "mysqladmin"]
        .into_iter()
        .find(|p| have(p));
    let probe = admin.map(|admin| {
        let mut c = Command::new(admin);
        c.args([
            "--protocol=tcp",
            "-h",
            &host,
            "-P",
            &port.to_string(),
            "-u",
            "root",
        ])
        .args(["--connect-timeout=2", "ping"]);
        c
    });
    let daemon = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let start = match daemon {
        Some(daemon) if have("start-stop-daemon") => {
            let mut c = Command::new("start-stop-daemon");
            c.args(["--start", "--oknodo", "--background", "--exec", daemon]);
            Ok(vec![c])
        }
        _ => Err("this machine has no MariaDB/MySQL server (no /usr/sbin/mariadbd)".to_owned()),
    };
    Ok(Server {
        name: "mysql",
        host,
        port,
        probe,
        start,
    }
    .ensure())
}

/// `cargo xtask services [--db postgres|mysql|all]`: check and start, nothing else.
pub(crate) fn cli(args: &[String]) -> anyhow::Result<()> {
    let wanted = crate::integration::parse_db(args)?;
    let mut failed = Vec::new();
    for name in wanted {
        let url_env = match name.as_str() {
            "postgres" => ("SST_POSTGRES_URL", POSTGRES_URL),
            "mysql" => ("SST_MYSQL_URL", MYSQL_URL),
            _ => continue,
        };
        let url = std::env::var(url_env.0).unwrap_or_else(|_| url_env.1.to_owned());
        let availability = if name == "postgres" {
            postgres(&url)?
        } else {
            mysql(&url)?
        };
        match availability {
            Availability::Ready => {}
            Availability::NotProvided(why) => println!("{name}: not provided here: {why}"),
            Availability::Unreachable(why) => {
                println!("{name}: UNREACHABLE: {why}");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("not reachable: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_come_from_urls() -> anyhow::Result<()> {
        assert_eq!(host_port(POSTGRES_URL, 1)?, ("127.0.0.1".into(), 5432));
        assert_eq!(host_port(MYSQL_URL, 1)?, ("127.0.0.1".into(), 3306));
        assert_eq!(
            host_port("mysql://u:p@db.example:3307/app?x=1", 1)?,
            ("db.example".into(), 3307)
        );
        assert_eq!(
            host_port("postgres://localhost/db", 5432)?,
            ("localhost".into(), 5432)
        );
        assert_eq!(
            host_port("postgres://u@[::1]:5433/db", 5432)?,
            ("::1".into(), 5433)
        );
        assert!(host_port("not a url", 1).is_err());
        assert!(host_port("postgres://u@:5/db", 1).is_err());
        Ok(())
    }

    #[test]
    fn only_loopback_servers_are_started() {
        assert!(is_local("127.0.0.1") && is_local("localhost") && is_local("::1"));
        assert!(!is_local("10.0.0.5"));
    }
}
