//! [`Client`]: the calls of a node's client API — over HTTP/2 with mutual TLS 1.3 (the client
//! presents its actor key, pins the node's key: [`Client::with_tls`]) or plain HTTP/1.1 on a
//! trusted network ([`Client::new`]), where every request is signed by the caller's actor key
//! ([`crate::auth`]) — and [`EventStream`], the NDJSON event stream.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use sst_core::{ActorId, ActorKey, ContractRecord, EventId, PublicKey, State, StateId};
use sst_net::tls::{client_config, H2Client, Identity};
use sst_node::{EventBuilder, Intent};
use tokio::net::TcpStream;

use crate::api::{
    self, CustodySubmit, ErrorBody, ErrorCode, Health, IntentBody, OutcomeBody, SequenceGrant,
    SignedIntent, StatusBody, StreamedEvent, VerdictBody,
};
use crate::auth;
use crate::error::ClientError;

/// How often [`Client::submit`] reserves and signs again when its origin sequence was taken.
const ORIGIN_RETRIES: usize = 5;

/// A client of one node's API, acting as one actor.
pub struct Client {
    addr: SocketAddr,
    actor: ActorId,
    key: ActorKey,
    /// `Some`: mutual TLS over one cached HTTP/2 connection; `None`: plain HTTP/1.1.
    tls: Option<H2Client>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("actor", &self.actor)
            .finish()
    }
}

impl Client {
    /// A client of the plain-HTTP API at `addr` (a node with `api_tls = false`), signing its
    /// requests (and its intents) as `actor` with `key`.
    pub fn new(addr: SocketAddr, actor: impl Into<ActorId>, key: ActorKey) -> Self {
        Client {
            addr,
            actor: actor.into(),
            key,
            tls: None,
        }
    }

