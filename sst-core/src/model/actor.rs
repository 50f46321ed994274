//! Actors: the known, permissioned signers of events, and their status.

use serde::{Deserialize, Serialize};

use super::{ActorId, NodeId};
use crate::sign::PublicKey;

/// Whether an actor may still sign events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActorStatus {
    /// May sign events.
    Active,
    /// Its events are rejected from now on.
    Revoked,
}

impl ActorStatus {
    /// `active` / `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorStatus::Active => "active",
            ActorStatus::Revoked => "revoked",
        }
    }
}

/// A known, permissioned actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Actor id.
    pub id: ActorId,
    /// Node the actor belongs to.
    pub node: NodeId,
    /// Ed25519 public key.
    pub public_key: PublicKey,
    /// Active or revoked.
    pub status: ActorStatus,
}
