//! MQTT sink: notifications published with QoS 1 (at least once), each confirmed by its
//! `PUBACK`, over `rumqttc`. **This is also the way to reach Solace PubSub+**, which speaks
//! MQTT 3.1.1 natively: point the sink's URL at the Solace message VPN's MQTT port (no Solace
//! broker or Solace Rust SDK can be installed on these machines; the sink is tested against
//! Mosquitto).
//!
//! Each notification is one PUBLISH on the topic its template gives, its payload the
//! CloudEvents JSON (structured mode). MQTT 3.1.1 has no message properties, so consumers
//! deduplicate on the `id` member of the payload. A background task drives the client's event
//! loop (keep-alive pings between batches, the handshake, acknowledgements); a batch is sent
//! in order on one connection and [`Sink::publish`] returns `Ok` only once the broker
//! acknowledged every packet id of the batch. After a failure the connection is dropped and
//! the next publish opens a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::broker_options;
use crate::{Notification, Sink, SinkError, SinkSpec, TopicTemplate};

/// Options this sink reads from `[sink.options]`.
pub const OPTIONS: [&str; 5] = [
    "client_id",
    "keep_alive_s",
    "max_in_flight",
    "max_packet_bytes",
    broker_options::TIMEOUT_MS,
];

/// The MQTT port when the URL names none.
pub const DEFAULT_PORT: u16 = 1883;

/// Keep-alive interval unless configured.
const DEFAULT_KEEP_ALIVE_S: u64 = 30;

/// Publishes awaiting their `PUBACK` at once unless configured.
const DEFAULT_MAX_IN_FLIGHT: u16 = 100;

/// Largest packet sent or received unless configured (1 MiB).
const DEFAULT_MAX_PACKET_BYTES: u64 = 1 << 20;

/// Publishes notifications to an MQTT broker (Mosquitto, Solace PubSub+, …) with QoS 1.
///
/// Configured by a [`SinkSpec`] of kind `mqtt`: `url` `mqtt://[user[:password]@]host[:port]`
/// (also `tcp://`; port 1883 by default), `topic` the topic template (placeholders fill
/// topic levels; a rendered topic may not contain the wildcards `+` or `#`), and the options
/// `client_id` (default `sst-notify-<sink name>-<process id>-<n>`; two connections with one
/// id disconnect each other), `keep_alive_s` (default 30), `max_in_flight` (default 100),
/// `max_packet_bytes` (default 1 MiB) and `timeout_ms` (connecting, or waiting for any one
/// acknowledgement; default 10 s).
///
/// ```toml
/// [[sink]]
/// name = "deals-to-mqtt"                      # or to Solace PubSub+ over its MQTT port
/// kind = "mqtt"
/// url = "mqtt://127.0.0.1:1883"
/// topic = "sst/{contract}/{name}/{outcome}"
/// ```
pub struct MqttSink {
    name: String,
    options: MqttOptions,
    topic: TopicTemplate,
    timeout: Duration,
    /// The current connection, `None` until the first publish or after a failure. The lock
    /// also keeps concurrent batches from interleaving.
    connection: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink")
            .field("name", &self.name)
            .field("broker", &self.options.broker_address())
            .field("topic", &self.topic.as_str())
            .finish_non_exhaustive()
    }
}

/// What the event-loop task reports to the publishing side.
#[derive(Debug)]
enum Driven {
    /// The broker accepted the connection (CONNACK).
    Connected,
    /// The broker refused the connection (CONNACK with an error code).
    Refused(ConnectReturnCode),
    /// A PUBLISH went out with this packet id.
    Sent(u16),
    /// The broker acknowledged this packet id (PUBACK).
    Acked(u16),
    /// The connection failed; the task tries again after a pause.
    Broken(String),
}

