//! Sink configuration: a `[[sink]]` entry as written in a node's TOML file ([`SinkConfig`]),
//! validated once into a [`SinkSpec`] (a kind whose cargo feature is compiled out, a bad topic
//! template or filter, a duplicate name are typed [`ConfigError`]s), and turned into a
//! connected [`Sink`] by [`SinkSpec::connect`].
//!
//! ```toml
//! [[sink]]
//! name = "deals-to-redis"                  # unique per node; names its durable cursor
//!                                          # (1-128 bytes of A-Z a-z 0-9 _ . -)
//! kind = "redis"                           # kafka | rabbitmq | nats | mqtt | postgres | redis
//! url = "redis://127.0.0.1:6379"
//! topic = "sst.{contract}"                 # optional; default sst.{contract}.{name}.{outcome}
//! start = "earliest"                       # earliest (default): the whole log; latest: from now
//! batch = 256                              # optional; most log entries read per round
//! [sink.filter]                            # optional; empty lists = everything
//! contracts = ["real-estate-deal"]
//! names = ["create", "price_agreed"]
//! outcomes = ["applied"]
//! state_prefixes = ["deal-"]
//! [sink.options]                           # optional; kind-specific settings (strings)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::filter::{Filter, FilterError, FilterSpec, TopicTemplate};
use crate::{Sink, SinkError};

/// The broker kinds a sink can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SinkKind {
    /// Kafka (cargo feature `kafka`).
    Kafka,
    /// RabbitMQ (cargo feature `rabbitmq`).
    Rabbitmq,
    /// NATS JetStream (cargo feature `nats`).
    Nats,
    /// MQTT, also Solace PubSub+ (cargo feature `mqtt`).
    Mqtt,
    /// PostgreSQL `NOTIFY` (cargo feature `postgres`).
    Postgres,
    /// Redis Streams (cargo feature `redis`).
    Redis,
}

impl SinkKind {
    /// Every kind, in documentation order.
    pub const ALL: [SinkKind; 6] = [
        SinkKind::Kafka,
        SinkKind::Rabbitmq,
        SinkKind::Nats,
        SinkKind::Mqtt,
        SinkKind::Postgres,
        SinkKind::Redis,
    ];

    /// The name used in configuration files (also the cargo feature's name).
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Kafka => "kafka",
            SinkKind::Rabbitmq => "rabbitmq",
            SinkKind::Nats => "nats",
            SinkKind::Mqtt => "mqtt",
            SinkKind::Postgres => "postgres",
            SinkKind::Redis => "redis",
        }
    }

    /// Whether this build has the kind's adapter (its cargo feature is enabled).
    pub fn compiled(self) -> bool {
        match self {
            SinkKind::Kafka => cfg!(feature = "kafka"),
            SinkKind::Rabbitmq => cfg!(feature = "rabbitmq"),
            SinkKind::Nats => cfg!(feature = "nats"),
            SinkKind::Mqtt => cfg!(feature = "mqtt"),
            SinkKind::Postgres => cfg!(feature = "postgres"),
            SinkKind::Redis => cfg!(feature = "redis"),
        }
    }

    /// The kinds this build has.
    pub fn compiled_kinds() -> Vec<SinkKind> {
        Self::ALL.into_iter().filter(|k| k.compiled()).collect()
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SinkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SinkKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| s.to_owned())
    }
}

/// Where a sink without a stored cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// From the beginning of the node's log: every committed event is published.
    #[default]
    Earliest,
    /// From the log head when the sink first runs: only events committed afterwards (the
    /// position is stored at once, so a restart does not skip what came in between).
    Latest,
}

