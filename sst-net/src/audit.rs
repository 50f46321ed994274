//! Auditing a node's log and states with its peers over the network (`GET /sst/v1/audit`).
//!
//! A peer answers an authenticated node with an [`AuditAnswer`]: a fresh checkpoint of its own
//! log (node-signed), the latest checkpoint it witnessed from the asker, and the head (version
//! and root) of every state the asker takes part in. [`compare`] turns the answer and what the
//! asker holds into [`AuditFinding`]s: the asker's log no longer holding what a peer witnessed
//! (a cut or rewritten tail, which no local check can see), a peer whose log rolled back or
//! forked since the asker witnessed it, and shared states whose roots differ at the same
//! version. The handler is served beside the sync routes once the node is running
//! ([`AuditSlot`]).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sst_core::{
    Checkpoint, LogEntry, NodeId, NodeRegistry, SignedCheckpoint, StateId, StateRoot, Store,
    StoreError, Witnessed,
};
use sst_node::Node;

use crate::error::ClientError;
use crate::tls::{Authenticated, H2Client};

/// The audit route on the node-to-node listener.
pub const AUDIT_PATH: &str = "/sst/v1/audit";

/// The running node the audit route answers from, set once the node has started (until then
/// the route answers `503`).
pub type AuditSlot = Arc<OnceLock<Arc<Node>>>;

/// The head of one state as a node holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHead {
    /// The state.
    pub state_id: StateId,
    /// Its latest version there.
    pub version: u64,
    /// That version's root.
    pub root: StateRoot,
}

/// What a peer answers an audit request with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditAnswer {
    /// The peer's own log head, signed just now with its node key.
    pub checkpoint: SignedCheckpoint,
    /// The latest checkpoint of the asker's log the peer holds (received during sync).
    pub witnessed: Option<SignedCheckpoint>,
    /// The heads of the states the asker takes part in (one of its actors is a party).
    pub states: Vec<StateHead>,
}

/// Why an audit request failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The peer could not be reached or answered with an error status.
    #[error("peer {addr}: {detail}")]
    Peer {
        /// The peer's address.
        addr: String,
        /// What happened.
        detail: String,
    },
    /// The connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The local store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `GET /sst/v1/audit` from an authenticated node.
