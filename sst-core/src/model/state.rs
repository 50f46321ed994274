//! States: one version of a shared record, its parties and its hashed (possibly redacted)
//! sections.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ActorId, ContractRef, Role, StateId, Timestamp};
use crate::canonical;
use crate::error::IntegrityError;
use crate::hash::{Digest, Domain, EventId, HashAlg, Hasher, Salt, SectionHash, StateRoot};

/// Role → actors of a state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Parties(pub BTreeMap<Role, BTreeSet<ActorId>>);

impl Parties {
    /// Adds `actor` to `role`.
    pub fn with(mut self, role: impl Into<String>, actor: impl Into<String>) -> Self {
        self.0
            .entry(Role(role.into()))
            .or_default()
            .insert(ActorId(actor.into()));
        self
    }
    /// Roles `actor` holds in this state.
    pub fn roles_of(&self, actor: &ActorId) -> BTreeSet<Role> {
        self.0
            .iter()
            .filter(|(_, actors)| actors.contains(actor))
            .map(|(r, _)| r.clone())
            .collect()
    }
    /// Every actor that holds any role.
    pub fn actors(&self) -> BTreeSet<ActorId> {
        self.0.values().flatten().cloned().collect()
    }
}

/// The plaintext of a section version together with its salt: what a node that may read the
/// section receives.
///
/// The value is shared ([`Arc`]): a section version is parsed once and then held by every
/// state version, event record and commit that carries it, so a change to one section of a
/// large state never copies the others. Equality compares values (a shared value is equal
/// without being walked).
///
/// [`Disclosure::hash`] remembers the first hash it computed, with the salt and the very value
/// (a shared reference to it) it covered and that value's canonical encoding (which the log
/// record binding the disclosure then reuses instead of encoding the value again; a held
/// disclosure so costs its encoding's bytes beside its tree), and
/// [`Disclosure::check_portable`] the value it found portable; clones share what is
/// remembered: a disclosure hashed when it is sealed or first checked is not walked again by
/// the later checks of the same commit (a section of several megabytes costs one canonical
/// serialisation, not three). Changing the salt or replacing
/// the value makes the memo miss; the value behind a remembered reference cannot change (it
/// is shared, so never uniquely writable). A disclosure read from a store or received from a
/// peer starts without a memo, so `verify` always hashes what is stored.
#[derive(Clone, Serialize, Deserialize)]
pub struct Disclosure {
    /// Per-section-version salt.
    pub salt: Salt,
    /// The section's JSON value.
    pub value: Arc<Value>,
    /// Shared by clones: what one clone computed, every clone holding the same salt and
    /// value reuses.
    #[serde(skip)]
    memo: Arc<Memo>,
}

/// What [`Disclosure`] remembers of the work done on it.
#[derive(Default)]
struct Memo {
    hash: OnceLock<HashMemo>,
    portable: OnceLock<PortableMemo>,
}

/// A value [`Disclosure::check_portable`] found within the portable profile, with the bound
/// of its canonical length the check returned.
struct PortableMemo {
    value: Arc<Value>,
    bound: usize,
}

/// A section hash [`Disclosure::hash`] computed, with exactly what it covered.
struct HashMemo {
    alg: HashAlg,
    name: Box<str>,
    salt: Salt,
    value: Arc<Value>,
    hash: SectionHash,
    /// The value's canonical encoding (what the hash covered of it), kept so that the log
    /// record binding this disclosure and the store's row do not encode a large value again.
    encoded: Arc<str>,
}

impl fmt::Debug for Disclosure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Disclosure")
            .field("salt", &self.salt)
            .field("value", &self.value)
            .finish()
    }
}

impl PartialEq for Disclosure {
    fn eq(&self, other: &Self) -> bool {
        self.salt == other.salt
            && (Arc::ptr_eq(&self.value, &other.value) || self.value == other.value)
    }
}

impl Disclosure {
    /// `value` disclosed with `salt`.
    pub fn new(salt: Salt, value: Arc<Value>) -> Self {
        Disclosure {
            salt,
            value,
            memo: Arc::default(),
        }
    }

