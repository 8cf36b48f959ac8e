// hls.js adapter for page.js (see the contract there). Loaded after hls.min.js.
window.ZC_ADAPTER = {
  name: 'hlsjs',
  // hls.js's own estimate: the playlist's live edge, adjusted for the playlist's age, minus
  // currentTime.
  latencySource: 'hls.latency',
  create(ctx) {
    if (typeof Hls === 'undefined') throw new Error('hls.js did not load (Hls is undefined)');
    if (!Hls.isSupported()) throw new Error('Hls.isSupported() is false (no MediaSource / codec support in this browser)');
    const config = Object.assign({
      lowLatencyMode: true,
      backBufferLength: 30, // keep memory bounded; defaults otherwise
      debug: ctx.debug,
    }, ctx.config);
    const hls = window.hls = new Hls(config);
    const I = {
      targetLatency: null, partsUsed: false, canBlockReload: false, partTarget: null, partCount: 0,
      levelLoads: 0, fragsLoaded: 0, partsLoaded: 0, bufferStalledErrors: 0,
    };

    hls.on(Hls.Events.ERROR, (ev, d) => {
      if (d.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) { I.bufferStalledErrors++; ctx.beginStall('bufferStalledError'); }
      ctx.error({
        type: d.type, details: d.details, fatal: d.fatal,
        httpStatus: d.response ? d.response.code : undefined,
        url: (d.context && d.context.url) || (d.frag && d.frag.url) || d.url,
        message: d.error && d.error.message,
      });
    });
    hls.on(Hls.Events.LEVEL_LOADED, (ev, d) => {
      const det = d.details;
      if (!det) return;
      I.levelLoads++;
      const n = det.partList ? det.partList.length : 0;
      I.partCount = n;
      if (n > 0) I.partsUsed = true;
      if (det.canBlockReload) I.canBlockReload = true;
      if (det.partTarget) I.partTarget = det.partTarget;
    });
    if (Hls.Events.STALL_RESOLVED) hls.on(Hls.Events.STALL_RESOLVED, () => ctx.endStall());
    hls.on(Hls.Events.FRAG_LOADED, (ev, d) => { if (d.part) I.partsLoaded++; else I.fragsLoaded++; });
    hls.on(Hls.Events.MANIFEST_PARSED, () => ctx.play());

    return {
      version: Hls.version,
      load() {
        hls.attachMedia(ctx.video);
        hls.loadSource(ctx.url);
      },
      latency() {
        const tl = hls.targetLatency;
        if (typeof tl === 'number' && isFinite(tl)) I.targetLatency = tl;
        return hls.latency;
      },
      info() {
        const level = hls.levels && hls.levels[hls.currentLevel];
        return Object.assign({}, I, {
          lowLatencyMode: !!hls.lowLatencyMode,
          activeCodecs: level ? { video: level.videoCodec || null, audio: level.audioCodec || null } : null,
        });
      },
    };
  },
};
