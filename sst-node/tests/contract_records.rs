//! Contracts are enforced from the code a node holds, never from a stored descriptor: a
//! contract record edited in the database (its policy, its identity, its deployer) makes the
//! node refuse to start, naming the contract and what does not verify, and the forbidden
//! change the edit would have allowed is never applied.

mod common;

use std::path::Path;

use anyhow::{ensure, Context};
use common::{actor, create_deal, sqlite_store, values, who, Cluster, TempDir, ROLES};
use serde_json::json;
use sst_core::{ActorKey, ContractRecord, ContractRef, HashAlg, RejectReason};
use sst_node::{Intent, Node, NodeError, RecordProblem};

fn deal() -> ContractRef {
    ContractRef::new("real-estate-deal", 1)
}

/// Runs `sql` on a node's SQLite file, behind SST's back.
fn raw(path: &Path, sql: &str, params: impl rusqlite::Params) -> anyhow::Result<usize> {
    let conn = rusqlite::Connection::open(path)?;
    Ok(conn.execute(sql, params)?)
}

/// The deal's contract record as stored in the file.
fn stored_record(path: &Path) -> anyhow::Result<ContractRecord> {
    let conn = rusqlite::Connection::open(path)?;
    let text: String = conn.query_row(
        "SELECT record FROM sst_contract WHERE name = 'real-estate-deal' AND version = 1",
        [],
        |r| r.get(0),
    )?;
    Ok(serde_json::from_str(&text)?)
}

/// Lets `role` write the deal's price in `record`'s descriptor.
fn let_write_price(record: &mut ContractRecord, role: &str) -> anyhow::Result<()> {
    record
        .descriptor
        .policy
        .sections
        .get_mut("price")
        .context("price section")?
        .write
        .insert(role.into());
    Ok(())
}

/// Writes `record` over the deal's row (record, identity and deployer columns).
fn write_record(path: &Path, record: &ContractRecord) -> anyhow::Result<()> {
    let n = raw(
        path,
        "UPDATE sst_contract SET record = ?1, identity = ?2, deployer = ?3 \
         WHERE name = 'real-estate-deal' AND version = 1",
        (
            serde_json::to_string(record)?,
            record.identity.to_string(),
            record.deployer.0.clone(),
        ),
    )?;
    ensure!(n == 1, "no contract row updated");
    Ok(())
}

/// Four SQLite nodes with a deal, then every node stopped: the seller's (home) file path.
async fn network_then_stop(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let c = Cluster::sqlite(dir).await?;
    create_deal(&c, "deal-t").await?;
    drop(c);
    Ok(dir.join("seller.db"))
}

/// Restarts the seller on its file; on success the inspector (restarted too) tries the
/// forbidden price change the tampered policy would allow.
async fn restart_seller(path: &Path) -> Result<Node, NodeError> {
    common::restart_on_file("seller", path).await
}

