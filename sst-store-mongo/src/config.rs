//! Connection settings of [`MongoStore`](crate::MongoStore): URL, database, collection names,
//! how commits are made atomic, and crash recovery.

use std::time::Duration;

/// Environment variable holding the connection URL (`mongodb://host:port/…`).
pub const URL_ENV: &str = "SST_MONGO_URL";
/// Environment variable holding the database name (default [`DEFAULT_DATABASE`]).
pub const DATABASE_ENV: &str = "SST_MONGO_DB";
/// Database used when none is configured.
pub const DEFAULT_DATABASE: &str = "sst";

/// Names of the peer collections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionNames {
    /// Latest version of every state (`sst_state`): `_id` (the state id), `contract_name`,
    /// `contract_version`, `version` and the queryable `data` document, nothing else.
    pub state: String,
    /// Every version of every state (`sst_state_history`): its header and section seals, no
    /// plaintext.
    pub history: String,
    /// Every section version, stored once (`sst_section`): `state_id`, `name`, `hash`
    /// (unique together) and the plaintext `value`.
    pub section: String,
    /// The read-only history view (`sst_state_versions`): every version with its whole
    /// `data` document, on servers that support views (see
    /// [`versions_pipeline`](crate::schema::versions_pipeline)).
    pub versions: String,
    /// Applied and rejected events (`sst_event`).
    pub event: String,
    /// Known actors (`sst_actor`).
    pub actor: String,
    /// Deployed contract versions (`sst_contract`).
    pub contract: String,
    /// Counters, e.g. the event recording position (`sst_meta`): MongoDB has no sequences.
    pub meta: String,
    /// Changes received from other nodes that could not be applied (`sst_refusal`).
    pub refusal: String,
    /// The node's hash-chained log, one document per entry keyed by its position (`sst_log`).
    pub log: String,
    /// Node-signed log checkpoints, unique per `(node, pos)` (`sst_checkpoint`).
    pub checkpoint: String,
    /// Notification sinks' cursors, one document per sink keyed by its name
    /// (`sst_sink_cursor`); outside the log.
    pub sink_cursor: String,
}

impl Default for CollectionNames {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

impl CollectionNames {
    /// The default names, each preceded by `prefix` (e.g. `app_` → `app_sst_state`).
    pub fn with_prefix(prefix: &str) -> Self {
        CollectionNames {
            state: format!("{prefix}sst_state"),
            history: format!("{prefix}sst_state_history"),
            section: format!("{prefix}sst_section"),
            versions: format!("{prefix}sst_state_versions"),
            event: format!("{prefix}sst_event"),
            actor: format!("{prefix}sst_actor"),
            contract: format!("{prefix}sst_contract"),
            meta: format!("{prefix}sst_meta"),
            refusal: format!("{prefix}sst_refusal"),
            log: format!("{prefix}sst_log"),
            checkpoint: format!("{prefix}sst_checkpoint"),
            sink_cursor: format!("{prefix}sst_sink_cursor"),
        }
    }
}

/// How [`MongoStore::commit`](crate::MongoStore) makes a batch all-or-nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TransactionMode {
    /// Multi-document transactions when the server is a replica-set member or a `mongos`
    /// (its `hello` reply carries `setName`, or `msg: "isdbgrid"`), the recoverable protocol
    /// otherwise.
    #[default]
    Auto,
    /// Always multi-document transactions (fails on servers that refuse them).
    Always,
    /// Never transactions: the recoverable protocol (pending events, version-guarded writes,
    /// completion or undo on the next open).
    Never,
}

/// Settings of a [`MongoStore`](crate::MongoStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoConfig {
    /// Connection URL (`mongodb://…`; `mongodb+srv://` needs the driver's DNS resolver,
    /// which this build leaves out).
    pub url: String,
    /// Database holding the peer collections.
    pub database: String,
    /// Collection names.
    pub collections: CollectionNames,
    /// Transactions or the recoverable protocol.
    pub transactions: TransactionMode,
    /// When opened, the store finishes or undoes batches that the recoverable protocol left
    /// pending at least this long ago (a crashed writer). Batches younger than this are left
    /// alone, since they may belong to a writer that is still running in another process.
    pub recover_after: Duration,
}

impl MongoConfig {
    /// Settings for `url` and `database` with default collection names, automatic
    /// transaction detection and a 60 s recovery grace period.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        MongoConfig {
            url: url.into(),
            database: database.into(),
            collections: CollectionNames::default(),
            transactions: TransactionMode::Auto,
            recover_after: Duration::from_secs(60),
        }
    }

    /// Settings from `SST_MONGO_URL` and `SST_MONGO_DB` (default `sst`); `None` when the URL
    /// is unset or empty.
    pub fn from_env() -> Option<Self> {
        let url = std::env::var(URL_ENV).ok().filter(|u| !u.is_empty())?;
        let db = std::env::var(DATABASE_ENV)
            .ok()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        Some(Self::new(url, db))
    }

    /// Prefixes every collection name.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.collections = CollectionNames::with_prefix(prefix);
        self
    }

    /// Sets the transaction mode.
    pub fn with_transactions(mut self, mode: TransactionMode) -> Self {
        self.transactions = mode;
        self
    }

    /// Sets the recovery grace period.
    pub fn with_recover_after(mut self, grace: Duration) -> Self {
        self.recover_after = grace;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_the_standard_collection_names() {
        let c = MongoConfig::new("mongodb://127.0.0.1:27017", "app");
        assert_eq!(c.collections.state, "sst_state");
        assert_eq!(c.collections.history, "sst_state_history");
        assert_eq!(c.collections.section, "sst_section");
        assert_eq!(c.collections.versions, "sst_state_versions");
        assert_eq!(c.collections.event, "sst_event");
        assert_eq!(c.collections.actor, "sst_actor");
        assert_eq!(c.collections.contract, "sst_contract");
        assert_eq!(c.collections.refusal, "sst_refusal");
        assert_eq!(c.collections.log, "sst_log");
        assert_eq!(c.collections.checkpoint, "sst_checkpoint");
        assert_eq!(c.collections.sink_cursor, "sst_sink_cursor");
        assert_eq!(c.transactions, TransactionMode::Auto);
    }

    #[test]
    fn prefix_applies_to_every_collection() {
        let c = MongoConfig::new("u", "d").with_prefix("t1_");
        assert_eq!(c.collections.state, "t1_sst_state");
        assert_eq!(c.collections.meta, "t1_sst_meta");
        assert_eq!(c.collections.section, "t1_sst_section");
        assert_eq!(c.collections.versions, "t1_sst_state_versions");
        assert_eq!(c.collections.refusal, "t1_sst_refusal");
        assert_eq!(c.collections.log, "t1_sst_log");
        assert_eq!(c.collections.checkpoint, "t1_sst_checkpoint");
    }
}
