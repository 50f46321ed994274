//! # sst-node
//!
//! The SST node engine on top of any [`sst_core::Store`]:
//!
//! - **Layers** (imports point one way): [`node`] (the public [`Node`] API) → the inbox task
//!   and the sequencer → intent building ([`build`], [`EventBuilder`]) and the [`pipeline`] →
//!   [`sync`] protocols → the shared [`NodeContext`] → [`transport`] and [`message`]. No file
//!   imports one above it.
//! - **Sequencer**: one writer task per node receives every job (local actors' intents,
//!   intents forwarded by other nodes, replicated changes) through one channel, assigns origin
//!   sequence numbers to local intents, runs each through the pipeline and group-commits what
//!   it drained in one store batch, planning the next group while the previous one commits
//!   (groups still commit one at a time, in order). It never waits for a peer: committed
//!   messages go to the **outbox**, one sender task per peer, so a slow or dead peer delays
//!   only its own messages.
//! - **Verification pool**: signed events that arrive from outside (client-signed submits,
//!   forwarded intents, replicated changes and their receipts) are strictly verified on a
//!   pool of threads sized to the machine ([`NodeConfig::verify_workers`]) before they reach
//!   the sequencer, in arrival order; the pipeline re-checks whatever the pool did not
//!   verify, or verified under a key the directory no longer holds.
//! - **Inbox**: a bounded queue per node (backpressure); each delivery carries the sender
//!   identity its [`Transport`] authenticated — a node never trusts a sender named inside a
//!   message — and its [`ProtocolEnvelope`] goes to the protocol it names.
//! - **Pipeline** ([`pipeline`]): strict signature → actor known and active → contract version
//!   held → base matches the current state → write permission on every touched section →
//!   contract logic → commit *applied*, or commit *rejected* with a typed
//!   [`sst_core::RejectReason`]. Never a partial apply.
//! - **Contracts** ([`Contract`], [`ContractRegistry`], [`contracts`]): code that declares
//!   its sections with read/write roles and turns method calls into section changes and
//!   named business events; every version has an identity hash (over its descriptor,
//!   including the hash of its source and its engine) recorded in the contract table and
//!   signed by its deployer. Native Rust contracts are compiled in; other languages run
//!   through a [`ContractEngine`] registered with [`ContractRegistry::with_engine`], which
//!   loads the deployed artifact (descriptor + source). Descriptors of native code are
//!   computed once when it is added to the registry, identities checked once at deploy or
//!   load.
//! - **Deployment** ([`Node::deploy_contract`], [`Intent::Deploy`], [`DeployPayload`]): a
//!   signed [`sst_core::EventKind::DeployContract`] event carrying the record, sequenced by
//!   the deployer's node and sent to every peer node (a node that was offline gets it by
//!   catch-up); each node checks the record and that its code loads, records the event with
//!   the deploying node's receipt and installs the version without a restart, or records a
//!   refusal naming why. At start, engine-run versions are loaded again from their verified
//!   stored source ([`contract::check_deployed`]). [`Node::deploy`] stays the out-of-band
//!   install of native code.
//! - **Validating replicas**: a receiving node that may read every section of a state runs
//!   each received method call again (same actor, roles, timestamp and event id) and
//!   compares the changed section values and business events with the home's; a different
//!   result is refused (`execution_mismatch`) and shows in the home's sync status. Other
//!   nodes rely on the home's signed receipt; [`NodeSync::validated`] and
//!   [`Node::validation_counts`] say which nodes re-executed what.
//! - **Sync** ([`SyncProtocol`], [`SyncRegistry`], [`HomeSync`]): a protocol owns routing (sequence
//!   here or forward to whom), its messages (a protocol-tagged, versioned
//!   [`ProtocolEnvelope`]), its receive rules ([`Inbound`], [`Admission`]), what to send after
//!   a commit, catch-up and the start handshake; the registry picks one per contract. In the
//!   default [`HomeSync`] each state's *home node* (the node that created it) sequences its
//!   events; other nodes forward intents to it; it distributes applied changes to every
//!   participant node **redacted** to what that node may read, and sends rejections back to
//!   the initiator. [`InProcessNetwork`] is the in-process [`Transport`].
//! - **Endorsed commits** ([`EndorsedSync`], protocol `endorsed`): a contract version whose
//!   descriptor chooses it ([`Contract::sync`], [`sst_core::SyncSpec::Endorsed`]) keeps the
//!   home mechanics, but the home commits a change only once an endorsement policy of
//!   participant nodes is met (all, k of n, or named roles' nodes): each endorser validates
//!   the proposal like a received change (and by its own [`EndorsementGuard`]) and signs an
//!   [`sst_core::Endorsement`]; a refusal rejects it `not_endorsed`, silence
//!   `endorsement_timeout`. Replicas apply such a change only with endorsements that meet the
//!   policy, and store them with the event. Both protocols run side by side on the same
//!   nodes; [`Node::protocol_of`] and [`SyncStatus::protocol`] say which a state uses.
//! - **Actors** ([`Node::rotate_key`], [`Node::revoke`], [`Intent::RotateKey`],
//!   [`Intent::Revoke`]): key rotation and revocation are signed
//!   [`sst_core::EventKind::ActorChange`] events with payload
//!   `{"actor": <new record>, "previous_key": "<hex>"}` on the reserved state id
//!   `actor:<actor id>`, recorded applied with version 0 and no state. The actor's own node
//!   sequences them; a rotation must be signed by the actor itself with its current (old) key,
//!   a revocation by any active actor of the same node. Every peer node receives them, checks
//!   them against the key valid before the change, records them and updates its directory;
//!   afterwards events signed with the old key are rejected (`bad_signature`) and a revoked
//!   actor's events `revoked_actor`, while [`sst_core::verify_store`] checks each older event
//!   against the key valid at its position. [`Node::register_actor`] stays an out-of-band
//!   directory update (not in the log), for introducing actors.
//!
//! - **Tamper evidence** ([`NodeConfig::node_key`], [`NodeConfig::registry`]): the node that
//!   sequences an event signs a receipt over its outcome, stored with the record everywhere;
//!   replicas refuse changes without a valid one. The node signs checkpoints of its
//!   hash-chained log (throttled, and at idle and [`Node::shutdown`]); peers witness them and
//!   raise a [`WitnessAlarm`] on a rolled-back or forked log ([`Node::witness_alarms`],
//!   [`SyncStatus::witness_alarms`]). [`Node::start`] refuses a store whose own log or latest
//!   checkpoint does not verify ([`NodeError::LogDoesNotVerify`]).
//!
//! ## Disclosure rules
//! Create and change events carry salted section hashes in their signed payload
//! ([`sst_core::CreatePayload`], [`sst_core::ChangePayload`]); plaintext and salt travel beside the event as
//! [`sst_core::Disclosure`]s, only to nodes allowed to read the section. **A `CallMethod`
//! event's `args` are part of the signed payload and are therefore seen by every node that
//! receives the event: pass private data with a `ChangeSections` intent instead.** So are
//! the business events a method emits (every participant node receives them all: the home's
//! receipt covers them). The home node runs contract methods, so it must be able to read
//! every section of its states.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod build;
mod checkpoint;
mod context;
pub mod contract;
pub mod contracts;
pub mod error;
mod inbox;
pub mod message;
pub mod node;
pub mod pipeline;
mod sequencer;
pub mod sync;
pub mod transport;
mod verify;

pub use build::{Built, EventBuilder};
pub use context::{NodeContext, ProtocolChoice, ValidationCounts};
pub use contract::{
    Call, Contract, ContractEngine, ContractError, ContractRegistry, EndorsementGuard, LoadError,
    MethodOutput, Sections, SectionsIter, MIGRATE_METHOD,
};
pub use error::{NodeError, RecordProblem};
pub use message::{
    Acknowledged, AppliedChange, DeployPayload, EndorsementAnswer, EndorsementGiven,
    EndorsementRefused, ForwardedIntent, Intent, IntentRefused, NodeSync, Proposal,
    ProtocolEnvelope, Rejection, ReplicaRefusal, StateWitness, SyncStatus, Verdict, WitnessAlarm,
    WitnessAlarmKind,
};
pub use node::{Node, NodeConfig};
pub use sync::{
    Admission, EndorsedMessage, EndorsedSync, HomeMessage, HomeSync, Inbound, Route, SyncProtocol,
    SyncRegistry,
};
pub use transport::{
    Delivery, InProcessNetwork, InProcessTransport, Inbox, Pending, Receipt, Transport,
    TransportError,
};
