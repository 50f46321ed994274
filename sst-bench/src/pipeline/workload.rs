//! The pipeline benchmark's workload, shared by every measurement so that they compare the
//! same work: [`STATES`] real-estate deals homed at the node, then change intents spread
//! over them, each rewriting the `common` section like `sst bench` does; the plain insert
//! writes the state JSON each change produces.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sst_core::{ActorId, ContractRef, Parties, StateId};
use sst_node::Intent;

/// How many states the changes are spread over.
pub(crate) const STATES: usize = 16;
/// The home node's id.
pub(crate) const HOME: &str = "home";
/// The actor who creates and changes every state (a seller, homed at [`HOME`]).
pub(crate) const SELLER: &str = "seller/sue";
/// The buyer of every deal.
pub(crate) const BUYER: &str = "buyer/bob";
/// The inspector of every deal.
pub(crate) const INSPECTOR: &str = "inspector/ina";
/// Key seeds of the three actors (fixed: the workload is the same in every run).
pub(crate) const SELLER_SEED: [u8; 32] = [11; 32];
/// See [`SELLER_SEED`].
pub(crate) const BUYER_SEED: [u8; 32] = [12; 32];
/// See [`SELLER_SEED`].
pub(crate) const INSPECTOR_SEED: [u8; 32] = [13; 32];

/// The contract of every state: the native real-estate deal.
pub(crate) fn contract() -> ContractRef {
    ContractRef::new(sst_node::contracts::REAL_ESTATE, 1)
}

/// The parties of every deal.
pub(crate) fn parties() -> Parties {
    Parties::default()
        .with("seller", SELLER)
        .with("buyer", BUYER)
        .with("inspector", INSPECTOR)
}

/// The seller's actor id.
pub(crate) fn seller() -> ActorId {
    ActorId::from(SELLER)
}

/// The id of state `k`.
pub(crate) fn state_id(k: usize) -> StateId {
    StateId(format!("pipeline-{k:02}"))
}

/// The `common` section at `revision` (the body of `sst bench`'s change).
fn common(revision: usize) -> Value {
    json!({"address": "12 Harbour Lane", "revision": revision, "notes": "x".repeat(200)})
}

/// The `price` section of state `k` (written once, at the create).
fn price(k: usize) -> Value {
    json!({"amount": 250_000 + k, "currency": "EUR"})
}

/// The create intent of state `k` (revision 0).
pub(crate) fn create(k: usize) -> Intent {
    Intent::create(
        state_id(k),
        contract(),
        parties(),
        BTreeMap::from([
            ("common".to_owned(), common(0)),
            ("price".to_owned(), price(k)),
        ]),
    )
}

/// Change `j` (from 0): state `j % STATES` gets `common` at revision `j + 1`.
pub(crate) fn change(j: usize) -> Intent {
    Intent::change(
        state_id(j % STATES),
        BTreeMap::from([("common".to_owned(), common(j + 1))]),
    )
}

/// The state data (every section's value) after change `j`.
pub(crate) fn data_after(j: usize) -> Value {
    json!({"common": common(j + 1), "price": price(j % STATES)})
}

/// How many of `events` changes touch state `k`.
pub(crate) fn changes_of(k: usize, events: usize) -> usize {
    events / STATES + usize::from(k < events % STATES)
}

/// Whether `data` is what one of `events` changes left on state `k` (changes in flight
/// together are applied in the order they reach the node, so any of them may be the last).
pub(crate) fn is_data_of_a_change(k: usize, events: usize, data: &Value) -> bool {
    data["common"]["revision"]
        .as_u64()
        .and_then(|r| usize::try_from(r).ok())
        .and_then(|r| r.checked_sub(1))
        .is_some_and(|j| j < events && j % STATES == k && *data == data_after(j))
}

/// The state JSON of each of `events` changes, as text: what the plain insert writes.
pub(crate) fn docs(events: usize) -> anyhow::Result<Vec<String>> {
    (0..events)
        .map(|j| Ok(serde_json::to_string(&data_after(j))?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_go_round_robin_over_the_states() {
        let Intent::Change { state_id: s, .. } = change(STATES + 3) else {
            panic!("not a change");
        };
        assert_eq!(s, state_id(3));
        assert_eq!(changes_of(3, 2 * STATES + 4), 3);
        assert_eq!(changes_of(4, 2 * STATES + 4), 2);
        assert_eq!(
            (0..STATES).map(|k| changes_of(k, 1000)).sum::<usize>(),
            1000
        );
    }

    #[test]
    fn only_the_data_of_one_of_the_states_changes_is_accepted() {
        assert!(is_data_of_a_change(3, 2 * STATES, &data_after(STATES + 3)));
        assert!(is_data_of_a_change(3, 2 * STATES, &data_after(3)));
        // Another state's change, a change beyond the run, a tampered price.
        assert!(!is_data_of_a_change(4, 2 * STATES, &data_after(3)));
        assert!(!is_data_of_a_change(3, STATES, &data_after(STATES + 3)));
        let mut d = data_after(3);
        d["price"]["amount"] = json!(1);
        assert!(!is_data_of_a_change(3, 2 * STATES, &d));
        assert!(!is_data_of_a_change(3, 2 * STATES, &json!({})));
    }

    #[test]
    fn one_document_per_change_holding_its_state_json() -> anyhow::Result<()> {
        let d = docs(5)?;
        assert_eq!(d.len(), 5);
        let v: Value = serde_json::from_str(&d[4])?;
        assert_eq!(v, data_after(4));
        Ok(())
    }
}
