//! The `export const contract = {…}` object of a contract module: its name, version, sections
//! with read/write roles, the versions it supersedes and its budgets, read as typed data and
//! checked.

use std::collections::BTreeMap;

use serde::Deserialize;
use sst_core::{ContractLimits, ContractPolicy, ContractRef, SectionPolicy};

/// Budgets a contract gets when its manifest names none (each may be overridden alone).
pub const DEFAULT_LIMITS: ContractLimits = ContractLimits {
    ticks: 2_000,
    memory_bytes: 64 * 1024 * 1024,
    stack_bytes: 256 * 1024,
};

/// Smallest memory budget accepted (the budget counts what a call allocates from its module's
/// load on; a small module and call take a few tens of KiB).
pub const MIN_MEMORY_BYTES: u64 = 1024 * 1024;
/// Largest memory budget accepted (one call's runtime).
pub const MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;
/// Smallest stack budget accepted.
pub const MIN_STACK_BYTES: u64 = 32 * 1024;
/// Largest stack budget accepted: contracts run on the node's threads (tokio's workers have
/// 2 MiB stacks), so a larger budget could overflow the thread before QuickJS stops the call.
pub const MAX_STACK_BYTES: u64 = 1024 * 1024;
/// Largest tick budget accepted (a tick is one interrupt check of QuickJS-ng, every 10,000
/// branches or calls of bytecode).
pub const MAX_TICKS: u64 = 1_000_000;

/// The manifest as written in the source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    name: String,
    version: u32,
    sections: BTreeMap<String, SectionRoles>,
    #[serde(default)]
    supersedes: Vec<ContractRef>,
    #[serde(default)]
    limits: LimitsSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SectionRoles {
    read: Vec<String>,
    write: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSpec {
    ticks: Option<u64>,
    memory_bytes: Option<u64>,
    stack_bytes: Option<u64>,
}

/// A checked manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) contract: ContractRef,
    pub(crate) policy: ContractPolicy,
    pub(crate) supersedes: Vec<ContractRef>,
    pub(crate) limits: ContractLimits,
}

impl Manifest {
    /// The contract reference (for error messages, before the rest is checked).
    pub(crate) fn contract(&self) -> ContractRef {
        ContractRef::new(self.name.clone(), self.version)
    }

    /// Checks names, roles and budgets.
    ///
    /// # Errors
    /// A message naming the offending field.
    pub(crate) fn check(self) -> Result<Checked, String> {
        let contract = self.contract();
        if self.name.is_empty() || self.name.contains('@') || self.name.trim() != self.name {
            return Err(format!(
                "contract.name `{}` must be non-empty, without `@` or surrounding spaces",
                self.name
            ));
        }
        if self.version == 0 {
            return Err("contract.version starts at 1".into());
        }
        if self.sections.is_empty() {
            return Err("contract.sections names no section".into());
        }
        let mut policy = ContractPolicy::default();
        for (name, roles) in self.sections {
            if name.is_empty() {
                return Err("contract.sections has an empty section name".into());
            }
            for role in roles.read.iter().chain(&roles.write) {
                if role.is_empty() {
                    return Err(format!("contract.sections.{name}: a role name is empty"));
                }
            }
            policy = policy.section(
                name,
                SectionPolicy::new(
                    roles.read.iter().map(String::as_str),
                    roles.write.iter().map(String::as_str),
                ),
            );
        }
        if self.supersedes.contains(&contract) {
            return Err(format!("contract.supersedes names {contract} itself"));
        }
        let limits = ContractLimits {
            ticks: self.limits.ticks.unwrap_or(DEFAULT_LIMITS.ticks),
            memory_bytes: self
                .limits
                .memory_bytes
                .unwrap_or(DEFAULT_LIMITS.memory_bytes),
            stack_bytes: self
                .limits
                .stack_bytes
                .unwrap_or(DEFAULT_LIMITS.stack_bytes),
        };
        check_range("ticks", limits.ticks, 1, MAX_TICKS)?;
        check_range(
            "memory_bytes",
            limits.memory_bytes,
            MIN_MEMORY_BYTES,
            MAX_MEMORY_BYTES,
        )?;
        check_range(
            "stack_bytes",
            limits.stack_bytes,
            MIN_STACK_BYTES,
            MAX_STACK_BYTES,
        )?;
        Ok(Checked {
            contract,
            policy,
            supersedes: self.supersedes,
            limits,
        })
    }
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "contract.limits.{field} = {value} is outside {min}..={max}"
        ))
    }
}
