//! The network layer on its own, over real sockets on 127.0.0.1: the server answers only once
//! the node handled a message, keys outside the registry (strangers, or a registered id with
//! the wrong key) are refused at the TLS handshake in both directions, and the client-API
//! helpers authenticate clients by their actor keys.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use common::{loopback, node_key, registry, stranger_key};
use sst_core::{ActorKey, NodeId, NodeKey, NodeRegistry, PublicKey};
use sst_net::tls::{self, Authenticated, ClientAuth, H2Client, Identity, ServerTls};
use sst_net::{NetConfig, NetNode};
use sst_node::{Delivery, ProtocolEnvelope, Transport, TransportError};
use tokio::time::timeout;

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(10);

/// A network side (no node) for `id` with `key`, trusting `registry`, sending to `peers`.
async fn net_node(
    id: &str,
    key: NodeKey,
    registry: NodeRegistry,
    peers: &[(&str, String)],
) -> anyhow::Result<NetNode> {
    let listener = loopback().await?;
    let mut config = NetConfig::new(id, key, registry, listener.local_addr()?);
    config.request_timeout = LONG;
    for (peer, addr) in peers {
        config = config.with_peer(*peer, addr.clone());
    }
    Ok(sst_net::start_on(config, listener).await?)
}

fn envelope(n: u64) -> anyhow::Result<ProtocolEnvelope> {
    Ok(ProtocolEnvelope::new(
        "test",
        1,
        &serde_json::json!({ "n": n }),
    )?)
}

/// Sending `envelope` from `from` to `peer` fails with `Unreachable` (`what` names the case).
async fn unreachable(
    from: &NetNode,
    peer: &str,
    envelope: ProtocolEnvelope,
    what: &str,
) -> anyhow::Result<()> {
    let to = NodeId::from(peer);
    let result = from.transport.send(&to, envelope).await;
    anyhow::ensure!(
        result == Err(TransportError::Unreachable(to)),
        "{what}: {result:?}"
    );
    Ok(())
}

/// Nothing reaches `inbox` within a short while.
async fn nothing_arrives(n: &mut NetNode) -> anyhow::Result<()> {
    match timeout(SHORT, n.inbox.recv()).await {
        Err(_) => Ok(()),
        Ok(d) => anyhow::bail!("a delivery arrived: {d:?}"),
    }
}

/// A send returns only once the receiving node dropped the delivery (handled it); the
/// delivery names the authenticated sender; a stopped node (inbox gone) answers an error,
/// which the sender sees as `Unreachable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_once_the_node_handled_the_message() -> anyhow::Result<()> {
    let reg = registry(&["a", "b"]);
    let mut b = net_node("b", node_key("b"), reg.clone(), &[]).await?;
    let b_addr = b.server.local_addr().to_string();
    let a = net_node("a", node_key("a"), reg, &[("b", b_addr)]).await?;

    let transport = a.transport.clone();
    let to_b = NodeId::from("b");
    let sent = envelope(1)?;
    let send = tokio::spawn({
        let (to_b, sent) = (to_b.clone(), sent.clone());
        async move { transport.send(&to_b, sent).await }
    });
    let delivery: Delivery = timeout(LONG, b.inbox.recv())
        .await?
        .context("inbox closed")?;
    anyhow::ensure!(delivery.from().as_str() == "a", "sender: {delivery:?}");
    anyhow::ensure!(*delivery.envelope() == sent, "envelope changed in transit");
    tokio::time::sleep(SHORT).await;
    anyhow::ensure!(!send.is_finished(), "answered before the node handled it");
    drop(delivery);
    timeout(LONG, send).await???;

    // The node stops: its inbox is gone, the server answers 503.
    drop(b.inbox);
    unreachable(&a, to_b.as_str(), envelope(2)?, "a stopped node").await?;
    b.server.shutdown().await;
    Ok(())
}

/// Messages from one sender arrive in the order sent, over one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_order() -> anyhow::Result<()> {
    let reg = registry(&["a", "b"]);
    let mut b = net_node("b", node_key("b"), reg.clone(), &[]).await?;
    let a = net_node(
        "a",
        node_key("a"),
        reg,
        &[("b", b.server.local_addr().to_string())],
    )
    .await?;
    let receiver = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 50 {
            let Some(d) = b.inbox.recv().await else { break };
            got.push(d.envelope().body["n"].as_u64());
        }
        // Handing the node side back keeps its inbox open until the last answer is out
        // (a node that stops right after handling answers 503).
        (got, b)
    });
    for n in 0..50 {
        a.transport.send(&NodeId::from("b"), envelope(n)?).await?;
    }
    let (got, _b) = timeout(LONG, receiver).await??;
    let want: Vec<Option<u64>> = (0..50).map(Some).collect();
    anyhow::ensure!(got == want, "order: {got:?}");
    Ok(())
}

