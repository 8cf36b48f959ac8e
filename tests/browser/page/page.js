// In-page measuring code shared by every player (loaded after the player library and its
// adapter, page/<player>.js, which defines window.ZC_ADAPTER).
//
// All state lives in window.__zc; __zc.snapshot() returns the summary in the final JSON
// shape (so a late or hung page still gives the last polled numbers).
//
// Adapter contract: ZC_ADAPTER = { name, latencySource, create(ctx) -> api }, where
//   ctx = { video, url, config (from --player-config), debug, now(), beginStall(why),
//           endStall(), error({type, details, fatal, httpStatus?, url?, message?}), play(),
//           merge(defaults, overrides) (deep) }
//   api = { version, load(), latency() -> seconds|null, info() -> {field: value} }
// create() wires the player's events and throws if the player cannot run here; load()
// starts loading params.url. info() returns the player-specific fields of the JSON
// (targetLatency, lowLatencyMode, activeCodecs, ...); the snapshot carries them in `info`.
(function () {
  const params = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  const adapter = window.ZC_ADAPTER;
  const video = document.getElementById('v');
  const now = () => performance.now() / 1000;
  const S = window.__zc = {
    ready: false, setupError: null, player: adapter ? adapter.name : null, playerVersion: null,
    latencySource: adapter ? adapter.latencySource : null,
    started: false, startedAt: null, startupMs: null,
    playedSeconds: 0, lastCT: null, lastWall: null,
    stalls: 0, stalled: false, stallStart: 0, stallCT: 0, stallSeconds: 0,
    waitingEvents: 0, seekWaits: 0, seeks: 0, lateSeeks: 0,
    errors: [], errorCount: 0, fatalErrors: 0,
    latency: [], maxPlaybackRate: 1,
    protocols: {}, codecs: null,
    // The slowest requests to the stream's origin (URL, start and duration in ms): when a
    // playback stalls, this names the request that held it up.
    slowest: [],
    stopped: false,
  };
  // Which protocol carried each request to the stream's origin (h2, h3, http/1.1), from
  // Resource Timing; entries are counted and cleared as they come so the buffer never fills.
  const streamOrigin = new URL(params.url).origin;
  function countProtocols() {
    const entries = performance.getEntriesByType('resource');
    for (const e of entries) {
      if (!e.name.startsWith(streamOrigin)) continue;
      const p = e.nextHopProtocol || '(hidden)';
      S.protocols[p] = (S.protocols[p] || 0) + 1;
      S.slowest.push({
        url: e.name.slice(streamOrigin.length), p,
        start: Math.round(e.startTime - 1000 * t0), ttfb: Math.round(e.responseStart - e.startTime),
        ms: Math.round(e.duration),
      });
    }
    S.slowest.sort((a, b) => b.ms - a.ms);
    S.slowest.length = Math.min(S.slowest.length, 5);
    performance.clearResourceTimings();
  }
  performance.setResourceTimingBufferSize(10000);
  const t0 = now();
  const STARTUP_WINDOW_S = 2;

  function beginStall(why) {
    if (!S.started || S.stopped || S.stalled) return;
    S.stalls++; S.stalled = true; S.stallStart = now(); S.stallCT = video.currentTime;
    console.warn('[zc] stall #' + S.stalls + ' (' + why + ') at currentTime=' + video.currentTime.toFixed(3));
  }
  function endStall() {
    if (!S.stalled) return;
    S.stalled = false; S.stallSeconds += now() - S.stallStart;
  }
  function error(e) {
    if (S.stopped) return;
    S.errorCount++;
    if (e.fatal) S.fatalErrors++;
    if (S.errors.length < 100) {
      const o = { type: e.type, details: e.details, fatal: !!e.fatal, t: Math.round((now() - t0) * 1000) / 1000 };
      if (e.httpStatus !== undefined && e.httpStatus !== null) o.httpStatus = e.httpStatus;
      if (e.url) o.url = String(e.url);
      if (e.message) o.message = String(e.message).slice(0, 300);
      S.errors.push(o);
    }
    (e.fatal ? console.error : console.warn)('[zc] ' + S.player + ' ERROR ' + e.type + '/' + e.details +
      (e.fatal ? ' FATAL' : '') + (e.message ? ': ' + e.message : ''));
  }
  // Deep merge of plain objects (b over a), for a player's nested settings.
  function merge(a, b) {
    const out = Object.assign({}, a);
    for (const [k, v] of Object.entries(b || {})) {
      const nested = v && typeof v === 'object' && !Array.isArray(v) && a[k] && typeof a[k] === 'object';
      out[k] = nested ? merge(a[k], v) : v;
    }
    return out;
  }
  function play() {
    const p = video.play();
    if (p && p.catch) p.catch((e) => console.error('[zc] video.play() rejected: ' + e));
  }

  // Which codecs the manifest declares, and whether this browser's MediaSource takes them.
  // Read from the manifest text (CODECS="..." in a multivariant playlist, codecs="..." in an
  // MPD), so a player that silently drops an unsupported track cannot hide it.
  function checkCodecs() {
    fetch(params.url, { cache: 'no-store' }).then((r) => r.text()).then((text) => {
      const seen = new Set();
      for (const m of text.matchAll(/codecs="([^"]+)"/gi)) for (const c of m[1].split(',')) seen.add(c.trim());
      S.codecs = [...seen].map((codec) => {
        const kind = /^(mp4a|opus|ac-3|ec-3|flac)/i.test(codec) ? 'audio' : 'video';
        const type = kind + '/mp4; codecs="' + codec + '"';
        return { codec, type, supported: window.MediaSource ? MediaSource.isTypeSupported(type) : false };
      });
    }).catch((e) => console.warn('[zc] codec check: cannot read the manifest: ' + e));
  }

  // Sample playback progression, latency etc. Played time is the sum of forward
  // currentTime steps that are plausible for the wall time elapsed (seeks excluded).
  function sample() {
    if (S.stopped) return;
    const w = now(), ct = video.currentTime;
    if (S.started) {
      if (S.lastCT !== null) {
        const d = ct - S.lastCT, dw = w - S.lastWall;
        if (d > 0 && d <= dw * 2.1 + 0.05) S.playedSeconds += d;
        // fallback stall end: clear progress past where the stall began
        if (S.stalled && !video.paused && ct > S.stallCT + 0.25) endStall();
      }
      S.lastCT = ct; S.lastWall = w;
      if (api) {
        let l = null;
        try { l = api.latency(); } catch (e) { /* not measurable yet */ }
        if (typeof l === 'number' && l > 0 && isFinite(l)) S.latency.push(l);
      }
      if (video.playbackRate > S.maxPlaybackRate) S.maxPlaybackRate = video.playbackRate;
    }
  }

  function stats(a) {
    if (!a.length) return null;
    const s = a.slice().sort((x, y) => x - y);
    const r = (x) => Math.round(x * 1000) / 1000;
    const m = s.length >> 1;
    const med = s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
    const mean = a.reduce((x, y) => x + y, 0) / a.length;
    return { min: r(s[0]), median: r(med), mean: r(mean), max: r(s[s.length - 1]), last: r(a[a.length - 1]), samples: a.length };
  }

  S.snapshot = function () {
    sample();
    countProtocols();
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const r = (x) => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);
    let info = {};
    if (api) {
      try { info = api.info() || {}; } catch (e) { info = { infoError: String(e && e.message || e) }; }
    }
    return {
      ready: S.ready, setupError: S.setupError,
      player: S.player, playerVersion: S.playerVersion, latencySource: S.latencySource,
      started: S.started, startupMs: S.startupMs,
      playedSeconds: r(S.playedSeconds),
      stalls: S.stalls, stallSeconds: r(S.stallSeconds + (S.stalled ? now() - S.stallStart : 0)),
      waitingEvents: S.waitingEvents, seekWaits: S.seekWaits,
      seeks: S.seeks, lateSeeks: S.lateSeeks,
      errors: S.errors, errorCount: S.errorCount, fatalErrors: S.fatalErrors,
      latency: stats(S.latency),
      droppedFrames: q ? q.droppedVideoFrames : null, totalFrames: q ? q.totalVideoFrames : null,
      maxPlaybackRate: S.maxPlaybackRate,
      protocols: S.protocols, slowest: S.slowest, codecs: S.codecs,
      currentTime: r(video.currentTime), paused: video.paused, readyState: video.readyState,
      playbackRate: video.playbackRate, lastLatency: S.latency.length ? r(S.latency[S.latency.length - 1]) : null,
      bufferAhead: (function () {
        const b = video.buffered, ct = video.currentTime;
        for (let i = 0; i < b.length; i++) if (b.start(i) <= ct + 0.1 && ct <= b.end(i)) return r(b.end(i) - ct);
        return 0;
      })(),
      info,
    };
  };
  S.stop = function () { const s = S.snapshot(); S.stopped = true; return s; };

  let api = null;
  try {
    if (!adapter) throw new Error('no player adapter loaded (window.ZC_ADAPTER is undefined)');
    api = adapter.create({
      video, url: params.url, config: params.playerConfig || {}, debug: !!params.debug,
      now, beginStall, endStall, error, play, merge,
    });
    S.playerVersion = api.version;
  } catch (e) {
    S.setupError = String(e && e.message || e);
    S.ready = true;
    return;
  }

  video.addEventListener('playing', () => {
    if (!S.started) {
      S.started = true; S.startedAt = now(); S.startupMs = Math.round((S.startedAt - t0) * 1000);
      S.lastCT = video.currentTime; S.lastWall = now();
      console.log('[zc] playback started at currentTime=' + video.currentTime.toFixed(3));
    }
    endStall();
  });
  // A 'waiting' while a seek is in progress is the seek loading its target, not the buffer
  // running dry: it is counted in seekWaits, and the seek itself in seeks (or lateSeeks when
  // it comes after the start-up window, where the player may still move the playhead onto
  // the first buffered data).
  video.addEventListener('waiting', () => {
    if (!S.started || S.stopped) return;
    S.waitingEvents++;
    if (video.seeking) { S.seekWaits++; return; }
    beginStall('waiting');
  });
  video.addEventListener('seeking', () => {
    if (!S.started || S.stopped) return;
    S.seeks++;
    if (now() - S.startedAt > STARTUP_WINDOW_S) S.lateSeeks++;
  });
  video.addEventListener('error', () => {
    const e = video.error;
    console.error('[zc] <video> error ' + (e ? e.code + ' ' + e.message : '?'));
  });

  setInterval(sample, 250);
  checkCodecs();
  api.load();
  S.ready = true;
})();
