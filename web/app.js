// zerocast's pages: the stream list (/), the watch page (/watch/NAME), the studio (/studio).
// Plain JS, no build step.
//
// The server renders each page with `data-*` attributes on <body>: `page`, `stream`, `api` (the
// social API's base URL, e.g. http://host:8090; empty when this server runs no social API),
// `player` (`hls` or `dash`: which library the page loaded) and `library` ("missing" when that
// library was not found at build time: for people reading the page's source; the script itself
// checks whether it loaded). Everything shown from the
// server or another user goes through textContent, never innerHTML.
//
// For tests, the watch page exposes `window.zerocast`: `{hls, dash, stats, chat}` (the player
// in use, hls.js or dash.js; the other is null).
'use strict';

(() => {
  const body = document.body;
  const page = body.dataset.page;
  const api = body.dataset.api || '';
  const TOKEN_KEY = 'zerocast.token';
  const $ = (id) => document.getElementById(id);

  // ---- Sign-in: a bearer token from `zerocast token`, kept in localStorage ----

  function token() {
    try {
      return localStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  // The token's claims, or {} when it does not decode. The server checks the signature; the
  // page reads `sub` only to know who "me" is, and `exp` only to say why the API refuses it.
  function claims(t) {
    try {
      const p = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const v = JSON.parse(atob(p + '='.repeat((4 - (p.length % 4)) % 4)));
      return v && typeof v === 'object' ? v : {};
    } catch (_) {
      return {};
    }
  }

  // The token's user id, or ''.
  function tokenUser(t) {
    const sub = claims(t).sub;
    return typeof sub === 'string' ? sub : '';
  }

  // Whether the token's expiry time has passed (by this device's clock).
  function tokenExpired(t) {
    const exp = claims(t).exp;
    return Number.isFinite(exp) && exp * 1000 < Date.now();
  }

  function setupAccount() {
    const form = $('signin');
    const account = $('account');
    if (!form || !account) return;
    const t = token();
    form.hidden = !!t;
    account.hidden = !t;
    if (t) $('me').textContent = 'signed in as ' + shortId(tokenUser(t) || '?');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const v = $('token').value.trim();
      if (!v) return;
      localStorage.setItem(TOKEN_KEY, v);
      location.reload();
    });
    $('signout').addEventListener('click', () => {
      localStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
  }

  function shortId(id) {
    return String(id).slice(0, 8);
  }

  // A call to the social API with the token; resolves to the JSON body, rejects with an Error
  // whose message says what went wrong (the API's own message when it sent one).
  async function call(method, path, json) {
    if (!api) throw new Error('this server runs no social API');
    const init = { method, headers: { Authorization: 'Bearer ' + token() } };
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    }
    let r;
    try {
      r = await fetch(api + path, init);
    } catch (_) {
      throw new Error(
        'cannot reach the social API at ' + api + ' (is ' + location.origin + ' in api-cors-origins?)'
      );
    }
    const v = await r.json().catch(() => ({}));
    if (!r.ok) {
      const e = new Error((v.error && v.error.message) || 'HTTP ' + r.status);
      e.status = r.status;
      e.code = v.error && v.error.code;
      throw e;
    }
    return v;
  }

  // The media server's own list of streams (same origin).
  async function streams() {
    const r = await fetch('/api/streams', { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    return (await r.json()).streams || [];
  }

  function uptime(s) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h > 0 ? h + ' h ' + m + ' min' : m > 0 ? m + ' min' : s + ' s';
  }

  function plural(n, word) {
    return n + ' ' + word + (n === 1 ? '' : 's');
  }

  // ---- / : the live streams, refreshed every 5 s ----

  function home() {
    const list = $('streams');
    const empty = $('empty');
    async function refresh() {
      let all;
      try {
        all = await streams();
      } catch (_) {
        return;
      }
      const live = all.filter((s) => s.state !== 'ended');
      list.replaceChildren(
        ...live.map((s) => {
          const li = document.createElement('li');
          const a = document.createElement('a');
          a.href = '/watch/' + encodeURIComponent(s.name);
          a.textContent = s.name;
          const p = document.createElement('p');
          p.className = 'facts';
          p.textContent = [
            s.owner_name ? 'by ' + s.owner_name : '',
            plural(s.viewers, 'viewer'),
            'live for ' + uptime(s.uptime_seconds),
            s.resolution || 'audio only',
            s.state === 'live' ? '' : s.state,
          ]
            .filter(Boolean)
            .join(' · ');
          li.append(a, p);
          return li;
        })
      );
      empty.hidden = live.length > 0;
    }
    setInterval(refresh, 5000);
  }

  // ---- /watch/NAME ----

  function watch() {
    const name = body.dataset.stream;
    const video = $('video');
    const notice = $('player-notice');
    const statsLine = $('stats');
    const state = {
      hls: null,
      dash: null,
      stats: { latency: null, bitrate: null, resolution: null, stalls: 0 },
    };
    window.zerocast = state;
    let started = false;
    let stalled = false;
    let live = false;

    function say(msg) {
      notice.textContent = msg;
      notice.hidden = !msg;
    }

    video.addEventListener('playing', () => {
      started = true;
      stalled = false;
    });
    video.addEventListener('waiting', () => {
      if (started && !video.seeking && !stalled) {
        stalled = true;
        state.stats.stalls += 1;
      }
    });

    // The player: hls.js (LL-HLS) by default, dash.js (low-latency DASH) with ?player=dash;
    // the server put the chosen library's <script> in the page. A private stream plays with
    // the playback token this page was opened with.
    const kind = body.dataset.player === 'dash' ? 'dash' : 'hls';
    const params = new URLSearchParams(location.search);
    const playback = params.get('token');
    const src =
      '/live/' + encodeURIComponent(name) + (kind === 'dash' ? '/index.mpd' : '/index.m3u8') +
      (playback ? '?token=' + encodeURIComponent(playback) : '');
    for (const [id, k] of [['use-hls', 'hls'], ['use-dash', 'dash']]) {
      const p = new URLSearchParams(params);
      if (k === 'dash') p.set('player', 'dash');
      else p.delete('player');
      const link = $(id);
      link.href = location.pathname + (p.toString() ? '?' + p : '');
      if (k === kind) link.setAttribute('aria-current', 'page');
    }
    const library = kind === 'dash' ? 'dash.js' : 'hls.js';
    const MISSING =
      'The player library (' + library + ') is missing from this build: run scripts/setup.sh ' +
      '(npm ci in web/), then rebuild zerocast.';

    // A fatal player error: drop the player, say why, wait for the stream to come back.
    function stopped(why) {
      started = false;
      say('The stream stopped (' + why + '); waiting for it to come back…');
      setTimeout(waitLive, 3000);
    }

    function startDash() {
      const dashjs = window.dashjs;
      if (!dashjs) {
        say(MISSING + ' The LL-HLS player (the link under the video) may still work.');
        return;
      }
      if (!window.MediaSource && !window.ManagedMediaSource) {
        say('This browser has no Media Source Extensions, which dash.js needs: use the LL-HLS player.');
        return;
      }
      const player = dashjs.MediaPlayer().create();
      // Low-latency mode comes from the MPD (availabilityTimeComplete="false") and its
      // ServiceDescription; catch-up keeps playback at the target latency.
      player.updateSettings({
        debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
        streaming: { liveCatchup: { enabled: true }, buffer: { bufferToKeep: 30 } },
      });
      state.dash = player;
      const errors = dashjs.MediaPlayer.errors || {};
      player.on(dashjs.MediaPlayer.events.ERROR, (e) => {
        const err = e.error || {};
        // A failed clock sync is not fatal: dash.js goes on with the device's clock.
        if (err.code === errors.TIME_SYNC_FAILED_ERROR_CODE) return;
        player.reset();
        state.dash = null;
        stopped(err.message || 'dash.js error ' + err.code);
      });
      player.initialize(video, src, true);
      say('');
    }

    function start() {
      if (kind === 'dash') {
        startDash();
        return;
      }
      // hls.js is embedded at build time; a build without it serves a 404 for it.
      const missing = !window.Hls;
      if (!missing && window.Hls.isSupported()) {
        const hls = new window.Hls({
          lowLatencyMode: true,
          backBufferLength: 30,
          maxLiveSyncPlaybackRate: 1.5,
        });
        state.hls = hls;
        hls.on(window.Hls.Events.ERROR, (_e, d) => {
          if (!d.fatal) return;
          hls.destroy();
          state.hls = null;
          stopped(d.details);
        });
        hls.loadSource(src);
        hls.attachMedia(video);
        say('');
      } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
        // Safari: native (LL-)HLS. Elsewhere only when hls.js is missing.
        video.src = src;
        say(missing ? MISSING + " Playing with this browser's own HLS support meanwhile." : '');
      } else if (missing) {
        say(MISSING);
        return;
      } else {
        say('This browser supports neither Media Source Extensions nor native HLS.');
        return;
      }
      video.play().catch(() => {});
    }

    // Start the player once the stream's playlist answers (on an edge node a stream is listed
    // only once somebody asked for it, so ask rather than read the list); until then say why.
    async function waitLive() {
      let status = 0;
      try {
        status = (await fetch(src, { cache: 'no-store' })).status;
      } catch (_) {
        status = 0;
      }
      if (status === 200) {
        start();
        return;
      }
      say(
        status === 403
          ? name + ' is private: open this page with the playback token its owner gave you (/watch/' +
              name + '?token=…).'
          : name + ' is not live right now. This page starts playing when it is.'
      );
      setTimeout(waitLive, status === 403 ? 10000 : 3000);
    }

    // Stats line, 4 times a second: the player's own live latency (hls.js's `latency`,
    // dash.js's `getCurrentLiveLatency()`), the playing rendition's bitrate, the decoded
    // picture size, the stalls since playback started.
    setInterval(() => {
      const st = state.stats;
      const hls = state.hls;
      const dash = state.dash;
      let latency = null;
      let bitrate = null;
      if (hls) {
        latency = hls.latency;
        const level = hls.levels && hls.levels[hls.currentLevel];
        bitrate = level ? level.bitrate : null;
      } else if (dash) {
        latency = dash.getCurrentLiveLatency();
        const rep = dash.getCurrentRepresentationForType('video');
        bitrate = rep ? rep.bandwidth : null;
      }
      st.latency = Number.isFinite(latency) && latency > 0 ? latency : null;
      st.bitrate = bitrate || null;
      st.resolution = video.videoWidth ? video.videoWidth + 'x' + video.videoHeight : null;
      if (!started) return;
      statsLine.dataset.latency = st.latency === null ? '' : st.latency.toFixed(2);
      statsLine.textContent = [
        'latency ' + (st.latency === null ? '–' : st.latency.toFixed(2) + ' s'),
        st.bitrate ? (st.bitrate / 1e6).toFixed(2) + ' Mb/s' : '– Mb/s',
        st.resolution || '–',
        plural(st.stalls, 'stall'),
      ].join(' · ');
    }, 250);

    // Viewer count, live state and owner, every 3 s while the page is visible.
    async function viewers() {
      if (document.hidden) return;
      let s = null;
      try {
        const r = await fetch('/api/streams/' + encodeURIComponent(name), { cache: 'no-store' });
        if (r.ok) s = (await r.json()).stream;
        else if (r.status !== 404) return;
      } catch (_) {
        return; // keep the last values
      }
      live = !!s && s.state === 'live';
      $('viewers').textContent = s ? plural(s.viewers, 'viewer') : '– viewers';
      $('state').textContent = s ? s.state.toUpperCase() : 'OFFLINE';
      $('state').classList.toggle('live', live);
      $('owner').textContent = s && s.owner_name ? 'by ' + s.owner_name : '';
    }
    viewers();
    setInterval(viewers, 3000);
    document.addEventListener('visibilitychange', viewers);

    waitLive();
    follow(name);
    state.chat = chat(name);
  }

  // ---- Follow button: the stream owner's follower count ----

  async function follow(name) {
    const btn = $('follow');
    const count = $('followers');
    if (!token()) {
      btn.title = 'Sign in to follow';
      return;
    }
    const me = tokenUser(token());
    let owner;
    try {
      owner = (await call('GET', '/api/v1/streams/' + encodeURIComponent(name))).stream.owner;
    } catch (e) {
      count.textContent = e.status === 404 ? 'nobody owns this name' : e.message;
      return;
    }
    let following = false;
    async function refresh() {
      const c = await call('GET', '/api/v1/users/' + owner + '/counts');
      count.textContent = plural(c.followers, 'follower');
      count.dataset.count = String(c.followers);
      if (owner !== me) {
        following = (await call('GET', '/api/v1/users/' + me + '/following/' + owner)).following;
      }
      btn.textContent = owner === me ? 'Your stream' : following ? 'Unfollow' : 'Follow';
      btn.setAttribute('aria-pressed', String(following));
      btn.disabled = owner === me;
    }
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      try {
        await call(following ? 'DELETE' : 'PUT', '/api/v1/users/me/following/' + owner);
        await refresh();
      } catch (e) {
        count.textContent = e.message;
        btn.disabled = false;
      }
    });
    try {
      await refresh();
    } catch (e) {
      count.textContent = e.message;
    }
  }

  // ---- Chat over the social API's WebSocket ----

  function chat(room) {
    const list = $('messages');
    const status = $('chat-status');
    const input = $('chat-input');
    const send = $('chat-send');
    const seen = new Set();
    // `reconnects` counts sockets opened after the first; `drop()` closes the current one (as a
    // lost connection would: the page reconnects).
    const c = { connected: false, reconnects: 0, drop: () => ws && ws.close() };
    const me = tokenUser(token());
    let ws = null;
    let owner = null;
    let slowMode = 0;
    let waitUntil = 0;
    let retry = 1;
    let cid = 0;

    function show(msg, error) {
      status.textContent = msg;
      status.classList.toggle('error', !!error);
    }

    if (!api) {
      show('Chat needs the social API, which this server does not run.', true);
      return c;
    }
    // Without a token the page reads the chat as a guest (an anonymous, read-only socket).
    const guest = !token();
    c.guest = guest;
    const GUEST = 'Reading as a guest: sign in (paste a token from `zerocast token`) to chat and follow.';

    function add(m) {
      if (seen.has(m.id)) return;
      seen.add(m.id);
      const li = document.createElement('li');
      li.dataset.id = m.id;
      if (owner && m.from === owner) li.className = 'owner';
      const from = document.createElement('span');
      from.className = 'from';
      from.dataset.user = m.from;
      nameOf(m.from, from);
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = m.content;
      li.append(from, text);
      if (owner && owner === me && m.from !== me) li.append(moderation(m.from));
      const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
      list.append(li);
      if (atBottom) list.scrollTop = list.scrollHeight;
    }

    // The owner's tools on each line of someone else: a 10-minute timeout, a ban (the studio
    // lifts bans).
    function moderation(user) {
      const box = document.createElement('span');
      box.className = 'mod';
      const action = (label, what, body) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'secondary';
        b.textContent = label;
        b.setAttribute('aria-label', label + ' ' + shortId(user));
        b.addEventListener('click', async () => {
          b.disabled = true;
          try {
            await call('POST', '/api/v1/rooms/' + encodeURIComponent(room) + '/bans', body);
            show(nameOrId(user) + ' ' + what + '.');
          } catch (e) {
            show(e.message, true);
            b.disabled = false;
          }
        });
        return b;
      };
      box.append(
        action('Timeout', 'may not chat for 10 minutes', { user, seconds: 600 }),
        action('Ban', 'is banned from this chat', { user })
      );
      return box;
    }

    // Display names of the users who chat (their profiles), asked once each; a user without a
    // profile shows as the start of their id.
    const names = new Map(); // user id -> name ('' for none), or a Promise while asked
    function nameOrId(id) {
      const n = names.get(id);
      return typeof n === 'string' && n ? n : shortId(id);
    }
    function label(id) {
      return nameOrId(id) + (owner && id === owner ? ' (owner)' : '');
    }
    function nameOf(id, el) {
      const known = names.get(id);
      el.textContent = label(id);
      // Profiles need a token: a guest sees ids.
      if (known !== undefined || guest) return;
      if (names.size >= 1000) names.clear();
      names.set(
        id,
        call('GET', '/api/v1/users/' + encodeURIComponent(id))
          .then((v) => (v.profile && v.profile.display_name) || '')
          .catch(() => '')
          .then((name) => {
            names.set(id, name);
            for (const e of list.querySelectorAll('.from[data-user="' + CSS.escape(id) + '"]')) {
              e.textContent = label(id);
            }
          })
      );
    }

    function enable(on) {
      input.disabled = !on;
      send.disabled = !on || Date.now() < waitUntil;
    }

    // Slow mode: the send button stays off and counts down until the next message may go.
    // One timer however many refusals arrive; the latest wait wins when it is longer.
    let ticking = null;
    function countdown(ms) {
      waitUntil = Math.max(waitUntil, Date.now() + ms);
      clearTimeout(ticking);
      const tick = () => {
        const left = Math.ceil((waitUntil - Date.now()) / 1000);
        if (left > 0) {
          send.disabled = true;
          send.textContent = 'Wait ' + left + ' s';
          ticking = setTimeout(tick, 250);
        } else {
          ticking = null;
          send.textContent = 'Send';
          send.disabled = !c.connected;
        }
      };
      tick();
    }

    function connect() {
      const base = api.replace(/^http/, 'ws');
      let url = base + '/api/v1/ws';
      // A reconnect gets the room's recent messages again with the subscription's history
      // (`seen` drops the ones shown). The socket's own `since` replays direct messages,
      // which this page does not show, so it is not sent.
      if (!guest) url += '?access_token=' + encodeURIComponent(token());
      if (ws) c.reconnects += 1;
      ws = new WebSocket(url);
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: 'subscribe', room }));
      };
      ws.onmessage = (ev) => {
        let f;
        try {
          f = JSON.parse(ev.data);
        } catch (_) {
          return;
        }
        switch (f.type) {
          case 'subscribed':
            c.connected = true;
            retry = 1;
            owner = (f.settings && f.settings.owner) || null;
            slowMode = (f.settings && f.settings.slow_mode_secs) || 0;
            (f.history || []).forEach(add);
            if (guest) {
              show(GUEST);
              break;
            }
            show(slowMode ? 'Slow mode: one message every ' + slowMode + ' s.' : 'Connected.');
            enable(true);
            break;
          case 'chat':
            if (f.message && f.message.room === room) add(f.message);
            break;
          case 'chat_ack':
            if (slowMode && f.room === room) countdown(slowMode * 1000);
            break;
          case 'error':
            chatError(f);
            break;
          default:
            break;
        }
      };
      ws.onclose = (ev) => {
        c.connected = false;
        enable(false);
        // 4003: the token expired while connected. A refused upgrade (an expired token at
        // connect time) reaches a page only as 1006, so the page reads the token's expiry.
        if (!guest && (ev.code === 4003 || tokenExpired(token()))) {
          show('Your token expired: sign in again with a new one.', true);
          return;
        }
        if (ev.code === 4004) {
          show('Too many open chat tabs for this user: close one and reload.', true);
          return;
        }
        show('Disconnected; reconnecting in ' + retry + ' s…', true);
        setTimeout(connect, retry * 1000);
        retry = Math.min(retry * 2, 15);
      };
    }

    // How long an error frame says to wait (slow mode, rate limit), else `fallback`.
    function waitMs(f, fallback) {
      return Number.isFinite(f.retry_after_ms) ? f.retry_after_ms : fallback;
    }

    function chatError(f) {
      switch (f.code) {
        case 'banned':
          show('You are banned from this chat: ' + f.message, true);
          break;
        case 'slow_mode': {
          const ms = waitMs(f, slowMode * 1000);
          show('Slow mode: you can send again in ' + Math.ceil(ms / 1000) + ' s.', true);
          countdown(ms);
          break;
        }
        case 'rate_limited':
          show('Too fast: wait a moment before sending again.', true);
          countdown(waitMs(f, 1000));
          break;
        case 'message_too_large':
        case 'empty_message':
          show(f.message, true);
          break;
        case 'no_such_room':
          show('This stream has no chat room yet (nobody reserved the name and it is not live).', true);
          setTimeout(() => ws && ws.close(), 0);
          break;
        default:
          show(f.message || f.code || 'error', true);
      }
    }

    $('chat-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const content = input.value.trim();
      if (!content || !ws || ws.readyState !== WebSocket.OPEN) return;
      cid += 1;
      ws.send(JSON.stringify({ type: 'chat', room, content, client_id: 'web-' + Date.now() + '-' + cid }));
      input.value = '';
    });

    connect();
    return c;
  }

  // ---- /studio: the signed-in broadcaster's streams, keys and chat moderation ----

  function studio() {
    const status = $('studio-status');
    const mine = $('mine');
    const rtmp = body.dataset.rtmp;
    const items = new Map();

    function say(msg, error) {
      status.textContent = msg;
      status.hidden = !msg;
      status.classList.toggle('error', !!error);
    }

    function issued(v) {
      $('issued-name').textContent = v.stream.name;
      $('issued-url').textContent = rtmp + '/' + v.obs_stream_key;
      $('issued-obs').textContent = v.obs_stream_key;
      $('issued').hidden = false;
    }

    function button(text, onClick) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = text;
      b.className = 'secondary';
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          await onClick();
        } catch (e) {
          say(e.message, true);
        }
        b.disabled = false;
      });
      return b;
    }

    function item(s) {
      const li = document.createElement('li');
      li.dataset.name = s.name;
      const a = document.createElement('a');
      a.href = '/watch/' + encodeURIComponent(s.name);
      a.textContent = s.name;
      const facts = document.createElement('p');
      facts.className = 'facts';
      const key = document.createElement('p');
      key.className = 'facts';
      key.textContent = 'key ' + (s.key_fingerprint || '?') + (s.private ? ' · private' : '');
      const slow = document.createElement('input');
      slow.type = 'number';
      slow.min = '0';
      slow.value = String(s.slow_mode_secs || 0);
      slow.setAttribute('aria-label', 'Slow mode seconds for ' + s.name);
      const user = document.createElement('input');
      user.className = 'user';
      user.placeholder = 'user id to ban or unban';
      user.setAttribute('aria-label', 'User id to ban or unban in ' + s.name);
      const room = '/api/v1/rooms/' + encodeURIComponent(s.name);
      const actions = document.createElement('div');
      actions.className = 'actions';
      actions.append(
        button('Rotate key', async () => {
          issued(await call('POST', '/api/v1/streams/' + encodeURIComponent(s.name) + '/key'));
          say('New key for ' + s.name + ': the old one no longer works.');
        }),
        slow,
        button('Set slow mode', async () => {
          await call('PATCH', '/api/v1/streams/' + encodeURIComponent(s.name), {
            slow_mode_secs: Number(slow.value) || 0,
          });
          say('Slow mode of ' + s.name + ': ' + (Number(slow.value) || 'off') + (Number(slow.value) ? ' s' : '') + '.');
        }),
        user,
        button('Ban', async () => {
          await call('POST', room + '/bans', { user: user.value.trim() });
          say(user.value.trim() + ' is banned from ' + s.name + "'s chat.");
        }),
        button('Unban', async () => {
          await call('DELETE', room + '/bans/' + encodeURIComponent(user.value.trim()));
          say(user.value.trim() + ' may chat in ' + s.name + ' again.');
        })
      );
      li.append(a, facts, key, actions);
      items.set(s.name, facts);
      return li;
    }

    async function load() {
      const v = await call('GET', '/api/v1/streams');
      items.clear();
      mine.replaceChildren(...v.streams.map(item));
      if (!v.streams.length) say('No streams yet: create one above.');
      await live();
    }

    // Live state and viewers of each of my streams, every 3 s.
    async function live() {
      let all = [];
      try {
        all = await streams();
      } catch (_) {
        return;
      }
      for (const [name, facts] of items) {
        const s = all.find((x) => x.name === name);
        const on = !!s && s.state === 'live';
        facts.textContent = on
          ? 'LIVE · ' + plural(s.viewers, 'viewer') + ' · ' + (s.resolution || 'audio only')
          : s ? s.state : 'offline';
        facts.classList.toggle('live', on);
      }
    }

    if (!token()) {
      say('Sign in with a token from `zerocast token --user UUID` to manage your streams.');
      $('create').hidden = true;
      return;
    }
    $('create').addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const v = await call('POST', '/api/v1/streams', {
          name: $('new-name').value.trim(),
          private: $('new-private').checked,
        });
        issued(v);
        $('new-name').value = '';
        say('');
        await load();
      } catch (err) {
        say(err.message, true);
      }
    });
    load().catch((e) => say(e.message, true));
    setInterval(live, 3000);
  }

  setupAccount();
  if (page === 'home') home();
  if (page === 'watch') watch();
  if (page === 'studio') studio();
})();
