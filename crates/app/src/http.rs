//! Small HTTP helpers: ETags, preconditions, list query parsing.

use actix_web::HttpRequest;
use actix_web::http::header;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use freshplan_kernel::{TerritoryId, UserId};
use freshplan_leads::model::BusinessType;
use freshplan_leads::ports::{LeadQuery, SortField};
use freshplan_leads::status::LeadStatus;

use crate::problem::Problem;

/// Reads a request body of at most [`crate::BODY_LIMIT`] bytes; larger is 413 (before reading
/// when `Content-Length` says so).
pub async fn read_body(
    req: &HttpRequest,
    payload: actix_web::web::Payload,
) -> Result<actix_web::web::Bytes, Problem> {
    read_body_up_to(req, payload, crate::BODY_LIMIT, "64 KiB").await
}

/// Reads a request body of at most `limit` bytes (`limit_text` says it in the 413's detail).
pub async fn read_body_up_to(
    req: &HttpRequest,
    mut payload: actix_web::web::Payload,
    limit: usize,
    limit_text: &str,
) -> Result<actix_web::web::Bytes, Problem> {
    use futures_util::StreamExt;
    let too_large = || {
        Problem::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("The request body exceeds {limit_text}."),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = actix_web::web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            Problem::bad_request(format!("The request body could not be read: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The strong ETag of a lead version.
pub fn lead_etag(id: Uuid, version: i64) -> String {
    format!("\"{}-{}\"", id.simple(), version)
}

/// A weak ETag over a response body (lists: differs per page, filter and data).
pub fn weak_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// Hex SHA-256 of a request body (idempotency).
pub fn body_hash(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `If-None-Match` matches the ETag (weak comparison).
pub fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    let strip = |s: &str| s.trim().trim_start_matches("W/").to_owned();
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|v| v.trim() == "*" || v.split(',').any(|t| strip(t) == strip(etag)))
}

/// The tags of an RFC 9110 entity-tag list (`"…"` or `W/"…"`, separated by commas with optional
/// spaces and tabs) as (weak, opaque part), or `None` when the text is not one.
fn entity_tags(raw: &str) -> Option<Vec<(bool, &str)>> {
    const OWS: [char; 2] = [' ', '\t'];
    let mut rest = raw.trim_matches(OWS);
    let mut tags = Vec::new();
    loop {
        let weak = rest.starts_with("W/");
        let opaque = rest.strip_prefix("W/").unwrap_or(rest).strip_prefix('"')?;
        let end = opaque.find('"')?;
        let inner = &opaque[..end];
        if !inner
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
        {
            return None;
        }
        tags.push((weak, inner));
        rest = opaque[end + 1..].trim_start_matches(OWS);
        if rest.is_empty() {
            return Some(tags);
        }
        rest = rest.strip_prefix(',')?.trim_start_matches(OWS);
    }
}

/// The version an `If-Match` header names for lead `id`: `None` without the header (or with an
/// empty one),
/// `Some(i64::MIN)` for `*`, `Some(-1)` when no tag names this lead (stale: 412). A header that is
/// not `*` or a list of entity tags is 400.
fn if_match_version(req: &HttpRequest, id: Uuid) -> Result<Option<i64>, Problem> {
    // An empty field value is an empty list: no precondition, as if the header were absent.
    let Some(raw) = req
        .headers()
        .get(header::IF_MATCH)
        .filter(|v| !v.as_bytes().iter().all(|b| matches!(b, b' ' | b'\t')))
    else {
        return Ok(None);
    };
    let malformed = || {
        Problem::bad_field(
            "If-Match",
            "must be * or a list of entity tags such as \"<etag>\"",
        )
    };
    let raw = raw.to_str().map_err(|_| malformed())?;
    if raw.trim_matches([' ', '\t']) == "*" {
        return Ok(Some(i64::MIN));
    }
    let mut best = -1;
    // If-Match compares strongly (RFC 9110 §13.1.1): a weak tag never matches.
    for (_, inner) in entity_tags(raw)
        .ok_or_else(malformed)?
        .into_iter()
        .filter(|(weak, _)| !weak)
    {
        if let Some((tid, v)) = inner.split_once('-')
            && tid == id.simple().to_string()
            && let Ok(v) = v.parse::<i64>()
        {
            best = best.max(v);
        }
    }
    Ok(Some(best))
}

/// `If-Match` where SPEC §9 requires it (PATCH, DELETE): missing is 428.
pub fn required_if_match(req: &HttpRequest, id: Uuid) -> Result<Option<i64>, Problem> {
    match if_match_version(req, id)? {
        None => Err(Problem::new(
            actix_web::http::StatusCode::PRECONDITION_REQUIRED,
            "precondition-required",
            "This request needs an If-Match header with the lead's ETag.",
        )),
        Some(i64::MIN) => Ok(None),
        Some(v) => Ok(Some(v)),
    }
}

/// `If-Match` where it is honoured when sent (owner, clock).
pub fn optional_if_match(req: &HttpRequest, id: Uuid) -> Result<Option<i64>, Problem> {
    Ok(match if_match_version(req, id)? {
        None | Some(i64::MIN) => None,
        Some(v) => Some(v),
    })
}

fn parse_u32(name: &str, v: &str) -> Result<u32, Problem> {
    v.parse::<u32>()
        .map_err(|_| Problem::bad_field(name, "must be a non-negative integer"))
}

/// A territory filter (`DE` or `CH`, any case, nothing around it).
pub fn territory_id(v: &str) -> Option<TerritoryId> {
    ["DE", "CH"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(v))
        .then(|| v.parse().ok())
        .flatten()
}

/// Paging for sub-lists: `page` (0-based), `size` 1–200.
pub fn paging(query: &str) -> Result<(u32, u32), Problem> {
    let mut page = 0;
    let mut size = 20;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "page" => page = parse_u32("page", &v)?,
            "size" => size = parse_u32("size", &v)?,
            other => return Err(Problem::bad_field(other, "unknown query parameter")),
        }
    }
    if !(1..=200).contains(&size) {
        return Err(Problem::bad_field("size", "must be between 1 and 200"));
    }
    if page > 1_000_000 {
        return Err(Problem::bad_field("page", "must be at most 1000000"));
    }
    Ok((page, size))
}

/// Parses the query string of `GET /api/leads` (SPEC §9); anything unparsable is 400.
pub fn lead_query(query: &str) -> Result<LeadQuery, Problem> {
    let mut q = LeadQuery::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "page" => {
                q.page = parse_u32("page", &v)?;
                if q.page > 1_000_000 {
                    return Err(Problem::bad_field("page", "must be at most 1000000"));
                }
            }
            "size" => {
                q.size = parse_u32("size", &v)?;
                if !(1..=200).contains(&q.size) {
                    return Err(Problem::bad_field("size", "must be between 1 and 200"));
                }
            }
            "sort" => {
                let (field, dir) = v.split_once(',').unwrap_or((&v, "asc"));
                q.sort = SortField::parse(field).ok_or_else(|| {
                    Problem::bad_field("sort", format!("unknown sort field {field:?}"))
                })?;
                q.descending = match dir.to_ascii_lowercase().as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(Problem::bad_field("sort", "direction must be asc or desc")),
                };
            }
            "status" => {
                for s in v.split(',') {
                    q.statuses.push(s.parse::<LeadStatus>().map_err(|_| {
                        Problem::bad_field("status", format!("unknown status {s:?}"))
                    })?);
                }
            }
            "territory" => {
                // As documented (`^([dD][eE]|[cC][hH])$`): any case, no spaces.
                q.territory = Some(
                    territory_id(&v)
                        .ok_or_else(|| Problem::bad_field("territory", "must be DE or CH"))?,
                )
            }
            "ownerUserId" => {
                // As sent: the documented length and no control character even where trimming
                // would remove it.
                if v.chars().count() > UserId::MAX_LEN || v.chars().any(char::is_control) {
                    return Err(Problem::bad_field(
                        "ownerUserId",
                        "must be 1-64 characters without control characters",
                    ));
                }
                q.owner = Some(
                    UserId::parse(&v)
                        .map_err(|e| Problem::bad_field("ownerUserId", e.to_string()))?,
                )
            }
            "businessType" => {
                q.business_type = Some(
                    v.parse::<BusinessType>()
                        .map_err(|e| Problem::bad_field("businessType", e.message))?,
                )
            }
            "q" => {
                if v.chars().count() > 100 {
                    return Err(Problem::bad_field("q", "must be at most 100 characters"));
                }
                let t = v.trim();
                q.q = (!t.is_empty()).then(|| t.to_owned());
            }
            "includeDeleted" => {
                q.include_deleted = match v.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Problem::bad_field(
                            "includeDeleted",
                            "must be true or false",
                        ));
                    }
                }
            }
            other => return Err(Problem::bad_field(other, "unknown query parameter")),
        }
    }
    Ok(q)
}

