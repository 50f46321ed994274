//! Endorsed commits: which sync protocol a contract version chooses in its descriptor, the
//! endorsement policy of the `endorsed` protocol, the node-key endorsement an endorser signs
//! over a proposed outcome, and the one pure rule that says whether a set of endorsements
//! meets a policy (the home node, every replica and `verify` all call it).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::node::verify_node_signature;
use super::{ActorId, NodeId, NodeRegistry, NodeSignatureError, Parties, Role, StateId};
use crate::canonical;
use crate::hash::{hash_parts, Digest, Domain, EventId, StateRoot};
use crate::sign::{NodeKey, SignatureBytes};

/// How long a home node waits for endorsements when the descriptor names no timeout.
pub const DEFAULT_ENDORSEMENT_TIMEOUT_MS: u64 = 5_000;

/// The sync protocol a contract version chooses (part of its descriptor, so part of its
/// identity). A descriptor without one uses the home-node protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum SyncSpec {
    /// The state's home node sequences its events and signs a receipt; the others follow.
    Home,
    /// The home node sequences tentatively; a change is applied only once `policy` is met by
    /// endorsements of participant nodes, collected within `timeout_ms`.
    Endorsed {
        /// Which participant nodes must endorse.
        policy: EndorsementPolicy,
        /// How long the home node waits for the policy to be met before it records the
        /// event as rejected with `endorsement_timeout` (milliseconds).
        #[serde(default = "default_timeout")]
        timeout_ms: u64,
    },
}

fn default_timeout() -> u64 {
    DEFAULT_ENDORSEMENT_TIMEOUT_MS
}

impl SyncSpec {
    /// The protocol name (`home` or `endorsed`), as sync registries and `sst status` name it.
    pub fn protocol(&self) -> &'static str {
        match self {
            SyncSpec::Home => "home",
            SyncSpec::Endorsed { .. } => "endorsed",
        }
    }

    /// The endorsement policy, for the `endorsed` protocol.
    pub fn endorsement_policy(&self) -> Option<&EndorsementPolicy> {
        match self {
            SyncSpec::Home => None,
            SyncSpec::Endorsed { policy, .. } => Some(policy),
        }
    }
}

/// Which participant nodes of a state must endorse a change. The participant nodes are the
/// nodes of the actors named in the state's parties ([`participant_nodes`]), taken from the
/// version the change is based on (for a create, from the state it creates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum EndorsementPolicy {
    /// Every participant node.
    All,
    /// At least `k` distinct participant nodes.
    KOfN {
        /// How many.
        k: u32,
    },
    /// Every node that holds one of these roles in the state (through one of its actors).
    Roles {
        /// The roles.
        roles: Vec<Role>,
    },
}

/// Why a set of endorsements does not meet a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Nodes the policy requires did not endorse.
    #[error("endorsements missing from {}", names(missing))]
    Missing {
        /// The required nodes without an endorsement.
        missing: BTreeSet<NodeId>,
    },
    /// Fewer than `k` participant nodes endorsed.
    #[error("{found} of the required {required} participant nodes endorsed")]
    TooFew {
        /// Endorsements required.
        required: u32,
        /// Distinct participant nodes that endorsed.
        found: u32,
    },
    /// An endorsement comes from a node that is not a participant of the state.
    #[error("node `{0}` endorsed but is not a participant of the state")]
    NotParticipant(NodeId),
    /// Two endorsements come from the same node.
    #[error("node `{0}` endorsed twice")]
    Duplicate(NodeId),
    /// The policy can never be met on this state (e.g. `k` above the number of participant
    /// nodes, or a role nobody holds).
    #[error("the policy cannot be met: {0}")]
    Unsatisfiable(String),
}

