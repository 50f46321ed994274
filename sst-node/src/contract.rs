//! The [`Contract`] trait (code that declares sections and roles and turns calls into section
//! changes and business events), the [`ContractEngine`] seam that turns a deployed artifact
//! into a runnable contract (native Rust, JavaScript, …), contract identities, and the
//! [`ContractRegistry`] of versions a node holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use sst_core::{
    ActorChange, ActorId, ActorKey, BusinessEvent, ContractDescriptor, ContractLimits,
    ContractPolicy, ContractRecord, ContractRef, Digest, EngineRef, EventFilter, EventId,
    EventKind, HashAlg, OutcomeKind, Parties, PublicKey, RejectReason, Role, StateId, Store,
    SyncSpec, Timestamp,
};
use tracing::warn;

use crate::error::{NodeError, RecordProblem};

/// Section name → plaintext value: what contracts read and return. Each value is shared,
/// so handing a state's sections (or a change's) to a contract, or sealing an intent's values,
/// never copies the JSON: a contract reads `&Value`s exactly as from a map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sections(BTreeMap<String, Arc<Value>>);

impl Sections {
    /// No sections.
    pub fn new() -> Self {
        Sections(BTreeMap::new())
    }
    /// The value of section `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).map(|v| &**v)
    }
    /// The value of section `name`, shared.
    pub fn get_shared(&self, name: &str) -> Option<&Arc<Value>> {
        self.0.get(name)
    }
    /// Whether section `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
    /// Sets section `name` to `value` (owned or already shared), returning the value it
    /// replaces.
    pub fn insert(&mut self, name: String, value: impl Into<Arc<Value>>) -> Option<Arc<Value>> {
        self.0.insert(name, value.into())
    }
    /// Removes section `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Arc<Value>> {
        self.0.remove(name)
    }
    /// Section names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> + '_ {
        self.0.keys()
    }
    /// Values, in name order.
    pub fn values(&self) -> impl Iterator<Item = &Value> + '_ {
        self.0.values().map(|v| &**v)
    }
    /// `(name, value)` pairs, in name order.
    pub fn iter(&self) -> SectionsIter<'_> {
        self.into_iter()
    }
    /// Number of sections.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there is no section.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The sections with their shared values, in name order.
    pub fn shared(&self) -> &BTreeMap<String, Arc<Value>> {
        &self.0
    }
    /// The sections with their shared values.
    pub fn into_shared(self) -> BTreeMap<String, Arc<Value>> {
        self.0
    }
}

/// The iterator of [`Sections::iter`]: `(name, value)` pairs in name order.
pub type SectionsIter<'a> = std::iter::Map<
    std::collections::btree_map::Iter<'a, String, Arc<Value>>,
    fn((&'a String, &'a Arc<Value>)) -> (&'a String, &'a Value),
>;

impl<'a> IntoIterator for &'a Sections {
    type Item = (&'a String, &'a Value);
    type IntoIter = SectionsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        fn deref<'b>((n, v): (&'b String, &'b Arc<Value>)) -> (&'b String, &'b Value) {
            (n, &**v)
        }
        self.0.iter().map(deref as fn(_) -> _)
    }
}

impl IntoIterator for Sections {
    type Item = (String, Value);
    type IntoIter = std::iter::Map<
        std::collections::btree_map::IntoIter<String, Arc<Value>>,
        fn((String, Arc<Value>)) -> (String, Value),
    >;
    /// Owned values: a value still shared elsewhere is copied.
    fn into_iter(self) -> Self::IntoIter {
        fn own((n, v): (String, Arc<Value>)) -> (String, Value) {
            (n, Arc::unwrap_or_clone(v))
        }
        self.0.into_iter().map(own as fn(_) -> _)
    }
}

impl<V: Into<Arc<Value>>> FromIterator<(String, V)> for Sections {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        Sections(iter.into_iter().map(|(n, v)| (n, v.into())).collect())
    }
}

impl<V: Into<Arc<Value>>> Extend<(String, V)> for Sections {
    fn extend<I: IntoIterator<Item = (String, V)>>(&mut self, iter: I) {
        self.0.extend(iter.into_iter().map(|(n, v)| (n, v.into())));
    }
}

