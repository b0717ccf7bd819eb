//! The fixed test keys in `tests/fixtures` (see its README) and token minting with them.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::problem;

/// The path of a fixture file.
pub(crate) fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The text of a fixture file.
pub(crate) fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The private key `rsa-1`, `rsa-2` or `ec-1`.
pub(crate) fn private_key(name: &str) -> EncodingKey {
    let pem = fixture(&format!("{name}.key.pem"));
    if name.starts_with("ec") {
        EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()
    } else {
        EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
    }
}

/// Valid claims for an admin (`sub`, `roles`, `exp`, `nbf`), with `extra` merged over them
/// (a `null` in `extra` removes the claim).
pub(crate) fn claims(extra: Value) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut c = json!({
        "sub": "admin-1",
        "roles": ["admin"],
        "territories": [],
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A token signed with `key` under `alg`, naming `kid` in its header.
pub(crate) fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// An admin token signed by the fixture key `name` (`rsa-*` → RS256, `ec-*` → ES256) under `kid`.
pub(crate) fn signed_by(name: &str, kid: Option<&str>) -> String {
    let alg = if name.starts_with("ec") {
        Algorithm::ES256
    } else {
        Algorithm::RS256
    };
    sign(alg, kid, &private_key(name), &claims(json!({})))
}

pub(crate) fn base64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token whose header is `header` (verbatim) and whose signature is made with `key` under
/// `signed_as` — how an attacker pairs a header with a signature of another algorithm.
pub(crate) fn forge(
    header: Value,
    claims: &Value,
    key: &EncodingKey,
    signed_as: Algorithm,
) -> String {
    let message = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, signed_as).unwrap();
    format!("{message}.{signature}")
}

/// Asserts a 401 problem document with a `WWW-Authenticate: Bearer` challenge; returns the
/// problem and the challenge.
pub(crate) async fn unauthorized(r: Response) -> (Value, String) {
    assert_eq!(r.status(), 401, "expected 401 for {}", r.url());
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "401 without a Bearer challenge: {challenge:?}"
    );
    (problem(r, 401).await, challenge)
}
