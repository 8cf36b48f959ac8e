//! Who may publish: the `publish-auth` modes, and the identity that owns a stream's reconnect
//! grace window.
//!
//! - `keys` (the default): a reserved name (`POST /api/v1/streams`) needs its current key
//!   (`NAME?key=KEY`), checked by the social plane's channel service; a name nobody reserved
//!   may be published only from `publish-trusted-nets` (loopback by default, so a local
//!   walkthrough needs no key).
//! - `webhook`: the operator's HTTP endpoint decides (`POST {app, name, key, client_ip, node}`;
//!   a 2xx allows, anything else or no answer within `webhook-timeout` denies).
//! - `open`: anyone may publish any name.
//!
//! A stream whose publisher dropped may be resumed within the grace window only by the same
//! [`PublisherId`]: the same channel owner (keys), any publisher the webhook allows for that
//! name (webhook), or the same IP address (open, and unreserved names from trusted networks).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zerocast_social::channels::secrets::PlaybackKeys;
use zerocast_social::channels::service::PublishDenied;
use zerocast_social::channels::Channels;
use zerocast_social::graph::GraphStore;

use crate::url::HttpUrl;

/// How publishers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Stream keys of reserved names; unreserved names from trusted networks only.
    #[default]
    Keys,
    /// The configured webhook decides.
    Webhook,
    /// Anyone may publish.
    Open,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "keys" => Ok(Self::Keys),
            "webhook" => Ok(Self::Webhook),
            "open" => Ok(Self::Open),
            _ => Err(format!(
                "unknown publish-auth {s:?} (expected keys, webhook or open)"
            )),
        }
    }
}

/// An IP network, `addr/prefix` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0-{max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl Net {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Who published a stream, for its reconnect grace window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublisherId {
    /// The owner of a reserved name (a user id), proven by its key.
    Owner(u128),
    /// Allowed by the webhook for this name.
    Webhook,
    /// An unauthenticated publisher, known only by its address.
    Addr(IpAddr),
    /// This edge's follower of the stream on its origin (see [`crate::relay`]).
    Relay,
}

/// A publisher that may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who, for the grace window.
    pub id: PublisherId,
    /// Playback needs a token.
    pub private: bool,
    /// The channel owner's display name, when they set a profile (keys mode).
    pub owner_name: Option<Arc<str>>,
}

impl Grant {
    /// A grant to `id` for a public stream without a named owner.
    pub fn to(id: PublisherId) -> Self {
        Self {
            id,
            private: false,
            owner_name: None,
        }
    }
}

