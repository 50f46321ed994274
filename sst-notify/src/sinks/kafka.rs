//! Kafka sink: notifications as Kafka records through librdkafka (`rdkafka`), with an
//! idempotent producer and `acks=all`.
//!
//! Each notification becomes one record on the topic its [`TopicTemplate`] renders (one topic
//! per contract, name or outcome, as configured), keyed by the notification's subject (the
//! state id), so every notification of one state lands in one partition, in order. The value
//! is the CloudEvents JSON (structured mode); the headers `ce_id` (the idempotency key a
//! consumer deduplicates on), `ce_type` and `content-type` (`application/cloudevents+json`)
//! let a consumer route and deduplicate without parsing the value. [`Sink::publish`] hands the
//! whole batch to the producer in order and returns `Ok` only once librdkafka reported every
//! record as acknowledged by all in-sync replicas; a record not acknowledged within the
//! delivery timeout fails the batch (the notifier publishes it again later).
//!
//! Configuration (`kind = "kafka"`): `url = "kafka://host:port[,host:port…]"` (the bootstrap
//! servers), options `delivery_timeout_ms` (default 30000: how long a record may wait for its
//! acknowledgement, retries included) and `linger_ms` (default 5: how long librdkafka waits to
//! fill a produce request).

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::SinkSpec;
use crate::filter::TopicTemplate;
use crate::{Notification, Sink, SinkError};

/// The broker kind, as written in configuration.
pub const NAME: &str = "kafka";

/// The CloudEvents structured-mode content type every record carries.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Header carrying the notification id (the idempotency key).
pub const HEADER_ID: &str = "ce_id";

/// Header carrying the CloudEvents type.
pub const HEADER_TYPE: &str = "ce_type";

/// Header carrying [`CONTENT_TYPE`].
pub const HEADER_CONTENT_TYPE: &str = "content-type";

/// The options a Kafka sink accepts.
pub const OPTIONS: &[&str] = &["delivery_timeout_ms", "linger_ms"];

/// Longest Kafka topic name.
const TOPIC_MAX: usize = 249;

/// Where and how a [`KafkaSink`] publishes (validated once, by [`KafkaConfig::from_spec`] or
/// [`KafkaConfig::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// The sink's name (unique per node; names its durable cursor).
    pub name: String,
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// The topic of each notification.
    pub topic: TopicTemplate,
    /// How long a record may wait for its acknowledgement (librdkafka `message.timeout.ms`),
    /// and how long connecting may take.
    pub delivery_timeout: Duration,
    /// How long librdkafka waits to fill a produce request (`linger.ms`).
    pub linger: Duration,
}

impl KafkaConfig {
    /// Default of [`KafkaConfig::delivery_timeout`].
    pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default of [`KafkaConfig::linger`].
    pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);

    /// A configuration with the default timeouts. `url` is `kafka://host:port[,host:port…]`
    /// (the `kafka://` prefix may be left out).
    ///
    /// # Errors
    /// [`SinkError::Config`] when the URL names no `host:port`.
    pub fn new(
        name: impl Into<String>,
        url: &str,
        topic: TopicTemplate,
    ) -> Result<Self, SinkError> {
        let name = name.into();
        let bootstrap_servers = bootstrap_servers(&name, url)?;
        Ok(KafkaConfig {
            name,
            bootstrap_servers,
            topic,
            delivery_timeout: Self::DEFAULT_DELIVERY_TIMEOUT,
            linger: Self::DEFAULT_LINGER,
        })
    }

    /// The Kafka settings of a configured sink (`kind = "kafka"`).
    ///
    /// # Errors
    /// [`SinkError::Config`] for a bad URL, an unknown option or an option that is not a
    /// number of milliseconds.
    pub fn from_spec(spec: &SinkSpec) -> Result<Self, SinkError> {
        spec.check_options(OPTIONS)?;
        let mut config = KafkaConfig::new(&spec.name, &spec.url, spec.topic.clone())?;
        let millis = |key: &str| -> Result<Option<Duration>, SinkError> {
            spec.option(key)
                .map(|v| {
                    v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                        spec.config_error(format!(
                            "option `{key}`: `{v}` is not a number of milliseconds"
                        ))
                    })
                })
                .transpose()
        };
        if let Some(d) = millis("delivery_timeout_ms")? {
            if d.is_zero() {
                return Err(spec.config_error("option `delivery_timeout_ms` must be at least 1"));
            }
            config.delivery_timeout = d;
        }
        if let Some(d) = millis("linger_ms")? {
            config.linger = d;
        }
        Ok(config)
    }

    /// The librdkafka producer settings: idempotent producer (which implies `acks=all`,
    /// retries and at most 5 requests in flight, so records of one partition keep their
    /// order), stated explicitly.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", format!("sst-notify-{}", self.name))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            )
            .set("linger.ms", self.linger.as_millis().to_string())
            .set(
                "socket.connection.setup.timeout.ms",
                self.delivery_timeout.as_millis().max(1000).to_string(),
            );
        c
    }
}

