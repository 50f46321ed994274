//! RabbitMQ sink: notifications as persistent AMQP 0-9-1 messages on a durable topic exchange,
//! confirmed by the broker (publisher confirms), over `lapin`.
//!
//! Each notification becomes one message whose body is the CloudEvents JSON (structured mode,
//! `content_type` `application/cloudevents+json`), `message_id` the notification id (the
//! idempotency key a consumer deduplicates on), `type` the CloudEvents type, `app_id` the
//! source, `delivery_mode` 2 (persistent). The exchange is declared durable and of type `topic`
//! if it does not exist yet. A batch is published in order on one channel in confirm mode and
//! [`Sink::publish`] returns `Ok` only once the broker acknowledged every message; a broken
//! connection is dropped and opened again on the next publish.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind,
    ExchangeKind,
};
use tokio::sync::Mutex;
use tokio::time::timeout;

use super::broker_options;
use crate::{Notification, Sink, SinkError, SinkSpec, TopicTemplate};

/// The CloudEvents structured-mode content type every message carries.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The exchange used when the `exchange` option is not set.
pub const DEFAULT_EXCHANGE: &str = "sst.notifications";

/// Options this sink reads from `[sink.options]`.
pub const OPTIONS: [&str; 3] = ["exchange", "mandatory", broker_options::TIMEOUT_MS];

/// AMQP `delivery_mode` of a persistent message.
const PERSISTENT: u8 = 2;

/// Longest AMQP short string (exchange names, routing keys, message ids), in bytes.
const SHORT_STRING_MAX: usize = 255;

/// An open connection and its channel in confirm mode.
struct Publisher {
    connection: Connection,
    channel: Channel,
}

/// Publishes notifications to a RabbitMQ topic exchange with publisher confirms.
///
/// Configured by a [`SinkSpec`] of kind `rabbitmq`: `url` an AMQP URI
/// (`amqp://guest:guest@127.0.0.1:5672/%2f`, the vhost URL-encoded), `topic` the routing-key
/// template, and the options `exchange` (default [`DEFAULT_EXCHANGE`]), `mandatory`
/// (`true`: a message no queue is bound for comes back and fails the batch, which is retried,
/// instead of being dropped by the broker; default `false`) and `timeout_ms` (connecting, or
/// waiting for any one confirmation; default 10 s).
///
/// ```toml
/// [[sink]]
/// name = "deals-to-rabbitmq"
/// kind = "rabbitmq"
/// url = "amqp://guest:guest@127.0.0.1:5672/%2f"
/// topic = "sst.{contract}.{name}.{outcome}"     # the routing key
/// [sink.options]
/// exchange = "sst.notifications"
/// ```
pub struct RabbitMqSink {
    name: String,
    url: String,
    uri: AMQPUri,
    exchange: String,
    routing_key: TopicTemplate,
    mandatory: bool,
    timeout: Duration,
    /// The current connection, `None` until the first publish or after a failure. The lock
    /// also keeps concurrent batches from interleaving.
    publisher: Mutex<Option<Publisher>>,
}

impl std::fmt::Debug for RabbitMqSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqSink")
            .field("name", &self.name)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key.as_str())
            .finish_non_exhaustive()
    }
}

impl RabbitMqSink {
    /// Checks `spec` and builds the sink; the connection is opened by the first publish.
    ///
    /// # Errors
    /// [`SinkError::Config`] naming what is wrong: a URL that is not an AMQP URI, an unknown
    /// option, an exchange name longer than 255 bytes, a bad `mandatory` or `timeout_ms`.
    pub fn new(spec: &SinkSpec) -> Result<Self, SinkError> {
        spec.check_options(&OPTIONS)?;
        let exchange = broker_options::text(spec, "exchange", DEFAULT_EXCHANGE)?;
        if exchange.len() > SHORT_STRING_MAX {
            return Err(spec.config_error(format!(
                "option `exchange` is {} bytes long, AMQP allows {SHORT_STRING_MAX}",
                exchange.len()
            )));
        }
        let uri = AMQPUri::from_str(&spec.url).map_err(|error| {
            spec.config_error(format!("url {:?} is not an AMQP URI: {error}", spec.url))
        })?;
        Ok(Self {
            name: spec.name.clone(),
            url: spec.url.clone(),
            uri,
            exchange,
            routing_key: spec.topic.clone(),
            mandatory: broker_options::flag(spec, "mandatory", false)?,
            timeout: broker_options::timeout(spec)?,
            publisher: Mutex::new(None),
        })
    }

    /// Builds the sink and opens its connection now (declaring the exchange), so that a wrong
    /// URL, credentials or exchange show at start-up rather than at the first notification.
    ///
    /// # Errors
    /// As [`RabbitMqSink::new`]; [`SinkError::Unreachable`] when the broker does not answer
    /// within the timeout; [`SinkError::Config`] when it refuses the credentials, the vhost or
    /// the exchange declaration (an existing exchange of another type).
    pub async fn connect(spec: &SinkSpec) -> Result<Self, SinkError> {
        let sink = Self::new(spec)?;
        let publisher = sink.open().await?;
        *sink.publisher.lock().await = Some(publisher);
        Ok(sink)
    }

