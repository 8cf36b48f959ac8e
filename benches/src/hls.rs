//! LL-HLS viewers: each one a task with one connection (see `viewers` for the protocols and
//! the workers).
//!
//! A viewer plays like an LL-HLS player that only follows the live edge:
//!
//! ```text
//! GET index.m3u8 ──last line──▶ GET stream.m3u8 ──▶ next part (M, P)
//!       ▲                                              │
//!       │ 404                                          ▼
//!       └──── 400/503/error ◀── GET stream.m3u8?_HLS_msn=M&_HLS_part=P   (blocks)
//!                                     │ 200: response complete = announcement
//!                                     ▼
//!                          GET every newly listed part: latency = receipt − announcement
//! ```
//!
//! It does not fetch the preload hint, segments or the init segment, and plays nothing.

use std::cell::RefCell;
use std::time::Instant;

use zerocast_packager::check::{self, ParsedPlaylist};

use crate::client::Client;
use crate::stats::{ErrorKind, Stats};
use crate::viewers::{resolve, Fetcher, NewClient, Plan, Play, Rt, ERROR_BACKOFF};

/// LL-HLS viewers: blocking playlist reloads and every new part, on one connection each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hls;

impl Play for Hls {
    fn play<R: Rt, C: Client + 'static>(
        &self,
        plan: &Plan,
        stats: &RefCell<Stats>,
        new_client: &NewClient<C>,
    ) -> impl std::future::Future<Output = ()> {
        viewer::<R, C>(plan, stats, new_client())
    }
}

/// Where a viewer goes next.
enum Step {
    /// Fetch the multivariant playlist again (the stream or its instance changed).
    Restart,
    /// Fetch the full media playlist again.
    Reload,
}

/// One viewer on one connection, from its start until the end of the run.
pub(crate) async fn viewer<R: Rt, C: Client>(plan: &Plan, stats: &RefCell<Stats>, client: C) {
    let mut v = Viewer {
        plan,
        http: Fetcher { stats, client },
    };
    let backoff = || R::sleep_until(Instant::now() + ERROR_BACKOFF);
    let mut media: Option<String> = None;
    while Instant::now() < plan.end {
        let path = match &media {
            Some(p) => p.clone(),
            None => match v.media_path().await {
                Some(p) => p,
                None => {
                    backoff().await;
                    continue;
                }
            },
        };
        let step = v.follow(&path).await;
        if matches!(step, Some(Step::Restart)) {
            media = None;
        } else {
            media = Some(path);
        }
        if step.is_some() {
            backoff().await;
        }
    }
}

struct Viewer<'a, C> {
    plan: &'a Plan,
    http: Fetcher<'a, C>,
}

impl<C: Client> Viewer<'_, C> {
    fn bad_playlist(&self, detail: String) {
        self.http.error(ErrorKind::BadPlaylist, &detail);
    }

    /// Fetches the multivariant playlist and returns the media playlist's path.
    async fn media_path(&mut self) -> Option<String> {
        let index = self.plan.path.clone();
        let r = self.http.get(&index).await.ok()?;
        let text = String::from_utf8_lossy(&r.body);
        match text.lines().map(str::trim).rfind(|l| !l.is_empty()) {
            Some(uri) if !uri.starts_with('#') => Some(resolve(&index, uri)),
            _ => {
                self.bad_playlist(format!("{index}: no media playlist URI on the last line"));
                None
            }
        }
    }

    /// Fetches and parses a media playlist.
    async fn playlist(&mut self, target: &str) -> Result<ParsedPlaylist, Step> {
        let r = self.http.get(target).await.map_err(|e| match e.kind {
            ErrorKind::Status404 => Step::Restart,
            _ => Step::Reload,
        })?;
        let text = std::str::from_utf8(&r.body).map_err(|_| {
            self.bad_playlist(format!("{target}: not UTF-8"));
            Step::Reload
        })?;
        check::parse(text).map_err(|e| {
            self.bad_playlist(format!("{target}: {e}"));
            Step::Reload
        })
    }

    /// Follows the live edge of `media` with blocking reloads until the run ends (`None`) or
    /// something fails (`Some(step)`, the error already counted).
    async fn follow(&mut self, media: &str) -> Option<Step> {
        let mut pl = match self.playlist(media).await {
            Ok(pl) => pl,
            Err(step) => return Some(step),
        };
        self.http.stats.borrow_mut().full_playlists += 1;
        // Parts listed in the first playlist were announced before we looked.
        let mut seen = pl.last_part();
        while Instant::now() < self.plan.end {
            let Some((msn, part)) = pl.next_part() else {
                self.bad_playlist(format!("{media}: no segments or parts"));
                return Some(Step::Reload);
            };
            let target = format!("{media}?_HLS_msn={msn}&_HLS_part={part}");
            pl = match self.playlist(&target).await {
                Ok(pl) => pl,
                Err(step) => return Some(step),
            };
            let announced = Instant::now();
            self.http.stats.borrow_mut().reloads += 1;
            if pl.last_part().is_none_or(|last| last < (msn, part)) {
                let detail = format!("{target}: answered with last part {:?}", pl.last_part());
                self.http.error(ErrorKind::StaleReload, &detail);
                return Some(Step::Reload);
            }
            let fresh: Vec<String> = pl
                .segments
                .iter()
                .flat_map(|s| s.parts.iter().enumerate().map(move |(i, p)| (s.msn, i, p)))
                .filter(|(m, i, _)| seen.is_none_or(|s| (*m, *i) > s))
                .map(|(_, _, p)| resolve(media, &p.uri))
                .collect();
            seen = pl.last_part();
            for uri in fresh {
                if self.http.get(&uri).await.is_err() {
                    return Some(Step::Reload);
                }
                let latency = announced.elapsed();
                self.http.stats.borrow_mut().part_latency(latency);
            }
        }
        None
    }
}