fn names(nodes: &BTreeSet<NodeId>) -> String {
    nodes
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The participant nodes of a state: each node that runs at least one actor named in
/// `parties`, with the roles its actors hold. `node_of` maps an actor to its node (from the
/// actor registry); actors it does not know are left out.
pub fn participant_nodes(
    parties: &Parties,
    node_of: impl Fn(&ActorId) -> Option<NodeId>,
) -> BTreeMap<NodeId, BTreeSet<Role>> {
    let mut nodes: BTreeMap<NodeId, BTreeSet<Role>> = BTreeMap::new();
    for (role, actors) in &parties.0 {
        for actor in actors {
            if let Some(node) = node_of(actor) {
                nodes.entry(node).or_default().insert(role.clone());
            }
        }
    }
    nodes
}

impl EndorsementPolicy {
    /// The nodes a home node asks to endorse a change of a state with these participant
    /// nodes: every participant node for `all` and `k_of_n` (the first `k` answers decide),
    /// the nodes holding a named role for `roles`.
    pub fn endorsers(&self, participants: &BTreeMap<NodeId, BTreeSet<Role>>) -> BTreeSet<NodeId> {
        match self {
            EndorsementPolicy::All | EndorsementPolicy::KOfN { .. } => {
                participants.keys().cloned().collect()
            }
            EndorsementPolicy::Roles { roles } => participants
                .iter()
                .filter(|(_, held)| roles.iter().any(|r| held.contains(r)))
                .map(|(n, _)| n.clone())
                .collect(),
        }
    }

    /// Whether the policy can be met at all on a state with these participant nodes.
    ///
    /// # Errors
    /// [`PolicyError::Unsatisfiable`] saying why not.
    pub fn satisfiable(
        &self,
        participants: &BTreeMap<NodeId, BTreeSet<Role>>,
    ) -> Result<(), PolicyError> {
        match self {
            EndorsementPolicy::All if participants.is_empty() => Err(PolicyError::Unsatisfiable(
                "the state has no participant node".into(),
            )),
            EndorsementPolicy::KOfN { k } if *k == 0 => {
                Err(PolicyError::Unsatisfiable("k is 0".into()))
            }
            EndorsementPolicy::KOfN { k } if *k as usize > participants.len() => {
                Err(PolicyError::Unsatisfiable(format!(
                    "k = {k} but the state has {} participant nodes",
                    participants.len()
                )))
            }
            EndorsementPolicy::Roles { roles } if roles.is_empty() => {
                Err(PolicyError::Unsatisfiable("no role is named".into()))
            }
            EndorsementPolicy::Roles { roles } => {
                match roles
                    .iter()
                    .find(|r| !participants.values().any(|held| held.contains(*r)))
                {
                    Some(r) => Err(PolicyError::Unsatisfiable(format!(
                        "no participant node holds role `{r}`"
                    ))),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Whether endorsements by `endorsers` (one per node, in any order) meet the policy on a
    /// state with these participant nodes. Signatures are not looked at here (see
    /// [`Endorsement::verify`]).
    ///
    /// # Errors
    /// [`PolicyError`] naming the first reason the policy is not met.
    pub fn check<'a>(
        &self,
        participants: &BTreeMap<NodeId, BTreeSet<Role>>,
        endorsers: impl IntoIterator<Item = &'a NodeId>,
    ) -> Result<(), PolicyError> {
        self.satisfiable(participants)?;
        let mut seen = BTreeSet::new();
        for node in endorsers {
            if !participants.contains_key(node) {
                return Err(PolicyError::NotParticipant(node.clone()));
            }
            if !seen.insert(node.clone()) {
                return Err(PolicyError::Duplicate(node.clone()));
            }
        }
        match self {
            EndorsementPolicy::KOfN { k } => {
                let found = u32::try_from(seen.len()).unwrap_or(u32::MAX);
                if found < *k {
                    return Err(PolicyError::TooFew {
                        required: *k,
                        found,
                    });
                }
                Ok(())
            }
            _ => {
                let missing: BTreeSet<NodeId> = self
                    .endorsers(participants)
                    .into_iter()
                    .filter(|n| !seen.contains(n))
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(PolicyError::Missing { missing })
                }
            }
        }
    }

    /// Whether the policy is met once the nodes in `endorsed` endorsed, or can no longer be
    /// met once the nodes in `refused` refused (each a subset of [`EndorsementPolicy::endorsers`]).
    pub fn progress(
        &self,
        participants: &BTreeMap<NodeId, BTreeSet<Role>>,
        endorsed: &BTreeSet<NodeId>,
        refused: &BTreeSet<NodeId>,
    ) -> PolicyProgress {
        if self.check(participants, endorsed.iter()).is_ok() {
            return PolicyProgress::Met;
        }
        let asked = self.endorsers(participants);
        let still_possible = match self {
            EndorsementPolicy::KOfN { k } => {
                let open = asked.iter().filter(|n| !refused.contains(*n)).count();
                open >= *k as usize
            }
            _ => refused.iter().all(|n| !asked.contains(n)),
        };
        if still_possible {
            PolicyProgress::Open
        } else {
            PolicyProgress::Failed
        }
    }
}

/// Where collecting endorsements for one proposal stands ([`EndorsementPolicy::progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyProgress {
    /// The policy is met: the change may be committed as applied.
    Met,
    /// Not met yet, still possible.
    Open,
    /// Refusals make it impossible: the change is rejected `not_endorsed`.
    Failed,
}

/// A participant node's countersignature of a proposed outcome: its node-key signature over
/// [`Endorsement::digest`] (event id, state, new version, new root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endorsement {
    /// The endorsing node.
    pub node: NodeId,
    /// Its node-key signature.
    pub signature: SignatureBytes,
}

/// What an endorsement signs, borrowed.
#[derive(Serialize)]
struct EndorsementBody<'a> {
    event: &'a EventId,
    root: &'a StateRoot,
    state: &'a str,
    version: u64,
}

