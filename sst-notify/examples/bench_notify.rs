//! `cargo xtask bench notify`: notifications per second through each sink ([`Sink::publish`]
//! of a batch of realistic notifications) next to a bare producer loop that sends the same
//! payloads with the same client library and the same confirmation guarantee, in the same
//! run, and the ratio. Run with the sinks' features and their brokers' URLs in the
//! environment (xtask sets both):
//!
//! `cargo run --release -p sst-notify --example bench_notify --features kafka,redis -- \
//!  --sinks kafka,redis --count 5000 --rounds 3`
//!
//! Each round publishes the whole batch once through the sink and once through the bare
//! producer (alternating which goes first); the best round of each is reported, after one
//! warm-up round that is not counted. The bare producers get their payloads prepared before the
//! clock starts; the sink renders topics and JSON inside its measured time.

// The sink tests' notification batches (`sinks_common` builds on `common`).
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/sinks_common/mod.rs"]
mod sinks_common;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sst_notify::{Notification, Sink, SinkKind, SinkSpec, TopicTemplate};

/// A bare producer: prepares the payloads of `batch`, sends them and returns once the broker
/// confirmed all, with the time from the first send to the last confirmation.
#[async_trait::async_trait]
trait Bare: Send + Sync {
    async fn send(&self, batch: &[Notification]) -> anyhow::Result<Duration>;
}

/// One sink under test: the sink and its bare counterpart, fed the same notifications.
struct Case {
    sink: Box<dyn Sink>,
    bare: Box<dyn Bare>,
}

/// The URL of `var`, or the machine's default.
#[cfg_attr(
    not(any(
        feature = "kafka",
        feature = "rabbitmq",
        feature = "nats",
        feature = "mqtt",
        feature = "redis",
        feature = "postgres"
    )),
    allow(dead_code)
)]
fn url(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A sink spec of `kind` with a topic template of this run's own.
#[cfg_attr(
    not(any(
        feature = "kafka",
        feature = "rabbitmq",
        feature = "nats",
        feature = "mqtt",
        feature = "redis",
        feature = "postgres"
    )),
    allow(dead_code)
)]
fn spec(kind: SinkKind, url: String, template: &str) -> anyhow::Result<SinkSpec> {
    let mut spec = SinkSpec::new(sinks_common::unique("bench-"), kind, url);
    spec.topic = TopicTemplate::parse(template)?;
    Ok(spec)
}

#[cfg(feature = "kafka")]
mod kafka {
    //! rdkafka: the sink, and a bare `FutureProducer` with the same settings (idempotent,
    //! acks=all) sending the same records and awaiting every delivery report.

    use super::*;
    use rdkafka::producer::FutureProducer;
    use sst_notify::sinks::kafka::{producer, KafkaConfig, KafkaRecord, KafkaSink};

    struct BareKafka {
        producer: FutureProducer,
        template: TopicTemplate,
    }

    #[async_trait::async_trait]
    impl Bare for BareKafka {
        async fn send(&self, batch: &[Notification]) -> anyhow::Result<Duration> {
            let records = batch
                .iter()
                .map(|n| KafkaRecord::new("bare", &self.template, n))
                .collect::<Result<Vec<_>, _>>()?;
            let started = Instant::now();
            let mut deliveries = Vec::with_capacity(records.len());
            for r in &records {
                let delivery = self
                    .producer
                    .send_result(r.future_record())
                    .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?;
                deliveries.push(delivery);
            }
            for d in deliveries {
                d.await
                    .context("producer dropped")?
                    .map_err(|(e, _)| anyhow::anyhow!("delivery: {e}"))?;
            }
            Ok(started.elapsed())
        }
    }

