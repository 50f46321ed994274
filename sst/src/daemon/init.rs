//! `sst keygen` (an Ed25519 key as PKCS#8 PEM, for a node or an actor) and `sst node init`
//! (a node directory: its key and a `node.toml` to complete with peers, actors and
//! contracts).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{ensure, Context};
use sst::core::NodeKey;

/// Writes a fresh Ed25519 key to `out` (never over an existing file); returns its public key
/// as hex.
///
/// # Errors
/// `out` exists or cannot be written.
pub(crate) fn keygen(out: &Path) -> anyhow::Result<String> {
    ensure!(
        !out.exists(),
        "{} exists; not overwriting a key",
        out.display()
    );
    // Node and actor keys are the same kind of key (Ed25519, PKCS#8).
    let key = NodeKey::generate();
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
    write_private(out, &pem)?;
    Ok(hex::encode(key.public_key().to_bytes()))
}

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// What `sst node init` writes.
#[derive(Debug)]
pub(crate) struct Init<'a> {
    /// Node id.
    pub(crate) id: &'a str,
    /// Directory (created if missing).
    pub(crate) dir: &'a Path,
    /// Store URL (default: `<id>.db` in the directory).
    pub(crate) store: Option<&'a str>,
    /// Peer listener.
    pub(crate) listen: SocketAddr,
    /// Client API listener.
    pub(crate) api: SocketAddr,
}

/// Writes `DIR/node-key.pem` and `DIR/node.toml`; returns the config path and the node's
/// public key hex.
///
/// # Errors
/// Either file exists; the directory cannot be written.
pub(crate) fn node_init(init: &Init<'_>) -> anyhow::Result<(std::path::PathBuf, String)> {
    std::fs::create_dir_all(init.dir)
        .with_context(|| format!("creating {}", init.dir.display()))?;
    let config = init.dir.join("node.toml");
    ensure!(
        !config.exists(),
        "{} exists; not overwriting a node config",
        config.display()
    );
    let public = keygen(&init.dir.join("node-key.pem"))?;
    let store = init
        .store
        .map_or_else(|| format!("sqlite:{}.db", init.id), str::to_owned);
    let text = format!(
        "# SST node `{id}` (sst node run --config {path}).\n\
         # Relative paths are relative to this file's directory.\n\
         id = {id:?}\n\
         store = {store:?}\n\
         key = \"node-key.pem\"\n\
         listen = \"{listen}\"\n\
         api = \"{api}\"\n\
         # Clients connect with mutual TLS 1.3: their actor key, pinning this node's key below.\n\
         # false: plain HTTP (requests still signed by actor keys), for a trusted network only.\n\
         api_tls = true\n\
         \n\
         # This node's public key (give it to every peer): {public}\n\
         #\n\
         # Every other node of the network:\n\
         # [[peer]]\n\
         # id = \"other\"\n\
         # address = \"127.0.0.1:7001\"\n\
         # key = \"<its public node key, hex>\"\n\
         #\n\
         # Every actor of the network (its node is the part of the id before `/`):\n\
         # [[actor]]\n\
         # id = \"{id}/alice\"\n\
         # key = \"<public key hex printed by sst keygen>\"\n\
         #\n\
         # Service actors of this node whose keys it holds (custody mode, POST /v1/submit):\n\
         # [[custody]]\n\
         # actor = \"{id}/ops\"\n\
         # key = \"ops.pem\"\n\
         #\n\
         # Built-in contract versions to load (real-estate-deal@1, real-estate-deal@2, rfq@1):\n\
         # [[contract]]\n\
         # contract = \"real-estate-deal@1\"\n\
         # deployer = \"{id}/ops\"\n\
         # signature = \"<hex; optional where the deployer's key is in custody>\"\n\
         #\n\
         # This node's own limits for endorsing changes (contracts on the `endorsed` protocol):\n\
         # a change whose value at section.key is above max is not endorsed here.\n\
         # [[endorsement_limit]]\n\
         # contract = \"settlement\"\n\
         # path = \"instruction.amount\"\n\
         # max = 1000000\n",
        id = init.id,
        path = config.display(),
        listen = init.listen,
        api = init.api,
    );
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    Ok((config, public))
}
