//! The Redis Streams sink against the Redis server on this machine (`SST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`; a server that does not answer fails the tests): a real network's
//! committed log goes through the notifier into a stream per node and is read back with
//! `XRANGE` — the same notifications, in log order (so in order per state), with the right
//! CloudEvents fields, and nothing of the `price` section from the regulator's node; a batch
//! published twice appends the same ids again (consumers dedupe by `id`); a server that is
//! down is `Unreachable`, a bad option a configuration error.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context};
use sst_core::NodeId;
use sst_notify::sinks::redis::RedisSink;
use sst_notify::{
    Notification, NotificationData, Notifier, NotifierOptions, Sink, SinkError, SinkKind, SinkSpec,
    TopicTemplate,
};

use common::{eventually, expected, Cluster};

fn redis_url() -> String {
    std::env::var("SST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// A spec writing to streams `<prefix>.{node}`.
fn spec(name: &str, prefix: &str) -> anyhow::Result<SinkSpec> {
    let mut s = SinkSpec::new(name, SinkKind::Redis, redis_url());
    s.topic = TopicTemplate::parse(&format!("{prefix}.{{node}}"))?;
    Ok(s)
}

fn prefix() -> String {
    format!(
        "sst-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// One stream entry: its fields in order.
type Entry = (String, Vec<String>);

async fn conn() -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(redis_url().as_str())?;
    client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("Redis at {} does not answer", redis_url()))
}

/// The notifications on `stream`, in stream order, checked field by field against the
/// entry's `event` JSON.
async fn read_stream(stream: &str) -> anyhow::Result<Vec<Notification>> {
    let mut c = conn().await?;
    let entries: Vec<Entry> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await?;
    let mut out = Vec::new();
    for (entry_id, fields) in entries {
        let get = |k: &str| -> anyhow::Result<&String> {
            let i = fields
                .iter()
                .step_by(2)
                .position(|f| f == k)
                .with_context(|| format!("entry {entry_id} has no field {k}: {fields:?}"))?;
            Ok(&fields[2 * i + 1])
        };
        let n: Notification = serde_json::from_str(get("event")?)?;
        ensure!(get("event")? == &n.to_json(), "event JSON not canonical");
        ensure!(get("id")? == &n.id && get("type")? == &n.kind && get("subject")? == &n.subject);
        ensure!(get("sstlogpos")? == &n.sstlogpos.to_string());
        out.push(n);
    }
    Ok(out)
}

async fn delete(streams: &[String]) -> anyhow::Result<()> {
    let mut c = conn().await?;
    redis::cmd("DEL")
        .arg(streams)
        .query_async::<()>(&mut c)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_arrive_in_order_with_their_fields_and_never_the_unreadable_price(
) -> anyhow::Result<()> {
    let cluster = Cluster::start("redis").await?;
    cluster.run_deal("deal-1").await?;
    let prefix = prefix();
    let mut handles = Vec::new();
    for role in ["seller", "regulator"] {
        let notifier = Notifier::new(
            spec("redis-test", &prefix)?,
            NodeId::from(role),
            cluster.stores[role].clone(),
        )
        .with_options(NotifierOptions {
            poll: Duration::from_millis(20),
            ..Default::default()
        });
        handles.push(notifier.spawn());
    }
    // More events while the notifiers run.
    cluster.run_deal("deal-2").await?;
    for role in ["seller", "regulator"] {
        let store = cluster.stores[role].clone();
        let head = store.log_head().await?.pos;
        eventually(&format!("{role}'s cursor at its head"), || async {
            Ok((store.sink_cursor("redis-test").await? >= Some(head)).then_some(()))
        })
        .await?;
        let want = expected(role, store.as_ref()).await?;
        let got = read_stream(&format!("{prefix}.{role}")).await?;
        ensure!(got == want, "{role}: got {got:#?}\nwant {want:#?}");
        ensure!(want.len() == 8, "{role}: {} notifications", want.len());
        // In order per state: versions grow.
        for state in ["deal-1", "deal-2"] {
            let versions: Vec<u64> = got
                .iter()
                .filter(|n| n.subject == state)
                .filter_map(|n| {
                    serde_json::from_value::<NotificationData>(n.data.clone())
                        .ok()?
                        .version
                })
                .collect();
            ensure!(versions == [1, 2, 3], "{role} {state}: {versions:?}");
        }
    }
    let regulator = read_stream(&format!("{prefix}.regulator")).await?;
    ensure!(regulator.iter().all(|n| !n.to_json().contains("\"price\"")));
    let seller = read_stream(&format!("{prefix}.seller")).await?;
    ensure!(seller[0].data["sections"]["price"]["amount"] == 500000);
    for h in handles {
        h.stop().await;
    }
    delete(&[format!("{prefix}.seller"), format!("{prefix}.regulator")]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_published_again_carries_the_same_ids() -> anyhow::Result<()> {
    let cluster = Cluster::start("redis-again").await?;
    cluster.run_deal("deal-1").await?;
    let prefix = prefix();
    let sink = RedisSink::connect(&spec("again", &prefix)?).await?;
    let batch = expected("seller", cluster.stores["seller"].as_ref()).await?;
    sink.publish(&batch).await?;
    sink.publish(&batch).await?;
    let got = read_stream(&format!("{prefix}.seller")).await?;
    ensure!(got.len() == 2 * batch.len());
    let mut seen = BTreeSet::new();
    let deduped: Vec<_> = got
        .into_iter()
        .filter(|n| seen.insert(n.id.clone()))
        .collect();
    ensure!(deduped == batch);
    delete(&[format!("{prefix}.seller")]).await?;
    Ok(())
}

#[tokio::test]
async fn a_server_that_is_down_is_unreachable_and_bad_options_are_config_errors(
) -> anyhow::Result<()> {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut down = SinkSpec::new("down", SinkKind::Redis, format!("redis://127.0.0.1:{port}"));
    down.topic = TopicTemplate::parse("x")?;
    let err = RedisSink::connect(&down).await.err().context("connected")?;
    ensure!(matches!(err, SinkError::Unreachable { .. }), "{err}");
    let mut bad = spec("bad", "x")?;
    bad.options.insert("maxlen".into(), "lots".into());
    let err = RedisSink::connect(&bad).await.err().context("accepted")?;
    ensure!(
        matches!(&err, SinkError::Config { detail, .. } if detail.contains("maxlen")),
        "{err}"
    );
    let mut unknown = spec("unknown", "x")?;
    unknown.options.insert("stream".into(), "y".into());
    let err = RedisSink::connect(&unknown)
        .await
        .err()
        .context("accepted")?;
    ensure!(
        matches!(&err, SinkError::Config { detail, .. } if detail.contains("stream")),
        "{err}"
    );
    Ok(())
}
