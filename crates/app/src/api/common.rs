//! What the resource modules share (and nothing else): query-parameter parsing and the problems
//! more than one resource answers. It imports no resource module.

use actix_web::http::StatusCode;

use freshplan_api::activities as api;
use freshplan_leads::activity::Activity;

use freshplan_kernel::UserId;
use freshplan_leads::LeadData;
use freshplan_leads::lead::limits;
use freshplan_leads::model::{CompanyName, Email, FieldError, Volume, bounded_text};

use crate::http::{self, Wire, wire_enum};
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

/// Collects 422 field errors while converting.
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    pub(crate) fn take<T>(&mut self, r: std::result::Result<T, FieldError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    /// The domain trims; the document's `maxLength` and control-character pattern apply to
    /// what was sent, so they are checked before trimming too.
    pub(crate) fn within(&mut self, field: &'static str, s: &str, max: usize) -> bool {
        self.within_text(field, s, max, false)
    }

    /// [`Errors::within`] for a text that may span lines (line breaks and tabs allowed).
    pub(crate) fn within_lines(&mut self, field: &'static str, s: &str, max: usize) -> bool {
        self.within_text(field, s, max, true)
    }

    fn within_text(&mut self, field: &'static str, s: &str, max: usize, multiline: bool) -> bool {
        match http::text_refusal(s, max, multiline) {
            Some(message) => {
                self.0.push(FieldError::new(field, message));
                false
            }
            None => true,
        }
    }

    pub(crate) fn text(
        &mut self,
        field: &'static str,
        s: Option<String>,
        max: usize,
    ) -> Option<String> {
        if !s.as_deref().is_none_or(|s| self.within(field, s, max)) {
            return None;
        }
        self.take(bounded_text(field, s.as_deref(), max)).flatten()
    }

    pub(crate) fn email(&mut self, s: Option<String>) -> Option<Email> {
        if !s
            .as_deref()
            .is_none_or(|s| self.within("email", s, Email::MAX_LEN))
        {
            return None;
        }
        match s {
            Some(s) if !s.trim().is_empty() => self.take(Email::parse(&s)),
            _ => None,
        }
    }

    pub(crate) fn employees(&mut self, n: i64) -> Option<i32> {
        if n < 0 {
            self.0.push(FieldError::new(
                "employeeCount",
                "must be greater than or equal to 0",
            ));
            None
        } else {
            self.take(
                i32::try_from(n).map_err(|_| {
                    FieldError::new("employeeCount", "must be between 0 and 2147483647")
                }),
            )
        }
    }

    pub(crate) fn volume(&mut self, v: f64) -> Option<Volume> {
        let spelled =
            serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string());
        self.take(Volume::parse_decimal(&spelled))
    }

    pub(crate) fn country(&mut self, s: &str) -> Option<String> {
        self.take(
            freshplan_territory::normalise_country_code(s)
                .map_err(|e| FieldError::new("countryCode", e.to_string())),
        )
    }

    pub(crate) fn user(&mut self, field: &'static str, s: &str) -> Option<UserId> {
        if !self.within(field, s, UserId::MAX_LEN) {
            return None;
        }
        self.take(UserId::parse(s).map_err(|e| FieldError::new(field, e.to_string())))
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Problem::validation(self.0))
        }
    }
}

/// The field rules of a create body (every refused field, or the lead data): single creates
/// and every row of an import go through this one function.
pub(crate) fn lead_data(
    body: freshplan_api::leads::LeadCreate,
) -> std::result::Result<(LeadData, Option<time::OffsetDateTime>), Vec<FieldError>> {
    let mut errs = Errors::default();
    let company = if errs.within("companyName", &body.company_name, CompanyName::MAX_LEN) {
        errs.take(CompanyName::parse(&body.company_name))
    } else {
        None
    };
    let country = match body.country_code.as_deref() {
        Some(c) => errs.country(c),
        None => Some("DE".to_owned()),
    };
    let contact_person = errs.text("contactPerson", body.contact_person, limits::CONTACT_PERSON);
    let email = errs.email(body.email);
    let phone = errs.text("phone", body.phone, limits::PHONE);
    let website = errs.text("website", body.website, limits::WEBSITE);
    let street = errs.text("street", body.street, limits::STREET);
    let postal_code = errs.text("postalCode", body.postal_code, limits::POSTAL_CODE);
    let city = errs.text("city", body.city, limits::CITY);
    let employee_count = body.employee_count.and_then(|n| errs.employees(n));
    let estimated_volume = body.estimated_volume.and_then(|v| errs.volume(v));
    let industry = errs.text("industry", body.industry, limits::INDUSTRY);
    let source_campaign = errs.text(
        "sourceCampaign",
        body.source_campaign,
        limits::SOURCE_CAMPAIGN,
    );
    if !errs.0.is_empty() {
        return Err(errs.0);
    }
    let (Some(company), Some(country)) = (company, country) else {
        return Err(vec![FieldError::new("companyName", "is required")]);
    };
    let mut data = LeadData::new(company, &country).map_err(|e| vec![e])?;
    data.contact_person = contact_person;
    data.email = email;
    data.phone = phone;
    data.website = website;
    data.street = street;
    data.postal_code = postal_code;
    data.city = city;
    data.business_type = body.business_type.map(Wire::wire);
    data.kitchen_size = body.kitchen_size.map(Wire::wire);
    data.employee_count = employee_count;
    data.estimated_volume = estimated_volume;
    data.industry = industry;
    data.source = body
        .source
        .map_or(freshplan_leads::model::LeadSource::Web, Wire::wire);
    data.source_campaign = source_campaign;
    data.email_consent = body.email_consent.unwrap_or(false);
    Ok((data, body.registered_at))
}

/// The `Idempotency-Key` header: 1–255 visible ASCII characters (SPEC §9), else 400.
pub(crate) fn idempotency_key(req: &actix_web::HttpRequest) -> Result<Option<String>> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .map(|k| Some(k.to_owned()))
            .ok_or_else(|| {
                Problem::bad_field("Idempotency-Key", "must be 1-255 visible characters")
            }),
    }
}
