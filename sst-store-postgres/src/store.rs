//! [`PostgresStore`]: the [`Store`] contract on PostgreSQL through an sqlx pool, with `jsonb`
//! columns and one transaction per commit batch.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder, Row, SqlSafeStr, SqlStr};
use sst_core::columns::{json_value, outcome_from_columns};
use sst_core::model::StateParts;
use sst_core::{
    Actor, ActorId, CommitBatch, CommitReceipt, ContractRecord, ContractRef, Disclosure,
    EventColumns, EventFilter, EventId, EventRecord, NodeId, OriginSeq, SignedEvent, State,
    StateId, Store, StoreError,
};

use crate::config::PostgresConfig;
use crate::error::{backend, check_text, conflict_or_backend, to_i64};
use crate::schema::{self, Names};
use crate::NAME;

/// Columns of a state row, in the order the `SELECT`s below list them.
const STATE_SELECT: &str = "id, contract_name, contract_version, version, parties, seals, data, \
                            root, prev_root, last_event, updated_at";

/// Columns of an event row needed to rebuild an [`EventRecord`].
const EVENT_SELECT: &str = "event, disclosures, outcome, reason_detail, new_version, new_root";

/// Prepared SQL text, built once per store from the configured names.
#[derive(Debug)]
struct Sql {
    insert_event: SqlStr,
    lock_state: SqlStr,
    state_version: SqlStr,
    insert_state: SqlStr,
    update_state: SqlStr,
    insert_history: SqlStr,
    state: SqlStr,
    state_at: SqlStr,
    state_ids: SqlStr,
    event: SqlStr,
    last_origin_seq: SqlStr,
    put_actor: SqlStr,
    actor: SqlStr,
    actors: SqlStr,
    insert_contract: SqlStr,
    contract_identity: SqlStr,
    contract: SqlStr,
    contracts: SqlStr,
}

fn sql(s: String) -> SqlStr {
    // Only configuration-validated, quoted identifiers are spliced into these strings; all
    // values are bound parameters.
    AssertSqlSafe(Arc::<str>::from(s)).into_sql_str()
}

impl Sql {
    fn new(n: &Names) -> Self {
        let state_values = "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        Sql {
            insert_event: sql(format!(
                "INSERT INTO {} (id, state_id, kind, contract_name, contract_version, actor, \
                 origin_node, origin_seq, outcome, reason, reason_detail, new_version, new_root, \
                 event, disclosures) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (id) DO NOTHING RETURNING pos",
                n.event
            )),
            lock_state: sql(format!(
                "SELECT version FROM {} WHERE id = $1 FOR UPDATE",
                n.state
            )),
            state_version: sql(format!("SELECT version FROM {} WHERE id = $1", n.state)),
            insert_state: sql(format!(
                "INSERT INTO {} ({STATE_SELECT}) VALUES {state_values} ON CONFLICT (id) DO NOTHING",
                n.state
            )),
            update_state: sql(format!(
                "UPDATE {} SET contract_name = $2, contract_version = $3, version = $4, \
                 parties = $5, seals = $6, data = $7, root = $8, prev_root = $9, \
                 last_event = $10, updated_at = $11 WHERE id = $1",
                n.state
            )),
            insert_history: sql(format!(
                "INSERT INTO {} ({STATE_SELECT}) VALUES {state_values}",
                n.history
            )),
            state: sql(format!(
                "SELECT {STATE_SELECT} FROM {} WHERE id = $1",
                n.state
            )),
            state_at: sql(format!(
                "SELECT {STATE_SELECT} FROM {} WHERE id = $1 AND version = $2",
                n.history
            )),
            state_ids: sql(format!(
                "SELECT id FROM {} ORDER BY id COLLATE \"C\"",
                n.state
            )),
            event: sql(format!(
                "SELECT {EVENT_SELECT} FROM {} WHERE id = $1",
                n.event
            )),
            last_origin_seq: sql(format!(
                "SELECT COALESCE(MAX(origin_seq), 0) FROM {} WHERE origin_node = $1",
                n.event
            )),
            put_actor: sql(format!(
                "INSERT INTO {} (id, node, public_key, status) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET node = EXCLUDED.node, \
                 public_key = EXCLUDED.public_key, status = EXCLUDED.status",
                n.actor
            )),
            actor: sql(format!(
                "SELECT id, node, public_key, status FROM {} WHERE id = $1",
                n.actor
            )),
            actors: sql(format!(
                "SELECT id, node, public_key, status FROM {} ORDER BY id COLLATE \"C\"",
                n.actor
            )),
            insert_contract: sql(format!(
                "INSERT INTO {} (name, version, identity, deployer, record) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, version) DO NOTHING",
                n.contract
            )),
            contract_identity: sql(format!(
                "SELECT identity FROM {} WHERE name = $1 AND version = $2",
                n.contract
            )),
            contract: sql(format!(
                "SELECT record FROM {} WHERE name = $1 AND version = $2",
                n.contract
            )),
            contracts: sql(format!(
                "SELECT record FROM {} ORDER BY name COLLATE \"C\", version",
                n.contract
            )),
        }
    }
}

