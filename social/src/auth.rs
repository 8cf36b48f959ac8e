//! Bearer JWTs, HS256 only: `sub` is the user id (a UUID), `exp` is required.
//!
//! The header is checked (`alg` must be `HS256`; `none` and every other algorithm are refused),
//! the signature is compared in constant time, and `exp`/`nbf` are enforced with no leeway
//! beyond 30 s of clock skew (configurable). When an issuer or an audience is configured, `iss`
//! must equal it and `aud` (a string or an array of strings) must contain it.
//!
//! Every time computation saturates: any `exp`, `nbf` or `iat` a peer can encode (up to
//! `u64::MAX`) is compared without overflow; a value JSON cannot hold in a `u64` (negative,
//! fractional, too large) makes the token malformed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::id::UserId;

/// Default allowed clock skew, seconds.
pub const LEEWAY: u64 = 30;

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
    /// An issuer is configured and `iss` is missing or another.
    #[error("token issuer is not accepted")]
    Issuer,
    /// An audience is configured and `aud` is missing or does not contain it.
    #[error("token audience is not accepted")]
    Audience,
    /// A token in the query string of a REST request (only the WebSocket upgrade takes one).
    #[error(
        "access_token in the query string is accepted only on the WebSocket upgrade \
         (/api/v1/ws); send it in an Authorization: Bearer header"
    )]
    TokenInQuery,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// `aud`: one audience or several (RFC 7519, section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names `want`.
    pub fn contains(&self, want: &str) -> bool {
        match self {
            Audience::One(a) => a == want,
            Audience::Many(v) => v.iter().any(|a| a == want),
        }
    }
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
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// A token that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Whose token.
    pub user: UserId,
    /// Unix seconds (saturating) from which the token is refused: its `exp` plus the leeway.
    /// A WebSocket opened with it is closed then.
    pub refused_from: u64,
}

