//! The PostgreSQL `NOTIFY` sink against the PostgreSQL server on this machine
//! (`SST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`; a server that
//! does not answer fails the tests): a `LISTEN`ing connection receives a real network's
//! committed events through the notifier, in log order, each payload carrying the
//! notification's id, type, subject, source, time and log position (nothing of the sections,
//! so nothing of the price); a channel longer than PostgreSQL allows is a configuration error.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use sqlx::postgres::PgListener;
use sst_core::NodeId;
use sst_notify::sinks::postgres::PostgresSink;
use sst_notify::{Notifier, NotifierOptions, Sink, SinkError, SinkKind, SinkSpec, TopicTemplate};

use common::{expected, Cluster, DEADLINE};

fn postgres_url() -> String {
    std::env::var("SST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn channel() -> String {
    format!(
        "sst_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Receives `count` payloads on `listener`.
async fn receive(listener: &mut PgListener, count: usize) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    while out.len() < count {
        let n = tokio::time::timeout(DEADLINE, listener.recv())
            .await
            .with_context(|| format!("{} of {count} notifications arrived", out.len()))??;
        out.push(serde_json::from_str(n.payload())?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_receive_every_committed_event_in_order_with_its_key_fields() -> anyhow::Result<()>
{
    let cluster = Cluster::start("postgres").await?;
    cluster.run_deal("deal-1").await?;
    let mut listener = PgListener::connect(&postgres_url())
        .await
        .with_context(|| format!("PostgreSQL at {} does not answer", postgres_url()))?;
    let mut channels = Vec::new();
    let mut handles = Vec::new();
    for role in ["seller", "regulator"] {
        let channel = channel();
        listener.listen(&channel).await?;
        let mut spec = SinkSpec::new("pg-test", SinkKind::Postgres, postgres_url());
        spec.topic = TopicTemplate::parse(&channel)?;
        let notifier = Notifier::new(spec, NodeId::from(role), cluster.stores[role].clone())
            .with_options(NotifierOptions {
                poll: Duration::from_millis(20),
                ..Default::default()
            });
        handles.push(notifier.spawn());
        channels.push((role, channel));
    }
    cluster.run_deal("deal-2").await?;
    let mut got: Vec<(String, Value)> = Vec::new();
    let mut want_total = 0;
    for (role, _) in &channels {
        want_total += expected(role, cluster.stores[role].as_ref()).await?.len();
    }
    while got.len() < want_total {
        let n = tokio::time::timeout(DEADLINE, listener.recv())
            .await
            .with_context(|| format!("{} of {want_total} notifications arrived", got.len()))??;
        got.push((n.channel().to_owned(), serde_json::from_str(n.payload())?));
    }
    for (role, channel) in &channels {
        let want = expected(role, cluster.stores[role].as_ref()).await?;
        let mine: Vec<&Value> = got
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, v)| v)
            .collect();
        ensure!(mine.len() == want.len(), "{role}: {mine:?}");
        for (payload, n) in mine.iter().zip(&want) {
            ensure!(
                payload["id"] == n.id.as_str()
                    && payload["type"] == n.kind.as_str()
                    && payload["subject"] == n.subject.as_str()
                    && payload["source"] == n.source.as_str()
                    && payload["time"] == n.time.as_str()
                    && payload["sstlogpos"] == n.sstlogpos,
                "{role}: {payload} is not {n:?}"
            );
            ensure!(payload.as_object().map(|o| o.len()) == Some(6), "{payload}");
        }
    }
    for h in handles {
        h.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_delivered_on_commit_and_long_channels_are_config_errors() -> anyhow::Result<()>
{
    let cluster = Cluster::start("postgres-batch").await?;
    cluster.run_deal("deal-1").await?;
    let batch = expected("seller", cluster.stores["seller"].as_ref()).await?;
    let channel = channel();
    let mut listener = PgListener::connect(&postgres_url()).await?;
    listener.listen(&channel).await?;
    let mut spec = SinkSpec::new("pg-batch", SinkKind::Postgres, postgres_url());
    spec.topic = TopicTemplate::parse(&channel)?;
    let sink = PostgresSink::connect(&spec).await?;
    sink.publish(&batch).await?;
    let got = receive(&mut listener, batch.len()).await?;
    let ids: Vec<&str> = got.iter().filter_map(|p| p["id"].as_str()).collect();
    let want: Vec<&str> = batch.iter().map(|n| n.id.as_str()).collect();
    ensure!(ids == want, "{ids:?} != {want:?}");

    spec.topic = TopicTemplate::parse(&format!("{}.{{type}}", "x".repeat(40)))?;
    let long = PostgresSink::connect(&spec).await?;
    let err = long.publish(&batch).await.err().context("published")?;
    ensure!(
        matches!(&err, SinkError::Config { detail, .. } if detail.contains("63 bytes")),
        "{err}"
    );
    Ok(())
}
