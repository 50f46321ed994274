//! [`ClientError`]: why a call to a node's client API failed.

use crate::api::{ErrorBody, ErrorCode};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node could not be reached or the connection broke (a retry may help).
    #[error("node at {addr}: {detail}")]
    Connection {
        /// The API address.
        addr: String,
        /// What happened.
        detail: String,
    },
    /// The node answered with an error.
    #[error("node answered {status} {}: {}", serde_json::to_string(&.body.code).unwrap_or_default(), .body.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The typed error.
        body: ErrorBody,
    },
    /// The answer is not what the API promises.
    #[error("unexpected answer from the node: {0}")]
    Decode(String),
    /// Building or signing the intent failed (e.g. the state is not readable to build on).
    #[error("intent not built: {0}")]
    Build(String),
}

impl ClientError {
    /// The typed code of an API error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }
}
