//! Shared test support: a factory giving each case its own database (dropped afterwards) and
//! raw access to the documents behind the store's back.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conformance_tests::{Backend, BackendFactory, EventColumn, Mutation, RawAccess};
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Client, Collection, Database};
use serde_json::Value;
use sst_core::{StateId, Store};
use sst_store_mongo::value::{from_bson, from_document, to_bson, to_document};
use sst_store_mongo::{MongoConfig, MongoStore, TransactionMode};

/// One fresh database per factory, dropped when the factory is dropped.
pub struct MongoFactory {
    url: String,
    database: String,
    mode: TransactionMode,
}

impl MongoFactory {
    /// A factory on `url` with a unique database name.
    pub fn new(url: String, mode: TransactionMode) -> Self {
        let database = format!("sst_test_{}", uuid::Uuid::new_v4().simple());
        MongoFactory {
            url,
            database,
            mode,
        }
    }

    /// Settings of this factory's stores (no recovery grace: tests simulate crashes).
    pub fn config(&self) -> MongoConfig {
        MongoConfig::new(self.url.clone(), self.database.clone())
            .with_transactions(self.mode)
            .with_recover_after(Duration::ZERO)
    }

    /// Opens and migrates a store.
    pub async fn store(&self) -> anyhow::Result<MongoStore> {
        let store = MongoStore::open(self.config()).await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn backend(&self) -> anyhow::Result<Backend> {
        let store = self.store().await?;
        let (db, names) = (store.database(), store.collection_names());
        let view = is_view(db, &names.versions).await?;
        let raw = MongoRaw {
            view: view.then(|| db.collection(&names.versions)),
            section: db.collection(&names.section),
            history: db.collection(&names.history),
            state: db.collection(&names.state),
            event: db.collection(&names.event),
            actor: db.collection(&names.actor),
            contract: db.collection(&names.contract),
            refusal: db.collection(&names.refusal),
            log: db.collection(&names.log),
            checkpoint: db.collection(&names.checkpoint),
        };
        Ok(Backend {
            store: Arc::new(store),
            raw: Arc::new(raw),
        })
    }
}

impl Drop for MongoFactory {
    fn drop(&mut self) {
        let url = self.url.clone();
        let db = self.database.clone();
        // Drop runs inside the test's runtime; drop the database from a thread of its own.
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = Client::with_uri_str(&url).await?;
                client.database(&db).drop().await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.database);
        }
    }
}

#[async_trait]
impl BackendFactory for MongoFactory {
    async fn open(&self) -> anyhow::Result<Backend> {
        self.backend().await
    }
    async fn reopen(&self) -> anyhow::Result<Backend> {
        self.backend().await
    }
}

/// Whether `name` is a view in `db` (the history view exists on servers that have views).
async fn is_view(db: &Database, name: &str) -> anyhow::Result<bool> {
    let reply = db
        .run_command(doc! { "listCollections": 1, "filter": { "name": name } })
        .await?;
    Ok(reply
        .get_document("cursor")?
        .get_array("firstBatch")?
        .iter()
        .filter_map(Bson::as_document)
        .any(|d| d.get_str("name") == Ok(name) && d.get_str("type") == Ok("view")))
}

/// Raw driver access to the peer collections' documents.
struct MongoRaw {
    /// The history view, where the server made it.
    view: Option<Collection<Document>>,
    section: Collection<Document>,
    history: Collection<Document>,
    state: Collection<Document>,
    event: Collection<Document>,
    actor: Collection<Document>,
    contract: Collection<Document>,
    refusal: Collection<Document>,
    log: Collection<Document>,
    checkpoint: Collection<Document>,
}

/// A log position as its `_id` filter.
fn pos(p: u64) -> anyhow::Result<Document> {
    Ok(doc! { "_id": i64::try_from(p)? })
}

fn key(id: &StateId, version: u64) -> anyhow::Result<Document> {
    Ok(doc! { "id": id.as_str(), "version": i64::try_from(version)? })
}

/// `(name, hash)` of every section a history document's seals disclose (with a salt).
fn disclosed(h: &Document) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, seal) in h.get_document("seals")? {
        let Some(seal) = seal.as_document() else {
            anyhow::bail!("seal {name} is {seal}");
        };
        if matches!(seal.get("salt"), Some(s) if *s != Bson::Null) {
            out.push((name.clone(), seal.get_str("hash")?.to_owned()));
        }
    }
    Ok(out)
}

