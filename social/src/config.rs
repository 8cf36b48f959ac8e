//! Social plane settings (filled from zerocast's one configuration).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::messaging::store::embedded::StoreLimits;

/// Settings of the social API.
#[derive(Debug, Clone)]
pub struct SocialConfig {
    /// Listen address of the API (`/api/v1`).
    pub api: SocketAddr,
    /// HS256 secret for bearer tokens.
    pub jwt_secret: Vec<u8>,
    /// Tokens must carry this `iss` (not checked when `None`).
    pub jwt_issuer: Option<String>,
    /// Tokens' `aud` must contain this (not checked when `None`).
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`. A WebSocket is closed (4003) when its token's
    /// `exp` plus this passes.
    pub jwt_leeway: Duration,
    /// Origins allowed to call the API from a browser (CORS) and to open a WebSocket with an
    /// `Origin` header, as `scheme://host[:port]`; `*` allows every origin. Empty: no CORS
    /// headers, and a WebSocket upgrade carrying an `Origin` is refused (403).
    pub cors_origins: Vec<String>,
    /// The media ports serving the pages when this API runs inside `zerocast serve`: a browser
    /// `Origin` on the host a request names at one of these ports is allowed as if listed in
    /// `cors_origins` (the server's own watch page). Empty for a standalone API.
    pub page_ports: Vec<u16>,
    /// Where the embedded store lives.
    pub data_dir: PathBuf,
    /// Memory and disk bounds of the embedded store (block cache, memtables, journals).
    pub store: StoreLimits,
    /// Bound of the in-process follower cache (with Redis, of each instance's near-cache),
    /// bytes.
    pub graph_cache_bytes: u64,
    /// This instance's node id (message ids, outbox).
    pub node: u16,
    /// Largest message content, bytes of UTF-8.
    pub max_message_bytes: usize,
    /// Largest WebSocket message accepted, bytes.
    pub max_frame_bytes: usize,
    /// Messages a user may send per second, sustained.
    pub rate_per_sec: f64,
    /// Messages a user may send in a burst.
    pub rate_burst: f64,
    /// Frames queued toward one WebSocket before it is closed as too slow.
    pub outbound_queue: usize,
    /// A socket write that takes longer than this drops the client.
    pub write_timeout: Duration,
    /// Server ping interval.
    pub ping_interval: Duration,
    /// A request head must be complete within this long of its first byte (slowloris).
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed (idle sockets, and
    /// connections that never send a request). Longer than `ping_interval`, so WebSockets
    /// stay open.
    pub conn_idle_timeout: Duration,
    /// A socket silent (no frame, no pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Open API connections at most (plain and TLS ports together); more are closed at once.
    pub max_connections: usize,
    /// Open API connections at most from one address (IPv6: one /64); 0 for no cap.
    pub max_connections_per_ip: usize,
    /// WebSockets one user may have open on this instance; one more is refused (close 4004).
    pub max_sockets_per_user: usize,
    /// Rooms one WebSocket may subscribe to at once; one more gets a `too_many_subscriptions`
    /// error frame.
    pub max_subscriptions: usize,
    /// Shortest interval between two typing notices of one user; faster ones are dropped.
    pub typing_interval: Duration,
    /// Messages kept per live-chat room in the chat store (its history, sent on join).
    pub room_history: usize,
    /// Stream names one user may reserve.
    pub max_streams_per_user: usize,
    /// Kafka bootstrap servers; the in-process bus when `None`.
    pub kafka_brokers: Option<String>,
    /// Kafka topic of the social events.
    pub kafka_topic: String,
    /// ScyllaDB contact points (`host:port,...` or `scylla://...`); the embedded store when
    /// `None`.
    pub scylla_uri: Option<String>,
    /// ScyllaDB keyspace replication when it is created (`3`, or `dc1:3,dc2:3` for
    /// NetworkTopologyStrategy); SimpleStrategy RF 1 when `None`.
    pub scylla_replication: Option<String>,
    /// ScyllaDB consistency (`quorum`, `local_quorum`, `each_quorum`, `all`); quorum when
    /// `None`.
    pub scylla_consistency: Option<String>,
    /// Redis URL for the follower cache; an in-process cache when `None`.
    pub redis_url: Option<String>,
    /// Neo4j server for the follow graph (`bolt://host:7687`); the embedded graph when `None`.
    pub neo4j_uri: Option<String>,
    /// Neo4j user (`neo4j` when `None`).
    pub neo4j_user: Option<String>,
    /// Neo4j password (empty when `None`).
    pub neo4j_password: Option<String>,
    /// Neo4j database (the server's default when `None`).
    pub neo4j_database: Option<String>,
    /// Deadline of one Neo4j operation, ms (2000 when `None`).
    pub neo4j_timeout_ms: Option<u64>,
    /// Neo4j connection pool size (16 when `None`).
    pub neo4j_max_connections: Option<u64>,
}

impl SocialConfig {
    /// Defaults for `data_dir` and `jwt_secret`.
    pub fn new(data_dir: PathBuf, jwt_secret: Vec<u8>) -> Self {
        Self {
            api: ([0, 0, 0, 0], 8090).into(),
            jwt_secret,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: Duration::from_secs(crate::auth::LEEWAY),
            cors_origins: Vec::new(),
            page_ports: Vec::new(),
            data_dir,
            store: StoreLimits::default(),
            graph_cache_bytes: crate::graph::cache::DEFAULT_CAPACITY,
            node: 0,
            max_message_bytes: 4096,
            max_frame_bytes: 16 * 1024,
            rate_per_sec: 10.0,
            rate_burst: 20.0,
            outbound_queue: 256,
            write_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            header_read_timeout: Duration::from_secs(10),
            conn_idle_timeout: Duration::from_secs(40),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_sockets_per_user: 8,
            max_subscriptions: 32,
            typing_interval: Duration::from_secs(1),
            room_history: 200,
            max_streams_per_user: 10,
            kafka_brokers: None,
            kafka_topic: "zerocast.social.events".into(),
            scylla_uri: None,
            scylla_replication: None,
            scylla_consistency: None,
            redis_url: None,
            neo4j_uri: None,
            neo4j_user: None,
            neo4j_password: None,
            neo4j_database: None,
            neo4j_timeout_ms: None,
            neo4j_max_connections: None,
        }
    }
}

impl SocialConfig {
    /// The token keys this configuration describes: its secret, issuer, audience and leeway.
    pub fn keys(&self) -> crate::auth::Keys {
        crate::auth::Keys::new(&self.jwt_secret)
            .with_issuer(self.jwt_issuer.clone())
            .with_audience(self.jwt_audience.clone())
            .with_leeway(self.jwt_leeway.as_secs())
    }
}

/// Reads the token secret from `data_dir/jwt-secret`, creating a random one on first use, so
/// `zerocast token` and `zerocast serve` agree without configuration.
pub fn secret_from_data_dir(data_dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = data_dir.join("jwt-secret");
    match std::fs::read(&path) {
        Ok(s) if !s.is_empty() => {
            // A secret others can read is no secret: tighten a file made before this rule.
            let mode = std::fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(s)
        }
        _ => {
            std::fs::create_dir_all(data_dir)?;
            let mut bytes = [0u8; 32];
            for chunk in bytes.chunks_mut(16) {
                chunk.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            }
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            // Readable by its owner only, from the moment it exists.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            f.write_all(hex.as_bytes())?;
            Ok(hex.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("zerocast-secret-{}", uuid::Uuid::new_v4()));
        let first = secret_from_data_dir(&dir).unwrap();
        assert_eq!(first.len(), 64);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
            let file = dir.join("jwt-secret");
            assert_eq!(
                mode(&file) & 0o777,
                0o600,
                "made readable by its owner only"
            );
            // A file made world-readable (by an older version, or by hand) is tightened.
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(secret_from_data_dir(&dir).unwrap(), first);
            assert_eq!(mode(&file) & 0o777, 0o600);
        }
        assert!(first.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(secret_from_data_dir(&dir).unwrap(), first);
        // An empty file (say, an interrupted first start) is replaced, not used as a secret.
        std::fs::write(dir.join("jwt-secret"), b"").unwrap();
        let second = secret_from_data_dir(&dir).unwrap();
        assert_eq!(second.len(), 64);
        assert_ne!(second, first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
