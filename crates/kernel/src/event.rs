use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The namespace of the deterministic idempotency keys (a fixed, random UUID: changing it would
/// change every key ever issued).
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_0c5e_2b7a_4a39_9e51_8c0d_f3a2_b417);

/// The CloudEvents attributes that extensions must not shadow.
const RESERVED: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// Errors building a [`CloudEvent`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// An extension attribute name breaks the CloudEvents naming rule.
    #[error(
        "invalid extension attribute name {0:?}: lower-case a-z and 0-9 only, 1-20 characters, not a core attribute"
    )]
    InvalidExtensionName(String),
    /// A required attribute is empty.
    #[error("the CloudEvent attribute {0} must not be empty")]
    EmptyAttribute(&'static str),
}

/// A validated CloudEvents extension-attribute name: lower-case `a–z`/`0–9`, 1–20 characters,
/// and not one of the core attribute names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ExtensionName(String);

impl ExtensionName {
    /// Validates an extension-attribute name.
    ///
    /// ```
    /// use freshplan_kernel::ExtensionName;
    /// assert!(ExtensionName::parse("idempotencykey").is_ok());
    /// assert!(ExtensionName::parse("idempotencyKey").is_err()); // upper case
    /// assert!(ExtensionName::parse("a_b").is_err());            // underscore
    /// assert!(ExtensionName::parse(&"x".repeat(21)).is_err());  // too long
    /// ```
    pub fn parse(name: &str) -> Result<ExtensionName, EventError> {
        let ok = (1..=20).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && !RESERVED.contains(&name);
        if ok {
            Ok(ExtensionName(name.to_owned()))
        } else {
            Err(EventError::InvalidExtensionName(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExtensionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What makes a change unique within its subject: the aggregate version it produced, or the run
/// (for job-level events such as `lead.followup.processed.v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyBasis {
    /// The aggregate version after the change.
    Version(i64),
    /// The id of the run that produced the event.
    Run(Uuid),
}

/// The deterministic idempotency key of SPEC §7.1: a UUID v5 over type, subject and basis, so a
/// retried change yields the same key and distinct changes yield distinct keys.
///
/// The parts are length-prefixed before hashing, so no two distinct inputs share a byte string.
///
/// ```
/// use freshplan_kernel::{idempotency_key, event::KeyBasis};
/// let a = idempotency_key("lead.updated.v1", "lead-1", KeyBasis::Version(2));
/// assert_eq!(a, idempotency_key("lead.updated.v1", "lead-1", KeyBasis::Version(2)));
/// assert_ne!(a, idempotency_key("lead.updated.v1", "lead-1", KeyBasis::Version(3)));
/// ```
pub fn idempotency_key(event_type: &str, subject: &str, basis: KeyBasis) -> Uuid {
    let mut bytes = Vec::with_capacity(event_type.len() + subject.len() + 40);
    for part in [event_type.as_bytes(), subject.as_bytes()] {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part);
    }
    match basis {
        KeyBasis::Version(v) => {
            bytes.push(b'v');
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        KeyBasis::Run(run) => {
            bytes.push(b'r');
            bytes.extend_from_slice(run.as_bytes());
        }
    }
    Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, &bytes)
}

/// A CloudEvents 1.0 event in JSON form (SPEC §7.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `"1.0"`.
    pub specversion: String,
    /// The event id (unique per source).
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
    /// Always `"application/json"`.
    pub datacontenttype: String,
    /// The deterministic idempotency key (an extension attribute).
    pub idempotencykey: Uuid,
    /// Further extension attributes, by validated name.
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, serde_json::Value>,
    /// The event payload.
    pub data: serde_json::Value,
}

impl CloudEvent {
    /// The `source` of lead events.
    pub const SOURCE_LEADS: &'static str = "freshplan.leads";
    /// The `source` of follow-up events.
    pub const SOURCE_FOLLOWUP: &'static str = "freshplan.leads.followup";

    /// Builds an event with its idempotency key derived from type, subject and basis.
    pub fn new(
        id: Uuid,
        source: &str,
        event_type: &str,
        time: OffsetDateTime,
        subject: Option<String>,
        basis: KeyBasis,
        data: serde_json::Value,
    ) -> Result<CloudEvent, EventError> {
        if source.is_empty() {
            return Err(EventError::EmptyAttribute("source"));
        }
        if event_type.is_empty() {
            return Err(EventError::EmptyAttribute("type"));
        }
        let idempotencykey = idempotency_key(event_type, subject.as_deref().unwrap_or(""), basis);
        Ok(CloudEvent {
            specversion: "1.0".to_owned(),
            id,
            source: source.to_owned(),
            event_type: event_type.to_owned(),
            time: time.to_offset(time::UtcOffset::UTC),
            subject,
            datacontenttype: "application/json".to_owned(),
            idempotencykey,
            extensions: BTreeMap::new(),
            data,
        })
    }

    /// Adds an extension attribute after validating its name.
    pub fn with_extension(
        mut self,
        name: &str,
        value: serde_json::Value,
    ) -> Result<CloudEvent, EventError> {
        let name = ExtensionName::parse(name)?;
        if name.as_str() == "idempotencykey" {
            return Err(EventError::InvalidExtensionName(name.0));
        }
        self.extensions.insert(name.0, value);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn sample() -> CloudEvent {
        CloudEvent::new(
            Uuid::nil(),
            CloudEvent::SOURCE_LEADS,
            "lead.created.v1",
            datetime!(2026-03-01 10:00 +01:00),
            Some("l1".into()),
            KeyBasis::Version(1),
            serde_json::json!({"x": 1}),
        )
        .unwrap()
    }

    #[test]
    fn serialises_as_cloudevents_json() {
        let v = serde_json::to_value(
            sample()
                .with_extension("traceparent", "00-1".into())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "lead.created.v1");
        assert_eq!(v["time"], "2026-03-01T09:00:00Z");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["traceparent"], "00-1");
        assert!(v["idempotencykey"].is_string());
        let back: CloudEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back.extensions["traceparent"], "00-1");
    }

    #[test]
    fn extension_names_are_validated() {
        for bad in [
            "",
            "Upper",
            "with-dash",
            "with_us",
            "id",
            "data",
            "abcdefghijklmnopqrstu",
            "idempotencykey",
        ] {
            assert!(sample().with_extension(bad, 1.into()).is_err(), "{bad}");
        }
        for good in ["a", "traceparent", "x1", "abcdefghijklmnopqrst"] {
            assert!(sample().with_extension(good, 1.into()).is_ok(), "{good}");
        }
    }

    #[test]
    fn empty_source_or_type_rejected() {
        let r = CloudEvent::new(
            Uuid::nil(),
            "",
            "t",
            datetime!(2026-01-01 0:00 UTC),
            None,
            KeyBasis::Version(1),
            1.into(),
        );
        assert_eq!(r.unwrap_err(), EventError::EmptyAttribute("source"));
    }

    proptest! {
        #[test]
        fn idempotency_keys_are_deterministic(t in ".{0,30}", s in ".{0,30}", v in any::<i64>()) {
            prop_assert_eq!(idempotency_key(&t, &s, KeyBasis::Version(v)), idempotency_key(&t, &s, KeyBasis::Version(v)));
        }

        #[test]
        fn idempotency_keys_differ_for_distinct_inputs(
            a in (".{0,12}", ".{0,12}", any::<i64>()),
            b in (".{0,12}", ".{0,12}", any::<i64>()),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(
                idempotency_key(&a.0, &a.1, KeyBasis::Version(a.2)),
                idempotency_key(&b.0, &b.1, KeyBasis::Version(b.2))
            );
        }

        #[test]
        fn run_and_version_bases_never_collide(t in "[a-z.]{1,20}", s in ".{0,12}", v in any::<i64>(), r in any::<u128>()) {
            prop_assert_ne!(
                idempotency_key(&t, &s, KeyBasis::Version(v)),
                idempotency_key(&t, &s, KeyBasis::Run(Uuid::from_u128(r)))
            );
        }

        #[test]
        fn valid_extension_names_accepted(name in "[a-z0-9]{1,20}") {
            prop_assume!(!RESERVED.contains(&name.as_str()));
            prop_assert!(ExtensionName::parse(&name).is_ok());
        }
    }
}
