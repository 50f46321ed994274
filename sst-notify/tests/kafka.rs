//! The Kafka sink against a real Kafka-protocol broker (tansu, started by
//! `eval "$(cargo xtask kafka-server start)"`, found through `SST_KAFKA_URL`): what a batch
//! publishes is fetched back by partition and offset (no consumer group: joins take ~20 s on
//! tansu) and compared field by field, in order per state; a broker that is down or silent
//! gives a `SinkError` within a bounded time, never a hang.

mod common;
mod sinks_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sinks_common::{closed_port, deal_notifications, silent_listener, unique, SILENT_BROKER_BOUND};
use sst_notify::config::SinkSpec;
use sst_notify::filter::TopicTemplate;
use sst_notify::sinks::kafka::{
    KafkaConfig, KafkaSink, CONTENT_TYPE, HEADER_CONTENT_TYPE, HEADER_ID, HEADER_TYPE,
};
use sst_notify::{Notification, Sink, SinkError, SinkKind};

/// Environment variable naming the test broker (`kafka://127.0.0.1:PORT`).
const URL_ENV: &str = "SST_KAFKA_URL";

/// The test broker's URL; a missing one fails the test (never a silent pass).
fn broker_url() -> anyhow::Result<String> {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => bail!(
            "{URL_ENV} is not set: start the test broker with \
             `eval \"$(cargo xtask kafka-server start)\"` (or run `cargo xtask integration \
             --sinks kafka`)"
        ),
    }
}

/// `host:port` list of a `kafka://` URL.
fn bootstrap(url: &str) -> String {
    url.trim_start_matches("kafka://").to_owned()
}

/// Every record of `topic`, per partition in offset order, read by partition and offset from
/// the beginning (no consumer group) until `expected` records arrived, then for a quiet
/// second more so that extra records would be seen too. (tansu's high watermark counts
/// record batches, not records, so it cannot say where a partition ends.)
fn fetch_topic(
    url: &str,
    topic: &str,
    expected: usize,
) -> anyhow::Result<BTreeMap<i32, Vec<OwnedMessage>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap(url))
        // assign() needs a group id, but never joins the group nor commits to it.
        .set("group.id", unique("sst-test-fetch-"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating the fetching consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("metadata of {topic}"))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    ensure!(assignment.count() > 0, "topic {topic} has no partition");
    consumer.assign(&assignment)?;
    let mut out: BTreeMap<i32, Vec<OwnedMessage>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    let mut quiet_until = None;
    loop {
        let now = Instant::now();
        match quiet_until {
            Some(until) if now >= until => break,
            None if now >= deadline => {
                bail!("fetched {got} of {expected} records of {topic} within 30 s")
            }
            _ => {}
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.context("fetching")?.detach();
            out.entry(m.partition()).or_default().push(m);
            got += 1;
        }
        if got >= expected && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(1));
        }
    }
    Ok(out)
}

/// A header's value as text.
fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A sink on the test broker whose topics are `<prefix>.{contract}.{outcome}`.
async fn sink_on_test_broker(prefix: &str) -> anyhow::Result<KafkaSink> {
    let mut spec = SinkSpec::new(unique("kafka-test-"), SinkKind::Kafka, broker_url()?);
    spec.topic = TopicTemplate::parse(&format!("{prefix}.{{contract}}.{{outcome}}"))?;
    spec.options
        .insert("delivery_timeout_ms".into(), "10000".into());
    Ok(KafkaSink::connect(&spec).await?)
}

