//! The notifier: one task per sink that reads the node's **committed** log after the sink's
//! durable cursor, turns each recorded event into notifications ([`crate::event`]), keeps
//! those the sink's filter lets through, publishes them as one batch and only then moves the
//! cursor (stored in the node's own database) past the entries it read.
//!
//! Delivery is therefore at least once: a crash or kill between the broker's confirmation and
//! the cursor update publishes the same notifications again after the restart, under the same
//! ids; a crash before the confirmation delays them. A batch the sink cannot publish is
//! retried as it is, after a bounded exponential back-off (logged with `tracing`, counted in
//! [`SinkMetrics::failures`]). The task wakes every poll interval and, when given one, on a
//! wake signal; it stops between two rounds when asked ([`NotifierHandle::stop`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sst_core::{EventId, LogKind, NodeId, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::{SinkSpec, Start};
use crate::event::notifications;
use crate::{Notification, Sink};

/// Timing of a notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifierOptions {
    /// How long an idle notifier waits before looking at the log again.
    pub poll: Duration,
    /// First wait after a failure (broker or store).
    pub backoff_min: Duration,
    /// Longest wait after repeated failures.
    pub backoff_max: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            poll: Duration::from_millis(100),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Counters of one sink, shared between its task and whoever exposes them (the daemon's
/// Prometheus endpoint).
#[derive(Debug, Default)]
pub struct SinkMetrics {
    name: String,
    published: AtomicU64,
    failures: AtomicU64,
    cursor: AtomicU64,
    head: AtomicU64,
    connected: AtomicBool,
}

impl SinkMetrics {
    /// Fresh counters of sink `name`.
    pub fn new(name: impl Into<String>) -> Self {
        SinkMetrics {
            name: name.into(),
            ..Default::default()
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Notifications the broker confirmed since the process started.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Failed attempts (connect, publish, or store access) since the process started.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// The sink's cursor: the last log position whose notifications were confirmed.
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::SeqCst)
    }

    /// Log entries committed but not yet past the cursor (log head − cursor).
    pub fn lag(&self) -> u64 {
        self.head
            .load(Ordering::SeqCst)
            .saturating_sub(self.cursor())
    }

    /// Whether the sink is connected to its broker.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// The Prometheus text exposition of several sinks' counters.
    pub fn prometheus(sinks: &[Arc<SinkMetrics>]) -> String {
        let mut out = String::new();
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&SinkMetrics) -> u64| {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
                for s in sinks {
                    let label = s.name.replace('\\', "\\\\").replace('"', "\\\"");
                    out.push_str(&format!("{name}{{sink=\"{label}\"}} {}\n", value(s)));
                }
            };
        family(
            "sst_notify_published_total",
            "counter",
            "Notifications the sink's broker confirmed.",
            &|s| s.published(),
        );
        family(
            "sst_notify_failures_total",
            "counter",
            "Failed attempts to connect, publish or read the log (each retried after a back-off).",
            &|s| s.failures(),
        );
        family(
            "sst_notify_cursor",
            "gauge",
            "Log position up to which the sink's notifications were confirmed.",
            &|s| s.cursor(),
        );
        family(
            "sst_notify_lag",
            "gauge",
            "Log entries committed and not yet published (log head minus cursor).",
            &|s| s.lag(),
        );
        family(
            "sst_notify_connected",
            "gauge",
            "1 when the sink is connected to its broker.",
            &|s| u64::from(s.connected()),
        );
        out
    }
}

/// A sink's notifier, ready to run ([`Notifier::spawn`]).
pub struct Notifier {
    spec: SinkSpec,
    node: NodeId,
    store: Arc<dyn Store>,
    sink: Option<Arc<dyn Sink>>,
    options: NotifierOptions,
    wake: Option<watch::Receiver<u64>>,
    metrics: Arc<SinkMetrics>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("sink", &self.spec.name)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// A running notifier.
#[derive(Debug)]
pub struct NotifierHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    metrics: Arc<SinkMetrics>,
}

impl NotifierHandle {
    /// The sink's counters.
    pub fn metrics(&self) -> &Arc<SinkMetrics> {
        &self.metrics
    }

