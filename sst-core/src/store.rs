//! The [`Store`] trait: the contract every database adapter implements, and the batch,
//! filter and receipt types it speaks in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::error::{IntegrityError, StoreError};
use crate::hash::EventId;
use crate::log::{LogEntry, LogHead, SignedCheckpoint};
use crate::model::{
    Actor, ActorId, ContractRecord, ContractRef, Disclosure, EventKind, EventRecord, NodeId,
    OriginSeq, Outcome, OutcomeKind, Refusal, Section, State, StateId,
};
use crate::parallel;
use crate::portable;

/// One event and, when it was applied to a state, the state version it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitItem {
    /// The event with its outcome.
    pub event: EventRecord,
    /// The new state version (required for applied state events, absent for rejections),
    /// shared: the node keeps the version it planned as its current one, and a large state
    /// is held once, not once per holder.
    pub state: Option<std::sync::Arc<State>>,
}

/// Events and state versions committed all-or-nothing.
///
/// A batch made by [`CommitBatch::validated`] remembers that it passed
/// [`CommitBatch::validate`], so the store's own call is cheap; the memory is bound to the
/// batch's exact contents, so a batch changed afterwards is validated in full again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitBatch {
    /// Items in commit order.
    pub items: Vec<CommitItem>,
    /// Set only by [`CommitBatch::validated`] (private: nothing outside the crate can make one).
    validation: Validation,
}

/// A batch a store prepared for its commit ([`Store::prepare`]): the batch, and what the
/// store computed from it ahead (opaque to everyone else). Nothing outside can change the
/// batch it holds, so what was prepared always matches what is committed.
pub struct PreparedBatch {
    batch: CommitBatch,
    ahead: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl PreparedBatch {
    /// A batch with nothing prepared ahead.
    pub fn new(batch: CommitBatch) -> Self {
        PreparedBatch { batch, ahead: None }
    }

    /// A batch with what a store computed from it ahead.
    pub fn with(batch: CommitBatch, ahead: impl std::any::Any + Send + Sync) -> Self {
        PreparedBatch {
            batch,
            ahead: Some(Box::new(ahead)),
        }
    }

    /// The batch.
    pub fn batch(&self) -> &CommitBatch {
        &self.batch
    }

    /// The batch alone (what was prepared ahead is dropped).
    pub fn into_batch(self) -> CommitBatch {
        self.batch
    }

    /// The batch and what was prepared ahead, if it is a `T` (a store reads back its own).
    pub fn into_parts<T: 'static>(self) -> (CommitBatch, Option<T>) {
        let ahead = self.ahead.and_then(|a| a.downcast::<T>().ok()).map(|a| *a);
        (self.batch, ahead)
    }
}

impl std::fmt::Debug for PreparedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedBatch")
            .field("items", &self.batch.items.len())
            .field("ahead", &self.ahead.is_some())
            .finish()
    }
}

/// The proof [`CommitBatch::validated`] leaves: the [`fingerprint`] of the contents it
/// validated, and the section values it bound by identity ([`Proof::pins`]). Ignored by
/// equality, kept by clones (a clone has the same contents and shares the pins).
#[derive(Clone, Default)]
struct Validation(Option<Proof>);

#[derive(Clone)]
struct Proof {
    fingerprint: [u8; 32],
    /// Every section value the fingerprint names by its allocation, held so that none can
    /// be freed (and its address reused) or changed in place (a value held twice is never
    /// uniquely writable) while the proof exists.
    #[expect(dead_code, reason = "held for its effect, never read")]
    pins: Arc<[Arc<Value>]>,
}

impl PartialEq for Validation {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "validated"
        } else {
            "unvalidated"
        })
    }
}

/// A BLAKE3 hash of an unambiguous binary encoding of every item's complete contents
/// (every field of every event record and state, as serde sees them), except that each
/// disclosed section value (event disclosures and state sections alike) is encoded as the
/// address of its shared allocation instead of being walked. Without canonical sorting,
/// number formatting, domain hashes, the portable checks or a walk of the section values,
/// it costs a fraction of [`CommitBatch::validate`], whatever the size of the sections
/// (a 5 MB state is not serialised to confirm that a commit of it is unchanged). `None` if
/// an item fails to serialise (it is then validated in full).
///
/// The address stands for the contents only while the value is pinned: [`proof`] pins
/// every value it names, so a value the batch holds cannot be freed, replaced at the same
/// address or changed in place while the proof lives; replacing a value by another
/// allocation changes the fingerprint.
fn fingerprint(items: &[CommitItem]) -> Option<[u8; 32]> {
    let items: Vec<ProofItem<'_>> = items.iter().map(ProofItem).collect();
    crate::fingerprint::of("sst commit batch validation proof v2", &items)
}

