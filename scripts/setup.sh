#!/usr/bin/env bash
# The install step, the README's first command: everything `npm start` and `npm test` need on a
# Debian machine (Ubuntu: see the README), run as root or as a user with sudo. .ci/run calls it
# too, so what CI installs and what the README says cannot drift.
#   1. checks Node.js (>= 20.19; it does not install Node: the README says how to get one)
#   2. installs what is missing of nats-server and chromium from the distribution's packages
#      (apt-get, with sudo when not root; the tests never download a browser or a server)
#   3. npm ci: the dependencies exactly as locked, which also builds dist/ (the prepare script)
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "setup: $*" >&2
  exit 1
}

command -v node >/dev/null 2>&1 ||
  die 'Node.js is not installed: install Node.js 22 or 24 LTS (README, "Node.js"), then run this again'
node -e '
  const [major, minor] = process.versions.node.split(".").map(Number);
  process.exit(major > 20 || (major === 20 && minor >= 19) ? 0 : 1);
' || die "Node.js $(node --version) is too old: chatgate needs 20.19 or newer; install Node.js 22 or 24 LTS (README, \"Node.js\")"

missing=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
# The browser tests drive Debian's chromium at this path (test/harness/browser.ts).
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 ||
    die "no apt-get here: install ${missing[*]} yourself (docker-free-nats.md for nats-server; chromium at /usr/bin/chromium), then run this again"
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    die "installing ${missing[*]} needs root: run this as root, or install sudo, or install them yourself"
  fi
  echo "setup: installing ${missing[*]} with apt-get${as_root:+ (sudo)}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo 'setup: nats-server and chromium are installed'
fi

npm ci --no-audit --no-fund
echo 'setup: done; next: npm start, or npm test'
