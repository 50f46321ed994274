//! The node daemon's TOML configuration (`node.toml`): parsed and validated once into a
//! [`DaemonConfig`] by [`DaemonConfig::load`]; nothing downstream re-checks it.
//!
//! ```toml
//! id = "acme"                          # this node
//! store = "sqlite:acme.db"             # any store URL `sst verify --db` takes
//! key = "node-key.pem"                 # this node's Ed25519 key (PKCS#8 PEM)
//! listen = "127.0.0.1:7000"            # peer transport listener
//! api = "127.0.0.1:7100"               # client API listener
//! api_tls = true                       # mutual TLS 1.3 with actor keys (default); false:
//!                                      # plain HTTP, for a trusted network only (curl)
//!
//! [[peer]]                             # every other node of the network
//! id = "globex"
//! address = "127.0.0.1:7001"
//! key = "<hex Ed25519 public node key>"
//!
//! [[actor]]                            # every actor of the network
//! id = "acme/alice"                    # node: the part before `/`, unless `node = "…"`
//! key = "<hex Ed25519 public key>"
//!
//! [[custody]]                          # service actors whose keys this node holds
//! actor = "acme/ops"
//! key = "ops.pem"
//!
//! [[contract]]                         # built-in contract versions to load and deploy
//! contract = "real-estate-deal@1"
//! deployer = "acme/ops"
//! signature = "<hex>"                  # the deployer's; optional when this node holds its key
//!
//! [[sink]]                             # notifications of committed events to a broker
//! name = "deals"                       # unique; names the sink's durable cursor in the store
//! kind = "redis"                       # kafka | rabbitmq | nats | mqtt | postgres | redis
//! url = "redis://127.0.0.1:6379"
//! topic = "sst.{contract}"             # default sst.{contract}.{name}.{outcome}; also {type},
//!                                      # {subject} (state id), {node}
//! start = "earliest"                   # or "latest": only events committed from now on
//! [sink.filter]                        # optional; an empty list matches everything
//! contracts = ["real-estate-deal"]
//! names = ["create", "set_price"]      # methods or business events
//! outcomes = ["applied"]
//! state_prefixes = ["deal-"]
//! [sink.options]                       # kind-specific (e.g. exchange = "sst" for rabbitmq)
//!
//! [[endorsement_limit]]                # this node's own rule for the `endorsed` protocol:
//! contract = "settlement"              # it refuses to endorse a change of a state of this
//! path = "instruction.amount"          # contract (any version) whose value at section.key…
//! max = 1000000                        # is above max (or not a number); the home node then
//!                                      # rejects the change `not_endorsed`, naming this node
//! ```
//!
//! `[[sinks]]` is accepted for `[[sink]]`. Every kind is compiled into the `sst` binary; a
//! kind this build lacks, a bad topic template or filter, or two sinks of one name are
//! refused when the file is read ([`sst_notify::ConfigError`]). `sst node run` starts one
//! notifier per sink ([`sst_notify::Notifier`]) and stops them on SIGTERM.
//!
//! Relative paths are relative to the config file's directory.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use serde::Deserialize;
use sst::core::{
    Actor, ActorId, ActorKey, ActorStatus, ContractRef, NodeId, NodeKey, NodeRegistry, PublicKey,
};

use crate::store_url::StoreUrl;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    id: String,
    store: String,
    key: PathBuf,
    listen: SocketAddr,
    api: SocketAddr,
    #[serde(default = "yes")]
    api_tls: bool,
    #[serde(default)]
    peer: Vec<PeerEntry>,
    #[serde(default)]
    actor: Vec<ActorEntry>,
    #[serde(default)]
    custody: Vec<CustodyEntry>,
    #[serde(default)]
    contract: Vec<ContractEntry>,
    #[serde(default, alias = "sinks")]
    sink: Vec<sst_notify::SinkConfig>,
    #[serde(default)]
    endorsement_limit: Vec<super::guard::LimitEntry>,
}

fn yes() -> bool {
    true
}

/// Another node of the network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeerEntry {
    /// Its id.
    pub(crate) id: NodeId,
    /// Its peer transport address.
    pub(crate) address: SocketAddr,
    /// Its public node key.
    pub(crate) key: PublicKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorEntry {
    id: String,
    node: Option<String>,
    key: PublicKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustodyEntry {
    actor: String,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractEntry {
    contract: String,
    deployer: String,
    signature: Option<String>,
}

/// A contract version to load from the built-in registry and deploy.
#[derive(Debug, Clone)]
pub(crate) struct ContractDeployment {
    /// Which version.
    pub(crate) contract: ContractRef,
    /// Who deployed it.
    pub(crate) deployer: ActorId,
    /// The deployer's signature over its identity (`None`: this node signs it with the
    /// deployer's key, which it holds in custody).
    pub(crate) signature: Option<[u8; 64]>,
}

/// A validated daemon configuration.
pub(crate) struct DaemonConfig {
    /// This node.
    pub(crate) id: NodeId,
    /// Its store.
    pub(crate) store: StoreUrl,
    /// Its node key.
    pub(crate) node_key: Arc<NodeKey>,
    /// Peer transport listener.
    pub(crate) listen: SocketAddr,
    /// Client API listener.
    pub(crate) api: SocketAddr,
    /// Whether the client API runs over mutual TLS (else plain HTTP).
    pub(crate) api_tls: bool,
    /// The other nodes.
    pub(crate) peers: Vec<PeerEntry>,
    /// Every actor of the network.
    pub(crate) actors: Vec<Actor>,
    /// Keys this node holds for its service actors.
    pub(crate) custody: Vec<(ActorId, ActorKey)>,
    /// Contract versions to load and deploy.
    pub(crate) contracts: Vec<ContractDeployment>,
    /// Notification sinks, validated.
    pub(crate) sinks: Vec<sst_notify::SinkSpec>,
    /// This node's own endorsement limits (`endorsed` protocol).
    pub(crate) endorsement_limits: Vec<super::guard::EndorsementLimit>,
}

impl std::fmt::Debug for DaemonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonConfig")
            .field("id", &self.id)
            .field("store", &self.store.label())
            .field("listen", &self.listen)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// The node an actor id names before its first `/`.
pub(crate) fn node_of(actor: &str) -> &str {
    actor.split('/').next().unwrap_or_default()
}

fn read_pem(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))
}