/// A batch of messages travels in one request: they arrive in order, and the send returns
/// only once the node handled every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_arrives_in_order_and_is_answered_once_all_are_handled() -> anyhow::Result<()> {
    let reg = registry(&["a", "b"]);
    let mut b = net_node("b", node_key("b"), reg.clone(), &[]).await?;
    let a = net_node(
        "a",
        node_key("a"),
        reg,
        &[("b", b.server.local_addr().to_string())],
    )
    .await?;
    let batch: Vec<ProtocolEnvelope> = (0..20).map(envelope).collect::<anyhow::Result<_>>()?;
    let transport = a.transport.clone();
    let send = tokio::spawn(async move { transport.send_batch(&NodeId::from("b"), batch).await });
    let mut held = Vec::new();
    for want in 0..20u64 {
        let d = timeout(LONG, b.inbox.recv())
            .await?
            .context("inbox closed")?;
        anyhow::ensure!(d.from().as_str() == "a", "sender: {d:?}");
        anyhow::ensure!(
            d.envelope().body["n"].as_u64() == Some(want),
            "message {want} arrived as {:?}",
            d.envelope().body
        );
        held.push(d);
    }
    // All but the last handled: still no answer.
    let last = held.pop().context("empty batch")?;
    drop(held);
    tokio::time::sleep(SHORT).await;
    anyhow::ensure!(
        !send.is_finished(),
        "answered before the whole batch was handled"
    );
    drop(last);
    timeout(LONG, send).await???;
    Ok(())
}

/// A stranger — a key not in the registry — is refused as a client: its transport (built
/// from its own view of the network) gets `Unreachable`, a raw HTTP/2 client gets an error,
/// and nothing reaches the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_refused_as_client() -> anyhow::Result<()> {
    let reg = registry(&["a", "b"]);
    let mut b = net_node("b", node_key("b"), reg.clone(), &[]).await?;
    let b_addr = b.server.local_addr().to_string();
    let strangers_view = reg
        .clone()
        .with(NodeId::from("x"), stranger_key().public_key());
    let x = net_node(
        "x",
        stranger_key(),
        strangers_view,
        &[("b", b_addr.clone())],
    )
    .await?;
    unreachable(&x, "b", envelope(1)?, "stranger's send").await?;
    let identity = Identity::from_node_key(&stranger_key())?;
    let client = H2Client::new(
        b_addr,
        tls::client_config(&identity, node_key("b").public_key())?,
    );
    let raw = timeout(LONG, client.send(|| post_sync(1))).await?;
    anyhow::ensure!(raw.is_err(), "stranger's raw request: {raw:?}");
    nothing_arrives(&mut b).await
}

fn post_sync(n: u64) -> hyper::Request<Body> {
    let body = serde_json::to_vec(
        &serde_json::json!({"protocol": "test", "version": 1, "body": {"n": n}}),
    )
    .unwrap_or_default();
    let mut r = hyper::Request::new(Body::from(body));
    *r.method_mut() = hyper::Method::POST;
    *r.uri_mut() = hyper::Uri::from_static(sst_net::SYNC_PATH);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A stranger is refused as a server: a node whose peer address leads to a stranger's
/// server gets `Unreachable`, and the stranger receives nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_refused_as_server() -> anyhow::Result<()> {
    let reg = registry(&["a", "b"]);
    let strangers_view = reg
        .clone()
        .with(NodeId::from("x"), stranger_key().public_key());
    let mut x = net_node("x", stranger_key(), strangers_view, &[]).await?;
    let a = net_node(
        "a",
        node_key("a"),
        reg,
        &[("b", x.server.local_addr().to_string())],
    )
    .await?;
    unreachable(&a, "b", envelope(1)?, "send to a stranger").await?;
    nothing_arrives(&mut x).await
}

