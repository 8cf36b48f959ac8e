//! Live-stream chat rooms: one per stream name, kept in this instance's memory.
//!
//! A room keeps its last messages (sent on join), its owner (the first user to claim it), slow
//! mode (one message per N seconds per user) and bans/timeouts set by the owner.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::id::{MessageId, UserId};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Time-ordered id.
    pub id: MessageId,
    /// The room (stream name).
    pub room: String,
    /// Sender.
    pub from: UserId,
    /// Text.
    pub content: String,
    /// Sent at, Unix ms.
    pub at: u64,
}

/// Why a chat message or a moderation action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// Slow mode: wait this many ms.
    #[error("slow mode: wait {0} ms")]
    SlowMode(u64),
    /// Banned (until Unix ms, or for good).
    #[error("banned from this room")]
    Banned(Option<u64>),
    /// Only the room owner may do this.
    #[error("only the room owner may do this")]
    NotOwner,
    /// Room names are stream names: 1-128 of `[A-Za-z0-9_.-]`.
    #[error("invalid room name")]
    BadName,
    /// Slow mode is at most [`MAX_SLOW_MODE_SECS`].
    #[error("slow mode is at most {MAX_SLOW_MODE_SECS} seconds")]
    BadSlowMode,
}

/// The longest slow mode an owner may set.
pub const MAX_SLOW_MODE_SECS: u64 = 3600;

/// Room settings, as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RoomSettings {
    /// The owner, once claimed.
    pub owner: Option<UserId>,
    /// Seconds between two messages of one user (0 = off).
    pub slow_mode_secs: u64,
}

#[derive(Debug, Default)]
struct Room {
    history: VecDeque<ChatMessage>,
    settings: RoomSettings,
    bans: HashMap<UserId, Option<u64>>,
    last_post: HashMap<UserId, u64>,
}

/// Every room of this instance.
#[derive(Debug)]
pub struct Rooms {
    keep: usize,
    rooms: Mutex<HashMap<String, Room>>,
}

/// Room names are stream names.
pub fn valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Rooms {
    /// Rooms keeping their last `keep` messages.
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, room: &str, f: impl FnOnce(&mut Room) -> R) -> Result<R, ChatError> {
        if !valid_room(room) {
            return Err(ChatError::BadName);
        }
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(rooms.entry(room.to_owned()).or_default()))
    }

    /// Checks that `from` may post now (bans, slow mode) and records the attempt.
    pub fn admit(&self, room: &str, from: UserId, now: u64) -> Result<(), ChatError> {
        self.with(room, |r| {
            if let Some(until) = r.bans.get(&from).copied() {
                match until {
                    Some(t) if t <= now => {
                        r.bans.remove(&from);
                    }
                    _ => return Err(ChatError::Banned(until)),
                }
            }
            let slow = r.settings.slow_mode_secs * 1000;
            if slow > 0 && r.settings.owner != Some(from) {
                if let Some(&last) = r.last_post.get(&from) {
                    if now < last + slow {
                        return Err(ChatError::SlowMode(last + slow - now));
                    }
                }
            }
            r.last_post.insert(from, now);
            Ok(())
        })?
    }

    /// Adds a message to the room's history (every instance does this for every message).
    pub fn record(&self, msg: &ChatMessage) {
        let keep = self.keep;
        let _ = self.with(&msg.room, |r| {
            if r.history.iter().any(|m| m.id == msg.id) {
                return;
            }
            r.history.push_back(msg.clone());
            while r.history.len() > keep {
                r.history.pop_front();
            }
        });
    }

    /// The last messages, oldest first.
    pub fn history(&self, room: &str) -> Result<Vec<ChatMessage>, ChatError> {
        self.with(room, |r| r.history.iter().cloned().collect())
    }

    /// Claims an unowned room for `user`; returns the settings in force.
    pub fn claim(&self, room: &str, user: UserId) -> Result<RoomSettings, ChatError> {
        self.with(room, |r| {
            match r.settings.owner {
                None => r.settings.owner = Some(user),
                Some(o) if o == user => {}
                Some(_) => return Err(ChatError::NotOwner),
            }
            Ok(r.settings.clone())
        })?
    }

    /// The room's settings.
    pub fn settings(&self, room: &str) -> Result<RoomSettings, ChatError> {
        self.with(room, |r| r.settings.clone())
    }

    /// Sets slow mode (owner only).
    pub fn set_slow_mode(
        &self,
        room: &str,
        by: UserId,
        secs: u64,
    ) -> Result<RoomSettings, ChatError> {
        if secs > MAX_SLOW_MODE_SECS {
            return Err(ChatError::BadSlowMode);
        }
        self.with(room, |r| {
            if r.settings.owner != Some(by) {
                return Err(ChatError::NotOwner);
            }
            r.settings.slow_mode_secs = secs;
            Ok(r.settings.clone())
        })?
    }

    /// Bans `user` until `until` (Unix ms) or for good (owner only); `None` duration lifts it.
    pub fn ban(
        &self,
        room: &str,
        by: UserId,
        user: UserId,
        until: Option<u64>,
    ) -> Result<(), ChatError> {
        self.with(room, |r| {
            if r.settings.owner != Some(by) {
                return Err(ChatError::NotOwner);
            }
            r.bans.insert(user, until);
            Ok(())
        })?
    }

    /// Lifts a ban (owner only).
    pub fn unban(&self, room: &str, by: UserId, user: UserId) -> Result<(), ChatError> {
        self.with(room, |r| {
            if r.settings.owner != Some(by) {
                return Err(ChatError::NotOwner);
            }
            r.bans.remove(&user);
            Ok(())
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u() -> UserId {
        UserId(uuid::Uuid::new_v4())
    }

    #[test]
    fn slow_mode_bans_and_history() {
        let rooms = Rooms::new(3);
        let (owner, viewer) = (u(), u());
        rooms.claim("demo", owner).unwrap();
        assert_eq!(rooms.claim("demo", viewer), Err(ChatError::NotOwner));
        assert_eq!(
            rooms.set_slow_mode("demo", viewer, 5),
            Err(ChatError::NotOwner)
        );
        rooms.set_slow_mode("demo", owner, 5).unwrap();
        assert!(rooms.admit("demo", viewer, 1000).is_ok());
        assert_eq!(
            rooms.admit("demo", viewer, 2000),
            Err(ChatError::SlowMode(4000))
        );
        assert!(rooms.admit("demo", viewer, 6000).is_ok());
        rooms.ban("demo", owner, viewer, Some(10_000)).unwrap();
        assert!(matches!(
            rooms.admit("demo", viewer, 9000),
            Err(ChatError::Banned(_))
        ));
        assert!(rooms.admit("demo", viewer, 20_000).is_ok());
        assert_eq!(
            rooms.set_slow_mode("demo", owner, MAX_SLOW_MODE_SECS + 1),
            Err(ChatError::BadSlowMode)
        );
        for i in 0..5 {
            rooms.record(&ChatMessage {
                id: MessageId(i),
                room: "demo".into(),
                from: owner,
                content: format!("{i}"),
                at: i,
            });
        }
        let h = rooms.history("demo").unwrap();
        assert_eq!(h.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(rooms.history("bad name"), Err(ChatError::BadName));
    }
}
