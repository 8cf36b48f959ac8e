//! The pages on the media port: `GET /` (who is live, or how to go live), `GET /watch/NAME`
//! (player, stats line, chat, follow button, viewer count), `GET /studio` (a broadcaster's
//! streams, keys and moderation) and their assets under `/web/`.
//!
//! The page files are `web/*.html`, `web/app.js` and `web/style.css`, embedded at build time;
//! the player library, hls.js, is embedded by `build.rs` from `web/node_modules` when
//! `npm ci` installed it there (else `/web/hls.min.js` is a 404 and the watch page says the
//! library is missing). The server fills a few `{{key}}` slots in a page, every value
//! HTML-escaped; the scripts talk to the social API directly, on its own port, under its CORS
//! list (`api-cors-origins`), so each page's Content-Security-Policy allows scripts, styles and
//! media from this origin only and connections to this origin and that API.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use zerocast_core::Track;

use super::response::{Body, Cors, Headers, Response};
use super::Get;
use crate::hub::{lock, valid_name, Publisher};
use crate::metrics::Kind;
use crate::Ctx;

include!(concat!(env!("OUT_DIR"), "/player.rs"));

const HOME: &str = include_str!("../../../web/home.html");
const WATCH: &str = include_str!("../../../web/watch.html");
const STUDIO: &str = include_str!("../../../web/studio.html");
const NOT_FOUND: &str = include_str!("../../../web/notfound.html");
const APP_JS: &[u8] = include_bytes!("../../../web/app.js");
const STYLE: &[u8] = include_bytes!("../../../web/style.css");

const HTML: &str = "text/html; charset=utf-8";

/// `GET /`: the streams now in the hub, linked to their watch pages (the page's script
/// refreshes the list); when there is none, how to publish.
pub(super) fn home(ctx: &Ctx, req: &Get<'_>) -> Response {
    let mut items = String::new();
    for s in ctx.hub.all() {
        let state = match *lock(&s.publisher) {
            Publisher::Live => "",
            Publisher::Gone(_) => " · reconnecting",
            Publisher::Ended(_) => continue,
        };
        let resolution = s
            .view()
            .tracks
            .iter()
            .find_map(|t| match t {
                Track::Video { codec, .. } => codec.dimensions(),
                Track::Audio { .. } => None,
            })
            .map_or_else(|| "audio only".to_owned(), |(w, h)| format!("{w}x{h}"));
        let viewers = s.stats.viewers.load(Ordering::Relaxed);
        let name = escape(&s.name);
        items.push_str(&format!(
            "<li><a href=\"/watch/{name}\">{name}</a><p class=\"facts\">{viewers} viewer{} · live for {} · {resolution}{state}</p></li>",
            if viewers == 1 { "" } else { "s" },
            uptime(s.started.elapsed().as_secs()),
        ));
    }
    let host = host(req);
    let rtmp = format!("rtmp://{host}:{}/live", ctx.config.rtmp.port());
    let api = api_base(ctx, req);
    let empty = if items.is_empty() { "" } else { "hidden" };
    let body = fill(
        HOME,
        &[
            ("streams", &items),
            ("rtmp", &escape(&rtmp)),
            ("api", &escape(&api)),
            ("empty_hidden", empty),
        ],
    );
    page(200, body, &api)
}

/// `GET /watch/NAME`: the watch page of a valid stream name, live or not (the page waits for
/// it); a clear 404 page for a name no stream can have.
pub(super) fn watch(ctx: &Ctx, req: &Get<'_>, name: &str) -> Response {
    if !valid_name(name) {
        return not_found(
            "No stream can have that name: names are 1 to 128 letters, digits, '_', '-' and '.'.",
        );
    }
    let api = api_base(ctx, req);
    let player = if HLS_JS.is_some() { "ok" } else { "missing" };
    let body = fill(
        WATCH,
        &[
            ("name", &escape(name)),
            ("api", &escape(&api)),
            ("player", player),
        ],
    );
    page(200, body, &api)
}

/// `GET /studio`: a signed-in broadcaster's streams (create, rotate keys), their live state
/// and viewers, chat moderation (slow mode, bans). The page's script does it all through the
/// social API with the token the user pasted.
pub(super) fn studio(ctx: &Ctx, req: &Get<'_>) -> Response {
    let api = api_base(ctx, req);
    let rtmp = format!("rtmp://{}:{}/live", host(req), ctx.config.rtmp.port());
    let body = fill(STUDIO, &[("api", &escape(&api)), ("rtmp", &escape(&rtmp))]);
    page(200, body, &api)
}

