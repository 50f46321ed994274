//! Opening what is not ours: `migrate` refuses a foreign table that carries a peer table's
//! name (or the history view's) and changes nothing, upgrades an older layout of its own, and
//! a read-only store leaves the file byte-identical, even over the first state layout; and an
//! event column or a section version the schema does not check for JSON, edited into something
//! else, is reported by `verify`.

mod first_layout;
mod temp_db;

use conformance_tests::fixtures::{actor, change, create, deal_parties, deal_values, values};
use rusqlite::Connection;
use serde_json::json;
use sst_core::{CommitBatch, StateId, Store, StoreError};
use sst_store_sqlite::{SqliteConfig, SqliteStore, TableNames};
use temp_db::TempDb;

#[tokio::test]
async fn migrate_refuses_a_foreign_table_with_a_peer_table_name() -> anyhow::Result<()> {
    let db = TempDb::new("schema");
    {
        let c = Connection::open(&db.0)?;
        c.execute_batch(
            "CREATE TABLE sst_state (id INTEGER PRIMARY KEY, note TEXT);
             INSERT INTO sst_state VALUES (1, 'ours, not SST''s');",
        )?;
    }
    let store = SqliteStore::open(SqliteConfig::file(&db.0)).await?;
    match store.migrate().await {
        Err(StoreError::Schema { table, detail, .. }) => {
            assert_eq!(table, "sst_state");
            assert!(detail.contains("contract_name"), "{detail}");
        }
        other => anyhow::bail!("expected a Schema error, got {other:?}"),
    }
    drop(store);
    let c = Connection::open(&db.0)?;
    let note: String = c.query_row("SELECT note FROM sst_state WHERE id = 1", [], |r| r.get(0))?;
    assert_eq!(note, "ours, not SST's");
    let created: i64 = c.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name LIKE 'sst_%' AND type = 'table'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(created, 1, "a refused migrate creates no other peer table");
    Ok(())
}

#[tokio::test]
async fn migrate_refuses_an_event_table_of_the_layout_before_receipts() -> anyhow::Result<()> {
    let db = TempDb::new("schema");
    SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    {
        // The layout before the hash-chained log: no receipt column, no log tables.
        let c = Connection::open(&db.0)?;
        c.execute_batch(
            "ALTER TABLE sst_event DROP COLUMN receipt;
             DROP TABLE sst_log;
             DROP TABLE sst_checkpoint;",
        )?;
    }
    let store = SqliteStore::open(SqliteConfig::file(&db.0)).await?;
    match store.migrate().await {
        Err(StoreError::Schema { table, detail, .. }) => {
            assert_eq!(table, "sst_event");
            assert!(detail.contains("receipt"), "{detail}");
        }
        other => anyhow::bail!("expected a Schema error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn migrate_adds_business_events_endorsements_and_sink_cursors_to_the_layout_before_them(
) -> anyhow::Result<()> {
    let db = TempDb::new("schema");
    let (alice, key) = actor("acme", "alice");
    let id = StateId::from("deal-old-layout");
    {
        let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
        store.put_actor(&alice).await?;
        store
            .commit(CommitBatch::new(vec![create(
                &id,
                deal_parties(),
                deal_values(250_000, 3.1),
                (&alice, &key),
                1,
            )]))
            .await?;
    }
    {
        // The layout before notifications: no business_events or endorsements column, no
        // sink cursors.
        let c = Connection::open(&db.0)?;
        c.execute_batch(
            "ALTER TABLE sst_event DROP COLUMN business_events;
             ALTER TABLE sst_event DROP COLUMN endorsements;
             DROP TABLE sst_sink_cursor;",
        )?;
    }
    {
        // A read-only store leaves the older layout as it is and reads no business events
        // and no endorsements.
        let store = SqliteStore::open(SqliteConfig::file(&db.0).read_only()).await?;
        let events = store.events(&Default::default()).await?;
        assert_eq!(events.len(), 1);
        assert!(events[0].business_events.is_empty());
        assert!(events[0].endorsements.is_empty());
    }
    let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    let events = store.events(&Default::default()).await?;
    assert_eq!(events.len(), 1);
    assert!(events[0].business_events.is_empty());
    assert!(events[0].endorsements.is_empty());
    store.set_sink_cursor("kafka", 1).await?;
    assert_eq!(store.sink_cursor("kafka").await?, Some(1));
    let report = sst_core::verify_store(&store, &mut |_, _| {}).await?;
    assert!(report.is_clean(), "{:?}", report.findings);
    drop(store);
    let c = Connection::open(&db.0)?;
    let added: i64 = c.query_row(
        "SELECT count(*) FROM pragma_table_info('sst_event') \
         WHERE name IN ('business_events', 'endorsements')",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(added, 2, "migrate added both columns");
    Ok(())
}

#[tokio::test]
async fn migrate_accepts_its_own_tables_again() -> anyhow::Result<()> {
    let db = TempDb::new("schema");
    SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    Ok(())
}

#[tokio::test]
async fn a_read_only_store_reads_and_changes_nothing() -> anyhow::Result<()> {
    let db = TempDb::new("schema");
    {
        // An ordinary rollback-journal file with one committed state, checkpointed back out
        // of WAL mode so that only the main file holds it.
        let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
        let (alice, key) = actor("acme", "alice");
        let id = StateId::from("deal-ro");
        store
            .commit(CommitBatch::new(vec![create(
                &id,
                deal_parties(),
                deal_values(250_000, 3.1),
                (&alice, &key),
                1,
            )]))
            .await?;
        drop(store);
        let c = Connection::open(&db.0)?;
        let mode: String = c.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        assert_eq!(mode, "delete");
    }
    let before = std::fs::read(&db.0)?;
    let store = SqliteStore::open(SqliteConfig::file(&db.0).read_only()).await?;
    assert_eq!(store.state_ids().await?, vec![StateId::from("deal-ro")]);
    assert!(store.state(&StateId::from("deal-ro")).await?.is_some());
    let (bob, key) = actor("globex", "bob");
    let refused = store
        .commit(CommitBatch::new(vec![create(
            &StateId::from("deal-ro-2"),
            deal_parties(),
            deal_values(1, 0.5),
            (&bob, &key),
            1,
        )]))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Backend { .. })),
        "a read-only store refuses writes: {refused:?}"
    );
    drop(store);
    assert_eq!(std::fs::read(&db.0)?, before, "the file is byte-identical");
    let c = Connection::open(&db.0)?;
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    assert_eq!(mode, "delete", "opening read-only did not switch to WAL");
    Ok(())
}