impl Endorsement {
    /// `H(sst/endorsement/v1, canonical {event, root, state, version})` in the event id's
    /// hash algorithm.
    pub fn digest(event: &EventId, state: &StateId, version: u64, root: &StateRoot) -> Digest {
        let body = EndorsementBody {
            event,
            root,
            state: state.as_str(),
            version,
        };
        hash_parts(
            event.0.alg(),
            Domain::Endorsement,
            &[&canonical::to_vec_of(&body)],
        )
    }

    /// `node` endorses `event` producing `version` with `root` on `state`.
    pub fn sign(
        node: NodeId,
        key: &NodeKey,
        event: &EventId,
        state: &StateId,
        version: u64,
        root: &StateRoot,
    ) -> Self {
        Endorsement {
            node,
            signature: key.sign_digest(&Self::digest(event, state, version, root)),
        }
    }

    /// Checks the signature (strictly) under the node's key in `registry`.
    ///
    /// # Errors
    /// [`NodeSignatureError`] when the node is unknown or the signature does not verify.
    pub fn verify(
        &self,
        registry: &NodeRegistry,
        event: &EventId,
        state: &StateId,
        version: u64,
        root: &StateRoot,
    ) -> Result<(), NodeSignatureError> {
        verify_node_signature(
            registry,
            &self.node,
            &Self::digest(event, state, version, root),
            &self.signature,
        )
    }
}

/// Why the endorsements of an applied event do not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndorsementError {
    /// An endorsement's signature does not verify (forged, or over another outcome).
    #[error("endorsement by `{node}` does not verify: {source}")]
    BadSignature {
        /// The node named in the endorsement.
        node: NodeId,
        /// Why.
        source: NodeSignatureError,
    },
    /// The endorsements do not meet the policy.
    #[error("endorsement policy not met: {0}")]
    Policy(#[from] PolicyError),
    /// The record is not an applied state change, so it cannot carry endorsements.
    #[error("only applied state changes carry endorsements")]
    NotApplied,
}

/// Checks the endorsements of `record` (an applied event of a contract on the `endorsed`
/// protocol) under `policy`: each strictly verifies under its node's key in `registry` over
/// the record's event id, state, new version and new root, and together they meet the policy
/// for a state with these `participants` (those of the version the event was based on, or of
/// the created state). The one rule home nodes, replicas and `verify` share.
///
/// # Errors
/// [`EndorsementError`] naming the first endorsement or policy rule that fails.
pub fn check_endorsements(
    policy: &EndorsementPolicy,
    participants: &BTreeMap<NodeId, BTreeSet<Role>>,
    registry: &NodeRegistry,
    record: &super::EventRecord,
) -> Result<(), EndorsementError> {
    let super::Outcome::Applied { version, root } = &record.outcome else {
        return Err(EndorsementError::NotApplied);
    };
    let digest = Endorsement::digest(&record.id(), &record.event().state_id, *version, root);
    for e in &record.endorsements {
        verify_node_signature(registry, &e.node, &digest, &e.signature).map_err(|source| {
            EndorsementError::BadSignature {
                node: e.node.clone(),
                source,
            }
        })?;
    }
    policy.check(participants, record.endorsements.iter().map(|e| &e.node))?;
    Ok(())
}

