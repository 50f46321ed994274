//! Writes a few real-estate deal states into schema `sst_demo` (or `$SST_DEMO_SCHEMA`) of
//! `$SST_POSTGRES_URL`, so the SQL in the README can be tried on real rows:
//! `cargo run -p sst-store-postgres --example postgres_deals`.

use anyhow::Context;
use conformance_tests::fixtures::{actor, create, deal_parties, deal_values};
use sst_core::{CommitBatch, StateId, Store};
use sst_store_postgres::{PostgresConfig, PostgresStore};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let config = PostgresConfig::from_env().context("set SST_POSTGRES_URL")?;
    let schema = std::env::var("SST_DEMO_SCHEMA").unwrap_or_else(|_| "sst_demo".into());
    let store = PostgresStore::connect(config.schema(&schema)).await?;
    store.migrate().await?;
    let (alice, key) = actor("acme", "alice");
    // Known actors are part of a node database: `sst verify` checks every event's signature
    // against its actor's key.
    store.put_actor(&alice).await?;
    let mut seq = store.last_origin_seq(&alice.node).await?.0;
    for (n, (price, radon)) in [(480_000, 2.1), (515_000, 4.6), (730_000, 3.7)]
        .into_iter()
        .enumerate()
    {
        seq += 1;
        let id = StateId(format!("deal-{}-{seq}", n + 1));
        let item = create(
            &id,
            deal_parties(),
            deal_values(price, radon),
            (&alice, &key),
            seq,
        );
        store.commit(CommitBatch::new(vec![item])).await?;
        println!("committed {id} into {schema}.sst_state");
    }
    Ok(())
}
