//! Live-stream chat: one room per stream name ([`rooms`]), and the service that posts to a
//! room and applies its rules ([`service`]).
//!
//! Owns: room history, owner, slow mode, bans and timeouts. Calls: [`crate::limits`] (rate and
//! size), [`crate::events`] (a posted message goes to every instance over the bus). Knows
//! nothing of HTTP or WebSocket.

pub mod rooms;
pub mod service;

pub use rooms::{valid_room, ChatError, ChatMessage, RoomSettings, Rooms};
pub use service::{Chat, PostError};
