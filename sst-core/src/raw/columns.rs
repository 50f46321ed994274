//! Engine-neutral column values shared by the database adapters: the `u64` → signed 64-bit
//! check, JSON serialisation of model values as bad-input errors, and [`EventColumns`], the
//! columns of one event row computed once from an [`EventRecord`] (the event-table
//! counterpart of [`State::to_parts`](crate::State::to_parts)). Each adapter turns these plain
//! Rust values into its engine's binds and keeps its own engine-specific checks.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::DisclosureColumn;
use crate::{
    BusinessEvent, CommitItem, Endorsement, EventRecord, Outcome, SequencingReceipt, StoreError,
};

/// A `u64` that must fit a signed 64-bit database integer; [`StoreError::InvalidInput`] at
/// `path` when it does not.
pub fn to_i64(path: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        path: path.to_owned(),
        reason: format!("{v} does not fit a signed 64-bit integer"),
    })
}

/// `v` as JSON text; [`StoreError::InvalidInput`] at `path` when it cannot be serialised.
pub fn json_text<T: Serialize + ?Sized>(path: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| not_json(path, e))
}

/// `v` as a JSON value; [`StoreError::InvalidInput`] at `path` when it cannot be serialised.
pub fn json_value<T: Serialize + ?Sized>(path: &str, v: &T) -> Result<Value, StoreError> {
    serde_json::to_value(v).map_err(|e| not_json(path, e))
}

fn not_json(path: &str, e: serde_json::Error) -> StoreError {
    StoreError::InvalidInput {
        path: path.to_owned(),
        reason: format!("cannot be serialised as JSON: {e}"),
    }
}

/// The columns of one event row (CONVENTIONS.md #1), as engine-neutral values.
#[derive(Debug, Clone, PartialEq)]
pub struct EventColumns {
    /// Event id (`<alg>:<hex>`).
    pub id: String,
    /// Target state id.
    pub state_id: String,
    /// Event kind (`create`, `change_sections`, `call_method`, …).
    pub kind: &'static str,
    /// Contract name.
    pub contract_name: String,
    /// Contract version.
    pub contract_version: u32,
    /// Signing actor id.
    pub actor: String,
    /// Node the event originated on.
    pub origin_node: String,
    /// Per-node sequence number.
    pub origin_seq: i64,
    /// `applied` or `rejected`.
    pub outcome: &'static str,
    /// Reject reason code (rejected events only).
    pub reason: Option<&'static str>,
    /// Reject reason as JSON (rejected events only).
    pub reason_detail: Option<Value>,
    /// New state version (applied events only).
    pub new_version: Option<i64>,
    /// New state root (applied events only).
    pub new_root: Option<String>,
    /// The signed event as JSON.
    pub signed: Value,
    /// The disclosures as JSON: inline, or (built by [`EventColumns::from_item`]) naming the
    /// section versions of the new state that hold them ([`DisclosureColumn`]).
    pub disclosures: Value,
    /// The sequencing node's receipt as JSON (absent when the record has none).
    pub receipt: Option<Value>,
    /// The business events the contract method emitted, as a JSON array (absent when the
    /// record has none, so the nullable column stays `NULL` for most events).
    pub business_events: Option<Value>,
    /// The participant nodes' endorsements, as a JSON array (absent when the record has none:
    /// every event of a contract on the `home` protocol, so the nullable column stays `NULL`).
    pub endorsements: Option<Value>,
}

/// The event-row columns that repeat what the signed event already says, as an adapter read
/// them back. They exist so users can query events with plain SQL; a reader checks them
/// against the signed event with [`EventColumns::check_derived`], so an edited column is an
/// integrity error, not a silent lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedEventColumns {
    /// `id` column.
    pub id: String,
    /// `state_id` column.
    pub state_id: String,
    /// `kind` column.
    pub kind: String,
    /// `contract_name` column.
    pub contract_name: String,
    /// `contract_version` column.
    pub contract_version: i64,
    /// `actor` column.
    pub actor: String,
    /// `origin_node` column.
    pub origin_node: String,
    /// `origin_seq` column.
    pub origin_seq: i64,
    /// `reason` column (the reject reason code).
    pub reason: Option<String>,
}