/// No event in the file applied a price change by the inspector.
fn no_forbidden_change(path: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM sst_event WHERE actor = ?1 AND outcome = 'applied'",
        [who("inspector").0],
        |r| r.get(0),
    )?;
    ensure!(n == 0, "{n} change(s) by the inspector applied");
    let amount: i64 = conn.query_row(
        "SELECT data ->> '$.price.amount' FROM sst_state WHERE id = 'deal-t'",
        [],
        |r| r.get(0),
    )?;
    ensure!(amount == 500_000, "price is {amount}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_policy_in_the_contract_table_refuses_start() -> anyhow::Result<()> {
    let dir = TempDir::new("sst-contract-policy")?;
    let path = network_then_stop(&dir.0).await?;
    // Everyone may write the price: the identity column and signature are left as they were.
    let n = raw(
        &path,
        "UPDATE sst_contract SET record = json_set(record, \
         '$.descriptor.policy.sections.price.write', json('[\"*\"]')) \
         WHERE name = 'real-estate-deal' AND version = 1",
        [],
    )?;
    ensure!(n == 1, "no row tampered");
    let err = restart_seller(&path)
        .await
        .err()
        .context("the node started on an edited contract policy")?;
    ensure!(
        matches!(&err, NodeError::ContractRecord { contract, problem: RecordProblem::DescriptorEdited { .. } }
            if *contract == deal()),
        "{err:?}"
    );
    ensure!(err.to_string().contains("real-estate-deal@1"), "{err}");
    no_forbidden_change(&path)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_policy_with_its_identity_recomputed_fails_the_deployer_signature(
) -> anyhow::Result<()> {
    let dir = TempDir::new("sst-contract-identity")?;
    let path = network_then_stop(&dir.0).await?;
    let mut rec = stored_record(&path)?;
    let_write_price(&mut rec, "*")?;
    rec.identity = ContractRecord::identity_of(&rec.descriptor, rec.identity.alg());
    write_record(&path, &rec)?;
    let err = restart_seller(&path)
        .await
        .err()
        .context("the node started on a re-hashed contract record")?;
    ensure!(
        matches!(
            &err,
            NodeError::ContractRecord {
                problem: RecordProblem::BadSignature { .. },
                ..
            }
        ),
        "{err:?}"
    );
    no_forbidden_change(&path)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_re_signed_by_another_actor_differs_from_the_held_code() -> anyhow::Result<()> {
    let dir = TempDir::new("sst-contract-resigned")?;
    let path = network_then_stop(&dir.0).await?;
    // The attacker re-signs an edited descriptor as a registered actor whose key they hold
    // (here: the inspector's, as if the key had leaked).
    let mut rec = stored_record(&path)?;
    let_write_price(&mut rec, "inspector")?;
    let (inspector, key) = actor("inspector", "a");
    let forged = ContractRecord::sign(rec.descriptor, HashAlg::Blake3, inspector.id, &key);
    write_record(&path, &forged)?;
    let err = restart_seller(&path)
        .await
        .err()
        .context("the node started on a forged contract record")?;
    ensure!(
        matches!(&err, NodeError::ContractChanged { contract, deployed, .. }
            if *contract == deal() && *deployed == forged.identity),
        "{err:?}"
    );
    no_forbidden_change(&path)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_naming_an_unknown_deployer_refuses_start() -> anyhow::Result<()> {
    let dir = TempDir::new("sst-contract-deployer")?;
    let path = network_then_stop(&dir.0).await?;
    let mut rec = stored_record(&path)?;
    let key = ActorKey::generate();
    rec = ContractRecord::sign(rec.descriptor, HashAlg::Blake3, "mallory/m".into(), &key);
    write_record(&path, &rec)?;
    let err = restart_seller(&path)
        .await
        .err()
        .context("the node started on a record by an unknown deployer")?;
    ensure!(
        matches!(
            &err,
            NodeError::ContractRecord {
                problem: RecordProblem::UnknownDeployer { .. },
                ..
            }
        ),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untampered_network_restarts_and_still_refuses_the_forbidden_change(
) -> anyhow::Result<()> {
    let dir = TempDir::new("sst-contract-clean")?;
    let _ = network_then_stop(&dir.0).await?;
    let mut stores = std::collections::BTreeMap::new();
    for r in ROLES {
        stores.insert(
            r.to_string(),
            sqlite_store(&dir.0.join(format!("{r}.db"))).await?,
        );
    }
    let c = Cluster::start(stores).await?;
    let v = c
        .node("inspector")
        .submit(
            &who("inspector"),
            Intent::change("deal-t", values([("price", json!({"amount": 1}))])),
        )
        .await?;
    ensure!(
        matches!(v.reason(), Some(RejectReason::Forbidden { section }) if section == "price"),
        "{v:?}"
    );
    drop(c);
    no_forbidden_change(&dir.0.join("seller.db"))?;
    Ok(())
}