/// A node with a registered id but another key is refused both ways: its sends as `b` reach
/// nobody, and a node dialling `b` at the impostor's address refuses its server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_id_with_a_wrong_key_is_refused() -> anyhow::Result<()> {
    let reg = registry(&["a", "b"]);
    let mut a = net_node("a", node_key("a"), reg.clone(), &[]).await?;
    let fake = NodeKey::from_seed([13; 32]);
    let impostors_view = reg.clone().with(NodeId::from("b"), fake.public_key());
    let mut impostor = net_node(
        "b",
        fake,
        impostors_view,
        &[("a", a.server.local_addr().to_string())],
    )
    .await?;
    unreachable(&impostor, "a", envelope(1)?, "impostor's send").await?;
    nothing_arrives(&mut a).await?;

    let c = net_node(
        "a",
        node_key("a"),
        reg,
        &[("b", impostor.server.local_addr().to_string())],
    )
    .await?;
    unreachable(&c, "b", envelope(2)?, "send to the impostor").await?;
    nothing_arrives(&mut impostor).await
}

/// `start` refuses a node whose key is not its registry key, and a peer outside the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_checks_its_configuration() -> anyhow::Result<()> {
    let reg = registry(&["a", "b"]);
    let addr = "127.0.0.1:0".parse()?;
    let wrong = sst_net::start(NetConfig::new("a", node_key("b"), reg.clone(), addr)).await;
    anyhow::ensure!(
        matches!(wrong, Err(sst_net::NetError::NotRegistered(ref n)) if n.as_str() == "a"),
        "{wrong:?}"
    );
    let unknown = sst_net::start(
        NetConfig::new("a", node_key("a"), reg, addr).with_peer("zed", "127.0.0.1:1"),
    )
    .await;
    anyhow::ensure!(
        matches!(unknown, Err(sst_net::NetError::UnknownPeer(ref n)) if n.as_str() == "zed"),
        "{unknown:?}"
    );
    Ok(())
}

/// The client-API building blocks: a server that maps actor keys to actor ids lets a known
/// actor in and shows handlers its identity; an unknown actor key is refused; a client
/// pinning another server key refuses the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_authenticate_with_actor_keys() -> anyhow::Result<()> {
    let alice = ActorKey::from_seed([21; 32]);
    let mallory = ActorKey::from_seed([22; 32]);
    let directory: BTreeMap<[u8; 32], String> =
        [(alice.public_key().to_bytes(), "acme/alice".to_owned())]
            .into_iter()
            .collect();
    let lookup = Arc::new(move |k: &PublicKey| directory.get(&k.to_bytes()).cloned());
    let node = node_key("a");
    let server_tls = ServerTls::new(&Identity::from_node_key(&node)?, ClientAuth::Keys(lookup))?;
    let router = Router::new().route(
        "/whoami",
        get(|Extension(who): Extension<Authenticated>| async move { who.id }),
    );
    let server = tls::serve(router, loopback().await?, server_tls)?;
    let addr = server.local_addr().to_string();
    let whoami = || {
        let mut r = hyper::Request::new(Body::empty());
        *r.uri_mut() = hyper::Uri::from_static("/whoami");
        r
    };

    let client = H2Client::new(
        addr.clone(),
        tls::client_config(&Identity::from_actor_key(&alice)?, node.public_key())?,
    );
    for _ in 0..3 {
        let response = timeout(LONG, client.send(whoami)).await??;
        anyhow::ensure!(response.status().is_success(), "{response:?}");
        let body = axum::body::to_bytes(Body::new(response.into_body()), 1024).await?;
        anyhow::ensure!(&body[..] == b"acme/alice", "identity: {body:?}");
    }

    let stranger = H2Client::new(
        addr.clone(),
        tls::client_config(&Identity::from_actor_key(&mallory)?, node.public_key())?,
    );
    let refused = timeout(LONG, stranger.send(whoami)).await?;
    anyhow::ensure!(refused.is_err(), "unknown actor key: {refused:?}");

    let wrong_pin = H2Client::new(
        addr,
        tls::client_config(
            &Identity::from_actor_key(&alice)?,
            node_key("b").public_key(),
        )?,
    );
    let refused = timeout(LONG, wrong_pin.send(whoami)).await?;
    anyhow::ensure!(
        matches!(refused, Err(sst_net::ClientError::Handshake { .. })),
        "server key not the pinned one: {refused:?}"
    );
    server.shutdown().await;
    Ok(())
}