/// The proof of `items`: their [`fingerprint`] and the section values it names, pinned.
fn proof(items: &[CommitItem]) -> Option<Proof> {
    let fingerprint = fingerprint(items)?;
    let mut pins = Vec::new();
    for CommitItem { event, state } in items {
        pins.extend(event.disclosures.values().map(|d| Arc::clone(&d.value)));
        if let Some(state) = state {
            pins.extend(
                state
                    .sections
                    .values()
                    .filter_map(|s| s.disclosure.as_ref())
                    .map(|d| Arc::clone(&d.value)),
            );
        }
    }
    Some(Proof {
        fingerprint,
        pins: pins.into(),
    })
}

/// One item as [`fingerprint`] encodes it. Destructured field by field, so that a field
/// added to any of these types cannot be left out.
struct ProofItem<'a>(&'a CommitItem);

impl Serialize for ProofItem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let CommitItem { event, state } = self.0;
        let EventRecord {
            signed,
            disclosures,
            outcome,
            receipt,
            business_events,
            endorsements,
        } = event;
        let mut t = s.serialize_tuple(7)?;
        t.serialize_element(signed)?;
        t.serialize_element(&ProofDisclosures(disclosures.iter()))?;
        t.serialize_element(outcome)?;
        t.serialize_element(receipt)?;
        t.serialize_element(business_events)?;
        t.serialize_element(endorsements)?;
        t.serialize_element(&state.as_deref().map(ProofState))?;
        t.end()
    }
}

struct ProofState<'a>(&'a State);

impl Serialize for ProofState<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let State {
            id,
            contract,
            version,
            parties,
            sections,
            root,
            prev_root,
            last_event,
            updated_at,
        } = self.0;
        let mut t = s.serialize_tuple(9)?;
        t.serialize_element(id)?;
        t.serialize_element(contract)?;
        t.serialize_element(version)?;
        t.serialize_element(parties)?;
        t.serialize_element(&ProofSections(sections))?;
        t.serialize_element(root)?;
        t.serialize_element(prev_root)?;
        t.serialize_element(last_event)?;
        t.serialize_element(updated_at)?;
        t.end()
    }
}

/// `{name: (hash, (salt, value address) or none)}`.
struct ProofSections<'a>(&'a BTreeMap<String, Section>);

impl Serialize for ProofSections<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(name, Section { hash, disclosure })| {
            (name, (hash, disclosure.as_ref().map(ProofDisclosure)))
        }))
    }
}

/// `{name: (salt, value address)}`.
struct ProofDisclosures<I>(I);

impl<'a, I> Serialize for ProofDisclosures<I>
where
    I: Iterator<Item = (&'a String, &'a Disclosure)> + Clone,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.clone().map(|(n, d)| (n, ProofDisclosure(d))))
    }
}

/// A disclosure as `(salt, address of its value)`.
struct ProofDisclosure<'a>(&'a Disclosure);

impl Serialize for ProofDisclosure<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.0.salt, Arc::as_ptr(&self.0.value) as usize).serialize(s)
    }
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitReceipt {
    /// Events newly recorded.
    pub committed: Vec<EventId>,
    /// Events skipped because their id was already recorded (idempotent replay).
    pub duplicates: Vec<EventId>,
    /// The log head after the commit (absent when nothing was written).
    pub log_head: Option<LogHead>,
}

/// Which events [`Store::events`] returns. Unset fields match everything. Results come in the
/// order the store recorded them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventFilter {
    /// Only events of this state.
    pub state_id: Option<StateId>,
    /// Only events signed by this actor.
    pub actor: Option<ActorId>,
    /// Only events initiated by this node.
    pub origin_node: Option<NodeId>,
    /// Only events with origin sequence strictly greater than this (catch-up).
    pub after_origin_seq: Option<OriginSeq>,
    /// Only applied or only rejected events.
    pub outcome: Option<OutcomeKind>,
    /// Only events of this kind.
    pub kind: Option<EventKind>,
    /// At most this many events.
    pub limit: Option<usize>,
}

impl EventFilter {
    /// Whether `record` passes the filter (ignoring `limit`). Adapters that cannot express a
    /// condition natively may post-filter with this.
    pub fn matches(&self, record: &EventRecord) -> bool {
        let e = record.event();
        self.state_id.as_ref().is_none_or(|s| &e.state_id == s)
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self
                .origin_node
                .as_ref()
                .is_none_or(|n| &e.origin_node == n)
            && self.after_origin_seq.is_none_or(|s| e.origin_seq > s)
            && self.outcome.is_none_or(|o| record.outcome.kind() == o)
            && self.kind.is_none_or(|k| e.kind == k)
    }
}

/// Optional behaviours a store may lack; conformance cases consult these instead of
/// special-casing backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Several tasks may commit concurrently and the store serialises them correctly.
    pub concurrent_writers: bool,
    /// Data survives dropping and reopening the store.
    pub durable: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            concurrent_writers: true,
            durable: true,
        }
    }
}

impl CommitBatch {
    /// A batch of the given items.
    pub fn new(items: Vec<CommitItem>) -> Self {
        CommitBatch {
            items,
            validation: Validation::default(),
        }
    }