    /// Hash of this disclosure as section `name`.
    pub fn hash(&self, alg: HashAlg, name: &str) -> SectionHash {
        if let Some(m) = self.memo.hash.get() {
            if m.alg == alg
                && *m.name == *name
                && m.salt == self.salt
                && Arc::ptr_eq(&m.value, &self.value)
            {
                return m.hash;
            }
        }
        let mut h = Hasher::new(alg, Domain::Section);
        h.part(name.as_bytes()).part(&self.salt.0);
        // The encoding's walk also checks the portable profile, so that
        // `Disclosure::check_portable` of this value needs no walk of its own.
        let mut passes = crate::portable::Passes::new();
        let encoded = canonical::to_string_seen(&self.value, &mut passes);
        if passes.passed(encoded.len()) {
            // The exact length is a bound of itself.
            let _ = self.memo.portable.set(PortableMemo {
                value: Arc::clone(&self.value),
                bound: encoded.len(),
            });
        }
        h.part(encoded.as_bytes());
        let hash = SectionHash(h.finish());
        let encoded = Arc::from(encoded);
        // The first hash computed is kept; another name or algorithm is simply recomputed.
        let _ = self.memo.hash.set(HashMemo {
            alg,
            name: name.into(),
            salt: self.salt,
            value: Arc::clone(&self.value),
            hash,
            encoded,
        });
        hash
    }

    /// The canonical encoding of the value ([`canonical::to_string`]), when this very value
    /// was hashed ([`Disclosure::hash`] keeps what it encoded), shared; `None` otherwise.
    pub fn canonical_text(&self) -> Option<Arc<str>> {
        match self.memo.hash.get() {
            Some(m) if Arc::ptr_eq(&m.value, &self.value) => Some(Arc::clone(&m.encoded)),
            _ => None,
        }
    }

    /// The length of the value's canonical encoding ([`canonical::encoded_len`]): taken from
    /// the memo when this very value was hashed, otherwise walked.
    pub fn encoded_len(&self) -> usize {
        match self.memo.hash.get() {
            Some(m) if Arc::ptr_eq(&m.value, &self.value) => m.encoded.len(),
            _ => canonical::encoded_len(&self.value),
        }
    }

    /// [`Disclosure::encoded_len`] when it is at most `limit`, `None` when it is longer,
    /// without walking more of the value than `limit` bytes' worth
    /// ([`canonical::encoded_len_at_most`]) when it was not hashed.
    pub fn encoded_len_at_most(&self, limit: usize) -> Option<usize> {
        match self.memo.hash.get() {
            Some(m) if Arc::ptr_eq(&m.value, &self.value) => {
                Some(m.encoded.len()).filter(|&len| len <= limit)
            }
            _ => canonical::encoded_len_at_most(&self.value, limit),
        }
    }

    /// Checks the value against the portable profile ([`crate::portable::check_at`]), errors
    /// naming paths below `path_prefix`, and returns a bound of its canonical length. A value
    /// that passed once (this very value: the check depends on nothing else) is not walked
    /// again.
    ///
    /// # Errors
    /// The first violation found.
    pub fn check_portable(
        &self,
        path_prefix: impl FnOnce() -> String,
    ) -> Result<usize, crate::portable::ProfileError> {
        if let Some(m) = self.memo.portable.get() {
            if Arc::ptr_eq(&m.value, &self.value) {
                return Ok(m.bound);
            }
        }
        let bound = crate::portable::check_sized(&self.value, path_prefix)?;
        let _ = self.memo.portable.set(PortableMemo {
            value: Arc::clone(&self.value),
            bound,
        });
        Ok(bound)
    }
}

/// One section of a state: always its hash, and its plaintext only where the holder may read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Salted section hash.
    pub hash: SectionHash,
    /// Salt and value; `None` when redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclosure: Option<Disclosure>,
}

