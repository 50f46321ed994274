//! The daemon's command line: clap definitions of `keygen`, `node …` and the client commands,
//! and what each does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use sst::core::{ContractRecord, HashAlg, PublicKey, StateId};
use sst_client::api::{IntentBody, VerdictBody};
use sst_client::Client;

use super::config::{actor_key, contract_ref};
use super::init::{keygen, node_init, Init};

/// The daemon's subcommands (flattened into `sst`'s).
#[derive(Debug, Subcommand)]
pub(crate) enum DaemonCommand {
    /// Write a fresh Ed25519 key (PKCS#8 PEM) for a node or an actor; prints its public key
    /// as hex.
    Keygen {
        /// The key file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Set up and run a node daemon.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Audit a node with its peers: verify its database locally (as `sst verify`, with the
    /// registry from its config), then ask each configured peer over mutual TLS, as this
    /// node, for its signed log head, the checkpoint it witnessed of this node's log and the
    /// heads of shared states, and compare. Finds what no local check can: a log tail cut or
    /// rewritten after a peer witnessed it, a peer's rolled-back or forked log, diverged
    /// shared states. Exit status: 0 clean, 1 problems found or a peer not reachable, 2 error.
    Audit {
        /// The node's config file (node.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Submit an intent through a node's client API: signed here with the actor's key
    /// (the node never sees it), or with `--custody ACTOR` signed by the node for a service
    /// actor whose key it holds. Prints the verdict as JSON; exit status 1 unless applied.
    Submit {
        #[command(flatten)]
        client: ClientArgs,
        /// Have the node sign as this service actor (custody mode) instead.
        #[arg(long, value_name = "ACTOR")]
        custody: Option<String>,
        /// The intent as JSON, or `@FILE`: `{"intent":"create","state_id":…,"contract":
        /// {"name":…,"version":1},"parties":{"role":["actor"]},"sections":{…}}`,
        /// `{"intent":"change","state_id":…,"sections":{…}}`,
        /// `{"intent":"call","state_id":…,"method":…,"args":…}`.
        #[arg(value_name = "JSON")]
        intent: String,
    },
    /// Print a state as the node holds it, narrowed to what the actor may read (JSON).
    State {
        #[command(flatten)]
        client: ClientArgs,
        /// The state id.
        #[arg(value_name = "STATE")]
        id: String,
    },
    /// Print the committed events the actor may read, one JSON line each: the recorded events,
    /// or with `--cloudevents` the CloudEvents notifications a sink would publish (same
    /// formatter and filter as `[[sink]]`, narrowed to what the actor may read).
    Events {
        #[command(flatten)]
        client: ClientArgs,
        /// Start after this log position.
        #[arg(long, value_name = "POS", default_value_t = 0)]
        after: u64,
        /// Keep the stream open and print new events as they are committed.
        #[arg(long)]
        follow: bool,
        /// Print CloudEvents 1.0 notifications instead of event records.
        #[arg(long)]
        cloudevents: bool,
        /// With --cloudevents: only these contracts (repeatable).
        #[arg(long = "contract", value_name = "NAME", requires = "cloudevents")]
        contracts: Vec<String>,
        /// With --cloudevents: only these methods or business events (repeatable).
        #[arg(long = "name", value_name = "NAME", requires = "cloudevents")]
        names: Vec<String>,
        /// With --cloudevents: only this outcome, applied or rejected (repeatable).
        #[arg(long = "outcome", value_name = "OUTCOME", requires = "cloudevents")]
        outcomes: Vec<String>,
        /// With --cloudevents: only states whose id starts with this (repeatable).
        #[arg(long = "state-prefix", value_name = "PREFIX", requires = "cloudevents")]
        state_prefixes: Vec<String>,
    },
    /// Print curl header options signing one request to a plain-HTTP client API as an actor
    /// (valid once, for two minutes): `curl $(sst sign-request --actor A --key K
    /// /v1/states/deal-1) http://127.0.0.1:7100/v1/states/deal-1`.
    SignRequest {
        /// The signing actor's id.
        #[arg(long, value_name = "ACTOR")]
        actor: String,
        /// The signing actor's key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The HTTP method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The exact body that will be sent (e.g. with curl --data).
        #[arg(long, value_name = "BODY", default_value = "")]
        body: String,
        /// The path and query, exactly as requested.
        #[arg(value_name = "PATH")]
        path: String,
        /// The node's public key (hex): also print the options that make curl pin it on a
        /// mutual-TLS API (`-k --pinnedpubkey sha256//…`: the node's certificate is
        /// self-signed, its key is what identifies it).
        #[arg(long, value_name = "HEX")]
        node_key: Option<String>,
    },
    /// Contracts deployed at run time.
    #[command(subcommand)]
    Contract(ContractCommand),
    /// Print a state's sync status on the node (JSON).
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// The state id.
        #[arg(value_name = "STATE")]
        id: String,
    },
}

/// `sst contract …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ContractCommand {
    /// Deploy a JavaScript contract version at run time: reads FILE (an ES module exporting
    /// `contract` and its methods), computes its descriptor and code hash, signs the
    /// deployment as the actor (the deployer) and posts it as a `DeployContract` event; the
    /// node sequences it and every node installs the version without a restart. Prints the
    /// verdict as JSON; exit status 1 unless applied.
    Deploy {
        #[command(flatten)]
        client: ClientArgs,
        /// The contract source file (`.js`).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `sst node …`.
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Create a node directory: DIR/node-key.pem and DIR/node.toml (to complete with peers,
    /// actors and contracts).
    Init {
        /// The node id.
        #[arg(long, value_name = "ID")]
        id: String,
        /// The node directory (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Store URL (default: the SQLite file ID.db in DIR).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Peer transport listener.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
        /// Client API listener.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7100")]
        api: SocketAddr,
    },
    /// Run a node until SIGTERM or SIGINT.
    Run {
        /// The node's config file (node.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print a deployer's signature (hex) over a built-in contract version's identity, for
    /// the `signature` of a `[[contract]]` entry on nodes that do not hold its key.
    SignContract {
        /// The version, as name@version.
        #[arg(long, value_name = "NAME@VERSION")]
        contract: String,
        /// The deployer's actor id.
        #[arg(long, value_name = "ACTOR")]
        deployer: String,
        /// The deployer's key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

/// Where the node's API is and who is calling.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The node's client API address.
    #[arg(long, value_name = "ADDR")]
    api: SocketAddr,
    /// The calling actor's id.
    #[arg(long, value_name = "ACTOR")]
    actor: String,
    /// The calling actor's key file (PKCS#8 PEM): over mutual TLS it is the client's TLS
    /// identity (the connection authenticates every request), on plain HTTP it signs each
    /// request; it always signs the client's own intents.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The node's public key (hex, as `sst node init` printed it): connect with mutual TLS
    /// and accept only a server holding it. Without it: plain HTTP (a node with
    /// `api_tls = false`).
    #[arg(long, value_name = "HEX")]
    node_key: Option<String>,
}

/// A `--node-key` value: a hex Ed25519 public key.
fn node_key_arg(hex: &str) -> anyhow::Result<PublicKey> {
    serde_json::from_value(serde_json::Value::String(hex.to_owned()))
        .context("--node-key: not a hex Ed25519 public key")
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let key = actor_key(&self.key)?;
        let Some(node_key) = &self.node_key else {
            return Ok(Client::new(self.api, self.actor.as_str(), key));
        };
        let node_key = node_key_arg(node_key)?;
        Ok(Client::with_tls(
            self.api,
            self.actor.as_str(),
            key,
            node_key,
        )?)
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn read_intent(arg: &str) -> anyhow::Result<IntentBody> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(Path::new(path))
            .with_context(|| format!("reading intent file {path}"))?,
        None => arg.to_owned(),
    };
    serde_json::from_str(&text).context("parsing the intent JSON")
}

/// curl's `--pinnedpubkey` value for an Ed25519 key: `sha256//` and the base64 SHA-256 of its
/// DER SubjectPublicKeyInfo (RFC 8410: the algorithm identifier 1.3.101.112, then the key).
fn curl_pin(key: &PublicKey) -> String {
    use base64::Engine;
    use sha2::Digest;
    const ED25519_SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(&key.to_bytes());
    format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&spki))
    )
}