    /// Validates the batch in full ([`CommitBatch::validate`]) and returns it marked as
    /// validated, so that the store's own [`CommitBatch::validate`] (and that of every
    /// clone, e.g. for a retried commit) only confirms that the contents did not change
    /// since, instead of re-hashing every event and state. A batch whose items are changed
    /// afterwards loses the mark and is validated in full again.
    ///
    /// # Errors
    /// As [`CommitBatch::validate`].
    pub fn validated(self) -> Result<Self, StoreError> {
        self.validated_on(1)
    }

    /// [`CommitBatch::validated`] with the items' own checks (ids, states, portable JSON)
    /// spread over up to `workers` threads (0 counts as 1). Same result, first failure
    /// included, whatever `workers` is.
    ///
    /// # Errors
    /// As [`CommitBatch::validate`].
    pub fn validated_on(mut self, workers: usize) -> Result<Self, StoreError> {
        self.validation = Validation::default();
        self.check_on(workers)?;
        self.validation = Validation(proof(&self.items));
        Ok(self)
    }

    /// [`CommitBatch::validated`] for a caller that holds, for some items, the version of
    /// their state just before the item's new one (`previous`, matched by state id and
    /// version) and knows it valid: it read it from a store and checked it
    /// ([`State::verify`]: a table is hostile input, and a section copied unchecked from an
    /// edited row would be committed as if it were sound), or it passed this validation
    /// itself. A section of a new state equal to that version's section (same name, hash,
    /// salt and value) is then neither hashed nor checked against the portable profile
    /// again, since its earlier check still holds; everything else is checked as
    /// [`CommitBatch::validated`] does. A `previous` state that matches no item is ignored.
    ///
    /// # Errors
    /// As [`CommitBatch::validate`].
    pub fn validated_after(mut self, previous: &[&State]) -> Result<Self, StoreError> {
        self.validation = Validation::default();
        let known = |item: &CommitItem| {
            let state = item.state.as_ref()?;
            previous
                .iter()
                .copied()
                .find(|p| p.id == state.id && p.version.checked_add(1) == Some(state.version))
        };
        let mut seen = BTreeSet::new();
        let mut versions: BTreeMap<&StateId, u64> = BTreeMap::new();
        for (i, item) in self.items.iter().enumerate() {
            ItemChecks::of_after(i, item, known(item)).apply(i, item, &mut seen, &mut versions)?;
        }
        self.validation = Validation(proof(&self.items));
        Ok(self)
    }

    /// Whether the batch carries a [`CommitBatch::validated`] mark that still matches its
    /// contents.
    pub fn is_validated(&self) -> bool {
        self.validation
            .0
            .as_ref()
            .is_some_and(|proof| fingerprint(&self.items) == Some(proof.fingerprint))
    }

    /// Checks everything about the batch that needs no database: event ids match bodies,
    /// outcomes match states, states verify, every JSON value follows the portable profile.
    /// Every store calls this before touching its database, so bad input is refused with the
    /// same [`StoreError::InvalidInput`] everywhere and nothing is stored.
    ///
    /// A batch returned by [`CommitBatch::validated`] and not changed since is only checked
    /// for being unchanged.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] naming the first offending path.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.is_validated() {
            return Ok(());
        }
        self.check()
    }

    /// The full validation behind [`CommitBatch::validate`].
    fn check(&self) -> Result<(), StoreError> {
        self.check_on(1)
    }

    /// [`CommitBatch::check`] with each item's own checks (everything but the two rules
    /// that look at other items: an id seen twice, versions of one state not consecutive)
    /// run on up to `workers` threads first. The result, first failure included, is the
    /// same as on one thread: the rules are then applied item by item in batch order, each
    /// item's own checks consulted exactly where the single-thread walk runs them.
    fn check_on(&self, workers: usize) -> Result<(), StoreError> {
        let mut precomputed =
            (workers > 1 && self.items.len() >= 2 * MIN_ITEMS_PER_THREAD).then(|| {
                let indexed: Vec<(usize, &CommitItem)> = self.items.iter().enumerate().collect();
                parallel::map(&indexed, workers, MIN_ITEMS_PER_THREAD, |(i, item)| {
                    ItemChecks::of(*i, item)
                })
                .into_iter()
            });
        let mut seen = BTreeSet::new();
        let mut versions: BTreeMap<&StateId, u64> = BTreeMap::new();
        for (i, item) in self.items.iter().enumerate() {
            let checks = precomputed
                .as_mut()
                .and_then(Iterator::next)
                .unwrap_or_else(|| ItemChecks::of(i, item));
            checks.apply(i, item, &mut seen, &mut versions)?;
        }
        Ok(())
    }
}

/// Below this many items per thread, [`CommitBatch::validated_on`] checks on one thread.
const MIN_ITEMS_PER_THREAD: usize = 16;

