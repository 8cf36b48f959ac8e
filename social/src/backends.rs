//! Opening the configured backends of each role: the embedded defaults, or the scale-out
//! engines a configuration names (each behind its cargo feature).

use std::sync::Arc;

use crate::channels::ChannelStore;
use crate::chat::ChatStore;
use crate::config::SocialConfig;
use crate::events::bus::{EventBus, InProcessBus};
use crate::graph::cache::local::{LocalCache, LocalConfig};
use crate::graph::cache::{CachedGraph, FollowerCache};
use crate::graph::GraphStore;
use crate::messaging::store::embedded::EmbeddedStore;
use crate::messaging::store::{Outbox, Store};

/// The backends of one instance.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Messages and their outbox.
    pub store: Arc<dyn Store>,
    /// Stream names owned by users, and their chat rooms' rules (same engine as `store`).
    pub channels: Arc<dyn ChannelStore>,
    /// Chat history and slow-mode records (same engine as `store`).
    pub chat: Arc<dyn ChatStore>,
    /// Events between instances.
    pub bus: Arc<dyn EventBus>,
    /// The follow graph, already wrapped in its cache.
    pub graph: Arc<dyn GraphStore>,
    /// That cache.
    pub cache: Arc<dyn FollowerCache>,
    /// The outbox the graph writes its follow and unfollow events to, when it is not
    /// `store`'s: the embedded graph beside ScyllaDB messages, or Neo4j (its outbox nodes, see
    /// `graph::store::neo4j`). `None` when the graph's events go to `store`'s outbox (both
    /// embedded, one store). A relay runs for each outbox.
    pub graph_outbox: Option<Arc<dyn Outbox>>,
}

impl Backends {
    /// The embedded defaults over one embedded store: messages and graph in `store`, the
    /// in-process bus, an in-process follower cache.
    pub fn embedded(store: EmbeddedStore) -> Self {
        let graph: Arc<dyn GraphStore> = Arc::new(store.clone());
        let cache: Arc<dyn FollowerCache> = Arc::new(LocalCache::new(LocalConfig::default()));
        Self {
            channels: Arc::new(store.clone()),
            chat: Arc::new(store.clone()),
            store: Arc::new(store),
            bus: Arc::new(InProcessBus::default()),
            graph: Arc::new(CachedGraph::new(graph, cache.clone())),
            cache,
            graph_outbox: None,
        }
    }
}

/// Opens the configured backends: ScyllaDB when `scylla_uri` is set, else the embedded store
/// under `data_dir/messages` (which also holds the follow graph unless `neo4j_uri` selects
/// Neo4j); Kafka when `kafka_brokers` is set, else the in-process bus; Redis for the follower
/// cache when `redis_url` is set, else an in-process cache. A scale-out backend this build was
/// compiled without (its cargo feature off) is an error naming the feature.
pub async fn open_backends(config: &SocialConfig) -> std::io::Result<Backends> {
    let dir = config.data_dir.join("messages");
    // Opened once, and only if a role uses it (messages or the graph).
    let mut embedded: Option<EmbeddedStore> = None;
    let mut open_embedded = || -> std::io::Result<EmbeddedStore> {
        if let Some(e) = &embedded {
            return Ok(e.clone());
        }
        let e = EmbeddedStore::open_with(&dir, config.node, config.store)
            .map_err(|e| refused(&dir, &e))?;
        embedded = Some(e.clone());
        Ok(e)
    };
    let (store, channels, chat): StoreRoles = match set(&config.scylla_uri) {
        Some(uri) => scylla(config, uri).await?,
        None => {
            tracing::info!(dir = %dir.display(), "message store: embedded");
            let e = open_embedded()?;
            (Arc::new(e.clone()), Arc::new(e.clone()), Arc::new(e))
        }
    };
    let bus: Arc<dyn EventBus> = match set(&config.kafka_brokers) {
        Some(brokers) => kafka(config, brokers).await?,
        None => Arc::new(InProcessBus::default()),
    };
    let messages_embedded = set(&config.scylla_uri).is_none();
    let (graph, graph_outbox): (Arc<dyn GraphStore>, Option<Arc<dyn Outbox>>) =
        match set(&config.neo4j_uri) {
            Some(_) => neo4j(config).await?,
            None => {
                let e = open_embedded()?;
                // Beside ScyllaDB messages, the embedded store's outbox holds only the graph's
                // events and needs a relay of its own.
                let own: Option<Arc<dyn Outbox>> = if messages_embedded {
                    None
                } else {
                    Some(Arc::new(e.clone()))
                };
                (Arc::new(e), own)
            }
        };
    let cache: Arc<dyn FollowerCache> = match set(&config.redis_url) {
        Some(url) => redis(url, config.graph_cache_bytes).await?,
        None => Arc::new(LocalCache::new(LocalConfig {
            capacity: config.graph_cache_bytes,
            ..LocalConfig::default()
        })),
    };
    Ok(Backends {
        store,
        channels,
        chat,
        bus,
        graph: Arc::new(CachedGraph::new(graph, cache.clone())),
        cache,
        graph_outbox,
    })
}

/// The roles one storage engine plays: messages, channels, chat.
type StoreRoles = (Arc<dyn Store>, Arc<dyn ChannelStore>, Arc<dyn ChatStore>);

