//! The conformance suite against a real MySQL / MariaDB server (`SST_MYSQL_URL`), one fresh
//! database per case, dropped when the case ends.

mod common;

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use common::ScratchDb;
use conformance_tests::{Backend, BackendFactory, EventColumn, Mutation, RawAccess};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Value as My};
use serde_json::Value;
use sst_core::{StateId, Store};
use sst_store_mysql::MysqlStore;

/// One case's namespace: a uniquely named database on the server.
struct MyFactory(ScratchDb);

async fn factory() -> anyhow::Result<Option<MyFactory>> {
    Ok(ScratchDb::new()?.map(MyFactory))
}

#[async_trait]
impl BackendFactory for MyFactory {
    async fn open(&self) -> anyhow::Result<Backend> {
        let store = self.0.store(4).await?;
        store.migrate().await?;
        let raw = Raw::of(&store);
        Ok(Backend {
            store: Arc::new(store),
            raw: Arc::new(raw),
        })
    }

    async fn reopen(&self) -> anyhow::Result<Backend> {
        self.open().await
    }
}

impl Raw {
    /// Raw access to `store`'s tables.
    fn of(store: &MysqlStore) -> Self {
        let t = &store.config().tables;
        let q = |table: &str| format!("`{}`.`{table}`", store.database());
        Raw {
            pool: store.pool().clone(),
            state: q(&t.state),
            history: q(&t.history),
            section: q(&t.section),
            versions: q(&t.versions),
            first_layout: [
                q(&format!("{}_first", t.state)),
                q(&format!("{}_first", t.history)),
            ],
            event: q(&t.event),
            actor: q(&t.actor),
            contract: q(&t.contract),
            refusal: q(&t.refusal),
            log: q(&t.log),
            checkpoint: q(&t.checkpoint),
        }
    }
}

/// Raw SQL on the `JSON` columns, behind the store's back.
struct Raw {
    pool: Pool,
    state: String,
    history: String,
    section: String,
    versions: String,
    /// Scratch names of the current-state and history tables `downgrade_to_first_layout`
    /// builds before they replace the store's.
    first_layout: [String; 2],
    event: String,
    actor: String,
    contract: String,
    refusal: String,
    log: String,
    checkpoint: String,
}

/// Columns of a log row but `pos`, as the copy statement lists them.
const LOG_REST: &str = "kind, subject, record, prev, hash";

/// History columns but `id` and `version`, as the tamper statements copy them.
const HISTORY_REST: &str = "contract_name, contract_version, parties, seals, root, prev_root, \
                            last_event, updated_at";

/// Columns of both state tables of SST's first layout, in order.
const FIRST_LAYOUT_COLUMNS: &str = "id, contract_name, contract_version, version, parties, \
                                    seals, data, root, prev_root, last_event, updated_at";

/// The first layout's state-table columns (`git show e938981:sst-store-mysql/src/schema.rs`),
/// `data` of type `data_type`.
fn first_layout_columns(data_type: &str) -> String {
    format!(
        "id               VARCHAR(255) NOT NULL,
    contract_name    VARCHAR(255) NOT NULL,
    contract_version INT UNSIGNED NOT NULL,
    version          BIGINT       NOT NULL,
    parties          JSON         NOT NULL,
    seals            JSON         NOT NULL,
    data             {data_type}     NOT NULL,
    root             VARCHAR(80)  NOT NULL,
    prev_root        VARCHAR(80)  NULL,
    last_event       VARCHAR(80)  NULL,
    updated_at       BIGINT       NOT NULL,
    CHECK (version >= 1)"
    )
}

impl Raw {
    /// `(name, hash)` of the seals with a salt of `version` of `id` (`None` without that
    /// version), read inside `tx`.
    async fn disclosed(
        &self,
        tx: &mut impl Queryable,
        id: &StateId,
        version: u64,
    ) -> anyhow::Result<Option<Vec<(String, String)>>> {
        let seals: Option<String> = tx
            .exec_first(
                format!(
                    "SELECT seals FROM {} WHERE id = ? AND version = ?",
                    self.history
                ),
                (id.as_str(), version),
            )
            .await?;
        let Some(seals) = seals else {
            return Ok(None);
        };
        let seals: serde_json::Map<String, Value> = serde_json::from_str(&seals)?;
        Ok(Some(
            seals
                .into_iter()
                .filter(|(_, seal)| seal.get("salt").is_some())
                .filter_map(|(name, seal)| Some((name, seal.get("hash")?.as_str()?.to_owned())))
                .collect(),
        ))
    }

