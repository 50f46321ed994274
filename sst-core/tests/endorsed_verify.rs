//! `verify` checks endorsements (issue 14): on the in-memory reference store, a deal on a
//! contract whose descriptor chooses the `endorsed` protocol, with its parties' actors on three
//! nodes, verifies clean under each policy (`all`, `k_of_n`, `roles`) when every applied event
//! carries valid endorsements; a forged endorsement, a missing one, one by a node that is not
//! a participant, one over another root, a repeated node or an unregistered one each give
//! exactly one `endorsement` finding naming the event. The participant nodes are those of the
//! version an event was based on, with the actors' nodes as of its position in the log; only
//! a verified contract record makes a contract endorsed; rejected `not_endorsed` /
//! `endorsement_timeout` events need none; without a node registry nothing is checked.

mod common;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sst_core::{
    verify_store, verify_store_with, Actor, ActorChange, ActorKey, Base, ChangePayload,
    CommitBatch, CommitItem, ContractDescriptor, ContractRecord, ContractRef, CreatePayload,
    Endorsement, EndorsementPolicy, EndorserRefusal, Event, EventId, EventKind, EventRecord,
    Finding, HashAlg, MemoryStore, NodeId, NodeKey, NodeRegistry, OriginSeq, Outcome, Parties,
    PeerTable, RejectReason, Role, Rule, Section, SequencingReceipt, SignedEvent, State, StateId,
    StateRoot, Store, SyncSpec, Timestamp, TrustAnchors, VerifyReport,
};

use common::{actor, deal_policy, salt_of, seed_of};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// The node that sequences the deal and signs receipts.
const HOME: &str = "homes";

/// A participant or outsider node with its key.
fn node_key(node: &str) -> NodeKey {
    NodeKey::from_seed(seed_of(&format!("node:{node}")))
}

/// The network's node registry: the three participant nodes, and `gov`, which runs no actor
/// of the deal.
fn registry() -> NodeRegistry {
    ["bank", "homes", "check", "gov"]
        .into_iter()
        .fold(NodeRegistry::new(), |r, n| {
            r.with(NodeId::from(n), node_key(n).public_key())
        })
}

fn anchors() -> TrustAnchors {
    TrustAnchors::new(registry(), Some(NodeId::from(HOME)))
}

/// An actor with its signing key.
type Signer = (Actor, ActorKey);

/// The deal's actors: buyer Bob on node `bank`, seller Sue on `homes`, inspector Ina on
/// `check`.
struct Cast {
    bob: Signer,
    sue: Signer,
    ina: Signer,
}

fn cast() -> Cast {
    Cast {
        bob: actor("bank", "bob"),
        sue: actor("homes", "sue"),
        ina: actor("check", "ina"),
    }
}

/// Buyer `bank/bob`, seller `homes/sue`, inspector `check/ina`: three participant nodes.
fn parties() -> Parties {
    Parties::default()
        .with("buyer", "bank/bob")
        .with("seller", "homes/sue")
        .with("inspector", "check/ina")
}

/// The settlement contract, on the `endorsed` protocol with `policy` (or on the home-node
/// protocol without one), deployed by `by`.
fn settlement(policy: Option<EndorsementPolicy>, by: &Signer) -> ContractRecord {
    let contract = ContractRef::new("settlement", 1);
    let descriptor = ContractDescriptor {
        code_hash: ContractDescriptor::code_hash_of(&contract, "native settlement"),
        contract,
        policy: deal_policy(),
        methods: Vec::new(),
        supersedes: Vec::new(),
        engine: None,
        limits: None,
        sync: policy.map(|policy| SyncSpec::Endorsed {
            policy,
            timeout_ms: 5_000,
        }),
    };
    ContractRecord::sign(descriptor, HashAlg::Blake3, by.0.id.clone(), &by.1)
}

fn seal(label: &str, values: &[(&str, Value)]) -> BTreeMap<String, Section> {
    values
        .iter()
        .map(|(n, v)| {
            let s = Section::with_salt(
                HashAlg::Blake3,
                n,
                salt_of(&format!("{label}/{n}")),
                v.clone(),
            );
            ((*n).to_owned(), s)
        })
        .collect()
}

