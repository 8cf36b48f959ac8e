#!/usr/bin/env bash
# zerocast side by side with nginx-rtmp (Debian nginx-light + libnginx-mod-rtmp), the issue #11
# comparison. One server at a time, each pinned to one core (SERVER_CORE, default 0) with
# `taskset`; ffmpeg and every load generator on the other (CLIENT_CORE, default 1). Each is fed
# the same pre-encoded 2.5 Mb/s 720p30 H.264 + AAC file with 1 s GOPs, encoded once and
# published in a loop with `-re -stream_loop -1 -c copy` (no encoder runs during the
# measurements). Loads, each DURATION seconds, in this order per server:
#   idle          no viewers: what taking in and packaging the stream costs (at most 10 s)
#   closed        wrk, CONNS keep-alive connections, alternating the media playlist and the
#                 newest complete segment as fast as the server answers (capacity)
#   closed-parts  zerocast only: the same, alternating the playlist and the newest complete
#                 200 ms part, so CPU per request for parts can be set against nginx's
#   plain         `zerocast-load plain`, VIEWERS paced plain-HLS viewers: a playlist reload
#                 about once per target duration, each new segment fetched once
#   llhls         zerocast only: `zerocast-load hls`, VIEWERS LL-HLS viewers (blocking reloads,
#                 every 200 ms part)
# nginx-rtmp: `hls on; hls_fragment 1s; hls_playlist_length 20s` (zerocast's 20-segment window),
# Debian's `sendfile on; tcp_nopush on`, `worker_processes 1`, access log off, configured in a
# temporary directory and listening on loopback only. zerocast: `serve --workers 1
# --segment-target 1000 --part-target 200`, media only (ZEROCAST_SOCIAL=false), no
# per-address connection cap.
# Prints one markdown table at the end: one row per server and load (and repeat), with the
# machine's load average at the start above it. Progress goes to stderr.
# Usage: benches/scripts/compare-nginx.sh
# Environment (all optional):
#   DURATION=20        seconds per load (SECONDS=N works too when DURATION is unset)
#   CONNS=1000         closed-loop connections
#   VIEWERS="1000 2000"  paced viewer counts (plain and llhls)
#   REPEATS=1          rounds; each round starts every server afresh, in SERVERS order
#   LOADS="idle closed closed-parts plain llhls"  which loads to run
#   SERVERS="nginx zerocast"  which servers (zerocast-b is added when ZEROCAST_B_* is set)
#   ZEROCAST_BIN       server binary (default $CARGO_TARGET_DIR/release/zerocast)
#   ZEROCAST_ARGS      extra `zerocast serve` arguments, e.g. "--sendfile true" (word-split)
#   ZEROCAST_B_BIN, ZEROCAST_B_ARGS  a second zerocast build or setting, run as its own
#                      server "zerocast-b" in every round (to compare two builds in one session)
#   DRIVER=auto        zerocast's IO driver: auto, uring or epoll
#   ZEROCAST_LOAD_BIN  load generator (default $CARGO_TARGET_DIR/release/zerocast-load)
#   NO_BUILD=1         skip `cargo build` of both
#   QUIET=1            before each load wait (up to 10 min) until the machine is idle
#   NICE=-10           run servers, ffmpeg and clients at this niceness (negative needs root),
#                      and with autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled)
#                      give this session's group that nice value until the script ends: on a
#                      machine shared with builds they then get most of their cores (and the
#                      other programs are slowed down while it runs)
#   SERVER_CORE=0, CLIENT_CORE=1
#   RFS=1              turn on receive flow steering for loopback while the script runs
#                      (restored on exit; needs root): each TCP packet's receive work runs on
#                      the core of the process that reads its socket, as with a NIC between
#                      server and clients, instead of on the sender's core. Without it the
#                      server's core also does the clients' receive work, for both servers
#   WORK=DIR           scratch directory, kept (and the encode reused) when given; default a
#                      new mktemp directory, removed on exit
#   ZC_RTMP_PORT, ZC_HTTP_PORT, NGINX_RTMP_PORT, NGINX_HTTP_PORT  loopback ports
#                      (default 19451, 18451, 19452, 18452)
# Needs: nginx (nginx-light), /usr/lib/nginx/modules/ngx_rtmp_module.so (libnginx-mod-rtmp),
# wrk, ffmpeg (with libx264), curl, taskset: apt-get install -y nginx-light libnginx-mod-rtmp wrk
set -euo pipefail
# Bash counts SECONDS up from its value in the environment: read it before anything else.
duration="${DURATION:-$(printenv SECONDS || echo 20)}"
cd "$(dirname "$0")/../.."
conns="${CONNS:-1000}"; viewers="${VIEWERS:-1000 2000}"; repeats="${REPEATS:-1}"
loads="${LOADS:-idle closed closed-parts plain llhls}"
servers="${SERVERS:-nginx zerocast}"
if [[ -n "${ZEROCAST_B_BIN:-}${ZEROCAST_B_ARGS:-}" && " $servers " != *" zerocast-b "* ]]; then
  servers="$servers zerocast-b"
