//! [`JsEngine`], the `javascript` [`ContractEngine`], and [`descriptor_of`], which reads a
//! contract module's descriptor from its source (what `sst contract deploy FILE` signs).

use std::sync::Arc;

use serde_json::Value as JsonValue;
use sst_core::{ContractDescriptor, ContractRef, EngineRef};
use sst_node::{Contract, ContractEngine, LoadError};

use crate::contract::{Hooks, JsContract};
use crate::lint;
use crate::manifest::{Manifest, DEFAULT_LIMITS};
use crate::sandbox::{self, Failure, Program, MODULE_NAME};

/// Engine id of JavaScript contracts.
pub const ENGINE_ID: &str = "javascript";

/// The QuickJS-ng release rquickjs 0.14 compiles in (`JS_GetVersion`; a test keeps this in
/// step with the linked library). Part of every JavaScript contract's identity: results are
/// only promised identical under one engine version.
pub const QUICKJS_NG_VERSION: &str = "0.16.2";

/// Name of the export holding the manifest.
pub(crate) const MANIFEST_EXPORT: &str = "contract";
/// The optional check of a new state's initial sections.
pub(crate) const ON_CREATE: &str = "onCreate";
/// The optional check of a direct section change.
pub(crate) const ON_CHANGE: &str = "onChange";
/// The optional migration from a superseded version.
pub(crate) const MIGRATE: &str = "migrate";

/// The JavaScript contract engine: ES-module contracts run by QuickJS-ng in a deterministic
/// sandbox (see the crate documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsEngine;

impl JsEngine {
    /// A JavaScript engine.
    pub fn new() -> Self {
        JsEngine
    }

    /// `javascript` at `quickjs-ng-<version>`.
    pub fn engine_ref() -> EngineRef {
        EngineRef::new(ENGINE_ID, format!("quickjs-ng-{QUICKJS_NG_VERSION}"))
    }
}

impl ContractEngine for JsEngine {
    fn engine(&self) -> EngineRef {
        Self::engine_ref()
    }

    fn load(
        &self,
        descriptor: &ContractDescriptor,
        source: &str,
    ) -> Result<Arc<dyn Contract>, LoadError> {
        let (computed, loaded) = inspect(source)?;
        let differing = differences(descriptor, &computed);
        if !differing.is_empty() {
            return Err(load_error(
                &descriptor.contract,
                format!(
                    "the descriptor does not match its source: {}",
                    differing.join("; ")
                ),
            ));
        }
        Ok(Arc::new(JsContract::new(
            computed,
            source.into(),
            loaded.program,
            loaded.hooks,
        )))
    }
}

/// The descriptor of a contract module: its manifest (`export const contract`), its methods
/// (the exported functions other than `onCreate`, `onChange` and `migrate`, sorted), the code
/// hash of the source, engine [`JsEngine::engine_ref`], its limits (the manifest's, each
/// defaulting to [`DEFAULT_LIMITS`]) and its sync protocol (`contract.sync`: absent or
/// `{ protocol: "home" }` for the home-node protocol, `{ protocol: "endorsed", policy,
/// timeout_ms }` for [`SyncSpec::Endorsed`](sst_core::SyncSpec)).
///
/// The module is compiled and evaluated in the sandbox, twice: once under the default limits
/// to read the manifest, once under its own limits (so that limits too small to even load
/// the module are refused here, not on every call).
///
/// # Errors
/// [`LoadError`] naming what is wrong: a syntax error, platform-dependent maths
/// (`Math.sin`, `**`, …), a missing or malformed manifest, a hook that is not a function,
/// an `import`, limits out of range, a refused sync choice (its reason is a
/// [`SyncChoiceError`](crate::SyncChoiceError): unknown protocol or policy kind, `k` = 0, no
/// roles, timeout out of range), or a module that throws or runs out of a budget while evaluating.
pub fn descriptor_of(source: &str) -> Result<ContractDescriptor, LoadError> {
    inspect(source).map(|(descriptor, _)| descriptor)
}

/// What [`inspect`] found besides the descriptor.
struct Loaded {
    program: Program,
    hooks: Hooks,
}

