//! Names of the peer tables (or collections) every store keeps, shared by all adapters so
//! that configuration looks the same on every database.

use crate::error::StoreError;

/// Names of the peer tables. Defaults: `sst_state`, `sst_state_history`, `sst_section`,
/// `sst_state_versions` (a view), `sst_event`, `sst_actor`, `sst_contract`, `sst_refusal`,
/// `sst_log`, `sst_checkpoint`, `sst_sink_cursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    /// Latest version of every state (the table users query).
    pub state: String,
    /// Every committed state version: its header and section seals, without plaintext (the
    /// plaintext of each section version lives once in [`TableNames::section`]).
    pub history: String,
    /// Every section version, stored once, keyed by state, section name and section hash;
    /// history rows reference the section versions they are made of.
    pub section: String,
    /// A read-only view (where the engine has views) showing every version's full queryable
    /// JSON, assembled from the history and section tables: history queried with plain SQL.
    pub versions: String,
    /// Every recorded event (applied and rejected).
    pub event: String,
    /// Known actors.
    pub actor: String,
    /// Deployed contract versions.
    pub contract: String,
    /// Changes this node received but could not apply, with the reason ([`crate::Refusal`]).
    pub refusal: String,
    /// The node's hash-chained log: one entry per record kept ([`crate::LogEntry`]).
    pub log: String,
    /// Node-signed log checkpoints: this node's own and those witnessed from peers
    /// ([`crate::SignedCheckpoint`]).
    pub checkpoint: String,
    /// Notification sinks' durable cursors: the log position each sink has published up to
    /// ([`crate::Store::sink_cursor`]). Bookkeeping, not a peer record: outside the log.
    pub sink_cursor: String,
}

impl Default for TableNames {
    fn default() -> Self {
        Self::with_prefix("sst_")
    }
}

impl TableNames {
    /// `{prefix}state`, `{prefix}state_history`, `{prefix}section`, `{prefix}state_versions`,
    /// `{prefix}event`, `{prefix}actor`, `{prefix}contract`, `{prefix}refusal`, `{prefix}log`,
    /// `{prefix}checkpoint`, `{prefix}sink_cursor`.
    pub fn with_prefix(prefix: &str) -> Self {
        TableNames {
            state: format!("{prefix}state"),
            history: format!("{prefix}state_history"),
            section: format!("{prefix}section"),
            versions: format!("{prefix}state_versions"),
            event: format!("{prefix}event"),
            actor: format!("{prefix}actor"),
            contract: format!("{prefix}contract"),
            refusal: format!("{prefix}refusal"),
            log: format!("{prefix}log"),
            checkpoint: format!("{prefix}checkpoint"),
            sink_cursor: format!("{prefix}sink_cursor"),
        }
    }

    /// `(setting, name)` pairs, e.g. `("tables.state", "sst_state")`.
    pub fn fields(&self) -> [(&'static str, &str); 11] {
        [
            ("tables.state", &self.state),
            ("tables.history", &self.history),
            ("tables.section", &self.section),
            ("tables.versions", &self.versions),
            ("tables.event", &self.event),
            ("tables.actor", &self.actor),
            ("tables.contract", &self.contract),
            ("tables.refusal", &self.refusal),
            ("tables.log", &self.log),
            ("tables.checkpoint", &self.checkpoint),
            ("tables.sink_cursor", &self.sink_cursor),
        ]
    }

    /// Checks that every name is a plain identifier of at most `max_len` bytes and that no two
    /// names are equal (ignoring ASCII case), so adapters can quote them safely.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] naming the offending setting.
    pub fn validate(&self, max_len: usize) -> Result<(), StoreError> {
        let fields = self.fields();
        for (i, (field, name)) in fields.iter().enumerate() {
            check_identifier(field, name, max_len)?;
            if let Some((other, _)) = fields[..i]
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(name))
            {
                return Err(StoreError::InvalidInput {
                    path: format!("config.{field}"),
                    reason: format!("`{name}` is also the name of {other}"),
                });
            }
        }
        Ok(())
    }
}

/// Checks that `name` (the value of setting `field`) is a plain identifier: an ASCII letter or
/// `_`, then letters, digits or `_`, at most `max_len` bytes.
///
/// # Errors
/// [`StoreError::InvalidInput`] with path `config.<field>`.
pub fn check_identifier(field: &str, name: &str, max_len: usize) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= max_len;
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            path: format!("config.{field}"),
            reason: format!(
                "`{name}` is not a plain identifier (letter or _, then letters, digits, _; \
                 at most {max_len} bytes)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design_names() {
        let t = TableNames::default();
        assert_eq!(t.state, "sst_state");
        assert_eq!(t.history, "sst_state_history");
        assert_eq!(t.sink_cursor, "sst_sink_cursor");
        assert!(t
            .fields()
            .contains(&("tables.sink_cursor", "sst_sink_cursor")));
        assert!(t.validate(63).is_ok());
    }

    #[test]
    fn bad_and_clashing_names_are_named() {
        let t = TableNames {
            event: "drop table;--".into(),
            ..TableNames::default()
        };
        let err = t.validate(63).unwrap_err().to_string();
        assert!(err.contains("config.tables.event"), "{err}");
        let t = TableNames {
            actor: "SST_STATE".into(),
            ..TableNames::default()
        };
        let err = t.validate(63).unwrap_err().to_string();
        assert!(
            err.contains("config.tables.actor") && err.contains("tables.state"),
            "{err}"
        );
        assert!(TableNames::with_prefix(&"x".repeat(70))
            .validate(63)
            .is_err());
    }
}