/// 415 unless the body is `application/json` (or, for a merge patch,
/// `application/merge-patch+json`).
pub fn require_json(req: &HttpRequest, allow_merge_patch: bool) -> Result<(), Problem> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (allow_merge_patch && mime == "application/merge-patch+json") {
        Ok(())
    } else {
        Err(Problem::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            if allow_merge_patch {
                "Send the body as application/merge-patch+json or application/json."
            } else {
                "Send the body as application/json."
            },
        ))
    }
}

/// Reads a JSON request body into its API type (`freshplan_api`), the SPEC §9 way: not JSON, not
/// an object, a value of the wrong JSON type, an unknown field or a U+0000 anywhere is 400; a
/// missing required field (or `null` where the field may not be null), an unknown enum value or a value of the right type that is not
/// allowed (e.g. a malformed date-time) is 422. Either names the field.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("The request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Problem::bad_request(
            "The request body must be a JSON object.",
        ));
    }
    if let Some(at) = nul_at(&value, String::new()) {
        return Err(Problem::bad_field(&at, "must not contain U+0000"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        // serde names the offending member in backticks for unknown and missing fields; the
        // path then is the object that holds it.
        let named = message.split('`').nth(1).filter(|_| {
            message.starts_with("unknown field") || message.starts_with("missing field")
        });
        let path = e.path().to_string();
        // (serde_path_to_error's path ends at an unknown field, and at the object that misses a
        // required one.)
        let field = match (named, path.as_str()) {
            (Some(name), "." | "") => name.to_owned(),
            (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => p.to_owned(),
            (Some(name), p) => format!("{p}.{name}"),
            (None, p) => p.to_owned(),
        };
        let refused_value = ["unknown variant", "invalid value"]
            .iter()
            .any(|prefix| message.starts_with(prefix));
        if message.starts_with("missing field") {
            Problem::invalid(field, "is required")
        } else if message.starts_with("invalid type: null") {
            // A required field sent as null, or one that cannot be cleared: missing, not
            // mistyped.
            Problem::invalid(field, "may not be null")
        } else if refused_value {
            Problem::invalid(field, message)
        } else {
            Problem::bad_field(&field, message)
        }
    })
}

/// The path of the first string (or object key) holding U+0000, if any (PostgreSQL text cannot
/// store it).
fn nul_at(value: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0').then_some(at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_at(v, here)
            }
        }),
        _ => None,
    }
}

