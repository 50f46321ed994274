//! The sandbox one contract invocation runs in: a QuickJS-ng context with the deterministic
//! profile (`lockdown.js`) applied, reused on its thread for a bounded number of calls, in which
//! each call evaluates a fresh instance of its module (nothing survives from one call to the
//! next, so a result never depends on call history); the invocation's budgets (decided in a
//! fresh runtime whenever one runs out); the conversion of values between JSON and
//! JavaScript; and the mapping of whatever went wrong to a typed [`Failure`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rquickjs::context::intrinsic::{Eval, Json, MapSet, Promise, RegExp, RegExpCompiler};
use rquickjs::module::WriteOptions;
use rquickjs::{Array, Context, Ctx, Function, Module, Object, Persistent, Runtime, Type, Value};
use serde_json::{Map, Number, Value as JsonValue};
use sst_core::portable::{member_path, MAX_DEPTH, MAX_SAFE_INTEGER};
use sst_core::{BusinessEvent, ContractLimits};

use crate::manifest::DEFAULT_LIMITS;

/// `Math` functions whose results come from the platform's C maths library (libm), which may
/// differ in the last bit between platforms and library versions. The sandbox removes them and
/// a contract naming one is refused at deploy time (see [`crate::lint`]). The `**` operator
/// calls libm's `pow` too and is refused the same way.
pub(crate) const TRANSCENDENTAL: &[&str] = &[
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "cos", "cosh", "exp",
    "expm1", "hypot", "log", "log10", "log1p", "log2", "pow", "sin", "sinh", "tan", "tanh",
];

/// The deterministic profile (a module; see the file).
const LOCKDOWN: &str = include_str!("lockdown.js");

/// Name the profile module is compiled under.
const LOCKDOWN_NAME: &str = "sst:lockdown";

/// File name contract modules are compiled under (it appears in stack traces).
pub(crate) const MODULE_NAME: &str = "contract.js";

/// What went wrong in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A budget of the contract's limits ran out (`ticks`, `memory` or `stack`).
    Limit {
        /// Which budget.
        limit: &'static str,
        /// What was exceeded.
        detail: String,
    },
    /// The contract threw (an `Error`'s message, or the thrown value).
    Thrown(String),
    /// The contract produced or exported something SST does not take (a value that is not
    /// portable JSON, a hook that is not a function, …).
    Invalid(String),
    /// The engine itself failed (not caused by the contract's logic).
    Engine(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Limit { limit, detail } => {
                write!(f, "ran out of its {limit} budget: {detail}")
            }
            Failure::Thrown(m) | Failure::Invalid(m) => f.write_str(m),
            Failure::Engine(m) => write!(f, "javascript engine error: {m}"),
        }
    }
}

/// Name of the function the instance module of a contract exports (see
/// [`Program::instances`]).
const INSTANCE: &str = "__sst_instance";

/// Ids of programs, for the per-context cache of instance functions.
static NEXT_PROGRAM: AtomicU64 = AtomicU64::new(1);

/// A module compiled to QuickJS bytecode by this process (never read from outside): a
/// contract module as written ([`Program::compile`], evaluated per use: deploy-time checks),
/// or its instance module ([`Program::instances`], what calls run).
#[derive(Clone)]
pub(crate) struct Program {
    id: u64,
    bytecode: Arc<[u8]>,
    instances: bool,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({} bytes of bytecode)", self.bytecode.len())
    }
}

/// Intrinsics of every context: the base objects, JSON, Map/Set (and WeakMap/WeakSet),
/// RegExp. `Eval` is the compiler modules are compiled with, `Promise` the machinery of module
/// evaluation and async functions (QuickJS-ng cannot even create an async function without
/// it); the profile removes `eval`, the Function constructors and the global `Promise` before
/// contract code runs, and pending jobs are never run after a call. No Date, Proxy, typed
/// arrays, WeakRef/FinalizationRegistry or Performance.
type Intrinsics = (Eval, RegExpCompiler, RegExp, Json, MapSet, Promise);

