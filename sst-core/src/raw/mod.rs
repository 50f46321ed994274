//! What only store adapters (and tests of them) need: the commit decision ([`CommitPlan`],
//! [`ContractPut`]), the foreign-table rule of `migrate` ([`check_peer_layout`], with the
//! columns later releases added: [`columns_to_add`]), the column helpers every adapter maps
//! rows with ([`columns`]) and the event table's disclosures column, which names section
//! versions ([`DisclosureColumn`], read back as [`StoredEvent`]). Users of SST never need
//! this module.

pub mod columns;
mod disclosures;
mod layout;
mod plan;

pub use columns::EventColumns;
pub use disclosures::{
    section_keys, DisclosureColumn, SectionKey, SectionVersionRef, StoredDisclosure, StoredEvent,
};
pub use layout::{
    check_peer_layout, columns_to_add, first_layout_disagreement, NameCase,
    FIRST_LAYOUT_CURRENT_ONLY,
};
pub use plan::{
    CommitPlan, ContractPut, CurrentRow, CurrentWrite, DataWrite, Lookups, RecordDigests, Recorded,
    SectionVersion, RACE_RETRIES,
};
