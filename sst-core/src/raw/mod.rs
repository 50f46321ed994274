//! What only store adapters (and tests of them) need: the commit decision ([`CommitPlan`],
//! [`ContractPut`]) and the column helpers every adapter maps rows with ([`columns`]). Users
//! of SST never need this module.

pub mod columns;
mod plan;

pub use columns::EventColumns;
pub use plan::{CommitPlan, ContractPut, CurrentRow, CurrentWrite, Lookups, Recorded};