/// The social plane's channel service and follow graph (for owners' display names), reached
/// on its tokio runtime.
#[derive(Clone)]
pub struct ChannelsHandle {
    /// The service.
    pub channels: Channels,
    /// The profiles.
    pub graph: Arc<dyn GraphStore>,
    /// Its runtime.
    pub rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for ChannelsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelsHandle")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// A key check or webhook call must answer within this long.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The publish policy of this node.
#[derive(Debug)]
pub struct PublishAuth {
    mode: Mode,
    trusted: Vec<Net>,
    webhook: Option<Webhook>,
    unpublish_hook: Option<Webhook>,
    node: u16,
    channels: OnceLock<ChannelsHandle>,
    playback: OnceLock<PlaybackKeys>,
}

impl PublishAuth {
    /// A policy: `mode`, the networks that may publish unreserved names in keys mode, the
    /// publish and unpublish webhooks (with their deadline), and this node's id.
    pub fn new(
        mode: Mode,
        trusted: Vec<Net>,
        webhook: Option<Webhook>,
        unpublish_hook: Option<Webhook>,
        node: u16,
    ) -> Self {
        Self {
            mode,
            trusted,
            webhook,
            unpublish_hook,
            node,
            channels: OnceLock::new(),
            playback: OnceLock::new(),
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Connects the social plane's channels (keys mode) once it runs.
    pub fn set_channels(&self, handle: ChannelsHandle) {
        let _ = self.channels.set(handle);
    }

    /// Sets the keys that check playback tokens of private streams.
    pub fn set_playback(&self, keys: PlaybackKeys) {
        let _ = self.playback.set(keys);
    }

    /// The playback token keys, once set.
    pub fn playback(&self) -> Option<&PlaybackKeys> {
        self.playback.get()
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// Decides whether `peer` may publish `app/name` with `key`; the error is the reason sent
    /// to the publisher and logged.
    pub async fn authorize(
        &self,
        app: &str,
        name: &str,
        key: Option<&str>,
        peer: SocketAddr,
    ) -> Result<Grant, String> {
        let by_addr = Grant::to(PublisherId::Addr(peer.ip()));
        match self.mode {
            Mode::Open => Ok(by_addr),
            Mode::Webhook => {
                let hook = self
                    .webhook
                    .as_ref()
                    .ok_or("publish-auth=webhook without publish-webhook")?;
                let body = serde_json::json!({
                    "app": app, "name": name, "key": key.unwrap_or(""),
                    "client_ip": peer.ip().to_string(), "node": self.node,
                });
                match hook.post(&body).await {
                    Ok(status) if (200..300).contains(&status) => {
                        Ok(Grant::to(PublisherId::Webhook))
                    }
                    Ok(status) => Err(format!("denied by the publish webhook (HTTP {status})")),
                    Err(e) => Err(format!("publish webhook did not answer: {e}")),
                }
            }
            Mode::Keys => {
                let verdict = match self.channels.get() {
                    Some(h) => check_key(h, name, key).await,
                    None => Err(PublishDenied::Unregistered),
                };
                match verdict {
                    Ok((g, owner_name)) => Ok(Grant {
                        id: PublisherId::Owner(g.owner.0.as_u128()),
                        private: g.private,
                        owner_name,
                    }),
                    Err(PublishDenied::Unregistered) if self.trusted(peer.ip()) => Ok(by_addr),
                    Err(PublishDenied::Unregistered) => Err(format!(
                        "{}; unreserved names may be published only from {}",
                        PublishDenied::Unregistered,
                        self.trusted_list()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    fn trusted_list(&self) -> String {
        if self.trusted.is_empty() {
            return "nowhere (publish-trusted-nets is empty)".into();
        }
        self.trusted
            .iter()
            .map(|n| format!("{}/{}", n.addr, n.prefix))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Tells the unpublish webhook, if any, that `name` stopped (fire and forget).
    pub fn unpublished(&self, app: &str, name: &str, peer: SocketAddr) {
        let Some(hook) = self.unpublish_hook.clone() else {
            return;
        };
        let body = serde_json::json!({
            "app": app, "name": name, "client_ip": peer.ip().to_string(), "node": self.node,
        });
        monoio::spawn(async move {
            if let Err(e) = hook.post(&body).await {
                tracing::warn!("unpublish webhook: {e}");
            }
        });
    }
}

/// The channel service's verdict on `key` for `name`, and the owner's display name with it
/// (`None` when they set no profile, or the graph could not say: it never refuses a publish).
async fn check_key(
    h: &ChannelsHandle,
    name: &str,
    key: Option<&str>,
) -> Result<
    (
        zerocast_social::channels::service::PublishGrant,
        Option<Arc<str>>,
    ),
    PublishDenied,
> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (channels, graph) = (h.channels.clone(), h.graph.clone());
    let (name, key) = (name.to_owned(), key.map(str::to_owned));
    h.rt.spawn(async move {
        let verdict = match channels.verify_publish(&name, key.as_deref()).await {
            Ok(g) => {
                let profile = graph
                    .profiles(&[g.owner])
                    .await
                    .ok()
                    .and_then(|mut p| p.pop());
                let owner_name = profile.flatten().map(|p| Arc::from(p.display_name));
                Ok((g, owner_name))
            }
            Err(e) => Err(e),
        };
        let _ = tx.send(verdict);
    });
    match monoio::time::timeout(CHECK_TIMEOUT, rx).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => Err(PublishDenied::Unavailable("the key store stopped".into())),
        Err(_) => Err(PublishDenied::Unavailable(
            "the key store did not answer in time".into(),
        )),
    }
}

/// An HTTP/1.1 endpoint zerocast POSTs JSON to (`http://` only; the host is resolved once, at
/// start).
#[derive(Debug, Clone)]
pub struct Webhook {
    url: HttpUrl,
    timeout: Duration,
}

impl Webhook {
    /// Parses and resolves `http://HOST[:PORT]/PATH`.
    pub fn parse(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            url: HttpUrl::parse(url, "webhook")?,
            timeout,
        })
    }

    /// POSTs `body`; the response status.
    pub async fn post(&self, body: &serde_json::Value) -> Result<u16, String> {
        let body = body.to_string();
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: zerocast\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.url.path,
            self.url.host,
            body.len()
        );
        let exchange = exchange(self.url.addr, req.into_bytes());
        match monoio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
}

async fn exchange(addr: SocketAddr, req: Vec<u8>) -> Result<u16, String> {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let mut s = monoio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (r, _) = s.write_all(req).await;
    r.map_err(|e| format!("write: {e}"))?;
    let mut got: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let buf = Vec::with_capacity(1024);
        let (r, buf) = s.read(buf).await;
        let n = r.map_err(|e| format!("read: {e}"))?;
        got.extend_from_slice(&buf[..n]);
        if let Some((head, _)) = crate::relay::wire::parse_head(&got)? {
            return Ok(head.status);
        }
        if n == 0 {
            return Err("connection closed before a status line".into());
        }
    }
}

/// Shared policy handle.
pub type Auth = Arc<PublishAuth>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let lo: Net = "127.0.0.0/8".parse().unwrap();
        assert!(lo.contains("127.0.0.2".parse().unwrap()));
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!lo.contains("10.0.0.1".parse().unwrap()));
        let one: Net = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: Net = "::1/128".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()));
        assert!(!v6.contains("127.0.0.1".parse().unwrap()));
        let all: Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["", "x", "10.0.0.0/33", "::/129", "1.2.3.4/-1"] {
            assert!(bad.parse::<Net>().is_err(), "{bad}");
        }
    }
}
