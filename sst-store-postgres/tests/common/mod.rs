//! Test factory shared by the PostgreSQL suites: one fresh schema per case on
//! `SST_POSTGRES_URL`, optionally prepared with user DDL before `migrate`, dropped when the
//! case ends; raw SQL access to the `jsonb` columns of the section-version layout.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use conformance_tests::{Backend, BackendFactory, EventColumn, Mutation, RawAccess};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool};
use sst_core::{StateId, Store};
use sst_store_postgres::{PostgresConfig, PostgresStore};

/// One case's namespace: a uniquely named schema on the server.
pub struct PgFactory {
    url: String,
    schema: String,
    /// DDL run (with `{schema}` replaced) before the store migrates, e.g. a partitioned table.
    prepare: Option<&'static str>,
}

/// A factory on a fresh schema, `None` (skip) without `SST_POSTGRES_URL`.
pub async fn factory(prepare: Option<&'static str>) -> anyhow::Result<Option<PgFactory>> {
    let Some(url) = conformance_tests::url_or_skip("SST_POSTGRES_URL")? else {
        return Ok(None);
    };
    let schema = format!("sst_test_{}", uuid::Uuid::new_v4().simple());
    Ok(Some(PgFactory {
        url,
        schema,
        prepare,
    }))
}

impl PgFactory {
    /// The server URL and the case's schema, for checks behind the store's back.
    #[allow(dead_code)] // not every suite looks behind the store
    pub fn url_and_schema(&self) -> (&str, &str) {
        (&self.url, &self.schema)
    }

    async fn store(&self) -> anyhow::Result<PostgresStore> {
        let config = PostgresConfig::new(&self.url)
            .schema(&self.schema)
            .max_connections(4);
        let store = PostgresStore::connect(config)
            .await
            .with_context(|| format!("connecting to {}", self.url))?;
        if let Some(ddl) = self.prepare {
            sqlx::raw_sql(AssertSqlSafe(ddl.replace("{schema}", &self.schema)))
                .execute(store.pool())
                .await
                .context("preparing the schema")?;
        }
        store.migrate().await?;
        Ok(store)
    }
}

#[async_trait]
impl BackendFactory for PgFactory {
    async fn open(&self) -> anyhow::Result<Backend> {
        let store = self.store().await?;
        let t = &store.config().tables;
        let q = |table: &str| format!("\"{}\".\"{table}\"", self.schema);
        let raw = Raw {
            pool: store.pool().clone(),
            state: q(&t.state),
            history: q(&t.history),
            section: q(&t.section),
            versions: q(&t.versions),
            event: q(&t.event),
            actor: q(&t.actor),
            contract: q(&t.contract),
            refusal: q(&t.refusal),
            log: q(&t.log),
            checkpoint: q(&t.checkpoint),
        };
        Ok(Backend {
            store: Arc::new(store),
            raw: Arc::new(raw),
        })
    }

    async fn reopen(&self) -> anyhow::Result<Backend> {
        self.open().await
    }
}

impl Drop for PgFactory {
    /// Best-effort cleanup on a runtime of its own (Drop cannot await).
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let pool = PgPool::connect(&url).await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&pool)
                .await?;
                pool.close().await;
                anyhow::Ok(())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("could not drop test schema {}: {e}", self.schema);
        }
    }
}

/// Raw SQL on the `jsonb` columns, behind the store's back.
struct Raw {
    pool: PgPool,
    state: String,
    history: String,
    section: String,
    versions: String,
    event: String,
    actor: String,
    contract: String,
    refusal: String,
    log: String,
    checkpoint: String,
}

/// History columns but `id` and `version`, as the tamper statements copy them.
const HISTORY_REST: &str = "contract_name, contract_version, parties, seals, root, prev_root, \
                            last_event, updated_at";

impl Raw {
    /// Column `col` of the row of `version` of `id` in `table` (the history or its view).
    async fn column(
        &self,
        table: &str,
        col: &str,
        id: &StateId,
        version: u64,
    ) -> anyhow::Result<Option<Value>> {
        Ok(sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {col} FROM {table} WHERE id = $1 AND version = $2"
        )))
        .bind(id.as_str())
        .bind(i64::try_from(version)?)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// The disclosed seals (`name`, `hash`) of the version bound as `version` of state `$1`,
/// aliased `alias`, for joining section rows.
fn disclosed(history: &str, alias: &str, version: &str) -> String {
    format!(
        "(SELECT e.name, e.seal ->> 'hash' AS hash FROM {history} h, \
         jsonb_each(h.seals) AS e(name, seal) \
         WHERE h.id = $1 AND h.version = {version} AND e.seal ->> 'salt' IS NOT NULL) {alias}"
    )
}