pub(crate) async fn answer(
    State(slot): State<AuditSlot>,
    Extension(peer): Extension<Authenticated>,
) -> Response {
    let Some(node) = slot.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "node not started").into_response();
    };
    let asker = NodeId::from(peer.id.as_str());
    match build_answer(node, &asker).await {
        Ok(Some(answer)) => Json(answer).into_response(),
        Ok(None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "this node signs no checkpoints (no node key)",
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn build_answer(node: &Node, asker: &NodeId) -> Result<Option<AuditAnswer>, AuditError> {
    let checkpoint = match node.checkpoint().await {
        Ok(Some(cp)) => cp,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(AuditError::Peer {
                addr: node.id().to_string(),
                detail: e.to_string(),
            })
        }
    };
    let store = node.store();
    let witnessed = store.checkpoints(asker).await?.pop();
    let mut states = Vec::new();
    for id in store.state_ids().await? {
        let Some(state) = store.state(&id).await? else {
            continue;
        };
        let shared = state
            .parties
            .actors()
            .iter()
            .any(|a| node.actor(a).is_some_and(|actor| actor.node == *asker));
        if shared {
            states.push(StateHead {
                state_id: state.id.clone(),
                version: state.version,
                root: state.root,
            });
        }
    }
    Ok(Some(AuditAnswer {
        checkpoint,
        witnessed,
        states,
    }))
}

/// Asks the peer behind `client` for its [`AuditAnswer`], within `timeout`.
///
/// # Errors
/// [`AuditError::Peer`] for a timeout, an error status or an unreadable answer;
/// [`AuditError::Client`] when no connection can be made.
pub async fn ask(client: &H2Client, timeout: Duration) -> Result<AuditAnswer, AuditError> {
    let peer = |detail: String| AuditError::Peer {
        addr: client.addr().to_owned(),
        detail,
    };
    let request = || {
        Request::builder()
            .method(Method::GET)
            .uri(AUDIT_PATH)
            .body(Body::empty())
            .unwrap_or_default()
    };
    let response = tokio::time::timeout(timeout, client.send(request))
        .await
        .map_err(|_| peer(format!("no answer within {timeout:?}")))??;
    let status = response.status();
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .map_err(|_| peer(format!("answer not complete within {timeout:?}")))?
        .map_err(|e| peer(format!("reading the answer: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(peer(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    serde_json::from_slice(&body).map_err(|e| peer(format!("unreadable answer: {e}")))
}

/// What one audit found wrong. Each names the node it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditFinding {
    /// The peer's checkpoint is not signed by its registered node key.
    BadCheckpoint {
        /// The peer.
        peer: NodeId,
        /// Why it does not verify.
        detail: String,
    },
    /// The peer witnessed this node's log at a position it no longer reaches: its tail was
    /// cut (or the whole log replaced) after the peer saw it.
    OwnLogCut {
        /// The witnessing peer.
        peer: NodeId,
        /// Position the peer witnessed.
        witnessed: u64,
        /// This node's log head now.
        head: u64,
    },
    /// The peer witnessed another hash at a position of this node's log: the log was
    /// rewritten from there on.
    OwnLogRewritten {
        /// The witnessing peer.
        peer: NodeId,
        /// The position.
        pos: u64,
    },
    /// The peer's checkpoint (or the one it says it witnessed from us) is not signed by the
    /// right key.
    BadWitness {
        /// The peer.
        peer: NodeId,
        /// Why.
        detail: String,
    },
    /// The peer's log is shorter than, or forked from, what this node witnessed from it.
    PeerLog {
        /// The peer.
        peer: NodeId,
        /// How it relates to the witnessed checkpoint.
        relation: String,
    },
    /// A shared state has different roots here and at the peer for the same version.
    StateDiverged {
        /// The peer.
        peer: NodeId,
        /// The state.
        state: StateId,
        /// The version.
        version: u64,
        /// Root here.
        ours: StateRoot,
        /// Root at the peer.
        theirs: StateRoot,
    },
    /// The peer holds a shared state this node does not have at all.
    StateMissing {
        /// The peer.
        peer: NodeId,
        /// The state.
        state: StateId,
        /// The version the peer holds.
        version: u64,
    },
}

impl AuditFinding {
    /// A short rule name (`checkpoint`, `own_log`, `peer_log`, `state`).
    pub fn rule(&self) -> &'static str {
        match self {
            AuditFinding::BadCheckpoint { .. } | AuditFinding::BadWitness { .. } => "checkpoint",
            AuditFinding::OwnLogCut { .. } | AuditFinding::OwnLogRewritten { .. } => "own_log",
            AuditFinding::PeerLog { .. } => "peer_log",
            AuditFinding::StateDiverged { .. } | AuditFinding::StateMissing { .. } => "state",
        }
    }
}

impl std::fmt::Display for AuditFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditFinding::BadCheckpoint { peer, detail } => {
                write!(f, "peer {peer}: its checkpoint does not verify: {detail}")
            }
            AuditFinding::OwnLogCut {
                peer,
                witnessed,
                head,
            } => write!(
                f,
                "peer {peer} witnessed this log at position {witnessed}, but it now ends at {head}: its tail was cut"
            ),
            AuditFinding::OwnLogRewritten { peer, pos } => write!(
                f,
                "peer {peer} witnessed another entry at position {pos} of this log: it was rewritten"
            ),
            AuditFinding::BadWitness { peer, detail } => {
                write!(f, "peer {peer}: the checkpoint it witnessed from this node does not verify: {detail}")
            }
            AuditFinding::PeerLog { peer, relation } => write!(f, "peer {peer}: {relation}"),
            AuditFinding::StateDiverged {
                peer,
                state,
                version,
                ours,
                theirs,
            } => write!(
                f,
                "state {state} version {version}: root {ours} here, {theirs} at peer {peer}"
            ),
            AuditFinding::StateMissing {
                peer,
                state,
                version,
            } => write!(
                f,
                "state {state}: peer {peer} holds version {version}, this node has no such state"
            ),
        }
    }
}

/// How the shared states compare (beside the findings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateTally {
    /// Same version and root.
    pub agree: usize,
    /// The peer is at an older version (it has not caught up yet).
    pub peer_behind: usize,
    /// This node is at an older version.
    pub we_are_behind: usize,
}

/// The outcome of auditing against one peer.
#[derive(Debug, Clone, Default)]
pub struct PeerAudit {
    /// The peer's log head position (from its verified checkpoint).
    pub peer_head: u64,
    /// The position at which the peer witnessed this node's log, if it did.
    pub witnessed_us_at: Option<u64>,
    /// Shared states compared.
    pub states: StateTally,
    /// What is wrong.
    pub findings: Vec<AuditFinding>,
}