impl Program {
    /// Compiles `source` as an ES module named `name` (a syntax error is
    /// [`Failure::Thrown`] with the engine's message).
    pub(crate) fn compile(name: &str, source: &str) -> Result<Self, Failure> {
        let engine = |e: rquickjs::Error| Failure::Engine(e.to_string());
        let runtime = Runtime::new().map_err(engine)?;
        let context = Context::custom::<Intrinsics>(&runtime).map_err(engine)?;
        context.with(|ctx| {
            let ticks = Cell::new(0);
            let fail = |e| classify(&ctx, e, &ticks, &DEFAULT_LIMITS);
            let module = Module::declare(ctx.clone(), name, source).map_err(fail)?;
            let bytecode = module.write(WriteOptions::default()).map_err(fail)?;
            Ok(Program {
                id: NEXT_PROGRAM.fetch_add(1, Ordering::Relaxed),
                bytecode: bytecode.into(),
                instances: false,
            })
        })
    }

    /// The instance module of the contract module `source`, whose exports are `exports`: one
    /// exported function that runs the contract's module body as a function body (each
    /// `export` keyword of a declaration blanked out, so lines stay) and returns an object of
    /// its exports. Calling it makes a fresh instance of the contract (its module-level
    /// variables start over) without loading a module, so a context serving many calls keeps
    /// nothing of them. Other forms of `export` (`export { … }`, `export default`) are
    /// [`Failure::Invalid`].
    pub(crate) fn instances(source: &str, exports: &[String]) -> Result<Self, Failure> {
        let body = crate::lint::without_export_keywords(source).map_err(|found| {
            let found: Vec<String> = found.iter().map(ToString::to_string).collect();
            Failure::Invalid(format!(
                "only declarations can be exported (`export function name`, `export const \
                 name = …`); not supported: {}",
                found.join(", ")
            ))
        })?;
        let wrapped = format!(
            "export function {INSTANCE}() {{ {body}\nreturn {{ {} }};\n}}\n",
            exports.join(", ")
        );
        Ok(Program {
            instances: true,
            ..Program::compile(MODULE_NAME, &wrapped)?
        })
    }

    /// The profile module, compiled once per process.
    fn lockdown() -> Result<&'static Program, Failure> {
        static LOCKDOWN_PROGRAM: OnceLock<Result<Program, Failure>> = OnceLock::new();
        LOCKDOWN_PROGRAM
            .get_or_init(|| {
                let names = JsonValue::from(TRANSCENDENTAL.to_vec()).to_string();
                Program::compile(
                    LOCKDOWN_NAME,
                    &LOCKDOWN.replace("__TRANSCENDENTAL__", &names),
                )
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Declares the module in `ctx`.
    #[allow(unsafe_code)]
    fn declare<'js>(&self, ctx: &Ctx<'js>) -> rquickjs::Result<Module<'js>> {
        // SAFETY: `Module::load` trusts its bytes to be valid bytecode. A `Program`'s bytes
        // only ever come from `Module::write` of this same library in this process
        // (`Program::compile`; the field is private and never filled from outside).
        unsafe { Module::load(ctx.clone(), &self.bytecode) }
    }
}

/// Evaluates a declared module; top-level `await` is refused.
fn evaluate<'js>(
    declared: Module<'js>,
    fail: impl Fn(rquickjs::Error) -> Failure,
) -> Result<Module<'js, rquickjs::module::Evaluated>, Failure> {
    let (module, evaluated) = declared.eval().map_err(&fail)?;
    match evaluated.finish::<Value>() {
        Ok(_) => Ok(module),
        Err(rquickjs::Error::WouldBlock) => Err(Failure::Invalid(
            "the module's evaluation did not complete (top-level `await` is not supported)".into(),
        )),
        Err(e) => Err(fail(e)),
    }
}