impl EventColumns {
    /// The columns of `rec`. Errors name their path below `at` (e.g. `items[0]`, or `""` for
    /// paths relative to the record): `{at}.event.origin_seq` and `{at}.outcome.version`
    /// beyond `i64::MAX`, and values that cannot be serialised (`{at}.outcome.reason`,
    /// `{at}.event`, `{at}.disclosures`, `{at}.receipt`, `{at}.business_events`,
    /// `{at}.endorsements`).
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] as above; nothing has been written.
    pub fn from_record(at: &str, rec: &EventRecord) -> Result<Self, StoreError> {
        Self::build(at, rec, None)
    }

    /// The columns of a validated commit item: as [`EventColumns::from_record`], except that
    /// an applied event's disclosures name the section versions of its new state instead of
    /// repeating their values ([`DisclosureColumn::of_item`]). Readers resolve them with
    /// [`DisclosureColumn::resolve`].
    ///
    /// # Errors
    /// As [`EventColumns::from_record`].
    pub fn from_item(at: &str, item: &CommitItem) -> Result<Self, StoreError> {
        Self::build(at, &item.event, Some(item))
    }

    fn build(at: &str, rec: &EventRecord, item: Option<&CommitItem>) -> Result<Self, StoreError> {
        let path = |rest: &str| {
            if at.is_empty() {
                rest.to_owned()
            } else {
                format!("{at}.{rest}")
            }
        };
        let (reason, reason_detail, new_version, new_root) = match &rec.outcome {
            Outcome::Applied { version, root } => (
                None,
                None,
                Some(to_i64(&path("outcome.version"), *version)?),
                Some(root.to_string()),
            ),
            Outcome::Rejected { reason } => (
                Some(reason.code()),
                Some(json_value(&path("outcome.reason"), reason)?),
                None,
                None,
            ),
        };
        let derived = Derived::of(rec, &path("event.origin_seq"))?;
        Ok(EventColumns {
            id: derived.id,
            state_id: derived.state_id,
            kind: derived.kind,
            contract_name: derived.contract_name,
            contract_version: derived.contract_version,
            actor: derived.actor,
            origin_node: derived.origin_node,
            origin_seq: derived.origin_seq,
            outcome: rec.outcome.kind().as_str(),
            reason,
            reason_detail,
            new_version,
            new_root,
            signed: json_value(&path("event"), &rec.signed)?,
            disclosures: match item {
                Some(item) => DisclosureColumn::of_item(at, item)?,
                None => json_value(&path("disclosures"), &rec.disclosures)?,
            },
            receipt: rec
                .receipt
                .as_ref()
                .map(|r| json_value(&path("receipt"), r))
                .transpose()?,
            business_events: if rec.business_events.is_empty() {
                None
            } else {
                Some(json_value(&path("business_events"), &rec.business_events)?)
            },
            endorsements: if rec.endorsements.is_empty() {
                None
            } else {
                Some(json_value(&path("endorsements"), &rec.endorsements)?)
            },
        })
    }

    /// Checks the derived columns of a row read back as `rec` against what `rec`'s signed
    /// event and outcome say.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] (malformed) naming the first column that differs.
    pub fn check_derived(
        rec: &EventRecord,
        stored: &DerivedEventColumns,
    ) -> Result<(), StoreError> {
        let what = format!("event {}", rec.id());
        let expect =
            Derived::of(rec, "event.origin_seq").map_err(|e| StoreError::malformed(&what, e))?;
        let differs = |column: &str,
                       found: &dyn std::fmt::Display,
                       signed: &dyn std::fmt::Display| {
            StoreError::malformed(
                &what,
                format!("column `{column}` holds `{found}` but the signed record says `{signed}`"),
            )
        };
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
        if stored.id != expect.id {
            return Err(differs("id", &stored.id, &expect.id));
        }
        if stored.state_id != expect.state_id {
            return Err(differs("state_id", &stored.state_id, &expect.state_id));
        }
        if stored.kind != expect.kind {
            return Err(differs("kind", &stored.kind, &expect.kind));
        }
        if stored.contract_name != expect.contract_name {
            return Err(differs(
                "contract_name",
                &stored.contract_name,
                &expect.contract_name,
            ));
        }
        if stored.contract_version != i64::from(expect.contract_version) {
            return Err(differs(
                "contract_version",
                &stored.contract_version,
                &expect.contract_version,
            ));
        }
        if stored.actor != expect.actor {
            return Err(differs("actor", &stored.actor, &expect.actor));
        }
        if stored.origin_node != expect.origin_node {
            return Err(differs(
                "origin_node",
                &stored.origin_node,
                &expect.origin_node,
            ));
        }
        if stored.origin_seq != expect.origin_seq {
            return Err(differs(
                "origin_seq",
                &stored.origin_seq,
                &expect.origin_seq,
            ));
        }
        let reason = expect.reason.map(str::to_owned);
        if stored.reason != reason {
            return Err(differs("reason", &text(&stored.reason), &text(&reason)));
        }
        Ok(())
    }
}

