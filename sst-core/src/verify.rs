//! Whole-store verification: recompute every stored state version's section hashes and root
//! from what the store reads back (its native, user-queryable columns), check the version
//! chain, and check every event's id and strict signature.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::hash::StateRoot;
use crate::model::{ActorChange, ActorId, ActorStatus, EventKind, Outcome, StateId};
use crate::sign::{verify_batch, PublicKey};
use crate::store::{EventFilter, Store};

/// One problem found by [`verify_store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// State concerned (empty for events without a state).
    pub state_id: StateId,
    /// Version concerned, when the problem is in one state version.
    pub version: Option<u64>,
    /// Event concerned, when the problem is in an event.
    pub event: Option<String>,
    /// What is wrong.
    pub problem: String,
}

/// Result of [`verify_store`].
///
/// Event signatures are checked against the key valid at each event's position in the log:
/// events are walked in recording order, each actor starts with the `previous_key` of its
/// first applied [`crate::EventKind::ActorChange`] event (or its current directory key when it
/// has none), and every applied actor change switches to the key (and status) it records.
/// An applied event signed after its actor's revocation is reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// States walked.
    pub states: usize,
    /// State versions recomputed.
    pub versions: usize,
    /// Events checked.
    pub events: usize,
    /// Everything that did not verify (empty = store verified).
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verifies every state version and every event in `store`. `progress(done, total)` is called
/// after each state (for progress bars). Backend failures abort with an error; integrity
/// problems are collected as findings naming the exact state and version.
///
/// # Errors
/// [`StoreError::Backend`] when the store cannot be read at all.
pub async fn verify_store(
    store: &dyn Store,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<VerifyReport, StoreError> {
    let ids = store.state_ids().await?;
    let mut report = VerifyReport {
        states: ids.len(),
        ..Default::default()
    };
    let finding = |state_id: &StateId, version: Option<u64>, problem: String| Finding {
        state_id: state_id.clone(),
        version,
        event: None,
        problem,
    };
    for (done, id) in ids.iter().enumerate() {
        let (latest, current) = match store.state(id).await {
            Ok(Some(s)) => (s.version, Some(s)),
            Ok(None) => continue,
            Err(StoreError::Integrity { source, .. }) => {
                // The latest row cannot be reassembled, so its version is unknown: walk the
                // history until it ends, reporting each unreadable version by number.
                let mut v = 0;
                loop {
                    match store.state_at(id, v + 1).await {
                        Ok(None) => break,
                        Ok(Some(_)) | Err(StoreError::Integrity { .. }) => v += 1,
                        Err(e) => return Err(e),
                    }
                }
                if v == 0 {
                    report.findings.push(finding(
                        id,
                        None,
                        "latest version unreadable and no history".into(),
                    ));
                    continue;
                }
                report.findings.push(finding(
                    id,
                    Some(v),
                    format!("current-state row unreadable: {source}"),
                ));
                (v, None)
            }
            Err(e) => return Err(e),
        };
        let mut prev_root: Option<StateRoot> = None;
        let mut history_latest = None;
        for v in 1..=latest {
            report.versions += 1;
            let s = match store.state_at(id, v).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    report.findings.push(finding(
                        id,
                        Some(v),
                        "version missing from history".into(),
                    ));
                    prev_root = None;
                    continue;
                }
                Err(StoreError::Integrity { source, .. }) => {
                    report
                        .findings
                        .push(finding(id, Some(v), source.to_string()));
                    prev_root = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if s.version != v || &s.id != id {
                report.findings.push(finding(
                    id,
                    Some(v),
                    format!("row holds {} version {}", s.id, s.version),
                ));
            }
            if let Err(e) = s.verify() {
                report.findings.push(finding(id, Some(v), e.to_string()));
            }
            if v > 1 && prev_root.is_some() && s.prev_root != prev_root {
                report.findings.push(finding(
                    id,
                    Some(v),
                    format!(
                        "history chain broken: prev_root is not the root of version {}",
                        v - 1
                    ),
                ));
            }
            prev_root = Some(s.root);
            if v == latest {
                history_latest = Some(s);
            }
        }
        // The current-state table is what users query: it must be the history's latest row.
        // (When both were changed alike, the history finding above already names the version.)
        if let Some(cur) = current {
            if history_latest.as_ref() != Some(&cur) {
                let detail = match cur.verify() {
                    Err(e) => format!("current-state row does not verify: {e}"),
                    Ok(()) => "current-state row differs from its history row".into(),
                };
                report.findings.push(finding(id, Some(cur.version), detail));
            }
        }
        progress(done + 1, ids.len());
    }

    let events = store.events(&EventFilter::default()).await?;
    report.events = events.len();
    // Keys at the start of the log: the key each actor's first applied change replaced.
    let mut keys: BTreeMap<ActorId, (PublicKey, ActorStatus)> = BTreeMap::new();
    for rec in &events {
        let e = rec.event();
        if e.kind == EventKind::ActorChange && matches!(rec.outcome, Outcome::Applied { .. }) {
            if let Ok(ch) = ActorChange::from_payload(&e.payload) {
                keys.entry(ch.actor.id.clone())
                    .or_insert((ch.previous_key, ActorStatus::Active));
            }
        }
    }
    let mut to_check = Vec::new();
    let mut owners = Vec::new();
    for rec in &events {
        let e = rec.event();
        let ev_finding = |problem: String| Finding {
            state_id: e.state_id.clone(),
            version: match rec.outcome {
                Outcome::Applied { version, .. } => Some(version),
                Outcome::Rejected { .. } => None,
            },
            event: Some(rec.id().to_string()),
            problem,
        };
        if !matches!(rec.outcome, Outcome::Applied { .. }) {
            // Rejected intents are kept as evidence, forged ones included.
            continue;
        }
        if let Err(err) = rec.signed.verify_id() {
            report.findings.push(ev_finding(err.to_string()));
            continue;
        }
        let key = match keys.get(&e.actor) {
            Some(k) => Some(*k),
            None => store
                .actor(&e.actor)
                .await?
                .map(|a| (a.public_key, ActorStatus::Active)),
        };
        let Some((key, status)) = key else {
            report.findings.push(ev_finding(format!(
                "applied event signed by unknown actor {}",
                e.actor
            )));
            continue;
        };
        if status != ActorStatus::Active {
            report.findings.push(ev_finding(format!(
                "applied event signed by {} after its revocation",
                e.actor
            )));
        }
        match rec.signed.signatures.iter().find(|s| s.signer == e.actor) {
            Some(sig) => {
                to_check.push((key, rec.id().0, sig.signature));
                owners.push(rec);
            }
            None => {
                report.findings.push(ev_finding(format!(
                    "applied event has no signature by {}",
                    e.actor
                )));
            }
        }
        if e.kind == EventKind::ActorChange {
            match ActorChange::from_payload(&e.payload) {
                Ok(ch) => {
                    keys.insert(ch.actor.id.clone(), (ch.actor.public_key, ch.actor.status));
                }
                Err(err) => report
                    .findings
                    .push(ev_finding(format!("malformed actor change payload: {err}"))),
            }
        }
    }
    // Fast path for the common all-good case; on failure find every bad entry strictly.
    if verify_batch(&to_check).is_err() {
        for ((key, digest, sig), rec) in to_check.iter().zip(owners) {
            if key.verify_digest(digest, sig).is_err() {
                report.findings.push(Finding {
                    state_id: rec.event().state_id.clone(),
                    version: None,
                    event: Some(rec.id().to_string()),
                    problem: "applied event's signature does not verify (strict)".into(),
                });
            }
        }
    }
    Ok(report)
}
