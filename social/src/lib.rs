//! # zerocast-social: direct messages, live-stream chat, and the follow graph
//!
//! The social plane of zerocast, on tokio and axum. It uses no media crate.
//!
//! ```text
//! client ─REST/WebSocket─► api ─► messaging::Messaging::send ─► MessageStore::append
//!                                                          (durable, + outbox record)
//!                                                                      │
//!                               events::relay ◄────────────────────────┘ (in order, acked
//!                                      │                                  after publish)
//!                                      ▼
//!                               EventBus (in-process, or Kafka keyed by conversation)
//!                                      │ every instance consumes
//!                                      ▼
//!                          realtime::fanout: push to each connected socket concerned
//! ```
//!
//! Organised by feature; the API depends on the domain, never the reverse:
//!
//! | module | owns | may call |
//! | --- | --- | --- |
//! | [`api`] | routes, errors, extractors, WebSocket protocol, `/metrics` | every feature below |
//! | [`messaging`] | direct messages, read markers, unread counts, their stores | [`limits`] |
//! | [`channels`] | stream names owned by users: publish keys, playback tokens, room rules (owner, moderators, slow mode, bans) | — |
//! | [`chat`] | live-chat rooms: durable history, slow-mode records and client ids in their store, posting under the channel's rules | [`limits`], [`events`], [`channels`], [`messaging`] (the embedded and ScyllaDB stores it shares) |
//! | [`graph`] | profiles, follows, recommendations, the follower cache | — |
//! | [`events`] | the bus between instances, the outbox relay | [`messaging`] (model, outbox) |
//! | [`realtime`] | this instance's sockets and the fan-out to them | [`events`], [`chat`] |
//! | [`backends`] | opening the configured engine of each role | the stores, caches and buses |
//!
//! Every role has an embedded default so `zerocast serve` needs nothing installed: an LSM store
//! (fjall) with group-committed fsync, an in-process event bus and an in-process follower
//! cache. The scale-out engines are cargo features, all on by default: `scylla` (messages, channels, chat),
//! `kafka` (events; builds librdkafka from C), `neo4j` (graph), `redis` (follower cache). The
//! `testing` feature compiles the conformance suites each backend must pass (tests only).
//! Identity is a bearer JWT (HS256) whose `sub` is the user id.

pub mod api;
pub mod auth;
pub mod backends;
pub mod channels;
pub mod chat;
pub mod config;
pub mod events;
pub mod graph;
pub mod id;
pub mod limits;
pub mod messaging;
pub mod realtime;

pub use api::{serve, SocialServer};
pub use config::SocialConfig;

/// Wall-clock now, Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