/// `GET /web/FILE`: the pages' script, stylesheet and player library.
pub(super) fn asset(file: &str) -> Response {
    let (content_type, bytes, cache) =
        match file {
            "app.js" => ("text/javascript; charset=utf-8", APP_JS, "no-cache"),
            "style.css" => ("text/css; charset=utf-8", STYLE, "no-cache"),
            "hls.min.js" => match HLS_JS {
                Some(b) => ("text/javascript; charset=utf-8", b, "public, max-age=3600"),
                None => return Response::text(
                    404,
                    "player library missing: run scripts/setup.sh (npm ci in web/), then rebuild",
                ),
            },
            _ => return Response::not_found(),
        };
    let mut r = Response::new(
        200,
        content_type,
        Body::Full(vec![Bytes::from_static(bytes)]),
        Kind::Other,
    );
    r.cache = cache;
    r.cors = Cors::None;
    r.headers = Some(Box::new(Headers(vec![(
        "x-content-type-options",
        "nosniff".to_owned(),
    )])));
    r
}

/// A 404 page saying why.
pub(super) fn not_found(message: &str) -> Response {
    page(404, fill(NOT_FOUND, &[("message", &escape(message))]), "")
}

/// An HTML page with its security headers. `api` is the social API's base URL the page's
/// script may connect to (HTTP and WebSocket), or empty.
fn page(status: u16, body: String, api: &str) -> Response {
    let mut r = Response::new(
        status,
        HTML,
        Body::Full(vec![Bytes::from(body)]),
        Kind::Other,
    );
    r.cors = Cors::None;
    r.headers = Some(Box::new(Headers(vec![
        ("content-security-policy", csp(api)),
        ("x-content-type-options", "nosniff".to_owned()),
        ("referrer-policy", "same-origin".to_owned()),
    ])));
    r
}

/// Scripts, styles, images and media from this origin only (media also from the `blob:` URLs
/// of Media Source Extensions, workers from hls.js's `blob:` worker); connections to this
/// origin and the social API; no inline script, no plugin, no framing.
fn csp(api: &str) -> String {
    let mut connect = "'self'".to_owned();
    if !api.is_empty() {
        let ws = api.replacen("http", "ws", 1);
        connect = format!("'self' {api} {ws}");
    }
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         media-src 'self' blob:; worker-src 'self' blob:; connect-src {connect}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The social API's base URL as this request's browser reaches it: the host the request
/// named, the API's port (its HTTPS port for a page served over TLS); empty when this process
/// runs no social API.
fn api_base(ctx: &Ctx, req: &Get<'_>) -> String {
    if !ctx.config.social {
        return String::new();
    }
    let host = host(req);
    if req.secure {
        format!("https://{host}:{}", ctx.config.api_https.port())
    } else {
        format!("http://{host}:{}", ctx.config.api.port())
    }
}

/// The host (without port) the request named; `localhost` when it named none. The authority
/// was checked by `request::valid_authority` (letters, digits, `.`, `-`, `:`, brackets).
fn host<'a>(req: &Get<'a>) -> &'a str {
    let Some(a) = req.authority else {
        return "localhost";
    };
    if a.starts_with('[') {
        // An IPv6 literal: through its closing bracket.
        return a.find(']').map_or(a, |end| &a[..=end]);
    }
    a.rsplit_once(':').map_or(a, |(h, _)| h)
}

/// `template` with each `{{key}}` replaced by its value (values are already escaped).
fn fill(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (key, value) in slots {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// Text made safe for HTML text and double-quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn uptime(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(authority: Option<&'a str>) -> Get<'a> {
        Get {
            path: "/",
            query: "",
            authority,
            secure: false,
        }
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn fills_every_slot() {
        let html = fill(
            "<b>{{name}}</b> {{name}} {{x}}",
            &[("name", "a&amp;b"), ("x", "")],
        );
        assert_eq!(html, "<b>a&amp;b</b> a&amp;b ");
    }

    #[test]
    fn host_without_port() {
        assert_eq!(host(&get(Some("example.com:8080"))), "example.com");
        assert_eq!(host(&get(Some("example.com"))), "example.com");
        assert_eq!(host(&get(Some("[::1]:8080"))), "[::1]");
        assert_eq!(host(&get(None)), "localhost");
    }

    #[test]
    fn policy_allows_only_self_and_the_api() {
        let p = csp("http://h:8090");
        assert!(
            p.contains("connect-src 'self' http://h:8090 ws://h:8090;"),
            "{p}"
        );
        assert!(p.contains("script-src 'self';"), "{p}");
        assert!(!p.contains("unsafe"), "{p}");
        assert!(csp("").contains("connect-src 'self';"));
    }

    #[test]
    fn bad_names_get_a_404_page() {
        let r = not_found("x<y");
        assert_eq!(r.status, 404);
        match &r.body {
            Body::Full(b) => assert!(String::from_utf8_lossy(&b[0]).contains("x&lt;y")),
            _ => panic!("a full body"),
        }
    }
}
