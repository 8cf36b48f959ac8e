//! Realtime delivery: the WebSockets connected to this instance, by user and by chat room
//! ([`Connections`]), and the fan-out of what arrives on the event bus to them ([`fanout`]).
//!
//! Owns: the connection registry and each connection's bounded outbound queue. Calls: the
//! event bus's message type and the chat service (fan-out only); never the API.
//!
//! Each connection has a bounded outbound queue. Delivery never waits: a frame that does not
//! fit marks the connection as too slow, and its socket task closes it with close code 4001;
//! the client reconnects with `since` and recovers what it missed from the store.
//!
//! Per-user limits live here too: sockets per user ([`Connections::register_capped`]) and the
//! pace of typing notices ([`Connections::typing_allowed`]); what a user's sockets hold is
//! dropped with their last socket, so the registry holds only connected users.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use crate::id::{MessageId, UserId};

pub mod fanout;

/// A text frame, serialised once and shared by every recipient.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The JSON text.
    pub text: Arc<str>,
    /// For a new-message frame, the message id (lets a recovering socket skip what it replayed).
    pub created: Option<MessageId>,
}

impl Frame {
    /// A frame of `json`.
    pub fn new(json: &serde_json::Value) -> Self {
        Self {
            text: Arc::from(json.to_string()),
            created: None,
        }
    }
}

/// The registry's side of one connection.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Process-unique id.
    pub id: u64,
    /// Whose connection.
    pub user: UserId,
    tx: mpsc::Sender<Frame>,
    slow: Arc<AtomicBool>,
    kick: Arc<Notify>,
}

