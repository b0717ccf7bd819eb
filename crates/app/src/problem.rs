//! RFC 9457 problem details: the one place where errors become HTTP responses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use freshplan_leads::LeadError;
use freshplan_leads::model::FieldError;

pub use freshplan_api::problem::{DuplicateOn, FieldProblem, MEDIA_TYPE};

/// An RFC 9457 problem (`application/problem+json`): the API's [`freshplan_api::Problem`]
/// body, as the error of a handler.
#[derive(Debug, Clone)]
pub struct Problem(pub freshplan_api::Problem);

// `body = Problem` in a handler's OpenAPI annotation documents the API's problem schema.
impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <freshplan_api::Problem as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Problem {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Problem")
    }
}

impl std::ops::Deref for Problem {
    type Target = freshplan_api::Problem;
    fn deref(&self) -> &freshplan_api::Problem {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut freshplan_api::Problem {
        &mut self.0
    }
}

/// Type slug of the 503 answered while the database cannot be reached.
pub const DATABASE_UNAVAILABLE: &str = "database-unavailable";
/// `Retry-After` of that 503, seconds: about how long a failover's re-pointing takes.
pub const DATABASE_RETRY_AFTER_SECS: u32 = 2;

impl Problem {
    /// A problem with a status, a type slug and a detail.
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Problem {
        Problem(freshplan_api::Problem {
            problem_type: format!("https://freshplan.example/problems/{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            duplicate_on: None,
            existing_lead_id: None,
            existing_company_name: None,
            extra: None,
        })
    }

    /// 400 with a detail.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 400 naming a field.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Problem {
        let message = message.into();
        let mut p = Problem::bad_request(format!("{field}: {message}"));
        p.errors.push(FieldProblem {
            field: field.to_owned(),
            message,
        });
        p
    }

    /// 422 with field errors.
    pub fn validation(errors: Vec<FieldError>) -> Problem {
        let detail = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail);
        p.errors = errors
            .into_iter()
            .map(|e| FieldProblem {
                field: e.field.to_owned(),
                message: e.message,
            })
            .collect();
        p
    }

    /// 422 for one field named by its path in the body.
    pub fn invalid(field: String, message: impl Into<String>) -> Problem {
        let message = message.into();
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            format!("{field}: {message}"),
        );
        p.errors.push(FieldProblem { field, message });
        p
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 500 with an opaque body; the cause goes to the log. A cause that says the database cannot
    /// be reached right now ([`freshplan_store_postgres::is_unavailable`]) is a 503
    /// `database-unavailable` with `Retry-After` instead: nothing was changed, and the same
    /// request may succeed shortly (a failover, a restart).
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Problem {
        let mut chain = cause.to_string();
        let mut src = cause.source();
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        if freshplan_store_postgres::is_unavailable(cause) {
            tracing::warn!(error = %chain, "database unavailable");
            return Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                DATABASE_UNAVAILABLE,
                "The database cannot be reached right now; nothing was changed. Retry shortly.",
            );
        }
        tracing::error!(error = %chain, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "An internal error occurred; it has been logged.",
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(MEDIA_TYPE);
        if self
            .0
            .problem_type
            .ends_with(&format!("/{DATABASE_UNAVAILABLE}"))
        {
            response.insert_header((
                actix_web::http::header::RETRY_AFTER,
                DATABASE_RETRY_AFTER_SECS.to_string(),
            ));
        }
        response.json(&self.0)
    }
}

impl From<freshplan_leads::ports::StoreError> for Problem {
    fn from(e: freshplan_leads::ports::StoreError) -> Self {
        Problem::from(LeadError::Store(e))
    }
}

impl From<LeadError> for Problem {
    fn from(e: LeadError) -> Self {
        match e {
            LeadError::NotFound => Problem::not_found("No lead with this id is visible to you."),
            LeadError::Forbidden(why) => Problem::forbidden(why),
            LeadError::Validation(errors) => Problem::validation(errors),
            LeadError::Duplicate { kind, existing } => {
                let mut p = Problem::new(
                    StatusCode::CONFLICT,
                    "duplicate-lead",
                    match kind {
                        freshplan_leads::duplicates::DuplicateKind::Email => {
                            "A lead with this email address already exists."
                        }
                        freshplan_leads::duplicates::DuplicateKind::Company => {
                            "A lead with this company name, postal code and country already exists."
                        }
                    },
                );
                p.duplicate_on = Some(match kind {
                    freshplan_leads::duplicates::DuplicateKind::Email => DuplicateOn::Email,
                    freshplan_leads::duplicates::DuplicateKind::Company => DuplicateOn::Company,
                });
                if let Some(l) = existing {
                    p.existing_lead_id = Some(l.id);
                    p.existing_company_name = Some(l.data.company_name.as_str().to_owned());
                }
                p
            }
            LeadError::Transition(t) => {
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-transition",
                    t.to_string(),
                );
                p.errors.push(FieldProblem {
                    field: "status".into(),
                    message: t.to_string(),
                });
                p
            }
            LeadError::Conflict(m) => Problem::new(StatusCode::CONFLICT, "conflict", m),
            LeadError::PreconditionFailed { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                format!("The lead has changed; its current version is {current}. Fetch it again."),
            ),
            LeadError::IdempotencyMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "This Idempotency-Key was already used with a different request body.",
            ),
            LeadError::Store(e) => Problem::internal(&e),
        }
    }
}
