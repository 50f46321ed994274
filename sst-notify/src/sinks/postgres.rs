//! PostgreSQL `NOTIFY` sink (cargo feature `postgres`), for nodes whose store is PostgreSQL
//! (or any consumer that `LISTEN`s): each notification is a `pg_notify(channel, payload)`
//! whose payload is a small JSON object — `id`, `type`, `subject`, `source`, `time`,
//! `sstlogpos` — well under PostgreSQL's 8,000-byte limit; readers fetch the rest with SQL
//! (the event row by its id in the node's `sst_event` table, the state in `sst_state`). The
//! channel is the sink's topic template (e.g. `sst.{contract}`; at most 63 bytes, and
//! `LISTEN "sst.real-estate-deal"` needs the quotes).
//!
//! A batch is notified inside one transaction, in order, with one statement; PostgreSQL
//! delivers the notifications when the transaction commits, so the commit is the
//! confirmation. Notifications are not stored: a listener that is not connected misses them
//! (that is `NOTIFY`'s nature — use it to wake readers that then query the tables).

use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::{Notification, Sink, SinkError, SinkSpec, TopicTemplate};

/// PostgreSQL refuses payloads of this many bytes or more.
pub const MAX_PAYLOAD: usize = 8000;
/// Longest channel name (PostgreSQL's `NAMEDATALEN` − 1).
pub const MAX_CHANNEL: usize = 63;

/// What a `NOTIFY` carries.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    subject: &'a str,
    source: &'a str,
    time: &'a str,
    sstlogpos: u64,
}

/// Publishes with `pg_notify`.
#[derive(Debug)]
pub struct PostgresSink {
    name: String,
    channels: TopicTemplate,
    pool: PgPool,
}

impl PostgresSink {
    /// Connects to the database of `spec.url` (`postgres://user@host:port/db`).
    ///
    /// # Errors
    /// [`SinkError::Config`] for a bad option; [`SinkError::Unreachable`] when the server
    /// does not answer or refuses the connection.
    pub async fn connect(spec: &SinkSpec) -> Result<Self, SinkError> {
        spec.check_options(&[])?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&spec.url)
            .await
            .map_err(|e| SinkError::Unreachable {
                sink: spec.name.clone(),
                detail: e.to_string(),
            })?;
        Ok(PostgresSink {
            name: spec.name.clone(),
            channels: spec.topic.clone(),
            pool,
        })
    }

    /// The channel and payload of a notification.
    ///
    /// # Errors
    /// [`SinkError::Config`] for a channel longer than [`MAX_CHANNEL`] bytes;
    /// [`SinkError::NotConfirmed`] for a payload of [`MAX_PAYLOAD`] bytes or more.
    pub fn channel_and_payload(&self, n: &Notification) -> Result<(String, String), SinkError> {
        let channel = self.channels.render(n);
        if channel.len() > MAX_CHANNEL {
            return Err(SinkError::Config {
                sink: self.name.clone(),
                detail: format!(
                    "channel `{channel}` (template `{}`) is longer than {MAX_CHANNEL} bytes",
                    self.channels
                ),
            });
        }
        let payload = serde_json::to_string(&Payload {
            id: &n.id,
            kind: &n.kind,
            subject: &n.subject,
            source: &n.source,
            time: &n.time,
            sstlogpos: n.sstlogpos,
        })
        .unwrap_or_default();
        if payload.len() >= MAX_PAYLOAD {
            return Err(SinkError::NotConfirmed {
                sink: self.name.clone(),
                id: n.id.clone(),
                detail: format!(
                    "payload of {} bytes (a state id that long does not fit a NOTIFY)",
                    payload.len()
                ),
            });
        }
        Ok((channel, payload))
    }
}

#[async_trait::async_trait]
impl Sink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Notification]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (channels, payloads): (Vec<String>, Vec<String>) = batch
            .iter()
            .map(|n| self.channel_and_payload(n))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        let unreachable = |e: sqlx::Error| SinkError::Unreachable {
            sink: self.name.clone(),
            detail: e.to_string(),
        };
        let mut tx = self.pool.begin().await.map_err(unreachable)?;
        // One statement, evaluated in array order (volatile functions run after the sort).
        sqlx::query(
            "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY \
             AS t(c, p, i) ORDER BY i",
        )
        .bind(&channels)
        .bind(&payloads)
        .execute(&mut *tx)
        .await
        .map_err(|e| SinkError::NotConfirmed {
            sink: self.name.clone(),
            id: batch[0].id.clone(),
            detail: format!("batch of {} from this id: {e}", batch.len()),
        })?;
        tx.commit().await.map_err(|e| SinkError::NotConfirmed {
            sink: self.name.clone(),
            id: batch[0].id.clone(),
            detail: format!("commit of a batch of {}: {e}", batch.len()),
        })
    }
}
