//! The node's hash-chained log and its signed checkpoints.
//!
//! Every record a node keeps — applied and rejected events, refusals and their clearing,
//! contract deployments, actor changes — is bound by one [`LogEntry`]: its position, what it
//! is ([`LogKind`] + subject), the digest of the record exactly as stored, the hash of the
//! previous entry and its own hash. A deleted, inserted, duplicated, reordered or rewritten
//! row therefore breaks the chain or no longer matches its entry. The node signs
//! [`Checkpoint`]s (position + head hash) with its [`NodeKey`]; a rewrite of the whole chain
//! behind a checkpoint needs that key, and peers keep the checkpoints they witnessed, so a
//! cut tail is caught by them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::error::StoreError;
use crate::hash::{hash_parts, Digest, Domain, EventId, HashAlg};
use crate::model::{
    verify_node_signature, Actor, BusinessEvent, ContractRecord, Disclosure, Endorsement,
    EventRecord, NodeId, NodeRegistry, NodeSignatureError, Outcome, Refusal, SequencingReceipt,
    Timestamp,
};
use crate::sign::{EnvelopeSignature, NodeKey, SignatureBytes};

/// What a log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogKind {
    /// An event (applied or rejected) was recorded; subject = event id.
    Event,
    /// A received change was refused (or refused again); subject = event id.
    Refusal,
    /// A refusal was cleared (the change was applied after all); subject = event id.
    RefusalCleared,
    /// A contract version was deployed; subject = `name@version`.
    Contract,
    /// An actor was added or changed in the directory; subject = actor id.
    Actor,
}

impl LogKind {
    /// Stable snake_case name (as stored in the log table's `kind` column).
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Event => "event",
            LogKind::Refusal => "refusal",
            LogKind::RefusalCleared => "refusal_cleared",
            LogKind::Contract => "contract",
            LogKind::Actor => "actor",
        }
    }
}

impl fmt::Display for LogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "event" => LogKind::Event,
            "refusal" => LogKind::Refusal,
            "refusal_cleared" => LogKind::RefusalCleared,
            "contract" => LogKind::Contract,
            "actor" => LogKind::Actor,
            other => return Err(format!("unknown log kind `{other}`")),
        })
    }
}

