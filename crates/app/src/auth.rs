//! Bearer-JWT authentication (SPEC §2): HS256 with a shared secret, RS256/ES256 from a JWKS
//! document (inline, a file, or an http(s) URL that is fetched at start and again when a token
//! names a key id we do not know, so key rotation at the identity provider needs no restart).
//!
//! `alg: none` cannot even be parsed, and each key only verifies the algorithm it was configured
//! for (the HS256 secret only HS256; a JWKS RSA key only RS256, a P-256 key only ES256; keys marked
//! `use: enc` or with another `alg` are not loaded), so algorithm confusion — e.g. an HS256 token
//! "signed" with an RSA public key, or an RS256 header naming an EC key — fails. When an issuer
//! or an audience is configured, a token must carry a matching `iss`/`aud` claim.
//!
//! Every failure is a 401 `application/problem+json` with `WWW-Authenticate: Bearer`
//! (RFC 6750 §3).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, dev::Payload, web};
use anyhow::Context;
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, decode, decode_header};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use freshplan_kernel::{Actor, RoleSet, TerritoryId, UserId};

use crate::problem::Problem;

/// After a refetch of a JWKS URL caused by an unknown key id, further unknown key ids do not
/// cause another fetch for this long (a flood of made-up `kid`s must not become a flood of
/// requests to the identity provider). The fetch at start does not count.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// How far past its `exp` (and before its `nbf`) a token is still accepted: clock skew between
/// the identity provider and this service.
pub const LEEWAY_SECONDS: u64 = 30;

/// Connect and total timeouts of a JWKS fetch.
const JWKS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

/// A JWKS document larger than this is refused (real ones are a few KiB).
const JWKS_MAX_BYTES: usize = 1024 * 1024;

/// Whether a `FRESHPLAN_AUTH_JWKS` value is a URL to fetch the key set from.
pub fn is_jwks_url(value: &str) -> bool {
    let v = value.trim_start();
    ["http://", "https://"].iter().any(|scheme| {
        v.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    })
}

/// One verification key from a JWKS document.
struct JwksKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// A JWKS URL and what its refetching needs.
struct RemoteJwks {
    url: reqwest::Url,
    client: reqwest::Client,
    /// When an unknown key id last caused a fetch. Held across that fetch, so requests that
    /// arrive meanwhile wait for it instead of starting their own.
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

/// Validates bearer tokens against the configured keys.
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    /// Replaced as a whole when a JWKS URL is refetched.
    jwks: RwLock<Arc<[JwksKey]>>,
    remote: Option<RemoteJwks>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs256.is_some())
            .field("jwks_keys", &self.current_keys().len())
            .field("jwks_url", &self.remote.as_ref().map(|r| r.url.as_str()))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct RealmAccess {
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// A NumericDate: whole or fractional seconds (jsonwebtoken's validation accepts both).
    exp: serde_json::Number,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    realm_access: Option<RealmAccess>,
    #[serde(default)]
    territories: Vec<String>,
}

