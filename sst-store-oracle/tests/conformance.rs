//! The whole conformance suite against `SST_ORACLE_URL`
//! (`oracle://user:password@host:port/service`), and Oracle's refusal to upgrade a
//! first-layout history holding one section version with two values. Where the Oracle Client
//! library cannot be loaded (DPI-1047) every case reports itself skipped, "not run here"; that
//! is the only condition that skips even under `SST_REQUIRE_BACKEND=1`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{ensure, Context};
use async_trait::async_trait;
use conformance_tests::fixtures::{
    actor, change, create, deal_parties, deal_values, state_id, values,
};
use conformance_tests::{Backend, BackendFactory, EventColumn, Mutation, RawAccess};
use oracle::sql_type::ToSql;
use serde_json::{json, Value};
use sst_core::model::SectionSeal;
use sst_core::{CommitBatch, SectionHash, StateId, Store, StoreError};
use sst_store_oracle::store::JsonBind;
use sst_store_oracle::value::{decode, decode_bytes};
use sst_store_oracle::{JsonMode, OracleConfig, OracleStore};

struct OracleFactory {
    config: OracleConfig,
}

impl OracleFactory {
    async fn backend(&self) -> anyhow::Result<Backend> {
        let store = OracleStore::open(self.config.clone()).await?;
        store.migrate().await?;
        let raw = OracleRaw {
            config: self.config.clone(),
            mode: store.json_mode(),
        };
        Ok(Backend {
            store: Arc::new(store),
            raw: Arc::new(raw),
        })
    }
}

#[async_trait]
impl BackendFactory for OracleFactory {
    async fn open(&self) -> anyhow::Result<Backend> {
        self.backend().await
    }
    async fn reopen(&self) -> anyhow::Result<Backend> {
        self.backend().await
    }
}

impl Drop for OracleFactory {
    fn drop(&mut self) {
        let c = self.config.clone();
        let dropped = std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
            let conn = oracle::Connection::connect(&c.username, &c.password, &c.connect_string)?;
            let mut failed = Vec::new();
            for (field, t) in c.tables.fields() {
                let sql = if field == "tables.versions" {
                    format!("DROP VIEW {t}")
                } else {
                    format!("DROP TABLE {t} CASCADE CONSTRAINTS PURGE")
                };
                // ORA-00942: not there (a case that left no view or section table).
                match conn.execute(&sql, &[]) {
                    Err(e) if e.oci_code() != Some(942) => failed.push(format!("{t}: {e}")),
                    _ => {}
                }
            }
            Ok(failed)
        })
        .join();
        match dropped {
            Ok(Ok(failed)) if failed.is_empty() => {}
            other => eprintln!(
                "warning: could not drop the test tables {:?}: {other:?}",
                self.config.tables
            ),
        }
    }
}

/// Raw SQL on the history, section, current-state and event tables and the history view.
struct OracleRaw {
    config: OracleConfig,
    mode: JsonMode,
}

/// The columns of a state table of the first layout (current and history alike), as
/// `git show e938981:sst-store-oracle/src/schema.rs` created them.
fn first_layout_columns(mode: JsonMode, table: &str) -> String {
    let json = |c: &str| mode.column(c, false).replace("{t}", table);
    format!(
        "id VARCHAR2(512) NOT NULL, \
         contract_name VARCHAR2(256) NOT NULL, \
         contract_version NUMBER(10) NOT NULL, \
         version NUMBER(19) NOT NULL CHECK (version >= 1), \
         {}, {}, {}, \
         root VARCHAR2(128) NOT NULL, \
         prev_root VARCHAR2(128), \
         last_event VARCHAR2(128), \
         updated_at NUMBER(19) NOT NULL",
        json("parties"),
        json("seals"),
        json("data")
    )
}

/// The column list of a first-layout state row, in [`FirstLayoutRow`] order.
const FIRST_LAYOUT_COLUMNS: &str = "id, contract_name, contract_version, version, parties, \
     seals, data, root, prev_root, last_event, updated_at";

/// One row of a first-layout state table.
struct FirstLayoutRow {
    id: String,
    contract_name: String,
    contract_version: i64,
    version: i64,
    parties: Value,
    seals: Value,
    data: Value,
    root: String,
    prev_root: Option<String>,
    last_event: Option<String>,
    updated_at: i64,
}

