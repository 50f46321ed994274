//! The conformance cases: one `pub async fn` per sentence of the `Store` contract.

use crate::BackendFactory;

/// Migrating twice succeeds and leaves an empty, usable store.
pub async fn migrate_is_idempotent(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    b.store.migrate().await?;
    b.store.migrate().await?;
    anyhow::ensure!(
        b.store.state_ids().await?.is_empty(),
        "fresh store is not empty"
    );
    Ok(())
}
