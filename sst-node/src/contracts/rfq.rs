//! A request for quotes: the requester publishes a `request`; suppliers append
//! `(submitter, price, timestamp)` tuples to the `quotes` array through the `submit_quote`
//! method. Suppliers may write quotes but not read them (no supplier sees a competitor's
//! price): the home node, which holds the array, appends on their behalf.

use serde_json::{json, Value};
use sst_core::{ContractPolicy, ContractRef, Parties, SectionPolicy};

use crate::contract::{Call, Contract, ContractError, MethodOutput, Sections};

/// Contract name of the RFQ.
pub const RFQ: &str = "rfq";

/// Version 1 of the RFQ contract.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rfq;

impl Contract for Rfq {
    fn contract(&self) -> ContractRef {
        ContractRef::new(RFQ, 1)
    }
    fn policy(&self) -> ContractPolicy {
        ContractPolicy::default()
            .section("request", SectionPolicy::new(["*"], ["requester"]))
            .section(
                "quotes",
                SectionPolicy::new(["requester", "auditor"], ["supplier", "requester"]),
            )
    }
    fn methods(&self) -> Vec<String> {
        vec!["close".into(), "submit_quote".into()]
    }
    fn source(&self) -> &str {
        include_str!("rfq.rs")
    }
    fn on_create(
        &self,
        _call: &Call<'_>,
        parties: &Parties,
        sections: &Sections,
    ) -> Result<(), ContractError> {
        if !parties.0.keys().any(|r| r.as_str() == "requester") {
            return Err(ContractError::new("an RFQ needs a requester"));
        }
        match sections.get("quotes") {
            None => Ok(()),
            Some(Value::Array(a)) if a.is_empty() => Ok(()),
            Some(_) => Err(ContractError::new("an RFQ starts with no quotes")),
        }
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
        if changes.contains_key("quotes") {
            return Err(ContractError::new(
                "quotes change only through submit_quote",
            ));
        }
        Ok(())
    }
    fn call(
        &self,
        call: &Call<'_>,
        current: &Sections,
        method: &str,
        args: &Value,
    ) -> Result<MethodOutput, ContractError> {
        let status = current
            .get("request")
            .and_then(|r| r.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("open");
        match method {
            "submit_quote" => {
                if !call.has_role("supplier") {
                    return Err(ContractError::new("only suppliers quote"));
                }
                if status != "open" {
                    return Err(ContractError::new("the RFQ is closed"));
                }
                let price = match args.get("price").and_then(Value::as_i64) {
                    Some(p) if p > 0 => p,
                    _ => return Err(ContractError::new("`price` must be a positive integer")),
                };
                let mut quotes = match current.get("quotes") {
                    Some(Value::Array(a)) => a.clone(),
                    None => Vec::new(),
                    Some(other) => {
                        return Err(ContractError::new(format!(
                            "quotes is not an array: {other}"
                        )))
                    }
                };
                quotes.push(json!([call.actor, price, call.timestamp]));
                Ok(Sections::from([("quotes".to_owned(), Value::Array(quotes))]).into())
            }
            "close" => {
                let mut request = current.get("request").cloned().unwrap_or(json!({}));
                if let Value::Object(m) = &mut request {
                    m.insert("status".into(), json!("closed"));
                }
                Ok(Sections::from([("request".to_owned(), request)]).into())
            }
            other => Err(ContractError::new(format!("unknown method `{other}`"))),
        }
    }
}
