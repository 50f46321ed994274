//! # sst-contract-js: JavaScript contracts for SST
//!
//! The `javascript` [`ContractEngine`](sst_node::ContractEngine): a contract version is one
//! ES module, deployed as data (its source text and the descriptor read from it), run by
//! QuickJS-ng (through rquickjs) inside the node's process.
//!
//! ```js
//! export const contract = { name: "real-estate-deal", version: 1,
//!   sections: { common: { read: ["*"], write: ["buyer", "seller"] } },
//!   supersedes: [], limits: { ticks: 2000, memory_bytes: 67108864, stack_bytes: 262144 },
//!   // optional, home when absent; or { kind: "all" } / { kind: "k_of_n", k: 2 }:
//!   sync: { protocol: "endorsed", policy: { kind: "roles", roles: ["seller"] }, timeout_ms: 5000 } };
//! export function onCreate(sections, parties, ctx) {}   // optional; throw to refuse
//! export function onChange(current, changes, ctx) {}    // optional; throw to refuse
//! export function set_price(sections, args, ctx) {      // a method
//!   ctx.emit("price_set", { by: ctx.actor });
//!   return { price: { amount: args.amount } };          // the changed sections
//! }
//! export function migrate(sections, from, ctx) {}       // optional: changes from `from`
//! ```
//!
//! ## Deterministic profile
//! - **Nothing survives a call**: every hook or method call runs on a fresh instance of the
//!   contract (its module body run anew as a function body, so module-level variables start
//!   over), in a context whose every built-in object is deep-frozen, so a call cannot leave
//!   anything for the next. A context (set up once per thread and reused for 256 calls) costs
//!   several times a call to make; a call that runs out of a budget is decided again in a
//!   fresh runtime (see budgets). `import`, and exports other than declarations
//!   (`export { … }`, `export default`), are refused at deploy.
//! - **Only the intrinsics a contract needs**: the base objects, JSON, Map/Set/WeakMap/WeakSet
//!   and RegExp. No `Date`, `Promise`, `Proxy`, typed arrays, `WeakRef`,
//!   `FinalizationRegistry` or `performance`; `eval` and the `Function` constructors (also as
//!   reached through `(function(){}).constructor`) are removed; `Math.random` is removed; every
//!   object reachable from the global object (every built-in function included) is frozen, and
//!   `Error.prepareStackTrace` / `Error.stackTraceLimit` (per-context settings) are removed. The clock and randomness come from the
//!   signed event: `ctx.now` is its timestamp (ms), `ctx.seed` hex of a hash of its id.
//! - **Platform maths is refused**: the transcendental `Math` functions (`sin`, `log`, `pow`,
//!   …) and the `**` operator are computed by the platform's C library, whose last bits may
//!   differ between machines. They are removed from the sandbox, and a source naming them is
//!   refused at deploy time with a [`LoadError`](sst_node::LoadError) listing each use
//!   (`Math.sqrt`, which IEEE 754 rounds exactly, and the other exact functions remain).
//!   Providing deterministic software implementations instead was possible but would be a
//!   maths library to maintain and audit; contracts over money and quantities need integers.
//! - **Budgets** from the descriptor's limits: QuickJS's memory limit, stack limit, and a tick
//!   budget counted by the interrupt handler (called every 10,000 branches or calls of
//!   bytecode, so it counts progress, not time). Running out is
//!   [`ContractError::Limit`](sst_node::ContractError) `ticks` / `memory` / `stack`; the
//!   runtime is discarded, so the next call is unaffected. Memory counts what the call
//!   allocates from its module's load on. A reused context may carry QuickJS's tick counter
//!   part-way from an earlier call, so a call there gets one tick less; any call that runs out
//!   there is run again in a fresh runtime, whose outcome is the one recorded: the same on
//!   every node.
//! - **Portable results**: returned sections and event payloads must be portable JSON (plain
//!   objects, arrays, strings, finite numbers, booleans, null); anything else is refused,
//!   naming the section and path. A thrown `Error` is
//!   [`ContractError::Rejected`](sst_node::ContractError) with its message.
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod contract;
mod engine;
mod lint;
mod manifest;
mod sandbox;

pub use contract::{seed_of, JsContract};
pub use engine::{descriptor_of, JsEngine, ENGINE_ID, QUICKJS_NG_VERSION};
pub use manifest::{
    SyncChoiceError, DEFAULT_LIMITS, MAX_ENDORSEMENT_TIMEOUT_MS, MAX_MEMORY_BYTES, MAX_STACK_BYTES,
    MAX_TICKS, MIN_ENDORSEMENT_TIMEOUT_MS, MIN_MEMORY_BYTES, MIN_STACK_BYTES,
};

/// The example contracts shipped with SST, as deployable sources (`contracts/*.js`).
pub mod sources {
    /// The real-estate deal, version 1 (`contracts/real-estate-v1.js`).
    pub const REAL_ESTATE_V1: &str = include_str!("../contracts/real-estate-v1.js");
    /// The real-estate deal, version 2, superseding version 1 with a `closing` section
    /// (`contracts/real-estate-v2.js`).
    pub const REAL_ESTATE_V2: &str = include_str!("../contracts/real-estate-v2.js");
    /// The request for quotes (`contracts/rfq.js`).
    pub const RFQ: &str = include_str!("../contracts/rfq.js");
    /// A payment settlement between a payer and a payee through their banks, on the
    /// `endorsed` protocol: a change applies only once both banks' nodes endorsed it
    /// (`contracts/settlement.js`).
    pub const SETTLEMENT: &str = include_str!("../contracts/settlement.js");
}