impl OracleRaw {
    fn conn(&self) -> anyhow::Result<oracle::Connection> {
        let c = &self.config;
        Ok(oracle::Connection::connect(
            &c.username,
            &c.password,
            &c.connect_string,
        )?)
    }

    /// JSON column `idx` of a row selected with the mode's `read`.
    fn json(&self, row: &oracle::Row, idx: usize) -> anyhow::Result<Value> {
        Ok(match self.mode {
            JsonMode::Native => decode(&row.get::<_, String>(idx)?)?,
            JsonMode::Blob => decode_bytes(&row.get::<_, Vec<u8>>(idx)?)?,
        })
    }

    /// JSON column `col` of `table`'s row of `id` at `version`.
    fn read(
        &self,
        table: &str,
        id: &StateId,
        version: u64,
        col: &str,
    ) -> anyhow::Result<Option<Value>> {
        let sql = format!(
            "SELECT {} FROM {table} WHERE id = :1 AND version = :2",
            self.mode.read(col),
        );
        let v = i64::try_from(version)?;
        let conn = self.conn()?;
        let rows = conn.query(&sql, &[&id.0, &v])?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(self.json(&row?, 0)?))
    }

    /// The seals of history version `version` of `id`.
    fn seals(&self, id: &StateId, version: u64) -> anyhow::Result<BTreeMap<String, SectionSeal>> {
        let seals = self
            .read(&self.config.tables.history, id, version, "seals")?
            .with_context(|| format!("{id} has no version {version}"))?;
        Ok(serde_json::from_value(seals)?)
    }

    /// Overwrites the value of section version `(id, name, hash)`.
    fn write_section(
        &self,
        conn: &oracle::Connection,
        id: &StateId,
        name: &str,
        hash: &SectionHash,
        value: &Value,
    ) -> anyhow::Result<()> {
        let sql = format!(
            "UPDATE {} SET value = {} WHERE state_id = :2 AND name = :3 AND hash = :4",
            self.config.tables.section,
            self.mode.bind(1)
        );
        let bind = JsonBind::new(self.mode, value);
        let hash = hash.to_string();
        let params: [&dyn ToSql; 4] = [&bind, &id.0, &name, &hash];
        let n = conn.execute(&sql, &params)?.row_count()?;
        anyhow::ensure!(n == 1, "section {name} {hash} of {id}: {n} rows");
        Ok(())
    }

    /// Every row of a state table (`c` current, `h` history) as the first layout holds it.
    fn first_layout_rows(
        &self,
        conn: &oracle::Connection,
        sql: &str,
    ) -> anyhow::Result<Vec<FirstLayoutRow>> {
        let mut out = Vec::new();
        for row in conn.query(sql, &[])? {
            let row = row?;
            out.push(FirstLayoutRow {
                id: row.get(0)?,
                contract_name: row.get(1)?,
                contract_version: row.get(2)?,
                version: row.get(3)?,
                parties: self.json(&row, 4)?,
                seals: self.json(&row, 5)?,
                data: self.json(&row, 6)?,
                root: row.get(7)?,
                prev_root: row.get(8)?,
                last_event: row.get(9)?,
                updated_at: row.get(10)?,
            });
        }
        Ok(out)
    }

    /// The contract's stored record with its `descriptor` replaced, as a JSON bind.
    fn edited_contract(
        &self,
        conn: &oracle::Connection,
        contract: &sst_core::ContractRef,
        descriptor: &Value,
    ) -> anyhow::Result<JsonBind> {
        let sql = format!(
            "SELECT {} FROM {} WHERE name = :1 AND version = :2",
            self.mode.read("record"),
            self.config.tables.contract
        );
        let version = i64::from(contract.version);
        let row = conn.query_row(&sql, &[&contract.name, &version])?;
        let mut record = match self.mode {
            JsonMode::Native => decode(&row.get::<_, String>(0)?)?,
            JsonMode::Blob => decode_bytes(&row.get::<_, Vec<u8>>(0)?)?,
        };
        record["descriptor"] = descriptor.clone();
        Ok(JsonBind::new(self.mode, &record))
    }
}

