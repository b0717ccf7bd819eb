//! Bearer tokens over HTTP (SPEC §2): RS256 and ES256 verified with a JWKS, algorithm confusion,
//! `iss`/`aud` when configured, and the shape of every 401 (RFC 9457 problem +
//! `WWW-Authenticate: Bearer`). `alg: none`, a wrong secret and expiry are in `api.rs`.

use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::keys::*;

const ISSUER: &str = "https://idp.example/realms/freshplan";
const AUDIENCE: &str = "freshplan-api";

/// The app with both key sources: the HS256 secret and the fixture JWKS file.
async fn app_with_jwks_file() -> TestApp {
    spawn_app_with(|c| c.jwks = Some(fixture_path("jwks.json")))
        .await
        .expect("start")
}

async fn status_of(app: &TestApp, token: &str) -> u16 {
    app.get(token, "/api/leads").await.status().as_u16()
}

#[actix_web::test]
async fn rs256_and_es256_tokens_verified_by_the_jwks_are_accepted() {
    let app = app_with_jwks_file().await;
    assert_eq!(
        status_of(&app, &signed_by("rsa-1", Some("rsa-1"))).await,
        200
    );
    assert_eq!(status_of(&app, &signed_by("ec-1", Some("ec-1"))).await, 200);
    // Without a kid, every key of the token's algorithm is tried.
    assert_eq!(status_of(&app, &signed_by("rsa-1", None)).await, 200);
    assert_eq!(status_of(&app, &signed_by("ec-1", None)).await, 200);
    // The HS256 secret still works beside the JWKS.
    assert_eq!(status_of(&app, &admin()).await, 200);

    // The claims are the caller: a Keycloak-shaped token (roles under realm_access, any case).
    let keycloak = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &private_key("rsa-1"),
        &claims(json!({
            "sub": "kc-user-7",
            "roles": null,
            "realm_access": {"roles": ["SALES", "offline_access"]},
            "territories": ["DE"],
        })),
    );
    let created = app.create_ok(&keycloak, lead("Keycloak GmbH")).await;
    assert_eq!(created["ownerUserId"], "kc-user-7");
    assert_eq!(created["createdBy"], "kc-user-7");
    // ... and a token without a role that may create is refused for that reason, not for its key.
    let viewer = sign(
        Algorithm::ES256,
        Some("ec-1"),
        &private_key("ec-1"),
        &claims(json!({"sub": "v", "roles": ["viewer"], "territories": ["DE"]})),
    );
    problem(app.create(&viewer, lead("Viewer AG")).await, 403).await;

    // A key the set does not hold, or a signature by another key than the kid names: 401.
    for token in [
        signed_by("rsa-1", Some("rsa-404")),
        signed_by("rsa-2", Some("rsa-1")),
        signed_by("rsa-2", None),
        // `enc-1` is rsa-2's public key published for encryption (`use: enc`, `alg: RSA-OAEP`):
        // it never verifies a signature, even one that rsa-2 really made.
        signed_by("rsa-2", Some("enc-1")),
    ] {
        unauthorized(app.get(&token, "/api/leads").await).await;
    }
    // Expired and not-yet-valid tokens are refused whatever the key (30 s leeway).
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for extra in [
        json!({"exp": now - 120}),
        json!({"nbf": now + 120}),
        json!({"exp": null}),
        json!({"sub": null}),
        json!({"sub": ""}),
    ] {
        let t = sign(
            Algorithm::ES256,
            Some("ec-1"),
            &private_key("ec-1"),
            &claims(extra.clone()),
        );
        let (p, _) = unauthorized(app.get(&t, "/api/leads").await).await;
        assert!(
            p["detail"].as_str().unwrap().starts_with("Invalid token"),
            "{extra}: {p}"
        );
    }
}

