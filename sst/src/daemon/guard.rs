//! This node's own endorsement rules (`[[endorsement_limit]]` in `node.toml`): numeric limits
//! an endorsing node applies to proposed changes of states on the `endorsed` protocol, e.g. a
//! bank refusing settlements above an amount. They are not part of the shared contract: a
//! change above the limit is refused by this node only, and the home node rejects it
//! `not_endorsed`, naming this node and the limit.
//!
//! ```toml
//! [[endorsement_limit]]
//! contract = "settlement"          # contract name (every version)
//! path = "instruction.amount"      # section, then keys, dot-separated
//! max = 1000000                    # refuse when the number there is above this
//! ```

use serde::Deserialize;
use serde_json::Value;
use sst::core::{ContractRef, StateId};
use sst::node::{EndorsementGuard, Sections};

/// One `[[endorsement_limit]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitEntry {
    contract: String,
    path: String,
    max: f64,
}

/// A validated limit: states of contract `contract` whose value at `path` is above `max` are
/// not endorsed here.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndorsementLimit {
    /// The contract name.
    pub(crate) contract: String,
    /// The section, then the keys inside it.
    pub(crate) path: Vec<String>,
    /// The largest value endorsed.
    pub(crate) max: f64,
}

impl EndorsementLimit {
    /// Checks one entry: a contract name, a path of non-empty segments, a finite limit.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub(crate) fn from_entry(entry: &LimitEntry) -> Result<Self, String> {
        if entry.contract.is_empty() || entry.contract.contains('@') {
            return Err(format!(
                "endorsement_limit: contract `{}` must be a contract name (without @version)",
                entry.contract
            ));
        }
        let path: Vec<String> = entry.path.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!(
                "endorsement_limit: path `{}` must be section.key… with no empty part",
                entry.path
            ));
        }
        if !entry.max.is_finite() {
            return Err(format!(
                "endorsement_limit: max of `{}` must be a finite number",
                entry.path
            ));
        }
        Ok(EndorsementLimit {
            contract: entry.contract.clone(),
            path,
            max: entry.max,
        })
    }

    /// The value at the path, if the sections have it.
    fn value<'a>(&self, sections: &'a Sections) -> Option<&'a Value> {
        let (section, keys) = self.path.split_first()?;
        keys.iter()
            .try_fold(sections.get(section)?, |v, k| v.get(k.as_str()))
    }

    /// Why this limit refuses `sections`, if it does: the value is above the limit, or is
    /// not a number.
    fn refusal(&self, sections: &Sections) -> Option<String> {
        let value = self.value(sections)?;
        let path = self.path.join(".");
        match value.as_f64() {
            Some(n) if n <= self.max => None,
            Some(_) => Some(format!(
                "{path} = {value} is above this node's endorsement limit {}",
                self.max
            )),
            None => Some(format!(
                "{path} = {value} is not a number (this node limits it to {})",
                self.max
            )),
        }
    }
}

/// The node's [`EndorsementGuard`]: every configured limit of the change's contract.
#[derive(Debug, Clone)]
pub(crate) struct LimitGuard {
    limits: Vec<EndorsementLimit>,
}

impl LimitGuard {
    /// A guard applying `limits` (`None` when there is none).
    pub(crate) fn new(limits: Vec<EndorsementLimit>) -> Option<Self> {
        (!limits.is_empty()).then_some(LimitGuard { limits })
    }
}

impl EndorsementGuard for LimitGuard {
    fn check(
        &self,
        contract: &ContractRef,
        state: &StateId,
        sections: &Sections,
    ) -> Result<(), String> {
        for limit in self.limits.iter().filter(|l| l.contract == contract.name) {
            if let Some(why) = limit.refusal(sections) {
                tracing::info!(%state, %contract, %why, "endorsement refused by a node limit");
                return Err(why);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn guard(max: f64) -> LimitGuard {
        let entry = LimitEntry {
            contract: "settlement".into(),
            path: "instruction.amount".into(),
            max,
        };
        LimitGuard::new(vec![EndorsementLimit::from_entry(&entry).expect("valid")])
            .expect("one limit")
    }

    fn sections(v: Value) -> Sections {
        serde_json::from_value(v).expect("sections")
    }

    #[test]
    fn amounts_above_the_limit_are_refused_naming_it() {
        let g = guard(1_000_000.0);
        let settlement = ContractRef::new("settlement", 1);
        let id = StateId::from("s-1");
        let ok = sections(json!({"instruction": {"amount": 1_000_000}}));
        assert_eq!(g.check(&settlement, &id, &ok), Ok(()));
        let above = sections(json!({"instruction": {"amount": 1_000_001}}));
        let why = g.check(&settlement, &id, &above).expect_err("above");
        assert!(
            why.contains("instruction.amount = 1000001 is above this node's endorsement limit"),
            "{why}"
        );
        let text = sections(json!({"instruction": {"amount": "lots"}}));
        assert!(g.check(&settlement, &id, &text).is_err());
        // Another contract, or no value at the path: no opinion.
        let other = ContractRef::new("real-estate-deal", 1);
        assert_eq!(g.check(&other, &id, &above), Ok(()));
        assert_eq!(g.check(&settlement, &id, &sections(json!({}))), Ok(()));
    }

    #[test]
    fn an_entry_reads_from_toml_and_unknown_fields_are_refused() {
        #[derive(Deserialize)]
        struct File {
            endorsement_limit: Vec<LimitEntry>,
        }
        let file: File = toml::from_str(
            "[[endorsement_limit]]\ncontract = \"settlement\"\npath = \"instruction.amount\"\nmax = 1000000\n",
        )
        .expect("parses");
        let limit = EndorsementLimit::from_entry(&file.endorsement_limit[0]).expect("valid");
        assert_eq!(limit.path, ["instruction", "amount"]);
        assert_eq!(limit.max, 1_000_000.0);
        assert!(toml::from_str::<File>(
            "[[endorsement_limit]]\ncontract = \"s\"\npath = \"a\"\nmax = 1\nmin = 0\n"
        )
        .is_err());
    }

    #[test]
    fn bad_entries_are_refused() {
        let entry = |contract: &str, path: &str, max: f64| LimitEntry {
            contract: contract.into(),
            path: path.into(),
            max,
        };
        assert!(EndorsementLimit::from_entry(&entry("settlement@1", "a.b", 1.0)).is_err());
        assert!(EndorsementLimit::from_entry(&entry("settlement", "a..b", 1.0)).is_err());
        assert!(EndorsementLimit::from_entry(&entry("settlement", "a", f64::NAN)).is_err());
        assert!(LimitGuard::new(Vec::new()).is_none());
    }
}