/// A client and the task driving its event loop.
struct Connection {
    client: AsyncClient,
    events: UnboundedReceiver<Driven>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Polls the event loop for as long as the sink holds the connection, forwarding what the
/// publishing side needs; after a connection error it pauses, then the next poll reconnects.
async fn drive(mut event_loop: EventLoop, events: UnboundedSender<Driven>, pause: Duration) {
    loop {
        let forwarded = match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => match ack.code {
                ConnectReturnCode::Success => Driven::Connected,
                code => Driven::Refused(code),
            },
            Ok(Event::Incoming(Packet::PubAck(ack))) => Driven::Acked(ack.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Driven::Sent(pkid),
            Ok(_) => continue,
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => Driven::Refused(code),
            Err(error) => Driven::Broken(error.to_string()),
        };
        let failed = matches!(forwarded, Driven::Broken(_) | Driven::Refused(_));
        if events.send(forwarded).is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(pause).await;
        }
    }
}

/// What an MQTT URL names.
#[derive(Debug, PartialEq, Eq)]
struct BrokerAddress {
    host: String,
    port: u16,
    /// User name and password.
    credentials: Option<(String, String)>,
}

/// `mqtt://[user[:password]@]host[:port]` → host, port, credentials; why not otherwise.
fn parse_url(url: &str) -> Result<BrokerAddress, String> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or("it does not start with mqtt:// or tcp://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err("it has a path or query; only [user[:password]@]host[:port] is read".into());
    }
    let (credentials, address) = match rest.rsplit_once('@') {
        Some((user_info, address)) => {
            let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
            (Some((user.to_owned(), password.to_owned())), address)
        }
        None => (None, rest),
    };
    let (host, port) = match address.strip_prefix('[') {
        // An IPv6 literal: `[addr]` or `[addr]:port`.
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or("an unclosed `[`")?;
            (host, after.strip_prefix(':'))
        }
        None => match address.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        },
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?,
    };
    if host.is_empty() {
        return Err("it names no host".into());
    }
    Ok(BrokerAddress {
        host: host.to_owned(),
        port,
        credentials,
    })
}

/// `sst-notify-<sink name>-<process id>-<n>`, `n` counting the sinks this process made: two
/// connections with one client id disconnect each other, and two nodes in one process (tests,
/// a multi-node host) may have sinks of the same name.
fn default_client_id(sink: &str) -> String {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    format!("sst-notify-{sink}-{}-{n}", std::process::id())
}

impl MqttSink {
    /// Checks `spec` and builds the sink; the connection is opened by the first publish.
    ///
    /// # Errors
    /// [`SinkError::Config`] naming what is wrong: a URL that is not
    /// `mqtt://[user[:password]@]host[:port]`, an unknown option, an empty `client_id`, a
    /// `keep_alive_s` under 5, a `max_in_flight` over 65535, or a number option that is not a
    /// positive number.
    pub fn new(spec: &SinkSpec) -> Result<Self, SinkError> {
        spec.check_options(&OPTIONS)?;
        let BrokerAddress {
            host,
            port,
            credentials,
        } = parse_url(&spec.url).map_err(|why| {
            spec.config_error(format!("url {:?} is not an MQTT URL: {why}", spec.url))
        })?;
        let client_id = broker_options::text(spec, "client_id", &default_client_id(&spec.name))?;
        let keep_alive =
            broker_options::positive(spec, "keep_alive_s")?.unwrap_or(DEFAULT_KEEP_ALIVE_S);
        if keep_alive < 5 {
            return Err(spec.config_error(format!(
                "option `keep_alive_s` = {keep_alive}: the MQTT client needs at least 5 seconds"
            )));
        }
        let max_in_flight = match broker_options::positive(spec, "max_in_flight")? {
            None => DEFAULT_MAX_IN_FLIGHT,
            Some(n) => u16::try_from(n).map_err(|_| {
                spec.config_error(format!(
                    "option `max_in_flight` = {n}: MQTT packet ids allow at most 65535"
                ))
            })?,
        };
        let max_packet =
            broker_options::positive(spec, "max_packet_bytes")?.unwrap_or(DEFAULT_MAX_PACKET_BYTES);
        let max_packet = usize::try_from(max_packet).unwrap_or(usize::MAX);
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_keep_alive(Duration::from_secs(keep_alive))
            .set_clean_session(true)
            .set_inflight(max_in_flight)
            .set_max_packet_size(max_packet, max_packet)
            .set_request_channel_capacity(usize::from(max_in_flight));
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        Ok(Self {
            name: spec.name.clone(),
            options,
            topic: spec.topic.clone(),
            timeout: broker_options::timeout(spec)?,
            connection: Mutex::new(None),
        })
    }