fi
driver="${DRIVER:-auto}"
score="${SERVER_CORE:-0}"; ccore="${CLIENT_CORE:-1}"
zrtmp="${ZC_RTMP_PORT:-19451}"; zhttp="${ZC_HTTP_PORT:-18451}"
nrtmp="${NGINX_RTMP_PORT:-19452}"; nhttp="${NGINX_HTTP_PORT:-18452}"
bindir="${CARGO_TARGET_DIR:-target}/release"
zbin="${ZEROCAST_BIN:-$bindir/zerocast}"
zbin_b="${ZEROCAST_B_BIN:-$zbin}"
load_bin="${ZEROCAST_LOAD_BIN:-$bindir/zerocast-load}"
module=/usr/lib/nginx/modules/ngx_rtmp_module.so
for l in $loads; do
  case "$l" in idle|closed|closed-parts|plain|llhls) ;; *) echo "unknown load $l" >&2; exit 2 ;; esac
done
for s in $servers; do
  case "$s" in nginx|zerocast|zerocast-b) ;; *) echo "unknown server $s" >&2; exit 2 ;; esac
done
for c in wrk ffmpeg curl taskset ss; do
  command -v "$c" > /dev/null || { echo "needs $c (apt-get install -y $c)" >&2; exit 2; }
done
if [[ " $servers " == *" nginx "* ]] && { ! command -v nginx > /dev/null || [[ ! -f $module ]]; }; then
  echo "needs nginx with the rtmp module: apt-get install -y nginx-light libnginx-mod-rtmp" >&2
  exit 2
fi
if [[ -z "${NO_BUILD:-}" ]]; then
  [[ -n "${ZEROCAST_BIN:-}" ]] || cargo build --release -q -p zerocast-edge
  [[ -n "${ZEROCAST_LOAD_BIN:-}" ]] || cargo build --release -q -p zerocast-benches
fi
ulimit -n 65536 2> /dev/null || ulimit -n 16384

if [[ -n "${WORK:-}" ]]; then
  work="$WORK"; keep=1; mkdir -p "$work"
else
  work=$(mktemp -d /tmp/compare-nginx.XXXXXX); keep=
