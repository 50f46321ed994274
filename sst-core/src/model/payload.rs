//! Typed event payloads: what each event kind carries in its signed body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Actor, ActorId, ContractRef, Parties, StateId};
use crate::hash::{EventId, SectionHash, StateRoot};
use crate::sign::PublicKey;

/// A payload that does not have the shape its event kind requires: the JSON path of the first
/// offending member and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PayloadError {
    /// JSON path, starting at `$.payload`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl PayloadError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        PayloadError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The members of a payload object, refusing members outside `allowed`.
fn members<'a>(
    payload: &'a Value,
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, PayloadError> {
    let obj = payload
        .as_object()
        .ok_or_else(|| PayloadError::new("$.payload", "expected an object"))?;
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(PayloadError::new(
            crate::portable::member_path("$.payload", k),
            format!("unknown member (expected one of: {})", allowed.join(", ")),
        ));
    }
    Ok(obj)
}

/// `$.payload.sections`: an object of section name → section hash.
fn section_hashes(
    obj: &serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, SectionHash>, PayloadError> {
    let sections = obj
        .get("sections")
        .ok_or_else(|| PayloadError::new("$.payload.sections", "missing"))?
        .as_object()
        .ok_or_else(|| {
            PayloadError::new("$.payload.sections", "expected an object of section hashes")
        })?;
    sections
        .iter()
        .map(|(name, h)| {
            let path = crate::portable::member_path("$.payload.sections", name);
            let text = h
                .as_str()
                .ok_or_else(|| PayloadError::new(&path, "expected a section hash string"))?;
            let hash = text
                .parse::<SectionHash>()
                .map_err(|e| PayloadError::new(&path, e.to_string()))?;
            Ok((name.clone(), hash))
        })
        .collect()
}

/// Payload of an [`EventKind::Create`](super::EventKind::Create) event:
/// `{"parties": {role: [actor, …]}, "sections": {name: "<section hash>"}}`. Plaintext and
/// salts travel beside the event as [`super::Disclosure`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatePayload {
    /// Who holds which role in the new state.
    pub parties: Parties,
    /// Salted hash of every initial section.
    pub sections: BTreeMap<String, SectionHash>,
}

/// Payload of an [`EventKind::ChangeSections`](super::EventKind::ChangeSections) event:
/// `{"sections": {name: "<section hash>"}}`, the new hash of every changed section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangePayload {
    /// Salted hash of every changed section.
    pub sections: BTreeMap<String, SectionHash>,
}

/// Payload of an [`EventKind::CallMethod`](super::EventKind::CallMethod) event:
/// `{"method": "<name>", "args": <portable JSON>}`. The args are part of the signed body and
/// reach every node that receives the event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallPayload {
    /// Method name.
    pub method: String,
    /// Method arguments (`null` when the method takes none).
    pub args: Value,
}

/// The `args` of a migration call (method [`CallPayload::MIGRATE`]): the contract version
/// the state is migrated from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateArgs {
    /// The version the state held before the migration.
    pub from: ContractRef,
}

impl CreatePayload {
    /// The payload as signed JSON.
    pub fn to_payload(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    /// Parses a create payload.
    ///
    /// # Errors
    /// [`PayloadError`] naming the first member that is missing, unknown or malformed.
    pub fn from_payload(payload: &Value) -> Result<Self, PayloadError> {
        let obj = members(payload, &["parties", "sections"])?;
        let parties = obj
            .get("parties")
            .ok_or_else(|| PayloadError::new("$.payload.parties", "a create names its parties"))?;
        let parties: Parties = serde_json::from_value(parties.clone())
            .map_err(|e| PayloadError::new("$.payload.parties", e.to_string()))?;
        Ok(CreatePayload {
            parties,
            sections: section_hashes(obj)?,
        })
    }
}

impl ChangePayload {
    /// The payload as signed JSON.
    pub fn to_payload(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    /// Parses a change payload.
    ///
    /// # Errors
    /// [`PayloadError`] naming the first member that is missing, unknown or malformed.
    pub fn from_payload(payload: &Value) -> Result<Self, PayloadError> {
        let obj = members(payload, &["sections"])?;
        Ok(ChangePayload {
            sections: section_hashes(obj)?,
        })
    }
}

impl CallPayload {
    /// The reserved method name of a migration to another contract version.
    pub const MIGRATE: &'static str = "sst.migrate";

    /// A migration call from contract version `from`.
    pub fn migrate(from: ContractRef) -> Self {
        CallPayload {
            method: Self::MIGRATE.to_owned(),
            args: serde_json::to_value(MigrateArgs { from }).unwrap_or(Value::Null),
        }
    }
    /// The payload as signed JSON.
    pub fn to_payload(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    /// Whether this call is a migration.
    pub fn is_migration(&self) -> bool {
        self.method == Self::MIGRATE
    }
    /// The migration's args, when this call is a migration.
    ///
    /// # Errors
    /// [`PayloadError`] at `$.payload.args` when a migration's args are malformed.
    pub fn migrate_args(&self) -> Result<Option<MigrateArgs>, PayloadError> {
        if !self.is_migration() {
            return Ok(None);
        }
        serde_json::from_value(self.args.clone())
            .map(Some)
            .map_err(|e| PayloadError::new("$.payload.args", e.to_string()))
    }
    /// Parses a call payload.
    ///
    /// # Errors
    /// [`PayloadError`] naming the first member that is missing, unknown or malformed.
    pub fn from_payload(payload: &Value) -> Result<Self, PayloadError> {
        let obj = members(payload, &["method", "args"])?;
        let method = obj
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| PayloadError::new("$.payload.method", "expected a method name"))?;
        Ok(CallPayload {
            method: method.to_owned(),
            args: obj.get("args").cloned().unwrap_or(Value::Null),
        })
    }
}

/// Payload of an [`EventKind::ActorChange`](super::EventKind::ActorChange) event (key rotation or revocation):
/// `{"actor": <the new actor record>, "previous_key": "<hex of the key valid before>"}`.
/// Such events target the reserved state id `actor:<actor id>` (see
/// [`ActorChange::state_id`]), name the reserved contract [`ActorChange::contract`], and are
/// recorded as applied with version 0 and no state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorChange {
    /// The actor record as it is after the change.
    pub actor: Actor,
    /// The actor's public key before the change: the key the event is checked against when
    /// it is the actor's own rotation, and the key older events of the actor verify with.
    pub previous_key: PublicKey,
}

impl ActorChange {
    /// Name of the reserved contract actor-change events name.
    pub const CONTRACT: &'static str = "sst.actor";

    /// The reserved state id of `actor`'s changes: `actor:<actor id>`.
    pub fn state_id(actor: &ActorId) -> StateId {
        StateId::new(format!("actor:{actor}"))
    }
    /// The reserved contract reference (`sst.actor@1`).
    pub fn contract() -> ContractRef {
        ContractRef::new(Self::CONTRACT, 1)
    }
    /// The event payload (portable JSON).
    pub fn to_payload(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    /// Parses an event payload.
    ///
    /// # Errors
    /// When the payload is not `{"actor": {...}, "previous_key": "<hex>"}` (unknown members
    /// included) or the keys are not valid Ed25519 public keys.
    pub fn from_payload(payload: &Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(payload.clone())
    }
    /// The applied outcome's root of an actor-change event: the event id's digest (there is
    /// no state).
    pub fn root(event: EventId) -> StateRoot {
        StateRoot(event.0)
    }
}