impl<const N: usize> From<[(String, Value); N]> for Sections {
    fn from(pairs: [(String, Value); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl From<BTreeMap<String, Value>> for Sections {
    fn from(map: BTreeMap<String, Value>) -> Self {
        map.into_iter().collect()
    }
}

impl From<BTreeMap<String, Arc<Value>>> for Sections {
    fn from(map: BTreeMap<String, Arc<Value>>) -> Self {
        Sections(map)
    }
}

impl std::ops::Index<&str> for Sections {
    type Output = Value;
    /// The value of a section that must be present.
    ///
    /// # Panics
    /// When there is no section of that name, as a map's index does.
    fn index(&self, name: &str) -> &Value {
        self.get(name)
            .unwrap_or_else(|| panic!("no section named `{name}`"))
    }
}

impl serde::Serialize for Sections {
    /// A JSON object of section name → value, as a map would be.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Sections {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, Value>::deserialize(deserializer).map(Sections::from)
    }
}

/// Method name a `CallMethod` event uses to move a state to a newer contract version (the
/// event names the new version; its `args` are `{"from": {"name", "version"}}`).
pub const MIGRATE_METHOD: &str = sst_core::CallPayload::MIGRATE;

/// Why contract code refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The contract's logic refused (a thrown error, a business rule): recorded as
    /// [`RejectReason::ContractRejected`] with the message.
    #[error("{0}")]
    Rejected(String),
    /// The call ran out of a budget of the contract's descriptor (ticks, memory, stack):
    /// recorded as [`RejectReason::ContractLimit`].
    #[error("contract ran out of its {limit} budget: {detail}")]
    Limit {
        /// `ticks`, `memory` or `stack`.
        limit: String,
        /// Details.
        detail: String,
    },
}

impl ContractError {
    /// A refusal with a message ([`ContractError::Rejected`]).
    pub fn new(msg: impl Into<String>) -> Self {
        ContractError::Rejected(msg.into())
    }

    /// The reject reason this error is recorded as.
    pub fn reason(self) -> RejectReason {
        match self {
            ContractError::Rejected(message) => RejectReason::ContractRejected { message },
            ContractError::Limit { limit, detail } => RejectReason::ContractLimit { limit, detail },
        }
    }
}

/// What a method call produced: section changes and the business events it emitted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MethodOutput {
    /// Changed sections (name → new value).
    pub changes: Sections,
    /// Named business events, in the order emitted.
    pub events: Vec<BusinessEvent>,
}

impl From<Sections> for MethodOutput {
    fn from(changes: Sections) -> Self {
        MethodOutput {
            changes,
            events: Vec::new(),
        }
    }
}

/// Who calls, on which state, when, by which event.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// Signing actor.
    pub actor: &'a ActorId,
    /// Roles the actor holds in the state.
    pub roles: &'a BTreeSet<Role>,
    /// Target state.
    pub state_id: &'a StateId,
    /// The event's timestamp (deterministic: the same on every node).
    pub timestamp: Timestamp,
    /// The event's id (deterministic seed material: the same on every node).
    pub event: &'a EventId,
}

impl Call<'_> {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.as_str() == role)
    }
}

/// A node-local rule an endorsing node applies to a proposed change of a state on the
/// `endorsed` protocol, after the change validated like a received one: how a participant
/// refuses a change by its own rules (a bank's limits, a compliance list) without those rules
/// being part of the shared contract. A refusal is answered to the home node as
/// [`RejectReason::ContractRejected`] with its message, and the change is rejected
/// `not_endorsed` naming this node (configured with
/// [`crate::NodeConfig::with_endorsement_guard`]).
pub trait EndorsementGuard: Send + Sync {
    /// Checks the proposed change of `state` (governed by `contract`): `sections` holds the
    /// plaintext of every section this node may read, as they would be after the change.
    ///
    /// # Errors
    /// A message saying why this node refuses to endorse.
    fn check(
        &self,
        contract: &ContractRef,
        state: &StateId,
        sections: &Sections,
    ) -> Result<(), String>;
}

/// A contract version: expressive logic, separate from state, that declares the state's
/// sections with their read/write roles and generates section changes.
///
/// Permissions are enforced by the node before and after the logic runs: a method can only
/// produce changes to sections the caller may write. Contract code must be deterministic
/// (same inputs → same outputs) and must not perform I/O.
pub trait Contract: Send + Sync {
    /// Name and version.
    fn contract(&self) -> ContractRef;
    /// Sections and their read/write roles.
    fn policy(&self) -> ContractPolicy;
    /// Method names [`Contract::call`] understands.
    fn methods(&self) -> Vec<String> {
        Vec::new()
    }
    /// Earlier versions this version supersedes (their states may migrate to it).
    fn supersedes(&self) -> Vec<ContractRef> {
        Vec::new()
    }
    /// The source artifact whose hash is the code hash (e.g. `include_str!` of the file).
    fn source(&self) -> &str;