/// Compares a peer's `answer` with what this node holds: its own `store` (log and states)
/// and the latest checkpoint of the peer it witnessed (from its checkpoint table).
///
/// # Errors
/// [`AuditError::Store`] when the local store cannot be read.
pub async fn compare(
    me: &NodeId,
    peer: &NodeId,
    answer: &AuditAnswer,
    registry: &NodeRegistry,
    store: &dyn Store,
) -> Result<PeerAudit, AuditError> {
    let mut out = PeerAudit {
        peer_head: answer.checkpoint.checkpoint.pos,
        ..PeerAudit::default()
    };
    // The peer's own log against what this node witnessed from it.
    if answer.checkpoint.checkpoint.node != *peer {
        out.findings.push(AuditFinding::BadCheckpoint {
            peer: peer.clone(),
            detail: format!(
                "it is the checkpoint of node {}",
                answer.checkpoint.checkpoint.node
            ),
        });
    } else if let Err(e) = answer.checkpoint.verify(registry) {
        out.findings.push(AuditFinding::BadCheckpoint {
            peer: peer.clone(),
            detail: e.to_string(),
        });
    } else if let Some(seen) = store.checkpoints(peer).await?.pop() {
        match Witnessed::compare(&seen.checkpoint, &answer.checkpoint.checkpoint) {
            Witnessed::Consistent => {}
            Witnessed::RolledBack {
                witnessed,
                reported,
            } => out.findings.push(AuditFinding::PeerLog {
                peer: peer.clone(),
                relation: format!(
                    "its log ends at {reported}, but this node witnessed it at {witnessed}: rolled back"
                ),
            }),
            Witnessed::Forked { pos } => out.findings.push(AuditFinding::PeerLog {
                peer: peer.clone(),
                relation: format!("it signed two different heads at position {pos}: forked"),
            }),
        }
    }
    // This node's log against what the peer witnessed from it.
    if let Some(w) = &answer.witnessed {
        out.witnessed_us_at = Some(w.checkpoint.pos);
        if w.checkpoint.node != *me {
            out.findings.push(AuditFinding::BadWitness {
                peer: peer.clone(),
                detail: format!("it is a checkpoint of node {}", w.checkpoint.node),
            });
        } else if let Err(e) = w.verify(registry) {
            out.findings.push(AuditFinding::BadWitness {
                peer: peer.clone(),
                detail: e.to_string(),
            });
        } else if let Some(f) = check_own_log(peer, &w.checkpoint, store).await? {
            out.findings.push(f);
        }
    }
    // Shared states.
    let mut theirs: BTreeMap<&StateId, &StateHead> = BTreeMap::new();
    for h in &answer.states {
        theirs.insert(&h.state_id, h);
    }
    for (id, head) in theirs {
        match store.state(id).await? {
            None => out.findings.push(AuditFinding::StateMissing {
                peer: peer.clone(),
                state: id.clone(),
                version: head.version,
            }),
            Some(ours) if ours.version == head.version => {
                if ours.root == head.root {
                    out.states.agree += 1;
                } else {
                    out.findings.push(AuditFinding::StateDiverged {
                        peer: peer.clone(),
                        state: id.clone(),
                        version: head.version,
                        ours: ours.root,
                        theirs: head.root,
                    });
                }
            }
            Some(ours) if ours.version > head.version => {
                // The peer may not have caught up yet; an older version there is compared
                // against our history of that version.
                match store.state_at(id, head.version).await? {
                    Some(old) if old.root != head.root => {
                        out.findings.push(AuditFinding::StateDiverged {
                            peer: peer.clone(),
                            state: id.clone(),
                            version: head.version,
                            ours: old.root,
                            theirs: head.root,
                        })
                    }
                    _ => out.states.peer_behind += 1,
                }
            }
            Some(_) => out.states.we_are_behind += 1,
        }
    }
    Ok(out)
}

/// Whether this node's log still holds what a peer witnessed at `witnessed`.
async fn check_own_log(
    peer: &NodeId,
    witnessed: &Checkpoint,
    store: &dyn Store,
) -> Result<Option<AuditFinding>, AuditError> {
    if witnessed.pos == 0 {
        return Ok(None);
    }
    let entry: Option<LogEntry> = store
        .log(witnessed.pos - 1, Some(1))
        .await?
        .into_iter()
        .find(|e| e.pos == witnessed.pos);
    Ok(match entry {
        None => Some(AuditFinding::OwnLogCut {
            peer: peer.clone(),
            witnessed: witnessed.pos,
            head: store.log_head().await?.pos,
        }),
        Some(e) if e.hash != witnessed.head => Some(AuditFinding::OwnLogRewritten {
            peer: peer.clone(),
            pos: witnessed.pos,
        }),
        Some(_) => None,
    })
}
