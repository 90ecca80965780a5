#!/usr/bin/env bash
# A backend that publishes to wshub's sockets with curl: no WebSocket, one HTTP POST to the
# publish endpoint (docs/protocol.md §7).
#
#   WSHUB_PUBLISH_TOKEN=... examples/backend_publish.sh ACTION MESSAGE [RECIPIENT...]
#
# See usage() below, or run it with --help.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: backend_publish.sh [--json] ACTION MESSAGE [RECIPIENT...]

Publishes one envelope {action, message, recipients} to a wshub publish endpoint and prints
its answer, {"delivered": N}.

  ACTION      the envelope's action, e.g. news
  MESSAGE     the message, sent as a JSON string; with --json, a JSON value sent as it is
              (e.g. '{"text":"hi"}'), which browsers receive as an object
  RECIPIENT   TYPE:VALUE, one per argument: all, group:ROOM, user:ID, connection:ID,
              allButUser:ID, allButGroup:ROOM, allButConnection:ID. None: the default group
              (the connections that joined no group).

environment:
  WSHUB_PUBLISH_TOKEN   the bearer token (required; the example servers print theirs)
  WSHUB_ADDR            host:port of the server (default 127.0.0.1:3001, examples/hyper_server)
  WSHUB_PUBLISH_URL     the whole endpoint URL instead (default http://$WSHUB_ADDR/api/publish)

examples:
  WSHUB_PUBLISH_TOKEN=$TOKEN examples/backend_publish.sh news "hello" group:room-1
  WSHUB_ADDR=127.0.0.1:3000 WSHUB_PUBLISH_TOKEN=$TOKEN examples/backend_publish.sh \
      --json broadcastchatmessage '{"user":"cron","text":"backup done","time":"2026-01-01T00:00:00Z"}' group:lobby

exit status: 0 when the hub accepted it, 1 when it did not (or could not be reached), 2 on a
usage error.
EOF
}

die_usage() {
    echo "backend_publish.sh: $*" >&2
    echo "run 'backend_publish.sh --help' for usage" >&2
    exit 2
}

# json_string TEXT: TEXT as a JSON string literal.
json_string() {
    local text=$1 out="" char i code
    for ((i = 0; i < ${#text}; i++)); do
        char=${text:i:1}
        case $char in
        '"') out+='\"' ;;
        '\') out+='\\' ;;
        $'\n') out+='\n' ;;
        $'\r') out+='\r' ;;
        $'\t') out+='\t' ;;
        *)
            printf -v code '%d' "'$char"
            if ((code >= 0 && code < 32)); then
                printf -v char '\\u%04x' "$code"
            fi
            out+=$char
            ;;
        esac
    done
    printf '"%s"' "$out"
}

raw_json=false
while (($# > 0)); do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --json)
        raw_json=true
        shift
        ;;
    --)
        shift
        break
        ;;
    -*) die_usage "unknown option $1" ;;
    *) break ;;
    esac
done
(($# >= 2)) || die_usage "ACTION and MESSAGE are required"

command -v curl >/dev/null 2>&1 || {
    echo "backend_publish.sh: curl is required" >&2
    exit 1
}
token=${WSHUB_PUBLISH_TOKEN:-}
[[ -n $token ]] || die_usage "set WSHUB_PUBLISH_TOKEN to the server's publish token"
url=${WSHUB_PUBLISH_URL:-http://${WSHUB_ADDR:-127.0.0.1:3001}/api/publish}

action=$1
message=$2
shift 2
if [[ $raw_json == true ]]; then
    [[ -n $message ]] || die_usage "--json needs a JSON value as MESSAGE"
else
    message=$(json_string "$message")
fi

recipients=()
for recipient in "$@"; do
    type=${recipient%%:*}
    value=""
    [[ $recipient == *:* ]] && value=${recipient#*:}
    case $type in
    all) ;;
    group | user | connection | allButUser | allExceptUser | allButGroup | allButConnection)
        [[ -n $value ]] || die_usage "recipient '$recipient' needs a value: $type:VALUE"
        ;;
    *) die_usage "unknown recipient type '$type' in '$recipient'" ;;
    esac
    recipients+=("{\"type\":$(json_string "$type"),\"value\":$(json_string "$value")}")
done
joined=$(
    IFS=,
    echo "${recipients[*]}"
)
body="{\"action\":$(json_string "$action"),\"message\":$message,\"recipients\":[$joined]}"

answer=$(mktemp)
trap 'rm -f "$answer"' EXIT
# The token goes to curl on its standard input, not on the command line (where `ps` shows it).
quoted=${token//\\/\\\\}
quoted=${quoted//\"/\\\"}
status=$(printf 'header = "Authorization: Bearer %s"\n' "$quoted" |
    curl -sS --max-time 10 -K - -H 'content-type: application/json' \
        --data-binary "$body" -o "$answer" -w '%{http_code}' "$url") || {
    echo "backend_publish.sh: cannot reach $url" >&2
    exit 1
}
if [[ $status != 200 ]]; then
    echo "backend_publish.sh: $url answered $status: $(cat "$answer")" >&2
    exit 1
fi
cat "$answer"
echo
