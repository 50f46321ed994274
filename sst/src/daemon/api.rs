//! The client API (axum): routes of [`sst_client::api`] over one [`Node`], every `/v1` request
//! authenticated against the node's actor directory — on plain HTTP by its actor-key
//! signature ([`sst_client::auth`]); over mutual TLS by the actor key the connection's
//! handshake proved (a request that is signed too must be signed by that actor) — answers
//! narrowed to what the caller may read, errors as typed [`ErrorBody`]s.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sst::core::{
    Actor, ActorId, ActorStatus, EventFilter, EventId, EventKind, EventRecord, LogKind, NodeId,
    OriginSeq, State, StateId,
};
use sst::node::{Node, NodeError};
use sst_client::api::{
    self, CustodySubmit, ErrorBody, ErrorCode, Health, OutcomeBody, SequenceGrant, SignedIntent,
    StatusBody, StreamedEvent, VerdictBody,
};
use sst_client::auth::{RequestSignature, ACTOR_HEADER, MAX_SKEW_MS, SIGNATURE_HEADER};
use sst_net::tls::Authenticated;
use tokio::sync::watch;
use tracing::warn;

use super::metrics::Metrics;

/// Longest `?wait=` an outcome request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often waiting requests and the event stream look at the store again.
const POLL: Duration = Duration::from_millis(50);
/// Most events one read of the event stream takes from the log.
const PAGE: usize = 256;
/// The largest request body (an intent with its disclosures).
const MAX_BODY: usize = 16 << 20;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError(ErrorBody);

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody {
            code,
            message: message.into(),
        })
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            NodeError::NoKey { .. } | NodeError::NotLocal { .. } => ErrorCode::Forbidden,
            NodeError::Invalid(_) => ErrorCode::BadRequest,
            NodeError::Stopped(_) | NodeError::Transport(_) => ErrorCode::Unavailable,
            NodeError::Store(s) if s.is_retryable() => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<sst::core::StoreError> for ApiError {
    fn from(e: sst::core::StoreError) -> Self {
        ApiError::from(NodeError::from(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// What every handler shares.
pub(crate) struct ApiContext {
    node: Arc<Node>,
    metrics: Arc<Metrics>,
    /// Service actors whose keys the node holds.
    custody: Vec<ActorId>,
    /// The next origin sequence to hand out to a client.
    next_seq: tokio::sync::Mutex<u64>,
    /// Signatures of recent requests (replay protection), with their times.
    seen: Mutex<HashMap<[u8; 64], i64>>,
    /// Flips to `true` at shutdown: event streams end.
    stopping: watch::Receiver<bool>,
    started: Instant,
}

impl ApiContext {
    /// The context of the API over `node`.
    pub(crate) fn new(
        node: Arc<Node>,
        metrics: Arc<Metrics>,
        custody: Vec<ActorId>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        ApiContext {
            node,
            metrics,
            custody,
            next_seq: tokio::sync::Mutex::new(0),
            seen: Mutex::new(HashMap::new()),
            stopping,
            started: Instant::now(),
        }
    }

    fn me(&self) -> &NodeId {
        self.node.id()
    }

    /// The caller, authenticated by its request signature against the actor directory.
    fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ApiResult<Actor> {
        let unauth = |m: String| ApiError::new(ErrorCode::Unauthenticated, m);
        let sig = RequestSignature::parse(|n| headers.get(n).and_then(|v| v.to_str().ok()))
            .map_err(|e| unauth(e.to_string()))?;
        let actor = self
            .node
            .actor(&sig.actor)
            .ok_or_else(|| unauth(format!("actor {} is unknown to this node", sig.actor)))?;
        if actor.status != ActorStatus::Active {
            return Err(unauth(format!("actor {} is revoked", actor.id)));
        }
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        sig.verify(&actor.public_key, method.as_str(), path, body)
            .map_err(|e| unauth(e.to_string()))?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = sst_client::auth::now_ms();
        seen.retain(|_, t| (now - *t).abs() <= 2 * MAX_SKEW_MS);
        if seen.insert(sig.signature, sig.time_ms).is_some() {
            return Err(unauth(
                "this request signature was already used (replay)".into(),
            ));
        }
        Ok(actor)
    }

    /// The caller of a request without a request signature on a mutual-TLS connection: the
    /// actor whose key the connection's TLS 1.3 handshake proved. The key must still be the
    /// actor's current key and the actor active (a rotation or revocation after the handshake
    /// takes effect on the next request, as it does for signed requests), and an actor the
    /// request names ([`ACTOR_HEADER`]) must be that one.
    ///
    /// This is as strong as checking a request signature: the handshake proved the key, and
    /// TLS 1.3 protects every request on the connection (AEAD records with per-connection
    /// keys and sequence numbers: a request cannot be altered, injected, replayed or moved to
    /// another connection), which is what the signature, its time window and the replay
    /// cache provide on plain HTTP.
    fn connection_caller(&self, tls: &Authenticated, headers: &HeaderMap) -> ApiResult<Actor> {
        let unauth = |m: String| ApiError::new(ErrorCode::Unauthenticated, m);
        if let Some(claimed) = headers.get(ACTOR_HEADER) {
            if claimed.as_bytes() != tls.id.as_bytes() {
                return Err(unauth(format!(
                    "the request names actor {} on a connection of {}",
                    String::from_utf8_lossy(claimed.as_bytes()),
                    tls.id
                )));
            }
        }
        let actor = self
            .node
            .actor(&ActorId::from(tls.id.as_str()))
            .ok_or_else(|| unauth(format!("actor {} is unknown to this node", tls.id)))?;
        if actor.status != ActorStatus::Active {
            return Err(unauth(format!("actor {} is revoked", actor.id)));
        }
        if actor.public_key != tls.key {
            return Err(unauth(format!(
                "the connection's key is no longer the key of {}: connect again with its current key",
                actor.id
            )));
        }
        Ok(actor)
    }

    /// The caller must be an actor of this node.
    fn own_actor(&self, caller: &Actor) -> ApiResult<()> {
        if caller.node != *self.me() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "actor {} belongs to node {}, not to {}: use its own node",
                    caller.id,
                    caller.node,
                    self.me()
                ),
            ));
        }
        Ok(())
    }

    /// What of `state` the caller may read: unreadable sections lose their plaintext;
    /// `None` when the caller is no party at all.
    async fn narrow(&self, caller: &ActorId, mut state: State) -> ApiResult<Option<State>> {
        let roles = state.parties.roles_of(caller);
        if roles.is_empty() {
            return Ok(None);
        }
        let policy = self
            .node
            .store()
            .contract(&state.contract)
            .await?
            .map(|r| r.descriptor.policy);
        let access = policy
            .map(|p| p.access(caller, &state.parties))
            .unwrap_or_default();
        for (name, section) in &mut state.sections {
            if !access.can_read(name) {
                section.disclosure = None;
            }
        }
        Ok(Some(state))
    }

    /// Whether another event already holds `origin_seq` of this node.
    async fn origin_taken(&self, seq: OriginSeq, ours: &EventId) -> ApiResult<bool> {
        let found = self
            .node
            .store()
            .events(&EventFilter {
                origin_node: Some(self.me().clone()),
                after_origin_seq: Some(OriginSeq(seq.0.saturating_sub(1))),
                limit: Some(1),
                ..Default::default()
            })
            .await?;
        Ok(found
            .first()
            .is_some_and(|r| r.event().origin_seq == seq && r.id() != *ours))
    }
}

