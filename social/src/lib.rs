//! # zerocast-social: direct messages and live-stream chat
//!
//! The social plane of zerocast, on tokio and axum. It uses no media crate.
//!
//! ```text
//! client ─REST/WebSocket─► server (axum) ─► MessageStore::append (durable, + outbox record)
//!                                                  │
//!                              outbox relay ◄──────┘ (in order, acked after publish)
//!                                   │
//!                                   ▼
//!                              EventBus (in-process, or Kafka keyed by conversation)
//!                                   │ every instance consumes
//!                                   ▼
//!                          hub: push to each connected device of the users concerned
//! ```
//!
//! Every role has an embedded default so `zerocast serve` needs nothing installed: an LSM store
//! (fjall) with group-committed fsync, and an in-process event bus. Identity is a bearer JWT
//! (HS256) whose `sub` is the user id.

pub mod auth;
pub mod bus;
pub mod cache;
pub mod chat;
pub mod config;
pub mod graph;
mod graph_api;
pub mod hub;
pub mod id;
pub mod kafka;
pub mod model;
pub mod openapi;
pub mod ratelimit;
pub mod server;
pub mod store;
mod ws;

pub use config::SocialConfig;
pub use server::{serve, SocialServer};

/// Wall-clock now, Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