/// SST's peer tables in a PostgreSQL schema.
///
/// * every JSON column is `jsonb`, so users query and index states with plain SQL
///   (`data->'inspection'->>'radon'`); values are canonicalised by sst-core before hashing, so
///   jsonb's key reordering and number rewriting do not affect verification;
/// * `commit` runs one transaction per batch; the current-state row is locked with
///   `SELECT … FOR UPDATE` so concurrent commits on one state serialise, and the unique keys
///   `(id, version)` of the history and `(origin_node, origin_seq)` of the events are the
///   backstop (a violation is a [`StoreError::Conflict`]).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    config: Arc<PostgresConfig>,
    names: Arc<Names>,
    sql: Arc<Sql>,
}

/// Bound values of one state row.
struct StateRow {
    id: String,
    contract_name: String,
    contract_version: i32,
    version: i64,
    parties: Value,
    seals: Value,
    data: Value,
    root: String,
    prev_root: Option<String>,
    last_event: Option<String>,
    updated_at: i64,
}

impl StateRow {
    fn new(at: &str, s: &State) -> Result<Self, StoreError> {
        let p = s.to_parts();
        check_text(&format!("{at}.id"), p.id.as_str())?;
        check_text(&format!("{at}.contract.name"), &p.contract.name)?;
        Ok(StateRow {
            id: p.id.0,
            contract_name: p.contract.name,
            contract_version: contract_version(
                &format!("{at}.contract.version"),
                p.contract.version,
            )?,
            version: to_i64(&format!("{at}.version"), p.version)?,
            parties: p.parties,
            seals: p.seals,
            data: p.data,
            root: p.root,
            prev_root: p.prev_root,
            last_event: p.last_event,
            updated_at: p.updated_at,
        })
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.id)
            .bind(&self.contract_name)
            .bind(self.contract_version)
            .bind(self.version)
            .bind(&self.parties)
            .bind(&self.seals)
            .bind(&self.data)
            .bind(&self.root)
            .bind(&self.prev_root)
            .bind(&self.last_event)
            .bind(self.updated_at)
    }
}

/// Bound values of one event row: the shared columns, with the contract version as
/// PostgreSQL's `integer`.
struct EventRow {
    c: EventColumns,
    contract_version: i32,
}

fn contract_version(path: &str, v: u32) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::InvalidInput {
        path: path.to_owned(),
        reason: format!("contract version {v} does not fit an integer column"),
    })
}

impl EventRow {
    fn new(at: &str, r: &EventRecord) -> Result<Self, StoreError> {
        let e = r.event();
        for (field, v) in [
            ("state_id", e.state_id.as_str()),
            ("contract.name", &e.contract.name),
            ("actor", e.actor.as_str()),
            ("origin_node", e.origin_node.as_str()),
        ] {
            check_text(&format!("{at}.event.{field}"), v)?;
        }
        let c = EventColumns::from_record(at, r)?;
        let contract_version =
            contract_version(&format!("{at}.event.contract.version"), c.contract_version)?;
        Ok(EventRow {
            c,
            contract_version,
        })
    }
}

fn col<'r, T>(row: &'r PgRow, name: &str, what: &dyn Fn() -> String) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name)
        .map_err(|e| StoreError::malformed(what(), format!("column {name}: {e}")))
}

