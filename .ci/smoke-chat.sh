#!/usr/bin/env bash
# Smoke test of examples/chat, over real HTTP on 127.0.0.1 only: the page, the publish endpoint
# and its bearer token, the chat handler's route, one raw WebSocket on /ws (which gets the room's
# history when it opens), and a graceful exit on SIGTERM that closes the socket with 1001, even
# with a half-sent request and an idle keep-alive connection open. Called by .ci/run; needs
# cargo, curl and coreutils. Chat between sockets, through the handler, is tested in
# tests/chat_example.rs.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

STARTUP_TIMEOUT=60 # s for the example to print its address
EXIT_TIMEOUT=20    # s for it to exit after SIGTERM: sockets get up to 2 s to answer the close,
                   # then HTTP connections up to the server's 10 s shutdown deadline

note() { echo "smoke-chat: $*"; }
fail() {
    echo "smoke-chat: FAIL: $*" >&2
    exit 1
}

command -v curl >/dev/null 2>&1 || fail "curl is required"

work=$(mktemp -d)
server_pid=""
ws_pid=""
cleanup() {
    local status=$?
    for pid in $ws_pid $server_pid; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        for f in stdout stderr ws.headers; do
            [[ -s $work/$f ]] || continue
            echo "----- $f -----" >&2
            tail -n 50 "$work/$f" >&2
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# until SECONDS DESCRIPTION COMMAND...: retries COMMAND every 0.2 s for at most SECONDS.
until_ok() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        [[ -z $server_pid ]] || kill -0 "$server_pid" 2>/dev/null ||
            fail "the example exited while waiting for: $what"
        ((SECONDS < deadline)) || fail "timed out after ${limit} s waiting for: $what"
        sleep 0.2
    done
}

# status OUT CURL-ARGS...: runs curl, writes the body to OUT, prints the HTTP status code.
status() {
    local out=$1
    shift
    curl -sS --max-time 10 -o "$out" -w '%{http_code}' "$@"
}

note "building the chat example"
bin=$(cargo build --example chat --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\/chat\)".*/\1/p' | tail -n 1) ||
    fail "cargo build --example chat failed"
[[ -n $bin && -x $bin ]] || fail "cargo did not report the chat executable"

token="smoke-$RANDOM-$RANDOM-$RANDOM"
note "starting $bin"
WSHUB_ADDR=127.0.0.1:0 WSHUB_PUBLISH_TOKEN=$token RUST_LOG=info,wshub=debug \
    "$bin" >"$work/stdout" 2>"$work/stderr" </dev/null &
server_pid=$!

printed_address() { grep -qs '^listening on http://' "$work/stdout"; }
until_ok "$STARTUP_TIMEOUT" "the 'listening on http://ADDR' line" printed_address
addr=$(sed -n 's|^listening on http://\(127\.0\.0\.1:[1-9][0-9]*\)$|\1|p' "$work/stdout")
[[ -n $addr ]] || fail "unexpected address line: $(grep '^listening on' "$work/stdout")"
base="http://$addr"
note "the example listens on $base"

# The page.
code=$(status "$work/page" "$base/")
[[ $code == 200 ]] || fail "GET / answered $code, not 200"
for needle in '<title>' 'from "/ws/wshub.js"' 'new WsHub(' 'textContent' \
    '"broadcastchatmessage"' '"initialmessages"' '"userlist"'; do
    grep -qF "$needle" "$work/page" || fail "the page served at / lacks '$needle'"
done
note "GET / serves the chat page"

# The publish endpoint, with nobody connected.
envelope='{"action":"broadcastchatmessage","message":{"user":"smoke","text":"smoke test","time":"2025-01-01T00:00:00Z"},"recipients":[{"type":"group","value":"lobby"}]}'
publish() { status "$work/published" -H 'content-type: application/json' "$@" --data-binary "$envelope" "$base/api/publish"; }

code=$(publish -H "Authorization: Bearer $token")
[[ $code == 200 && $(<"$work/published") == '{"delivered":0}' ]] ||
    fail "publish with the token: $code $(<"$work/published"), expected 200 {\"delivered\":0}"