#[tokio::test]
async fn migrate_refuses_a_table_where_the_history_view_goes() -> anyhow::Result<()> {
    let db = TempDb::new("schema");
    {
        let c = Connection::open(&db.0)?;
        c.execute_batch(
            "CREATE TABLE sst_state_versions (id TEXT, version INTEGER, contract_name TEXT,
               contract_version INTEGER, root TEXT, updated_at INTEGER, data TEXT);",
        )?;
    }
    let store = SqliteStore::open(SqliteConfig::file(&db.0)).await?;
    match store.migrate().await {
        Err(StoreError::Schema { table, detail, .. }) => {
            assert_eq!(table, "sst_state_versions");
            assert!(detail.contains("is a table"), "{detail}");
        }
        other => anyhow::bail!("expected a Schema error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_read_only_store_reads_the_first_layout_without_upgrading_it() -> anyhow::Result<()> {
    let db = TempDb::new("schema");
    let id = StateId::from("deal-first");
    let (v1, v2) = {
        let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
        let (alice, key) = actor("acme", "alice");
        store.put_actor(&alice).await?;
        let c = create(&id, deal_parties(), deal_values(10, 3.1), (&alice, &key), 1);
        let v1 = c.state.clone().ok_or_else(|| anyhow::anyhow!("no state"))?;
        let x = change(
            &v1,
            values([("price", json!({"amount": 11, "currency": "EUR"}))]),
            (&alice, &key),
            2,
        );
        let v2 = x.state.clone().ok_or_else(|| anyhow::anyhow!("no state"))?;
        store.commit(CommitBatch::new(vec![c, x])).await?;
        (v1, v2)
    };
    {
        let mut c = Connection::open(&db.0)?;
        first_layout::downgrade(&mut c, &TableNames::default())?;
        let mode: String = c.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        assert_eq!(mode, "delete");
    }
    let before = std::fs::read(&db.0)?;
    let store = SqliteStore::open(SqliteConfig::file(&db.0).read_only()).await?;
    let latest = store
        .state(&id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    assert_eq!((latest.version, latest.root), (v2.version, v2.root));
    for want in [&v1, &v2] {
        let read = store
            .state_at(&id, want.version)
            .await?
            .ok_or_else(|| anyhow::anyhow!("version {} missing", want.version))?;
        assert_eq!(read.data(), want.data());
        assert_eq!(read.root, want.root);
    }
    let report = sst_core::verify_store(&store, &mut |_, _| {}).await?;
    assert!(report.is_clean() && report.versions == 2, "{report:?}");
    drop(store);
    assert_eq!(std::fs::read(&db.0)?, before, "the file is byte-identical");
    Ok(())
}

/// The event table's JSON columns carry no `json_valid` check (see `schema::ddl`): an event row
/// edited into text that is not JSON is still reported by `verify`, with its event id.
#[tokio::test]
async fn an_event_column_edited_into_non_json_is_reported_by_verify() -> anyhow::Result<()> {
    for column in ["event", "disclosures", "receipt"] {
        let db = TempDb::new("schema");
        let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
        let signer = actor("n1", "alice");
        let id = StateId::from("edited-event");
        let item = create(
            &id,
            deal_parties(),
            deal_values(100, 1.0),
            (&signer.0, &signer.1),
            1,
        );
        let event = item.event.id().to_string();
        store.commit(CommitBatch::new(vec![item])).await?;
        drop(store);
        {
            let c = Connection::open(&db.0)?;
            let edited = c.execute(
                &format!("UPDATE sst_event SET {column} = 'not json {{' WHERE id = ?1"),
                [&event],
            )?;
            assert_eq!(edited, 1);
        }
        let store = SqliteStore::open(SqliteConfig::file(&db.0)).await?;
        let report = sst_core::verify_store(&store, &mut |_, _| {}).await?;
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.event.as_deref() == Some(&event) && f.rule == sst_core::Rule::Integrity),
            "{column}: {:?}",
            report.findings
        );
    }
    Ok(())
}