/// Converts between a domain value and its API twin (`freshplan_api`); a local trait, so the
/// app may implement it for both foreign sides.
pub(crate) trait Wire<T> {
    /// The other side's value.
    fn wire(self) -> T;
}

/// [`Wire`] both ways between a domain enum and its API twin, variant by variant (a variant
/// added on one side only does not compile).
macro_rules! wire_enum {
    ($domain:path => $api:path { $($variant:ident),+ $(,)? }) => {
        impl $crate::http::Wire<$api> for $domain {
            fn wire(self) -> $api {
                use $domain as D;
                use $api as A;
                match self { $(D::$variant => A::$variant),+ }
            }
        }
        impl $crate::http::Wire<$domain> for $api {
            fn wire(self) -> $domain {
                use $domain as D;
                use $api as A;
                match self { $(A::$variant => D::$variant),+ }
            }
        }
    };
}
pub(crate) use wire_enum;

/// Why a text, as sent, breaks its documented `maxLength` or control-character pattern (the
/// domain trims before it checks; the document describes what was sent). `multiline` allows line
/// breaks and tabs.
pub fn text_refusal(s: &str, max: usize, multiline: bool) -> Option<String> {
    if s.chars().count() > max {
        Some(format!("must be at most {max} characters"))
    } else if s
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        Some(if multiline {
            "must not contain control characters other than line breaks and tabs".to_owned()
        } else {
            "must not contain control characters".to_owned()
        })
    } else {
        None
    }
}