/// An integer field (the emulator returns small `Int64`s as `Int32`).
fn int(d: &Document, f: &str) -> anyhow::Result<u64> {
    match d.get(f) {
        Some(Bson::Int64(i)) => Ok(u64::try_from(*i)?),
        Some(Bson::Int32(i)) => Ok(u64::try_from(*i)?),
        other => anyhow::bail!("{f} is {other:?}"),
    }
}

fn section_key(id: &StateId, name: &str, hash: &str) -> Document {
    doc! { "state_id": id.as_str(), "name": name, "hash": hash }
}

impl MongoRaw {
    async fn field(&self, id: &StateId, version: u64, f: &str) -> anyhow::Result<Option<Value>> {
        let Some(d) = self.history.find_one(key(id, version)?).await? else {
            return Ok(None);
        };
        match d.get(f) {
            Some(Bson::Document(inner)) => Ok(Some(from_document(inner)?)),
            other => anyhow::bail!("{f} of {id} v{version} is {other:?}"),
        }
    }

    /// The history view's `data` of a version: read from the view where the server made
    /// one (or from the first layout's history document); elsewhere (the nx-27017 emulator has neither views nor `$arrayToObject`) the
    /// same join with plain driver calls: each disclosed seal's section version.
    async fn view_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        if let Some(view) = &self.view {
            let Some(d) = view.find_one(key(id, version)?).await? else {
                return Ok(None);
            };
            return Ok(Some(from_document(d.get_document("data")?)?));
        }
        let Some(h) = self.history.find_one(key(id, version)?).await? else {
            return Ok(None);
        };
        if let Ok(first) = h.get_document("data") {
            // The first layout (after `downgrade_to_first_layout`): the whole document.
            return Ok(Some(from_document(first)?));
        }
        let mut data = Document::new();
        for (name, hash) in disclosed(&h)? {
            if let Some(s) = self.section.find_one(section_key(id, &name, &hash)).await? {
                data.insert(name, s.get("value").cloned().unwrap_or(Bson::Null));
            }
        }
        Ok(Some(from_document(&data)?))
    }

    /// The sections `version` of `id` discloses, by name, with their hashes.
    async fn disclosed_at(
        &self,
        id: &StateId,
        version: u64,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let Some(h) = self.history.find_one(key(id, version)?).await? else {
            anyhow::bail!("{id} has no history version {version}");
        };
        Ok(disclosed(&h)?.into_iter().collect())
    }

    /// Sets the value of one section version.
    async fn set_section(
        &self,
        id: &StateId,
        name: &str,
        hash: &str,
        value: &Value,
    ) -> anyhow::Result<()> {
        let r = self
            .section
            .update_one(
                section_key(id, name, hash),
                doc! { "$set": { "value": to_bson(value)? } },
            )
            .await?;
        anyhow::ensure!(
            r.matched_count == 1,
            "{id} has no section version {name} {hash}"
        );
        Ok(())
    }
}