/// A `[[sink]]` entry as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique per node: names the sink's durable cursor in the node's database.
    pub name: String,
    /// `kafka`, `rabbitmq`, `nats`, `mqtt`, `postgres` or `redis`.
    pub kind: String,
    /// The broker's URL (e.g. `redis://127.0.0.1:6379`, `postgres://…`, `amqp://…`,
    /// `nats://…`, `mqtt://…`, `kafka://host:port`).
    pub url: String,
    /// Topic / routing key / subject / channel / stream template
    /// (default [`TopicTemplate::DEFAULT`]).
    #[serde(default)]
    pub topic: Option<String>,
    /// Which notifications the sink receives (default: all).
    #[serde(default)]
    pub filter: FilterSpec,
    /// Where a sink without a stored cursor starts (default `earliest`).
    #[serde(default)]
    pub start: Start,
    /// Most log entries read per round (default [`SinkSpec::DEFAULT_BATCH`]).
    #[serde(default)]
    pub batch: Option<usize>,
    /// Kind-specific settings, checked by the adapter when it connects.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Why a sink configuration is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A name the store cannot keep a cursor under (1 to 128 bytes of ASCII letters, digits,
    /// `_`, `.`, `-`).
    #[error("sink name {name:?}: {reason}")]
    BadName {
        /// The name as written.
        name: String,
        /// What the store's rule says.
        reason: String,
    },
    /// Two sinks with the same name (they would share a cursor).
    #[error("sink `{0}` is declared twice")]
    DuplicateName(String),
    /// A kind that does not exist.
    #[error("sink `{sink}`: unknown kind `{kind}` (kinds: kafka, rabbitmq, nats, mqtt, postgres, redis)")]
    UnknownKind {
        /// The sink.
        sink: String,
        /// What was written.
        kind: String,
    },
    /// A kind whose adapter this build does not have.
    #[error(
        "sink `{sink}`: kind `{kind}` is not compiled into this build (enable the cargo feature \
         `{kind}`; compiled: {compiled})"
    )]
    NotCompiled {
        /// The sink.
        sink: String,
        /// The kind.
        kind: SinkKind,
        /// The kinds this build has, comma-separated (or `none`).
        compiled: String,
    },
    /// An empty URL.
    #[error("sink `{sink}`: empty url")]
    EmptyUrl {
        /// The sink.
        sink: String,
    },
    /// A batch size of 0.
    #[error("sink `{sink}`: batch must be at least 1")]
    ZeroBatch {
        /// The sink.
        sink: String,
    },
    /// A bad topic template or filter.
    #[error("sink `{sink}`: {source}")]
    Filter {
        /// The sink.
        sink: String,
        /// What is wrong.
        source: FilterError,
    },
}

/// A validated sink configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    /// Unique name (its cursor's name).
    pub name: String,
    /// The broker kind (compiled into this build).
    pub kind: SinkKind,
    /// The broker's URL.
    pub url: String,
    /// Where each notification goes.
    pub topic: TopicTemplate,
    /// Which notifications it receives.
    pub filter: Filter,
    /// Where it starts without a stored cursor.
    pub start: Start,
    /// Most log entries read per round.
    pub batch: usize,
    /// Kind-specific settings.
    pub options: BTreeMap<String, String>,
}

impl SinkSpec {
    /// Log entries read per round unless configured.
    pub const DEFAULT_BATCH: usize = 256;

    /// A spec with defaults: every notification, from the beginning of the log, topic
    /// [`TopicTemplate::DEFAULT`].
    pub fn new(name: impl Into<String>, kind: SinkKind, url: impl Into<String>) -> Self {
        SinkSpec {
            name: name.into(),
            kind,
            url: url.into(),
            topic: TopicTemplate::default(),
            filter: Filter::all(),
            start: Start::Earliest,
            batch: Self::DEFAULT_BATCH,
            options: BTreeMap::new(),
        }
    }

