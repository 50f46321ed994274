//! Redis Streams sink (cargo feature `redis`): each notification becomes one stream entry,
//! `XADD <stream> * id <id> type <type> subject <state id> sstlogpos <pos> event <CloudEvents
//! JSON>`, the stream named by the sink's topic template (e.g. `sst.{contract}`). A batch is
//! sent as one `MULTI`/`EXEC` pipeline, so it is appended whole or not at all, and the batch
//! counts as confirmed when `EXEC` answered. Consumers (`XREAD`, `XREADGROUP`) drop
//! duplicates by the `id` field: after a crash between the answer and the cursor update, the
//! same notifications are appended again under the same ids.
//!
//! Options: `maxlen` (approximate `MAXLEN ~ N` trimming of each stream; default: no trimming).
//! A broken connection is dropped and dialled again at the next attempt.

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::{Notification, Sink, SinkError, SinkSpec, TopicTemplate};

/// The option bounding each stream's length.
const MAXLEN: &str = "maxlen";

/// Publishes to Redis Streams.
pub struct RedisSink {
    name: String,
    streams: TopicTemplate,
    client: redis::Client,
    maxlen: Option<u64>,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("name", &self.name)
            .field("streams", &self.streams.as_str())
            .finish_non_exhaustive()
    }
}

impl RedisSink {
    /// Connects to the Redis server of `spec.url` (`redis://host:port[/db]`).
    ///
    /// # Errors
    /// [`SinkError::Config`] for a URL the client does not accept or a bad option;
    /// [`SinkError::Unreachable`] when the server does not answer.
    pub async fn connect(spec: &SinkSpec) -> Result<Self, SinkError> {
        spec.check_options(&[MAXLEN])?;
        let maxlen = match spec.option(MAXLEN) {
            None => None,
            Some(text) => match text.parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(spec.config_error(format!(
                        "option `{MAXLEN}` = {text:?} is not a positive number"
                    )))
                }
            },
        };
        let client = redis::Client::open(spec.url.as_str())
            .map_err(|e| spec.config_error(format!("url `{}`: {e}", spec.url)))?;
        let sink = RedisSink {
            name: spec.name.clone(),
            streams: spec.topic.clone(),
            client,
            maxlen,
            conn: Mutex::new(None),
        };
        let conn = sink.dial().await?;
        *sink.conn.lock().await = Some(conn);
        Ok(sink)
    }

    async fn dial(&self) -> Result<MultiplexedConnection, SinkError> {
        self.client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| SinkError::Unreachable {
                sink: self.name.clone(),
                detail: e.to_string(),
            })
    }

    /// The stream a notification goes to.
    pub fn stream_of(&self, n: &Notification) -> String {
        self.streams.render(n)
    }
}

#[async_trait::async_trait]
impl Sink for RedisSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Notification]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for n in batch {
            let cmd = pipe.cmd("XADD").arg(self.stream_of(n));
            if let Some(max) = self.maxlen {
                cmd.arg("MAXLEN").arg("~").arg(max);
            }
            cmd.arg("*")
                .arg("id")
                .arg(&n.id)
                .arg("type")
                .arg(&n.kind)
                .arg("subject")
                .arg(&n.subject)
                .arg("sstlogpos")
                .arg(n.sstlogpos)
                .arg("event")
                .arg(n.to_json())
                .ignore();
        }
        let mut guard = self.conn.lock().await;
        let mut conn = match guard.as_ref() {
            Some(c) => c.clone(),
            None => {
                let c = self.dial().await?;
                *guard = Some(c.clone());
                c
            }
        };
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let broken = e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout();
                if broken {
                    *guard = None;
                    Err(SinkError::Unreachable {
                        sink: self.name.clone(),
                        detail: e.to_string(),
                    })
                } else {
                    Err(SinkError::NotConfirmed {
                        sink: self.name.clone(),
                        id: batch[0].id.clone(),
                        detail: format!("batch of {} from this id: {e}", batch.len()),
                    })
                }
            }
        }
    }
}
