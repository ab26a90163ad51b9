#!/usr/bin/env bash
# The benchmark's own install step (`npm run bench:setup`, also run by `npm run bench` before it
# starts): redis-server for the Socket.IO + Redis target (bench/socketio-node.ts), from the
# distribution's packages, as scripts/setup.sh installs nats-server for the tests. `npm test`
# never needs redis. Run as root or as a user with sudo; otherwise it says what to install.
set -euo pipefail

die() {
  echo "bench-setup: $*" >&2
  exit 1
}

have_redis() {
  [ -n "${REDIS_SERVER_BIN:-}" ] && [ -x "${REDIS_SERVER_BIN}" ] && return 0
  command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || [ -x /usr/sbin/redis-server ]
}

if have_redis; then
  exit 0
fi

hint='or install redis-server (7.x) yourself and put it on PATH or in REDIS_SERVER_BIN, or run the bench without the Socket.IO target: npm run bench -- --targets ephemeral,durable,relay,relay-js'
command -v apt-get >/dev/null 2>&1 || die "redis-server is missing and there is no apt-get here: $hint"
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  die "installing redis-server needs root: run npm run bench:setup as root, or install sudo, $hint"
fi
echo "bench-setup: installing redis-server with apt-get${as_root:+ (sudo)}"
"${as_root[@]}" apt-get update -qq
# The package would start a system redis on port 6379; the bench starts its own on a free port and never uses that one.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
have_redis || die "apt-get finished but redis-server is still not found; $hint"
echo 'bench-setup: redis-server installed'
