//! The whole conformance suite against `SST_MONGO_URL`, with transactions where the server
//! offers them (replica set, mongos) and the recoverable protocol elsewhere.

mod common;

use sst_store_mongo::TransactionMode;

async fn factory() -> anyhow::Result<Option<common::MongoFactory>> {
    common::factory_with(TransactionMode::Auto).await
}

conformance_tests::suite!(factory());
