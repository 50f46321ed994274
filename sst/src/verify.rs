//! `sst verify`: re-checks every state version's section hashes, roots and history chain,
//! every event's strict signature, the hash-chained log and every row's binding to it in each
//! node database (any backend, by store URL, opened so that nothing is changed) — with the
//! node registry, sequencing receipts, the endorsements of events on the `endorsed` protocol
//! and checkpoints too — then compares the roots of the states that more than one of the
//! databases hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::path::Path;

use anyhow::{ensure, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sst::core::{NodeId, NodeRegistry, StateId, StateRoot, Store, TrustAnchors};

use crate::store_url::StoreUrl;

/// Reads a node registry file (`{"node-id": "<hex public key>"}`).
pub(crate) fn read_registry(path: &Path) -> anyhow::Result<NodeRegistry> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading node registry {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "node registry {} is not {{\"node\": \"hex key\"}}",
            path.display()
        )
    })
}

/// Verifies `dbs` (owned by `nodes`, in order, when given) against the node registry at
/// `registry`; returns whether everything was clean and consistent.
pub(crate) async fn run(
    dbs: &[StoreUrl],
    registry: Option<&Path>,
    nodes: &[String],
) -> anyhow::Result<bool> {
    ensure!(
        nodes.is_empty() || nodes.len() == dbs.len(),
        "give one --node per --db (or none): {} --db, {} --node",
        dbs.len(),
        nodes.len()
    );
    let registry = registry.map(read_registry).transpose()?.unwrap_or_default();
    run_with_registry(dbs, registry, nodes).await
}

/// As [`run`], with the node registry already read (`sst audit` takes it from the node's
/// configuration).
pub(crate) async fn run_with_registry(
    dbs: &[StoreUrl],
    registry: NodeRegistry,
    nodes: &[String],
) -> anyhow::Result<bool> {
    if registry.is_empty() {
        println!(
            "no --registry given: sequencing receipts, endorsements and checkpoint signatures \
             are NOT checked (a database cannot vouch for itself)"
        );
    } else {
        println!(
            "receipts, endorsements and checkpoints checked against {} registered node key(s)",
            registry.0.len()
        );
    }
    let mut clean = true;
    // Per state: (index into `stores`, current version, current root) of each holder.
    let mut latest: BTreeMap<StateId, Vec<(usize, u64, StateRoot)>> = BTreeMap::new();
    let mut stores: Vec<(String, Arc<dyn Store>)> = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        let label = db.label();
        let anchors = TrustAnchors::new(registry.clone(), nodes.get(i).map(NodeId::new));
        let store = db.open_for_verify().await?;
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} states {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.clone());
        let report = sst::core::verify_store_with(store.as_ref(), &anchors, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .await
        .with_context(|| format!("reading {label}"))?;
        bar.finish_and_clear();
        let endorsed = match (report.endorsed, report.anchored) {
            (0, _) => String::new(),
            (n, true) => format!(" ({n} endorsed)"),
            (n, false) => format!(" ({n} endorsed, endorsements not checked)"),
        };
        println!(
            "{label}: {} states, {} versions, {} events{endorsed}, {} log entries, {} checkpoints — {}",
            report.states,
            report.versions,
            report.events,
            report.log_entries,
            report.checkpoints,
            if report.is_clean() {
                "history OK".to_owned()
            } else {
                format!("{} problem(s)", report.findings.len())
            }
        );
        for f in &report.findings {
            clean = false;
            println!(
                "   [{}/{}] state {} version {} event {}: {}",
                f.table,
                f.rule,
                f.state_id,
                f.version.map_or("-".into(), |v| v.to_string()),
                f.event.as_deref().unwrap_or("-"),
                f.problem
            );
        }
        // verify_store walks the history table; the current-state table is the one users
        // query, so check its rows too and that they equal the latest history version.
        for id in store.state_ids().await? {
            let current = match store.state(&id).await {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    clean = false;
                    println!("   state {id} current row: {e}");
                    continue;
                }
            };
            if let Err(e) = current.verify() {
                clean = false;
                println!(
                    "   state {id} version {} (current-state row): {e}",
                    current.version
                );
            } else if let Ok(Some(h)) = store.state_at(&id, current.version).await {
                if h != current {
                    clean = false;
                    println!(
                        "   state {id} version {}: current-state row differs from its history row",
                        current.version
                    );
                }
            }
            latest
                .entry(id)
                .or_default()
                .push((stores.len(), current.version, current.root));
        }
        stores.push((label, store));
    }
    if dbs.len() > 1 {
        clean &= compare(&latest, &stores).await?;
    }
    Ok(clean)
}

/// Compares the roots of every state held by at least two of `stores`, at the highest
/// version all its holders have; prints how many were compared. Returns whether none diverged.
async fn compare(
    latest: &BTreeMap<StateId, Vec<(usize, u64, StateRoot)>>,
    stores: &[(String, Arc<dyn Store>)],
) -> anyhow::Result<bool> {
    let mut compared = 0;
    let mut diverged = 0;
    for (id, holders) in latest {
        if holders.len() < 2 {
            continue;
        }
        compared += 1;
        let min = holders.iter().map(|h| h.1).min().unwrap_or(0);
        // Compare at the highest version every holder has; report who is behind.
        let mut at_min = Vec::new();
        for (i, _, _) in holders {
            let (label, store) = &stores[*i];
            if let Some(s) = store.state_at(id, min).await? {
                at_min.push((label, s.root));
            }
        }
        if at_min.windows(2).any(|w| w[0].1 != w[1].1) {
            diverged += 1;
            println!("state {id}: DIVERGED at version {min}");
            for (label, r) in &at_min {
                println!("   {label}: {r}");
            }
        } else if holders.iter().any(|h| h.1 != min) {
            println!("state {id}: equal up to version {min}; some databases are behind:");
            for (i, v, r) in holders {
                println!("   {}: version {v} root {r}", stores[*i].0);
            }
        }
    }
    let n = stores.len();
    if compared == 0 {
        println!(
            "0 states compared: no state is held by more than one of the {n} databases, so \
             there are no roots to compare"
        );
    } else if diverged == 0 {
        println!(
            "{compared} state(s) held by more than one of the {n} databases compared: roots agree"
        );
    } else {
        println!(
            "{compared} state(s) held by more than one of the {n} databases compared: \
             {diverged} DIVERGE"
        );
    }
    Ok(diverged == 0)
}
