//! The one configuration type: defaults, then `zerocast.toml`, then `ZEROCAST_*` environment
//! variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::publish::{Mode as PublishMode, Net, PublishAuth, Webhook};

/// Which monoio driver the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// io_uring when the kernel allows it, epoll otherwise.
    #[default]
    Auto,
    /// io_uring only (fails at start if unavailable).
    Uring,
    /// epoll only.
    Epoll,
}

impl FromStr for Driver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "uring" | "io_uring" | "iouring" => Ok(Self::Uring),
            "epoll" | "legacy" => Ok(Self::Epoll),
            _ => Err(format!(
                "unknown driver {s:?} (expected auto, uring or epoll)"
            )),
        }
    }
}

/// Effective server configuration. Keys in `zerocast.toml` are the flag names
/// (`part-target = 200`); environment variables are `ZEROCAST_` + the key in upper snake case
/// (`ZEROCAST_PART_TARGET=200`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct Config {
    /// RTMP listen address.
    pub rtmp: SocketAddr,
    /// Media HTTP listen address (playlists, media, `/api/streams`, `/metrics`).
    pub http: SocketAddr,
    /// HTTPS media listen address: TCP (HTTP/2 and HTTP/1.1 over TLS) and UDP (HTTP/3), the
    /// same routes as `http`. Active when `tls-cert` and `tls-key` are set.
    pub https: SocketAddr,
    /// RTMPS listen address (RTMP over TLS). Active when `tls-cert` and `tls-key` are set.
    pub rtmps: SocketAddr,
    /// Certificate chain, PEM (leaf first). Reloaded on SIGHUP and when the file changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of `tls-cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Worker threads (one monoio runtime each); 0 means one per core.
    pub workers: usize,
    /// IO driver.
    pub driver: Driver,
    /// Send complete parts and segments over plain HTTP/1.1 with `sendfile(2)` from the
    /// media's memory file (no copy into the socket buffer); `false` writes them with `writev`.
    pub sendfile: bool,
    /// LL-HLS part target, milliseconds.
    pub part_target: u64,
    /// Segment target, milliseconds (segments are cut at the first keyframe near it).
    pub segment_target: u64,
    /// Complete segments kept in each media playlist.
    pub playlist_window: usize,
    /// How long a stream waits for its publisher to come back before it ends, milliseconds.
    pub reconnect_grace: u64,
    /// A backup publisher (`?role=backup`) takes over after the packaged publisher sent no
    /// frame for this long, milliseconds.
    pub backup_gap: u64,
    /// How long an ended stream keeps answering (with `EXT-X-ENDLIST`), milliseconds.
    pub ended_linger: u64,
    /// Longest a blocking playlist or part request is held, in target durations.
    pub block_limit: u32,
    /// Streams with series of their own in `/metrics`; further streams share `stream="~other"`.
    pub metrics_max_streams: usize,
    /// Open connections at most, over every media listener (RTMP, RTMPS, HTTP, HTTPS); further
    /// ones are closed at once.
    pub max_connections: usize,
    /// An RTMP/RTMPS connection must have a publish accepted within this long after it was
    /// accepted (handshake, connect, publish), milliseconds.
    pub rtmp_publish_timeout: u64,
    /// A media HTTP request head must arrive whole within this long after its first byte (and
    /// the first request within this long after the connection opened), milliseconds.
    pub http_head_timeout: u64,
    /// Who may publish: `keys` (stream keys of reserved names; unreserved names only from
    /// `publish-trusted-nets`), `webhook` (`publish-webhook` decides) or `open`.
    pub publish_auth: PublishMode,
    /// Networks that may publish names nobody reserved without a key (keys mode).
    pub publish_trusted_nets: Vec<String>,
    /// `http://` URL that decides publishes in webhook mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_webhook: Option<String>,
    /// `http://` URL told when a publisher stops (any mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpublish_webhook: Option<String>,
    /// Deadline of one webhook call, milliseconds.
    pub webhook_timeout: u64,
    /// Stream names one user may reserve.
    pub max_streams_per_user: usize,
    /// Open media connections at most from one client address (an IPv6 client: its /64),
    /// over every media listener; further ones are closed at once. 0: no per-address cap.
    pub max_connections_per_ip: usize,
    /// Streams in the hub at most (live, waiting for their publisher, or ended and lingering;
    /// an ended one makes room for a new one). Further publishes are refused.
    pub max_streams: usize,
    /// Longest RTMP message, bytes, a client may announce before its publish is accepted
    /// (connect, createStream and publish are a few hundred bytes).
    pub rtmp_max_message_before_publish: u32,
    /// Largest RTMP chunk size, bytes, a client may set before its publish is accepted.
    pub rtmp_max_chunk_size_before_publish: u32,
    /// Longest RTMP message, bytes, a publisher may send (a video frame); at most 16777215.
    pub rtmp_max_message: u32,
    /// Origins this node follows streams from (`http://HOST:PORT`, tried in order on
    /// failure): set, the node is an edge, and a request for a stream it does not have starts
    /// following that stream on an origin.
    pub origin: Vec<String>,
    /// An edge stops following a stream nobody watched for this long, milliseconds.
    pub edge_linger: u64,
    /// Directory for everything the embedded backends persist.
    pub data_dir: PathBuf,
    /// Social API listen address (`/api/v1`).
    pub api: SocketAddr,
    /// Social API over TLS (HTTPS and WSS). Active when `tls-cert` and `tls-key` are set.
    pub api_https: SocketAddr,
    /// Run the social API inside `zerocast serve`.
    pub social: bool,
    /// HS256 secret for bearer tokens; by default a random secret kept in `data-dir/jwt-secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// Bearer tokens must carry this `iss` (not checked when unset); `zerocast token` sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    /// Bearer tokens' `aud` must contain this (not checked when unset); `zerocast token` sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// Browser origins allowed to call the social API (CORS) and open its WebSocket
    /// (`https://app.example`; `*` for any). Empty: no CORS headers, and a WebSocket upgrade
    /// carrying an `Origin` is refused.
    pub api_cors_origins: Vec<String>,
    /// The social API's base URL as browsers reach it, for the pages' scripts (`scheme://host
    /// [:port]`); unset: the host a page was asked on, with this process's `api` port (or
    /// `api-https` over TLS). Set it on edges, which run no social API of their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages_api_url: Option<String>,
    /// A social API request head must arrive whole within this long of its first byte,
    /// milliseconds.
    pub api_header_timeout: u64,
    /// A social API connection on which no byte moves for this long is closed, milliseconds
    /// (longer than the 20 s WebSocket ping interval).
    pub api_idle_timeout: u64,
    /// Open social API connections at most (plain and TLS ports together).
    pub api_max_connections: usize,
    /// Open social API connections at most from one address (IPv6: one /64); 0: no cap.
    pub api_max_connections_per_ip: usize,
    /// WebSockets one user may have open on one instance.
    pub ws_max_sockets_per_user: usize,
    /// Chat rooms one WebSocket may subscribe to at once.
    pub ws_max_subscriptions: usize,
    /// Shortest interval between two typing notices of one user, milliseconds.
    pub ws_typing_interval: u64,
    /// Messages a live-chat room keeps (its history, sent on subscribe), 1-1000.
    pub chat_history: usize,
    /// Origins allowed to read the media port's `/api/streams` and `/metrics` from a browser
    /// (`*` for any); playlists and media always allow any origin.
    pub media_api_cors: Vec<String>,
    /// This instance's node id (0-1023): message ids and the outbox.
    pub node_id: u16,
    /// Kafka bootstrap servers for the social event bus (in-process bus when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_brokers: Option<String>,
    /// Kafka topic of the social events.
    pub kafka_topic: String,
    /// ScyllaDB contact points for messages (embedded store when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scylla_uri: Option<String>,
    /// ScyllaDB keyspace replication on creation: `3`, or `dc1:3,dc2:3` (default RF 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scylla_replication: Option<String>,
    /// ScyllaDB consistency: quorum, local_quorum, each_quorum or all (default quorum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scylla_consistency: Option<String>,
    /// Redis URL for the follower cache (in-process cache when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Neo4j server for the follow graph, `bolt://host:7687` (embedded graph when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neo4j_uri: Option<String>,
    /// Neo4j user (default `neo4j`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neo4j_user: Option<String>,
    /// Neo4j password (default empty, for a server without auth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neo4j_password: Option<String>,
    /// Neo4j database (default: the server's default database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neo4j_database: Option<String>,
    /// Deadline of one Neo4j operation, milliseconds (default 2000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neo4j_timeout_ms: Option<u64>,
    /// Neo4j connection pool size, 1-1024 (default 16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neo4j_max_connections: Option<u64>,
    /// Block cache of the embedded store (messages, graph, channels), MiB.
    pub store_cache_mib: u64,
    /// Every memtable of the embedded store together (writes not yet flushed to tables), MiB.
    pub store_write_buffer_mib: u64,
    /// Every journal of the embedded store together, on disk, MiB (at least 64).
    pub store_journal_mib: u64,
    /// Bound of the in-process follower cache (with `redis-url`, of the near-cache), MiB.
    pub graph_cache_mib: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rtmp: ([0, 0, 0, 0], 1935).into(),
            http: ([0, 0, 0, 0], 8080).into(),
            https: ([0, 0, 0, 0], 8443).into(),
            rtmps: ([0, 0, 0, 0], 1936).into(),
            tls_cert: None,
            tls_key: None,
            workers: 0,
            driver: Driver::Auto,
            part_target: 200,
            segment_target: 2000,
            playlist_window: 20,
            reconnect_grace: 10_000,
            backup_gap: 1_000,
            ended_linger: 30_000,
            block_limit: 3,
            sendfile: true,
            metrics_max_streams: 1000,
            max_connections: 10_000,
            rtmp_publish_timeout: 10_000,
            http_head_timeout: 10_000,
            publish_auth: PublishMode::Keys,
            publish_trusted_nets: vec!["127.0.0.0/8".into(), "::1".into()],
            publish_webhook: None,
            unpublish_webhook: None,
            webhook_timeout: 2000,
            max_streams_per_user: 10,
            max_connections_per_ip: 256,
            max_streams: 1000,
            rtmp_max_message_before_publish: 64 * 1024,
            rtmp_max_chunk_size_before_publish: 64 * 1024,
            rtmp_max_message: MAX_RTMP_MESSAGE,
            origin: Vec::new(),
            edge_linger: 30_000,
            data_dir: PathBuf::from("zerocast-data"),
            api: ([0, 0, 0, 0], 8090).into(),
            api_https: ([0, 0, 0, 0], 8091).into(),
            social: true,
            jwt_secret: None,
            jwt_issuer: None,
            jwt_audience: None,
            api_cors_origins: Vec::new(),
            pages_api_url: None,
            api_header_timeout: 10_000,
            api_idle_timeout: 40_000,
            api_max_connections: 10_000,
            api_max_connections_per_ip: 256,
            ws_max_sockets_per_user: 8,
            ws_max_subscriptions: 32,
            ws_typing_interval: 1000,
            chat_history: 200,
            media_api_cors: Vec::new(),
            node_id: 0,
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
            store_cache_mib: 16,
            store_write_buffer_mib: 16,
            store_journal_mib: 128,
            graph_cache_mib: 128,
        }
    }
}

