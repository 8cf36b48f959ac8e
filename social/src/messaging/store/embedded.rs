//! The embedded message store: fjall (an LSM tree) in a local directory, with group-committed
//! fsync before every acknowledgement and a durable outbox.
//!
//! # Layout
//!
//! One fjall database, one keyspace per index. Keys are big-endian so byte order is id order.
//!
//! | keyspace   | key                                | value                           |
//! | ---------- | ---------------------------------- | ------------------------------- |
//! | `messages` | conv (32) \| id (8)                | [`Message`] JSON                |
//! | `by_id`    | id (8)                             | conv (32)                       |
//! | `inbox`    | user (16) \| id (8)                | conv (32), for both participants|
//! | `idem`     | from (16) \| client id bytes       | id (8)                          |
//! | `convs`    | user (16) \| peer (16)             | newest message id (8)           |
//! | `reads`    | user (16) \| conv (32)             | read marker id (8)              |
//! | `outbox`   | node (2) \| seq (8)                | [`Event`] JSON                  |
//! | `meta`     | `b"outbox_acked"` \| node (2)      | highest acknowledged seq (8)    |
//!
//! The follow graph ([`crate::graph::store::embedded`]) keeps its keyspaces (`fwd`, `bwd`, `edges`,
//! `gcounts`, `profiles`, `popular`) in the same database, and its follow/unfollow/profile
//! writes go through the same writer thread and group commit; see that module for its layout.
//! So do the channels ([`crate::channels::store::embedded`]: `channels`, `owned`, `bans`) and
//! the live-chat rooms ([`crate::chat::store::embedded`]: `chat`, `chat_idem`, `chat_last`).
//!
//! `conv` is [`ConversationId::to_bytes`]. Outbox sequence numbers are per node and strictly
//! increase, also across restarts and after every record was acknowledged (`meta` keeps the
//! acknowledged high-water mark, so the next seq is `max(last outbox key, acked) + 1`).
//!
//! # Writes and group commit
//!
//! ```text
//! async callers ──job──► bounded queue ──► writer thread:  loop {
//!      ▲                                     take every queued job (≤ 512)
//!      │                                     each job: checks + ONE atomic WriteBatch
//!      │                                       (message, indexes, outbox record)
//!      │                                     ONE fsync (PersistMode::SyncAll)
//!      └────────── reply (oneshot) ◄──────── reply to every job of the round }
//! ```
//!
//! All changes go through one writer thread. It takes the first queued job (blocking), then
//! every job already queued, applies each as its own atomic batch, fsyncs the journal once and
//! only then answers all of them. While it fsyncs, new jobs queue up and form the next group, so
//! under load many writes share one fsync ([`EmbeddedStore::stats`] counts both). Serialising the
//! writes on one thread also makes the idempotency check-and-write atomic: two concurrent sends
//! with the same `(from, client_id)` cannot both create a message.
//!
//! Why the batches are applied on the committer thread rather than by the callers: fjall's
//! `Database::persist` holds the journal mutex for the whole fsync, so writers committing on
//! their own threads would stall behind it and then trickle in one by one right after, each
//! triggering the next fsync almost alone. Applying the queued batches back to back and then
//! fsyncing keeps groups large.
//!
//! Reads (history, conversations, unread, since, outbox) run on tokio's blocking pool, off the
//! async worker threads, and see every write that was answered.
//!
//! # Durability argument
//!
//! A mutating call returns `Ok` only after (1) its batch was committed — appended to fjall's
//! journal and flushed to the OS (fjall's default per-batch `PersistMode::Buffer`) — and (2) a
//! `Database::persist(PersistMode::SyncAll)` that started after that commit returned `Ok`.
//! `persist` flushes the journal writer and `fsync`s the active journal file; older journal
//! files were `fsync`ed by fjall when it rotated them, and journals are only deleted after their
//! memtables were written to (synced) tables. Recovery replays the journal, so every answered
//! write survives `kill -9` and power loss; a batch is atomic, so a message never exists
//! without its indexes or its outbox record. A call that fails with [`StoreError::Backend`] may
//! or may not have been applied (retrying an append with the same client id is safe). If an
//! fsync fails fjall poisons the database and every later write fails.
//!
//! Cancel safety: dropping a write future after it was queued does not withdraw the write; it
//! may still be applied (and its outbox event published).
//!
//! # Memory
//!
//! fjall's defaults suit a database that owns the machine: a 64 MiB memtable per keyspace (and
//! this store has 20), journals up to 512 MiB before old memtables are forced out, and nothing
//! that bounds the memtables together. [`StoreLimits`] bounds them: the block cache, every
//! memtable together (the writer thread rotates the largest one after a commit group that
//! left them above the bound, so this also holds for keyspaces created by an older version with
//! larger memtables), and the journals on disk. Rotated memtables are flushed to tables by
//! fjall's workers; reads then go through the block cache and the OS page cache.
//!
//! # Limits
//!
//! - `unread` counts at most [`MAX_UNREAD_SCAN`] messages after the read marker per
//!   conversation (so a count is capped near that value).
//! - `history` and `conversations` clamp `limit` to 1..=100, `since` to 1..=1000,
//!   `outbox_read` to 0..=10_000.
//! - [`EmbeddedStore::open`] is synchronous (fjall recovery); call it at startup.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::{Appended, MessageStore, Outbox, StoreError};
use crate::id::MessageId;
use crate::id::UserId;
use crate::messaging::model::{
    ConversationId, ConversationSummary, Event, Message, NewMessage, Page, Unread, UnreadIn,
};

