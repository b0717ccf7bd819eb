//! Bearer-JWT authentication (SPEC §2): HS256 with a shared secret, RS256/ES256 from a JWKS
//! document. `alg: none` cannot even be parsed, and each key only verifies the algorithm family it
//! was configured for, so algorithm confusion (an HS256 token "signed" with an RSA public key) fails.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use freshplan_kernel::{Actor, RoleSet, TerritoryId, UserId};

use crate::problem::Problem;

/// Where verification keys come from.
#[derive(Clone)]
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    jwks: Vec<(Option<String>, Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs256.is_some())
            .field("jwks_keys", &self.jwks.len())
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
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    realm_access: Option<RealmAccess>,
    #[serde(default)]
    territories: Vec<String>,
}

impl Authenticator {
    /// Builds an authenticator from an HS256 secret and/or a JWKS document.
    pub fn new(
        hs256_secret: Option<&str>,
        jwks_json: Option<&str>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> anyhow::Result<Authenticator> {
        let mut jwks = Vec::new();
        if let Some(doc) = jwks_json {
            let set: JwkSet = serde_json::from_str(doc)?;
            for jwk in set.keys {
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    // Symmetric or unknown keys in a JWKS are ignored: only public keys belong there.
                    _ => continue,
                };
                jwks.push((jwk.common.key_id.clone(), alg, DecodingKey::from_jwk(&jwk)?));
            }
        }
        let hs256 = hs256_secret.map(|s| DecodingKey::from_secret(s.as_bytes()));
        if hs256.is_none() && jwks.is_empty() {
            anyhow::bail!(
                "no authentication key configured: set FRESHPLAN_AUTH_HS256_SECRET or FRESHPLAN_AUTH_JWKS"
            );
        }
        Ok(Authenticator {
            hs256,
            jwks,
            issuer,
            audience,
        })
    }

    /// Validates a bearer token and builds the actor.
    pub fn authenticate(&self, token: &str) -> Result<Actor, Problem> {
        let bad = |why: &str| Problem::unauthorized(format!("Invalid token: {why}"));
        let header =
            decode_header(token).map_err(|_| bad("malformed header or unsupported algorithm"))?;
        let key = match header.alg {
            Algorithm::HS256 => self
                .hs256
                .as_ref()
                .ok_or_else(|| bad("HS256 tokens are not accepted"))?,
            Algorithm::RS256 | Algorithm::ES256 => self
                .jwks
                .iter()
                .find(|(kid, alg, _)| {
                    *alg == header.alg
                        && (header.kid.is_none() || kid.as_deref() == header.kid.as_deref())
                })
                .map(|(_, _, k)| k)
                .ok_or_else(|| bad("no matching key"))?,
            _ => return Err(bad("unsupported algorithm")),
        };
        let mut validation = Validation::new(header.alg);
        validation.validate_nbf = true;
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = decode::<Claims>(token, key, &validation).map_err(|e| bad(&e.to_string()))?;
        let c = data.claims;
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
        Ok(Actor::new(user, roles.iter(), territories))
    }
}

/// The authenticated caller, extracted from `Authorization: Bearer …`.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

impl FromRequest for Caller {
    type Error = Problem;
    type Future = Ready<Result<Caller, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(extract(req))
    }
}

fn extract(req: &HttpRequest) -> Result<Caller, Problem> {
    let auth = req
        .app_data::<web::Data<Arc<Authenticator>>>()
        .ok_or_else(|| Problem::unauthorized("authentication is not configured"))?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| Problem::unauthorized("Missing bearer token."))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| {
            Problem::unauthorized("The Authorization header must be 'Bearer <token>'.")
        })?;
    auth.authenticate(token.trim()).map(Caller)
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