impl Conn {
    /// Queues a frame; on a full queue marks the connection too slow and wakes its task.
    pub fn send(&self, frame: &Frame) -> bool {
        if self.slow.load(Ordering::Relaxed) {
            return false;
        }
        match self.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.store(true, Ordering::Relaxed);
                self.kick.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The socket task's side of one connection.
#[derive(Debug)]
pub struct ConnRx {
    /// Frames to write.
    pub rx: mpsc::Receiver<Frame>,
    /// Set when the queue overflowed.
    pub slow: Arc<AtomicBool>,
    /// Fired when `slow` is set.
    pub kick: Arc<Notify>,
}

/// The connections of one user, and when they last sent a typing notice.
#[derive(Debug, Default)]
struct UserConns {
    conns: HashMap<u64, Conn>,
    last_typing: Option<Instant>,
}

/// How often each per-user or per-socket limit refused something.
#[derive(Debug, Default)]
pub struct LimitCounts {
    /// Sockets refused: the user had `max_sockets_per_user` open.
    pub sockets: AtomicU64,
    /// Subscriptions refused: the socket had `max_subscriptions`.
    pub subscriptions: AtomicU64,
    /// Typing notices dropped: faster than `typing_interval`.
    pub typing_rate: AtomicU64,
    /// Typing notices dropped: to someone the sender shares no conversation with.
    pub typing_stranger: AtomicU64,
}

/// Connections by user and room.
#[derive(Debug, Default)]
pub struct Connections {
    next: AtomicU64,
    users: Mutex<HashMap<UserId, UserConns>>,
    rooms: Mutex<HashMap<String, HashMap<u64, Conn>>>,
    /// Connections closed for being too slow.
    pub slow_closes: AtomicU64,
    /// Refusals by the per-user and per-socket limits.
    pub refused: LimitCounts,
}

impl Connections {
    /// No connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a connection of `user` with an outbound queue of `capacity` frames.
    pub fn register(&self, user: UserId, capacity: usize) -> (Conn, ConnRx) {
        self.register_capped(user, capacity, usize::MAX)
            .unwrap_or_else(|_| unreachable!("no user has usize::MAX sockets"))
    }

    /// As [`register`](Self::register), unless `user` already has `max` connections here:
    /// then `Err(max)` and nothing is registered (the check and the insert are one step).
    pub fn register_capped(
        &self,
        user: UserId,
        capacity: usize,
        max: usize,
    ) -> Result<(Conn, ConnRx), usize> {
        let mut users = lock(&self.users);
        let mine = users.entry(user).or_default();
        if mine.conns.len() >= max {
            if mine.conns.is_empty() {
                users.remove(&user);
            }
            self.refused.sockets.fetch_add(1, Ordering::Relaxed);
            return Err(max);
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let slow = Arc::new(AtomicBool::new(false));
        let kick = Arc::new(Notify::new());
        let conn = Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            user,
            tx,
            slow: slow.clone(),
            kick: kick.clone(),
        };
        mine.conns.insert(conn.id, conn.clone());
        Ok((conn, ConnRx { rx, slow, kick }))
    }

    /// Whether `user` may send a typing notice at `now`: at most one per `interval` over all
    /// their sockets (a notice that is refused does not count). Always `false` for a user
    /// with no connection here.
    pub fn typing_allowed(&self, user: UserId, now: Instant, interval: Duration) -> bool {
        let mut users = lock(&self.users);
        let Some(mine) = users.get_mut(&user) else {
            return false;
        };
        let ok = mine
            .last_typing
            .is_none_or(|t| now.saturating_duration_since(t) >= interval);
        if ok {
            mine.last_typing = Some(now);
        } else {
            self.refused.typing_rate.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Removes a connection from its user and every room.
    pub fn unregister(&self, conn: &Conn, rooms: &HashSet<String>) {
        let mut users = lock(&self.users);
        if let Some(m) = users.get_mut(&conn.user) {
            m.conns.remove(&conn.id);
            if m.conns.is_empty() {
                users.remove(&conn.user);
            }
        }
        drop(users);
        let mut all = lock(&self.rooms);
        for r in rooms {
            if let Some(m) = all.get_mut(r) {
                m.remove(&conn.id);
                if m.is_empty() {
                    all.remove(r);
                }
            }
        }
    }

    /// Sends a frame to every connection of `user`; returns how many took it.
    pub fn to_user(&self, user: UserId, frame: &Frame) -> usize {
        let conns: Vec<Conn> = lock(&self.users)
            .get(&user)
            .map(|m| m.conns.values().cloned().collect())
            .unwrap_or_default();
        conns.iter().filter(|c| c.send(frame)).count()
    }

    /// Whether `user` has a connection here.
    pub fn is_connected(&self, user: UserId) -> bool {
        lock(&self.users).contains_key(&user)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        lock(&self.users).values().map(|u| u.conns.len()).sum()
    }

    /// Adds a connection to a room.
    pub fn join(&self, room: &str, conn: &Conn) {
        lock(&self.rooms)
            .entry(room.to_owned())
            .or_default()
            .insert(conn.id, conn.clone());
    }

    /// Removes a connection from a room.
    pub fn leave(&self, room: &str, conn: &Conn) {
        let mut all = lock(&self.rooms);
        if let Some(m) = all.get_mut(room) {
            m.remove(&conn.id);
            if m.is_empty() {
                all.remove(room);
            }
        }
    }

    /// Sends a frame to every connection in a room.
    pub fn to_room(&self, room: &str, frame: &Frame) -> usize {
        let conns: Vec<Conn> = lock(&self.rooms)
            .get(room)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        conns.iter().filter(|c| c.send(frame)).count()
    }

    /// Whether a socket of this instance is in `room`.
    pub fn room_has_members(&self, room: &str) -> bool {
        lock(&self.rooms).contains_key(room)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_marks_the_connection_slow() {
        let conns = Connections::new();
        let u = UserId(uuid::Uuid::new_v4());
        let (_c, rx) = conns.register(u, 2);
        let f = Frame::new(&serde_json::json!({"type": "x"}));
        assert_eq!(conns.to_user(u, &f), 1);
        assert_eq!(conns.to_user(u, &f), 1);
        assert_eq!(conns.to_user(u, &f), 0);
        assert!(rx.slow.load(Ordering::Relaxed));
    }

    #[test]
    fn sockets_per_user_are_capped_and_freed_on_unregister() {
        let conns = Connections::new();
        let (a, b) = (UserId(uuid::Uuid::new_v4()), UserId(uuid::Uuid::new_v4()));
        let (c1, _r1) = conns.register_capped(a, 4, 2).unwrap();
        let (_c2, _r2) = conns.register_capped(a, 4, 2).unwrap();
        assert_eq!(conns.register_capped(a, 4, 2).err(), Some(2));
        assert_eq!(conns.refused.sockets.load(Ordering::Relaxed), 1);
        // Another user is not affected; closing one socket makes room.
        assert!(conns.register_capped(b, 4, 2).is_ok());
        conns.unregister(&c1, &HashSet::new());
        assert!(conns.register_capped(a, 4, 2).is_ok());
        // A cap of 0 refuses everyone and leaves nothing behind.
        let c = UserId(uuid::Uuid::new_v4());
        assert!(conns.register_capped(c, 4, 0).is_err());
        assert!(!conns.is_connected(c));
    }

    #[test]
    fn typing_is_paced_per_user_across_sockets() {
        let conns = Connections::new();
        let a = UserId(uuid::Uuid::new_v4());
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        assert!(!conns.typing_allowed(a, t0, sec), "not connected");
        let (c1, _r1) = conns.register(a, 4);
        let (_c2, _r2) = conns.register(a, 4);
        assert!(conns.typing_allowed(a, t0, sec));
        assert!(!conns.typing_allowed(a, t0 + sec / 2, sec));
        assert!(conns.typing_allowed(a, t0 + sec, sec));
        assert!(!conns.typing_allowed(a, t0 + sec, sec));
        assert_eq!(conns.refused.typing_rate.load(Ordering::Relaxed), 2);
        // The pace state goes with the user's last socket.
        conns.unregister(&c1, &HashSet::new());
        assert!(
            !conns.typing_allowed(a, t0 + sec + sec / 2, sec),
            "kept while one is open"
        );
    }

    #[test]
    fn rooms_reach_their_members_until_they_leave() {
        let conns = Connections::new();
        let (a, b) = (UserId(uuid::Uuid::new_v4()), UserId(uuid::Uuid::new_v4()));
        let (ca, mut ra) = conns.register(a, 8);
        let (cb, mut rb) = conns.register(b, 8);
        assert!(conns.is_connected(a));
        assert_eq!(conns.connections(), 2);
        conns.join("demo", &ca);
        conns.join("demo", &cb);
        let f = Frame::new(&serde_json::json!({"type": "chat"}));
        assert_eq!(conns.to_room("demo", &f), 2);
        assert_eq!(conns.to_room("other", &f), 0);
        conns.leave("demo", &cb);
        assert_eq!(conns.to_room("demo", &f), 1);
        assert!(ra.rx.try_recv().is_ok() && ra.rx.try_recv().is_ok());
        assert!(rb.rx.try_recv().is_ok() && rb.rx.try_recv().is_err());
        // Unregistering removes the connection from its user and its rooms.
        conns.unregister(&ca, &HashSet::from(["demo".to_owned()]));
        assert!(!conns.is_connected(a));
        assert_eq!(conns.to_room("demo", &f), 0);
        assert_eq!(conns.connections(), 1);
    }
}
