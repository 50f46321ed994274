//! The benchmark workload: signed create events of states whose data column is about 1 KB of
//! JSON, built before timing starts, and the same JSON as text for the plain-insert baseline.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::{json, Value};
use sst_core::{canonical, ActorKey, CommitItem, ContractRef, OriginSeq, Parties, StateId};
use sst_node::{EventBuilder, Intent};

/// Target size of the data column of one state, in bytes of canonical JSON.
pub(crate) const DOC_BYTES: usize = 1024;

/// Prepared items and their data documents.
pub(crate) struct Workload {
    /// One create event + version-1 state per item.
    pub(crate) items: Vec<CommitItem>,
    /// The data column of each state, as JSON text.
    pub(crate) docs: Vec<String>,
    /// Size of one document.
    pub(crate) doc_bytes: usize,
}

fn sections(i: usize, filler: &str) -> BTreeMap<String, Value> {
    BTreeMap::from([
        (
            "common".to_owned(),
            json!({"address": format!("{i} Rue des Lilas, Lyon"), "rooms": 1 + i % 7,
                   "tags": ["flat", "balcony"], "notes": filler}),
        ),
        (
            "price".to_owned(),
            json!({"amount": 100_000 + i, "currency": "EUR"}),
        ),
        (
            "inspection".to_owned(),
            json!({"radon": (i % 80) as f64 / 10.0, "inspector": "Inès Ørsted", "passed": i % 3 != 0}),
        ),
    ])
}

/// The parties of every benchmark state.
fn parties() -> Parties {
    Parties::default()
        .with("buyer", "bank/bob")
        .with("seller", "bench/alice")
        .with("inspector", "insp/ines")
        .with("regulator", "gov/greta")
}

/// `n` fresh states (origin sequences continue after `round * n`, so several rounds can
/// share one store), built and signed with the node library's public [`EventBuilder`].
pub(crate) fn states(n: usize, round: u64) -> anyhow::Result<Workload> {
    let key = ActorKey::from_seed([7u8; 32]);
    let builder = EventBuilder::new("bench", "bench/alice", &key);
    let contract = ContractRef::new("real-estate-deal", 1);
    let base = canonical::encoded_len(&Value::Object(sections(0, "").into_iter().collect()));
    let filler = "x".repeat(DOC_BYTES.saturating_sub(base));
    let mut items = Vec::with_capacity(n);
    let mut docs = Vec::with_capacity(n);
    for i in 0..n {
        let id = StateId(format!("bench-{round}-{i:07}"));
        let seq = round * n as u64 + i as u64 + 1;
        let intent = Intent::create(id, contract.clone(), parties(), sections(i, &filler));
        let item = builder
            .build(OriginSeq(seq), &intent, None)?
            .applied(None)
            .context("a create builds an applied item")?;
        let state = item.state.as_ref().context("create without state")?;
        docs.push(serde_json::to_string(&state.data())?);
        items.push(item);
    }
    let doc_bytes = docs.first().map_or(0, String::len);
    Ok(Workload {
        items,
        docs,
        doc_bytes,
    })
}
