//! MongoDB backend of the benchmark (`SST_MONGO_URL`; `cargo xtask bench store --backend
//! mongo` starts the nx-27017 test server when it is unset): the store in database `<run id>`,
//! the baseline a plain `insert_one` (batch 1) or `insert_many` (batch 100) of the same data
//! documents into a bare collection of the same database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use mongodb::bson::{doc, Document};
use sst_core::Store;
use sst_store_mongo::{value::to_document, MongoConfig, MongoStore};

use crate::Run;

fn config(run: &Run) -> anyhow::Result<MongoConfig> {
    let url = std::env::var(sst_store_mongo::config::URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .context(
            "set SST_MONGO_URL (cargo xtask bench store --backend mongo starts a test server)",
        )?;
    Ok(MongoConfig::new(url, run.id.clone()))
}

/// A migrated [`MongoStore`] in database `<run id>`.
pub(crate) async fn open_store(run: &Run) -> anyhow::Result<Arc<dyn Store>> {
    let store = MongoStore::open(config(run)?).await?;
    store.migrate().await?;
    println!(
        "mongo: commits use {}",
        if store.uses_transactions() {
            "multi-document transactions (replica set)"
        } else {
            "the recoverable protocol (server without replica set)"
        }
    );
    Ok(Arc::new(store))
}

/// Inserts `docs` (as `{_id, data}` documents) into collection `plain`: `insert_one` per
/// document for batch 1, `insert_many` of `batch` documents otherwise.
pub(crate) async fn plain_insert(
    run: &Run,
    docs: &[String],
    batch: usize,
) -> anyhow::Result<Duration> {
    let cfg = config(run)?;
    let client = mongodb::Client::with_uri_str(&cfg.url).await?;
    let col = client
        .database(&cfg.database)
        .collection::<Document>("plain");
    let rows: Vec<Document> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let value: serde_json::Value = serde_json::from_str(d)?;
            Ok(doc! { "_id": format!("plain-{batch}-{i:07}"), "data": to_document(&value)? })
        })
        .collect::<anyhow::Result<_>>()?;
    let chunks: Vec<Vec<Document>> = rows.chunks(batch).map(<[_]>::to_vec).collect();
    let start = Instant::now();
    for chunk in chunks {
        if let [one] = chunk.as_slice() {
            col.insert_one(one.clone()).await?;
        } else {
            col.insert_many(chunk).await?;
        }
    }
    Ok(start.elapsed())
}

/// Drops the run's database (store collections and the baseline collection).
pub(crate) async fn cleanup(run: &Run) -> anyhow::Result<()> {
    let cfg = config(run)?;
    let client = mongodb::Client::with_uri_str(&cfg.url).await?;
    client.database(&cfg.database).drop().await?;
    Ok(())
}
