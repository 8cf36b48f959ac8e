// dash.js adapter for page.js (see the contract there). Loaded after dash.all.min.js.
//
// dash.js switches itself to low-latency mode when the MPD says a segment is available
// before it is complete (availabilityTimeComplete="false"); the live delay then comes from
// the MPD's ServiceDescription (streaming.delay.liveDelay left unset), and catch-up (playback
// rate within the ServiceDescription's bounds) is turned on here.
window.ZC_ADAPTER = {
  name: 'dashjs',
  // dash.js's own reading: wall clock (corrected by the MPD's UTCTiming offset) minus
  // availabilityStartTime minus currentTime.
  latencySource: 'dashjs.getCurrentLiveLatency()',
  create(ctx) {
    if (typeof dashjs === 'undefined') throw new Error('dash.js did not load (dashjs is undefined)');
    if (!window.MediaSource) throw new Error('no MediaSource in this browser');
    const player = window.dashPlayer = dashjs.MediaPlayer().create();
    const settings = ctx.merge({
      debug: { logLevel: ctx.debug ? dashjs.Debug.LOG_LEVEL_DEBUG : dashjs.Debug.LOG_LEVEL_WARNING },
      streaming: {
        liveCatchup: { enabled: true },
        buffer: { bufferToKeep: 30 }, // keep memory bounded, like backBufferLength for hls.js
      },
    }, ctx.config);
    player.updateSettings(settings);

    // Error codes by number, for readable `details`.
    const codeNames = {};
    const errs = dashjs.MediaPlayer.errors || {};
    for (const k of Object.keys(errs)) if (typeof errs[k] === 'number') codeNames[errs[k]] = k;

    const I = {
      targetLatency: null, lowLatencyMode: null, manifestLoads: 0, fragsLoaded: 0, periodsPlayed: 0,
      bufferEmptyEvents: 0, removedAdaptationSets: [], activeCodecs: null,
    };
    let initialized = false;
    const E = dashjs.MediaPlayer.events;
    // dash.js has no fatal flag: it raises ERROR once its own retries are spent (a manifest
    // or segment download, a MediaSource append, ...), so each one counts as fatal here,
    // except a failed clock sync (UTCTiming), after which dash.js goes on with the device's
    // clock; that one is an error but not fatal.
    const notFatal = new Set([errs.TIME_SYNC_FAILED_ERROR_CODE]);
    player.on(E.ERROR, (e) => {
      const err = e.error || {};
      const data = err.data || {};
      const resp = data.response || {};
      ctx.error({
        type: 'dashjs', details: codeNames[err.code] || String(err.code), fatal: !notFatal.has(err.code),
        httpStatus: resp.status, url: (data.request && data.request.url) || resp.url,
        message: err.message,
      });
    });
    player.on(E.PLAYBACK_ERROR, (e) => {
      const err = e.error || {};
      ctx.error({ type: 'media', details: 'video element error ' + (err.code || '?'), fatal: true, message: err.message });
    });
    // BUFFER_EMPTY ('bufferStalled') only marks dash.js's internal stall state (synthetic
    // stall events are off by default); a stall the viewer sees is the <video>'s 'waiting'.
    player.on(E.BUFFER_EMPTY, () => { I.bufferEmptyEvents++; });
    player.on(E.MANIFEST_LOADED, () => { I.manifestLoads++; });
    player.on(E.FRAGMENT_LOADING_COMPLETED, () => { I.fragsLoaded++; });
    // Fired for the first Period too: periodsPlayed is 1 + the number of Period switches.
    player.on(E.PERIOD_SWITCH_COMPLETED, () => { I.periodsPlayed++; });
    player.on(E.STREAM_INITIALIZED, () => { initialized = true; });
    // Raised again at each MPD update: each distinct AdaptationSet is listed once. (Its
    // Representations, and so their codecs, are already gone; `codecs` says which the MPD
    // declares and which this browser refuses.)
    player.on(E.ADAPTATION_SET_REMOVED_NO_CAPABILITIES, (e) => {
      const a = e.adaptationSet || {};
      const set = { id: a.id === undefined ? null : String(a.id), contentType: a.contentType || null, mimeType: a.mimeType || null };
      if (I.removedAdaptationSets.some((x) => x.id === set.id && x.contentType === set.contentType)) return;
      I.removedAdaptationSets.push(set);
      console.warn('[zc] dash.js removed an AdaptationSet it cannot play: ' + JSON.stringify(set));
    });

    return {
      version: player.getVersion(),
      load() {
        player.initialize(ctx.video, ctx.url, true);
      },
      latency() {
        const l = player.getCurrentLiveLatency();
        return typeof l === 'number' ? l : null;
      },
      info() {
        if (initialized) {
          try {
            I.lowLatencyMode = player.getLowLatencyModeEnabled();
            const tl = player.getTargetLiveDelay();
            if (typeof tl === 'number' && isFinite(tl)) I.targetLatency = tl;
            const v = player.getCurrentTrackFor('video'), a = player.getCurrentTrackFor('audio');
            I.activeCodecs = { video: v ? v.codec : null, audio: a ? a.codec : null };
          } catch (e) { /* playback not initialised yet */ }
        }
        return Object.assign({}, I, { playbackRate: ctx.video.playbackRate });
      },
    };
  },
};
