//! `GET /api/streams` and `GET /api/streams/NAME` (JSON), and `GET /metrics` (OpenMetrics text). Unlike media, other
//! origins may read them only when `media-api-cors` allows ([`Cors::Api`]).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::Serialize;
use zerocast_core::Track;

use super::response::{Body, Cors, Response};
use crate::hub::{lock, Publisher, Stream};
use crate::metrics::{self, Kind};
use crate::Ctx;

#[derive(Serialize)]
struct StreamInfo {
    name: String,
    state: &'static str,
    video_codec: Option<String>,
    audio_codec: Option<String>,
    codecs: Vec<String>,
    resolution: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    frame_rate: Option<f64>,
    bitrate: u64,
    audio_sample_rate: Option<u32>,
    audio_channels: Option<u8>,
    viewers: usize,
    uptime_seconds: u64,
    playlist: String,
    /// The DASH MPD of the same media.
    mpd: String,
    /// Playback needs a token (`?token=`).
    private: bool,
    /// The channel owner's user id, for a stream published with its key.
    owner: Option<String>,
    /// The owner's display name, when they set a profile.
    owner_name: Option<String>,
}

/// `GET /api/streams`: every stream in the hub.
pub(crate) fn streams(ctx: &Ctx) -> Response {
    let out: Vec<StreamInfo> = ctx.hub.all().iter().map(|s| info(s)).collect();
    json(&serde_json::json!({ "streams": out }))
}

/// `GET /api/streams/NAME`: one stream (what a watch page polls), or 404.
pub(crate) fn stream(ctx: &Ctx, name: &str) -> Response {
    match ctx.hub.get(name) {
        Some(s) => json(&serde_json::json!({ "stream": info(&s) })),
        None => Response::text(404, "no such stream"),
    }
}

fn json(v: &serde_json::Value) -> Response {
    let body = serde_json::to_vec_pretty(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(
        200,
        "application/json",
        Body::Full(vec![Bytes::from(body)]),
        Kind::Other,
    );
    r.cors = Cors::Api;
    r
}

fn info(s: &Stream) -> StreamInfo {
    let tracks = s.view().tracks.clone();
    let state = match *lock(&s.publisher) {
        Publisher::Live => "live",
        Publisher::Gone(_) => "reconnecting",
        Publisher::Ended(_) => "ended",
    };
    let (owner, owner_name) = s.owner();
    let mut info = StreamInfo {
        name: s.name.clone(),
        state,
        video_codec: None,
        audio_codec: None,
        codecs: tracks.iter().map(Track::codec_string).collect(),
        resolution: None,
        width: None,
        height: None,
        frame_rate: s.frame_rate(),
        bitrate: s.bitrate(),
        audio_sample_rate: None,
        audio_channels: None,
        viewers: s.stats.viewers.load(Ordering::Relaxed),
        uptime_seconds: s.started.elapsed().as_secs(),
        playlist: format!("/live/{}/index.m3u8", s.name),
        mpd: format!("/live/{}/index.mpd", s.name),
        private: s.is_private(),
        owner: owner.map(|id| uuid::Uuid::from_u128(id).to_string()),
        owner_name: owner_name.map(|n| n.to_string()),
    };
    for t in tracks.iter() {
        match t {
            Track::Video { codec, .. } => {
                info.video_codec = Some(codec.name().to_owned());
                if let Some((w, h)) = codec.dimensions() {
                    info.resolution = Some(format!("{w}x{h}"));
                    info.width = Some(w);
                    info.height = Some(h);
                }
            }
            Track::Audio { codec, .. } => {
                info.audio_codec = Some(codec.name().to_owned());
                info.audio_sample_rate = Some(codec.sample_rate());
                info.audio_channels = Some(codec.channels());
            }
        }
    }
    info
}

pub(crate) fn metrics(ctx: &Ctx) -> Response {
    let mut s = String::with_capacity(8192);
    ctx.metrics.encode(&mut s);
    let mut r = Response::new(
        200,
        metrics::CONTENT_TYPE,
        Body::Full(vec![Bytes::from(s)]),
        Kind::Other,
    );
    r.cache = "no-store";
    r.cors = Cors::Api;
    r
}