/// A setting that is present and not blank.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn io(e: &dyn std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The error of an embedded store that will not open: the directory, the cause, and what an
/// operator can do about it (one line, for one log line).
fn refused(dir: &std::path::Path, e: &dyn std::fmt::Display) -> std::io::Error {
    let d = dir.display();
    io(&format!(
        "the embedded store in {d} does not open ({e}). Recovery: if another zerocast process \
         uses this data directory (it holds {d}/lock), stop it or give this one another \
         --data-dir; if the store is damaged, move it aside (mv {d} {d}.broken) to start with \
         an empty store, or restore {d} from a backup taken while the server was stopped"
    ))
}

#[cfg(not(all(
    feature = "scylla",
    feature = "kafka",
    feature = "neo4j",
    feature = "redis"
)))]
fn not_built(role: &str, feature: &str) -> std::io::Error {
    io(&format!(
        "{role} is configured, but this build has no `{feature}` feature (rebuild with --features {feature})"
    ))
}

#[cfg(feature = "scylla")]
async fn scylla(config: &SocialConfig, uri: &str) -> std::io::Result<StoreRoles> {
    use crate::channels::store::scylla::ScyllaChannels;
    use crate::messaging::store::scylla::{
        ScyllaOptions, ScyllaStore, ScyllaUri, DEFAULT_KEYSPACE,
    };
    let uri = ScyllaUri::parse(uri).map_err(|e| io(&e))?;
    let opts = ScyllaOptions::from_lookup(|k| match k {
        "ZEROCAST_SCYLLA_REPLICATION" => config.scylla_replication.clone(),
        "ZEROCAST_SCYLLA_CONSISTENCY" => config.scylla_consistency.clone(),
        _ => None,
    })
    .map_err(|e| io(&e))?;
    let s = ScyllaStore::connect_with(&uri, DEFAULT_KEYSPACE, config.node, opts)
        .await
        .map_err(|e| io(&e))?;
    let channels = ScyllaChannels::new(&s).await.map_err(|e| io(&e))?;
    let chat = crate::chat::store::scylla::ScyllaChat::new(&s)
        .await
        .map_err(|e| io(&e))?;
    tracing::info!("message store: ScyllaDB");
    Ok((Arc::new(s), Arc::new(channels), Arc::new(chat)))
}

#[cfg(not(feature = "scylla"))]
async fn scylla(_: &SocialConfig, _: &str) -> std::io::Result<StoreRoles> {
    Err(not_built("scylla-uri (ScyllaDB)", "scylla"))
}

#[cfg(feature = "kafka")]
async fn kafka(config: &SocialConfig, brokers: &str) -> std::io::Result<Arc<dyn EventBus>> {
    let group = format!("zerocast-{}-{}", config.node, uuid::Uuid::new_v4());
    let b = crate::events::kafka::KafkaBus::connect(brokers, &config.kafka_topic, &group)
        .await
        .map_err(|e| io(&e))?;
    tracing::info!(topic = %config.kafka_topic, "event bus: Kafka");
    Ok(Arc::new(b))
}

#[cfg(not(feature = "kafka"))]
async fn kafka(_: &SocialConfig, _: &str) -> std::io::Result<Arc<dyn EventBus>> {
    Err(not_built("kafka-brokers (Kafka)", "kafka"))
}

/// The graph and its own outbox.
type GraphRoles = (Arc<dyn GraphStore>, Option<Arc<dyn Outbox>>);

#[cfg(feature = "neo4j")]
async fn neo4j(config: &SocialConfig) -> std::io::Result<GraphRoles> {
    use crate::graph::store::neo4j::{Neo4jSettings, PASSWORD_ENV, URI_ENV, USER_ENV};
    let num = |v: Option<u64>| v.map(|n| n.to_string());
    let mut settings = Neo4jSettings::from_lookup(|k| match k {
        URI_ENV => config.neo4j_uri.clone(),
        USER_ENV => config.neo4j_user.clone(),
        PASSWORD_ENV => config.neo4j_password.clone(),
        "ZEROCAST_NEO4J_DATABASE" => config.neo4j_database.clone(),
        "ZEROCAST_NEO4J_TIMEOUT_MS" => num(config.neo4j_timeout_ms),
        "ZEROCAST_NEO4J_MAX_CONNECTIONS" => num(config.neo4j_max_connections),
        _ => None,
    })
    .map_err(|e| io(&e))?
    .ok_or_else(|| io(&"neo4j-uri is empty"))?;
    // Follow events go to this instance's outbox in Neo4j, which its own relay reads.
    settings.options.node = config.node;
    let g = settings.connect().await.map_err(|e| io(&e))?;
    tracing::info!(
        node = config.node,
        "follow graph: Neo4j, with its own event outbox"
    );
    Ok((Arc::new(g.clone()), Some(Arc::new(g))))
}

#[cfg(not(feature = "neo4j"))]
async fn neo4j(_: &SocialConfig) -> std::io::Result<GraphRoles> {
    Err(not_built("neo4j-uri (Neo4j)", "neo4j"))
}

#[cfg(feature = "redis")]
async fn redis(url: &str, near_bytes: u64) -> std::io::Result<Arc<dyn FollowerCache>> {
    use crate::graph::cache::redis::{RedisCache, RedisConfig};
    let cfg = RedisConfig {
        near_capacity: near_bytes,
        ..RedisConfig::default()
    };
    let c = RedisCache::connect(url, cfg).await.map_err(|e| io(&e))?;
    tracing::info!("follower cache: Redis with a near-cache");
    Ok(Arc::new(c))
}

#[cfg(not(feature = "redis"))]
async fn redis(_: &str, _: u64) -> std::io::Result<Arc<dyn FollowerCache>> {
    Err(not_built("redis-url (Redis)", "redis"))
}
