//! [`AppState`]: what every handler and socket of one instance shares.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::auth::Keys;
use crate::channels::Channels;
use crate::chat::service::Chat;
use crate::config::SocialConfig;
use crate::events::bus::EventBus;
use crate::graph::cache::FollowerCache;
use crate::graph::GraphStore;
use crate::messaging::service::Messaging;
use crate::messaging::store::Outbox;
use crate::realtime::Connections;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// Settings.
    pub config: SocialConfig,
    /// Token keys.
    pub keys: Keys,
    /// Direct messages.
    pub messaging: Messaging,
    /// Stream names owned by users (keys, privacy, room rules).
    pub channels: Channels,
    /// Live chat.
    pub chat: Chat,
    /// The follow graph (behind its cache).
    pub graph: Arc<dyn GraphStore>,
    /// The follower cache in front of `graph` (for its counters).
    pub cache: Arc<dyn FollowerCache>,
    /// Events between instances (typing notices go straight to it).
    pub bus: Arc<dyn EventBus>,
    /// The graph's own outbox, relayed apart from the messages' (see
    /// [`Backends::graph_outbox`](crate::backends::Backends::graph_outbox)).
    pub graph_outbox: Option<Arc<dyn Outbox>>,
    /// Wakes the relay of the outbox the graph writes to, after a follow or unfollow.
    pub graph_relay_wake: Arc<Notify>,
    /// This instance's sockets.
    pub conns: Connections,
    /// Stops background tasks and sockets.
    pub stop: Arc<Notify>,
}
