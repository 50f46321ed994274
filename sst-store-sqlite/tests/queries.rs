//! The SQL shown in the README runs as documented: `->>` / `json_extract` queries over the
//! `data` column of the current-state table and of the history view, an expression index on a
//! JSON path, business events and endorsements through `json_each`, and a `:memory:` store.

mod temp_db;

use conformance_tests::fixtures::{
    actor, change, create, deal_parties, deal_values, emitting, endorsed, endorsers, values,
};
use rusqlite::Connection;
use serde_json::json;
use sst_core::{BusinessEvent, CommitBatch, StateId, Store};
use sst_store_sqlite::{SqliteConfig, SqliteStore};
use temp_db::TempDb;

/// Commits three deals with radon 4.6, 3.2 and 5.1 (the second raised to 4.4 in version 2, by
/// a change that emitted business events and that nodes `bank` and `insp` endorsed).
async fn three_deals(store: &SqliteStore) -> anyhow::Result<Vec<StateId>> {
    let (alice, ka) = actor("acme", "alice");
    let mut ids = Vec::new();
    let mut items = Vec::new();
    for (i, radon) in [4.6, 3.2, 5.1].into_iter().enumerate() {
        let id = StateId(format!("deal-{i}"));
        items.push(create(
            &id,
            deal_parties(),
            deal_values(100_000, radon),
            (&alice, &ka),
            i as u64 + 1,
        ));
        ids.push(id);
    }
    let v1 = items[1]
        .state
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no state"))?;
    let raised = emitting(
        change(
            &v1,
            values([(
                "inspection",
                json!({"radon": 4.4, "inspector": "Inès Ørsted"}),
            )]),
            (&alice, &ka),
            4,
        ),
        vec![
            BusinessEvent {
                name: "price_agreed".into(),
                payload: json!({"amount": 98_500}),
            },
            BusinessEvent {
                name: "inspection_done".into(),
                payload: json!(null),
            },
        ],
    );
    items.push(endorsed(raised, &endorsers())?);
    store.commit(CommitBatch::new(items)).await?;
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_json_queries_and_expression_index_work() -> anyhow::Result<()> {
    let db = TempDb::new("queries");
    let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    three_deals(&store).await?;

    let c = Connection::open(&db.0)?;
    let rows = |sql: &str| -> anyhow::Result<Vec<(String, i64, f64)>> {
        let mut s = c.prepare(sql)?;
        let r = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(r)
    };
    let latest = rows(
        "SELECT id, version, data ->> '$.inspection.radon' AS radon
         FROM sst_state
         WHERE data ->> '$.inspection.radon' > 4
         ORDER BY id",
    )?;
    assert_eq!(
        latest,
        vec![
            ("deal-0".to_owned(), 1, 4.6),
            ("deal-1".to_owned(), 2, 4.4),
            ("deal-2".to_owned(), 1, 5.1)
        ]
    );
    let history = rows(
        "SELECT id, version, json_extract(data, '$.inspection.radon') AS radon
         FROM sst_state_versions
         WHERE json_extract(data, '$.inspection.radon') > 4
         ORDER BY id, version",
    )?;
    assert_eq!(history, latest, "version 1 of deal-1 (3.2) must not match");
    // The README's history query, exactly as printed there.
    let mut ever: Vec<(String, i64)> = c
        .prepare(
            "SELECT id, version FROM sst_state_versions \
             WHERE json_extract(data, '$.inspection.radon') > 4;",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    ever.sort();
    assert_eq!(
        ever,
        vec![
            ("deal-0".to_owned(), 1),
            ("deal-1".to_owned(), 2),
            ("deal-2".to_owned(), 1)
        ]
    );
    // Every version's document in the view is the one `state_at` reads.
    for (id, version) in [("deal-1", 1), ("deal-1", 2)] {
        let text: String = c.query_row(
            "SELECT data FROM sst_state_versions WHERE id = ?1 AND version = ?2",
            rusqlite::params![id, version],
            |r| r.get(0),
        )?;
        let state = store
            .state_at(&StateId::from(id), version as u64)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{id} v{version} missing"))?;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text)?,
            state.data()
        );
    }

    c.execute_batch("CREATE INDEX sst_state_radon ON sst_state (data ->> '$.inspection.radon');")?;
    let plan: Vec<String> = c
        .prepare(
            "EXPLAIN QUERY PLAN SELECT id FROM sst_state WHERE data ->> '$.inspection.radon' > 4",
        )?
        .query_map([], |r| r.get::<_, String>(3))?
        .collect::<Result<_, _>>()?;
    assert!(
        plan.iter()
            .any(|p| p.contains("USING INDEX sst_state_radon")),
        "query plan does not use the expression index: {plan:?}"
    );
    let agreed: Vec<(String, i64)> = c
        .prepare(
            "SELECT b.value ->> '$.name' AS name, b.value ->> '$.payload.amount' AS amount
             FROM sst_event e, json_each(e.business_events) b
             WHERE b.value ->> '$.name' = 'price_agreed'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    assert_eq!(agreed, vec![("price_agreed".to_owned(), 98_500)]);
    let endorsers: Vec<(String, String)> = c
        .prepare(
            "SELECT e.state_id, n.value ->> '$.node' AS node
             FROM sst_event e, json_each(e.endorsements) n
             ORDER BY e.pos, node",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    assert_eq!(
        endorsers,
        vec![
            ("deal-1".to_owned(), "bank".to_owned()),
            ("deal-1".to_owned(), "insp".to_owned())
        ]
    );
    // The store keeps working with the user's index in place.
    let ids = store.state_ids().await?;
    assert_eq!(ids.len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_reads_its_own_commits_and_is_not_durable() -> anyhow::Result<()> {
    let store = SqliteStore::open_migrated(SqliteConfig::parse(":memory:")).await?;
    let ids = three_deals(&store).await?;
    assert_eq!(store.state_ids().await?, ids);
    let deal1 = store
        .state(&ids[1])
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    assert_eq!(deal1.version, 2);
    deal1.verify()?;
    assert!(!store.capabilities().durable);
    // A second `:memory:` store is a different, empty database.
    let other = SqliteStore::open_migrated(SqliteConfig::memory()).await?;
    assert!(other.state_ids().await?.is_empty());
    Ok(())
}
