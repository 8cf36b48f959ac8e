//! The pages on the media port: `GET /` (who is live, or how to go live), `GET /watch/NAME`
//! (player, stats line, chat, follow button, viewer count), `GET /studio` (a broadcaster's
//! streams, keys and moderation) and their assets under `/web/`.
//!
//! The page templates are `web/*.html`, embedded at build time; their script, stylesheet and
//! player libraries (hls.js, and dash.js for `?player=dash`) are embedded by `build.rs`, each
//! also gzip-compressed, the libraries from `web/node_modules` when `npm ci` installed them
//! there (else their URL is a 404 and the watch page says the library is missing). Asset URLs
//! carry the build's [`ASSETS_VERSION`], so browsers keep them for good and a new build is
//! fetched at once. The server fills a few `{{key}}` slots in a page, every value
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

/// A file embedded as it is and gzip-compressed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asset {
    raw: &'static [u8],
    gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

const HOME: &str = include_str!("../../../web/home.html");
const WATCH: &str = include_str!("../../../web/watch.html");
const STUDIO: &str = include_str!("../../../web/studio.html");
const NOT_FOUND: &str = include_str!("../../../web/notfound.html");
/// The header's sign-in form and account line (`{{account}}` in the watch page and studio).
const ACCOUNT: &str = include_str!("../../../web/account.html");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

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
        let by = match s.owner().1 {
            Some(owner) => format!("by {} · ", escape(&owner)),
            None => String::new(),
        };
        items.push_str(&format!(
            "<li><a href=\"/watch/{name}\">{name}</a><p class=\"facts\">{by}{viewers} viewer{} · live for {} · {resolution}{state}</p></li>",
            if viewers == 1 { "" } else { "s" },
            uptime(s.started.elapsed().as_secs()),
        ));
    }
    let host = host(req);
    let rtmp = format!("rtmp://{host}:{}/live", ctx.config.rtmp.port());
    let api = api_base(ctx, req);
    let empty = if items.is_empty() { "" } else { "hidden" };
    page(
        200,
        HOME,
        &[
            ("streams", &items),
            ("rtmp", &escape(&rtmp)),
            ("api", &escape(&api)),
            ("empty_hidden", empty),
        ],
        &api,
    )
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
    // The player: hls.js (LL-HLS) unless `?player=dash` asks for dash.js (low-latency DASH).
    let dash = req.query.split('&').any(|p| p == "player=dash");
    let (player, library, embedded) = if dash {
        ("dash", "dash.js", DASH_JS.is_some())
    } else {
        ("hls", "hls.js", HLS_JS.is_some())
    };
    page(
        200,
        WATCH,
        &[
            ("name", &escape(name)),
            ("api", &escape(&api)),
            ("player", player),
            ("library", library),
            ("library_state", if embedded { "ok" } else { "missing" }),
        ],
        &api,
    )
}

/// `GET /studio`: a signed-in broadcaster's streams (create, rotate keys), their live state
/// and viewers, chat moderation (slow mode, bans). The page's script does it all through the
/// social API with the token the user pasted.
pub(super) fn studio(ctx: &Ctx, req: &Get<'_>) -> Response {
    let api = api_base(ctx, req);
    let rtmp = format!("rtmp://{}:{}/live", host(req), ctx.config.rtmp.port());
    page(
        200,
        STUDIO,
        &[("api", &escape(&api)), ("rtmp", &escape(&rtmp))],
        &api,
    )
}

/// `GET /web/FILE`: the pages' script, stylesheet and player libraries, gzip-compressed when
/// the client accepts it; cached for good when asked for with this build's version
/// (`?v=ASSETS_VERSION`, as the pages ask), else revalidated each time.
pub(super) fn asset(file: &str, req: &Get<'_>) -> Response {
    let missing = |lib: &str| {
        Response::text(
            404,
            &format!("{lib} missing from this build: run scripts/setup.sh (npm ci in web/), then rebuild"),
        )
    };
    let (content_type, asset) = match file {
        "app.js" => (JS, APP_JS),
        "style.css" => ("text/css; charset=utf-8", STYLE),
        "hls.js" => match HLS_JS {
            Some(a) => (JS, a),
            None => return missing("hls.js"),
        },
        "dash.js" => match DASH_JS {
            Some(a) => (JS, a),
            None => return missing("dash.js"),
        },
        _ => return Response::not_found(),
    };
    let bytes = if req.gzip { asset.gzip } else { asset.raw };
    let mut r = Response::new(
        200,
        content_type,
        Body::Full(vec![Bytes::from_static(bytes)]),
        Kind::Other,
    );
    r.cache = if req.query.strip_prefix("v=") == Some(ASSETS_VERSION) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    r.cors = Cors::None;
    let mut headers = vec![
        ("x-content-type-options", "nosniff".to_owned()),
        ("vary", "Accept-Encoding".to_owned()),
    ];
    if req.gzip {
        headers.push(("content-encoding", "gzip".to_owned()));
    }
    r.headers = Some(Box::new(Headers(headers)));
    r
}

/// A 404 page saying why.
pub(super) fn not_found(message: &str) -> Response {
    page(404, NOT_FOUND, &[("message", &escape(message))], "")
}

/// `template` filled with `slots` (and the assets' version, `{{v}}`) as an HTML page with its
/// security headers. `api` is the social API's base URL the page's script may connect to
/// (HTTP and WebSocket), or empty.
fn page(status: u16, template: &str, slots: &[(&str, &str)], api: &str) -> Response {
    let body = fill(template, slots);
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

/// The social API's base URL as this request's browser reaches it: `pages-api-url` when set
/// (an edge's pages use the origin's API), else the host the request named with the API's
/// port (its HTTPS port for a page served over TLS); empty when there is none.
fn api_base(ctx: &Ctx, req: &Get<'_>) -> String {
    if let Some(url) = &ctx.config.pages_api_url {
        return url.clone();
    }
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

/// `template` with each `{{key}}` replaced by its value (values are already escaped), in one
/// pass: a value is never read for slots. `{{v}}` is the assets' version and `{{account}}` the
/// header's sign-in form ([`ACCOUNT`]); a slot without a value stays as it is.
fn fill(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let key = after.find("}}").map(|close| &after[..close]);
        let value = key.and_then(|k| match k {
            "v" => Some(ASSETS_VERSION),
            "account" => Some(ACCOUNT),
            k => slots.iter().find(|(key, _)| *key == k).map(|(_, v)| *v),
        });
        match (key, value) {
            (Some(key), Some(value)) => {
                out.push_str(value);
                rest = &after[key.len() + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
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
            gzip: false,
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
        // One pass: a value naming a slot stays as it is; unknown slots too.
        let html = fill("{{a}}{{b}} {{v}} {{c}} {{", &[("a", "{{b}}"), ("b", "x")]);
        assert_eq!(html, format!("{{{{b}}}}x {ASSETS_VERSION} {{{{c}}}} {{{{"));
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