/// Runs one daemon command; `Ok(false)` for exit status 1.
pub(crate) async fn run(command: DaemonCommand) -> anyhow::Result<bool> {
    match command {
        DaemonCommand::Keygen { out } => {
            println!("{}", keygen(&out)?);
            Ok(true)
        }
        DaemonCommand::Node(NodeCommand::Init {
            id,
            dir,
            store,
            listen,
            api,
        }) => {
            let (config, public) = node_init(&Init {
                id: &id,
                dir: &dir,
                store: store.as_deref(),
                listen,
                api,
            })?;
            println!("{public}");
            eprintln!(
                "wrote {} and its node key; node {id}'s public key is above",
                config.display()
            );
            Ok(true)
        }
        DaemonCommand::Contract(ContractCommand::Deploy { client, file }) => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let descriptor = sst_contract_js::descriptor_of(&source)
                .with_context(|| format!("{} is not a deployable contract", file.display()))?;
            let record = ContractRecord::sign(
                descriptor,
                HashAlg::Blake3,
                client.actor.as_str().into(),
                &actor_key(&client.key)?,
            )
            .with_source(source);
            eprintln!(
                "deploying {} (identity {}, code {})",
                record.contract(),
                record.identity,
                record.descriptor.code_hash
            );
            let verdict = client.client()?.deploy(&record).await?;
            print_json(&verdict)?;
            Ok(matches!(verdict, VerdictBody::Applied { .. }))
        }
        DaemonCommand::Audit { config } => {
            Ok(super::audit::run(&config).await? == super::audit::AuditVerdict::Clean)
        }
        DaemonCommand::Node(NodeCommand::Run { config }) => {
            super::run::run(&config).await.map(|()| true)
        }
        DaemonCommand::Node(NodeCommand::SignContract {
            contract,
            deployer,
            key,
        }) => {
            let contract = contract_ref(&contract)?;
            let code = super::contracts::builtin(&contract)
                .with_context(|| format!("contract {contract} is not built in"))?;
            let mut registry = sst::node::ContractRegistry::new();
            registry.insert(code);
            let record: ContractRecord = registry.deployment(
                &contract,
                HashAlg::Blake3,
                deployer.as_str().into(),
                &actor_key(&key)?,
            )?;
            println!("{}", hex::encode(record.signature.signature.0));
            Ok(true)
        }
        DaemonCommand::SignRequest {
            actor,
            key,
            method,
            body,
            path,
            node_key,
        } => {
            let headers = sst_client::auth::sign_request(
                &actor_key(&key)?,
                &actor.as_str().into(),
                &method.to_ascii_uppercase(),
                &path,
                body.as_bytes(),
            );
            let mut options: Vec<String> = headers
                .iter()
                .map(|(name, value)| format!("-H{name}:{value}"))
                .collect();
            if let Some(key) = node_key {
                options.push("-k".to_owned());
                options.push(format!("--pinnedpubkey {}", curl_pin(&node_key_arg(&key)?)));
            }
            println!("{}", options.join(" "));
            Ok(true)
        }
        DaemonCommand::Submit {
            client,
            custody,
            intent,
        } => {
            let intent = read_intent(&intent)?;
            let c = client.client()?;
            let verdict = match custody {
                Some(actor) => c.submit_custody(actor.as_str(), intent).await?,
                None => c.submit(intent).await?,
            };
            print_json(&verdict)?;
            Ok(matches!(verdict, VerdictBody::Applied { .. }))
        }
        DaemonCommand::State { client, id } => {
            match client.client()?.state(&StateId::from(id.as_str())).await? {
                Some(state) => print_json(&state).map(|()| true),
                None => {
                    eprintln!("state {id} is not held by the node");
                    Ok(false)
                }
            }
        }
        DaemonCommand::Status { client, id } => {
            match client.client()?.status(&StateId::from(id.as_str())).await? {
                Some(status) => print_json(&status).map(|()| true),
                None => {
                    eprintln!("the node neither holds nor refused state {id}");
                    Ok(false)
                }
            }
        }
        DaemonCommand::Events {
            client,
            after,
            follow,
            cloudevents: true,
            contracts,
            names,
            outcomes,
            state_prefixes,
        } => {
            let filter = sst_notify::FilterSpec {
                contracts,
                names,
                outcomes,
                state_prefixes,
            };
            // Refused here with the same typed error a sink's config gets.
            sst_notify::Filter::new(&filter)?;
            let mut stream = client
                .client()?
                .notifications(after, follow, &filter)
                .await?;
            while let Some(n) = stream.next_notification().await? {
                println!("{}", n.to_json());
            }
            Ok(true)
        }
        DaemonCommand::Events {
            client,
            after,
            follow,
            cloudevents: false,
            ..
        } => {
            let mut stream = client.client()?.events(after, follow).await?;
            while let Some(event) = stream.next().await? {
                println!("{}", serde_json::to_string(&event)?);
            }
            Ok(true)
        }
    }
}
