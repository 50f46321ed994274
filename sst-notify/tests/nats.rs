//! The NATS JetStream sink against the NATS server on this machine (`SST_NATS_URL`, default
//! `nats://127.0.0.1:4222`, JetStream enabled): what it publishes is read back with an
//! async-nats JetStream pull consumer, in order and field for field; the server drops a
//! re-published id. A server that does not answer fails these tests; nothing is skipped.

mod common;
mod sinks_common;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use futures_util::StreamExt;
use sinks_common::{
    assert_config_errors, assert_same_notification, assert_unreachable_in_time, deal_notifications,
    per_second, publish_two_deals_through_notifiers, unanswering_addresses, unique, with_options,
};
use sst_notify::sinks::nats::{NatsSink, CONTENT_TYPE};
use sst_notify::{Notification, Sink, SinkError, SinkKind, SinkSpec, TopicTemplate};

fn nats_url() -> String {
    std::env::var("SST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A run of its own: a fresh stream name and a subject prefix nobody else captures.
struct Run {
    stream: String,
    prefix: String,
    /// The subject template after the prefix.
    subjects: &'static str,
    jetstream: Context,
}

impl Run {
    async fn new() -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(nats_url())
            .await
            .context("the NATS server on this machine does not answer")?;
        Ok(Run {
            stream: unique("SST_TEST_"),
            prefix: unique("sst-test-"),
            subjects: "{contract}.{name}.{outcome}",
            jetstream: jetstream::new(client),
        })
    }

    /// The subject template: `<prefix>.<subjects>`.
    fn template(&self) -> anyhow::Result<TopicTemplate> {
        Ok(TopicTemplate::parse(&format!(
            "{}.{}",
            self.prefix, self.subjects
        ))?)
    }

    /// Subjects [`Run::template`] on the run's stream (created by the sink with the subjects
    /// derived from the template: `<prefix>.>`).
    fn spec(&self, url: &str) -> anyhow::Result<SinkSpec> {
        let mut spec = SinkSpec::new(unique("nats-test-"), SinkKind::Nats, url);
        spec.topic = self.template()?;
        spec.options.insert("stream".into(), self.stream.clone());
        Ok(spec)
    }

    /// Reads the whole stream from its start with a pull consumer and checks each message
    /// against the notification at the same position: body, `Nats-Msg-Id`, content type,
    /// subject; then that the stream holds exactly that many messages.
    async fn expect(&self, expected: &[Notification]) -> anyhow::Result<()> {
        self.expect_on(None, expected).await?;
        let stored = self.stored().await?;
        ensure!(
            stored == expected.len() as u64,
            "the stream holds {stored} messages, expected {}",
            expected.len()
        );
        Ok(())
    }

    /// How many messages the stream holds.
    async fn stored(&self) -> anyhow::Result<u64> {
        let mut stream = self.jetstream.get_stream(&self.stream).await?;
        Ok(stream.info().await?.state.messages)
    }

    /// As [`Run::expect`] for the messages on subjects `filter` selects (all if `None`),
    /// without counting the stream.
    async fn expect_on(
        &self,
        filter: Option<String>,
        expected: &[Notification],
    ) -> anyhow::Result<()> {
        let template = self.template()?;
        let stream = self.jetstream.get_stream(&self.stream).await?;
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                filter_subject: filter.unwrap_or_default(),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        for (i, notification) in expected.iter().enumerate() {
            let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
                .await
                .with_context(|| format!("message {i} ({}) never arrived", notification.id))?
                .context("consumer ended")?
                .map_err(|error| anyhow::anyhow!("message {i}: {error}"))?;
            assert_same_notification(&message.payload, notification)
                .with_context(|| format!("message {i}"))?;
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            let msg_id = format!("{}/{}", notification.source, notification.id);
            ensure!(
                header("Nats-Msg-Id").as_deref() == Some(msg_id.as_str()),
                "message {i}: Nats-Msg-Id {:?}, expected {msg_id}",
                header("Nats-Msg-Id"),
            );
            ensure!(
                header("Content-Type").as_deref() == Some(CONTENT_TYPE),
                "message {i}: Content-Type {:?}",
                header("Content-Type")
            );
            ensure!(
                message.subject.as_str() == template.render(notification),
                "message {i}: subject {}",
                message.subject
            );
            message
                .ack()
                .await
                .map_err(|error| anyhow::anyhow!("ack {i}: {error}"))?;
        }
        Ok(())
    }

    async fn remove(self) -> anyhow::Result<()> {
        self.jetstream.delete_stream(&self.stream).await?;
        Ok(())
    }
}

#[tokio::test]
async fn a_batch_is_stored_in_order_with_the_id_as_nats_msg_id() -> anyhow::Result<()> {
    let run = Run::new().await?;
    let sink = NatsSink::connect(&run.spec(&nats_url())?).await?;
    ensure!(sink.stream() == run.stream);
    ensure!(sink.stream_subjects() == [format!("{}.>", run.prefix)]);
    let batch = deal_notifications(&unique("n"), 40, 3);
    sink.publish(&batch[..25]).await?;
    sink.publish(&batch[25..]).await?;
    sink.publish(&[]).await?;
    run.expect(&batch).await?;
    run.remove().await
}

#[tokio::test]
async fn publishing_the_same_ids_again_is_deduplicated_by_the_server() -> anyhow::Result<()> {
    let run = Run::new().await?;
    let sink = NatsSink::connect(&run.spec(&nats_url())?).await?;
    let batch = deal_notifications(&unique("n"), 12, 2);
    sink.publish(&batch[..8]).await?;
    // The notifier retries a whole batch after a failure: ids 0..8 again, then the new ones.
    sink.publish(&batch).await?;
    sink.publish(&batch[4..6]).await?;
    // A second sink (another process after a restart) publishing the same ids.
    let restarted = NatsSink::connect(&run.spec(&nats_url())?).await?;
    restarted.publish(&batch).await?;
    run.expect(&batch).await?;
    // The same ids from another node (another CloudEvents source) are other events.
    let from_regulator: Vec<Notification> = batch
        .iter()
        .map(|n| Notification {
            source: "sst://regulator".into(),
            ..n.clone()
        })
        .collect();
    sink.publish(&from_regulator).await?;
    sink.publish(&from_regulator).await?;
    let stored = run.stored().await?;
    ensure!(
        stored == 2 * batch.len() as u64,
        "the stream holds {stored} messages, expected {} (one per node)",
        2 * batch.len()
    );
    run.remove().await
}

#[tokio::test]
async fn a_stream_that_captures_other_subjects_fails_the_batch() -> anyhow::Result<()> {
    let run = Run::new().await?;
    let mut spec = run.spec(&nats_url())?;
    spec.options
        .insert("subjects".into(), format!("{}.elsewhere.>", run.prefix));
    let sink = NatsSink::connect(&spec).await?;
    let batch = deal_notifications(&unique("n"), 2, 1);
    let result = sink.publish(&batch).await;
    run.remove().await?;
    match result {
        Err(SinkError::NotConfirmed { id, detail, .. }) => {
            ensure!(id == batch[0].id, "failed on {id}");
            ensure!(detail.contains("no stream captures"), "detail: {detail}");
            Ok(())
        }
        other => bail!("a subject no stream captures was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn bad_settings_are_configuration_errors_naming_them() -> anyhow::Result<()> {
    let run = Run::new().await?;
    let url = nats_url();
    let case = |url: &str, topic: &str, options: &[(&str, &str)]| -> anyhow::Result<SinkSpec> {
        let mut spec = with_options(run.spec(url)?, options);
        spec.topic = TopicTemplate::parse(topic)?;
        Ok(spec)
    };
    assert_config_errors(
        vec![
            (
                case("nats://127.0.0.1:4222:x", "sst.{contract}", &[])?,
                "NATS server address",
            ),
            (
                case(&url, "sst.{contract}", &[("stream", "a.b")])?,
                "stream",
            ),
            (case(&url, "{contract}.x", &[])?, "subjects"),
            (
                case(&url, "sst.{contract}", &[("subjects", "a,,b")])?,
                "subjects",
            ),
            (
                case(&url, "sst.{contract}", &[("max_in_flight", "0")])?,
                "max_in_flight",
            ),
        ],
        NatsSink::new,
    )
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_an_error_within_the_timeout() -> anyhow::Result<()> {
    let run = Run::new().await?;
    let (addresses, listener) = unanswering_addresses().await?;
    for address in addresses {
        let spec = run.spec(&format!("nats://{address}"))?;
        let sink = NatsSink::new(&with_options(spec, &[("timeout_ms", "500")]))?;
        assert_unreachable_in_time(&sink, &address).await?;
    }
    listener.abort();
    Ok(())
}

#[tokio::test]
async fn five_thousand_notifications_throughput() -> anyhow::Result<()> {
    let run = Run::new().await?;
    let sink = NatsSink::connect(&run.spec(&nats_url())?).await?;
    let batch = deal_notifications(&unique("n"), 5_000, 50);
    let started = Instant::now();
    sink.publish(&batch).await?;
    let took = started.elapsed();
    println!(
        "nats: 5000 notifications acknowledged in {:.3} s = {:.0} notifications/s",
        took.as_secs_f64(),
        per_second(batch.len(), took)
    );
    run.expect(&batch).await?;
    run.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_arrive_through_the_notifier_per_node_and_redacted() -> anyhow::Result<()>
{
    let mut run = Run::new().await?;
    run.subjects = "{node}.{contract}.{name}.{outcome}";
    let spec = run.spec(&nats_url())?;
    let published = publish_two_deals_through_notifiers("nats-e2e", spec).await?;
    let mut total = 0;
    for (role, want) in &published {
        run.expect_on(Some(format!("{}.{role}.>", run.prefix)), want)
            .await
            .with_context(|| format!("{role}'s notifications"))?;
        total += want.len() as u64;
    }
    // Both nodes notify the same events under the same ids: none was dropped as a duplicate.
    let stored = run.stored().await?;
    ensure!(
        stored == total,
        "the stream holds {stored}, expected {total}"
    );
    run.remove().await
}