    /// The engine that runs this code (`None`: native, compiled into the node binary).
    fn engine(&self) -> Option<EngineRef> {
        None
    }

    /// The execution budgets the engine enforces (`None` for native code).
    fn limits(&self) -> Option<ContractLimits> {
        None
    }

    /// The sync protocol this version's states use (`None`: the home-node protocol). Part of
    /// the descriptor, so of the version's identity, when present: a version on
    /// `endorsed` ([`SyncSpec::Endorsed`]) is applied only once its endorsement policy is met.
    fn sync(&self) -> Option<SyncSpec> {
        None
    }

    /// Checks the initial sections of a new state.
    ///
    /// # Errors
    /// A [`ContractError`] refuses the create.
    fn on_create(
        &self,
        _call: &Call<'_>,
        _parties: &Parties,
        _sections: &Sections,
    ) -> Result<(), ContractError> {
        Ok(())
    }

    /// Whether [`Contract::on_change`] reads its `current` argument. A contract that judges a
    /// change by the changed sections alone returns `false`: it is then handed an empty
    /// `current`, and no view of the state is built for it (the values of a view are shared
    /// with the state, never copied, either way). The default, `true`, hands it what this
    /// node can read.
    fn on_change_reads_current(&self) -> bool {
        true
    }

    /// Checks a direct section change. `current` holds the plaintext this node can read
    /// (empty when [`Contract::on_change_reads_current`] is `false`).
    ///
    /// # Errors
    /// A [`ContractError`] refuses the change.
    fn on_change(
        &self,
        _call: &Call<'_>,
        _current: &Sections,
        _changes: &Sections,
    ) -> Result<(), ContractError> {
        Ok(())
    }

    /// Turns a method call into section changes and business events.
    ///
    /// # Errors
    /// A [`ContractError`] refuses the call (unknown method, bad arguments, business rule).
    fn call(
        &self,
        _call: &Call<'_>,
        _current: &Sections,
        method: &str,
        _args: &Value,
    ) -> Result<MethodOutput, ContractError> {
        Err(ContractError::new(format!("unknown method `{method}`")))
    }

    /// Section changes that move a state of version `from` (one of [`Contract::supersedes`])
    /// to this version. The default keeps every section as it is.
    ///
    /// # Errors
    /// A [`ContractError`] refuses the migration.
    fn migrate(
        &self,
        _call: &Call<'_>,
        _from: &ContractRef,
        _current: &Sections,
    ) -> Result<Sections, ContractError> {
        Ok(Sections::new())
    }

    /// The descriptor whose canonical hash is this version's identity.
    fn descriptor(&self) -> ContractDescriptor {
        let contract = self.contract();
        ContractDescriptor {
            sync: self.sync(),
            code_hash: ContractDescriptor::code_hash_of(&contract, self.source()),
            policy: self.policy(),
            methods: self.methods(),
            supersedes: self.supersedes(),
            engine: self.engine(),
            limits: self.limits(),
            contract,
        }
    }
}

/// Hash of a contract's source artifact ([`ContractDescriptor::code_hash_of`]).
pub fn code_hash(contract: &ContractRef, source: &str) -> Digest {
    ContractDescriptor::code_hash_of(contract, source)
}

/// Why an engine could not load a contract artifact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("contract {contract} cannot be loaded by engine {engine}: {reason}")]
pub struct LoadError {
    /// The contract version.
    pub contract: ContractRef,
    /// The engine asked.
    pub engine: String,
    /// What is wrong (syntax error, a refused intrinsic, a descriptor that does not match the
    /// source, …).
    pub reason: String,
}

/// The seam between the node and the languages contracts are written in: an engine turns a
/// deployed artifact (descriptor + source text) into a runnable [`Contract`]. The node
/// chooses the engine by [`ContractDescriptor::engine`]; native Rust contracts are compiled
/// in and need no engine. A later engine (e.g. Python) implements this trait and is
/// registered with the node; the pipeline does not change.
pub trait ContractEngine: Send + Sync {
    /// The engine id and version it runs; an artifact naming another is not loaded.
    fn engine(&self) -> EngineRef;

