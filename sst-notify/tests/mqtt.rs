//! The MQTT sink against the Mosquitto broker on this machine (`SST_MQTT_URL`, default
//! `mqtt://127.0.0.1:1883`): a rumqttc subscriber connected before publishing receives every
//! notification with QoS 1, in order and field for field. The same sink reaches Solace
//! PubSub+ over its MQTT port (no Solace broker can be installed here). A broker that does not
//! answer fails these tests; nothing is skipped.

mod common;
mod sinks_common;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use sinks_common::{
    assert_config_errors, assert_same_notification, assert_unreachable_in_time, deal_notifications,
    per_second, publish_two_deals_through_notifiers, publish_until_confirmed,
    unanswering_addresses, unique, with_options, CuttableProxy,
};
use sst_notify::sinks::mqtt::MqttSink;
use sst_notify::{Notification, Sink, SinkError, SinkKind, SinkSpec, TopicTemplate};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

fn mqtt_url() -> String {
    std::env::var("SST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".to_owned())
}

/// `host:port` of the broker the URL names.
fn broker_address() -> String {
    let url = mqtt_url();
    url.trim_start_matches("mqtt://").to_owned()
}

/// A subscriber to everything under a topic prefix of its own, connected (SUBACK received)
/// before the test publishes.
struct Subscriber {
    prefix: String,
    received: UnboundedReceiver<Publish>,
    driver: JoinHandle<()>,
    _client: AsyncClient,
}

