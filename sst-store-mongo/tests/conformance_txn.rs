//! The whole conformance suite again with multi-document transactions forced, so that the
//! transaction commit path meets every case even where `Auto` picks the recoverable
//! protocol. On a server that is not a replica set or `mongos`, the store does not declare
//! `concurrent_writers` in this mode (MongoDB guarantees transaction isolation only there),
//! and the concurrency case reports itself skipped.

mod common;

use sst_store_mongo::TransactionMode;

async fn factory() -> anyhow::Result<Option<common::MongoFactory>> {
    common::factory_with(TransactionMode::Always).await
}

conformance_tests::suite!(factory());