/// What [`EventColumns::check_derived`] compares: the derived columns of a record, without
/// serialising its JSON columns (a read checks every row it returns).
struct Derived {
    id: String,
    state_id: String,
    kind: &'static str,
    contract_name: String,
    contract_version: u32,
    actor: String,
    origin_node: String,
    origin_seq: i64,
    reason: Option<&'static str>,
}

impl Derived {
    /// The derived columns of `rec`; `origin_seq_path` names the origin sequence number in
    /// the error when it does not fit a signed 64-bit integer.
    fn of(rec: &EventRecord, origin_seq_path: &str) -> Result<Self, StoreError> {
        let e = rec.event();
        Ok(Derived {
            id: rec.id().to_string(),
            state_id: e.state_id.0.clone(),
            kind: e.kind.as_str(),
            contract_name: e.contract.name.clone(),
            contract_version: e.contract.version,
            actor: e.actor.0.clone(),
            origin_node: e.origin_node.0.clone(),
            origin_seq: to_i64(origin_seq_path, e.origin_seq.0)?,
            reason: match &rec.outcome {
                Outcome::Applied { .. } => None,
                Outcome::Rejected { reason } => Some(reason.code()),
            },
        })
    }
}

/// The receipt read back from the event table's `receipt` column.
///
/// # Errors
/// [`StoreError::Integrity`] (malformed) when the column holds something else than a receipt.
pub fn receipt_from_column(
    what: &str,
    receipt: Option<Value>,
) -> Result<Option<SequencingReceipt>, StoreError> {
    receipt
        .filter(|v| !v.is_null())
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| StoreError::malformed(what, format!("receipt: {e}")))
}

/// The business events read back from the event table's `business_events` column: `NULL`
/// (or JSON `null`) is none.
///
/// # Errors
/// [`StoreError::Integrity`] (malformed) when the column holds something else than a list of
/// business events.
pub fn business_events_from_column(
    what: &str,
    business_events: Option<Value>,
) -> Result<Vec<BusinessEvent>, StoreError> {
    list_from_column(what, "business_events", business_events)
}

/// The endorsements read back from the event table's `endorsements` column: `NULL` (or JSON
/// `null`) is none. Whether they hold (signatures, policy) is not checked here: `verify` and
/// the sync protocols decide that with [`check_endorsements`](crate::check_endorsements).
///
/// # Errors
/// [`StoreError::Integrity`] (malformed) when the column holds something else than a list of
/// endorsements (another shape, an unknown field, a signature that is not 64 hex bytes).
pub fn endorsements_from_column(
    what: &str,
    endorsements: Option<Value>,
) -> Result<Vec<Endorsement>, StoreError> {
    list_from_column(what, "endorsements", endorsements)
}

/// A nullable JSON-array column of event `what`: `NULL` or JSON `null` is the empty list; any
/// other value must deserialise as the list, or it is malformed naming `column`.
fn list_from_column<T: DeserializeOwned>(
    what: &str,
    column: &str,
    value: Option<Value>,
) -> Result<Vec<T>, StoreError> {
    value
        .filter(|v| !v.is_null())
        .map(serde_json::from_value)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| StoreError::malformed(what, format!("{column}: {e}")))
}

