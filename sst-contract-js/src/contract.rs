//! [`JsContract`]: a loaded JavaScript contract version. Every hook and method call runs in a
//! sandbox on a fresh module instance (see [`crate::sandbox`]) with the call's deterministic context: the actor,
//! its roles, the state id, the event's timestamp and a seed derived from the event id.

use std::collections::BTreeSet;
use std::sync::Arc;

use rquickjs::Value;
use serde_json::{json, Value as JsonValue};
use sst_core::hash::{hash_parts, Domain};
use sst_core::{
    portable, ContractDescriptor, ContractLimits, ContractPolicy, ContractRef, EngineRef, HashAlg,
    Parties,
};
use sst_node::{Call, Contract, ContractError, MethodOutput, Sections};

use crate::engine::{MIGRATE, ON_CHANGE, ON_CREATE};
use crate::manifest::DEFAULT_LIMITS;
use crate::sandbox::{self, Failure, Program, Sandbox};

/// Which optional hooks a module exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hooks {
    pub(crate) on_create: bool,
    pub(crate) on_change: bool,
    pub(crate) migrate: bool,
}

/// A JavaScript contract version loaded by [`crate::JsEngine`]: its deployed descriptor and
/// its source.
#[derive(Debug, Clone)]
pub struct JsContract {
    descriptor: ContractDescriptor,
    source: Arc<str>,
    program: Program,
    methods: BTreeSet<String>,
    hooks: Hooks,
}

/// The `ctx.seed` of a call: hex of `H(sst/contract-seed/v1, event id)` (BLAKE3), the same on
/// every node, different for every event.
pub fn seed_of(event: &sst_core::EventId) -> String {
    let digest = hash_parts(
        HashAlg::Blake3,
        Domain::Envelope,
        &[b"sst/contract-seed/v1", event.0.to_string().as_bytes()],
    );
    hex::encode(digest.bytes())
}

/// The `ctx` fields of a call.
fn call_info(call: &Call<'_>) -> JsonValue {
    json!({
        "actor": call.actor,
        "roles": call.roles,
        "state": call.state_id,
        "now": call.timestamp.0,
        "seed": seed_of(call.event),
    })
}

/// A sandbox failure as the node records it.
fn contract_error(failure: Failure) -> ContractError {
    match failure {
        Failure::Limit { limit, detail } => ContractError::Limit {
            limit: limit.to_owned(),
            detail,
        },
        other => ContractError::Rejected(other.to_string()),
    }
}

impl JsContract {
    pub(crate) fn new(
        descriptor: ContractDescriptor,
        source: Arc<str>,
        program: Program,
        hooks: Hooks,
    ) -> Self {
        JsContract {
            methods: descriptor.methods.iter().cloned().collect(),
            descriptor,
            source,
            program,
            hooks,
        }
    }

    fn budget(&self) -> ContractLimits {
        self.descriptor.limits.unwrap_or(DEFAULT_LIMITS)
    }

    /// Runs `function(first, second, ctx)` in a sandbox (see [`sandbox::run`]); `returned` turns its result
    /// into the output.
    fn invoke<R>(
        &self,
        function: &str,
        call: &Call<'_>,
        first: &JsonValue,
        second: &JsonValue,
        can_emit: bool,
        returned: impl for<'js> Fn(
            &Sandbox<'js>,
            Value<'js>,
            Vec<sst_core::BusinessEvent>,
        ) -> Result<R, Failure>,
    ) -> Result<R, ContractError> {
        sandbox::run(&self.program, &self.budget(), |sb| {
            let (ctx, emitted) = sb.context(&call_info(call), can_emit)?;
            let result = sb.call(function, (sb.parse(first)?, sb.parse(second)?, ctx))?;
            let events = sb.events(&emitted)?;
            returned(sb, result, events)
        })
        .map_err(contract_error)
    }
}

/// The changed sections a method or migration returned: an object of section name → value
/// (`undefined` or `null`: no change), each value portable JSON.
fn changed_sections<'js>(
    sb: &Sandbox<'js>,
    function: &str,
    returned: Value<'js>,
) -> Result<Sections, Failure> {
    if returned.is_undefined() || returned.is_null() {
        return Ok(Sections::new());
    }
    let entries = sb.entries(&returned)?.ok_or_else(|| {
        Failure::Invalid(format!(
            "`{function}` must return a plain object of changed sections"
        ))
    })?;
    let mut sections = Sections::new();
    for (name, value) in entries {
        let context = format!("`{function}` section `{name}`");
        let value = sb
            .to_json(&value)
            .map_err(|f| sandbox::prefixed(f, &context))?;
        portable::check(&value).map_err(|e| Failure::Invalid(format!("{context}: {e}")))?;
        sections.insert(name, value);
    }
    Ok(sections)
}

fn check_events(events: &[sst_core::BusinessEvent]) -> Result<(), Failure> {
    for event in events {
        portable::check(&event.payload)
            .map_err(|e| Failure::Invalid(format!("business event `{}`: {e}", event.name)))?;
    }
    Ok(())
}

impl Contract for JsContract {
    fn contract(&self) -> ContractRef {
        self.descriptor.contract.clone()
    }

    fn policy(&self) -> ContractPolicy {
        self.descriptor.policy.clone()
    }

    fn methods(&self) -> Vec<String> {
        self.descriptor.methods.clone()
    }

    fn supersedes(&self) -> Vec<ContractRef> {
        self.descriptor.supersedes.clone()
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn engine(&self) -> Option<EngineRef> {
        self.descriptor.engine.clone()
    }

    fn limits(&self) -> Option<ContractLimits> {
        self.descriptor.limits
    }

    fn descriptor(&self) -> ContractDescriptor {
        self.descriptor.clone()
    }

    fn on_create(
        &self,
        call: &Call<'_>,
        parties: &Parties,
        sections: &Sections,
    ) -> Result<(), ContractError> {
        if !self.hooks.on_create {
            return Ok(());
        }
        let parties = serde_json::to_value(parties)
            .map_err(|e| ContractError::Rejected(format!("parties: {e}")))?;
        let sections = json!(sections);
        self.invoke(
            ON_CREATE,
            call,
            &sections,
            &parties,
            false,
            |_, _, _| Ok(()),
        )
    }

    fn on_change(
        &self,
        call: &Call<'_>,
        current: &Sections,
        changes: &Sections,
    ) -> Result<(), ContractError> {
        if !self.hooks.on_change {
            return Ok(());
        }
        self.invoke(
            ON_CHANGE,
            call,
            &json!(current),
            &json!(changes),
            false,
            |_, _, _| Ok(()),
        )
    }

    fn call(
        &self,
        call: &Call<'_>,
        current: &Sections,
        method: &str,
        args: &JsonValue,
    ) -> Result<MethodOutput, ContractError> {
        if !self.methods.contains(method) {
            return Err(ContractError::new(format!("unknown method `{method}`")));
        }
        self.invoke(
            method,
            call,
            &json!(current),
            args,
            true,
            |sb, result, events| {
                let changes = changed_sections(sb, method, result)?;
                check_events(&events)?;
                Ok(MethodOutput { changes, events })
            },
        )
    }

    fn migrate(
        &self,
        call: &Call<'_>,
        from: &ContractRef,
        current: &Sections,
    ) -> Result<Sections, ContractError> {
        if !self.hooks.migrate {
            return Ok(Sections::new());
        }
        let from = json!({"name": from.name, "version": from.version});
        self.invoke(
            MIGRATE,
            call,
            &json!(current),
            &from,
            false,
            |sb, result, _| changed_sections(sb, MIGRATE, result),
        )
    }
}
