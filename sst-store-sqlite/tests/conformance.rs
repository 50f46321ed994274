//! The whole conformance suite against SQLite, one temporary database file per case, with
//! raw SQL `UPDATE`s of the `data` column as the tamper hook.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use conformance_tests::{Backend, BackendFactory, Mutation, RawAccess};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use sst_core::{StateId, Store};
use sst_store_sqlite::{SqliteConfig, SqliteStore, TableNames};

/// Raw SQL access to the same file, the way a DBA (or an attacker) with `sqlite3` would.
struct SqliteRaw {
    path: PathBuf,
    tables: TableNames,
}

impl SqliteRaw {
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &TableNames) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = self.path.clone();
        let tables = self.tables.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Connection::open(&path)?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            f(&mut c, &tables)
        })
        .await?
    }

    async fn column(
        &self,
        col: &'static str,
        id: &StateId,
        v: u64,
    ) -> anyhow::Result<Option<Value>> {
        let id = id.0.clone();
        self.with_conn(move |c, t| {
            let text: Option<String> = c
                .query_row(
                    &format!(
                        r#"SELECT {col} FROM "{}" WHERE id = ?1 AND version = ?2"#,
                        t.history
                    ),
                    rusqlite::params![id, i64::try_from(v)?],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
        })
        .await
    }
}