type Ctx = AxState<Arc<ApiContext>>;

/// A request authenticated by its actor-key signature: the caller and the body it signed.
/// Taken last by a handler (it consumes the body).
struct Signed {
    caller: Actor,
    body: Bytes,
}

impl axum::extract::FromRequest<Arc<ApiContext>> for Signed {
    type Rejection = ApiError;

    async fn from_request(
        req: axum::extract::Request,
        ctx: &Arc<ApiContext>,
    ) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
        let tls = parts.extensions.get::<Authenticated>();
        let caller = match tls {
            // Mutual TLS without a request signature: the connection authenticates.
            Some(tls) if !parts.headers.contains_key(SIGNATURE_HEADER) => {
                ctx.connection_caller(tls, &parts.headers)?
            }
            _ => {
                let caller = ctx.authenticate(&parts.method, &parts.uri, &parts.headers, &body)?;
                // Over TLS, the connection's key must be the signer's.
                if let Some(tls) = tls {
                    if tls.id != caller.id.as_str() {
                        return Err(ApiError::new(
                            ErrorCode::Unauthenticated,
                            format!(
                                "the request is signed by {} on a connection of {}",
                                caller.id, tls.id
                            ),
                        ));
                    }
                }
                caller
            }
        };
        Ok(Signed { caller, body })
    }
}

/// The API's routes.
pub(crate) fn router(ctx: Arc<ApiContext>) -> Router {
    Router::new()
        .route(api::HEALTH, get(health))
        .route(api::METRICS, get(metrics))
        .route(api::SEQUENCE, post(reserve))
        .route(api::INTENTS, post(intents))
        .route(api::SUBMIT, post(submit))
        .route(api::EVENTS, get(events))
        .route(&format!("{}/{{id}}", api::EVENTS), get(outcome))
        .route(&format!("{}/{{id}}", api::STATES), get(state))
        .route(&format!("{}/{{id}}", api::STATUS), get(status))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .with_state(ctx)
}

