// A payment settlement: the payer instructs a payment to the payee, the payer's bank
// confirms it (funds reserved), the payee's bank settles it. `instruction` (amount in minor
// units, currency, reference) is read by every party and written by the payer; `status`
// (stage, who moved it) is read by every party and moves only through the methods.
//
// The contract chooses the `endorsed` protocol: a change is applied only once the nodes of
// both banks have endorsed it (each re-runs the change and signs the outcome, and may refuse
// it, e.g. an amount above its own limit), within 5 s. A real-estate deal on the same nodes
// keeps the home-node protocol.
export const contract = {
  name: "settlement",
  version: 1,
  sections: {
    instruction: { read: ["*"], write: ["payer"] },
    status: { read: ["*"], write: ["payer", "payer_bank", "payee_bank"] },
  },
  supersedes: [],
  limits: { ticks: 1000, memory_bytes: 33554432, stack_bytes: 262144 },
  sync: {
    protocol: "endorsed",
    policy: { kind: "roles", roles: ["payer_bank", "payee_bank"] },
    timeout_ms: 5000,
  },
};

const PARTIES = ["payer", "payee", "payer_bank", "payee_bank"];

function checkInstruction(instruction) {
  if (instruction === null || typeof instruction !== "object" || Array.isArray(instruction)) {
    throw new Error("instruction must be an object { amount, currency, reference }");
  }
  const { amount, currency, reference } = instruction;
  if (!Number.isSafeInteger(amount) || amount <= 0) {
    throw new Error(
      `instruction.amount must be a positive integer (minor units), got ${JSON.stringify(amount)}`,
    );
  }
  if (typeof currency !== "string" || !/^[A-Z]{3}$/.test(currency)) {
    throw new Error(`instruction.currency must be an ISO 4217 code, got ${JSON.stringify(currency)}`);
  }
  if (typeof reference !== "string" || reference.length === 0 || reference.length > 140) {
    throw new Error("instruction.reference must be a string of 1 to 140 characters");
  }
  return { amount, currency, reference };
}

function stage(sections) {
  const status = sections.status;
  return status !== null && typeof status === "object" && typeof status.stage === "string"
    ? status.stage
    : "draft";
}

export function onCreate(sections, parties, ctx) {
  for (const role of PARTIES) {
    if (!(role in parties)) {
      throw new Error(`a settlement needs a ${role}`);
    }
  }
  if (sections.instruction !== undefined) {
    checkInstruction(sections.instruction);
  }
  if (sections.status !== undefined) {
    throw new Error("status moves only through instruct, confirm and settle");
  }
}

export function onChange(current, changes, ctx) {
  if ("status" in changes) {
    throw new Error("status moves only through instruct, confirm and settle");
  }
  if ("instruction" in changes) {
    if (stage(current) !== "draft") {
      throw new Error(`the instruction is frozen once ${stage(current)}`);
    }
    checkInstruction(changes.instruction);
  }
}

// The payer (re)states what to pay; allowed until the payer's bank confirms.
export function instruct(sections, args, ctx) {
  if (!ctx.roles.includes("payer")) {
    throw new Error("only the payer instructs");
  }
  const current = stage(sections);
  if (current !== "draft" && current !== "instructed") {
    throw new Error(`cannot instruct a settlement that is ${current}`);
  }
  const instruction = checkInstruction(args);
  ctx.emit("settlement_instructed", { reference: instruction.reference });
  return { instruction, status: { stage: "instructed", by: ctx.actor } };
}

// The payer's bank confirms the funds are reserved.
export function confirm(sections, args, ctx) {
  if (!ctx.roles.includes("payer_bank")) {
    throw new Error("only the payer's bank confirms");
  }
  if (stage(sections) !== "instructed") {
    throw new Error(`cannot confirm a settlement that is ${stage(sections)}`);
  }
  ctx.emit("settlement_confirmed", { by: ctx.actor });
  return { status: { stage: "confirmed", by: ctx.actor } };
}

// The payee's bank credits the payee: the settlement is final.
export function settle(sections, args, ctx) {
  if (!ctx.roles.includes("payee_bank")) {
    throw new Error("only the payee's bank settles");
  }
  if (stage(sections) !== "confirmed") {
    throw new Error(`cannot settle a settlement that is ${stage(sections)}`);
  }
  const { amount, currency, reference } = checkInstruction(sections.instruction);
  ctx.emit("settled", { amount, currency, reference, by: ctx.actor });
  return { status: { stage: "settled", by: ctx.actor } };
}
