//! Shared helpers of the engine's tests: a call context with owned data, and small contract
//! modules built around a body of JavaScript.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use sst_contract_js::{descriptor_of, JsEngine};
use sst_core::{ActorId, Digest, EventId, HashAlg, Role, StateId, Timestamp};
use sst_node::{Call, Contract, ContractEngine};

/// Who calls, owned (a [`Call`] borrows from it).
pub struct Caller {
    pub actor: ActorId,
    pub roles: BTreeSet<Role>,
    pub state: StateId,
    pub timestamp: Timestamp,
    pub event: EventId,
}

impl Caller {
    /// `actor` holding `roles`, on state `deal-1`, at 1 700 000 000 000 ms, event `[seed; 32]`.
    pub fn new(actor: &str, roles: &[&str], seed: u8) -> Self {
        Caller {
            actor: ActorId::from(actor),
            roles: roles.iter().map(|r| Role::from(*r)).collect(),
            state: StateId::from("deal-1"),
            timestamp: Timestamp(1_700_000_000_000),
            event: EventId(Digest::from_parts(HashAlg::Blake3, [seed; 32])),
        }
    }

    /// The borrowed call context.
    pub fn call(&self) -> Call<'_> {
        Call {
            actor: &self.actor,
            roles: &self.roles,
            state_id: &self.state,
            timestamp: self.timestamp,
            event: &self.event,
        }
    }
}

/// A contract module `test-contract@1` with one section `s` everyone reads and writes, small
/// budgets, and `body` (its functions).
pub fn module(body: &str) -> String {
    format!(
        "export const contract = {{ name: \"test-contract\", version: 1,\n  \
         sections: {{ s: {{ read: [\"*\"], write: [\"*\"] }} }},\n  \
         limits: {{ ticks: 100, memory_bytes: 8388608, stack_bytes: 262144 }} }};\n{body}\n"
    )
}

/// Loads `source` through a fresh engine, with the descriptor read from it.
pub fn load(source: &str) -> anyhow::Result<Arc<dyn Contract>> {
    let descriptor = descriptor_of(source)?;
    Ok(JsEngine::new().load(&descriptor, source)?)
}

/// Canonical JSON bytes of a value (what hashes are computed over).
pub fn canonical(v: &Value) -> Vec<u8> {
    sst_core::canonical::to_vec(v)
}
