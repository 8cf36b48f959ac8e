//! Publish keys and playback tokens.
//!
//! **Publish keys** are 256 random bits from the OS (`zck_` + 43 base64url characters). Only
//! their SHA-256 is stored; a presented key is hashed and compared in constant time. A plain
//! hash (not a slow password hash) is right here: the key is random and as long as the hash,
//! so there is nothing to brute-force, and every publish pays only one SHA-256.
//!
//! **Playback tokens** let a viewer play a private stream: `EXP.SIG`, where `EXP` is the expiry
//! (Unix seconds) and `SIG` is base64url HMAC-SHA256 over the stream name and `EXP`, under a
//! key derived from the instance's JWT secret (`HMAC(secret, "zerocast playback v1")`, so a
//! playback token can never be passed off as a JWT or the reverse). Tokens are bound to one
//! stream and expire; the media plane checks them without calling the social plane.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every publish key (lets secret scanners recognise a leaked one).
pub const KEY_PREFIX: &str = "zck_";

/// A new random publish key.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    Ok(format!("{KEY_PREFIX}{}", B64.encode(raw)))
}

/// SHA-256 of `key`, hex (what the store keeps).
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Whether `key` hashes to `stored` (hex), in constant time in the key's content.
pub fn key_matches(key: &str, stored: &str) -> bool {
    let got = hash_key(key);
    got.len() == stored.len() && bool::from(got.as_bytes().ct_eq(stored.as_bytes()))
}

/// A short, non-secret fingerprint of a stored key hash (for logs and the API).
pub fn fingerprint(stored: &str) -> &str {
    stored.get(..8).unwrap_or(stored)
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// Why a playback token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token was given.
    #[error("this stream is private: a playback token is required")]
    Missing,
    /// Not `EXP.SIG`, or the signature does not match this stream.
    #[error("invalid playback token")]
    Invalid,
    /// Past its expiry.
    #[error("playback token expired")]
    Expired,
}

/// The longest lifetime of a playback token.
pub const MAX_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

/// Signs and checks playback tokens.
#[derive(Clone)]
pub struct PlaybackKeys {
    key: [u8; 32],
}

impl std::fmt::Debug for PlaybackKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaybackKeys(..)")
    }
}

impl PlaybackKeys {
    /// Keys derived from the instance's JWT secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"zerocast playback v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, stream: &str, exp: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("32-byte key");
        mac.update(stream.as_bytes());
        mac.update(&[0]);
        mac.update(exp.to_string().as_bytes());
        mac
    }

    /// A token for `stream` valid until `exp` (Unix seconds).
    pub fn mint(&self, stream: &str, exp: u64) -> String {
        let sig = self.mac(stream, exp).finalize().into_bytes();
        format!("{exp}.{}", B64.encode(sig))
    }

    /// Checks `token` for `stream` at `now` (Unix seconds).
    pub fn verify(&self, stream: &str, token: &str, now: u64) -> Result<(), TokenError> {
        let (exp, sig) = token.split_once('.').ok_or(TokenError::Invalid)?;
        // Canonical decimal only: no sign, no leading zeros, no overflow.
        if exp.is_empty()
            || exp.len() > 20
            || !exp.bytes().all(|b| b.is_ascii_digit())
            || (exp.len() > 1 && exp.starts_with('0'))
        {
            return Err(TokenError::Invalid);
        }
        let exp_n: u64 = exp.parse().map_err(|_| TokenError::Invalid)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Invalid)?;
        self.mac(stream, exp_n)
            .verify_slice(&sig)
            .map_err(|_| TokenError::Invalid)?;
        if exp_n <= now {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_checked_by_hash() {
        let (a, b) = (new_key().unwrap(), new_key().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        let stored = hash_key(&a);
        assert_eq!(stored.len(), 64);
        assert!(key_matches(&a, &stored));
        assert!(!key_matches(&b, &stored));
        assert!(!key_matches("", &stored));
        assert!(!key_matches(&a, ""));
    }

    #[test]
    fn playback_tokens_are_bound_to_stream_key_and_time() {
        let k = PlaybackKeys::from_secret(b"secret one");
        let t = k.mint("demo", 1000);
        assert_eq!(k.verify("demo", &t, 999), Ok(()));
        assert_eq!(k.verify("demo", &t, 1000), Err(TokenError::Expired));
        assert_eq!(k.verify("other", &t, 999), Err(TokenError::Invalid));
        let other = PlaybackKeys::from_secret(b"secret two");
        assert_eq!(other.verify("demo", &t, 999), Err(TokenError::Invalid));
        // A changed expiry breaks the signature; so do non-canonical forms of the same number.
        let sig = t.split_once('.').unwrap().1;
        for forged in [
            format!("2000.{sig}"),
            format!("01000.{sig}"),
            format!("+1000.{sig}"),
        ] {
            assert_eq!(k.verify("demo", &forged, 999), Err(TokenError::Invalid));
        }
        for junk in [
            "",
            ".",
            "1000",
            "1000.",
            "x.y",
            "99999999999999999999999.AA",
        ] {
            assert_eq!(
                k.verify("demo", junk, 0),
                Err(TokenError::Invalid),
                "{junk}"
            );
        }
    }
}
