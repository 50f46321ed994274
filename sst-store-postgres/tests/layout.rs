//! The section-version layout on a real PostgreSQL server (`SST_POSTGRES_URL`): current rows
//! are stored exactly like a plain `(id text, data jsonb)` table of the same JSON (so a scan
//! costs the same), before and after the in-place upgrade of a first-layout database, and the
//! README's history query against `sst_state_versions` answers as documented; an upgrade that
//! would have to choose between two stored values of one section version refuses instead.
//! Section values are compressed with lz4 where the server has it, in new stores and, for the
//! values written from then on, in stores an earlier version created; a patch of the current
//! row sets each changed section to its batch's last version.

mod common;

use anyhow::{ensure, Context};
use conformance_tests::fixtures::{
    actor, change, create, deal_parties, deal_values, state_id, values,
};
use conformance_tests::{Backend, BackendFactory};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use sst_core::{Actor, ActorKey, CommitBatch, State, StateId, StoreError};
use std::sync::Arc;

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

/// Whether the server can compress with lz4, the compression method declared on `table`'s
/// `column` in the case's schema (`l` lz4, `p` pglz, empty: the server's default) and the
/// server's default.
async fn declared(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    column: &str,
) -> anyhow::Result<(bool, String, String)> {
    let lz4: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_settings \
         WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals))",
    )
    .fetch_one(&mut *conn)
    .await?;
    let default: String = sqlx::query_scalar(
        "SELECT coalesce(current_setting('default_toast_compression', true), 'pglz')",
    )
    .fetch_one(&mut *conn)
    .await?;
    // `attcompression` exists from PostgreSQL 14 on, as lz4 does.
    let method = if lz4 {
        sqlx::query_scalar(
            "SELECT attcompression::text FROM pg_attribute \
             WHERE attrelid = $1::regclass AND attname = $2",
        )
        .bind(format!("\"{schema}\".\"{table}\""))
        .bind(column)
        .fetch_one(&mut *conn)
        .await?
    } else {
        String::new()
    };
    Ok((lz4, method, default))
}

/// How each stored value of section `name` of `id` is compressed (`None`: not compressed), by
/// value, in the order written.
async fn section_values(
    conn: &mut PgConnection,
    schema: &str,
    id: &StateId,
    name: &str,
) -> anyhow::Result<Vec<(serde_json::Value, Option<String>)>> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT value, pg_column_compression(value) FROM \"{schema}\".sst_section \
         WHERE state_id = $1 AND name = $2 ORDER BY ctid"
    )))
    .bind(id.as_str())
    .bind(name)
    .fetch_all(&mut *conn)
    .await?)
}

/// A `common` section of about 20 KB, well over the TOAST threshold (so it is compressed).
fn large_common(n: u64) -> serde_json::Value {
    json!({"address": "12 Rue des Lilas, Lyon", "revision": n, "notes": "lilas ".repeat(3500)})
}