/// Signs and verifies tokens with one secret, and the optional issuer and audience.
#[derive(Clone)]
pub struct Keys {
    secret: Vec<u8>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Keys for `secret`, no issuer or audience check, the default leeway.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
            issuer: None,
            audience: None,
            leeway: LEEWAY,
        }
    }

    /// Tokens must carry `iss` equal to `issuer` (none checked when `None`); issued tokens
    /// carry it.
    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer.filter(|s| !s.is_empty());
        self
    }

    /// Tokens' `aud` must contain `audience` (none checked when `None`); issued tokens carry
    /// it.
    pub fn with_audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience.filter(|s| !s.is_empty());
        self
    }

    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }

    /// A token for `user`, valid from `now` (Unix seconds) for `ttl_secs` (saturating: a huge
    /// ttl gives `exp = u64::MAX`).
    pub fn issue(&self, user: UserId, now: u64, ttl_secs: u64) -> String {
        let claims = Claims {
            sub: user.0.to_string(),
            exp: now.saturating_add(ttl_secs),
            iat: now,
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(Audience::One),
        };
        self.sign(&claims)
    }

    /// A token of exactly these claims (tests and tools).
    pub fn sign(&self, claims: &Claims) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing = format!("{header}.{body}");
        let mut mac = self.mac();
        mac.update(signing.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing}.{sig}")
    }

    /// Checks `token` at `now` (Unix seconds); returns its user.
    pub fn verify(&self, token: &str, now: u64) -> Result<UserId, AuthError> {
        self.verify_full(token, now).map(|v| v.user)
    }

    /// Checks `token` at `now` (Unix seconds); returns its user and when it stops being valid.
    pub fn verify_full(&self, token: &str, now: u64) -> Result<Verified, AuthError> {
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
        let refused_from = claims.exp.saturating_add(self.leeway);
        if refused_from <= now {
            return Err(AuthError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(want) = &self.issuer {
            if claims.iss.as_deref() != Some(want.as_str()) {
                return Err(AuthError::Issuer);
            }
        }
        if let Some(want) = &self.audience {
            if !claims.aud.as_ref().is_some_and(|a| a.contains(want)) {
                return Err(AuthError::Audience);
            }
        }
        let user = Uuid::parse_str(&claims.sub)
            .map(UserId)
            .map_err(|_| AuthError::Subject)?;
        Ok(Verified { user, refused_from })
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

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: Uuid::new_v4().to_string(),
            exp,
            iat: 0,
            nbf: None,
            iss: None,
            aud: None,
        }
    }

    #[test]
    fn extreme_times_neither_overflow_nor_panic() {
        let k = Keys::new(b"secret");
        // exp = u64::MAX: exp + leeway saturates; the token is valid at any `now`.
        let t = k.sign(&claims(u64::MAX));
        for now in [0, 1000, u64::MAX - 1] {
            let v = k.verify_full(&t, now).unwrap();
            assert_eq!(v.refused_from, u64::MAX);
        }
        // ...but not at the very end of time (refused_from <= now).
        assert_eq!(k.verify(&t, u64::MAX), Err(AuthError::Expired));
        // A huge nbf is "not yet", whatever `now` (now + leeway saturates too).
        let mut c = claims(u64::MAX);
        c.nbf = Some(u64::MAX);
        let t = k.sign(&c);
        assert_eq!(k.verify(&t, 1000), Err(AuthError::NotYetValid));
        assert!(k.verify(&t, u64::MAX - 1).is_ok(), "nbf within the leeway");
        // exp = 0 has long passed; a leeway of u64::MAX saturates instead of wrapping.
        assert_eq!(k.verify(&k.sign(&claims(0)), 1000), Err(AuthError::Expired));
        let lax = Keys::new(b"secret").with_leeway(u64::MAX);
        assert!(lax.verify(&k.sign(&claims(0)), u64::MAX - 1).is_ok());
        // A ttl that would overflow issues exp = u64::MAX.
        let t = k.issue(UserId(Uuid::new_v4()), u64::MAX - 5, u64::MAX);
        assert_eq!(k.verify_full(&t, 10).unwrap().refused_from, u64::MAX);
        // Times JSON holds but a u64 does not are malformed, not wrapped.
        for body in [
            r#"{"sub":"00000000-0000-0000-0000-000000000000","exp":18446744073709551616}"#,
            r#"{"sub":"00000000-0000-0000-0000-000000000000","exp":-1}"#,
            r#"{"sub":"00000000-0000-0000-0000-000000000000","exp":1e30}"#,
            r#"{"sub":"00000000-0000-0000-0000-000000000000","exp":99999,"nbf":-5}"#,
        ] {
            let t = signed_raw(&k, body);
            assert_eq!(k.verify(&t, 1000), Err(AuthError::Malformed), "{body}");
        }
    }

    fn signed_raw(k: &Keys, body: &str) -> String {
        let signing = format!(
            "{}.{}",
            B64.encode(br#"{"alg":"HS256"}"#),
            B64.encode(body.as_bytes())
        );
        let mut mac = k.mac();
        mac.update(signing.as_bytes());
        format!("{signing}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let plain = Keys::new(b"secret");
        let strict = Keys::new(b"secret")
            .with_issuer(Some("https://id.example".into()))
            .with_audience(Some("zerocast".into()));
        let u = UserId(Uuid::new_v4());
        // Tokens without iss/aud pass only where nothing is configured.
        let bare = plain.issue(u, 1000, 60);
        assert_eq!(plain.verify(&bare, 1000), Ok(u));
        assert_eq!(strict.verify(&bare, 1000), Err(AuthError::Issuer));
        // The strict keys issue what they accept; the plain keys accept them too.
        let full = strict.issue(u, 1000, 60);
        assert_eq!(strict.verify(&full, 1000), Ok(u));
        assert_eq!(plain.verify(&full, 1000), Ok(u));
        let mut c = claims(2000);
        c.iss = Some("https://id.example".into());
        c.aud = Some(Audience::Many(vec!["other".into(), "zerocast".into()]));
        assert!(
            strict.verify(&strict.sign(&c), 1000).is_ok(),
            "aud as an array"
        );
        c.aud = Some(Audience::One("other".into()));
        assert_eq!(
            strict.verify(&strict.sign(&c), 1000),
            Err(AuthError::Audience)
        );
        c.aud = None;
        assert_eq!(
            strict.verify(&strict.sign(&c), 1000),
            Err(AuthError::Audience)
        );
        c.iss = Some("https://evil.example".into());
        assert_eq!(
            strict.verify(&strict.sign(&c), 1000),
            Err(AuthError::Issuer)
        );
        // An empty setting means "not configured".
        let empty = Keys::new(b"secret")
            .with_issuer(Some(String::new()))
            .with_audience(Some(String::new()));
        assert_eq!(empty.verify(&bare, 1000), Ok(u));
    }

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("24h"), Some(86_400));
        assert_eq!(parse_ttl("90"), Some(90));
        assert_eq!(parse_ttl("x"), None);
    }
}