fi
work=$(cd "$work" && pwd)
pids=()      # everything started in the background, killed on exit
autogroup_nice=  # this session's scheduling group's nice value before NICE, restored on exit
rfs_saved=   # RFS=1: the loopback steering settings before, restored on exit
lo_rx=/sys/class/net/lo/queues/rx-0
nginx_pid=   # the nginx master (it stops its workers)
cleanup() {
  local p
  # A client's wrapper shell and the poller have children of their own (wrk, curl).
  for p in "${pids[@]}"; do pkill -P "$p" 2> /dev/null || true; kill "$p" 2> /dev/null || true; done
  [[ -z "$nginx_pid" ]] || kill "$nginx_pid" 2> /dev/null || true
  wait 2> /dev/null || true
  if [[ -n "$keep" ]]; then rm -rf "$work/nginx" "$work/zc-data"; else rm -rf "$work"; fi
  [[ -z "$autogroup_nice" ]] || echo "$autogroup_nice" > /proc/$$/autogroup
  if [[ -n "$rfs_saved" ]]; then
    read -r e c m <<< "$rfs_saved"
    echo "$e" > /proc/sys/net/core/rps_sock_flow_entries
    echo "$c" > "$lo_rx/rps_flow_cnt"
    echo "$m" > "$lo_rx/rps_cpus"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Runs a long command in the background and waits for it: bash runs a trap only once the
# foreground command is done, but it interrupts `wait` at once, so Ctrl-C stops a load now.
run_fg() {
  "$@" &
  local p=$! rc=0
  pids+=("$p")
  wait "$p" || rc=$?
  unset 'pids[-1]'
  return "$rc"
}

# Everything started from here on inherits it. Under autogroup scheduling a process's nice
# value only ranks it within its session's group; the group's own nice value ranks the group
# against other sessions (other users' builds), so that is set too, and restored on exit.
if [[ -n "${NICE:-}" ]]; then
  renice -n "$NICE" -p $$ > /dev/null
  if [[ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2> /dev/null)" == 1 ]]; then
    autogroup_nice=$(awk '{print $3}' /proc/$$/autogroup)
    echo "$NICE" > /proc/$$/autogroup
  fi
fi

if [[ "${RFS:-}" == 1 ]]; then
  rfs_saved="$(cat /proc/sys/net/core/rps_sock_flow_entries) $(cat "$lo_rx/rps_flow_cnt") $(cat "$lo_rx/rps_cpus")"
  # Steering needs RPS on (any core mask); RFS then picks the reading process's core.
  mask=$(printf '%x' $(( (1 << score) | (1 << ccore) )))
  { echo 32768 > /proc/sys/net/core/rps_sock_flow_entries && echo 32768 > "$lo_rx/rps_flow_cnt" \
      && echo "$mask" > "$lo_rx/rps_cpus"; } || { echo "RFS=1: cannot set loopback steering (root?)" >&2; exit 2; }
fi

# The file, encoded once: testsrc2 720p30, x264 veryfast, a keyframe every 30 frames (1 s GOPs,
# no scene cuts), 2.3 Mb/s video (2.5 Mb/s peak) + 128 kb/s AAC; 60 s, looped when published.
media="$work/src.flv"
if [[ ! -s "$media" ]]; then
  echo "encoding $media (60 s)..." >&2
  run_fg ffmpeg -hide_banner -loglevel error -nostdin \
    -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 60 -c:v libx264 -preset veryfast -tune zerolatency -g 30 -keyint_min 30 -sc_threshold 0 \
    -b:v 2300k -maxrate 2500k -bufsize 2500k -c:a aac -b:a 128k -f flv "$media.tmp"
  mv "$media.tmp" "$media"
fi

hz=$(getconf CLK_TCK)
now() { date +%s.%N; }
# Busy jiffies summed over all cores (steal excluded), from /proc/stat.
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
quiet() { # wait up to 10 min for the machine to be idle (other processes are the main noise)
  local b0 b1
  for _ in $(seq 200); do
    b0=$(machine); sleep 3; b1=$(machine)
    if (( (b1 - b0) * 100 / (3 * hz) < 10 )); then return 0; fi
  done
  echo "(the machine did not become idle within 10 min; running anyway)" >&2
}
# The server's processes: zerocast's one, nginx's master and its children.
srv_pids() {
  if [[ "$1" == nginx ]]; then echo "$2" $(pgrep -P "$2" || true); else echo "$2"; fi
}
ticks() { # CPU ticks (user + system) of the pids given, summed
  local p t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2> /dev/null || echo 0))); done
  echo "$t"
}
sys_ticks() { # the system (kernel) part of ticks
  local p t=0
  for p in "$@"; do t=$((t + $(awk '{print $15}' "/proc/$p/stat" 2> /dev/null || echo 0))); done
  echo "$t"
}
pss_mb() { # proportional set size of the pids given, summed, MB (shared pages counted once)
  local p kb=0
  for p in "$@"; do
    kb=$((kb + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2> /dev/null || echo 0)))
  done
  awk -v kb="$kb" 'BEGIN {printf "%.1f", kb / 1024}'
}

