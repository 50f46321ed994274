//! The formatter and the notifier on a real four-node network (SQLite stores): what each
//! node's committed log turns into (CloudEvents fields, redaction on the regulator's node,
//! business events, byte-identical output), and the notifier's delivery rules — every
//! committed event published in log order, the cursor stored only after the sink confirmed,
//! a failing batch retried as it is, a restart resuming from the stored cursor, `start =
//! latest`, filters. The sink here is an in-process recorder that can be told to fail: the
//! notifier's seam, exercised without a broker (the broker sinks have their own tests against
//! the real servers).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::json;
use sst_core::{BusinessEvent, EventId, NodeId};
use sst_notify::{
    FilterSpec, Notification, NotificationData, Notifier, NotifierHandle, NotifierOptions, Sink,
    SinkConfig, SinkError, SinkKind, SinkSpec, Start,
};

use common::{eventually, expected, Cluster};

/// A sink that records what it was given and refuses the first `fail` batches.
#[derive(Default)]
struct Recorder {
    fail: AtomicUsize,
    attempts: AtomicUsize,
    got: Mutex<Vec<Notification>>,
}

impl Recorder {
    fn failing(n: usize) -> Arc<Self> {
        let r = Recorder::default();
        r.fail.store(n, Ordering::SeqCst);
        Arc::new(r)
    }
    fn got(&self) -> Vec<Notification> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Sink for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn publish(&self, batch: &[Notification]) -> Result<(), SinkError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let left = self.fail.load(Ordering::SeqCst);
        if left > 0 {
            self.fail.store(left - 1, Ordering::SeqCst);
            return Err(SinkError::Unreachable {
                sink: "recorder".into(),
                detail: "refusing on purpose".into(),
            });
        }
        self.got
            .lock()
            .map_err(|_| SinkError::Unreachable {
                sink: "recorder".into(),
                detail: "poisoned".into(),
            })?
            .extend_from_slice(batch);
        Ok(())
    }
}

fn fast() -> NotifierOptions {
    NotifierOptions {
        poll: Duration::from_millis(20),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
    }
}

fn spec(name: &str, batch: usize) -> SinkSpec {
    let mut s = SinkSpec::new(name, SinkKind::Redis, "unused://");
    s.batch = batch;
    s
}

fn start(
    cluster: &Cluster,
    role: &'static str,
    spec: SinkSpec,
    sink: Arc<Recorder>,
) -> NotifierHandle {
    Notifier::new(spec, NodeId::from(role), cluster.stores[role].clone())
        .with_sink(sink)
        .with_options(fast())
        .spawn()
}