/// The section table's `value` carries no `json_valid` check (see `schema::section_table`): a
/// section version edited into text that is not JSON makes the version that discloses it and
/// the event that disclosed it typed integrity errors naming the section version, and
/// `verify` reports it with the state and version; what does not hold it still reads.
#[tokio::test]
async fn a_section_version_edited_into_non_json_is_reported_by_verify() -> anyhow::Result<()> {
    let db = TempDb::new("schema");
    let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    let (alice, key) = actor("n1", "alice");
    store.put_actor(&alice).await?;
    let id = StateId::from("edited-section");
    let c = create(&id, deal_parties(), deal_values(10, 3.1), (&alice, &key), 1);
    let v1 = c.state.clone().ok_or_else(|| anyhow::anyhow!("no state"))?;
    store.commit(CommitBatch::new(vec![c])).await?;
    let x = change(
        &v1,
        values([("price", json!({"amount": 11, "currency": "EUR"}))]),
        (&alice, &key),
        2,
    );
    let v2 = x.state.clone().ok_or_else(|| anyhow::anyhow!("no state"))?;
    let event = x.event.id();
    store.commit(CommitBatch::new(vec![x])).await?;
    drop(store);
    let hash = v2
        .sections
        .get("price")
        .ok_or_else(|| anyhow::anyhow!("no price"))?
        .hash
        .to_string();
    {
        let c = Connection::open(&db.0)?;
        let ddl: String = c.query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'sst_section'",
            [],
            |r| r.get(0),
        )?;
        assert!(!ddl.contains("json_valid"), "{ddl}");
        let edited = c.execute(
            "UPDATE sst_section SET value = 'not json {' \
             WHERE state_id = ?1 AND name = 'price' AND hash = ?2",
            [id.as_str(), hash.as_str()],
        )?;
        assert_eq!(edited, 1);
    }
    let store = SqliteStore::open(SqliteConfig::file(&db.0)).await?;
    match store.state_at(&id, 2).await {
        Err(StoreError::Integrity { what, source }) => {
            assert_eq!(what, "state edited-section version 2");
            let source = source.to_string();
            assert!(
                source.contains("section price") && source.contains(&hash),
                "{source}"
            );
        }
        other => anyhow::bail!("expected an Integrity error, got {other:?}"),
    }
    match store.event(&event).await {
        Err(StoreError::Integrity { what, source }) => {
            assert_eq!(what, format!("event {event}"));
            assert!(source.to_string().contains(&hash), "{source}");
        }
        other => anyhow::bail!("expected an Integrity error, got {other:?}"),
    }
    // What does not hold the edited section version reads as stored.
    let at1 = store
        .state_at(&id, 1)
        .await?
        .ok_or_else(|| anyhow::anyhow!("version 1 missing"))?;
    assert_eq!(at1.data(), v1.data());
    let current = store
        .state(&id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("state missing"))?;
    assert_eq!(current.data(), v2.data());
    let report = sst_core::verify_store(&store, &mut |_, _| {}).await?;
    assert!(
        report.findings.iter().any(|f| f.state_id == id
            && f.version == Some(2)
            && f.rule == sst_core::Rule::Integrity
            && f.problem.contains("section price")),
        "{:?}",
        report.findings
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.event.as_deref() == Some(event.to_string().as_str())),
        "{:?}",
        report.findings
    );
    Ok(())
}