impl Subscriber {
    async fn new() -> anyhow::Result<Self> {
        let prefix = unique("sst-test-");
        let (host, port) = broker_address()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.parse::<u16>()))
            .context("SST_MQTT_URL must be mqtt://host:port")?;
        let mut options = MqttOptions::new(unique("sst-test-sub-"), host, port?);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut event_loop) = AsyncClient::new(options, 16);
        client
            .subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
            .await?;
        let (sender, mut received) = unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if sender.send(publish).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        // An empty payload on a topic of its own marks "subscribed".
                        let marker = Publish::new("", QoS::AtMostOnce, Vec::new());
                        if sender.send(marker).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        eprintln!("subscriber: {error}");
                        return;
                    }
                }
            }
        });
        let subscribed = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .context("the Mosquitto broker on this machine does not answer (no SUBACK)")?
            .context("the subscriber's connection failed")?;
        ensure!(subscribed.topic.is_empty(), "unexpected {subscribed:?}");
        Ok(Subscriber {
            prefix,
            received,
            driver,
            _client: client,
        })
    }

    /// Topics `<prefix>/{contract}/{name}/{outcome}`.
    fn template(&self) -> anyhow::Result<TopicTemplate> {
        Ok(TopicTemplate::parse(&format!(
            "{}/{{contract}}/{{name}}/{{outcome}}",
            self.prefix
        ))?)
    }

    fn spec(&self, url: &str) -> anyhow::Result<SinkSpec> {
        let mut spec = SinkSpec::new(unique("mqtt-test-"), SinkKind::Mqtt, url);
        spec.topic = self.template()?;
        Ok(spec)
    }

    /// Receives `expected.len()` messages and checks each against the notification at the
    /// same position: payload, topic, QoS 1.
    async fn expect(&mut self, expected: &[Notification]) -> anyhow::Result<()> {
        let template = self.template()?;
        for (i, notification) in expected.iter().enumerate() {
            let publish = tokio::time::timeout(Duration::from_secs(20), self.received.recv())
                .await
                .with_context(|| format!("message {i} ({}) never arrived", notification.id))?
                .context("the subscriber's connection failed")?;
            assert_same_notification(&publish.payload, notification)
                .with_context(|| format!("message {i}"))?;
            ensure!(
                publish.topic == template.render(notification),
                "message {i}: topic {}",
                publish.topic
            );
            ensure!(
                publish.qos == QoS::AtLeastOnce,
                "message {i}: {:?}",
                publish.qos
            );
        }
        Ok(())
    }

    /// Everything that arrives within `quiet` of the previous message.
    async fn drain(&mut self, quiet: Duration) -> Vec<Notification> {
        let mut got = Vec::new();
        while let Ok(Some(publish)) = tokio::time::timeout(quiet, self.received.recv()).await {
            if let Ok(notification) = serde_json::from_slice(&publish.payload) {
                got.push(notification);
            }
        }
        got
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[tokio::test]
async fn a_batch_arrives_in_order_with_qos_1_on_the_templated_topics() -> anyhow::Result<()> {
    let mut subscriber = Subscriber::new().await?;
    let sink = MqttSink::connect(&subscriber.spec(&mqtt_url())?).await?;
    ensure!(sink.client_id().starts_with("sst-notify-mqtt-test-"));
    let batch = deal_notifications(&unique("m"), 40, 3);
    sink.publish(&batch[..25]).await?;
    sink.publish(&batch[25..]).await?;
    sink.publish(&[]).await?;
    subscriber.expect(&batch).await
}

#[tokio::test]
async fn a_topic_with_a_wildcard_fails_the_batch_naming_the_notification() -> anyhow::Result<()> {
    let subscriber = Subscriber::new().await?;
    let mut spec = subscriber.spec(&mqtt_url())?;
    spec.topic = TopicTemplate::parse(&format!("{}/+/{{name}}", subscriber.prefix))?;
    let sink = MqttSink::connect(&spec).await?;
    let batch = deal_notifications(&unique("m"), 2, 1);
    match sink.publish(&batch).await {
        Err(SinkError::NotConfirmed { id, detail, .. }) => {
            ensure!(id == batch[0].id, "failed on {id}");
            ensure!(detail.contains("/+/"), "detail: {detail}");
            Ok(())
        }
        other => bail!("a wildcard topic was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn bad_settings_are_configuration_errors_naming_them() -> anyhow::Result<()> {
    let subscriber = Subscriber::new().await?;
    let url = mqtt_url();
    let case = |url: &str, options: &[(&str, &str)]| -> anyhow::Result<SinkSpec> {
        Ok(with_options(subscriber.spec(url)?, options))
    };
    assert_config_errors(
        vec![
            (case("http://127.0.0.1:1883", &[])?, "MQTT URL"),
            (case("mqtt://127.0.0.1:99999", &[])?, "port"),
            (case(&url, &[("qos", "2")])?, "qos"),
            (case(&url, &[("keep_alive_s", "1")])?, "keep_alive_s"),
            (case(&url, &[("max_in_flight", "70000")])?, "max_in_flight"),
        ],
        MqttSink::new,
    )
}

#[tokio::test]
async fn a_broker_that_does_not_answer_is_an_error_within_the_timeout() -> anyhow::Result<()> {
    let subscriber = Subscriber::new().await?;
    let (addresses, listener) = unanswering_addresses().await?;
    for address in addresses {
        let spec = subscriber.spec(&format!("mqtt://{address}"))?;
        let sink = MqttSink::new(&with_options(spec, &[("timeout_ms", "500")]))?;
        assert_unreachable_in_time(&sink, &address).await?;
    }
    listener.abort();
    Ok(())
}

#[tokio::test]
async fn after_the_connection_broke_the_sink_publishes_again() -> anyhow::Result<()> {
    let mut subscriber = Subscriber::new().await?;
    let proxy = CuttableProxy::start(broker_address()).await?;
    let spec = subscriber.spec(&format!("mqtt://{}", proxy.address))?;
    let sink = MqttSink::connect(&with_options(spec, &[("timeout_ms", "2000")])).await?;
    let batch = deal_notifications(&unique("m"), 10, 2);
    sink.publish(&batch[..5]).await?;
    subscriber.expect(&batch[..5]).await?;

    proxy.cut().await;
    let attempts = publish_until_confirmed(&sink, &batch[5..]).await?;
    println!("mqtt: published again after the cut in {attempts} attempt(s)");
    // At least once: every notification of the batch arrived, in order once duplicates of a
    // failed attempt are dropped by id.
    let mut seen = std::collections::BTreeSet::new();
    let unique_in_order: Vec<String> = subscriber
        .drain(Duration::from_secs(2))
        .await
        .into_iter()
        .filter(|n| seen.insert(n.id.clone()))
        .map(|n| n.id)
        .collect();
    let expected: Vec<String> = batch[5..].iter().map(|n| n.id.clone()).collect();
    ensure!(
        unique_in_order == expected,
        "after reconnecting: {unique_in_order:?}"
    );
    Ok(())
}

// On two worker threads, so that the subscriber's connection is read while the sink
// publishes: on one thread it could fall more than the broker's per-client queue
// (Mosquitto's `max_queued_messages`, 1000 by default) behind, and the broker drops QoS 1
// messages beyond that queue (seen once in CI: 79 messages missing from 5,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_notifications_throughput() -> anyhow::Result<()> {
    let mut subscriber = Subscriber::new().await?;
    let sink = MqttSink::connect(&subscriber.spec(&mqtt_url())?).await?;
    let batch = deal_notifications(&unique("m"), 5_000, 50);
    let started = Instant::now();
    sink.publish(&batch).await?;
    let took = started.elapsed();
    println!(
        "mqtt: 5000 notifications acknowledged (QoS 1) in {:.3} s = {:.0} notifications/s",
        took.as_secs_f64(),
        per_second(batch.len(), took)
    );
    subscriber.expect(&batch).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_arrive_through_the_notifier_per_node_and_redacted() -> anyhow::Result<()>
{
    let mut subscriber = Subscriber::new().await?;
    let mut spec = subscriber.spec(&mqtt_url())?;
    spec.topic = TopicTemplate::parse(&format!(
        "{}/{{node}}/{{contract}}/{{name}}/{{outcome}}",
        subscriber.prefix
    ))?;
    let published = publish_two_deals_through_notifiers("mqtt-e2e", spec.clone()).await?;
    let total: usize = published.iter().map(|(_, want)| want.len()).sum();
    // Both nodes' notifiers published at once: split what arrived by the node topic level.
    let mut got: std::collections::BTreeMap<String, Vec<Notification>> = Default::default();
    for i in 0..total {
        let publish = tokio::time::timeout(Duration::from_secs(20), subscriber.received.recv())
            .await
            .with_context(|| format!("message {i} of {total} never arrived"))?
            .context("the subscriber's connection failed")?;
        let notification: Notification = serde_json::from_slice(&publish.payload)?;
        ensure!(
            publish.topic == spec.topic.render(&notification),
            "{} arrived on {}",
            notification.id,
            publish.topic
        );
        let node = publish
            .topic
            .split('/')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        got.entry(node).or_default().push(notification);
    }
    for (role, want) in &published {
        let got = got.remove(*role).unwrap_or_default();
        ensure!(&got == want, "{role}: got {got:#?}\nwant {want:#?}");
    }
    ensure!(got.is_empty(), "notifications of other nodes: {got:?}");
    Ok(())
}
