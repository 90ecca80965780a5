#!/usr/bin/env bash
# A flamegraph of the wshub server during scenario 2's bursts (10,000 sockets with --full, 2,000
# with --quick): perf record with DWARF call graphs, folded and drawn with inferno.
#
#   bash bench/flamegraph.sh [--quick|--full] [OUT.svg]
#
# Needs perf (Debian: apt-get install linux-perf) and inferno (cargo install inferno); says so and
# stops when either is missing. perf may need kernel.perf_event_paranoid <= 1 for a user.
set -euo pipefail
mode=${1:---full}
out=${2:-docs/flamegraph-burst.svg}
cd "$(dirname "$0")/.."
for tool in perf inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "flamegraph.sh: $tool is missing (perf: linux-perf; inferno: cargo install inferno)" >&2; exit 1; }
done
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
cargo run --release -p wshub-bench --bin bench-run -- "$mode" --profile "$data/perf.data"
perf script -i "$data/perf.data" 2>/dev/null | inferno-collapse-perf > "$data/folded"
# Frames of the load client and perf itself are not in it: perf recorded the server's pid only.
inferno-flamegraph --title "wshub server, scenario 2 bursts ($mode)" --width 1400 < "$data/folded" > "$out"
# The heaviest frames, self time, for the notes.
awk '{ n = $NF; $NF = ""; split($0, f, ";"); leaf = f[length(f)]; self[leaf] += n; total += n }
     END { for (k in self) printf "%5.1f%%  %s\n", 100 * self[k] / total, k }' "$data/folded" \
  | sort -rn | head -25
echo "wrote $out"
