//! The event pipeline. A home node runs every intent through these steps, in this order, and
//! stops at the first that fails with a typed [`RejectReason`]:
//!
//! 1. **signature**: the event id is the hash of its body and a strict Ed25519 signature by
//!    the signing actor is present (`bad_signature`);
//! 2. **actor** known (`unknown_actor`), signature verifies under its key (`bad_signature`),
//!    the actor belongs to the event's origin node (`bad_signature`), and is active
//!    (`revoked_actor`);
//! 3. **contract version** held and deployed here (`unknown_contract`);
//! 4. **base** matches the current state (`stale_base`; `unknown_state`; `state_exists`);
//! 5. **payload** well formed, portable, and consistent with the disclosures
//!    (`invalid_payload`); a create names parties (`missing_parties`), each a registered
//!    actor (`unknown_party`); every touched section is declared by the contract
//!    (`unknown_section`); a change or method call touches at least one section
//!    (`empty_change`);
//! 6. **write permission** of the actor on every touched section (`forbidden`); for method
//!    calls, the sections the method produced;
//! 7. **contract logic** (`contract_rejected`).
//!
//! The section policy enforced is always the one of the contract code this node holds (the
//! verified artifact), never a descriptor read back from the contract table.
//!
//! Only when every step passes is a new state version built; the sequencer then commits the
//! event as applied together with that version, or as rejected with its reason — never a
//! partial apply. Receivers of a distributed change re-run steps 1–6 on what they receive
//! (hashes for sections they may not read); a receiver that may read every section also
//! re-runs step 7 for a method call and compares the section values and business events with
//! the home's (`execution_mismatch`); each checks the recomputed root (`replicate`); a
//! recomputed root that differs from the home's at the same version also raises a witness
//! alarm about the home ([`crate::WitnessAlarmKind::StateDiverged`]).
//! Actor changes (key rotation, revocation) run steps 1–2 and their own rules
//! (`check_actor_change`) instead of 3–7, at the actor's node and at every receiver; so do
//! deployments (`check_deploy`: the record verifies and its code loads here).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use sst_core::{
    portable, Actor, ActorChange, ActorId, ActorStatus, BusinessEvent, CallPayload, ChangePayload,
    ContractRecord, ContractRef, CreatePayload, Disclosure, EventKind, HashAlg, NodeId, Parties,
    PayloadError, RejectReason, Role, Section, SectionHash, SignedEvent, State,
};

use crate::context::NodeContext;
use crate::contract::{Call, Contract, ContractError, MethodOutput, Sections};
use crate::message::{AppliedChange, DeployPayload};
use crate::verify::{SignedRef, VettedChange};

/// What the pipeline decided.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Eval {
    /// Commit the new version.
    Apply(Box<Built>),
    /// Commit the event as rejected.
    Reject(RejectReason),
}

/// A new state version as the pipeline built it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Built {
    /// The new version.
    pub(crate) state: State,
    /// Stored with the event (the readable changed sections' plaintext and salt).
    pub(crate) disclosures: BTreeMap<String, Disclosure>,
    /// The business events the contract method emitted.
    pub(crate) business_events: Vec<BusinessEvent>,
    /// On a replica: whether it re-executed the method and found the home's result.
    pub(crate) validated: bool,
}