impl Authenticator {
    /// Builds an authenticator from an HS256 secret and/or a JWKS source: the document itself
    /// (JSON) or an `http(s)://` URL to fetch it from (see [`crate::config::Config::jwks_document`]).
    ///
    /// A URL is fetched here, before the server accepts connections; an unreachable URL, an
    /// error status or a document without a usable RS256/ES256 signing key is an error, so the
    /// service does not start half-configured. The fetch blocks the calling thread (at most the
    /// fetch timeout of 10 s); it runs on a thread and runtime of its own, so this constructor
    /// may be called from inside an async runtime.
    pub fn new(
        hs256_secret: Option<&str>,
        jwks: Option<&str>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> anyhow::Result<Authenticator> {
        let (keys, remote) = match jwks {
            None => (Vec::new(), None),
            Some(url) if is_jwks_url(url) => {
                let url = reqwest::Url::parse(url.trim())
                    .with_context(|| format!("FRESHPLAN_AUTH_JWKS: invalid URL {url:?}"))?;
                let keys = fetch_at_start(&url).context("FRESHPLAN_AUTH_JWKS")?;
                let remote = RemoteJwks {
                    url,
                    client: jwks_client()?,
                    last_refresh: tokio::sync::Mutex::new(None),
                };
                (keys, Some(remote))
            }
            Some(doc) => (
                parse_jwks(doc.as_bytes()).context("FRESHPLAN_AUTH_JWKS")?,
                None,
            ),
        };
        let hs256 = hs256_secret.map(|s| DecodingKey::from_secret(s.as_bytes()));
        if hs256.is_none() && keys.is_empty() {
            anyhow::bail!(
                "no authentication key configured: set FRESHPLAN_AUTH_HS256_SECRET or FRESHPLAN_AUTH_JWKS"
            );
        }
        Ok(Authenticator {
            hs256,
            jwks: RwLock::new(keys.into()),
            remote,
            issuer,
            audience,
        })
    }

    fn current_keys(&self) -> Arc<[JwksKey]> {
        // A poisoned lock only means a writer panicked between two whole-set replacements.
        self.jwks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The JWKS keys that may verify a token with this header: same algorithm, and the same key
    /// id when the token names one.
    fn candidates(&self, header: &Header) -> Vec<DecodingKey> {
        self.current_keys()
            .iter()
            .filter(|k| {
                k.alg == header.alg
                    && (header.kid.is_none() || k.kid.as_deref() == header.kid.as_deref())
            })
            .map(|k| k.key.clone())
            .collect()
    }

    /// Refetches the JWKS URL because a token named a key we do not have. Returns whether the
    /// key set may have changed (false: no URL, rate-limited, or the fetch failed — then the
    /// current keys stay).
    async fn refresh_for(&self, header: &Header) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        let mut last = remote.last_refresh.lock().await;
        if !self.candidates(header).is_empty() {
            // Another request refreshed while we waited for the lock.
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < JWKS_REFRESH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        match fetch(&remote.client, &remote.url).await {
            Ok(keys) => {
                tracing::info!(url = %remote.url, keys = keys.len(), kid = ?header.kid, "JWKS refreshed for an unknown key id");
                *self
                    .jwks
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys.into();
                true
            }
            Err(e) => {
                tracing::warn!(url = %remote.url, error = format!("{e:#}"), "JWKS refresh failed; keeping the current keys");
                false
            }
        }
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        // Without listing them, jsonwebtoken accepts a token that simply omits `iss`/`aud`.
        validation.set_required_spec_claims(&required);
        validation
    }

    /// Validates a bearer token and builds the caller: the actor and the token's expiry.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, Problem> {
        let bad = |why: &str| Problem::unauthorized(format!("Invalid token: {why}"));
        let header =
            decode_header(token).map_err(|_| bad("malformed header or unsupported algorithm"))?;
        let keys = match header.alg {
            Algorithm::HS256 => vec![
                self.hs256
                    .clone()
                    .ok_or_else(|| bad("HS256 tokens are not accepted"))?,
            ],
            Algorithm::RS256 | Algorithm::ES256 => {
                let mut keys = self.candidates(&header);
                if keys.is_empty() && self.refresh_for(&header).await {
                    keys = self.candidates(&header);
                }
                if keys.is_empty() {
                    return Err(bad("no matching key"));
                }
                keys
            }
            _ => return Err(bad("unsupported algorithm")),
        };
        let validation = self.validation(header.alg);
        // Several candidates only when the token names no key id: the first that verifies wins.
        let mut last_error = None;
        let mut claims = None;
        for key in &keys {
            match decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    last_error = Some(e);
                }
                Err(e) => return Err(bad(&e.to_string())),
            }
        }
        let c = claims.ok_or_else(|| {
            bad(&last_error.map_or_else(|| "no matching key".into(), |e| e.to_string()))
        })?;
        let user = UserId::parse(&c.sub).map_err(|_| bad("sub must be 1-64 characters"))?;
        let names = c
            .roles
            .iter()
            .chain(c.realm_access.iter().flat_map(|r| r.roles.iter()));
        let roles = RoleSet::from_names(names);
        let territories: Vec<TerritoryId> = c
            .territories
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        Ok(Caller(
            Actor::new(user, roles.iter(), territories),
            expiry(&c.exp),
        ))
    }
}

fn jwks_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(JWKS_CONNECT_TIMEOUT)
        .timeout(JWKS_TIMEOUT)
        // Fetches are rare and may come from different worker runtimes: keep no connection
        // (a pooled one would belong to the runtime that opened it).
        .pool_max_idle_per_host(0)
        .build()
        .context("building the JWKS HTTP client")
}

