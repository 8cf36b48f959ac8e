//! HTTP/1.x heads, parsed with `httparse`: viewers' requests from the connection's read buffer,
//! and the status of a webhook's response.

/// Largest request head accepted.
pub(super) const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Head,
    Options,
    Other,
}

#[derive(Debug)]
pub(super) struct Request {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) keep_alive: bool,
    pub(super) head_len: usize,
    /// The `Origin` header (a browser's cross-origin request), when sent.
    pub(super) origin: Option<Vec<u8>>,
    /// The `Host` header, when sent and well-formed ([`valid_authority`]).
    pub(super) host: Option<String>,
    /// `Accept-Encoding` allows gzip ([`accepts_gzip`]).
    pub(super) gzip: bool,
}

/// Whether an `Accept-Encoding` value allows gzip: it names `gzip` (or `x-gzip`, or `*`)
/// without `q=0`. A `*` after an explicit refusal does not count.
pub(super) fn accepts_gzip(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let mut any = false;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return !refused;
        }
        if coding == "*" {
            any = !refused;
        }
    }
    any
}

/// A `Host` header or `:authority` usable in an absolute URL this server writes (a host name
/// or address and an optional port): at most 255 characters of `[A-Za-z0-9.:[]-]`.
pub(crate) fn valid_authority(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 255
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']'))
}

/// Parses one request head; `Ok(None)` when more bytes are needed.
pub(super) fn parse(buf: &[u8]) -> Result<Option<Request>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed request"),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("OPTIONS") => Method::Options,
        _ => Method::Other,
    };
    let target = req.path.ok_or("no request target")?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut keep_alive = req.version == Some(1);
    let mut origin = None;
    let mut host = None;
    let mut gzip = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("accept-encoding") {
            gzip |= accepts_gzip(h.value);
        }
        if h.name.eq_ignore_ascii_case("origin") {
            origin = Some(h.value.to_vec());
        }
        if h.name.eq_ignore_ascii_case("host") {
            host = std::str::from_utf8(h.value)
                .ok()
                .filter(|h| valid_authority(h))
                .map(str::to_owned);
        }
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
            || h.name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err("request bodies are not accepted");
        }
    }
    Ok(Some(Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        keep_alive,
        head_len,
        origin,
        host,
        gzip,
    }))
}

/// What a file name under `/live/NAME/EPOCH/` names. Names are canonical (numbers without
/// leading zeros), so one resource has one URL and `to_string` gives the name back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaFile {
    /// `stream.m3u8`.
    MediaPlaylist,
    /// `init{V}.mp4`, or one track's `t{ID}-init{V}.mp4`.
    Init { track: Option<u32>, version: u32 },
    /// `seg{N}.m4s`, or one track's `t{ID}-seg{N}.m4s`.
    Segment { track: Option<u32>, msn: u64 },
    /// `part{N}.m4s`.
    Part(u64),
}

impl MediaFile {
    /// Parses a file name; `None` for anything else.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        if name == "stream.m3u8" {
            return Some(Self::MediaPlaylist);
        }
        let (track, rest) = match name.strip_prefix('t') {
            Some(rest) => {
                let (id, rest) = rest.split_once('-')?;
                (Some(u32::try_from(number(id)?).ok()?), rest)
            }
            None => (None, name),
        };
        let numbered =
            |prefix: &str, suffix: &str| number(rest.strip_prefix(prefix)?.strip_suffix(suffix)?);
        if let Some(v) = numbered("init", ".mp4") {
            let version = u32::try_from(v).ok()?;
            return Some(Self::Init { track, version });
        }
        if let Some(msn) = numbered("seg", ".m4s") {
            return Some(Self::Segment { track, msn });
        }
        match (numbered("part", ".m4s"), track) {
            (Some(id), None) => Some(Self::Part(id)),
            _ => None,
        }
    }
}