    /// A client of the TLS API at `addr`: the TLS 1.3 handshake presents `key` (the node lets
    /// in only the keys of its actors) and accepts only a server holding `node_key`. The
    /// connection authenticates its requests: each names `actor` (the node refuses a name
    /// that is not the connection's actor) and carries no request signature.
    ///
    /// # Errors
    /// [`ClientError::Build`] when the key cannot be used for TLS.
    pub fn with_tls(
        addr: SocketAddr,
        actor: impl Into<ActorId>,
        key: ActorKey,
        node_key: PublicKey,
    ) -> Result<Self, ClientError> {
        let identity =
            Identity::from_actor_key(&key).map_err(|e| ClientError::Build(e.to_string()))?;
        let config =
            client_config(&identity, node_key).map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Client {
            addr,
            actor: actor.into(),
            key,
            tls: Some(H2Client::new(addr.to_string(), config)),
        })
    }

    /// The actor this client acts as.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    fn connection_error(&self, detail: impl std::fmt::Display) -> ClientError {
        ClientError::Connection {
            addr: self.addr.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Sends one request: over the cached TLS connection (authenticated by the connection),
    /// or signed on a fresh plain one.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>, ClientError> {
        if let Some(tls) = &self.tls {
            // The TLS handshake proved the actor's key and TLS protects each request on the
            // connection: the request only names its actor (the node checks it is the
            // connection's), it is not signed as well.
            let body = Bytes::from(body);
            let request = || {
                Request::builder()
                    .method(method.clone())
                    .uri(path_and_query)
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .header(auth::ACTOR_HEADER, self.actor.as_str())
                    .body(axum::body::Body::from(body.clone()))
            };
            // Checked once here, so the rebuilds for a retry cannot fail.
            request().map_err(|e| ClientError::Build(e.to_string()))?;
            let build = || request().unwrap_or_default();
            return tls.send(build).await.map_err(|e| self.connection_error(e));
        }
        let headers = auth::sign_request(
            &self.key,
            &self.actor,
            method.as_str(),
            path_and_query,
            &body,
        );
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| self.connection_error(e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| self.connection_error(e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.connection_error(e))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| self.connection_error(e))
    }

    /// The status and the whole body of `resp`.
    async fn read(&self, resp: Response<Incoming>) -> Result<(u16, Bytes), ClientError> {
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.connection_error(e))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Sends a request and decodes a JSON answer; `Ok(None)` on `not_found`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<Option<T>, ClientError> {
        let (status, bytes) = self
            .read(self.send(method, path_and_query, body).await?)
            .await?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ClientError::Decode(format!("{path_and_query}: {e}")));
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Decode(format!(
                "{path_and_query}: status {status}, body not an error: {e}"
            ))
        })?;
        if body.code == ErrorCode::NotFound {
            return Ok(None);
        }
        Err(ClientError::Api { status, body })
    }

    /// Like [`Client::call`], where not found is an error too.
    async fn call_found<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        self.call(method, path_and_query, body)
            .await?
            .ok_or_else(|| ClientError::Api {
                status: 404,
                body: ErrorBody {
                    code: ErrorCode::NotFound,
                    message: format!("{path_and_query} not found"),
                },
            })
    }

    fn json(value: &impl serde::Serialize) -> Result<Vec<u8>, ClientError> {
        serde_json::to_vec(value).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /health`.
    ///
    /// # Errors
    /// [`ClientError::Connection`] when the node is not up.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call_found(Method::GET, api::HEALTH, Vec::new()).await
    }

    /// `GET /metrics`: the Prometheus text.
    ///
    /// # Errors
    /// [`ClientError::Connection`]; [`ClientError::Api`].
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let resp = self.send(Method::GET, api::METRICS, Vec::new()).await?;
        let (status, bytes) = self.read(resp).await?;
        if status != 200 {
            return Err(ClientError::Decode(format!("/metrics answered {status}")));
        }
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `POST /v1/sequence`: reserves an origin sequence for an intent this client signs.
    ///
    /// # Errors
    /// [`ClientError::Api`] (e.g. `forbidden` when the actor does not belong to the node).
    pub async fn reserve(&self) -> Result<SequenceGrant, ClientError> {
        self.call_found(Method::POST, api::SEQUENCE, b"{}".to_vec())
            .await
    }

    /// `POST /v1/intents`: posts an intent this client signed.
    ///
    /// # Errors
    /// [`ClientError::Api`] with [`ErrorCode::OriginTaken`] when its origin sequence was used
    /// meanwhile. A change of a state another node sequences is forwarded there by the node.
    pub async fn post_signed(&self, intent: &SignedIntent) -> Result<VerdictBody, ClientError> {
        self.call_found(Method::POST, api::INTENTS, Self::json(intent)?)
            .await
    }

    /// Signs `intent` here and has the node sequence it: reserves an origin sequence, reads
    /// the target state (for a change, call or migration), builds and signs the event with
    /// this client's key, and posts it — again under a fresh sequence (at most
    /// 5 times) if the node used the reserved one meanwhile. The node never sees the key.
    ///
    /// # Errors
    /// [`ClientError::Build`] when the state is unknown to the node; API errors.
    pub async fn submit(&self, intent: IntentBody) -> Result<VerdictBody, ClientError> {
        let is_create = matches!(intent, IntentBody::Create { .. });
        let state_id = intent.state_id().clone();
        let intent: Intent = intent.into();
        let mut attempt = 0;
        loop {
            let grant = self.reserve().await?;
            let current = if is_create {
                None
            } else {
                Some(self.state(&state_id).await?.ok_or_else(|| {
                    ClientError::Build(format!("state {state_id} is unknown to the node"))
                })?)
            };
            let builder = EventBuilder::new(grant.origin_node, self.actor.clone(), &self.key);
            let built = builder
                .build(grant.origin_seq, &intent, current.as_ref())
                .map_err(|e| ClientError::Build(e.to_string()))?;
            let signed = SignedIntent {
                signed: built.signed,
                disclosures: built.disclosures,
            };
            match self.post_signed(&signed).await {
                Err(e) if e.code() == Some(ErrorCode::OriginTaken) && attempt < ORIGIN_RETRIES => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Deploys a contract version at run time: builds the `DeployContract` event of `record`
    /// (signed by this client's actor, who must be the record's deployer) under a reserved
    /// origin sequence and posts it; the node sequences it and every node of the network
    /// installs the version without a restart.
    ///
    /// # Errors
    /// API errors; a rejection is a [`VerdictBody::Rejected`], not an error.
    pub async fn deploy(&self, record: &ContractRecord) -> Result<VerdictBody, ClientError> {
        let mut attempt = 0;
        loop {
            let grant = self.reserve().await?;
            let builder = EventBuilder::new(grant.origin_node, self.actor.clone(), &self.key);
            let built = builder.deploy_contract(grant.origin_seq, record);
            let signed = SignedIntent {
                signed: built.signed,
                disclosures: built.disclosures,
            };
            match self.post_signed(&signed).await {
                Err(e) if e.code() == Some(ErrorCode::OriginTaken) && attempt < ORIGIN_RETRIES => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `POST /v1/submit`: custody mode, the node signs `intent` as `actor`, a service actor
    /// whose key it holds.
    ///
    /// # Errors
    /// [`ClientError::Api`] (`forbidden` when the node holds no key for `actor`).
    pub async fn submit_custody(
        &self,
        actor: impl Into<ActorId>,
        intent: IntentBody,
    ) -> Result<VerdictBody, ClientError> {
        let body = CustodySubmit {
            actor: actor.into(),
            intent,
        };
        self.call_found(Method::POST, api::SUBMIT, Self::json(&body)?)
            .await
    }

    /// `GET /v1/events/{id}?wait=SECS`: the event's outcome on the node, waiting up to `wait`
    /// for it to be recorded; `None` if it is not recorded by then.
    ///
    /// # Errors
    /// API and connection errors.
    pub async fn outcome(
        &self,
        event: &EventId,
        wait: Duration,
    ) -> Result<Option<OutcomeBody>, ClientError> {
        let path = format!("{}/{event}?wait={}", api::EVENTS, wait.as_secs());
        self.call(Method::GET, &path, Vec::new()).await
    }

    /// `GET /v1/states/{id}`: the state as the node holds it, narrowed to the sections this
    /// actor may read; `None` when the node does not hold it.
    ///
    /// # Errors
    /// API and connection errors.
    pub async fn state(&self, id: &StateId) -> Result<Option<State>, ClientError> {
        let path = format!("{}/{}", api::STATES, encode(id.as_str()));
        self.call(Method::GET, &path, Vec::new()).await
    }

    /// `GET /v1/status/{id}`: the state's sync status on the node.
    ///
    /// # Errors
    /// API and connection errors.
    pub async fn status(&self, id: &StateId) -> Result<Option<StatusBody>, ClientError> {
        let path = format!("{}/{}", api::STATUS, encode(id.as_str()));
        self.call(Method::GET, &path, Vec::new()).await
    }

    /// `GET /v1/events?after=POS&follow=BOOL`: the committed events this actor may read,
    /// after log position `after`; with `follow`, the stream stays open for new ones.
    ///
    /// # Errors
    /// API and connection errors.
    pub async fn events(&self, after: u64, follow: bool) -> Result<EventStream, ClientError> {
        self.stream(format!("{}?after={after}&follow={follow}", api::EVENTS))
            .await
    }

    /// `GET /v1/events?format=cloudevents&…`: the committed events this actor may read as
    /// CloudEvents notifications (the sinks' formatter and filter), after log position
    /// `after`, filtered by `filter`; read them with [`EventStream::next_notification`].
    ///
    /// # Errors
    /// API errors (a bad filter is [`api::ErrorCode::BadRequest`]) and connection errors.
    pub async fn notifications(
        &self,
        after: u64,
        follow: bool,
        filter: &sst_notify::FilterSpec,
    ) -> Result<EventStream, ClientError> {
        let q = api::EventsQuery::cloudevents(after, follow, filter);
        let mut path = format!(
            "{}?after={after}&follow={follow}&format={}",
            api::EVENTS,
            api::FORMAT_CLOUDEVENTS
        );
        for (key, value) in [
            ("contracts", &q.contracts),
            ("names", &q.names),
            ("outcomes", &q.outcomes),
            ("state_prefixes", &q.state_prefixes),
        ] {
            if let Some(v) = value {
                path.push_str(&format!("&{key}={}", encode(v)));
            }
        }
        self.stream(path).await
    }

    /// Opens an NDJSON stream at `path`.
    async fn stream(&self, path: String) -> Result<EventStream, ClientError> {
        let resp = self.send(Method::GET, &path, Vec::new()).await?;
        if resp.status() != 200 {
            let (status, bytes) = self.read(resp).await?;
            let body: ErrorBody = serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Decode(format!("status {status}: {e}")))?;
            return Err(ClientError::Api { status, body });
        }
        Ok(EventStream {
            body: resp.into_body(),
            buf: Vec::new(),
            addr: self.addr.to_string(),
        })
    }
}

/// Percent-encodes the characters of an id that cannot stand in a path segment.
fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The NDJSON event stream of [`Client::events`].
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
    addr: String,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("addr", &self.addr)
            .finish()
    }
}

impl EventStream {
    /// The next event; `None` once the node ends the stream.
    ///
    /// # Errors
    /// [`ClientError::Connection`] when the stream breaks; [`ClientError::Decode`] for a line
    /// that is not an event.
    pub async fn next(&mut self) -> Result<Option<StreamedEvent>, ClientError> {
        self.next_line().await
    }

    /// The next notification of a CloudEvents stream ([`Client::notifications`]); `None`
    /// once the node ends the stream.
    ///
    /// # Errors
    /// As [`EventStream::next`].
    pub async fn next_notification(
        &mut self,
    ) -> Result<Option<sst_notify::Notification>, ClientError> {
        self.next_line().await
    }

    /// The next non-empty line, decoded.
    async fn next_line<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> Result<Option<T>, ClientError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| ClientError::Decode(format!("event stream line: {e}")));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(ClientError::Connection {
                        addr: self.addr.clone(),
                        detail: e.to_string(),
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
