#!/usr/bin/env bash
# Bounded memory (SPEC §2, §6): runs `rtc-demo load` open-loop at a high rate against the
# loopback static server for DURATION (default 5m), samples its RSS once a second, and checks
# that RSS grew by less than LIMIT_MB (default 10) between second 10 and the end.
#
#   scripts/load-memory.sh                       # 5m at 20000 req/s, 50 connections
#   RATE=30000 DURATION=10m scripts/load-memory.sh
# Writes the samples to target/load-memory/rss.csv (second,rss_kb) and the run's JSON next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-20000}
DURATION=${DURATION:-5m}
CONNS=${CONNS:-50}
LIMIT_MB=${LIMIT_MB:-10}
PORT=${PORT:-18090}
OUT=target/load-memory
mkdir -p "$OUT"

if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --release --bin rtc-demo --example load_static_server >&2
fi
target/release/examples/load_static_server "127.0.0.1:$PORT" > /dev/null &
SERVER=$!
LOAD=
trap 'kill "$SERVER" 2>/dev/null || true; [ -n "$LOAD" ] && kill "$LOAD" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

target/release/rtc-demo load -q "$RATE" -z "$DURATION" -c "$CONNS" --quiet --json "http://127.0.0.1:$PORT/" > "$OUT/run.json" 2> "$OUT/run.log" &
LOAD=$!
echo "second,rss_kb" > "$OUT/rss.csv"
t=0
while kill -0 "$LOAD" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$LOAD/status" 2>/dev/null || true)
  [ -n "$rss" ] && echo "$t,$rss" >> "$OUT/rss.csv"
  sleep 1
  t=$((t + 1))
done
wait "$LOAD" || true
LOAD=

python3 - "$OUT/rss.csv" "$OUT/run.json" "$LIMIT_MB" <<'PY'
import csv, json, sys
rows = [(int(r["second"]), int(r["rss_kb"])) for r in csv.DictReader(open(sys.argv[1]))]
at10 = next(kb for s, kb in rows if s >= 10)
end = rows[-1][1]
peak = max(kb for s, kb in rows if s >= 10)
growth = (end - at10) / 1024
s = json.load(open(sys.argv[2]))["summary"]
print(f"run: {s['elapsed_s']:.0f}s, planned {s['planned']} = sent {s['sent']} + dropped {s['dropped']}, "
      f"achieved {s['achieved_rps']:.0f} req/s, corrected p99 {s['corrected']['p99_ms']:.2f} ms")
print(f"RSS at 10 s: {at10/1024:.1f} MB, at the end (s={rows[-1][0]}): {end/1024:.1f} MB, "
      f"peak after 10 s: {peak/1024:.1f} MB, growth: {growth:+.2f} MB (limit {sys.argv[3]} MB)")
sys.exit(0 if growth < float(sys.argv[3]) else 1)
PY
