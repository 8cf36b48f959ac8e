//! Bearer JWTs, HS256 only: `sub` is the user id (a UUID), `exp` is required.
//!
//! The header is checked (`alg` must be `HS256`; `none` and every other algorithm are refused),
//! the signature is compared in constant time, and `exp`/`nbf` are enforced with no leeway
//! beyond 30 s of clock skew.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::id::UserId;

/// Allowed clock skew, seconds.
const LEEWAY: u64 = 30;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was given.
    #[error("missing bearer token")]
    Missing,
    /// Not three base64url parts, or bad JSON.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not HS256.
    #[error("unsupported token algorithm")]
    Algorithm,
    /// The signature does not match.
    #[error("bad token signature")]
    Signature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `sub` is not a UUID.
    #[error("token subject is not a user id")]
    Subject,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// The claims zerocast reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct Keys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Keys for `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }

    /// A token for `user`, valid from `now` (Unix seconds) for `ttl_secs`.
    pub fn issue(&self, user: UserId, now: u64, ttl_secs: u64) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = Claims {
            sub: user.0.to_string(),
            exp: now + ttl_secs,
            iat: now,
            nbf: None,
        };
        let body = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signing = format!("{header}.{body}");
        let mut mac = self.mac();
        mac.update(signing.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing}.{sig}")
    }

    /// Checks `token` at `now` (Unix seconds); returns its user.
    pub fn verify(&self, token: &str, now: u64) -> Result<UserId, AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        if header.alg != "HS256" {
            return Err(AuthError::Algorithm);
        }
        let sig = B64.decode(s).map_err(|_| AuthError::Malformed)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(c.as_bytes());
        mac.verify_slice(&sig).map_err(|_| AuthError::Signature)?;
        let claims: Claims = B64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        if claims.exp + LEEWAY <= now {
            return Err(AuthError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY) {
            return Err(AuthError::NotYetValid);
        }
        Uuid::parse_str(&claims.sub)
            .map(UserId)
            .map_err(|_| AuthError::Subject)
    }
}

/// Parses a duration like `24h`, `90m`, `30s`, `7d` or plain seconds.
pub fn parse_ttl(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b's' => (&s[..s.len() - 1], 1),
        b'm' => (&s[..s.len() - 1], 60),
        b'h' => (&s[..s.len() - 1], 3600),
        b'd' => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let k = Keys::new(b"secret");
        let u = UserId(Uuid::new_v4());
        let t = k.issue(u, 1000, 60);
        assert_eq!(k.verify(&t, 1000), Ok(u));
        assert_eq!(k.verify(&t, 1000 + 60 + LEEWAY), Err(AuthError::Expired));
        assert_eq!(
            Keys::new(b"other").verify(&t, 1000),
            Err(AuthError::Signature)
        );
        assert_eq!(k.verify("a.b", 1000), Err(AuthError::Malformed));
        // alg=none with the same claims is refused.
        let body = t.split('.').nth(1).unwrap();
        let none = format!("{}.{body}.", B64.encode(br#"{"alg":"none"}"#));
        assert_eq!(k.verify(&none, 1000), Err(AuthError::Algorithm));
        // A tampered body fails the signature.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = B64.encode(br#"{"sub":"00000000-0000-0000-0000-000000000000","exp":99999}"#);
        assert_eq!(k.verify(&parts.join("."), 1000), Err(AuthError::Signature));
    }

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("24h"), Some(86_400));
        assert_eq!(parse_ttl("90"), Some(90));
        assert_eq!(parse_ttl("x"), None);
    }
}
