//! The peer collections and their indexes. Concurrency comes from the unique indexes:
//! `(id, version)` of the history, the event `_id`, and `(origin_node, origin_seq)`; a
//! refusal is keyed by its event id (`_id`), so recording it again replaces it. A log entry's
//! `_id` is its position, so two writers that read the same head cannot both append; a
//! checkpoint is unique per `(node, pos)`.
//!
//! States use the section-version layout: the current document holds the latest version's
//! `data`, a history document per version holds its header and section seals without
//! plaintext, and each section version's plaintext is stored once in the section collection,
//! unique per `(state_id, name, hash)`. [`versions_pipeline`] joins them back into every
//! version's whole `data` document (the history view).

use mongodb::bson::{doc, Bson, Document};

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
            &c.section,
            "sst_section_key",
            doc! { "state_id": 1, "name": 1, "hash": 1 },
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
        spec(
            &c.refusal,
            "sst_refusal_state",
            doc! { "state_id": 1, "version": 1 },
            false,
        ),
        spec(&c.log, "sst_log_subject", doc! { "subject": 1 }, false),
        spec(
            &c.checkpoint,
            "sst_checkpoint_node_pos",
            doc! { "node": 1, "pos": 1 },
            true,
        ),
    ]
}

/// Every collection `migrate` creates (the history view [`CollectionNames::versions`] aside).
pub fn collections(c: &CollectionNames) -> [&str; 11] {
    [
        &c.state,
        &c.history,
        &c.section,
        &c.event,
        &c.actor,
        &c.contract,
        &c.meta,
        &c.refusal,
        &c.log,
        &c.checkpoint,
        &c.sink_cursor,
    ]
}

/// What every document SST writes into one peer collection carries: `migrate` checks one
/// document of each existing peer collection against it, so that a collection of the same
/// name that belongs to something else is refused instead of being written into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Collection name.
    pub collection: String,
    /// Fields present in every document (their values may be `null`).
    pub fields: &'static [&'static str],
    /// Whether `_id` is a string (the state, event, actor or contract id, a counter name).
    pub string_id: bool,
}

/// The fields of a current-state document (`_id` is the state id).
pub const STATE_FIELDS: &[&str] = &["contract_name", "contract_version", "version", "data"];

/// The fields of a history document (one per state version; `_id` an ObjectId).
pub const HISTORY_FIELDS: &[&str] = &[
    "id",
    "contract_name",
    "contract_version",
    "version",
    "parties",
    "seals",
    "root",
    "prev_root",
    "last_event",
    "updated_at",
];

/// The fields of a section version document.
pub const SECTION_FIELDS: &[&str] = &["state_id", "name", "hash", "value"];

/// The fields a current-state document of the first layout carries beyond [`STATE_FIELDS`]:
/// it was a copy of the latest history document (with its `batch` tag); `migrate` removes
/// them. A history document of the first layout also carries `data`, which `migrate` moves
/// into the section collection.
pub fn first_layout_state_extra() -> impl Iterator<Item = &'static str> + Clone {
    sst_core::raw::FIRST_LAYOUT_CURRENT_ONLY
        .into_iter()
        .chain(["id", "batch"])
}

const EVENT_FIELDS: &[&str] = &[
    "pos",
    "state_id",
    "kind",
    "contract_name",
    "contract_version",
    "actor",
    "origin_node",
    "origin_seq",
    "outcome",
    "signed",
    "disclosures",
    "receipt",
    // `business_events` and `endorsements` are not required: documents written before they
    // existed lack them and read as events without business events or endorsements.
];

impl Shape {
    /// What makes `doc` unlike SST's documents of this collection, if anything.
    pub fn mismatch(&self, doc: &Document) -> Option<String> {
        let id = doc
            .get("_id")
            .map_or_else(|| "?".to_owned(), ToString::to_string);
        if let Some(missing) = self.fields.iter().find(|f| !doc.contains_key(**f)) {
            let present: Vec<&str> = doc.keys().map(String::as_str).collect();
            return Some(format!(
                "document {id} has no `{missing}` field (it has: {}); choose other collection \
                 names (MongoConfig::with_prefix) or move that collection away",
                present.join(", ")
            ));
        }
        if self.string_id && !matches!(doc.get("_id"), Some(Bson::String(_))) {
            return Some(format!(
                "document _id {id} is not a string (SST keys these documents by their id)"
            ));
        }
        None
    }
}

