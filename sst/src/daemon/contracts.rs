//! The built-in contract code a daemon can load by `name@version` (`[[contract]]` in its
//! config), and the signed deployment records of the configured versions.

use std::sync::Arc;

use anyhow::Context;
use sst::core::{
    ActorKey, ContractRecord, ContractRef, EnvelopeSignature, HashAlg, SignatureBytes,
};
use sst::node::contracts::{RealEstateDeal, RealEstateDealV2, Rfq};
use sst::node::{Contract, ContractRegistry};
use sst_contract_js::JsEngine;

use super::config::ContractDeployment;

/// The built-in versions, as `name@version`.
pub(crate) const BUILTIN: [&str; 3] = ["real-estate-deal@1", "real-estate-deal@2", "rfq@1"];

/// The built-in code of `contract`, if any.
pub(crate) fn builtin(contract: &ContractRef) -> Option<Arc<dyn Contract>> {
    let all: [Arc<dyn Contract>; 3] = [
        Arc::new(RealEstateDeal),
        Arc::new(RealEstateDealV2),
        Arc::new(Rfq),
    ];
    all.into_iter().find(|c| c.contract() == *contract)
}

/// The registry holding the code of every configured version, and the JavaScript engine
/// (contracts deployed at run time with `sst contract deploy` are loaded through it).
pub(crate) fn registry(deployments: &[ContractDeployment]) -> ContractRegistry {
    let mut registry = ContractRegistry::new().with_engine(Arc::new(JsEngine::new()));
    for d in deployments {
        if let Some(code) = builtin(&d.contract) {
            registry.insert(code);
        }
    }
    registry
}

/// The deployment record of `d`: with the configured signature, or signed here with the
/// deployer's key from `custody`.
///
/// # Errors
/// The version is not in `registry`; no signature and no key.
pub(crate) fn record(
    registry: &ContractRegistry,
    d: &ContractDeployment,
    custody: &[(sst::core::ActorId, ActorKey)],
) -> anyhow::Result<ContractRecord> {
    let descriptor = registry
        .descriptor(&d.contract)
        .with_context(|| format!("contract {} is not loaded", d.contract))?
        .clone();
    match d.signature {
        Some(sig) => {
            let identity = ContractRecord::identity_of(&descriptor, HashAlg::Blake3);
            Ok(ContractRecord {
                descriptor,
                identity,
                deployer: d.deployer.clone(),
                signature: EnvelopeSignature {
                    signer: d.deployer.clone(),
                    signature: SignatureBytes(sig),
                },
                source: None,
            })
        }
        None => {
            let (_, key) = custody
                .iter()
                .find(|(a, _)| *a == d.deployer)
                .with_context(|| format!("no key of deployer {}", d.deployer))?;
            Ok(registry.deployment(&d.contract, HashAlg::Blake3, d.deployer.clone(), key)?)
        }
    }
}