    pub(super) async fn case() -> anyhow::Result<Case> {
        let url = url("SST_KAFKA_URL", "");
        if url.is_empty() {
            bail!("SST_KAFKA_URL is not set: `eval \"$(cargo xtask kafka-server start)\"`");
        }
        let prefix = sinks_common::unique("bench-");
        let spec = spec(
            SinkKind::Kafka,
            url,
            &format!("{prefix}.{{contract}}.{{outcome}}"),
        )?;
        let config = KafkaConfig::from_spec(&spec)?;
        let bare_config = KafkaConfig {
            name: format!("{}-bare", config.name),
            topic: TopicTemplate::parse(&format!("{prefix}-bare.{{contract}}.{{outcome}}"))?,
            ..config.clone()
        };
        Ok(Case {
            sink: Box::new(KafkaSink::with_config(config).await?),
            bare: Box::new(BareKafka {
                producer: producer(&bare_config)?,
                template: bare_config.topic,
            }),
        })
    }
}

#[cfg(feature = "redis")]
mod redis_streams {
    //! redis: the sink, and a bare connection sending the same `XADD`s (same fields, same
    //! streams) in one `MULTI`/`EXEC` pipeline, confirmed when `EXEC` answers.

    use super::*;
    use redis::aio::MultiplexedConnection;
    use sst_notify::sinks::redis::RedisSink;

    struct BareRedis {
        conn: MultiplexedConnection,
        template: TopicTemplate,
    }

    #[async_trait::async_trait]
    impl Bare for BareRedis {
        async fn send(&self, batch: &[Notification]) -> anyhow::Result<Duration> {
            let entries: Vec<(String, String)> = batch
                .iter()
                .map(|n| (self.template.render(n), n.to_json()))
                .collect();
            let started = Instant::now();
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (n, (stream, json)) in batch.iter().zip(&entries) {
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("id")
                    .arg(&n.id)
                    .arg("type")
                    .arg(&n.kind)
                    .arg("subject")
                    .arg(&n.subject)
                    .arg("sstlogpos")
                    .arg(n.sstlogpos)
                    .arg("event")
                    .arg(json)
                    .ignore();
            }
            pipe.query_async::<()>(&mut self.conn.clone()).await?;
            Ok(started.elapsed())
        }
    }

    pub(super) async fn case() -> anyhow::Result<Case> {
        let url = url("SST_REDIS_URL", "redis://127.0.0.1:6379");
        let prefix = sinks_common::unique("bench-");
        // One stream per node and outcome; MAXLEN keeps the server's memory bounded.
        let mut spec = spec(
            SinkKind::Redis,
            url.clone(),
            &format!("{prefix}.{{outcome}}"),
        )?;
        spec.options.insert("maxlen".into(), "20000".into());
        let client = redis::Client::open(url.as_str())?;
        Ok(Case {
            sink: Box::new(RedisSink::connect(&spec).await?),
            bare: Box::new(BareRedis {
                conn: client.get_multiplexed_async_connection().await?,
                template: TopicTemplate::parse(&format!("{prefix}-bare.{{outcome}}"))?,
            }),
        })
    }
}

#[cfg(feature = "postgres")]
mod postgres_notify {
    //! PostgreSQL NOTIFY: the sink, and a bare sqlx pool running the same `pg_notify`
    //! statement over the same channels and payloads in one transaction, confirmed when the
    //! commit answers.

    use super::*;
    use sqlx::postgres::{PgPool, PgPoolOptions};
    use sst_notify::sinks::postgres::PostgresSink;

    struct BarePostgres {
        pool: PgPool,
        /// Only prepares the payloads (before the clock starts).
        shaper: PostgresSink,
    }

    #[async_trait::async_trait]
    impl Bare for BarePostgres {
        async fn send(&self, batch: &[Notification]) -> anyhow::Result<Duration> {
            let (channels, payloads): (Vec<String>, Vec<String>) = batch
                .iter()
                .map(|n| self.shaper.channel_and_payload(n))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|(c, p)| (format!("{c}_bare"), p))
                .unzip();
            let started = Instant::now();
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY \
                 AS t(c, p, i) ORDER BY i",
            )
            .bind(&channels)
            .bind(&payloads)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(started.elapsed())
        }
    }

    pub(super) async fn case() -> anyhow::Result<Case> {
        let url = url(
            "SST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        );
        let prefix = sinks_common::unique("bench_");
        let spec = spec(
            SinkKind::Postgres,
            url.clone(),
            &format!("{prefix}_{{outcome}}"),
        )?;
        Ok(Case {
            sink: Box::new(PostgresSink::connect(&spec).await?),
            bare: Box::new(BarePostgres {
                pool: PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await?,
                shaper: PostgresSink::connect(&spec).await?,
            }),
        })
    }
}

