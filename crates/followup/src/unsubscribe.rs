//! Signed unsubscribe links (SPEC §6: `GET /unsubscribe?token=…`, no login).
//!
//! A token is `base64url(lead id) "." base64url(HMAC-SHA256(secret, purpose ‖ lead id))`, both
//! without padding. The MAC input is prefixed with a fixed purpose string, so a MAC computed with
//! the same secret for anything else can never pass as an unsubscribe token. Tokens do not
//! expire: an unsubscribe link in a mail must keep working.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation for the MAC input.
const PURPOSE: &[u8] = b"freshplan.unsubscribe.v1:";

/// The shortest secret accepted outside development, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Secrets that are published (in this repository, docs or examples) and therefore never safe
/// outside development.
pub const PUBLISHED_SECRETS: &[&str] = &[
    DEVELOPMENT_SECRET,
    "change-me-change-me-change-me-change-me",
    "changeme",
    "secret",
];

/// The secret development setups and examples use. Refused outside development.
pub const DEVELOPMENT_SECRET: &str = "freshplan-development-unsubscribe-secret";

/// Why a token was refused. Deliberately coarse: the caller answers the same way to both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the token's shape (parts, base64, lengths).
    #[error("malformed unsubscribe token")]
    Malformed,
    /// Well-formed, but the signature does not match.
    #[error("invalid unsubscribe token signature")]
    BadSignature,
}

/// Why a signing secret was refused at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Shorter than [`MIN_SECRET_LEN`] bytes (or empty).
    #[error("the unsubscribe secret must be at least {min} bytes long (got {len})")]
    TooShort {
        /// The secret's length in bytes.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// One of the [`PUBLISHED_SECRETS`].
    #[error("the unsubscribe secret is a published default; set a private one")]
    PublishedDefault,
}

/// Checks the signing secret at start-up. Outside development a secret must be at least
/// [`MIN_SECRET_LEN`] bytes and none of the [`PUBLISHED_SECRETS`]; in development anything
/// non-empty is accepted (an empty key would make every token forgeable by anyone who read this
/// code, even on a laptop).
///
/// ```
/// use freshplan_followup::unsubscribe::{validate_secret, SecretError, DEVELOPMENT_SECRET};
/// assert!(validate_secret(DEVELOPMENT_SECRET.as_bytes(), true).is_ok());
/// assert_eq!(validate_secret(DEVELOPMENT_SECRET.as_bytes(), false), Err(SecretError::PublishedDefault));
/// assert!(validate_secret(b"short", false).is_err());
/// ```
pub fn validate_secret(secret: &[u8], development: bool) -> Result<(), SecretError> {
    if secret.is_empty() {
        return Err(SecretError::TooShort {
            len: 0,
            min: MIN_SECRET_LEN,
        });
    }
    if development {
        return Ok(());
    }
    if PUBLISHED_SECRETS.iter().any(|p| p.as_bytes() == secret) {
        return Err(SecretError::PublishedDefault);
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort {
            len: secret.len(),
            min: MIN_SECRET_LEN,
        });
    }
    Ok(())
}

/// HMAC-signed unsubscribe tokens.
#[derive(Debug, Clone, Copy)]
pub struct UnsubscribeToken;

impl UnsubscribeToken {
    fn mac(lead_id: Uuid, secret: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(PURPOSE);
        mac.update(lead_id.as_bytes());
        mac
    }

