//! Serving an axum router over HTTP/2 and mutual TLS: one task per connection (`TCP_NODELAY`,
//! a bounded handshake, the client's key mapped to an [`Authenticated`] identity that every
//! request of the connection carries as an extension) and a graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use tracing::{debug, warn};

use super::{verify, Authenticated, ServerTls};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`NetServer::shutdown`] lets open requests finish before closing their
/// connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// HTTP/2 flow-control windows: large enough that a sync batch is not throttled to one
/// 64 KiB window per round trip.
pub(crate) const STREAM_WINDOW: u32 = 4 << 20;
pub(crate) const CONNECTION_WINDOW: u32 = 16 << 20;
/// HTTP/2 pings on idle connections, so a peer that vanished without closing (host down,
/// cable pulled) is noticed and the next request dials again instead of waiting.
pub(crate) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// How long a ping may go unanswered before the connection is closed.
pub(crate) const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server ([`serve`]). Dropping it stops accepting and closes its connections
/// gracefully in the background; [`NetServer::shutdown`] does the same and waits.
#[derive(Debug)]
pub struct NetServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl NetServer {
    /// The address the server listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, asks every open connection to close (HTTP/2 `GOAWAY`:
    /// requests under way finish, for up to 10 s) and returns once they are closed.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                warn!(addr = %self.local_addr, error = %e, "server task failed");
            }
        }
    }
}

impl Drop for NetServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Serves `router` on `listener` over HTTP/2 with mutual TLS `tls`. Each accepted connection
/// gets `TCP_NODELAY`, must complete the TLS 1.3 handshake with a client key that `tls`
/// identifies (else it is closed), and every request on it carries the client's
/// [`Authenticated`] identity as an extension.
///
/// # Errors
/// The listener's local address cannot be read.
pub fn serve(
    router: Router,
    listener: TcpListener,
    tls: ServerTls,
) -> Result<NetServer, std::io::Error> {
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, tls, router, stopped));
    Ok(NetServer {
        local_addr,
        stop,
        task: Some(task),
    })
}

/// Resolves once the server is told to stop (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the handle was dropped, which also stops the server.
    let _ = stop.wait_for(|s| *s).await;
}

async fn accept_loop(
    listener: TcpListener,
    tls: ServerTls,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls.config().clone());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(connection(
                        tcp,
                        peer,
                        acceptor.clone(),
                        tls.clone(),
                        router.clone(),
                        stop.clone(),
                    ));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "connections still busy after the shutdown grace period; closing them"
        );
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    tls: ServerTls,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        warn!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            warn!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            warn!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let who = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(verify::ed25519_key)
        .and_then(|key| tls.identify(&key));
    let Some(who) = who else {
        // The verifier already refused such clients; this is a second line.
        warn!(%peer, "client without a known key after the handshake; closed");
        return;
    };
    debug!(%peer, client = %who.id, "connection authenticated");
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert::<Authenticated>(who.clone());
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}