/// One evaluated contract module instance, with the host's helpers.
pub(crate) struct Sandbox<'js> {
    ctx: Ctx<'js>,
    host: Object<'js>,
    namespace: Object<'js>,
    object_prototype: Value<'js>,
    ticks: Rc<Cell<u64>>,
    limits: ContractLimits,
}

/// Calls one warm sandbox serves before it is discarded (and with it whatever garbage QuickJS
/// has not yet collected, and the instance functions it compiled).
const WARM_CALLS: u32 = 256;

/// A [`Prepared`] runtime kept on one thread and reused by the calls made on it (of any
/// contract): setting a runtime up and freezing its intrinsics costs several times a typical
/// call. Each call still evaluates a fresh instance of its module, so module-level variables
/// start over; everything else a call could reach is frozen by the profile (and the profile
/// leaves nothing with per-context state writable), so nothing one call does is visible to the
/// next.
struct Warm {
    prepared: Prepared,
    served: u32,
}

thread_local! {
    /// This thread's warm sandbox, made on first use.
    static WARM: RefCell<Option<Warm>> = const { RefCell::new(None) };
}

/// The interrupt handler of a runtime: counts a tick per call (QuickJS calls it every
/// 10,000 branches or calls of bytecode) and interrupts once `limit` is exceeded.
fn tick_counter(ticks: &Rc<Cell<u64>>, limit: &Rc<Cell<u64>>) -> Box<dyn FnMut() -> bool> {
    let (ticks, limit) = (Rc::clone(ticks), Rc::clone(limit));
    Box::new(move || {
        let used = ticks.get().saturating_add(1);
        ticks.set(used);
        used > limit.get()
    })
}

/// A runtime whose context has the profile applied: the host's helpers and
/// `Object.prototype` (kept as persistent handles), the runtime's tick counter and limit.
/// No memory limit is set yet: the budget counts from the module's load on.
struct Prepared {
    host: Persistent<Object<'static>>,
    object_prototype: Persistent<Value<'static>>,
    /// Instance functions of the instance modules evaluated here, by program id.
    instances: RefCell<HashMap<u64, Persistent<Function<'static>>>>,
    context: Context,
    runtime: Runtime,
    ticks: Rc<Cell<u64>>,
    tick_limit: Rc<Cell<u64>>,
}

impl Prepared {
    /// A fresh runtime and context with the deterministic profile evaluated.
    fn new(stack_bytes: u64) -> Result<Self, Failure> {
        let lockdown = Program::lockdown()?;
        let engine = |e: rquickjs::Error| Failure::Engine(e.to_string());
        let runtime = Runtime::new().map_err(engine)?;
        runtime.set_max_stack_size(usize::try_from(stack_bytes).unwrap_or(usize::MAX));
        let ticks = Rc::new(Cell::new(0u64));
        let tick_limit = Rc::new(Cell::new(u64::MAX));
        runtime.set_interrupt_handler(Some(tick_counter(&ticks, &tick_limit)));
        let context = Context::custom::<Intrinsics>(&runtime).map_err(engine)?;
        let (host, object_prototype) = context.with(|ctx| {
            let profile = evaluate(lockdown.declare(&ctx).map_err(engine)?, engine)?;
            let host: Object = profile.get("host").map_err(engine)?;
            let object_prototype: Value = ctx
                .globals()
                .get::<_, Object>("Object")
                .and_then(|o| o.get("prototype"))
                .map_err(engine)?;
            Ok::<_, Failure>((
                Persistent::save(&ctx, host),
                Persistent::save(&ctx, object_prototype),
            ))
        })?;
        Ok(Prepared {
            host,
            object_prototype,
            instances: RefCell::new(HashMap::new()),
            context,
            runtime,
            ticks,
            tick_limit,
        })
    }