impl Built {
    fn new(state: State, disclosures: BTreeMap<String, Disclosure>) -> Self {
        Built {
            state,
            disclosures,
            business_events: Vec::new(),
            validated: false,
        }
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> RejectReason {
    RejectReason::InvalidPayload {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Steps 1–2: envelope and actor. An event the verification pool checked ahead
/// ([`SignedRef::verified_key`]) is not checked again when the key it verified under is
/// still the actor's key here; otherwise the id (computed once) and the signature are
/// checked now, with the same strictness and the same reasons.
pub(crate) fn check_envelope(ctx: &NodeContext, s: SignedRef<'_>) -> Result<Actor, RejectReason> {
    let signed = s.signed();
    let e = &signed.event;
    let bad = |detail: String| RejectReason::BadSignature { detail };
    if s.verified_key().is_none() {
        signed.verify_id().map_err(|err| bad(err.to_string()))?;
    }
    let signature = signed
        .signatures
        .iter()
        .find(|s| s.signer == e.actor)
        .ok_or_else(|| bad(format!("no signature by {}", e.actor)))?;
    let actor = ctx
        .actor(&e.actor)
        .ok_or_else(|| RejectReason::UnknownActor {
            actor: e.actor.clone(),
        })?;
    if s.verified_key() != Some(&actor.public_key) {
        actor
            .public_key
            .verify_digest(&signed.id.0, &signature.signature)
            .map_err(|err| bad(err.to_string()))?;
    }
    if actor.node != e.origin_node {
        return Err(bad(format!(
            "actor {} belongs to node {}, the event claims origin {}",
            actor.id, actor.node, e.origin_node
        )));
    }
    if actor.status != ActorStatus::Active {
        return Err(RejectReason::RevokedActor {
            actor: actor.id.clone(),
        });
    }
    Ok(actor)
}

/// Checks an [`EventKind::ActorChange`] event (key rotation or revocation) against this
/// node's directory, i.e. the keys valid just before the change, and returns the new actor
/// record. Rules:
///
/// - envelope as for every event ([`check_envelope`]): the signer's *current* key, signer
///   active and belonging to the origin node;
/// - payload `{"actor": <new record>, "previous_key": "<hex>"}` for the reserved state id
///   `actor:<id>` and contract `sst.actor@1`, no base (`invalid_payload`);
/// - the target actor is known (`unknown_actor`) and active (`revoked_actor`), its current key
///   is `previous_key`, and it stays on its node (`invalid_payload`);
/// - a **rotation** (status stays active, key changes) must be signed by the actor itself,
///   with its old key; a **revocation** (status revoked, key unchanged) by an active actor of
///   the same node (`forbidden`, section `actor`); anything else is `invalid_payload`.
pub(crate) fn check_actor_change(
    ctx: &NodeContext,
    s: SignedRef<'_>,
) -> Result<Actor, RejectReason> {
    let e = &s.signed().event;
    let signer = check_envelope(ctx, s)?;
    portable::check_at(&e.payload, "$.payload")
        .map_err(|err| invalid(&err.path, err.to_string()))?;
    let change = ActorChange::from_payload(&e.payload)
        .map_err(|err| invalid("$.payload", err.to_string()))?;
    let new = change.actor;
    if e.state_id != ActorChange::state_id(&new.id) {
        return Err(invalid(
            "$.state_id",
            format!("an actor change targets {}", ActorChange::state_id(&new.id)),
        ));
    }
    if e.contract != ActorChange::contract() {
        return Err(invalid(
            "$.contract",
            format!("an actor change names {}", ActorChange::contract()),
        ));
    }
    if e.base.is_some() {
        return Err(invalid("$.base", "an actor change has no base"));
    }
    let cur = ctx
        .actor(&new.id)
        .ok_or_else(|| RejectReason::UnknownActor {
            actor: new.id.clone(),
        })?;
    if cur.status != ActorStatus::Active {
        return Err(RejectReason::RevokedActor { actor: cur.id });
    }
    if change.previous_key != cur.public_key {
        return Err(invalid(
            "$.payload.previous_key",
            "is not the actor's current key",
        ));
    }
    if new.node != cur.node {
        return Err(invalid(
            "$.payload.actor.node",
            "an actor cannot move to another node",
        ));
    }
    let forbidden = || RejectReason::Forbidden {
        section: "actor".into(),
    };
    match new.status {
        ActorStatus::Active if new.public_key != cur.public_key => {
            if signer.id != new.id {
                return Err(forbidden());
            }
        }
        ActorStatus::Revoked if new.public_key == cur.public_key => {
            if signer.node != cur.node {
                return Err(forbidden());
            }
        }
        _ => {
            return Err(invalid(
                "$.payload.actor",
                "expected a key rotation (new key, active) or a revocation (same key, revoked)",
            ))
        }
    }
    Ok(new)
}

/// The plaintext this node holds of a state.
pub(crate) fn view(state: &State) -> Sections {
    view_of(&state.sections)
}

fn payload_error(e: PayloadError) -> RejectReason {
    invalid(&e.path, e.reason)
}

/// The section hashes a create or change event signs.
fn signed_hashes(e: &sst_core::Event) -> Result<BTreeMap<String, SectionHash>, RejectReason> {
    match e.kind {
        EventKind::Create => CreatePayload::from_payload(&e.payload).map(|p| p.sections),
        _ => ChangePayload::from_payload(&e.payload).map(|p| p.sections),
    }
    .map_err(payload_error)
}

/// Sections with plaintext for every hash; each disclosure must hash to the signed hash.
fn reveal(
    alg: HashAlg,
    hashes: &BTreeMap<String, SectionHash>,
    disclosures: &BTreeMap<String, Disclosure>,
) -> Result<BTreeMap<String, Section>, RejectReason> {
    let mut out = BTreeMap::new();
    for (name, hash) in hashes {
        let path = format!("$.disclosures.{name}");
        let d = disclosures
            .get(name)
            .ok_or_else(|| invalid(&path, "the sequencing node needs the section's plaintext"))?;
        d.check_portable(|| path.clone())
            .map_err(|e| invalid(&e.path, e.to_string()))?;
        if d.hash(alg, name) != *hash {
            return Err(invalid(
                &path,
                "value and salt do not match the signed hash",
            ));
        }
        out.insert(
            name.clone(),
            Section {
                hash: *hash,
                disclosure: Some(d.clone()),
            },
        );
    }
    Ok(out)
}

/// Every touched section is declared by the contract (a typo is `unknown_section`, not
/// `forbidden`).
fn check_sections<'a>(
    policy: &sst_core::ContractPolicy,
    sections: impl IntoIterator<Item = &'a String>,
) -> Result<(), RejectReason> {
    match sections
        .into_iter()
        .find(|s| !policy.sections.contains_key(*s))
    {
        Some(section) => Err(RejectReason::UnknownSection {
            section: section.clone(),
        }),
        None => Ok(()),
    }
}

/// A create names at least one party, and every party is an actor registered here.
fn check_parties(ctx: &NodeContext, parties: &Parties) -> Result<(), RejectReason> {
    if parties.actors().is_empty() {
        return Err(RejectReason::MissingParties);
    }
    for (role, actors) in &parties.0 {
        if let Some(actor) = actors.iter().find(|a| ctx.actor(a).is_none()) {
            return Err(RejectReason::UnknownParty {
                role: role.as_str().to_owned(),
                actor: actor.clone(),
            });
        }
    }
    Ok(())
}

fn check_writes<'a>(
    policy: &sst_core::ContractPolicy,
    actor: &Actor,
    parties: &Parties,
    sections: impl IntoIterator<Item = &'a String>,
) -> Result<(), RejectReason> {
    let access = policy.access(&actor.id, parties);
    for name in sections {
        if !access.can_write(name) {
            return Err(RejectReason::Forbidden {
                section: name.clone(),
            });
        }
    }
    Ok(())
}

fn check_base(e: &sst_core::Event, cur: &State) -> Result<(), RejectReason> {
    match e.base {
        Some(b) if b.version == cur.version && b.root == cur.root => Ok(()),
        Some(b) => Err(RejectReason::StaleBase {
            expected_version: b.version,
            found_version: cur.version,
        }),
        None => Err(RejectReason::StaleBase {
            expected_version: 0,
            found_version: cur.version,
        }),
    }
}

fn is_migration(e: &sst_core::Event) -> bool {
    e.kind == EventKind::CallMethod
        && CallPayload::from_payload(&e.payload).is_ok_and(|c| c.is_migration())
}

/// The contract version a state moves to with `e`, checking that a migration names a
/// version that supersedes the state's current one.
fn target_contract(
    e: &sst_core::Event,
    cur: &State,
    code: &dyn Contract,
) -> Result<(), RejectReason> {
    if is_migration(e) {
        if !code.supersedes().contains(&cur.contract) {
            return Err(RejectReason::ContractRejected {
                message: format!("{} does not supersede {}", e.contract, cur.contract),
            });
        }
    } else if e.contract != cur.contract {
        return Err(RejectReason::ContractRejected {
            message: format!(
                "state is governed by {}, the event names {}",
                cur.contract, e.contract
            ),
        });
    }
    Ok(())
}

fn next_version(
    cur: &State,
    changes: BTreeMap<String, Section>,
    e: &sst_core::Event,
    id: sst_core::EventId,
) -> State {
    let mut s = cur.next(changes, Some(id), e.timestamp);
    if s.contract != e.contract {
        s.contract = e.contract.clone();
        s.root = s.compute_root();
    }
    s
}

fn seal(alg: HashAlg, values: Sections) -> Result<BTreeMap<String, Section>, RejectReason> {
    values
        .into_shared()
        .into_iter()
        .map(|(name, v)| {
            portable::check_at(&v, &format!("$.sections.{name}")).map_err(|e| {
                RejectReason::ContractRejected {
                    message: format!("contract produced non-portable JSON: {e}"),
                }
            })?;
            let s = Section::seal(alg, &name, v);
            Ok((name, s))
        })
        .collect()
}

fn disclosures_of(sections: &BTreeMap<String, Section>) -> BTreeMap<String, Disclosure> {
    sections
        .iter()
        .filter_map(|(n, s)| s.disclosure.clone().map(|d| (n.clone(), d)))
        .collect()
}

/// Runs the pipeline for `signed` at its sequencing (home) node, on top of `current`.
pub(crate) fn sequence(
    ctx: &NodeContext,
    signed: SignedRef<'_>,
    disclosures: &BTreeMap<String, Disclosure>,
    current: Option<&State>,
) -> Eval {
    match sequence_steps(ctx, signed, disclosures, current) {
        Ok(built) => Eval::Apply(Box::new(built)),
        Err(reason) => Eval::Reject(reason),
    }
}

/// Checks the business events a method emitted: names of 1 to 128 ASCII letters, digits,
/// `_`, `.` or `-`, portable JSON payloads (what every store records exactly).
fn check_business_events(events: &[BusinessEvent]) -> Result<(), RejectReason> {
    for (i, b) in events.iter().enumerate() {
        let plain = !b.name.is_empty()
            && b.name.len() <= 128
            && b.name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !plain {
            return Err(RejectReason::ContractRejected {
                message: format!(
                    "contract emitted business event {i} named {:?}: names are 1 to 128 ASCII \
                     letters, digits, `_`, `.` or `-`",
                    b.name
                ),
            });
        }
        portable::check_at(&b.payload, &format!("$.business_events[{i}].payload")).map_err(
            |e| RejectReason::ContractRejected {
                message: format!("contract emitted a non-portable business event payload: {e}"),
            },
        )?;
    }
    Ok(())
}

/// Checks an [`EventKind::DeployContract`] event at the deployer's node or at a receiver, and
/// returns the deployment record with the code it installs here. Rules:
///
/// - envelope as for every event ([`check_envelope`]);
/// - payload [`DeployPayload`] for the reserved state id `contract:<ref>` of the deployed
///   version, naming that version as contract, no base (`invalid_payload`); the record's
///   deployer is the signing actor (`invalid_payload`);
/// - the record verifies under the deployer's key: identity recomputed from its descriptor,
///   source hashed to its code hash, strict signature (`bad_signature`);
/// - no other identity is installed under the same name and version (`contract_rejected`:
///   bump the version); the same identity installed already is accepted again;
/// - its code loads here: native code held with that identity, or the source loaded by the
///   engine the descriptor names (`contract_rejected` naming the engine and what is wrong).
pub(crate) fn check_deploy(
    ctx: &NodeContext,
    s: SignedRef<'_>,
) -> Result<(ContractRecord, Arc<dyn Contract>), RejectReason> {
    let e = &s.signed().event;
    let deployer = check_envelope(ctx, s)?;
    portable::check_at(&e.payload, "$.payload")
        .map_err(|err| invalid(&err.path, err.to_string()))?;
    let DeployPayload { record } = DeployPayload::from_payload(&e.payload)
        .map_err(|err| invalid("$.payload", err.to_string()))?;
    let contract = record.contract();
    if e.state_id != DeployPayload::state_id(contract) {
        return Err(invalid(
            "$.state_id",
            format!(
                "a deployment of {contract} targets {}",
                DeployPayload::state_id(contract)
            ),
        ));
    }
    if e.contract != *contract {
        return Err(invalid(
            "$.contract",
            format!("a deployment names the version it deploys ({contract})"),
        ));
    }
    if e.base.is_some() {
        return Err(invalid("$.base", "a deployment has no base"));
    }
    if record.deployer != deployer.id {
        return Err(invalid(
            "$.payload.record.deployer",
            format!(
                "the record's deployer {} must sign the deployment event (signed by {})",
                record.deployer, deployer.id
            ),
        ));
    }
    record
        .verify(&deployer.public_key)
        .map_err(|err| RejectReason::BadSignature {
            detail: format!("deployment record of {contract}: {err}"),
        })?;
    if let Some(installed) = ctx.installed_record(contract) {
        if installed.identity != record.identity {
            return Err(RejectReason::ContractRejected {
                message: format!(
                    "{contract} is deployed with identity {}, this deployment has {}: bump its \
                     version to deploy changed code",
                    installed.identity, record.identity
                ),
            });
        }
    }
    let code = ctx
        .load_code(&record)
        .map_err(|err| RejectReason::ContractRejected {
            message: format!("not installable on node {}: {err}", ctx.id()),
        })?;
    Ok((record, code))
}

fn sequence_steps(
    ctx: &NodeContext,
    s: SignedRef<'_>,
    disclosures: &BTreeMap<String, Disclosure>,
    current: Option<&State>,
) -> Result<Built, RejectReason> {
    let signed = s.signed();
    let e = &signed.event;
    let actor = check_envelope(ctx, s)?;
    let (code, policy) = ctx
        .code(&e.contract)
        .ok_or_else(|| RejectReason::UnknownContract {
            contract: e.contract.clone(),
        })?;
    let policy = policy.as_ref();
    portable::check_at(&e.payload, "$.payload")
        .map_err(|err| invalid(&err.path, err.to_string()))?;
    match e.kind {
        EventKind::Create => {
            if current.is_some() {
                return Err(RejectReason::StateExists);
            }
            if e.base.is_some() {
                return Err(invalid("$.base", "a create has no base"));
            }
            let CreatePayload {
                parties,
                sections: hashes,
            } = CreatePayload::from_payload(&e.payload).map_err(payload_error)?;
            check_parties(ctx, &parties)?;
            check_sections(policy, hashes.keys())?;
            let sections = reveal(e.alg, &hashes, disclosures)?;
            check_writes(policy, &actor, &parties, hashes.keys())?;
            let home_reads = ctx.node_access(ctx.id(), policy, &parties);
            if let Some(s) = policy.sections.keys().find(|s| !home_reads.can_read(s)) {
                return Err(RejectReason::ContractRejected {
                    message: format!(
                        "the home node {} could not read section `{s}` of this state",
                        ctx.id()
                    ),
                });
            }
            let roles = parties.roles_of(&actor.id);
            let call = call_context(signed, &actor.id, &roles);
            let values = view_of(&sections);
            code.on_create(&call, &parties, &values)
                .map_err(ContractError::reason)?;
            let disclosures = disclosures_of(&sections);
            let state = State::create(
                e.alg,
                e.state_id.clone(),
                e.contract.clone(),
                parties,
                sections,
                Some(signed.id),
                e.timestamp,
            );
            Ok(Built::new(state, disclosures))
        }
        EventKind::ChangeSections | EventKind::CallMethod => {
            let cur = current.ok_or(RejectReason::UnknownState)?;
            target_contract(e, cur, code.as_ref())?;
            check_base(e, cur)?;
            if e.alg != cur.alg() {
                return Err(invalid("$.alg", format!("the state uses {}", cur.alg())));
            }
            let roles = cur.parties.roles_of(&actor.id);
            let call = call_context(signed, &actor.id, &roles);
            let mut business_events = Vec::new();
            let sections = if e.kind == EventKind::ChangeSections {
                let hashes = signed_hashes(e)?;
                if hashes.is_empty() {
                    return Err(RejectReason::EmptyChange);
                }
                check_sections(policy, hashes.keys())?;
                let sections = reveal(e.alg, &hashes, disclosures)?;
                check_writes(policy, &actor, &cur.parties, hashes.keys())?;
                // Only a contract that reads the current sections is handed them (shared).
                let current_view = if code.on_change_reads_current() {
                    view(cur)
                } else {
                    Sections::new()
                };
                code.on_change(&call, &current_view, &view_of(&sections))
                    .map_err(ContractError::reason)?;
                sections
            } else {
                let payload = CallPayload::from_payload(&e.payload).map_err(payload_error)?;
                if payload.is_migration() && roles.is_empty() {
                    return Err(RejectReason::Forbidden {
                        section: "*".into(),
                    });
                }
                let changes = run_call(code.as_ref(), &call, &cur.contract, &view(cur), &payload)
                    .map_err(ContractError::reason)?;
                check_business_events(&changes.events)?;
                business_events = changes.events;
                let changes = changes.changes;
                if changes.is_empty() && !payload.is_migration() {
                    return Err(RejectReason::EmptyChange);
                }
                check_sections(policy, changes.keys())?;
                check_writes(policy, &actor, &cur.parties, changes.keys())?;
                seal(e.alg, changes)?
            };
            // The disclosures are taken first so that the sections move into the new
            // version instead of being copied for it.
            let disclosures = disclosures_of(&sections);
            let state = next_version(cur, sections, e, signed.id);
            Ok(Built {
                business_events,
                ..Built::new(state, disclosures)
            })
        }
        _ => Err(invalid(
            "$.kind",
            format!("{} events do not target a state", e.kind.as_str()),
        )),
    }
}

/// The call context of `signed`, made by `actor` holding `roles`: the same on every node
/// (the event's timestamp and id, never the local clock).
fn call_context<'a>(
    signed: &'a SignedEvent,
    actor: &'a ActorId,
    roles: &'a BTreeSet<Role>,
) -> Call<'a> {
    Call {
        actor,
        roles,
        state_id: &signed.event.state_id,
        timestamp: signed.event.timestamp,
        event: &signed.id,
    }
}