fn signed_event(
    kind: EventKind,
    state: &StateId,
    base: Option<Base>,
    by: &Signer,
    seq: u64,
    payload: Value,
) -> SignedEvent {
    SignedEvent::sign(
        Event {
            kind,
            state_id: state.clone(),
            contract: ContractRef::new("settlement", 1),
            base,
            origin_node: by.0.node.clone(),
            origin_seq: OriginSeq(seq),
            actor: by.0.id.clone(),
            payload,
            timestamp: Timestamp(1_700_000_000_000 + seq as i64 * 1000),
            alg: HashAlg::Blake3,
        },
        &by.1,
    )
}

/// `nodes` endorse producing `state` by `event`.
fn endorse(nodes: &[&str], event: EventId, state: &State) -> Vec<Endorsement> {
    nodes
        .iter()
        .map(|n| {
            Endorsement::sign(
                NodeId::from(*n),
                &node_key(n),
                &event,
                &state.id,
                state.version,
                &state.root,
            )
        })
        .collect()
}

/// The record of `signed` with `outcome`, its receipt signed by the home node.
fn recorded(
    signed: SignedEvent,
    sections: &BTreeMap<String, Section>,
    outcome: Outcome,
    endorsements: Vec<Endorsement>,
) -> EventRecord {
    let receipt = SequencingReceipt::sign(
        NodeId::from(HOME),
        &node_key(HOME),
        &signed.id,
        &signed.event.state_id,
        &outcome,
        &[],
    );
    EventRecord {
        disclosures: sections
            .iter()
            .filter_map(|(n, s)| s.disclosure.clone().map(|d| (n.clone(), d)))
            .collect(),
        signed,
        outcome,
        receipt: Some(receipt),
        business_events: Vec::new(),
        endorsements,
    }
}

/// An applied create of `deal-1` by `by`, endorsed by `endorsers`.
fn create(by: &Signer, endorsers: &[&str]) -> CommitItem {
    let id = StateId::from("deal-1");
    let sections = seal(
        "deal-1/1",
        &[
            ("common", json!({"address": "1 Main St", "status": "offer"})),
            ("price", json!({"amount": 500000, "currency": "EUR"})),
        ],
    );
    let signed = signed_event(
        EventKind::Create,
        &id,
        None,
        by,
        1,
        CreatePayload {
            parties: parties(),
            sections: sections.iter().map(|(n, s)| (n.clone(), s.hash)).collect(),
        }
        .to_payload(),
    );
    let state = State::create(
        HashAlg::Blake3,
        id,
        ContractRef::new("settlement", 1),
        parties(),
        sections.clone(),
        Some(signed.id),
        signed.event.timestamp,
    );
    let outcome = Outcome::Applied {
        version: state.version,
        root: state.root,
    };
    let endorsements = endorse(endorsers, signed.id, &state);
    CommitItem {
        event: recorded(signed, &sections, outcome, endorsements),
        state: Some(std::sync::Arc::new(state)),
    }
}

/// An applied change of `prev`'s price by `by`, endorsed by `endorsers`.
fn change(prev: &State, amount: u64, by: &Signer, seq: u64, endorsers: &[&str]) -> CommitItem {
    let sections = seal(
        &format!("deal-1/{}", prev.version + 1),
        &[("price", json!({"amount": amount, "currency": "EUR"}))],
    );
    let signed = signed_event(
        EventKind::ChangeSections,
        &prev.id,
        Some(Base {
            version: prev.version,
            root: prev.root,
        }),
        by,
        seq,
        ChangePayload {
            sections: sections.iter().map(|(n, s)| (n.clone(), s.hash)).collect(),
        }
        .to_payload(),
    );
    let state = prev.next(sections.clone(), Some(signed.id), signed.event.timestamp);
    let outcome = Outcome::Applied {
        version: state.version,
        root: state.root,
    };
    let endorsements = endorse(endorsers, signed.id, &state);
    CommitItem {
        event: recorded(signed, &sections, outcome, endorsements),
        state: Some(std::sync::Arc::new(state)),
    }
}

/// A change intent on `state` rejected with `reason` (no endorsements).
fn rejected(state: &State, by: &Signer, seq: u64, reason: RejectReason) -> CommitItem {
    let signed = signed_event(
        EventKind::ChangeSections,
        &state.id,
        Some(Base {
            version: state.version,
            root: state.root,
        }),
        by,
        seq,
        ChangePayload {
            sections: BTreeMap::new(),
        }
        .to_payload(),
    );
    CommitItem {
        event: recorded(
            signed,
            &BTreeMap::new(),
            Outcome::Rejected { reason },
            Vec::new(),
        ),
        state: None,
    }
}