/// The fetch at start, from a synchronous constructor: on a thread of its own with a private
/// runtime, whatever runtime (if any) the caller is on.
fn fetch_at_start(url: &reqwest::Url) -> anyhow::Result<Vec<JwksKey>> {
    let url = url.clone();
    std::thread::Builder::new()
        .name("jwks-fetch".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime for the JWKS fetch")?;
            rt.block_on(async {
                let client = jwks_client()?;
                fetch(&client, &url).await
            })
        })
        .context("starting the JWKS fetch thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the JWKS fetch thread panicked"))?
}

async fn fetch(client: &reqwest::Client, url: &reqwest::Url) -> anyhow::Result<Vec<JwksKey>> {
    let what = || format!("fetching the JWKS from {url}");
    let mut resp = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .with_context(what)?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!("{}: HTTP {status}", what());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.with_context(what)? {
        if body.len() + chunk.len() > JWKS_MAX_BYTES {
            anyhow::bail!("{}: the document exceeds {JWKS_MAX_BYTES} bytes", what());
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body).with_context(what)
}

/// Parses a JWKS document into verification keys. Keys that are not signature keys for RS256
/// or ES256 (P-256) are skipped — identity providers publish encryption keys and other
/// algorithms in the same set — but a set with no usable key at all is an error.
fn parse_jwks(doc: &[u8]) -> anyhow::Result<Vec<JwksKey>> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet =
        serde_json::from_slice(doc).context("not a JWKS document (expected {\"keys\": [...]})")?;
    let mut keys = Vec::new();
    for raw in set.keys {
        let jwk: Jwk = match serde_json::from_value(raw) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a JWKS entry this service cannot read");
                continue;
            }
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            // Symmetric keys never belong in a published set; other algorithms are not accepted.
            _ => continue,
        };
        let key = DecodingKey::from_jwk(&jwk)
            .with_context(|| format!("JWKS key {:?}", jwk.common.key_id))?;
        keys.push(JwksKey {
            kid: jwk.common.key_id,
            alg,
            key,
        });
    }
    if keys.is_empty() {
        anyhow::bail!("the JWKS document contains no RS256 or ES256 (P-256) signing key");
    }
    Ok(keys)
}

/// The instant of an `exp` claim. The validation has checked that it is a non-negative number
/// not long past; one beyond what `time` represents (the year 9999) is as good as never.
fn expiry(exp: &serde_json::Number) -> OffsetDateTime {
    let at = match exp.as_i64() {
        Some(seconds) => OffsetDateTime::from_unix_timestamp(seconds).ok(),
        // Fractional (or beyond i64): `as` saturates, the sub-microsecond error is irrelevant.
        None => exp
            .as_f64()
            .and_then(|s| OffsetDateTime::from_unix_timestamp_nanos((s * 1e9) as i128).ok()),
    };
    at.unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc())
}

/// The authenticated caller, extracted from `Authorization: Bearer …`: the actor (`.0`) and when
/// its token expires ([`Caller::expires_at`]).
///
/// The expiry is private: a `Caller` exists only for a validated token. (The actor stays the
/// public tuple field every handler reads.)
#[derive(Debug, Clone)]
pub struct Caller(pub Actor, OffsetDateTime);

impl Caller {
    /// The token's `exp`. Validation accepts a token up to [`LEEWAY_SECONDS`] past it (clock
    /// skew); what outlives the request — an SSE stream — ends at this instant itself
    /// ([`crate::sse::response_until`], ADR 0010).
    pub fn expires_at(&self) -> OffsetDateTime {
        self.1
    }
}

/// Why a request is not authenticated: a 401 problem document with `WWW-Authenticate: Bearer`
/// (with `error="invalid_token"` when a token was presented, RFC 6750 §3.1).
#[derive(Debug)]
pub struct Unauthorized {
    problem: Problem,
    token_presented: bool,
}

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.problem, f)
    }
}