    /// Checks and compiles an artifact. The returned contract's
    /// [`Contract::descriptor`] must equal `descriptor` (so its identity is the deployed one).
    ///
    /// # Errors
    /// [`LoadError`] naming what is wrong; deploying such an artifact is refused.
    fn load(
        &self,
        descriptor: &ContractDescriptor,
        source: &str,
    ) -> Result<Arc<dyn Contract>, LoadError>;
}

/// A held version: its code and its descriptor, computed once when the code is added.
#[derive(Clone)]
struct Held {
    code: Arc<dyn Contract>,
    descriptor: ContractDescriptor,
}

/// The contract versions whose code a node holds, and the [`ContractEngine`]s it runs
/// deployed artifacts with. A node refuses events naming a version that is not both
/// installable here (native code held with the deployed identity, or an artifact an engine
/// of this registry loads) and recorded (deployed) in its contract table. Each native
/// version's descriptor (and so its identity) is computed once, when it is added, not per
/// event.
#[derive(Clone, Default)]
pub struct ContractRegistry {
    by_ref: BTreeMap<ContractRef, Held>,
    engines: BTreeMap<EngineRef, Arc<dyn ContractEngine>>,
}

impl std::fmt::Debug for ContractRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractRegistry")
            .field("contracts", &self.by_ref.keys().collect::<Vec<_>>())
            .field("engines", &self.engines.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ContractRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a contract version (builder style).
    pub fn with(mut self, contract: impl Contract + 'static) -> Self {
        self.insert(Arc::new(contract));
        self
    }

    /// Adds a contract version.
    pub fn insert(&mut self, contract: Arc<dyn Contract>) {
        let descriptor = contract.descriptor();
        self.by_ref.insert(
            descriptor.contract.clone(),
            Held {
                code: contract,
                descriptor,
            },
        );
    }

    /// The code of a version, if held.
    pub fn get(&self, contract: &ContractRef) -> Option<&Arc<dyn Contract>> {
        self.by_ref.get(contract).map(|h| &h.code)
    }

    /// The descriptor of a held version (computed when it was added).
    pub fn descriptor(&self, contract: &ContractRef) -> Option<&ContractDescriptor> {
        self.by_ref.get(contract).map(|h| &h.descriptor)
    }

    /// The identity of a held version under `alg`.
    pub fn identity(&self, contract: &ContractRef, alg: HashAlg) -> Option<Digest> {
        self.descriptor(contract)
            .map(|d| ContractRecord::identity_of(d, alg))
    }

    /// Versions held, sorted.
    pub fn refs(&self) -> impl Iterator<Item = &ContractRef> {
        self.by_ref.keys()
    }

    /// Adds a contract engine (builder style): deployed artifacts whose descriptor names its
    /// [`ContractEngine::engine`] (id and version) are loaded through it.
    pub fn with_engine(mut self, engine: Arc<dyn ContractEngine>) -> Self {
        self.add_engine(engine);
        self
    }

    /// Adds a contract engine (replacing one registered under the same id and version).
    pub fn add_engine(&mut self, engine: Arc<dyn ContractEngine>) {
        self.engines.insert(engine.engine(), engine);
    }

    /// The engine registered for `engine` (id and version), if any.
    pub fn engine(&self, engine: &EngineRef) -> Option<&Arc<dyn ContractEngine>> {
        self.engines.get(engine)
    }

    /// Engines registered, sorted.
    pub fn engines(&self) -> impl Iterator<Item = &EngineRef> {
        self.engines.keys()
    }

    /// The runnable code of a deployed version: for a native record (no engine named), the
    /// code held here, whose identity must be the record's; for an engine-run record, its
    /// stored source loaded through the engine the descriptor names, whose contract must
    /// have exactly the deployed descriptor. Neither the deployer's signature nor the
    /// source's hash is checked here ([`ContractRecord::verify`] does).
    ///
    /// # Errors
    /// [`NodeError::Contract`] when native code is not held or has another identity;
    /// [`NodeError::UnknownEngine`] when no engine of this registry runs the descriptor's
    /// engine; [`NodeError::ContractLoad`] when the engine refuses the artifact, the source
    /// is missing, or the loaded contract's descriptor differs from the deployed one.
    pub fn load(&self, record: &ContractRecord) -> Result<Arc<dyn Contract>, NodeError> {
        let contract = record.contract();
        let Some(engine_ref) = &record.descriptor.engine else {
            let bad = |reason: String| NodeError::Contract {
                contract: contract.clone(),
                reason,
            };
            let held = self
                .by_ref
                .get(contract)
                .ok_or_else(|| bad("this node does not hold its code".into()))?;
            let identity = ContractRecord::identity_of(&held.descriptor, record.identity.alg());
            if identity != record.identity {
                return Err(bad(format!(
                    "the code held here has identity {identity}, the record says {}",
                    record.identity
                )));
            }
            return Ok(held.code.clone());
        };
        let engine = self
            .engines
            .get(engine_ref)
            .ok_or_else(|| NodeError::UnknownEngine {
                contract: contract.clone(),
                engine: engine_ref.clone(),
            })?;
        let refused = |reason: String| {
            NodeError::ContractLoad(LoadError {
                contract: contract.clone(),
                engine: engine_ref.to_string(),
                reason,
            })
        };
        let source = record
            .source
            .as_deref()
            .ok_or_else(|| refused("the record carries no source".into()))?;
        let code = engine.load(&record.descriptor, source)?;
        let loaded = code.descriptor();
        if loaded != record.descriptor {
            return Err(refused(format!(
                "the loaded contract's descriptor (identity {}) is not the deployed one \
                 (identity {})",
                ContractRecord::identity_of(&loaded, record.identity.alg()),
                record.identity
            )));
        }
        Ok(code)
    }

    /// Signs the deployment record of a held version as `deployer`.
    ///
    /// # Errors
    /// [`NodeError::Contract`] if the version is not held.
    pub fn deployment(
        &self,
        contract: &ContractRef,
        alg: HashAlg,
        deployer: ActorId,
        key: &ActorKey,
    ) -> Result<ContractRecord, NodeError> {
        let descriptor = self
            .descriptor(contract)
            .ok_or_else(|| NodeError::Contract {
                contract: contract.clone(),
                reason: "this registry does not hold its code".into(),
            })?;
        Ok(ContractRecord::sign(descriptor.clone(), alg, deployer, key))
    }
}

