//! The SST data model: actors, states with hashed (and possibly redacted) sections, events
//! (intents) with their typed payloads and outcomes, and contract records.

mod actor;
mod contract;
mod endorsement;
mod event;
mod ids;
mod node;
mod payload;
mod state;

pub use actor::{Actor, ActorStatus};
pub use contract::{ContractDescriptor, ContractLimits, ContractRecord, EngineRef};
pub use endorsement::{
    check_endorsements, participant_nodes, Endorsement, EndorsementError, EndorsementPolicy,
    EndorserRefusal, PolicyError, PolicyProgress, SyncSpec, DEFAULT_ENDORSEMENT_TIMEOUT_MS,
};
pub use event::{
    Base, BusinessEvent, Event, EventKind, EventRecord, Outcome, OutcomeKind, Refusal,
    RejectReason, SignedEvent,
};
pub use ids::{ActorId, ContractRef, NodeId, OriginSeq, Role, StateId, Timestamp};
pub(crate) use node::verify_node_signature;
pub use node::{NodeRegistry, NodeSignatureError, SequencingReceipt};
pub use payload::{
    ActorChange, CallPayload, ChangePayload, CreatePayload, MigrateArgs, PayloadError,
};
pub use state::{Disclosure, Parties, Section, SectionSeal, State, StateParts};
