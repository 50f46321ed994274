//! The whole conformance suite against SQLite, one temporary database file per case, with
//! raw SQL on the section-version tables as the tamper hook: data read from the history view,
//! edits written into the section rows (and the current row's `data`).

mod first_layout;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use conformance_tests::{Backend, BackendFactory, EventColumn, Mutation, RawAccess};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};
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

    /// The JSON text of `column` of `table`'s row for `version` of `id`, parsed.
    async fn column(
        &self,
        table: fn(&TableNames) -> &String,
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
                        table(t)
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

/// The seals of `version` of `id` in the history table: name to section hash, for the
/// sections it discloses (a seal with a salt).
fn disclosed(
    c: &Connection,
    t: &TableNames,
    id: &str,
    version: u64,
) -> anyhow::Result<Map<String, Value>> {
    let text: String = c
        .query_row(
            &format!(
                r#"SELECT seals FROM "{}" WHERE id = ?1 AND version = ?2"#,
                t.history
            ),
            rusqlite::params![id, i64::try_from(version)?],
            |r| r.get(0),
        )
        .with_context(|| format!("no history row for {id} version {version}"))?;
    let Value::Object(seals) = serde_json::from_str(&text)? else {
        anyhow::bail!("seals of {id} version {version} are not an object");
    };
    Ok(seals
        .into_iter()
        .filter(|(_, seal)| seal.get("salt").is_some_and(|s| !s.is_null()))
        .filter_map(|(name, seal)| Some((name, seal.get("hash")?.clone())))
        .collect())
}

/// Overwrites the section row `(id, name, hash)` with `value`; fails when there is none.
fn set_section(
    c: &Connection,
    t: &TableNames,
    id: &str,
    name: &str,
    hash: &Value,
    value: &Value,
) -> anyhow::Result<()> {
    let hash = hash.as_str().context("section hash is not a string")?;
    let changed = c.execute(
        &format!(
            r#"UPDATE "{}" SET value = ?4 WHERE state_id = ?1 AND name = ?2 AND hash = ?3"#,
            t.section
        ),
        rusqlite::params![id, name, hash, value.to_string()],
    )?;
    anyhow::ensure!(changed == 1, "no section row {id}/{name}/{hash}");
    Ok(())
}

#[async_trait]
impl RawAccess for SqliteRaw {
    async fn raw_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.column(|t| &t.versions, "data", id, version).await
    }

    async fn raw_seals(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.column(|t| &t.history, "seals", id, version).await
    }

    async fn set_raw_data(&self, id: &StateId, version: u64, data: Value) -> anyhow::Result<()> {
        let id = id.0.clone();
        self.with_conn(move |c, t| {
            let Value::Object(data) = &data else {
                anyhow::bail!("data is not an object");
            };
            let tx = c.transaction()?;
            for (name, hash) in disclosed(&tx, t, &id, version)? {
                if let Some(value) = data.get(&name) {
                    set_section(&tx, t, &id, &name, &hash, value)?;
                }
            }
            tx.execute(
                &format!(
                    r#"UPDATE "{}" SET data = ?1 WHERE id = ?2 AND version = ?3"#,
                    t.state
                ),
                rusqlite::params![serde_json::to_string(data)?, id, i64::try_from(version)?],
            )?;
            tx.commit()?;
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
            let tx = c.transaction()?;
            let (sa, sb) = (disclosed(&tx, t, &id, a)?, disclosed(&tx, t, &id, b)?);
            let value = |name: &str, hash: &Value| -> anyhow::Result<Value> {
                let text: String = tx.query_row(
                    &format!(
                        r#"SELECT value FROM "{}"
                           WHERE state_id = ?1 AND name = ?2 AND hash = ?3"#,
                        t.section
                    ),
                    rusqlite::params![id, name, hash.as_str().context("hash")?],
                    |r| r.get(0),
                )?;
                Ok(serde_json::from_str(&text)?)
            };
            let mut swapped = 0;
            for (name, ha) in &sa {
                let Some(hb) = sb.get(name).filter(|hb| *hb != ha) else {
                    continue;
                };
                let (va, vb) = (value(name, ha)?, value(name, hb)?);
                set_section(&tx, t, &id, name, ha, &vb)?;
                set_section(&tx, t, &id, name, hb, &va)?;
                swapped += 1;
            }
            anyhow::ensure!(
                swapped > 0,
                "versions {a} and {b} share every section version"
            );
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn downgrade_to_first_layout(&self) -> anyhow::Result<bool> {
        self.with_conn(|c, t| first_layout::downgrade(c, t).map(|()| true))
            .await
    }

    async fn raw_event_column(
        &self,
        event: &sst_core::EventId,
        column: EventColumn,
    ) -> anyhow::Result<Option<Value>> {
        use rusqlite::types::Value as Sql;
        let event = event.to_string();
        self.with_conn(move |c, t| {
            let stored: Option<Sql> = c
                .query_row(
                    &format!(
                        r#"SELECT {} FROM "{}" WHERE id = ?1"#,
                        column.name(),
                        t.event
                    ),
                    [event],
                    |r| r.get(0),
                )
                .optional()?;
            let document = column.is_document();
            let value = stored.map(|v| match v {
                Sql::Null => Ok(Value::Null),
                Sql::Integer(i) => Ok(Value::from(i)),
                Sql::Text(text) if document => serde_json::from_str(&text),
                Sql::Text(text) => Ok(Value::String(text)),
                other => Ok(Value::String(format!("{other:?}"))),
            });
            Ok(value.transpose()?)
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
            let versions = &t.versions;
            let cols = "id, version, contract_name, contract_version, parties, seals, root, \
                        prev_root, last_event, updated_at";
            let changed = match &m {
                Mutation::DeleteCurrentRow(id) => c.execute(
                    &format!(r#"DELETE FROM "{state}" WHERE id = ?1"#),
                    [id.as_str()],
                )?,
                Mutation::RollBackCurrentRow { id, version } => c.execute(
                    &format!(
                        r#"REPLACE INTO "{state}" (id, contract_name, contract_version, version,
                             data)
                           SELECT id, contract_name, contract_version, version, data
                           FROM "{versions}" WHERE id = ?1 AND version = ?2"#
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
                           SELECT id, ?3, contract_name, contract_version, parties, seals,
                                  root, prev_root, last_event, updated_at
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
