//! CORS for browsers on other origins: a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here with 204 and the allowed methods and
//! headers (`Authorization`, `Content-Type`), and every response to an allowed `Origin` carries
//! `Access-Control-Allow-Origin`. The same list decides which browser origins may open a
//! WebSocket ([`allows`], checked by the upgrade).
//!
//! Hand-written rather than tower-http's `CorsLayer`: the policy is one list and fits in this
//! file, and tower-http would add a dependency tree for it.
//!
//! No credentials mode: the API authenticates with a bearer token, never a cookie, so
//! `Access-Control-Allow-Credentials` is never sent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

/// Methods the API's routes use.
const METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
/// Request headers a browser may send.
const HEADERS: &str = "Authorization, Content-Type";
/// Response headers a script may read beyond the CORS-safelisted ones.
const EXPOSE: &str = "Retry-After";
/// How long a browser may cache a preflight answer, seconds.
const MAX_AGE: &str = "600";

/// Whether `origin` (an `Origin` header's bytes) is in `allowed` (`*` allows any). Compared
/// byte for byte, ASCII case-insensitively, ignoring a trailing `/` in the configured entry.
pub fn allows(allowed: &[String], origin: &[u8]) -> bool {
    allowed.iter().any(|a| {
        a == "*"
            || a.trim_end_matches('/')
                .as_bytes()
                .eq_ignore_ascii_case(origin)
    })
}

/// 403 for a browser origin that is not allowed.
pub(crate) fn origin_refused() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        "this Origin is not in api-cors-origins",
    )
    .into_response()
}

/// The middleware: answers preflights, adds the CORS headers to responses for allowed
/// origins. Requests without `Origin` (not from a browser) pass untouched.
pub(crate) async fn layer(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let allowed = &st.config.cors_origins;
    let origin = req.headers().get(header::ORIGIN).cloned();
    let ok = origin
        .as_ref()
        .is_some_and(|o| allows(allowed, o.as_bytes()));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !ok {
            return origin_refused();
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        );
        allow_origin(&mut r, allowed, origin);
        return r;
    }
    let mut r = next.run(req).await;
    if ok {
        r.headers_mut().insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE),
        );
        allow_origin(&mut r, allowed, origin);
    }
    r
}

/// `Access-Control-Allow-Origin`: `*` when every origin is allowed, else the request's origin
/// (with `Vary: Origin`, so caches keep one answer per origin).
fn allow_origin(r: &mut Response, allowed: &[String], origin: Option<HeaderValue>) {
    let h = r.headers_mut();
    if allowed.iter().any(|a| a == "*") {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let list = vec![
            "https://app.example".to_owned(),
            "http://localhost:3000/".to_owned(),
        ];
        assert!(allows(&list, b"https://app.example"));
        assert!(allows(&list, b"HTTPS://APP.EXAMPLE"));
        assert!(allows(&list, b"http://localhost:3000"));
        assert!(!allows(&list, b"https://app.example.evil"));
        assert!(!allows(&list, b"http://app.example"));
        assert!(!allows(&list, b"null"));
        assert!(!allows(&[], b"https://app.example"));
        assert!(allows(&["*".to_owned()], b"https://anything"));
    }
}