async fn health(AxState(ctx): Ctx) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        node: ctx.me().clone(),
    })
}

async fn metrics(AxState(ctx): Ctx) -> impl IntoResponse {
    let text = ctx.metrics.render(
        ctx.node.committed_counts(),
        ctx.node.witness_alarms().len(),
        ctx.started.elapsed().as_secs_f64(),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}

async fn reserve(
    AxState(ctx): Ctx,
    Signed { caller, .. }: Signed,
) -> ApiResult<Json<SequenceGrant>> {
    ctx.own_actor(&caller)?;
    let last = ctx.node.store().last_origin_seq(ctx.me()).await?;
    let mut next = ctx.next_seq.lock().await;
    *next = (*next).max(last.0 + 1);
    let seq = *next;
    *next += 1;
    Ok(Json(SequenceGrant {
        origin_node: ctx.me().clone(),
        origin_seq: OriginSeq(seq),
    }))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))
}

fn verdict(v: &sst::node::Verdict) -> ApiResult<Json<VerdictBody>> {
    VerdictBody::from_verdict(v)
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, format!("unknown verdict {v:?}")))
}

async fn intents(AxState(ctx): Ctx, Signed { body, .. }: Signed) -> ApiResult<Json<VerdictBody>> {
    let SignedIntent {
        signed,
        disclosures,
    } = parse(&body)?;
    let e = &signed.event;
    if e.origin_node != *ctx.me() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "the intent originates at {}; sign it with origin node {}",
                e.origin_node,
                ctx.me()
            ),
        ));
    }
    if ctx.origin_taken(e.origin_seq, &signed.id).await? {
        return Err(origin_taken(e.origin_seq));
    }
    // A change of a state this node does not sequence is forwarded to its home by the node.
    if e.kind != EventKind::Create
        && e.kind != EventKind::ActorChange
        && e.kind != EventKind::DeployContract
        && ctx.node.home_of(&e.state_id).await?.is_none()
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("state {} is unknown on node {}", e.state_id, ctx.me()),
        ));
    }
    let (seq, id) = (e.origin_seq, signed.id);
    let v = ctx.node.ingest(signed, disclosures).await?;
    if matches!(v, sst::node::Verdict::Refused { .. }) && ctx.origin_taken(seq, &id).await? {
        return Err(origin_taken(seq));
    }
    verdict(&v)
}

fn origin_taken(seq: OriginSeq) -> ApiError {
    ApiError::new(
        ErrorCode::OriginTaken,
        format!("origin sequence {seq} is used by another event: reserve a new one and sign again"),
    )
}

async fn submit(
    AxState(ctx): Ctx,
    Signed { caller, body }: Signed,
) -> ApiResult<Json<VerdictBody>> {
    ctx.own_actor(&caller)?;
    let CustodySubmit { actor, intent } = parse(&body)?;
    if !ctx.custody.contains(&actor) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("node {} holds no key of {actor} in custody", ctx.me()),
        ));
    }
    let v = ctx.node.submit(&actor, intent.into()).await?;
    verdict(&v)
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn outcome(
    AxState(ctx): Ctx,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
    _: Signed,
) -> ApiResult<Json<OutcomeBody>> {
    let event: EventId = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, format!("`{id}` is not an event id")))?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    loop {
        if let Some(outcome) = ctx.node.outcome(&event).await? {
            return Ok(Json(OutcomeBody { event, outcome }));
        }
        if Instant::now() >= deadline {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("event {event} is not recorded on node {}", ctx.me()),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn state(
    AxState(ctx): Ctx,
    Path(id): Path<String>,
    Signed { caller, .. }: Signed,
) -> ApiResult<Json<State>> {
    let id = StateId::from(id.as_str());
    let not_found = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!("state {id} is not held by node {}", ctx.me()),
        )
    };
    let held = ctx.node.state(&id).await?.ok_or_else(not_found)?;
    match ctx.narrow(&caller.id, held).await? {
        Some(s) => Ok(Json(s)),
        None => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("{} is no party of state {id}", caller.id),
        )),
    }
}

async fn status(
    AxState(ctx): Ctx,
    Path(id): Path<String>,
    _: Signed,
) -> ApiResult<Json<StatusBody>> {
    let id = StateId::from(id.as_str());
    match ctx.node.sync_status(&id).await? {
        Some(s) => Ok(Json(
            StatusBody::from(&s).with_protocol(protocol_of(&ctx.node, &id).await?),
        )),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("node {} neither holds nor refused state {id}", ctx.me()),
        )),
    }
}

