// The deterministic profile of SST's JavaScript contracts, a module evaluated in every
// fresh context before the contract module is evaluated. It removes what could make two nodes
// compute different results (the clock, randomness, platform maths) or run code from strings,
// freezes the intrinsics (the global object, its constructors and namespaces and their
// prototypes; not each built-in function object), and returns the host's helpers
// (never stored on the global object, so contract code cannot reach or replace them).
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
  // Math.random, and the functions whose results depend on the platform's libm.
  for (const name of TRANSCENDENTAL.concat(["random"])) {
    delete Math[name];
  }

  // Freeze the global object, every constructor and namespace object on it (Object, Array,
  // Math, JSON, Reflect, …) with its prototype, the prototypes only syntax reaches (iterators,
  // generators, async functions) and their prototype chains.
  const roots = [
    g,
    getPrototypeOf(function* () {}),
    getPrototypeOf(function* () {}).prototype,
    getPrototypeOf(async function () {}),
    getPrototypeOf(async function* () {}),
    getPrototypeOf(async function* () {}).prototype,
    getPrototypeOf([][Symbol.iterator]()),
    getPrototypeOf(new Map()[Symbol.iterator]()),
    getPrototypeOf(new Set()[Symbol.iterator]()),
    getPrototypeOf(""[Symbol.iterator]()),
    getPrototypeOf(/x/[Symbol.matchAll]("")),
  ];
  for (const key of ownKeys(g)) {
    const v = getOwnPropertyDescriptor(g, key).value;
    if ((typeof v === "object" && v !== null) || typeof v === "function") {
      roots.push(v);
      if (typeof v === "function" && v.prototype) {
        roots.push(v.prototype);
      }
    }
  }
  const frozen = new Set();
  for (let o of roots) {
    while (o !== null && !frozen.has(o)) {
      frozen.add(o);
      freeze(o);
      o = getPrototypeOf(o);
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