fn invalid(path: String, reason: String) -> StoreError {
    StoreError::InvalidInput { path, reason }
}

/// The checks of one item that need no other item, in the three stretches the batch walk
/// consults around its two cross-item rules.
struct ItemChecks {
    /// The id is the hash of the body.
    id: Result<(), StoreError>,
    /// Disclosures portable; outcome and state agree (up to the version-sequence rule).
    head: Result<(), StoreError>,
    /// The state verifies and is portable; payload and business events portable.
    tail: Result<(), StoreError>,
}

impl ItemChecks {
    fn of(i: usize, item: &CommitItem) -> Self {
        Self::of_after(i, item, None)
    }

    /// [`ItemChecks::of`], the sections of the new state that equal those of `previous`
    /// (the valid version before it, when known) taken as checked.
    fn of_after(i: usize, item: &CommitItem, previous: Option<&State>) -> Self {
        let rec = &item.event;
        ItemChecks {
            id: rec
                .signed
                .verify_id()
                .map_err(|e| invalid(format!("items[{i}].event.id"), e.to_string())),
            head: Self::head(i, item),
            tail: Self::tail(i, item, previous),
        }
    }

    /// Consults these checks of item `i` in batch order around the two cross-item rules
    /// (an id seen twice, versions of one state not consecutive).
    fn apply<'a>(
        self,
        i: usize,
        item: &'a CommitItem,
        seen: &mut BTreeSet<EventId>,
        versions: &mut BTreeMap<&'a StateId, u64>,
    ) -> Result<(), StoreError> {
        self.id?;
        let id = item.event.id();
        if !seen.insert(id) {
            return Err(invalid(
                format!("items[{i}].event.id"),
                format!("event {id} appears twice in the batch"),
            ));
        }
        self.head?;
        if let (Outcome::Applied { .. }, Some(state)) = (&item.event.outcome, &item.state) {
            if let Some(prev) = versions.get(&state.id) {
                if state.version != prev + 1 {
                    return Err(invalid(
                        format!("items[{i}].state.version"),
                        format!("version {} follows {prev} in the same batch", state.version),
                    ));
                }
            }
            versions.insert(&state.id, state.version);
        }
        self.tail
    }

    fn head(i: usize, item: &CommitItem) -> Result<(), StoreError> {
        let at = |field: &str| format!("items[{i}].{field}");
        let rec = &item.event;
        let e = rec.event();
        for (name, d) in &rec.disclosures {
            d.check_portable(|| portable::member_path("$.disclosures", name))?;
        }
        match (&rec.outcome, &item.state) {
            (Outcome::Applied { version, root }, Some(state)) => {
                if state.id != e.state_id {
                    return Err(invalid(
                        at("state.id"),
                        format!("state `{}` but event targets `{}`", state.id, e.state_id),
                    ));
                }
                if state.version != *version || state.root != *root {
                    return Err(invalid(
                        at("state.version"),
                        "state version/root differ from the applied outcome".into(),
                    ));
                }
                if state.last_event != Some(rec.id()) {
                    return Err(invalid(
                        at("state.last_event"),
                        "state was not produced by this event".into(),
                    ));
                }
                if state.version == 0 {
                    return Err(invalid(at("state.version"), "versions start at 1".into()));
                }
                Ok(())
            }
            // Non-state events (contract deploys, actor changes) applied without a state.
            (Outcome::Applied { version: 0, .. }, None) => Ok(()),
            (Outcome::Applied { .. }, None) => Err(invalid(
                at("state"),
                "an applied state event needs its new state version".into(),
            )),
            (Outcome::Rejected { .. }, Some(_)) => Err(invalid(
                at("state"),
                "a rejected event must not carry a state".into(),
            )),
            (Outcome::Rejected { .. }, None) => Ok(()),
        }
    }

    fn tail(i: usize, item: &CommitItem, previous: Option<&State>) -> Result<(), StoreError> {
        let at = |field: &str| format!("items[{i}].{field}");
        let rec = &item.event;
        if let (Outcome::Applied { .. }, Some(state)) = (&rec.outcome, &item.state) {
            check_state(state, rec, &at, previous)?;
        }
        // After the state's own checks, so a bad section name is reported where the user
        // wrote it (the state), not where the event repeats it (the payload).
        portable::check_sized(&rec.event().payload, || "$.payload".to_owned())?;
        check_business_events(rec, &at)?;
        check_endorsements_shape(rec, &at)
    }
}

