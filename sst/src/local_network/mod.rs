//! A local network in one command, like Fabric's test-network: `sst network up` lays out keys
//! and configs for N nodes and starts each as its own `sst node run` process, `sst network
//! status` shows them, `sst network down` stops them; [`Running`] is the same for the
//! networked demo and the network benchmark, which start nodes from within `sst`.

pub(crate) mod bench;
pub(crate) mod bench_protocols;
mod layout;
pub(crate) mod manifest;
mod process;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Subcommand;

pub(crate) use layout::{Backend, NodeSpec};
use manifest::{Manifest, NodeEntry};
pub(crate) use process::Stopped;

/// The participants of the default network: node id and actor name (the demo's four).
pub(crate) const PARTICIPANTS: [(&str, &str); 4] = [
    ("buyer", "bob"),
    ("seller", "sue"),
    ("inspector", "ina"),
    ("regulator", "rex"),
];

/// `sst network …`.
#[derive(Debug, Subcommand)]
pub(crate) enum NetworkCommand {
    /// Lay out keys and configs for N nodes and start each as a separate `sst node run`
    /// process (logs in DIR/<node>.log); writes DIR/network.json.
    ///
    /// Nodes are buyer, seller, inspector, regulator (then node5, node6, …), each with one
    /// actor whose key is in DIR/keys/ and also held by its node in custody; every node lists
    /// every other as a peer and loads the real-estate contract, deployed by the seller.
    Up {
        /// The network directory.
        #[arg(long, value_name = "DIR", default_value = "sst-network")]
        dir: PathBuf,
        /// How many nodes.
        #[arg(long, value_name = "N", default_value_t = 4)]
        nodes: usize,
        /// Backends to spread the nodes over, round-robin: sqlite (files in DIR), postgres
        /// (a fresh schema on postgresql://postgres@127.0.0.1:5432/postgres, or
        /// SST_POSTGRES_URL), mysql (a fresh database on mysql://root@127.0.0.1:3306, or
        /// SST_MYSQL_URL), mongo (a fresh collection prefix on SST_MONGO_URL). Server
        /// backends need a binary built with `--features postgres,mysql,mongo`.
        #[arg(
            long,
            value_name = "LIST",
            default_value = "sqlite",
            value_delimiter = ','
        )]
        backends: Vec<String>,
    },
    /// Stop every node of DIR/network.json (SIGTERM, SIGKILL after a grace) and remove the
    /// file; the node directories and databases stay.
    Down {
        /// The network directory.
        #[arg(long, value_name = "DIR", default_value = "sst-network")]
        dir: PathBuf,
    },
    /// One line per node: PID, whether it runs, whether its API answers.
    Status {
        /// The network directory.
        #[arg(long, value_name = "DIR", default_value = "sst-network")]
        dir: PathBuf,
    },
}

/// Runs one `sst network` command; `Ok(false)` for exit status 1.
pub(crate) async fn run(command: NetworkCommand) -> anyhow::Result<bool> {
    match command {
        NetworkCommand::Up {
            dir,
            nodes,
            backends,
        } => {
            let backends = backends
                .iter()
                .map(|b| Backend::parse(b))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let running = Running::up(&dir, &specs(nodes, &backends)?).await?;
            let manifest = running.detach();
            for n in &manifest.nodes {
                print_node(n);
            }
            println!(
                "network of {} nodes up; manifest {}, registry {}",
                manifest.nodes.len(),
                Manifest::path(&manifest.dir).display(),
                manifest.dir.join("registry.json").display()
            );
            println!(
                "stop it with: sst network down --dir {}",
                manifest.dir.display()
            );
            Ok(true)
        }
        NetworkCommand::Down { dir } => {
            let manifest = Manifest::read(&dir)?;
            let stopped = process::stop_all(&manifest, &mut []).await?;
            for (n, how) in manifest.nodes.iter().zip(&stopped) {
                println!("{:<10} pid {:<7} {how}", n.id, n.pid);
            }
            let path = Manifest::path(&dir);
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            println!(
                "network down; data kept in {} (sst verify --registry {} …)",
                dir.display(),
                dir.join("registry.json").display()
            );
            Ok(true)
        }
        NetworkCommand::Status { dir } => {
            let manifest = Manifest::read(&dir)?;
            let mut all_up = true;
            for n in &manifest.nodes {
                let running = process::alive(n.pid);
                let health = match n.first_client() {
                    Ok(c) if running => {
                        match tokio::time::timeout(Duration::from_secs(2), c.health()).await {
                            Ok(Ok(_)) => "healthy".to_owned(),
                            Ok(Err(e)) => format!("not answering: {e}"),
                            Err(_) => "not answering within 2 s".to_owned(),
                        }
                    }
                    Ok(_) => "-".to_owned(),
                    Err(e) => format!("no client: {e}"),
                };
                all_up &= running && health == "healthy";
                println!(
                    "{:<10} pid {:<7} {:<11} api {} {health}",
                    n.id,
                    n.pid,
                    if running { "running" } else { "not running" },
                    n.api
                );
            }
            Ok(all_up)
        }
    }
}

