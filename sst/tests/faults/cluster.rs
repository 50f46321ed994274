//! A network of `sst node run` processes for the fault tests: keys and configs from `sst
//! keygen` and `sst node init` (plus peers, actors and the contract appended), each node on
//! its own store, a peer address per (from, to) pair that a test may point at a proxy, kill -9
//! and restart on the same store, and clients for each node's API (mutual TLS). Every child is
//! killed when the cluster is dropped, also when a test fails. Each node's two ports are
//! claimed ([`ports`]) for the cluster's life, so no parallel test takes one before the node
//! binds it or while it is down between a kill and its restart.

#[path = "../support/ports.rs"]
mod ports;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use sst::core::{ActorKey, NodeKey, NodeRegistry, PublicKey};
use sst_client::Client;

/// Longest wait for a node to answer its API after a (re)start.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The contract every node loads.
pub const CONTRACT: &str = "real-estate-deal@1";

/// A private copy of the `sst` binary this test target was built with, checked to hold the
/// PostgreSQL, MySQL and MongoDB adapters: `target/debug/sst` itself is rewritten by any
/// other `cargo build -p sst` with other features, also while these tests run.
pub fn sst_bin() -> anyhow::Result<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BIN.get_or_init(|| copy_bin().map_err(|e| format!("{e:#}")));
    match found {
        Ok(p) => Ok(p.as_path()),
        Err(e) => bail!("{e}"),
    }
}

fn copy_bin() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sst-faults-bin");
    std::fs::create_dir_all(&dir)?;
    // Copies of earlier runs (an hour old: no run takes that long).
    for entry in std::fs::read_dir(&dir)?.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let bin = dir.join(format!("sst-{}", std::process::id()));
    std::fs::copy(env!("CARGO_BIN_EXE_sst"), &bin)
        .with_context(|| format!("copying {}", env!("CARGO_BIN_EXE_sst")))?;
    // Port 1 answers nothing: a binary with the adapter fails to connect; one without says so.
    // (Not asked of PostgreSQL, whose pool waits 30 s for port 1; every build of this
    // workspace with the `mongo` feature has `postgres` too.) Only asked of a test target
    // built with those adapters: the SQLite-only network tests share this cluster.
    let servers: &[&str] = if cfg!(all(feature = "mysql", feature = "mongo")) {
        &[
            "mysql://root@127.0.0.1:1?database=x",
            "mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=200",
        ]
    } else {
        &[]
    };
    for url in servers {
        let out = Command::new(&bin).args(["verify", "--db", *url]).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !err.contains("built without"),
            "{} lacks an adapter (another cargo build rewrote it without features?); \
             run `cargo xtask faults` again:\n{err}",
            env!("CARGO_BIN_EXE_sst")
        );
    }
    Ok(bin)
}

