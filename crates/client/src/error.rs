//! The client's error: the service's RFC 9457 problems by kind, and what can go wrong on the way.

use freshplan_api::problem::DuplicateOn;
use freshplan_api::{FieldProblem, Problem};
use uuid::Uuid;

/// A boxed error of a caller's callback (a [`crate::consumer::TokenProvider`]).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result<T, freshplan_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a call can fail with.
///
/// An error response of the service is a [`Problem`] (`application/problem+json`, SPEC §9); the
/// variants sort them by what a caller does about them, and the helpers answer the usual
/// questions without matching:
///
/// ```
/// use freshplan_client::Error;
/// use freshplan_client::api::{FieldProblem, Problem};
///
/// // What `POST /api/leads` answers for a company name of 300 characters:
/// let problem = Problem {
///     problem_type: "https://freshplan.example/problems/validation".into(),
///     title: "Unprocessable Entity".into(),
///     status: 422,
///     detail: "companyName: must be at most 255 characters".into(),
///     errors: vec![FieldProblem {
///         field: "companyName".into(),
///         message: "must be at most 255 characters".into(),
///     }],
///     duplicate_on: None,
///     existing_lead_id: None,
///     existing_company_name: None,
///     extra: None,
/// };
/// let err = Error::from_problem(422, problem);
/// assert!(err.is_validation());
/// assert!(!err.is_duplicate());
/// assert_eq!(err.status(), Some(422));
/// assert_eq!(err.field_error("companyName"), Some("must be at most 255 characters"));
/// assert_eq!(err.field_errors().len(), 1);
/// ```
///
/// The problems are boxed: an error is the rare path, and a small `Err` keeps every `Result`
/// (and every future holding one) small.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400: the request could not be read (a malformed id, query parameter or body); the
    /// problem names the field in `errors` where it can.
    #[error("bad request: {0}")]
    BadRequest(Box<Problem>),
    /// 401: no token, or one the service does not accept (expired, forged). Set a fresh one
    /// with [`crate::Client::set_token`].
    #[error("unauthorized: {0}")]
    Unauthorized(Box<Problem>),
    /// 403: the caller's role never allows this (SPEC §2).
    #[error("forbidden: {0}")]
    Forbidden(Box<Problem>),
    /// 404: no such resource, or one the caller may not read (never a 403, SPEC §2).
    #[error("not found: {0}")]
    NotFound(Box<Problem>),
    /// 409 `duplicate-lead`: a lead with the same email, or company name, postal code and
    /// country exists (SPEC §4.2); [`Error::existing_lead_id`] names it when the caller may
    /// read it.
    #[error("duplicate: {0}")]
    Duplicate(Box<Problem>),
    /// 409 of another kind: the resource's state does not allow it (the clock is already
    /// stopped, a follow-up run holds the lock, the mail is not DEAD).
    #[error("conflict: {0}")]
    Conflict(Box<Problem>),
    /// 412: the `If-Match` ETag is stale; read the resource again and retry.
    #[error("precondition failed: {0}")]
    PreconditionFailed(Box<Problem>),
    /// 428: the operation needs an `If-Match` ETag.
    #[error("precondition required: {0}")]
    PreconditionRequired(Box<Problem>),
    /// 422: a value the service does not allow (one entry per refused field in `errors`), an
    /// invalid status transition (`invalid-transition`) or an `Idempotency-Key` reused with
    /// another body (`idempotency-key-reused`).
    #[error("unprocessable: {0}")]
    Validation(Box<Problem>),
    /// Any other problem: 405, 413, 415, 5xx, 503.
    #[error("{0}")]
    Problem(Box<Problem>),
    /// An error status whose body is not a problem (e.g. a proxy's HTML page).
    #[error("HTTP {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The body, as text (cut to 2 KiB).
        body: String,
    },
    /// The request did not get a response: connection, TLS, timeout, or a body that broke off.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// An event stream ended (by the server, or silent past the consumer's idle timeout) and
    /// the consumer gave up reconnecting ([`crate::consumer::Consumer::max_failures`]).
    #[error("the event stream ended: {0}")]
    StreamEnded(&'static str),
    /// A response the client could not read as the documented body.
    #[error("unreadable {what} (HTTP {status}): {message}")]
    Decode {
        /// What was being read (`body`, `ETag`, `event`).
        what: &'static str,
        /// The HTTP status of the response.
        status: u16,
        /// What was wrong.
        message: String,
    },
    /// A base URL that cannot be one.
    #[error("invalid base URL {url:?}: {message}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why.
        message: String,
    },
    /// A header value the caller gave that HTTP cannot carry (e.g. an `Idempotency-Key` with a
    /// line break).
    #[error("invalid {name} header: {message}")]
    InvalidHeader {
        /// The header.
        name: &'static str,
        /// Why.
        message: String,
    },
    /// The token provider of an event consumer failed.
    #[error("token provider: {0}")]
    Token(#[source] BoxError),
}

impl Error {
    /// Sorts a problem the service answered with `status` into its variant.
    pub fn from_problem(status: u16, problem: Problem) -> Error {
        let problem = Box::new(problem);
        match status {
            400 => Error::BadRequest(problem),
            401 => Error::Unauthorized(problem),
            403 => Error::Forbidden(problem),
            404 => Error::NotFound(problem),
            409 if problem.slug() == "duplicate-lead" || problem.duplicate_on.is_some() => {
                Error::Duplicate(problem)
            }
            409 => Error::Conflict(problem),
            412 => Error::PreconditionFailed(problem),
            422 => Error::Validation(problem),
            428 => Error::PreconditionRequired(problem),
            _ => Error::Problem(problem),
        }
    }