fn print_node(n: &NodeEntry) {
    println!(
        "{:<10} pid {:<7} api {} peers {} store {}",
        n.id, n.pid, n.api, n.listen, n.store
    );
}

/// The default layout of `count` nodes spread over `backends` round-robin.
///
/// # Errors
/// No node or no backend.
pub(crate) fn specs(count: usize, backends: &[Backend]) -> anyhow::Result<Vec<NodeSpec>> {
    ensure!(count >= 1, "--nodes must be at least 1");
    ensure!(!backends.is_empty(), "--backends is empty");
    Ok((0..count)
        .map(|i| {
            let (id, actor) = PARTICIPANTS
                .get(i)
                .map_or((format!("node{}", i + 1), "ops".to_owned()), |(n, a)| {
                    ((*n).to_owned(), (*a).to_owned())
                });
            NodeSpec {
                id,
                actors: vec![(actor, true)],
                backend: backends[i % backends.len()],
            }
        })
        .collect())
}

/// Node processes started by this process: stopped (SIGKILL) when dropped unless
/// [`Running::detach`]ed or [`Running::stop`]ped.
pub(crate) struct Running {
    /// What was started.
    pub(crate) manifest: Manifest,
    children: Vec<Option<Child>>,
}

impl Running {
    /// Lays out `specs` in `dir` (created if missing; refused if a network is up there or
    /// was laid out there), starts every node, waits until each answers `/health`, and writes
    /// `dir/network.json`. The contract's deployer is the seller's actor when there is a
    /// seller, else the first node's first actor.
    ///
    /// # Errors
    /// Layout errors; a node that exits at start or does not answer in time (every node
    /// started is then killed).
    pub(crate) async fn up(dir: &Path, specs: &[NodeSpec]) -> anyhow::Result<Running> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        ensure!(
            !Manifest::path(&dir).exists(),
            "{} exists: a network is up there (sst network down --dir {})",
            Manifest::path(&dir).display(),
            dir.display()
        );
        let deployer = specs
            .iter()
            .find(|s| s.id == "seller")
            .or(specs.first())
            .and_then(|s| s.actors.first().map(|(a, _)| format!("{}/{a}", s.id)))
            .context("no actor to deploy the contract")?;
        let layout = layout::write(&dir, specs, &deployer)?;
        let mut running = Running {
            manifest: Manifest {
                format: manifest::FORMAT.to_owned(),
                dir: dir.clone(),
                registry: layout.registry.clone(),
                nodes: Vec::new(),
            },
            children: Vec::new(),
        };
        for mut n in layout.nodes {
            let child = process::spawn(&n.config, &n.log)?;
            n.pid = child.id();
            running.manifest.nodes.push(n);
            running.children.push(Some(child));
        }
        for (n, child) in running.manifest.nodes.iter().zip(&mut running.children) {
            process::wait_healthy(n, child.as_mut()).await?;
        }
        running.manifest.write()?;
        Ok(running)
    }

    /// Leaves the nodes running after this process exits; the manifest.
    pub(crate) fn detach(mut self) -> Manifest {
        self.children.clear();
        self.manifest.clone()
    }

    /// Stops every node (SIGTERM, SIGKILL after the grace) and removes `network.json`; how
    /// each ended.
    ///
    /// # Errors
    /// A node survives SIGKILL; the manifest cannot be removed.
    pub(crate) async fn stop(mut self) -> anyhow::Result<Vec<Stopped>> {
        let stopped = process::stop_all(&self.manifest, &mut self.children).await?;
        self.children.clear();
        let path = Manifest::path(&self.manifest.dir);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(stopped)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !self.children.is_empty() {
            let _ = std::fs::remove_file(Manifest::path(&self.manifest.dir));
        }
    }
}
