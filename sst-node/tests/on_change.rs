//! `Contract::on_change_reads_current`: a contract that judges a change by the changed
//! sections alone is handed an empty `current` (no view of the other sections is built for
//! it), one that reads it gets every section this node
//! can read; the change applies the same either way. The changed values reach the contract
//! shared with the intent that carried them, not copied.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use anyhow::ensure;
use common::{values, who, Cluster};
use serde_json::json;
use sst_core::{ContractPolicy, ContractRef, MemoryStore, Parties, SectionPolicy, StateId, Store};
use sst_node::{
    Call, Contract, ContractError, ContractRegistry, InProcessNetwork, Intent, Sections,
};

/// A contract that records the section names of the `current` each `on_change` receives.
struct Watched {
    name: &'static str,
    source: &'static str,
    reads_current: bool,
    seen: Arc<Mutex<Vec<BTreeSet<String>>>>,
    /// Where each changed `price` value handed to `on_change` lives (its address).
    prices_at: Arc<Mutex<Vec<usize>>>,
}

impl Contract for Watched {
    fn contract(&self) -> ContractRef {
        ContractRef::new(self.name, 1)
    }
    fn policy(&self) -> ContractPolicy {
        ContractPolicy::default()
            .section("common", SectionPolicy::new(["*"], ["seller"]))
            .section("price", SectionPolicy::new(["seller"], ["seller"]))
    }
    fn source(&self) -> &str {
        self.source
    }
    fn on_change_reads_current(&self) -> bool {
        self.reads_current
    }
    fn on_change(
        &self,
        _call: &Call<'_>,
        current: &Sections,
        changes: &Sections,
    ) -> Result<(), ContractError> {
        if changes.is_empty() {
            return Err(ContractError::new("a change changes something"));
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(current.keys().cloned().collect());
        }
        if let (Some(price), Ok(mut at)) = (changes.get_shared("price"), self.prices_at.lock()) {
            at.push(Arc::as_ptr(price) as usize);
        }
        Ok(())
    }
}

#[tokio::test]
async fn only_a_contract_that_reads_the_current_sections_is_handed_a_copy() -> anyhow::Result<()> {
    let reads = Arc::new(Mutex::new(Vec::new()));
    let blind = Arc::new(Mutex::new(Vec::new()));
    let registry = ContractRegistry::new()
        .with(Watched {
            name: "watched-reads",
            source: "// reads current\n",
            reads_current: true,
            seen: reads.clone(),
            prices_at: Arc::default(),
        })
        .with(Watched {
            name: "watched-blind",
            source: "// judges the changes alone\n",
            reads_current: false,
            seen: blind.clone(),
            prices_at: Arc::default(),
        });
    let contracts = [
        ContractRef::new("watched-reads", 1),
        ContractRef::new("watched-blind", 1),
    ];
    let net = InProcessNetwork::new();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let node = Cluster::start_node(&net, "seller", store, registry, &contracts).await?;
    let seller = who("seller");
    let parties = Parties::default().with("seller", seller.as_str());
    for contract in &contracts {
        let id = format!("{}-1", contract.name);
        let v = node
            .submit(
                &seller,
                Intent::create(
                    id.as_str(),
                    contract.clone(),
                    parties.clone(),
                    values([
                        ("common", json!({"address": "1 Elm St"})),
                        ("price", json!({"amount": 1})),
                    ]),
                ),
            )
            .await?;
        ensure!(v.is_applied(), "create {id}: {v:?}");
        let v = node
            .submit(
                &seller,
                Intent::change(
                    StateId::from(id.as_str()),
                    values([("price", json!({"amount": 2}))]),
                ),
            )
            .await?;
        ensure!(v.is_applied(), "change of {id}: {v:?}");
        let state = node.state(&StateId::from(id.as_str())).await?;
        ensure!(
            state.is_some_and(|s| s.version == 2 && s.data()["price"] == json!({"amount": 2})),
            "{id} does not hold the change"
        );
    }
    let both: BTreeSet<String> = ["common", "price"].map(String::from).into();
    let reads = reads.lock().map(|s| s.clone()).unwrap_or_default();
    let blind = blind.lock().map(|s| s.clone()).unwrap_or_default();
    ensure!(reads == vec![both], "the reading contract saw {reads:?}");
    ensure!(
        blind == vec![BTreeSet::new()],
        "the contract that judges the changes alone was handed {blind:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_changed_value_reaches_the_contract_shared_with_the_intent_not_copied(
) -> anyhow::Result<()> {
    let prices_at = Arc::new(Mutex::new(Vec::new()));
    let registry = ContractRegistry::new().with(Watched {
        name: "watched-shared",
        source: "// records where the changed values live\n",
        reads_current: false,
        seen: Arc::default(),
        prices_at: prices_at.clone(),
    });
    let contract = ContractRef::new("watched-shared", 1);
    let net = InProcessNetwork::new();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let node = Cluster::start_node(
        &net,
        "seller",
        store,
        registry,
        std::slice::from_ref(&contract),
    )
    .await?;
    let seller = who("seller");
    let parties = Parties::default().with("seller", seller.as_str());
    let create = Intent::create(
        "shared-1",
        contract,
        parties,
        values([("common", json!({"address": "1 Elm St"}))]),
    );
    ensure!(node.submit(&seller, create).await?.is_applied());
    // The test keeps the value: it lives at one address for the whole change.
    let price = Arc::new(json!({"amount": 2, "series": [1, 2, 3]}));
    let mut changes = Sections::new();
    changes.insert("price".to_owned(), Arc::clone(&price));
    let v = node
        .submit(&seller, Intent::change("shared-1", changes))
        .await?;
    ensure!(v.is_applied(), "change: {v:?}");
    let at = prices_at.lock().map(|a| a.clone()).unwrap_or_default();
    ensure!(
        at == vec![Arc::as_ptr(&price) as usize],
        "the contract was handed a copy of the changed value (at {at:?}, intent's at {:p})",
        Arc::as_ptr(&price)
    );
    let state = node.state(&StateId::from("shared-1")).await?;
    ensure!(
        state.is_some_and(|s| s.version == 2 && s.data()["price"] == *price),
        "the change is not held"
    );
    Ok(())
}