    /// The exchange notifications are published to.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    fn unreachable(&self, detail: String) -> SinkError {
        SinkError::Unreachable {
            sink: self.name.clone(),
            detail,
        }
    }

    /// Opens a connection and a channel in confirm mode, and declares the exchange.
    async fn open(&self) -> Result<Publisher, SinkError> {
        let exchange = &self.exchange;
        let steps = async {
            let properties = ConnectionProperties::default()
                .with_connection_name(format!("sst-notify {}", self.name).into());
            let connection = Connection::connect_uri(self.uri.clone(), properties)
                .await
                .map_err(|error| self.lapin_error("connecting", error))?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| self.lapin_error("opening a channel", error))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|error| self.lapin_error("enabling publisher confirms", error))?;
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|error| {
                    self.lapin_error(
                        &format!("declaring {exchange:?} as a durable topic exchange"),
                        error,
                    )
                })?;
            Ok(Publisher {
                connection,
                channel,
            })
        };
        timeout(self.timeout, steps).await.map_err(|_| {
            broker_options::timed_out(
                &self.name,
                &format!("AMQP handshake with {}", self.url),
                self.timeout,
            )
        })?
    }

    /// Maps a lapin error met while `doing` something: a refusal by the broker that retrying
    /// will not cure (access refused, an existing exchange of another type) is a
    /// configuration error, anything else means the broker could not be used right now.
    fn lapin_error(&self, doing: &str, error: lapin::Error) -> SinkError {
        let detail = format!("{doing}: {error}");
        let refused = matches!(
            error.kind(),
            ErrorKind::ProtocolError(amqp) if matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED | AMQPSoftError::PRECONDITIONFAILED)
                    | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED | AMQPHardError::INVALIDPATH)
            )
        );
        if refused {
            SinkError::Config {
                sink: self.name.clone(),
                detail,
            }
        } else {
            self.unreachable(detail)
        }
    }

    /// Publishes every notification of `batch` in order, then waits for each confirmation.
    async fn publish_on(&self, channel: &Channel, batch: &[Notification]) -> Result<(), SinkError> {
        let options = BasicPublishOptions {
            mandatory: self.mandatory,
            ..BasicPublishOptions::default()
        };
        let mut pending = Vec::with_capacity(batch.len());
        for notification in batch {
            let routing_key = self.routing_key.render(notification);
            for (what, value) in [("id", &notification.id), ("routing key", &routing_key)] {
                if value.len() > SHORT_STRING_MAX {
                    return Err(SinkError::NotConfirmed {
                        sink: self.name.clone(),
                        id: notification.id.clone(),
                        detail: format!(
                            "the {what} is {} bytes long, AMQP allows {SHORT_STRING_MAX}",
                            value.len()
                        ),
                    });
                }
            }
            let properties = BasicProperties::default()
                .with_delivery_mode(PERSISTENT)
                .with_content_type(CONTENT_TYPE.into())
                .with_message_id(notification.id.as_str().into())
                .with_type(notification.kind.as_str().into())
                .with_app_id(notification.source.as_str().into());
            let body = notification.to_json();
            let sent = channel.basic_publish(
                self.exchange.as_str().into(),
                routing_key.as_str().into(),
                options,
                body.as_bytes(),
                properties,
            );
            let confirm = timeout(self.timeout, sent)
                .await
                .map_err(|_| {
                    broker_options::timed_out(
                        &self.name,
                        &format!("sending notification {}", notification.id),
                        self.timeout,
                    )
                })?
                .map_err(|error| {
                    self.lapin_error(&format!("sending notification {}", notification.id), error)
                })?;
            pending.push((notification, routing_key, confirm));
        }
        for (notification, routing_key, confirm) in pending {
            let not_confirmed = |detail: String| SinkError::NotConfirmed {
                sink: self.name.clone(),
                id: notification.id.clone(),
                detail,
            };
            let confirmation = timeout(self.timeout, confirm)
                .await
                .map_err(|_| {
                    not_confirmed(format!(
                        "no confirmation within {} ms",
                        self.timeout.as_millis()
                    ))
                })?
                .map_err(|error| not_confirmed(error.to_string()))?;
            match confirmation {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(returned)) => {
                    return Err(not_confirmed(format!(
                        "returned by the broker ({} {}): no queue is bound for routing key {:?}",
                        returned.reply_code, returned.reply_text, routing_key
                    )));
                }
                Confirmation::Nack(_) => {
                    return Err(not_confirmed("negatively acknowledged (nack)".into()))
                }
                Confirmation::NotRequested => {
                    return Err(not_confirmed("the channel is not in confirm mode".into()))
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for RabbitMqSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Notification]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut publisher = self.publisher.lock().await;
        if publisher
            .as_ref()
            .is_some_and(|open| !open.channel.status().connected())
        {
            tracing::info!(sink = %self.name, "the RabbitMQ connection broke; reconnecting");
            *publisher = None;
        }
        let open = match publisher.take() {
            Some(open) => open,
            None => self.open().await?,
        };
        let result = self.publish_on(&open.channel, batch).await;
        match &result {
            Ok(()) => *publisher = Some(open),
            Err(error) => {
                tracing::warn!(sink = %self.name, %error, "batch not confirmed; the next publish opens a new connection");
                // Best effort, bounded: the connection may already be gone.
                let closing = open
                    .connection
                    .close(200, "sst-notify: batch failed".into());
                if let Ok(Err(close_error)) = timeout(Duration::from_secs(1), closing).await {
                    tracing::debug!(sink = %self.name, %close_error, "closing the failed connection");
                }
            }
        }
        result
    }
}