#[actix_web::test]
async fn algorithm_confusion_is_rejected() {
    let app = app_with_jwks_file().await;
    let c = claims(json!({}));
    let rsa_public_pem = fixture("rsa-1.pub.pem");
    let as_hmac_secret = EncodingKey::from_secret(rsa_public_pem.as_bytes());
    let hs_secret = EncodingKey::from_secret(SECRET.as_bytes());

    let attempts: Vec<(&str, String)> = vec![
        (
            // The classic: HS256 "signed" with the RSA public key as the HMAC secret, naming the
            // RSA key. The HS256 secret is the only HS256 key; a JWKS key never verifies HS256.
            "HS256 with the RSA public key as secret",
            sign(Algorithm::HS256, Some("rsa-1"), &as_hmac_secret, &c),
        ),
        (
            "HS256 with the RSA public key as secret, no kid",
            sign(Algorithm::HS256, None, &as_hmac_secret, &c),
        ),
        (
            // The header claims RS256 but the signature is an HMAC with the real HS256 secret.
            "RS256 header, HMAC signature with the HS256 secret",
            forge(
                json!({"alg": "RS256", "typ": "JWT"}),
                &c,
                &hs_secret,
                Algorithm::HS256,
            ),
        ),
        (
            "RS256 header naming rsa-1, HMAC signature with the HS256 secret",
            forge(
                json!({"alg": "RS256", "kid": "rsa-1"}),
                &c,
                &hs_secret,
                Algorithm::HS256,
            ),
        ),
        (
            // HS256 header, but an RSA signature: the HS256 key cannot verify it.
            "HS256 header, RS256 signature",
            forge(
                json!({"alg": "HS256", "kid": "rsa-1"}),
                &c,
                &private_key("rsa-1"),
                Algorithm::RS256,
            ),
        ),
        (
            // RS256 header naming the EC key: a key only verifies its own algorithm.
            "RS256 header naming the EC key",
            forge(
                json!({"alg": "RS256", "kid": "ec-1"}),
                &c,
                &private_key("rsa-1"),
                Algorithm::RS256,
            ),
        ),
        (
            "ES256 header naming the RSA key",
            forge(
                json!({"alg": "ES256", "kid": "rsa-1"}),
                &c,
                &private_key("ec-1"),
                Algorithm::ES256,
            ),
        ),
        (
            // Another RSA algorithm with the right key: only RS256 is configured for it.
            "RS384 with the right RSA key",
            sign(Algorithm::RS384, Some("rsa-1"), &private_key("rsa-1"), &c),
        ),
        (
            "PS256 with the right RSA key",
            sign(Algorithm::PS256, Some("rsa-1"), &private_key("rsa-1"), &c),
        ),
        (
            "alg none naming the RSA key",
            format!(
                "{}.{}.",
                base64url(br#"{"alg":"none","kid":"rsa-1"}"#),
                base64url(c.to_string().as_bytes())
            ),
        ),
    ];
    for (what, token) in &attempts {
        let r = app.get(token, "/api/leads").await;
        assert_eq!(r.status(), 401, "{what} was accepted");
        unauthorized(r).await;
    }

    // Without an HS256 secret (JWKS only), HS256 is not accepted at all — not even with the
    // public key as the secret.
    let jwks_only = spawn_app_with(|c| {
        c.hs256_secret = None;
        c.jwks = Some(fixture_path("jwks.json"));
    })
    .await
    .expect("start");
    assert_eq!(
        status_of(&jwks_only, &signed_by("rsa-1", Some("rsa-1"))).await,
        200
    );
    let mut all = attempts.clone();
    all.push(("HS256 with the test secret", admin()));
    for (what, token) in &all {
        let r = jwks_only.get(token, "/api/leads").await;
        assert_eq!(
            r.status(),
            401,
            "{what} was accepted without an HS256 secret"
        );
        unauthorized(r).await;
    }
}

#[actix_web::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = spawn_app_with(|c| {
        c.jwks = Some(fixture_path("jwks.json"));
        c.issuer = Some(ISSUER.into());
        c.audience = Some(AUDIENCE.into());
    })
    .await
    .expect("start");
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let hs256 = |extra: Value| sign(Algorithm::HS256, None, &hs, &claims(extra));
    let rs256 = |extra: Value| {
        sign(
            Algorithm::RS256,
            Some("rsa-1"),
            &private_key("rsa-1"),
            &claims(extra),
        )
    };
    for mint in [&hs256 as &dyn Fn(Value) -> String, &rs256] {
        let right = json!({"iss": ISSUER, "aud": AUDIENCE});
        assert_eq!(status_of(&app, &mint(right)).await, 200);
        // `aud` may be a list that contains us.
        let listed = json!({"iss": ISSUER, "aud": ["account", AUDIENCE]});
        assert_eq!(status_of(&app, &mint(listed)).await, 200);
        for (what, extra) in [
            (
                "wrong iss",
                json!({"iss": "https://evil.example/", "aud": AUDIENCE}),
            ),
            ("wrong aud", json!({"iss": ISSUER, "aud": "another-api"})),
            (
                "aud list without us",
                json!({"iss": ISSUER, "aud": ["account"]}),
            ),
            ("missing iss", json!({"aud": AUDIENCE})),
            ("missing aud", json!({"iss": ISSUER})),
            ("missing both", json!({})),
        ] {
            let r = app.get(&mint(extra), "/api/leads").await;
            assert_eq!(r.status(), 401, "{what} was accepted");
            let (p, challenge) = unauthorized(r).await;
            assert!(p["detail"].as_str().unwrap().starts_with("Invalid token"));
            assert!(
                challenge.contains(r#"error="invalid_token""#),
                "{challenge}"
            );
        }
    }

    // Not configured: `iss` and `aud` are whatever the token says.
    let open = spawn_app().await;
    let any = hs256(json!({"iss": "https://elsewhere.example/", "aud": "anything"}));
    assert_eq!(status_of(&open, &any).await, 200);
}

#[actix_web::test]
async fn every_401_is_a_problem_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let routes = [
        (Method::GET, "/api/leads"),
        (Method::POST, "/api/leads"),
        (Method::GET, "/api/territories"),
        (
            Method::GET,
            "/api/leads/00000000-0000-7000-8000-000000000000",
        ),
        (
            Method::POST,
            "/api/leads/00000000-0000-7000-8000-000000000000/clock/resume",
        ),
    ];
    for (method, path) in routes {
        let url = format!("{}{path}", app.base);
        // No credentials: a bare challenge (RFC 6750 §3.1: no error code).
        let r = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let (_, challenge) = unauthorized(r).await;
        assert_eq!(challenge, r#"Bearer realm="freshplan""#);
        // Another scheme counts as no bearer token.
        let r = app
            .client
            .request(method.clone(), &url)
            .header("authorization", "Basic YWRtaW46YWRtaW4=")
            .send()
            .await
            .unwrap();
        let (_, challenge) = unauthorized(r).await;
        assert_eq!(challenge, r#"Bearer realm="freshplan""#);
        // A token that does not verify: invalid_token.
        let r = app
            .client
            .request(method.clone(), &url)
            .bearer_auth("not.a.token")
            .header("content-type", "application/json")
            .body(r#"{"companyName":"X"}"#)
            .send()
            .await
            .unwrap();
        let (p, challenge) = unauthorized(r).await;
        assert_eq!(
            challenge,
            r#"Bearer realm="freshplan", error="invalid_token""#
        );
        assert_eq!(p["title"], "Unauthorized");
    }
    // Nothing was written on the way.
    assert_eq!(app.row_counts().await, (0, 0, 0));
}