/// Why an endorser refused a proposal, as the home node records it in a `not_endorsed`
/// rejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndorserRefusal {
    /// The refusing node.
    pub node: NodeId,
    /// Its reason.
    pub reason: super::RejectReason,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashAlg;

    fn participants() -> BTreeMap<NodeId, BTreeSet<Role>> {
        let parties = Parties::default()
            .with("buyer", "b/alice")
            .with("seller", "s/bob")
            .with("bank", "k/carol")
            .with("seller", "s/dave");
        participant_nodes(&parties, |a| {
            Some(NodeId(a.0.split('/').next().unwrap_or_default().to_owned()))
        })
    }

    fn set(nodes: &[&str]) -> BTreeSet<NodeId> {
        nodes.iter().map(|n| NodeId((*n).to_owned())).collect()
    }

    #[test]
    fn participant_nodes_group_actors_by_node_with_their_roles() {
        let p = participants();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&NodeId("s".into())], [Role("seller".into())].into());
    }

    #[test]
    fn all_needs_every_participant_node() {
        let p = participants();
        let all = EndorsementPolicy::All;
        assert_eq!(all.endorsers(&p), set(&["b", "k", "s"]));
        assert!(all.check(&p, set(&["b", "k", "s"]).iter()).is_ok());
        assert_eq!(
            all.check(&p, set(&["b", "s"]).iter()),
            Err(PolicyError::Missing {
                missing: set(&["k"])
            })
        );
        assert_eq!(
            all.progress(&p, &set(&["b"]), &set(&[])),
            PolicyProgress::Open
        );
        assert_eq!(
            all.progress(&p, &set(&["b"]), &set(&["s"])),
            PolicyProgress::Failed
        );
    }

    #[test]
    fn k_of_n_counts_distinct_participants_and_fails_when_too_many_refuse() {
        let p = participants();
        let two = EndorsementPolicy::KOfN { k: 2 };
        assert!(two.check(&p, set(&["b", "s"]).iter()).is_ok());
        assert_eq!(
            two.check(&p, set(&["b"]).iter()),
            Err(PolicyError::TooFew {
                required: 2,
                found: 1
            })
        );
        let twice = [NodeId("b".into()), NodeId("b".into())];
        assert_eq!(
            two.check(&p, twice.iter()),
            Err(PolicyError::Duplicate(NodeId("b".into())))
        );
        assert_eq!(
            two.check(&p, set(&["b", "x"]).iter()),
            Err(PolicyError::NotParticipant(NodeId("x".into())))
        );
        assert_eq!(
            two.progress(&p, &set(&["b"]), &set(&["s"])),
            PolicyProgress::Open
        );
        assert_eq!(
            two.progress(&p, &set(&[]), &set(&["s", "k"])),
            PolicyProgress::Failed
        );
        assert!(matches!(
            EndorsementPolicy::KOfN { k: 4 }.satisfiable(&p),
            Err(PolicyError::Unsatisfiable(_))
        ));
    }

    #[test]
    fn roles_need_every_node_holding_a_named_role() {
        let p = participants();
        let roles = EndorsementPolicy::Roles {
            roles: vec![Role("seller".into()), Role("bank".into())],
        };
        assert_eq!(roles.endorsers(&p), set(&["k", "s"]));
        assert!(roles.check(&p, set(&["k", "s"]).iter()).is_ok());
        // An endorsement from a participant outside the named roles is harmless.
        assert!(roles.check(&p, set(&["b", "k", "s"]).iter()).is_ok());
        assert_eq!(
            roles.progress(&p, &set(&["k"]), &set(&["b"])),
            PolicyProgress::Open
        );
        let nobody = EndorsementPolicy::Roles {
            roles: vec![Role("notary".into())],
        };
        assert!(matches!(
            nobody.satisfiable(&p),
            Err(PolicyError::Unsatisfiable(_))
        ));
    }

    #[test]
    fn an_endorsement_verifies_only_over_what_it_signed() {
        let key = NodeKey::generate();
        let node = NodeId("k".into());
        let registry = NodeRegistry::new().with(node.clone(), key.public_key());
        let event = EventId(crate::hash::hash_parts(
            HashAlg::Blake3,
            Domain::Event,
            &[b"e"],
        ));
        let root = StateRoot(crate::hash::hash_parts(
            HashAlg::Blake3,
            Domain::State,
            &[b"r"],
        ));
        let state = StateId("deal-1".into());
        let e = Endorsement::sign(node, &key, &event, &state, 2, &root);
        assert!(e.verify(&registry, &event, &state, 2, &root).is_ok());
        assert!(e.verify(&registry, &event, &state, 3, &root).is_err());
        assert!(e
            .verify(&registry, &event, &StateId("deal-2".into()), 2, &root)
            .is_err());
        assert!(matches!(
            e.verify(&NodeRegistry::new(), &event, &state, 2, &root),
            Err(NodeSignatureError::UnknownNode(_))
        ));
    }

    /// An applied change of `deal-1` to version 2 (signed by a throwaway actor).
    fn applied_record(endorsers: &[(&str, &NodeKey)]) -> super::super::EventRecord {
        use super::super::{
            Event, EventKind, EventRecord, OriginSeq, Outcome, SignedEvent, Timestamp,
        };
        let signed = SignedEvent::sign(
            Event {
                kind: EventKind::ChangeSections,
                state_id: StateId("deal-1".into()),
                contract: super::super::ContractRef::new("settlement", 1),
                base: None,
                origin_node: NodeId("s".into()),
                origin_seq: OriginSeq(1),
                actor: ActorId("s/bob".into()),
                payload: serde_json::Value::Null,
                timestamp: Timestamp(1_700_000_000_000),
                alg: HashAlg::Blake3,
            },
            &crate::sign::ActorKey::generate(),
        );
        let root = StateRoot(crate::hash::hash_parts(
            HashAlg::Blake3,
            Domain::State,
            &[b"v2"],
        ));
        let endorsements = endorsers
            .iter()
            .map(|(n, key)| {
                Endorsement::sign(
                    NodeId((*n).into()),
                    key,
                    &signed.id,
                    &signed.event.state_id,
                    2,
                    &root,
                )
            })
            .collect();
        EventRecord {
            signed,
            disclosures: BTreeMap::new(),
            outcome: Outcome::Applied { version: 2, root },
            receipt: None,
            business_events: Vec::new(),
            endorsements,
        }
    }

    /// Keys of the participant nodes `b`, `k`, `s` and of the outsider `x`, all registered.
    fn node_keys() -> (BTreeMap<&'static str, NodeKey>, NodeRegistry) {
        let keys: BTreeMap<&str, NodeKey> = ["b", "k", "s", "x"]
            .into_iter()
            .map(|n| (n, NodeKey::generate()))
            .collect();
        let registry = keys.iter().fold(NodeRegistry::new(), |r, (n, k)| {
            r.with(NodeId((*n).into()), k.public_key())
        });
        (keys, registry)
    }

    #[test]
    fn check_endorsements_accepts_valid_endorsements_that_meet_the_policy() {
        let (keys, registry) = node_keys();
        let p = participants();
        let rec = applied_record(&[("b", &keys["b"]), ("k", &keys["k"]), ("s", &keys["s"])]);
        assert_eq!(
            check_endorsements(&EndorsementPolicy::All, &p, &registry, &rec),
            Ok(())
        );
        let two = applied_record(&[("s", &keys["s"]), ("b", &keys["b"])]);
        assert_eq!(
            check_endorsements(&EndorsementPolicy::KOfN { k: 2 }, &p, &registry, &two),
            Ok(())
        );
    }

    #[test]
    fn check_endorsements_names_a_forged_or_misdirected_signature_before_the_policy() {
        let (keys, registry) = node_keys();
        let p = participants();
        let mut rec = applied_record(&[("b", &keys["b"]), ("k", &keys["k"]), ("s", &keys["s"])]);
        rec.endorsements[1].signature.0[0] ^= 1;
        assert!(matches!(
            check_endorsements(&EndorsementPolicy::All, &p, &registry, &rec),
            Err(EndorsementError::BadSignature { node, source: NodeSignatureError::BadSignature { .. } })
                if node == NodeId("k".into())
        ));
        // Signed by another node's key: does not verify as `b`'s, even with the policy short.
        let rec = applied_record(&[("b", &keys["s"])]);
        assert!(matches!(
            check_endorsements(&EndorsementPolicy::All, &p, &registry, &rec),
            Err(EndorsementError::BadSignature { node, .. }) if node == NodeId("b".into())
        ));
        // Over another version of the same event.
        let mut rec = applied_record(&[("b", &keys["b"])]);
        if let super::super::Outcome::Applied { version, .. } = &mut rec.outcome {
            *version = 3;
        }
        assert!(matches!(
            check_endorsements(&EndorsementPolicy::KOfN { k: 1 }, &p, &registry, &rec),
            Err(EndorsementError::BadSignature { .. })
        ));
        // A node the registry does not know.
        let rec = applied_record(&[("m", &NodeKey::generate())]);
        assert!(matches!(
            check_endorsements(&EndorsementPolicy::KOfN { k: 1 }, &p, &registry, &rec),
            Err(EndorsementError::BadSignature { source: NodeSignatureError::UnknownNode(n), .. })
                if n == NodeId("m".into())
        ));
    }

    #[test]
    fn check_endorsements_names_each_policy_failure() {
        let (keys, registry) = node_keys();
        let p = participants();
        let check = |policy: &EndorsementPolicy, endorsers: &[&str]| {
            let pairs: Vec<(&str, &NodeKey)> = endorsers.iter().map(|n| (*n, &keys[n])).collect();
            check_endorsements(policy, &p, &registry, &applied_record(&pairs))
        };
        assert_eq!(
            check(&EndorsementPolicy::All, &["b", "s"]),
            Err(EndorsementError::Policy(PolicyError::Missing {
                missing: set(&["k"])
            }))
        );
        assert_eq!(
            check(&EndorsementPolicy::All, &[]),
            Err(EndorsementError::Policy(PolicyError::Missing {
                missing: set(&["b", "k", "s"])
            }))
        );
        assert_eq!(
            check(&EndorsementPolicy::All, &["b", "k", "s", "x"]),
            Err(EndorsementError::Policy(PolicyError::NotParticipant(
                NodeId("x".into())
            )))
        );
        assert_eq!(
            check(&EndorsementPolicy::KOfN { k: 2 }, &["b", "b"]),
            Err(EndorsementError::Policy(PolicyError::Duplicate(NodeId(
                "b".into()
            ))))
        );
        assert_eq!(
            check(&EndorsementPolicy::KOfN { k: 2 }, &["k"]),
            Err(EndorsementError::Policy(PolicyError::TooFew {
                required: 2,
                found: 1
            }))
        );
        assert!(matches!(
            check(&EndorsementPolicy::KOfN { k: 4 }, &["b", "k", "s"]),
            Err(EndorsementError::Policy(PolicyError::Unsatisfiable(_)))
        ));
    }

    #[test]
    fn check_endorsements_refuses_a_rejected_record() {
        let (keys, registry) = node_keys();
        let mut rec = applied_record(&[("b", &keys["b"])]);
        rec.outcome = super::super::Outcome::Rejected {
            reason: super::super::RejectReason::EndorsementTimeout {
                missing: vec![NodeId("k".into())],
                timeout_ms: DEFAULT_ENDORSEMENT_TIMEOUT_MS,
            },
        };
        assert_eq!(
            check_endorsements(
                &EndorsementPolicy::KOfN { k: 1 },
                &participants(),
                &registry,
                &rec
            ),
            Err(EndorsementError::NotApplied)
        );
    }

    #[test]
    fn sync_spec_reads_from_descriptor_json() {
        let spec: SyncSpec = serde_json::from_value(serde_json::json!({
            "protocol": "endorsed",
            "policy": {"kind": "k_of_n", "k": 2}
        }))
        .expect("spec");
        assert_eq!(
            spec,
            SyncSpec::Endorsed {
                policy: EndorsementPolicy::KOfN { k: 2 },
                timeout_ms: DEFAULT_ENDORSEMENT_TIMEOUT_MS
            }
        );
        assert_eq!(spec.protocol(), "endorsed");
        assert!(serde_json::from_value::<SyncSpec>(serde_json::json!({
            "protocol": "endorsed",
            "policy": {"kind": "most"}
        }))
        .is_err());
    }
}