/// Every public key each actor held: its directory key and, from the applied actor changes
/// in the log, the keys it held before and after each rotation (a deployment stays valid
/// after its deployer rotates its key).
async fn keys_held(store: &dyn Store) -> Result<BTreeMap<ActorId, Vec<PublicKey>>, NodeError> {
    let mut keys: BTreeMap<ActorId, Vec<PublicKey>> = BTreeMap::new();
    for a in store.actors().await? {
        keys.entry(a.id).or_default().push(a.public_key);
    }
    let changes = store
        .events(&EventFilter {
            kind: Some(EventKind::ActorChange),
            outcome: Some(OutcomeKind::Applied),
            ..Default::default()
        })
        .await?;
    for rec in changes {
        if let Ok(change) = ActorChange::from_payload(&rec.event().payload) {
            let held = keys.entry(change.actor.id).or_default();
            held.push(change.previous_key);
            held.push(change.actor.public_key);
        }
    }
    Ok(keys)
}

/// Re-verifies one stored contract record: its identity recomputed from its descriptor, and
/// its deployer's strict signature under a key the deployer held.
fn verify_record(
    record: &ContractRecord,
    keys: &BTreeMap<ActorId, Vec<PublicKey>>,
) -> Result<(), RecordProblem> {
    let computed = ContractRecord::identity_of(&record.descriptor, record.identity.alg());
    if computed != record.identity {
        return Err(RecordProblem::DescriptorEdited {
            computed,
            recorded: record.identity,
        });
    }
    match &record.source {
        Some(source) => {
            let hashed = ContractDescriptor::code_hash_of(record.contract(), source);
            if hashed != record.descriptor.code_hash {
                return Err(RecordProblem::SourceEdited {
                    computed: hashed,
                    code_hash: record.descriptor.code_hash,
                });
            }
        }
        None if record.descriptor.engine.is_some() => return Err(RecordProblem::SourceMissing),
        None => {}
    }
    let held = keys
        .get(&record.deployer)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| RecordProblem::UnknownDeployer {
            deployer: record.deployer.clone(),
        })?;
    let mut detail = String::new();
    for key in held {
        match record.verify(key) {
            Ok(()) => return Ok(()),
            Err(e) => detail = e.to_string(),
        }
    }
    Err(RecordProblem::BadSignature {
        deployer: record.deployer.clone(),
        detail,
    })
}