/// What a test returns: its fixtures' store errors, as they come.
type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn state_of(item: &CommitItem) -> TestResult<State> {
    Ok(item
        .state
        .as_deref()
        .cloned()
        .ok_or("an applied item has a state")?)
}

/// Every participant node: the endorsements `all` needs.
const ALL: &[&str] = &["bank", "homes", "check"];

/// The change of [`deal`] as its endorsers see it.
struct Proposal {
    /// Its event id.
    event: EventId,
    /// The version it was based on (1).
    base: State,
    /// The version it produces (2).
    next: State,
}

impl Proposal {
    /// `node`'s endorsement of the change producing `root` (the change's own, or another).
    fn endorsed_by(&self, node: &str, root: &StateRoot) -> Endorsement {
        Endorsement::sign(
            NodeId::from(node),
            &node_key(node),
            &self.event,
            &self.next.id,
            self.next.version,
            root,
        )
    }
}

/// What [`deal`] committed.
struct Deal {
    store: MemoryStore,
    /// The create (version 1) and the change (version 2).
    events: [EventId; 2],
}

/// A store holding the cast and the settlement contract (`policy`; home-node protocol when
/// `None`), and the create of `deal-1` by Sue, endorsed by every participant node (not
/// committed yet).
async fn setup(policy: Option<EndorsementPolicy>) -> TestResult<(MemoryStore, Cast, CommitItem)> {
    let store = MemoryStore::new();
    let cast = cast();
    for (actor, _) in [&cast.bob, &cast.sue, &cast.ina] {
        store.put_actor(actor).await?;
    }
    store.put_contract(&settlement(policy, &cast.sue)).await?;
    let create = create(&cast.sue, ALL);
    Ok((store, cast, create))
}

/// `deal-1` created as in [`setup`], then its price changed by Bob, endorsed by every
/// participant node and passed through `tamper` before it is committed (the way a faulty or
/// dishonest home node would record it).
async fn deal(
    policy: Option<EndorsementPolicy>,
    tamper: impl FnOnce(&mut Vec<Endorsement>, &Proposal),
) -> TestResult<Deal> {
    let (store, cast, c) = setup(policy).await?;
    let v1 = state_of(&c)?;
    let mut x = change(&v1, 490_000, &cast.bob, 1, ALL);
    let proposal = Proposal {
        event: x.event.id(),
        base: v1,
        next: state_of(&x)?,
    };
    tamper(&mut x.event.endorsements, &proposal);
    let events = [c.event.id(), x.event.id()];
    store.commit(CommitBatch::new(vec![c, x])).await?;
    Ok(Deal { store, events })
}

async fn verify_anchored(store: &MemoryStore) -> TestResult<VerifyReport> {
    Ok(verify_store_with(store, &anchors(), &mut |_, _| {}).await?)
}

fn texts(report: &VerifyReport) -> Vec<String> {
    report.findings.iter().map(Finding::to_string).collect()
}

/// The one finding of `report`: an endorsement finding on the event table, naming the change
/// (`event`, version 2 of `deal-1`) and holding each of `says`.
fn one_endorsement_finding(report: &VerifyReport, event: &EventId, says: &[&str]) -> TestResult {
    assert!(
        report.findings.len() == 1,
        "one finding expected: {:?}",
        texts(report)
    );
    let f = &report.findings[0];
    assert!(
        (f.table, f.rule) == (PeerTable::Event, Rule::Endorsement),
        "an endorsement finding on the event table expected: {f}"
    );
    assert!(
        f.event.as_deref() == Some(event.to_string().as_str())
            && f.version == Some(2)
            && f.state_id.as_str() == "deal-1",
        "the finding names the change (version 2 of deal-1): {f}"
    );
    assert!(
        f.to_string()
            .starts_with("[event/endorsement] deal-1 v2 event "),
        "display: {f}"
    );
    for s in says {
        assert!(f.problem.contains(s), "`{s}` missing from: {f}");
    }
    Ok(())
}

fn drop_node(endorsements: &mut Vec<Endorsement>, node: &str) {
    endorsements.retain(|e| e.node.as_str() != node);
}