# Starts server $1 pinned to the server core with ffmpeg publishing to it; sets srv (the pid
# to measure from), ff, base (URL prefix), index (the URL a player opens), media_path (the
# media playlist's path) and seg_dir (the path segment and part URIs are relative to).
start_server() {
  local name=$1 bin args port
  # zerocast listens with SO_REUSEPORT: on a port another program's zerocast holds, both would
  # listen and the kernel would split the connections (our publisher could land on theirs).
  for port in $([[ "$name" == nginx ]] && echo "$nrtmp $nhttp" || echo "$zrtmp $zhttp"); do
    if [[ -n "$(ss -ltnH "sport = :$port")" ]]; then
      echo "port $port is in use (ss -ltnp 'sport = :$port'); choose others:" \
        "ZC_RTMP_PORT, ZC_HTTP_PORT, NGINX_RTMP_PORT, NGINX_HTTP_PORT" >&2
      exit 2
    fi
  done
  case "$name" in
    nginx)
      local dir="$work/nginx"
      rm -rf "$dir"; mkdir -p "$dir/hls" "$dir/logs"
      # nginx's workers run as nobody: they write the fragments and read them.
      chmod 755 "$work" "$dir"; chmod 777 "$dir/hls"
      cat > "$dir/nginx.conf" <<EOF
load_module $module;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
daemon off;
worker_processes 1;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
rtmp { server { listen 127.0.0.1:$nrtmp; application live { live on;
  hls on; hls_path $dir/hls; hls_fragment 1s; hls_playlist_length 20s; } } }
http { access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $dir/logs; proxy_temp_path $dir/logs;
  fastcgi_temp_path $dir/logs; uwsgi_temp_path $dir/logs; scgi_temp_path $dir/logs;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server { listen 127.0.0.1:$nhttp; location /hls/ { alias $dir/hls/;
    add_header Cache-Control no-cache; } } }
EOF
      taskset -c "$score" nginx -c "$dir/nginx.conf" -p "$dir" 2> "$dir/logs/stderr.log" &
      nginx_pid=$!; srv=$nginx_pid
      base="http://127.0.0.1:$nhttp"; index="$base/hls/demo.m3u8"
      rtmp_url="rtmp://127.0.0.1:$nrtmp/live/demo"
      ;;
    zerocast|zerocast-b)
      bin=$zbin; args=${ZEROCAST_ARGS:-}
      if [[ "$name" == zerocast-b ]]; then bin=$zbin_b; args=${ZEROCAST_B_ARGS:-}; fi
      rm -rf "$work/zc-data"
      # Word splitting of the extra arguments wanted.
      # shellcheck disable=SC2086
      ZEROCAST_SOCIAL=false ZEROCAST_MAX_CONNECTIONS_PER_IP=0 taskset -c "$score" "$bin" serve \
        --rtmp 127.0.0.1:"$zrtmp" --http 127.0.0.1:"$zhttp" --workers 1 --driver "$driver" \
        --segment-target 1000 --part-target 200 --data-dir "$work/zc-data" $args \
        2> "$work/$name.log" &
      srv=$!; pids+=("$srv")
      base="http://127.0.0.1:$zhttp"; index="$base/live/demo/index.m3u8"
      rtmp_url="rtmp://127.0.0.1:$zrtmp/live/demo"
      ;;
  esac
  sleep 0.5
  taskset -c "$ccore" ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 \
    -i "$media" -c copy -f flv "$rtmp_url" 2> "$work/ffmpeg-$name.log" &
  ff=$!; pids+=("$ff")
  # Ready when the media playlist lists three complete segments.
  local text uri n
  for _ in $(seq 60); do
    sleep 0.5
    text=$(curl -sf "$index" || true)
    if grep -q '^#EXT-X-STREAM-INF' <<< "$text"; then
      uri=$(grep -v '^#' <<< "$text" | grep . | tail -1)
      media_path="${index#"$base"}"; media_path="${media_path%/*}/$uri"
      text=$(curl -sf "$base$media_path" || true)
    else
      media_path="${index#"$base"}"
    fi
    n=$(grep -c '^#EXTINF' <<< "$text" || true)
    if (( n >= 3 )); then
      seg_dir="${media_path%/*}/"
      return 0
    fi
  done
  echo "$name: no playlist with 3 segments at $index after 30 s; its logs:" >&2
  tail -5 "$work/$name.log" "$work/nginx/logs/error.log" "$work/ffmpeg-$name.log" 2> /dev/null >&2 || true
  exit 1
}

