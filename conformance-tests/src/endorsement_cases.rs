//! Conformance cases of endorsements stored with their event (issue 14): the `endorsements`
//! column round-trips exactly through commit and every read, an edit of it behind the store's
//! back is caught (by the read path's integrity check or by verify through the log record,
//! which binds the endorsements), and an event table of the layout before endorsements gains
//! the column from `migrate` and keeps every event.
//!
//! The fixture contract is not deployed, so verify does not judge the endorsements against a
//! policy here (that is verify's own suite); what these cases prove is that the store keeps
//! exactly what it was given, so that the policy check sees the endorsements that were signed.

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use sst_core::{
    BusinessEvent, CommitBatch, Endorsement, EventFilter, EventRecord, PeerTable, Rule, StoreError,
};

use crate::fixtures::{actor, change, emitting, endorsed, endorsers, values};
use crate::log_cases::{expect_finding, verify};
use crate::setups::{created_then_changed, reads_back_exactly, CreatedThenChanged};
use crate::{Backend, BackendFactory, EventColumn, Mutation};

/// A state created, then changed by an event that both fixture [`endorsers`] endorsed.
async fn endorsed_setup(b: &Backend) -> anyhow::Result<CreatedThenChanged> {
    created_then_changed(b, "endorsed", |x| endorsed(x, &endorsers())).await
}

/// The fixture endorsements as the JSON array the column holds.
fn column_of(endorsements: &[Endorsement]) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(endorsements)?)
}

/// Verify reports nothing about how the event table stores its records: no integrity, event
/// id, receipt or log-record finding (the rules a lost or altered column would break).
async fn stored_exactly(b: &Backend, case: &str) -> anyhow::Result<()> {
    let report = verify(b).await?;
    let storage = [
        Rule::Integrity,
        Rule::EventId,
        Rule::Receipt,
        Rule::LogRecord,
    ];
    let wrong: Vec<String> = report
        .findings
        .iter()
        .filter(|x| x.table == PeerTable::Event && storage.contains(&x.rule))
        .map(ToString::to_string)
        .collect();
    ensure!(wrong.is_empty(), "{case}: verify reports {wrong:?}");
    Ok(())
}

/// Endorsements round-trip exactly through commit and every read (`event`, `events` by state
/// and by actor, the log entry binding the record), an event without any reads back with none,
/// and verify finds the stored records as they were signed and logged.
pub async fn endorsements_round_trip_exactly(f: &impl BackendFactory) -> anyhow::Result<()> {
    let b = f.open().await?;
    let s = endorsed_setup(&b).await?;
    ensure!(
        s.changed.endorsements.len() == 2 && s.plain.endorsements.is_empty(),
        "fixture: only the change is endorsed, by two nodes"
    );
    reads_back_exactly(&b, &s, "endorsements").await?;
    let by_actor = b
        .store
        .events(&EventFilter {
            actor: Some(s.changed.event().actor.clone()),
            ..EventFilter::default()
        })
        .await?;
    ensure!(
        by_actor.contains(&s.changed),
        "events() by actor lost the endorsements"
    );
    stored_exactly(&b, "endorsements_round_trip_exactly").await
}

/// Rewrites the `endorsements` column of the event `pick` chooses in a fresh
/// [`endorsed_setup`] and checks that the event table is reported.
async fn edited_case(
    f: &impl BackendFactory,
    case: &str,
    pick: impl FnOnce(&CreatedThenChanged) -> anyhow::Result<(EventRecord, Value)>,
) -> anyhow::Result<()> {
    let b = f.open().await?;
    let s = endorsed_setup(&b).await?;
    let (event, value) = pick(&s)?;
    let done = b
        .raw
        .mutate(&Mutation::SetEventColumn {
            event: event.id(),
            column: EventColumn::Endorsements,
            value,
        })
        .await?;
    ensure!(done, "{case}: the store has no endorsements column to edit");
    expect_finding(
        &verify(&b).await?,
        case,
        PeerTable::Event,
        &[Rule::Integrity, Rule::LogRecord],
    )
}

