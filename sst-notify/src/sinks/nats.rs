//! NATS JetStream sink: notifications published to a JetStream stream (created if missing)
//! with an acknowledged publish per notification, over `async-nats`.
//!
//! Each notification is one message on the subject its topic template gives, its body the
//! CloudEvents JSON (structured mode), its `Nats-Msg-Id` header [`message_id`]: the
//! notification id qualified by its source (`sst://seller/<id>`). The server drops a message
//! whose id it already stored within the stream's duplicate window, so a batch the notifier
//! publishes again after a failure is not stored twice — while the same event notified by two
//! nodes into one stream (same notification id, different source, different redaction) is
//! stored once per node, as CloudEvents identifies an event by source and id together. Publishes are
//! pipelined (up to `max_in_flight` awaiting their `PubAck`) on one connection, so the stream
//! holds them in the order given; [`Sink::publish`] returns `Ok` only once every `PubAck`
//! arrived. After a failure the next publish connects again and re-checks the stream.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::context::{ContextBuilder, PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::Context;
use async_nats::{ConnectOptions, ServerAddr};
use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::timeout;

use super::broker_options;
use crate::{Notification, Sink, SinkError, SinkSpec, TopicTemplate};

/// The stream used when the `stream` option is not set.
pub const DEFAULT_STREAM: &str = "SST_NOTIFICATIONS";

/// The CloudEvents structured-mode content type, sent as the `Content-Type` header.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Options this sink reads from `[sink.options]`.
pub const OPTIONS: [&str; 5] = [
    "stream",
    "subjects",
    "duplicate_window_ms",
    "max_in_flight",
    broker_options::TIMEOUT_MS,
];