/// The sync protocol (`home`, `endorsed`) of the contract version the node holds state `id`
/// at, from that version's deployed descriptor; `None` when the node holds no copy (it only
/// refused one) or not the contract.
async fn protocol_of(node: &Node, id: &StateId) -> Result<Option<&'static str>, NodeError> {
    let Some(state) = node.store().state(id).await? else {
        return Ok(None);
    };
    let record = node.store().contract(&state.contract).await?;
    Ok(record.map(|r| r.descriptor.protocol()))
}

/// The form of the event stream's lines.
enum LineFormat {
    /// A [`StreamedEvent`]: position and record.
    Record,
    /// The CloudEvents notifications the sinks publish, through this filter.
    CloudEvents(sst_notify::Filter),
}

async fn events(
    AxState(ctx): Ctx,
    Query(q): Query<api::EventsQuery>,
    Signed { caller, .. }: Signed,
) -> ApiResult<Response> {
    let follow = q.follow.unwrap_or(false);
    let format = match q.format.as_deref() {
        None | Some("record") => LineFormat::Record,
        Some(api::FORMAT_CLOUDEVENTS) => LineFormat::CloudEvents(
            sst_notify::Filter::new(&q.filter_spec())
                .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?,
        ),
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "format `{other}`: expected `record` or `{}`",
                    api::FORMAT_CLOUDEVENTS
                ),
            ))
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
    let pos = q.after.unwrap_or(0);
    tokio::spawn(stream_events(
        ctx.clone(),
        caller.id,
        pos,
        follow,
        format,
        tx,
    ));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Feeds the event stream: the log's event entries after `pos` that `caller` may read, one
/// NDJSON line each (a record, or its CloudEvents notifications that pass the filter); with
/// `follow`, keeps looking until the client leaves or the node stops.
async fn stream_events(
    ctx: Arc<ApiContext>,
    caller: ActorId,
    mut pos: u64,
    follow: bool,
    format: LineFormat,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let mut stopping = ctx.stopping.clone();
    loop {
        let entries = match ctx.node.store().log(pos, Some(PAGE)).await {
            Ok(e) => e,
            Err(e) => {
                warn!(node = %ctx.me(), error = %e, after = pos, "event stream: log not readable");
                return;
            }
        };
        let full_page = entries.len() == PAGE;
        for entry in entries {
            pos = entry.pos;
            if entry.kind != LogKind::Event {
                continue;
            }
            let Ok(id) = entry.subject.parse::<EventId>() else {
                warn!(node = %ctx.me(), subject = %entry.subject, "event stream: bad log subject");
                continue;
            };
            let record = match ctx.node.store().event(&id).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    warn!(node = %ctx.me(), event = %id, error = %e, "event stream: event not readable");
                    return;
                }
            };
            let Some(record) = readable(&ctx, &caller, record).await else {
                continue;
            };
            let lines = match &format {
                LineFormat::Record => match serde_json::to_string(&StreamedEvent {
                    pos: entry.pos,
                    record,
                }) {
                    Ok(l) => vec![l],
                    Err(e) => {
                        warn!(event = %id, error = %e, "event stream: not serialisable");
                        continue;
                    }
                },
                LineFormat::CloudEvents(filter) => {
                    sst_notify::notifications(ctx.me(), entry.pos, &record)
                        .into_iter()
                        .filter(|n| filter.matches(n))
                        .map(|n| n.to_json())
                        .collect()
                }
            };
            for mut line in lines {
                line.push('\n');
                if tx.send(Ok(Bytes::from(line))).await.is_err() {
                    return;
                }
            }
        }
        if full_page {
            continue;
        }
        if !follow || *stopping.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => return,
            _ = tx.closed() => return,
        }
    }
}

/// `record` as `caller` may see it: events of states it is a party of, with the plaintext
/// of the sections it may read only; events of no state (actor changes, rejected creates)
/// only to their signer.
async fn readable(
    ctx: &ApiContext,
    caller: &ActorId,
    mut record: EventRecord,
) -> Option<EventRecord> {
    let state = ctx
        .node
        .state(&record.event().state_id)
        .await
        .ok()
        .flatten();
    let Some(state) = state else {
        return (record.event().actor == *caller).then_some(record);
    };
    let narrowed = ctx.narrow(caller, state).await.ok().flatten()?;
    let readable: BTreeMap<_, _> = std::mem::take(&mut record.disclosures)
        .into_iter()
        .filter(|(name, _)| {
            narrowed
                .sections
                .get(name)
                .is_some_and(|s| s.disclosure.is_some())
        })
        .collect();
    record.disclosures = readable;
    Some(record)
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
