//! Business-event notifications: a node's committed log, turned into CloudEvents 1.0 JSON and
//! published to message brokers.
//!
//! The [`Sink`] seam is what a broker adapter implements: publish a batch of
//! [`Notification`]s and return only once the broker has confirmed every one of them. A
//! notifier feeds each sink from the committed log (never from the in-memory path), keeps a
//! durable cursor per sink in the node's own database and advances it only after the
//! confirmation, so delivery is at least once and a crash between commit and publish delays a
//! notification, never loses it. Each notification carries a stable idempotency key
//! ([`Notification::id`]) so consumers can drop duplicates.
//!
//! - [`event`]: the formatter, a committed record → one notification for its outcome
//!   (`sst.<contract>.<method>.<applied|rejected>`) and one per business event, carrying only
//!   the sections the publishing node may read; deterministic JSON.
//! - [`filter`]: subscriptions ([`Filter`]: contract, method or business-event name, outcome,
//!   state-id prefix) and destinations ([`TopicTemplate`], e.g. `sst.{contract}.{name}.{outcome}`).
//! - [`config`]: a `[[sink]]` entry of node.toml ([`SinkConfig`]) validated into a
//!   [`SinkSpec`]; [`SinkSpec::connect`] opens the adapter of its kind.
//! - [`notifier`]: the task per sink ([`Notifier`]) and its counters ([`SinkMetrics`]).
//! - [`sinks`]: the adapters, each behind the cargo feature of its name: `kafka`, `rabbitmq`,
//!   `nats`, `mqtt` (also Solace PubSub+), `postgres` (`NOTIFY`), `redis` (Streams).
//!
//! The client API's event stream (`sst events --cloudevents`) uses the same formatter and
//! filter, on the caller's narrowed view.
//!
//! ```no_run
//! # async fn run(store: std::sync::Arc<dyn sst_core::Store>) -> Result<(), Box<dyn std::error::Error>> {
//! use sst_notify::{Notifier, SinkConfig};
//! let entry: SinkConfig = serde_json::from_value(serde_json::json!({
//!     "name": "deals", "kind": "redis", "url": "redis://127.0.0.1:6379",
//!     "topic": "sst.{contract}", "filter": {"outcomes": ["applied"]}
//! }))?;
//! let spec = entry.validate()?; // a kind compiled out, a bad template: typed errors
//! let handle = Notifier::new(spec, "acme".into(), store).spawn();
//! // … later, at shutdown: the batch in flight is finished and its cursor stored.
//! handle.stop().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod event;
pub mod filter;
pub mod notifier;
pub mod sinks;

pub use config::{ConfigError, SinkConfig, SinkKind, SinkSpec, Start};
pub use event::{notifications, NotificationData};
pub use filter::{Filter, FilterError, FilterSpec, TopicTemplate};
pub use notifier::{Notifier, NotifierHandle, NotifierOptions, SinkMetrics};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One notification: a CloudEvents 1.0 event in its JSON form (structured mode).
///
/// `id` is the idempotency key: the SST event id for the outcome of an intent, or
/// `<event id>#<n>` for the `n`-th business event the contract emitted (from 0). It is the same
/// every time the same committed record is published again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Always `"1.0"`.
    pub specversion: String,
    /// Idempotency key (see the type's documentation).
    pub id: String,
    /// `sst://<node id>`: the publishing node.
    pub source: String,
    /// `sst.<contract>.<method or business-event name>.<applied|rejected>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The state id.
    pub subject: String,
    /// The event's timestamp, RFC 3339 UTC.
    pub time: String,
    /// Always `"application/json"`.
    pub datacontenttype: String,
    /// What the event did, with only the sections the publishing node may read.
    pub data: Value,
    /// Extension attribute: the position of the event's entry in the publishing node's log
    /// (the cursor a sink advances past once the broker confirmed).
    pub sstlogpos: u64,
    /// Extension attribute: the contract name (for routing).
    pub sstcontract: String,
    /// Extension attribute: `applied` or `rejected`.
    pub sstoutcome: String,
}

impl Notification {
    /// The method or business-event name: the part of the type between `sst.<contract>.`
    /// and `.<outcome>` (e.g. `create`, `price_agreed`).
    pub fn name(&self) -> &str {
        let prefix_len = "sst.".len() + self.sstcontract.len() + 1;
        let suffix_len = 1 + self.sstoutcome.len();
        self.kind
            .get(prefix_len..self.kind.len().saturating_sub(suffix_len))
            .unwrap_or_default()
    }

    /// The CloudEvents JSON text of this notification.
    pub fn to_json(&self) -> String {
        // A struct of strings, integers and a JSON value: serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a sink could not publish a batch. The notifier retries the whole batch later (the
/// cursor did not move), so a sink must tolerate re-publishing what it may already have sent.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The broker could not be reached or the connection broke.
    #[error("{sink}: cannot reach the broker: {detail}")]
    Unreachable {
        /// Sink name.
        sink: String,
        /// The client's error.
        detail: String,
    },
    /// The broker refused or did not confirm a message.
    #[error("{sink}: the broker did not confirm notification {id}: {detail}")]
    NotConfirmed {
        /// Sink name.
        sink: String,
        /// The notification's id.
        id: String,
        /// The broker's answer.
        detail: String,
    },
    /// The sink's configuration is wrong (bad URL, bad topic template, …).
    #[error("{sink}: bad configuration: {detail}")]
    Config {
        /// Sink name.
        sink: String,
        /// What is wrong.
        detail: String,
    },
}

/// A broker adapter. Implementations publish in the order given (so notifications of one
/// state arrive in order) and return `Ok` only when the broker has durably accepted every
/// notification of the batch.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// The sink's name (unique per node; also the name of its durable cursor).
    fn name(&self) -> &str;

    /// Publishes `batch` in order.
    ///
    /// # Errors
    /// A [`SinkError`] when any notification was not confirmed; the notifier then publishes
    /// the same batch again later.
    async fn publish(&self, batch: &[Notification]) -> Result<(), SinkError>;
}