/// The [`Outcome`] of event `what` read back from its `outcome`, `new_version`, `new_root`
/// and `reason_detail` columns (the inverse of the outcome part of
/// [`EventColumns::from_record`]).
///
/// # Errors
/// [`StoreError::Integrity`] with [`IntegrityError::Malformed`](crate::IntegrityError::Malformed)
/// when the columns do not fit together: an applied event without version or root, a negative
/// version, an unparsable root, a rejected event without a readable reason, an unknown outcome.
pub fn outcome_from_columns(
    what: &str,
    outcome: &str,
    new_version: Option<i64>,
    new_root: Option<String>,
    reason_detail: Option<Value>,
) -> Result<Outcome, StoreError> {
    match outcome {
        "applied" => {
            let (Some(version), Some(root)) = (new_version, new_root) else {
                return Err(StoreError::malformed(
                    what,
                    "applied event without new version/root",
                ));
            };
            Ok(Outcome::Applied {
                version: u64::try_from(version).map_err(|e| StoreError::malformed(what, e))?,
                root: root
                    .parse()
                    .map_err(|e| StoreError::malformed(what, format!("new_root: {e}")))?,
            })
        }
        "rejected" => {
            let detail = reason_detail
                .ok_or_else(|| StoreError::malformed(what, "rejected event without reason"))?;
            Ok(Outcome::Rejected {
                reason: serde_json::from_value(detail)
                    .map_err(|e| StoreError::malformed(what, format!("reason: {e}")))?,
            })
        }
        other => Err(StoreError::malformed(
            what,
            format!("unknown outcome `{other}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_i64_refuses_values_beyond_i64_max_naming_the_path() {
        assert_eq!(to_i64("x", i64::MAX as u64).ok(), Some(i64::MAX));
        match to_i64("items[0].event.origin_seq", i64::MAX as u64 + 1) {
            Err(StoreError::InvalidInput { path, reason }) => {
                assert_eq!(path, "items[0].event.origin_seq");
                assert!(reason.contains("9223372036854775808"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn business_events_column_reads_null_as_none_and_refuses_other_shapes() {
        assert_eq!(business_events_from_column("e", None).ok(), Some(vec![]));
        assert_eq!(
            business_events_from_column("e", Some(Value::Null)).ok(),
            Some(vec![])
        );
        let listed = serde_json::json!([{"name": "price_agreed", "payload": {"amount": 5}}]);
        let read = business_events_from_column("e", Some(listed)).ok();
        assert_eq!(
            read,
            Some(vec![BusinessEvent {
                name: "price_agreed".into(),
                payload: serde_json::json!({"amount": 5}),
            }])
        );
        let err = business_events_from_column("event x", Some(serde_json::json!({"a": 1})));
        assert!(
            matches!(&err, Err(StoreError::Integrity { what, .. }) if what == "event x"),
            "{err:?}"
        );
    }

    #[test]
    fn endorsements_column_reads_null_as_none_and_refuses_other_shapes() {
        assert_eq!(endorsements_from_column("e", None).ok(), Some(vec![]));
        assert_eq!(
            endorsements_from_column("e", Some(Value::Null)).ok(),
            Some(vec![])
        );
        let signature = "ab".repeat(64);
        let listed = serde_json::json!([{"node": "bank", "signature": signature}]);
        let read = endorsements_from_column("e", Some(listed)).ok();
        assert_eq!(
            read,
            Some(vec![Endorsement {
                node: crate::NodeId::from("bank"),
                signature: crate::SignatureBytes([0xab; 64]),
            }])
        );
        for bad in [
            serde_json::json!({"node": "bank"}),
            serde_json::json!([{"node": "bank", "signature": "abcd"}]),
            serde_json::json!([{"node": "bank", "signature": signature, "extra": 1}]),
        ] {
            match endorsements_from_column("event x", Some(bad.clone())) {
                Err(StoreError::Integrity { what, source }) => {
                    assert_eq!(what, "event x", "{bad}");
                    assert!(source.to_string().contains("endorsements"), "{source}");
                }
                other => panic!("{bad} read as {other:?}"),
            }
        }
    }

    #[test]
    fn json_helpers_agree() {
        let v = serde_json::json!({"b": [1, 2.5, "x"], "a": null});
        assert_eq!(json_value("v", &v).ok(), Some(v.clone()));
        assert_eq!(json_text("v", &v).ok(), Some(v.to_string()));
    }
}
