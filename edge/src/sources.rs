//! Which publisher a stream packages: its primary, or a backup that takes over when the
//! primary's frames stop.
//!
//! A second publisher may publish a live stream's name as its backup
//! (`rtmp://HOST/live/NAME?role=backup`, with the same key). Its frames are read and dropped
//! while the primary's arrive. When the primary has sent nothing for `backup-gap` (1 s by
//! default), or has left, the backup's next keyframe continues the stream's timeline after a
//! discontinuity; when the primary sends again (the same connection after a stall, or a new
//! one), it takes over at its next keyframe the same way. Viewers see one
//! `EXT-X-DISCONTINUITY` per switch and keep playing.
//!
//! This is the decision alone, without clocks or media of its own: the stream asks it about
//! every track and frame, and acts on the answer (see [`crate::hub::Stream::frame_from`]).

use std::time::{Duration, Instant};

use zerocast_core::{Track, TrackId, TrackKind};

/// A publisher's place in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The stream's own publisher.
    Primary,
    /// Publishes the same stream, used while the primary is silent or gone.
    Backup,
}

impl Role {
    /// From a publish URL's query (`role=backup`); no `role` is the primary.
    pub fn from_query(query: Option<&str>) -> Result<Role, String> {
        let value = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|p| p.strip_prefix("role="));
        match value {
            None | Some("primary") => Ok(Role::Primary),
            Some("backup") => Ok(Role::Backup),
            Some(other) => Err(format!(
                "unknown role {other:?}: publish with ?role=backup, or without a role"
            )),
        }
    }

    fn index(self) -> usize {
        match self {
            Role::Primary => 0,
            Role::Backup => 1,
        }
    }

    fn other(self) -> Role {
        match self {
            Role::Primary => Role::Backup,
            Role::Backup => Role::Primary,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
        })
    }
}

/// One publisher of the stream.
#[derive(Debug)]
struct Slot {
    conn: u64,
    /// When its last frame arrived.
    last: Option<Instant>,
    /// Its newest decoder configurations, fed to the packager when it takes over.
    video: Option<Track>,
    audio: Option<Track>,
}

/// What to do with a frame.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Package it.
    Feed,
    /// Not the publisher being packaged: drop it.
    Drop,
    /// This publisher takes over with this frame: end the current stretch of timeline
    /// (a discontinuity), feed `tracks`, then the frame.
    Switch {
        /// The publisher that takes over.
        to: Role,
        /// Its decoder configurations.
        tracks: Vec<Track>,
        /// How long the publisher it replaces had sent nothing (`None`: it had left).
        silent_for: Option<Duration>,
    },
}

/// What a leaving connection was.
#[derive(Debug, PartialEq, Eq)]
pub enum Left {
    /// The publisher being packaged; `standby` (a connection id) takes over at its next
    /// keyframe, or, when there is none, the stream waits for a publisher to come back.
    Active {
        /// The publisher on standby, if any.
        standby: Option<u64>,
    },
    /// A publisher on standby.
    Standby,
    /// Not a publisher of this stream.
    Unknown,
}

/// The publishers of one stream and which of them is packaged.
#[derive(Debug)]
pub struct Sources {
    slots: [Option<Slot>; 2],
    active: Option<Role>,
    gap: Duration,
}

impl Sources {
    /// A stream published first by `conn` as `role`, packaged from the start.
    pub fn new(conn: u64, role: Role, gap: Duration) -> Self {
        let mut s = Sources {
            slots: [None, None],
            active: Some(role),
            gap,
        };
        s.slots[role.index()] = Some(Slot::new(conn));
        s
    }

    /// The role of `conn`, if it publishes this stream.
    pub fn role_of(&self, conn: u64) -> Option<Role> {
        [Role::Primary, Role::Backup].into_iter().find(|r| {
            self.slots[r.index()]
                .as_ref()
                .is_some_and(|s| s.conn == conn)
        })
    }