/// A record as the log binds it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum LogRecord<'a> {
    /// An event with its outcome, disclosures and receipt.
    Event(&'a EventRecord),
    /// A refusal as stored.
    Refusal(&'a Refusal),
    /// The refusal of this event was cleared.
    RefusalCleared(&'a EventId),
    /// A deployed contract version.
    Contract(&'a ContractRecord),
    /// An actor as put in the directory.
    Actor(&'a Actor),
}

impl LogRecord<'_> {
    /// The kind of entry this record gets.
    pub fn kind(&self) -> LogKind {
        match self {
            LogRecord::Event(_) => LogKind::Event,
            LogRecord::Refusal(_) => LogKind::Refusal,
            LogRecord::RefusalCleared(_) => LogKind::RefusalCleared,
            LogRecord::Contract(_) => LogKind::Contract,
            LogRecord::Actor(_) => LogKind::Actor,
        }
    }

    /// The key the record is found by in its table.
    pub fn subject(&self) -> String {
        match self {
            LogRecord::Event(r) => r.id().to_string(),
            LogRecord::Refusal(r) => r.event.to_string(),
            LogRecord::RefusalCleared(id) => id.to_string(),
            LogRecord::Contract(c) => c.contract().to_string(),
            LogRecord::Actor(a) => a.id.to_string(),
        }
    }

    /// The record's canonical JSON: everything its row lets a user read. An event is bound
    /// by its id (which covers the signed body) plus what the id does not cover: signatures,
    /// disclosures, outcome and receipt.
    ///
    /// Written straight from the records ([`canonical::to_vec_of`]): the bytes are those of
    /// the JSON object `{id, signatures, disclosures, outcome, receipt[, business_events]}`
    /// for an event, the record's own JSON otherwise.
    fn canonical_bytes(&self) -> Vec<u8> {
        match self {
            LogRecord::Event(r) => {
                let binding = |disclosures| EventBinding {
                    id: r.id(),
                    signatures: &r.signed.signatures,
                    disclosures,
                    outcome: &r.outcome,
                    receipt: &r.receipt,
                    business_events: &r.business_events,
                    endorsements: &r.endorsements,
                };
                // Values hashed when they were sealed are written from the encoding kept then;
                // the same bytes as encoding them again (a test holds both to be equal).
                canonical::to_vec_direct(&binding(BoundDisclosures::Reusing(&r.disclosures)))
                    .unwrap_or_else(|| {
                        canonical::to_vec_of(&binding(BoundDisclosures::Encoding(&r.disclosures)))
                    })
            }
            LogRecord::Refusal(r) => canonical::to_vec_of(r),
            LogRecord::RefusalCleared(id) => canonical::to_vec_of(id),
            LogRecord::Contract(c) => canonical::to_vec_of(c),
            LogRecord::Actor(a) => canonical::to_vec_of(a),
        }
    }

    /// `H(sst/record/v1, canonical(record))` in `alg`.
    pub fn digest(&self, alg: HashAlg) -> Digest {
        hash_parts(alg, Domain::LogRecord, &[&self.canonical_bytes()])
    }
}

/// What the log binds of an event record (see [`LogRecord::digest`]).
#[derive(Serialize)]
struct EventBinding<'a> {
    id: EventId,
    signatures: &'a [EnvelopeSignature],
    disclosures: BoundDisclosures<'a>,
    outcome: &'a Outcome,
    receipt: &'a Option<SequencingReceipt>,
    #[serde(skip_serializing_if = "<[BusinessEvent]>::is_empty")]
    business_events: &'a [BusinessEvent],
    #[serde(skip_serializing_if = "<[Endorsement]>::is_empty")]
    endorsements: &'a [Endorsement],
}

/// The disclosures of an [`EventBinding`], serialised exactly as the map
/// `{name: {"salt": …, "value": …}}` of [`Disclosure`]s.
#[derive(Clone, Copy)]
enum BoundDisclosures<'a> {
    /// Each value encoded from its tree.
    Encoding(&'a BTreeMap<String, Disclosure>),
    /// Each value whose canonical encoding its disclosure kept written from that encoding
    /// (only [`canonical::to_vec_direct`] takes it).
    Reusing(&'a BTreeMap<String, Disclosure>),
}

impl Serialize for BoundDisclosures<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (map, reuse) = match *self {
            BoundDisclosures::Encoding(m) => (m, false),
            BoundDisclosures::Reusing(m) => (m, true),
        };
        if !reuse {
            return map.serialize(serializer);
        }
        let mut out = serializer.serialize_map(Some(map.len()))?;
        for (name, d) in map {
            out.serialize_entry(name, &ReusedDisclosure(d))?;
        }
        out.end()
    }
}

/// A [`Disclosure`] serialised like its derived form, its value written from the canonical
/// encoding it kept when there is one.
struct ReusedDisclosure<'a>(&'a Disclosure);

impl Serialize for ReusedDisclosure<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let d = self.0;
        let mut s = serializer.serialize_struct("Disclosure", 2)?;
        s.serialize_field("salt", &d.salt)?;
        match d.canonical_text() {
            Some(text) => s.serialize_field("value", &canonical::PreEncoded(&text))?,
            None => s.serialize_field("value", &*d.value)?,
        }
        s.end()
    }
}

/// The head of a log: the position and hash of its last entry (position 0 and the all-zero
/// digest for an empty log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    /// Position of the last entry (entries are numbered from 1).
    pub pos: u64,
    /// Its hash.
    pub hash: Digest,
}

impl LogHead {
    /// The head of an empty log whose entries hash with `alg`.
    pub fn genesis(alg: HashAlg) -> Self {
        LogHead {
            pos: 0,
            hash: Digest::from_parts(alg, [0; 32]),
        }
    }

    /// The entry that appends `record` after this head.
    pub fn append(&self, record: &LogRecord<'_>) -> LogEntry {
        let alg = self.hash.alg();
        LogEntry::new(
            self.pos + 1,
            record.kind(),
            record.subject(),
            record.digest(alg),
            self.hash,
        )
    }
}

impl Default for LogHead {
    fn default() -> Self {
        LogHead::genesis(HashAlg::Blake3)
    }
}

