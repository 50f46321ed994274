//! The peer collections and their indexes. Concurrency comes from the unique indexes:
//! `(id, version)` of the history, the event `_id`, and `(origin_node, origin_seq)`.

use mongodb::bson::{doc, Document};

use crate::config::CollectionNames;

/// One index `migrate` creates.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    /// Collection it belongs to.
    pub collection: String,
    /// Index name.
    pub name: &'static str,
    /// Key pattern.
    pub keys: Document,
    /// Whether it is unique.
    pub unique: bool,
}

/// Every index of the peer collections (`_id` indexes exist anyway).
pub fn indexes(c: &CollectionNames) -> Vec<IndexSpec> {
    let spec = |collection: &str, name, keys, unique| IndexSpec {
        collection: collection.to_owned(),
        name,
        keys,
        unique,
    };
    vec![
        spec(
            &c.history,
            "sst_state_version",
            doc! { "id": 1, "version": 1 },
            true,
        ),
        spec(
            &c.history,
            "sst_history_last_event",
            doc! { "last_event": 1 },
            false,
        ),
        spec(
            &c.event,
            "sst_event_origin",
            doc! { "origin_node": 1, "origin_seq": 1 },
            true,
        ),
        spec(&c.event, "sst_event_pos", doc! { "pos": 1 }, true),
        spec(
            &c.event,
            "sst_event_state",
            doc! { "state_id": 1, "pos": 1 },
            false,
        ),
        spec(&c.event, "sst_event_batch", doc! { "batch": 1 }, false),
        spec(
            &c.contract,
            "sst_contract_ref",
            doc! { "name": 1, "version": 1 },
            true,
        ),
    ]
}

/// Every collection `migrate` creates.
pub fn collections(c: &CollectionNames) -> [&str; 6] {
    [
        &c.state,
        &c.history,
        &c.event,
        &c.actor,
        &c.contract,
        &c.meta,
    ]
}

/// `_id` of the counter document holding the last event position in the meta collection.
pub const EVENT_POSITION_COUNTER: &str = "event_position";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniqueness_comes_from_the_schema() {
        let c = CollectionNames::default();
        let unique: Vec<_> = indexes(&c)
            .into_iter()
            .filter(|i| i.unique)
            .map(|i| (i.collection, i.keys))
            .collect();
        assert!(unique.contains(&(
            "sst_state_history".to_owned(),
            doc! { "id": 1, "version": 1 }
        )));
        assert!(unique.contains(&(
            "sst_event".to_owned(),
            doc! { "origin_node": 1, "origin_seq": 1 }
        )));
        assert!(unique.contains(&("sst_event".to_owned(), doc! { "pos": 1 })));
    }

    #[test]
    fn index_names_are_unique_per_collection() {
        let c = CollectionNames::with_prefix("p_");
        let mut seen = std::collections::BTreeSet::new();
        for i in indexes(&c) {
            assert!(i.collection.starts_with("p_"));
            assert!(seen.insert((i.collection, i.name)));
        }
    }
}