#[cfg(feature = "rabbitmq")]
mod rabbitmq {
    //! lapin: the sink, and a bare channel in confirm mode publishing the same persistent
    //! messages (same properties, same routing keys) to a durable topic exchange of its own,
    //! then awaiting every publisher confirm.

    use super::*;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
    use sst_notify::sinks::rabbitmq::{RabbitMqSink, CONTENT_TYPE};

    struct BareRabbit {
        _connection: Connection,
        channel: Channel,
        exchange: String,
        template: TopicTemplate,
    }

    #[async_trait::async_trait]
    impl Bare for BareRabbit {
        async fn send(&self, batch: &[Notification]) -> anyhow::Result<Duration> {
            let messages: Vec<(String, String, BasicProperties)> = batch
                .iter()
                .map(|n| {
                    let properties = BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type(CONTENT_TYPE.into())
                        .with_message_id(n.id.as_str().into())
                        .with_type(n.kind.as_str().into())
                        .with_app_id(n.source.as_str().into());
                    (self.template.render(n), n.to_json(), properties)
                })
                .collect();
            let started = Instant::now();
            let mut confirms = Vec::with_capacity(messages.len());
            for (key, body, properties) in messages {
                confirms.push(
                    self.channel
                        .basic_publish(
                            self.exchange.as_str().into(),
                            key.as_str().into(),
                            BasicPublishOptions::default(),
                            body.as_bytes(),
                            properties,
                        )
                        .await?,
                );
            }
            for confirm in confirms {
                let confirmation = confirm.await?;
                anyhow::ensure!(confirmation.is_ack(), "not acknowledged: {confirmation:?}");
            }
            Ok(started.elapsed())
        }
    }

    pub(super) async fn case() -> anyhow::Result<Case> {
        let url = url("SST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
        let exchange = sinks_common::unique("bench-");
        let template = "sst.{contract}.{name}.{outcome}";
        let mut spec = spec(SinkKind::Rabbitmq, url.clone(), template)?;
        spec.options.insert("exchange".into(), exchange.clone());
        let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let bare_exchange = format!("{exchange}-bare");
        channel
            .exchange_declare(
                bare_exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(Case {
            sink: Box::new(RabbitMqSink::connect(&spec).await?),
            bare: Box::new(BareRabbit {
                _connection: connection,
                channel,
                exchange: bare_exchange,
                template: TopicTemplate::parse(template)?,
            }),
        })
    }
}

#[cfg(feature = "nats")]
mod nats {
    //! async-nats JetStream: the sink, and a bare JetStream context publishing the same
    //! messages (same `Nats-Msg-Id`, same header) to a file-backed stream of its own with the
    //! same number of publishes awaiting their `PubAck` at once (the sink's default, 256).

    use super::*;
    use async_nats::jetstream::{self, context::PublishAckFuture, stream::StorageType};
    use sst_notify::sinks::nats::{message_id, NatsSink, CONTENT_TYPE};
    use std::collections::VecDeque;

    /// The sink's default `max_in_flight`.
    const IN_FLIGHT: usize = 256;

    struct BareNats {
        jetstream: jetstream::Context,
        template: TopicTemplate,
    }

    #[async_trait::async_trait]
    impl Bare for BareNats {
        async fn send(&self, batch: &[Notification]) -> anyhow::Result<Duration> {
            let messages: Vec<(String, jetstream::message::PublishMessage)> = batch
                .iter()
                .map(|n| {
                    let message = jetstream::message::PublishMessage::build()
                        .payload(n.to_json().into())
                        .message_id(message_id(n))
                        .header("Content-Type", CONTENT_TYPE);
                    (self.template.render(n), message)
                })
                .collect();
            let started = Instant::now();
            let mut in_flight: VecDeque<PublishAckFuture> = VecDeque::new();
            for (subject, message) in messages {
                if in_flight.len() >= IN_FLIGHT {
                    if let Some(ack) = in_flight.pop_front() {
                        ack.await?;
                    }
                }
                in_flight.push_back(self.jetstream.send_publish(subject, message).await?);
            }
            for ack in in_flight {
                ack.await?;
            }
            Ok(started.elapsed())
        }
    }

    pub(super) async fn case() -> anyhow::Result<Case> {
        let url = url("SST_NATS_URL", "nats://127.0.0.1:4222");
        let run = sinks_common::unique("bench");
        let mut spec = spec(
            SinkKind::Nats,
            url.clone(),
            &format!("{run}.{{contract}}.{{outcome}}"),
        )?;
        spec.options.insert("stream".into(), run.clone());
        let client = async_nats::connect(&url).await?;
        let jetstream = jetstream::new(client);
        jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: format!("{run}-bare"),
                subjects: vec![format!("{run}-bare.>")],
                storage: StorageType::File,
                ..Default::default()
            })
            .await?;
        Ok(Case {
            sink: Box::new(NatsSink::connect(&spec).await?),
            bare: Box::new(BareNats {
                jetstream,
                template: TopicTemplate::parse(&format!("{run}-bare.{{contract}}.{{outcome}}"))?,
            }),
        })
    }
}