/// One entry of the hash-chained log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position, from 1, without gaps.
    pub pos: u64,
    /// What it records.
    pub kind: LogKind,
    /// The record's key in its table (event id, actor id, `name@version`).
    pub subject: String,
    /// [`LogRecord::digest`] of the record as written.
    pub record: Digest,
    /// Hash of the entry before (all-zero for position 1).
    pub prev: Digest,
    /// [`LogEntry::compute_hash`] of this entry.
    pub hash: Digest,
}

impl LogEntry {
    /// An entry with its hash computed.
    pub fn new(pos: u64, kind: LogKind, subject: String, record: Digest, prev: Digest) -> Self {
        let hash = Self::compute_hash(pos, kind, &subject, &record, &prev);
        LogEntry {
            pos,
            kind,
            subject,
            record,
            prev,
            hash,
        }
    }

    /// `H(sst/log/v1, pos, kind, subject, record, prev)` in `prev`'s algorithm.
    pub fn compute_hash(
        pos: u64,
        kind: LogKind,
        subject: &str,
        record: &Digest,
        prev: &Digest,
    ) -> Digest {
        hash_parts(
            prev.alg(),
            Domain::Log,
            &[
                &pos.to_le_bytes(),
                kind.as_str().as_bytes(),
                subject.as_bytes(),
                record.text().as_bytes(),
                prev.text().as_bytes(),
            ],
        )
    }

    /// Whether the stored hash is the hash of the stored fields.
    pub fn hash_ok(&self) -> bool {
        Self::compute_hash(self.pos, self.kind, &self.subject, &self.record, &self.prev)
            == self.hash
    }

    /// The head this entry makes.
    pub fn head(&self) -> LogHead {
        LogHead {
            pos: self.pos,
            hash: self.hash,
        }
    }

    /// An entry read back from its columns (`pos`, `kind`, `subject`, `record`, `prev`,
    /// `hash`). The hash is not checked here (that is [`crate::verify_store`]'s job).
    ///
    /// # Errors
    /// [`StoreError::Integrity`] (malformed) when a column does not parse.
    pub fn from_columns(
        pos: i64,
        kind: &str,
        subject: String,
        record: &str,
        prev: &str,
        hash: &str,
    ) -> Result<Self, StoreError> {
        let what = format!("log entry {pos}");
        let digest = |col: &str, v: &str| {
            v.parse::<Digest>()
                .map_err(|e| StoreError::malformed(&what, format!("{col}: {e}")))
        };
        Ok(LogEntry {
            pos: u64::try_from(pos).map_err(|e| StoreError::malformed(&what, e))?,
            kind: kind
                .parse()
                .map_err(|e: String| StoreError::malformed(&what, e))?,
            subject,
            record: digest("record", record)?,
            prev: digest("prev", prev)?,
            hash: digest("hash", hash)?,
        })
    }
}

/// A node's statement "my log has `head` at position `pos`", made at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The node whose log this is.
    pub node: NodeId,
    /// Log position of the head.
    pub pos: u64,
    /// Hash of the entry at `pos` (the genesis digest at position 0).
    pub head: Digest,
    /// When the node signed it.
    pub at: Timestamp,
}

impl Checkpoint {
    /// `H(sst/checkpoint/v1, canonical(checkpoint))` in the head's algorithm.
    pub fn digest(&self) -> Digest {
        hash_parts(
            self.head.alg(),
            Domain::Checkpoint,
            &[&canonical::to_vec_of(self)],
        )
    }

    /// Signs the checkpoint with the node's key.
    pub fn sign(self, key: &NodeKey) -> SignedCheckpoint {
        let signature = key.sign_digest(&self.digest());
        SignedCheckpoint {
            checkpoint: self,
            signature,
        }
    }
}

/// A checkpoint with its node signature: kept by the node itself and by every peer that
/// received it (a witness).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// What the node states.
    pub checkpoint: Checkpoint,
    /// Its node-key signature over [`Checkpoint::digest`].
    pub signature: SignatureBytes,
}

impl SignedCheckpoint {
    /// Checks the signature against the node's key in `registry`.
    ///
    /// # Errors
    /// [`NodeSignatureError`] when the node is unknown or the signature does not verify.
    pub fn verify(&self, registry: &NodeRegistry) -> Result<(), NodeSignatureError> {
        verify_node_signature(
            registry,
            &self.checkpoint.node,
            &self.checkpoint.digest(),
            &self.signature,
        )
    }
}

