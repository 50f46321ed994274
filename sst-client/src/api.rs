//! The client API's routes and wire types (JSON, versioned by the `/v1` path prefix), shared
//! by the node's server and this client so both sides read and write the very same structs.
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `POST /v1/sequence` | — | [`SequenceGrant`] |
//! | `POST /v1/intents` | [`SignedIntent`] | [`VerdictBody`] |
//! | `POST /v1/submit` | [`CustodySubmit`] | [`VerdictBody`] |
//! | `GET /v1/events/{id}?wait=SECS` | — | [`OutcomeBody`] |
//! | `GET /v1/states/{id}` | — | [`sst_core::State`] (redacted to the caller) |
//! | `GET /v1/status/{state}` | — | [`StatusBody`] |
//! | `GET /v1/events?after=POS&follow=true` | — | NDJSON, one [`StreamedEvent`] a line |
//! | `GET /v1/events?format=cloudevents&…` ([`EventsQuery`]) | — | NDJSON, one [`sst_notify::Notification`] (CloudEvents 1.0) a line |
//! | `GET /health` | — | [`Health`] |
//! | `GET /metrics` | — | Prometheus text |
//!
//! Errors answer with an HTTP status and an [`ErrorBody`] whose [`ErrorCode`] is typed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sst_core::{
    ActorId, ContractRef, Disclosure, EventId, EventRecord, NodeId, OriginSeq, Outcome, Parties,
    RejectReason, SignedEvent, StateId, StateRoot,
};
use sst_node::{Intent, NodeSync, SyncStatus, Verdict, WitnessAlarm};

/// Route: reserve the next origin sequence of the node for an intent the caller signs.
pub const SEQUENCE: &str = "/v1/sequence";
/// Route: post an intent signed by the client.
pub const INTENTS: &str = "/v1/intents";
/// Route: custody mode, the node signs for a service actor whose key it holds.
pub const SUBMIT: &str = "/v1/submit";
/// Route prefix: an event's outcome (`/v1/events/{id}`); without an id, the event stream.
pub const EVENTS: &str = "/v1/events";
/// Route prefix: a state (`/v1/states/{id}`).
pub const STATES: &str = "/v1/states";
/// Route prefix: a state's sync status (`/v1/status/{id}`).
pub const STATUS: &str = "/v1/status";
/// Route: liveness, unauthenticated.
pub const HEALTH: &str = "/health";
/// Route: Prometheus metrics, unauthenticated.
pub const METRICS: &str = "/metrics";

/// An origin sequence reserved for the caller: sign the intent with `origin_node` and
/// `origin_seq` and post it to [`INTENTS`]. If the node used the sequence meanwhile, the post
/// answers [`ErrorCode::OriginTaken`]: reserve again and sign again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceGrant {
    /// The node the intent originates at (the caller's actor belongs to it).
    pub origin_node: NodeId,
    /// The reserved sequence.
    pub origin_seq: OriginSeq,
}

/// An intent the client signed itself, and the plaintext of the sections it writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedIntent {
    /// The signed event.
    pub signed: SignedEvent,
    /// Plaintext + salt of each written section (checked against the signed hashes).
    #[serde(default)]
    pub disclosures: BTreeMap<String, Disclosure>,
}

/// Custody mode: the node signs `intent` as `actor`, a service actor whose key it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodySubmit {
    /// The service actor the node signs for.
    pub actor: ActorId,
    /// What it asks for.
    pub intent: IntentBody,
}

/// An intent on the wire (the state intents of [`sst_node::Intent`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "intent", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum IntentBody {
    /// Create a state; the node it is posted to becomes its home.
    Create {
        /// New state id.
        state_id: StateId,
        /// Governing contract version.
        contract: ContractRef,
        /// Role → actors.
        parties: Parties,
        /// Initial section values.
        sections: BTreeMap<String, Value>,
    },
    /// Replace named sections.
    Change {
        /// Target state.
        state_id: StateId,
        /// New section values.
        sections: BTreeMap<String, Value>,
    },
    /// Call a contract method (its `args` are seen by every node receiving the event).
    Call {
        /// Target state.
        state_id: StateId,
        /// Method name.
        method: String,
        /// Arguments.
        args: Value,
    },
    /// Move a state to a newer contract version.
    Migrate {
        /// Target state.
        state_id: StateId,
        /// New contract version.
        to: ContractRef,
    },
}

impl IntentBody {
    /// The target state.
    pub fn state_id(&self) -> &StateId {
        match self {
            IntentBody::Create { state_id, .. }
            | IntentBody::Change { state_id, .. }
            | IntentBody::Call { state_id, .. }
            | IntentBody::Migrate { state_id, .. } => state_id,
        }
    }
}

