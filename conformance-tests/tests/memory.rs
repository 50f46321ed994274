//! The whole conformance suite against the in-memory reference store, `sst_core::MemoryStore`.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use conformance_tests::{Backend, BackendFactory, Mutation, RawAccess};
use serde_json::Value;
use sst_core::{MemoryStore, Outcome, State, StateId, Store};

/// Raw access to a `MemoryStore` through its `tamper` hook: the stored versions are rebuilt
/// from their columns with the data column replaced, as a raw SQL `UPDATE` would do.
struct MemoryRaw(Arc<MemoryStore>);

fn with_data(state: &State, data: Value) -> anyhow::Result<State> {
    let mut parts = state.to_parts();
    parts.data = data;
    State::from_parts(parts).map_err(|e| anyhow!("memory store cannot hold this data: {e}"))
}

#[async_trait]
impl RawAccess for MemoryRaw {
    async fn raw_data(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        Ok(self.0.state_at(id, version).await?.map(|s| s.data()))
    }

    async fn raw_seals(&self, id: &StateId, version: u64) -> anyhow::Result<Option<Value>> {
        self.0
            .state_at(id, version)
            .await?
            .map(|s| serde_json::to_value(s.seals()))
            .transpose()
            .map_err(Into::into)
    }

    async fn set_raw_data(&self, id: &StateId, version: u64, data: Value) -> anyhow::Result<()> {
        let mut result = Err(anyhow!("{id} has no version {version}"));
        self.0.tamper(id, |versions| {
            if let Some(s) = versions.iter_mut().find(|s| s.version == version) {
                result = with_data(s, data).map(|new| *s = new);
            }
        })?;
        result
    }

    async fn swap_history_data(&self, id: &StateId, a: u64, b: u64) -> anyhow::Result<()> {
        let mut result = Err(anyhow!("{id} lacks version {a} or {b}"));
        self.0.tamper(id, |versions| {
            let ia = versions.iter().position(|s| s.version == a);
            let ib = versions.iter().position(|s| s.version == b);
            if let (Some(ia), Some(ib)) = (ia, ib) {
                let (da, db) = (versions[ia].data(), versions[ib].data());
                result = with_data(&versions[ia], db).and_then(|na| {
                    let nb = with_data(&versions[ib], da)?;
                    versions[ia] = na;
                    versions[ib] = nb;
                    Ok(())
                });
            }
        })?;
        result.context("swapping history rows")
    }

    async fn mutate(&self, m: &Mutation) -> anyhow::Result<bool> {
        // The reference store keeps no current-state row apart from its history: mutations
        // of that row do not exist here.
        let mut done = false;
        match m {
            Mutation::DeleteCurrentRow(_) | Mutation::RollBackCurrentRow { .. } => {
                return Ok(false)
            }
            Mutation::DeleteHistoryVersion { id, version } => {
                self.0.tamper(id, |versions| {
                    let before = versions.len();
                    versions.retain(|s| s.version != *version);
                    done = versions.len() < before;
                })?;
            }
            Mutation::CopyHistoryVersion { id, from, to } => {
                self.0.tamper(id, |versions| {
                    if let Some(s) = versions.iter().find(|s| s.version == *from).cloned() {
                        let mut copy = s;
                        copy.version = *to;
                        versions.push(copy);
                        done = true;
                    }
                })?;
            }
            Mutation::DeleteEvent(e) => {
                self.0.tamper_events(|events| {
                    let before = events.len();
                    events.retain(|r| r.id() != *e);
                    done = events.len() < before;
                })?;
            }
            Mutation::RelabelApplied {
                event,
                version,
                root,
            } => {
                self.0.tamper_events(|events| {
                    if let Some(r) = events.iter_mut().find(|r| r.id() == *event) {
                        r.outcome = Outcome::Applied {
                            version: *version,
                            root: *root,
                        };
                        done = true;
                    }
                })?;
            }
            other => anyhow::bail!("mutation {other:?} not known to the memory raw access"),
        }
        anyhow::ensure!(done, "{m:?} found nothing to change");
        Ok(true)
    }
}

/// Every `open` is a fresh, empty store; `reopen` too, since nothing survives a restart.
struct MemoryFactory;

fn backend() -> Backend {
    let store = Arc::new(MemoryStore::new());
    Backend {
        store: store.clone(),
        raw: Arc::new(MemoryRaw(store)),
    }
}

#[async_trait]
impl BackendFactory for MemoryFactory {
    async fn open(&self) -> anyhow::Result<Backend> {
        Ok(backend())
    }

    async fn reopen(&self) -> anyhow::Result<Backend> {
        Ok(backend())
    }
}

async fn factory() -> anyhow::Result<Option<MemoryFactory>> {
    Ok(Some(MemoryFactory))
}

conformance_tests::suite!(factory());
