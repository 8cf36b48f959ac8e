//! RTMP and RTMPS connections: the socket loop around `zerocast_ingest::ServerSession`.
//!
//! Read, `handle_input`, drain `poll_output` (bytes to send, events to act on), write. A publish
//! request pauses the session until [`crate::publish`] decides (a key check or a webhook call)
//! and the hub grants the name; media then goes to the stream's packager on this core. A
//! refused publisher gets `NetStream.Publish.Denied` with the reason, and the connection closes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use zerocast_ingest::chunk::ChunkError;
use zerocast_ingest::session::{Output, ServerSession, SessionError, SessionEvent};

use crate::hub::{lock, PublishError, Stream};
use crate::limits::held_back;
use crate::metrics::Limit;
use crate::sources::Role;
use crate::transport::Transport;
use crate::Ctx;

/// A publisher silent for this long is dropped.
const IDLE: Duration = Duration::from_secs(30);
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
const READ_SIZE: usize = 64 * 1024;

/// The one RTMP application name accepted for publishing.
const APP: &str = "live";

struct Conn {
    id: u64,
    peer: SocketAddr,
    session: ServerSession,
    publishing: Option<Arc<Stream>>,
    /// A publish request waiting for the policy's decision: (request id, app, name as sent).
    pending: Option<(u32, String, String)>,
    /// A publish was refused: close once the answer is written.
    refused: bool,
    out: Vec<Bytes>,
}