impl From<IntentBody> for Intent {
    fn from(body: IntentBody) -> Intent {
        match body {
            IntentBody::Create {
                state_id,
                contract,
                parties,
                sections,
            } => Intent::create(state_id, contract, parties, sections),
            IntentBody::Change { state_id, sections } => Intent::change(state_id, sections),
            IntentBody::Call {
                state_id,
                method,
                args,
            } => Intent::call(state_id, method, args),
            IntentBody::Migrate { state_id, to } => Intent::Migrate { state_id, to },
        }
    }
}

/// What became of an intent ([`sst_node::Verdict`] on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum VerdictBody {
    /// Applied: the state is now at `version` with `root`.
    Applied {
        /// Event id.
        event: EventId,
        /// New version.
        version: u64,
        /// New root.
        root: StateRoot,
    },
    /// Rejected and recorded as rejected.
    Rejected {
        /// Event id.
        event: EventId,
        /// Why.
        reason: RejectReason,
    },
    /// Already recorded: `original` is what happened the first time.
    Duplicate {
        /// Event id.
        event: EventId,
        /// The recorded outcome.
        original: Outcome,
    },
    /// Refused without being recorded.
    Refused {
        /// Event id.
        event: EventId,
        /// Why.
        reason: RejectReason,
    },
}

impl VerdictBody {
    /// The event concerned.
    pub fn event(&self) -> EventId {
        match self {
            VerdictBody::Applied { event, .. }
            | VerdictBody::Rejected { event, .. }
            | VerdictBody::Duplicate { event, .. }
            | VerdictBody::Refused { event, .. } => *event,
        }
    }
    /// Whether the intent was applied.
    pub fn is_applied(&self) -> bool {
        matches!(self, VerdictBody::Applied { .. })
    }
    /// The wire form of `verdict`; `None` for a kind of verdict this version does not know.
    pub fn from_verdict(verdict: &Verdict) -> Option<Self> {
        Some(match verdict {
            Verdict::Applied {
                event,
                version,
                root,
            } => VerdictBody::Applied {
                event: *event,
                version: *version,
                root: *root,
            },
            Verdict::Rejected { event, reason } => VerdictBody::Rejected {
                event: *event,
                reason: reason.clone(),
            },
            Verdict::Duplicate { event, original } => VerdictBody::Duplicate {
                event: *event,
                original: original.clone(),
            },
            Verdict::Refused { event, reason } => VerdictBody::Refused {
                event: *event,
                reason: reason.clone(),
            },
            _ => return None,
        })
    }
}

/// An event's recorded outcome on the node asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBody {
    /// The event.
    pub event: EventId,
    /// Its outcome as recorded there.
    pub outcome: Outcome,
}

/// How far one participant node is with a state ([`sst_node::NodeSync`] on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSyncBody {
    /// The participant node.
    pub node: NodeId,
    /// The latest version it acknowledged.
    pub acknowledged: u64,
    /// Why it is behind, if it refused a change: the event, the version and the typed reason.
    pub refusal: Option<RefusalBody>,
    /// The latest version that node validated by re-executing the contract method (0: none;
    /// a node that cannot read every section relies on the home's signed receipt).
    #[serde(default)]
    pub validated: u64,
}

/// A change a node refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusalBody {
    /// The refused event.
    pub event: EventId,
    /// The version it would have produced.
    pub version: u64,
    /// Why.
    pub reason: RejectReason,
}

/// A witness alarm ([`sst_node::WitnessAlarm`] on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmBody {
    /// The peer whose log is in question.
    pub node: NodeId,
    /// What is wrong (its debug form).
    pub kind: String,
    /// When it was raised (ms since the Unix epoch).
    pub at: i64,
}

/// A state's sync status ([`sst_node::SyncStatus`] on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    /// The state.
    pub state_id: StateId,
    /// Its home node.
    pub home: NodeId,
    /// The version the answering node holds.
    pub version: u64,
    /// Participant nodes (on the home: the others; elsewhere: the answering node).
    pub nodes: Vec<NodeSyncBody>,
    /// The answering node's witness alarms.
    pub witness_alarms: Vec<AlarmBody>,
    /// The sync protocol of the state's contract version (`home`, `endorsed`), from its
    /// deployed descriptor; absent when the answering node holds no copy of the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl StatusBody {
    /// The status naming the state's sync protocol.
    pub fn with_protocol(mut self, protocol: Option<&str>) -> Self {
        self.protocol = protocol.map(str::to_owned);
        self
    }
}

