#!/usr/bin/env bash
# Tests of the browser client (client/wshub.js) with Node's built-in test runner, against the
# real examples/hyper_server on 127.0.0.1. No npm packages are installed: Node 20 or newer, npm
# (client/test/package.test.mjs packs client/ as the npm package wshub-client, offline) and cargo.
#
#   bash .ci/client-tests.sh           # from any directory
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

fail() {
    echo "client-tests: FAIL: $*" >&2
    exit 1
}

command -v node >/dev/null 2>&1 ||
    fail "node is required (Node.js 20 or newer; Debian: apt-get install nodejs)"
node_version=$(node --version) || fail "'node --version' failed"
node_major=${node_version#v}
node_major=${node_major%%.*}
[[ $node_major =~ ^[0-9]+$ ]] || fail "cannot read the Node.js version from '$node_version'"
((node_major >= 20)) || fail "Node.js 20 or newer is required (for its test runner and WebSocket); this is $node_version"
# Node 20 has WebSocket behind a flag; 22 and later have it anyway and still accept the flag.
node --experimental-websocket -e 'if (typeof WebSocket !== "function") process.exit(1)' ||
    fail "Node.js $node_version has no WebSocket, even with --experimental-websocket"
echo "client-tests: node $node_version"
command -v npm >/dev/null 2>&1 ||
    fail "npm is required to test the npm package in client/ (Debian: apt-get install npm)"
echo "client-tests: npm $(npm --version)"

command -v cargo >/dev/null 2>&1 || fail "cargo is required to build examples/hyper_server"
echo "client-tests: building examples/hyper_server"
bin=$(cargo build --example hyper_server --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\/hyper_server\)".*/\1/p' | tail -n 1) ||
    fail "cargo build --example hyper_server failed"
[[ -n $bin && -x $bin ]] || fail "cargo did not report the hyper_server executable"
export WSHUB_HYPER_SERVER=$bin

shopt -s nullglob
tests=(client/test/*.test.mjs)
((${#tests[@]} > 0)) || fail "no tests in client/test/"
echo "client-tests: node --experimental-websocket --test ${tests[*]}"
node --experimental-websocket --test "${tests[@]}" || fail "the client's tests failed"
echo "client-tests: PASSED"
