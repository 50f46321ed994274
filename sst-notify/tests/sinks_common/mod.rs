//! What the RabbitMQ, NATS and MQTT sink tests share: realistic notification batches, unique
//! names per run, a listener that accepts connections and never answers, and the check that
//! a consumed message is the notification that was published.

#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use sst_notify::event::{NotificationData, CONTENT_TYPE, SPEC_VERSION};
use sst_notify::{Notification, Sink, SinkError, SinkSpec};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A name nobody else uses: `<prefix><12 hex digits>` (broker objects per test run).
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..12])
}

/// `count` notifications of `states` deals, as a node publishes them: per state a `create`,
/// then `change_sections` and a `price_agreed` business event alternating, a rejection every
/// seventh; log positions increase. Ids are unique per `run`.
pub fn deal_notifications(run: &str, count: usize, states: usize) -> Vec<Notification> {
    (0..count)
        .map(|i| {
            let state = format!("deal-{run}-{}", i % states.max(1));
            let step = i / states.max(1);
            let rejected = i % 7 == 6;
            let (name, business_event) = match step {
                0 => ("create", false),
                s if s % 2 == 1 => ("change_sections", false),
                _ => ("price_agreed", true),
            };
            let outcome = if rejected && !business_event {
                "rejected"
            } else {
                "applied"
            };
            let event_id = format!("{run}-e{i:06}");
            let id = if business_event {
                format!("{event_id}#0")
            } else {
                event_id.clone()
            };
            let mut sections = serde_json::Map::new();
            if outcome == "applied" && !business_event {
                sections.insert(
                    "terms".into(),
                    serde_json::json!({ "address": "1 Main St", "step": step }),
                );
            }
            let data = NotificationData {
                event_id,
                state_id: state.clone(),
                contract: "real-estate-deal@1".into(),
                method: name.into(),
                actor: "acme/alice".into(),
                origin_node: "acme".into(),
                origin_seq: i as u64 + 1,
                outcome: outcome.into(),
                version: (outcome == "applied").then_some(step as u64 + 1),
                root: (outcome == "applied").then(|| format!("{:064x}", i + 1)),
                reason: None,
                sections,
                business_event: None,
            };
            Notification {
                specversion: SPEC_VERSION.into(),
                id,
                source: "sst://acme".into(),
                kind: format!("sst.real-estate-deal.{name}.{outcome}"),
                subject: state,
                time: format!("2026-11-30T05:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
                datacontenttype: CONTENT_TYPE.into(),
                data: serde_json::to_value(data).unwrap_or_default(),
                sstlogpos: i as u64 + 1,
                sstcontract: "real-estate-deal".into(),
                sstoutcome: outcome.into(),
            }
        })
        .collect()
}

/// Checks that `body` is the CloudEvents JSON of `expected`, field for field.
pub fn assert_same_notification(body: &[u8], expected: &Notification) -> anyhow::Result<()> {
    let got: Notification = serde_json::from_slice(body)
        .with_context(|| format!("message for {} is not a notification", expected.id))?;
    ensure!(
        &got == expected,
        "message differs from notification {}: got {got:?}",
        expected.id
    );
    let json: serde_json::Value = serde_json::from_slice(body)?;
    for member in [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "data",
    ] {
        ensure!(
            json.get(member).is_some(),
            "CloudEvents member `{member}` missing from {}",
            expected.id
        );
    }
    Ok(())
}

/// A TCP listener on loopback that accepts connections and never sends a byte: a broker that
/// does not answer. Connections are held open until the returned task is aborted.
pub async fn silent_listener() -> anyhow::Result<(String, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok((address, task))
}

/// A loopback port nothing listens on (bound, then released).
pub async fn closed_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

/// The longest a publish against a broker that does not answer may take in these tests: the
/// sink's timeout (500 ms here) plus slack for a loaded 2-core machine.
pub const SILENT_BROKER_BOUND: Duration = Duration::from_secs(5);

/// Notifications per second, for the throughput lines the tests print.
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// A TCP proxy to the broker whose connections can be cut, to break the sink's connection.
pub struct CuttableProxy {
    /// `host:port` to connect to instead of the broker.
    pub address: String,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl CuttableProxy {
    /// Listens on a loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let held = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                held.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Ok(CuttableProxy {
            address,
            connections,
            accept,
        })
    }

    /// Drops every proxied connection (both sockets close).
    pub async fn cut(&self) {
        for connection in self.connections.lock().await.drain(..) {
            connection.abort();
        }
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `spec` with these `[sink.options]` entries added.
pub fn with_options(mut spec: SinkSpec, options: &[(&str, &str)]) -> SinkSpec {
    for (key, value) in options {
        spec.options.insert((*key).into(), (*value).into());
    }
    spec
}

/// Checks that building a sink from each spec is a [`SinkError::Config`] whose detail names
/// the given text.
pub fn assert_config_errors<S: std::fmt::Debug>(
    cases: Vec<(SinkSpec, &str)>,
    build: impl Fn(&SinkSpec) -> Result<S, SinkError>,
) -> anyhow::Result<()> {
    for (spec, named) in cases {
        match build(&spec) {
            Err(SinkError::Config { detail, .. }) => {
                ensure!(detail.contains(named), "{named}: {detail}")
            }
            other => bail!("{named}: expected a configuration error, got {other:?}"),
        }
    }
    Ok(())
}

/// Two `host:port`s where no broker answers: a listener that accepts and stays silent, and a
/// closed port. Abort the task when done.
pub async fn unanswering_addresses() -> anyhow::Result<([String; 2], JoinHandle<()>)> {
    let (silent, listener) = silent_listener().await?;
    let closed = format!("127.0.0.1:{}", closed_port().await?);
    Ok(([silent, closed], listener))
}

/// Publishing to a sink whose broker does not answer fails with [`SinkError::Unreachable`]
/// within [`SILENT_BROKER_BOUND`].
pub async fn assert_unreachable_in_time(sink: &dyn Sink, broker: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let result = sink.publish(&deal_notifications("silent", 2, 1)).await;
    let took = started.elapsed();
    ensure!(
        matches!(result, Err(SinkError::Unreachable { .. })),
        "{broker}: {result:?}"
    );
    ensure!(took < SILENT_BROKER_BOUND, "{broker}: took {took:?}");
    Ok(())
}

/// Publishes `batch` again until the sink confirms it, as the notifier would after a broken
/// connection: at most 3 attempts, each failure a connection or confirmation error. Returns
/// the number of attempts.
pub async fn publish_until_confirmed(
    sink: &dyn Sink,
    batch: &[Notification],
) -> anyhow::Result<u32> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match sink.publish(batch).await {
            Ok(()) => return Ok(attempts),
            Err(error) if attempts < 3 => ensure!(
                matches!(
                    error,
                    SinkError::Unreachable { .. } | SinkError::NotConfirmed { .. }
                ),
                "{error:?}"
            ),
            Err(error) => bail!("still failing after {attempts} attempts: {error}"),
        }
    }
}

