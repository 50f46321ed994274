//! Broker adapters, one module per broker, each behind the cargo feature of the same name.

#[cfg(any(feature = "rabbitmq", feature = "nats", feature = "mqtt"))]
mod broker_options;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis;
