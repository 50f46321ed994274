//! Both commit paths (multi-document transactions and the recoverable protocol), crash
//! recovery at every step of the recoverable protocol, native queries on the documents,
//! section versions stored once with the README's history query, an interrupted first-layout
//! upgrade finished by the next `migrate`, and `migrate` refusing a collection that is not
//! SST's.

mod common;

use std::collections::BTreeMap;

use anyhow::{ensure, Context};
use conformance_tests::fixtures::{actor, change, create, rejected, state_id, values};
use mongodb::bson::{doc, Bson, Document};
use serde_json::json;
use sst_core::{
    CommitBatch, CommitItem, ConflictKind, EventFilter, NodeId, OriginSeq, Parties, RejectReason,
    State, Store, StoreError,
};
use sst_store_mongo::{CrashPoint, MongoStore, TransactionMode};

fn parties() -> Parties {
    Parties::default()
        .with("buyer", "acme/alice")
        .with("inspector", "insp/ivan")
}

fn first_state(item: &CommitItem) -> anyhow::Result<State> {
    item.state.as_deref().cloned().context("item has a state")
}

/// Commit, read back, conflict, atomicity and duplicate replay on one commit path.
async fn exercise(mode: TransactionMode) -> anyhow::Result<()> {
    let Some(f) = common::factory_with(mode).await? else {
        return Ok(());
    };
    let store = f.store().await?;
    ensure!(store.uses_transactions() == (mode == TransactionMode::Always));
    let (alice, key) = actor("acme", "alice");
    let id = state_id("deal");
    let c1 = create(
        &id,
        parties(),
        values([
            ("common", json!({"address": "1 Main St", "rooms": 4})),
            ("inspection", json!({"radon": 5.5})),
        ]),
        (&alice, &key),
        1,
    );
    let v1 = first_state(&c1)?;
    let r = store.commit(CommitBatch::new(vec![c1.clone()])).await?;
    ensure!(r.committed == vec![c1.event.id()] && r.duplicates.is_empty());
    ensure!(
        store.state(&id).await? == Some(v1.clone()),
        "v1 reads back identically"
    );

    let c2 = change(
        &v1,
        values([("inspection", json!({"radon": 3}))]),
        (&alice, &key),
        2,
    );
    let v2 = first_state(&c2)?;
    store.commit(CommitBatch::new(vec![c2.clone()])).await?;
    ensure!(store.state(&id).await? == Some(v2.clone()));
    ensure!(store.state_at(&id, 1).await? == Some(v1.clone()));
    ensure!(store.last_origin_seq(&NodeId::from("acme")).await? == OriginSeq(2));

    // A stale change (built on v1 again) conflicts, and takes its batch-mate down with it.
    let stale = change(
        &v1,
        values([("common", json!({"rooms": 5}))]),
        (&alice, &key),
        4,
    );
    let other = state_id("other");
    let fresh = create(
        &other,
        parties(),
        values([("common", json!({}))]),
        (&alice, &key),
        3,
    );
    let err = store
        .commit(CommitBatch::new(vec![fresh.clone(), stale]))
        .await
        .expect_err("stale base must conflict");
    match err {
        StoreError::Conflict {
            kind,
            expected,
            found,
            ..
        } => ensure!(kind == ConflictKind::StaleVersion && expected == 1 && found == 2),
        other => anyhow::bail!("expected a conflict, got {other}"),
    }
    ensure!(
        store.state(&other).await?.is_none(),
        "nothing of the failed batch is visible"
    );
    ensure!(store.event(&fresh.event.id()).await?.is_none());
    ensure!(store.last_origin_seq(&NodeId::from("acme")).await? == OriginSeq(2));

    // Replaying a recorded event is a duplicate, the rest of the batch commits.
    let rej = rejected(&id, None, (&alice, &key), 5, RejectReason::UnknownState);
    let r = store
        .commit(CommitBatch::new(vec![c2.clone(), rej.clone()]))
        .await?;
    ensure!(r.duplicates == vec![c2.event.id()] && r.committed == vec![rej.event.id()]);
    let events = store
        .events(&EventFilter {
            state_id: Some(id.clone()),
            ..Default::default()
        })
        .await?;
    ensure!(
        events == vec![c1.event, c2.event, rej.event],
        "events in recording order"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoverable_path_commits_conflicts_and_replays() -> anyhow::Result<()> {
    exercise(TransactionMode::Never).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_path_commits_conflicts_and_replays() -> anyhow::Result<()> {
    exercise(TransactionMode::Always).await
}

/// A batch touching two states plus a rejection, crashed at `point`, then reopened.
async fn crash_and_reopen(point: CrashPoint, completes: bool) -> anyhow::Result<()> {
    let Some(f) = common::factory_with(TransactionMode::Never).await? else {
        return Ok(());
    };
    let setup = f.store().await?;
    let (alice, key) = actor("acme", "alice");
    setup.put_actor(&alice).await?;
    let a = state_id("a");
    let b = state_id("b");
    let ca = create(
        &a,
        parties(),
        values([("common", json!({"n": 1}))]),
        (&alice, &key),
        1,
    );
    setup.commit(CommitBatch::new(vec![ca.clone()])).await?;
    let a1 = first_state(&ca)?;

    let a2 = change(
        &a1,
        values([("common", json!({"n": 2}))]),
        (&alice, &key),
        2,
    );
    let a3 = change(
        &first_state(&a2)?,
        values([("common", json!({"n": 3.25}))]),
        (&alice, &key),
        3,
    );
    let cb = create(
        &b,
        parties(),
        values([("price", json!(500000))]),
        (&alice, &key),
        4,
    );
    let rej = rejected(&a, None, (&alice, &key), 5, RejectReason::StateExists);
    let batch = CommitBatch::new(vec![a2.clone(), a3.clone(), cb.clone(), rej.clone()]);

    let mut crashing = f.store().await?;
    crashing.crash_at(Some(point));
    let err = crashing
        .commit(batch.clone())
        .await
        .expect_err("simulated crash");
    ensure!(err.to_string().contains("simulated crash"), "{err}");

    // Before recovery nothing of the unfinished batch is reported as recorded.
    ensure!(setup.event(&rej.event.id()).await?.is_none());
    ensure!(setup.last_origin_seq(&NodeId::from("acme")).await? == OriginSeq(1));
    if point == CrashPoint::AfterHistory {
        // Its history versions are in, the current documents have not moved: not shown, for
        // a state that exists and for a new one alike.
        ensure!(
            setup.state_at(&a, 2).await?.is_none(),
            "in-flight a v2 shown"
        );
        ensure!(
            setup.state_at(&b, 1).await?.is_none(),
            "in-flight b v1 shown"
        );
    }

    let reopened = f.store().await?; // opening recovers
    let expected_a = if completes {
        first_state(&a3)?
    } else {
        a1.clone()
    };
    ensure!(
        reopened.state(&a).await? == Some(expected_a),
        "state a after recovery"
    );
    ensure!(
        reopened.state(&b).await?.is_some() == completes,
        "state b after recovery"
    );
    ensure!(reopened.state_at(&a, 2).await?.is_some() == completes);
    let seq = if completes { 5 } else { 1 };
    ensure!(reopened.last_origin_seq(&NodeId::from("acme")).await? == OriginSeq(seq));
    let all = reopened.events(&EventFilter::default()).await?;
    ensure!(
        all.len() == if completes { 5 } else { 1 },
        "{} events",
        all.len()
    );
    // One log entry for the actor and one per recorded event, in the events' order: the
    // recovery appended those the crash left out.
    let log = reopened.log(0, None).await?;
    ensure!(log.len() == 1 + all.len(), "{} log entries", log.len());
    let logged: Vec<String> = log[1..].iter().map(|e| e.subject.clone()).collect();
    let listed: Vec<String> = all.iter().map(|r| r.id().to_string()).collect();
    ensure!(logged == listed, "events not in log order");
    ensure!(log.last().map(|e| e.head()) == Some(reopened.log_head().await?));
    ensure!(
        reopened.recover().await?.completed.is_empty(),
        "nothing left pending"
    );
    let report = sst_core::verify_store(&reopened, &mut |_, _| {}).await?;
    ensure!(report.is_clean(), "{:?}", report.findings);

    // The same batch again: duplicates if it was completed, committed if it was undone.
    let r = reopened.commit(batch).await?;
    ensure!(r.duplicates.len() == if completes { 4 } else { 0 });
    ensure!(r.committed.len() == if completes { 0 } else { 4 });
    ensure!(reopened.state(&a).await? == Some(first_state(&a3)?));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_recording_events_is_undone_on_reopen() -> anyhow::Result<()> {
    crash_and_reopen(CrashPoint::MidEvents, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_recording_events_is_undone_on_reopen() -> anyhow::Result<()> {
    crash_and_reopen(CrashPoint::AfterEvents, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_commit_point_is_completed_on_reopen() -> anyhow::Result<()> {
    crash_and_reopen(CrashPoint::AfterHistory, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_marking_events_applied_is_completed_on_reopen() -> anyhow::Result<()> {
    crash_and_reopen(CrashPoint::AfterStates, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_pending_batch_is_left_to_its_writer() -> anyhow::Result<()> {
    let Some(f) = common::factory_with(TransactionMode::Never).await? else {
        return Ok(());
    };
    let (alice, key) = actor("acme", "alice");
    let a = state_id("a");
    let ca = create(
        &a,
        parties(),
        values([("common", json!({"n": 1}))]),
        (&alice, &key),
        1,
    );
    let mut crashing = f.store().await?;
    crashing.crash_at(Some(CrashPoint::AfterHistory));
    crashing
        .commit(CommitBatch::new(vec![ca.clone()]))
        .await
        .expect_err("simulated crash");
    // A second process opening with the default grace period must not touch it.
    let patient = MongoStore::open(
        f.config()
            .with_recover_after(std::time::Duration::from_secs(3600)),
    )
    .await?;
    ensure!(patient.state(&a).await?.is_none());
    ensure!(patient.recover().await? == Default::default());
    // Committing the same event meanwhile meets the unfinished batch: its origin is held.
    match patient.commit(CommitBatch::new(vec![ca.clone()])).await {
        Err(StoreError::Conflict { kind, found, .. }) => {
            ensure!(
                kind == ConflictKind::OriginTaken && found == 1,
                "{kind} {found}"
            );
        }
        other => anyhow::bail!("expected an origin conflict, got {other:?}"),
    }
    let eager = f.store().await?;
    ensure!(eager.state(&a).await? == Some(first_state(&ca)?));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_native_bson_queryable_with_ordinary_filters() -> anyhow::Result<()> {
    let Some(f) = common::factory_with(TransactionMode::Auto).await? else {
        return Ok(());
    };
    let store = f.store().await?;
    let (alice, key) = actor("acme", "alice");
    let mut items = Vec::new();
    for (i, radon) in [json!(2), json!(4.5), json!(7)].into_iter().enumerate() {
        let id = state_id("house");
        items.push(create(
            &id,
            parties(),
            values([
                ("inspection", json!({"radon": radon, "notes": ["ok"]})),
                ("price", json!({"amount": 100000 * (i + 1)})),
            ]),
            (&alice, &key),
            i as u64 + 1,
        ));
    }
    store.commit(CommitBatch::new(items.clone())).await?;
    let col = store
        .database()
        .collection::<Document>(&store.collection_names().state);
    col.create_index(
        mongodb::IndexModel::builder()
            .keys(doc! { "data.inspection.radon": 1 })
            .build(),
    )
    .await?;
    let mut cursor = col
        .find(doc! { "data.inspection.radon": { "$gt": 4 } })
        .sort(doc! { "data.inspection.radon": 1 })
        .await?;
    let mut found = BTreeMap::new();
    while cursor.advance().await? {
        let d = cursor.deserialize_current()?;
        let data = d.get_document("data")?;
        let radon = data.get_document("inspection")?.get("radon").cloned();
        found.insert(d.get_str("_id")?.to_owned(), radon);
    }
    ensure!(found.len() == 2, "{found:?}");
    ensure!(
        found.values().any(|r| r == &Some(Bson::Double(4.5))),
        "4.5 stored as a double"
    );
    // A real server returns the Int64 the adapter wrote; the nx-27017 emulator keeps
    // integers as integers but answers small ones as Int32.
    let info = store
        .database()
        .client()
        .database("admin")
        .run_command(doc! { "buildInfo": 1 })
        .await?;
    let emulator = info.get_str("process") == Ok("nx_27017");
    ensure!(
        found
            .values()
            .any(|r| r == &Some(Bson::Int64(7)) || (emulator && r == &Some(Bson::Int32(7)))),
        "7 stored as an integer: {found:?}"
    );

    let mut agg = col
        .aggregate(vec![
            doc! { "$match": { "data.inspection.radon": { "$gte": 0 } } },
            doc! { "$group": { "_id": Bson::Null, "total": { "$sum": "$data.price.amount" }, "n": { "$sum": 1 } } },
        ])
        .await?;
    ensure!(agg.advance().await?, "aggregation returns a row");
    let row = agg.deserialize_current()?;
    let total = match row.get("total") {
        Some(Bson::Int64(t)) => *t,
        Some(Bson::Int32(t)) => i64::from(*t),
        other => anyhow::bail!("total is {other:?}"),
    };
    ensure!(total == 600000, "sum of prices: {total}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_uses_transactions_exactly_on_replica_sets() -> anyhow::Result<()> {
    let Some(f) = common::factory_with(TransactionMode::Auto).await? else {
        return Ok(());
    };
    let store = f.store().await?;
    let client = mongodb::Client::with_uri_str(&f.config().url).await?;
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await?;
    let replicated = hello.contains_key("setName") || hello.get_str("msg") == Ok("isdbgrid");
    ensure!(store.uses_transactions() == replicated);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_foreign_collection_with_a_peer_collection_name() -> anyhow::Result<()> {
    let Some(f) = common::factory_with(TransactionMode::Auto).await? else {
        return Ok(());
    };
    let prefix = format!("t{}_", uuid::Uuid::new_v4().simple());
    let store = MongoStore::open(f.config().with_prefix(&prefix)).await?;
    let names = store.collection_names().clone();
    let foreign = store.database().collection::<Document>(&names.state);
    foreign.insert_one(doc! { "_id": 1, "note": "x" }).await?;

    match store.migrate().await {
        Err(StoreError::Schema {
            backend,
            table,
            detail,
        }) => {
            ensure!(backend == "mongo", "{backend}");
            ensure!(table == names.state, "{table}");
            ensure!(detail.contains("has no `contract_name` field"), "{detail}");
        }
        other => anyhow::bail!("expected a Schema error, got {other:?}"),
    }

    // The foreign document is untouched, and nothing else was created or indexed.
    let mut cursor = foreign.find(doc! {}).await?;
    let mut docs = Vec::new();
    while cursor.advance().await? {
        docs.push(cursor.deserialize_current()?);
    }
    ensure!(docs.len() == 1, "{docs:?}");
    ensure!(
        matches!(docs[0].get("_id"), Some(Bson::Int32(1) | Bson::Int64(1)))
            && docs[0].get_str("note") == Ok("x")
            && docs[0].len() == 2,
        "{docs:?}"
    );
    let mut ours: Vec<String> = store
        .database()
        .list_collection_names()
        .await?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    ours.sort();
    ensure!(ours == vec![names.state.clone()], "{ours:?}");
    let indexes = foreign.list_index_names().await?;
    ensure!(indexes == vec!["_id_".to_owned()], "{indexes:?}");

    // SST's own collections migrate again without complaint.
    let own = f.store().await?;
    own.migrate().await?;
    Ok(())
}

/// The README's history query: every version ever whose `inspection.radon` is above 4, from
/// the section versions joined to the history versions that disclose them (runs on servers
/// without views too).
fn radon_history_query(names: &sst_store_mongo::CollectionNames) -> Vec<Document> {
    vec![
        doc! { "$match": { "name": "inspection", "value.radon": { "$gt": 4 } } },
        doc! { "$lookup": {
            "from": names.history.as_str(),
            "localField": "state_id",
            "foreignField": "id",
            "as": "v",
        } },
        doc! { "$unwind": "$v" },
        doc! { "$match": { "$expr": { "$eq": ["$v.seals.inspection.hash", "$hash"] } } },
        doc! { "$project": { "_id": 0, "id": "$state_id", "version": "$v.version", "radon": "$value.radon" } },
    ]
}

/// Only changed sections are stored again, the current document holds nothing but the id,
/// contract, version and data, and the history query finds every version holding a match.
async fn section_versions(mode: TransactionMode) -> anyhow::Result<()> {
    let Some(f) = common::factory_with(mode).await? else {
        return Ok(());
    };
    let store = f.store().await?;
    let (alice, key) = actor("acme", "alice");
    let id = state_id("house");
    let signer = (&alice, &key);
    let c = create(
        &id,
        parties(),
        values([
            ("inspection", json!({"radon": 2})),
            ("price", json!({"amount": 100})),
        ]),
        signer,
        1,
    );
    let mut versions = vec![first_state(&c)?];
    let mut items = vec![c];
    let edits = [
        values([("inspection", json!({"radon": 5}))]),
        values([("price", json!({"amount": 200}))]),
        values([("inspection", json!({"radon": 3}))]),
    ];
    for (n, edit) in edits.into_iter().enumerate() {
        let prev = versions.last().context("a version")?;
        let x = change(prev, edit, signer, n as u64 + 2);
        versions.push(first_state(&x)?);
        items.push(x);
    }
    for item in items {
        store.commit(CommitBatch::new(vec![item])).await?;
    }
    let names = store.collection_names().clone();
    let db = store.database();
    let sections = db
        .collection::<Document>(&names.section)
        .count_documents(doc! { "state_id": id.as_str() })
        .await?;
    ensure!(
        sections == 5,
        "2 sections created and 3 changed, {sections} stored"
    );
    let current = db
        .collection::<Document>(&names.state)
        .find_one(doc! { "_id": id.as_str() })
        .await?
        .context("current document")?;
    let keys: Vec<&str> = current.keys().map(String::as_str).collect();
    ensure!(
        keys == [
            "_id",
            "contract_name",
            "contract_version",
            "version",
            "data"
        ],
        "current document fields: {keys:?}"
    );
    let latest = versions.last().context("a version")?;
    ensure!(store.state(&id).await?.as_ref() == Some(latest));
    for want in &versions {
        ensure!(store.state_at(&id, want.version).await?.as_ref() == Some(want));
    }
    let mut cursor = db
        .collection::<Document>(&names.section)
        .aggregate(radon_history_query(&names))
        .await?;
    let mut found = Vec::new();
    while cursor.advance().await? {
        let d = cursor.deserialize_current()?;
        found.push(match d.get("version") {
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Int32(v)) => i64::from(*v),
            other => anyhow::bail!("version is {other:?}"),
        });
    }
    found.sort_unstable();
    ensure!(found == [2, 3], "versions with radon > 4: {found:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoverable_path_stores_section_versions_once() -> anyhow::Result<()> {
    section_versions(TransactionMode::Never).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_path_stores_section_versions_once() -> anyhow::Result<()> {
    section_versions(TransactionMode::Always).await
}

/// Two versions of a state (version 2 changes `price` only, so both hold one `inspection`
/// section version) and a state redacted to `price`, committed and then rewritten into the
/// first layout; the factory, the states, and a store opened on it without `migrate`.
struct FirstLayout {
    /// Held so that its database is dropped only when the test ends.
    _factory: common::MongoFactory,
    id: sst_core::StateId,
    other: sst_core::StateId,
    v1: State,
    v2: State,
    r1: State,
    store: MongoStore,
}

async fn first_layout(label: &str) -> anyhow::Result<Option<FirstLayout>> {
    use conformance_tests::BackendFactory;
    let Some(f) = common::factory_with(TransactionMode::Auto).await? else {
        return Ok(None);
    };
    let b = f.open().await?;
    let (alice, key) = actor("acme", "alice");
    let signer = (&alice, &key);
    b.store.put_actor(&alice).await?;
    let id = state_id(label);
    let c = create(
        &id,
        parties(),
        values([("inspection", json!({"radon": 6})), ("price", json!(1))]),
        signer,
        1,
    );
    let v1 = first_state(&c)?;
    let x = change(&v1, values([("price", json!(2))]), signer, 2);
    let v2 = first_state(&x)?;
    let other = state_id(&format!("{label}-redacted"));
    let r = conformance_tests::fixtures::create_redacted(
        &other,
        parties(),
        values([("inspection", json!({"radon": 1})), ("price", json!(3))]),
        signer,
        3,
        &["price"],
    );
    let r1 = first_state(&r)?;
    b.store.commit(CommitBatch::new(vec![c, x, r])).await?;
    ensure!(b.raw.downgrade_to_first_layout().await?, "downgraded");
    let store = MongoStore::open(f.config()).await?;
    Ok(Some(FirstLayout {
        _factory: f,
        id,
        other,
        v1,
        v2,
        r1,
        store,
    }))
}

/// A first-layout upgrade that stopped midway (one history document already moved, another
/// with its section versions in but its `data` still there, current documents not yet
/// stripped) is finished by the next `migrate`: every version, the redacted state and the
/// current documents read back, and the store verifies clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_interrupted_midway_is_finished_by_the_next_migrate() -> anyhow::Result<()> {
    let Some(FirstLayout {
        id,
        other,
        v1,
        v2,
        r1,
        store,
        _factory: _db,
    }) = first_layout("midway").await?
    else {
        return Ok(());
    };
    // The interrupted upgrade, by hand: version 1 moved (sections in, data gone), version 2
    // with its sections in and data still there.
    let names = store.collection_names().clone();
    let db = store.database();
    let history = db.collection::<Document>(&names.history);
    let section = db.collection::<Document>(&names.section);
    for v in [1_i64, 2] {
        let h = history
            .find_one(doc! { "id": id.as_str(), "version": v })
            .await?
            .context("first-layout version")?;
        let data = h.get_document("data")?;
        for (name, seal) in h.get_document("seals")? {
            let seal = seal.as_document().context("seal")?;
            if seal.contains_key("salt") {
                // Version 2 shares version 1's inspection: one section version, kept once.
                let key =
                    doc! { "state_id": id.as_str(), "name": name, "hash": seal.get_str("hash")? };
                let value = data.get(name).cloned().context("disclosed value")?;
                section
                    .update_one(key, doc! { "$setOnInsert": { "value": value } })
                    .upsert(true)
                    .await?;
            }
        }
        if v == 1 {
            history
                .update_one(
                    doc! { "_id": h.get("_id").cloned() },
                    doc! { "$unset": { "data": "" } },
                )
                .await?;
        }
    }

    store.migrate().await?;
    store.migrate().await?;
    ensure!(store.state_at(&id, 1).await? == Some(v1));
    ensure!(store.state_at(&id, 2).await? == Some(v2.clone()));
    ensure!(store.state(&id).await? == Some(v2));
    ensure!(store.state(&other).await? == Some(r1));
    let left = history
        .count_documents(doc! { "data": { "$exists": true } })
        .await?;
    ensure!(left == 0, "{left} history documents still carry data");
    let report = sst_core::verify_store(&store, &mut |_, _| {}).await?;
    ensure!(
        report.is_clean() && report.versions == 3 && report.events == 3,
        "not clean after the finished upgrade: {report:?}"
    );
    Ok(())
}

/// A first-layout history in which two versions hold one section version (same hash) with
/// different values is not upgraded: `migrate` reports it before changing anything, and
/// upgrades once the committed value is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_refuses_one_section_version_held_with_two_values() -> anyhow::Result<()> {
    let Some(FirstLayout {
        id,
        v1,
        v2,
        store,
        _factory: _db,
        ..
    }) = first_layout("disagree").await?
    else {
        return Ok(());
    };
    let history = store
        .database()
        .collection::<Document>(&store.collection_names().history);
    let v2_key = doc! { "id": id.as_str(), "version": 2_i64 };
    history
        .update_one(
            v2_key.clone(),
            doc! { "$set": { "data.inspection": { "radon": 1 } } },
        )
        .await?;
    match store.migrate().await {
        Err(e @ StoreError::Integrity { .. }) => ensure!(
            e.to_string()
                .contains("versions 1 to 2 hold section `inspection`"),
            "{e}"
        ),
        other => anyhow::bail!("expected an integrity error, got {other:?}"),
    }
    let untouched = history
        .count_documents(doc! { "id": id.as_str(), "data": { "$exists": true } })
        .await?;
    ensure!(
        untouched == 2,
        "{untouched} first-layout versions left of 2"
    );

    history
        .update_one(
            v2_key,
            doc! { "$set": { "data.inspection": { "radon": 6 } } },
        )
        .await?;
    store.migrate().await?;
    ensure!(store.state_at(&id, 1).await? == Some(v1));
    ensure!(store.state(&id).await? == Some(v2));
    Ok(())
}
