//! proptest strategies for the lead domain (feature `testing`).

use proptest::prelude::*;
use time::{Duration, OffsetDateTime};

use crate::activity::ActivityType;
use crate::lead::LeadData;
use crate::model::{BusinessType, CompanyName, Email};
use crate::status::LeadStatus;

/// Any status.
pub fn status() -> impl Strategy<Value = LeadStatus> {
    proptest::sample::select(LeadStatus::ALL.to_vec())
}

/// Any activity type.
pub fn activity_type() -> impl Strategy<Value = ActivityType> {
    proptest::sample::select(ActivityType::ALL.to_vec())
}

/// A user-loggable activity type.
pub fn user_activity_type() -> impl Strategy<Value = ActivityType> {
    proptest::sample::select(
        ActivityType::ALL
            .into_iter()
            .filter(|t| t.is_user_loggable())
            .collect::<Vec<_>>(),
    )
}

/// A valid company name, sometimes with a legal form.
pub fn company_name() -> impl Strategy<Value = CompanyName> {
    (
        "[A-ZÄÖÜ][a-zäöüß]{2,12}( [A-Z][a-z]{2,10}){0,2}",
        proptest::option::of(prop_oneof![
            Just(" GmbH"),
            Just(" AG"),
            Just(" KG"),
            Just(" Sàrl")
        ]),
    )
        .prop_map(|(n, f)| CompanyName::parse(&format!("{n}{}", f.unwrap_or(""))).expect("valid"))
}

/// A valid email.
pub fn email() -> impl Strategy<Value = Email> {
    "[a-z]{1,10}(\\.[a-z]{1,8})?@[a-z]{2,10}\\.(de|ch|com)"
        .prop_map(|s| Email::parse(&s).expect("valid"))
}

/// Valid lead data in DE or CH.
pub fn lead_data() -> impl Strategy<Value = LeadData> {
    (
        company_name(),
        proptest::option::of(email()),
        prop_oneof![Just("DE"), Just("CH"), Just("AT"), Just("LI")],
        proptest::option::of("[0-9]{4,5}"),
        proptest::option::of(proptest::sample::select(BusinessType::ALL.to_vec())),
        any::<bool>(),
    )
        .prop_map(|(name, email, country, plz, bt, consent)| {
            let mut d = LeadData::new(name, country).expect("valid country");
            d.email = email;
            d.postal_code = plz;
            d.business_type = bt;
            d.email_consent = consent;
            d
        })
}

/// An instant between 2020 and 2030 (UTC, whole seconds).
pub fn instant() -> impl Strategy<Value = OffsetDateTime> {
    (1_577_836_800i64..1_893_456_000)
        .prop_map(|s| OffsetDateTime::from_unix_timestamp(s).expect("in range"))
}

/// A positive duration up to `max_days`.
pub fn duration_up_to(max_days: i64) -> impl Strategy<Value = Duration> {
    (0..max_days * 86_400).prop_map(Duration::seconds)
}
