//! The `export const contract = {…}` object of a contract module: its name, version, sections
//! with read/write roles, the versions it supersedes, its budgets and the sync protocol its
//! states use, read as typed data and checked.

use std::collections::BTreeMap;

use serde::Deserialize;
use sst_core::{
    ContractLimits, ContractPolicy, ContractRef, EndorsementPolicy, SectionPolicy, SyncSpec,
    DEFAULT_ENDORSEMENT_TIMEOUT_MS,
};

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
    #[serde(default)]
    sync: Option<SyncManifest>,
}

/// `contract.sync` as written: `{ protocol: "home" }` or `{ protocol: "endorsed", policy:
/// { kind: "all" | "k_of_n", k | "roles", roles: [...] }, timeout_ms }`. Read loosely (strings
/// and optional fields) so that each mistake gets its own [`SyncChoiceError`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncManifest {
    protocol: String,
    #[serde(default)]
    policy: Option<PolicyManifest>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyManifest {
    kind: String,
    #[serde(default)]
    k: Option<u32>,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// Shortest endorsement timeout a contract may choose (milliseconds): below it a loopback
/// round trip under load already times out.
pub const MIN_ENDORSEMENT_TIMEOUT_MS: u64 = 50;
/// Longest endorsement timeout a contract may choose (milliseconds): the state stays
/// serialised while a proposal is open, so a longer wait blocks its next change that long.
pub const MAX_ENDORSEMENT_TIMEOUT_MS: u64 = 600_000;

/// Why a contract module's `contract.sync` (its choice of sync protocol) is refused at deploy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncChoiceError {
    /// `protocol` names no protocol this engine knows.
    #[error("contract.sync.protocol `{0}` is unknown (known: `home`, `endorsed`)")]
    UnknownProtocol(String),
    /// `endorsed` without a `policy`.
    #[error("contract.sync.policy is required for the `endorsed` protocol ({{ kind: \"all\" }}, {{ kind: \"k_of_n\", k }} or {{ kind: \"roles\", roles: [...] }})")]
    MissingPolicy,
    /// `home` with a `policy` or `timeout_ms`, which only `endorsed` uses.
    #[error("contract.sync.{0} only applies to the `endorsed` protocol")]
    NotForHome(&'static str),
    /// `policy.kind` names no policy.
    #[error("contract.sync.policy.kind `{0}` is unknown (known: `all`, `k_of_n`, `roles`)")]
    UnknownPolicy(String),
    /// A field that does not belong to the policy's kind (`k` outside `k_of_n`, `roles`
    /// outside `roles`).
    #[error("contract.sync.policy.{field} does not apply to kind `{kind}`")]
    FieldNotForKind {
        /// The field.
        field: &'static str,
        /// The policy kind.
        kind: String,
    },
    /// `k_of_n` without `k`, or with `k` = 0.
    #[error("contract.sync.policy.k must be at least 1 for `k_of_n`")]
    ZeroK,
    /// `roles` without roles.
    #[error("contract.sync.policy.roles names no role")]
    NoRoles,
    /// A role in `roles` is empty or named twice.
    #[error("contract.sync.policy.roles: role `{0}` is empty or named twice")]
    BadRole(String),
    /// `timeout_ms` outside [`MIN_ENDORSEMENT_TIMEOUT_MS`]..=[`MAX_ENDORSEMENT_TIMEOUT_MS`].
    #[error("contract.sync.timeout_ms = {0} is outside {MIN_ENDORSEMENT_TIMEOUT_MS}..={MAX_ENDORSEMENT_TIMEOUT_MS}")]
    Timeout(u64),
}

impl SyncManifest {
    /// The descriptor's `sync`: `None` for `home` (a descriptor without a choice uses the home
    /// protocol, so a contract naming it keeps the identity it would have without it).
    fn spec(self) -> Result<Option<SyncSpec>, SyncChoiceError> {
        match self.protocol.as_str() {
            "home" => {
                if self.policy.is_some() {
                    return Err(SyncChoiceError::NotForHome("policy"));
                }
                if self.timeout_ms.is_some() {
                    return Err(SyncChoiceError::NotForHome("timeout_ms"));
                }
                Ok(None)
            }
            "endorsed" => {
                let policy = self
                    .policy
                    .ok_or(SyncChoiceError::MissingPolicy)?
                    .policy()?;
                let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_ENDORSEMENT_TIMEOUT_MS);
                if !(MIN_ENDORSEMENT_TIMEOUT_MS..=MAX_ENDORSEMENT_TIMEOUT_MS).contains(&timeout_ms)
                {
                    return Err(SyncChoiceError::Timeout(timeout_ms));
                }
                Ok(Some(SyncSpec::Endorsed { policy, timeout_ms }))
            }
            other => Err(SyncChoiceError::UnknownProtocol(other.to_owned())),
        }
    }
}

impl PolicyManifest {
    fn policy(self) -> Result<EndorsementPolicy, SyncChoiceError> {
        let not_for = |field| SyncChoiceError::FieldNotForKind {
            field,
            kind: self.kind.clone(),
        };
        match self.kind.as_str() {
            "all" | "k_of_n" | "roles" => {}
            other => return Err(SyncChoiceError::UnknownPolicy(other.to_owned())),
        }
        if self.k.is_some() && self.kind != "k_of_n" {
            return Err(not_for("k"));
        }
        if self.roles.is_some() && self.kind != "roles" {
            return Err(not_for("roles"));
        }
        match self.kind.as_str() {
            "all" => Ok(EndorsementPolicy::All),
            "k_of_n" => match self.k {
                Some(k) if k > 0 => Ok(EndorsementPolicy::KOfN { k }),
                _ => Err(SyncChoiceError::ZeroK),
            },
            _ => {
                let roles = self.roles.unwrap_or_default();
                if roles.is_empty() {
                    return Err(SyncChoiceError::NoRoles);
                }
                let mut seen = std::collections::BTreeSet::new();
                for role in &roles {
                    if role.is_empty() || role.trim() != role || !seen.insert(role.as_str()) {
                        return Err(SyncChoiceError::BadRole(role.clone()));
                    }
                }
                Ok(EndorsementPolicy::Roles {
                    roles: roles.into_iter().map(Into::into).collect(),
                })
            }
        }
    }
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
    pub(crate) sync: Option<SyncSpec>,
}

impl Manifest {
    /// The contract reference (for error messages, before the rest is checked).
    pub(crate) fn contract(&self) -> ContractRef {
        ContractRef::new(self.name.clone(), self.version)
    }

    /// Checks names, roles, budgets and the sync choice.
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
        let sync = match self.sync {
            Some(choice) => choice.spec().map_err(|e| e.to_string())?,
            None => None,
        };
        Ok(Checked {
            contract,
            policy,
            supersedes: self.supersedes,
            limits,
            sync,
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
