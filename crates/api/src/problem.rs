//! RFC 9457 problem details (`application/problem+json`, SPEC §9).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every error body.
pub const MEDIA_TYPE: &str = "application/problem+json";

/// A field-level message: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldProblem {
    /// The field (API name).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// An RFC 9457 problem. 422 carries `errors` (one per refused field); 409 for a duplicate
/// carries `existingLeadId` when the caller may read the other lead; 503 of `/health/ready`
/// carries `database` and `eventListener`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`https://freshplan.example/problems/<slug>`).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary (the status' reason phrase).
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// A human-readable explanation of this occurrence.
    pub detail: String,
    /// Validation errors, when there are any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// 409 `duplicate-lead`: the rule the lead matched.
    #[serde(
        rename = "duplicateOn",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub duplicate_on: Option<DuplicateOn>,
    /// 409 `duplicate-lead`: the other lead, only when the caller may read it.
    #[serde(
        rename = "existingLeadId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub existing_lead_id: Option<uuid::Uuid>,
    /// 409 `duplicate-lead`: the other lead's company, only when the caller may read it.
    #[serde(
        rename = "existingCompanyName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub existing_company_name: Option<String>,
    /// Other members (`database` and `eventListener` of a 503 from `/health/ready`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Which duplicate rule a lead matched (SPEC §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DuplicateOn {
    /// The same normalised email.
    Email,
    /// The same normalised company name, postal code and country.
    Company,
}

impl Problem {
    /// The last segment of `type`, e.g. `duplicate`, `validation`, `precondition-failed`.
    pub fn slug(&self) -> &str {
        self.problem_type
            .rsplit('/')
            .next()
            .unwrap_or(&self.problem_type)
    }

    /// An extra member by name.
    pub fn extra(&self, name: &str) -> Option<&serde_json::Value> {
        self.extra.as_ref()?.get(name)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl std::error::Error for Problem {}