    /// Evaluates a fresh instance of `program` under `limits` and hands the sandbox to
    /// `body`. The memory budget counts from here (the module instance included), the tick
    /// budget from zero, the stack from the caller's depth (QuickJS measures it from each
    /// call into JavaScript).
    fn call<R>(
        &self,
        program: &Program,
        limits: &ContractLimits,
        body: &impl for<'js> Fn(&Sandbox<'js>) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        // Evaluated before the budgets start: only the first call of a context would pay it.
        let instance = self.instance_function(program)?;
        self.ticks.set(0);
        self.tick_limit.set(limits.ticks);
        self.runtime
            .set_max_stack_size(usize::try_from(limits.stack_bytes).unwrap_or(usize::MAX));
        let in_use = u64::try_from(self.runtime.memory_usage().malloc_size).unwrap_or(0);
        let budget = in_use.saturating_add(limits.memory_bytes);
        self.runtime
            .set_memory_limit(usize::try_from(budget).unwrap_or(usize::MAX));
        let result = self.context.with(|ctx| {
            let fail = |e| classify(&ctx, e, &self.ticks, limits);
            let host = self.host.clone().restore(&ctx).map_err(fail)?;
            let object_prototype = self.object_prototype.clone().restore(&ctx).map_err(fail)?;
            let namespace = match &instance {
                Some(instance) => {
                    let instance = instance.clone().restore(&ctx).map_err(fail)?;
                    instance.call::<_, Object>(()).map_err(fail)?
                }
                None => evaluate(program.declare(&ctx).map_err(fail)?, fail)?
                    .namespace()
                    .map_err(fail)?,
            };
            let sandbox = Sandbox {
                ctx: ctx.clone(),
                host,
                namespace,
                object_prototype,
                ticks: Rc::clone(&self.ticks),
                limits: *limits,
            };
            body(&sandbox)
        });
        // Unlimited between calls (0 is QuickJS's "no limit").
        self.runtime.set_memory_limit(0);
        self.tick_limit.set(u64::MAX);
        result
    }
}

impl Prepared {
    /// The instance function of an instance module ([`Program::instances`]), evaluated in this
    /// context on first use; `None` for a contract module as written.
    fn instance_function(
        &self,
        program: &Program,
    ) -> Result<Option<Persistent<Function<'static>>>, Failure> {
        if !program.instances {
            return Ok(None);
        }
        if let Some(f) = self.instances.borrow().get(&program.id) {
            return Ok(Some(f.clone()));
        }
        let unlimited = ContractLimits {
            ticks: u64::MAX,
            memory_bytes: u64::MAX,
            stack_bytes: u64::MAX,
        };
        let f = self.context.with(|ctx| {
            let fail = |e| classify(&ctx, e, &self.ticks, &unlimited);
            let module = evaluate(program.declare(&ctx).map_err(fail)?, fail)?;
            let f: Function = module.get(INSTANCE).map_err(fail)?;
            Ok::<_, Failure>(Persistent::save(&ctx, f))
        })?;
        self.instances.borrow_mut().insert(program.id, f.clone());
        Ok(Some(f))
    }
}

/// Runs `body` on an evaluated instance of `program` bounded by `limits`, after the
/// deterministic profile.
///
/// First on this thread's warm sandbox ([`WARM_CALLS`]) with a tick budget one tick short of
/// the limit: QuickJS counts ticks every 10,000 branches from a counter a warm context carries
/// over from earlier calls, so a warm call may see one tick fewer than a fresh runtime would,
/// never more. A call that ends normally or by throwing is the result. A call that runs out of
/// any budget, or fails in the engine, is run again in a fresh runtime whose result is the
/// one recorded: the tick count there starts from the same point on every node. The warm
/// sandbox is then discarded.
///
/// Memory is counted from the module's load on, in both, so the budget means the same; the
/// engine's shared tables (atoms, shapes) may be larger in a warm context, which only ever
/// saves a call allocations; a call that catches its own out-of-memory error and goes on is
/// the one case in which the two may differ, and a validating replica records it.
pub(crate) fn run<R>(
    program: &Program,
    limits: &ContractLimits,
    body: impl for<'js> Fn(&Sandbox<'js>) -> Result<R, Failure>,
) -> Result<R, Failure> {
    if let Some(result) = run_warm(program, limits, &body) {
        return result;
    }
    run_fresh(program, limits, &body)
}

