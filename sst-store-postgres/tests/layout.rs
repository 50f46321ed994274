//! The section-version layout on a real PostgreSQL server (`SST_POSTGRES_URL`): current rows
//! are stored exactly like a plain `(id text, data jsonb)` table of the same JSON (so a scan
//! costs the same), before and after the in-place upgrade of a first-layout database, and the
//! README's history query against `sst_state_versions` answers as documented; an upgrade that
//! would have to choose between two stored values of one section version refuses instead.

mod common;

use anyhow::{ensure, Context};
use conformance_tests::fixtures::{
    actor, change, create, deal_parties, deal_values, state_id, values,
};
use conformance_tests::{Backend, BackendFactory};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use sst_core::{Actor, ActorKey, CommitBatch, StateId, StoreError};

/// The README's example: every version ever committed with a radon level above 4.
const README_HISTORY_QUERY: &str =
    "SELECT id, version FROM sst_state_versions WHERE (data #>> '{inspection,radon}')::numeric > 4;";

/// `(id, stored size, compression)` of each current row's `data`, and the same for a plain
/// table holding the same documents (inserted afresh, as an application would).
type Storage = Vec<(String, i32, Option<String>)>;

async fn storage(conn: &mut PgConnection, schema: &str) -> anyhow::Result<(Storage, Storage)> {
    let q = |table: &str| {
        format!(
            "SELECT id, pg_column_size(data), pg_column_compression(data) \
             FROM \"{schema}\".{table} ORDER BY id"
        )
    };
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS \"{schema}\".plain; \
         CREATE TABLE \"{schema}\".plain (id text PRIMARY KEY, data jsonb NOT NULL); \
         INSERT INTO \"{schema}\".plain SELECT id, data::text::jsonb FROM \"{schema}\".sst_state"
    )))
    .execute(&mut *conn)
    .await?;
    let ours = sqlx::query_as(AssertSqlSafe(q("sst_state")))
        .fetch_all(&mut *conn)
        .await?;
    let plain = sqlx::query_as(AssertSqlSafe(q("plain")))
        .fetch_all(&mut *conn)
        .await?;
    Ok((ours, plain))
}

/// The README's history query, verbatim, with the case's schema on the search path.
async fn readme_query(conn: &mut PgConnection, schema: &str) -> anyhow::Result<Vec<(String, i64)>> {
    sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO \"{schema}\"")))
        .execute(&mut *conn)
        .await?;
    let mut rows: Vec<(String, i64)> = sqlx::query_as(README_HISTORY_QUERY)
        .fetch_all(&mut *conn)
        .await?;
    rows.sort();
    sqlx::raw_sql("RESET search_path")
        .execute(&mut *conn)
        .await?;
    Ok(rows)
}