    /// The connection being packaged.
    #[cfg(test)]
    fn active_conn(&self) -> Option<u64> {
        self.active
            .and_then(|r| self.slots[r.index()].as_ref())
            .map(|s| s.conn)
    }

    /// `conn` joins as `role`, on standby while another publisher is packaged and packaged at
    /// once when none is; false when that role is taken.
    pub fn join(&mut self, conn: u64, role: Role) -> bool {
        let slot = &mut self.slots[role.index()];
        if slot.is_some() {
            return false;
        }
        *slot = Some(Slot::new(conn));
        if self.active.is_none() {
            self.active = Some(role);
        }
        true
    }

    /// `conn` left (or stopped publishing).
    pub fn leave(&mut self, conn: u64) -> Left {
        let Some(role) = self.role_of(conn) else {
            return Left::Unknown;
        };
        self.slots[role.index()] = None;
        if self.active != Some(role) {
            return Left::Standby;
        }
        self.active = None;
        Left::Active {
            standby: self.slots[role.other().index()].as_ref().map(|s| s.conn),
        }
    }

    /// A decoder configuration from `conn`: kept for a later takeover; true when `conn` is
    /// packaged (feed it now).
    pub fn track(&mut self, conn: u64, track: &Track) -> bool {
        let Some(role) = self.role_of(conn) else {
            return false;
        };
        if let Some(slot) = self.slots[role.index()].as_mut() {
            match track.kind() {
                TrackKind::Video => slot.video = Some(track.clone()),
                TrackKind::Audio => slot.audio = Some(track.clone()),
            }
        }
        self.active == Some(role)
    }

    /// A frame from `conn` on `track` (a keyframe or not), arrived at `now`.
    pub fn frame(&mut self, conn: u64, track: TrackId, keyframe: bool, now: Instant) -> Step {
        let Some(role) = self.role_of(conn) else {
            return Step::Drop;
        };
        let Some(slot) = self.slots[role.index()].as_mut() else {
            return Step::Drop;
        };
        slot.last = Some(now);
        if self.active == Some(role) {
            return Step::Feed;
        }
        // A clean start: a video keyframe, or any frame of an audio-only publisher.
        let sync = match &slot.video {
            Some(v) => v.id() == track && keyframe,
            None => slot.audio.is_some(),
        };
        if !sync {
            return Step::Drop;
        }
        let active = self.active.and_then(|r| self.slots[r.index()].as_ref());
        let silent_for = active.map(|a| a.last.map_or(Duration::MAX, |t| now - t));
        // The primary takes back whenever it sends; the backup only fills a silence.
        let take = role == Role::Primary || silent_for.is_none_or(|d| d >= self.gap);
        if !take {
            return Step::Drop;
        }
        let slot = self.slots[role.index()].as_ref().expect("checked above");
        let tracks = slot
            .video
            .iter()
            .chain(slot.audio.iter())
            .cloned()
            .collect();
        self.active = Some(role);
        Step::Switch {
            to: role,
            tracks,
            silent_for,
        }
    }
}

