// A request for quotes: the requester publishes a `request`; suppliers append
// [submitter, price, timestamp] tuples to the `quotes` array through `submit_quote`.
// Suppliers may write quotes but not read them (no supplier sees a competitor's price): the
// home node, which holds the array, appends on their behalf.
export const contract = {
  name: "rfq",
  version: 1,
  sections: {
    request: { read: ["*"], write: ["requester"] },
    quotes: { read: ["requester", "auditor"], write: ["supplier", "requester"] },
  },
  supersedes: [],
  limits: { ticks: 1000, memory_bytes: 33554432, stack_bytes: 262144 },
};

export function onCreate(sections, parties, ctx) {
  if (!("requester" in parties)) {
    throw new Error("an RFQ needs a requester");
  }
  const quotes = sections.quotes;
  if (quotes !== undefined && !(Array.isArray(quotes) && quotes.length === 0)) {
    throw new Error("an RFQ starts with no quotes");
  }
}

export function onChange(current, changes, ctx) {
  if ("quotes" in changes) {
    throw new Error("quotes change only through submit_quote");
  }
}

function status(sections) {
  const request = sections.request;
  const s = request !== null && typeof request === "object" ? request.status : undefined;
  return typeof s === "string" ? s : "open";
}

// Every party (each supplier too) receives business events: the event says that a quote came
// in, never who quoted or at which price.
export function submit_quote(sections, args, ctx) {
  if (!ctx.roles.includes("supplier")) {
    throw new Error("only suppliers quote");
  }
  if (status(sections) !== "open") {
    throw new Error("the RFQ is closed");
  }
  const price = args !== null && typeof args === "object" ? args.price : undefined;
  if (!Number.isSafeInteger(price) || price <= 0) {
    throw new Error("`price` must be a positive integer");
  }
  const current = sections.quotes;
  if (current !== undefined && !Array.isArray(current)) {
    throw new Error(`quotes is not an array: ${JSON.stringify(current)}`);
  }
  const quotes = (current || []).concat([[ctx.actor, price, ctx.now]]);
  ctx.emit("quote_submitted", null);
  return { quotes };
}

export function close(sections, args, ctx) {
  const request = sections.request === undefined ? {} : sections.request;
  const closed = request !== null && typeof request === "object" && !Array.isArray(request)
    ? { ...request, status: "closed" }
    : request;
  ctx.emit("rfq_closed", { closed_by: ctx.actor });
  return { request: closed };
}