impl Section {
    /// Seals `value` (owned, or shared: it is not copied) as section `name` with a fresh
    /// random salt.
    pub fn seal(alg: HashAlg, name: &str, value: impl Into<Arc<Value>>) -> Self {
        Self::with_salt(alg, name, Salt::random(), value)
    }
    /// Seals `value` with a given salt (receivers rebuilding a sender's section).
    pub fn with_salt(alg: HashAlg, name: &str, salt: Salt, value: impl Into<Arc<Value>>) -> Self {
        let disclosure = Disclosure::new(salt, value.into());
        Section {
            hash: disclosure.hash(alg, name),
            disclosure: Some(disclosure),
        }
    }
    /// A redacted section: hash only.
    pub fn redacted(hash: SectionHash) -> Self {
        Section {
            hash,
            disclosure: None,
        }
    }
    /// The plaintext value, if disclosed.
    pub fn value(&self) -> Option<&Value> {
        self.disclosure.as_ref().map(|d| &*d.value)
    }
    /// Whether the disclosed value (if any) still matches the hash.
    pub fn verify(&self, name: &str) -> Result<(), IntegrityError> {
        match &self.disclosure {
            Some(d) if d.hash(self.hash.0.alg(), name) != self.hash => {
                Err(IntegrityError::SectionHash {
                    section: name.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The hash and (when disclosed) salt of one section, as adapters store them beside the
/// plaintext column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSeal {
    /// Section hash.
    pub hash: SectionHash,
    /// Salt, present exactly when the plaintext is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<Salt>,
}

/// The header of [`State::header`] as a borrowed struct, so that the root is hashed without
/// building a JSON tree (same members, same canonical bytes).
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    contract: &'a ContractRef,
    id: &'a StateId,
    last_event: &'a Option<EventId>,
    parties: &'a Parties,
    prev_root: &'a Option<StateRoot>,
    updated_at: &'a Timestamp,
    version: u64,
}

/// One version of a shared record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// State id.
    pub id: StateId,
    /// Contract version governing it.
    pub contract: ContractRef,
    /// Version, starting at 1.
    pub version: u64,
    /// Role → actors.
    pub parties: Parties,
    /// Section name → section.
    pub sections: BTreeMap<String, Section>,
    /// Root over header and section hashes.
    pub root: StateRoot,
    /// Root of the previous version (`None` for version 1).
    pub prev_root: Option<StateRoot>,
    /// Event that produced this version.
    pub last_event: Option<EventId>,
    /// Timestamp of that event.
    pub updated_at: Timestamp,
}

/// The columns of a stored state version, as adapters read them back.
#[derive(Debug, Clone, PartialEq)]
pub struct StateParts {
    /// State id column.
    pub id: StateId,
    /// Contract name + version columns.
    pub contract: ContractRef,
    /// Version column.
    pub version: u64,
    /// Parties JSON column.
    pub parties: Value,
    /// Section hashes + salts JSON column.
    pub seals: Value,
    /// The queryable plaintext JSON column: `{section: value}` for disclosed sections.
    pub data: Value,
    /// Root column.
    pub root: String,
    /// Previous root column.
    pub prev_root: Option<String>,
    /// Last event column.
    pub last_event: Option<String>,
    /// Updated-at column (ms since epoch).
    pub updated_at: i64,
}

impl State {
    /// Builds version 1 of a state from sealed sections.
    pub fn create(
        alg: HashAlg,
        id: StateId,
        contract: ContractRef,
        parties: Parties,
        sections: BTreeMap<String, Section>,
        last_event: Option<EventId>,
        updated_at: Timestamp,
    ) -> Self {
        let mut s = State {
            id,
            contract,
            version: 1,
            parties,
            sections,
            root: StateRoot(Digest::from_parts(alg, [0; 32])),
            prev_root: None,
            last_event,
            updated_at,
        };
        s.root = s.compute_root();
        s
    }

    /// The next version: `changes` replace (or add) sections; every other section keeps its
    /// hash. Only the changed sections and the root are re-hashed.
    pub fn next(
        &self,
        changes: BTreeMap<String, Section>,
        last_event: Option<EventId>,
        updated_at: Timestamp,
    ) -> Self {
        // Only the sections that stay are copied: a replaced section's old value is never
        // cloned just to be dropped.
        let mut sections: BTreeMap<String, Section> = self
            .sections
            .iter()
            .filter(|(name, _)| !changes.contains_key(*name))
            .map(|(name, section)| (name.clone(), section.clone()))
            .collect();
        sections.extend(changes);
        let mut s = State {
            id: self.id.clone(),
            contract: self.contract.clone(),
            version: self.version + 1,
            parties: self.parties.clone(),
            sections,
            root: self.root,
            prev_root: Some(self.root),
            last_event,
            updated_at,
        };
        s.root = s.compute_root();
        s
    }

    /// Hash algorithm of this state (that of its root).
    pub fn alg(&self) -> HashAlg {
        self.root.0.alg()
    }

    /// The canonical header that the root covers (everything but sections and the root).
    pub fn header(&self) -> Value {
        serde_json::json!({
            "alg": self.alg().as_str(),
            "contract": self.contract,
            "id": self.id,
            "last_event": self.last_event,
            "parties": self.parties,
            "prev_root": self.prev_root,
            "updated_at": self.updated_at,
            "version": self.version,
        })
    }

    /// Recomputes the root from the header and the section hashes (plaintext not needed).
    pub fn compute_root(&self) -> StateRoot {
        let mut h = Hasher::new(self.alg(), Domain::State);
        h.part(&canonical::to_vec_of(&Header {
            alg: self.alg().as_str(),
            contract: &self.contract,
            id: &self.id,
            last_event: &self.last_event,
            parties: &self.parties,
            prev_root: &self.prev_root,
            updated_at: &self.updated_at,
            version: self.version,
        }));
        for (name, section) in &self.sections {
            h.part(name.as_bytes());
            h.part(section.hash.0.text().as_bytes());
        }
        StateRoot(h.finish())
    }

    /// Checks every disclosed section against its hash and the root against header + hashes.
    /// A redacted state verifies too.
    pub fn verify(&self) -> Result<(), IntegrityError> {
        for (name, section) in &self.sections {
            section.verify(name)?;
        }
        let computed = self.compute_root();
        if computed != self.root {
            return Err(IntegrityError::Root {
                stored: self.root.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(())
    }

    /// A copy holding plaintext only for sections `readable` accepts; the others keep their
    /// hash and lose value and salt. The root is unchanged and still verifies.
    pub fn redact(&self, readable: impl Fn(&str) -> bool) -> State {
        let mut s = self.clone();
        for (name, section) in s.sections.iter_mut() {
            if !readable(name) {
                section.disclosure = None;
            }
        }
        s
    }

    /// The queryable document: `{section: value}` for every disclosed section.
    pub fn data(&self) -> Value {
        let mut m = Map::new();
        for (name, section) in &self.sections {
            if let Some(d) = &section.disclosure {
                m.insert(name.clone(), Value::clone(&d.value));
            }
        }
        Value::Object(m)
    }

    /// Section hashes and salts, the companion of [`State::data`].
    pub fn seals(&self) -> BTreeMap<String, SectionSeal> {
        self.sections
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    SectionSeal {
                        hash: s.hash,
                        salt: s.disclosure.as_ref().map(|d| d.salt),
                    },
                )
            })
            .collect()
    }

    /// Splits a state into the columns adapters store.
    pub fn to_parts(&self) -> StateParts {
        StateParts {
            id: self.id.clone(),
            contract: self.contract.clone(),
            version: self.version,
            parties: serde_json::to_value(&self.parties).unwrap_or(Value::Null),
            seals: serde_json::to_value(self.seals()).unwrap_or(Value::Null),
            data: self.data(),
            root: self.root.to_string(),
            prev_root: self.prev_root.map(|r| r.to_string()),
            last_event: self.last_event.map(|e| e.to_string()),
            updated_at: self.updated_at.0,
        }
    }

    /// Reassembles a state from stored columns. Does not verify hashes (see [`State::verify`]);
    /// fails only when the pieces cannot fit together.
    pub fn from_parts(p: StateParts) -> Result<State, IntegrityError> {
        let bad =
            |what: &str, e: &dyn fmt::Display| IntegrityError::Malformed(format!("{what}: {e}"));
        let parties: Parties = serde_json::from_value(p.parties).map_err(|e| bad("parties", &e))?;
        let seals: BTreeMap<String, SectionSeal> =
            serde_json::from_value(p.seals).map_err(|e| bad("section hashes", &e))?;
        let mut data = match p.data {
            Value::Object(m) => m,
            other => return Err(bad("data", &format!("not an object: {other}"))),
        };
        let mut sections = BTreeMap::new();
        for (name, seal) in seals {
            let value = data.remove(&name);
            let disclosure = match (seal.salt, value) {
                (Some(salt), Some(value)) => Some(Disclosure::new(salt, Arc::new(value))),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(IntegrityError::Malformed(format!(
                        "section `{name}` has a salt but no value"
                    )))
                }
                (None, Some(_)) => {
                    return Err(IntegrityError::Malformed(format!(
                        "section `{name}` is redacted but has a stored value"
                    )))
                }
            };
            sections.insert(
                name,
                Section {
                    hash: seal.hash,
                    disclosure,
                },
            );
        }
        if let Some(extra) = data.keys().next() {
            return Err(IntegrityError::Malformed(format!(
                "data holds section `{extra}` that has no section hash"
            )));
        }
        let root = p.root.parse().map_err(|e| bad("root", &e))?;
        let prev_root = p
            .prev_root
            .map(|r| r.parse())
            .transpose()
            .map_err(|e| bad("prev_root", &e))?;
        let last_event = p
            .last_event
            .map(|r| r.parse())
            .transpose()
            .map_err(|e| bad("last_event", &e))?;
        Ok(State {
            id: p.id,
            contract: p.contract,
            version: p.version,
            parties,
            sections,
            root,
            prev_root,
            last_event,
            updated_at: Timestamp(p.updated_at),
        })
    }
}