/// `unread` scans at most this many messages after the read marker in each conversation.
pub const MAX_UNREAD_SCAN: usize = 10_000;
/// At most this many jobs share one fsync (bounds the latency of the first of a group).
const MAX_GROUP: usize = 512;
/// Bound of the queue toward the writer thread; senders wait when it is full.
const QUEUE: usize = 1024;
const HISTORY_MAX: usize = 100;
const SINCE_MAX: usize = 1000;
const OUTBOX_READ_MAX: usize = 10_000;
const ACKED_PREFIX: &[u8] = b"outbox_acked";
/// fjall refuses a smaller journal bound.
const MIN_JOURNAL: u64 = 64 << 20;
/// Smallest memtable bound accepted (fjall's own lower bound for its write-buffer setting).
const MIN_WRITE_BUFFER: u64 = 1 << 20;

/// Memory and disk bounds of the embedded store (see the module docs, *Memory*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Block cache shared by every keyspace, bytes (default 16 MiB).
    pub cache: u64,
    /// Every memtable together (written data not yet flushed to tables), bytes (default
    /// 16 MiB, at least 1 MiB). A keyspace created by this version rotates its memtable at a
    /// quarter of this on its own.
    pub write_buffer: u64,
    /// Every journal together on disk, bytes (default 128 MiB, at least 64 MiB): beyond it the
    /// memtables holding the oldest journal are flushed so it can go. Also bounds what a restart
    /// replays.
    pub journal: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            cache: 16 << 20,
            write_buffer: 16 << 20,
            journal: 128 << 20,
        }
    }
}

impl StoreLimits {
    /// The limits with each bound raised to its minimum.
    fn sane(self) -> Self {
        Self {
            cache: self.cache,
            write_buffer: self.write_buffer.max(MIN_WRITE_BUFFER),
            journal: self.journal.max(MIN_JOURNAL),
        }
    }

    /// Memtable size at which a keyspace created with these limits rotates by itself.
    fn memtable(&self) -> u64 {
        (self.write_buffer / 4).max(MIN_WRITE_BUFFER / 4)
    }
}

/// Message store on fjall in a local directory; see the [module docs](self).
///
/// Cheap to clone (an `Arc` inside); every clone and every [`with_node`](Self::with_node)
/// handle shares one database and one writer thread, which stop when the last handle is
/// dropped: that drop blocks until the queued writes are answered and the database is closed
/// (so the directory can be reopened at once).
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    node: u16,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (writes, fsyncs) = self.stats();
        f.debug_struct("EmbeddedStore")
            .field("node", &self.node)
            .field("writes", &writes)
            .field("fsyncs", &fsyncs)
            .finish_non_exhaustive()
    }
}