stop_server() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  [[ -z "$nginx_pid" ]] || kill "$nginx_pid" 2> /dev/null || true
  wait 2> /dev/null || true
  pids=(); nginx_pid=
}

# The wrk script: playlist, newest segment (or part), playlist, ... The newest URI comes from
# a file the updater below rewrites 4 times a second; each wrk thread rereads it every 256
# requests (wrk's Lua has no clock finer than a second, and parsing every playlist in wrk would
# copy every segment body into Lua).
cat > "$work/alternate.lua" <<'EOF'
local playlist, dir, file = os.getenv("CMP_PLAYLIST"), os.getenv("CMP_DIR"), os.getenv("CMP_NEWEST")
local newest, n = nil, 0
request = function()
  n = n + 1
  if n % 256 == 1 then
    local f = io.open(file, "r")
    if f then
      local line = f:read("*l")
      f:close()
      if line and #line > 0 then newest = dir .. line end
    end
  end
  if n % 2 == 0 and newest then return wrk.format("GET", newest) end
  return wrk.format("GET", playlist)
end
EOF
# Writes the newest complete segment's (or part's) URI into $work/newest, 4 times a second.
newest_updater() {
  local what=$1 url=$2 prog
  if [[ "$what" == part ]]; then
    prog='/^#EXT-X-PART:/ { if (match($0, /URI="[^"]*"/)) u = substr($0, RSTART + 5, RLENGTH - 6) }
      END { if (u) print u }'
  else
    prog='!/^#/ && NF { u = $0 } END { if (u) print u }'
  fi
  while :; do
    curl -sf "$url" | awk "$prog" > "$work/newest.tmp" && mv "$work/newest.tmp" "$work/newest"
    sleep 0.25
  done
}

# ms from a wrk latency ("850.00us", "31.47ms", "1.02s").
wrk_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) printf "%.2f", v / 1000; else if (v ~ /ms$/) printf "%.2f", v + 0;
    else if (v ~ /m$/) printf "%.0f", v * 60000; else if (v ~ /s$/) printf "%.2f", v * 1000;
    else print "-" }'
}
# The value of `  key   value ...` in a zerocast-load report, without " ms".
field() { sed -n "s#^  $1  *##p" "$2" | head -1 | sed 's# ms$##; s# .*##'; }

