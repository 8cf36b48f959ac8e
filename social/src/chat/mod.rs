//! Live-stream chat: one room per reserved or live stream name ([`rooms`]), its durable history
//! ([`store`]), and the service that posts to a room and applies its rules ([`service`]).
//!
//! Owns: room history and slow-mode records (durable in the [`store::ChatStore`], shared by every
//! instance) and this instance's cache of each room's rules. The rules themselves
//! (owner, moderators, slow mode, bans and timeouts) are the channel's, durable in the channel
//! store ([`crate::channels`]). Calls: [`crate::limits`] (rate and size), [`crate::events`] (a
//! posted message, and a change of rules, go to every instance over the bus),
//! [`crate::channels`]. Knows nothing of HTTP or WebSocket.

pub mod rooms;
pub mod service;
pub mod store;

pub use rooms::{ChatError, ChatMessage, RoomSettings, Rooms};
pub use service::{Accepted, Chat, PostError};
pub use store::ChatStore;
