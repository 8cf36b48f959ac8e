// zerocast's pages: the stream list (/), the watch page (/watch/NAME), the studio (/studio).
// Plain JS, no build step.
//
// The server renders each page with `data-*` attributes on <body>: `page`, `stream`, `api` (the
// social API's base URL, e.g. http://host:8090; empty when this server runs no social API) and
// `player` ("missing" when hls.js was not found at build time: for people reading the page's
// source; the script itself checks whether `window.Hls` loaded). Everything shown from the
// server or another user goes through textContent, never innerHTML.
//
// For tests, the watch page exposes `window.zerocast`: `{hls, stats, chat}`.
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

  // The token's `sub` (the user id), or '' when it does not decode. The server checks the
  // signature; this is only to know who "me" is.
  function tokenUser(t) {
    try {
      const p = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const claims = JSON.parse(atob(p + '='.repeat((4 - (p.length % 4)) % 4)));
      return typeof claims.sub === 'string' ? claims.sub : '';
    } catch (_) {
      return '';
    }
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

  // Whether decimal id `a` is larger than `b` (ids are 64-bit, beyond a JS number's precision).
  function newer(a, b) {
    return a.length !== b.length ? a.length > b.length : a > b;
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
    const state = { hls: null, stats: { latency: null, bitrate: null, resolution: null, stalls: 0 } };
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

    // A private stream plays with the playback token this page was opened with.
    const playback = new URLSearchParams(location.search).get('token');
    const src =
      '/live/' + encodeURIComponent(name) + '/index.m3u8' +
      (playback ? '?token=' + encodeURIComponent(playback) : '');
    function start() {
      // hls.js is embedded at build time; a build without it serves a 404 for it.
      const missing = !window.Hls;
      const MISSING =
        'The player library (hls.js) is missing from this build: run scripts/setup.sh ' +
        '(npm ci in web/), then rebuild zerocast.';
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
          started = false;
          say('The stream stopped (' + d.details + '); waiting for it to come back…');
          setTimeout(waitLive, 3000);
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

    // Stats line, 4 times a second: hls.js's own live latency, the level's bitrate, the
    // decoded picture size, the stalls since playback started.
    setInterval(() => {
      const st = state.stats;
      const hls = state.hls;
      st.latency = hls && Number.isFinite(hls.latency) && hls.latency > 0 ? hls.latency : null;
      const level = hls && hls.levels && hls.levels[hls.currentLevel];
      st.bitrate = level ? level.bitrate : null;
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

    // Viewer count and live state, every 3 s.
    async function viewers() {
      try {
        const s = (await streams()).find((x) => x.name === name);
        live = !!s && s.state === 'live';
        $('viewers').textContent = s ? plural(s.viewers, 'viewer') : '– viewers';
        $('state').textContent = s ? s.state.toUpperCase() : 'OFFLINE';
        $('state').classList.toggle('live', live);
      } catch (_) {
        // keep the last values
      }
    }
    viewers();
    setInterval(viewers, 3000);

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
    const c = { connected: false, lastId: null, reconnects: 0, drop: () => ws && ws.close() };
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
    if (!token()) {
      show('Sign in (paste a token from `zerocast token`) to chat and follow.');
      return c;
    }

    function add(m) {
      if (seen.has(m.id)) return;
      seen.add(m.id);
      if (c.lastId === null || newer(String(m.id), c.lastId)) c.lastId = String(m.id);
      const li = document.createElement('li');
      li.dataset.id = m.id;
      if (owner && m.from === owner) li.className = 'owner';
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = shortId(m.from) + (owner && m.from === owner ? ' (owner)' : '');
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = m.content;
      li.append(from, text);
      const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
      list.append(li);
      if (atBottom) list.scrollTop = list.scrollHeight;
    }

    function enable(on) {
      input.disabled = !on;
      send.disabled = !on || Date.now() < waitUntil;
    }

    // Slow mode: the send button stays off and counts down until the next message may go.
    function countdown(ms) {
      waitUntil = Date.now() + ms;
      const tick = () => {
        const left = Math.ceil((waitUntil - Date.now()) / 1000);
        if (left > 0) {
          send.disabled = true;
          send.textContent = 'Wait ' + left + ' s';
          setTimeout(tick, 250);
        } else {
          send.textContent = 'Send';
          send.disabled = !c.connected;
        }
      };
      tick();
    }

    function connect() {
      const base = api.replace(/^http/, 'ws');
      let url = base + '/api/v1/ws?access_token=' + encodeURIComponent(token());
      if (c.lastId) url += '&since=' + encodeURIComponent(c.lastId);
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
        if (ev.code === 4003) {
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

    // How long an error frame says to wait: `retry_after_ms` when it has one, else the
    // "N ms" its message names (slow mode, rate limit), else `fallback`.
    function waitMs(f, fallback) {
      if (Number.isFinite(f.retry_after_ms)) return f.retry_after_ms;
      const m = /(\d+) ms/.exec(f.message || '');
      return m ? Number(m[1]) : fallback;
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