#[cfg(feature = "mqtt")]
mod mqtt {
    //! rumqttc: the sink, and a bare client with the sink's default settings (QoS 1, 100
    //! publishes in flight, 1 MiB packets) publishing the same payloads to the same topics and
    //! counting PUBACKs from its event loop until every one arrived.

    use super::*;
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use sst_notify::sinks::mqtt::MqttSink;
    use tokio::sync::watch;

    /// The sink's default `max_in_flight`.
    const IN_FLIGHT: u16 = 100;

    struct BareMqtt {
        client: AsyncClient,
        acks: watch::Receiver<u64>,
        template: TopicTemplate,
        _driver: tokio::task::JoinHandle<()>,
    }

    #[async_trait::async_trait]
    impl Bare for BareMqtt {
        async fn send(&self, batch: &[Notification]) -> anyhow::Result<Duration> {
            let messages: Vec<(String, String)> = batch
                .iter()
                .map(|n| (self.template.render(n), n.to_json()))
                .collect();
            let mut acks = self.acks.clone();
            let target = *acks.borrow_and_update() + batch.len() as u64;
            let started = Instant::now();
            for (topic, payload) in messages {
                self.client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await?;
            }
            tokio::time::timeout(Duration::from_secs(60), acks.wait_for(|n| *n >= target))
                .await
                .context("PUBACKs within 60 s")??;
            Ok(started.elapsed())
        }
    }

