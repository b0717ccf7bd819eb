//! What the resource modules share (and nothing else): query-parameter parsing and the problems
//! more than one resource answers. It imports no resource module.

use actix_web::http::StatusCode;

use freshplan_api::activities as api;
use freshplan_leads::activity::Activity;

use crate::http::{Wire, wire_enum};
use crate::problem::Problem;

/// The result of a handler.
pub(crate) type Result<T> = std::result::Result<T, Problem>;

/// The query's parameters, each at most once and all of them in `allowed` (SPEC §9: anything
/// else is 400).
pub(crate) fn params(query: &str, allowed: &[&str]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(Problem::bad_field(&k, "unknown query parameter"));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(Problem::bad_field(&k, "given more than once"));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// A number parameter in `1..=max`.
pub(crate) fn limit(name: &str, value: &str, max: u32) -> Result<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| Problem::bad_field(name, format!("must be between 1 and {max}")))
}

/// 503: this replica has no unsubscribe secret, so it neither runs follow-ups nor honours
/// unsubscribe links (`POST /api/followups/run`, `GET /unsubscribe`).
pub(crate) fn not_configured() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "followups-not-configured",
        "Follow-up mail is not configured on this service (FRESHPLAN_UNSUBSCRIBE_SECRET).",
    )
}

wire_enum!(freshplan_leads::activity::ActivityType => api::ActivityType {
    Email, EmailReceived, Call, Meeting, SampleSent, SampleFeedback, Order, Note, Created,
    Updated, StatusChanged, OwnerChanged, ClockStopped, ClockResumed, FollowupSent,
    FollowupSkipped, ReminderSent, GracePeriodStarted, Expired, Reactivated, Deleted,
    Unsubscribed, Erased
});

wire_enum!(freshplan_leads::personal::ErasureReason => freshplan_api::privacy::ErasureReason {
    DataSubjectRequest, ConsentWithdrawn, Objection, NoLongerNeeded, UnlawfulProcessing,
    LegalObligation, Retention
});

/// The API form of an activity.
pub(crate) fn activity(a: &Activity) -> api::Activity {
    api::Activity {
        id: a.id,
        lead_id: a.lead_id,
        activity_type: a.activity_type.wire(),
        occurred_at: a.occurred_at,
        description: a.description.clone(),
        user_id: a.user_id.as_str().to_owned(),
        meaningful_contact: a.meaningful_contact,
        metadata: a.metadata.clone(),
        created_at: a.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_known_and_given_once() {
        assert_eq!(
            params("limit=5", &["limit"]).unwrap(),
            [("limit".to_owned(), "5".to_owned())]
        );
        assert_eq!(params("x=1", &["limit"]).unwrap_err().status, 400);
        assert_eq!(
            params("limit=1&limit=2", &["limit"]).unwrap_err().status,
            400
        );
        assert_eq!(limit("limit", "100", 100).unwrap(), 100);
        for bad in ["0", "101", "-1", "1.5", ""] {
            assert_eq!(limit("limit", bad, 100).unwrap_err().status, 400, "{bad}");
        }
    }
}
