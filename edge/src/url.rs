//! `http://HOST[:PORT]/PATH` URLs of the servers zerocast calls: publish webhooks and origins.

use std::net::{SocketAddr, ToSocketAddrs};

/// A parsed `http://` URL whose host was resolved once, when it was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The authority as written (`Host` header).
    pub host: String,
    /// Path and query, starting with `/` (`/` when the URL has none).
    pub path: String,
}

impl HttpUrl {
    /// Parses and resolves `http://HOST[:PORT][/PATH]`; `what` names the URL's role in errors.
    pub fn parse(url: &str, what: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// {what} URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("{url:?} is not a valid http:// URL"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && !authority.ends_with(']')
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url:?}: the host has no address"))?;
        Ok(Self {
            addr,
            host: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        let u = HttpUrl::parse("http://127.0.0.1:9/hook?x=1", "webhook").unwrap();
        assert_eq!(u.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(
            (u.host.as_str(), u.path.as_str()),
            ("127.0.0.1:9", "/hook?x=1")
        );
        let u = HttpUrl::parse("http://127.0.0.1", "origin").unwrap();
        assert_eq!((u.addr.port(), u.path.as_str()), (80, "/"));
        let u = HttpUrl::parse("http://[::1]:8080/", "origin").unwrap();
        assert_eq!(u.addr, "[::1]:8080".parse().unwrap());
        assert!(HttpUrl::parse("https://127.0.0.1/", "origin")
            .unwrap_err()
            .contains("only http:// origin URLs"));
        assert!(HttpUrl::parse("http:///x", "origin").is_err());
        assert!(HttpUrl::parse("http://a b/", "origin").is_err());
    }
}