/// `host:port[,…]` from `kafka://host:port[,…]` (or the bare list).
fn bootstrap_servers(sink: &str, url: &str) -> Result<String, SinkError> {
    let list = url
        .strip_prefix("kafka://")
        .unwrap_or(url)
        .trim_end_matches('/');
    let bad = |detail: String| SinkError::Config {
        sink: sink.to_owned(),
        detail,
    };
    if list.is_empty() {
        return Err(bad(format!(
            "url `{url}` names no broker (kafka://host:port)"
        )));
    }
    for server in list.split(',') {
        let port = server
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(_))) if !host.is_empty() => {}
            _ => {
                return Err(bad(format!(
                    "url `{url}`: `{server}` is not host:port (kafka://host:port[,host:port])"
                )))
            }
        }
    }
    Ok(list.to_owned())
}

/// Whether `topic` is a legal Kafka topic name (1–249 of `[A-Za-z0-9._-]`, not `.`/`..`).
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= TOPIC_MAX
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// [`KafkaRecord::on_topic`] of a `(topic, notification)` pair.
fn on_topic((topic, n): (String, &Notification)) -> KafkaRecord {
    KafkaRecord::on_topic(topic, n)
}

/// The topic `template` renders for `n`.
///
/// # Errors
/// [`SinkError::Config`] when it is not a legal Kafka topic name.
pub fn topic_of(
    sink: &str,
    template: &TopicTemplate,
    n: &Notification,
) -> Result<String, SinkError> {
    let topic = template.render(n);
    if is_valid_topic(&topic) {
        return Ok(topic);
    }
    Err(SinkError::Config {
        sink: sink.to_owned(),
        detail: format!(
            "topic template `{template}` renders `{topic}` for notification {}: not a Kafka \
             topic name (1-{TOPIC_MAX} of A-Z a-z 0-9 . _ -)",
            n.id
        ),
    })
}

/// One notification as the Kafka record a [`KafkaSink`] sends: its topic, key, value and
/// headers. Benchmarks and tests build the very same record with [`KafkaRecord::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The rendered topic.
    pub topic: String,
    /// The subject (state id).
    pub key: String,
    /// The CloudEvents JSON.
    pub value: String,
    /// The notification id.
    pub id: String,
    /// The CloudEvents type.
    pub kind: String,
}

impl KafkaRecord {
    /// The record of `n` under `template`.
    ///
    /// # Errors
    /// [`SinkError::Config`] when the rendered topic is not a legal Kafka topic name.
    pub fn new(sink: &str, template: &TopicTemplate, n: &Notification) -> Result<Self, SinkError> {
        Ok(Self::on_topic(topic_of(sink, template, n)?, n))
    }

    /// The record of `n` on `topic` (already rendered and checked).
    pub fn on_topic(topic: String, n: &Notification) -> Self {
        KafkaRecord {
            topic,
            key: n.subject.clone(),
            value: n.to_json(),
            id: n.id.clone(),
            kind: n.kind.clone(),
        }
    }

    /// The record's headers (`ce_id`, `ce_type`, `content-type`).
    pub fn headers(&self) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: HEADER_ID,
                value: Some(self.id.as_str()),
            })
            .insert(Header {
                key: HEADER_TYPE,
                value: Some(self.kind.as_str()),
            })
            .insert(Header {
                key: HEADER_CONTENT_TYPE,
                value: Some(CONTENT_TYPE),
            })
    }

    /// The record for the producer.
    pub fn future_record(&self) -> FutureRecord<'_, str, str> {
        FutureRecord::to(&self.topic)
            .key(self.key.as_str())
            .payload(self.value.as_str())
            .headers(self.headers())
    }
}

/// Publishes notifications to Kafka (see the module documentation).
pub struct KafkaSink {
    config: KafkaConfig,
    producer: FutureProducer,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Connects the sink of a configured `kind = "kafka"` entry.
    ///
    /// # Errors
    /// As [`KafkaConfig::from_spec`] and [`KafkaSink::with_config`].
    pub async fn connect(spec: &SinkSpec) -> Result<Self, SinkError> {
        Self::with_config(KafkaConfig::from_spec(spec)?).await
    }

    /// Creates the producer and checks, within the delivery timeout, that a broker answers
    /// (a metadata request).
    ///
    /// # Errors
    /// [`SinkError::Config`] when librdkafka refuses the settings; [`SinkError::Unreachable`]
    /// when no broker answers in time.
    pub async fn with_config(config: KafkaConfig) -> Result<Self, SinkError> {
        let producer = producer(&config)?;
        check_reachable(&config, &producer).await?;
        Ok(KafkaSink { config, producer })
    }

    /// The sink's settings.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn unconfirmed(&self, id: &str, error: &KafkaError) -> SinkError {
        let code = error.rdkafka_error_code();
        let unreachable = matches!(
            code,
            Some(
                RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::Resolve
                    | RDKafkaErrorCode::RequestTimedOut
            )
        );
        if unreachable {
            SinkError::Unreachable {
                sink: self.config.name.clone(),
                detail: format!("notification {id} not acknowledged: {error}"),
            }
        } else {
            SinkError::NotConfirmed {
                sink: self.config.name.clone(),
                id: id.to_owned(),
                detail: error.to_string(),
            }
        }
    }
}