    pub(super) async fn case() -> anyhow::Result<Case> {
        let url = url("SST_MQTT_URL", "mqtt://127.0.0.1:1883");
        let run = sinks_common::unique("bench-");
        let template = format!("{run}/{{contract}}/{{outcome}}");
        let spec = spec(SinkKind::Mqtt, url.clone(), &template)?;
        let address = url.trim_start_matches("mqtt://");
        let (host, port) = address
            .rsplit_once(':')
            .map_or((address, Ok(1883)), |(h, p)| (h, p.parse::<u16>()));
        let mut options = MqttOptions::new(format!("{run}-bare"), host, port?);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(IN_FLIGHT)
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_request_channel_capacity(usize::from(IN_FLIGHT));
        let (client, mut event_loop) = AsyncClient::new(options, usize::from(IN_FLIGHT));
        let (count, acks) = watch::channel(0u64);
        let driver = tokio::spawn(async move {
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => count.send_modify(|n| *n += 1),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("bare MQTT client: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Ok(Case {
            sink: Box::new(MqttSink::connect(&spec).await?),
            bare: Box::new(BareMqtt {
                client,
                acks,
                template: TopicTemplate::parse(&format!("{run}-bare/{{contract}}/{{outcome}}"))?,
                _driver: driver,
            }),
        })
    }
}

/// The case of `name`, or why it cannot run in this build.
async fn case(name: &str) -> anyhow::Result<Case> {
    match name {
        #[cfg(feature = "kafka")]
        "kafka" => kafka::case().await,
        #[cfg(feature = "redis")]
        "redis" => redis_streams::case().await,
        #[cfg(feature = "postgres")]
        "postgres" => postgres_notify::case().await,
        #[cfg(feature = "rabbitmq")]
        "rabbitmq" => rabbitmq::case().await,
        #[cfg(feature = "nats")]
        "nats" => nats::case().await,
        #[cfg(feature = "mqtt")]
        "mqtt" => mqtt::case().await,
        other => bail!(
            "no benchmark for sink `{other}` in this build (enable its feature; benchmarked: \
             {})",
            compiled().join(", ")
        ),
    }
}

/// The sinks this build can benchmark.
fn compiled() -> Vec<&'static str> {
    let all = [
        ("kafka", cfg!(feature = "kafka")),
        ("rabbitmq", cfg!(feature = "rabbitmq")),
        ("nats", cfg!(feature = "nats")),
        ("mqtt", cfg!(feature = "mqtt")),
        ("postgres", cfg!(feature = "postgres")),
        ("redis", cfg!(feature = "redis")),
    ];
    all.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect()
}

/// Best notifications/s of the sink and of the bare producer over `rounds`.
async fn measure(case: &Case, batch: &[Notification], rounds: usize) -> anyhow::Result<(f64, f64)> {
    let rate = |d: Duration| sinks_common::per_second(batch.len(), d);
    let (mut sink_best, mut bare_best) = (0.0f64, 0.0f64);
    // Round 0 warms both up (connections, topic creation, metadata) and is not counted.
    for round in 0..=rounds {
        let sink_first = round % 2 == 0;
        let (mut s, mut b) = (0.0, 0.0);
        for sink_turn in [sink_first, !sink_first] {
            if sink_turn {
                let started = Instant::now();
                case.sink.publish(batch).await?;
                s = rate(started.elapsed());
            } else {
                b = rate(case.bare.send(batch).await?);
            }
        }
        if round > 0 {
            sink_best = sink_best.max(s);
            bare_best = bare_best.max(b);
        }
    }
    Ok((sink_best, bare_best))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut sinks = compiled().iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut count = 5000usize;
    let mut rounds = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |what: &str| args.next().with_context(|| format!("{what} needs a value"));
        match a.as_str() {
            "--sinks" => sinks = value("--sinks")?.split(',').map(str::to_owned).collect(),
            "--count" => count = value("--count")?.parse().context("--count: not a number")?,
            "--rounds" => {
                rounds = value("--rounds")?
                    .parse()
                    .context("--rounds: not a number")?
            }
            other => bail!("unknown argument `{other}` (--sinks a,b --count N --rounds R)"),
        }
    }
    if count == 0 || rounds == 0 {
        bail!("--count and --rounds must be at least 1");
    }
    let batch = sinks_common::deal_notifications(&sinks_common::unique(""), count, 50);
    let bytes: usize = batch.iter().map(|n| n.to_json().len()).sum();
    println!(
        "batch: {count} notifications of 50 states, {} bytes of CloudEvents JSON on average; \
         best of {rounds} rounds after a warm-up",
        bytes / count
    );
    let mut failed = Vec::new();
    for name in &sinks {
        let outcome = async {
            let case = case(name).await?;
            measure(&case, &batch, rounds).await
        }
        .await;
        match outcome {
            Ok((sink, bare)) => println!(
                "{name}: sink {sink:.0}/s, bare producer {bare:.0}/s, ratio {:.2}",
                sink / bare
            ),
            Err(e) => {
                println!("{name}: FAILED: {e:#}");
                failed.push(name.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("benchmark failed for: {}", failed.join(", "));
    }
    Ok(())
}