/// Checks every contract record stored in `store` before a node loads them, so that a
/// contract is only ever enforced from verified code — the code this node holds, or the
/// verified stored artifact an engine loads — never from a descriptor read back from the
/// contract table:
///
/// - each record is re-verified: its identity recomputed from its stored descriptor, its
///   stored source re-hashed against the descriptor's code hash, and its deployer's strict
///   signature over that identity (under the deployer's directory key or a key the log shows
///   it held before a rotation);
/// - for a native version whose code `registry` holds, the record's identity must be that
///   code's identity;
/// - an engine-run version (its descriptor names an engine) must verify whatever this node
///   runs (its code is the stored artifact), and is loaded again through the registry's
///   engine when it has one.
///
/// A native record for a version this node holds no code for is not installed anyway
/// (events naming it are rejected `unknown_contract`); if it does not verify either, that is
/// logged. So is an engine-run record whose engine this registry lacks.
///
/// # Errors
/// [`NodeError::ContractRecord`] naming the contract and what does not verify (e.g. its
/// policy or its stored source was edited in the table); [`NodeError::ContractChanged`] when
/// the held code's identity differs from the deployed one (the contract's source changed
/// without a new version); [`NodeError::ContractLoad`] when the engine no longer loads a
/// verified artifact; [`NodeError::Store`] when the tables cannot be read.
pub async fn check_deployed(
    store: &dyn Store,
    registry: &ContractRegistry,
) -> Result<(), NodeError> {
    let records = store.contracts().await?;
    if records.is_empty() {
        return Ok(());
    }
    let keys = keys_held(store).await?;
    for record in records {
        let contract = record.contract().clone();
        let verified = verify_record(&record, &keys);
        if let Some(engine) = &record.descriptor.engine {
            verified.map_err(|problem| NodeError::ContractRecord {
                contract: contract.clone(),
                problem,
            })?;
            if registry.engine(engine).is_some() {
                registry.load(&record)?;
            } else {
                warn!(%contract, %engine, "deployed contract's engine is not registered on this node; not installed");
            }
            continue;
        }
        let Some(held) = registry.identity(&contract, record.identity.alg()) else {
            if let Err(problem) = verified {
                warn!(%contract, %problem, "stored contract record does not verify; no code held for it, not installed");
            }
            continue;
        };
        verified.map_err(|problem| NodeError::ContractRecord {
            contract: contract.clone(),
            problem,
        })?;
        if held != record.identity {
            return Err(NodeError::ContractChanged {
                contract,
                deployed: record.identity,
                held,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sections_serialize_and_read_back_as_a_json_object_of_name_to_value() {
        let s = Sections::from([
            ("price".to_owned(), json!({"amount": 5})),
            ("common".to_owned(), json!([1, 2.5, "x"])),
        ]);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text, r#"{"common":[1,2.5,"x"],"price":{"amount":5}}"#);
        let back: Sections = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Sections>("[1]").is_err());
    }

    #[test]
    fn sections_read_like_a_map_in_name_order() {
        let mut s = Sections::new();
        assert!(s.is_empty());
        assert!(s.insert("b".to_owned(), json!(2)).is_none());
        s.extend([("a".to_owned(), json!(1))]);
        let replaced = s.insert("b".to_owned(), json!(3)).unwrap();
        assert_eq!(*replaced, json!(2));
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("a"), Some(&json!(1)));
        assert_eq!(s["b"], json!(3));
        assert!(s.contains_key("a") && !s.contains_key("c"));
        let pairs: Vec<(&String, &Value)> = s.iter().collect();
        assert_eq!(
            pairs,
            [(&"a".to_owned(), &json!(1)), (&"b".to_owned(), &json!(3))]
        );
        assert_eq!(s.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(s.values().collect::<Vec<_>>(), [&json!(1), &json!(3)]);
        assert_eq!(*s.remove("a").unwrap(), json!(1));
        let owned: Vec<(String, Value)> = s.into_iter().collect();
        assert_eq!(owned, [("b".to_owned(), json!(3))]);
    }

    #[test]
    fn cloning_sections_or_handing_a_shared_value_in_copies_no_json() {
        let big = Arc::new(json!({"series": [1, 2, 3]}));
        let mut s = Sections::new();
        s.insert("common".to_owned(), Arc::clone(&big));
        let copy = s.clone();
        assert!(Arc::ptr_eq(copy.get_shared("common").unwrap(), &big));
        assert!(Arc::ptr_eq(&s.shared()["common"], &big));
        // Taking the values out owns them; a value still shared elsewhere is copied then.
        let owned: BTreeMap<String, Value> = copy.into_iter().collect();
        assert_eq!(owned["common"], *big);
    }
}