/// [`run`] in a fresh runtime only (nothing of an earlier call exists in it).
pub(crate) fn run_fresh<R>(
    program: &Program,
    limits: &ContractLimits,
    body: &impl for<'js> Fn(&Sandbox<'js>) -> Result<R, Failure>,
) -> Result<R, Failure> {
    Prepared::new(limits.stack_bytes)?.call(program, limits, body)
}

/// [`run`] on this thread's warm sandbox: `None` when the fresh runtime must decide (a
/// budget ran out or the engine failed; the warm sandbox is dropped), or when the warm
/// sandbox is unavailable (busy in an outer call on this thread, or could not be made).
fn run_warm<R>(
    program: &Program,
    limits: &ContractLimits,
    body: &impl for<'js> Fn(&Sandbox<'js>) -> Result<R, Failure>,
) -> Option<Result<R, Failure>> {
    WARM.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.as_ref().is_some_and(|w| w.served >= WARM_CALLS) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(Warm {
                prepared: Prepared::new(limits.stack_bytes).ok()?,
                served: 0,
            });
        }
        let warm = slot.as_mut()?;
        warm.served += 1;
        let warm_limits = ContractLimits {
            ticks: limits.ticks.saturating_sub(1),
            ..*limits
        };
        match warm.prepared.call(program, &warm_limits, body) {
            result @ (Ok(_) | Err(Failure::Thrown(_) | Failure::Invalid(_))) => Some(result),
            Err(Failure::Limit { .. } | Failure::Engine(_)) => {
                *slot = None;
                None
            }
        }
    })
}

fn memory_limit(limits: &ContractLimits) -> Failure {
    Failure::Limit {
        limit: "memory",
        detail: format!("the call needed more than {} bytes", limits.memory_bytes),
    }
}

/// Turns an engine error into a [`Failure`]: a spent tick budget first (the interrupt is
/// uncatchable), then the pending exception.
fn classify(
    ctx: &Ctx<'_>,
    err: rquickjs::Error,
    ticks: &Cell<u64>,
    limits: &ContractLimits,
) -> Failure {
    if ticks.get() > limits.ticks {
        return Failure::Limit {
            limit: "ticks",
            detail: format!("the call used more than {} ticks", limits.ticks),
        };
    }
    match err {
        rquickjs::Error::Exception => describe_thrown(&ctx.catch(), limits),
        rquickjs::Error::Allocation => memory_limit(limits),
        other => Failure::Engine(other.to_string()),
    }
}

/// What a thrown value says: the engine's own out-of-memory and stack-overflow errors (and
/// the `null` it throws when memory is too short for an error object) are budget failures; an `Error` is its message (prefixed by its name unless it is a plain
/// `Error`); any other value is shown as such.
fn describe_thrown(thrown: &Value<'_>, limits: &ContractLimits) -> Failure {
    if thrown.is_error() {
        if let Some(obj) = thrown.as_object() {
            let name: String = obj.get("name").unwrap_or_else(|_| "Error".into());
            let message: String = obj.get("message").unwrap_or_default();
            return match (name.as_str(), message.as_str()) {
                ("InternalError", "out of memory") => memory_limit(limits),
                ("RangeError", "Maximum call stack size exceeded") => Failure::Limit {
                    limit: "stack",
                    detail: format!("the call stack grew beyond {} bytes", limits.stack_bytes),
                },
                ("Error", _) => Failure::Thrown(message),
                _ => Failure::Thrown(format!("{name}: {message}")),
            };
        }
    }
    if thrown.is_null() {
        // QuickJS-ng throws `null` when it cannot even allocate the "out of memory" error.
        // (A contract that throws `null` itself is reported the same way.)
        return memory_limit(limits);
    }
    if let Some(s) = thrown.as_string() {
        return Failure::Thrown(s.to_string().unwrap_or_else(|_| "(a thrown string)".into()));
    }
    if let Some(n) = thrown.as_number() {
        return Failure::Thrown(format!("{n}"));
    }
    if let Some(b) = thrown.as_bool() {
        return Failure::Thrown(b.to_string());
    }
    Failure::Thrown(format!("uncaught {} value", type_name(thrown.type_of())))
}

