//! The foreign-table rule of `migrate`, once for every backend: a table that carries a peer
//! table's name must have every column SST reads and writes there, or it belongs to something
//! else and `migrate` refuses it (changing nothing). Columns added in a later release are not
//! part of that rule: an existing table without them is an older layout of SST's own, and
//! [`columns_to_add`] names what `migrate` adds to it.

use crate::error::StoreError;

/// Columns of the first layout's current-state table that the section-version layout keeps in
/// the history row of that version only (every backend spells them the same): `migrate` drops
/// them from a first-layout current-state table (a document store unsets those fields).
pub const FIRST_LAYOUT_CURRENT_ONLY: [&str; 6] = [
    "parties",
    "seals",
    "root",
    "prev_root",
    "last_event",
    "updated_at",
];

/// The refusal of a first-layout upgrade whose history holds one section version (state
/// `id`, section `name`, one hash) with different values in versions `a` and `b`: one copy was
/// edited behind SST's back, and keeping either would hide the edit from `verify`, so nothing
/// is upgraded.
pub fn first_layout_disagreement(id: &str, name: &str, a: u64, b: u64) -> StoreError {
    let (low, high) = (a.min(b), a.max(b));
    StoreError::malformed(
        format!("state {id}"),
        format!(
            "versions {low} to {high} hold section `{name}` under one hash with different \
             values (edited behind SST's back): the first layout is not upgraded; restore the \
             committed value, then migrate again"
        ),
    )
}

/// How column (and table) names compare on an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameCase {
    /// Names are compared exactly (PostgreSQL folds SST's unquoted names to lower case, so a
    /// differently cased column is another column).
    Exact,
    /// Names are compared ignoring ASCII case (SQLite, MySQL/MariaDB, Oracle).
    Insensitive,
}

impl NameCase {
    fn same(self, a: &str, b: &str) -> bool {
        match self {
            NameCase::Exact => a == b,
            NameCase::Insensitive => a.eq_ignore_ascii_case(b),
        }
    }
}

/// The columns `present` lists for `table` (none: the table does not exist).
fn columns_of<'p>(table: &str, present: &'p [(String, String)], case: NameCase) -> Vec<&'p str> {
    present
        .iter()
        .filter(|(t, _)| case.same(t, table))
        .map(|(_, c)| c.as_str())
        .collect()
}

/// Checks the layout of the peer tables that already exist. `needed` pairs each peer table
/// with the columns SST needs in it; `present` lists the `(table, column)` pairs the database
/// reports (tables absent from it do not exist yet and are fine). `hint` ends the message:
/// where the table was looked for and what the operator can do.
///
/// # Errors
/// [`StoreError::Schema`] naming the first existing table that lacks a needed column, the
/// column, and the columns it has.
pub fn check_peer_layout<'c, C: AsRef<[&'c str]>>(
    backend: &'static str,
    needed: &[(&str, C)],
    present: &[(String, String)],
    case: NameCase,
    hint: &str,
) -> Result<(), StoreError> {
    for (table, columns) in needed {
        let has = columns_of(table, present, case);
        if has.is_empty() {
            continue;
        }
        if let Some(missing) = columns
            .as_ref()
            .iter()
            .find(|c| !has.iter().any(|h| case.same(h, c)))
        {
            return Err(StoreError::Schema {
                backend,
                table: (*table).to_owned(),
                detail: format!(
                    "it has no `{missing}` column (it has: {}); {hint}",
                    has.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// Columns introduced after a peer table was first released, per table: `(table, column)`
/// pairs for the tables that exist (they appear in `present`, as for [`check_peer_layout`])
/// but lack the column. Call it after [`check_peer_layout`] accepted the existing tables, then
/// add each column (nullable) before using the store; tables that do not exist yet are
/// created with the column and are not listed.
pub fn columns_to_add<'a, C: AsRef<[&'a str]>>(
    added: &[(&'a str, C)],
    present: &[(String, String)],
    case: NameCase,
) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    for (table, columns) in added {
        let has = columns_of(table, present, case);
        if has.is_empty() {
            continue;
        }
        for column in columns.as_ref() {
            if !has.iter().any(|h| case.same(h, column)) {
                out.push((*table, *column));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(t, c)| ((*t).to_owned(), (*c).to_owned()))
            .collect()
    }

    #[test]
    fn missing_tables_are_fine_and_a_foreign_one_is_named() {
        let needed: [(&str, &[&str]); 2] = [("sst_state", &["id", "data"]), ("sst_event", &["id"])];
        assert!(check_peer_layout("x", &needed, &[], NameCase::Exact, "h").is_ok());
        let ours = present(&[("sst_state", "id"), ("sst_state", "data")]);
        assert!(check_peer_layout("x", &needed, &ours, NameCase::Exact, "h").is_ok());
        let foreign = present(&[("sst_state", "id"), ("sst_state", "note")]);
        match check_peer_layout("x", &needed, &foreign, NameCase::Exact, "move it") {
            Err(StoreError::Schema { table, detail, .. }) => {
                assert_eq!(table, "sst_state");
                assert_eq!(
                    detail,
                    "it has no `data` column (it has: id, note); move it"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn case_follows_the_engine() {
        let needed: [(&str, &[&str]); 1] = [("sst_state", &["data"])];
        let upper = present(&[("SST_STATE", "DATA")]);
        assert!(check_peer_layout("x", &needed, &upper, NameCase::Insensitive, "h").is_ok());
        let mixed = present(&[("sst_state", "Data")]);
        assert!(check_peer_layout("x", &needed, &mixed, NameCase::Exact, "h").is_err());
    }

    #[test]
    fn only_existing_tables_lacking_an_added_column_are_named() {
        let added: [(&str, &[&str]); 2] = [
            ("sst_event", &["business_events"]),
            ("sst_state", &["extra"]),
        ];
        let old = present(&[("SST_EVENT", "ID"), ("sst_other", "business_events")]);
        assert_eq!(
            columns_to_add(&added, &old, NameCase::Insensitive),
            vec![("sst_event", "business_events")]
        );
        let new = present(&[("sst_event", "id"), ("sst_event", "BUSINESS_EVENTS")]);
        assert!(columns_to_add(&added, &new, NameCase::Insensitive).is_empty());
        assert_eq!(
            columns_to_add(&added, &new, NameCase::Exact),
            vec![("sst_event", "business_events")]
        );
    }
}