/// The nodes whose notifiers the end-to-end tests run: the deals' home, which reads every
/// section, and the regulator, whose node never receives the `price` plaintext.
pub const NOTIFYING_ROLES: [&str; 2] = ["seller", "regulator"];

/// End to end through the notifier: a real four-node network (SQLite) runs a deal; a
/// notifier per [`NOTIFYING_ROLES`] node publishes its committed log through the sink `spec`
/// describes (connected by the notifier itself); a second deal runs while they do; once each
/// notifier's durable cursor reached its log head, returns per role what the broker must now
/// hold, in log order. Checks on the way that the seller's notifications carry the price and
/// the regulator's never do.
pub async fn publish_two_deals_through_notifiers(
    test: &str,
    spec: SinkSpec,
) -> anyhow::Result<Vec<(&'static str, Vec<Notification>)>> {
    use crate::common::{eventually, expected, Cluster};
    use sst_notify::{Notifier, NotifierOptions};

    let cluster = Cluster::start(test).await?;
    cluster.run_deal("deal-1").await?;
    let mut handles = Vec::new();
    for role in NOTIFYING_ROLES {
        let notifier = Notifier::new(
            spec.clone(),
            sst_core::NodeId::from(role),
            cluster.stores[role].clone(),
        )
        .with_options(NotifierOptions {
            poll: Duration::from_millis(20),
            ..Default::default()
        });
        handles.push(notifier.spawn());
    }
    cluster.run_deal("deal-2").await?;
    let mut published = Vec::new();
    for role in NOTIFYING_ROLES {
        let store = cluster.stores[role].clone();
        let head = store.log_head().await?.pos;
        eventually(
            &format!("{role}'s cursor at its log head {head}"),
            || async { Ok((store.sink_cursor(&spec.name).await? >= Some(head)).then_some(())) },
        )
        .await?;
        let want = expected(role, store.as_ref()).await?;
        let with_price = want
            .iter()
            .filter(|n| n.to_json().contains("\"price\""))
            .count();
        match role {
            "regulator" => ensure!(with_price == 0, "the regulator's node publishes the price"),
            _ => ensure!(with_price > 0, "the {role}'s notifications lack the price"),
        }
        published.push((role, want));
    }
    for handle in handles {
        handle.stop().await;
    }
    Ok(published)
}
