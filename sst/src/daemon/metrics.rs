//! The daemon's Prometheus metrics: the events the node committed since it started, by
//! outcome (counted by its sequencer as it commits), counters read from the node's own store by
//! a task that tails its hash-chained log (refusals, log position), the node's witness alarms
//! and the process uptime at scrape time, and each notification sink's counters (published,
//! failures, cursor, lag: [`sst_notify::SinkMetrics`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sst::core::{LogKind, Store};
use sst_notify::SinkMetrics;
use tracing::warn;

/// How often the tail task looks at the log when it is idle.
const IDLE: Duration = Duration::from_millis(200);

/// Counters over the node's log.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    refusals: AtomicU64,
    log_position: AtomicU64,
    /// The notification sinks' counters.
    sinks: Vec<Arc<SinkMetrics>>,
}

impl Metrics {
    /// Counters that also expose these sinks' counters.
    pub(crate) fn with_sinks(sinks: Vec<Arc<SinkMetrics>>) -> Self {
        Metrics {
            sinks,
            ..Default::default()
        }
    }

    /// Counts the log entries after the last one counted (refusals, the position; only the
    /// log rows are read); returns how many it read.
    async fn tail_once(&self, store: &dyn Store) -> Result<usize, sst::core::StoreError> {
        let after = self.log_position.load(Ordering::SeqCst);
        let entries = store.log(after, Some(1024)).await?;
        for entry in &entries {
            if entry.kind == LogKind::Refusal {
                self.refusals.fetch_add(1, Ordering::SeqCst);
            }
            self.log_position.store(entry.pos, Ordering::SeqCst);
        }
        Ok(entries.len())
    }

    /// Tails the log of `store` until the task is aborted.
    pub(crate) async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            match self.tail_once(store.as_ref()).await {
                Ok(0) => tokio::time::sleep(IDLE).await,
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "metrics: log not readable; retrying");
                    tokio::time::sleep(IDLE).await;
                }
            }
        }
    }

    /// The Prometheus text exposition, with the node's `(applied, rejected)` commit counts.
    pub(crate) fn render(
        &self,
        (applied, rejected): (u64, u64),
        witness_alarms: usize,
        uptime_secs: f64,
    ) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        let mut text = format!(
            "# HELP sst_events_committed_total Events this node committed since it started, by outcome.\n\
             # TYPE sst_events_committed_total counter\n\
             sst_events_committed_total{{outcome=\"applied\"}} {}\n\
             sst_events_committed_total{{outcome=\"rejected\"}} {}\n\
             # HELP sst_refusals_total Received changes this node refused (recorded refusals).\n\
             # TYPE sst_refusals_total counter\n\
             sst_refusals_total {}\n\
             # HELP sst_log_position Entries of this node's hash-chained log counted so far.\n\
             # TYPE sst_log_position gauge\n\
             sst_log_position {}\n\
             # HELP sst_witness_alarms Witness alarms this node raised about its peers' logs.\n\
             # TYPE sst_witness_alarms gauge\n\
             sst_witness_alarms {witness_alarms}\n\
             # HELP sst_uptime_seconds Seconds since this node process started.\n\
             # TYPE sst_uptime_seconds gauge\n\
             sst_uptime_seconds {uptime_secs:.3}\n",
            applied,
            rejected,
            get(&self.refusals),
            get(&self.log_position),
        );
        if !self.sinks.is_empty() {
            text.push_str(&SinkMetrics::prometheus(&self.sinks));
        }
        text
    }
}
