//! The event table's `disclosures` column. An applied event's disclosed sections are section
//! versions of the state it produced, and the section table already holds each of them once
//! (keyed by state, section name and section hash): the event row names them,
//! `{name: {"salt": …, "hash": …}}`, instead of carrying their values a second time. A
//! rejected event (whose proposal never became a version), a section this store holds no
//! plaintext of, and every row written before this layout keep the value inline,
//! `{name: {"salt": …, "value": …}}`. Readers accept both, per section, and resolve the
//! references against the section table with [`DisclosureColumn::resolve`]; a reference whose
//! section version is missing is an integrity finding naming the event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::columns::json_value;
use crate::{
    portable, CommitItem, Disclosure, EventRecord, Outcome, Salt, SectionHash, StateId, StoreError,
};

/// A section version an event row names instead of carrying its value: the salt the event
/// disclosed and the section hash its value is stored under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionVersionRef {
    /// The disclosed salt (what the section hash covers beside name and value).
    pub salt: Salt,
    /// The section hash: with the state id and the section name, the key of the section row
    /// holding the value.
    pub hash: SectionHash,
}

/// One disclosed section as an event row stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredDisclosure {
    /// Salt and value in the row itself.
    Inline(Disclosure),
    /// The section version holding the value.
    Version(SectionVersionRef),
}

/// An event row's `disclosures` column, read back: per section name, the disclosure inline or
/// the section version it names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DisclosureColumn(BTreeMap<String, StoredDisclosure>);

impl DisclosureColumn {
    /// The column of a validated commit item: for an applied event with its new state, each
    /// disclosed section the state holds the plaintext of is named by its section version
    /// (the commit writes that version's row, or an earlier version already did); everything
    /// else is inline.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] at `{at}.disclosures.{name}` when an inline value cannot be
    /// serialised.
    pub fn of_item(at: &str, item: &CommitItem) -> Result<Value, StoreError> {
        let rec = &item.event;
        let state = match (&rec.outcome, &item.state) {
            (Outcome::Applied { .. }, Some(state)) => Some(state),
            _ => None,
        };
        let mut column = Map::new();
        for (name, d) in &rec.disclosures {
            // A validated item's disclosure has the hash of the state's section of that name.
            let version = state
                .and_then(|s| s.sections.get(name))
                .filter(|s| s.disclosure.as_ref().is_some_and(|own| own.salt == d.salt));
            let entry = match version {
                Some(section) => json_value(
                    &disclosure_path(at, name),
                    &SectionVersionRef {
                        salt: d.salt,
                        hash: section.hash,
                    },
                )?,
                None => json_value(&disclosure_path(at, name), d)?,
            };
            column.insert(name.clone(), entry);
        }
        Ok(Value::Object(column))
    }

    /// The column as read back, `what` naming the event in errors.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] (malformed) when the column is not an object of disclosures
    /// and section-version references.
    pub fn parse(what: &str, column: Value) -> Result<Self, StoreError> {
        let Value::Object(entries) = column else {
            return Err(StoreError::malformed(
                what,
                "disclosures: not a JSON object",
            ));
        };
        let mut out = BTreeMap::new();
        for (name, entry) in entries {
            let names_version = entry
                .as_object()
                .is_some_and(|o| o.contains_key("hash") && !o.contains_key("value"));
            let stored = if names_version {
                serde_json::from_value(entry).map(StoredDisclosure::Version)
            } else {
                serde_json::from_value(entry).map(StoredDisclosure::Inline)
            }
            .map_err(|e| StoreError::malformed(what, format!("disclosures.{name}: {e}")))?;
            out.insert(name, stored);
        }
        Ok(DisclosureColumn(out))
    }

    /// The column parsed from its JSON text.
    ///
    /// # Errors
    /// As [`DisclosureColumn::parse`], and when the text is not JSON.
    pub fn parse_text(what: &str, text: &str) -> Result<Self, StoreError> {
        let value = serde_json::from_str(text)
            .map_err(|e| StoreError::malformed(what, format!("disclosures: {e}")))?;
        Self::parse(what, value)
    }

    /// The section versions the column names, `(section name, section hash)`, in name order:
    /// what a reader looks up in the section table (under the event's state id).
    pub fn section_versions(&self) -> impl Iterator<Item = (&str, &SectionHash)> {
        self.0.iter().filter_map(|(name, d)| match d {
            StoredDisclosure::Version(v) => Some((name.as_str(), &v.hash)),
            StoredDisclosure::Inline(_) => None,
        })
    }