#[async_trait]
impl RawAccess for MongoRaw {
    async fn raw_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.view_data(id, version).await
    }
    async fn raw_seals(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.field(id, version, "seals").await
    }
    async fn set_raw_data(&self, id: &StateId, version: u64, data: Value) -> anyhow::Result<()> {
        let held = self.disclosed_at(id, version).await?;
        if let Value::Object(sections) = &data {
            for (name, value) in sections {
                if let Some(hash) = held.get(name) {
                    self.set_section(id, name, hash, value).await?;
                }
            }
        }
        self.state
            .update_one(
                doc! { "_id": id.as_str(), "version": i64::try_from(version)? },
                doc! { "$set": { "data": to_document(&data)? } },
            )
            .await?;
        Ok(())
    }
    async fn swap_history_data(&self, id: &StateId, a: u64, b: u64) -> anyhow::Result<()> {
        let (ha, hb) = (
            self.disclosed_at(id, a).await?,
            self.disclosed_at(id, b).await?,
        );
        let (Some(da), Some(db)) = (self.view_data(id, a).await?, self.view_data(id, b).await?)
        else {
            anyhow::bail!("{id}: versions {a} and {b} are not both stored");
        };
        for (name, hash_a) in &ha {
            let Some(hash_b) = hb.get(name).filter(|h| *h != hash_a) else {
                continue;
            };
            let (Some(va), Some(vb)) = (da.get(name), db.get(name)) else {
                continue;
            };
            self.set_section(id, name, hash_a, vb).await?;
            self.set_section(id, name, hash_b, va).await?;
        }
        Ok(())
    }
    /// Rewrites the state collections into the first layout: every history document gets
    /// its whole `data` back, every current document becomes a copy of its history document
    /// (keyed by the state id), and the section collection and history view are dropped.
    async fn downgrade_to_first_layout(&self) -> anyhow::Result<bool> {
        let mut cursor = self.history.find(doc! {}).await?;
        let mut history = Vec::new();
        while cursor.advance().await? {
            history.push(cursor.deserialize_current()?);
        }
        for h in &history {
            let id = StateId(h.get_str("id")?.to_owned());
            let version = int(h, "version")?;
            let data = self
                .view_data(&id, version)
                .await?
                .ok_or_else(|| anyhow::anyhow!("{id} v{version} vanished"))?;
            self.history
                .update_one(
                    doc! { "_id": h.get("_id").cloned().unwrap_or(Bson::Null) },
                    doc! { "$set": { "data": to_document(&data)? } },
                )
                .await?;
        }
        let mut cursor = self.state.find(doc! {}).await?;
        let mut current = Vec::new();
        while cursor.advance().await? {
            current.push(cursor.deserialize_current()?);
        }
        for c in current {
            let id = StateId(c.get_str("_id")?.to_owned());
            let version = int(&c, "version")?;
            let Some(mut first) = self.history.find_one(key(&id, version)?).await? else {
                anyhow::bail!("{id} has no history version {version}");
            };
            first.insert("_id", id.as_str());
            first.insert("data", c.get_document("data")?.clone());
            self.state
                .replace_one(doc! { "_id": id.as_str() }, first)
                .await?;
        }
        self.section.drop().await?;
        if let Some(view) = &self.view {
            view.drop().await?;
        }
        Ok(true)
    }
    fn has_current_state_table(&self) -> bool {
        true
    }
    async fn set_current_data_only(&self, id: &StateId, data: Value) -> anyhow::Result<()> {
        let r = self
            .state
            .update_one(
                doc! { "_id": id.as_str() },
                doc! { "$set": { "data": to_document(&data)? } },
            )
            .await?;
        anyhow::ensure!(r.matched_count == 1, "no current document for {id}");
        Ok(())
    }
    /// The event document's field: documents and arrays as JSON, strings as strings, integers
    /// as numbers, `null` (or a field the document lacks) as `null`.
    async fn raw_event_column(
        &self,
        event: &sst_core::EventId,
        column: EventColumn,
    ) -> anyhow::Result<Option<Value>> {
        let Some(d) = self
            .event
            .find_one(doc! { "_id": event.to_string() })
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(match d.get(column.name()) {
            Some(v) => from_bson(v)?,
            None => Value::Null,
        }))
    }
    /// Plain driver calls, as someone with write access to the database would make them:
    /// the recoverable protocol's `pending` tag and the event `pos` are left as they are.
    async fn mutate(&self, m: &Mutation) -> anyhow::Result<bool> {
        let changed = match m {
            Mutation::DeleteCurrentRow(id) => {
                self.state
                    .delete_one(doc! { "_id": id.as_str() })
                    .await?
                    .deleted_count
            }
            Mutation::RollBackCurrentRow { id, version } => {
                let Some(old) = self.history.find_one(key(id, *version)?).await? else {
                    anyhow::bail!("{id} has no history version {version}");
                };
                let data = self
                    .view_data(id, *version)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("{id} v{version} vanished"))?;
                let row = doc! {
                    "_id": id.as_str(),
                    "contract_name": old.get("contract_name").cloned().unwrap_or(Bson::Null),
                    "contract_version": old.get("contract_version").cloned().unwrap_or(Bson::Null),
                    "version": i64::try_from(*version)?,
                    "data": to_document(&data)?,
                };
                self.state
                    .replace_one(doc! { "_id": id.as_str() }, row)
                    .await?
                    .modified_count
            }
            Mutation::DeleteHistoryVersion { id, version } => {
                self.history
                    .delete_one(key(id, *version)?)
                    .await?
                    .deleted_count
            }
            Mutation::CopyHistoryVersion { id, from, to } => {
                let Some(mut copy) = self.history.find_one(key(id, *from)?).await? else {
                    anyhow::bail!("{id} has no history version {from}");
                };
                copy.remove("_id");
                copy.insert("version", i64::try_from(*to)?);
                self.history.insert_one(copy).await?;
                1
            }
            Mutation::DeleteEvent(e) => {
                self.event
                    .delete_one(doc! { "_id": e.to_string() })
                    .await?
                    .deleted_count
            }
            Mutation::RelabelApplied {
                event,
                version,
                root,
            } => {
                let set = doc! {
                    "outcome": "applied",
                    "reason": Bson::Null,
                    "reason_detail": Bson::Null,
                    "new_version": i64::try_from(*version)?,
                    "new_root": root.to_string(),
                };
                self.event
                    .update_one(doc! { "_id": event.to_string() }, doc! { "$set": set })
                    .await?
                    .modified_count
            }
            Mutation::SetEventColumn {
                event,
                column,
                value,
            } => {
                self.event
                    .update_one(
                        doc! { "_id": event.to_string() },
                        doc! { "$set": { column.name(): to_bson(value)? } },
                    )
                    .await?
                    .modified_count
            }
            Mutation::DropEventColumn(column) => {
                // The documents of a release before that field: unset in every event.
                self.event
                    .update_many(doc! {}, doc! { "$unset": { column.name(): "" } })
                    .await?;
                return Ok(true);
            }
            Mutation::DeleteLogEntry(p) => self.log.delete_one(pos(*p)?).await?.deleted_count,
            Mutation::CopyLogEntry { from, to } => {
                let Some(mut copy) = self.log.find_one(pos(*from)?).await? else {
                    anyhow::bail!("no log entry at {from}");
                };
                copy.insert("_id", i64::try_from(*to)?);
                self.log.insert_one(copy).await?;
                1
            }
            Mutation::SwapLogEntries { a, b } => {
                // `_id` cannot be updated: both entries are taken out and put back swapped.
                let (Some(mut da), Some(mut db)) = (
                    self.log.find_one(pos(*a)?).await?,
                    self.log.find_one(pos(*b)?).await?,
                ) else {
                    anyhow::bail!("log entries {a} and {b} are not both stored");
                };
                self.log
                    .delete_many(
                        doc! { "_id": { "$in": [i64::try_from(*a)?, i64::try_from(*b)?] } },
                    )
                    .await?;
                da.insert("_id", i64::try_from(*b)?);
                db.insert("_id", i64::try_from(*a)?);
                self.log.insert_many([da, db]).await?;
                1
            }
            Mutation::TruncateLog { from } => {
                let gone = self
                    .log
                    .delete_many(doc! { "_id": { "$gte": i64::try_from(*from)? } })
                    .await?
                    .deleted_count;
                u64::from(gone > 0)
            }
            Mutation::SetActorKey { actor, key } => {
                self.actor
                    .update_one(
                        doc! { "_id": actor.as_str() },
                        doc! { "$set": { "public_key": to_bson(&serde_json::to_value(key)?)? } },
                    )
                    .await?
                    .modified_count
            }
            Mutation::SetContractDescriptor {
                contract,
                descriptor,
            } => {
                self.contract
                    .update_one(
                        doc! { "_id": contract.to_string() },
                        doc! { "$set": { "record.descriptor": to_bson(descriptor)? } },
                    )
                    .await?
                    .modified_count
            }
            Mutation::DeleteRefusal(event) => {
                self.refusal
                    .delete_one(doc! { "_id": event.to_string() })
                    .await?
                    .deleted_count
            }
            Mutation::DeleteCheckpoint { node, pos } => {
                self.checkpoint
                    .delete_one(doc! { "node": node.as_str(), "pos": i64::try_from(*pos)? })
                    .await?
                    .deleted_count
            }
            other => anyhow::bail!("mutation {other:?} not known to this raw access"),
        };
        anyhow::ensure!(changed == 1, "{m:?} changed {changed} documents");
        Ok(true)
    }
}

/// The factory for the configured server, or `None` (with a loud skip) without
/// `SST_MONGO_URL`.
pub async fn factory_with(mode: TransactionMode) -> anyhow::Result<Option<MongoFactory>> {
    Ok(
        conformance_tests::url_or_skip(sst_store_mongo::config::URL_ENV)?
            .map(|url| MongoFactory::new(url, mode)),
    )
}