/// A configuration source that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// An environment variable holds an invalid value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// Why.
        message: String,
    },
    /// The values do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Config file (default: ./zerocast.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// RTMP listen address [default: 0.0.0.0:1935].
    #[arg(long, value_name = "ADDR")]
    pub rtmp: Option<SocketAddr>,
    /// Media HTTP listen address [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// HTTPS media listen address, TCP for HTTP/2 and HTTP/1.1, UDP for HTTP/3
    /// [default: 0.0.0.0:8443; needs --tls-cert and --tls-key].
    #[arg(long, value_name = "ADDR")]
    pub https: Option<SocketAddr>,
    /// RTMPS listen address [default: 0.0.0.0:1936; needs --tls-cert and --tls-key].
    #[arg(long, value_name = "ADDR")]
    pub rtmps: Option<SocketAddr>,
    /// Certificate chain (PEM) for HTTPS, HTTP/3, RTMPS and the social API over TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Worker threads, one monoio runtime each [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// IO driver: auto, uring or epoll [default: auto].
    #[arg(long, value_name = "DRIVER")]
    pub driver: Option<Driver>,
    /// Send complete media over plain HTTP/1.1 with sendfile(2): true or false [default: true].
    #[arg(long, value_name = "BOOL")]
    pub sendfile: Option<bool>,
    /// LL-HLS part target in milliseconds [default: 200].
    #[arg(long, value_name = "MS")]
    pub part_target: Option<u64>,
    /// Segment target in milliseconds [default: 2000].
    #[arg(long, value_name = "MS")]
    pub segment_target: Option<u64>,
    /// Publisher reconnect grace window in milliseconds [default: 10000].
    #[arg(long, value_name = "MS")]
    pub reconnect_grace: Option<u64>,
    /// A backup publisher takes over after this many milliseconds without frames from the
    /// packaged one [default: 1000].
    #[arg(long, value_name = "MS")]
    pub backup_gap: Option<u64>,
    /// Streams with their own series in /metrics; more share stream="~other" [default: 1000].
    #[arg(long, value_name = "N")]
    pub metrics_max_streams: Option<usize>,
    /// Open media connections at most; more are closed at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Who may publish: keys, webhook or open [default: keys; unreserved names from loopback].
    #[arg(long, value_name = "MODE")]
    pub publish_auth: Option<PublishMode>,
    /// URL that decides publishes when --publish-auth webhook.
    #[arg(long, value_name = "URL")]
    pub publish_webhook: Option<String>,
    /// Open media connections at most from one address (IPv6: one /64); 0 for no cap
    /// [default: 256].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Streams at most on this node; more publishes are refused [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_streams: Option<usize>,
    /// Longest RTMP message before a publish is accepted, bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub rtmp_max_message_before_publish: Option<u32>,
    /// Largest RTMP chunk size before a publish is accepted, bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub rtmp_max_chunk_size_before_publish: Option<u32>,
    /// Longest RTMP message of a publisher, bytes [default: 16777215].
    #[arg(long, value_name = "BYTES")]
    pub rtmp_max_message: Option<u32>,
    /// Run as an edge of this origin (http://HOST:PORT); repeat or comma-separate for
    /// failover [default: none, this node is an origin].
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub origin: Option<Vec<String>>,
    /// An edge stops following a stream nobody watched for this many milliseconds
    /// [default: 30000].
    #[arg(long, value_name = "MS")]
    pub edge_linger: Option<u64>,
    /// Data directory for the embedded backends [default: ./zerocast-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Social API listen address [default: 0.0.0.0:8090].
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// Social API over TLS (HTTPS, WSS) [default: 0.0.0.0:8091; needs --tls-cert and --tls-key].
    #[arg(long, value_name = "ADDR")]
    pub api_https: Option<SocketAddr>,
    /// Bearer tokens must carry this issuer (`iss`) [default: not checked].
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// Bearer tokens' audience (`aud`) must contain this [default: not checked].
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// Browser origins allowed by the social API, comma-separated, or `*` [default: none].
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    pub api_cors_origins: Option<Vec<String>>,
    /// The social API's URL for the pages' scripts, scheme://host[:port] [default: this host,
    /// the api port].
    #[arg(long, value_name = "URL")]
    pub pages_api_url: Option<String>,
    /// Social API request-head deadline in milliseconds [default: 10000].
    #[arg(long, value_name = "MS")]
    pub api_header_timeout: Option<u64>,
    /// Social API idle-connection deadline in milliseconds [default: 40000].
    #[arg(long, value_name = "MS")]
    pub api_idle_timeout: Option<u64>,
    /// Origins allowed to read /api/streams and /metrics on the media port, comma-separated,
    /// or `*` [default: none].
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    pub media_api_cors: Option<Vec<String>>,
    /// Node id of this instance, 0-1023 [default: 0].
    #[arg(long, value_name = "N")]
    pub node_id: Option<u16>,
    /// Kafka bootstrap servers for the social event bus [default: in-process bus].
    #[arg(long, value_name = "HOST:PORT,...")]
    pub kafka_brokers: Option<String>,
    /// ScyllaDB contact points for messages [default: embedded store].
    #[arg(long, value_name = "URI")]
    pub scylla_uri: Option<String>,
    /// Neo4j server for the follow graph [default: embedded graph].
    #[arg(long, value_name = "URI")]
    pub neo4j_uri: Option<String>,
    /// Redis URL for the follower cache [default: in-process cache].
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
}

