//! `sst node run --config FILE`: the node daemon. Opens the store, starts the node with the
//! registry built from the config's peers and its own key, registers the configured actors,
//! takes its custody keys, deploys the configured contracts, starts the peer transport and
//! the client API and a notifier per configured sink, and on SIGTERM or SIGINT stops the API,
//! the notifiers, then the node
//! ([`Node::shutdown`]: a last checkpoint of its log). A restart resumes from the store.

use std::future::IntoFuture;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sst::node::{Node, NodeConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use sst_net::tls::{ClientAuth, Identity, ServerTls};
use sst_net::NetServer;
use sst_notify::Notifier;

use super::api::{self, ApiContext};
use super::config::DaemonConfig;
use super::contracts;
use super::metrics::Metrics;
use super::store;
use super::transport::PeerLink;

/// How long open API requests may take to finish at shutdown.
const API_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// An invalid config; a store that cannot be opened; a node that does not start (e.g. its
/// log does not verify); a listener that cannot be bound.
pub(crate) async fn run(config_path: &Path) -> anyhow::Result<()> {
    let mut config = DaemonConfig::load(config_path)?;
    let store = store::open(&config.store).await?;
    let code = contracts::registry(&config.contracts);
    let records = config
        .contracts
        .iter()
        .map(|d| contracts::record(&code, d, &config.custody))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (link, inbox) = PeerLink::start(&config).await?;
    let mut node_config =
        NodeConfig::new(config.id.clone()).with_key(config.node_key.clone(), config.registry());
    if let Some(guard) = super::guard::LimitGuard::new(config.endorsement_limits.clone()) {
        node_config = node_config.with_endorsement_guard(std::sync::Arc::new(guard));
    }
    let node = Node::start(
        node_config,
        store.clone(),
        code,
        link.transport.clone(),
        inbox,
    )
    .await
    .with_context(|| format!("starting node {}", config.id))?;
    for actor in &config.actors {
        // The directory follows signed key rotations: the config only introduces actors.
        if node.actor(&actor.id).is_none() {
            node.register_actor(actor.clone()).await?;
        }
    }
    let custody: Vec<_> = config.custody.iter().map(|(a, _)| a.clone()).collect();
    for (actor, key) in std::mem::take(&mut config.custody) {
        node.add_key(&actor, key)
            .with_context(|| format!("custody key of {actor}"))?;
    }
    for record in records {
        let contract = record.descriptor.contract.clone();
        node.deploy(record)
            .await
            .with_context(|| format!("deploying {contract}"))?;
    }
    let node = Arc::new(node);
    if link.audit.set(node.clone()).is_err() {
        warn!(node = %config.id, "the audit route already had a node");
    }
    // One notifier per configured sink, fed by the committed log (cursor in the store).
    let notifiers: Vec<_> = config
        .sinks
        .iter()
        .map(|spec| {
            Notifier::new(spec.clone(), config.id.clone(), store.clone())
                .wake_on(node.log_watch())
                .spawn()
        })
        .collect();
    let metrics = Arc::new(Metrics::with_sinks(
        notifiers.iter().map(|n| n.metrics().clone()).collect(),
    ));
    let tail = tokio::spawn(metrics.clone().run(store.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(ApiContext::new(
        node.clone(),
        metrics,
        custody,
        stop_rx.clone(),
    ));
    let listener = TcpListener::bind(config.api)
        .await
        .with_context(|| format!("binding the client API to {}", config.api))?;
    let api_addr = listener.local_addr()?;
    let router = api::router(ctx);
    let server = if config.api_tls {
        ApiServer::Tls(serve_tls(router, listener, &config, &node)?)
    } else {
        let mut stopped = stop_rx.clone();
        ApiServer::Plain(tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .into_future(),
        ))
    };
    println!(
        "node {} running: pid {}, api {api_addr} ({}), peers {}, store {}",
        config.id,
        std::process::id(),
        if config.api_tls {
            "mutual TLS"
        } else {
            "plain HTTP"
        },
        config.listen,
        config.store.label()
    );
    wait_for_signal().await?;
    println!("node {}: stopping", config.id);
    stop_tx.send_replace(true);
    server.stop(&config.id).await;
    for notifier in notifiers {
        notifier.stop().await;
    }
    tail.abort();
    let _ = tail.await;
    match Arc::try_unwrap(node) {
        Ok(node) => {
            let checkpoint = node.shutdown().await?;
            if let Some(cp) = checkpoint {
                println!(
                    "node {}: stopped at log position {}",
                    config.id, cp.checkpoint.pos
                );
            }
        }
        Err(node) => {
            warn!(node = %config.id, "node still in use at shutdown; stopped without a last checkpoint");
            drop(node);
        }
    }
    link.shutdown().await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

/// The client API's server, in either mode.
enum ApiServer {
    /// Mutual TLS 1.3 over HTTP/2 ([`sst_net::tls::serve`]).
    Tls(NetServer),
    /// Plain HTTP (axum).
    Plain(tokio::task::JoinHandle<std::io::Result<()>>),
}

impl ApiServer {
    /// Stops accepting and lets open requests finish (bounded).
    async fn stop(self, node: &sst::core::NodeId) {
        match self {
            ApiServer::Tls(server) => {
                if tokio::time::timeout(API_GRACE, server.shutdown())
                    .await
                    .is_err()
                {
                    warn!(%node, "client API requests still open at shutdown");
                }
            }
            ApiServer::Plain(task) => match tokio::time::timeout(API_GRACE, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => warn!(%node, error = %e, "client API server failed"),
                Ok(Err(e)) => warn!(%node, error = %e, "client API task failed"),
                Err(_) => warn!(%node, "client API requests still open at shutdown"),
            },
        }
    }
}

/// Serves the API over mutual TLS: the server presents the node key; a client is let in
/// only with the current key of a configured actor (looked up in the node's directory at
/// each handshake, so a rotated key takes effect), and its requests carry that identity.
fn serve_tls(
    router: axum::Router,
    listener: TcpListener,
    config: &DaemonConfig,
    node: &Arc<Node>,
) -> anyhow::Result<NetServer> {
    let identity = Identity::from_node_key(&config.node_key)?;
    let actors: Vec<_> = config.actors.iter().map(|a| a.id.clone()).collect();
    let directory = Arc::downgrade(node);
    let lookup = move |key: &sst::core::PublicKey| {
        let node = directory.upgrade()?;
        actors
            .iter()
            .filter_map(|id| node.actor(id))
            .find(|a| a.public_key == *key && a.status == sst::core::ActorStatus::Active)
            .map(|a| a.id.to_string())
    };
    let tls = ServerTls::new(&identity, ClientAuth::Keys(Arc::new(lookup)))?;
    Ok(sst_net::tls::serve(router, listener, tls)?)
}