/// The server's own default duplicate window (2 minutes).
const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Publishes awaiting their `PubAck` at once unless configured.
const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Publishes notifications to a NATS JetStream stream, acknowledged and deduplicated by id.
///
/// Configured by a [`SinkSpec`] of kind `nats`: `url` a NATS server (`nats://127.0.0.1:4222`),
/// `topic` the subject template, and the options `stream` (default [`DEFAULT_STREAM`]),
/// `subjects` (comma-separated subjects the stream captures when the sink creates it; default
/// the template's fixed text, or its literal prefix up to the first placeholder followed by
/// `>`: `sst.>` for the default template), `duplicate_window_ms` (default 2 minutes),
/// `max_in_flight` (default 1024) and `timeout_ms` (connecting, or waiting for any one
/// `PubAck`; default 10 s). An existing stream is used as it is.
///
/// ```toml
/// [[sink]]
/// name = "deals-to-nats"
/// kind = "nats"
/// url = "nats://127.0.0.1:4222"
/// topic = "sst.{contract}.{name}.{outcome}"     # the subject
/// [sink.options]
/// stream = "SST_NOTIFICATIONS"
/// subjects = "sst.>"
/// ```
pub struct NatsSink {
    name: String,
    url: String,
    stream: StreamConfig,
    subject: TopicTemplate,
    max_in_flight: usize,
    timeout: Duration,
    /// The JetStream context of the current connection, `None` until the first publish or
    /// after a failure. The lock also keeps concurrent batches from interleaving.
    jetstream: Mutex<Option<Context>>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("stream", &self.stream.name)
            .field("subject", &self.subject.as_str())
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Checks `spec` and builds the sink; the connection is opened by the first publish.
    ///
    /// # Errors
    /// [`SinkError::Config`] naming what is wrong: a URL that is not a NATS server address, an
    /// unknown option, a stream name with `.`, `*`, `>`, `/`, `\` or whitespace, an empty
    /// subject in `subjects`, a template whose subjects cannot be derived (set `subjects`),
    /// a `duplicate_window_ms`, `max_in_flight` or `timeout_ms` that is not a positive number.
    pub fn new(spec: &SinkSpec) -> Result<Self, SinkError> {
        spec.check_options(&OPTIONS)?;
        spec.url.parse::<ServerAddr>().map_err(|error| {
            spec.config_error(format!(
                "url {:?} is not a NATS server address: {error}",
                spec.url
            ))
        })?;
        let stream = broker_options::text(spec, "stream", DEFAULT_STREAM)?;
        if stream
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace())
        {
            return Err(spec.config_error(format!(
                "option `stream` = {stream:?}: a stream name may not contain `.`, `*`, `>`, \
                 `/`, `\\` or whitespace"
            )));
        }
        let subjects = match spec.option("subjects") {
            Some(list) => {
                let subjects: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
                if subjects.iter().any(String::is_empty) {
                    return Err(spec.config_error(format!(
                        "option `subjects` = {list:?} has an empty subject"
                    )));
                }
                subjects
            }
            None => vec![default_subjects(&spec.topic).ok_or_else(|| {
                spec.config_error(format!(
                    "topic {:?} starts with a placeholder: set the option `subjects` to what \
                     the stream captures",
                    spec.topic.as_str()
                ))
            })?],
        };
        let duplicate_window = match broker_options::positive(spec, "duplicate_window_ms")? {
            Some(ms) => Duration::from_millis(ms),
            None => DEFAULT_DUPLICATE_WINDOW,
        };
        let max_in_flight = match broker_options::positive(spec, "max_in_flight")? {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => DEFAULT_MAX_IN_FLIGHT,
        };
        Ok(Self {
            name: spec.name.clone(),
            url: spec.url.clone(),
            stream: StreamConfig {
                name: stream,
                subjects,
                duplicate_window,
                storage: StorageType::File,
                ..StreamConfig::default()
            },
            subject: spec.topic.clone(),
            max_in_flight,
            timeout: broker_options::timeout(spec)?,
            jetstream: Mutex::new(None),
        })
    }

    /// Builds the sink, connects and creates the stream if it is missing, so that a wrong URL
    /// or stream shows at start-up rather than at the first notification.
    ///
    /// # Errors
    /// As [`NatsSink::new`]; [`SinkError::Unreachable`] when the server does not answer within
    /// the timeout; [`SinkError::Config`] when the server refuses the credentials or the
    /// stream (e.g. its subjects overlap another stream's).
    pub async fn connect(spec: &SinkSpec) -> Result<Self, SinkError> {
        let sink = Self::new(spec)?;
        let jetstream = sink.open().await?;
        *sink.jetstream.lock().await = Some(jetstream);
        Ok(sink)
    }

    /// The stream notifications are stored in.
    pub fn stream(&self) -> &str {
        &self.stream.name
    }

    /// The subjects the stream captures when this sink creates it.
    pub fn stream_subjects(&self) -> &[String] {
        &self.stream.subjects
    }

    fn unreachable(&self, detail: String) -> SinkError {
        SinkError::Unreachable {
            sink: self.name.clone(),
            detail,
        }
    }

    /// Connects and makes sure the stream exists.
    async fn open(&self) -> Result<Context, SinkError> {
        let steps = async {
            let client = ConnectOptions::new()
                .name(format!("sst-notify {}", self.name))
                .connection_timeout(self.timeout)
                .request_timeout(Some(self.timeout))
                .connect(self.url.as_str())
                .await
                .map_err(|error| {
                    let detail = format!("connecting to {}: {error}", self.url);
                    match error.kind() {
                        async_nats::ConnectErrorKind::Authentication
                        | async_nats::ConnectErrorKind::AuthorizationViolation => {
                            SinkError::Config {
                                sink: self.name.clone(),
                                detail,
                            }
                        }
                        _ => self.unreachable(detail),
                    }
                })?;
            let jetstream = ContextBuilder::new()
                .timeout(self.timeout)
                .max_ack_inflight(self.max_in_flight)
                .build(client);
            jetstream
                .get_or_create_stream(self.stream.clone())
                .await
                .map_err(|error| {
                    use async_nats::jetstream::context::CreateStreamErrorKind as Kind;
                    let detail = format!("creating stream {}: {error}", self.stream.name);
                    match error.kind() {
                        Kind::JetStream(_) | Kind::InvalidStreamName => SinkError::Config {
                            sink: self.name.clone(),
                            detail,
                        },
                        _ => self.unreachable(detail),
                    }
                })?;
            Ok(jetstream)
        };
        timeout(self.timeout, steps).await.map_err(|_| {
            broker_options::timed_out(
                &self.name,
                &format!("connecting to {} and its stream", self.url),
                self.timeout,
            )
        })?
    }

    /// Sends one notification; the returned future resolves to its `PubAck`.
    async fn send(
        &self,
        jetstream: &Context,
        notification: &Notification,
    ) -> Result<PublishAckFuture, SinkError> {
        let subject = self.subject.render(notification);
        let message = PublishMessage::build()
            .payload(notification.to_json().into())
            .message_id(message_id(notification))
            .header("Content-Type", CONTENT_TYPE);
        match timeout(
            self.timeout,
            jetstream.send_publish(subject.clone(), message),
        )
        .await
        {
            Err(_) => Err(broker_options::timed_out(
                &self.name,
                &format!("sending notification {}", notification.id),
                self.timeout,
            )),
            Ok(Err(error)) => Err(SinkError::NotConfirmed {
                sink: self.name.clone(),
                id: notification.id.clone(),
                detail: format!("sending it to subject {subject:?}: {error}"),
            }),
            Ok(Ok(ack)) => Ok(ack),
        }
    }

    /// Waits for the `PubAck` of `notification` (a duplicate's counts: the server has it).
    async fn acknowledged(
        &self,
        notification: &Notification,
        ack: PublishAckFuture,
    ) -> Result<(), SinkError> {
        let not_confirmed = |detail: String| SinkError::NotConfirmed {
            sink: self.name.clone(),
            id: notification.id.clone(),
            detail,
        };
        match timeout(self.timeout, ack).await {
            Err(_) => Err(not_confirmed(format!(
                "no PubAck within {} ms",
                self.timeout.as_millis()
            ))),
            Ok(Ok(_ack)) => Ok(()),
            Ok(Err(error)) => Err(match error.kind() {
                PublishErrorKind::StreamNotFound => not_confirmed(format!(
                    "no stream captures subject {:?} (stream {} captures {:?})",
                    self.subject.render(notification),
                    self.stream.name,
                    self.stream.subjects
                )),
                PublishErrorKind::BrokenPipe => {
                    self.unreachable(format!("connection lost awaiting {}", notification.id))
                }
                _ => not_confirmed(error.to_string()),
            }),
        }
    }

    /// Publishes `batch` in order with at most `max_in_flight` publishes awaiting their ack.
    async fn publish_on(
        &self,
        jetstream: &Context,
        batch: &[Notification],
    ) -> Result<(), SinkError> {
        let mut in_flight = VecDeque::with_capacity(self.max_in_flight.min(batch.len()));
        for notification in batch {
            if in_flight.len() >= self.max_in_flight {
                if let Some((oldest, ack)) = in_flight.pop_front() {
                    self.acknowledged(oldest, ack).await?;
                }
            }
            let ack = self.send(jetstream, notification).await?;
            in_flight.push_back((notification, ack));
        }
        for (notification, ack) in in_flight {
            self.acknowledged(notification, ack).await?;
        }
        Ok(())
    }
}