/// The bind of an event column's new value: strings and integers as themselves, a JSON
/// document or `null` for the JSON columns (receipt, business events, endorsements,
/// disclosures).
fn column_bind(
    mode: JsonMode,
    column: EventColumn,
    value: &Value,
) -> anyhow::Result<Box<dyn ToSql>> {
    Ok(match (column, value) {
        (c, Value::Null) if c.is_document() => Box::new(JsonBind::Null(mode)),
        (c, v) if c.is_document() => Box::new(JsonBind::new(mode, v)),
        (_, Value::Null) => Box::new(None::<String>),
        (_, Value::String(s)) => Box::new(s.clone()),
        (_, Value::Number(n)) => Box::new(n.as_i64().context("an integer column value")?),
        (_, other) => anyhow::bail!("no plain column holds {other}"),
    })
}

#[async_trait]
impl RawAccess for OracleRaw {
    async fn raw_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.read(&self.config.tables.versions, id, version, "data")
    }
    async fn raw_seals(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.read(&self.config.tables.history, id, version, "seals")
    }
    async fn set_raw_data(&self, id: &StateId, version: u64, data: Value) -> anyhow::Result<()> {
        let seals = self.seals(id, version)?;
        let map = data.as_object().context("data is not an object")?;
        let conn = self.conn()?;
        for (name, seal) in &seals {
            if let (Some(_), Some(value)) = (&seal.salt, map.get(name)) {
                self.write_section(&conn, id, name, &seal.hash, value)?;
            }
        }
        // The current row too, when `version` is the latest.
        let sql = format!(
            "UPDATE {} SET data = {} WHERE id = :2 AND version = :3",
            self.config.tables.state,
            self.mode.bind(1)
        );
        let bind = JsonBind::new(self.mode, &data);
        let v = i64::try_from(version)?;
        let params: [&dyn ToSql; 3] = [&bind, &id.0, &v];
        conn.execute(&sql, &params)?;
        Ok(conn.commit()?)
    }
    fn has_current_state_table(&self) -> bool {
        true
    }
    async fn set_current_data_only(&self, id: &StateId, data: Value) -> anyhow::Result<()> {
        let conn = self.conn()?;
        let bind = JsonBind::new(self.mode, &data);
        let sql = format!(
            "UPDATE {} SET data = {} WHERE id = :2",
            self.config.tables.state,
            self.mode.bind(1)
        );
        let params: [&dyn ToSql; 2] = [&bind, &id.0];
        conn.execute(&sql, &params)?;
        Ok(conn.commit()?)
    }
    async fn swap_history_data(&self, id: &StateId, a: u64, b: u64) -> anyhow::Result<()> {
        let (sa, sb) = (self.seals(id, a)?, self.seals(id, b)?);
        let history = &self.config.tables.versions;
        let da = self
            .read(history, id, a, "data")?
            .context("version a missing")?;
        let db = self
            .read(history, id, b, "data")?
            .context("version b missing")?;
        let conn = self.conn()?;
        for (name, seal_a) in &sa {
            let Some(seal_b) = sb.get(name) else { continue };
            if seal_a.hash == seal_b.hash || seal_a.salt.is_none() || seal_b.salt.is_none() {
                continue;
            }
            let (Some(va), Some(vb)) = (da.get(name), db.get(name)) else {
                continue;
            };
            self.write_section(&conn, id, name, &seal_a.hash, vb)?;
            self.write_section(&conn, id, name, &seal_b.hash, va)?;
        }
        Ok(conn.commit()?)
    }
    async fn downgrade_to_first_layout(&self) -> anyhow::Result<bool> {
        let t = &self.config.tables;
        let (state, history, section, versions) = (&t.state, &t.history, &t.section, &t.versions);
        let m = |c: &str| self.mode.read(c);
        let conn = self.conn()?;
        // The header from row `head`, the rest from history row `h`, data from `data`.
        let rows = |head: &str, data: &str, from: String| {
            self.first_layout_rows(
                &conn,
                &format!(
                    "SELECT {head}.id, {head}.contract_name, {head}.contract_version, \
                     {head}.version, {}, {}, {}, h.root, h.prev_root, h.last_event, \
                     h.updated_at FROM {from}",
                    m("h.parties"),
                    m("h.seals"),
                    m(data)
                ),
            )
        };
        let history_rows = rows(
            "h",
            "v.data",
            format!("{history} h JOIN {versions} v ON v.id = h.id AND v.version = h.version"),
        )?;
        let current_rows = rows(
            "c",
            "c.data",
            format!("{state} c JOIN {history} h ON h.id = c.id AND h.version = c.version"),
        )?;
        for drop in [
            format!("DROP VIEW {versions}"),
            format!("DROP TABLE {section} CASCADE CONSTRAINTS PURGE"),
            format!("DROP TABLE {state} CASCADE CONSTRAINTS PURGE"),
            format!("DROP TABLE {history} CASCADE CONSTRAINTS PURGE"),
        ] {
            conn.execute(&drop, &[])?;
        }
        let b = |n| self.mode.bind(n);
        for (table, key, rows) in [
            (state, "id", &current_rows),
            (history, "id, version", &history_rows),
        ] {
            conn.execute(
                &format!(
                    "CREATE TABLE {table} ({}, CONSTRAINT {table}_pk PRIMARY KEY ({key}))",
                    first_layout_columns(self.mode, table)
                ),
                &[],
            )?;
            let insert = format!(
                "INSERT INTO {table} ({FIRST_LAYOUT_COLUMNS}) \
                 VALUES (:1, :2, :3, :4, {}, {}, {}, :8, :9, :10, :11)",
                b(5),
                b(6),
                b(7)
            );
            for r in rows {
                let (parties, seals, data) = (
                    JsonBind::new(self.mode, &r.parties),
                    JsonBind::new(self.mode, &r.seals),
                    JsonBind::new(self.mode, &r.data),
                );
                let params: [&dyn ToSql; 11] = [
                    &r.id,
                    &r.contract_name,
                    &r.contract_version,
                    &r.version,
                    &parties,
                    &seals,
                    &data,
                    &r.root,
                    &r.prev_root,
                    &r.last_event,
                    &r.updated_at,
                ];
                conn.execute(&insert, &params)?;
            }
        }
        conn.commit()?;
        Ok(true)
    }
    /// The event row's column: a JSON column decoded from the mode's text or bytes, an integer
    /// column as a number, text as a string, `NULL` as `null`.
    async fn raw_event_column(
        &self,
        event: &sst_core::EventId,
        column: EventColumn,
    ) -> anyhow::Result<Option<Value>> {
        let selected = if column.is_document() {
            self.mode.read(column.name())
        } else {
            column.name().to_owned()
        };
        let sql = format!(
            "SELECT {selected} FROM {} WHERE id = :1",
            self.config.tables.event
        );
        let conn = self.conn()?;
        let rows = conn.query(&sql, &[&event.to_string()])?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let row = row?;
        let value = match column {
            c if c.is_document() => match self.mode {
                JsonMode::Native => row.get::<_, Option<String>>(0)?.map(|t| decode(&t)),
                JsonMode::Blob => row.get::<_, Option<Vec<u8>>>(0)?.map(|b| decode_bytes(&b)),
            }
            .transpose()?
            .unwrap_or(Value::Null),
            EventColumn::OriginSeq => row
                .get::<_, Option<i64>>(0)?
                .map_or(Value::Null, Value::from),
            _ => row
                .get::<_, Option<String>>(0)?
                .map_or(Value::Null, Value::String),
        };
        Ok(Some(value))
    }
    /// One plain statement per mutation. Placeholders are numbered in the order they appear:
    /// the driver binds by position in the text.
    async fn mutate(&self, m: &Mutation) -> anyhow::Result<bool> {
        let t = &self.config.tables;
        let (state, history, event) = (&t.state, &t.history, &t.event);
        let conn = self.conn()?;
        let run = |sql: String, params: &[&dyn ToSql]| -> anyhow::Result<u64> {
            Ok(conn.execute(&sql, params)?.row_count()?)
        };
        let changed = match m {
            Mutation::DeleteCurrentRow(id) => {
                run(format!("DELETE FROM {state} WHERE id = :1"), &[&id.0])?
            }
            Mutation::RollBackCurrentRow { id, version } => run(
                format!(
                    "UPDATE {state} c SET (contract_name, contract_version, version, data) = \
                     (SELECT h.contract_name, h.contract_version, h.version, v.data \
                     FROM {history} h JOIN {} v ON v.id = h.id AND v.version = h.version \
                     WHERE h.id = :1 AND h.version = :2) WHERE c.id = :3",
                    t.versions
                ),
                &[&id.0, &i64::try_from(*version)?, &id.0],
            )?,
            Mutation::DeleteHistoryVersion { id, version } => run(
                format!("DELETE FROM {history} WHERE id = :1 AND version = :2"),
                &[&id.0, &i64::try_from(*version)?],
            )?,
            Mutation::CopyHistoryVersion { id, from, to } => run(
                format!(
                    "INSERT INTO {history} (version, id, contract_name, contract_version, \
                     parties, seals, root, prev_root, last_event, updated_at) \
                     SELECT :1, id, contract_name, contract_version, parties, seals, \
                     root, prev_root, last_event, updated_at \
                     FROM {history} WHERE id = :2 AND version = :3"
                ),
                &[&i64::try_from(*to)?, &id.0, &i64::try_from(*from)?],
            )?,
            Mutation::DeleteEvent(e) => run(
                format!("DELETE FROM {event} WHERE id = :1"),
                &[&e.to_string()],
            )?,
            Mutation::RelabelApplied {
                event: e,
                version,
                root,
            } => run(
                format!(
                    "UPDATE {event} SET outcome = 'applied', reason = NULL, \
                     reason_detail = NULL, new_version = :1, new_root = :2 WHERE id = :3"
                ),
                &[&i64::try_from(*version)?, &root.to_string(), &e.to_string()],
            )?,
            Mutation::SetEventColumn {
                event: e,
                column,
                value,
            } => {
                let target = if column.is_document() {
                    self.mode.bind(1)
                } else {
                    ":1".to_owned()
                };
                let bind = column_bind(self.mode, *column, value)?;
                run(
                    format!(
                        "UPDATE {event} SET {} = {target} WHERE id = :2",
                        column.name()
                    ),
                    &[bind.as_ref(), &e.to_string()],
                )?
            }
            Mutation::DropEventColumn(column) => {
                // A schema change touches no row: nothing to count.
                conn.execute(
                    &format!("ALTER TABLE {event} DROP COLUMN {}", column.name()),
                    &[],
                )?;
                return Ok(true);
            }
            Mutation::DeleteLogEntry(pos) => run(
                format!("DELETE FROM {} WHERE pos = :1", t.log),
                &[&i64::try_from(*pos)?],
            )?,
            Mutation::CopyLogEntry { from, to } => run(
                format!(
                    "INSERT INTO {log} (pos, kind, subject, record, prev, hash) \
                     SELECT :1, kind, subject, record, prev, hash FROM {log} WHERE pos = :2",
                    log = t.log
                ),
                &[&i64::try_from(*to)?, &i64::try_from(*from)?],
            )?,
            Mutation::SwapLogEntries { a, b } => {
                // Through a parking position below 0: the primary key forbids two rows at one
                // position. One transaction.
                let (a, b) = (i64::try_from(*a)?, i64::try_from(*b)?);
                let update = format!("UPDATE {} SET pos = :1 WHERE pos = :2", t.log);
                for (to, from) in [(-1_i64, a), (a, b), (b, -1)] {
                    let n = run(update.clone(), &[&to, &from])?;
                    anyhow::ensure!(n == 1, "moving log entry {from} to {to} changed {n} rows");
                }
                1
            }
            Mutation::TruncateLog { from } => {
                let n = run(
                    format!("DELETE FROM {} WHERE pos >= :1", t.log),
                    &[&i64::try_from(*from)?],
                )?;
                anyhow::ensure!(n >= 1, "{m:?} removed no log entry");
                1
            }
            Mutation::SetActorKey { actor, key } => {
                let key = serde_json::to_value(key)?;
                let key = key.as_str().context("key as text")?.to_owned();
                run(
                    format!("UPDATE {} SET public_key = :1 WHERE id = :2", t.actor),
                    &[&key, &actor.0],
                )?
            }
            Mutation::SetContractDescriptor {
                contract,
                descriptor,
            } => {
                let record = self.edited_contract(&conn, contract, descriptor)?;
                run(
                    format!(
                        "UPDATE {} SET record = {} WHERE name = :2 AND version = :3",
                        t.contract,
                        self.mode.bind(1)
                    ),
                    &[&record, &contract.name, &i64::from(contract.version)],
                )?
            }
            Mutation::DeleteRefusal(e) => run(
                format!("DELETE FROM {} WHERE event_id = :1", t.refusal),
                &[&e.to_string()],
            )?,
            Mutation::DeleteCheckpoint { node, pos } => run(
                format!("DELETE FROM {} WHERE node = :1 AND pos = :2", t.checkpoint),
                &[&node.0, &i64::try_from(*pos)?],
            )?,
            other => anyhow::bail!("mutation {other:?} not known to this raw access"),
        };
        anyhow::ensure!(changed == 1, "{m:?} changed {changed} rows");
        conn.commit()?;
        Ok(true)
    }
}

