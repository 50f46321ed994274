//! The formatter: a committed [`EventRecord`] (with its log position and the publishing node)
//! turned into CloudEvents 1.0 [`Notification`]s — one for the intent's outcome, one per
//! business event the contract emitted. The sinks and the client API's event stream share it.
//!
//! What a notification carries in `data` comes from the record as the publishing node stores
//! it: the section values are the record's **disclosures**, and a node stores disclosures only
//! of the sections it may read (a replica keeps the readable ones of what the home sent it,
//! redacted per receiver; the home reads every section of its states; a rejection carries
//! none). So a regulator's node, which never receives the `price` plaintext, never publishes
//! it. A caller that must narrow further (the client API, per actor) removes disclosures from
//! the record before formatting.
//!
//! The output is deterministic: the same record, position and node always give
//! byte-identical JSON ([`Notification::to_json`]), so a re-published notification is the
//! same message under the same idempotency key.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sst_core::{CallPayload, EventKind, EventRecord, NodeId, Outcome, Timestamp};

use crate::Notification;

/// The `specversion` of every notification.
pub const SPEC_VERSION: &str = "1.0";
/// The `datacontenttype` of every notification.
pub const CONTENT_TYPE: &str = "application/json";

/// The `data` of a notification: what the event did, with only the sections the publishing
/// node may read. Serialised with these member names; absent members are omitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationData {
    /// The SST event id (the intent).
    pub event_id: String,
    /// The state id.
    pub state_id: String,
    /// The contract version, `name@version`.
    pub contract: String,
    /// `create`, `change_sections`, the called method's name, `deploy_contract` or
    /// `actor_change`.
    pub method: String,
    /// The signing actor.
    pub actor: String,
    /// The node that initiated the intent.
    pub origin_node: String,
    /// That node's sequence number for it.
    pub origin_seq: u64,
    /// `applied` or `rejected`.
    pub outcome: String,
    /// The state version the event produced (applied events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The new state root (applied events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Why the intent was rejected (rejected events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonData>,
    /// The values of the sections the event wrote that the publishing node may read (outcome
    /// notifications only; empty for rejections and for business events).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub sections: Map<String, Value>,
    /// The business event this notification is about (business-event notifications only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_event: Option<BusinessEventData>,
}

/// A reject reason: its stable code and its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonData {
    /// The machine-readable code (`stale_base`, `forbidden`, …).
    pub code: String,
    /// The reason's fields (e.g. `{"section": "price"}`); an empty object when it has none.
    pub detail: Map<String, Value>,
}

/// One business event of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessEventData {
    /// Its name, as the contract chose it.
    pub name: String,
    /// Its position among the event's business events (from 0).
    pub index: usize,
    /// Its payload.
    pub payload: Value,
}

/// The name a record's outcome notification carries in its `type`: `create`,
/// `change_sections`, the called method's name (`migrate` for a contract migration, whose
/// reserved method name `sst.migrate` would add a segment to the type), `deploy_contract` or
/// `actor_change`.
pub fn method_name(record: &EventRecord) -> String {
    let e = record.event();
    match e.kind {
        EventKind::CallMethod => match CallPayload::from_payload(&e.payload) {
            Ok(call) if call.is_migration() => "migrate".to_owned(),
            Ok(call) => call.method,
            Err(_) => EventKind::CallMethod.as_str().to_owned(),
        },
        kind => kind.as_str().to_owned(),
    }
}

/// The CloudEvents `source` of notifications published by `node`: `sst://<node id>`.
pub fn source_of(node: &NodeId) -> String {
    format!("sst://{node}")
}

/// The notifications of one committed record at log position `pos` on `node`: first the
/// outcome's (`sst.<contract>.<method>.<applied|rejected>`, id = the event id), then one per
/// business event (`sst.<contract>.<event name>.applied`, id = `<event id>#<n>`), in the order
/// the contract emitted them.
pub fn notifications(node: &NodeId, pos: u64, record: &EventRecord) -> Vec<Notification> {
    let e = record.event();
    let event_id = record.id().to_string();
    let contract = e.contract.name.clone();
    let outcome = record.outcome.kind().as_str();
    let (version, root, reason) = match &record.outcome {
        Outcome::Applied { version, root } => (Some(*version), Some(root.to_string()), None),
        Outcome::Rejected { reason } => (None, None, Some(reason_data(reason))),
    };
    let method = method_name(record);
    let base = NotificationData {
        event_id: event_id.clone(),
        state_id: e.state_id.to_string(),
        contract: e.contract.to_string(),
        method: method.clone(),
        actor: e.actor.to_string(),
        origin_node: e.origin_node.to_string(),
        origin_seq: e.origin_seq.0,
        outcome: outcome.to_owned(),
        version,
        root,
        reason,
        sections: Map::new(),
        business_event: None,
    };
    let source = source_of(node);
    let time = rfc3339(e.timestamp);
    let make = |id: String, name: &str, data: NotificationData| Notification {
        specversion: SPEC_VERSION.to_owned(),
        id,
        source: source.clone(),
        kind: format!("sst.{contract}.{name}.{outcome}"),
        subject: e.state_id.to_string(),
        time: time.clone(),
        datacontenttype: CONTENT_TYPE.to_owned(),
        // A struct of strings, integers and JSON values: serialising it cannot fail.
        data: serde_json::to_value(&data).unwrap_or(Value::Null),
        sstlogpos: pos,
        sstcontract: contract.clone(),
        sstoutcome: outcome.to_owned(),
    };
    let mut out = Vec::with_capacity(1 + record.business_events.len());
    let mut outcome_data = base.clone();
    outcome_data.sections = record
        .disclosures
        .iter()
        .map(|(name, d)| (name.clone(), Value::clone(&d.value)))
        .collect();
    out.push(make(event_id.clone(), &method, outcome_data));
    for (index, be) in record.business_events.iter().enumerate() {
        let mut data = base.clone();
        data.business_event = Some(BusinessEventData {
            name: be.name.clone(),
            index,
            payload: be.payload.clone(),
        });
        out.push(make(format!("{event_id}#{index}"), &be.name, data));
    }
    out
}

fn reason_data(reason: &sst_core::RejectReason) -> ReasonData {
    let mut detail = match serde_json::to_value(reason) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    detail.remove("code");
    ReasonData {
        code: reason.code().to_owned(),
        detail,
    }
}

/// A timestamp (milliseconds since the Unix epoch, UTC) in RFC 3339 with milliseconds,
/// e.g. `2026-11-30T05:29:10.123Z`.
pub fn rfc3339(t: Timestamp) -> String {
    let ms = t.0;
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Year, month, day of the proleptic Gregorian calendar for days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Timestamp(1_796_016_550_123)),
            "2026-11-30T05:29:10.123Z"
        );
        assert_eq!(
            rfc3339(Timestamp(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(rfc3339(Timestamp(-1)), "1969-12-31T23:59:59.999Z");
    }
}
