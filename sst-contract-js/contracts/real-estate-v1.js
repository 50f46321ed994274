// The real-estate deal, version 1: `common` (every party reads; buyer and seller write),
// `price` (only buyer and seller read and write), `inspection` (every party reads; only the
// inspector writes). A regulator is a read-only observer.
export const contract = {
  name: "real-estate-deal",
  version: 1,
  sections: {
    common: { read: ["*"], write: ["buyer", "seller"] },
    price: { read: ["buyer", "seller"], write: ["buyer", "seller"] },
    inspection: { read: ["*"], write: ["inspector"] },
  },
  supersedes: [],
  limits: { ticks: 1000, memory_bytes: 33554432, stack_bytes: 262144 },
};

function positiveInt(value, what) {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new Error(`${what} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function checkSections(sections) {
  if (sections.price !== undefined) {
    if (sections.price === null || sections.price.amount === undefined) {
      throw new Error("price needs an `amount`");
    }
    positiveInt(sections.price.amount, "price.amount");
  }
  if (sections.inspection !== undefined) {
    const radon = sections.inspection === null ? undefined : sections.inspection.radon;
    if (typeof radon !== "number" || !(radon >= 0)) {
      throw new Error("inspection needs a `radon` level >= 0");
    }
  }
}

export function onCreate(sections, parties, ctx) {
  for (const role of ["buyer", "seller"]) {
    if (!(role in parties)) {
      throw new Error(`a deal needs a ${role}`);
    }
  }
  checkSections(sections);
}

export function onChange(current, changes, ctx) {
  checkSections(changes);
}

// The price stays in the `price` section: business events reach every party of the deal
// (the inspector and the regulator too), so the event names who set it, not the amount.
export function set_price(sections, args, ctx) {
  if (args === null || typeof args !== "object" || args.amount === undefined) {
    throw new Error("set_price needs `amount`");
  }
  const amount = positiveInt(args.amount, "amount");
  ctx.emit("price_set", { set_by: ctx.actor });
  return { price: { amount, currency: "USD", set_by: ctx.actor } };
}

export function record_inspection(sections, args, ctx) {
  const radon = args === null || typeof args !== "object" ? undefined : args.radon;
  if (typeof radon !== "number" || !(radon >= 0)) {
    throw new Error("record_inspection needs `radon` >= 0");
  }
  const passed = radon < 4;
  ctx.emit("inspection_recorded", { passed, inspector: ctx.actor });
  return { inspection: { radon, passed, inspector: ctx.actor } };
}
