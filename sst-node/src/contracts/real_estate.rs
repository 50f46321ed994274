//! The real-estate deal: `common` (everyone reads; buyer and seller write), `price` (only
//! buyer and seller read and write), `inspection` (everyone reads; only the inspector writes).
//! A regulator is a read-only observer. Version 2 adds a `closing` section and migrates v1
//! states to it.

use serde_json::{json, Value};
use sst_core::{ContractPolicy, ContractRef, Parties, SectionPolicy};

use crate::contract::{Call, Contract, ContractError, MethodOutput, Sections};

/// Contract name of the real-estate deal.
pub const REAL_ESTATE: &str = "real-estate-deal";

fn policy_v1() -> ContractPolicy {
    ContractPolicy::default()
        .section("common", SectionPolicy::new(["*"], ["buyer", "seller"]))
        .section(
            "price",
            SectionPolicy::new(["buyer", "seller"], ["buyer", "seller"]),
        )
        .section("inspection", SectionPolicy::new(["*"], ["inspector"]))
}

fn positive_int(v: &Value, what: &str) -> Result<i64, ContractError> {
    match v.as_i64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(ContractError::new(format!(
            "{what} must be a positive integer, got {v}"
        ))),
    }
}

fn check_sections(sections: &Sections) -> Result<(), ContractError> {
    if let Some(price) = sections.get("price") {
        positive_int(
            price
                .get("amount")
                .ok_or_else(|| ContractError::new("price needs an `amount`"))?,
            "price.amount",
        )?;
    }
    if let Some(insp) = sections.get("inspection") {
        match insp.get("radon").and_then(Value::as_f64) {
            Some(r) if r >= 0.0 => {}
            _ => return Err(ContractError::new("inspection needs a `radon` level >= 0")),
        }
    }
    Ok(())
}

fn create_rules(parties: &Parties, sections: &Sections) -> Result<(), ContractError> {
    for role in ["buyer", "seller"] {
        if !parties.0.keys().any(|r| r.as_str() == role) {
            return Err(ContractError::new(format!("a deal needs a {role}")));
        }
    }
    check_sections(sections)
}

fn call_v1(call: &Call<'_>, method: &str, args: &Value) -> Result<Sections, ContractError> {
    match method {
        "set_price" => {
            let amount = positive_int(
                args.get("amount")
                    .ok_or_else(|| ContractError::new("set_price needs `amount`"))?,
                "amount",
            )?;
            Ok(Sections::from([(
                "price".to_owned(),
                json!({"amount": amount, "currency": "USD", "set_by": call.actor}),
            )]))
        }
        "record_inspection" => {
            let radon = args
                .get("radon")
                .and_then(Value::as_f64)
                .filter(|r| *r >= 0.0)
                .ok_or_else(|| ContractError::new("record_inspection needs `radon` >= 0"))?;
            Ok(Sections::from([(
                "inspection".to_owned(),
                json!({"radon": radon, "passed": radon < 4.0, "inspector": call.actor}),
            )]))
        }
        other => Err(ContractError::new(format!("unknown method `{other}`"))),
    }
}

/// Version 1 of the real-estate deal.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealEstateDeal;

impl Contract for RealEstateDeal {
    fn contract(&self) -> ContractRef {
        ContractRef::new(REAL_ESTATE, 1)
    }
    fn policy(&self) -> ContractPolicy {
        policy_v1()
    }
    fn methods(&self) -> Vec<String> {
        vec!["record_inspection".into(), "set_price".into()]
    }
    fn source(&self) -> &str {
        include_str!("real_estate.rs")
    }
    fn on_create(
        &self,
        _call: &Call<'_>,
        parties: &Parties,
        sections: &Sections,
    ) -> Result<(), ContractError> {
        create_rules(parties, sections)
    }
    fn on_change_reads_current(&self) -> bool {
        false
    }
    fn on_change(
        &self,
        _call: &Call<'_>,
        _current: &Sections,
        changes: &Sections,
    ) -> Result<(), ContractError> {
        check_sections(changes)
    }
    fn call(
        &self,
        call: &Call<'_>,
        _current: &Sections,
        method: &str,
        args: &Value,
    ) -> Result<MethodOutput, ContractError> {
        call_v1(call, method, args).map(MethodOutput::from)
    }
}

/// Version 2: supersedes v1 and adds a `closing` section (everyone reads; buyer and seller
/// write). Migrating a v1 state opens the closing section.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealEstateDealV2;

impl Contract for RealEstateDealV2 {
    fn contract(&self) -> ContractRef {
        ContractRef::new(REAL_ESTATE, 2)
    }
    fn policy(&self) -> ContractPolicy {
        policy_v1().section("closing", SectionPolicy::new(["*"], ["buyer", "seller"]))
    }
    fn methods(&self) -> Vec<String> {
        vec![
            "close".into(),
            "record_inspection".into(),
            "set_price".into(),
        ]
    }
    fn supersedes(&self) -> Vec<ContractRef> {
        vec![ContractRef::new(REAL_ESTATE, 1)]
    }
    fn source(&self) -> &str {
        include_str!("real_estate.rs")
    }
    fn on_create(
        &self,
        _call: &Call<'_>,
        parties: &Parties,
        sections: &Sections,
    ) -> Result<(), ContractError> {
        create_rules(parties, sections)
    }
    fn on_change_reads_current(&self) -> bool {
        false
    }
    fn on_change(
        &self,
        _call: &Call<'_>,
        _current: &Sections,
        changes: &Sections,
    ) -> Result<(), ContractError> {
        check_sections(changes)
    }
    fn call(
        &self,
        call: &Call<'_>,
        current: &Sections,
        method: &str,
        args: &Value,
    ) -> Result<MethodOutput, ContractError> {
        if method == "close" {
            if !current.contains_key("price") {
                return Err(ContractError::new("cannot close a deal without a price"));
            }
            return Ok(Sections::from([(
                "closing".to_owned(),
                json!({"status": "closed", "closed_by": call.actor}),
            )])
            .into());
        }
        call_v1(call, method, args).map(MethodOutput::from)
    }
    fn migrate(
        &self,
        _call: &Call<'_>,
        from: &ContractRef,
        _current: &Sections,
    ) -> Result<Sections, ContractError> {
        if *from != ContractRef::new(REAL_ESTATE, 1) {
            return Err(ContractError::new(format!("cannot migrate from {from}")));
        }
        Ok(Sections::from([(
            "closing".to_owned(),
            json!({"status": "open"}),
        )]))
    }
}