struct Inner {
    spaces: Arc<Spaces>,
    stats: Arc<Stats>,
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer loop once it answered what is queued; joining it
        // releases its database handle, so the directory can be opened again at once.
        self.jobs = None;
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

#[derive(Default)]
struct Stats {
    writes: AtomicU64,
    fsyncs: AtomicU64,
    /// Bytes in memtables (not yet flushed to tables) after the last commit group.
    unflushed: AtomicU64,
}

/// The keyspaces (see the layout in the module docs).
pub(crate) struct Spaces {
    messages: Keyspace,
    by_id: Keyspace,
    inbox: Keyspace,
    idem: Keyspace,
    convs: Keyspace,
    reads: Keyspace,
    outbox: Keyspace,
    meta: Keyspace,
    /// Graph: `from | !since | to` → ().
    pub(crate) fwd: Keyspace,
    /// Graph: `to | !since | from` → ().
    pub(crate) bwd: Keyspace,
    /// Graph: `from | to` → since.
    pub(crate) edges: Keyspace,
    /// Graph: `user` → followers | following.
    pub(crate) gcounts: Keyspace,
    /// Graph: `user` → profile JSON.
    pub(crate) profiles: Keyspace,
    /// Graph: `!followers | user` → ().
    pub(crate) popular: Keyspace,
    /// Channels: `name` → channel JSON.
    pub(crate) channels: Keyspace,
    /// Channels: `owner | name` → ().
    pub(crate) owned: Keyspace,
    /// Channels: `name | 0 | user` → ban JSON.
    pub(crate) bans: Keyspace,
    /// Chat: `room | 0 | id` → stored chat message JSON.
    pub(crate) chat: Keyspace,
    /// Chat: `room | 0 | from | client id` → id (8).
    pub(crate) chat_idem: Keyspace,
    /// Chat: `room | 0 | user` → last slow-mode post, Unix ms (8).
    pub(crate) chat_last: Keyspace,
}

/// A change to apply on the writer thread; returns what to do once the group is synced.
type Job = Box<dyn FnOnce(&mut Writer) -> Done + Send>;

struct Done {
    /// Whether the answer depends on this group's fsync.
    needs_sync: bool,
    /// Sends the answer; gets the fsync outcome.
    finish: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// State owned by the writer thread.
pub(crate) struct Writer {
    db: Database,
    sp: Arc<Spaces>,
    stats: Arc<Stats>,
    /// Last outbox seq per node (loaded on first use).
    seqs: HashMap<u16, u64>,
    /// Bound of every memtable together, bytes.
    write_buffer: u64,
}

pub(crate) fn backend(e: impl fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn stopped() -> StoreError {
    StoreError::Backend("store writer stopped".into())
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, StoreError> {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| backend("corrupt store: short integer"))
}

fn conv_of(b: &[u8]) -> Result<ConversationId, StoreError> {
    ConversationId::from_bytes(b).ok_or_else(|| backend("corrupt store: bad conversation"))
}

fn msg_key(conv: &ConversationId, id: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&conv.to_bytes());
    k[32..].copy_from_slice(&id.to_be_bytes());
    k
}

fn user_id_key(user: UserId, id: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(user.0.as_bytes());
    k[16..].copy_from_slice(&id.to_be_bytes());
    k
}

fn pair_key(user: UserId, peer: UserId) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(user.0.as_bytes());
    k[16..].copy_from_slice(peer.0.as_bytes());
    k
}

fn reads_key(user: UserId, conv: &ConversationId) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..16].copy_from_slice(user.0.as_bytes());
    k[16..].copy_from_slice(&conv.to_bytes());
    k
}

fn idem_key(from: UserId, client_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + client_id.len());
    k.extend_from_slice(from.0.as_bytes());
    k.extend_from_slice(client_id.as_bytes());
    k
}