    /// Asks the task to stop and waits for it: a batch being published is finished and its
    /// cursor stored first; a batch waiting for a retry is left for the next run.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            warn!(sink = %self.metrics.name, error = %e, "notifier task failed");
        }
    }
}

/// What ended a wait.
enum Waited {
    Elapsed,
    Stop,
}

impl Notifier {
    /// A notifier of the sink `spec` describes, over `store`, the store of node `node` (the
    /// notifications' `source`). It connects the sink when it starts ([`SinkSpec::connect`],
    /// retried while the broker does not answer) unless one is given ([`Notifier::with_sink`]).
    pub fn new(spec: SinkSpec, node: NodeId, store: Arc<dyn Store>) -> Self {
        let metrics = Arc::new(SinkMetrics::new(spec.name.clone()));
        Notifier {
            spec,
            node,
            store,
            sink: None,
            options: NotifierOptions::default(),
            wake: None,
            metrics,
        }
    }

    /// Publishes to `sink` (already connected, or an adapter of one's own) instead of
    /// connecting one from the spec. Its cursor is still named after the spec.
    pub fn with_sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Other timings.
    pub fn with_options(mut self, options: NotifierOptions) -> Self {
        self.options = options;
        self
    }

    /// Also looks at the log whenever `wake` changes (e.g. a node's log position after each
    /// commit), not only every poll interval.
    pub fn wake_on(mut self, wake: watch::Receiver<u64>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// The sink's counters.
    pub fn metrics(&self) -> Arc<SinkMetrics> {
        self.metrics.clone()
    }

    /// Starts the task.
    pub fn spawn(self) -> NotifierHandle {
        let (stop, stopped) = watch::channel(false);
        let metrics = self.metrics.clone();
        let task = tokio::spawn(self.run(stopped));
        NotifierHandle {
            stop,
            task,
            metrics,
        }
    }

    /// Waits `d`, or less when woken or stopped.
    async fn wait(&mut self, d: Duration, stop: &mut watch::Receiver<bool>) -> Waited {
        if *stop.borrow() {
            return Waited::Stop;
        }
        let woken = async {
            match self.wake.as_mut() {
                Some(w) => {
                    if w.changed().await.is_err() {
                        // The sender is gone: poll only.
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(d) => Waited::Elapsed,
            _ = woken => Waited::Elapsed,
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() { Waited::Stop } else { Waited::Elapsed }
            }
        }
    }

    /// Sleeps the back-off after a failure and doubles it; `Stop` when asked to stop.
    async fn back_off(&self, backoff: &mut Duration, stop: &mut watch::Receiver<bool>) -> Waited {
        self.metrics.failures.fetch_add(1, Ordering::SeqCst);
        let d = *backoff;
        *backoff = (*backoff * 2).min(self.options.backoff_max);
        tokio::select! {
            _ = tokio::time::sleep(d) => Waited::Elapsed,
            _ = stop.wait_for(|s| *s) => Waited::Stop,
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = self.spec.name.clone();
        let mut backoff = self.options.backoff_min;
        let sink = loop {
            if let Some(s) = &self.sink {
                break s.clone();
            }
            match self.spec.connect().await {
                Ok(s) => {
                    info!(sink = %name, kind = %self.spec.kind, "notifier: sink connected");
                    break s;
                }
                Err(e) => {
                    warn!(sink = %name, error = %e, retry_in = ?backoff, "notifier: cannot connect the sink");
                    if let Waited::Stop = self.back_off(&mut backoff, &mut stop).await {
                        return;
                    }
                }
            }
        };
        self.metrics.connected.store(true, Ordering::SeqCst);
        backoff = self.options.backoff_min;
        let mut cursor = loop {
            match self.initial_cursor().await {
                Ok(c) => break c,
                Err(e) => {
                    warn!(sink = %name, error = %e, "notifier: cannot read the sink's cursor");
                    if let Waited::Stop = self.back_off(&mut backoff, &mut stop).await {
                        return;
                    }
                }
            }
        };
        self.metrics.cursor.store(cursor, Ordering::SeqCst);
        backoff = self.options.backoff_min;
        loop {
            if *stop.borrow() {
                break;
            }
            let round = match self.read_round(cursor).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(sink = %name, error = %e, after = cursor, "notifier: log not readable");
                    if let Waited::Stop = self.back_off(&mut backoff, &mut stop).await {
                        break;
                    }
                    continue;
                }
            };
            let Some((last, batch, full)) = round else {
                if let Waited::Stop = self.wait(self.options.poll, &mut stop).await {
                    break;
                }
                continue;
            };
            // Publish the batch until the broker confirms it (the cursor does not move before).
            backoff = self.options.backoff_min;
            while !batch.is_empty() {
                match sink.publish(&batch).await {
                    Ok(()) => {
                        self.metrics
                            .published
                            .fetch_add(batch.len() as u64, Ordering::SeqCst);
                        self.metrics.connected.store(true, Ordering::SeqCst);
                        break;
                    }
                    Err(e) => {
                        self.metrics.connected.store(false, Ordering::SeqCst);
                        warn!(
                            sink = %name, error = %e, first = %batch[0].id,
                            count = batch.len(), retry_in = ?backoff,
                            "notifier: batch not confirmed; publishing it again"
                        );
                        if let Waited::Stop = self.back_off(&mut backoff, &mut stop).await {
                            return;
                        }
                    }
                }
            }
            backoff = self.options.backoff_min;
            loop {
                match self.store.set_sink_cursor(&name, last).await {
                    Ok(()) => break,
                    Err(e) => {
                        warn!(sink = %name, error = %e, position = last, "notifier: cursor not stored");
                        if let Waited::Stop = self.back_off(&mut backoff, &mut stop).await {
                            return;
                        }
                    }
                }
            }
            debug!(sink = %name, position = last, published = batch.len(), "notifier: cursor advanced");
            cursor = last;
            self.metrics.cursor.store(cursor, Ordering::SeqCst);
            self.metrics.head.fetch_max(cursor, Ordering::SeqCst);
            if !full {
                if let Waited::Stop = self.wait(self.options.poll, &mut stop).await {
                    break;
                }
            }
        }
        debug!(sink = %name, position = cursor, "notifier stopped");
    }

    /// The stored cursor, or where a new sink starts (stored at once for `latest`).
    async fn initial_cursor(&self) -> Result<u64, StoreError> {
        if let Some(c) = self.store.sink_cursor(&self.spec.name).await? {
            return Ok(c);
        }
        match self.spec.start {
            Start::Earliest => Ok(0),
            Start::Latest => {
                let head = self.store.log_head().await?.pos;
                self.store.set_sink_cursor(&self.spec.name, head).await?;
                Ok(head)
            }
        }
    }

    /// Reads the log after `cursor`: `None` when nothing new was committed; else the last
    /// position read, the notifications of its event entries that pass the filter, and
    /// whether the read was a full batch (more may follow at once).
    async fn read_round(
        &self,
        cursor: u64,
    ) -> Result<Option<(u64, Vec<Notification>, bool)>, StoreError> {
        let head = self.store.log_head().await?.pos;
        self.metrics.head.fetch_max(head, Ordering::SeqCst);
        if head <= cursor {
            return Ok(None);
        }
        let entries = self.store.log(cursor, Some(self.spec.batch)).await?;
        let Some(last) = entries.last().map(|e| e.pos) else {
            return Ok(None);
        };
        let full = entries.len() >= self.spec.batch;
        let mut batch = Vec::new();
        for entry in entries {
            if entry.kind != LogKind::Event {
                continue;
            }
            let Ok(id) = entry.subject.parse::<EventId>() else {
                warn!(sink = %self.spec.name, pos = entry.pos, subject = %entry.subject, "notifier: log entry names no event id; skipped");
                continue;
            };
            let Some(record) = self.store.event(&id).await? else {
                warn!(sink = %self.spec.name, pos = entry.pos, event = %id, "notifier: logged event not found; skipped");
                continue;
            };
            batch.extend(
                notifications(&self.node, entry.pos, &record)
                    .into_iter()
                    .filter(|n| self.spec.filter.matches(n)),
            );
        }
        Ok(Some((last, batch, full)))
    }
}