/// An endorsement whose signature has one byte changed in the column is reported on the event
/// table.
pub async fn edited_endorsement_signature_is_reported(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    edited_case(f, "edited_endorsement_signature_is_reported", |s| {
        let mut forged = s.changed.endorsements.clone();
        let first = forged.first_mut().context("no endorsement to edit")?;
        first.signature.0[0] ^= 0x01;
        Ok((s.changed.clone(), column_of(&forged)?))
    })
    .await
}

/// One of two endorsements removed from the column is reported on the event table.
pub async fn removed_endorsement_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    edited_case(f, "removed_endorsement_is_reported", |s| {
        let mut kept = s.changed.endorsements.clone();
        kept.pop();
        Ok((s.changed.clone(), column_of(&kept)?))
    })
    .await
}

/// An endorsement added to an event that had none (its column `NULL`) is reported on the
/// event table.
pub async fn added_endorsement_is_reported(f: &impl BackendFactory) -> anyhow::Result<()> {
    edited_case(f, "added_endorsement_is_reported", |s| {
        let borrowed = s
            .changed
            .endorsements
            .first()
            .cloned()
            .context("no endorsement to copy")?;
        Ok((s.plain.clone(), column_of(&[borrowed])?))
    })
    .await
}

/// An `endorsements` column that no longer holds a list of endorsements (a signature cut
/// short) makes reading the event an integrity error naming the event and the column, and
/// verify reports the event table.
pub async fn malformed_endorsements_column_is_an_integrity_error(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let case = "malformed_endorsements_column_is_an_integrity_error";
    let b = f.open().await?;
    let s = endorsed_setup(&b).await?;
    let done = b
        .raw
        .mutate(&Mutation::SetEventColumn {
            event: s.changed.id(),
            column: EventColumn::Endorsements,
            value: json!([{"node": "bank", "signature": "00ff"}]),
        })
        .await?;
    if !done {
        crate::not_run(
            case,
            b.store.backend(),
            "the store holds typed records: its endorsements cannot be malformed",
        );
        return Ok(());
    }
    match b.store.event(&s.changed.id()).await {
        Err(StoreError::Integrity { what, source }) => {
            ensure!(
                what.contains(&s.changed.id().to_string()),
                "the integrity error names {what}, not the event"
            );
            ensure!(
                source.to_string().contains("endorsements"),
                "the integrity error does not name the column: {source}"
            );
        }
        other => anyhow::bail!("{case}: event() read {other:?}"),
    }
    expect_finding(
        &verify(&b).await?,
        case,
        PeerTable::Event,
        &[Rule::Integrity],
    )
}

/// An event table of the layout before endorsements (no `endorsements` column) gains the
/// column when the store is opened again (`migrate`), keeps every event exactly (business
/// events included), and stores endorsed events from then on.
pub async fn event_table_without_endorsements_gains_them_on_migrate(
    f: &impl BackendFactory,
) -> anyhow::Result<()> {
    let case = "event_table_without_endorsements_gains_them_on_migrate";
    let b = f.open().await?;
    let s = created_then_changed(&b, "older-layout", |x| {
        Ok(emitting(
            x,
            vec![BusinessEvent {
                name: "price_agreed".into(),
                payload: json!({"amount": 250_000}),
            }],
        ))
    })
    .await?;
    if !b
        .raw
        .mutate(&Mutation::DropEventColumn(EventColumn::Endorsements))
        .await?
    {
        crate::not_run(
            case,
            b.store.backend(),
            "the store has no event table layout to take back",
        );
        return Ok(());
    }
    drop(b);
    let b = f.reopen().await?;
    reads_back_exactly(&b, &s, "business events, after migrate").await?;
    let (alice, ka) = actor("acme", "alice");
    let y = endorsed(
        change(
            &s.state,
            values([("common", json!({"address": "3 Quai Rambaud, Lyon"}))]),
            (&alice, &ka),
            3,
        ),
        &endorsers(),
    )?;
    b.store.commit(CommitBatch::new(vec![y.clone()])).await?;
    let read = b
        .store
        .event(&y.event.id())
        .await?
        .context("endorsed event not found after migrate")?;
    ensure!(
        read == y.event,
        "{case}: an endorsed event after migrate read back {:?}",
        read.endorsements
    );
    stored_exactly(&b, case).await
}