/// The fields of a refusal document (`_id` is the refused event's id).
pub const REFUSAL_FIELDS: &[&str] = &[
    "state_id",
    "version",
    "from_node",
    "reason",
    "reason_detail",
    "at",
];

/// The fields of a log entry (`_id` is its position, an `Int64`).
pub const LOG_FIELDS: &[&str] = &["kind", "subject", "record", "prev", "hash"];

/// The fields of a checkpoint document (`signature` is the signature's JSON string form).
pub const CHECKPOINT_FIELDS: &[&str] = &["node", "pos", "head", "at", "signature"];

/// The shape of every peer collection.
pub fn shapes(c: &CollectionNames) -> [Shape; 11] {
    let shape = |collection: &str, fields, string_id| Shape {
        collection: collection.to_owned(),
        fields,
        string_id,
    };
    [
        shape(&c.state, STATE_FIELDS, true),
        shape(&c.history, HISTORY_FIELDS, false),
        shape(&c.section, SECTION_FIELDS, false),
        shape(&c.event, EVENT_FIELDS, true),
        shape(&c.actor, &["id", "node", "public_key", "status"], true),
        shape(
            &c.contract,
            &["name", "version", "identity", "record"],
            true,
        ),
        shape(&c.meta, &["value"], true),
        shape(&c.refusal, REFUSAL_FIELDS, true),
        shape(&c.log, LOG_FIELDS, false),
        shape(&c.checkpoint, CHECKPOINT_FIELDS, false),
        shape(&c.sink_cursor, &["pos"], true),
    ]
}