    /// The problem the service answered with, if it answered with one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::BadRequest(p)
            | Error::Unauthorized(p)
            | Error::Forbidden(p)
            | Error::NotFound(p)
            | Error::Duplicate(p)
            | Error::Conflict(p)
            | Error::PreconditionFailed(p)
            | Error::PreconditionRequired(p)
            | Error::Validation(p)
            | Error::Problem(p) => Some(p.as_ref()),
            _ => None,
        }
    }

    /// The HTTP status of an error response (`None`: there was none).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } | Error::Decode { status, .. } => Some(*status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
            other => other.problem().map(|p| p.status),
        }
    }

    /// The problem type's last segment (`validation`, `duplicate-lead`, `precondition-failed`,
    /// `invalid-transition`, …).
    pub fn slug(&self) -> Option<&str> {
        self.problem().map(Problem::slug)
    }

    /// The refused fields (`errors` of a 400 or 422; empty otherwise).
    pub fn field_errors(&self) -> &[FieldProblem] {
        self.problem().map_or(&[], |p| p.errors.as_slice())
    }

    /// The message for one field, if the problem names it.
    pub fn field_error(&self, field: &str) -> Option<&str> {
        self.field_errors()
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    /// 409 `duplicate-lead`.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Error::Duplicate(_))
    }

    /// A duplicate's existing lead, when the caller may read it (SPEC §4.2).
    pub fn existing_lead_id(&self) -> Option<Uuid> {
        match self {
            Error::Duplicate(p) => p.existing_lead_id,
            _ => None,
        }
    }

    /// Which duplicate rule matched.
    pub fn duplicate_on(&self) -> Option<DuplicateOn> {
        match self {
            Error::Duplicate(p) => p.duplicate_on,
            _ => None,
        }
    }

    /// 422 of any kind.
    pub fn is_validation(&self) -> bool {
        matches!(self, Error::Validation(_))
    }

    /// 422 `invalid-transition` (SPEC §4.3).
    pub fn is_invalid_transition(&self) -> bool {
        self.is_validation() && self.slug() == Some("invalid-transition")
    }

    /// 422 `idempotency-key-reused`: the key was first used with another body.
    pub fn is_idempotency_key_reused(&self) -> bool {
        self.is_validation() && self.slug() == Some("idempotency-key-reused")
    }

    /// 400.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Error::BadRequest(_))
    }

    /// 401.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Error::Unauthorized(_))
    }

    /// 403.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Error::Forbidden(_))
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// 409 that is not a duplicate.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// 412: the ETag is stale.
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, Error::PreconditionFailed(_))
    }

    /// 428: `If-Match` is required.
    pub fn is_precondition_required(&self) -> bool {
        matches!(self, Error::PreconditionRequired(_))
    }

    /// No response, or a body that broke off.
    pub fn is_transport(&self) -> bool {
        matches!(self, Error::Transport(_))
    }

    /// Worth retrying the same request later: no response, 429, 502–504 (and 503 of a replica
    /// whose event stream is off). Not for 500 of a non-idempotent request.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport(e) => !e.is_builder() && !e.is_decode(),
            Error::StreamEnded(_) => true,
            _ => matches!(self.status(), Some(429 | 502..=504)),
        }
    }
}

impl From<Problem> for Error {
    fn from(p: Problem) -> Error {
        Error::from_problem(p.status, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(status: u16, slug: &str) -> Problem {
        Problem {
            problem_type: format!("https://freshplan.example/problems/{slug}"),
            title: "t".into(),
            status,
            detail: "d".into(),
            errors: Vec::new(),
            duplicate_on: None,
            existing_lead_id: None,
            existing_company_name: None,
            extra: None,
        }
    }

    #[test]
    fn problems_are_sorted_by_status_and_type() {
        let id = Uuid::now_v7();
        let mut dup = problem(409, "duplicate-lead");
        dup.existing_lead_id = Some(id);
        dup.duplicate_on = Some(DuplicateOn::Email);
        let e = Error::from(dup);
        assert!(e.is_duplicate() && !e.is_conflict());
        assert_eq!(e.existing_lead_id(), Some(id));
        assert_eq!(e.duplicate_on(), Some(DuplicateOn::Email));
        assert!(Error::from(problem(409, "conflict")).is_conflict());
        assert!(Error::from(problem(412, "precondition-failed")).is_precondition_failed());
        assert!(Error::from(problem(428, "precondition-required")).is_precondition_required());
        assert!(Error::from(problem(401, "unauthorized")).is_unauthorized());
        assert!(Error::from(problem(403, "forbidden")).is_forbidden());
        assert!(Error::from(problem(404, "not-found")).is_not_found());
        assert!(Error::from(problem(400, "bad-request")).is_bad_request());
        let t = Error::from(problem(422, "invalid-transition"));
        assert!(t.is_validation() && t.is_invalid_transition() && !t.is_idempotency_key_reused());
        assert!(Error::from(problem(422, "idempotency-key-reused")).is_idempotency_key_reused());
        let other = Error::from(problem(503, "events-off"));
        assert!(matches!(other, Error::Problem(_)));
        assert!(other.is_transient());
        assert_eq!(other.slug(), Some("events-off"));
        assert!(!Error::from(problem(500, "internal")).is_transient());
        assert_eq!(
            Error::Status {
                status: 502,
                body: String::new()
            }
            .status(),
            Some(502)
        );
    }
}