/// An applied item's new state: it verifies, the event's disclosures are its sections,
/// role and section names are portable keys, values portable, the whole within the size
/// limit. A section equal to that of `previous` (the valid version before it, when the
/// caller knows one) is taken as verified and portable.
fn check_state(
    state: &State,
    rec: &EventRecord,
    at: &dyn Fn(&str) -> String,
    previous: Option<&State>,
) -> Result<(), StoreError> {
    let unchanged = |name: &str, section: &Section| {
        previous.is_some_and(|p| p.sections.get(name) == Some(section))
    };
    // `State::verify`, each section hashed at most once.
    for (name, section) in &state.sections {
        if !unchanged(name, section) {
            section
                .verify(name)
                .map_err(|e| invalid(at("state"), e.to_string()))?;
        }
    }
    let computed = state.compute_root();
    if computed != state.root {
        return Err(invalid(
            at("state"),
            IntegrityError::Root {
                stored: state.root.to_string(),
                computed: computed.to_string(),
            }
            .to_string(),
        ));
    }
    for (name, d) in &rec.disclosures {
        // A disclosure equal to the section (verified above) has the section's hash.
        let matches = state.sections.get(name).is_some_and(|s| {
            s.disclosure.as_ref() == Some(d) || d.hash(state.alg(), name) == s.hash
        });
        if !matches {
            return Err(invalid(
                at(&format!("event.disclosures.{name}")),
                "disclosure does not match the new state's section hash".into(),
            ));
        }
    }
    for role in state.parties.0.keys() {
        let r = role.as_str();
        if r.is_empty() || r.starts_with('$') || r.contains('.') || r.contains('\0') {
            return Err(invalid(
                portable::member_path("$.parties", r),
                "role names must be portable object keys".into(),
            ));
        }
    }
    // An upper bound first (one walk with the checks); the exact canonical size only when
    // the bound is over the limit.
    let mut bound = 0usize;
    for (name, s) in &state.sections {
        if name.is_empty() || name.starts_with('$') || name.contains('.') || name.contains('\0') {
            return Err(invalid(
                portable::member_path("$.sections", name),
                "section names must be portable object keys".into(),
            ));
        }
        if let Some(d) = &s.disclosure {
            bound += if unchanged(name, s) {
                d.encoded_len()
            } else {
                d.check_portable(|| portable::member_path("$.sections", name))?
            };
        }
    }
    let size = if bound > portable::MAX_STATE_BYTES {
        state
            .sections
            .values()
            .filter_map(Section::value)
            .map(crate::canonical::encoded_len)
            .sum()
    } else {
        bound
    };
    if size > portable::MAX_STATE_BYTES {
        return Err(invalid(
            "$.sections".into(),
            format!(
                "state is {size} bytes, more than {} allowed",
                portable::MAX_STATE_BYTES
            ),
        ));
    }
    Ok(())
}

/// Whether `name` is 1 to `max` bytes of ASCII letters, digits, `_`, `.` and `-`.
fn is_plain_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Longest sink name [`Store::set_sink_cursor`] takes, in bytes.
pub const MAX_SINK_NAME_BYTES: usize = 128;

/// Checks a notification sink's name: 1 to [`MAX_SINK_NAME_BYTES`] bytes of ASCII letters,
/// digits, `_`, `.` and `-`, so it is a plain key on every engine.
///
/// # Errors
/// [`StoreError::InvalidInput`] with path `sink`.
pub fn check_sink_name(sink: &str) -> Result<(), StoreError> {
    if is_plain_name(sink, MAX_SINK_NAME_BYTES) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            path: "sink".into(),
            reason: format!(
                "sink name {sink:?} must be 1 to {MAX_SINK_NAME_BYTES} bytes of ASCII letters, \
                 digits, `_`, `.` or `-`"
            ),
        })
    }
}

/// Checks the `keep` of [`Store::prune_checkpoints`]: at least the latest checkpoint stays.
///
/// # Errors
/// [`StoreError::InvalidInput`] with path `keep` when it is 0.
pub fn check_prune_keep(keep: usize) -> Result<(), StoreError> {
    if keep == 0 {
        return Err(StoreError::InvalidInput {
            path: "keep".into(),
            reason: "pruning must keep at least the latest checkpoint (keep >= 1)".into(),
        });
    }
    Ok(())
}

/// The business events of an item: only on applied events, each named with 1..=128 bytes of
/// ASCII letters, digits, `_`, `.`, `-`, each payload portable JSON, so they round-trip exactly
/// through every engine (the receipt and the log record hash them).
fn check_business_events(rec: &EventRecord, at: &dyn Fn(&str) -> String) -> Result<(), StoreError> {
    if rec.business_events.is_empty() {
        return Ok(());
    }
    if let Outcome::Rejected { .. } = rec.outcome {
        return Err(StoreError::InvalidInput {
            path: at("business_events"),
            reason: "a rejected event emits no business events".into(),
        });
    }
    for (j, b) in rec.business_events.iter().enumerate() {
        if !is_plain_name(&b.name, 128) {
            return Err(StoreError::InvalidInput {
                path: at(&format!("business_events[{j}].name")),
                reason: format!(
                    "business event name {:?} must be 1 to 128 bytes of ASCII letters, digits, \
                     `_`, `.` or `-`",
                    b.name
                ),
            });
        }
        portable::check_at(&b.payload, &format!("$.business_events[{j}].payload"))?;
    }
    Ok(())
}

