//! Identities: users ([`UserId`], the `sub` of their token) and time-ordered 64-bit message
//! ids ([`MessageId`], Snowflake layout).
//!
//! ```text
//!  63      22 21      12 11        0
//! [ms since 2024-01-01 | node (10) | sequence (12)]
//! ```
//! Ids from one node strictly increase; ids from different nodes sort by time to the
//! millisecond. Serialised as decimal strings in JSON (JavaScript numbers stop at 2^53).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A user, as the `sub` of their token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// 2024-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: u64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;

/// A message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageId(pub u64);

impl MessageId {
    /// Milliseconds since the Unix epoch at which the id was made.
    pub fn unix_ms(self) -> u64 {
        (self.0 >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
    }

    /// The node that made the id.
    pub fn node(self) -> u16 {
        ((self.0 >> SEQ_BITS) & ((1 << NODE_BITS) - 1)) as u16
    }

    /// Big-endian bytes: sort as the id does.
    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MessageId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(MessageId)
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            S(String),
            N(u64),
        }
        match Repr::deserialize(d)? {
            Repr::N(n) => Ok(MessageId(n)),
            Repr::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Makes ids for one node. Thread-safe.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    state: Mutex<(u64, u64)>,
}

impl IdGenerator {
    /// A generator for `node` (0..1024).
    pub fn new(node: u16) -> Self {
        Self {
            node: u64::from(node) & ((1 << NODE_BITS) - 1),
            state: Mutex::new((0, 0)),
        }
    }

    /// The next id at wall-clock time `now_unix_ms`. Never goes backwards: if the clock does, or
    /// 4096 ids were made this millisecond, it borrows from the next millisecond.
    pub fn next_at(&self, now_unix_ms: u64) -> MessageId {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_unix_ms.saturating_sub(EPOCH_MS);
        let (last, seq) = *st;
        let (ms, seq) = if now > last {
            (now, 0)
        } else if seq + 1 < (1 << SEQ_BITS) {
            (last, seq + 1)
        } else {
            (last + 1, 0)
        };
        *st = (ms, seq);
        MessageId((ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq)
    }

    /// The next id now.
    pub fn next(&self) -> MessageId {
        self.next_at(crate::now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_decodable() {
        let g = IdGenerator::new(7);
        let t = EPOCH_MS + 123_456;
        let mut prev = MessageId(0);
        for i in 0..10_000u64 {
            // The clock stalls, and once goes back.
            let now = if i == 5000 { t - 10 } else { t + i / 5000 };
            let id = g.next_at(now);
            assert!(id > prev);
            assert_eq!(id.node(), 7);
            prev = id;
        }
        assert!(g.next_at(t).unix_ms() >= t);
        let json = serde_json::to_string(&prev).unwrap();
        assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), prev);
    }
}