/// Runs the method `payload` names — or, for a migration, the migration from `from` — on
/// `current`.
fn run_call(
    code: &dyn Contract,
    call: &Call<'_>,
    from: &ContractRef,
    current: &Sections,
    payload: &CallPayload,
) -> Result<MethodOutput, ContractError> {
    if payload.is_migration() {
        code.migrate(call, from, current).map(MethodOutput::from)
    } else {
        code.call(call, current, &payload.method, &payload.args)
    }
}

/// The plaintext of `sections`, shared with them (no value is copied).
fn view_of(sections: &BTreeMap<String, Section>) -> Sections {
    sections
        .iter()
        .filter_map(|(n, s)| {
            s.disclosure
                .as_ref()
                .map(|d| (n.clone(), Arc::clone(&d.value)))
        })
        .collect()
}

/// Checks a change distributed by the home node against this node's replica (`current`,
/// which must be the version just before it) and builds the new, redacted version.
pub(crate) fn replicate(
    ctx: &NodeContext,
    from: &NodeId,
    change: &VettedChange,
    current: Option<&State>,
) -> Eval {
    match replicate_steps(ctx, from, change, current) {
        Ok(built) => Eval::Apply(Box::new(built)),
        Err(reason) => Eval::Reject(reason),
    }
}

/// Canonical JSON text of a value (for comparing results, and for messages).
fn canonical_text(v: &Value) -> String {
    String::from_utf8_lossy(&sst_core::canonical::to_vec(v)).into_owned()
}

