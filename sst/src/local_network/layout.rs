//! The files of a local network: per node a directory with its node key and `node.toml`
//! (every other node as a peer with address and key, every actor, its custody keys, the
//! real-estate contract with its deployer's signature), the actors' keys in `keys/`, and
//! `registry.json`; store URLs for SQLite files or fresh schemas / databases / prefixes on the
//! machine's servers; free loopback ports.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{bail, ensure, Context};
use sst::core::{ActorKey, ContractRef, HashAlg, NodeKey, NodeRegistry};
use sst::node::contracts::RealEstateDeal;
use sst::node::ContractRegistry;

use super::manifest::{ActorEntry, NodeEntry};

/// The contract every node of a local network loads, as `name@version`.
pub(crate) const CONTRACT: &str = "real-estate-deal@1";

/// Where a node keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// A SQLite file in the node's directory.
    Sqlite,
    /// A fresh schema on the machine's PostgreSQL.
    Postgres,
    /// A fresh database on the machine's MariaDB / MySQL.
    Mysql,
    /// A fresh collection prefix on the MongoDB server of `SST_MONGO_URL`.
    Mongo,
}

impl Backend {
    /// Parses `sqlite`, `postgres`, `mysql` (or `mariadb`), `mongo`.
    pub(crate) fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s.trim() {
            "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" => Backend::Postgres,
            "mysql" | "mariadb" => Backend::Mysql,
            "mongo" | "mongodb" => Backend::Mongo,
            other => bail!("unknown backend `{other}` (sqlite, postgres, mysql, mongo)"),
        })
    }

    /// The `sst` Cargo feature compiling its adapter in.
    pub(crate) fn feature(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
            Backend::Mongo => "mongo",
        }
    }

    /// The store URL of node `id` (`tag` makes server-side names fresh), and the form written
    /// into its config (a SQLite file relative to the node directory).
    fn store(self, node_dir: &Path, id: &str, tag: &str) -> anyhow::Result<(String, String)> {
        let env = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let with = |base: String, param: &str| {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}{param}")
        };
        let name = format!(
            "sst_{tag}_{}",
            id.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        let url = match self {
            Backend::Sqlite => {
                let file = format!("{id}.db");
                let absolute = format!("sqlite:{}", node_dir.join(&file).display());
                return Ok((absolute, format!("sqlite:{file}")));
            }
            Backend::Postgres => with(
                env(
                    "SST_POSTGRES_URL",
                    "postgresql://postgres@127.0.0.1:5432/postgres",
                ),
                &format!("schema={name}"),
            ),
            Backend::Mysql => with(
                env("SST_MYSQL_URL", "mysql://root@127.0.0.1:3306"),
                &format!("database={name}"),
            ),
            Backend::Mongo => {
                let base = env("SST_MONGO_URL", "");
                ensure!(
                    !base.is_empty(),
                    "a mongo node needs SST_MONGO_URL (eval \"$(cargo xtask mongo-server start)\")"
                );
                with(base, &format!("prefix={name}_"))
            }
        };
        Ok((url.clone(), url))
    }
}

/// A node to lay out.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    /// Node id.
    pub(crate) id: String,
    /// Its actors: the name after `id/`, and whether the node holds its key in custody.
    pub(crate) actors: Vec<(String, bool)>,
    /// Where it keeps its data.
    pub(crate) backend: Backend,
}

/// What [`write`] laid out.
#[derive(Debug)]
pub(crate) struct Layout {
    /// The nodes, in the order given (`pid` 0: not started yet).
    pub(crate) nodes: Vec<NodeEntry>,
    /// Every node's public node key.
    pub(crate) registry: NodeRegistry,
}

/// A free loopback port (bound, then released).
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
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
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// A name that is fresh enough for server-side schemas of one run.
fn fresh_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:08x}",
        (nanos as u64 ^ u64::from(std::process::id())) & 0xffff_ffff
    )
}