/// The endorsements of an item: only on applied state changes (the `endorsed` protocol
/// commits a rejection without them), at most one per node. Whether they verify and meet the
/// contract's policy is `verify`'s and the replicas' business ([`crate::check_endorsements`]).
fn check_endorsements_shape(
    rec: &EventRecord,
    at: &dyn Fn(&str) -> String,
) -> Result<(), StoreError> {
    if rec.endorsements.is_empty() {
        return Ok(());
    }
    let invalid = |reason: &str| StoreError::InvalidInput {
        path: at("endorsements"),
        reason: reason.to_owned(),
    };
    if let Outcome::Rejected { .. } = rec.outcome {
        return Err(invalid("a rejected event carries no endorsements"));
    }
    if matches!(
        rec.event().kind,
        EventKind::ActorChange | EventKind::DeployContract
    ) {
        return Err(invalid(
            "only state changes carry endorsements (not actor changes or deployments)",
        ));
    }
    let mut nodes = BTreeSet::new();
    for e in &rec.endorsements {
        if !nodes.insert(&e.node) {
            return Err(invalid(&format!("node `{}` endorses twice", e.node)));
        }
    }
    Ok(())
}

/// Checks a refusal before it is stored: every text in it follows the portable profile, so it
/// round-trips through every engine (e.g. no `\\u0000` for Postgres).
///
/// # Errors
/// [`StoreError::InvalidInput`] naming the offending path.
pub fn check_refusal(refusal: &Refusal) -> Result<(), StoreError> {
    let value = serde_json::to_value(refusal).map_err(|e| StoreError::InvalidInput {
        path: "$.refusal".into(),
        reason: e.to_string(),
    })?;
    portable::check_at(&value, "$.refusal")?;
    Ok(())
}

/// Persistence of SST's peer tables in a host database.
///
/// # Contract
/// Every sentence below is a case of the `conformance-tests` suite, run against every adapter.
/// - `migrate` creates the peer tables (default names `sst_state`, `sst_state_history`,
///   `sst_section`, `sst_event`, `sst_actor`, `sst_contract`, `sst_refusal`, `sst_log`,
///   `sst_checkpoint`, `sst_sink_cursor`) and the history view `sst_state_versions`, and is
///   idempotent; an event table of an older layout gains the columns added since
///   (`business_events`, `endorsements`); state tables of the first layout (every history row
///   carrying the whole `data` document) are upgraded in place to the section-version layout
///   without losing or changing a version; a foreign table of a peer table's name is refused.
/// - States are stored in the section-version layout: a history row per version holds its
///   header and section seals (no plaintext), each section version's plaintext is stored once
///   (keyed by state, section name and section hash) and referenced by every version holding
///   it, so a commit writes only the sections that changed. A stored section version edited
///   behind SST's back is reported by [`crate::verify_store`] in every version that holds it.
/// - The current-state row holds the state's id, contract, version and the queryable `data`
///   document; everything only SST needs (parties, seals, roots) lives in the history row of
///   that version. A current row whose contract or version disagrees with the history reads
///   as [`StoreError::Integrity`] or is reported by [`crate::verify_store`].
/// - The history view (`sst_state_versions`; on a document store, the documented
///   aggregation) shows every version's full `{section: value}` document, equal to
///   [`State::data`] of [`Store::state_at`].
/// - `commit` is all-or-nothing: if any item fails, no event, state version or counter of the
///   batch is visible afterwards.
/// - A batch is validated ([`CommitBatch::validate`]) before the database is touched; invalid
///   input yields [`StoreError::InvalidInput`] with the JSON path and changes nothing. A batch
///   marked by [`CommitBatch::validated`] and changed afterwards is refused the same way.
/// - An applied item's state version must be exactly one more than the stored version (1 for a
///   new state); otherwise the commit fails with [`StoreError::Conflict`] (`expected` = the
///   version the writer built on, `found` = the stored one). Of concurrent commits on the
///   same base version exactly one succeeds.
/// - An event whose id is already recorded is skipped (with its state version) and reported in
///   [`CommitReceipt::duplicates`]; the rest of the batch commits. A different event with an
///   already used `(origin_node, origin_seq)` is a [`StoreError::Conflict`].
/// - Every committed state version stays readable with [`Store::state_at`]; [`Store::state`]
///   returns the latest. Read-back states have identical section hashes and root, because
///   stored JSON follows the portable profile and hashes are recomputed over canonical JSON.
/// - A batch prepared ahead with [`Store::prepare`] commits with [`Store::commit_prepared`]
///   exactly as [`Store::commit`] commits it: checked against what is stored when it commits
///   (it may be prepared before the batch it builds on commits), refused with the same errors.
/// - Rejected events are recorded and queryable like applied ones, with their reason.
/// - [`Store::last_origin_seq`] is the highest origin sequence recorded for a node (0 if none)
///   and survives reopening the store.
/// - Redacted sections are stored without plaintext and without salt: only their hash.
/// - A refusal ([`Store::put_refusal`]) is recorded once per event (a second put of the same
///   event replaces it), listed by [`Store::refusals`] sorted by state id, version and event id
///   (all, or one state's), survives reopening, and is gone after [`Store::clear_refusal`];
///   clearing an event that has none is not an error.
/// - Every recorded event, put actor, inserted contract, put refusal and cleared refusal
///   appends exactly one [`LogEntry`] in the same transaction, chained to the previous entry
///   ([`LogHead::append`]); duplicates and no-op puts append nothing. [`Store::log`] lists them
///   by position and [`Store::log_head`] names the last; concurrent writers never fork the
///   chain (positions are unique and gap-free).
/// - A checkpoint is stored once per `(node, position)`; a second one at the same position
///   with another head is a [`StoreError::Conflict`].
/// - The event table's columns derived from the signed event (state, kind, contract, actor,
///   origin, reason code) are checked against it on read: a row edited behind SST's back
///   reads as [`StoreError::Integrity`].
/// - The queryable plaintext column holds exactly `{section: value}` of disclosed sections; a
///   change made to it behind SST's back is reported by [`crate::verify_store`].
/// - An event's business events are stored in the event table's nullable JSON column
///   `business_events` (`NULL` when there are none) and read back exactly by [`Store::event`],
///   [`Store::events`] and the log; an edit of that column is reported by
///   [`crate::verify_store`] (the receipt and the log record cover them).
/// - An event's endorsements (`endorsed` protocol) are stored in the event table's nullable
///   JSON column `endorsements` (`NULL` when there are none) and read back exactly by
///   [`Store::event`], [`Store::events`] and the log; an edit of that column is reported by
///   [`crate::verify_store`] (the log record covers them). A rejected event, an actor change
///   or a deployment carrying endorsements, or two endorsements by one node, is
///   [`StoreError::InvalidInput`] at `items[i].endorsements`.
/// - Sink cursors ([`Store::sink_cursor`]) are absent until set, kept per sink name, only move
///   forward, and refuse names that are not 1..=128 bytes of `[A-Za-z0-9_.-]`.
/// - [`Store::prune_checkpoints`] keeps a node's `keep` latest checkpoints, deletes the older
///   ones, refuses `keep` 0, and leaves [`crate::verify_store`] clean.
#[async_trait]
pub trait Store: Send + Sync {
    /// Backend name (`memory`, `sqlite`, `postgres`, …).
    fn backend(&self) -> &'static str;