fn data(n: &Notification) -> anyhow::Result<NotificationData> {
    Ok(serde_json::from_value(n.data.clone())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_turns_into_cloudevents_with_only_what_the_node_may_read() -> anyhow::Result<()> {
    let cluster = Cluster::start("format").await?;
    let ids = cluster.run_deal("deal-1").await?;
    let seller = expected("seller", cluster.stores["seller"].as_ref()).await?;
    let regulator = expected("regulator", cluster.stores["regulator"].as_ref()).await?;
    let kinds = |ns: &[Notification]| ns.iter().map(|n| n.kind.clone()).collect::<Vec<_>>();
    // The home recorded all four (the regulator's rejection too); the regulator its three
    // replicated versions and its own rejection, sent back by the home.
    let all = [
        "sst.real-estate-deal.create.applied",
        "sst.real-estate-deal.change_sections.applied",
        "sst.real-estate-deal.record_inspection.applied",
        "sst.real-estate-deal.change_sections.rejected",
    ];
    ensure!(kinds(&seller) == all, "{:?}", kinds(&seller));
    ensure!(kinds(&regulator) == all, "{:?}", kinds(&regulator));
    for ns in [&seller, &regulator] {
        let got: Vec<&str> = ns.iter().map(|n| n.id.as_str()).collect();
        let want: Vec<String> = ids.iter().map(EventId::to_string).collect();
        ensure!(got == want, "ids {got:?} != {want:?}");
        ensure!(ns.windows(2).all(|w| w[0].sstlogpos < w[1].sstlogpos));
        for n in ns.iter() {
            ensure!(n.specversion == "1.0" && n.datacontenttype == "application/json");
            ensure!(n.subject == "deal-1" && n.sstcontract == "real-estate-deal");
            ensure!(
                n.time.len() == 24 && n.time.ends_with('Z') && n.time.as_bytes()[10] == b'T',
                "time {}",
                n.time
            );
        }
    }
    ensure!(seller[0].source == "sst://seller" && regulator[0].source == "sst://regulator");
    // Versions, roots, actors; reason of the rejection.
    let d: Vec<NotificationData> = seller.iter().map(data).collect::<Result<_, _>>()?;
    ensure!(d[0].version == Some(1) && d[1].version == Some(2) && d[2].version == Some(3));
    ensure!(d[2].method == "record_inspection" && d[2].actor == "inspector/a");
    let reason = d[3].reason.as_ref().context("rejection without reason")?;
    ensure!(
        reason.code == "forbidden" && reason.detail["section"] == "common",
        "{reason:?}"
    );
    ensure!(d[3].version.is_none() && d[3].sections.is_empty());
    // The home publishes the price; the regulator's node, which never received it, does not.
    ensure!(d[0].sections["price"] == json!({"amount": 500000}));
    ensure!(d[1].sections["price"] == json!({"amount": 480000}));
    for n in &regulator {
        let text = n.to_json();
        ensure!(
            !text.contains("\"price\"") && !text.contains("480000") && !text.contains("500000"),
            "the regulator's node published the price: {text}"
        );
    }
    let r0 = data(&regulator[0])?;
    ensure!(r0.sections.get("common") == Some(&json!({"address": "1 Main St"})));
    ensure!(data(&regulator[2])?.sections["inspection"]["radon"] == json!(1.5));
    // Same record, same bytes.
    let again = expected("seller", cluster.stores["seller"].as_ref()).await?;
    ensure!(
        seller.iter().map(Notification::to_json).collect::<Vec<_>>()
            == again.iter().map(Notification::to_json).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_events_get_their_own_notifications() -> anyhow::Result<()> {
    let cluster = Cluster::start("business").await?;
    let ids = cluster.run_deal("deal-b").await?;
    let store = &cluster.stores["seller"];
    let mut record = store.event(&ids[1]).await?.context("event")?;
    record.business_events = vec![
        BusinessEvent {
            name: "price_agreed".into(),
            payload: json!({"amount": 480000}),
        },
        BusinessEvent {
            name: "deal_ready".into(),
            payload: serde_json::Value::Null,
        },
    ];
    let ns = sst_notify::notifications(&NodeId::from("seller"), 7, &record);
    ensure!(ns.len() == 3, "{ns:?}");
    ensure!(ns[1].id == format!("{}#0", ids[1]) && ns[2].id == format!("{}#1", ids[1]));
    ensure!(ns[1].kind == "sst.real-estate-deal.price_agreed.applied");
    ensure!(ns[2].kind == "sst.real-estate-deal.deal_ready.applied");
    ensure!(ns[1].name() == "price_agreed" && ns[0].name() == "change_sections");
    let be = data(&ns[1])?
        .business_event
        .context("business event data")?;
    ensure!(be.name == "price_agreed" && be.index == 0 && be.payload["amount"] == 480000);
    ensure!(data(&ns[1])?.sections.is_empty() && ns.iter().all(|n| n.sstlogpos == 7));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_publishes_every_committed_event_and_resumes_from_its_cursor(
) -> anyhow::Result<()> {
    let cluster = Cluster::start("notifier").await?;
    let store = cluster.stores["regulator"].clone();
    cluster.run_deal("deal-1").await?;
    // Batches of 2 log entries; the first three attempts fail and are retried as they were.
    let sink = Recorder::failing(3);
    let handle = start(&cluster, "regulator", spec("reg-sink", 2), sink.clone());
    let want = expected("regulator", store.as_ref()).await?;
    let metrics = handle.metrics().clone();
    eventually("the first deal published", || async {
        Ok((sink.got().len() >= want.len()).then_some(()))
    })
    .await?;
    ensure!(sink.got() == want, "{:#?}", sink.got());
    ensure!(metrics.failures() >= 3 && metrics.published() == want.len() as u64);
    let head = store.log_head().await?.pos;
    eventually("the cursor at the head, stored and counted", || async {
        let stored = store.sink_cursor("reg-sink").await? == Some(head);
        Ok((stored && metrics.lag() == 0 && metrics.cursor() == head).then_some(()))
    })
    .await?;
    handle.stop().await;

    // A second deal while the notifier is stopped; a new process resumes after the cursor.
    cluster.run_deal("deal-2").await?;
    let all = expected("regulator", store.as_ref()).await?;
    let fresh: Vec<_> = all
        .iter()
        .filter(|n| n.subject == "deal-2")
        .cloned()
        .collect();
    let resumed = Recorder::failing(0);
    let handle = start(
        &cluster,
        "regulator",
        spec("reg-sink", 256),
        resumed.clone(),
    );
    // `latest` on a new sink: nothing of the past, then what comes next.
    let mut latest_spec = spec("reg-latest", 256);
    latest_spec.start = Start::Latest;
    let latest = Recorder::failing(0);
    let latest_handle = start(&cluster, "regulator", latest_spec, latest.clone());
    eventually("the second deal published", || async {
        Ok((resumed.got().len() >= fresh.len()).then_some(()))
    })
    .await?;
    ensure!(resumed.got() == fresh, "{:#?}", resumed.got());
    eventually("the latest sink's cursor stored", || async {
        Ok(store.sink_cursor("reg-latest").await?.map(|_| ()))
    })
    .await?;
    cluster.run_deal("deal-3").await?;
    let all = expected("regulator", store.as_ref()).await?;
    let third: Vec<_> = all
        .iter()
        .filter(|n| n.subject == "deal-3")
        .cloned()
        .collect();
    eventually("the third deal on the latest sink", || async {
        Ok((latest.got().len() >= third.len()).then_some(()))
    })
    .await?;
    ensure!(latest.got() == third, "{:#?}", latest.got());
    handle.stop().await;
    latest_handle.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_sink_gets_only_what_it_subscribed_to() -> anyhow::Result<()> {
    let cluster = Cluster::start("filter").await?;
    cluster.run_deal("deal-1").await?;
    cluster.run_deal("other-1").await?;
    let entry: SinkConfig = toml_entry(
        r#"
        name = "rejections"
        kind = "redis"
        url = "redis://127.0.0.1:6379"
        [filter]
        outcomes = ["rejected"]
        state_prefixes = ["deal-"]
        "#,
    )?;
    let spec = match entry.validate() {
        Ok(s) => s,
        // A build without the redis feature: any compiled kind will do for this test.
        Err(sst_notify::ConfigError::NotCompiled { .. }) => {
            let mut s = spec("rejections", 256);
            s.filter = sst_notify::Filter::new(&FilterSpec {
                outcomes: vec!["rejected".into()],
                state_prefixes: vec!["deal-".into()],
                ..Default::default()
            })?;
            s
        }
        Err(e) => return Err(e.into()),
    };
    let sink = Recorder::failing(0);
    let handle = start(&cluster, "seller", spec, sink.clone());
    let store = cluster.stores["seller"].clone();
    let head = store.log_head().await?.pos;
    eventually("the cursor at the head", || async {
        Ok((store.sink_cursor("rejections").await? == Some(head)).then_some(()))
    })
    .await?;
    let got = sink.got();
    ensure!(got.len() == 1, "{got:#?}");
    ensure!(got[0].kind == "sst.real-estate-deal.change_sections.rejected");
    ensure!(got[0].subject == "deal-1");
    handle.stop().await;
    Ok(())
}

/// A `[[sink]]` entry from its TOML text (the daemon reads the same structure).
fn toml_entry(text: &str) -> anyhow::Result<SinkConfig> {
    Ok(toml::from_str(text)?)
}
