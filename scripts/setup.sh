#!/usr/bin/env bash
# Installs the system packages and tools the tests need on Debian 12.
# Idempotent: safe to run again. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
# nginx as a caching proxy in front of zerocast (edge/tests/http_cache.rs).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# hls.js, dash.js, Shaka Player and playwright-core for the browser playback tests (versions
# pinned in package-lock.json).
if [ ! -d tests/browser/node_modules/hls.js ] || [ ! -d tests/browser/node_modules/dashjs ] \
  || [ ! -d tests/browser/node_modules/shaka-player ] || [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
# hls.js and dash.js for the watch page (web/, pinned in web/package-lock.json): the edge's build.rs embeds
# it into the binary, so rebuild after this installs it.
if [ ! -f web/node_modules/hls.js/dist/hls.light.min.js ] || [ ! -f web/node_modules/dashjs/dist/modern/umd/dash.mediaplayer.min.js ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
# aioquic (a real HTTP/3 client, tests/h3/get.py) and h2 (hostile HTTP/2 clients,
# tests/h2/attack.py) for the TLS tests.
if ! python3 -c 'import aioquic, h2' >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pip
  fi
  # Debian's own python3 refuses global installs (PEP 668) unless told otherwise.
  python3 -m pip install --quiet aioquic==1.7.2 h2==4.2.0 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages aioquic==1.7.2 h2==4.2.0
fi
# tansu, a Kafka-protocol broker, for scripts/kafka-it.sh: only when asked (`--kafka`), since
# it builds from source (15-40 minutes on 2 cores).
if [ "${1:-}" = "--kafka" ] && ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore
fi
echo "setup: ok"