/// Reads an actor key from a PKCS#8 PEM file.
pub(crate) fn actor_key(path: &Path) -> anyhow::Result<ActorKey> {
    ActorKey::from_pkcs8_pem(&read_pem(path)?)
        .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))
}

/// Parses `name@version`.
pub(crate) fn contract_ref(s: &str) -> anyhow::Result<ContractRef> {
    let (name, version) = s
        .rsplit_once('@')
        .with_context(|| format!("contract `{s}`: expected name@version"))?;
    let version = version
        .parse()
        .with_context(|| format!("contract `{s}`: version is not a number"))?;
    Ok(ContractRef::new(name, version))
}

impl DaemonConfig {
    /// Reads and validates the config file `path`.
    ///
    /// # Errors
    /// An unreadable or malformed file; keys that do not parse; a peer or actor declared
    /// twice; a custody key that is not its actor's registered key or whose actor does not
    /// belong to this node; a contract without a built-in version.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let file: NodeFile =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_owned()
            } else {
                dir.join(p)
            }
        };
        let store_text = match file.store.strip_prefix("sqlite:") {
            Some(p) if !p.starts_with("//") => format!("sqlite:{}", rel(Path::new(p)).display()),
            _ if !file.store.contains("://") => {
                format!("sqlite:{}", rel(Path::new(&file.store)).display())
            }
            _ => file.store.clone(),
        };
        let store = StoreUrl::parse(&store_text)?;
        let node_key = NodeKey::from_pkcs8_pem(&read_pem(&rel(&file.key))?)
            .map(Arc::new)
            .map_err(|e| anyhow::anyhow!("node key {}: {e}", file.key.display()))?;
        let id = NodeId::from(file.id.as_str());
        let mut nodes = BTreeSet::from([id.clone()]);
        for p in &file.peer {
            ensure!(nodes.insert(p.id.clone()), "node `{}` declared twice", p.id);
        }
        let mut actors = Vec::new();
        let mut seen = BTreeSet::new();
        for a in &file.actor {
            ensure!(seen.insert(a.id.clone()), "actor `{}` declared twice", a.id);
            let node = a.node.clone().unwrap_or_else(|| node_of(&a.id).to_owned());
            ensure!(
                nodes.contains(&NodeId::from(node.as_str())),
                "actor `{}` belongs to node `{node}`, which is neither this node nor a peer",
                a.id
            );
            actors.push(Actor {
                id: ActorId::from(a.id.as_str()),
                node: NodeId::from(node.as_str()),
                public_key: a.key,
                status: ActorStatus::Active,
            });
        }
        let mut custody = Vec::new();
        for c in &file.custody {
            let key = actor_key(&rel(&c.key))?;
            let Some(actor) = actors.iter().find(|a| a.id.as_str() == c.actor) else {
                bail!(
                    "custody actor `{}` is not declared as an [[actor]]",
                    c.actor
                );
            };
            ensure!(
                actor.node == id,
                "custody actor `{}` belongs to node `{}`, not to this node",
                c.actor,
                actor.node
            );
            ensure!(
                actor.public_key == key.public_key(),
                "custody key {} is not the registered key of `{}`",
                c.key.display(),
                c.actor
            );
            custody.push((actor.id.clone(), key));
        }
        let mut contracts = Vec::new();
        for c in &file.contract {
            let contract = contract_ref(&c.contract)?;
            ensure!(
                super::contracts::builtin(&contract).is_some(),
                "contract `{contract}` is not built in (built in: {})",
                super::contracts::BUILTIN.join(", ")
            );
            let signature = match &c.signature {
                Some(hex_sig) => {
                    let mut sig = [0u8; 64];
                    hex::decode_to_slice(hex_sig, &mut sig).with_context(|| {
                        format!("contract `{contract}`: signature is not 64 bytes of hex")
                    })?;
                    Some(sig)
                }
                None => {
                    ensure!(
                        custody.iter().any(|(a, _)| a.as_str() == c.deployer),
                        "contract `{contract}`: no signature, and this node holds no key of its \
                         deployer `{}`",
                        c.deployer
                    );
                    None
                }
            };
            contracts.push(ContractDeployment {
                contract,
                deployer: ActorId::from(c.deployer.as_str()),
                signature,
            });
        }
        let sinks = sst_notify::SinkConfig::validate_all(&file.sink)
            .with_context(|| format!("config {}: [[sink]]", path.display()))?;
        let endorsement_limits = file
            .endorsement_limit
            .iter()
            .map(super::guard::EndorsementLimit::from_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        Ok(DaemonConfig {
            id,
            store,
            node_key,
            listen: file.listen,
            api: file.api,
            api_tls: file.api_tls,
            peers: file.peer,
            actors,
            custody,
            contracts,
            sinks,
            endorsement_limits,
        })
    }

    /// The network's node registry: the peers' keys and this node's own.
    pub(crate) fn registry(&self) -> NodeRegistry {
        self.peers.iter().fold(
            NodeRegistry::new().with(self.id.clone(), self.node_key.public_key()),
            |r, p| r.with(p.id.clone(), p.key),
        )
    }
}
