//! Section permissions: per contract, per section, which roles may read and which may write;
//! evaluation for an actor (or a whole node) against a state's parties.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{ActorId, Parties, Role};

/// Role name that matches every party of the state.
pub const ANY_PARTY: &str = "*";

/// Read and write roles of one section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SectionPolicy {
    /// Roles that may read the section's plaintext (`*` = every party).
    pub read: BTreeSet<Role>,
    /// Roles that may change the section (`*` = every party).
    pub write: BTreeSet<Role>,
}

impl SectionPolicy {
    /// Builds a policy from role names.
    pub fn new<'a>(
        read: impl IntoIterator<Item = &'a str>,
        write: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        SectionPolicy {
            read: read.into_iter().map(Role::from).collect(),
            write: write.into_iter().map(Role::from).collect(),
        }
    }
}

/// A contract's section policies. Sections not named here may be neither read nor written by
/// anyone (deny by default).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContractPolicy {
    /// Section name → policy.
    pub sections: BTreeMap<String, SectionPolicy>,
}

/// Which sections someone may read and write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Access {
    /// Readable section names.
    pub read: BTreeSet<String>,
    /// Writable section names.
    pub write: BTreeSet<String>,
}

impl Access {
    /// Whether `section` is readable.
    pub fn can_read(&self, section: &str) -> bool {
        self.read.contains(section)
    }
    /// Whether `section` is writable.
    pub fn can_write(&self, section: &str) -> bool {
        self.write.contains(section)
    }
}

fn allowed(roles_of_holder: &BTreeSet<Role>, is_party: bool, granted: &BTreeSet<Role>) -> bool {
    granted
        .iter()
        .any(|r| (r.as_str() == ANY_PARTY && is_party) || roles_of_holder.contains(r))
}

impl ContractPolicy {
    /// Adds a section policy (builder style).
    pub fn section(mut self, name: impl Into<String>, policy: SectionPolicy) -> Self {
        self.sections.insert(name.into(), policy);
        self
    }

    /// What `actor` may read and write in a state with these `parties`.
    pub fn access(&self, actor: &ActorId, parties: &Parties) -> Access {
        self.access_for_roles(&parties.roles_of(actor))
    }

    /// What a holder of `roles` may read and write (a holder with no role is not a party).
    pub fn access_for_roles(&self, roles: &BTreeSet<Role>) -> Access {
        let is_party = !roles.is_empty();
        let mut access = Access::default();
        for (name, p) in &self.sections {
            if allowed(roles, is_party, &p.read) {
                access.read.insert(name.clone());
            }
            if allowed(roles, is_party, &p.write) {
                access.write.insert(name.clone());
            }
        }
        access
    }

    /// What a node whose actors are `actors` may read and write: the union of their access.
    /// This decides which sections a node receives in plaintext.
    pub fn access_for_actors<'a>(
        &self,
        actors: impl IntoIterator<Item = &'a ActorId>,
        parties: &Parties,
    ) -> Access {
        let roles: BTreeSet<Role> = actors
            .into_iter()
            .flat_map(|a| parties.roles_of(a))
            .collect();
        self.access_for_roles(&roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal() -> (ContractPolicy, Parties) {
        let policy = ContractPolicy::default()
            .section("common", SectionPolicy::new(["*"], ["buyer", "seller"]))
            .section(
                "price",
                SectionPolicy::new(["buyer", "seller"], ["buyer", "seller"]),
            )
            .section("inspection", SectionPolicy::new(["*"], ["inspector"]));
        let parties = Parties::default()
            .with("buyer", "b/bob")
            .with("seller", "s/sue")
            .with("inspector", "i/ina")
            .with("regulator", "r/rex");
        (policy, parties)
    }

    #[test]
    fn real_estate_roles_get_the_designed_access() {
        let (p, parties) = deal();
        let buyer = p.access(&"b/bob".into(), &parties);
        assert!(
            buyer.can_read("price") && buyer.can_write("price") && !buyer.can_write("inspection")
        );
        let insp = p.access(&"i/ina".into(), &parties);
        assert!(!insp.can_read("price") && insp.can_write("inspection") && insp.can_read("common"));
        let reg = p.access(&"r/rex".into(), &parties);
        assert!(reg.write.is_empty() && reg.can_read("common") && !reg.can_read("price"));
        let stranger = p.access(&"x/eve".into(), &parties);
        assert!(stranger.read.is_empty() && stranger.write.is_empty());
    }

    #[test]
    fn node_access_is_the_union_of_its_actors() {
        let (p, parties) = deal();
        let a = p.access_for_actors([&"i/ina".into(), &"s/sue".into()], &parties);
        assert!(a.can_read("price") && a.can_write("inspection"));
    }
}