impl Config {
    /// Builds the effective configuration from the file, the environment and `flags`.
    pub fn load(flags: &Overrides) -> Result<Self, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        let path = flags
            .config
            .clone()
            .or_else(|| env("ZEROCAST_CONFIG").map(PathBuf::from));
        let mut cfg = match &path {
            Some(p) => Self::from_file(p)?,
            None if Path::new("zerocast.toml").exists() => {
                Self::from_file(Path::new("zerocast.toml"))?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.apply_flags(flags);
        cfg.validate()?;
        Ok(cfg)
    }

    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Applies `ZEROCAST_*` variables read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e: T::Err| ConfigError::Env {
                name: name.to_owned(),
                message: e.to_string(),
            })
        }
        macro_rules! var {
            ($name:literal, $field:expr) => {
                if let Some(v) = get($name) {
                    $field = parse($name, &v)?;
                }
            };
        }
        var!("ZEROCAST_RTMP", self.rtmp);
        var!("ZEROCAST_HTTP", self.http);
        var!("ZEROCAST_HTTPS", self.https);
        var!("ZEROCAST_RTMPS", self.rtmps);
        var!("ZEROCAST_WORKERS", self.workers);
        var!("ZEROCAST_DRIVER", self.driver);
        var!("ZEROCAST_SENDFILE", self.sendfile);
        var!("ZEROCAST_PART_TARGET", self.part_target);
        var!("ZEROCAST_SEGMENT_TARGET", self.segment_target);
        var!("ZEROCAST_PLAYLIST_WINDOW", self.playlist_window);
        var!("ZEROCAST_RECONNECT_GRACE", self.reconnect_grace);
        var!("ZEROCAST_BACKUP_GAP", self.backup_gap);
        var!("ZEROCAST_ENDED_LINGER", self.ended_linger);
        var!("ZEROCAST_BLOCK_LIMIT", self.block_limit);
        var!("ZEROCAST_METRICS_MAX_STREAMS", self.metrics_max_streams);
        var!("ZEROCAST_MAX_CONNECTIONS", self.max_connections);
        var!("ZEROCAST_RTMP_PUBLISH_TIMEOUT", self.rtmp_publish_timeout);
        var!("ZEROCAST_HTTP_HEAD_TIMEOUT", self.http_head_timeout);
        var!("ZEROCAST_PUBLISH_AUTH", self.publish_auth);
        var!("ZEROCAST_WEBHOOK_TIMEOUT", self.webhook_timeout);
        var!("ZEROCAST_MAX_STREAMS_PER_USER", self.max_streams_per_user);
        if let Some(v) = get("ZEROCAST_PUBLISH_TRUSTED_NETS") {
            self.publish_trusted_nets = list(&v);
        }
        if let Some(v) = get("ZEROCAST_ORIGIN") {
            self.origin = list(&v);
        }
        var!("ZEROCAST_EDGE_LINGER", self.edge_linger);
        var!(
            "ZEROCAST_MAX_CONNECTIONS_PER_IP",
            self.max_connections_per_ip
        );
        var!("ZEROCAST_MAX_STREAMS", self.max_streams);
        var!(
            "ZEROCAST_RTMP_MAX_MESSAGE_BEFORE_PUBLISH",
            self.rtmp_max_message_before_publish
        );
        var!(
            "ZEROCAST_RTMP_MAX_CHUNK_SIZE_BEFORE_PUBLISH",
            self.rtmp_max_chunk_size_before_publish
        );
        var!("ZEROCAST_RTMP_MAX_MESSAGE", self.rtmp_max_message);
        var!("ZEROCAST_DATA_DIR", self.data_dir);
        var!("ZEROCAST_API", self.api);
        var!("ZEROCAST_API_HTTPS", self.api_https);
        var!("ZEROCAST_SOCIAL", self.social);
        var!("ZEROCAST_NODE_ID", self.node_id);
        var!("ZEROCAST_API_HEADER_TIMEOUT", self.api_header_timeout);
        var!("ZEROCAST_API_IDLE_TIMEOUT", self.api_idle_timeout);
        var!("ZEROCAST_API_MAX_CONNECTIONS", self.api_max_connections);
        var!(
            "ZEROCAST_API_MAX_CONNECTIONS_PER_IP",
            self.api_max_connections_per_ip
        );
        var!(
            "ZEROCAST_WS_MAX_SOCKETS_PER_USER",
            self.ws_max_sockets_per_user
        );
        var!("ZEROCAST_WS_MAX_SUBSCRIPTIONS", self.ws_max_subscriptions);
        var!("ZEROCAST_WS_TYPING_INTERVAL", self.ws_typing_interval);
        var!("ZEROCAST_CHAT_HISTORY", self.chat_history);
        var!("ZEROCAST_STORE_CACHE_MIB", self.store_cache_mib);
        var!(
            "ZEROCAST_STORE_WRITE_BUFFER_MIB",
            self.store_write_buffer_mib
        );
        var!("ZEROCAST_STORE_JOURNAL_MIB", self.store_journal_mib);
        var!("ZEROCAST_GRAPH_CACHE_MIB", self.graph_cache_mib);
        // Lists: comma-separated; an empty variable empties the list.
        if let Some(v) = get("ZEROCAST_API_CORS_ORIGINS") {
            self.api_cors_origins = list(&v);
        }
        if let Some(v) = get("ZEROCAST_MEDIA_API_CORS") {
            self.media_api_cors = list(&v);
        }
        if let Some(v) = get("ZEROCAST_JWT_SECRET") {
            self.jwt_secret = Some(v);
        }
        if let Some(v) = get("ZEROCAST_KAFKA_TOPIC") {
            self.kafka_topic = v;
        }
        // Optional settings: an empty variable unsets the key.
        macro_rules! opt {
            ($name:literal, $field:expr) => {
                if let Some(v) = get($name) {
                    $field = if v.trim().is_empty() {
                        None
                    } else {
                        Some(parse($name, &v)?)
                    };
                }
            };
        }
        opt!("ZEROCAST_PUBLISH_WEBHOOK", self.publish_webhook);
        opt!("ZEROCAST_PAGES_API_URL", self.pages_api_url);
        opt!("ZEROCAST_UNPUBLISH_WEBHOOK", self.unpublish_webhook);
        opt!("ZEROCAST_TLS_CERT", self.tls_cert);
        opt!("ZEROCAST_TLS_KEY", self.tls_key);
        opt!("ZEROCAST_KAFKA_BROKERS", self.kafka_brokers);
        opt!("ZEROCAST_SCYLLA_URI", self.scylla_uri);
        opt!("ZEROCAST_SCYLLA_REPLICATION", self.scylla_replication);
        opt!("ZEROCAST_SCYLLA_CONSISTENCY", self.scylla_consistency);
        opt!("ZEROCAST_REDIS_URL", self.redis_url);
        opt!("ZEROCAST_NEO4J_URI", self.neo4j_uri);
        opt!("ZEROCAST_NEO4J_USER", self.neo4j_user);
        opt!("ZEROCAST_NEO4J_PASSWORD", self.neo4j_password);
        opt!("ZEROCAST_NEO4J_DATABASE", self.neo4j_database);
        opt!("ZEROCAST_NEO4J_TIMEOUT_MS", self.neo4j_timeout_ms);
        opt!("ZEROCAST_NEO4J_MAX_CONNECTIONS", self.neo4j_max_connections);
        opt!("ZEROCAST_JWT_ISSUER", self.jwt_issuer);
        opt!("ZEROCAST_JWT_AUDIENCE", self.jwt_audience);
        Ok(())
    }

    fn apply_flags(&mut self, f: &Overrides) {
        if let Some(v) = f.rtmp {
            self.rtmp = v;
        }
        if let Some(v) = f.http {
            self.http = v;
        }
        if let Some(v) = f.https {
            self.https = v;
        }
        if let Some(v) = f.rtmps {
            self.rtmps = v;
        }
        if let Some(v) = &f.tls_cert {
            self.tls_cert = Some(v.clone()).filter(|p| !p.as_os_str().is_empty());
        }
        if let Some(v) = &f.tls_key {
            self.tls_key = Some(v.clone()).filter(|p| !p.as_os_str().is_empty());
        }
        if let Some(v) = f.workers {
            self.workers = v;
        }
        if let Some(v) = f.driver {
            self.driver = v;
        }
        if let Some(v) = f.sendfile {
            self.sendfile = v;
        }
        if let Some(v) = f.part_target {
            self.part_target = v;
        }
        if let Some(v) = f.segment_target {
            self.segment_target = v;
        }
        if let Some(v) = f.reconnect_grace {
            self.reconnect_grace = v;
        }
        if let Some(v) = f.backup_gap {
            self.backup_gap = v;
        }
        if let Some(v) = f.metrics_max_streams {
            self.metrics_max_streams = v;
        }
        if let Some(v) = f.max_connections {
            self.max_connections = v;
        }
        if let Some(v) = f.publish_auth {
            self.publish_auth = v;
        }
        if let Some(v) = &f.publish_webhook {
            self.publish_webhook = Some(v.clone()).filter(|u| !u.is_empty());
        }
        if let Some(v) = &f.pages_api_url {
            self.pages_api_url = Some(v.clone()).filter(|u| !u.is_empty());
        }
        if let Some(v) = f.max_connections_per_ip {
            self.max_connections_per_ip = v;
        }
        if let Some(v) = f.max_streams {
            self.max_streams = v;
        }
        if let Some(v) = f.rtmp_max_message_before_publish {
            self.rtmp_max_message_before_publish = v;
        }
        if let Some(v) = f.rtmp_max_chunk_size_before_publish {
            self.rtmp_max_chunk_size_before_publish = v;
        }
        if let Some(v) = f.rtmp_max_message {
            self.rtmp_max_message = v;
        }
        if let Some(v) = &f.origin {
            self.origin = v.iter().filter(|u| !u.is_empty()).cloned().collect();
        }
        if let Some(v) = f.edge_linger {
            self.edge_linger = v;
        }
        if let Some(v) = &f.data_dir {
            self.data_dir = v.clone();
        }
        if let Some(v) = f.api {
            self.api = v;
        }
        if let Some(v) = f.api_https {
            self.api_https = v;
        }
        if let Some(v) = f.node_id {
            self.node_id = v;
        }
        if let Some(v) = &f.jwt_issuer {
            self.jwt_issuer = Some(v.clone()).filter(|v| !v.is_empty());
        }
        if let Some(v) = &f.jwt_audience {
            self.jwt_audience = Some(v.clone()).filter(|v| !v.is_empty());
        }
        if let Some(v) = &f.api_cors_origins {
            self.api_cors_origins = list(&v.join(","));
        }
        if let Some(v) = f.api_header_timeout {
            self.api_header_timeout = v;
        }
        if let Some(v) = f.api_idle_timeout {
            self.api_idle_timeout = v;
        }
        if let Some(v) = &f.media_api_cors {
            self.media_api_cors = list(&v.join(","));
        }
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        if f.kafka_brokers.is_some() {
            self.kafka_brokers = set(&f.kafka_brokers);
        }
        if f.scylla_uri.is_some() {
            self.scylla_uri = set(&f.scylla_uri);
        }
        if f.neo4j_uri.is_some() {
            self.neo4j_uri = set(&f.neo4j_uri);
        }
        if f.redis_url.is_some() {
            self.redis_url = set(&f.redis_url);
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(50..=5000).contains(&self.part_target) {
            return Err(ConfigError::Invalid(
                "part-target must be between 50 and 5000 ms".into(),
            ));
        }
        if self.segment_target < 2 * self.part_target || self.segment_target > 60_000 {
            return Err(ConfigError::Invalid(
                "segment-target must be at least two part targets and at most 60000 ms".into(),
            ));
        }
        if self.node_id >= 1024 {
            return Err(ConfigError::Invalid("node-id must be below 1024".into()));
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::Invalid(
                "jwt-secret must be at least 16 bytes".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "max-connections must be at least 1".into(),
            ));
        }
        if self.rtmp_publish_timeout < 100 || self.http_head_timeout < 100 {
            return Err(ConfigError::Invalid(
                "rtmp-publish-timeout and http-head-timeout must be at least 100 ms".into(),
            ));
        }
        if self.max_streams == 0 {
            return Err(ConfigError::Invalid(
                "max-streams must be at least 1".into(),
            ));
        }
        if !(4096..=MAX_RTMP_MESSAGE).contains(&self.rtmp_max_message_before_publish)
            || !(128..=MAX_RTMP_MESSAGE).contains(&self.rtmp_max_chunk_size_before_publish)
            || !(65_536..=MAX_RTMP_MESSAGE).contains(&self.rtmp_max_message)
        {
            return Err(ConfigError::Invalid(format!(
                "rtmp-max-message-before-publish must be 4096 to {MAX_RTMP_MESSAGE} bytes, \
                 rtmp-max-chunk-size-before-publish 128 to {MAX_RTMP_MESSAGE}, \
                 rtmp-max-message 65536 to {MAX_RTMP_MESSAGE}"
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls-cert and tls-key go together: set both or neither".into(),
            ));
        }
        if self.api_header_timeout < 100 {
            return Err(ConfigError::Invalid(
                "api-header-timeout must be at least 100 ms".into(),
            ));
        }
        if self.api_idle_timeout <= 20_000 {
            return Err(ConfigError::Invalid(
                "api-idle-timeout must exceed the 20000 ms WebSocket ping interval".into(),
            ));
        }
        if self.api_max_connections == 0 {
            return Err(ConfigError::Invalid(
                "api-max-connections must be at least 1".into(),
            ));
        }
        if self.ws_max_sockets_per_user == 0 || self.ws_max_subscriptions == 0 {
            return Err(ConfigError::Invalid(
                "ws-max-sockets-per-user and ws-max-subscriptions must be at least 1".into(),
            ));
        }
        if !(1..=1000).contains(&self.chat_history) {
            return Err(ConfigError::Invalid(
                "chat-history must be 1 to 1000 messages".into(),
            ));
        }
        for o in self.api_cors_origins.iter().chain(&self.media_api_cors) {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "CORS origin {o:?} must be `*` or scheme://host[:port]"
                )));
            }
        }
        if let Some(u) = &self.pages_api_url {
            let authority = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"));
            if !authority.is_some_and(crate::http::request::valid_authority) {
                return Err(ConfigError::Invalid(format!(
                    "pages-api-url {u:?} must be http(s)://host[:port], without a path"
                )));
            }
        }
        if self.playlist_window < 3 {
            return Err(ConfigError::Invalid(
                "playlist-window must be at least 3".into(),
            ));
        }
        if self.edge_linger < 1000 {
            return Err(ConfigError::Invalid(
                "edge-linger must be at least 1000 ms".into(),
            ));
        }
        for n in &self.publish_trusted_nets {
            n.parse::<Net>()
                .map_err(|e| ConfigError::Invalid(format!("publish-trusted-nets: {e}")))?;
        }
        if self.publish_auth == PublishMode::Webhook && self.publish_webhook.is_none() {
            return Err(ConfigError::Invalid(
                "publish-auth = \"webhook\" needs publish-webhook (an http:// URL)".into(),
            ));
        }
        if !(100..=60_000).contains(&self.webhook_timeout) {
            return Err(ConfigError::Invalid(
                "webhook-timeout must be between 100 and 60000 ms".into(),
            ));
        }
        if self.max_streams_per_user == 0 {
            return Err(ConfigError::Invalid(
                "max-streams-per-user must be at least 1".into(),
            ));
        }
        if self.store_cache_mib == 0
            || self.store_write_buffer_mib == 0
            || self.graph_cache_mib == 0
        {
            return Err(ConfigError::Invalid(
                "store-cache-mib, store-write-buffer-mib and graph-cache-mib must be at least 1"
                    .into(),
            ));
        }
        if self.store_journal_mib < 64 {
            return Err(ConfigError::Invalid(
                "store-journal-mib must be at least 64".into(),
            ));
        }
        for (key, mib) in [
            ("store-cache-mib", self.store_cache_mib),
            ("store-write-buffer-mib", self.store_write_buffer_mib),
            ("store-journal-mib", self.store_journal_mib),
            ("graph-cache-mib", self.graph_cache_mib),
        ] {
            if mib > MAX_MIB {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be at most {MAX_MIB}"
                )));
            }
        }
        Ok(())
    }

    /// The publish policy; resolves the webhook hosts (once, here).
    pub fn publish_policy(&self) -> Result<PublishAuth, ConfigError> {
        let timeout = std::time::Duration::from_millis(self.webhook_timeout);
        let hook = |u: &Option<String>, key: &str| {
            u.as_deref()
                .map(|u| Webhook::parse(u, timeout))
                .transpose()
                .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))
        };
        let trusted = self
            .publish_trusted_nets
            .iter()
            .map(|n| n.parse::<Net>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Invalid(format!("publish-trusted-nets: {e}")))?;
        Ok(PublishAuth::new(
            self.publish_auth,
            trusted,
            hook(&self.publish_webhook, "publish-webhook")?,
            hook(&self.unpublish_webhook, "unpublish-webhook")?,
            self.node_id,
        ))
    }

    /// The `origin` URLs (edge mode; empty for an origin node), their hosts resolved (once,
    /// here).
    pub fn origins(&self) -> Result<Vec<crate::url::HttpUrl>, ConfigError> {
        self.origin
            .iter()
            .map(|o| crate::url::HttpUrl::parse(o, "origin"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Invalid(format!("origin: {e}")))
    }

    /// Worker count with 0 resolved to the number of cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The certificate and key files, when TLS is configured.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }

    /// The RTMP session's limits.
    pub fn rtmp_limits(&self) -> zerocast_ingest::SessionLimits {
        let mut l = zerocast_ingest::SessionLimits::default();
        l.max_message_before_publish = self.rtmp_max_message_before_publish;
        l.max_chunk_size_before_publish = self.rtmp_max_chunk_size_before_publish;
        l.max_message = self.rtmp_max_message;
        l
    }

    /// The packager's parameters.
    pub fn packager(&self) -> zerocast_packager::PackagerConfig {
        zerocast_packager::PackagerConfig {
            playlist: zerocast_packager::PlaylistConfig {
                part_target: self.part_target as f64 / 1000.0,
                segment_target: self.segment_target as f64 / 1000.0,
                window: self.playlist_window,
                part_segments: 4,
            },
        }
    }

    /// The social API's settings (reads or creates `data-dir/jwt-secret` when no secret is set).
    pub fn social_config(&self) -> Result<zerocast_social::SocialConfig, ConfigError> {
        let secret =
            match &self.jwt_secret {
                Some(s) => s.clone().into_bytes(),
                None => zerocast_social::config::secret_from_data_dir(&self.data_dir).map_err(
                    |source| ConfigError::Read {
                        path: self.data_dir.join("jwt-secret"),
                        source,
                    },
                )?,
            };
        Ok(self.social_config_with_secret(secret))
    }

    /// The social API's settings with this token secret.
    pub fn social_config_with_secret(&self, secret: Vec<u8>) -> zerocast_social::SocialConfig {
        let mut c = zerocast_social::SocialConfig::new(self.data_dir.clone(), secret);
        c.api = self.api;
        c.node = self.node_id;
        c.kafka_brokers = self.kafka_brokers.clone();
        c.kafka_topic = self.kafka_topic.clone();
        c.scylla_uri = self.scylla_uri.clone();
        c.scylla_replication = self.scylla_replication.clone();
        c.scylla_consistency = self.scylla_consistency.clone();
        c.redis_url = self.redis_url.clone();
        c.neo4j_uri = self.neo4j_uri.clone();
        c.neo4j_user = self.neo4j_user.clone();
        c.neo4j_password = self.neo4j_password.clone();
        c.neo4j_database = self.neo4j_database.clone();
        c.neo4j_timeout_ms = self.neo4j_timeout_ms;
        c.neo4j_max_connections = self.neo4j_max_connections;
        c.max_streams_per_user = self.max_streams_per_user;
        c.jwt_issuer = self.jwt_issuer.clone();
        c.jwt_audience = self.jwt_audience.clone();
        c.cors_origins = self.api_cors_origins.clone();
        c.header_read_timeout = Duration::from_millis(self.api_header_timeout);
        c.conn_idle_timeout = Duration::from_millis(self.api_idle_timeout);
        c.max_sockets_per_user = self.ws_max_sockets_per_user;
        c.max_connections = self.api_max_connections;
        c.max_connections_per_ip = self.api_max_connections_per_ip;
        c.max_subscriptions = self.ws_max_subscriptions;
        c.typing_interval = Duration::from_millis(self.ws_typing_interval);
        c.room_history = self.chat_history;
        c.store = zerocast_social::messaging::store::embedded::StoreLimits {
            cache: self.store_cache_mib << 20,
            write_buffer: self.store_write_buffer_mib << 20,
            journal: self.store_journal_mib << 20,
        };
        c.graph_cache_bytes = self.graph_cache_mib << 20;
        c
    }

    /// The effective configuration as TOML, for `zerocast config`, with secrets redacted: the
    /// token secret, the Neo4j password and any password inside a backend URI.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        let hide = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some(REDACTED.to_owned());
            }
        };
        hide(&mut shown.jwt_secret);
        hide(&mut shown.neo4j_password);
        for uri in [
            &mut shown.kafka_brokers,
            &mut shown.scylla_uri,
            &mut shown.redis_url,
            &mut shown.neo4j_uri,
        ]
        .into_iter()
        .flatten()
        {
            *uri = redact_uri(uri);
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Longest message an RTMP chunk header can declare.
const MAX_RTMP_MESSAGE: u32 = zerocast_ingest::chunk::MAX_MESSAGE_LEN;

/// Largest memory or disk bound in MiB a key takes (1 TiB: shifting it to bytes cannot
/// overflow).
const MAX_MIB: u64 = 1 << 20;
/// A comma-separated list, entries trimmed, empty ones dropped.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What `zerocast config` prints instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// `scheme://user:password@host...` with the password replaced by [`REDACTED`] (in each of a
/// comma-separated list); anything without userinfo is returned as it is.
fn redact_uri(uri: &str) -> String {
    uri.split(',')
        .map(|one| {
            let (scheme, rest) = match one.split_once("://") {
                Some((s, r)) => (Some(s), r),
                None => (None, one),
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let redacted = match rest[..authority_end].rfind('@') {
                Some(at) => {
                    let userinfo = &rest[..at];
                    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                    let hidden = if userinfo.contains(':') || scheme.is_none() {
                        format!("{user}:{REDACTED}")
                    } else {
                        // `redis://secret@host`: Redis reads a lone userinfo as the password.
                        REDACTED.to_owned()
                    };
                    format!("{hidden}{}", &rest[at..])
                }
                None => rest.to_owned(),
            };
            match scheme {
                Some(s) => format!("{s}://{redacted}"),
                None => redacted,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let mut c: Config = toml::from_str("part-target = 300\nworkers = 3\n").unwrap();
        assert_eq!(c.part_target, 300);
        c.apply_env(|k| (k == "ZEROCAST_WORKERS").then(|| "5".to_string()))
            .unwrap();
        assert_eq!(c.workers, 5);
        c.apply_flags(&Overrides {
            workers: Some(7),
            ..Overrides::default()
        });
        assert_eq!(c.workers, 7);
        assert_eq!(c.part_target, 300);
    }

    #[test]
    fn metrics_max_streams_from_file_env_and_flag() {
        assert_eq!(Config::default().metrics_max_streams, 1000);
        let mut c: Config = toml::from_str("metrics-max-streams = 5\n").unwrap();
        assert_eq!(c.metrics_max_streams, 5);
        c.apply_env(|k| (k == "ZEROCAST_METRICS_MAX_STREAMS").then(|| "6".to_string()))
            .unwrap();
        assert_eq!(c.metrics_max_streams, 6);
        c.apply_flags(&Overrides {
            metrics_max_streams: Some(7),
            ..Overrides::default()
        });
        assert_eq!(c.metrics_max_streams, 7);
        assert!(c.to_toml().contains("metrics-max-streams = 7"));
    }

    #[test]
    fn tls_keys_from_file_env_and_flags() {
        let mut c: Config = toml::from_str(
            "tls-cert = \"/etc/zc/cert.pem\"\ntls-key = \"/etc/zc/key.pem\"\nhttps = \"0.0.0.0:443\"\n",
        )
        .unwrap();
        assert_eq!(
            c.tls_files(),
            Some((Path::new("/etc/zc/cert.pem"), Path::new("/etc/zc/key.pem")))
        );
        c.apply_env(|k| match k {
            "ZEROCAST_RTMPS" => Some("127.0.0.1:1937".into()),
            "ZEROCAST_API_HTTPS" => Some("127.0.0.1:8444".into()),
            "ZEROCAST_TLS_CERT" => Some("/run/cert.pem".into()),
            _ => None,
        })
        .unwrap();
        c.apply_flags(&Overrides {
            https: Some(([127, 0, 0, 1], 9443).into()),
            tls_key: Some("/run/key.pem".into()),
            ..Overrides::default()
        });
        assert_eq!(c.https.port(), 9443);
        assert_eq!(c.rtmps.port(), 1937);
        assert_eq!(c.api_https.port(), 8444);
        assert_eq!(
            c.tls_files(),
            Some((Path::new("/run/cert.pem"), Path::new("/run/key.pem")))
        );
        c.validate().unwrap();
        // The certificate without its key (an empty variable unsets a key) is refused.
        c.apply_env(|k| (k == "ZEROCAST_TLS_KEY").then(String::new))
            .unwrap();
        assert!(c.tls_files().is_none());
        assert!(c.validate().is_err());
        // Plain delivery stays the default.
        assert!(Config::default().tls_files().is_none());
    }

    #[test]
    fn limit_keys_from_file_env_and_flags() {
        let d = Config::default();
        assert_eq!(
            (
                d.max_connections,
                d.rtmp_publish_timeout,
                d.http_head_timeout
            ),
            (10_000, 10_000, 10_000)
        );
        let mut c: Config =
            toml::from_str("max-connections = 50\nhttp-head-timeout = 2000\n").unwrap();
        c.apply_env(|k| (k == "ZEROCAST_RTMP_PUBLISH_TIMEOUT").then(|| "3000".into()))
            .unwrap();
        c.apply_flags(&Overrides {
            max_connections: Some(70),
            ..Overrides::default()
        });
        assert_eq!(
            (
                c.max_connections,
                c.rtmp_publish_timeout,
                c.http_head_timeout
            ),
            (70, 3000, 2000)
        );
        c.validate().unwrap();
        c.http_head_timeout = 5;
        assert!(c.validate().is_err());
        c.http_head_timeout = 2000;
        c.max_connections = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn abuse_limit_keys_from_file_env_and_flags() {
        let d = Config::default();
        assert_eq!((d.max_connections_per_ip, d.max_streams), (256, 1000));
        assert_eq!(
            (
                d.rtmp_max_message_before_publish,
                d.rtmp_max_chunk_size_before_publish,
                d.rtmp_max_message
            ),
            (65_536, 65_536, 16_777_215)
        );
        let mut c: Config = toml::from_str(
            "max-connections-per-ip = 0\nmax-streams = 20\nrtmp-max-message = 2000000\n",
        )
        .unwrap();
        c.apply_env(|k| match k {
            "ZEROCAST_MAX_STREAMS" => Some("30".into()),
            "ZEROCAST_RTMP_MAX_CHUNK_SIZE_BEFORE_PUBLISH" => Some("4096".into()),
            _ => None,
        })
        .unwrap();
        c.apply_flags(&Overrides {
            max_connections_per_ip: Some(64),
            rtmp_max_message_before_publish: Some(8192),
            ..Overrides::default()
        });
        assert_eq!((c.max_connections_per_ip, c.max_streams), (64, 30));
        c.validate().unwrap();
        let l = c.rtmp_limits();
        assert_eq!(
            (
                l.max_message_before_publish,
                l.max_chunk_size_before_publish,
                l.max_message
            ),
            (8192, 4096, 2_000_000)
        );
        let text = c.to_toml();
        assert!(text.contains("max-connections-per-ip = 64"), "{text}");
        assert!(
            text.contains("rtmp-max-message-before-publish = 8192"),
            "{text}"
        );
        for bad in [
            "max-streams = 0",
            "rtmp-max-message-before-publish = 100",
            "rtmp-max-message = 16777216",
            "rtmp-max-chunk-size-before-publish = 64",
        ] {
            let c: Config = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn social_hardening_keys_from_file_env_and_flags() {
        let d = Config::default();
        assert!(d.api_cors_origins.is_empty() && d.media_api_cors.is_empty());
        assert_eq!(
            (
                d.api_header_timeout,
                d.api_idle_timeout,
                d.ws_max_sockets_per_user
            ),
            (10_000, 40_000, 8)
        );
        let mut c: Config = toml::from_str(
            "jwt-issuer = \"https://id.example\"\napi-cors-origins = [\"https://a.example\"]\n\
             api-header-timeout = 500\nws-max-subscriptions = 4\nmedia-api-cors = [\"*\"]\n",
        )
        .unwrap();
        c.apply_env(|k| match k {
            "ZEROCAST_JWT_AUDIENCE" => Some("zerocast".into()),
            "ZEROCAST_API_CORS_ORIGINS" => Some("https://a.example, https://b.example".into()),
            "ZEROCAST_API_IDLE_TIMEOUT" => Some("60000".into()),
            "ZEROCAST_WS_TYPING_INTERVAL" => Some("250".into()),
            "ZEROCAST_WS_MAX_SOCKETS_PER_USER" => Some("3".into()),
            "ZEROCAST_CHAT_HISTORY" => Some("50".into()),
            _ => None,
        })
        .unwrap();
        c.apply_flags(&Overrides {
            api_header_timeout: Some(700),
            media_api_cors: Some(vec!["https://dash.example".into()]),
            jwt_issuer: Some(String::new()),
            ..Overrides::default()
        });
        c.validate().unwrap();
        assert_eq!(c.jwt_issuer, None, "an empty flag unsets the key");
        assert_eq!(c.media_api_cors, ["https://dash.example"]);
        let s = c.social_config_with_secret(b"0123456789abcdef".to_vec());
        assert_eq!(s.jwt_audience.as_deref(), Some("zerocast"));
        assert_eq!(s.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(s.header_read_timeout, Duration::from_millis(700));
        assert_eq!(s.conn_idle_timeout, Duration::from_secs(60));
        assert_eq!(s.typing_interval, Duration::from_millis(250));
        assert_eq!((s.max_sockets_per_user, s.max_subscriptions), (3, 4));
        assert_eq!((d.chat_history, s.room_history), (200, 50));
        // The printed config round-trips the lists.
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        // An empty variable empties a list; nonsense is refused.
        c.apply_env(|k| (k == "ZEROCAST_API_CORS_ORIGINS").then(String::new))
            .unwrap();
        assert!(c.api_cors_origins.is_empty());
        for bad in [
            "api-idle-timeout = 5000",
            "api-header-timeout = 10",
            "ws-max-subscriptions = 0",
            "chat-history = 0",
            "chat-history = 1001",
            "api-cors-origins = [\"app.example\"]",
        ] {
            let c: Config = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn store_and_cache_bounds_from_file_and_env() {
        let d = Config::default();
        let social = d.social_config_with_secret(b"0123456789abcdef".to_vec());
        assert_eq!(
            social.store,
            zerocast_social::messaging::store::embedded::StoreLimits::default()
        );
        assert_eq!(
            social.graph_cache_bytes,
            zerocast_social::graph::cache::DEFAULT_CAPACITY
        );
        let mut c: Config = toml::from_str(
            "store-cache-mib = 8
store-journal-mib = 96
graph-cache-mib = 16
",
        )
        .unwrap();
        c.apply_env(|k| (k == "ZEROCAST_STORE_WRITE_BUFFER_MIB").then(|| "4".into()))
            .unwrap();
        c.validate().unwrap();
        let social = c.social_config_with_secret(b"0123456789abcdef".to_vec());
        assert_eq!(
            (
                social.store.cache,
                social.store.write_buffer,
                social.store.journal
            ),
            (8 << 20, 4 << 20, 96 << 20)
        );
        assert_eq!(social.graph_cache_bytes, 16 << 20);
        assert!(c.to_toml().contains("store-write-buffer-mib = 4"));
        for bad in [
            "store-journal-mib = 63",
            "graph-cache-mib = 0",
            "store-cache-mib = 0",
            "store-write-buffer-mib = 2000000",
        ] {
            let c: Config = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        assert!(toml::from_str::<Config>("nope = 1").is_err());
        let mut c = Config::default();
        assert!(c
            .apply_env(|k| (k == "ZEROCAST_DRIVER").then(|| "kqueue".to_string()))
            .is_err());
        c.part_target = 10;
        assert!(c.validate().is_err());
    }

    #[test]
    fn pages_api_url_from_file_env_and_flags() {
        let mut c: Config =
            toml::from_str("pages-api-url = \"https://api.example.com\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.pages_api_url.as_deref(), Some("https://api.example.com"));
        c.apply_env(|k| (k == "ZEROCAST_PAGES_API_URL").then(|| "http://10.0.0.7:8090".into()))
            .unwrap();
        assert_eq!(c.pages_api_url.as_deref(), Some("http://10.0.0.7:8090"));
        c.apply_flags(&Overrides {
            pages_api_url: Some("http://[::1]:8090".into()),
            ..Overrides::default()
        });
        c.validate().unwrap();
        // It goes into pages and their Content-Security-Policy header: a scheme and an
        // authority, nothing else.
        for bad in [
            "api.example.com",
            "ftp://api.example.com",
            "https://api.example.com/",
            "https://api.example.com/v1",
            "https://a.example; script-src *",
            "https://a\" onload=\"x",
            "https://",
        ] {
            c.pages_api_url = Some(bad.into());
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn backend_keys_from_file_env_and_flags() {
        let mut c: Config = toml::from_str(
            "neo4j-uri = \"bolt://graph:7687\"\nneo4j-user = \"app\"\nneo4j-timeout-ms = 500\n\
             scylla-uri = \"scylla1:9042\"\nscylla-consistency = \"local_quorum\"\n",
        )
        .unwrap();
        c.apply_env(|k| match k {
            "ZEROCAST_NEO4J_PASSWORD" => Some("hunter2".into()),
            "ZEROCAST_NEO4J_MAX_CONNECTIONS" => Some("32".into()),
            "ZEROCAST_SCYLLA_URI" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        c.apply_flags(&Overrides {
            redis_url: Some("redis://cache:6379/".into()),
            ..Overrides::default()
        });
        assert!(c
            .clone()
            .apply_env(|k| (k == "ZEROCAST_NEO4J_TIMEOUT_MS").then(|| "soon".into()))
            .is_err());
        let s = c.social_config_with_secret(b"0123456789abcdef".to_vec());
        assert_eq!(s.neo4j_uri.as_deref(), Some("bolt://graph:7687"));
        assert_eq!(s.neo4j_user.as_deref(), Some("app"));
        assert_eq!(s.neo4j_password.as_deref(), Some("hunter2"));
        assert_eq!(s.neo4j_timeout_ms, Some(500));
        assert_eq!(s.neo4j_max_connections, Some(32));
        assert_eq!(s.scylla_uri, None, "an empty variable unsets the key");
        assert_eq!(s.scylla_consistency.as_deref(), Some("local_quorum"));
        assert_eq!(s.redis_url.as_deref(), Some("redis://cache:6379/"));
    }

    #[test]
    fn printed_config_hides_secrets() {
        let c = Config {
            jwt_secret: Some("a-very-secret-token-key".into()),
            neo4j_password: Some("hunter2".into()),
            redis_url: Some("redis://:pa55@cache:6379/0".into()),
            scylla_uri: Some("scylla://app:pw@db1:9042,db2:9042".into()),
            kafka_brokers: Some("k1:9092,k2:9092".into()),
            ..Config::default()
        };
        let text = c.to_toml();
        for secret in ["a-very-secret-token-key", "hunter2", "pa55", "pw@"] {
            assert!(!text.contains(secret), "{secret} shown in:\n{text}");
        }
        assert!(text.contains("redis://:<redacted>@cache:6379/0"), "{text}");
        assert!(
            text.contains("scylla://app:<redacted>@db1:9042,db2:9042"),
            "{text}"
        );
        assert!(text.contains("k1:9092,k2:9092"), "{text}");
        assert_eq!(
            redact_uri("redis://secret@host/"),
            "redis://<redacted>@host/"
        );
        assert_eq!(redact_uri("bolt://graph:7687"), "bolt://graph:7687");
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::default();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }
}