    /// Optional behaviours of this store.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Creates the peer tables and indexes if missing.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database refuses the DDL.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Commits a batch atomically.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for input that fails [`CommitBatch::validate`];
    /// [`StoreError::Conflict`] for a stale version or a reused origin sequence;
    /// [`StoreError::Backend`] for database failures. In every error case nothing of the
    /// batch is stored.
    async fn commit(&self, batch: CommitBatch) -> Result<CommitReceipt, StoreError>;

    /// Does the part of committing `batch` that needs no connection (its validation, the
    /// store's serialisation of its rows) ahead of [`Store::commit_prepared`], so that a
    /// writer can prepare one batch while the batch before it is still being committed.
    /// The default prepares nothing ahead.
    ///
    /// # Errors
    /// What [`Store::commit`] would return for input errors ([`StoreError::InvalidInput`]);
    /// nothing is stored either way.
    fn prepare(&self, batch: CommitBatch) -> Result<PreparedBatch, StoreError> {
        Ok(PreparedBatch::new(batch))
    }

    /// Commits a batch made by this store's [`Store::prepare`], exactly as [`Store::commit`]
    /// commits the batch it was prepared from (same checks against what is stored, same
    /// errors, same receipt). The default commits the batch.
    ///
    /// # Errors
    /// As [`Store::commit`].
    async fn commit_prepared(&self, prepared: PreparedBatch) -> Result<CommitReceipt, StoreError> {
        self.commit(prepared.into_batch()).await
    }

    /// The latest version of a state.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] if the stored columns cannot be reassembled;
    /// [`StoreError::Backend`] for database failures.
    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError>;

    /// A given version of a state.
    ///
    /// # Errors
    /// As [`Store::state`].
    async fn state_at(&self, id: &StateId, version: u64) -> Result<Option<State>, StoreError>;

    /// Ids of all states, sorted.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for database failures.
    async fn state_ids(&self) -> Result<Vec<StateId>, StoreError>;

    /// Events matching `filter`, in recording order.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] for unreadable rows; [`StoreError::Backend`] otherwise.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError>;

    /// One event by id.
    ///
    /// # Errors
    /// As [`Store::events`].
    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError>;

    /// Highest origin sequence recorded for `node`; `OriginSeq(0)` if none.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for database failures.
    async fn last_origin_seq(&self, node: &NodeId) -> Result<OriginSeq, StoreError>;

