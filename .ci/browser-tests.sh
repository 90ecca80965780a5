#!/usr/bin/env bash
# Browser end-to-end tests: the chat example (examples/chat) and the browser client in Debian's
# Chromium, headless, driven by playwright-core (npm) with Node's test runner. Everything runs on
# 127.0.0.1; no browser is downloaded.
#
#   bash .ci/browser-tests.sh        # from any directory; installs Chromium with apt-get if missing
#
# Needs cargo, Node.js >= 20, npm and redis-server. Chromium comes from Debian
# (/usr/bin/chromium): when it is missing and this runs as root, it is installed; otherwise the
# script stops and says so.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

CHROMIUM=/usr/bin/chromium
NODE_MAJOR_MIN=20
TEST_TIMEOUT=900 # s for the whole browser suite

note() { echo "browser-tests: $*"; }
fail() {
    echo "browser-tests: FAIL: $*" >&2
    exit 1
}

# Chromium from Debian's packages, never a downloaded build.
if [[ ! -x $CHROMIUM ]]; then
    [[ $(id -u) -eq 0 ]] || fail "$CHROMIUM is missing; install Debian's Chromium: sudo apt-get install chromium"
    command -v apt-get >/dev/null 2>&1 || fail "$CHROMIUM is missing and there is no apt-get to install it"
    note "installing Debian's chromium"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
[[ -x $CHROMIUM ]] || fail "$CHROMIUM is still missing after apt-get install chromium"
"$CHROMIUM" --version 2>/dev/null | grep -q . || fail "$CHROMIUM does not run (try: $CHROMIUM --version)"
note "using $("$CHROMIUM" --version 2>/dev/null | head -n 1)"

# Node.js and npm.
command -v node >/dev/null 2>&1 || fail "node is missing: install Node.js >= $NODE_MAJOR_MIN (with npm)"
command -v npm >/dev/null 2>&1 || fail "npm is missing: install npm for Node.js $(node --version)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= NODE_MAJOR_MIN)) || fail "Node.js $(node --version) is too old: playwright-core needs >= $NODE_MAJOR_MIN"
note "using node $(node --version), npm $(npm --version)"

# playwright-core, exactly as locked. It downloads no browser; this makes sure of it.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund

# The cluster test (e2e/cluster.test.mjs) runs two chat nodes on a redis-server of its own.
command -v redis-server >/dev/null 2>&1 || fail "redis-server is missing: install it (Debian: apt-get install redis-server)"

note "building the chat example (with the cluster feature: e2e/cluster.test.mjs)"
bin=$(cargo build --example chat --features cluster --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\/chat\)".*/\1/p' | tail -n 1) ||
    fail "cargo build --example chat failed"
[[ -n $bin && -x $bin ]] || fail "cargo did not report the chat executable"
export WSHUB_CHAT_BIN=$bin
export WSHUB_CHROMIUM=$CHROMIUM

note "running node --test e2e/"
timeout --kill-after=30 "$TEST_TIMEOUT" node --test e2e/ ||
    fail "the browser tests failed (or took over ${TEST_TIMEOUT} s)"
note "PASSED"