impl std::fmt::Display for MediaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let track = |f: &mut std::fmt::Formatter<'_>, t: &Option<u32>| match t {
            Some(id) => write!(f, "t{id}-"),
            None => Ok(()),
        };
        match self {
            Self::MediaPlaylist => f.write_str("stream.m3u8"),
            Self::Init { track: t, version } => {
                track(f, t)?;
                write!(f, "init{version}.mp4")
            }
            Self::Segment { track: t, msn } => {
                track(f, t)?;
                write!(f, "seg{msn}.m4s")
            }
            Self::Part(id) => write!(f, "part{id}.m4s"),
        }
    }
}

/// A decimal number without sign or leading zeros that fits a `u64`.
fn number(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && (s == "0" || !s.starts_with('0'));
    if !canonical || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_when_accepted_without_a_zero_weight() {
        for yes in [
            "gzip",
            "gzip, deflate, br, zstd",
            "br;q=1.0, GZIP;q=0.5",
            "x-gzip",
            "*",
            "identity, *;q=0.1",
        ] {
            assert!(accepts_gzip(yes.as_bytes()), "{yes}");
        }
        for no in [
            "",
            "br",
            "identity",
            "gzip;q=0",
            "gzip; q=0.0, *",
            "*;q=0",
            "gzipx",
        ] {
            assert!(!accepts_gzip(no.as_bytes()), "{no}");
        }
        assert!(!accepts_gzip(b"\xffgzip"));
    }

    #[test]
    fn media_file_names() {
        use MediaFile::*;
        let cases = [
            ("stream.m3u8", Some(MediaPlaylist)),
            ("part12.m4s", Some(Part(12))),
            (
                "seg0.m4s",
                Some(Segment {
                    track: None,
                    msn: 0,
                }),
            ),
            (
                "t2-seg7.m4s",
                Some(Segment {
                    track: Some(2),
                    msn: 7,
                }),
            ),
            (
                "init1.mp4",
                Some(Init {
                    track: None,
                    version: 1,
                }),
            ),
            (
                "t1-init3.mp4",
                Some(Init {
                    track: Some(1),
                    version: 3,
                }),
            ),
            ("part.m4s", None),
            ("part-1.m4s", None),
            ("part012.m4s", None),
            ("t01-seg1.m4s", None),
            ("t1-part1.m4s", None),
            ("tx-seg1.m4s", None),
            ("t-seg1.m4s", None),
            ("t4294967296-seg1.m4s", None),
            ("init4294967296.mp4", None),
            ("part99999999999999999999999.m4s", None),
            ("seg1.mp4", None),
        ];
        for (name, want) in cases {
            let got = MediaFile::parse(name);
            assert_eq!(got, want, "{name}");
            if let Some(f) = got {
                assert_eq!(f.to_string(), name);
            }
        }
    }

    #[test]
    fn parses_requests() {
        let r = parse(b"GET /live/a/index.m3u8?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET")
            .unwrap()
            .unwrap();
        assert_eq!(r.path, "/live/a/index.m3u8");
        assert_eq!(r.query, "x=1");
        assert!(r.keep_alive);
        assert_eq!(r.head_len, 48);
        assert_eq!(r.host.as_deref(), Some("h"));
        let r = parse(b"GET / HTTP/1.1\r\nHost: a\"><x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.host, None, "not usable in a URL");
        assert!(valid_authority("[::1]:8080") && valid_authority("cdn-1.example.com"));
        assert!(!valid_authority("a/b") && !valid_authority("") && !valid_authority("a b"));
        assert!(parse(b"GET / HTTP/1.1\r\nHost").unwrap().is_none());
        assert!(parse(b"\x00\x01 / HTTP/1.1\r\n\r\n").is_err());
        let r = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        assert!(parse(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").is_err());
        let r = parse(b"GET /metrics HTTP/1.1\r\norigin: https://a.example\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.origin.as_deref(), Some(&b"https://a.example"[..]));
    }
}