fn outbox_key(node: u16, seq: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(&node.to_be_bytes());
    k[2..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn acked_key(node: u16) -> Vec<u8> {
    let mut k = ACKED_PREFIX.to_vec();
    k.extend_from_slice(&node.to_be_bytes());
    k
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(backend)
}

impl Spaces {
    /// Opens (or creates, with memtables of `memtable` bytes) every keyspace.
    fn open(db: &Database, memtable: u64) -> Result<Self, StoreError> {
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable)
            })
            .map_err(backend)
        };
        Ok(Self {
            messages: ks("messages")?,
            by_id: ks("by_id")?,
            inbox: ks("inbox")?,
            idem: ks("idem")?,
            convs: ks("convs")?,
            reads: ks("reads")?,
            outbox: ks("outbox")?,
            meta: ks("meta")?,
            fwd: ks("fwd")?,
            bwd: ks("bwd")?,
            edges: ks("edges")?,
            gcounts: ks("gcounts")?,
            profiles: ks("profiles")?,
            popular: ks("popular")?,
            channels: ks("channels")?,
            owned: ks("owned")?,
            bans: ks("bans")?,
            chat: ks("chat")?,
            chat_idem: ks("chat_idem")?,
            chat_last: ks("chat_last")?,
        })
    }

    fn message_in(&self, conv: &ConversationId, id: u64) -> Result<Option<Message>, StoreError> {
        match self.messages.get(msg_key(conv, id)).map_err(backend)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(backend)?)),
            None => Ok(None),
        }
    }

    /// The message with `id`, wherever it is.
    fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        match self.by_id.get(id.to_be_bytes()).map_err(backend)? {
            Some(conv) => self.message_in(&conv_of(&conv)?, id.0),
            None => Ok(None),
        }
    }

    /// The message with `id` if `user` takes part in its conversation.
    fn visible(&self, user: UserId, id: MessageId) -> Result<Message, StoreError> {
        match self.message(id)? {
            Some(m) if m.conversation.includes(user) => Ok(m),
            _ => Err(StoreError::NotFound),
        }
    }

    fn marker(&self, user: UserId, conv: &ConversationId) -> Result<u64, StoreError> {
        match self.reads.get(reads_key(user, conv)).map_err(backend)? {
            Some(v) => u64_at(&v, 0),
            None => Ok(0),
        }
    }

    /// `user`'s conversations as (peer, newest id), newest first.
    fn conv_list(&self, user: UserId) -> Result<Vec<(UserId, u64)>, StoreError> {
        let mut out = Vec::new();
        for g in self.convs.prefix(user.0.as_bytes()) {
            let (k, v) = g.into_inner().map_err(backend)?;
            let peer = k
                .get(16..32)
                .and_then(|b| uuid::Uuid::from_slice(b).ok())
                .ok_or_else(|| backend("corrupt store: bad convs key"))?;
            out.push((UserId(peer), u64_at(&v, 0)?));
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.1));
        Ok(out)
    }

    /// Messages from `peer` after `user`'s read marker in their conversation (scans ≤ [`MAX_UNREAD_SCAN`]).
    fn unread_in(&self, user: UserId, peer: UserId) -> Result<u64, StoreError> {
        #[derive(Deserialize)]
        struct Sender {
            from: UserId,
        }
        let conv = ConversationId::between(user, peer);
        let Some(lo) = self.marker(user, &conv)?.checked_add(1) else {
            return Ok(0);
        };
        let mut n = 0;
        let range = self
            .messages
            .range(msg_key(&conv, lo)..=msg_key(&conv, u64::MAX));
        for g in range.take(MAX_UNREAD_SCAN) {
            let v = g.value().map_err(backend)?;
            if serde_json::from_slice::<Sender>(&v).map_err(backend)?.from == peer {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every keyspace, to look at their memtables.
    fn all(&self) -> [&Keyspace; 20] {
        [
            &self.messages,
            &self.by_id,
            &self.inbox,
            &self.idem,
            &self.convs,
            &self.reads,
            &self.outbox,
            &self.meta,
            &self.fwd,
            &self.bwd,
            &self.edges,
            &self.gcounts,
            &self.profiles,
            &self.popular,
            &self.channels,
            &self.owned,
            &self.bans,
            &self.chat,
            &self.chat_idem,
            &self.chat_last,
        ]
    }

    fn last_outbox_seq(&self, node: u16) -> Result<u64, StoreError> {
        let last = match self.outbox.prefix(node.to_be_bytes()).next_back() {
            Some(g) => u64_at(&g.key().map_err(backend)?, 2)?,
            None => 0,
        };
        let acked = match self.meta.get(acked_key(node)).map_err(backend)? {
            Some(v) => u64_at(&v, 0)?,
            None => 0,
        };
        Ok(last.max(acked))
    }
}

impl Writer {
    /// The keyspaces (for the graph's writer jobs).
    pub(crate) fn spaces(&self) -> Arc<Spaces> {
        Arc::clone(&self.sp)
    }

    /// A new empty batch on the database.
    pub(crate) fn batch(&self) -> OwnedWriteBatch {
        self.db.batch()
    }

    /// Commits `batch` atomically without an outbox event (profiles). The caller's answer must
    /// still wait for the group's fsync (`needs_sync`) to be durable.
    pub(crate) fn commit_plain(&mut self, batch: OwnedWriteBatch) -> Result<(), StoreError> {
        self.commit(batch, 0, None)
    }

    /// Commits `batch` and `event`, added to `node`'s outbox, atomically (follows and
    /// unfollows). Durable as [`commit_plain`](Self::commit_plain).
    pub(crate) fn commit_event(
        &mut self,
        batch: OwnedWriteBatch,
        node: u16,
        event: &Event,
    ) -> Result<(), StoreError> {
        self.commit(batch, node, Some(event))
    }

    /// Keeps the memtables within [`StoreLimits::write_buffer`]: while they hold more, rotates
    /// the largest active one (fjall flushes it to a table in the background and frees it).
    ///
    /// fjall 3.1 counts the bytes of every memtable (`write_buffer_size`, active and sealed but
    /// not yet flushed) but does not act on its own `max_write_buffer_size` setting, so the
    /// writer does: it is the only thread that writes, and it looks after each commit group.
    /// Sealed memtables still being flushed count too; rotating stops when no active memtable
    /// holds more than an eighth of the bound (rotating tiny memtables would only make tiny
    /// tables while the flushes catch up).
    fn bound_write_buffer(&self) {
        use fjall::AbstractTree as _;
        let mut rotations = 0;
        while self.db.write_buffer_size() > self.write_buffer && rotations < 4 {
            let largest = self
                .sp
                .all()
                .into_iter()
                .map(|ks| (ks.tree.active_memtable().size(), ks))
                .max_by_key(|(size, _)| *size);
            let Some((size, ks)) = largest else { break };
            if size <= self.write_buffer / 8 {
                break;
            }
            if let Err(e) = ks.rotate_memtable() {
                tracing::warn!(error = %e, keyspace = %ks.name(), "store: memtable rotation failed");
                break;
            }
            rotations += 1;
        }
        self.stats
            .unflushed
            .store(self.db.write_buffer_size(), Ordering::Relaxed);
    }

    fn last_seq(&mut self, node: u16) -> Result<u64, StoreError> {
        if let Some(s) = self.seqs.get(&node) {
            return Ok(*s);
        }
        let s = self.sp.last_outbox_seq(node)?;
        self.seqs.insert(node, s);
        Ok(s)
    }

    /// Adds `event` (if any) to `node`'s outbox in `batch` and commits it atomically.
    fn commit(
        &mut self,
        mut batch: OwnedWriteBatch,
        node: u16,
        event: Option<&Event>,
    ) -> Result<(), StoreError> {
        let mut seq = None;
        if let Some(ev) = event {
            let s = self.last_seq(node)? + 1;
            batch.insert(&self.sp.outbox, outbox_key(node, s), to_json(ev)?);
            seq = Some(s);
        }
        batch.commit().map_err(backend)?;
        if let Some(s) = seq {
            self.seqs.insert(node, s);
        }
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn append(&mut self, node: u16, new: NewMessage) -> Result<(Appended, bool), StoreError> {
        let sp = Arc::clone(&self.sp);
        if let Some(cid) = &new.client_id {
            if let Some(v) = sp.idem.get(idem_key(new.from, cid)).map_err(backend)? {
                let id = MessageId(u64_at(&v, 0)?);
                let existing = sp
                    .message(id)?
                    .ok_or_else(|| backend("corrupt store: idempotency key without message"))?;
                // Waits for this group's fsync: the original may be in the same group.
                return Ok((Appended::Duplicate(existing), true));
            }
        }
        if sp
            .by_id
            .contains_key(new.id.to_be_bytes())
            .map_err(backend)?
        {
            return Err(backend(format!("message id {} already used", new.id)));
        }
        let conv = ConversationId::between(new.from, new.to);
        let msg = Message {
            id: new.id,
            conversation: conv,
            from: new.from,
            to: new.to,
            content: new.content,
            client_id: new.client_id,
            edited_at: None,
            deleted: false,
        };
        let id = msg.id.0;
        let mut b = self.db.batch();
        b.insert(&sp.messages, msg_key(&conv, id), to_json(&msg)?);
        b.insert(&sp.by_id, id.to_be_bytes(), conv.to_bytes());
        for user in [conv.a, conv.b] {
            b.insert(&sp.inbox, user_id_key(user, id), conv.to_bytes());
        }
        if let Some(cid) = &msg.client_id {
            b.insert(&sp.idem, idem_key(msg.from, cid), id.to_be_bytes());
        }
        for (user, peer) in [(msg.from, msg.to), (msg.to, msg.from)] {
            let key = pair_key(user, peer);
            let newer = match sp.convs.get(key).map_err(backend)? {
                Some(v) => u64_at(&v, 0)? < id,
                None => true,
            };
            if newer {
                b.insert(&sp.convs, key, id.to_be_bytes());
            }
        }
        let event = Event::MessageCreated {
            v: Event::VERSION,
            message: msg.clone(),
        };
        self.commit(b, node, Some(&event))?;
        Ok((Appended::Created(msg), true))
    }

    /// Shared checks of edit and delete: visible to `user`, sent by `user`, not deleted.
    fn own_live(&self, user: UserId, id: MessageId) -> Result<Message, StoreError> {
        let m = self.sp.visible(user, id)?;
        if m.from != user || m.deleted {
            return Err(StoreError::Forbidden);
        }
        Ok(m)
    }

    fn replace(&mut self, node: u16, msg: &Message, event: Event) -> Result<(), StoreError> {
        let mut b = self.db.batch();
        b.insert(
            &self.sp.messages,
            msg_key(&msg.conversation, msg.id.0),
            to_json(msg)?,
        );
        self.commit(b, node, Some(&event))
    }

    fn edit(
        &mut self,
        node: u16,
        user: UserId,
        id: MessageId,
        content: String,
        now_ms: u64,
    ) -> Result<(Message, bool), StoreError> {
        let mut m = self.own_live(user, id)?;
        m.content = content;
        m.edited_at = Some(now_ms);
        let ev = Event::MessageEdited {
            v: Event::VERSION,
            message: m.clone(),
        };
        self.replace(node, &m, ev)?;
        Ok((m, true))
    }

    fn delete(
        &mut self,
        node: u16,
        user: UserId,
        id: MessageId,
        now_ms: u64,
    ) -> Result<(Message, bool), StoreError> {
        let mut m = self.own_live(user, id)?;
        m.content.clear();
        m.deleted = true;
        m.edited_at = Some(now_ms);
        let ev = Event::MessageDeleted {
            v: Event::VERSION,
            message: m.clone(),
        };
        self.replace(node, &m, ev)?;
        Ok((m, true))
    }

    fn mark_read(
        &mut self,
        node: u16,
        user: UserId,
        conv: ConversationId,
        up_to: MessageId,
    ) -> Result<(MessageId, bool), StoreError> {
        if !conv.includes(user) {
            return Err(StoreError::NotFound);
        }
        let old = self.sp.marker(user, &conv)?;
        if up_to.0 <= old {
            return Ok((MessageId(old), false));
        }
        let mut b = self.db.batch();
        b.insert(&self.sp.reads, reads_key(user, &conv), up_to.to_be_bytes());
        let ev = Event::Read {
            v: Event::VERSION,
            conversation: conv,
            reader: user,
            up_to,
        };
        self.commit(b, node, Some(&ev))?;
        Ok((up_to, true))
    }

    fn outbox_ack(&mut self, node: u16, up_to: u64) -> Result<((), bool), StoreError> {
        let sp = Arc::clone(&self.sp);
        let acked_before = match sp.meta.get(acked_key(node)).map_err(backend)? {
            Some(v) => u64_at(&v, 0)?,
            None => 0,
        };
        let mut b = self.db.batch();
        // Everything up to `acked_before` is already gone: start after it, so the scan does not
        // walk the tombstones of every record ever acknowledged (it did, and the writer thread's
        // CPU grew with the number of messages sent).
        let from = acked_before.saturating_add(1);
        if from <= up_to {
            for g in sp
                .outbox
                .range(outbox_key(node, from)..=outbox_key(node, up_to))
            {
                b.remove(&sp.outbox, g.key().map_err(backend)?);
            }
        }
        if up_to > acked_before {
            b.insert(&sp.meta, acked_key(node), up_to.to_be_bytes());
        }
        if b.is_empty() {
            return Ok(((), false));
        }
        // Acknowledging past the newest record must not let a later seq repeat.
        let last = self.last_seq(node)?;
        self.commit(b, node, None)?;
        self.seqs.insert(node, last.max(up_to));
        Ok(((), true))
    }
}

fn run_writer(mut w: Writer, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first(&mut w)];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job(&mut w)),
                Err(_) => break,
            }
        }
        let synced = if group.iter().any(|d| d.needs_sync) {
            let r = w.db.persist(PersistMode::SyncAll).map_err(|e| {
                tracing::error!(error = %e, "store fsync failed");
                e.to_string()
            });
            w.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            r
        } else {
            Ok(())
        };
        for d in group {
            (d.finish)(synced.clone());
        }
        w.bound_write_buffer();
    }
}

