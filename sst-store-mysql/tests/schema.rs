//! Opening what is not ours on a real MySQL / MariaDB server (`SST_MYSQL_URL`): `migrate`
//! refuses a foreign table that carries a peer table's name and changes nothing, and upgrades
//! an event table of an older layout of its own.

mod common;

use anyhow::{bail, ensure};
use common::ScratchDb;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use sst_core::{Store, StoreError};

/// Someone else's `table` (columns `id`, `note`, a row of theirs) in a scratch database:
/// `migrate` refuses it, naming the first column SST needs (`missing`), and changes nothing.
async fn foreign_table_is_refused(name: &str, missing: &str) -> anyhow::Result<()> {
    let Some(db) = ScratchDb::new()? else {
        return Ok(());
    };
    let pool = Pool::from_url(&db.url)?;
    let mut conn = pool.get_conn().await?;
    let table = format!("`{}`.`{name}`", db.database);
    conn.query_drop(format!("CREATE DATABASE `{}`", db.database))
        .await?;
    conn.query_drop(format!("CREATE TABLE {table} (id int, note text)"))
        .await?;
    conn.query_drop(format!(
        "INSERT INTO {table} VALUES (1, 'ours, not SST''s')"
    ))
    .await?;

    let store = db.store(2).await?;
    match store.migrate().await {
        Err(StoreError::Schema {
            backend,
            table,
            detail,
        }) => {
            ensure!(backend == "mysql" && table == name, "{backend} {table}");
            ensure!(detail.contains(&format!("`{missing}`")), "{detail}");
        }
        other => bail!("expected a Schema error, got {other:?}"),
    }

    let rows: Vec<(i32, String)> = conn.query(format!("SELECT id, note FROM {table}")).await?;
    ensure!(rows == [(1, "ours, not SST's".to_owned())], "{rows:?}");
    let tables: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (db.database.as_str(),),
        )
        .await?;
    ensure!(
        tables == [name],
        "a refused migrate creates no other peer table: {tables:?}"
    );
    drop(conn);
    pool.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_foreign_table_with_a_peer_table_name() -> anyhow::Result<()> {
    foreign_table_is_refused("sst_state", "contract_name").await
}

/// The newest peer table is checked like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_foreign_refusal_table() -> anyhow::Result<()> {
    foreign_table_is_refused("sst_refusal", "event_id").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_accepts_its_own_tables_again() -> anyhow::Result<()> {
    let Some(db) = ScratchDb::new()? else {
        return Ok(());
    };
    db.store(2).await?.migrate().await?;
    db.store(2).await?.migrate().await?;
    Ok(())
}

/// The section table and the history view's name of the section-version layout are checked
/// like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_foreign_section_table_and_history_view_names() -> anyhow::Result<()> {
    foreign_table_is_refused("sst_section", "state_id").await?;
    foreign_table_is_refused("sst_state_versions", "version").await
}

/// The peer tables the log brought are checked like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_foreign_log_and_checkpoint_tables() -> anyhow::Result<()> {
    foreign_table_is_refused("sst_log", "pos").await?;
    foreign_table_is_refused("sst_checkpoint", "node").await
}

/// An event table of the layout before the receipt column is refused with the Schema error
/// naming `receipt`, not met later as a failing insert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_an_event_table_without_receipt() -> anyhow::Result<()> {
    let Some(db) = ScratchDb::new()? else {
        return Ok(());
    };
    let store = db.store(2).await?;
    store.migrate().await?;
    let mut conn = store.pool().get_conn().await?;
    conn.query_drop(format!(
        "ALTER TABLE `{}`.`sst_event` DROP COLUMN receipt",
        db.database
    ))
    .await?;
    drop(conn);
    match store.migrate().await {
        Err(StoreError::Schema { table, detail, .. }) => {
            ensure!(table == "sst_event", "{table}");
            ensure!(detail.contains("`receipt`"), "{detail}");
        }
        other => bail!("expected a Schema error, got {other:?}"),
    }
    Ok(())
}

/// An event table of the layout before business events and endorsements (and no sink cursor
/// table) gains the columns and the table on `migrate`; its recorded events read back without
/// business events or endorsements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_adds_business_events_and_endorsements_to_the_layout_before_them(
) -> anyhow::Result<()> {
    use conformance_tests::fixtures::{actor, create, deal_parties, deal_values, state_id};
    let Some(db) = ScratchDb::new()? else {
        return Ok(());
    };
    let store = db.store(2).await?;
    store.migrate().await?;
    let (alice, key) = actor("acme", "alice");
    let created = create(
        &state_id("upgraded"),
        deal_parties(),
        deal_values(1, 0.5),
        (&alice, &key),
        1,
    );
    let event = created.event.clone();
    store
        .commit(sst_core::CommitBatch::new(vec![created]))
        .await?;
    let mut conn = store.pool().get_conn().await?;
    conn.query_drop(format!(
        "ALTER TABLE `{}`.`sst_event` DROP COLUMN business_events, DROP COLUMN endorsements",
        db.database
    ))
    .await?;
    conn.query_drop(format!("DROP TABLE `{}`.`sst_sink_cursor`", db.database))
        .await?;
    drop(conn);
    store.migrate().await?;
    ensure!(
        store.event(&event.id()).await? == Some(event),
        "the older event does not read back"
    );
    store.set_sink_cursor("mqtt", 3).await?;
    ensure!(
        store.sink_cursor("mqtt").await? == Some(3),
        "cursor not kept"
    );
    let mut conn = store.pool().get_conn().await?;
    let added: Vec<String> = conn
        .exec(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? \
             AND table_name = 'sst_event' AND column_name IN ('business_events', 'endorsements') \
             ORDER BY column_name",
            (db.database.as_str(),),
        )
        .await?;
    ensure!(
        added == ["business_events", "endorsements"],
        "migrate added {added:?}"
    );
    Ok(())
}

/// A table (not a view) of the history view's name, even one with the view's columns, is
/// refused before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_table_where_the_history_view_goes() -> anyhow::Result<()> {
    let Some(db) = ScratchDb::new()? else {
        return Ok(());
    };
    let pool = Pool::from_url(&db.url)?;
    let mut conn = pool.get_conn().await?;
    conn.query_drop(format!("CREATE DATABASE `{}`", db.database))
        .await?;
    conn.query_drop(format!(
        "CREATE TABLE `{}`.`sst_state_versions` (id text, version int, contract_name text, \
         contract_version int, root text, updated_at bigint, data text)",
        db.database
    ))
    .await?;
    match db.store(2).await?.migrate().await {
        Err(StoreError::Schema { table, detail, .. }) => {
            ensure!(table == "sst_state_versions", "{table}");
            ensure!(detail.contains("BASE TABLE"), "{detail}");
        }
        other => bail!("expected a Schema error, got {other:?}"),
    }
    let tables: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (db.database.as_str(),),
        )
        .await?;
    ensure!(tables == ["sst_state_versions"], "{tables:?}");
    drop(conn);
    pool.disconnect().await?;
    Ok(())
}