/// How a newer checkpoint of a node relates to one witnessed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Witnessed {
    /// Same position and head, or a later position (consistency of the entries in between is
    /// for the node's own verify).
    Consistent,
    /// The node now reports a shorter log than it signed before: its tail was cut or rolled
    /// back.
    RolledBack {
        /// Position witnessed before.
        witnessed: u64,
        /// Position reported now.
        reported: u64,
    },
    /// The node signed two different heads at the same position.
    Forked {
        /// The position.
        pos: u64,
    },
}

impl Witnessed {
    /// Compares a node's `reported` checkpoint with the latest one `witnessed` from it.
    pub fn compare(witnessed: &Checkpoint, reported: &Checkpoint) -> Self {
        if reported.pos < witnessed.pos {
            Witnessed::RolledBack {
                witnessed: witnessed.pos,
                reported: reported.pos,
            }
        } else if reported.pos == witnessed.pos && reported.head != witnessed.head {
            Witnessed::Forked { pos: reported.pos }
        } else {
            Witnessed::Consistent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActorStatus, NodeId};
    use crate::sign::ActorKey;
    use crate::ActorId;

    fn actor(n: u8) -> Actor {
        Actor {
            id: ActorId::new(format!("a{n}")),
            node: NodeId::new("n"),
            public_key: ActorKey::from_seed([n; 32]).public_key(),
            status: ActorStatus::Active,
        }
    }

    #[test]
    fn entries_chain_and_any_field_change_breaks_the_hash() {
        let head = LogHead::default();
        let (a, b) = (actor(1), actor(2));
        let e1 = head.append(&LogRecord::Actor(&a));
        let e2 = e1.head().append(&LogRecord::Actor(&b));
        assert_eq!((e1.pos, e2.pos), (1, 2));
        assert_eq!(e2.prev, e1.hash);
        assert!(e1.hash_ok() && e2.hash_ok());
        let mut bad = e2.clone();
        bad.subject = "a1".into();
        assert!(!bad.hash_ok());
        let mut bad = e2.clone();
        bad.pos = 3;
        assert!(!bad.hash_ok());
        let mut changed = b.clone();
        changed.status = ActorStatus::Revoked;
        assert_ne!(
            LogRecord::Actor(&changed).digest(HashAlg::Blake3),
            e2.record
        );
    }

    #[test]
    fn checkpoints_verify_only_under_the_registered_key() {
        let key = NodeKey::from_seed([7; 32]);
        let other = NodeKey::from_seed([8; 32]);
        let node = NodeId::new("home");
        let cp = Checkpoint {
            node: node.clone(),
            pos: 3,
            head: Digest::from_parts(HashAlg::Blake3, [1; 32]),
            at: Timestamp(5),
        }
        .sign(&key);
        let registry = NodeRegistry::new().with(node.clone(), key.public_key());
        assert!(cp.verify(&registry).is_ok());
        let wrong = NodeRegistry::new().with(node, other.public_key());
        assert!(cp.verify(&wrong).is_err());
        assert!(matches!(
            cp.verify(&NodeRegistry::new()),
            Err(NodeSignatureError::UnknownNode(_))
        ));
        let mut moved = cp.clone();
        moved.checkpoint.pos = 4;
        assert!(moved.verify(&registry).is_err());
    }

    #[test]
    fn witnessing_spots_rollback_and_fork() {
        let cp = |pos, b| Checkpoint {
            node: NodeId::new("n"),
            pos,
            head: Digest::from_parts(HashAlg::Blake3, [b; 32]),
            at: Timestamp(0),
        };
        assert_eq!(
            Witnessed::compare(&cp(5, 1), &cp(6, 2)),
            Witnessed::Consistent
        );
        assert_eq!(
            Witnessed::compare(&cp(5, 1), &cp(5, 1)),
            Witnessed::Consistent
        );
        assert_eq!(
            Witnessed::compare(&cp(5, 1), &cp(4, 1)),
            Witnessed::RolledBack {
                witnessed: 5,
                reported: 4
            }
        );
        assert_eq!(
            Witnessed::compare(&cp(5, 1), &cp(5, 2)),
            Witnessed::Forked { pos: 5 }
        );
    }
}