fn type_name(t: Type) -> &'static str {
    match t {
        Type::Undefined | Type::Uninitialized => "undefined",
        Type::Symbol => "symbol",
        Type::BigInt => "bigint",
        Type::Function | Type::Constructor => "function",
        Type::Array => "array",
        Type::Null => "null",
        Type::Bool => "boolean",
        Type::Int | Type::Float => "number",
        Type::String => "string",
        _ => "object",
    }
}

impl<'js> Sandbox<'js> {
    fn fail(&self, err: rquickjs::Error) -> Failure {
        classify(&self.ctx, err, &self.ticks, &self.limits)
    }

    /// Names of the module's exports that are functions, in the module's order.
    pub(crate) fn exported_functions(&self) -> Result<Vec<String>, Failure> {
        let functions: Function = self.host.get("functions").map_err(|e| self.fail(e))?;
        functions
            .call((self.namespace.clone(),))
            .map_err(|e| self.fail(e))
    }

    /// Names of all the module's exports.
    pub(crate) fn export_names(&self) -> Result<Vec<String>, Failure> {
        self.namespace
            .keys::<String>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))
    }

    /// An export of the module (`undefined` when absent).
    pub(crate) fn export(&self, name: &str) -> Result<Value<'js>, Failure> {
        self.namespace.get(name).map_err(|e| self.fail(e))
    }

    /// `value` as a JavaScript value.
    pub(crate) fn parse(&self, value: &JsonValue) -> Result<Value<'js>, Failure> {
        self.ctx
            .json_parse(value.to_string())
            .map_err(|e| self.fail(e))
    }

    /// The `ctx` argument for `info` (`{actor, roles, state, now, seed}`) and the list its
    /// `emit` appends `[name, payload]` pairs to (`emit` throws unless `can_emit`).
    pub(crate) fn context(
        &self,
        info: &JsonValue,
        can_emit: bool,
    ) -> Result<(Value<'js>, Array<'js>), Failure> {
        let info = self.parse(info)?;
        let make: Function = self.host.get("context").map_err(|e| self.fail(e))?;
        let pair: Array = make.call((info, can_emit)).map_err(|e| self.fail(e))?;
        let ctx = pair.get(0).map_err(|e| self.fail(e))?;
        let events = pair.get(1).map_err(|e| self.fail(e))?;
        Ok((ctx, events))
    }

    /// Calls the exported function `name` with three arguments.
    pub(crate) fn call(
        &self,
        name: &str,
        args: (Value<'js>, Value<'js>, Value<'js>),
    ) -> Result<Value<'js>, Failure> {
        let f: Function = self.namespace.get(name).map_err(|e| self.fail(e))?;
        f.call(args).map_err(|e| self.fail(e))
    }

    /// The business events a method emitted, payloads converted to JSON.
    pub(crate) fn events(&self, emitted: &Array<'js>) -> Result<Vec<BusinessEvent>, Failure> {
        let mut out = Vec::with_capacity(emitted.len());
        for pair in emitted.iter::<Array>() {
            let pair = pair.map_err(|e| self.fail(e))?;
            let name: String = pair.get(0).map_err(|e| self.fail(e))?;
            let payload: Value = pair.get(1).map_err(|e| self.fail(e))?;
            let payload = self
                .to_json(&payload)
                .map_err(|f| prefixed(f, &format!("business event `{name}`")))?;
            out.push(BusinessEvent { name, payload });
        }
        Ok(out)
    }

    /// `value` as portable JSON: plain objects, arrays, strings, finite numbers (integral ones
    /// within ±(2^53 − 1) become integers), booleans and null. Anything else (`undefined`,
    /// a function, a `Map`, `NaN`, a cycle, …) is [`Failure::Invalid`] naming its path.
    pub(crate) fn to_json(&self, value: &Value<'js>) -> Result<JsonValue, Failure> {
        self.convert(value, "$", 0)
    }

    /// The own enumerable string-keyed properties of a plain object (prototype
    /// `Object.prototype` or `null`), in property order; `None` for anything else.
    pub(crate) fn entries(
        &self,
        value: &Value<'js>,
    ) -> Result<Option<Vec<(String, Value<'js>)>>, Failure> {
        let Some(object) = value
            .as_object()
            .filter(|_| value.type_of() == Type::Object)
        else {
            return Ok(None);
        };
        let plain = match object.get_prototype() {
            None => true,
            Some(p) => *p.as_value() == self.object_prototype,
        };
        if !plain {
            return Ok(None);
        }
        object
            .props::<String, Value>()
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|e| self.fail(e))
    }

    fn convert(&self, value: &Value<'js>, path: &str, depth: usize) -> Result<JsonValue, Failure> {
        let invalid = |what: &str| Failure::Invalid(format!("{path}: {what}"));
        match value.type_of() {
            Type::Null => Ok(JsonValue::Null),
            Type::Bool => Ok(JsonValue::Bool(value.as_bool().unwrap_or_default())),
            Type::Int => Ok(JsonValue::from(value.as_int().unwrap_or_default())),
            Type::Float => {
                let f = value.as_float().unwrap_or(f64::NAN);
                if !f.is_finite() {
                    return Err(invalid(&format!("{f} is not a finite number")));
                }
                if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64 {
                    // Exact: |f| <= 2^53 - 1 and integral (-0 becomes 0).
                    return Ok(JsonValue::from(f as i64));
                }
                Number::from_f64(f)
                    .map(JsonValue::Number)
                    .ok_or_else(|| invalid("not a finite number"))
            }
            Type::String => value
                .as_string()
                .ok_or_else(|| invalid("not a string"))?
                .to_string()
                .map(JsonValue::String)
                .map_err(|_| invalid("a string that is not valid Unicode (a lone surrogate)")),
            Type::Array | Type::Object if depth >= MAX_DEPTH => {
                Err(invalid(&format!("nested deeper than {MAX_DEPTH} levels")))
            }
            Type::Array => {
                let array = value.as_array().ok_or_else(|| invalid("not an array"))?;
                let mut out = Vec::with_capacity(array.len());
                for i in 0..array.len() {
                    let item: Value = array.get(i).map_err(|e| self.fail(e))?;
                    out.push(self.convert(&item, &format!("{path}[{i}]"), depth + 1)?);
                }
                Ok(JsonValue::Array(out))
            }
            Type::Object => {
                let entries = self.entries(value)?.ok_or_else(|| {
                    invalid(
                        "an object that is not a plain object (a Map, Set, RegExp, Error or \
                         class instance is not JSON)",
                    )
                })?;
                let mut out = Map::new();
                for (key, item) in entries {
                    let item = self.convert(&item, &member_path(path, &key), depth + 1)?;
                    out.insert(key, item);
                }
                Ok(JsonValue::Object(out))
            }
            other => Err(invalid(&format!("a {} is not JSON", type_name(other)))),
        }
    }
}