fn state_from_row(row: &PgRow) -> Result<State, StoreError> {
    let id: String = col(row, "id", &|| "state row".to_owned())?;
    let version: i64 = col(row, "version", &|| format!("state {id}"))?;
    let what = || format!("state {id} version {version}");
    let contract_version: i32 = col(row, "contract_version", &what)?;
    let parts = StateParts {
        id: StateId(id.clone()),
        contract: ContractRef::new(
            col::<String>(row, "contract_name", &what)?,
            u32::try_from(contract_version).map_err(|e| StoreError::malformed(what(), e))?,
        ),
        version: u64::try_from(version).map_err(|e| StoreError::malformed(what(), e))?,
        parties: col(row, "parties", &what)?,
        seals: col(row, "seals", &what)?,
        data: col(row, "data", &what)?,
        root: col(row, "root", &what)?,
        prev_root: col(row, "prev_root", &what)?,
        last_event: col(row, "last_event", &what)?,
        updated_at: col(row, "updated_at", &what)?,
    };
    State::from_parts(parts).map_err(|source| StoreError::Integrity {
        what: what(),
        source,
    })
}

fn event_from_row(row: &PgRow) -> Result<EventRecord, StoreError> {
    let what = || "event row".to_owned();
    let signed: SignedEvent = serde_json::from_value(col(row, "event", &what)?)
        .map_err(|e| StoreError::malformed(what(), format!("event: {e}")))?;
    let what = || format!("event {}", signed.id);
    let disclosures: BTreeMap<String, Disclosure> =
        serde_json::from_value(col(row, "disclosures", &what)?)
            .map_err(|e| StoreError::malformed(what(), format!("disclosures: {e}")))?;
    let outcome: String = col(row, "outcome", &what)?;
    let outcome = outcome_from_columns(
        &what(),
        &outcome,
        col(row, "new_version", &what)?,
        col(row, "new_root", &what)?,
        col(row, "reason_detail", &what)?,
    )?;
    Ok(EventRecord {
        signed,
        disclosures,
        outcome,
    })
}

fn actor_from_row(row: &PgRow) -> Result<Actor, StoreError> {
    let what = || "actor row".to_owned();
    let id: String = col(row, "id", &what)?;
    let v = serde_json::json!({
        "id": id,
        "node": col::<String>(row, "node", &what)?,
        "public_key": col::<String>(row, "public_key", &what)?,
        "status": col::<String>(row, "status", &what)?,
    });
    serde_json::from_value(v).map_err(|e| StoreError::malformed(format!("actor {id}"), e))
}

fn contract_from_row(row: &PgRow) -> Result<ContractRecord, StoreError> {
    let what = || "contract row".to_owned();
    serde_json::from_value(col(row, "record", &what)?).map_err(|e| StoreError::malformed(what(), e))
}

impl PostgresStore {
    /// Connects a pool to `config.url` (nothing is created until [`Store::migrate`]).
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for a bad URL or table name; [`StoreError::Backend`] when
    /// the server cannot be reached.
    pub async fn connect(config: PostgresConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let options =
            PgConnectOptions::from_str(&config.url).map_err(|e| StoreError::InvalidInput {
                path: "config.url".into(),
                reason: e.to_string(),
            })?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .connect_with(options)
            .await
            .map_err(|e| backend("connect", e))?;
        Ok(Self::with_pool(pool, config))
    }

    /// Uses an existing pool (shared with the application) with `config`'s schema and table
    /// names; `config.url` and `config.max_connections` are ignored.
    ///
    /// # Panics
    /// Never; invalid names are reported by [`Store::migrate`] and every other call.
    pub fn with_pool(pool: PgPool, config: PostgresConfig) -> Self {
        let names = Names::new(&config);
        PostgresStore {
            pool,
            sql: Arc::new(Sql::new(&names)),
            names: Arc::new(names),
            config: Arc::new(config),
        }
    }

