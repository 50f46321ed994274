//! Tests of the client API's authentication by a mutual-TLS connection: a request without a
//! request signature is served as the actor whose key the connection's handshake proved, as
//! long as that key is the actor's current one and the actor is active.

use super::*;
use sst::core::{ActorKey, MemoryStore};

fn alice() -> ActorId {
    ActorId::from("acme/alice")
}

fn bob() -> ActorId {
    ActorId::from("acme/bob")
}

/// One node `acme` (in memory) with actors alice and bob, and the API context over it.
async fn api() -> anyhow::Result<(sst::Network, ApiContext)> {
    let net = sst::Network::builder()
        .node("acme", Arc::new(MemoryStore::new()))
        .actor_with_key(alice(), ActorKey::from_seed([1; 32]))
        .actor_with_key(bob(), ActorKey::from_seed([2; 32]))
        .start()
        .await?;
    let node = net.node("acme")?.clone();
    let (_, stopping) = watch::channel(false);
    let ctx = ApiContext::new(node, Arc::new(Metrics::default()), Vec::new(), stopping);
    Ok((net, ctx))
}

fn connection(actor: &ActorId, seed: u8) -> Authenticated {
    Authenticated {
        id: actor.to_string(),
        key: ActorKey::from_seed([seed; 32]).public_key(),
    }
}

fn naming(actor: &ActorId) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(ACTOR_HEADER, actor.as_str().parse()?);
    Ok(headers)
}

fn accepted(result: ApiResult<Actor>) -> anyhow::Result<Actor> {
    result.map_err(|ApiError(body)| anyhow::anyhow!("refused: {body:?}"))
}

fn refused(result: ApiResult<Actor>) -> anyhow::Result<String> {
    match result {
        Err(ApiError(body)) if body.code == ErrorCode::Unauthenticated => Ok(body.message),
        other => anyhow::bail!("expected unauthenticated, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unsigned_request_is_the_connections_actor_when_it_names_no_other() -> anyhow::Result<()>
{
    let (_net, ctx) = api().await?;
    let caller = accepted(ctx.connection_caller(&connection(&alice(), 1), &HeaderMap::new()))?;
    anyhow::ensure!(caller.id == alice(), "{caller:?}");
    let caller = accepted(ctx.connection_caller(&connection(&alice(), 1), &naming(&alice())?))?;
    anyhow::ensure!(caller.id == alice(), "{caller:?}");
    let message = refused(ctx.connection_caller(&connection(&alice(), 1), &naming(&bob())?))?;
    anyhow::ensure!(
        message.contains("acme/bob") && message.contains("acme/alice"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn a_connection_whose_key_is_not_the_actors_current_one_is_refused() -> anyhow::Result<()> {
    let (net, ctx) = api().await?;
    // A key that never was alice's.
    refused(ctx.connection_caller(&connection(&alice(), 9), &HeaderMap::new()))?;
    // alice rotates her key: a connection made with the old one no longer authenticates.
    let node = net.node("acme")?;
    let rotated = node
        .rotate_key(&alice(), ActorKey::from_seed([3; 32]))
        .await?;
    anyhow::ensure!(rotated.is_applied(), "{rotated:?}");
    let message = refused(ctx.connection_caller(&connection(&alice(), 1), &HeaderMap::new()))?;
    anyhow::ensure!(message.contains("current key"), "{message}");
    accepted(ctx.connection_caller(&connection(&alice(), 3), &HeaderMap::new()))?;
    // bob is revoked: his connection no longer authenticates.
    let revoked = node.revoke(&bob(), &bob()).await?;
    anyhow::ensure!(revoked.is_applied(), "{revoked:?}");
    let message = refused(ctx.connection_caller(&connection(&bob(), 2), &HeaderMap::new()))?;
    anyhow::ensure!(message.contains("revoked"), "{message}");
    Ok(())
}
