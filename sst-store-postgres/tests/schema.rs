//! Opening what is not ours on a real PostgreSQL server (`SST_POSTGRES_URL`): `migrate`
//! refuses a foreign table that carries a peer table's name and changes nothing.

mod common;

use anyhow::{bail, ensure, Context};
use conformance_tests::BackendFactory;
use sqlx::{AssertSqlSafe, PgPool};
use sst_core::StoreError;

/// Someone else's `sst_state` in the case's schema, with a row of theirs.
const FOREIGN_STATE: &str = r#"
CREATE SCHEMA IF NOT EXISTS "{schema}";
CREATE TABLE "{schema}".sst_state (id int, note text);
INSERT INTO "{schema}".sst_state VALUES (1, 'ours, not SST''s');
"#;

/// The same for `sst_refusal`, the newest peer table.
const FOREIGN_REFUSAL: &str = r#"
CREATE SCHEMA IF NOT EXISTS "{schema}";
CREATE TABLE "{schema}".sst_refusal (id int, note text);
INSERT INTO "{schema}".sst_refusal VALUES (1, 'ours, not SST''s');
"#;

/// Someone else's `sst_log`, the log table SST now keeps.
const FOREIGN_LOG: &str = r#"
CREATE SCHEMA IF NOT EXISTS "{schema}";
CREATE TABLE "{schema}".sst_log (id int, note text);
INSERT INTO "{schema}".sst_log VALUES (1, 'ours, not SST''s');
"#;

/// An `sst_event` as SST created it before events carried a sequencing receipt, with a row.
const OLD_LAYOUT_EVENT: &str = r#"
CREATE SCHEMA IF NOT EXISTS "{schema}";
CREATE TABLE "{schema}".sst_event (
    pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE, state_id text NOT NULL, kind text NOT NULL,
    contract_name text NOT NULL, contract_version integer NOT NULL, actor text NOT NULL,
    origin_node text NOT NULL, origin_seq bigint NOT NULL, outcome text NOT NULL,
    reason text, reason_detail jsonb, new_version bigint, new_root text,
    event jsonb NOT NULL, disclosures jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now());
INSERT INTO "{schema}".sst_event (id, state_id, kind, contract_name, contract_version, actor,
    origin_node, origin_seq, outcome, event, disclosures)
VALUES ('e1', 's1', 'create', 'c', 1, 'a', 'n', 1, 'applied', '{}', '{}');
"#;

/// `migrate` on a schema prepared with `ddl`, holding a foreign `table`: refused, naming the
/// first column SST needs (`missing`), and nothing changed.
async fn foreign_table_is_refused(
    ddl: &'static str,
    table: &str,
    missing: &str,
) -> anyhow::Result<()> {
    let row = ("1", "ours, not SST's");
    refused_unchanged(ddl, table, missing, "SELECT id::text, note", row).await
}

/// `migrate` on a schema prepared with `ddl`: refused with a Schema error naming `table` and
/// its first missing column `missing`; `{select} FROM table` still reads the one `row` `ddl`
/// put there (two text columns) and no other table was created.
async fn refused_unchanged(
    ddl: &'static str,
    table: &str,
    missing: &str,
    select: &str,
    row: (&str, &str),
) -> anyhow::Result<()> {
    let Some(f) = common::factory(Some(ddl)).await? else {
        return Ok(());
    };
    let refused = match f.open().await {
        Ok(_) => bail!("migrate accepted a foreign {table}"),
        Err(e) => e,
    };
    match refused.downcast_ref::<StoreError>() {
        Some(StoreError::Schema {
            backend,
            table: named,
            detail,
        }) => {
            ensure!(*backend == "postgres" && named == table, "{refused}");
            ensure!(detail.contains(&format!("`{missing}`")), "{detail}");
        }
        _ => bail!("expected a Schema error, got {refused:?}"),
    }

    let (url, schema) = f.url_and_schema();
    let pool = PgPool::connect(url).await.context("connecting")?;
    let rows: Vec<(String, String)> =
        sqlx::query_as(AssertSqlSafe(format!("{select} FROM \"{schema}\".{table}")))
            .fetch_all(&pool)
            .await?;
    ensure!(rows == [(row.0.to_owned(), row.1.to_owned())], "{rows:?}");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(schema)
    .fetch_all(&pool)
    .await?;
    ensure!(
        tables == [table],
        "a refused migrate creates no other peer table: {tables:?}"
    );
    pool.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_foreign_table_with_a_peer_table_name() -> anyhow::Result<()> {
    foreign_table_is_refused(FOREIGN_STATE, "sst_state", "contract_name").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_foreign_refusal_table() -> anyhow::Result<()> {
    foreign_table_is_refused(FOREIGN_REFUSAL, "sst_refusal", "event_id").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_foreign_log_table() -> anyhow::Result<()> {
    foreign_table_is_refused(FOREIGN_LOG, "sst_log", "pos").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_an_event_table_without_the_receipt_column() -> anyhow::Result<()> {
    let row = ("e1", "s1");
    refused_unchanged(
        OLD_LAYOUT_EVENT,
        "sst_event",
        "receipt",
        "SELECT id, state_id",
        row,
    )
    .await
}

/// An `sst_event` as SST created it before events carried business events (receipt, no
/// `business_events`, no `endorsements`).
const LAYOUT_BEFORE_BUSINESS_EVENTS: &str = r#"
CREATE SCHEMA IF NOT EXISTS "{schema}";
CREATE TABLE "{schema}".sst_event (
    pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE, state_id text NOT NULL, kind text NOT NULL,
    contract_name text NOT NULL, contract_version integer NOT NULL, actor text NOT NULL,
    origin_node text NOT NULL, origin_seq bigint NOT NULL, outcome text NOT NULL,
    reason text, reason_detail jsonb, new_version bigint, new_root text,
    event jsonb NOT NULL, disclosures jsonb NOT NULL, receipt jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sst_event_origin_key UNIQUE (origin_node, origin_seq));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_adds_business_events_and_endorsements_to_an_event_table_of_the_layout_before_them(
) -> anyhow::Result<()> {
    let Some(f) = common::factory(Some(LAYOUT_BEFORE_BUSINESS_EVENTS)).await? else {
        return Ok(());
    };
    let b = f.open().await?;
    let (alice, key) = conformance_tests::fixtures::actor("acme", "alice");
    b.store.put_actor(&alice).await?;
    let id = conformance_tests::fixtures::state_id("upgraded");
    let created = conformance_tests::fixtures::create(
        &id,
        conformance_tests::fixtures::deal_parties(),
        conformance_tests::fixtures::deal_values(1, 0.5),
        (&alice, &key),
        1,
    );
    let event = created.event.clone();
    b.store
        .commit(sst_core::CommitBatch::new(vec![created]))
        .await?;
    ensure!(
        b.store.event(&event.id()).await? == Some(event),
        "event not read back"
    );
    let (url, schema) = f.url_and_schema();
    let pool = PgPool::connect(url).await.context("connecting")?;
    let added: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'sst_event' \
           AND column_name IN ('business_events', 'endorsements') ORDER BY column_name",
    )
    .bind(schema)
    .fetch_all(&pool)
    .await?;
    ensure!(
        added
            == [
                ("business_events".to_owned(), "jsonb".to_owned()),
                ("endorsements".to_owned(), "jsonb".to_owned())
            ],
        "migrate added {added:?}"
    );
    pool.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_accepts_its_own_tables_again() -> anyhow::Result<()> {
    let Some(f) = common::factory(None).await? else {
        return Ok(());
    };
    f.open().await?;
    f.reopen().await?;
    Ok(())
}