/// A validating replica's check of a received method call: when this node may read every
/// section of the state (and holds their plaintext), it runs the method again with the same
/// call context (actor, roles, state, the event's timestamp and id) on its own copy and
/// compares the changed section **values** (salts are drawn afresh by each sealing node, so
/// hashes are not compared) and the business events with what the home sent. Returns
/// whether it re-executed; a node that cannot read everything relies on the home's receipt.
///
/// # Errors
/// [`RejectReason::ExecutionMismatch`] naming what differs (including a call the method
/// refuses here).
fn validate_call(
    ctx: &NodeContext,
    code: &dyn Contract,
    policy: &sst_core::ContractPolicy,
    signed: &SignedEvent,
    actor: &Actor,
    cur: &State,
    ch: &AppliedChange,
) -> Result<bool, RejectReason> {
    let e = &signed.event;
    let readable = ctx.node_access(ctx.id(), policy, &cur.parties).read;
    let reads_all = policy.sections.keys().all(|s| readable.contains(s))
        && cur.sections.values().all(|s| s.value().is_some());
    if !reads_all {
        return Ok(false);
    }
    let payload = CallPayload::from_payload(&e.payload).map_err(payload_error)?;
    let roles = cur.parties.roles_of(&actor.id);
    let call = call_context(signed, &actor.id, &roles);
    let current_view = view(cur);
    let mismatch = |detail: String| RejectReason::ExecutionMismatch { detail };
    let ours = run_call(code, &call, &cur.contract, &current_view, &payload).map_err(|err| {
        mismatch(format!(
            "the home applied `{}`, this node's execution refuses it: {err}",
            payload.method
        ))
    })?;
    let theirs: BTreeSet<&String> = ch.effects.keys().collect();
    let mine: BTreeSet<&String> = ours.changes.keys().collect();
    if theirs != mine {
        return Err(mismatch(format!(
            "the home changed sections {theirs:?}, this node's execution {mine:?}"
        )));
    }
    for (name, value) in &ours.changes {
        let home = ch
            .disclosures
            .get(name)
            .map(|d| canonical_text(&d.value))
            .unwrap_or_default();
        let here = canonical_text(value);
        if home != here {
            return Err(mismatch(format!(
                "section `{name}`: the home's value {home}, this node's {here}"
            )));
        }
    }
    let texts = |events: &[BusinessEvent]| -> Vec<String> {
        events
            .iter()
            .map(|b| format!("{}:{}", b.name, canonical_text(&b.payload)))
            .collect()
    };
    let (home, here) = (texts(&ch.business_events), texts(&ours.events));
    if home != here {
        return Err(mismatch(format!(
            "business events: the home's {home:?}, this node's {here:?}"
        )));
    }
    Ok(true)
}

