//! [`NetTransport`]: the node [`Transport`] over HTTP/2 and mutual TLS — one cached
//! connection per peer, each message a `POST /sst/v1/sync` of its [`ProtocolEnvelope`] as
//! JSON (several queued ones a `POST /sst/v1/sync/batch` of a JSON array), answered once the
//! peer node handled it (all of them).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request};
use sst_core::NodeId;
use sst_node::{ProtocolEnvelope, Transport, TransportError};
use tracing::{debug, warn};

use crate::tls::H2Client;

/// The path of the node-to-node endpoint.
pub const SYNC_PATH: &str = "/sst/v1/sync";

/// The path of the node-to-node endpoint taking several envelopes, in order, in one request.
pub const SYNC_BATCH_PATH: &str = "/sst/v1/sync/batch";

/// Sends protocol envelopes to the peers of one node over HTTP/2 with mutual TLS, presenting
/// the node's key and pinning each peer's registry key. Built by [`crate::start`].
///
/// `send` returns once the peer answered `2xx`, i.e. once the peer node handled (stored) the
/// message; the node's outbox calls it from one task per peer, so the messages to a peer
/// arrive in order over one connection. A peer that is down, refuses the handshake, answers
/// an error or does not answer within the request timeout is
/// [`TransportError::Unreachable`]; the next send dials again.
pub struct NetTransport {
    local: NodeId,
    peers: BTreeMap<NodeId, H2Client>,
    timeout: Duration,
}

impl std::fmt::Debug for NetTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetTransport")
            .field("local", &self.local)
            .field("peers", &self.peers)
            .finish()
    }
}

impl NetTransport {
    pub(crate) fn new(local: NodeId, peers: BTreeMap<NodeId, H2Client>, timeout: Duration) -> Self {
        NetTransport {
            local,
            peers,
            timeout,
        }
    }

    /// The peers this transport can reach, and their addresses.
    pub fn peers(&self) -> impl Iterator<Item = (&NodeId, &str)> {
        self.peers.iter().map(|(id, c)| (id, c.addr()))
    }

    async fn post(&self, peer: &H2Client, path: &'static str, body: Bytes) -> Result<(), String> {
        let response = peer
            .send(|| {
                let mut request = Request::new(Body::from(body.clone()));
                *request.method_mut() = Method::POST;
                *request.uri_mut() = hyper::Uri::from_static(path);
                request.headers_mut().insert(
                    CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                request
            })
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = axum::body::to_bytes(Body::new(response.into_body()), 4096)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Err(format!("answered {status}: {detail}"))
    }
}

#[async_trait]
impl Transport for NetTransport {
    fn local(&self) -> &NodeId {
        &self.local
    }

    async fn send(&self, to: &NodeId, envelope: ProtocolEnvelope) -> Result<(), TransportError> {
        self.deliver(to, SYNC_PATH, &envelope).await
    }

    async fn send_batch(
        &self,
        to: &NodeId,
        envelopes: Vec<ProtocolEnvelope>,
    ) -> Result<(), TransportError> {
        self.deliver(to, SYNC_BATCH_PATH, &envelopes).await
    }
}

impl NetTransport {
    /// POSTs `message` (one envelope or an array of them) to `path` of peer `to` and waits for
    /// its `2xx`, within the request timeout.
    async fn deliver<T: serde::Serialize + ?Sized>(
        &self,
        to: &NodeId,
        path: &'static str,
        message: &T,
    ) -> Result<(), TransportError> {
        let Some(peer) = self.peers.get(to) else {
            warn!(peer = %to, "no address configured for this peer");
            return Err(TransportError::Unreachable(to.clone()));
        };
        let body = match serde_json::to_vec(message) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                warn!(peer = %to, error = %e, "message not serialisable; not sent");
                return Err(TransportError::Unreachable(to.clone()));
            }
        };
        match tokio::time::timeout(self.timeout, self.post(peer, path, body)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!(peer = %to, addr = peer.addr(), error = %e, "send failed");
                Err(TransportError::Unreachable(to.clone()))
            }
            Err(_) => {
                warn!(peer = %to, addr = peer.addr(), timeout = ?self.timeout, "no answer in time");
                peer.disconnect().await;
                Err(TransportError::Unreachable(to.clone()))
            }
        }
    }
}