/// A case's factory, its opened store and the actor `alice` registered there (`None`: skip).
async fn opened() -> anyhow::Result<Option<(common::PgFactory, Backend, Actor, ActorKey)>> {
    let Some(f) = common::factory(None).await? else {
        return Ok(None);
    };
    let b = f.open().await?;
    let (alice, key) = actor("acme", "alice");
    b.store.put_actor(&alice).await?;
    Ok(Some((f, b, alice, key)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_rows_are_stored_like_a_plain_table_before_and_after_the_upgrade(
) -> anyhow::Result<()> {
    let Some((f, b, alice, key)) = opened().await? else {
        return Ok(());
    };
    // About 1.6 KB of data: under the ~2 KB TOAST threshold alone, over it with the first
    // layout's parties, seals and roots beside it.
    let mut items = Vec::new();
    let mut ids: Vec<StateId> = Vec::new();
    for n in 0..3u64 {
        let id = state_id("plain-like");
        let mut doc = deal_values(100 + n as i64, 0.5);
        doc.insert(
            "common".into(),
            json!({"address": "12 Rue des Lilas, Lyon", "notes": "x".repeat(1500)}),
        );
        let c = create(&id, deal_parties(), doc, (&alice, &key), 1 + 2 * n);
        let v1 = c.state.clone().context("create without state")?;
        items.push(c);
        if n == 0 {
            let radon = values([("inspection", json!({"radon": 4.2, "passed": false}))]);
            items.push(change(&v1, radon, (&alice, &key), 2));
        }
        ids.push(id);
    }
    b.store.commit(CommitBatch::new(items)).await?;

    let (url, schema) = f.url_and_schema();
    let mut conn = PgConnection::connect(url).await.context("connecting")?;
    let (ours, plain) = storage(&mut conn, schema).await?;
    ensure!(
        ours.len() == 3 && ours == plain,
        "{ours:?} vs plain {plain:?}"
    );
    ensure!(ours.iter().all(|(_, _, c)| c.is_none()), "{ours:?}");
    let want = vec![(ids[0].0.clone(), 2)];
    ensure!(readme_query(&mut conn, schema).await? == want);

    // The first layout stored the same documents compressed inline (the wide row crossed the
    // TOAST threshold); the upgrade leaves them stored as the plain table's again.
    ensure!(b.raw.downgrade_to_first_layout().await?, "no table layout");
    let (first, plain) = storage(&mut conn, schema).await?;
    ensure!(
        first.iter().all(|(_, _, c)| c.is_some()) && first != plain,
        "the first layout was expected to compress: {first:?}"
    );
    let again = f.reopen().await?;
    let (upgraded, plain) = storage(&mut conn, schema).await?;
    ensure!(upgraded == plain, "{upgraded:?} vs plain {plain:?}");
    ensure!(readme_query(&mut conn, schema).await? == want);
    ensure!(again.store.state(&ids[0]).await?.is_some());
    conn.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_keeps_a_users_view_on_the_current_data() -> anyhow::Result<()> {
    let Some((f, b, alice, key)) = opened().await? else {
        return Ok(());
    };
    let id = state_id("viewed");
    let mut doc = deal_values(100, 0.5);
    doc.insert("common".into(), json!({"notes": "x".repeat(1500)}));
    let c = create(&id, deal_parties(), doc, (&alice, &key), 1);
    let v1 = c.state.clone().context("create without state")?;
    b.store.commit(CommitBatch::new(vec![c])).await?;
    ensure!(b.raw.downgrade_to_first_layout().await?, "no table layout");

    let (url, schema) = f.url_and_schema();
    let mut conn = PgConnection::connect(url).await.context("connecting")?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE VIEW \"{schema}\".radon AS \
         SELECT id, data #>> '{{inspection,radon}}' AS radon FROM \"{schema}\".sst_state"
    )))
    .execute(&mut conn)
    .await?;
    let again = f.reopen().await?;
    let radon: String = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT radon FROM \"{schema}\".radon"
    )))
    .fetch_one(&mut conn)
    .await?;
    ensure!(radon == "0.5", "{radon}");
    // The row the view kept from being rewritten is stored plain once a commit changes it.
    let x = change(
        &v1,
        values([("price", json!({"amount": 101}))]),
        (&alice, &key),
        2,
    );
    again.store.commit(CommitBatch::new(vec![x])).await?;
    let (ours, plain) = storage(&mut conn, schema).await?;
    ensure!(ours == plain, "{ours:?} vs plain {plain:?}");
    conn.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refuses_a_section_version_held_with_two_values() -> anyhow::Result<()> {
    let Some((f, b, alice, key)) = opened().await? else {
        return Ok(());
    };
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
    let (url, schema) = f.url_and_schema();
    let mut conn = PgConnection::connect(url).await.context("connecting")?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "UPDATE \"{schema}\".sst_state_history \
         SET data = jsonb_set(data, '{{common,rooms}}', '9') WHERE version = 2"
    )))
    .execute(&mut conn)
    .await?;
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
    let data_columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'sst_state_history' AND column_name = 'data'",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await?;
    let sections: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("\"{schema}\".sst_section"))
        .fetch_one(&mut conn)
        .await?;
    ensure!(
        data_columns == 1 && sections.is_none(),
        "{data_columns} {sections:?}"
    );
    conn.close().await?;
    Ok(())
}