rows=()
# measure SERVER LOAD N: runs load LOAD with N connections or viewers against the running
# server and adds a table row.
measure() {
  local name=$1 load=$2 n=$3 out="$work/run-$1-$2-$3-$rep.txt" upd= rc=0
  local sp t0 t1 f0 f1 m0 m1 w0 w1 c u0=0 u1=0 rps reqs p50 p99 late errs
  [[ -z "${QUIET:-}" ]] || quiet
  read -ra sp <<< "$(srv_pids "$name" "$srv")"
  case "$load" in
    closed|closed-parts)
      rm -f "$work/newest"
      newest_updater "$([[ $load == closed ]] && echo segment || echo part)" "$base$media_path" &
      upd=$!; pids+=("$upd")
      taskset -cp "$ccore" "$upd" > /dev/null
      for _ in $(seq 20); do [[ -s "$work/newest" ]] && break; sleep 0.1; done
      ;;
  esac
  t0=$(ticks "${sp[@]}"); k0=$(sys_ticks "${sp[@]}"); f0=$(ticks "$ff"); m0=$(machine); w0=$(now)
  [[ -z "$upd" ]] || u0=$(awk '{print $16 + $17}' "/proc/$upd/stat")
  # The client runs under a shell that reports its CPU (children time) on fd 3.
  case "$load" in
    idle)
      run_fg sleep $(( duration < 10 ? duration : 10 )); echo 0 > "$work/client-ticks"
      ;;
    closed|closed-parts)
      CMP_PLAYLIST="$media_path" CMP_DIR="$seg_dir" CMP_NEWEST="$work/newest" \
        run_fg taskset -c "$ccore" bash -c 'wrk "$@"; rc=$?; awk "{print \$16 + \$17}" /proc/$$/stat >&3; exit $rc' \
        _ -t1 -c"$n" -d"${duration}s" --timeout 5s --latency -s "$work/alternate.lua" \
        "$base$media_path" 3> "$work/client-ticks" > "$out" 2>&1 || rc=$?
      ;;
    plain|llhls)
      run_fg taskset -c "$ccore" bash -c '"$0" "$@"; rc=$?; awk "{print \$16 + \$17}" /proc/$$/stat >&3; exit $rc' \
        "$load_bin" "$([[ $load == plain ]] && echo plain || echo hls)" --url "$index" \
        --viewers "$n" --duration "$duration" --workers 1 --server-pid "${sp[1]:-${sp[0]}}" \
        3> "$work/client-ticks" > "$out" 2>&1 || rc=$?
      ;;
  esac
  w1=$(now); m1=$(machine); f1=$(ticks "$ff"); t1=$(ticks "${sp[@]}"); k1=$(sys_ticks "${sp[@]}")
  if [[ -n "$upd" ]]; then
    u1=$(awk '{print $16 + $17}' "/proc/$upd/stat")
    kill "$upd" 2> /dev/null || true; wait "$upd" 2> /dev/null || true
    unset 'pids[-1]'
  fi
  c=$(( $(cat "$work/client-ticks" 2> /dev/null || echo 0) + u1 - u0 ))
  case "$load" in
    idle) reqs=-; rps=-; p50=-; p99=-; late=-; errs=- ;;
    closed|closed-parts)
      reqs=$(awk '/requests in/ {print $1}' "$out")
      rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$out")
      p50=$(wrk_ms "$(awk '$1 == "50%" {print $2}' "$out")")
      p99=$(wrk_ms "$(awk '$1 == "99%" {print $2}' "$out")")
      late=-
      errs=$(awk '/Non-2xx/ {e += $NF} /Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10}
        END {print e + 0}' "$out")
      ;;
    plain)
      reqs=$(field requests "$out"); rps=$(field 'requests/s' "$out")
      p50=$(field 'request time p50' "$out"); p99=$(field 'request time p99' "$out")
      late=$(field 'segment lateness p99' "$out"); errs=$(field errors "$out")
      ;;
    llhls)
      reqs=$(field requests "$out"); rps=$(field 'requests/s' "$out")
      p50=$(field 'part latency p50' "$out"); p99=$(field 'part latency p99' "$out")
      late=-; errs=$(field errors "$out")
      ;;
  esac
  if [[ "$load" != idle && ( -z "$reqs" || "$reqs" == 0 ) ]]; then
    echo "$name $load $n: the client reported no requests (exit $rc); its output:" >&2
    tail -20 "$out" >&2
    reqs=0; rps=0; errs="${errs:-?}"
  fi
  (( rc == 0 || rc == 1 )) || errs="$errs (exit $rc)"
  rows+=("$(awk -v name="$name" -v load="$load" -v n="$n" -v rep="$rep" -v hz="$hz" \
    -v wall="$(awk -v a="$w0" -v b="$w1" 'BEGIN {print b - a}')" -v t=$((t1 - t0)) -v k=$((k1 - k0)) -v c="$c" \
    -v f=$((f1 - f0)) -v m=$((m1 - m0)) -v reqs="$reqs" -v rps="$rps" -v p50="${p50:--}" \
    -v p99="${p99:--}" -v late="${late:--}" -v errs="${errs:--}" -v mem="$(pss_mb "${sp[@]}")" \
    -v reps="$repeats" 'BEGIN {
      pct = 100 / hz / wall; other = (m - t - c - f) * pct
      label = reps > 1 ? name " #" rep : name
      if (reqs > 0) {
        us = 1e6 / hz / reqs; su = sprintf("%.1f", t * us); scu = sprintf("%.1f", (t + c) * us)
      } else { su = "-"; scu = "-" }
      printf "| %s | %s | %s | %s | %.1f %% | %.1f %% | %s | %.1f %% | %s | %s | %s | %s | %s | %s | %.1f %% |", \
        label, load, n, rps, t * pct, k * pct, su, c * pct, scu, p50, p99, late, errs, mem, other
    }')")
  echo "${rows[-1]}" >&2
}

loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%FT%TZ)
for rep in $(seq "$repeats"); do
  for name in $servers; do
    echo "round $rep: $name" >&2
    start_server "$name"
    for load in $loads; do
      case "$load" in
        idle) measure "$name" idle 0 ;;
        closed) measure "$name" closed "$conns" ;;
        closed-parts) [[ "$name" == nginx ]] || measure "$name" closed-parts "$conns" ;;
        plain) for v in $viewers; do measure "$name" plain "$v"; sleep 2; done ;;
        llhls) if [[ "$name" != nginx ]]; then
            for v in $viewers; do measure "$name" llhls "$v"; sleep 2; done
          fi ;;
      esac
      sleep 2
    done
    [[ "$name" != nginx ]] || hls_kb=$(du -sk "$work/nginx/hls" | cut -f1)
    stop_server
    sleep 2
  done
done

zdesc() { echo "$1 serve --workers 1 --driver $driver --segment-target 1000 --part-target 200${2:+ $2}"; }
echo "zerocast vs nginx-rtmp, $started, $(git rev-parse --short HEAD 2> /dev/null || echo '?'), $duration s per load"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r);" \
  "load average at start $loadavg (1, 5, 15 min)"
echo "servers pinned to core $score, ffmpeg (-c copy) and the load generators to core $ccore, loopback${NICE:+, niceness $NICE}${rfs_saved:+, receive flow steering on}"
for name in $servers; do
  case "$name" in
    nginx) echo "nginx: $(nginx -v 2>&1 | sed 's#.*/##') + libnginx-mod-rtmp, hls_fragment 1s, hls_playlist_length 20s, sendfile on, worker_processes 1${hls_kb:+; its HLS directory held ${hls_kb} KiB at the end (in the page cache, not in its memory)}" ;;
    zerocast) echo "zerocast: $(zdesc "$zbin" "${ZEROCAST_ARGS:-}")" ;;
    zerocast-b) echo "zerocast-b: $(zdesc "$zbin_b" "${ZEROCAST_B_ARGS:-}")" ;;
  esac
done
busy=$(printf '%s\n' "${rows[@]}" | awk -F'|' '{gsub(/[ %]/, "", $15); if ($15 + 0 > m) m = $15 + 0}
  END {printf "%.0f", m}')
if (( busy > 20 )); then
  echo "NOISY: other programs used up to $busy % of a core during a load (column other CPU):" \
    "rates and latencies are not those of a quiet machine; compare rows of this run only, or QUIET=1"
fi
echo
echo "| server | load | conns | req/s | server CPU | of it kernel | server µs/req | client CPU | server+client µs/req | p50 ms | p99 ms | lateness p99 ms | errors | server PSS MB | other CPU |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "CPU: % of one core over the run, user + system from /proc/PID/stat (nginx: master + workers);"
echo "of it kernel: the system part (syscalls, TCP, softirq work run in the server's context);"
echo "µs/req: CPU time / requests. client: wrk (+ the newest-URI poller) or zerocast-load. On loopback"
echo "the receiver does part of the sender's kernel work (copies, ACK processing), so a server"
echo "that sendfile()s can look cheaper on its own than in server+client. other: all cores' busy"
echo "time minus server, client and ffmpeg (softirq work not charged to a process, other programs)."
echo "idle: the publisher alone (ingest and packaging; included in every other row's server CPU)."
echo "p50/p99: closed: wrk request latency; plain: request sent → body received; llhls: part"
echo "announced (blocking reload answered) → part received. lateness (plain): segment received −"
echo "first time any viewer saw it listed (polling delay up to 1 s by design + fetch)."
[[ -z "$keep" ]] || echo "each load's client output: $work/run-SERVER-LOAD-N-ROUND.txt"
