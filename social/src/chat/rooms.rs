//! The values of live chat (a message, a room's rules) and this instance's cache of each room's
//! rules (owner, moderators, slow mode, bans), which live durably in the channel store.
//!
//! A room exists only for a stream name that is reserved (a channel) or live; cache entries are
//! created when rules are loaded, and an entry nobody used for [`IDLE_ROOM`] is dropped by
//! [`Rooms::sweep`]. History and slow-mode records are not here: they live in the chat store
//! ([`super::store`]), shared by every instance.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::channels::{Ban, Channel};
use crate::id::{MessageId, UserId};

/// Cached rules are reloaded after this long even without a change notice from the bus.
pub const RULES_TTL: Duration = Duration::from_secs(30);
/// A cached room entry unused this long is forgotten.
pub const IDLE_ROOM: Duration = Duration::from_secs(15 * 60);

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

/// Why a chat message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// Slow mode: wait this many ms.
    #[error("slow mode: wait {0} ms")]
    SlowMode(u64),
    /// Banned (until Unix ms, or for good).
    #[error("banned from this room")]
    Banned(Option<u64>),
    /// Room names are stream names: 1-128 of `[A-Za-z0-9_.-]`.
    #[error("invalid room name")]
    BadName,
    /// No stream of that name is reserved or live.
    #[error("no such room: chat exists for reserved or live streams")]
    NoSuchRoom,
    /// A client id must be 1-128 bytes without control characters.
    #[error("client_id must be 1 to 128 bytes without control characters")]
    BadClientId,
}

/// A room's rules as the API shows them (bans are not listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RoomSettings {
    /// The stream's owner; `None` for a live stream nobody reserved.
    pub owner: Option<UserId>,
    /// Users who may ban and time out.
    #[serde(default)]
    pub moderators: Vec<UserId>,
    /// Seconds between two messages of one user (0 = off).
    pub slow_mode_secs: u64,
}

/// A room's rules, loaded from the channel store.
#[derive(Debug, Clone, Default)]
pub struct RoomRules {
    /// What the API shows.
    pub settings: RoomSettings,
    bans: HashMap<UserId, Option<u64>>,
}

impl RoomRules {
    /// The rules of a reserved stream (`channel`) with its bans, or of an unreserved live one.
    pub fn new(channel: Option<&Channel>, bans: &[Ban]) -> Self {
        Self {
            settings: channel
                .map(|c| RoomSettings {
                    owner: Some(c.owner),
                    moderators: c.moderators.clone(),
                    slow_mode_secs: c.slow_mode_secs,
                })
                .unwrap_or_default(),
            bans: bans.iter().map(|b| (b.user, b.until)).collect(),
        }
    }

    fn is_moderator(&self, user: UserId) -> bool {
        self.settings.owner == Some(user) || self.settings.moderators.contains(&user)
    }

    /// Whether `from` may post at `now` (Unix ms): refused if banned; else the slow-mode
    /// interval that applies to them, ms (0: off, or they are the owner or a moderator). The
    /// interval itself is checked by the chat store, atomically with storing the message.
    pub fn admit(&self, from: UserId, now: u64) -> Result<u64, ChatError> {
        if let Some(until) = self.bans.get(&from).copied() {
            if until.is_none_or(|t| t > now) {
                return Err(ChatError::Banned(until));
            }
        }
        if self.is_moderator(from) {
            return Ok(0);
        }
        Ok(self.settings.slow_mode_secs.saturating_mul(1000))
    }
}

#[derive(Debug)]
struct Room {
    rules: Option<(Arc<RoomRules>, Instant)>,
    touched: Instant,
}

/// This instance's cache of room rules (nothing else: history and slow-mode records live in
/// the chat store, [`super::store`]).
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Room>>,
    /// Bumped by every invalidation: rules loaded from the store while a change notice arrived
    /// may predate the change, so they are not cached (see [`Rooms::set_rules`]).
    epoch: AtomicU64,
}