fn roles(names: &[&str]) -> EndorsementPolicy {
    EndorsementPolicy::Roles {
        roles: names.iter().map(|r| Role((*r).to_owned())).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Clean stores

#[tokio::test]
async fn valid_endorsements_verify_clean_under_every_policy() -> TestResult {
    for policy in [
        EndorsementPolicy::All,
        EndorsementPolicy::KOfN { k: 2 },
        roles(&["seller", "inspector"]),
    ] {
        let d = deal(Some(policy.clone()), |_, _| {}).await?;
        let report = verify_anchored(&d.store).await?;
        assert!(report.is_clean(), "{policy:?}: {:?}", texts(&report));
        assert!(report.anchored);
        assert_eq!(
            report.endorsed, 2,
            "{policy:?}: both applied events checked"
        );
    }
    Ok(())
}

#[tokio::test]
async fn endorsements_beyond_what_a_policy_needs_are_harmless() -> TestResult {
    // k of n: two of the three participant nodes are enough.
    let d = deal(Some(EndorsementPolicy::KOfN { k: 2 }), |e, _| {
        drop_node(e, "check")
    })
    .await?;
    let report = verify_anchored(&d.store).await?;
    assert!(report.is_clean(), "{:?}", texts(&report));
    // roles: the buyer's node need not endorse, and its endorsement beside the seller's and
    // the inspector's changes nothing.
    for tamper in [
        |e: &mut Vec<Endorsement>| drop_node(e, "bank"),
        |_: &mut Vec<Endorsement>| {},
    ] {
        let d = deal(Some(roles(&["seller", "inspector"])), |e, _| tamper(e)).await?;
        let report = verify_anchored(&d.store).await?;
        assert!(report.is_clean(), "{:?}", texts(&report));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Each fault: exactly one finding naming the event

/// The deal on `policy` with its change recorded after `tamper`: verify reports exactly one
/// endorsement finding, naming the change and saying each of `says`.
async fn one_fault(
    policy: EndorsementPolicy,
    tamper: impl FnOnce(&mut Vec<Endorsement>, &Proposal),
    says: &[&str],
) -> TestResult {
    let d = deal(Some(policy), tamper).await?;
    let report = verify_anchored(&d.store).await?;
    one_endorsement_finding(&report, &d.events[1], says)
}

#[tokio::test]
async fn a_forged_endorsement_is_one_finding_naming_the_event_and_node() -> TestResult {
    let flip = |e: &mut Vec<Endorsement>, _: &Proposal| {
        for bank in e.iter_mut().filter(|e| e.node.as_str() == "bank") {
            bank.signature.0[7] ^= 0x01;
        }
    };
    let says = ["endorsement by `bank` does not verify"];
    one_fault(EndorsementPolicy::All, flip, &says).await
}

#[tokio::test]
async fn a_missing_endorsement_is_one_finding_naming_the_node() -> TestResult {
    let says = [
        "settlement@1",
        "policy all",
        "endorsements missing from `check`",
    ];
    one_fault(EndorsementPolicy::All, |e, _| drop_node(e, "check"), &says).await
}

#[tokio::test]
async fn an_event_without_any_endorsement_is_one_finding() -> TestResult {
    let says = ["endorsements missing from `bank`, `check`, `homes`"];
    one_fault(EndorsementPolicy::All, |e, _| e.clear(), &says).await
}

#[tokio::test]
async fn an_endorsement_by_a_registered_node_that_is_not_a_participant_is_one_finding() -> TestResult
{
    // `gov` is registered and signs validly: it just runs no actor of the deal.
    let add_gov = |e: &mut Vec<Endorsement>, p: &Proposal| {
        e.push(p.endorsed_by("gov", &p.next.root));
    };
    let says = ["node `gov` endorsed but is not a participant of the state"];
    one_fault(EndorsementPolicy::All, add_gov, &says).await
}

#[tokio::test]
async fn an_endorsement_by_an_unregistered_node_is_one_finding() -> TestResult {
    let add_mallory = |e: &mut Vec<Endorsement>, p: &Proposal| {
        e.push(Endorsement::sign(
            NodeId::from("mallory"),
            &NodeKey::from_seed(seed_of("mallory")),
            &p.event,
            &p.next.id,
            p.next.version,
            &p.next.root,
        ));
    };
    let says = [
        "endorsement by `mallory` does not verify",
        "not in the node registry",
    ];
    one_fault(EndorsementPolicy::KOfN { k: 2 }, add_mallory, &says).await
}

#[tokio::test]
async fn an_endorsement_over_another_root_is_one_finding() -> TestResult {
    // A valid signature by a participant node, over the root of the version the change was
    // based on instead of the one it produced.
    let over_base = |e: &mut Vec<Endorsement>, p: &Proposal| {
        drop_node(e, "homes");
        e.push(p.endorsed_by("homes", &p.base.root));
    };
    let says = ["endorsement by `homes` does not verify"];
    one_fault(EndorsementPolicy::All, over_base, &says).await
}

#[tokio::test]
async fn a_node_endorsing_twice_is_caught() -> TestResult {
    // A store refuses a batch with two endorsements by one node, so the duplicate can only
    // come from an edit behind the store's back: the policy rule names it, and the log record
    // (which binds the endorsements) no longer matches.
    let d = deal(Some(EndorsementPolicy::KOfN { k: 2 }), |_, _| {}).await?;
    let change = d.events[1];
    d.store.tamper_events(|events| {
        for rec in events.iter_mut().filter(|r| r.id() == change) {
            rec.endorsements.retain(|e| e.node.as_str() == "bank");
            let bank = rec.endorsements[0].clone();
            rec.endorsements.push(bank);
        }
    })?;
    let report = verify_anchored(&d.store).await?;
    assert!(
        report.findings.iter().any(|f| f.rule == Rule::Endorsement
            && f.event == Some(change.to_string())
            && f.problem.contains("node `bank` endorsed twice")),
        "{:?}",
        texts(&report)
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| (f.table, f.rule) == (PeerTable::Event, Rule::LogRecord)),
        "{:?}",
        texts(&report)
    );
    Ok(())
}

#[tokio::test]
async fn too_few_endorsements_for_k_of_n_is_one_finding() -> TestResult {
    let only_bank =
        |e: &mut Vec<Endorsement>, _: &Proposal| e.retain(|e| e.node.as_str() == "bank");
    let says = [
        "policy k_of_n (k = 2)",
        "1 of the required 2 participant nodes endorsed",
    ];
    one_fault(EndorsementPolicy::KOfN { k: 2 }, only_bank, &says).await
}

#[tokio::test]
async fn a_named_role_whose_node_did_not_endorse_is_one_finding() -> TestResult {
    let says = [
        "policy roles [seller, inspector]",
        "endorsements missing from `check`",
    ];
    let policy = roles(&["seller", "inspector"]);
    one_fault(policy, |e, _| drop_node(e, "check"), &says).await
}

// ---------------------------------------------------------------------------------------------
// What is not checked, and why

#[tokio::test]
async fn without_a_node_registry_endorsements_are_not_checked_and_the_report_says_so() -> TestResult
{
    // As for receipts: a database cannot vouch for the node keys that signed it.
    let d = deal(Some(EndorsementPolicy::All), |e, _| {
        for bank in e.iter_mut().filter(|e| e.node.as_str() == "bank") {
            bank.signature.0[7] ^= 0x01;
        }
    })
    .await?;
    let report = verify_store(&d.store, &mut |_, _| {}).await?;
    assert!(report.is_clean(), "{:?}", texts(&report));
    assert!(!report.anchored, "the report says nothing was anchored");
    assert_eq!(report.endorsed, 2, "the endorsed events are still counted");
    Ok(())
}

#[tokio::test]
async fn endorsements_on_events_of_a_home_protocol_contract_are_not_an_error() -> TestResult {
    let d = deal(None, |e, p| {
        drop_node(e, "check");
        e.push(p.endorsed_by("gov", &p.base.root));
    })
    .await?;
    let report = verify_anchored(&d.store).await?;
    assert!(report.is_clean(), "{:?}", texts(&report));
    assert_eq!(report.endorsed, 0);
    Ok(())
}

#[tokio::test]
async fn rejected_not_endorsed_and_timed_out_events_need_no_endorsements() -> TestResult {
    let d = deal(Some(EndorsementPolicy::All), |_, _| {}).await?;
    let head = d
        .store
        .state(&StateId::from("deal-1"))
        .await?
        .ok_or("deal-1 is held")?;
    let bob = cast().bob;
    let refused = rejected(
        &head,
        &bob,
        2,
        RejectReason::NotEndorsed {
            refusals: vec![EndorserRefusal {
                node: NodeId::from("check"),
                reason: RejectReason::StaleBase {
                    expected_version: 2,
                    found_version: 3,
                },
            }],
        },
    );
    let timed_out = rejected(
        &head,
        &bob,
        3,
        RejectReason::EndorsementTimeout {
            missing: vec![NodeId::from("check")],
            timeout_ms: 5_000,
        },
    );
    d.store
        .commit(CommitBatch::new(vec![refused, timed_out]))
        .await?;
    let report = verify_anchored(&d.store).await?;
    assert!(report.is_clean(), "{:?}", texts(&report));
    assert_eq!(
        (report.events, report.endorsed),
        (4, 2),
        "only the applied events are endorsed"
    );
    Ok(())
}

#[tokio::test]
async fn an_endorsement_removed_from_the_database_after_the_commit_is_caught_twice() -> TestResult {
    // The log record binds the endorsements, and the policy is no longer met.
    let d = deal(Some(EndorsementPolicy::All), |_, _| {}).await?;
    let change = d.events[1];
    d.store.tamper_events(|events| {
        for rec in events.iter_mut().filter(|r| r.id() == change) {
            drop_node(&mut rec.endorsements, "homes");
        }
    })?;
    let report = verify_anchored(&d.store).await?;
    let rules: Vec<(PeerTable, Rule)> = report.findings.iter().map(|f| (f.table, f.rule)).collect();
    assert!(
        rules.contains(&(PeerTable::Event, Rule::Endorsement))
            && rules.contains(&(PeerTable::Event, Rule::LogRecord)),
        "{:?}",
        texts(&report)
    );
    assert!(
        report
            .findings
            .iter()
            .filter(|f| f.rule == Rule::Endorsement)
            .all(|f| f.event == Some(change.to_string()) && f.problem.contains("`homes`")),
        "{:?}",
        texts(&report)
    );
    Ok(())
}

#[tokio::test]
async fn only_a_verified_contract_record_decides_that_a_contract_is_endorsed() -> TestResult {
    // The stored descriptor rewritten to the home protocol, and the change committed without
    // endorsements: the rewritten record does not verify, and is reported as such.
    let d = deal(Some(EndorsementPolicy::All), |e, _| e.clear()).await?;
    d.store.tamper_contracts(|contracts| {
        for (_, c) in contracts.iter_mut() {
            c.descriptor.sync = None;
        }
    })?;
    let report = verify_anchored(&d.store).await?;
    assert!(
        report
            .findings
            .iter()
            .any(|f| (f.table, f.rule) == (PeerTable::Contract, Rule::Contract)),
        "{:?}",
        texts(&report)
    );
    assert!(
        report.findings.iter().all(|f| f.rule != Rule::Endorsement),
        "an unverified descriptor decides nothing: {:?}",
        texts(&report)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Participant nodes after an actor change

/// An applied actor change by `target` itself giving it the record `after`, with its receipt.
fn actor_change(target: &Signer, after: &Actor, seq: u64) -> CommitItem {
    let (actor, key) = target;
    let mut e = signed_event(
        EventKind::ActorChange,
        &ActorChange::state_id(&actor.id),
        None,
        target,
        seq,
        ActorChange {
            actor: after.clone(),
            previous_key: actor.public_key,
        }
        .to_payload(),
    )
    .event;
    e.contract = ActorChange::contract();
    let signed = SignedEvent::sign(e, key);
    let root = ActorChange::root(signed.id);
    CommitItem {
        event: recorded(
            signed,
            &BTreeMap::new(),
            Outcome::Applied { version: 0, root },
            Vec::new(),
        ),
        state: None,
    }
}

/// `deal-1` created (endorsed by every participant node), Ina's key rotated (she stays on
/// node `check`), then the price changed with endorsements by `endorsers`.
async fn rotated_inspector(endorsers: &[&str]) -> TestResult<(VerifyReport, EventId)> {
    let (store, cast, c) = setup(Some(EndorsementPolicy::All)).await?;
    let v1 = state_of(&c)?;
    let rotated = Actor {
        public_key: ActorKey::from_seed(seed_of("ina, rotated")).public_key(),
        ..cast.ina.0.clone()
    };
    let r = actor_change(&cast.ina, &rotated, 1);
    store.commit(CommitBatch::new(vec![c, r])).await?;
    store.put_actor(&rotated).await?;
    let x = change(&v1, 480_000, &cast.bob, 1, endorsers);
    let id = x.event.id();
    store.commit(CommitBatch::new(vec![x])).await?;
    Ok((verify_anchored(&store).await?, id))
}

#[tokio::test]
async fn an_actor_change_keeps_its_actors_node_a_participant() -> TestResult {
    let (report, _) = rotated_inspector(ALL).await?;
    assert!(report.is_clean(), "{:?}", texts(&report));
    assert_eq!((report.events, report.endorsed), (3, 2));
    let (report, change) = rotated_inspector(&["bank", "homes"]).await?;
    one_endorsement_finding(&report, &change, &["endorsements missing from `check`"])
}