/// Declares `method` on the case's section `value` column, as a DBA would.
async fn declare(conn: &mut PgConnection, schema: &str, method: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER TABLE \"{schema}\".sst_section ALTER COLUMN value SET COMPRESSION {method}"
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// A case in which `alice` created a state whose `common` is `large_common(1)`, with a
/// connection behind the store's back.
struct Large {
    f: common::PgFactory,
    b: Backend,
    alice: Actor,
    key: ActorKey,
    conn: PgConnection,
    /// Whether the server has lz4.
    lz4: bool,
    /// Its `default_toast_compression`.
    default: String,
    id: StateId,
    v1: Arc<State>,
}

/// [`Large`] (`None`: skip); with `earlier`, the section table is first declared as an
/// earlier version created it (no compression method), so the state is written that way.
async fn large(earlier: bool) -> anyhow::Result<Option<Large>> {
    let Some((f, b, alice, key)) = opened().await? else {
        return Ok(None);
    };
    let (url, schema) = f.url_and_schema();
    let mut conn = PgConnection::connect(url).await.context("connecting")?;
    let (lz4, method, default) = declared(&mut conn, schema, "sst_section", "value").await?;
    ensure!(
        method == if lz4 { "l" } else { "" },
        "lz4 {lz4}: section values declared `{method}`"
    );
    if lz4 && earlier {
        declare(&mut conn, schema, "default").await?;
        let (_, method, _) = declared(&mut conn, schema, "sst_section", "value").await?;
        ensure!(method.is_empty(), "{method}");
    }
    let id = state_id("lz4");
    let mut doc = deal_values(100, 0.5);
    doc.insert("common".into(), large_common(1));
    let c = create(&id, deal_parties(), doc, (&alice, &key), 1);
    let v1 = c.state.clone().context("create without state")?;
    b.store.commit(CommitBatch::new(vec![c])).await?;
    Ok(Some(Large {
        f,
        b,
        alice,
        key,
        conn,
        lz4,
        default,
        id,
        v1,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_store_compresses_section_values_with_lz4_and_current_data_like_a_plain_table(
) -> anyhow::Result<()> {
    let Some(mut c) = large(false).await? else {
        return Ok(());
    };
    let (_, schema) = c.f.url_and_schema();
    let (_, current, _) = declared(&mut c.conn, schema, "sst_state", "data").await?;
    ensure!(current.is_empty(), "current data declared `{current}`");
    let stored = section_values(&mut c.conn, schema, &c.id, "common").await?;
    let want = if c.lz4 { "lz4" } else { c.default.as_str() };
    ensure!(
        stored == [(large_common(1), Some(want.to_owned()))],
        "{:?}",
        stored.iter().map(|(_, c)| c).collect::<Vec<_>>()
    );
    let (ours, plain) = storage(&mut c.conn, schema).await?;
    ensure!(ours == plain, "{ours:?} vs plain {plain:?}");
    ensure!(c.b.store.state(&c.id).await?.as_ref() == Some(&*c.v1));

    // A method a DBA declared is theirs: opening again keeps it.
    if c.lz4 {
        declare(&mut c.conn, schema, "pglz").await?;
        c.f.reopen().await?;
        let (_, method, _) = declared(&mut c.conn, schema, "sst_section", "value").await?;
        ensure!(method == "p", "a declared pglz became `{method}`");
    }
    c.conn.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_section_table_compresses_new_values_with_lz4_and_reads_old_ones_back(
) -> anyhow::Result<()> {
    let Some(mut c) = large(true).await? else {
        return Ok(());
    };
    let (_, schema) = c.f.url_and_schema();
    let lz4 = c.lz4;
    let again = c.f.reopen().await?;
    let (_, method, _) = declared(&mut c.conn, schema, "sst_section", "value").await?;
    ensure!(
        method == if lz4 { "l" } else { "" },
        "lz4 {lz4}: the upgraded column is declared `{method}`"
    );
    let x = change(
        &c.v1,
        values([("common", large_common(2))]),
        (&c.alice, &c.key),
        2,
    );
    let v2 = x.state.clone().context("change without state")?;
    again.store.commit(CommitBatch::new(vec![x])).await?;
    // Opening once more changes nothing.
    let third = c.f.reopen().await?;
    let (_, method, _) = declared(&mut c.conn, schema, "sst_section", "value").await?;
    ensure!(method == if lz4 { "l" } else { "" }, "{method}");

    let stored = section_values(&mut c.conn, schema, &c.id, "common").await?;
    let after = if lz4 { "lz4" } else { c.default.as_str() };
    ensure!(
        stored
            == [
                (large_common(1), Some(c.default.clone())),
                (large_common(2), Some(after.to_owned())),
            ],
        "{:?}",
        stored.iter().map(|(_, c)| c).collect::<Vec<_>>()
    );
    ensure!(third.store.state_at(&c.id, 1).await?.as_ref() == Some(&*c.v1));
    ensure!(third.store.state(&c.id).await?.as_ref() == Some(&*v2));
    ensure!(third.store.state_at(&c.id, 2).await?.as_ref() == Some(&*v2));
    c.conn.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_sets_each_changed_section_to_the_last_version_in_its_batch() -> anyhow::Result<()>
{
    let Some(mut c) = large(false).await? else {
        return Ok(());
    };
    // Two versions of `common` in one batch (both sent as section rows), the last one also
    // changing `price`: one section is set from the section rows, the other sent in the patch.
    let x2 = change(
        &c.v1,
        values([("common", large_common(2))]),
        (&c.alice, &c.key),
        2,
    );
    let v2 = x2.state.clone().context("change without state")?;
    let x3 = change(
        &v2,
        values([
            ("common", large_common(3)),
            ("price", json!({"amount": 99, "currency": "EUR"})),
        ]),
        (&c.alice, &c.key),
        3,
    );
    let v3 = x3.state.clone().context("change without state")?;
    c.b.store.commit(CommitBatch::new(vec![x2, x3])).await?;
    ensure!(c.b.store.state(&c.id).await?.as_ref() == Some(&*v3));
    let (_, schema) = c.f.url_and_schema();
    let current: serde_json::Value = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT data FROM \"{schema}\".sst_state WHERE id = $1"
    )))
    .bind(c.id.as_str())
    .fetch_one(&mut c.conn)
    .await?;
    ensure!(current == v3.data(), "the current row is not version 3");
    let (ours, plain) = storage(&mut c.conn, schema).await?;
    ensure!(ours == plain, "{ours:?} vs plain {plain:?}");
    c.conn.close().await?;
    Ok(())
}
