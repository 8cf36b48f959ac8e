//! `GET /api/streams` (JSON) and `GET /metrics` (OpenMetrics text). Unlike media, other
//! origins may read them only when `media-api-cors` allows ([`Cors::Api`]).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::Serialize;
use zerocast_core::Track;

use super::response::{Body, Cors, Response};
use crate::hub::{lock, Publisher};
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
}

pub(crate) fn streams(ctx: &Ctx) -> Response {
    let mut out = Vec::new();
    for s in ctx.hub.all() {
        let tracks = s.view().tracks.clone();
        let state = match *lock(&s.publisher) {
            Publisher::Live => "live",
            Publisher::Gone(_) => "reconnecting",
            Publisher::Ended(_) => "ended",
        };
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
        out.push(info);
    }
    let body = serde_json::to_vec_pretty(&serde_json::json!({ "streams": out }))
        .unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(
        200,
        "application/json",
        Body::Full(vec![Bytes::from(body)]),
        Kind::Other,
    );
    r.cors = Cors::Api;
    r
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
