//! Direct messages: the values ([`model`]), their storage ([`store`]: embedded fjall, or
//! ScyllaDB), and the service that sends, edits, deletes and marks them read ([`service`]).
//!
//! Owns: conversations, messages, read markers, unread counts, the outbox of durable events.
//! Calls: [`crate::limits`]. Knows nothing of HTTP, WebSocket or the event bus (the outbox
//! relay in [`crate::events`] reads the store's outbox).

pub mod model;
pub mod service;
pub mod store;

pub use service::{Messaging, MessagingError};