impl EmbeddedStore {
    /// Creates or opens the store in `dir` with the default [`StoreLimits`]; this handle's
    /// changes go to `node`'s outbox.
    ///
    /// Blocks while fjall recovers its journal; starts the writer thread.
    pub fn open(dir: &Path, node: u16) -> Result<Self, StoreError> {
        Self::open_with(dir, node, StoreLimits::default())
    }

    /// [`open`](Self::open) within `limits` (each raised to its minimum).
    pub fn open_with(dir: &Path, node: u16, limits: StoreLimits) -> Result<Self, StoreError> {
        let limits = limits.sane();
        let db = Database::builder(dir)
            .cache_size(limits.cache)
            .max_journaling_size(limits.journal)
            .open()
            .map_err(backend)?;
        let spaces = Arc::new(Spaces::open(&db, limits.memtable())?);
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            db,
            sp: Arc::clone(&spaces),
            stats: Arc::clone(&stats),
            seqs: HashMap::new(),
            write_buffer: limits.write_buffer,
        };
        // What the journal replayed may already be over the bound.
        writer.bound_write_buffer();
        let handle = std::thread::Builder::new()
            .name("zerocast-store-writer".into())
            .spawn(move || run_writer(writer, rx))
            .map_err(backend)?;
        Ok(Self {
            inner: Arc::new(Inner {
                spaces,
                stats,
                jobs: Some(tx),
                writer: Some(handle),
            }),
            node,
        })
    }

    /// A handle on the same database whose changes go to `node`'s outbox.
    pub fn with_node(&self, node: u16) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            node,
        }
    }

    /// The node whose outbox this handle writes.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// `(writes, fsyncs)` since open, shared by all handles: committed batches and journal
    /// fsyncs. Under concurrency `fsyncs` stays well below `writes` (group commit).
    pub fn stats(&self) -> (u64, u64) {
        (
            self.inner.stats.writes.load(Ordering::Relaxed),
            self.inner.stats.fsyncs.load(Ordering::Relaxed),
        )
    }

    /// Bytes held in memtables (written, not yet flushed to tables) after the last commit
    /// group: at most about [`StoreLimits::write_buffer`] plus one group's writes, and the
    /// memtables still being flushed.
    pub fn unflushed_bytes(&self) -> u64 {
        self.inner.stats.unflushed.load(Ordering::Relaxed)
    }

    /// Runs `f` on the writer thread; answers once its group is durable. `f` returns the value
    /// and whether the answer must wait for the group's fsync.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer) -> Result<(T, bool), StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |w: &mut Writer| {
            let r = f(w);
            let needs_sync = matches!(r, Ok((_, true)));
            Done {
                needs_sync,
                finish: Box::new(move |synced| {
                    let out = match r {
                        Ok((v, true)) => synced.map(|()| v).map_err(StoreError::Backend),
                        Ok((v, false)) => Ok(v),
                        Err(e) => Err(e),
                    };
                    // The caller may have gone away; the write stands.
                    let _ = tx.send(out);
                }),
            }
        });
        let jobs = self.inner.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Runs the read `f` on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Spaces) -> Result<T, StoreError> + Send + 'static,
    {
        let sp = Arc::clone(&self.inner.spaces);
        tokio::task::spawn_blocking(move || f(&sp))
            .await
            .map_err(backend)?
    }
}