/// Checks that what was fetched from `topics` is `sent`: every notification once, in the topic
/// its template renders, keyed by its state, with its headers, and in order per state.
fn check_fetched(
    sent: &[Notification],
    fetched: &BTreeMap<String, BTreeMap<i32, Vec<OwnedMessage>>>,
    topic_of: impl Fn(&Notification) -> String,
) -> anyhow::Result<()> {
    let mut by_state: BTreeMap<String, Vec<Notification>> = BTreeMap::new();
    let mut partition_of_state: BTreeMap<(String, String), i32> = BTreeMap::new();
    let mut total = 0;
    for (topic, partitions) in fetched {
        for (partition, messages) in partitions {
            for m in messages {
                total += 1;
                let body = m.payload().context("record without a value")?;
                let n: Notification = serde_json::from_slice(body)?;
                let expected = sent
                    .iter()
                    .find(|s| s.id == n.id)
                    .with_context(|| format!("fetched {} that was never sent", n.id))?;
                sinks_common::assert_same_notification(body, expected)?;
                ensure!(&topic_of(expected) == topic, "{} in topic {topic}", n.id);
                ensure!(
                    m.key() == Some(expected.subject.as_bytes()),
                    "{}: key is not the state id",
                    n.id
                );
                ensure!(header(m, HEADER_ID).as_deref() == Some(expected.id.as_str()));
                ensure!(header(m, HEADER_TYPE).as_deref() == Some(expected.kind.as_str()));
                ensure!(header(m, HEADER_CONTENT_TYPE).as_deref() == Some(CONTENT_TYPE));
                let seen = partition_of_state
                    .entry((topic.clone(), n.subject.clone()))
                    .or_insert(*partition);
                ensure!(
                    seen == partition,
                    "state {} of {topic} spread over partitions {seen} and {partition}",
                    n.subject
                );
                by_state.entry(n.subject.clone()).or_default().push(n);
            }
        }
    }
    ensure!(
        total == sent.len(),
        "fetched {total} records for {} notifications",
        sent.len()
    );
    for (state, got) in &by_state {
        // Per state and topic, the fetched order must be the published order.
        for topic in fetched.keys() {
            let got: Vec<&str> = got
                .iter()
                .filter(|n| &topic_of(n) == topic)
                .map(|n| n.id.as_str())
                .collect();
            let want: Vec<&str> = sent
                .iter()
                .filter(|n| &n.subject == state && &topic_of(n) == topic)
                .map(|n| n.id.as_str())
                .collect();
            ensure!(
                got == want,
                "state {state} in {topic}: order {got:?}, published {want:?}"
            );
        }
    }
    Ok(())
}

/// A batch of notifications of several states is fetched back complete, one record per
/// notification, each in its template's topic, keyed by its state, with its CloudEvents
/// fields and headers, in the published order per state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_fetched_back_in_order_per_state_with_its_fields() -> anyhow::Result<()> {
    let url = broker_url()?;
    let prefix = unique("sst-test-");
    let sink = sink_on_test_broker(&prefix).await?;
    let run = unique("");
    let sent = deal_notifications(&run, 200, 7);
    ensure!(sent.iter().any(|n| n.sstoutcome == "rejected"));
    let started = Instant::now();
    sink.publish(&sent).await?;
    println!(
        "published {} notifications in {:?} ({:.0}/s)",
        sent.len(),
        started.elapsed(),
        sinks_common::per_second(sent.len(), started.elapsed())
    );
    let topic_of = |n: &Notification| format!("{prefix}.{}.{}", n.sstcontract, n.sstoutcome);
    let mut fetched = BTreeMap::new();
    for outcome in ["applied", "rejected"] {
        let topic = format!("{prefix}.real-estate-deal.{outcome}");
        let u = url.clone();
        let t = topic.clone();
        let count = sent.iter().filter(|n| n.sstoutcome == outcome).count();
        let records = tokio::task::spawn_blocking(move || fetch_topic(&u, &t, count)).await??;
        fetched.insert(topic, records);
    }
    check_fetched(&sent, &fetched, topic_of)
}

/// Publishing the same batch again (what the notifier does after a failed confirmation)
/// appends the same records under the same ids, so a consumer can drop the duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_published_twice_carries_the_same_ids() -> anyhow::Result<()> {
    let url = broker_url()?;
    let prefix = unique("sst-test-");
    let sink = sink_on_test_broker(&prefix).await?;
    let sent = deal_notifications(&unique(""), 12, 3);
    sink.publish(&sent).await?;
    sink.publish(&sent).await?;
    let topic = format!("{prefix}.real-estate-deal.applied");
    let u = url.clone();
    let t = topic.clone();
    let count = 2 * sent.iter().filter(|n| n.sstoutcome == "applied").count();
    let fetched = tokio::task::spawn_blocking(move || fetch_topic(&u, &t, count)).await??;
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for m in fetched.values().flatten() {
        *ids.entry(header(m, HEADER_ID).context("no ce_id")?)
            .or_default() += 1;
    }
    let applied: Vec<&Notification> = sent.iter().filter(|n| n.sstoutcome == "applied").collect();
    ensure!(
        ids.len() == applied.len(),
        "{} ids for {} notifications",
        ids.len(),
        applied.len()
    );
    for n in applied {
        ensure!(
            ids.get(&n.id) == Some(&2),
            "{}: {:?} copies",
            n.id,
            ids.get(&n.id)
        );
    }
    Ok(())
}

/// Connects a sink with a 500 ms timeout to `address` and checks that it fails with
/// `Unreachable` within [`SILENT_BROKER_BOUND`].
async fn assert_unreachable_in_bounded_time(address: &str) -> anyhow::Result<()> {
    let mut config = KafkaConfig::new(
        "kafka-unreachable",
        &format!("kafka://{address}"),
        TopicTemplate::default(),
    )?;
    config.delivery_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let outcome = KafkaSink::with_config(config).await;
    let took = started.elapsed();
    ensure!(
        matches!(outcome, Err(SinkError::Unreachable { .. })),
        "connecting to {address} gave {outcome:?}"
    );
    ensure!(took < SILENT_BROKER_BOUND, "took {took:?}");
    Ok(())
}