impl From<&NodeSync> for NodeSyncBody {
    fn from(n: &NodeSync) -> Self {
        NodeSyncBody {
            node: n.node.clone(),
            acknowledged: n.acknowledged,
            refusal: n.refusal.as_ref().map(|r| RefusalBody {
                event: r.event,
                version: r.version,
                reason: r.reason.clone(),
            }),
            validated: n.validated,
        }
    }
}

impl From<&WitnessAlarm> for AlarmBody {
    fn from(a: &WitnessAlarm) -> Self {
        AlarmBody {
            node: a.node.clone(),
            kind: format!("{:?}", a.kind),
            at: a.at.0,
        }
    }
}

impl From<&SyncStatus> for StatusBody {
    fn from(s: &SyncStatus) -> Self {
        StatusBody {
            state_id: s.state_id.clone(),
            home: s.home.clone(),
            version: s.version,
            nodes: s.nodes.iter().map(NodeSyncBody::from).collect(),
            witness_alarms: s.witness_alarms.iter().map(AlarmBody::from).collect(),
            protocol: None,
        }
    }
}

/// One line of the event stream: a committed event as the answering node holds it, its
/// disclosures narrowed to the sections the caller may read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamedEvent {
    /// Its position in the node's log (pass it as `after=` to resume).
    pub pos: u64,
    /// The record.
    pub record: EventRecord,
}

/// The query of the event stream (`GET /v1/events`). With `format=cloudevents` each line is
/// a CloudEvents [`sst_notify::Notification`], formatted and filtered exactly as the node's
/// notification sinks do (the caller's view: only sections it may read); the filter lists
/// are comma-separated, as in a sink's `[sink.filter]` (see [`sst_notify::FilterSpec`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Start after this log position (default 0).
    pub after: Option<u64>,
    /// Keep the stream open for new events (default false).
    pub follow: Option<bool>,
    /// `record` (default: [`StreamedEvent`]s) or `cloudevents`.
    pub format: Option<String>,
    /// Contract names (cloudevents only).
    pub contracts: Option<String>,
    /// Method or business-event names (cloudevents only).
    pub names: Option<String>,
    /// `applied` and/or `rejected` (cloudevents only).
    pub outcomes: Option<String>,
    /// State-id prefixes (cloudevents only).
    pub state_prefixes: Option<String>,
}

/// The value of [`EventsQuery::format`] asking for CloudEvents.
pub const FORMAT_CLOUDEVENTS: &str = "cloudevents";

impl EventsQuery {
    /// The filter its lists describe.
    pub fn filter_spec(&self) -> sst_notify::FilterSpec {
        let list = |v: &Option<String>| -> Vec<String> {
            v.as_deref()
                .map(|s| s.split(',').map(str::to_owned).collect())
                .unwrap_or_default()
        };
        sst_notify::FilterSpec {
            contracts: list(&self.contracts),
            names: list(&self.names),
            outcomes: list(&self.outcomes),
            state_prefixes: list(&self.state_prefixes),
        }
    }

    /// The query asking for CloudEvents after `after`, filtered by `filter`.
    pub fn cloudevents(after: u64, follow: bool, filter: &sst_notify::FilterSpec) -> Self {
        let join = |l: &[String]| (!l.is_empty()).then(|| l.join(","));
        EventsQuery {
            after: Some(after),
            follow: Some(follow),
            format: Some(FORMAT_CLOUDEVENTS.to_owned()),
            contracts: join(&filter.contracts),
            names: join(&filter.names),
            outcomes: join(&filter.outcomes),
            state_prefixes: join(&filter.state_prefixes),
        }
    }
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Always `"ok"` when answered.
    pub status: String,
    /// The node's id.
    pub node: NodeId,
}

/// A typed error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No or a bad request signature (401).
    Unauthenticated,
    /// Authenticated, but the caller may not do this (403).
    Forbidden,
    /// No such state, event or route (404).
    NotFound,
    /// The request is malformed (400).
    BadRequest,
    /// The reserved origin sequence was used meanwhile: reserve and sign again (409).
    OriginTaken,
    /// The state is sequenced by another node that cannot be reached through this one (409).
    NotHome,
    /// The node is stopping or overloaded; a retry may help (503).
    Unavailable,
    /// Waited for an outcome that did not arrive in time (504).
    Timeout,
    /// The node failed (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::BadRequest => 400,
            ErrorCode::OriginTaken | ErrorCode::NotHome => 409,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What kind of error.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}