#[async_trait]
impl MessageStore for EmbeddedStore {
    async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError> {
        let node = self.node;
        self.write(move |w| w.append(node, msg)).await
    }

    async fn get(&self, viewer: UserId, id: MessageId) -> Result<Message, StoreError> {
        self.read(move |sp| sp.visible(viewer, id)).await
    }

    async fn history(&self, conv: ConversationId, page: Page) -> Result<Vec<Message>, StoreError> {
        let limit = page.limit.clamp(1, HISTORY_MAX);
        self.read(move |sp| {
            let lo = match page.after {
                Some(a) => a.0.checked_add(1),
                None => Some(0),
            };
            let hi = match page.before {
                Some(b) => b.0.checked_sub(1),
                None => Some(u64::MAX),
            };
            let (Some(lo), Some(hi)) = (lo, hi) else {
                return Ok(Vec::new());
            };
            if lo > hi {
                return Ok(Vec::new());
            }
            let mut out = Vec::with_capacity(limit);
            for g in sp
                .messages
                .range(msg_key(&conv, lo)..=msg_key(&conv, hi))
                .rev()
                .take(limit)
            {
                let v = g.value().map_err(backend)?;
                out.push(serde_json::from_slice(&v).map_err(backend)?);
            }
            Ok(out)
        })
        .await
    }

    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let limit = limit.clamp(1, HISTORY_MAX);
        self.read(move |sp| {
            let mut out = Vec::new();
            for (peer, last) in sp.conv_list(user)?.into_iter().take(limit) {
                let conv = ConversationId::between(user, peer);
                let last_message = sp
                    .message_in(&conv, last)?
                    .ok_or_else(|| backend("corrupt store: convs points to missing message"))?;
                out.push(ConversationSummary {
                    peer,
                    last_message,
                    unread: sp.unread_in(user, peer)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn mark_read(
        &self,
        user: UserId,
        conv: ConversationId,
        up_to: MessageId,
    ) -> Result<MessageId, StoreError> {
        let node = self.node;
        self.write(move |w| w.mark_read(node, user, conv, up_to))
            .await
    }

    async fn unread(&self, user: UserId) -> Result<Unread, StoreError> {
        self.read(move |sp| {
            let mut u = Unread::default();
            for (peer, _) in sp.conv_list(user)? {
                let unread = sp.unread_in(user, peer)?;
                if unread > 0 {
                    u.total += unread;
                    u.conversations.push(UnreadIn { peer, unread });
                }
            }
            Ok(u)
        })
        .await
    }

    async fn edit(
        &self,
        user: UserId,
        id: MessageId,
        content: String,
        now_ms: u64,
    ) -> Result<Message, StoreError> {
        let node = self.node;
        self.write(move |w| w.edit(node, user, id, content, now_ms))
            .await
    }

    async fn delete(
        &self,
        user: UserId,
        id: MessageId,
        now_ms: u64,
    ) -> Result<Message, StoreError> {
        let node = self.node;
        self.write(move |w| w.delete(node, user, id, now_ms)).await
    }

    async fn since(
        &self,
        user: UserId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let limit = limit.clamp(1, SINCE_MAX);
        self.read(move |sp| {
            let Some(lo) = after.0.checked_add(1) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for g in sp
                .inbox
                .range(user_id_key(user, lo)..=user_id_key(user, u64::MAX))
                .take(limit)
            {
                let (k, conv) = g.into_inner().map_err(backend)?;
                let id = u64_at(&k, 16)?;
                let m = sp
                    .message_in(&conv_of(&conv)?, id)?
                    .ok_or_else(|| backend("corrupt store: inbox points to missing message"))?;
                out.push(m);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Outbox for EmbeddedStore {
    async fn outbox_read(
        &self,
        node: u16,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let limit = limit.min(OUTBOX_READ_MAX);
        self.read(move |sp| {
            let Some(lo) = after.checked_add(1) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for g in sp
                .outbox
                .range(outbox_key(node, lo)..=outbox_key(node, u64::MAX))
                .take(limit)
            {
                let (k, v) = g.into_inner().map_err(backend)?;
                out.push((u64_at(&k, 2)?, serde_json::from_slice(&v).map_err(backend)?));
            }
            Ok(out)
        })
        .await
    }

    async fn outbox_ack(&self, node: u16, up_to: u64) -> Result<(), StoreError> {
        self.write(move |w| w.outbox_ack(node, up_to)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_ids() {
        let conv = ConversationId::between(
            UserId(uuid::Uuid::from_u128(2)),
            UserId(uuid::Uuid::from_u128(1)),
        );
        assert!(msg_key(&conv, 255) < msg_key(&conv, 256));
        assert!(outbox_key(1, u64::MAX) < outbox_key(2, 0));
        assert_eq!(u64_at(&outbox_key(3, 77), 2).ok(), Some(77));
        assert!(u64_at(&[1, 2, 3], 0).is_err());
        assert_eq!(conv_of(&conv.to_bytes()).ok(), Some(conv));
    }

    #[test]
    fn limits_are_raised_to_their_minimums() {
        let l = StoreLimits {
            cache: 0,
            write_buffer: 0,
            journal: 0,
        }
        .sane();
        assert_eq!((l.write_buffer, l.journal), (MIN_WRITE_BUFFER, MIN_JOURNAL));
        assert_eq!(StoreLimits::default().memtable(), 4 << 20);
    }

    /// Writes several times the memtable bound into keyspaces made (by an earlier open) with
    /// memtables larger than all of it, so that only the writer's bound can rotate them: the
    /// memtables stay near the bound, and everything written stays readable (from the flushed
    /// tables) and survives a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memtables_stay_within_the_write_buffer_bound() {
        use crate::graph::{GraphStore, Profile};
        let dir = tempfile::tempdir().unwrap();
        let roomy = StoreLimits {
            write_buffer: 256 << 20,
            ..StoreLimits::default()
        };
        drop(EmbeddedStore::open_with(dir.path(), 0, roomy).unwrap());
        let limits = StoreLimits {
            write_buffer: MIN_WRITE_BUFFER,
            ..StoreLimits::default()
        };
        let bio = "x".repeat(500);
        let ids: Vec<UserId> = (0..20_000u128)
            .map(|i| UserId(uuid::Uuid::from_u128(i + 1)))
            .collect();
        {
            let store = EmbeddedStore::open_with(dir.path(), 0, limits).unwrap();
            let mut peak = 0;
            for chunk in ids.chunks(100) {
                let puts = chunk.iter().map(|id| {
                    store.put_profile(Profile {
                        id: *id,
                        display_name: "n".into(),
                        avatar_url: None,
                        bio: bio.clone(),
                        updated_at: 1,
                    })
                });
                for r in futures_util::future::join_all(puts).await {
                    r.unwrap();
                }
                peak = peak.max(store.unflushed_bytes());
            }
            // About 12 MB written into 64 MiB memtables. Rotated memtables still being
            // flushed count too (fjall holds writes while a keyspace has 4 of them).
            assert!(peak > 0 && peak < 6 * MIN_WRITE_BUFFER, "peak {peak}");
            let got = store.profiles(&ids).await.unwrap();
            assert!(got.iter().all(|p| p.as_ref().is_some_and(|p| p.bio == bio)));
        }
        let store = EmbeddedStore::open_with(dir.path(), 0, limits).unwrap();
        let got = store.profiles(&ids[..100]).await.unwrap();
        assert!(got.iter().all(Option::is_some));
    }
}