/// `sst` with `args`, which must succeed; its stdout.
pub fn sst_ok(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(sst_bin()?).args(args).output()?;
    ensure!(
        out.status.success(),
        "sst {args:?} exited {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One node of the cluster.
pub struct NodeProc {
    /// Node id.
    pub id: String,
    /// Its node directory.
    pub dir: PathBuf,
    /// Peer transport listener.
    pub listen: SocketAddr,
    /// Client API listener.
    pub api: SocketAddr,
    /// Its public node key.
    pub public: PublicKey,
    /// The key file of its actor `<id>/alice` (client-signed intents, reads).
    pub alice: PathBuf,
    /// The claims on `listen` and `api`, held while the cluster lives.
    _ports: [ports::Port; 2],
    child: Option<Child>,
    log: PathBuf,
}

impl NodeProc {
    /// Its config file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("node.toml")
    }

    /// Its node key (from its directory).
    pub fn node_key(&self) -> anyhow::Result<NodeKey> {
        NodeKey::from_pkcs8_pem(&std::fs::read_to_string(self.dir.join("node-key.pem"))?)
            .map_err(|e| anyhow::anyhow!("node key of {}: {e}", self.id))
    }

    /// Whether its process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// kill -9 its process and reaps it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("node not started")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// The log file's text (stdout and stderr of every run).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `<id>/alice`'s client of this node (mutual TLS, pinning the node's key).
    pub fn client(&self) -> anyhow::Result<Client> {
        let key = read_actor_key(&self.alice)?;
        Ok(Client::with_tls(
            self.api,
            format!("{}/alice", self.id).as_str(),
            key,
            self.public,
        )?)
    }
}

/// Reads an actor key file.
pub fn read_actor_key(path: &Path) -> anyhow::Result<ActorKey> {
    ActorKey::from_pkcs8_pem(&std::fs::read_to_string(path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Several node processes; the first is the home of every state the tests create.
pub struct Cluster {
    /// Where keys, configs, SQLite files and logs live (removed on drop).
    pub dir: PathBuf,
    /// The nodes, home first.
    pub nodes: Vec<NodeProc>,
    /// The home's custody actor `<home>/ops` (seller of every deal).
    pub ops: String,
}

impl Cluster {
    /// Creates node directories for `(id, store URL)` pairs (a store of `sqlite` means a
    /// SQLite file in the node's directory): keys, `<id>/alice` keys, `node.toml`. Nothing
    /// runs yet; [`Cluster::configure`] writes the peers.
    pub fn prepare(name: &str, nodes: &[(&str, String)]) -> anyhow::Result<Self> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sst-faults-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut procs = Vec::new();
        for (id, store) in nodes {
            let node_dir = dir.join(id);
            let claims = [ports::claim()?, ports::claim()?];
            let (listen, api) = (claims[0].addr(), claims[1].addr());
            let text = |p: &Path| p.to_str().map(str::to_owned).context("utf-8 path");
            let mut args = vec![
                "node".to_owned(),
                "init".into(),
                "--id".into(),
                (*id).to_owned(),
                "--dir".into(),
                text(&node_dir)?,
                "--listen".into(),
                listen.to_string(),
                "--api".into(),
                api.to_string(),
            ];
            if store != "sqlite" {
                args.extend(["--store".to_owned(), store.clone()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let public_hex = sst_ok(&args)?;
            let public: PublicKey = serde_json::from_value(serde_json::json!(public_hex))?;
            let alice = node_dir.join("alice.pem");
            sst_ok(&["keygen", "--out", &text(&alice)?])?;
            procs.push(NodeProc {
                id: (*id).to_owned(),
                log: dir.join(format!("{id}.log")),
                dir: node_dir,
                listen,
                api,
                public,
                alice,
                _ports: claims,
                child: None,
            });
        }
        let home = procs.first().context("no nodes")?;
        let ops = format!("{}/ops", home.id);
        let ops_key = home.dir.join("ops.pem");
        sst_ok(&["keygen", "--out", ops_key.to_str().context("utf-8 path")?])?;
        Ok(Cluster {
            dir,
            nodes: procs,
            ops,
        })
    }

    /// The node `id`.
    pub fn node(&self, id: &str) -> anyhow::Result<&NodeProc> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    /// The network's node registry.
    pub fn registry(&self) -> NodeRegistry {
        self.nodes.iter().fold(NodeRegistry::new(), |r, n| {
            r.with(n.id.as_str().into(), n.public)
        })
    }

    /// Appends peers (each at its listener, or at `via[(from, to)]`, e.g. a proxy), every
    /// node's `alice`, the home's `ops` (custody on the home) and the contract (deployed by
    /// `ops`, its signature given) to every config.
    pub fn configure(&self, via: &BTreeMap<(String, String), SocketAddr>) -> anyhow::Result<()> {
        let home = &self.nodes[0];
        let ops_key = home.dir.join("ops.pem");
        let ops_key_text = ops_key.to_str().context("utf-8 path")?;
        let ops_public = hex::encode(read_actor_key(&ops_key)?.public_key().to_bytes());
        let signature = sst_ok(&[
            "node",
            "sign-contract",
            "--contract",
            CONTRACT,
            "--deployer",
            &self.ops,
            "--key",
            ops_key_text,
        ])?;
        let mut actors = format!(
            "\n[[actor]]\nid = \"{}\"\nkey = \"{ops_public}\"\n",
            self.ops
        );
        for n in &self.nodes {
            let key = hex::encode(read_actor_key(&n.alice)?.public_key().to_bytes());
            actors.push_str(&format!(
                "\n[[actor]]\nid = \"{}/alice\"\nkey = \"{key}\"\n",
                n.id
            ));
        }
        for n in &self.nodes {
            let mut text = String::new();
            for p in self.nodes.iter().filter(|p| p.id != n.id) {
                let addr = via
                    .get(&(n.id.clone(), p.id.clone()))
                    .copied()
                    .unwrap_or(p.listen);
                text.push_str(&format!(
                    "\n[[peer]]\nid = \"{}\"\naddress = \"{addr}\"\nkey = \"{}\"\n",
                    p.id,
                    hex::encode(p.public.to_bytes())
                ));
            }
            text.push_str(&actors);
            if n.id == home.id {
                text.push_str(&format!(
                    "\n[[custody]]\nactor = \"{}\"\nkey = \"{ops_key_text}\"\n",
                    self.ops
                ));
            }
            text.push_str(&format!(
                "\n[[contract]]\ncontract = \"{CONTRACT}\"\ndeployer = \"{}\"\nsignature = \"{signature}\"\n",
                self.ops
            ));
            let mut f = std::fs::OpenOptions::new().append(true).open(n.config())?;
            f.write_all(text.as_bytes())?;
        }
        Ok(())
    }

    /// Starts node `i` (on its store as it is) and waits until its API answers.
    pub async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        ensure!(!node.running(), "node {} already runs", node.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let child = Command::new(sst_bin()?)
            .args(["node", "run", "--config"])
            .arg(node.config())
            .env("SST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting node {}", node.id))?;
        node.child = Some(child);
        let probe = node.client()?;
        let started = Instant::now();
        loop {
            if !node.running() {
                bail!("node {} exited at start:\n{}", node.id, node.log_text());
            }
            if probe.health().await.is_ok() {
                return Ok(());
            }
            ensure!(
                started.elapsed() < START_DEADLINE,
                "node {} not up after {START_DEADLINE:?}:\n{}",
                node.id,
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts every node.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            self.start(i).await?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !std::thread::panicking() && std::env::var_os("SST_FAULTS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
