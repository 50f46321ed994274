//! Committed setups several case modules share: a state created and then changed by an event
//! that carries what a case is about (business events, endorsements), and the check that both
//! records read back exactly through every read path.

use anyhow::{ensure, Context};
use serde_json::json;
use sst_core::{CommitBatch, CommitItem, EventFilter, EventRecord, LogRecord, State};

use crate::fixtures::{actor, change, create, deal_parties, deal_values, state_id, values};
use crate::Backend;

/// What [`created_then_changed`] committed.
pub(crate) struct CreatedThenChanged {
    /// The create, as built (nothing added).
    pub(crate) plain: EventRecord,
    /// The change, as the case's decoration made it.
    pub(crate) changed: EventRecord,
    /// The state version the change produced (version 2).
    pub(crate) state: State,
}

/// Registers `acme/alice`, then commits in one batch the create of a fresh deal (`prefix-…`)
/// and a change of its price that `decorate` turns into the event under test.
pub(crate) async fn created_then_changed(
    b: &Backend,
    prefix: &str,
    decorate: impl FnOnce(CommitItem) -> anyhow::Result<CommitItem>,
) -> anyhow::Result<CreatedThenChanged> {
    let (alice, ka) = actor("acme", "alice");
    b.store.put_actor(&alice).await?;
    let id = state_id(prefix);
    let c = create(
        &id,
        deal_parties(),
        deal_values(250_000, 3.2),
        (&alice, &ka),
        1,
    );
    let v1 = c.state.clone().context("fixture create carries no state")?;
    let x = decorate(change(
        &v1,
        values([("price", json!({"amount": 250_000, "agreed": true}))]),
        (&alice, &ka),
        2,
    ))?;
    let setup = CreatedThenChanged {
        plain: c.event.clone(),
        changed: x.event.clone(),
        state: x
            .state
            .as_deref()
            .cloned()
            .context("fixture change carries no state")?,
    };
    b.store.commit(CommitBatch::new(vec![c, x])).await?;
    Ok(setup)
}

/// Both records of `s` read back exactly through `event`, `events` by state, and the log
/// entry of the change binds the record read back. `what` names the decoration in messages.
pub(crate) async fn reads_back_exactly(
    b: &Backend,
    s: &CreatedThenChanged,
    what: &str,
) -> anyhow::Result<()> {
    let read = b
        .store
        .event(&s.changed.id())
        .await?
        .context("changed event not found")?;
    ensure!(
        read == s.changed,
        "event() read back another record than the one with {what}: {read:?}"
    );
    let plain = b
        .store
        .event(&s.plain.id())
        .await?
        .context("plain event not found")?;
    ensure!(
        plain == s.plain,
        "an event without {what} read back another record: {plain:?}"
    );
    let listed = b
        .store
        .events(&EventFilter {
            state_id: Some(s.changed.event().state_id.clone()),
            ..EventFilter::default()
        })
        .await?;
    ensure!(
        listed == vec![s.plain.clone(), s.changed.clone()],
        "events() read back other records than those with and without {what}"
    );
    let log = b.store.log(0, None).await?;
    let entry = log
        .iter()
        .find(|e| e.subject == s.changed.id().to_string())
        .context("no log entry for the changed event")?;
    ensure!(
        entry.record == LogRecord::Event(&read).digest(entry.record.alg()),
        "the log entry does not bind the record with {what} read back"
    );
    Ok(())
}