    /// The token for `lead_id` (URL-safe, 65 characters).
    pub fn sign(lead_id: Uuid, secret: &[u8]) -> String {
        let tag = Self::mac(lead_id, secret).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(lead_id.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks a token and returns the lead id it was issued for. The signature is compared in
    /// constant time (`hmac`'s `verify_slice`).
    ///
    /// ```
    /// use freshplan_followup::unsubscribe::{UnsubscribeToken, TokenError};
    /// let secret = b"0123456789abcdef0123456789abcdef";
    /// let lead = uuid::Uuid::from_u128(42);
    /// let token = UnsubscribeToken::sign(lead, secret);
    /// assert_eq!(UnsubscribeToken::verify(&token, secret), Ok(lead));
    /// assert_eq!(UnsubscribeToken::verify(&token, b"another secret"), Err(TokenError::BadSignature));
    /// ```
    pub fn verify(token: &str, secret: &[u8]) -> Result<Uuid, TokenError> {
        let (id_part, tag_part) = token.trim().split_once('.').ok_or(TokenError::Malformed)?;
        let id_bytes = URL_SAFE_NO_PAD
            .decode(id_part)
            .map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_part)
            .map_err(|_| TokenError::Malformed)?;
        let lead_id = Uuid::from_slice(&id_bytes).map_err(|_| TokenError::Malformed)?;
        if tag.len() != 32 {
            return Err(TokenError::Malformed);
        }
        Self::mac(lead_id, secret)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(lead_id)
    }

    /// The complete unsubscribe link: `base_url` with `token=<token>` appended as a query
    /// parameter (`?` or `&` as the URL needs).
    ///
    /// ```
    /// use freshplan_followup::unsubscribe::UnsubscribeToken;
    /// let url = UnsubscribeToken::url("https://crm.example/unsubscribe", uuid::Uuid::nil(), b"k");
    /// assert!(url.starts_with("https://crm.example/unsubscribe?token="));
    /// ```
    pub fn url(base_url: &str, lead_id: Uuid, secret: &[u8]) -> String {
        let sep = if base_url.contains('?') { '&' } else { '?' };
        format!("{base_url}{sep}token={}", Self::sign(lead_id, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"a-private-secret-of-at-least-32-bytes!";

    #[test]
    fn round_trip() {
        let id = Uuid::from_u128(0x1234);
        let token = UnsubscribeToken::sign(id, SECRET);
        assert_eq!(token.len(), 22 + 1 + 43);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        );
        assert_eq!(UnsubscribeToken::verify(&token, SECRET), Ok(id));
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let token = UnsubscribeToken::sign(Uuid::from_u128(1), SECRET);
        let other = UnsubscribeToken::sign(Uuid::from_u128(2), SECRET);
        let (id1, _) = token.split_once('.').unwrap();
        let (_, tag2) = other.split_once('.').unwrap();
        assert_eq!(
            UnsubscribeToken::verify(&format!("{id1}.{tag2}"), SECRET),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            UnsubscribeToken::verify(&token, b"wrong"),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            ".",
            "abc",
            "abc.def",
            "!!!.###",
            "AAAAAAAAAAAAAAAAAAAAAA.AAAA",
        ] {
            assert_eq!(
                UnsubscribeToken::verify(bad, SECRET),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn secret_rules() {
        let long_private = [7u8; 32];
        assert_eq!(validate_secret(&long_private, false), Ok(()));
        assert_eq!(
            validate_secret(&long_private[..31], false),
            Err(SecretError::TooShort { len: 31, min: 32 })
        );
        assert_eq!(
            validate_secret(DEVELOPMENT_SECRET.as_bytes(), false),
            Err(SecretError::PublishedDefault)
        );
        assert!(
            DEVELOPMENT_SECRET.len() >= MIN_SECRET_LEN,
            "the default must be rejected for being published, not short"
        );
        assert_eq!(validate_secret(b"short", true), Ok(()));
        assert_eq!(validate_secret(DEVELOPMENT_SECRET.as_bytes(), true), Ok(()));
        assert_eq!(
            validate_secret(b"", true),
            Err(SecretError::TooShort { len: 0, min: 32 })
        );
        for published in PUBLISHED_SECRETS {
            assert!(
                validate_secret(published.as_bytes(), false).is_err(),
                "{published}"
            );
        }
    }

    #[test]
    fn url_appends_the_token() {
        let id = Uuid::from_u128(9);
        let token = UnsubscribeToken::sign(id, SECRET);
        assert_eq!(
            UnsubscribeToken::url("https://a.example/u", id, SECRET),
            format!("https://a.example/u?token={token}")
        );
        assert_eq!(
            UnsubscribeToken::url("https://a.example/u?x=1", id, SECRET),
            format!("https://a.example/u?x=1&token={token}")
        );
    }

    proptest! {
        #[test]
        fn sign_then_verify_returns_the_lead(id in any::<u128>(), secret in proptest::collection::vec(any::<u8>(), 1..64)) {
            let id = Uuid::from_u128(id);
            prop_assert_eq!(UnsubscribeToken::verify(&UnsubscribeToken::sign(id, &secret), &secret), Ok(id));
        }

        #[test]
        fn any_single_character_change_is_refused(id in any::<u128>(), pos in 0usize..66, replacement in "[A-Za-z0-9_.-]") {
            let token = UnsubscribeToken::sign(Uuid::from_u128(id), SECRET);
            let pos = pos % token.len();
            let mut changed = token.clone();
            changed.replace_range(pos..=pos, &replacement);
            prop_assume!(changed != token);
            prop_assert!(UnsubscribeToken::verify(&changed, SECRET).is_err());
        }

        #[test]
        fn a_token_never_verifies_under_another_secret(id in any::<u128>(), other in proptest::collection::vec(any::<u8>(), 1..64)) {
            prop_assume!(other.as_slice() != SECRET);
            let token = UnsubscribeToken::sign(Uuid::from_u128(id), SECRET);
            prop_assert_eq!(UnsubscribeToken::verify(&token, &other), Err(TokenError::BadSignature));
        }
    }
}