fn replicate_steps(
    ctx: &NodeContext,
    from: &NodeId,
    vetted: &VettedChange,
    current: Option<&State>,
) -> Result<Built, RejectReason> {
    let ch = vetted.change();
    let signed = &ch.signed;
    let e = &signed.event;
    let actor = check_envelope(ctx, vetted.signed_ref())?;
    let (code, policy) = ctx
        .code(&e.contract)
        .ok_or_else(|| RejectReason::UnknownContract {
            contract: e.contract.clone(),
        })?;
    let policy = policy.as_ref();
    let parties = match (e.kind, current) {
        (EventKind::Create, None) => {
            CreatePayload::from_payload(&e.payload)
                .map_err(payload_error)?
                .parties
        }
        (EventKind::Create, Some(_)) => return Err(RejectReason::StateExists),
        (EventKind::ChangeSections | EventKind::CallMethod, Some(cur)) => {
            target_contract(e, cur, code.as_ref())?;
            check_base(e, cur)?;
            cur.parties.clone()
        }
        (EventKind::ChangeSections | EventKind::CallMethod, None) => {
            return Err(RejectReason::UnknownState)
        }
        (kind, _) => {
            return Err(invalid(
                "$.kind",
                format!("{} events do not target a state", kind.as_str()),
            ))
        }
    };
    if e.kind != EventKind::CallMethod && signed_hashes(e)? != ch.effects {
        return Err(invalid(
            "$.effects",
            "changed sections differ from the signed section hashes",
        ));
    }
    if e.kind != EventKind::CallMethod && !ch.business_events.is_empty() {
        return Err(invalid(
            "$.business_events",
            "only a method call emits business events",
        ));
    }
    check_business_events(&ch.business_events)?;
    if is_migration(e) && parties.roles_of(&actor.id).is_empty() {
        return Err(RejectReason::Forbidden {
            section: "*".into(),
        });
    }
    check_sections(policy, ch.effects.keys())?;
    check_writes(policy, &actor, &parties, ch.effects.keys())?;
    let readable: BTreeSet<String> = ctx.node_access(ctx.id(), policy, &parties).read;
    let mut sections = BTreeMap::new();
    let mut kept = BTreeMap::new();
    for (name, hash) in &ch.effects {
        let disclosed = readable
            .contains(name)
            .then(|| ch.disclosures.get(name))
            .flatten();
        let section = match disclosed {
            Some(d) => {
                let path = format!("$.disclosures.{name}");
                portable::check_at(&d.value, &path)
                    .map_err(|err| invalid(&err.path, err.to_string()))?;
                if d.hash(e.alg, name) != *hash {
                    return Err(invalid(
                        &path,
                        "value and salt do not match the section hash",
                    ));
                }
                kept.insert(name.clone(), d.clone());
                Section {
                    hash: *hash,
                    disclosure: Some(d.clone()),
                }
            }
            None => Section::redacted(*hash),
        };
        sections.insert(name.clone(), section);
    }
    let validated = match current {
        Some(cur) if e.kind == EventKind::CallMethod => {
            validate_call(ctx, code.as_ref(), policy, signed, &actor, cur, ch)?
        }
        _ => false,
    };
    let state = match current {
        None => State::create(
            e.alg,
            e.state_id.clone(),
            e.contract.clone(),
            parties,
            sections,
            Some(signed.id),
            e.timestamp,
        ),
        Some(cur) => next_version(cur, sections, e, signed.id),
    };
    if state.version != ch.version || state.root != ch.root {
        if state.version == ch.version {
            // Refused, and a witness alarm: the home announces another root for the version
            // this node rebuilds from its own copy.
            ctx.state_diverged(from, &e.state_id, ch.version, Some(state.root), ch.root);
        }
        return Err(invalid(
            "$.root",
            format!(
                "recomputed version {} root {} differs from the home node's version {} root {}",
                state.version, state.root, ch.version, ch.root
            ),
        ));
    }
    Ok(Built {
        business_events: ch.business_events.clone(),
        validated,
        ..Built::new(state, kept)
    })
}