impl Rooms {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached rules, if loaded less than [`RULES_TTL`] ago.
    pub fn cached_rules(&self, room: &str) -> Option<Arc<RoomRules>> {
        let mut rooms = self.lock();
        let r = rooms.get_mut(room)?;
        let (rules, at) = r.rules.as_ref()?;
        let fresh = (at.elapsed() < RULES_TTL).then(|| rules.clone());
        if fresh.is_some() {
            r.touched = Instant::now();
        }
        fresh
    }

    /// The invalidation count; read it before loading rules from the store.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches freshly loaded rules (creating the entry: the caller checked the room exists),
    /// unless an invalidation came after `epoch` (read before loading them): then they may be
    /// older than the change it announced, and the next read loads them again.
    pub fn set_rules(&self, room: &str, rules: Arc<RoomRules>, epoch: u64) {
        let now = Instant::now();
        let mut rooms = self.lock();
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        rooms.insert(
            room.to_owned(),
            Room {
                rules: Some((rules, now)),
                touched: now,
            },
        );
    }

    /// Forgets the cached rules (they changed somewhere).
    pub fn invalidate(&self, room: &str) {
        let mut rooms = self.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(r) = rooms.get_mut(room) {
            r.rules = None;
        }
    }

    /// Forgets rooms untouched for `idle` (the `keep` predicate may hold any room, e.g. one
    /// with local subscribers).
    pub fn sweep(&self, idle: Duration, keep: impl Fn(&str) -> bool) {
        self.lock()
            .retain(|name, r| r.touched.elapsed() < idle || keep(name));
    }

    /// How many room entries this instance holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No room entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u() -> UserId {
        UserId(uuid::Uuid::new_v4())
    }

    #[test]
    fn bans_slow_mode_exemptions_and_sweep() {
        let (owner, moderator, viewer, banned, timed_out) = (u(), u(), u(), u(), u());
        let channel = Channel {
            name: "demo".into(),
            owner,
            private: false,
            key_hash: String::new(),
            key_issued_at: 0,
            created_at: 0,
            slow_mode_secs: 5,
            moderators: vec![moderator],
        };
        let rules = RoomRules::new(
            Some(&channel),
            &[
                Ban {
                    user: banned,
                    until: None,
                },
                Ban {
                    user: timed_out,
                    until: Some(10_000),
                },
            ],
        );
        assert_eq!(rules.admit(viewer, 1000), Ok(5000));
        // The owner and moderators are not slowed down.
        assert_eq!(rules.admit(owner, 1000), Ok(0));
        assert_eq!(rules.admit(moderator, 1000), Ok(0));
        assert_eq!(rules.admit(banned, 1), Err(ChatError::Banned(None)));
        assert_eq!(
            rules.admit(timed_out, 9000),
            Err(ChatError::Banned(Some(10_000)))
        );
        assert_eq!(rules.admit(timed_out, 20_000), Ok(5000));
        // An unreserved live room: no owner, no slow mode.
        assert_eq!(RoomRules::new(None, &[]).admit(viewer, 0), Ok(0));

        let rooms = Rooms::new();
        let rules = Arc::new(rules);
        assert!(rooms.cached_rules("demo").is_none());
        rooms.set_rules("demo", rules.clone(), rooms.epoch());
        assert!(rooms.cached_rules("demo").is_some());
        rooms.invalidate("demo");
        assert!(rooms.cached_rules("demo").is_none());
        // Rules loaded while a change notice arrived are not cached (they may predate it).
        let before = rooms.epoch();
        rooms.invalidate("demo");
        rooms.set_rules("demo", rules.clone(), before);
        assert!(rooms.cached_rules("demo").is_none());
        rooms.set_rules("demo", rules, rooms.epoch());
        assert!(rooms.cached_rules("demo").is_some());
        assert_eq!(rooms.len(), 1);
        rooms.sweep(Duration::ZERO, |n| n == "demo");
        assert_eq!(rooms.len(), 1);
        rooms.sweep(Duration::ZERO, |_| false);
        assert!(rooms.is_empty());
    }
}
