// The deterministic profile of SST's JavaScript contracts, a module evaluated in every
// context before any contract module is evaluated in it. It removes what could make two nodes
// compute different results (the clock, randomness, platform maths) or run code from strings,
// removes what keeps per-context state behind a setter (Error.prepareStackTrace,
// Error.stackTraceLimit), deep-freezes every object reachable from the global object and from
// the prototypes only syntax reaches (constructors, namespaces, prototypes, every built-in
// function object, accessors), so that a context can serve many calls without one call
// leaving anything for the next, and returns the host's helpers (never stored on the global
// object, so contract code cannot reach or replace them).
// It is a module (strict, compiled once per process to bytecode); the host substitutes the
// names of the Math functions to remove for __TRANSCENDENTAL__.
const TRANSCENDENTAL = __TRANSCENDENTAL__;
/** The host's helpers. */
export let host;
{
  const g = globalThis;
  const { freeze, getOwnPropertyDescriptor, getPrototypeOf, defineProperty } = Object;
  const ownKeys = Reflect.ownKeys;

  // Code from strings: `eval`, and the constructors every function reaches through its
  // prototype's `constructor` (Function, GeneratorFunction, AsyncFunction, …).
  const noCodeFromStrings = function Function() {
    throw new TypeError("code generation from strings is not allowed in SST contracts");
  };
  for (const f of [function () {}, function* () {}, async function () {}, async function* () {}]) {
    defineProperty(getPrototypeOf(f), "constructor", {
      value: noCodeFromStrings,
      writable: false,
      enumerable: false,
      configurable: false,
    });
  }
  defineProperty(noCodeFromStrings, "prototype", { value: getPrototypeOf(function () {}) });
  delete g.eval;
  delete g.Function;

  // The clock, randomness, asynchrony and garbage-collection observers.
  for (const name of ["Date", "Promise", "WeakRef", "FinalizationRegistry", "performance",
                      "Performance", "Atomics", "SharedArrayBuffer", "queueMicrotask"]) {
    delete g[name];
  }
  // Helpers implemented in bytecode that QuickJS-ng instantiates lazily (freezing would
  // compile them on every call) and that contracts do not need: Array.fromAsync (promises),
  // Iterator.zip and Iterator.zipKeyed.
  delete Array.fromAsync;
  delete g.Iterator.zip;
  delete g.Iterator.zipKeyed;
  // Per-context state behind setters of the Error constructor (V8 compatibility of
  // QuickJS-ng): a stack-trace formatter and the trace length.
  delete g.Error.prepareStackTrace;
  delete g.Error.stackTraceLimit;
  // Math.random, and the functions whose results depend on the platform's libm.
  for (const name of TRANSCENDENTAL.concat(["random"])) {
    delete Math[name];
  }

  // Deep-freeze the global object and the prototypes only syntax or built-in results reach
  // (generators, async functions, iterators and iterator helpers): every object reachable from
  // them through own properties (values and accessors) and prototypes.
  const roots = [
    g,
    getPrototypeOf(function* () {}),
    getPrototypeOf(async function () {}),
    getPrototypeOf(async function* () {}),
    getPrototypeOf([][Symbol.iterator]()),
    getPrototypeOf(new Map()[Symbol.iterator]()),
    getPrototypeOf(new Set()[Symbol.iterator]()),
    getPrototypeOf(""[Symbol.iterator]()),
    getPrototypeOf(/x/[Symbol.matchAll]("")),
    getPrototypeOf([].values().map((x) => x)),
    getPrototypeOf(g.Iterator.from({ next() { return { done: true }; } })),
  ];
  const frozen = new Set();
  const pending = roots;
  while (pending.length > 0) {
    const o = pending.pop();
    if ((typeof o !== "object" && typeof o !== "function") || o === null || frozen.has(o)) {
      continue;
    }
    frozen.add(o);
    freeze(o);
    pending.push(getPrototypeOf(o));
    for (const key of ownKeys(o)) {
      const d = getOwnPropertyDescriptor(o, key);
      pending.push(d.value, d.get, d.set);
    }
  }

  const EVENT_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
  host = freeze({
    // The `ctx` argument of a contract function and the list its `emit` appends to.
    context(info, canEmit) {
      const events = [];
      const emit = canEmit
        ? function emit(name, payload) {
            if (typeof name !== "string" || !EVENT_NAME.test(name)) {
              throw new TypeError(
                "ctx.emit: an event name is 1 to 128 letters, digits, `_`, `-` or `.`");
            }
            events.push([name, payload === undefined ? null : payload]);
          }
        : function emit() {
            throw new TypeError("ctx.emit: only methods emit business events");
          };
      const ctx = freeze({
        actor: info.actor,
        roles: freeze(info.roles),
        state: info.state,
        now: info.now,
        seed: info.seed,
        emit: freeze(emit),
      });
      return [ctx, events];
    },
    // Own property names of the module namespace that hold functions.
    functions(namespace) {
      return ownKeys(namespace).filter((k) => typeof namespace[k] === "function");
    },
  });
}
