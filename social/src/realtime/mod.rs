//! Realtime delivery: the WebSockets connected to this instance, by user and by chat room
//! ([`Connections`]), and the fan-out of what arrives on the event bus to them ([`fanout`]).
//!
//! Owns: the connection registry and each connection's bounded outbound queue. Calls: the
//! event bus's message type and the chat service (fan-out only); never the API.
//!
//! Each connection has a bounded outbound queue. Delivery never waits: a frame that does not
//! fit marks the connection as too slow, and its socket task closes it with close code 4001;
//! the client reconnects with `since` and recovers what it missed from the store.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// Connections by user and room.
#[derive(Debug, Default)]
pub struct Connections {
    next: AtomicU64,
    users: Mutex<HashMap<UserId, HashMap<u64, Conn>>>,
    rooms: Mutex<HashMap<String, HashMap<u64, Conn>>>,
    /// Connections closed for being too slow.
    pub slow_closes: AtomicU64,
}

impl Connections {
    /// No connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a connection of `user` with an outbound queue of `capacity` frames.
    pub fn register(&self, user: UserId, capacity: usize) -> (Conn, ConnRx) {
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
        lock(&self.users)
            .entry(user)
            .or_default()
            .insert(conn.id, conn.clone());
        (conn, ConnRx { rx, slow, kick })
    }

    /// Removes a connection from its user and every room.
    pub fn unregister(&self, conn: &Conn, rooms: &HashSet<String>) {
        let mut users = lock(&self.users);
        if let Some(m) = users.get_mut(&conn.user) {
            m.remove(&conn.id);
            if m.is_empty() {
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
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        conns.iter().filter(|c| c.send(frame)).count()
    }

    /// Whether `user` has a connection here.
    pub fn is_connected(&self, user: UserId) -> bool {
        lock(&self.users).contains_key(&user)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        lock(&self.users).values().map(HashMap::len).sum()
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