/// [`descriptor_of`], the compiled module and which hooks it exports.
fn inspect(source: &str) -> Result<(ContractDescriptor, Loaded), LoadError> {
    let program = Program::compile(MODULE_NAME, source);
    let evaluated = program.as_ref().map_err(Clone::clone).and_then(|program| {
        sandbox::run(program, &DEFAULT_LIMITS, |sb| {
            let manifest = sb.export(MANIFEST_EXPORT)?;
            if manifest.is_undefined() {
                return Err(Failure::Invalid(
                    "the module does not export `contract` (export const contract = { name, \
                 version, sections, … })"
                        .into(),
                ));
            }
            let manifest = sb
                .to_json(&manifest)
                .map_err(|f| sandbox::prefixed(f, "export `contract`"))?;
            let functions = sb.exported_functions()?;
            for hook in [ON_CREATE, ON_CHANGE, MIGRATE] {
                let value = sb.export(hook)?;
                if !value.is_undefined() && !value.is_function() {
                    return Err(Failure::Invalid(format!(
                        "export `{hook}` must be a function"
                    )));
                }
            }
            Ok((manifest, functions, sb.export_names()?))
        })
    });
    // Refused constructs first: a module using them may well fail to evaluate because of them.
    let refused = [
        (
            lint::platform_maths(source),
            format!(
                "platform-dependent maths is refused (its results may differ in the last bit \
                 between nodes); the transcendental Math functions ({}) and `**` are not \
                 available, use integer arithmetic, multiplication or Math.sqrt",
                sandbox::TRANSCENDENTAL.join(", ")
            ),
        ),
        (
            lint::imports(source),
            "imports are refused (a contract is one self-contained module; the engine has no \
             module loader)"
                .to_owned(),
        ),
    ];
    for (found, why) in refused {
        if !found.is_empty() {
            let contract = evaluated
                .as_ref()
                .map_or_else(|_| unnamed(), |(m, _, _)| named(m));
            let found: Vec<String> = found.iter().map(ToString::to_string).collect();
            return Err(load_error(
                &contract,
                format!("{why}: {}", found.join(", ")),
            ));
        }
    }
    let (manifest, functions, exports) =
        evaluated.map_err(|f| load_error(&unnamed(), f.to_string()))?;
    // What calls run: the instance module, which must export what the module does.
    let program = instances_of(source, &exports, &manifest, &functions)
        .map_err(|reason| load_error(&named(&manifest), reason))?;
    let manifest: Manifest = serde_json::from_value::<Manifest>(manifest.clone())
        .map_err(|e| load_error(&named(&manifest), format!("export `contract`: {e}")))?;
    let contract = manifest.contract();
    let checked = manifest
        .check()
        .map_err(|reason| load_error(&contract, reason))?;
    let hooks = Hooks {
        on_create: functions.iter().any(|f| f == ON_CREATE),
        on_change: functions.iter().any(|f| f == ON_CHANGE),
        migrate: functions.iter().any(|f| f == MIGRATE),
    };
    let mut methods: Vec<String> = functions
        .into_iter()
        .filter(|f| ![ON_CREATE, ON_CHANGE, MIGRATE].contains(&f.as_str()))
        .collect();
    methods.sort();
    // Loads under its own budgets?
    sandbox::run(&program, &checked.limits, |_| Ok(())).map_err(|f| {
        load_error(
            &contract,
            format!("the module does not load under its own limits: {f}"),
        )
    })?;
    let descriptor = ContractDescriptor {
        sync: checked.sync,
        code_hash: ContractDescriptor::code_hash_of(&checked.contract, source),
        policy: checked.policy,
        methods,
        supersedes: checked.supersedes,
        engine: Some(JsEngine::engine_ref()),
        limits: Some(checked.limits),
        contract: checked.contract,
    };
    Ok((descriptor, Loaded { program, hooks }))
}

/// The instance module of `source` ([`Program::instances`]), checked to export what the
/// module itself does: the same function names and the same manifest.
fn instances_of(
    source: &str,
    exports: &[String],
    manifest: &JsonValue,
    functions: &[String],
) -> Result<Program, String> {
    let program = Program::instances(source, exports).map_err(|f| f.to_string())?;
    let (again, functions_again) = sandbox::run(&program, &DEFAULT_LIMITS, |sb| {
        let manifest = sb.to_json(&sb.export(MANIFEST_EXPORT)?)?;
        Ok((manifest, sb.exported_functions()?))
    })
    .map_err(|f| format!("the module body does not run as a contract instance: {f}"))?;
    if &again != manifest || functions_again != functions {
        return Err(format!(
            "the module body does not give the same exports when run as a contract instance \
             (functions {functions:?} vs {functions_again:?})"
        ));
    }
    Ok(program)
}

/// The fields in which `given` differs from `computed`, each with both values.
fn differences(given: &ContractDescriptor, computed: &ContractDescriptor) -> Vec<String> {
    let fields = [
        (
            "contract",
            given.contract.to_string(),
            computed.contract.to_string(),
        ),
        (
            "engine",
            format!("{:?}", given.engine),
            format!("{:?}", computed.engine),
        ),
        (
            "code_hash",
            given.code_hash.to_string(),
            computed.code_hash.to_string(),
        ),
        (
            "policy",
            format!("{:?}", given.policy),
            format!("{:?}", computed.policy),
        ),
        (
            "methods",
            format!("{:?}", given.methods),
            format!("{:?}", computed.methods),
        ),
        (
            "supersedes",
            format!("{:?}", given.supersedes),
            format!("{:?}", computed.supersedes),
        ),
        (
            "limits",
            format!("{:?}", given.limits),
            format!("{:?}", computed.limits),
        ),
        (
            "sync",
            format!("{:?}", given.sync),
            format!("{:?}", computed.sync),
        ),
    ];
    fields
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, a, b)| format!("{name}: descriptor has {a}, source gives {b}"))
        .collect()
}

fn load_error(contract: &ContractRef, reason: String) -> LoadError {
    LoadError {
        contract: contract.clone(),
        engine: JsEngine::engine_ref().to_string(),
        reason,
    }
}

/// The reference used in errors raised before the manifest could be read.
fn unnamed() -> ContractRef {
    ContractRef::new("(unnamed)", 0)
}

/// The manifest's name and version when they can be read, for errors about the rest of it.
fn named(manifest: &JsonValue) -> ContractRef {
    let name = manifest.get("name").and_then(JsonValue::as_str);
    let version = manifest
        .get("version")
        .and_then(JsonValue::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    match (name, version) {
        (Some(n), Some(v)) => ContractRef::new(n, v),
        _ => unnamed(),
    }
}
