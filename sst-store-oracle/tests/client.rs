//! Opening a store where the Oracle Client library is missing fails with DPI-1047, which the
//! crate reports as "client missing" (and nothing else is reported that way).

use sst_store_oracle::{load_client, store_error_is_client_missing, OracleConfig, OracleStore};

#[tokio::test]
async fn open_reports_a_missing_client_library_as_such() -> anyhow::Result<()> {
    if load_client().is_ok() {
        eprintln!("skipping: an Oracle Client library is installed here");
        return Ok(());
    }
    let config = OracleConfig::from_url("oracle://sst:secret@127.0.0.1:1/NOWHERE")?;
    let err = OracleStore::open(config)
        .await
        .expect_err("no client library");
    anyhow::ensure!(store_error_is_client_missing(&err), "{err}");
    anyhow::ensure!(err.to_string().contains("DPI-1047"), "{err}");
    Ok(())
}

#[tokio::test]
async fn bad_table_names_are_refused_before_loading_anything() -> anyhow::Result<()> {
    let config = OracleConfig::from_url("oracle://sst:secret@127.0.0.1:1/NOWHERE")?
        .with_prefix("bad name; --");
    let err = OracleStore::open(config).await.expect_err("invalid");
    anyhow::ensure!(!store_error_is_client_missing(&err));
    anyhow::ensure!(
        matches!(err, sst_core::StoreError::InvalidInput { .. }),
        "{err}"
    );
    Ok(())
}