/// Writes keys and configs of `specs` in `dir`; the contract is deployed by actor `deployer`
/// (one of the specs' actors), whose signature goes into every config.
///
/// # Errors
/// A node directory exists already (a network was laid out there before); an adapter this
/// binary lacks; files that cannot be written.
pub(crate) fn write(dir: &Path, specs: &[NodeSpec], deployer: &str) -> anyhow::Result<Layout> {
    ensure!(!specs.is_empty(), "a network needs at least one node");
    for s in specs {
        ensure!(
            sst::adapters().contains(&s.backend.feature()),
            "node {}: this sst binary was built without the {} adapter; rebuild with \
             `cargo build --release -p sst --features postgres,mysql,mongo`",
            s.id,
            s.backend.feature()
        );
        let node_dir = dir.join(&s.id);
        ensure!(
            !node_dir.exists(),
            "{} exists: a network was laid out in {} before; remove it or choose another --dir",
            node_dir.display(),
            dir.display()
        );
    }
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir)
        .with_context(|| format!("creating {}", keys_dir.display()))?;
    let tag = fresh_tag();
    // Actors first: every config lists all of them, and the deployer signs the contract.
    let mut actor_keys = Vec::new();
    let mut actors_toml = String::new();
    for s in specs {
        for (name, custody) in &s.actors {
            let id = format!("{}/{name}", s.id);
            let key = ActorKey::generate();
            let key_file = keys_dir.join(format!("{}.{name}.pem", s.id));
            write_private(&key_file, &key.to_pkcs8_pem()?)?;
            let public = hex::encode(key.public_key().to_bytes());
            writeln!(actors_toml, "\n[[actor]]\nid = {id:?}\nkey = \"{public}\"")?;
            actor_keys.push((s.id.clone(), id, key, key_file, *custody));
        }
    }
    let (_, _, deployer_key, _, _) = actor_keys
        .iter()
        .find(|(_, id, ..)| id == deployer)
        .with_context(|| format!("deployer {deployer} is no actor of the network"))?;
    let contract = ContractRef::new("real-estate-deal", 1);
    let record = ContractRegistry::new().with(RealEstateDeal).deployment(
        &contract,
        HashAlg::Blake3,
        deployer.into(),
        deployer_key,
    )?;
    let signature = hex::encode(record.signature.signature.0);

    let mut nodes = Vec::new();
    let mut registry = NodeRegistry::new();
    for s in specs {
        let node_dir = dir.join(&s.id);
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("creating {}", node_dir.display()))?;
        let key = NodeKey::generate();
        write_private(
            &node_dir.join("node-key.pem"),
            &key.to_pkcs8_pem()
                .map_err(|e| anyhow::anyhow!("encoding a node key: {e}"))?,
        )?;
        let (store, _) = s.backend.store(&node_dir, &s.id, &tag)?;
        let actors = actor_keys
            .iter()
            .filter(|(node, ..)| *node == s.id)
            .map(|(_, id, _, key_file, custody)| ActorEntry {
                id: id.clone(),
                key_file: key_file.clone(),
                custody: *custody,
            })
            .collect();
        registry = registry.with(sst::core::NodeId::from(s.id.as_str()), key.public_key());
        nodes.push(NodeEntry {
            id: s.id.clone(),
            pid: 0,
            config: node_dir.join("node.toml"),
            log: dir.join(format!("{}.log", s.id)),
            listen: free_addr()?,
            api: free_addr()?,
            node_key: key.public_key(),
            store,
            actors,
        });
    }
    for (n, s) in nodes.iter().zip(specs) {
        let (_, store_in_config) = s.backend.store(&dir.join(&s.id), &s.id, &tag)?;
        // The same server-side name as above: `tag` is fixed for the run.
        let mut text = format!(
            "# SST node `{id}` of the local network in {dir} (sst network up).\n\
             id = {id:?}\n\
             store = {store_in_config:?}\n\
             key = \"node-key.pem\"\n\
             listen = \"{listen}\"\n\
             api = \"{api}\"\n\
             api_tls = true\n",
            id = n.id,
            dir = dir.display(),
            listen = n.listen,
            api = n.api,
        );
        for p in nodes.iter().filter(|p| p.id != n.id) {
            let key = hex::encode(p.node_key.to_bytes());
            writeln!(
                text,
                "\n[[peer]]\nid = {:?}\naddress = \"{}\"\nkey = \"{key}\"",
                p.id, p.listen
            )?;
        }
        text.push_str(&actors_toml);
        for a in n.actors.iter().filter(|a| a.custody) {
            writeln!(
                text,
                "\n[[custody]]\nactor = {:?}\nkey = {:?}",
                a.id,
                a.key_file.display().to_string()
            )?;
        }
        writeln!(
            text,
            "\n[[contract]]\ncontract = \"{CONTRACT}\"\ndeployer = {deployer:?}\nsignature = \"{signature}\""
        )?;
        std::fs::write(&n.config, text)
            .with_context(|| format!("writing {}", n.config.display()))?;
    }
    let registry_file = dir.join("registry.json");
    std::fs::write(&registry_file, serde_json::to_string_pretty(&registry)?)
        .with_context(|| format!("writing {}", registry_file.display()))?;
    Ok(Layout { nodes, registry })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_store_urls_name_a_fresh_place_per_node() -> anyhow::Result<()> {
        let dir = Path::new("/tmp/x/buyer");
        let (pg, _) = Backend::Postgres.store(dir, "buyer", "ab12")?;
        assert!(pg.ends_with("?schema=sst_ab12_buyer"), "{pg}");
        let (my, _) = Backend::Mysql.store(dir, "node-5", "ab12")?;
        assert!(my.ends_with("?database=sst_ab12_node_5"), "{my}");
        let (lite, in_config) = Backend::Sqlite.store(dir, "buyer", "ab12")?;
        assert_eq!(lite, "sqlite:/tmp/x/buyer/buyer.db");
        assert_eq!(in_config, "sqlite:buyer.db");
        assert!(Backend::parse("oracle").is_err());
        Ok(())
    }
}