/// Serves one RTMP (or, over a TLS stream, RTMPS) connection until it closes or misbehaves.
pub(crate) async fn serve_conn<S: Transport>(mut stream: S, peer: SocketAddr, ctx: Arc<Ctx>) {
    let mut conn = Conn {
        id: ctx.hub.next_conn_id(),
        peer,
        session: ServerSession::with_limits(ctx.config.rtmp_limits()),
        publishing: None,
        pending: None,
        refused: false,
        out: Vec::new(),
    };
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    // Handshake, connect and publish must be done by then; a publisher is then held to IDLE.
    let publish_limit = Duration::from_millis(ctx.config.rtmp_publish_timeout);
    let publish_due = Instant::now() + publish_limit;
    let mut published = false;
    let result: Result<(), String> = async {
        loop {
            let seen = ctx.shutdown_signal.seq();
            if ctx.shutting_down() {
                return Ok(());
            }
            published |= conn.publishing.is_some();
            let wait = if published {
                IDLE
            } else {
                publish_due.saturating_duration_since(Instant::now())
            };
            let stop = ctx.shutdown_signal.changed(seen);
            match stream.read_into(&mut buf, READ_SIZE, wait, stop).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(_) if ctx.shutting_down() => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !published => {
                    ctx.metrics.count_limit(Limit::RtmpPublishTimeout);
                    return Err(format!(
                        "no publish within {} ms of connecting",
                        publish_limit.as_millis()
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(format!("read: {e}")),
            }
            let handled = conn.session.handle_input(&mut buf);
            // Send what the session produced before reporting an error, so the peer sees it.
            conn.drain(&ctx);
            if let Some(request) = conn.pending.take() {
                conn.decide(&ctx, request).await;
                conn.drain(&ctx);
            }
            if !conn.out.is_empty() {
                let out = std::mem::take(&mut conn.out);
                stream
                    .write_bufs(&out, WRITE_DEADLINE)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            handled.map_err(|e| {
                if let Some(limit) = limit_of(&e) {
                    ctx.metrics.count_limit(limit);
                }
                e.to_string()
            })?;
            if conn.refused {
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = result {
        ctx.metrics.count_rtmp_error();
        let stream = conn.publishing.as_ref().map_or("-", |s| s.name.as_str());
        tracing::warn!(peer = %conn.peer, stream, "rtmp connection closed: {e}");
    }
    if let Some(s) = conn.publishing.take() {
        tracing::info!(stream = %s.name, peer = %conn.peer, "publisher disconnected");
        ctx.hub.release(&s, conn.id);
        ctx.auth.unpublished(APP, &s.name, conn.peer);
    }
}

impl Conn {
    /// Answers a publish request: the policy decides (a key check or a webhook call, bounded),
    /// then the hub grants the name.
    async fn decide(&mut self, ctx: &Ctx, (request_id, app, raw): (u32, String, String)) {
        // The key may ride on the name (`NAME?key=KEY`, OBS's stream key) or on the app
        // (`rtmp://HOST/live?key=KEY` + name).
        let (app, app_key) = zerocast_ingest::split_stream_key(&app);
        let (name, name_key) = zerocast_ingest::split_stream_key(&raw);
        let key = name_key.or(app_key);
        // `NAME?role=backup`: a backup publisher of the same stream (see crate::sources).
        let verdict = match Role::from_query(raw.split_once('?').map(|(_, q)| q)) {
            _ if self.publishing.is_some() => {
                Err("this connection is already publishing".to_owned())
            }
            Err(why) => Err(why),
            Ok(_) if app != APP => Err(format!(
                "unknown application {app:?}: publish to rtmp://HOST/{APP}/NAME"
            )),
            Ok(_) if !crate::hub::valid_name(name) => Err(format!("invalid stream name {name:?}")),
            Ok(role) => match ctx.auth.authorize(app, name, key, self.peer).await {
                Ok(grant) => ctx
                    .hub
                    .claim(name, (self.id, role), grant, crate::unix_ms())
                    .map(|stream| (stream, role))
                    .map_err(|e| {
                        if matches!(e, PublishError::TooManyStreams(_)) {
                            ctx.metrics.count_limit(Limit::MaxStreams);
                        }
                        e.to_string()
                    }),
                Err(why) => Err(why),
            },
        };
        match verdict {
            Ok((stream, role)) => {
                tracing::info!(stream = %name, peer = %self.peer, private = stream.is_private(), %role, "publish started");
                self.publishing = Some(stream);
                if let Err(e) = self.session.accept_publish(request_id) {
                    tracing::warn!(stream = %name, "accepting publish: {e}");
                }
            }
            Err(why) => {
                ctx.metrics.count_publish_refused();
                // A flood of refused names or keys must not flood the log.
                if let Some(held) = ctx.publish_refusals.admit(Instant::now()) {
                    let held = held_back(held);
                    tracing::warn!(stream = %name, peer = %self.peer, "publish refused: {why}{held}");
                }
                self.refused = true;
                if let Err(e) = self.session.reject_publish(request_id, &why) {
                    tracing::warn!(stream = %name, "refusing publish: {e}");
                }
            }
        }
    }

    /// Acts on everything the session has queued.
    fn drain(&mut self, ctx: &Ctx) {
        while let Some(o) = self.session.poll_output() {
            match o {
                Output::Send(b) => self.out.push(b),
                Output::Event(ev) => self.event(ev, ctx),
            }
        }
    }

    fn event(&mut self, ev: SessionEvent, ctx: &Ctx) {
        match ev {
            SessionEvent::PublishRequested {
                request_id,
                app,
                name,
            } => self.pending = Some((request_id, app, name)),
            SessionEvent::PublishFinished { .. } => {
                if let Some(s) = self.publishing.take() {
                    tracing::info!(stream = %s.name, "publish finished");
                    ctx.hub.release(&s, self.id);
                    ctx.auth.unpublished(APP, &s.name, self.peer);
                }
            }
            SessionEvent::Metadata(meta) => {
                if let Some(s) = &self.publishing {
                    *lock(&s.meta_fps) = meta.frame_rate;
                }
            }
            SessionEvent::Track(track) => {
                if let Some(s) = &self.publishing {
                    tracing::info!(stream = %s.name, codec = %track.codec_string(), "track");
                    s.track_from(self.id, track);
                }
            }
            SessionEvent::Frame(frame) => {
                if let Some(s) = &self.publishing {
                    s.frame_from(self.id, frame, crate::unix_ms(), &ctx.metrics);
                }
            }
            _ => {}
        }
    }
}

/// The limit that ended a session, for `zerocast_limit_hits_total`.
fn limit_of(e: &SessionError) -> Option<Limit> {
    match e {
        SessionError::Chunk(ChunkError::MessageTooLong { .. }) => Some(Limit::RtmpMessageSize),
        SessionError::Chunk(ChunkError::ChunkSizeTooLarge { .. }) => Some(Limit::RtmpChunkSize),
        _ => None,
    }
}