    /// The stored value of section version `(name, hash)` of `id`.
    async fn section_value(
        &self,
        tx: &mut impl Queryable,
        id: &StateId,
        name: &str,
        hash: &str,
    ) -> anyhow::Result<String> {
        let value: Option<String> = tx
            .exec_first(
                format!(
                    "SELECT value FROM {} WHERE state_id = ? AND name = ? AND hash = ? FOR UPDATE",
                    self.section
                ),
                (id.as_str(), name, hash),
            )
            .await?;
        value.with_context(|| format!("no section row {name} {hash} of {id}"))
    }

    /// Writes `value` into section version `(name, hash)` of `id`.
    async fn set_section_value(
        &self,
        tx: &mut impl Queryable,
        id: &StateId,
        name: &str,
        hash: &str,
        value: String,
    ) -> anyhow::Result<()> {
        tx.exec_drop(
            format!(
                "UPDATE {} SET value = ? WHERE state_id = ? AND name = ? AND hash = ?",
                self.section
            ),
            (value, id.as_str(), name, hash),
        )
        .await?;
        Ok(())
    }

    /// Sets the current row of `id` back to `version`: its contract from the history row, its
    /// data as the history view shows that version.
    async fn roll_back_current_row(&self, id: &StateId, version: u64) -> anyhow::Result<bool> {
        let mut tx = self.pool.start_transaction(Default::default()).await?;
        let row: Option<(String, u32, String)> = tx
            .exec_first(
                format!(
                    "SELECT h.contract_name, h.contract_version, v.data FROM {} AS h \
                     JOIN {} AS v ON v.id = h.id AND v.version = h.version \
                     WHERE h.id = ? AND h.version = ?",
                    self.history, self.versions
                ),
                (id.as_str(), version),
            )
            .await?;
        let (name, contract_version, data) =
            row.with_context(|| format!("{id} has no history version {version}"))?;
        tx.exec_drop(
            format!(
                "UPDATE {} SET contract_name = ?, contract_version = ?, data = ?, version = ? \
                 WHERE id = ?",
                self.state
            ),
            (name, contract_version, data, version, id.as_str()),
        )
        .await?;
        let n = tx.affected_rows();
        anyhow::ensure!(
            n == 1,
            "rolling back the current row of {id} changed {n} rows"
        );
        tx.commit().await?;
        Ok(true)
    }