async fn factory() -> anyhow::Result<Option<OracleFactory>> {
    if let Err(e) = sst_store_oracle::load_client() {
        if sst_store_oracle::store_error_is_client_missing(&e) {
            // libtest names the test thread after the case.
            let case = std::thread::current().name().unwrap_or("?").to_owned();
            let reason = format!("the Oracle Client library cannot be loaded here ({e})");
            conformance_tests::not_run(&case, sst_store_oracle::NAME, &reason);
            return Ok(None);
        }
        return Err(e.into());
    }
    let Some(url) = conformance_tests::url_or_skip(sst_store_oracle::config::URL_ENV)? else {
        return Ok(None);
    };
    let prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    Ok(Some(OracleFactory {
        config: OracleConfig::from_url(&url)?.with_prefix(&prefix),
    }))
}

conformance_tests::suite!(factory());

/// A first-layout history where two versions hold one section version (same state, name and
/// hash) with different values — one edited behind SST's back — is not upgraded: `migrate`
/// refuses with an integrity error naming the state, the versions and the section, and
/// changes nothing (the history keeps `data`, no section table is created: Oracle DDL
/// commits at once, so the check runs before any of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refuses_a_section_version_held_with_two_values() -> anyhow::Result<()> {
    let Some(f) = factory().await? else {
        return Ok(());
    };
    let b = f.open().await?;
    let (alice, key) = actor("acme", "alice");
    b.store.put_actor(&alice).await?;
    let id = state_id("edited");
    let c = create(
        &id,
        deal_parties(),
        deal_values(100, 0.5),
        (&alice, &key),
        1,
    );
    let v1 = c.state.clone().context("create without state")?;
    let x = change(
        &v1,
        values([("price", json!({"amount": 101}))]),
        (&alice, &key),
        2,
    );
    b.store.commit(CommitBatch::new(vec![c, x])).await?;
    ensure!(b.raw.downgrade_to_first_layout().await?, "no table layout");

    // Version 2 still holds version 1's `common`; its copy is edited.
    let raw = OracleRaw {
        config: f.config.clone(),
        mode: OracleStore::open(f.config.clone()).await?.json_mode(),
    };
    let history = &f.config.tables.history;
    let mut data = raw.read(history, &id, 2, "data")?.context("no version 2")?;
    data["common"]["rooms"] = json!(9);
    let conn = raw.conn()?;
    let bind = JsonBind::new(raw.mode, &data);
    let params: [&dyn ToSql; 2] = [&bind, &id.0];
    conn.execute(
        &format!(
            "UPDATE {history} SET data = {} WHERE id = :2 AND version = 2",
            raw.mode.bind(1)
        ),
        &params,
    )?;
    conn.commit()?;

    let refused = match f.reopen().await {
        Ok(_) => anyhow::bail!("migrate upgraded a history holding two values of one section"),
        Err(e) => e,
    };
    match refused.downcast_ref::<StoreError>() {
        Some(StoreError::Integrity { what, source }) => {
            ensure!(*what == format!("state {id}"), "{refused}");
            let detail = source.to_string();
            ensure!(
                detail.contains("versions 1 to 2 hold section `common`"),
                "{detail}"
            );
        }
        _ => anyhow::bail!("expected an Integrity error, got {refused:?}"),
    }
    // Nothing changed: still the first layout, no section table.
    let count = |sql: &str, table: &str| -> anyhow::Result<i64> {
        Ok(conn.query_row_as::<i64>(sql, &[&table.to_uppercase()])?)
    };
    let data_columns = count(
        "SELECT COUNT(*) FROM user_tab_columns WHERE table_name = :1 AND column_name = 'DATA'",
        history,
    )?;
    let sections = count(
        "SELECT COUNT(*) FROM user_tables WHERE table_name = :1",
        &f.config.tables.section,
    )?;
    ensure!(
        data_columns == 1 && sections == 0,
        "{data_columns} {sections}"
    );
    Ok(())
}