#[async_trait]
impl RawAccess for SqliteRaw {
    async fn raw_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.column("data", id, version).await
    }

    async fn raw_seals(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.column("seals", id, version).await
    }

    async fn set_raw_data(&self, id: &StateId, version: u64, data: Value) -> anyhow::Result<()> {
        let id = id.0.clone();
        self.with_conn(move |c, t| {
            let text = serde_json::to_string(&data)?;
            let v = i64::try_from(version)?;
            let mut changed = 0;
            for table in [&t.history, &t.state] {
                changed += c.execute(
                    &format!(r#"UPDATE "{table}" SET data = ?1 WHERE id = ?2 AND version = ?3"#),
                    rusqlite::params![text, id, v],
                )?;
            }
            anyhow::ensure!(changed > 0, "no row for {id} version {version}");
            Ok(())
        })
        .await
    }

    fn has_current_state_table(&self) -> bool {
        true
    }

    async fn set_current_data_only(&self, id: &StateId, data: Value) -> anyhow::Result<()> {
        let id = id.0.clone();
        self.with_conn(move |c, t| {
            let text = serde_json::to_string(&data)?;
            let changed = c.execute(
                &format!(r#"UPDATE "{}" SET data = ?1 WHERE id = ?2"#, t.state),
                rusqlite::params![text, id],
            )?;
            anyhow::ensure!(changed == 1, "no current-state row for {id}");
            Ok(())
        })
        .await
    }

    async fn swap_history_data(&self, id: &StateId, a: u64, b: u64) -> anyhow::Result<()> {
        let id = id.0.clone();
        self.with_conn(move |c, t| {
            let h = &t.history;
            let tx = c.transaction()?;
            let (a, b) = (i64::try_from(a)?, i64::try_from(b)?);
            let read = |v: i64| -> rusqlite::Result<String> {
                tx.query_row(
                    &format!(r#"SELECT data FROM "{h}" WHERE id = ?1 AND version = ?2"#),
                    rusqlite::params![id, v],
                    |r| r.get(0),
                )
            };
            let (da, db) = (read(a)?, read(b)?);
            for (v, data) in [(a, db), (b, da)] {
                tx.execute(
                    &format!(r#"UPDATE "{h}" SET data = ?1 WHERE id = ?2 AND version = ?3"#),
                    rusqlite::params![data, id, v],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn mutate(&self, m: &Mutation) -> anyhow::Result<bool> {
        let m = m.clone();
        self.with_conn(move |c, t| {
            let (state, history, event) = (&t.state, &t.history, &t.event);
            let (log, actor, contract) = (&t.log, &t.actor, &t.contract);
            let (refusal, checkpoint) = (&t.refusal, &t.checkpoint);
            let log_cols = "pos, kind, subject, record, prev, hash";
            let cols = "id, contract_name, contract_version, version, parties, seals, data, \
                        root, prev_root, last_event, updated_at";
            let changed = match &m {
                Mutation::DeleteCurrentRow(id) => c.execute(
                    &format!(r#"DELETE FROM "{state}" WHERE id = ?1"#),
                    [id.as_str()],
                )?,
                Mutation::RollBackCurrentRow { id, version } => c.execute(
                    &format!(
                        r#"REPLACE INTO "{state}" ({cols})
                           SELECT {cols} FROM "{history}" WHERE id = ?1 AND version = ?2"#
                    ),
                    rusqlite::params![id.as_str(), i64::try_from(*version)?],
                )?,
                Mutation::DeleteHistoryVersion { id, version } => c.execute(
                    &format!(r#"DELETE FROM "{history}" WHERE id = ?1 AND version = ?2"#),
                    rusqlite::params![id.as_str(), i64::try_from(*version)?],
                )?,
                Mutation::CopyHistoryVersion { id, from, to } => c.execute(
                    &format!(
                        r#"INSERT INTO "{history}" ({cols})
                           SELECT id, contract_name, contract_version, ?3, parties, seals,
                                  data, root, prev_root, last_event, updated_at
                           FROM "{history}" WHERE id = ?1 AND version = ?2"#
                    ),
                    rusqlite::params![id.as_str(), i64::try_from(*from)?, i64::try_from(*to)?],
                )?,
                Mutation::DeleteEvent(e) => c.execute(
                    &format!(r#"DELETE FROM "{event}" WHERE id = ?1"#),
                    [e.to_string()],
                )?,
                Mutation::RelabelApplied {
                    event: e,
                    version,
                    root,
                } => c.execute(
                    &format!(
                        r#"UPDATE "{event}" SET outcome = 'applied', reason = NULL,
                             reason_detail = NULL, new_version = ?2, new_root = ?3
                           WHERE id = ?1"#
                    ),
                    rusqlite::params![e.to_string(), i64::try_from(*version)?, root.to_string()],
                )?,
                Mutation::SetEventColumn {
                    event: e,
                    column,
                    value,
                } => c.execute(
                    &format!(
                        r#"UPDATE "{event}" SET {} = ?2 WHERE id = ?1"#,
                        column.name()
                    ),
                    rusqlite::params![e.to_string(), sql_value(value)],
                )?,
                Mutation::DropEventColumn(column) => {
                    // A schema change touches no row: nothing to count.
                    c.execute_batch(&format!(
                        r#"ALTER TABLE "{event}" DROP COLUMN {}"#,
                        column.name()
                    ))?;
                    return Ok(true);
                }
                Mutation::DeleteLogEntry(pos) => c.execute(
                    &format!(r#"DELETE FROM "{log}" WHERE pos = ?1"#),
                    [i64::try_from(*pos)?],
                )?,
                Mutation::CopyLogEntry { from, to } => c.execute(
                    &format!(
                        r#"INSERT INTO "{log}" ({log_cols})
                           SELECT ?2, kind, subject, record, prev, hash
                           FROM "{log}" WHERE pos = ?1"#
                    ),
                    [i64::try_from(*from)?, i64::try_from(*to)?],
                )?,
                Mutation::SwapLogEntries { a, b } => {
                    // Through a free negative position, so the primary key never sees two
                    // rows at one position.
                    let (a, b) = (i64::try_from(*a)?, i64::try_from(*b)?);
                    let tx = c.transaction()?;
                    let set = format!(r#"UPDATE "{log}" SET pos = ?2 WHERE pos = ?1"#);
                    let mut moved = 0;
                    for (from, to) in [(a, -1), (b, a), (-1, b)] {
                        moved += tx.execute(&set, [from, to])?;
                    }
                    tx.commit()?;
                    anyhow::ensure!(moved == 3, "{m:?} moved {moved} rows");
                    1
                }
                Mutation::TruncateLog { from } => {
                    let removed = c.execute(
                        &format!(r#"DELETE FROM "{log}" WHERE pos >= ?1"#),
                        [i64::try_from(*from)?],
                    )?;
                    anyhow::ensure!(removed > 0, "{m:?} removed no entry");
                    1
                }
                Mutation::SetActorKey { actor: a, key } => {
                    let Value::String(hex) = serde_json::to_value(key)? else {
                        anyhow::bail!("a public key serialises as a hex string");
                    };
                    c.execute(
                        &format!(r#"UPDATE "{actor}" SET public_key = ?2 WHERE id = ?1"#),
                        [a.as_str(), hex.as_str()],
                    )?
                }
                Mutation::SetContractDescriptor {
                    contract: k,
                    descriptor,
                } => c.execute(
                    &format!(
                        r#"UPDATE "{contract}" SET record = json_set(record, '$.descriptor', json(?3))
                           WHERE name = ?1 AND version = ?2"#
                    ),
                    rusqlite::params![k.name, k.version, descriptor.to_string()],
                )?,
                Mutation::DeleteRefusal(e) => c.execute(
                    &format!(r#"DELETE FROM "{refusal}" WHERE event_id = ?1"#),
                    [e.to_string()],
                )?,
                Mutation::DeleteCheckpoint { node, pos } => c.execute(
                    &format!(r#"DELETE FROM "{checkpoint}" WHERE node = ?1 AND pos = ?2"#),
                    rusqlite::params![node.as_str(), i64::try_from(*pos)?],
                )?,
                other => anyhow::bail!("mutation {other:?} not known to this raw access"),
            };
            anyhow::ensure!(changed == 1, "{m:?} changed {changed} rows");
            Ok(true)
        })
        .await
    }
}

/// A JSON value as the SQL value a DBA would write: strings and integers as themselves,
/// `null` as NULL, a document as its JSON text.
fn sql_value(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sql;
    match v {
        Value::Null => Sql::Null,
        Value::String(s) => Sql::Text(s.clone()),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Sql::Text(n.to_string()), Sql::Integer),
        other => Sql::Text(other.to_string()),
    }
}

/// One temporary database file per case (removed with its WAL files when the case ends);
/// table names with a non-default prefix, to prove the names are configurable.
struct SqliteFactory {
    path: PathBuf,
}

impl SqliteFactory {
    fn config(&self) -> SqliteConfig {
        SqliteConfig::file(&self.path).tables(TableNames::with_prefix("peer_"))
    }

    async fn backend(&self) -> anyhow::Result<Backend> {
        let config = self.config();
        let store = SqliteStore::open(config.clone())
            .await
            .with_context(|| format!("opening {}", self.path.display()))?;
        store.migrate().await?;
        Ok(Backend {
            store: Arc::new(store),
            raw: Arc::new(SqliteRaw {
                path: self.path.clone(),
                tables: config.tables,
            }),
        })
    }
}

impl Drop for SqliteFactory {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[async_trait]
impl BackendFactory for SqliteFactory {
    async fn open(&self) -> anyhow::Result<Backend> {
        self.backend().await
    }

    async fn reopen(&self) -> anyhow::Result<Backend> {
        self.backend().await
    }
}

async fn factory() -> anyhow::Result<Option<SqliteFactory>> {
    let path = std::env::temp_dir().join(format!("sst-conformance-{}.db", uuid::Uuid::new_v4()));
    Ok(Some(SqliteFactory { path }))
}

conformance_tests::suite!(factory());