    /// Inserts or replaces an actor (status changes, key rotation).
    ///
    /// # Errors
    /// [`StoreError::Backend`] for database failures.
    async fn put_actor(&self, actor: &Actor) -> Result<(), StoreError>;

    /// One actor.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for database failures.
    async fn actor(&self, id: &ActorId) -> Result<Option<Actor>, StoreError>;

    /// All actors, sorted by id.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for database failures.
    async fn actors(&self) -> Result<Vec<Actor>, StoreError>;

    /// Records a deployed contract version. Re-putting the same identity is a no-op; a
    /// different identity under the same name and version is a [`StoreError::Conflict`].
    ///
    /// # Errors
    /// [`StoreError::Conflict`] as above; [`StoreError::Backend`] for database failures.
    async fn put_contract(&self, contract: &ContractRecord) -> Result<(), StoreError>;

    /// One contract version.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for database failures.
    async fn contract(&self, contract: &ContractRef) -> Result<Option<ContractRecord>, StoreError>;

    /// Records (or replaces) the refusal of a received change.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] when the refusal's text is not portable JSON
    /// ([`Refusal`]s are checked with [`check_refusal`]); [`StoreError::Backend`] for database
    /// failures.
    async fn put_refusal(&self, refusal: &Refusal) -> Result<(), StoreError>;

    /// Recorded refusals, of one state or of all, sorted by state id, version and event id.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] for unreadable rows; [`StoreError::Backend`] otherwise.
    async fn refusals(&self, state: Option<&StateId>) -> Result<Vec<Refusal>, StoreError>;

    /// Removes the refusal of `event`, if any (the change was applied after all).
    ///
    /// # Errors
    /// [`StoreError::Backend`] for database failures.
    async fn clear_refusal(&self, event: &EventId) -> Result<(), StoreError>;

    /// All contract versions, sorted by name and version.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for database failures.
    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError>;

    /// Log entries with position greater than `after`, in position order, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] for unreadable rows; [`StoreError::Backend`] otherwise.
    async fn log(&self, after: u64, limit: Option<usize>) -> Result<Vec<LogEntry>, StoreError>;

    /// The last log entry's head ([`LogHead::default`] for an empty log).
    ///
    /// # Errors
    /// As [`Store::log`].
    async fn log_head(&self) -> Result<LogHead, StoreError>;

    /// Records a node-signed checkpoint (this node's own, or one witnessed from a peer).
    /// Putting the same checkpoint again is a no-op. The signature is not checked here (the
    /// store holds no registry): the node checks it before putting, `verify` after reading.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] ([`crate::ConflictKind::Checkpoint`]) when the node already
    /// has a checkpoint at that position with a different head; [`StoreError::Backend`] for
    /// database failures.
    async fn put_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError>;

    /// The checkpoints recorded for `node`, sorted by position.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] for unreadable rows; [`StoreError::Backend`] otherwise.
    async fn checkpoints(&self, node: &NodeId) -> Result<Vec<SignedCheckpoint>, StoreError>;

    /// Deletes the checkpoints of `node` except the `keep` latest (by position); returns how
    /// many were deleted. `keep` 0 is InvalidInput.
    ///
    /// Checkpoints are not log records, so pruning appends nothing to the log; `verify`
    /// checks the checkpoints that remain (the latest own one still pins the log head it
    /// signed), so pruning leaves it clean. Peers keep their own copies of what they
    /// witnessed.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] (path `keep`) when `keep` is 0 ([`check_prune_keep`]);
    /// [`StoreError::Backend`] for database failures.
    async fn prune_checkpoints(&self, node: &NodeId, keep: usize) -> Result<usize, StoreError>;

    /// The log position up to which sink `sink` has published (None: never set).
    ///
    /// Sink cursors are the notification publishers' bookkeeping, not peer records: they are
    /// **not** in the hash-chained log and `verify` does not cover them. A cursor edited
    /// backwards behind SST's back re-publishes notifications (consumers dedupe by their id);
    /// one edited forwards skips notifications.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] (path `sink`) for a name [`check_sink_name`] refuses;
    /// [`StoreError::Integrity`] for an unreadable row; [`StoreError::Backend`] for database
    /// failures.
    async fn sink_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError>;

    /// Moves sink `sink`'s cursor to `position`. Cursors only move forward: a lower position
    /// than the stored one is ignored (returns Ok). Sink names: 1..=128 bytes of [A-Za-z0-9_.-],
    /// otherwise StoreError::InvalidInput { path: "sink", .. }.
    ///
    /// Not logged, not verified: see [`Store::sink_cursor`].
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] (path `sink`) for a name [`check_sink_name`] refuses, or
    /// (path `position`) for a position beyond `i64::MAX`, which no database integer holds;
    /// [`StoreError::Backend`] for database failures.
    async fn set_sink_cursor(&self, sink: &str, position: u64) -> Result<(), StoreError>;
}