#[async_trait]
impl RawAccess for Raw {
    async fn raw_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.column(&self.versions, "data", id, version).await
    }

    async fn raw_seals(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.column(&self.history, "seals", id, version).await
    }

    async fn set_raw_data(&self, id: &StateId, version: u64, data: Value) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        // Each disclosed section named in `data` into the section version `version` holds.
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} AS x SET value = $3::jsonb -> d.name FROM {} \
             WHERE x.state_id = $1 AND x.name = d.name AND x.hash = d.hash AND $3::jsonb ? d.name",
            self.section,
            disclosed(&self.history, "d", "$2")
        )))
        .bind(id.as_str())
        .bind(i64::try_from(version)?)
        .bind(&data)
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET data = $3 WHERE id = $1 AND version = $2",
            self.state
        )))
        .bind(id.as_str())
        .bind(i64::try_from(version)?)
        .bind(&data)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    fn has_current_state_table(&self) -> bool {
        true
    }

    async fn set_current_data_only(&self, id: &StateId, data: Value) -> anyhow::Result<()> {
        let n = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET data = $2 WHERE id = $1",
            self.state
        )))
        .bind(id.as_str())
        .bind(&data)
        .execute(&self.pool)
        .await?
        .rows_affected();
        anyhow::ensure!(
            n == 1,
            "expected one current-state row for {id}, changed {n}"
        );
        Ok(())
    }

    async fn swap_history_data(&self, id: &StateId, a: u64, b: u64) -> anyhow::Result<()> {
        // The section versions in which `a` and `b` differ exchange their values (one
        // statement reads the values before it writes any).
        let n = sqlx::query(AssertSqlSafe(format!(
            "WITH p AS (SELECT da.name, da.hash AS ha, db.hash AS hb FROM {da} JOIN {db} \
             ON da.name = db.name AND da.hash <> db.hash), \
             m AS (SELECT p.name, p.ha AS target, x.value FROM p JOIN {x} AS x \
             ON x.state_id = $1 AND x.name = p.name AND x.hash = p.hb \
             UNION ALL SELECT p.name, p.hb, x.value FROM p JOIN {x} AS x \
             ON x.state_id = $1 AND x.name = p.name AND x.hash = p.ha) \
             UPDATE {x} AS t SET value = m.value FROM m \
             WHERE t.state_id = $1 AND t.name = m.name AND t.hash = m.target",
            da = disclosed(&self.history, "da", "$2"),
            db = disclosed(&self.history, "db", "$3"),
            x = self.section,
        )))
        .bind(id.as_str())
        .bind(i64::try_from(a)?)
        .bind(i64::try_from(b)?)
        .execute(&self.pool)
        .await?
        .rows_affected();
        anyhow::ensure!(
            n >= 2 && n % 2 == 0,
            "expected to swap pairs of section versions, changed {n}"
        );
        Ok(())
    }

    /// In place, so that a history table the user partitioned stays partitioned (the first
    /// layout's columns and constraints, `data` and the current table's header columns added
    /// last), as a DBA would have kept it.
    async fn downgrade_to_first_layout(&self) -> anyhow::Result<bool> {
        let (state, history, versions) = (&self.state, &self.history, &self.versions);
        let mut tx = self.pool.begin().await?;
        let stmts = [
            format!(
                "ALTER TABLE {state} ADD COLUMN parties jsonb, ADD COLUMN seals jsonb, \
                 ADD COLUMN root text, ADD COLUMN prev_root text, ADD COLUMN last_event text, \
                 ADD COLUMN updated_at bigint"
            ),
            format!(
                "UPDATE {state} AS s SET parties = h.parties, seals = h.seals, root = h.root, \
                 prev_root = h.prev_root, last_event = h.last_event, updated_at = h.updated_at \
                 FROM {history} AS h WHERE h.id = s.id AND h.version = s.version"
            ),
            format!(
                "ALTER TABLE {state} ALTER COLUMN parties SET NOT NULL, \
                 ALTER COLUMN seals SET NOT NULL, ALTER COLUMN root SET NOT NULL, \
                 ALTER COLUMN updated_at SET NOT NULL"
            ),
            format!("ALTER TABLE {history} ADD COLUMN data jsonb"),
            format!(
                "UPDATE {history} AS h SET data = v.data FROM {versions} AS v \
                 WHERE v.id = h.id AND v.version = h.version"
            ),
            format!(
                "ALTER TABLE {history} ALTER COLUMN data SET NOT NULL, \
                 ADD CHECK (jsonb_typeof(data) = 'object')"
            ),
            format!("DROP VIEW {versions}"),
            format!("DROP TABLE {}", self.section),
        ];
        for stmt in stmts {
            sqlx::query(AssertSqlSafe(stmt)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn raw_event_column(
        &self,
        event: &sst_core::EventId,
        column: EventColumn,
    ) -> anyhow::Result<Option<Value>> {
        // `to_jsonb` keeps a `jsonb` document as it is, text as a string and an integer as a
        // number; SQL `NULL` stays `NULL` (JSON null here).
        let stored: Option<Option<Value>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT to_jsonb({}) FROM {} WHERE id = $1",
            column.name(),
            self.event
        )))
        .bind(event.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(stored.map(|v| v.unwrap_or(Value::Null)))
    }

    async fn mutate(&self, m: &Mutation) -> anyhow::Result<bool> {
        let (state, history, event) = (&self.state, &self.history, &self.event);
        let (log, contract) = (&self.log, &self.contract);
        let v = |v: u64| i64::try_from(v);
        let q = match m {
            Mutation::DeleteCurrentRow(id) => {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {state} WHERE id = $1")))
                    .bind(id.as_str())
            }
            Mutation::RollBackCurrentRow { id, version } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE {state} AS s SET version = h.version, contract_name = h.contract_name, \
                 contract_version = h.contract_version, data = h.data FROM {} AS h \
                 WHERE s.id = $1 AND h.id = $1 AND h.version = $2",
                self.versions
            )))
            .bind(id.as_str())
            .bind(v(*version)?),
            Mutation::DeleteHistoryVersion { id, version } => sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {history} WHERE id = $1 AND version = $2"
            )))
            .bind(id.as_str())
            .bind(v(*version)?),
            Mutation::CopyHistoryVersion { id, from, to } => sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {history} (id, version, {HISTORY_REST}) \
                 SELECT id, $3, {HISTORY_REST} FROM {history} WHERE id = $1 AND version = $2"
            )))
            .bind(id.as_str())
            .bind(v(*from)?)
            .bind(v(*to)?),
            Mutation::DeleteEvent(e) => {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {event} WHERE id = $1")))
                    .bind(e.to_string())
            }
            Mutation::RelabelApplied {
                event: e,
                version,
                root,
            } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE {event} SET outcome = 'applied', reason = NULL, reason_detail = NULL, \
                 new_version = $2, new_root = $3 WHERE id = $1"
            )))
            .bind(e.to_string())
            .bind(v(*version)?)
            .bind(root.to_string()),
            Mutation::SetEventColumn {
                event: e,
                column,
                value,
            } => {
                let c = column.name();
                let set = |to: &str| {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {event} SET {c} = {to} WHERE id = $1"
                    )))
                    .bind(e.to_string())
                };
                match (column, value) {
                    (_, Value::Null) => set("NULL"),
                    (c, doc) if c.is_document() => set("$2").bind(doc.clone()),
                    (_, Value::String(text)) => set("$2").bind(text.clone()),
                    (_, Value::Number(n)) => {
                        set("$2").bind(n.as_i64().with_context(|| format!("{n} is no bigint"))?)
                    }
                    (_, other) => anyhow::bail!("no value for column {c}: {other}"),
                }
            }
            Mutation::DropEventColumn(column) => {
                // A schema change touches no row: nothing to count.
                sqlx::query(AssertSqlSafe(format!(
                    "ALTER TABLE {event} DROP COLUMN {}",
                    column.name()
                )))
                .execute(&self.pool)
                .await?;
                return Ok(true);
            }
            Mutation::DeleteLogEntry(pos) => {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {log} WHERE pos = $1")))
                    .bind(v(*pos)?)
            }
            Mutation::CopyLogEntry { from, to } => sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {log} (pos, kind, subject, record, prev, hash) \
                 SELECT $2, kind, subject, record, prev, hash FROM {log} WHERE pos = $1"
            )))
            .bind(v(*from)?)
            .bind(v(*to)?),
            Mutation::SwapLogEntries { a, b } => {
                // Through a free (negative) position, as the primary key is checked per row.
                let mut tx = self.pool.begin().await?;
                for (from, to) in [(v(*a)?, -1), (v(*b)?, v(*a)?), (-1, v(*b)?)] {
                    let n = sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {log} SET pos = $2 WHERE pos = $1"
                    )))
                    .bind(from)
                    .bind(to)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    anyhow::ensure!(n == 1, "{m:?}: moving {from} to {to} changed {n} rows");
                }
                tx.commit().await?;
                return Ok(true);
            }
            Mutation::TruncateLog { from } => {
                let n = sqlx::query(AssertSqlSafe(format!("DELETE FROM {log} WHERE pos >= $1")))
                    .bind(v(*from)?)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                return Ok(n > 0);
            }
            Mutation::SetActorKey { actor, key } => {
                // Stored as the key's JSON string form.
                let key = serde_json::to_value(key)?;
                let key = key
                    .as_str()
                    .context("a public key serialises to a string")?;
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {} SET public_key = $2 WHERE id = $1",
                    self.actor
                )))
                .bind(actor.as_str())
                .bind(key.to_owned())
            }
            Mutation::SetContractDescriptor {
                contract: c,
                descriptor,
            } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE {contract} SET record = jsonb_set(record, '{{descriptor}}', $3) \
                 WHERE name = $1 AND version = $2"
            )))
            .bind(c.name.clone())
            .bind(i32::try_from(c.version)?)
            .bind(descriptor.clone()),
            Mutation::DeleteRefusal(e) => sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {} WHERE event_id = $1",
                self.refusal
            )))
            .bind(e.to_string()),
            Mutation::DeleteCheckpoint { node, pos } => sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {} WHERE node = $1 AND pos = $2",
                self.checkpoint
            )))
            .bind(node.as_str())
            .bind(v(*pos)?),
            other => anyhow::bail!("mutation {other:?} not known to this raw access"),
        };
        let n = q.execute(&self.pool).await?.rows_affected();
        anyhow::ensure!(n == 1, "{m:?} changed {n} rows");
        Ok(true)
    }
}