    /// Builds the sink and connects now, so that a wrong URL or credentials show at start-up
    /// rather than at the first notification.
    ///
    /// # Errors
    /// As [`MqttSink::new`]; [`SinkError::Unreachable`] when the broker does not accept the
    /// connection within the timeout; [`SinkError::Config`] when it refuses it (credentials,
    /// client id).
    pub async fn connect(spec: &SinkSpec) -> Result<Self, SinkError> {
        let sink = Self::new(spec)?;
        let connection = sink.open().await?;
        *sink.connection.lock().await = Some(connection);
        Ok(sink)
    }

    /// The MQTT client id this sink connects with.
    pub fn client_id(&self) -> String {
        self.options.client_id()
    }

    fn unreachable(&self, detail: String) -> SinkError {
        SinkError::Unreachable {
            sink: self.name.clone(),
            detail,
        }
    }

    fn refused(&self, code: ConnectReturnCode) -> SinkError {
        SinkError::Config {
            sink: self.name.clone(),
            detail: format!("the broker refused the connection: {code:?}"),
        }
    }

    /// Starts a client and its event-loop task and waits for the broker's CONNACK.
    async fn open(&self) -> Result<Connection, SinkError> {
        let capacity = self.options.request_channel_capacity();
        let (client, event_loop) = AsyncClient::new(self.options.clone(), capacity);
        let (sender, events) = unbounded_channel();
        let driver = tokio::spawn(drive(
            event_loop,
            sender,
            self.timeout.min(Duration::from_secs(1)),
        ));
        let mut connection = Connection {
            client,
            events,
            driver,
        };
        let (host, port) = self.options.broker_address();
        let handshake = async {
            loop {
                match connection.events.recv().await {
                    Some(Driven::Connected) => return Ok(()),
                    Some(Driven::Refused(code)) => return Err(self.refused(code)),
                    Some(Driven::Broken(detail)) => {
                        return Err(
                            self.unreachable(format!("connecting to {host}:{port}: {detail}"))
                        )
                    }
                    Some(_) => {}
                    None => return Err(self.unreachable("the MQTT event loop stopped".into())),
                }
            }
        };
        timeout(self.timeout, handshake).await.map_err(|_| {
            broker_options::timed_out(
                &self.name,
                &format!("MQTT handshake with {host}:{port}"),
                self.timeout,
            )
        })??;
        Ok(connection)
    }

