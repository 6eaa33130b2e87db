#!/usr/bin/env bash
# Service overhead (SPEC §6): `rtc-demo serve --device cpu` under oha with the old FastAPI
# demo's three workloads, printed beside the figures that service reached on a 2-core
# machine of this kind. Goal: >= 20x on the first two, >= 10x on the third.
#
#   scripts/bench-serve.sh            # 10 s per workload
#   DURATION=20s scripts/bench-serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PORT=${PORT:-18090}
OHA=.cache/oha/bin/oha
if [ ! -x "$OHA" ]; then
  echo "installing oha into .cache/oha (once; takes a while on 2 cores) ..." >&2
  cargo install oha --locked --root .cache/oha
fi
cargo build -q --release --bin rtc-demo
RTC_LOG=warn target/release/rtc-demo serve --device cpu --listen "127.0.0.1:$PORT" \
  --max-inflight 256 --workers 2 > /dev/null &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && break; sleep 0.1; done

read -r -d '' STATS_PY <<'PY' || true
import json, sys
d = json.load(sys.stdin)
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
print("%9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  statuses %s" % (s["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3, codes))
PY
stats() { python3 -c "$STATS_PY"; }
run() {  # label, old figure, connections, path, [extra oha flags]
  printf '%-40s old FastAPI: %-24s rtc-demo: ' "$1" "$2"
  "$OHA" -z "$DURATION" -c "$3" ${5:-} --no-tui --output-format json "http://127.0.0.1:$PORT$4" | stats
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); -z $DURATION"
small=$(run "pixels=64x64&iters=1, 4 conns" "889 req/s, p99 9.2 ms" 4 "/process?pixels=64x64&iters=1"); echo "$small"
run "/healthz, 32 conns" "2270 req/s" 32 "/healthz"
run "pixels=1280x720&iters=5, 4 conns" "38 req/s, p50 105 ms" 4 "/process?pixels=1280x720&iters=5"
half=$(echo "$small" | sed -E 's/.*rtc-demo: *([0-9]+) req.*/\1/'); half=$((half / 2))
run "64x64 at half saturation (-q $half)" "goal: p99 < 5 ms" 4 "/process?pixels=64x64&iters=1" "-q $half"