/// Connecting to a port where no broker listens fails with `Unreachable` within the
/// configured timeout (plus slack), instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_is_unreachable_not_a_hang() -> anyhow::Result<()> {
    let port = closed_port().await?;
    assert_unreachable_in_bounded_time(&format!("127.0.0.1:{port}")).await
}

/// A broker that accepts connections but never answers fails the same way, within bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_unreachable_not_a_hang() -> anyhow::Result<()> {
    let (address, listener) = silent_listener().await?;
    let outcome = assert_unreachable_in_bounded_time(&address).await;
    listener.abort();
    outcome
}

/// A tansu broker of this test's own (memory storage, a free loopback port), killed when
/// dropped; the binary comes from `SST_TANSU_BIN` (set by `cargo xtask kafka-server start`).
struct OwnBroker {
    child: std::process::Child,
    url: String,
}

impl OwnBroker {
    async fn start() -> anyhow::Result<OwnBroker> {
        let bin = match std::env::var("SST_TANSU_BIN") {
            Ok(b) if !b.is_empty() => b,
            _ => bail!(
                "SST_TANSU_BIN is not set: run `eval \"$(cargo xtask kafka-server start)\"` \
                 (or `cargo xtask integration --sinks kafka`)"
            ),
        };
        let port = closed_port().await?;
        let listener = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(&bin)
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let broker = OwnBroker {
            child,
            url: format!("kafka://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            ensure!(Instant::now() < deadline, "tansu did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(broker)
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker that goes away after the sink connected: the next batch fails with
/// `Unreachable` once the delivery timeout ran out, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_dies_fails_the_next_batch_in_bounded_time() -> anyhow::Result<()> {
    let broker = OwnBroker::start().await?;
    let mut config = KafkaConfig::new("kafka-dies", &broker.url, TopicTemplate::default())?;
    config.delivery_timeout = Duration::from_secs(1);
    let sink = KafkaSink::with_config(config).await?;
    let batch = deal_notifications(&unique(""), 10, 2);
    sink.publish(&batch).await?;
    drop(broker);
    let started = Instant::now();
    let outcome = sink.publish(&batch).await;
    let took = started.elapsed();
    ensure!(
        matches!(outcome, Err(SinkError::Unreachable { .. })),
        "publishing to a dead broker gave {outcome:?}"
    );
    ensure!(took < SILENT_BROKER_BOUND, "took {took:?}");
    Ok(())
}

/// A template that renders an illegal topic name (a state id with `/`) fails the batch with a
/// `Config` error naming the topic, before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illegal_topic_is_a_config_error() -> anyhow::Result<()> {
    let mut spec = SinkSpec::new("kafka-bad-topic", SinkKind::Kafka, broker_url()?);
    spec.topic = TopicTemplate::parse("sst.{subject}")?;
    let sink = KafkaSink::connect(&spec).await?;
    let mut batch = deal_notifications(&unique(""), 1, 1);
    batch[0].subject = "deals/1".into();
    match sink.publish(&batch).await {
        Err(SinkError::Config { detail, .. }) => {
            ensure!(detail.contains("sst.deals/1"), "{detail}");
            Ok(())
        }
        other => bail!("expected a Config error, got {other:?}"),
    }
}

/// End to end: nodes commit deals, a notifier per node (seller = home, regulator) reads its
/// node's committed log and publishes through the Kafka sink; what is fetched back from each
/// node's topic is exactly the notifications its log gives, in log order per state (the
/// shared helper checks that the regulator's carry no price, a section it may not read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_reach_kafka_through_the_notifier() -> anyhow::Result<()> {
    let url = broker_url()?;
    let prefix = unique("sst-e2e-");
    let mut spec = SinkSpec::new("kafka-e2e", SinkKind::Kafka, url.clone());
    spec.topic = TopicTemplate::parse(&format!("{prefix}.{{node}}"))?;
    let published = sinks_common::publish_two_deals_through_notifiers("kafka", spec).await?;
    for (role, want) in published {
        ensure!(want.len() == 8, "{role}: {} notifications", want.len());
        let topic = format!("{prefix}.{role}");
        let (u, t, count) = (url.clone(), topic.clone(), want.len());
        let fetched = tokio::task::spawn_blocking(move || fetch_topic(&u, &t, count)).await??;
        let topics = BTreeMap::from([(topic.clone(), fetched)]);
        check_fetched(&want, &topics, |_| topic.clone())?;
    }
    Ok(())
}
