//! A small HTTP/2 client over mutual TLS: one cached connection to one server, opened on first
//! use (`TCP_NODELAY`, pinned server key) and opened again when it broke.

use std::sync::Arc;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use super::serve::{CONNECTION_WINDOW, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, STREAM_WINDOW};
use super::ALPN_H2;
use crate::error::ClientError;

/// An HTTP/2 client of one server at `host:port`, authenticating with the identity in its
/// [`ClientConfig`] ([`super::client_config`]) and accepting only the server key pinned there.
/// It keeps one connection (HTTP/2 multiplexes concurrent requests over it) and reconnects
/// when the connection broke. Requests carry no timeout of their own: wrap calls in
/// [`tokio::time::timeout`].
pub struct H2Client {
    addr: String,
    connector: TlsConnector,
    connection: tokio::sync::Mutex<Option<SendRequest<Body>>>,
}

impl std::fmt::Debug for H2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Client")
            .field("addr", &self.addr)
            .finish()
    }
}

impl H2Client {
    /// A client of the server at `addr` (`host:port`); nothing is dialled until the first
    /// request.
    pub fn new(addr: impl Into<String>, config: Arc<ClientConfig>) -> Self {
        H2Client {
            addr: addr.into(),
            connector: TlsConnector::from(config),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// The server address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends the request `build` makes, on the cached connection or a new one. A request
    /// whose URI is only a path (`/sst/v1/sync`) is sent to `https://<addr><path>`. When the
    /// cached connection turns out broken, the request is built again and sent once more on
    /// a fresh connection (so it may reach the server twice: use it for idempotent requests,
    /// or check the server's answer).
    ///
    /// # Errors
    /// [`ClientError`] when no connection can be made or the request fails on a fresh one.
    pub async fn send(
        &self,
        build: impl Fn() -> Request<Body>,
    ) -> Result<Response<Incoming>, ClientError> {
        let (mut sender, fresh) = self.sender().await?;
        match sender.send_request(self.absolute(build())).await {
            Ok(response) => Ok(response),
            Err(e) if !fresh => {
                debug!(addr = %self.addr, error = %e, "cached connection failed; reconnecting");
                self.forget().await;
                let (mut sender, _) = self.sender().await?;
                match sender.send_request(self.absolute(build())).await {
                    Ok(response) => Ok(response),
                    Err(e) => {
                        self.forget().await;
                        Err(self.http(e))
                    }
                }
            }
            Err(e) => {
                self.forget().await;
                Err(self.http(e))
            }
        }
    }

    /// Drops the cached connection (the next request dials again).
    pub async fn disconnect(&self) {
        self.forget().await;
    }

    fn http(&self, source: hyper::Error) -> ClientError {
        ClientError::Http {
            addr: self.addr.clone(),
            source,
        }
    }

    fn absolute(&self, mut request: Request<Body>) -> Request<Body> {
        if request.uri().authority().is_none() {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            match format!("https://{}{path}", self.addr).parse::<Uri>() {
                Ok(uri) => *request.uri_mut() = uri,
                Err(e) => warn!(addr = %self.addr, error = %e, "cannot build an absolute URI"),
            }
        }
        request
    }

    /// Forgets the cached connection after a failed request (the next request dials again).
    async fn forget(&self) {
        self.connection.lock().await.take();
    }

    /// The cached sender (`false`) or one on a new connection (`true`).
    async fn sender(&self) -> Result<(SendRequest<Body>, bool), ClientError> {
        let mut cached = self.connection.lock().await;
        if let Some(sender) = cached.as_ref() {
            if !sender.is_closed() {
                return Ok((sender.clone(), false));
            }
        }
        let sender = self.connect().await?;
        *cached = Some(sender.clone());
        Ok((sender, true))
    }

    async fn connect(&self) -> Result<SendRequest<Body>, ClientError> {
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        if let Err(e) = tcp.set_nodelay(true) {
            warn!(addr = %self.addr, error = %e, "cannot set TCP_NODELAY");
        }
        // The name is not checked (the key is pinned); it only fills SNI.
        let name = ServerName::try_from("sst").map_err(|e| ClientError::Handshake {
            addr: self.addr.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        let stream =
            self.connector
                .connect(name, tcp)
                .await
                .map_err(|source| ClientError::Handshake {
                    addr: self.addr.clone(),
                    source,
                })?;
        if stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
            return Err(ClientError::NotHttp2 {
                addr: self.addr.clone(),
            });
        }
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.http(e))?;
        let addr = self.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%addr, error = %e, "HTTP/2 connection closed with an error");
            }
        });
        Ok(sender)
    }
}
