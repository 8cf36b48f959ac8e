//! Chat in the embedded store: the same fjall database, writer thread and group commit as
//! messages, the graph and the channels ([`crate::messaging::store::embedded`]).
//!
//! | keyspace    | key                                   | value                    |
//! | ----------- | ------------------------------------- | ------------------------ |
//! | `chat`      | room \| 0x00 \| id (8)                | message and client id JSON |
//! | `chat_idem` | room \| 0x00 \| from (16) \| client id | id (8)                   |
//! | `chat_last` | room \| 0x00 \| user (16)             | last slow-mode post, ms (8) |
//!
//! Room names never contain 0x00 ([`crate::channels::valid_name`]), so a room's messages are
//! exactly the prefix `room | 0x00`, in id (time) order. A post runs as one job on the writer
//! thread, which runs one job at a time: the client-id lookup, the slow-mode check, the write of
//! the message with its index entries and the deletion of what falls out of retention are one
//! atomic step and one batch, answered after the group's fsync.
//!
//! Retention costs each post a walk over the room's newest `keep` keys (the room holds no more
//! than `keep` before the post), on the writer thread.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ChatPost, ChatStore, Posted, READ_MAX};
use crate::chat::rooms::ChatMessage;
use crate::id::{MessageId, UserId};
use crate::messaging::store::embedded::{backend, EmbeddedStore, Spaces};
use crate::messaging::store::StoreError;

/// What the `chat` keyspace holds per message.
#[derive(Serialize, Deserialize)]
struct Stored {
    message: ChatMessage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

fn room_prefix(room: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(room.len() + 1 + 24);
    k.extend_from_slice(room.as_bytes());
    k.push(0);
    k
}

fn msg_key(room: &str, id: MessageId) -> Vec<u8> {
    let mut k = room_prefix(room);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn idem_key(room: &str, from: UserId, client_id: &str) -> Vec<u8> {
    let mut k = room_prefix(room);
    k.extend_from_slice(from.0.as_bytes());
    k.extend_from_slice(client_id.as_bytes());
    k
}

fn last_key(room: &str, user: UserId) -> Vec<u8> {
    let mut k = room_prefix(room);
    k.extend_from_slice(user.0.as_bytes());
    k
}

fn u64_of(v: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| backend("corrupt store: chat integer"))
}

fn decode(v: &[u8]) -> Result<Stored, StoreError> {
    serde_json::from_slice(v).map_err(backend)
}

/// The room's history (its newest `keep`), newest first, at most `take`, stopping at ids ≤
/// `stop`.
fn newest(
    sp: &Spaces,
    room: &str,
    keep: usize,
    stop: Option<MessageId>,
) -> Result<Vec<ChatMessage>, StoreError> {
    let mut out = Vec::new();
    for g in sp.chat.prefix(room_prefix(room)).rev().take(keep.max(1)) {
        let (_, v) = g.into_inner().map_err(backend)?;
        let m = decode(&v)?.message;
        if stop.is_some_and(|s| m.id <= s) {
            break;
        }
        out.push(m);
    }
    Ok(out)
}

#[async_trait]
impl ChatStore for EmbeddedStore {
    async fn post(&self, post: ChatPost) -> Result<Posted, StoreError> {
        self.write(move |w| {
            let sp = w.spaces();
            let ChatPost {
                message,
                client_id,
                slow_ms,
                keep,
            } = post;
            let room = message.room.clone();
            if let Some(cid) = &client_id {
                if let Some(id) = sp
                    .chat_idem
                    .get(idem_key(&room, message.from, cid))
                    .map_err(backend)?
                {
                    let id = MessageId(u64_of(&id)?);
                    if let Some(v) = sp.chat.get(msg_key(&room, id)).map_err(backend)? {
                        return Ok((Posted::Duplicate(decode(&v)?.message), false));
                    }
                }
            }
            let last = last_key(&room, message.from);
            if slow_ms > 0 {
                if let Some(v) = sp.chat_last.get(&last).map_err(backend)? {
                    let next = u64_of(&v)?.saturating_add(slow_ms);
                    if message.at < next {
                        // A clock behind the one that recorded the last post waits no longer
                        // than the interval.
                        return Ok((Posted::SlowMode((next - message.at).min(slow_ms)), false));
                    }
                }
            }
            let mut b = w.batch();
            let stored = Stored {
                message: message.clone(),
                client_id: client_id.clone(),
            };
            b.insert(
                &sp.chat,
                msg_key(&room, message.id),
                serde_json::to_vec(&stored).map_err(backend)?,
            );
            if let Some(cid) = &client_id {
                b.insert(
                    &sp.chat_idem,
                    idem_key(&room, message.from, cid),
                    message.id.to_be_bytes(),
                );
            }
            if slow_ms > 0 {
                b.insert(&sp.chat_last, last, message.at.to_be_bytes());
            }
            // Retention: with this message, the room keeps its newest `keep`; the room held at
            // most `keep` before (fewer if `keep` just grew), so this usually deletes one.
            let new_key = msg_key(&room, message.id);
            let mut kept = 1;
            for g in sp.chat.prefix(room_prefix(&room)).rev() {
                let (k, v) = g.into_inner().map_err(backend)?;
                if *k == *new_key {
                    continue;
                }
                if kept < keep.max(1) {
                    kept += 1;
                    continue;
                }
                let old = decode(&v)?;
                if let Some(cid) = &old.client_id {
                    b.remove(&sp.chat_idem, idem_key(&room, old.message.from, cid));
                }
                b.remove(&sp.chat, k);
            }
            w.commit_plain(b)?;
            Ok((Posted::Created(message), true))
        })
        .await
    }

    async fn recent(
        &self,
        room: &str,
        limit: usize,
        keep: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let room = room.to_owned();
        let take = limit.clamp(1, READ_MAX).min(keep.max(1));
        self.read(move |sp| {
            let mut out = newest(sp, &room, take, None)?;
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn since(
        &self,
        room: &str,
        after: MessageId,
        limit: usize,
        keep: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let room = room.to_owned();
        let limit = limit.clamp(1, READ_MAX);
        self.read(move |sp| {
            let mut out = newest(sp, &room, keep, Some(after))?;
            out.reverse();
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn forget_posts_before(&self, before_ms: u64) -> Result<(), StoreError> {
        self.write(move |w| {
            let sp = w.spaces();
            let mut b = w.batch();
            let mut n = 0usize;
            for g in sp.chat_last.iter() {
                let (k, v) = g.into_inner().map_err(backend)?;
                if u64_of(&v)? < before_ms {
                    b.remove(&sp.chat_last, k);
                    n += 1;
                }
            }
            if n == 0 {
                return Ok(((), false));
            }
            w.commit_plain(b)?;
            Ok(((), true))
        })
        .await
    }
}
