//! The section-version layout on disk: an update stores only the section versions that
//! changed and patches the current row's data in place (the whole document for a name a JSON
//! path cannot quote, or when the changed sections are most of it), and the in-place upgrade
//! of the first layout is all-or-nothing and keeps the user's own indexes.

mod first_layout;
mod temp_db;

use anyhow::{ensure, Context};
use conformance_tests::fixtures::{actor, change, create, deal_parties, deal_values, values};
use rusqlite::Connection;
use serde_json::{json, Value};
use sst_core::{
    verify_store, Actor, ActorKey, CommitBatch, CommitItem, State, StateId, Store, StoreError,
};
use sst_store_sqlite::{SqliteConfig, SqliteStore, TableNames};
use temp_db::TempDb;

fn state_of(item: &CommitItem) -> anyhow::Result<State> {
    Ok(item.state.as_deref().context("item has no state")?.clone())
}

fn count(c: &Connection, sql: &str) -> anyhow::Result<i64> {
    Ok(c.query_row(sql, [], |r| r.get(0))?)
}

/// The top-level keys of the current row's data document of `id`, in stored order.
fn current_keys(c: &Connection, id: &str) -> anyhow::Result<Vec<String>> {
    let mut s =
        c.prepare("SELECT j.key FROM sst_state AS s, json_each(s.data) AS j WHERE s.id = ?1")?;
    let keys = s
        .query_map([id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(keys)
}

/// A fresh migrated store in a temporary file named after `name`, with alice (acme)
/// registered.
async fn store_with_alice(name: &str) -> anyhow::Result<(TempDb, SqliteStore, Actor, ActorKey)> {
    let db = TempDb::new(name);
    let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
    let (alice, key) = actor("acme", "alice");
    store.put_actor(&alice).await?;
    Ok((db, store, alice, key))
}

#[tokio::test]
async fn an_update_stores_only_the_changed_sections_and_patches_the_current_row(
) -> anyhow::Result<()> {
    let (db, store, alice, key) = store_with_alice("layout").await?;
    let id = StateId::from("deal-layout");
    // A create's document is serialised ahead of the writer, names escaped as JSON keys.
    let mut created = deal_values(100, 1.5);
    created.insert("note \"x\" \\".into(), json!("é\n"));
    let c = create(&id, deal_parties(), created, (&alice, &key), 1);
    let mut versions = vec![state_of(&c)?];
    store.commit(CommitBatch::new(vec![c])).await?;
    let edits = [
        values([("price", json!({"amount": 101, "currency": "EUR"}))]),
        // A new section that sorts first: patched in, it lands last in the stored document.
        values([("annex", json!({"pages": 3}))]),
        // A name `$."…"` cannot quote: the whole document is written, in name order.
        values([("say \"hi\" \\ there", json!("hello"))]),
        values([("price", json!({"amount": 102, "currency": "EUR"}))]),
    ];
    let conn = Connection::open(&db.0)?;
    let sections = "SELECT count(*) FROM sst_section";
    ensure!(
        count(&conn, sections)? == 4,
        "a create stores each section once"
    );
    let mut keys = Vec::new();
    for (n, edit) in edits.into_iter().enumerate() {
        let prev = versions.last().context("no version")?;
        let item = change(prev, edit, (&alice, &key), n as u64 + 2);
        versions.push(state_of(&item)?);
        store.commit(CommitBatch::new(vec![item])).await?;
        ensure!(
            count(&conn, sections)? == 5 + n as i64,
            "version {} stored more than its one changed section",
            n + 2
        );
        keys.push(current_keys(&conn, id.as_str())?);
    }
    ensure!(
        keys[1].last().map(String::as_str) == Some("annex"),
        "the new section was not patched into the current row: {:?}",
        keys[1]
    );
    ensure!(
        keys[2].first().map(String::as_str) == Some("annex"),
        "an unquotable name did not write the whole document: {:?}",
        keys[2]
    );
    let latest = versions.last().context("no version")?;
    let read = store.state(&id).await?.context("state missing")?;
    ensure!(read.data() == latest.data() && read.root == latest.root);
    for want in &versions {
        let at = store
            .state_at(&id, want.version)
            .await?
            .context("version missing")?;
        ensure!(at.data() == want.data() && at.root == want.root);
        let text: String = conn.query_row(
            "SELECT data FROM sst_state_versions WHERE id = ?1 AND version = ?2",
            rusqlite::params![id.as_str(), want.version as i64],
            |r| r.get(0),
        )?;
        ensure!(serde_json::from_str::<Value>(&text)? == want.data());
    }
    let report = verify_store(&store, &mut |_, _| {}).await?;
    ensure!(report.is_clean() && report.versions == 5, "{report:?}");
    Ok(())
}

/// The stored type of the current row's data of `id`, whether it is JSON text as RFC 8259
/// has it, and the text.
fn current_data(c: &Connection, id: &str) -> anyhow::Result<(String, bool, String)> {
    Ok(c.query_row(
        "SELECT typeof(data), json_valid(data), CAST(data AS TEXT) FROM sst_state WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

/// An update whose changed sections are most of the document writes the whole document, the
/// same text as a whole write; a small one is patched with `json_set`, and the row's `data`
/// stays JSON text either way.
#[tokio::test]
async fn an_update_setting_most_of_the_document_writes_it_whole_and_a_patch_stays_text(
) -> anyhow::Result<()> {
    let (db, store, alice, key) = store_with_alice("layout").await?;
    let id = StateId::from("deal-large");
    let rooms = |n: usize| -> Value {
        let list: Vec<Value> = (0..2_000)
            .map(|i| json!({"room": i, "name": format!("room {i} \"é\""), "n": n}))
            .collect();
        json!({"address": "12 Rue des Lilas, Lyon", "rooms": list})
    };
    let mut first = deal_values(100, 1.5);
    first.insert("common".into(), rooms(0));
    let c = create(&id, deal_parties(), first, (&alice, &key), 1);
    let mut versions = vec![state_of(&c)?];
    store.commit(CommitBatch::new(vec![c])).await?;
    let conn = Connection::open(&db.0)?;
    let edits = [
        // Small beside the rest: patched in with `json_set`, so it lands last.
        values([("annex", json!({"pages": 3}))]),
        // Most of the document: written whole, in name order.
        values([("common", rooms(1))]),
        // Small again: patched, and the document stays JSON text.
        values([("price", json!({"amount": 101, "currency": "EUR"}))]),
    ];
    let mut keys = Vec::new();
    for (n, edit) in edits.into_iter().enumerate() {
        let prev = versions.last().context("no version")?;
        let item = change(prev, edit, (&alice, &key), n as u64 + 2);
        let want = state_of(&item)?;
        store.commit(CommitBatch::new(vec![item])).await?;
        let (kind, valid, text) = current_data(&conn, id.as_str())?;
        ensure!(
            kind == "text" && valid,
            "version {}: {kind}, valid {valid}",
            want.version
        );
        ensure!(serde_json::from_str::<Value>(&text)? == want.data());
        keys.push(current_keys(&conn, id.as_str())?);
        if n == 1 {
            // The very text the whole-document path writes: each section's stored text, in
            // name order (whatever key order serde_json keeps in the build).
            let mut members = Vec::new();
            for (name, section) in &want.sections {
                let row: String = conn.query_row(
                    "SELECT value FROM sst_section WHERE state_id = ?1 AND name = ?2 AND hash = ?3",
                    rusqlite::params![id.as_str(), name, section.hash.to_string()],
                    |r| r.get(0),
                )?;
                members.push(format!("{}:{row}", serde_json::to_string(name)?));
            }
            ensure!(text == format!("{{{}}}", members.join(",")));
        }
        versions.push(want);
    }
    ensure!(
        keys[0].last().map(String::as_str) == Some("annex"),
        "the small new section was not patched in: {:?}",
        keys[0]
    );
    ensure!(
        keys[1].first().map(String::as_str) == Some("annex"),
        "the large section's update did not write the whole document: {:?}",
        keys[1]
    );
    let read = store.state(&id).await?.context("state missing")?;
    let latest = versions.last().context("no version")?;
    ensure!(read.data() == latest.data() && read.root == latest.root);
    let report = verify_store(&store, &mut |_, _| {}).await?;
    ensure!(report.is_clean() && report.versions == 4, "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_failed_upgrade_changes_nothing_and_the_repaired_one_keeps_the_users_index(
) -> anyhow::Result<()> {
    let db = TempDb::new("layout");
    let (alice, key) = actor("acme", "alice");
    let id = StateId::from("deal-upgrade");
    let v1 = {
        let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
        store.put_actor(&alice).await?;
        let c = create(
            &id,
            deal_parties(),
            deal_values(250, 4.6),
            (&alice, &key),
            1,
        );
        let v1 = state_of(&c)?;
        store.commit(CommitBatch::new(vec![c])).await?;
        v1
    };
    let mut conn = Connection::open(&db.0)?;
    first_layout::downgrade(&mut conn, &TableNames::default())?;
    conn.execute_batch(
        "CREATE INDEX user_radon ON sst_state (data ->> '$.inspection.radon');
         UPDATE sst_state_history SET seals = '[]';",
    )?;
    let store = SqliteStore::open(SqliteConfig::file(&db.0)).await?;
    match store.migrate().await {
        Err(StoreError::Integrity { what, .. }) => {
            ensure!(what == "state deal-upgrade version 1", "{what}")
        }
        other => anyhow::bail!("expected an Integrity error, got {other:?}"),
    }
    let first_layout = "SELECT count(*) FROM pragma_table_info('sst_state_history') \
                        WHERE name = 'data'";
    ensure!(
        count(&conn, first_layout)? == 1,
        "history lost its data column"
    );
    ensure!(
        count(
            &conn,
            "SELECT count(*) FROM sqlite_master WHERE name IN ('sst_section', 'sst_state_versions')"
        )? == 0,
        "a failed upgrade left the new layout's objects behind"
    );
    let seals = serde_json::to_string(&v1.seals())?;
    conn.execute("UPDATE sst_state_history SET seals = ?1", [seals])?;
    store.migrate().await?;
    ensure!(
        count(&conn, first_layout)? == 0,
        "history kept its data column"
    );
    let read = store.state_at(&id, 1).await?.context("version lost")?;
    ensure!(read.data() == v1.data() && read.root == v1.root);
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT id FROM sst_state WHERE data ->> '$.inspection.radon' > 4",
        )?
        .query_map([], |r| r.get::<_, String>(3))?
        .collect::<Result<_, _>>()?;
    ensure!(
        plan.iter().any(|p| p.contains("USING INDEX user_radon")),
        "the user's index did not survive the upgrade: {plan:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_upgrade_refuses_a_section_version_whose_copies_differ() -> anyhow::Result<()> {
    let db = TempDb::new("layout");
    let (alice, key) = actor("acme", "alice");
    let id = StateId::from("deal-edited");
    {
        let store = SqliteStore::open_migrated(SqliteConfig::file(&db.0)).await?;
        store.put_actor(&alice).await?;
        let c = create(
            &id,
            deal_parties(),
            deal_values(250, 4.6),
            (&alice, &key),
            1,
        );
        let v1 = state_of(&c)?;
        let x = change(
            &v1,
            values([("inspection", json!({"radon": 3.0, "passed": true}))]),
            (&alice, &key),
            2,
        );
        store.commit(CommitBatch::new(vec![c, x])).await?;
    }
    let mut conn = Connection::open(&db.0)?;
    first_layout::downgrade(&mut conn, &TableNames::default())?;
    // `price` is one section version held by versions 1 and 2; edit version 2's copy only.
    conn.execute_batch(
        "UPDATE sst_state_history SET data = json_set(data, '$.price.amount', 1)
         WHERE version = 2;",
    )?;
    let store = SqliteStore::open(SqliteConfig::file(&db.0)).await?;
    match store.migrate().await {
        Err(StoreError::Integrity { what, source }) => {
            ensure!(what == "state deal-edited version 2", "{what}");
            ensure!(source.to_string().contains("section `price`"), "{source}");
        }
        other => anyhow::bail!("expected an Integrity error, got {other:?}"),
    }
    ensure!(
        count(
            &conn,
            "SELECT count(*) FROM pragma_table_info('sst_state_history') WHERE name = 'data'"
        )? == 1,
        "the refused upgrade changed the history table"
    );
    Ok(())
}

/// A changed section's row holds the canonical text (which the sealing kept) when that reads
/// back as the same value, and its own serialisation when it would not (a double with an
/// integral value, `2.0`, which canonical JSON prints as `2`): every version reads back equal.
#[tokio::test]
async fn a_section_row_holds_canonical_text_only_where_it_reads_back_equal() -> anyhow::Result<()> {
    let (db, store, alice, key) = store_with_alice("layout-canonical").await?;
    let id = StateId::from("deal-canonical");
    let c = create(
        &id,
        deal_parties(),
        deal_values(100, 1.5),
        (&alice, &key),
        1,
    );
    let mut versions = vec![state_of(&c)?];
    store.commit(CommitBatch::new(vec![c])).await?;
    let integers = json!({"amount": 7, "currency": "EUR", "z": [3, 1], "a": {"y": 1, "b": 2}});
    let doubles = json!({"amount": 2.0, "currency": "EUR"});
    let conn = Connection::open(&db.0)?;
    let mut rows = Vec::new();
    for (n, value) in [integers.clone(), doubles.clone()].into_iter().enumerate() {
        let prev = versions.last().context("no version")?;
        let item = change(
            prev,
            values([("price", value)]),
            (&alice, &key),
            n as u64 + 2,
        );
        let state = state_of(&item)?;
        let hash = state.sections["price"].hash.to_string();
        versions.push(state);
        store.commit(CommitBatch::new(vec![item])).await?;
        let text: String = conn.query_row(
            "SELECT value FROM sst_section WHERE name = 'price' AND hash = ?1",
            [hash],
            |r| r.get(0),
        )?;
        rows.push(text);
    }
    ensure!(
        rows[0] == sst_core::canonical::to_string(&integers),
        "integers: the row is not the canonical text: {}",
        rows[0]
    );
    ensure!(
        serde_json::from_str::<Value>(&rows[1])? == doubles,
        "2.0 did not read back as a double: {}",
        rows[1]
    );
    for want in &versions {
        let at = store
            .state_at(&id, want.version)
            .await?
            .context("version missing")?;
        ensure!(at.data() == want.data() && at.root == want.root);
    }
    let read = store.state(&id).await?.context("state missing")?;
    ensure!(
        read.data()["price"]["amount"] == json!(2.0) && read.data()["price"]["amount"].is_f64()
    );
    let report = verify_store(&store, &mut |_, _| {}).await?;
    ensure!(report.is_clean() && report.versions == 3, "{report:?}");
    Ok(())
}