/// A producer with `config`'s settings.
///
/// # Errors
/// [`SinkError::Config`] when librdkafka refuses a setting.
pub fn producer(config: &KafkaConfig) -> Result<FutureProducer, SinkError> {
    config
        .client_config()
        .create()
        .map_err(|e| SinkError::Config {
            sink: config.name.clone(),
            detail: format!("creating the Kafka producer: {e}"),
        })
}

/// Asks the cluster for its metadata, giving up after the delivery timeout.
async fn check_reachable(config: &KafkaConfig, producer: &FutureProducer) -> Result<(), SinkError> {
    let probe = producer.clone();
    let wait = config.delivery_timeout;
    let answer = tokio::task::spawn_blocking(move || {
        probe
            .client()
            .fetch_metadata(None, wait)
            .map(|m| m.brokers().len())
    })
    .await;
    let unreachable = |detail: String| SinkError::Unreachable {
        sink: config.name.clone(),
        detail,
    };
    match answer {
        Ok(Ok(brokers)) if brokers > 0 => Ok(()),
        Ok(Ok(_)) => Err(unreachable(format!(
            "{}: the cluster's metadata lists no broker",
            config.bootstrap_servers
        ))),
        Ok(Err(e)) => Err(unreachable(format!(
            "{}: no metadata within {} ms: {e}",
            config.bootstrap_servers,
            wait.as_millis()
        ))),
        Err(e) => Err(unreachable(format!("metadata request task failed: {e}"))),
    }
}

/// Hands `records` to `producer` in order, each as soon as it is built (so building the next
/// overlaps with sending the previous ones), and waits for every delivery report; the first
/// failure (in batch order) is returned with the index of its record. When librdkafka's
/// queue is full, waits for the oldest pending delivery before enqueuing more.
///
/// # Errors
/// The failed record's index and the client's error.
pub async fn send_all(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = KafkaRecord>,
) -> Result<(), (usize, KafkaError)> {
    let records = records.into_iter();
    let mut pending: std::collections::VecDeque<(usize, DeliveryFuture)> =
        std::collections::VecDeque::with_capacity(records.size_hint().0);
    let mut first_error: Option<(usize, KafkaError)> = None;
    let mut keep = |index: usize, e: KafkaError| {
        if first_error.as_ref().is_none_or(|(i, _)| index < *i) {
            first_error = Some((index, e));
        }
    };
    for (index, record) in records.enumerate() {
        loop {
            match producer.send_result(record.future_record()) {
                Ok(delivery) => {
                    pending.push_back((index, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match pending.pop_front() {
                        Some((i, delivery)) => {
                            if let Err(e) = settle(delivery).await {
                                keep(i, e);
                            }
                        }
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => {
                    keep(index, e);
                    break;
                }
            }
        }
    }
    for (index, delivery) in pending {
        if let Err(e) = settle(delivery).await {
            keep(index, e);
        }
    }
    match first_error {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// The outcome of one delivery report.
async fn settle(delivery: DeliveryFuture) -> Result<(), KafkaError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        // The producer lives as long as the sink; a cancelled report means it was torn down.
        Err(_) => Err(KafkaError::Canceled),
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn publish(&self, batch: &[Notification]) -> Result<(), SinkError> {
        // Every topic is checked before anything is sent: a bad one fails the whole batch.
        let topics = batch
            .iter()
            .map(|n| topic_of(&self.config.name, &self.config.topic, n))
            .collect::<Result<Vec<_>, _>>()?;
        let records = topics
            .into_iter()
            .zip(batch)
            .map(on_topic as fn((String, &Notification)) -> KafkaRecord);
        send_all(&self.producer, records)
            .await
            .map_err(|(index, e)| self.unconfirmed(&batch[index].id, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_servers_come_from_a_kafka_url() {
        let ok = |url: &str| bootstrap_servers("k", url);
        assert_eq!(
            ok("kafka://127.0.0.1:9092").ok().as_deref(),
            Some("127.0.0.1:9092")
        );
        assert_eq!(ok("a:1,b:2").ok().as_deref(), Some("a:1,b:2"));
        for bad in [
            "",
            "kafka://",
            "kafka://host",
            "kafka://:9092",
            "kafka://h:port",
        ] {
            assert!(
                matches!(ok(bad), Err(SinkError::Config { .. })),
                "`{bad}` accepted"
            );
        }
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(is_valid_topic("sst.real-estate-deal.create.applied"));
        assert!(is_valid_topic("a_b-C.9"));
        for bad in ["", ".", "..", "with space", "slash/ed", "ü"] {
            assert!(!is_valid_topic(bad), "`{bad}` accepted");
        }
        assert!(!is_valid_topic(&"x".repeat(TOPIC_MAX + 1)));
    }
}