impl Slot {
    fn new(conn: u64) -> Self {
        Slot {
            conn,
            last: None,
            video: None,
            audio: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Duration = Duration::from_secs(1);

    /// A video track (a 1280x720 libx264 avcC).
    fn video() -> Track {
        use bytes::Bytes;
        use zerocast_core::codec::avc::AvcConfig;
        use zerocast_core::{Timescale, VideoCodec};
        const AVCC: &[u8] = &[
            0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xb4,
            0x02, 0x80, 0x2d, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e,
            0x47, 0x8c, 0x19, 0x50, 0x01, 0x00, 0x04, 0x68, 0xef, 0x0f, 0xcb, 0xfd, 0xf8, 0xf8,
            0x00,
        ];
        Track::Video {
            id: TrackId::VIDEO,
            timescale: Timescale::VIDEO,
            codec: VideoCodec::Avc(AvcConfig::parse(Bytes::from_static(AVCC)).unwrap()),
        }
    }

    #[test]
    fn roles_from_the_publish_query() {
        assert_eq!(Role::from_query(None), Ok(Role::Primary));
        assert_eq!(Role::from_query(Some("key=k")), Ok(Role::Primary));
        assert_eq!(
            Role::from_query(Some("key=k&role=backup")),
            Ok(Role::Backup)
        );
        assert_eq!(Role::from_query(Some("role=primary")), Ok(Role::Primary));
        assert!(Role::from_query(Some("role=spare")).is_err());
    }

    #[test]
    fn the_backup_fills_a_silence_at_its_keyframe_and_the_primary_takes_back() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let v = video();
        let mut s = Sources::new(1, Role::Primary, GAP);
        assert!(s.track(1, &v));
        assert!(s.join(2, Role::Backup));
        assert!(!s.join(3, Role::Backup), "one backup");
        assert!(!s.track(2, &v), "the backup's configuration waits");
        assert_eq!(s.frame(1, v.id(), true, at(0)), Step::Feed);
        assert_eq!(s.frame(2, v.id(), true, at(10)), Step::Drop);
        // The primary goes quiet; within the gap nothing changes.
        assert_eq!(s.frame(2, v.id(), true, at(900)), Step::Drop);
        // Past the gap, a non-keyframe still waits...
        assert_eq!(s.frame(2, v.id(), false, at(1100)), Step::Drop);
        // ...and the next keyframe takes over.
        match s.frame(2, v.id(), true, at(1200)) {
            Step::Switch {
                to: Role::Backup,
                tracks,
                silent_for,
            } => {
                assert_eq!(tracks, vec![v.clone()]);
                assert_eq!(silent_for, Some(Duration::from_millis(1200)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.active_conn(), Some(2));
        assert_eq!(s.frame(2, v.id(), false, at(1233)), Step::Feed);
        // The primary sends again: dropped until its keyframe, then it takes back at once.
        assert_eq!(s.frame(1, v.id(), false, at(1300)), Step::Drop);
        assert!(matches!(
            s.frame(1, v.id(), true, at(1400)),
            Step::Switch {
                to: Role::Primary,
                ..
            }
        ));
        assert_eq!(s.frame(2, v.id(), true, at(1450)), Step::Drop);
    }

    #[test]
    fn a_leaving_primary_hands_over_without_waiting_for_the_gap() {
        let v = video();
        let now = Instant::now();
        let mut s = Sources::new(1, Role::Primary, GAP);
        s.track(1, &v);
        assert!(s.join(2, Role::Backup));
        s.track(2, &v);
        assert_eq!(s.frame(1, v.id(), true, now), Step::Feed);
        assert_eq!(s.leave(1), Left::Active { standby: Some(2) });
        assert!(matches!(
            s.frame(2, v.id(), true, now),
            Step::Switch {
                to: Role::Backup,
                silent_for: None,
                ..
            }
        ));
        // A returning primary joins on standby and takes back at its keyframe.
        assert!(s.join(3, Role::Primary));
        s.track(3, &v);
        assert!(matches!(
            s.frame(3, v.id(), true, now),
            Step::Switch {
                to: Role::Primary,
                ..
            }
        ));
        assert_eq!(s.leave(2), Left::Standby);
        assert_eq!(s.leave(3), Left::Active { standby: None });
        assert_eq!(s.leave(3), Left::Unknown);
        // With nobody packaged, whoever joins is packaged.
        assert!(s.join(4, Role::Backup));
        assert_eq!(s.active_conn(), Some(4));
    }

    #[test]
    fn an_unknown_connection_is_ignored() {
        let v = video();
        let mut s = Sources::new(1, Role::Primary, GAP);
        assert_eq!(s.frame(9, v.id(), true, Instant::now()), Step::Drop);
        assert!(!s.track(9, &v));
        assert_eq!(s.leave(9), Left::Unknown);
    }
}
