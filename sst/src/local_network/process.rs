//! Node processes of a local network: started detached (`sst node run --config`, own process
//! group, output to a log file), waited for until their client API answers `/health`, and
//! stopped by SIGTERM with a bounded grace before SIGKILL. Every wait is bounded.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::manifest::{Manifest, NodeEntry};

/// Longest wait for a node's API to answer after its start.
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a node gets to exit after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(20);

/// Starts `sst node run --config CONFIG` in its own process group (a Ctrl-C in the terminal
/// that ran `sst network up` does not reach it), stdout and stderr appended to `log`.
///
/// # Errors
/// The log cannot be opened; the process cannot be spawned.
pub(crate) fn spawn(config: &Path, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let exe = std::env::current_exe().context("locating the sst binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["node", "run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn()
        .with_context(|| format!("starting the node of {}", config.display()))
}

/// The last `lines` lines of a log file.
pub(crate) fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `node`'s API answers `/health` (as its first actor, over mutual TLS); fails
/// early when `child` exits.
///
/// # Errors
/// The node exited, or did not answer within [`START_DEADLINE`].
pub(crate) async fn wait_healthy(
    node: &NodeEntry,
    child: Option<&mut Child>,
) -> anyhow::Result<()> {
    let client = node.first_client()?;
    let start = Instant::now();
    let mut child = child;
    loop {
        if let Some(c) = child.as_deref_mut() {
            if let Some(status) = c.try_wait()? {
                bail!(
                    "node {} exited {status} at start; its log {}:\n{}",
                    node.id,
                    node.log.display(),
                    log_tail(&node.log, 20)
                );
            }
        }
        match tokio::time::timeout(Duration::from_secs(2), client.health()).await {
            Ok(Ok(h)) if h.node.as_str() == node.id => return Ok(()),
            Ok(Ok(h)) => bail!("{} answers as node {}, not {}", node.api, h.node, node.id),
            _ => {}
        }
        if start.elapsed() > START_DEADLINE {
            bail!(
                "node {} not answering on {} after {START_DEADLINE:?}; its log {}:\n{}",
                node.id,
                node.api,
                node.log.display(),
                log_tail(&node.log, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether process `pid` runs (a zombie does not count).
pub(crate) fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if proc.is_dir() {
        return match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
            // `pid (comm) S …`: the state follows the last `)`.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        };
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `pid` is the node process of `config` (so a PID reused by another program after
/// the node died is never signalled). Without `/proc`, trusts the PID.
fn runs_config(pid: u32, config: &Path) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let config = config.as_os_str().as_encoded_bytes();
            args.windows(2)
                .any(|w| w[0] == b"--config" && w[1] == config)
        }
        Err(_) => !Path::new("/proc").is_dir(),
    }
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    if !status.success() && alive(pid) {
        bail!("kill {sig} {pid} failed ({status})");
    }
    Ok(())
}

/// How a node process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// It exited after SIGTERM.
    Terminated,
    /// It was still running after the grace and got SIGKILL.
    Killed,
    /// It was not running (or the PID is another program's now).
    NotRunning,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stopped::Terminated => "stopped (SIGTERM)",
            Stopped::Killed => "killed (SIGKILL after the grace)",
            Stopped::NotRunning => "was not running",
        })
    }
}

/// Whether the node is gone: through `child` when this process started it (reaping it),
/// else by its PID.
fn gone(pid: u32, child: Option<&mut Child>) -> bool {
    match child {
        Some(c) => !matches!(c.try_wait(), Ok(None)),
        None => !alive(pid),
    }
}

/// Stops every node of `manifest`: SIGTERM to all, then each gets [`STOP_GRACE`] in all to
/// exit before SIGKILL. `children[i]`, when given, is node `i`'s process handle.
///
/// # Errors
/// A signal cannot be sent; a node survives SIGKILL for 5 s.
pub(crate) async fn stop_all(
    manifest: &Manifest,
    children: &mut [Option<Child>],
) -> anyhow::Result<Vec<Stopped>> {
    let mut outcome = vec![Stopped::NotRunning; manifest.nodes.len()];
    for (i, n) in manifest.nodes.iter().enumerate() {
        let ours = children.get(i).is_some_and(Option::is_some);
        if (ours || runs_config(n.pid, &n.config)) && !gone(n.pid, child(children, i)) {
            signal(n.pid, "-TERM")?;
            outcome[i] = Stopped::Terminated;
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    let mut kill_deadline = None;
    loop {
        let mut running = false;
        for (i, n) in manifest.nodes.iter().enumerate() {
            if outcome[i] == Stopped::NotRunning || gone(n.pid, child(children, i)) {
                continue;
            }
            running = true;
            if Instant::now() >= deadline && outcome[i] != Stopped::Killed {
                signal(n.pid, "-KILL")?;
                outcome[i] = Stopped::Killed;
                kill_deadline.get_or_insert(Instant::now() + Duration::from_secs(5));
            }
        }
        if !running {
            return Ok(outcome);
        }
        if kill_deadline.is_some_and(|d| Instant::now() >= d) {
            bail!("node processes survive SIGKILL");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn child(children: &mut [Option<Child>], i: usize) -> Option<&mut Child> {
    children.get_mut(i).and_then(Option::as_mut)
}
