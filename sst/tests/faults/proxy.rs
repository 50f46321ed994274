//! A fault-injecting TCP proxy on loopback: forwards one listening address to one target and
//! can delay, cut (close every connection, refuse new ones), blackhole (take bytes, forward
//! nothing) and heal; it records the bytes clients sent on their connections so a test can
//! replay one later, byte for byte.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything at once.
    Pass,
    /// Forward every chunk after this delay (order kept).
    Delay(Duration),
    /// Close every open connection and each new one at once.
    Cut,
    /// Accept connections and bytes, forward nothing.
    Blackhole,
}

/// How many connections ran into each mode, and how many bytes were forwarded or dropped.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connections forwarded to the target.
    pub connections: AtomicU64,
    /// Connections closed at once (cut).
    pub refused: AtomicU64,
    /// Bytes forwarded (both directions).
    pub forwarded: AtomicU64,
    /// Bytes taken and dropped (blackhole).
    pub dropped: AtomicU64,
}

/// Most client connections whose bytes are kept, and most bytes kept of one.
const CAPTURE_CONNECTIONS: usize = 8;
const CAPTURE_BYTES: usize = 1 << 20;

struct Shared {
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    open: Mutex<Vec<AbortHandle>>,
    captured: Mutex<Vec<Vec<u8>>>,
    counts: Counts,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running proxy; stopped (with every connection) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            mode: watch::channel(Mode::Pass).0,
            open: Mutex::new(Vec::new()),
            captured: Mutex::new(Vec::new()),
            counts: Counts::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Proxy {
            addr,
            shared,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches mode. Entering [`Mode::Cut`] or [`Mode::Blackhole`], and healing back to
    /// [`Mode::Pass`] or [`Mode::Delay`], closes every open connection, so that senders notice
    /// at once and dial again instead of waiting for a timeout.
    pub fn set(&self, mode: Mode) {
        let before = self.shared.mode.send_replace(mode);
        let kind = |m: Mode| matches!(m, Mode::Cut | Mode::Blackhole);
        if before != mode && (kind(mode) || kind(before)) {
            for conn in lock(&self.shared.open).drain(..) {
                conn.abort();
            }
        }
    }

    /// The counters.
    pub fn counts(&self) -> &Counts {
        &self.shared.counts
    }

    /// The bytes clients sent on the first connections (each up to 1 MiB).
    pub fn captured(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.captured).clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for conn in lock(&self.shared.open).drain(..) {
            conn.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *shared.mode.borrow() == Mode::Cut {
            shared.counts.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let slot = {
            let mut captured = lock(&shared.captured);
            (captured.len() < CAPTURE_CONNECTIONS).then(|| {
                captured.push(Vec::new());
                captured.len() - 1
            })
        };
        let task = tokio::spawn(connection(client, shared.clone(), slot));
        let mut open = lock(&shared.open);
        open.retain(|c| !c.is_finished());
        open.push(task.abort_handle());
    }
}

/// One client connection: dial the target (unless blackholed) and pump both ways.
async fn connection(client: TcpStream, shared: Arc<Shared>, slot: Option<usize>) {
    let _ = client.set_nodelay(true);
    let server = if *shared.mode.borrow() == Mode::Blackhole {
        None
    } else {
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(shared.target)).await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                shared.counts.connections.fetch_add(1, Ordering::Relaxed);
                Some(s)
            }
            _ => return,
        }
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let Some(server) = server else {
        // Blackholed from the start: take bytes until the client gives up or the mode
        // changes (set() aborts this task).
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
            shared.counts.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
        return;
    };
    let (mut server_rx, mut server_tx) = server.into_split();
    let up = pump(&mut client_rx, &mut server_tx, &shared, slot);
    let down = pump(&mut server_rx, &mut client_tx, &shared, None);
    // Either side closing ends the connection.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Copies `from` to `to` chunk by chunk under the current mode; `slot`: keep the bytes.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
    slot: Option<usize>,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(i) = slot {
            let mut captured = lock(&shared.captured);
            if let Some(c) = captured.get_mut(i) {
                let room = CAPTURE_BYTES.saturating_sub(c.len()).min(n);
                c.extend_from_slice(&buf[..room]);
            }
        }
        let mode = *shared.mode.borrow();
        match mode {
            Mode::Pass => {}
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Blackhole => {
                shared.counts.dropped.fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            Mode::Cut => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        shared
            .counts
            .forwarded
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}