    /// A kind-specific option.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// A [`SinkError::Config`] about this sink.
    pub fn config_error(&self, detail: impl Into<String>) -> SinkError {
        SinkError::Config {
            sink: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// Refuses options other than `known` (an adapter calls this when it connects).
    ///
    /// # Errors
    /// [`SinkError::Config`] naming the first unknown option.
    pub fn check_options(&self, known: &[&str]) -> Result<(), SinkError> {
        match self.options.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(self.config_error(format!(
                "unknown option `{k}` for a {} sink (known: {})",
                self.kind,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))),
            None => Ok(()),
        }
    }

    /// Connects the sink's adapter.
    ///
    /// # Errors
    /// [`SinkError::Config`] for settings the adapter refuses (or a kind not compiled in,
    /// which [`SinkConfig::validate`] already refuses); [`SinkError::Unreachable`] when the
    /// broker does not answer.
    pub async fn connect(&self) -> Result<Arc<dyn Sink>, SinkError> {
        match self.kind {
            #[cfg(feature = "kafka")]
            SinkKind::Kafka => Ok(Arc::new(
                crate::sinks::kafka::KafkaSink::connect(self).await?,
            )),
            #[cfg(feature = "rabbitmq")]
            SinkKind::Rabbitmq => Ok(Arc::new(
                crate::sinks::rabbitmq::RabbitMqSink::connect(self).await?,
            )),
            #[cfg(feature = "nats")]
            SinkKind::Nats => Ok(Arc::new(crate::sinks::nats::NatsSink::connect(self).await?)),
            #[cfg(feature = "mqtt")]
            SinkKind::Mqtt => Ok(Arc::new(crate::sinks::mqtt::MqttSink::connect(self).await?)),
            #[cfg(feature = "redis")]
            SinkKind::Redis => Ok(Arc::new(
                crate::sinks::redis::RedisSink::connect(self).await?,
            )),
            #[cfg(feature = "postgres")]
            SinkKind::Postgres => Ok(Arc::new(
                crate::sinks::postgres::PostgresSink::connect(self).await?,
            )),
            // Reached only in builds without some adapter.
            #[allow(unreachable_patterns)]
            kind => Err(self.config_error(format!(
                "kind `{kind}` is not compiled into this build (enable the cargo feature `{kind}`)"
            ))),
        }
    }
}

impl SinkConfig {
    /// Validates one entry.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the sink and what is wrong.
    pub fn validate(&self) -> Result<SinkSpec, ConfigError> {
        if let Err(e) = sst_core::check_sink_name(&self.name) {
            return Err(ConfigError::BadName {
                name: self.name.clone(),
                reason: match e {
                    sst_core::StoreError::InvalidInput { reason, .. } => reason,
                    other => other.to_string(),
                },
            });
        }
        let sink = || self.name.clone();
        let kind: SinkKind = self
            .kind
            .parse()
            .map_err(|kind| ConfigError::UnknownKind { sink: sink(), kind })?;
        if self.url.trim().is_empty() {
            return Err(ConfigError::EmptyUrl { sink: sink() });
        }
        if self.batch == Some(0) {
            return Err(ConfigError::ZeroBatch { sink: sink() });
        }
        let filter_error = |source| ConfigError::Filter {
            sink: sink(),
            source,
        };
        let topic = match &self.topic {
            Some(t) => TopicTemplate::parse(t).map_err(filter_error)?,
            None => TopicTemplate::default(),
        };
        let filter = Filter::new(&self.filter).map_err(filter_error)?;
        if !kind.compiled() {
            let compiled: Vec<_> = SinkKind::compiled_kinds()
                .iter()
                .map(|k| k.as_str())
                .collect();
            return Err(ConfigError::NotCompiled {
                sink: sink(),
                kind,
                compiled: if compiled.is_empty() {
                    "none".into()
                } else {
                    compiled.join(", ")
                },
            });
        }
        Ok(SinkSpec {
            name: self.name.clone(),
            kind,
            url: self.url.clone(),
            topic,
            filter,
            start: self.start,
            batch: self.batch.unwrap_or(SinkSpec::DEFAULT_BATCH),
            options: self.options.clone(),
        })
    }

    /// Validates every entry of a node's configuration; names must be unique.
    ///
    /// # Errors
    /// The first entry's [`ConfigError`], or [`ConfigError::DuplicateName`].
    pub fn validate_all(entries: &[SinkConfig]) -> Result<Vec<SinkSpec>, ConfigError> {
        // Names first, so a duplicate is reported the same way whichever sinks this build
        // has compiled in.
        let mut names = BTreeSet::new();
        for e in entries {
            if !names.insert(e.name.as_str()) {
                return Err(ConfigError::DuplicateName(e.name.clone()));
            }
        }
        entries.iter().map(SinkConfig::validate).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str) -> SinkConfig {
        SinkConfig {
            name: "s".into(),
            kind: kind.into(),
            url: "x://y".into(),
            topic: None,
            filter: FilterSpec::default(),
            start: Start::Earliest,
            batch: None,
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn kinds_validate_by_feature() {
        assert!(matches!(
            entry("kafkaa").validate(),
            Err(ConfigError::UnknownKind { kind, .. }) if kind == "kafkaa"
        ));
        for kind in SinkKind::ALL {
            let r = entry(kind.as_str()).validate();
            if kind.compiled() {
                assert!(r.is_ok(), "{kind}: {r:?}");
            } else {
                assert!(
                    matches!(r, Err(ConfigError::NotCompiled { kind: k, .. }) if k == kind),
                    "{kind}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn bad_entries_name_the_sink() {
        // Checked before whether the kind is compiled in: the same errors in every build.
        let kind = SinkKind::Redis;
        let mut e = entry(kind.as_str());
        e.topic = Some("sst.{nope}".into());
        assert!(matches!(
            e.validate(),
            Err(ConfigError::Filter { sink, source: FilterError::UnknownPlaceholder { .. } }) if sink == "s"
        ));
        let mut e = entry(kind.as_str());
        e.batch = Some(0);
        assert_eq!(
            e.validate(),
            Err(ConfigError::ZeroBatch { sink: "s".into() })
        );
        let mut e = entry(kind.as_str());
        e.name = "a b".into();
        assert!(matches!(e.validate(), Err(ConfigError::BadName { name, .. }) if name == "a b"));
        let e = entry(kind.as_str());
        assert_eq!(
            SinkConfig::validate_all(&[e.clone(), e]),
            Err(ConfigError::DuplicateName("s".into()))
        );
    }
}
