//! Contract descriptors and records: the identity of a deployed contract version.

use serde::{Deserialize, Serialize};

use super::{ActorId, ContractRef};
use crate::canonical;
use crate::hash::{Digest, Domain, HashAlg, Hasher};
use crate::permission::ContractPolicy;
use crate::sign::{ActorKey, CryptoError, EnvelopeSignature, PublicKey};

/// The engine that runs a contract version's code, and its version (e.g. `javascript` /
/// `quickjs-ng-0.10`). Part of the descriptor, so part of the contract's identity: the same
/// source under another engine is another contract identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineRef {
    /// Engine id (`native`, `javascript`, …).
    pub id: String,
    /// Engine version: results are only promised identical under one engine version.
    pub version: String,
}

impl EngineRef {
    /// The engine of contracts compiled into the node binary (Rust).
    pub const NATIVE: &'static str = "native";

    /// `id` at `version`.
    pub fn new(id: impl Into<String>, version: impl Into<String>) -> Self {
        EngineRef {
            id: id.into(),
            version: version.into(),
        }
    }
}

impl std::fmt::Display for EngineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id, self.version)
    }
}

/// Deterministic execution budgets of a contract version, recorded in its descriptor so that a
/// call that runs out does so on every node alike (a `contract_limit` rejection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractLimits {
    /// Interrupt-handler ticks a call may use (counts bytecode progress, not wall time).
    pub ticks: u64,
    /// Bytes of engine memory a call may hold.
    pub memory_bytes: u64,
    /// Bytes of engine stack a call may use.
    pub stack_bytes: u64,
}

/// The artifact that identifies a contract version: its section policy, methods, what it
/// supersedes, the engine that runs it and the hash of its code. Its canonical hash is the
/// contract's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractDescriptor {
    /// Name and version.
    pub contract: ContractRef,
    /// Section read/write roles.
    pub policy: ContractPolicy,
    /// Method names the contract implements.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Earlier versions this one supersedes (their states may migrate to it).
    #[serde(default)]
    pub supersedes: Vec<ContractRef>,
    /// Hash of the contract's code artifact ([`ContractDescriptor::code_hash_of`]).
    pub code_hash: Digest,
    /// The engine that runs the code; absent for native (compiled-in Rust) contracts, whose
    /// identities therefore stay as they were before engines existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineRef>,
    /// Execution budgets (engines that enforce them; absent for native contracts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ContractLimits>,
    /// The sync protocol its states use; absent means the home-node protocol (so the
    /// identities of contracts that do not choose stay as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<super::SyncSpec>,
}

impl ContractDescriptor {
    /// Hash of a contract's source artifact: `H(sst/contract-code/v1, name@version, source)`
    /// (BLAKE3, envelope domain).
    pub fn code_hash_of(contract: &ContractRef, source: &str) -> Digest {
        crate::hash::hash_parts(
            HashAlg::Blake3,
            Domain::Envelope,
            &[
                b"sst/contract-code/v1",
                contract.to_string().as_bytes(),
                source.as_bytes(),
            ],
        )
    }

    /// The sync protocol's name: `home` unless the descriptor chooses another.
    pub fn protocol(&self) -> &'static str {
        self.sync.as_ref().map_or("home", super::SyncSpec::protocol)
    }

    /// The endorsement policy, when the descriptor chooses the `endorsed` protocol.
    pub fn endorsement_policy(&self) -> Option<&super::EndorsementPolicy> {
        self.sync
            .as_ref()
            .and_then(super::SyncSpec::endorsement_policy)
    }

    /// The engine id (`native` when none is named).
    pub fn engine_id(&self) -> &str {
        self.engine
            .as_ref()
            .map_or(EngineRef::NATIVE, |e| e.id.as_str())
    }
}

/// A deployed contract version as held in the contract table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractRecord {
    /// The artifact.
    pub descriptor: ContractDescriptor,
    /// `H(sst/contract/v1, canonical(descriptor))`.
    pub identity: Digest,
    /// Who deployed it.
    pub deployer: ActorId,
    /// Deployer's signature over the identity.
    pub signature: EnvelopeSignature,
    /// The code artifact (source text) of a contract run by an engine, stored and replicated
    /// with the record; absent for native contracts (their code is compiled into the node).
    /// Its hash must be the descriptor's `code_hash`, which the identity and so the
    /// deployer's signature cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl ContractRecord {
    /// Computes the identity of `descriptor` and signs it as `deployer`.
    pub fn sign(
        descriptor: ContractDescriptor,
        alg: HashAlg,
        deployer: ActorId,
        key: &ActorKey,
    ) -> Self {
        let identity = Self::identity_of(&descriptor, alg);
        ContractRecord {
            signature: EnvelopeSignature {
                signer: deployer.clone(),
                signature: key.sign_digest(&identity),
            },
            descriptor,
            identity,
            deployer,
            source: None,
        }
    }

    /// The same record carrying its code artifact (see [`ContractRecord::source`]).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The identity hash of a descriptor.
    pub fn identity_of(descriptor: &ContractDescriptor, alg: HashAlg) -> Digest {
        let mut h = Hasher::new(alg, Domain::Contract);
        h.part(&canonical::to_vec_of(descriptor));
        h.finish()
    }

    /// The contract reference.
    pub fn contract(&self) -> &ContractRef {
        &self.descriptor.contract
    }

    /// Checks the identity, the stored code artifact against the descriptor's code hash, and
    /// the deployer's strict signature.
    pub fn verify(&self, deployer_key: &PublicKey) -> Result<(), CryptoError> {
        let computed = Self::identity_of(&self.descriptor, self.identity.alg());
        if computed != self.identity {
            return Err(CryptoError::Integrity(format!(
                "contract {} identity {} does not match its descriptor ({computed})",
                self.descriptor.contract, self.identity
            )));
        }
        if let Some(source) = &self.source {
            let hashed = ContractDescriptor::code_hash_of(&self.descriptor.contract, source);
            if hashed != self.descriptor.code_hash {
                return Err(CryptoError::Integrity(format!(
                    "contract {} stored source hashes to {hashed}, not its code hash {}",
                    self.descriptor.contract, self.descriptor.code_hash
                )));
            }
        }
        deployer_key.verify_digest(&self.identity, &self.signature.signature)
    }
}
