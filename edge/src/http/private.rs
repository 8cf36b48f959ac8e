//! Private streams: every playlist and media request needs a playback token (`?token=`), and
//! every URI a playlist lists carries the request's token on, so a stock player (hls.js,
//! Safari, ffmpeg) needs no custom loader.

use bytes::Bytes;

/// The value of `name` in a query string, if present and not empty.
pub(super) fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// `uri` with `token` appended as a query parameter.
pub(super) fn with_token(uri: &str, token: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}token={token}")
}

/// A playlist with `token` appended to every URI: the URI lines, and each `URI="..."`
/// attribute of a tag (`EXT-X-MAP`, `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
/// `EXT-X-RENDITION-REPORT`, `EXT-X-MEDIA`).
pub(super) fn tokenize_playlist(text: &[u8], token: &str) -> Bytes {
    let text = String::from_utf8_lossy(text);
    let mut out = String::with_capacity(text.len() + 64 * token.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.is_empty() {
            out.push_str(line);
        } else if body.starts_with('#') {
            let mut rest = body;
            while let Some(i) = rest.find("URI=\"") {
                let start = i + 5;
                let Some(len) = rest[start..].find('"') else {
                    break;
                };
                out.push_str(&rest[..start]);
                out.push_str(&with_token(&rest[start..start + len], token));
                rest = &rest[start + len..];
            }
            out.push_str(rest);
            out.push_str(end);
        } else {
            out.push_str(&with_token(body, token));
            out.push_str(end);
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_reach_every_uri() {
        let pl = "#EXTM3U\n#EXT-X-MAP:URI=\"init0.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"part7.m4s\",INDEPENDENT=YES\n#EXTINF:2.0,\nseg1.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part8.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"../x/stream.m3u8?a=1\",LAST-MSN=3\n";
        let out = tokenize_playlist(pl.as_bytes(), "9.abc");
        let out = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init0.mp4?token=9.abc\"\n#EXT-X-PART:DURATION=0.2,URI=\"part7.m4s?token=9.abc\",INDEPENDENT=YES\n#EXTINF:2.0,\nseg1.m4s?token=9.abc\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part8.m4s?token=9.abc\"\n#EXT-X-RENDITION-REPORT:URI=\"../x/stream.m3u8?a=1&token=9.abc\",LAST-MSN=3\n"
        );
    }

    #[test]
    fn query_params() {
        assert_eq!(param("_HLS_msn=3&token=1.x", "token"), Some("1.x"));
        assert_eq!(param("token=", "token"), None);
        assert_eq!(param("tokens=1", "token"), None);
        assert_eq!(param("", "token"), None);
    }
}