note 'POST /api/publish with the token: 200 {"delivered":0}'

code=$(publish -H "Authorization: Bearer wrong-$token")
[[ $code == 401 ]] || fail "publish with a wrong token answered $code, not 401"
code=$(publish)
[[ $code == 401 ]] || fail "publish without a token answered $code, not 401"
note "POST /api/publish with a wrong or no token: 401"

# The chat handler's route takes only what the hub forwards.
code=$(status "$work/hub-chat" -H 'content-type: application/json' \
    --data-binary '{"action":"broadcastchatmessage","message":"hi"}' "$base/hub/chat")
[[ $code == 403 ]] || fail "POST /hub/chat from the network answered $code, not 403"
note "POST /hub/chat from the network: 403"

# One raw WebSocket in the lobby (curl only performs the handshake, then prints what arrives).
curl -sS -N --http1.1 --max-time 60 -D "$work/ws.headers" -o "$work/ws.frames" \
    -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
    "$base/ws?groupId=lobby&userId=smoke-socket" 2>"$work/ws.stderr" &
ws_pid=$!
received() { grep -qF "$1" "$work/ws.frames" 2>/dev/null; }
until_ok 10 "the socket's __connected envelope" received '"action":"__connected"'
grep -q '^HTTP/1.1 101' "$work/ws.headers" || fail "GET /ws did not switch protocols"
# The handler answered __connect with the lobby's history, empty: published lines are not kept.
until_ok 10 "the socket's initialmessages envelope" received '"action":"initialmessages","message":[]'
note "a socket on /ws?groupId=lobby gets initialmessages"

code=$(publish -H "Authorization: Bearer $token")
[[ $code == 200 && $(<"$work/published") == '{"delivered":1}' ]] ||
    fail "publish to the lobby with a socket in it: $code $(<"$work/published"), expected {\"delivered\":1}"
until_ok 10 "the published message on the socket" received '"text":"smoke test"'
note "a socket on /ws?groupId=lobby gets the published envelope"

# Two connections that used to stop a graceful shutdown forever: one that sent half a request
# head and nothing more, one kept alive and idle after a request.
port=${addr##*:}
exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot open a raw connection to $addr"
printf 'GET / HTTP/1.1\r\nHost: smoke\r\n' >&3
exec 4<>"/dev/tcp/127.0.0.1/$port" || fail "cannot open a raw connection to $addr"
printf 'GET / HTTP/1.1\r\nHost: smoke\r\n\r\n' >&4
IFS= read -r -t 10 status_line <&4 || fail "no answer on the keep-alive connection"
[[ $status_line == "HTTP/1.1 200"* ]] || fail "GET / on the keep-alive connection: $status_line"
note "a half-sent request and an idle keep-alive connection are open"

# Graceful shutdown: exit status 0 within EXIT_TIMEOUT despite them, and the socket closed with
# 1001.
note "sending SIGTERM"
kill -TERM "$server_pid"
(
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$EXIT_TIMEOUT" &
    sleeper=$!
    wait "$sleeper"
    kill -KILL "$server_pid" 2>/dev/null
) >/dev/null 2>&1 &
watchdog=$!
rc=0
wait "$server_pid" || rc=$?
server_pid=""
kill -TERM "$watchdog" 2>/dev/null || true
wait "$watchdog" 2>/dev/null || true
[[ $rc -ne 137 ]] || fail "the example did not exit within ${EXIT_TIMEOUT} s of SIGTERM"
[[ $rc -eq 0 ]] || fail "the example exited with status $rc after SIGTERM, not 0"
exec 3>&- 4>&-

wait "$ws_pid" 2>/dev/null || true
ws_pid=""
# A server close frame: 0x88, a length byte, then the code 1001 (0x03e9).
frames=$(od -An -v -tx1 "$work/ws.frames" | tr -s ' \n' '  ')
[[ $frames =~ \ 88\ [0-7][0-9a-f]\ 03\ e9 ]] || fail "the socket was not closed with 1001"
note "SIGTERM: the socket got close 1001 and the example exited 0"

note "PASSED"