    /// Sends every notification of `batch` in order, then waits until each packet id the
    /// batch went out under was acknowledged.
    async fn publish_on(
        &self,
        connection: &mut Connection,
        batch: &[Notification],
    ) -> Result<(), SinkError> {
        // What the task reported between batches: a broken connection it has since re-opened
        // (or not: then this batch fails below), pings. Nothing of an earlier batch is left
        // unacknowledged, or that batch failed and its connection was dropped.
        while let Ok(event) = connection.events.try_recv() {
            if let Driven::Broken(detail) = event {
                tracing::info!(sink = %self.name, %detail, "the MQTT connection broke between batches; the client reconnects");
            }
        }
        let mut tally = Tally::new(batch.len());
        let not_confirmed = |index: usize, detail: String| SinkError::NotConfirmed {
            sink: self.name.clone(),
            id: batch[index].id.clone(),
            detail,
        };
        for (index, notification) in batch.iter().enumerate() {
            let topic = self.topic.render(notification);
            let request = connection.client.publish(
                topic.as_str(),
                QoS::AtLeastOnce,
                false,
                notification.to_json(),
            );
            match timeout(self.timeout, request).await {
                Err(_) => {
                    return Err(broker_options::timed_out(
                        &self.name,
                        &format!(
                            "handing notification {} to the MQTT client",
                            notification.id
                        ),
                        self.timeout,
                    ))
                }
                Ok(Err(error)) => {
                    return Err(not_confirmed(
                        index,
                        format!("topic {topic:?} (no wildcards + or # allowed): {error}"),
                    ))
                }
                Ok(Ok(())) => {}
            }
            // Keep the event queue short while sending.
            while let Ok(event) = connection.events.try_recv() {
                tally.apply(self, event)?;
            }
        }
        while tally.acknowledged < batch.len() {
            match timeout(self.timeout, connection.events.recv()).await {
                Ok(Some(event)) => tally.apply(self, event)?,
                Ok(None) => return Err(self.unreachable("the MQTT event loop stopped".into())),
                Err(_) => {
                    let first = tally.acked.iter().position(|a| !a).unwrap_or(0);
                    return Err(not_confirmed(
                        first,
                        format!("no PUBACK within {} ms", self.timeout.as_millis()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Which notifications of a batch went out under which packet id, and which were acknowledged.
struct Tally {
    /// How many PUBLISH packets of the batch went out so far (they go out in batch order).
    sent: usize,
    /// The batch index each packet id in flight was sent for.
    in_flight: HashMap<u16, usize>,
    /// Per notification of the batch: acknowledged yet.
    acked: Vec<bool>,
    /// How many are.
    acknowledged: usize,
}

impl Tally {
    fn new(len: usize) -> Self {
        Tally {
            sent: 0,
            in_flight: HashMap::new(),
            acked: vec![false; len],
            acknowledged: 0,
        }
    }

    /// Counts one report of the event-loop task; a broken or re-opened connection fails the
    /// batch (its unacknowledged packets may be lost or re-sent under other ids).
    fn apply(&mut self, sink: &MqttSink, event: Driven) -> Result<(), SinkError> {
        match event {
            Driven::Sent(pkid) => {
                if self.sent >= self.acked.len() {
                    return Err(sink.unreachable(format!(
                        "the client sent packet {pkid} beyond the batch's {} notifications \
                         (a re-sent packet after a reconnect)",
                        self.acked.len()
                    )));
                }
                self.in_flight.insert(pkid, self.sent);
                self.sent += 1;
            }
            Driven::Acked(pkid) => match self.in_flight.remove(&pkid) {
                Some(index) => {
                    self.acked[index] = true;
                    self.acknowledged += 1;
                }
                None => {
                    tracing::debug!(sink = %sink.name, pkid, "PUBACK for no packet of this batch")
                }
            },
            Driven::Broken(detail) => {
                return Err(sink.unreachable(format!("connection lost during the batch: {detail}")))
            }
            Driven::Refused(code) => return Err(sink.refused(code)),
            Driven::Connected => {
                return Err(sink.unreachable(
                    "the client reconnected during the batch; its packets may be lost".into(),
                ))
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for MqttSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Notification]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut current = self.connection.lock().await;
        let mut connection = match current.take() {
            Some(connection) => connection,
            None => self.open().await?,
        };
        let result = self.publish_on(&mut connection, batch).await;
        match &result {
            Ok(()) => *current = Some(connection),
            Err(error) => {
                tracing::warn!(sink = %self.name, %error, "batch not acknowledged; the next publish opens a new connection");
                // Ask for a clean DISCONNECT; dropping the connection stops its task.
                let _ = connection.client.try_disconnect();
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_and_credentials() {
        let address = |host: &str, port, credentials: Option<(&str, &str)>| {
            Ok(BrokerAddress {
                host: host.into(),
                port,
                credentials: credentials.map(|(u, p)| (u.into(), p.into())),
            })
        };
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884"),
            address("127.0.0.1", 1884, None)
        );
        assert_eq!(
            parse_url("tcp://broker/"),
            address("broker", DEFAULT_PORT, None)
        );
        assert_eq!(
            parse_url("mqtt://sst:secret@solace.example:1883"),
            address("solace.example", 1883, Some(("sst", "secret")))
        );
        assert_eq!(parse_url("mqtt://[::1]:1883"), address("::1", 1883, None));
        assert_eq!(
            parse_url("mqtt://[::1]"),
            address("::1", DEFAULT_PORT, None)
        );
        assert!(parse_url("http://broker").is_err());
        assert!(parse_url("mqtt://broker:x").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
        assert!(parse_url("mqtt://broker/topic").is_err());
    }
}
