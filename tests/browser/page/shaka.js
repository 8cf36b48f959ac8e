// Shaka Player adapter for page.js (see the contract there). Loaded after
// shaka-player.compiled.js.
//
// streaming.lowLatencyMode (Shaka's documented switch for LL-DASH and LL-HLS) makes Shaka
// apply its low-latency configuration when the manifest is low-latency (for DASH: an
// availabilityTimeOffset > 0). Catch-up then follows the MPD's ServiceDescription (target
// latency and playback-rate bounds), since streaming.liveSync is left off.
//
// manifest.dash.autoCorrectDrift is false in that low-latency configuration, but Shaka
// applies it only after the first manifest parse, and the drift correction done on that
// parse stays: it places the presentation start at now - (end of the last listed segment)
// - (longest segment), which for an LL MPD listing the segment still being written moves
// Shaka's timeline about a segment ahead of availabilityStartTime, so Shaka plays at the
// very edge of what exists (0.2-0.4 s behind the wall clock with 2 s segments, a stall now
// and then). Turning it off from the start makes the low-latency configuration whole.
window.ZC_ADAPTER = {
  name: 'shaka',
  // Wall clock minus (presentation start time + currentTime), i.e. Shaka's
  // getLiveLatency(); 'seekRange' below when the presentation has no start date.
  latencySource: 'wallclock - (getPresentationStartTimeAsDate() + currentTime)',
  create(ctx) {
    if (typeof shaka === 'undefined') throw new Error('Shaka Player did not load (shaka is undefined)');
    shaka.polyfill.installAll();
    if (!shaka.Player.isBrowserSupported()) throw new Error('shaka.Player.isBrowserSupported() is false');
    const player = window.shakaPlayer = new shaka.Player();
    const config = ctx.merge({
      streaming: {
        lowLatencyMode: true,
        bufferBehind: 30, // keep memory bounded, like backBufferLength for hls.js
      },
      // As README.md recommends: Shaka would add suggestedPresentationDelay to the
      // ServiceDescription's target; ignoring it, Shaka plays at about the target.
      manifest: { dash: { autoCorrectDrift: false, ignoreSuggestedPresentationDelay: true } },
    }, ctx.config);
    player.configure(config);
    if (ctx.debug && shaka.log && shaka.log.setLevel) shaka.log.setLevel(shaka.log.Level.DEBUG);

    const names = (o) => {
      const m = {};
      for (const k of Object.keys(o || {})) m[o[k]] = k;
      return m;
    };
    const codeNames = names(shaka.util.Error.Code);
    const categoryNames = names(shaka.util.Error.Category);
    const I = {
      targetLatency: null, lowLatencyMode: null, bufferingEvents: 0, gapsJumped: null,
      stallsDetected: null, periods: null, activeCodecs: null, latencySource: null,
    };
    let usedFallback = false, usedWallclock = false;

    const report = (err, fallbackFatal) => {
      const data = (err && err.data) || [];
      const http = err && (err.code === shaka.util.Error.Code.BAD_HTTP_STATUS || err.code === shaka.util.Error.Code.HTTP_ERROR);
      ctx.error({
        type: err && err.category !== undefined ? (categoryNames[err.category] || String(err.category)) : 'shaka',
        details: err && err.code !== undefined ? (codeNames[err.code] || String(err.code)) : String(err),
        // Severity 2 is CRITICAL: Shaka stops; 1 (RECOVERABLE) it retries by itself.
        fatal: err && err.severity !== undefined ? err.severity === shaka.util.Error.Severity.CRITICAL : fallbackFatal,
        httpStatus: http && err.code === shaka.util.Error.Code.BAD_HTTP_STATUS ? data[1] : undefined,
        url: http ? data[0] : undefined,
        // The compiled build's message is only "Shaka Error CODE": the data says what failed.
        message: (err && err.message ? err.message + ' ' : '') + JSON.stringify(data).slice(0, 250),
      });
    };
    player.addEventListener('error', (ev) => report(ev.detail, true));
    // While buffering, Shaka holds the playback rate at 0, so the <video> may never fire
    // 'waiting': Shaka's own buffering state is the stall signal.
    player.addEventListener('buffering', (ev) => {
      if (ev.buffering) { I.bufferingEvents++; ctx.beginStall('shaka buffering'); } else ctx.endStall();
    });

    return {
      version: shaka.Player.version,
      load() {
        player.attach(ctx.video)
          .then(() => player.load(ctx.url))
          .then(() => ctx.play())
          .catch((e) => report(e, true));
      },
      latency() {
        const v = ctx.video;
        const start = player.getPresentationStartTimeAsDate();
        if (start && !isNaN(start.getTime())) {
          usedWallclock = true;
          return (Date.now() - (start.getTime() + v.currentTime * 1000)) / 1000;
        }
        const r = player.seekRange();
        usedFallback = true;
        return r ? r.end - v.currentTime : null;
      },
      info() {
        const m = player.getManifest();
        if (m) {
          const sd = m.serviceDescription;
          const cfg = player.getConfiguration();
          I.targetLatency = cfg.streaming.liveSync.enabled ? cfg.streaming.liveSync.targetLatency
            : (sd && sd.targetLatency != null ? sd.targetLatency : null);
          I.lowLatencyMode = !!(cfg.streaming.lowLatencyMode && m.isLowLatency);
        }
        const st = player.getStats();
        I.gapsJumped = st.gapsJumped;
        I.stallsDetected = st.stallsDetected;
        I.periods = st.manifestPeriodCount;
        const t = player.getVariantTracks().find((x) => x.active);
        if (t) I.activeCodecs = { video: t.videoCodec || null, audio: t.audioCodec || null };
        I.latencySource = usedFallback && usedWallclock ? 'both (see README)'
          : usedFallback ? 'seekRange().end - currentTime' : null;
        const out = Object.assign({}, I, { playbackRate: ctx.video.playbackRate });
        if (!out.latencySource) delete out.latencySource; // keep the adapter's default
        return out;
      },
    };
  },
};