/// Parses a path id: 400 when it is not a UUID.
pub fn path_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::bad_field("id", "must be a UUID"))
}

/// The first query parameter whose percent-decoded name or value holds U+0000, by name.
fn nul_parameter(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        .map(|(k, _)| k.into_owned())
}

/// Middleware: a request under `/api/` whose percent-decoded query holds U+0000 is 400 before any
/// handler reads the query (SPEC §9: text never holds U+0000, and PostgreSQL can neither store nor
/// compare it, so a filter holding one would otherwise end as a 500). `/unsubscribe` answers
/// for itself (an HTML page for browsers); its token never verifies with a U+0000 in it.
pub async fn refuse_nul_in_query(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<
    actix_web::dev::ServiceResponse<
        actix_web::body::EitherBody<impl actix_web::body::MessageBody + 'static>,
    >,
    actix_web::Error,
> {
    if req.path().starts_with("/api/")
        && let Some(name) = nul_parameter(req.query_string())
    {
        let problem = Problem::bad_field(&name, "must not contain U+0000");
        return Ok(req.error_response(problem).map_into_right_body());
    }
    next.call(req)
        .await
        .map(actix_web::dev::ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_parameters_are_found_after_percent_decoding() {
        assert_eq!(nul_parameter("q=a%00b").as_deref(), Some("q"));
        assert_eq!(nul_parameter("page=0&q=%00").as_deref(), Some("q"));
        assert_eq!(nul_parameter("a%00=1").as_deref(), Some("a\0"));
        assert_eq!(
            nul_parameter("q=a%2500b&size=1"),
            None,
            "%25 is a literal %"
        );
        assert_eq!(
            nul_parameter("q=a+b%0Ac"),
            None,
            "other controls are the parsers' business"
        );
        assert_eq!(nul_parameter(""), None);
    }

    #[test]
    fn entity_tag_lists_are_read_as_rfc_9110_writes_them() {
        assert_eq!(entity_tags("\"a-1\""), Some(vec![(false, "a-1")]));
        assert_eq!(
            entity_tags(" W/\"x,y\" ,\t\"\" , \"z\"\t"),
            Some(vec![(true, "x,y"), (false, ""), (false, "z")])
        );
        for bad in [
            "",
            "*",
            "abc",
            "{}",
            "\"a\" \"b\"",
            "\"a\",",
            "\"a",
            "\"ä\"",
            "null",
        ] {
            assert_eq!(entity_tags(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn list_query_parsing() {
        let q = lead_query("page=2&size=50&sort=companyName,desc&status=ACTIVE&status=REGISTERED&territory=CH&q=%25x_").unwrap();
        assert_eq!((q.page, q.size, q.descending), (2, 50, true));
        assert_eq!(q.sort, SortField::CompanyName);
        assert_eq!(q.statuses.len(), 2);
        assert_eq!(q.territory, Some(TerritoryId::Ch));
        assert_eq!(q.q.as_deref(), Some("%x_"));
        for bad in [
            "size=201",
            "size=0",
            "page=-1",
            "sort=foo,asc",
            "sort=city,up",
            "status=NOPE",
            "territory=AT",
            "x=1",
            "businessType=BAR",
        ] {
            assert_eq!(lead_query(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
