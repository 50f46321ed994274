//! `sst verify`: re-checks every state version's section hashes, roots and history chain and
//! every applied event's strict signature in each node database, then compares the roots of
//! the states the databases share.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sst::core::{StateId, StateRoot, Store};
use sst::sqlite::{SqliteConfig, SqliteStore};

/// Verifies `dbs`; returns whether everything was clean and consistent.
pub(crate) async fn run(dbs: &[PathBuf]) -> anyhow::Result<bool> {
    let mut clean = true;
    let mut latest: BTreeMap<StateId, Vec<(PathBuf, u64, StateRoot)>> = BTreeMap::new();
    let mut stores = Vec::new();
    for path in dbs {
        if !path.is_file() {
            bail!("{}: no such database file", path.display());
        }
        let store = SqliteStore::open(SqliteConfig::file(path))
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} states {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(path.display().to_string());
        let report = sst::core::verify_store(&store, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .await
        .with_context(|| format!("reading {}", path.display()))?;
        bar.finish_and_clear();
        println!(
            "{}: {} states, {} versions, {} events — {}",
            path.display(),
            report.states,
            report.versions,
            report.events,
            if report.is_clean() {
                "history OK".to_owned()
            } else {
                format!("{} problem(s)", report.findings.len())
            }
        );
        for f in &report.findings {
            clean = false;
            println!(
                "   state {} version {} event {}: {}",
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
                .push((path.clone(), current.version, current.root));
        }
        stores.push((path.clone(), store));
    }
    if dbs.len() > 1 {
        let mut shared = 0;
        let mut agree = true;
        for (id, holders) in &latest {
            if holders.len() < 2 {
                continue;
            }
            shared += 1;
            let min = holders.iter().map(|h| h.1).min().unwrap_or(0);
            // Compare at the highest version every holder has; report who is behind.
            let mut at_min = Vec::new();
            for (path, store) in &stores {
                if holders.iter().any(|h| &h.0 == path) {
                    if let Some(s) = store.state_at(id, min).await? {
                        at_min.push((path, s.root));
                    }
                }
            }
            if at_min.windows(2).any(|w| w[0].1 != w[1].1) {
                clean = false;
                agree = false;
                println!("state {id}: DIVERGED at version {min}");
                for (p, r) in &at_min {
                    println!("   {}: {r}", p.display());
                }
            } else if holders.iter().any(|h| h.1 != min) {
                println!("state {id}: equal up to version {min}; some nodes are behind:");
                for (p, v, r) in holders {
                    println!("   {}: version {v} root {r}", p.display());
                }
            }
        }
        println!(
            "{shared} shared state(s) compared across {} databases: {}",
            dbs.len(),
            if agree {
                "roots agree"
            } else {
                "roots DIVERGE"
            }
        );
    }
    Ok(clean)
}
