//! Reading the kind-specific `[sink.options]` strings the RabbitMQ, NATS and MQTT sinks share
//! (timeouts, flags, names), each a typed [`SinkError::Config`] naming the option when wrong.

use std::time::Duration;

use crate::{SinkError, SinkSpec};

/// The option naming how long connecting, or waiting for any one confirmation, may take.
pub(crate) const TIMEOUT_MS: &str = "timeout_ms";

/// [`TIMEOUT_MS`] when not configured.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `timeout_ms` option: a positive number of milliseconds, [`DEFAULT_TIMEOUT`] if absent.
pub(crate) fn timeout(spec: &SinkSpec) -> Result<Duration, SinkError> {
    Ok(positive(spec, TIMEOUT_MS)?.map_or(DEFAULT_TIMEOUT, Duration::from_millis))
}

/// A positive integer option, `None` if absent.
pub(crate) fn positive(spec: &SinkSpec, key: &str) -> Result<Option<u64>, SinkError> {
    match spec.option(key) {
        None => Ok(None),
        Some(text) => match text.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(spec.config_error(format!(
                "option `{key}` = {text:?} is not a positive number"
            ))),
        },
    }
}

/// A `true`/`false` option, `default` if absent.
#[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
pub(crate) fn flag(spec: &SinkSpec, key: &str, default: bool) -> Result<bool, SinkError> {
    match spec.option(key) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(text) => Err(spec.config_error(format!(
            "option `{key}` = {text:?} is neither `true` nor `false`"
        ))),
    }
}

/// A non-empty text option, `default` if absent.
pub(crate) fn text(spec: &SinkSpec, key: &str, default: &str) -> Result<String, SinkError> {
    match spec.option(key) {
        None => Ok(default.to_owned()),
        Some("") => Err(spec.config_error(format!("option `{key}` is empty"))),
        Some(text) => Ok(text.to_owned()),
    }
}

/// The error for a batch whose sending or confirming made no progress within `limit`.
pub(crate) fn timed_out(sink: &str, what: &str, limit: Duration) -> SinkError {
    SinkError::Unreachable {
        sink: sink.to_owned(),
        detail: format!("{what}: no answer within {} ms", limit.as_millis()),
    }
}