/// `failure` with `context` in front of its message (values the contract returned).
pub(crate) fn prefixed(failure: Failure, context: &str) -> Failure {
    match failure {
        Failure::Invalid(m) => Failure::Invalid(format!("{context}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spin(n)`: a loop of `n` iterations; `grow(n)`: an array of `n` small objects.
    const PROGRAM: &str = "export function spin(n) { let s = 0; for (let i = 0; i < n; i++) { s += i; } return s; }\n\
         export function grow(n) { const a = []; for (let i = 0; i < n; i++) { a.push({ i }); } return a.length; }\n\
         export function light() { return 1; }";

    /// The instance module of [`PROGRAM`] (what calls run).
    fn instances() -> Result<Program, Failure> {
        let exports = ["spin", "grow", "light"].map(String::from);
        Program::instances(PROGRAM, &exports)
    }

    fn outcome(result: Result<JsonValue, Failure>) -> String {
        match result {
            Ok(v) => format!("ok {v}"),
            Err(Failure::Limit { limit, .. }) => format!("limit {limit}"),
            Err(other) => format!("failed {other}"),
        }
    }

    fn invoke(
        program: &Program,
        limits: &ContractLimits,
        function: &'static str,
        n: u64,
        fresh: bool,
    ) -> String {
        let body = move |sb: &Sandbox<'_>| {
            let arg = sb.parse(&JsonValue::from(n))?;
            let undefined = Value::new_undefined(sb.ctx.clone());
            let out = sb.call(function, (arg, undefined.clone(), undefined))?;
            sb.to_json(&out)
        };
        outcome(if fresh {
            run_fresh(program, limits, &body)
        } else {
            run(program, limits, body)
        })
    }

    /// Around the tick budget's edge, a call on the warm sandbox ends exactly as in a fresh
    /// runtime, whatever calls the warm sandbox served before.
    #[test]
    fn warm_calls_end_like_fresh_ones_at_the_edge_of_the_tick_budget() -> Result<(), Failure> {
        let program = instances()?;
        let limits = ContractLimits {
            ticks: 3,
            ..DEFAULT_LIMITS
        };
        let mut outcomes = std::collections::BTreeSet::new();
        for (k, n) in (4_000..16_000).step_by(397).enumerate() {
            // A varying history: 0 to 4 light or spinning calls before this one.
            for j in 0..k % 5 {
                let _ = invoke(&program, &limits, "spin", (j as u64) * 1_301, false);
            }
            let fresh = invoke(&program, &limits, "spin", n, true);
            let warm = invoke(&program, &limits, "spin", n, false);
            assert_eq!(warm, fresh, "spin({n}) after {} earlier calls", k % 5);
            outcomes.insert(fresh.split(' ').next().map(str::to_owned));
        }
        // The range crosses the budget: both outcomes occur.
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        Ok(())
    }

    /// The memory budget counts from the module's load on, in a warm sandbox as in a fresh
    /// runtime: a call well inside it succeeds and one well beyond it runs out, in both.
    #[test]
    fn the_memory_budget_means_the_same_warm_and_fresh() -> Result<(), Failure> {
        let program = instances()?;
        let limits = ContractLimits {
            memory_bytes: 2 * 1024 * 1024,
            ticks: 100_000,
            ..DEFAULT_LIMITS
        };
        for (n, expected) in [(5_000, "ok 5000"), (200_000, "limit memory")] {
            for _ in 0..3 {
                assert_eq!(invoke(&program, &limits, "grow", n, false), expected);
                assert_eq!(invoke(&program, &limits, "grow", n, true), expected);
                assert_eq!(invoke(&program, &limits, "light", 0, false), "ok 1");
            }
        }
        Ok(())
    }

    /// A warm sandbox serves a bounded number of calls, then a new one is made.
    #[test]
    fn a_warm_sandbox_is_replaced_after_its_calls() -> Result<(), Failure> {
        let program = instances()?;
        let served = || WARM.with(|w| w.borrow().as_ref().map(|w| w.served));
        for _ in 0..(WARM_CALLS + 3) {
            assert_eq!(invoke(&program, &DEFAULT_LIMITS, "light", 0, false), "ok 1");
        }
        assert!(served().is_some_and(|s| s <= 3 + 1), "{:?}", served());
        Ok(())
    }
}