/// The `Nats-Msg-Id` of a notification: `<source>/<id>`, e.g. `sst://seller/<event id>#0`
/// (the CloudEvents identity: the same for every re-publication by one node, different for the
/// same event published by another node).
pub fn message_id(notification: &Notification) -> String {
    format!("{}/{}", notification.source, notification.id)
}

/// The subjects a stream must capture for `template`: the template itself when it has no
/// placeholder, else its literal prefix (ending in `.`) followed by `>`; `None` when the
/// template starts with a placeholder or its prefix does not end a token.
fn default_subjects(template: &TopicTemplate) -> Option<String> {
    let text = template.as_str();
    if template.is_fixed() {
        return Some(text.to_owned());
    }
    let prefix = &text[..text.find('{')?];
    (!prefix.is_empty() && prefix.ends_with('.')).then(|| format!("{prefix}>"))
}

#[async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Notification]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut current = self.jetstream.lock().await;
        let jetstream = match current.take() {
            Some(jetstream) => jetstream,
            None => self.open().await?,
        };
        let result = self.publish_on(&jetstream, batch).await;
        match &result {
            Ok(()) => *current = Some(jetstream),
            Err(error) => {
                tracing::warn!(sink = %self.name, %error, "batch not acknowledged; the next publish connects again");
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_subjects_follow_the_template() -> Result<(), crate::FilterError> {
        let subjects = |t: &str| TopicTemplate::parse(t).map(|t| default_subjects(&t));
        assert_eq!(subjects(TopicTemplate::DEFAULT)?.as_deref(), Some("sst.>"));
        assert_eq!(subjects("deals.all")?.as_deref(), Some("deals.all"));
        assert_eq!(subjects("{contract}.x")?, None);
        assert_eq!(subjects("sst-{contract}")?, None);
        Ok(())
    }
}
