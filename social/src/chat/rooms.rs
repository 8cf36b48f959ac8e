//! This instance's view of the live-chat rooms: recent history, and a cache of each room's
//! rules (owner, moderators, slow mode, bans), which live durably in the channel store.
//!
//! A room exists only for a stream name that is reserved (a channel) or live; entries are
//! created by posts and by messages arriving from the bus, never by reads, and an entry nobody
//! touched for [`IDLE_ROOM`] is dropped by [`Rooms::sweep`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::channels::{Ban, Channel};
use crate::id::{MessageId, UserId};

/// Cached rules are reloaded after this long even without a change notice from the bus.
pub const RULES_TTL: Duration = Duration::from_secs(30);
/// A room entry untouched this long is forgotten (its recent history with it).
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
}

#[derive(Debug)]
struct Room {
    history: VecDeque<ChatMessage>,
    rules: Option<(Arc<RoomRules>, Instant)>,
    last_post: HashMap<UserId, u64>,
    touched: Instant,
}

impl Room {
    fn new(now: Instant) -> Self {
        Self {
            history: VecDeque::new(),
            rules: None,
            last_post: HashMap::new(),
            touched: now,
        }
    }
}

/// Every room entry of this instance.
#[derive(Debug)]
pub struct Rooms {
    keep: usize,
    rooms: Mutex<HashMap<String, Room>>,
}

impl Rooms {
    /// Rooms keeping their last `keep` messages.
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached rules, if loaded less than [`RULES_TTL`] ago.
    pub fn cached_rules(&self, room: &str) -> Option<Arc<RoomRules>> {
        let rooms = self.lock();
        let (rules, at) = rooms.get(room)?.rules.as_ref()?;
        (at.elapsed() < RULES_TTL).then(|| rules.clone())
    }

    /// Caches freshly loaded rules (creating the entry: the caller checked the room exists).
    pub fn set_rules(&self, room: &str, rules: Arc<RoomRules>) {
        let now = Instant::now();
        let mut rooms = self.lock();
        let r = rooms
            .entry(room.to_owned())
            .or_insert_with(|| Room::new(now));
        r.rules = Some((rules, now));
    }

    /// Forgets the cached rules (they changed somewhere).
    pub fn invalidate(&self, room: &str) {
        if let Some(r) = self.lock().get_mut(room) {
            r.rules = None;
        }
    }

    /// Checks that `from` may post now under `rules` (bans, slow mode) and records the attempt.
    pub fn admit(
        &self,
        room: &str,
        rules: &RoomRules,
        from: UserId,
        now: u64,
    ) -> Result<(), ChatError> {
        if let Some(until) = rules.bans.get(&from).copied() {
            if until.is_none_or(|t| t > now) {
                return Err(ChatError::Banned(until));
            }
        }
        let slow = rules.settings.slow_mode_secs.saturating_mul(1000);
        let mut rooms = self.lock();
        let r = rooms
            .entry(room.to_owned())
            .or_insert_with(|| Room::new(Instant::now()));
        r.touched = Instant::now();
        if slow > 0 && !rules.is_moderator(from) {
            if let Some(&last) = r.last_post.get(&from) {
                let next = last.saturating_add(slow);
                if now < next {
                    return Err(ChatError::SlowMode(next - now));
                }
            }
            r.last_post.insert(from, now);
        }
        Ok(())
    }

    /// Adds a message to the room's history (every instance does this for every message).
    pub fn record(&self, msg: &ChatMessage) {
        let keep = self.keep;
        let mut rooms = self.lock();
        let r = rooms
            .entry(msg.room.clone())
            .or_insert_with(|| Room::new(Instant::now()));
        r.touched = Instant::now();
        if r.history.iter().any(|m| m.id == msg.id) {
            return;
        }
        r.history.push_back(msg.clone());
        while r.history.len() > keep {
            r.history.pop_front();
        }
    }

    /// The last messages, oldest first (none if this instance has no entry for the room).
    pub fn history(&self, room: &str) -> Vec<ChatMessage> {
        let mut rooms = self.lock();
        match rooms.get_mut(room) {
            Some(r) => {
                r.touched = Instant::now();
                r.history.iter().cloned().collect()
            }
            None => Vec::new(),
        }
    }

    /// Forgets rooms untouched for `idle` (the `keep` predicate may hold any room, e.g. one
    /// with local subscribers), and slow-mode records older than the longest slow mode.
    pub fn sweep(&self, idle: Duration, now_ms: u64, keep: impl Fn(&str) -> bool) {
        let horizon = now_ms.saturating_sub(crate::channels::service::MAX_SLOW_MODE_SECS * 1000);
        self.lock().retain(|name, r| {
            r.last_post.retain(|_, t| *t > horizon);
            r.touched.elapsed() < idle || keep(name)
        });
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
    fn slow_mode_bans_history_and_sweep() {
        let rooms = Rooms::new(3);
        let (owner, viewer, banned, timed_out) = (u(), u(), u(), u());
        let channel = Channel {
            name: "demo".into(),
            owner,
            private: false,
            key_hash: String::new(),
            key_issued_at: 0,
            created_at: 0,
            slow_mode_secs: 5,
            moderators: vec![],
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
        assert!(rooms.admit("demo", &rules, viewer, 1000).is_ok());
        assert_eq!(
            rooms.admit("demo", &rules, viewer, 2000),
            Err(ChatError::SlowMode(4000))
        );
        assert!(rooms.admit("demo", &rules, viewer, 6000).is_ok());
        // The owner is not slowed down.
        assert!(rooms.admit("demo", &rules, owner, 6000).is_ok());
        assert!(rooms.admit("demo", &rules, owner, 6001).is_ok());
        assert_eq!(
            rooms.admit("demo", &rules, banned, 1),
            Err(ChatError::Banned(None))
        );
        assert!(matches!(
            rooms.admit("demo", &rules, timed_out, 9000),
            Err(ChatError::Banned(Some(10_000)))
        ));
        assert!(rooms.admit("demo", &rules, timed_out, 20_000).is_ok());
        for i in 0..5 {
            rooms.record(&ChatMessage {
                id: MessageId(i),
                room: "demo".into(),
                from: owner,
                content: format!("{i}"),
                at: i,
            });
        }
        let h = rooms.history("demo");
        assert_eq!(h.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![2, 3, 4]);
        // Reads do not create entries.
        assert!(rooms.history("other").is_empty());
        assert_eq!(rooms.len(), 1);
        rooms.sweep(Duration::ZERO, 0, |n| n == "demo");
        assert_eq!(rooms.len(), 1);
        rooms.sweep(Duration::ZERO, 0, |_| false);
        assert!(rooms.is_empty());
    }
}
