//! The whole conformance suite against the in-memory reference store, `sst_core::MemoryStore`.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use conformance_tests::{Backend, BackendFactory, EventColumn, Mutation, RawAccess};
use serde_json::Value;
use sst_core::{
    ActorId, EventRecord, MemoryStore, OriginSeq, Outcome, RejectReason, State, StateId, Store,
};

/// What rewriting one column of an event row does to the record the memory store holds
/// (it keeps whole records, so a column edit changes the record itself).
fn set_column(r: &mut EventRecord, column: EventColumn, value: &Value) -> anyhow::Result<()> {
    let text = || {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{column:?} takes a string"))
    };
    match column {
        EventColumn::StateId => r.signed.event.state_id = StateId(text()?),
        EventColumn::Actor => r.signed.event.actor = ActorId(text()?),
        EventColumn::OriginSeq => {
            r.signed.event.origin_seq = OriginSeq(
                value
                    .as_u64()
                    .ok_or_else(|| anyhow!("origin_seq takes a number"))?,
            )
        }
        EventColumn::Reason => {
            let detail = text()?;
            r.outcome = Outcome::Rejected {
                reason: RejectReason::ContractRejected { message: detail },
            }
        }
        EventColumn::NewRoot => match &mut r.outcome {
            Outcome::Applied { root, .. } => *root = text()?.parse()?,
            Outcome::Rejected { .. } => anyhow::bail!("a rejected event has no root"),
        },
        EventColumn::Receipt => r.receipt = serde_json::from_value(value.clone())?,
        EventColumn::BusinessEvents => r.business_events = list(value)?,
        EventColumn::Endorsements => r.endorsements = list(value)?,
        other => anyhow::bail!("column {other:?} not known to the memory raw access"),
    }
    Ok(())
}

/// A nullable list column's value as the list it holds (`null` is none).
fn list<T: serde::de::DeserializeOwned>(value: &Value) -> anyhow::Result<Vec<T>> {
    Ok(if value.is_null() {
        Vec::new()
    } else {
        serde_json::from_value(value.clone())?
    })
}

/// Raw access to a `MemoryStore` through its `tamper` hook: the stored versions are rebuilt
/// from their columns with the data column replaced, as a raw SQL `UPDATE` would do.
struct MemoryRaw(Arc<MemoryStore>);

fn with_data(state: &State, data: Value) -> anyhow::Result<State> {
    let mut parts = state.to_parts();
    parts.data = data;
    State::from_parts(parts).map_err(|e| anyhow!("memory store cannot hold this data: {e}"))
}

/// Writes `data` where the sections of `version` are stored, the way a raw `UPDATE` of the
/// section-version rows would: each disclosed section's value goes into that section version,
/// which every version holding the same `(name, hash)` reads.
fn write_sections(versions: &mut [State], version: &State, data: &Value) -> anyhow::Result<()> {
    let map = data.as_object().context("data is not an object")?;
    for (name, section) in &version.sections {
        let Some(value) = map.get(name) else { continue };
        if section.disclosure.is_none() {
            continue;
        }
        for s in versions.iter_mut() {
            if s.sections.get(name).map(|x| x.hash) == Some(section.hash) {
                let mut d = s.data();
                if let Some(m) = d.as_object_mut() {
                    m.insert(name.clone(), value.clone());
                }
                *s = with_data(s, d)?;
            }
        }
    }
    Ok(())
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
            if let Some(s) = versions.iter().find(|s| s.version == version).cloned() {
                result = write_sections(versions, &s, &data);
            }
        })?;
        result
    }

    async fn swap_history_data(&self, id: &StateId, a: u64, b: u64) -> anyhow::Result<()> {
        let mut result = Err(anyhow!("{id} lacks version {a} or {b}"));
        self.0.tamper(id, |versions| {
            let sa = versions.iter().find(|s| s.version == a).cloned();
            let sb = versions.iter().find(|s| s.version == b).cloned();
            if let (Some(sa), Some(sb)) = (sa, sb) {
                let (da, db) = (sa.data(), sb.data());
                result = write_sections(versions, &sa, &db)
                    .and_then(|()| write_sections(versions, &sb, &da));
            }
        })?;
        result.context("swapping history rows")
    }

    async fn downgrade_to_first_layout(&self) -> anyhow::Result<bool> {
        Ok(false)
    }

    async fn raw_event_column(
        &self,
        _event: &sst_core::EventId,
        _column: EventColumn,
    ) -> anyhow::Result<Option<Value>> {
        // Whole records, no event rows: the raw-column cases are NOT RUN here.
        Ok(None)
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
            Mutation::SetEventColumn {
                column: EventColumn::Endorsements,
                value,
                ..
            } if list::<sst_core::Endorsement>(value).is_err() => {
                // The memory store keeps typed records: a malformed column cannot exist here.
                return Ok(false);
            }
            // No table layout to take back to an older release.
            Mutation::DropEventColumn(_) => return Ok(false),
            Mutation::SetEventColumn {
                event,
                column,
                value,
            } => {
                let mut result = Ok(());
                self.0.tamper_events(|events| {
                    if let Some(r) = events.iter_mut().find(|r| r.id() == *event) {
                        result = set_column(r, *column, value);
                        done = true;
                    }
                })?;
                result?;
            }
            Mutation::DeleteLogEntry(pos) => self.0.tamper_log(|log| {
                let before = log.len();
                log.retain(|e| e.pos != *pos);
                done = log.len() < before;
            })?,
            Mutation::CopyLogEntry { from, to } => self.0.tamper_log(|log| {
                if let Some(e) = log.iter().find(|e| e.pos == *from).cloned() {
                    log.push(sst_core::LogEntry { pos: *to, ..e });
                    log.sort_by_key(|e| e.pos);
                    done = true;
                }
            })?,
            Mutation::SwapLogEntries { a, b } => self.0.tamper_log(|log| {
                let ia = log.iter().position(|e| e.pos == *a);
                let ib = log.iter().position(|e| e.pos == *b);
                if let (Some(ia), Some(ib)) = (ia, ib) {
                    log[ia].pos = *b;
                    log[ib].pos = *a;
                    log.sort_by_key(|e| e.pos);
                    done = true;
                }
            })?,
            Mutation::TruncateLog { from } => self.0.tamper_log(|log| {
                let before = log.len();
                log.retain(|e| e.pos < *from);
                done = log.len() < before;
            })?,
            Mutation::SetActorKey { actor, key } => self.0.tamper_actors(|actors| {
                if let Some(a) = actors.get_mut(actor) {
                    a.public_key = *key;
                    done = true;
                }
            })?,
            Mutation::SetContractDescriptor {
                contract,
                descriptor,
            } => {
                let parsed = serde_json::from_value(descriptor.clone())?;
                self.0.tamper_contracts(|contracts| {
                    if let Some(c) = contracts.get_mut(contract) {
                        c.descriptor = parsed;
                        done = true;
                    }
                })?
            }
            Mutation::DeleteRefusal(event) => self.0.tamper_refusals(|r| {
                done = r.remove(event).is_some();
            })?,
            Mutation::DeleteCheckpoint { node, pos } => self.0.tamper_checkpoints(|c| {
                done = c.remove(&(node.clone(), *pos)).is_some();
            })?,
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
