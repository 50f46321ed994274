//! Connection settings of [`OracleStore`](crate::OracleStore): credentials, connect string,
//! table names and which JSON column type the tables use.

use sst_core::StoreError;

/// Environment variable holding `oracle://user:password@host[:port]/service`.
pub const URL_ENV: &str = "SST_ORACLE_URL";

/// Names of the peer tables (shared with every adapter; `SST_STATE` … by default).
pub use sst_core::TableNames;

/// Longest identifier Oracle accepts (12.2 and later).
const MAX_IDENTIFIER: usize = 128;

/// Which column type holds JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum JsonColumn {
    /// The native `JSON` type on Oracle 21c and later, `BLOB … IS JSON` before (decided from
    /// the server version when the store opens).
    #[default]
    Auto,
    /// The native `JSON` type (binary OSON; Oracle 21c+).
    Native,
    /// `BLOB` holding UTF-8 JSON text with a `CHECK (… IS JSON)` constraint (Oracle 19c).
    Blob,
}

/// Settings of an [`OracleStore`](crate::OracleStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleConfig {
    /// Database user (owner of the peer tables).
    pub username: String,
    /// Password.
    pub password: String,
    /// Easy Connect string (`//host:port/service`) or a TNS alias.
    pub connect_string: String,
    /// Table names.
    pub tables: TableNames,
    /// JSON column type.
    pub json: JsonColumn,
    /// Most pooled connections.
    pub max_connections: u32,
}

impl OracleConfig {
    /// Settings with default table names, automatic JSON column choice and 8 connections.
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
        connect_string: impl Into<String>,
    ) -> Self {
        OracleConfig {
            username: username.into(),
            password: password.into(),
            connect_string: connect_string.into(),
            tables: TableNames::default(),
            json: JsonColumn::Auto,
            max_connections: 8,
        }
    }

    /// Parses `oracle://user:password@host[:port]/service` (user and password
    /// percent-decoded), the format of `SST_ORACLE_URL`.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] naming what is missing.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::InvalidInput {
            path: URL_ENV.to_owned(),
            reason: format!("{reason} (expected oracle://user:password@host[:port]/service)"),
        };
        let rest = url
            .strip_prefix("oracle://")
            .ok_or_else(|| bad("not an oracle:// URL"))?;
        let (auth, target) = rest.rsplit_once('@').ok_or_else(|| bad("no user@"))?;
        let (user, password) = auth.split_once(':').ok_or_else(|| bad("no password"))?;
        if user.is_empty() || target.is_empty() || !target.contains('/') {
            return Err(bad("user, host and service are required"));
        }
        Ok(Self::new(
            percent_decode(user).ok_or_else(|| bad("bad %-escape in user"))?,
            percent_decode(password).ok_or_else(|| bad("bad %-escape in password"))?,
            format!("//{target}"),
        ))
    }

    /// Settings from `SST_ORACLE_URL`; `None` when unset or empty.
    ///
    /// # Errors
    /// As [`OracleConfig::from_url`].
    pub fn from_env() -> Result<Option<Self>, StoreError> {
        match std::env::var(URL_ENV) {
            Ok(u) if !u.is_empty() => Self::from_url(&u).map(Some),
            _ => Ok(None),
        }
    }

    /// Puts `prefix` before every default table name (`t1_` → `t1_sst_state`, …).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.tables = TableNames::with_prefix(&format!("{prefix}sst_"));
        self
    }

    /// Sets the JSON column type.
    pub fn with_json(mut self, json: JsonColumn) -> Self {
        self.json = json;
        self
    }

    /// Checks that every table name is a plain identifier that can be spliced into SQL.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] naming the table setting.
    pub fn validate(&self) -> Result<(), StoreError> {
        // Constraint names append up to 20 characters to a table name.
        self.tables.validate(MAX_IDENTIFIER - 20)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_is_parsed_into_credentials_and_easy_connect() {
        let c = OracleConfig::from_url("oracle://sst:p%40ss@db.local:1521/FREEPDB1").expect("ok");
        assert_eq!(c.username, "sst");
        assert_eq!(c.password, "p@ss");
        assert_eq!(c.connect_string, "//db.local:1521/FREEPDB1");
        assert_eq!(c.tables.state, "sst_state");
    }

    #[test]
    fn bad_urls_say_what_is_missing() {
        for url in [
            "postgres://a:b@h/s",
            "oracle://a@h/s",
            "oracle://a:b@h",
            "oracle://:b@h/s",
        ] {
            match OracleConfig::from_url(url) {
                Err(StoreError::InvalidInput { path, .. }) => assert_eq!(path, URL_ENV),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn table_names_must_be_identifiers() {
        let ok = OracleConfig::new("u", "p", "//h/s").with_prefix("t1_");
        assert!(ok.validate().is_ok());
        let bad = OracleConfig::new("u", "p", "//h/s").with_prefix("x; drop table y; --");
        assert!(bad.validate().is_err());
    }
}