/// The history view's aggregation on the history collection: every state version with `id`,
/// `version`, `contract_name`, `contract_version`, `root`, `updated_at` and `data`, the
/// `{name: value}` document of the sections it discloses (its seals with a salt, each joined
/// to its section version by `(state_id, name, hash)`; `{}` when none). `migrate` creates
/// the view [`CollectionNames::versions`] on it where the server supports views; elsewhere
/// run it yourself, e.g. in mongosh
/// `db.sst_state_history.aggregate([...pipeline, {$match: {"data.inspection.radon": {$gt: 4}}}])`.
/// A section version missing from the section collection shows as `null`.
pub fn versions_pipeline(c: &CollectionNames) -> Vec<Document> {
    let disclosed = doc! {
        "$filter": {
            "input": { "$objectToArray": "$seals" },
            "as": "s",
            "cond": { "$ne": [{ "$ifNull": ["$$s.v.salt", Bson::Null] }, Bson::Null] },
        }
    };
    let section = doc! {
        "$arrayElemAt": [{
            "$filter": {
                "input": "$sections",
                "as": "x",
                "cond": { "$and": [
                    { "$eq": ["$$x.name", "$$s.k"] },
                    { "$eq": ["$$x.hash", "$$s.v.hash"] },
                ] },
            }
        }, 0]
    };
    vec![
        doc! { "$lookup": {
            "from": c.section.as_str(),
            "localField": "id",
            "foreignField": "state_id",
            "as": "sections",
        } },
        doc! { "$project": {
            "_id": 0,
            "id": 1,
            "version": 1,
            "contract_name": 1,
            "contract_version": 1,
            "root": 1,
            "updated_at": 1,
            "data": { "$arrayToObject": { "$map": {
                "input": disclosed,
                "as": "s",
                "in": {
                    "k": "$$s.k",
                    "v": { "$let": {
                        "vars": { "m": section },
                        "in": { "$ifNull": ["$$m.value", Bson::Null] },
                    } },
                },
            } } },
        } },
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
        assert!(unique.contains(&("sst_checkpoint".to_owned(), doc! { "node": 1, "pos": 1 })));
    }

    #[test]
    fn documents_not_shaped_like_sst_ones_are_named() {
        let c = CollectionNames::with_prefix("p_");
        let [state, history, _, event, ..] = shapes(&c);
        assert_eq!(state.collection, "p_sst_state");
        let foreign = doc! { "_id": 1, "note": "x" };
        let detail = state.mismatch(&foreign).expect("foreign");
        assert!(
            detail.contains("document 1 has no `contract_name` field"),
            "{detail}"
        );
        assert!(detail.contains("(it has: _id, note)"), "{detail}");
        let mut ours = doc! { "_id": "deal-1" };
        for f in STATE_FIELDS {
            ours.insert(*f, Bson::Null);
        }
        assert_eq!(state.mismatch(&ours), None);
        ours.insert("_id", 7);
        let detail = state.mismatch(&ours).expect("numeric _id");
        assert!(detail.contains("_id 7 is not a string"), "{detail}");
        assert!(history
            .mismatch(&ours)
            .is_some_and(|d| d.contains("no `id` field")));
        for f in HISTORY_FIELDS {
            ours.insert(*f, Bson::Null);
        }
        assert_eq!(history.mismatch(&ours), None, "history _ids are ObjectIds");
        assert!(event.mismatch(&ours).is_some_and(|d| d.contains("`pos`")));
    }

    #[test]
    fn refusals_are_keyed_by_event_and_listed_by_state_and_version() {
        let c = CollectionNames::with_prefix("p_");
        assert!(collections(&c).contains(&"p_sst_refusal"));
        let index = indexes(&c)
            .into_iter()
            .find(|i| i.collection == "p_sst_refusal")
            .expect("refusal index");
        assert_eq!(index.keys, doc! { "state_id": 1, "version": 1 });
        assert!(!index.unique, "uniqueness per event comes from _id");
        let shape = shapes(&c)
            .into_iter()
            .find(|s| s.collection == "p_sst_refusal")
            .expect("refusal shape");
        let mut ours = doc! { "_id": "ab12" };
        for f in REFUSAL_FIELDS {
            ours.insert(*f, Bson::Null);
        }
        assert_eq!(shape.mismatch(&ours), None);
        ours.remove("reason_detail");
        assert!(shape
            .mismatch(&ours)
            .is_some_and(|d| d.contains("no `reason_detail` field")));
    }

    #[test]
    fn an_old_layout_event_without_receipt_and_foreign_log_documents_are_refused() {
        let c = CollectionNames::default();
        let [_, _, _, event, .., log, checkpoint, _] = shapes(&c);
        let mut old = doc! { "_id": "e1" };
        for f in EVENT_FIELDS.iter().filter(|f| **f != "receipt") {
            old.insert(*f, Bson::Null);
        }
        assert!(event
            .mismatch(&old)
            .is_some_and(|d| d.contains("no `receipt` field")));
        old.insert("receipt", Bson::Null);
        assert_eq!(event.mismatch(&old), None);
        assert_eq!(log.collection, "sst_log");
        assert!(log.mismatch(&doc! { "_id": 1_i64, "kind": "x" }).is_some());
        assert_eq!(checkpoint.collection, "sst_checkpoint");
        assert!(checkpoint.mismatch(&doc! { "node": "n" }).is_some());
    }

    #[test]
    fn a_first_layout_document_passes_the_shape_check() {
        let c = CollectionNames::default();
        let [state, history, ..] = shapes(&c);
        let mut first = doc! { "_id": "deal-1" };
        for f in STATE_FIELDS
            .iter()
            .copied()
            .chain(first_layout_state_extra())
        {
            first.insert(f, Bson::Null);
        }
        assert_eq!(state.mismatch(&first), None);
        first.insert("_id", mongodb::bson::oid::ObjectId::new());
        assert_eq!(history.mismatch(&first), None);
    }

    #[test]
    fn section_versions_are_unique_per_state_name_and_hash() {
        let c = CollectionNames::with_prefix("p_");
        let index = indexes(&c)
            .into_iter()
            .find(|i| i.collection == "p_sst_section")
            .expect("section index");
        assert!(index.unique);
        assert_eq!(index.keys, doc! { "state_id": 1, "name": 1, "hash": 1 });
        let lookup = versions_pipeline(&c)[0].clone();
        assert_eq!(
            lookup
                .get_document("$lookup")
                .and_then(|l| l.get_str("from")),
            Ok("p_sst_section")
        );
    }

    #[test]
    fn every_collection_has_a_shape() {
        let c = CollectionNames::default();
        let shaped: Vec<String> = shapes(&c).into_iter().map(|s| s.collection).collect();
        assert_eq!(shaped, collections(&c).map(str::to_owned));
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
