//! `network.json`: what `sst network up` started (node ids, PIDs, addresses, keys, store URLs,
//! the node registry), so that `sst network down|status` and clients find the nodes again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use serde::{Deserialize, Serialize};
use sst::core::{ActorKey, NodeRegistry, PublicKey};
use sst_client::Client;

/// The manifest's file name in the network directory.
pub(crate) const FILE: &str = "network.json";
/// The format written in [`Manifest::format`].
pub(crate) const FORMAT: &str = "sst-local-network/1";

/// A local network as started by `sst network up`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// Always [`FORMAT`].
    pub(crate) format: String,
    /// The network directory.
    pub(crate) dir: PathBuf,
    /// Every node's public node key (also in `registry.json`, for `sst verify --registry`).
    pub(crate) registry: NodeRegistry,
    /// The nodes, in start order.
    pub(crate) nodes: Vec<NodeEntry>,
}

/// One node process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeEntry {
    /// Node id.
    pub(crate) id: String,
    /// The `sst node run` process.
    pub(crate) pid: u32,
    /// Its config file.
    pub(crate) config: PathBuf,
    /// Where its stdout and stderr go.
    pub(crate) log: PathBuf,
    /// Peer transport address.
    pub(crate) listen: SocketAddr,
    /// Client API address (mutual TLS 1.3).
    pub(crate) api: SocketAddr,
    /// Its public node key (clients pin it).
    pub(crate) node_key: PublicKey,
    /// Its store URL, as `sst verify --db` takes it.
    pub(crate) store: String,
    /// The actors of this node and their key files.
    pub(crate) actors: Vec<ActorEntry>,
}

/// An actor of a node and where its key is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActorEntry {
    /// Actor id (`node/name`).
    pub(crate) id: String,
    /// Its private key (PKCS#8 PEM).
    pub(crate) key_file: PathBuf,
    /// Whether its node also holds the key (custody mode: `POST /v1/submit`).
    pub(crate) custody: bool,
}

impl NodeEntry {
    /// A client of this node's API acting as its actor `actor` (TLS, pinning the node key).
    ///
    /// # Errors
    /// No such actor; an unreadable key.
    pub(crate) fn client(&self, actor: &str) -> anyhow::Result<Client> {
        let entry = self
            .actors
            .iter()
            .find(|a| a.id == actor)
            .with_context(|| format!("node {} has no actor {actor}", self.id))?;
        let pem = std::fs::read_to_string(&entry.key_file)
            .with_context(|| format!("reading {}", entry.key_file.display()))?;
        let key = ActorKey::from_pkcs8_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: {e}", entry.key_file.display()))?;
        Ok(Client::with_tls(
            self.api,
            entry.id.as_str(),
            key,
            self.node_key,
        )?)
    }

    /// A client acting as this node's first actor.
    ///
    /// # Errors
    /// As [`NodeEntry::client`]; a node without actors.
    pub(crate) fn first_client(&self) -> anyhow::Result<Client> {
        let actor = self
            .actors
            .first()
            .with_context(|| format!("node {} has no actor", self.id))?;
        self.client(&actor.id)
    }
}

impl Manifest {
    /// The manifest's path in `dir`.
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// Reads `dir/network.json`.
    ///
    /// # Errors
    /// No network was started there; the file is not a manifest of this format.
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is a network up there? `sst network up --dir {}`)",
                path.display(),
                dir.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a network manifest", path.display()))?;
        ensure!(
            manifest.format == FORMAT,
            "{}: format {}, expected {FORMAT}",
            path.display(),
            manifest.format
        );
        Ok(manifest)
    }

    /// Writes `dir/network.json`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub(crate) fn write(&self) -> anyhow::Result<PathBuf> {
        let path = Self::path(&self.dir);
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The node `id`.
    ///
    /// # Errors
    /// No such node.
    pub(crate) fn node(&self, id: &str) -> anyhow::Result<&NodeEntry> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id} in the network"))
    }
}
