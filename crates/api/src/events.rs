//! The event feed (SPEC §7.1, §7.5): `GET /api/events` and the messages of
//! `GET /api/events/stream`. A consumer reads each event into a [`CloudEvent`]:
//!
//! ```
//! use freshplan_api::events::CloudEvent;
//!
//! let event: CloudEvent = serde_json::from_str(r#"{
//!     "specversion": "1.0",
//!     "id": "0195a3c4-0000-7000-8000-000000000001",
//!     "source": "freshplan.leads",
//!     "type": "lead.created.v1",
//!     "time": "2026-03-05T09:15:00Z",
//!     "subject": "0195a3c4-0000-7000-8000-0000000000aa",
//!     "datacontenttype": "application/json",
//!     "idempotencykey": "5f0c6b1e-29c4-5a0e-9d8e-3f2b1c0d4e5f",
//!     "data": {"companyName": "Gasthaus Zur Post GmbH"}
//! }"#).unwrap();
//! assert_eq!(event.event_type, "lead.created.v1");
//! assert_eq!(event.data["companyName"], "Gasthaus Zur Post GmbH");
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::wire::rfc3339;

/// A CloudEvents 1.0 event in JSON (SPEC §7.1); `data` per type in `docs/events/catalog.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CloudEvent {
    /// Always `1.0`.
    #[schema(example = "1.0")]
    pub specversion: String,
    /// The event id (unique per source; dedupe by `source` + `id`).
    pub id: Uuid,
    /// `freshplan.leads` or `freshplan.leads.followup`.
    pub source: String,
    /// The catalog type, e.g. `lead.created.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the change happened.
    #[serde(with = "rfc3339")]
    pub time: OffsetDateTime,
    /// The lead id, where there is one (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// Deterministic key: a retried change yields the same key.
    pub idempotencykey: Uuid,
    /// Other CloudEvents extension attributes (none of the catalog's types has any today).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, serde_json::Value>,
    /// The payload.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// `GET /api/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// Up to `limit` events, in commit order.
    pub events: Vec<CloudEvent>,
    /// Pass it as `after` next time; unchanged when there was nothing new. Opaque.
    #[schema(example = "7341-42")]
    pub next_cursor: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> serde_json::Value {
        json!({
            "specversion": "1.0",
            "id": "0195a3c4-0000-7000-8000-000000000001",
            "source": "freshplan.leads.followup",
            "type": "lead.followup.processed.v1",
            "time": "2026-03-05T09:15:00Z",
            "datacontenttype": "application/json",
            "idempotencykey": "5f0c6b1e-29c4-5a0e-9d8e-3f2b1c0d4e5f",
            "data": {"runId": "0195a3c4-0000-7000-8000-0000000000bb", "t3Count": 1},
        })
    }

    #[test]
    fn an_event_without_subject_round_trips_unchanged() {
        let parsed: CloudEvent = serde_json::from_value(event()).unwrap();
        assert_eq!(parsed.subject, None);
        assert!(parsed.extensions.is_empty());
        assert_eq!(serde_json::to_value(&parsed).unwrap(), event());
    }

    #[test]
    fn extension_attributes_are_kept() {
        let mut with_extension = event();
        with_extension["traceparent"] = json!("00-1");
        let parsed: CloudEvent = serde_json::from_value(with_extension.clone()).unwrap();
        assert_eq!(parsed.extensions["traceparent"], "00-1");
        assert_eq!(serde_json::to_value(&parsed).unwrap(), with_extension);
    }

    #[test]
    fn a_time_that_is_no_rfc_3339_is_refused() {
        let mut bad = event();
        bad["time"] = json!("yesterday");
        let error = serde_json::from_value::<CloudEvent>(bad).unwrap_err();
        assert!(error.to_string().contains("invalid value"), "{error}");
    }
}
