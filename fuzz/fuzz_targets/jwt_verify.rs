//! The social API's bearer-token verifier (`zerocast_social::auth::Keys::verify_full`), on
//! tokens as a peer sends them and on correctly signed tokens with arbitrary claims.
//!
//! Input: `[mode][now: u64 LE][rest]`. Mode even: `rest` is the token text. Mode odd: `rest`
//! is a claims body, signed here with the verifier's key, so the claim checks are reached.
//!
//! Invariants: no panic and no overflow for any `exp`/`nbf`/`now`; an accepted token is
//! refused by another key and has `refused_from > now`; a signed body is accepted exactly when
//! it parses as claims whose `sub` is a UUID and whose `exp`/`nbf` pass the saturating
//! checks; a token accepted with an issuer and audience configured is accepted without them.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use zerocast_social::auth::{AuthError, Claims, Keys, LEEWAY};

const SECRET: &[u8] = b"fuzz-secret-0123456789";

fn sign(body: &[u8]) -> String {
    let signing = format!(
        "{}.{}",
        B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        B64.encode(body)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(signing.as_bytes());
    format!("{signing}.{}", B64.encode(mac.finalize().into_bytes()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((now, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let now = u64::from_le_bytes(*now);
    let keys = Keys::new(SECRET);
    let strict = Keys::new(SECRET)
        .with_issuer(Some("iss".into()))
        .with_audience(Some("aud".into()));
    let token = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    } else {
        sign(rest)
    };
    let got = keys.verify_full(&token, now);
    if let Ok(v) = &got {
        assert!(v.refused_from > now);
        assert_eq!(
            Keys::new(b"another key").verify(&token, now),
            Err(AuthError::Signature)
        );
    }
    if let Ok(v) = strict.verify_full(&token, now) {
        assert_eq!(got.as_ref().ok(), Some(&v));
    }
    if mode % 2 == 1 {
        // The oracle: what the claims say, checked here with saturating arithmetic.
        let expected = serde_json::from_slice::<Claims>(rest).ok().filter(|c| {
            c.exp.saturating_add(LEEWAY) > now
                && c.nbf.is_none_or(|nbf| nbf <= now.saturating_add(LEEWAY))
                && uuid::Uuid::parse_str(&c.sub).is_ok()
        });
        assert_eq!(got.is_ok(), expected.is_some(), "{got:?}");
    }
});
