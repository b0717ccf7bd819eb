//! **Interim** body types, until `freshplan_api` has them.
//!
//! The event-feed bodies are moving into `freshplan_api::events` (`CloudEvent`, `EventPage`).
//! Until that lands, [`events`] defines them here, matching the wire format of
//! `GET /api/events` and `GET /api/events/stream` exactly (the service's
//! `freshplan_kernel::CloudEvent` and `crates/app/src/feed.rs`). The rest of this crate names
//! them only through `crate::events::{CloudEvent, EventPage}`, so the swap is one `pub use`
//! line there and the deletion of this module.
//!
//! The follow-up, cockpit and mail bodies (`freshplan_api::{followups, mails}`, also in
//! flight) are `serde_json::Value` in [`crate::followups`], [`crate::dashboard`] and
//! [`crate::mails`] until then.

/// The event feed's bodies (SPEC §7.1, §7.5). Interim: to be replaced by
/// `freshplan_api::events`.
pub mod events {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};
    use time::OffsetDateTime;
    use uuid::Uuid;

    /// A CloudEvents 1.0 event in JSON (SPEC §7.1); `data` per type in
    /// `docs/events/catalog.json`.
    ///
    /// ```
    /// use freshplan_client::events::CloudEvent;
    ///
    /// let json = r#"{"specversion":"1.0","id":"0190c2d4-e5f6-7a8b-9c0d-1e2f3a4b5c6d",
    ///   "source":"freshplan.leads","type":"lead.created.v1","time":"2026-03-02T09:30:00Z",
    ///   "subject":"0190c2d4-0000-7000-8000-000000000001","datacontenttype":"application/json",
    ///   "idempotencykey":"5b0c2a1e-8f3d-5c6b-9a7e-1d2c3b4a5f6e","data":{"companyName":"Adler"}}"#;
    /// let e: CloudEvent = serde_json::from_str(json).unwrap();
    /// assert_eq!(e.event_type, "lead.created.v1");
    /// assert_eq!(e.data["companyName"], "Adler");
    /// // Written back, it is the same JSON.
    /// let back = serde_json::to_value(&e).unwrap();
    /// assert_eq!(back, serde_json::from_str::<serde_json::Value>(json).unwrap());
    /// ```
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct CloudEvent {
        /// Always `1.0`.
        pub specversion: String,
        /// The event id (unique per source; dedupe by `source` + `id`).
        pub id: Uuid,
        /// `freshplan.leads` or `freshplan.leads.followup`.
        pub source: String,
        /// The catalog type, e.g. `lead.created.v1`.
        #[serde(rename = "type")]
        pub event_type: String,
        /// When the change happened.
        #[serde(with = "time::serde::rfc3339")]
        pub time: OffsetDateTime,
        /// The lead id, where there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub subject: Option<String>,
        /// Always `application/json`.
        pub datacontenttype: String,
        /// Deterministic key: a retried change yields the same key.
        pub idempotencykey: Uuid,
        /// Further extension attributes.
        #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
        pub extensions: BTreeMap<String, serde_json::Value>,
        /// The payload.
        pub data: serde_json::Value,
    }

    /// `GET /api/events`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct EventPage {
        /// Up to `limit` events, in commit order.
        pub events: Vec<CloudEvent>,
        /// Pass it as `after` next time; unchanged when there was nothing new. Opaque.
        pub next_cursor: String,
    }
}