    async fn column(&self, col: &str, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        let mut conn = self.pool.get_conn().await?;
        let text: Option<String> = conn
            .exec_first(
                format!(
                    "SELECT {col} FROM {} WHERE id = ? AND version = ?",
                    self.history
                ),
                (id.as_str(), version),
            )
            .await?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    /// Swaps the positions of log entries `a` and `b` through a parking position below 0
    /// (the primary key forbids two rows at one position), in one transaction.
    async fn swap_log_entries(&self, a: u64, b: u64) -> anyhow::Result<bool> {
        let mut tx = self.pool.start_transaction(Default::default()).await?;
        let update = format!("UPDATE {} SET pos = ? WHERE pos = ?", self.log);
        let (a, b) = (i64::try_from(a)?, i64::try_from(b)?);
        for (to, from) in [(-1, a), (a, b), (b, -1)] {
            tx.exec_drop(update.as_str(), (to, from)).await?;
            let n = tx.affected_rows();
            anyhow::ensure!(n == 1, "moving log entry {from} to {to} changed {n} rows");
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces the `descriptor` of a contract's stored record (read, edited, written back).
    async fn set_contract_descriptor(
        &self,
        contract: &sst_core::ContractRef,
        descriptor: &Value,
    ) -> anyhow::Result<(String, Vec<My>)> {
        let mut conn = self.pool.get_conn().await?;
        let record: Option<String> = conn
            .exec_first(
                format!(
                    "SELECT record FROM {} WHERE name = ? AND version = ?",
                    self.contract
                ),
                (contract.name.as_str(), contract.version),
            )
            .await?;
        let mut record: Value = serde_json::from_str(&record.context("no such contract")?)?;
        record["descriptor"] = descriptor.clone();
        Ok((
            format!(
                "UPDATE {} SET record = ? WHERE name = ? AND version = ?",
                self.contract
            ),
            vec![
                My::from(record.to_string()),
                My::from(contract.name.as_str()),
                My::from(contract.version),
            ],
        ))
    }
}

/// A JSON value as the bound value of an event column: strings and integers as themselves,
/// `null` as `NULL`, a document (receipt, disclosures, …) as its JSON text.
fn column_value(column: EventColumn, value: &Value) -> anyhow::Result<My> {
    Ok(match value {
        Value::Null => My::NULL,
        Value::String(s) if !column.is_document() => My::from(s.as_str()),
        Value::Number(n) if !column.is_document() => {
            My::from(n.as_i64().context("an integer column value")?)
        }
        other => My::from(other.to_string()),
    })
}

/// A stored event column as JSON: `NULL` as null, integers as numbers, a document column's
/// text (MariaDB sends `JSON` as a BLOB) parsed, other text as a string.
fn column_json(column: EventColumn, stored: My) -> anyhow::Result<Value> {
    Ok(match stored {
        My::NULL => Value::Null,
        My::Int(i) => Value::from(i),
        My::UInt(u) => Value::from(u),
        My::Bytes(bytes) => {
            let text = String::from_utf8(bytes).context("event column as UTF-8")?;
            if column.is_document() {
                serde_json::from_str(&text)
                    .with_context(|| format!("event column {}", column.name()))?
            } else {
                Value::String(text)
            }
        }
        other => anyhow::bail!("event column {}: unexpected {other:?}", column.name()),
    })
}

#[async_trait]
impl RawAccess for Raw {
    async fn raw_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        let mut conn = self.pool.get_conn().await?;
        let text: Option<String> = conn
            .exec_first(
                format!(
                    "SELECT data FROM {} WHERE id = ? AND version = ?",
                    self.versions
                ),
                (id.as_str(), version),
            )
            .await?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    async fn raw_seals(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.column("seals", id, version).await
    }

    async fn set_raw_data(&self, id: &StateId, version: u64, data: Value) -> anyhow::Result<()> {
        let mut tx = self.pool.start_transaction(Default::default()).await?;
        let disclosed = self
            .disclosed(&mut tx, id, version)
            .await?
            .with_context(|| format!("{id} has no version {version}"))?;
        for (name, hash) in disclosed {
            if let Some(value) = data.get(&name) {
                self.set_section_value(&mut tx, id, &name, &hash, value.to_string())
                    .await?;
            }
        }
        tx.exec_drop(
            format!(
                "UPDATE {} SET data = ? WHERE id = ? AND version = ?",
                self.state
            ),
            (data.to_string(), id.as_str(), version),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    fn has_current_state_table(&self) -> bool {
        true
    }

    async fn set_current_data_only(&self, id: &StateId, data: Value) -> anyhow::Result<()> {
        let mut conn = self.pool.get_conn().await?;
        conn.exec_drop(
            format!("UPDATE {} SET data = ? WHERE id = ?", self.state),
            (data.to_string(), id.as_str()),
        )
        .await?;
        let n = conn.affected_rows();
        anyhow::ensure!(
            n == 1,
            "expected one current-state row for {id}, changed {n}"
        );
        Ok(())
    }

    async fn swap_history_data(&self, id: &StateId, a: u64, b: u64) -> anyhow::Result<()> {
        let mut tx = self.pool.start_transaction(Default::default()).await?;
        let sa = self.disclosed(&mut tx, id, a).await?;
        let sb = self.disclosed(&mut tx, id, b).await?;
        let (Some(sa), Some(sb)) = (sa, sb) else {
            anyhow::bail!("history versions {a} and {b} of {id} must both exist");
        };
        for (name, ha) in &sa {
            let Some((_, hb)) = sb.iter().find(|(n, h)| n == name && h != ha) else {
                continue;
            };
            let va = self.section_value(&mut tx, id, name, ha).await?;
            let vb = self.section_value(&mut tx, id, name, hb).await?;
            self.set_section_value(&mut tx, id, name, ha, vb).await?;
            self.set_section_value(&mut tx, id, name, hb, va).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn downgrade_to_first_layout(&self) -> anyhow::Result<bool> {
        let mut conn = self.pool.get_conn().await?;
        let server: Option<String> = conn.query_first("SELECT VERSION()").await?;
        let data_type = if server
            .unwrap_or_default()
            .to_lowercase()
            .contains("mariadb")
        {
            "LONGTEXT"
        } else {
            "JSON"
        };
        let columns = first_layout_columns(data_type);
        let [state, history] = &self.first_layout;
        for (table, key) in [(state, "id"), (history, "id, version")] {
            conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
                .await?;
            conn.query_drop(format!(
                "CREATE TABLE {table} ({columns}, PRIMARY KEY ({key})) ENGINE=InnoDB"
            ))
            .await?;
        }
        conn.query_drop(format!(
            "INSERT INTO {history} ({FIRST_LAYOUT_COLUMNS}) \
             SELECT h.id, h.contract_name, h.contract_version, h.version, h.parties, h.seals, \
             v.data, h.root, h.prev_root, h.last_event, h.updated_at \
             FROM {} AS h JOIN {} AS v ON v.id = h.id AND v.version = h.version",
            self.history, self.versions
        ))
        .await?;
        conn.query_drop(format!(
            "INSERT INTO {state} ({FIRST_LAYOUT_COLUMNS}) \
             SELECT s.id, s.contract_name, s.contract_version, s.version, h.parties, h.seals, \
             s.data, h.root, h.prev_root, h.last_event, h.updated_at \
             FROM {} AS s JOIN {} AS h ON h.id = s.id AND h.version = s.version",
            self.state, self.history
        ))
        .await?;
        conn.query_drop(format!("DROP VIEW {}", self.versions))
            .await?;
        conn.query_drop(format!(
            "DROP TABLE {}, {}, {}",
            self.section, self.state, self.history
        ))
        .await?;
        conn.query_drop(format!(
            "RENAME TABLE {state} TO {}, {history} TO {}",
            self.state, self.history
        ))
        .await?;
        Ok(true)
    }

    async fn raw_event_column(
        &self,
        event: &sst_core::EventId,
        column: EventColumn,
    ) -> anyhow::Result<Option<Value>> {
        let mut conn = self.pool.get_conn().await?;
        let row: Option<mysql_async::Row> = conn
            .exec_first(
                format!("SELECT {} FROM {} WHERE id = ?", column.name(), self.event),
                (event.to_string(),),
            )
            .await?;
        row.map(|mut row| {
            let stored: My = row.take(0).context("one column")?;
            column_json(column, stored)
        })
        .transpose()
    }

    async fn mutate(&self, m: &Mutation) -> anyhow::Result<bool> {
        let (state, history, event) = (&self.state, &self.history, &self.event);
        let (sql, values): (String, Vec<My>) = match m {
            Mutation::DeleteCurrentRow(id) => (
                format!("DELETE FROM {state} WHERE id = ?"),
                vec![My::from(id.as_str())],
            ),
            Mutation::RollBackCurrentRow { id, version } => {
                return self.roll_back_current_row(id, *version).await
            }
            Mutation::DeleteHistoryVersion { id, version } => (
                format!("DELETE FROM {history} WHERE id = ? AND version = ?"),
                vec![My::from(id.as_str()), My::from(*version)],
            ),
            Mutation::CopyHistoryVersion { id, from, to } => (
                format!(
                    "INSERT INTO {history} (id, version, {HISTORY_REST}) \
                     SELECT id, ?, {HISTORY_REST} FROM {history} WHERE id = ? AND version = ?"
                ),
                vec![My::from(*to), My::from(id.as_str()), My::from(*from)],
            ),
            Mutation::DeleteEvent(e) => (
                format!("DELETE FROM {event} WHERE id = ?"),
                vec![My::from(e.to_string())],
            ),
            Mutation::RelabelApplied {
                event: e,
                version,
                root,
            } => (
                format!(
                    "UPDATE {event} SET outcome = 'applied', reason = NULL, \
                     reason_detail = NULL, new_version = ?, new_root = ? WHERE id = ?"
                ),
                vec![
                    My::from(*version),
                    My::from(root.to_string()),
                    My::from(e.to_string()),
                ],
            ),
            Mutation::SetEventColumn {
                event: e,
                column,
                value,
            } => (
                format!("UPDATE {event} SET {} = ? WHERE id = ?", column.name()),
                vec![column_value(*column, value)?, My::from(e.to_string())],
            ),
            Mutation::DropEventColumn(column) => {
                // A schema change touches no row: nothing to count.
                let mut conn = self.pool.get_conn().await?;
                conn.query_drop(format!("ALTER TABLE {event} DROP COLUMN {}", column.name()))
                    .await?;
                return Ok(true);
            }
            Mutation::DeleteLogEntry(pos) => (
                format!("DELETE FROM {} WHERE pos = ?", self.log),
                vec![My::from(*pos)],
            ),
            Mutation::CopyLogEntry { from, to } => (
                format!(
                    "INSERT INTO {log} (pos, {LOG_REST}) SELECT ?, {LOG_REST} FROM {log} \
                     WHERE pos = ?",
                    log = self.log
                ),
                vec![My::from(*to), My::from(*from)],
            ),
            Mutation::SwapLogEntries { a, b } => return self.swap_log_entries(*a, *b).await,
            Mutation::TruncateLog { from } => {
                let mut conn = self.pool.get_conn().await?;
                conn.exec_drop(format!("DELETE FROM {} WHERE pos >= ?", self.log), (*from,))
                    .await?;
                let n = conn.affected_rows();
                anyhow::ensure!(n >= 1, "{m:?} removed no log entry");
                return Ok(true);
            }
            Mutation::SetActorKey { actor, key } => (
                format!("UPDATE {} SET public_key = ? WHERE id = ?", self.actor),
                vec![
                    My::from(serde_json::to_value(key)?.as_str().context("key as text")?),
                    My::from(actor.as_str()),
                ],
            ),
            Mutation::SetContractDescriptor {
                contract,
                descriptor,
            } => self.set_contract_descriptor(contract, descriptor).await?,
            Mutation::DeleteRefusal(e) => (
                format!("DELETE FROM {} WHERE event_id = ?", self.refusal),
                vec![My::from(e.to_string())],
            ),
            Mutation::DeleteCheckpoint { node, pos } => (
                format!("DELETE FROM {} WHERE node = ? AND pos = ?", self.checkpoint),
                vec![My::from(node.as_str()), My::from(*pos)],
            ),
            other => anyhow::bail!("mutation {other:?} not known to this raw access"),
        };
        let mut conn = self.pool.get_conn().await?;
        conn.exec_drop(sql, values).await?;
        let n = conn.affected_rows();
        anyhow::ensure!(n == 1, "{m:?} changed {n} rows");
        Ok(true)
    }
}

conformance_tests::suite!(factory());

/// MariaDB keeps JSON as text, duplicate keys included, and its `JSON_VALUE` reads the first
/// of them while a last-wins parser would verify the last: a row rewritten with a duplicate
/// key must never read back as a verified state that differs from what SQL users see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_key_written_behind_sst_is_never_read_as_verified() -> anyhow::Result<()> {
    use conformance_tests::fixtures::{actor, create, deal_parties, deal_values, state_id};
    let Some(f) = factory().await? else {
        return Ok(());
    };
    let b = f.open().await?;
    let (alice, key) = actor("acme", "alice");
    let id = state_id("dup");
    let item = create(
        &id,
        deal_parties(),
        deal_values(500_000, 3.7),
        (&alice, &key),
        1,
    );
    b.store
        .commit(sst_core::CommitBatch::new(vec![item]))
        .await?;

    let state_table = format!("`{}`.`sst_state`", f.0.database);
    let pool = Pool::from_url(&f.0.url)?;
    let mut conn = pool.get_conn().await?;
    let text: Option<String> = conn
        .exec_first(
            format!("SELECT data FROM {state_table} WHERE id = ?"),
            (id.as_str(),),
        )
        .await?;
    let text = text.context("row missing")?;
    let needle = "\"inspection\":{";
    let at = text.find(needle).context("inspection section")? + needle.len();
    let tampered = format!("{}\"radon\":0.5,{}", &text[..at], &text[at..]);
    conn.exec_drop(
        format!("UPDATE {state_table} SET data = ? WHERE id = ?"),
        (tampered, id.as_str()),
    )
    .await?;
    let seen_by_sql: Option<String> = conn
        .exec_first(
            format!(
                "SELECT JSON_VALUE(data, '$.inspection.radon') FROM {state_table} WHERE id = ?"
            ),
            (id.as_str(),),
        )
        .await?;
    drop(conn);
    pool.disconnect().await?;

    match b.store.state(&id).await {
        Err(sst_core::StoreError::Integrity { what, .. }) => {
            anyhow::ensure!(what.contains(id.as_str()), "error names the state: {what}");
        }
        Err(e) => anyhow::bail!("expected an integrity error, got {e}"),
        Ok(state) => {
            // MySQL 8 normalises JSON on write (last duplicate wins): then the row holds the
            // original value and must still verify and agree with SQL.
            let state = state.context("state vanished")?;
            state.verify()?;
            let radon = state.sections["inspection"]
                .value()
                .and_then(|v| v.get("radon"))
                .cloned();
            anyhow::ensure!(
                seen_by_sql.as_deref().map(str::parse::<f64>).transpose()?
                    == radon.as_ref().and_then(Value::as_f64),
                "SQL sees radon {seen_by_sql:?} but the verified state holds {radon:?}"
            );
        }
    }
    Ok(())
}

/// A store on a fresh database with states `deal` (versions 1 to 3, radon 3.7, 4.2 and 5.1)
/// and `other` (radon 4.5), its raw access, and the versions committed.
async fn history_fixture(f: &MyFactory) -> anyhow::Result<(MysqlStore, Raw, Vec<sst_core::State>)> {
    use conformance_tests::fixtures::{actor, change, create, deal_parties, deal_values, values};
    let store = f.0.store(2).await?;
    store.migrate().await?;
    let (alice, key) = actor("acme", "alice");
    store.put_actor(&alice).await?;
    let deal = StateId("deal".into());
    let c = create(
        &deal,
        deal_parties(),
        deal_values(100, 3.7),
        (&alice, &key),
        1,
    );
    let mut versions = vec![c.state.as_deref().context("no state")?.clone()];
    let mut items = vec![c];
    for (n, radon) in [(2, 4.2), (3, 5.1)] {
        let prev = versions.last().context("no version")?;
        let x = change(
            prev,
            values([(
                "inspection",
                serde_json::json!({"radon": radon, "passed": false}),
            )]),
            (&alice, &key),
            n,
        );
        versions.push(x.state.as_deref().context("no state")?.clone());
        items.push(x);
    }
    let o = create(
        &StateId("other".into()),
        deal_parties(),
        deal_values(7, 4.5),
        (&alice, &key),
        4,
    );
    versions.push(o.state.as_deref().context("no state")?.clone());
    items.push(o);
    store.commit(sst_core::CommitBatch::new(items)).await?;
    let raw = Raw::of(&store);
    Ok((store, raw, versions))
}

/// Every version `state_at` and `state` must read back as committed.
async fn reads_back(store: &MysqlStore, versions: &[sst_core::State]) -> anyhow::Result<()> {
    for want in versions {
        let read = store
            .state_at(&want.id, want.version)
            .await?
            .with_context(|| format!("{} version {} lost", want.id, want.version))?;
        anyhow::ensure!(
            &read == want,
            "{} version {} differs",
            want.id,
            want.version
        );
    }
    for id in ["deal", "other"] {
        let id = StateId(id.into());
        let latest = versions.iter().rfind(|s| s.id == id);
        anyhow::ensure!(
            store.state(&id).await?.as_ref() == latest,
            "current {id} differs"
        );
    }
    Ok(())
}

/// The history query of the README: every version ever with `inspection.radon > 4`.
const README_HISTORY_QUERY: &str =
    "SELECT id, version, JSON_VALUE(data, '$.inspection.radon') AS radon
FROM `{db}`.sst_state_versions
WHERE JSON_VALUE(data, '$.inspection.radon') > 4
ORDER BY id, version";

/// The README's history query over the view finds exactly the versions with radon above 4,
/// current or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_history_query_finds_every_version_over_the_limit() -> anyhow::Result<()> {
    let Some(f) = factory().await? else {
        return Ok(());
    };
    let (store, _raw, _) = history_fixture(&f).await?;
    let mut conn = store.pool().get_conn().await?;
    let rows: Vec<(String, u64, String)> = conn
        .query(README_HISTORY_QUERY.replace("{db}", &f.0.database))
        .await?;
    let want = [("deal", 2, "4.2"), ("deal", 3, "5.1"), ("other", 1, "4.5")];
    anyhow::ensure!(
        rows.iter()
            .map(|(i, v, r)| (i.as_str(), *v, r.as_str()))
            .eq(want),
        "the history query found {rows:?}"
    );
    Ok(())
}

/// A changed section is patched into the current row in SQL: a member the plan does not
/// name (here one added behind SST's back) stays in the stored document, where writing the
/// whole document would have dropped it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_rewrites_only_the_changed_sections_of_the_current_row() -> anyhow::Result<()> {
    use conformance_tests::fixtures::{actor, change, values};
    let Some(f) = factory().await? else {
        return Ok(());
    };
    let (store, raw, versions) = history_fixture(&f).await?;
    let mut conn = store.pool().get_conn().await?;
    conn.query_drop(format!(
        "UPDATE {} SET data = JSON_SET(data, '$.marker', 1) WHERE id = 'deal'",
        raw.state
    ))
    .await?;
    let (alice, key) = actor("acme", "alice");
    let x = change(
        &versions[2],
        values([(
            "price",
            serde_json::json!({"amount": 101, "currency": "EUR"}),
        )]),
        (&alice, &key),
        5,
    );
    store.commit(sst_core::CommitBatch::new(vec![x])).await?;
    let text: String = conn
        .query_first(format!("SELECT data FROM {} WHERE id = 'deal'", raw.state))
        .await?
        .context("no row")?;
    let data: Value = serde_json::from_str(&text)?;
    anyhow::ensure!(
        data.get("marker") == Some(&serde_json::json!(1))
            && data.pointer("/price/amount") == Some(&serde_json::json!(101)),
        "the current row was not patched: {text}"
    );
    Ok(())
}

/// `migrate` stopped midway through the upgrade of the first layout (MariaDB DDL commits
/// implicitly) is finished by the next one: after the section copy stopped at its first row,
/// and after the history lost its `data` but the current rows kept their old columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_stopped_midway_through_the_upgrade_is_finished_by_the_next() -> anyhow::Result<()>
{
    let Some(f) = factory().await? else {
        return Ok(());
    };
    let (store, raw, versions) = history_fixture(&f).await?;
    // Stopped in the copy: the section table holds one of the rows.
    let v1 = &versions[0];
    let price = &v1.sections["price"];
    raw.downgrade_to_first_layout().await?;
    let mut conn = store.pool().get_conn().await?;
    conn.query_drop(format!(
        "CREATE TABLE {} (state_id VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, \
         hash VARCHAR(80) NOT NULL, value LONGTEXT NOT NULL, PRIMARY KEY (state_id, name, hash))",
        raw.section
    ))
    .await?;
    conn.exec_drop(
        format!("INSERT INTO {} VALUES (?, ?, ?, ?)", raw.section),
        (
            v1.id.as_str(),
            "price",
            price.hash.to_string(),
            price.value().context("price redacted")?.to_string(),
        ),
    )
    .await?;
    store.migrate().await?;
    reads_back(&store, &versions).await?;
    // Stopped before the current rows lost their old columns.
    conn.query_drop(format!(
        "ALTER TABLE {} ADD COLUMN parties JSON NULL, ADD COLUMN root VARCHAR(80) NULL",
        raw.state
    ))
    .await?;
    store.migrate().await?;
    let columns: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = 'sst_state' ORDER BY ORDINAL_POSITION",
            (f.0.database.as_str(),),
        )
        .await?;
    anyhow::ensure!(
        columns == ["id", "contract_name", "contract_version", "version", "data"],
        "current table has {columns:?}"
    );
    reads_back(&store, &versions).await?;
    let report = sst_core::verify_store(&store, &mut |_, _| {}).await?;
    anyhow::ensure!(report.is_clean(), "{report:?}");
    Ok(())
}

/// The current rows of several states changed in one batch are updated together: patched in
/// SQL when MariaDB's JSON functions can read every stored document, and all written whole
/// when one of them is nested beyond those functions' 32 levels; each reads back as committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_current_rows_are_updated_in_one_batch_patched_or_whole() -> anyhow::Result<()> {
    use conformance_tests::fixtures::{actor, change, create, deal_parties, values};
    let Some(f) = factory().await? else {
        return Ok(());
    };
    let (store, raw, versions) = history_fixture(&f).await?;
    let (alice, key) = actor("acme", "alice");
    let mut deep = serde_json::json!("bottom");
    for _ in 0..40 {
        deep = serde_json::json!({ "level": deep });
    }
    let d = create(
        &StateId("deep".into()),
        deal_parties(),
        values([("deep", deep), ("note", serde_json::json!("a"))]),
        (&alice, &key),
        5,
    );
    let deep1 = d.state.as_deref().context("no state")?.clone();
    store.commit(sst_core::CommitBatch::new(vec![d])).await?;
    let mut conn = store.pool().get_conn().await?;
    conn.query_drop(format!(
        "UPDATE {} SET data = JSON_SET(data, '$.marker', 1) WHERE id IN ('deal', 'other')",
        raw.state
    ))
    .await?;
    let price = |amount: i64| values([("price", serde_json::json!({ "amount": amount }))]);
    let (deal3, other1) = (&versions[2], &versions[3]);
    let (x, y) = (
        change(deal3, price(1), (&alice, &key), 6),
        change(other1, price(2), (&alice, &key), 7),
    );
    let (deal4, other2) = (
        x.state.as_deref().context("no state")?.clone(),
        y.state.as_deref().context("no state")?.clone(),
    );
    store.commit(sst_core::CommitBatch::new(vec![x, y])).await?;
    let marked: Vec<String> = conn
        .query(format!(
            "SELECT id FROM {} WHERE JSON_VALUE(data, '$.marker') = 1 ORDER BY id",
            raw.state
        ))
        .await?;
    anyhow::ensure!(
        marked == ["deal", "other"],
        "not patched in place: {marked:?}"
    );
    conn.query_drop(format!(
        "UPDATE {} SET data = JSON_REMOVE(data, '$.marker') WHERE id = 'other'",
        raw.state
    ))
    .await?;
    let (x, z) = (
        change(&deal4, price(3), (&alice, &key), 8),
        change(
            &deep1,
            values([("note", serde_json::json!("b"))]),
            (&alice, &key),
            9,
        ),
    );
    let (deal5, deep2) = (
        x.state.as_deref().context("no state")?.clone(),
        z.state.as_deref().context("no state")?.clone(),
    );
    store.commit(sst_core::CommitBatch::new(vec![x, z])).await?;
    // Written whole: the member added behind SST's back is gone with the patch.
    for want in [&deal5, &other2, &deep2] {
        anyhow::ensure!(
            store.state(&want.id).await?.as_ref() == Some(want),
            "{} does not read back",
            want.id
        );
    }
    Ok(())
}

/// Two first-layout versions holding one section version (same name and hash) with
/// different values stop the upgrade with an integrity error and drop nothing; repaired, the
/// next `migrate` finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refuses_two_values_of_one_section_version() -> anyhow::Result<()> {
    let Some(f) = factory().await? else {
        return Ok(());
    };
    let (store, raw, versions) = history_fixture(&f).await?;
    raw.downgrade_to_first_layout().await?;
    let mut conn = store.pool().get_conn().await?;
    let set_rooms = |rooms: u32| {
        format!(
            "UPDATE {} SET data = JSON_SET(data, '$.common.rooms', {rooms}) \
             WHERE id = 'deal' AND version = 2",
            raw.history
        )
    };
    conn.query_drop(set_rooms(5)).await?;
    match store.migrate().await {
        Err(sst_core::StoreError::Integrity { what, .. }) => {
            anyhow::ensure!(what.contains("state deal section common"), "{what}");
        }
        other => anyhow::bail!("expected an integrity error, got {other:?}"),
    }
    let kept: Option<String> = conn
        .exec_first(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = 'sst_state_history' AND COLUMN_NAME = 'data'",
            (f.0.database.as_str(),),
        )
        .await?;
    anyhow::ensure!(kept.is_some(), "the history lost its data column");
    conn.query_drop(set_rooms(4)).await?;
    store.migrate().await?;
    reads_back(&store, &versions).await
}