impl Unauthorized {
    /// The 401 for a token past its `exp` that the validation still accepted within its leeway,
    /// where that is not enough: an SSE stream, which would end before it starts
    /// ([`crate::sse::response_until`]).
    pub fn token_expired(expires_at: OffsetDateTime) -> Unauthorized {
        let at = expires_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| expires_at.to_string());
        Unauthorized {
            problem: Problem::unauthorized(format!("Invalid token: it expired at {at}.")),
            token_presented: true,
        }
    }
}

impl ResponseError for Unauthorized {
    fn status_code(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn error_response(&self) -> HttpResponse {
        let challenge = if self.token_presented {
            r#"Bearer realm="freshplan", error="invalid_token""#
        } else {
            r#"Bearer realm="freshplan""#
        };
        let mut resp = self.problem.error_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        resp
    }
}

impl FromRequest for Caller {
    type Error = Unauthorized;
    type Future = LocalBoxFuture<'static, Result<Caller, Unauthorized>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<Arc<Authenticator>>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let token = token.map_err(|problem| Unauthorized {
                problem,
                token_presented: false,
            })?;
            let auth = auth.ok_or_else(|| Unauthorized {
                problem: Problem::unauthorized("Authentication is not configured."),
                token_presented: true,
            })?;
            auth.authenticate(&token)
                .await
                .map_err(|problem| Unauthorized {
                    problem,
                    token_presented: true,
                })
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Result<String, Problem> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| Problem::unauthorized("Missing bearer token."))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| {
            Problem::unauthorized("The Authorization header must be 'Bearer <token>'.")
        })?;
    Ok(token.trim().to_owned())
}

/// Mints an HS256 development token (used by `xtask token`, the demo and tests).
pub fn mint_hs256(
    secret: &str,
    sub: &str,
    roles: &[&str],
    territories: &[&str],
    ttl_seconds: i64,
) -> anyhow::Result<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "sub": sub,
        "roles": roles,
        "territories": territories,
        "iat": now,
        "nbf": now - 5,
        "exp": now + ttl_seconds,
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_urls_are_recognised_by_scheme_only() {
        assert!(is_jwks_url(
            "https://idp.example/realms/x/protocol/openid-connect/certs"
        ));
        assert!(is_jwks_url("HTTP://127.0.0.1:8081/jwks"));
        assert!(!is_jwks_url("/etc/freshplan/jwks.json"));
        assert!(!is_jwks_url("httpkeys.json"));
        assert!(!is_jwks_url(r#"{"keys":[]}"#));
    }

    #[tokio::test]
    async fn the_caller_carries_the_token_expiry_whole_or_fractional() {
        let secret = "unit-test-secret";
        let auth = Authenticator::new(Some(secret), None, None, None).unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let sign = |exp: serde_json::Value| {
            let claims = serde_json::json!({"sub": "u-1", "roles": ["admin"], "exp": exp});
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let whole = auth.authenticate(&sign((now + 60).into())).await.unwrap();
        assert_eq!(whole.expires_at().unix_timestamp(), now + 60);
        let fractional = auth
            .authenticate(&sign((now as f64 + 60.25).into()))
            .await
            .unwrap();
        let nanos = (i128::from(now) + 60) * 1_000_000_000 + 250_000_000;
        assert!((fractional.expires_at().unix_timestamp_nanos() - nanos).abs() < 1_000);
        // Within the leeway a token past its `exp` still authenticates, with that `exp`.
        let late = auth.authenticate(&sign((now - 5).into())).await.unwrap();
        assert_eq!(late.expires_at().unix_timestamp(), now - 5);
        assert_eq!(
            expiry(&u64::MAX.into()),
            time::PrimitiveDateTime::MAX.assume_utc()
        );
    }

    #[test]
    fn a_set_without_a_signing_key_is_refused_and_foreign_keys_are_skipped() {
        let err = parse_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)
            .err()
            .map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains("no RS256 or ES256")));
        assert!(parse_jwks(b"[]").is_err());
        let fixture = include_str!("../tests/fixtures/jwks.json");
        let keys = parse_jwks(fixture.as_bytes()).unwrap();
        let loaded: Vec<_> = keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        // `enc-1` is an encryption key (`use: enc`, `alg: RSA-OAEP`): never a verifier.
        assert_eq!(
            loaded,
            [
                (Some("rsa-1"), Algorithm::RS256),
                (Some("ec-1"), Algorithm::ES256)
            ]
        );
    }
}
