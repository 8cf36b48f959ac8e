//! CORS for browsers on other origins: a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here with 204 and the allowed methods and
//! headers (`Authorization`, `Content-Type`), and every response to an allowed `Origin` carries
//! `Access-Control-Allow-Origin`. The same list decides which browser origins may open a
//! WebSocket ([`allows`], checked by the upgrade).
//!
//! Besides the list, the media server's own pages are allowed when this API runs inside
//! `zerocast serve` (`page_ports`): an `Origin` on the host the request names, at the media
//! port that serves the pages ([`own_page`]). So the watch page works out of the box on any
//! host name, and nothing else is let in by it.
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

/// Whether a browser on `origin` may call the API (and open its WebSocket): it is listed in
/// `cors_origins`, or it is one of this server's own pages ([`own_page`]). `headers` are the
/// request's (its `Host`).
pub(crate) fn origin_allowed(
    config: &crate::SocialConfig,
    origin: &[u8],
    headers: &header::HeaderMap,
) -> bool {
    allows(&config.cors_origins, origin) || own_page(&config.page_ports, origin, headers)
}

/// Whether `origin` is one of this server's own pages: `http(s)://HOST[:PORT]` where HOST is
/// the host the request names (`Host`, without its port) and PORT (80 or 443 when absent) is
/// one of `page_ports`, the media ports serving the pages.
pub fn own_page(page_ports: &[u16], origin: &[u8], headers: &header::HeaderMap) -> bool {
    if page_ports.is_empty() {
        return false;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let (rest, default_port) = match (
        origin.strip_prefix("http://"),
        origin.strip_prefix("https://"),
    ) {
        (Some(rest), _) => (rest, 80),
        (_, Some(rest)) => (rest, 443),
        _ => return false,
    };
    let (origin_host, origin_port) = split_port(rest);
    let port = match origin_port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    !origin_host.is_empty()
        && origin_host.eq_ignore_ascii_case(split_port(host).0)
        && page_ports.contains(&port)
}

/// `host[:port]` (an IPv6 host in brackets) as host and port text.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let port = authority[end + 1..].strip_prefix(':');
                (&authority[..=end], port)
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    }
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
        .is_some_and(|o| origin_allowed(&st.config, o.as_bytes(), req.headers()));
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

    #[test]
    fn own_pages_are_on_the_requests_host_at_a_page_port() {
        let req = |host: &str| {
            let mut h = header::HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            h
        };
        let api = req("live.example:8090");
        let ports = [8080, 443];
        assert!(own_page(&ports, b"http://live.example:8080", &api));
        assert!(own_page(&ports, b"http://LIVE.example:8080", &api));
        assert!(own_page(&ports, b"https://live.example", &api));
        assert!(own_page(&ports, b"http://[::1]:8080", &req("[::1]:8090")));
        for other in [
            "http://live.example:8081",
            "http://live.example",
            "http://evil.example:8080",
            "http://live.example.evil:8080",
            "http://live.example:8080:1",
            "http://live.example:99999",
            "ftp://live.example:8080",
            "http://:8080",
            "null",
        ] {
            assert!(!own_page(&ports, other.as_bytes(), &api), "{other}");
        }
        assert!(!own_page(&[], b"http://live.example:8080", &api));
        assert!(!own_page(
            &ports,
            b"http://live.example:8080",
            &header::HeaderMap::new()
        ));
    }
}