    /// The connection pool (for the application's own queries on the same database).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The settings this store was opened with.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    fn query(
        &self,
        s: &SqlStr,
    ) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(s.clone())
    }

    async fn fetch_state(
        &self,
        s: &SqlStr,
        id: &StateId,
        version: Option<i64>,
        op: &'static str,
    ) -> Result<Option<State>, StoreError> {
        self.config.validate()?;
        let mut q = self.query(s).bind(id.as_str());
        if let Some(v) = version {
            q = q.bind(v);
        }
        let row = q
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend(op, e))?;
        row.as_ref().map(state_from_row).transpose()
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        NAME
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.config.validate()?;
        let op = "migrate";
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        // Concurrent migrations of the same schema wait for each other instead of racing on
        // the catalog (CREATE … IF NOT EXISTS is not atomic across sessions).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("sst-migrate:{}", self.config.schema))
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(op, e))?;
        for stmt in schema::ddl(&self.names) {
            sqlx::query(AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await
                .map_err(|e| backend(op, e))?;
        }
        tx.commit().await.map_err(|e| backend(op, e))
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReceipt, StoreError> {
        batch.validate()?;
        self.config.validate()?;
        let op = "commit";
        // Everything is converted (and range-checked) before the database is touched.
        let mut rows = Vec::with_capacity(batch.items.len());
        for (i, item) in batch.items.iter().enumerate() {
            let at = format!("items[{i}]");
            let state = item
                .state
                .as_ref()
                .map(|s| StateRow::new(&format!("{at}.state"), s))
                .transpose()?;
            rows.push((item.event.id(), EventRow::new(&at, &item.event)?, state));
        }
        let mut receipt = CommitReceipt::default();
        let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
        for (id, ev, state) in &rows {
            let pos: Option<i64> = sqlx::query_scalar(self.sql.insert_event.clone())
                .bind(&ev.c.id)
                .bind(&ev.c.state_id)
                .bind(ev.c.kind)
                .bind(&ev.c.contract_name)
                .bind(ev.contract_version)
                .bind(&ev.c.actor)
                .bind(&ev.c.origin_node)
                .bind(ev.c.origin_seq)
                .bind(ev.c.outcome)
                .bind(ev.c.reason)
                .bind(&ev.c.reason_detail)
                .bind(ev.c.new_version)
                .bind(&ev.c.new_root)
                .bind(&ev.c.signed)
                .bind(&ev.c.disclosures)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| {
                    // `id` conflicts are absorbed by ON CONFLICT: a unique violation here is
                    // the (origin_node, origin_seq) key.
                    conflict_or_backend(op, e, || {
                        let seq = ev.c.origin_seq as u64;
                        (
                            format!("origin {} seq {seq}", ev.c.origin_node),
                            seq.saturating_sub(1),
                            seq,
                        )
                    })
                })?;
            if pos.is_none() {
                receipt.duplicates.push(*id);
                continue;
            }
            if let Some(s) = state {
                let conflict = |found: i64| StoreError::Conflict {
                    what: format!("state {}", s.id),
                    expected: (s.version - 1) as u64,
                    found: found as u64,
                };
                let current: Option<i64> = sqlx::query_scalar(self.sql.lock_state.clone())
                    .bind(&s.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| backend(op, e))?;
                match current {
                    None if s.version == 1 => {
                        let inserted = s
                            .bind(self.query(&self.sql.insert_state))
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| backend(op, e))?;
                        if inserted.rows_affected() == 0 {
                            // A concurrent writer created the state first.
                            let found: Option<i64> =
                                sqlx::query_scalar(self.sql.state_version.clone())
                                    .bind(&s.id)
                                    .fetch_optional(&mut *tx)
                                    .await
                                    .map_err(|e| backend(op, e))?;
                            return Err(conflict(found.unwrap_or(1)));
                        }
                    }
                    Some(c) if c + 1 == s.version => {
                        s.bind(self.query(&self.sql.update_state))
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| backend(op, e))?;
                    }
                    other => return Err(conflict(other.unwrap_or(0))),
                }
                s.bind(self.query(&self.sql.insert_history))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        conflict_or_backend(op, e, || {
                            let v = s.version as u64;
                            (format!("state {}", s.id), v - 1, v)
                        })
                    })?;
            }
            receipt.committed.push(*id);
        }
        tx.commit().await.map_err(|e| backend(op, e))?;
        Ok(receipt)
    }

    async fn state(&self, id: &StateId) -> Result<Option<State>, StoreError> {
        self.fetch_state(&self.sql.state, id, None, "state").await
    }

    async fn state_at(&self, id: &StateId, version: u64) -> Result<Option<State>, StoreError> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        self.fetch_state(&self.sql.state_at, id, Some(v), "state_at")
            .await
    }

    async fn state_ids(&self) -> Result<Vec<StateId>, StoreError> {
        self.config.validate()?;
        let ids: Vec<String> = sqlx::query_scalar(self.sql.state_ids.clone())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("state_ids", e))?;
        Ok(ids.into_iter().map(StateId).collect())
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        self.config.validate()?;
        if filter.limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {EVENT_SELECT} FROM {} WHERE TRUE",
            self.names.event
        ));
        if let Some(s) = &filter.state_id {
            q.push(" AND state_id = ").push_bind(s.0.clone());
        }
        if let Some(a) = &filter.actor {
            q.push(" AND actor = ").push_bind(a.0.clone());
        }
        if let Some(n) = &filter.origin_node {
            q.push(" AND origin_node = ").push_bind(n.0.clone());
        }
        if let Some(s) = filter.after_origin_seq {
            q.push(" AND origin_seq > ")
                .push_bind(i64::try_from(s.0).unwrap_or(i64::MAX));
        }
        if let Some(o) = filter.outcome {
            q.push(" AND outcome = ").push_bind(o.as_str());
        }
        if let Some(k) = filter.kind {
            q.push(" AND kind = ").push_bind(k.as_str());
        }
        q.push(" ORDER BY pos");
        if let Some(limit) = filter.limit {
            q.push(" LIMIT ")
                .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("events", e))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.config.validate()?;
        let row = self
            .query(&self.sql.event)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("event", e))?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn last_origin_seq(&self, node: &NodeId) -> Result<OriginSeq, StoreError> {
        self.config.validate()?;
        let seq: i64 = sqlx::query_scalar(self.sql.last_origin_seq.clone())
            .bind(node.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend("last_origin_seq", e))?;
        Ok(OriginSeq(u64::try_from(seq).unwrap_or(0)))
    }

    async fn put_actor(&self, actor: &Actor) -> Result<(), StoreError> {
        self.config.validate()?;
        check_text("actor.id", actor.id.as_str())?;
        check_text("actor.node", actor.node.as_str())?;
        let key = json_value("actor.public_key", &actor.public_key)?;
        let key = key.as_str().unwrap_or_default().to_owned();
        self.query(&self.sql.put_actor)
            .bind(actor.id.as_str())
            .bind(actor.node.as_str())
            .bind(key)
            .bind(actor.status.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| backend("put_actor", e))?;
        Ok(())
    }

    async fn actor(&self, id: &ActorId) -> Result<Option<Actor>, StoreError> {
        self.config.validate()?;
        let row = self
            .query(&self.sql.actor)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("actor", e))?;
        row.as_ref().map(actor_from_row).transpose()
    }

    async fn actors(&self) -> Result<Vec<Actor>, StoreError> {
        self.config.validate()?;
        let rows = self
            .query(&self.sql.actors)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("actors", e))?;
        rows.iter().map(actor_from_row).collect()
    }

    async fn put_contract(&self, contract: &ContractRecord) -> Result<(), StoreError> {
        self.config.validate()?;
        let op = "put_contract";
        let key = contract.contract();
        check_text("contract.name", &key.name)?;
        let version = contract_version("contract.version", key.version)?;
        let record = json_value("contract", contract)?;
        sst_core::portable::check_at(&record, "$.contract")?;
        let inserted = self
            .query(&self.sql.insert_contract)
            .bind(&key.name)
            .bind(version)
            .bind(contract.identity.to_string())
            .bind(contract.deployer.as_str())
            .bind(&record)
            .execute(&self.pool)
            .await
            .map_err(|e| backend(op, e))?;
        if inserted.rows_affected() == 1 {
            return Ok(());
        }
        let existing: String = sqlx::query_scalar(self.sql.contract_identity.clone())
            .bind(&key.name)
            .bind(version)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend(op, e))?;
        if existing == contract.identity.to_string() {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                what: format!(
                    "contract {key} (identity {existing} vs {})",
                    contract.identity
                ),
                expected: u64::from(key.version),
                found: u64::from(key.version),
            })
        }
    }

    async fn contract(&self, contract: &ContractRef) -> Result<Option<ContractRecord>, StoreError> {
        self.config.validate()?;
        let Ok(version) = i32::try_from(contract.version) else {
            return Ok(None);
        };
        let row = self
            .query(&self.sql.contract)
            .bind(&contract.name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("contract", e))?;
        row.as_ref().map(contract_from_row).transpose()
    }

    async fn contracts(&self) -> Result<Vec<ContractRecord>, StoreError> {
        self.config.validate()?;
        let rows = self
            .query(&self.sql.contracts)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("contracts", e))?;
        rows.iter().map(contract_from_row).collect()
    }
}