    /// Whether every disclosure is inline (nothing to look up).
    pub fn is_inline(&self) -> bool {
        self.section_versions().next().is_none()
    }

    /// The event's disclosures, each named section version's value taken from `value_of`
    /// (the section table's value of `(state, name, hash)`, `None` when it holds no such row).
    /// Whether a value is the one the event disclosed is `verify`'s question (its hash is
    /// checked against the signed event), as for an inline value.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] (malformed) naming `what` when a named section version is not
    /// stored; `value_of`'s own errors.
    pub fn resolve(
        self,
        what: &str,
        state: &StateId,
        mut value_of: impl FnMut(&str, &SectionHash) -> Result<Option<Arc<Value>>, StoreError>,
    ) -> Result<BTreeMap<String, Disclosure>, StoreError> {
        let mut out = BTreeMap::new();
        for (name, stored) in self.0 {
            let disclosure = match stored {
                StoredDisclosure::Inline(d) => d,
                StoredDisclosure::Version(v) => {
                    let value = value_of(&name, &v.hash)?.ok_or_else(|| {
                        StoreError::malformed(
                            what,
                            format!(
                                "disclosures.{name} names section version {} of state {state}, \
                                 which the section table does not hold",
                                v.hash
                            ),
                        )
                    })?;
                    Disclosure::new(v.salt, value)
                }
            };
            out.insert(name, disclosure);
        }
        Ok(out)
    }
}

/// The key of a section-version row as adapters store it, all text: state id, section name,
/// section hash (`<alg>:<hex>`).
pub type SectionKey = (String, String, String);

/// An event row read back whose disclosures may still name section versions: the record
/// (its `disclosures` empty until [`StoredEvent::resolve`]) and the column as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The record, every field but `disclosures` read from the row.
    pub record: EventRecord,
    /// The row's disclosures column.
    pub disclosures: DisclosureColumn,
}

impl StoredEvent {
    /// The keys of the section versions this row names (none for inline disclosures).
    pub fn section_keys(&self) -> impl Iterator<Item = SectionKey> + '_ {
        let state = self.record.event().state_id.as_str();
        self.disclosures
            .section_versions()
            .map(move |(name, hash)| (state.to_owned(), name.to_owned(), hash.to_string()))
    }

    /// The record with its disclosures, each named section version's value from `value_of`
    /// (`None`: the section table holds no such row, an integrity error naming the event).
    ///
    /// # Errors
    /// As [`DisclosureColumn::resolve`].
    pub fn resolve(
        self,
        mut value_of: impl FnMut(&SectionKey) -> Result<Option<Arc<Value>>, StoreError>,
    ) -> Result<EventRecord, StoreError> {
        let StoredEvent {
            mut record,
            disclosures,
        } = self;
        let what = format!("event {}", record.id());
        let state = record.event().state_id.clone();
        record.disclosures = disclosures.resolve(&what, &state, |name, hash| {
            value_of(&(state.0.clone(), name.to_owned(), hash.to_string()))
        })?;
        Ok(record)
    }

    /// [`StoredEvent::resolve`] for a section table holding each value as JSON text, which
    /// is read strictly ([`portable::parse`]): a stored text outside the portable profile is
    /// an integrity error naming the event, the section and the section version.
    ///
    /// # Errors
    /// As [`StoredEvent::resolve`], and for a stored text that does not parse.
    pub fn resolve_texts<T: AsRef<str>>(
        self,
        mut text_of: impl FnMut(&SectionKey) -> Result<Option<T>, StoreError>,
    ) -> Result<EventRecord, StoreError> {
        let what = format!("event {}", self.record.id());
        self.resolve(|key| {
            text_of(key)?
                .map(|text| {
                    portable::parse(text.as_ref()).map(Arc::new).map_err(|e| {
                        StoreError::malformed(
                            &what,
                            format!("disclosures.{}: section version {}: {e}", key.1, key.2),
                        )
                    })
                })
                .transpose()
        })
    }
}

/// The distinct section versions `rows` name, in key order: what a reader looks up (in
/// chunks its engine accepts) before resolving the rows.
pub fn section_keys(rows: &[StoredEvent]) -> Vec<SectionKey> {
    let keys: BTreeSet<SectionKey> = rows.iter().flat_map(StoredEvent::section_keys).collect();
    keys.into_iter().collect()
}

fn disclosure_path(at: &str, name: &str) -> String {
    if at.is_empty() {
        format!("disclosures.{name}")
    } else {
        format!("{at}.disclosures.{name}")
    }
}
