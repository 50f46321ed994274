//! Contract descriptors and records: the identity of a deployed contract version.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ActorId, ContractRef};
use crate::canonical;
use crate::hash::{Digest, Domain, HashAlg, Hasher};
use crate::permission::ContractPolicy;
use crate::sign::{ActorKey, CryptoError, EnvelopeSignature, PublicKey};

/// The artifact that identifies a contract version: its section policy, methods, what it
/// supersedes and the hash of its code. Its canonical hash is the contract's identity.
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
    /// Hash of the contract's code artifact.
    pub code_hash: Digest,
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
        }
    }

    /// The identity hash of a descriptor.
    pub fn identity_of(descriptor: &ContractDescriptor, alg: HashAlg) -> Digest {
        let body = serde_json::to_value(descriptor).unwrap_or(Value::Null);
        let mut h = Hasher::new(alg, Domain::Contract);
        h.part(&canonical::to_vec(&body));
        h.finish()
    }

    /// The contract reference.
    pub fn contract(&self) -> &ContractRef {
        &self.descriptor.contract
    }

    /// Checks the identity and the deployer's strict signature.
    pub fn verify(&self, deployer_key: &PublicKey) -> Result<(), CryptoError> {
        let computed = Self::identity_of(&self.descriptor, self.identity.alg());
        if computed != self.identity {
            return Err(CryptoError::Integrity(format!(
                "contract {} identity {} does not match its descriptor ({computed})",
                self.descriptor.contract, self.identity
            )));
        }
        deployer_key.verify_digest(&self.identity, &self.signature.signature)
    }
}
