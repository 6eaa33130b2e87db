#!/usr/bin/env bash
# `rtc-demo serve --device cpu` under oha, in two parts:
# 1. Beside its same-work Python peer, run here in the same run: FastAPI + OpenCV
#    (scripts/bench_serve_peer.py, installed into a throwaway venv) doing the same chain on
#    the same raw 1280x720 RGBA frames, frame in and frame out, and on synthetic frames.
#    Both with their defaults, 4 connections, one after the other. Also the service's peak
#    resident size over the raw-frame runs.
# 2. Service overhead (SPEC §6): the old FastAPI demo's three workloads, printed beside the
#    figures that service reached on a 2-core machine of this kind. Goal: >= 20x on the
#    first two, >= 10x on the third.
#
# 3. Only with BASELINE=<another build's rtc-demo>: that build and this one side by side, both
#    listening at once, ROUNDS alternating oha runs of raw 720p and synthetic 64x64 each, with
#    each server's CPU time per request at a fixed rate (less noisy than req/s on a machine
#    the client shares). Run-to-run noise here is +-10 % in req/s: compare the means.
#
#   scripts/bench-serve.sh            # 10 s per workload
#   DURATION=20s scripts/bench-serve.sh
#   PEER=0 scripts/bench-serve.sh     # part 2 only
#   git worktree add /tmp/old 1918929 && cargo build --release --manifest-path /tmp/old/Cargo.toml \
#     --target-dir /tmp/old/target && BASELINE=/tmp/old/target/release/rtc-demo PEER=0 scripts/bench-serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PORT=${PORT:-18090}
OHA=.cache/oha/bin/oha
if [ ! -x "$OHA" ]; then
  echo "installing oha into .cache/oha (once; takes a while on 2 cores) ..." >&2
  cargo install oha --locked --root .cache/oha
fi
# BIN: another build to measure (an older commit's, say); default: this tree's release build.
if [ -z "${BIN:-}" ]; then cargo build -q --release --bin rtc-demo; fi
BIN=${BIN:-target/release/rtc-demo}
PEER=${PEER:-1}
PEER_PORT=${PEER_PORT:-18091}
venv=.cache/serve-peer-venv   # throwaway: delete it whenever you like
if [ "$PEER" = 1 ] && [ ! -x "$venv/bin/uvicorn" ]; then
  echo "installing FastAPI, uvicorn and opencv-python-headless into $venv ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "opencv-python-headless==5.0.0.93" "numpy<3" \
    fastapi "uvicorn[standard]"
fi
. scripts/steal.sh
PIDS=() frame=""
# Waits for the servers to finish their graceful drain, so that a run straight after this
# one finds its ports free.
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; rm -f "$frame"; }
trap cleanup EXIT
# A server still listening on a port (an earlier run's, still draining) would answer in
# place of the one started here, or make its bind fail: wait up to 10 s for it to go.
wait_port_free() {
  for _ in $(seq 100); do (exec 3<> "/dev/tcp/127.0.0.1/$1") 2>/dev/null || return 0; sleep 0.1; done
  echo "port $1 on 127.0.0.1 is still in use after 10 s (another server?): stop it, or set ${2}=<free port>" >&2
  exit 1
}
wait_ready() {  # url, pid of the server that must answer it
  for _ in $(seq 200); do
    kill -0 "$2" 2>/dev/null || { echo "the server for $1 exited before answering" >&2; exit 1; }
    curl -sf "$1" > /dev/null && return
    sleep 0.1
  done
  echo "no answer from $1 after 20 s" >&2; exit 1
}
wait_port_free "$PORT" PORT
RTC_LOG=warn "$BIN" serve --device cpu --listen "127.0.0.1:$PORT" --max-inflight 256 > /dev/null &
SERVER=$!; PIDS+=("$SERVER")
wait_ready "http://127.0.0.1:$PORT/readyz" "$SERVER"

read -r -d '' STATS_PY <<'PY' || true
import json, sys
d = json.load(sys.stdin)
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
print("%9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  statuses %s" % (s["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3, codes))
PY
stats() { python3 -c "$STATS_PY"; }
run() {  # label, old figure, connections, path, [extra oha flags]
  local mark; mark=$(steal_mark)
  printf '%-40s old FastAPI: %-24s rtc-demo: ' "$1" "$2"
  "$OHA" -z "$DURATION" -c "$3" ${5:-} --no-tui --output-format json "http://127.0.0.1:$PORT$4" | stats | tr -d '\n'
  echo "  steal $(steal_since "$mark") %"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); -z $DURATION"
echo "rtc-demo serve: $(curl -s "http://127.0.0.1:$PORT/" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["device_name"])')"

if [ "$PEER" = 1 ]; then
  wait_port_free "$PEER_PORT" PEER_PORT
  "$venv/bin/uvicorn" --app-dir scripts bench_serve_peer:app --host 127.0.0.1 --port "$PEER_PORT" \
    --log-level warning --no-access-log &
  PEER_PID=$!; PIDS+=("$PEER_PID")
  wait_ready "http://127.0.0.1:$PEER_PORT/process?pixels=16x16" "$PEER_PID"
  echo "peer: FastAPI $("$venv/bin/python" -c 'import fastapi; print(fastapi.__version__)') + OpenCV $("$venv/bin/python" -c 'import cv2; print(cv2.__version__)') under uvicorn, one process"
  frame=$(mktemp)
  "$venv/bin/python" -c "import sys; sys.path.insert(0, 'scripts'); from bench_effects_opencv import synthetic; synthetic(1280, 720).tofile('$frame')"
  vs() {  # label, path, [extra oha flags]
    local ours theirs mark
    mark=$(steal_mark)
    ours=$("$OHA" -z "$DURATION" -c 4 ${3:-} --no-tui --output-format json "http://127.0.0.1:$PORT$2" | stats)
    theirs=$("$OHA" -z "$DURATION" -c 4 ${3:-} --no-tui --output-format json "http://127.0.0.1:$PEER_PORT$2" | stats)
    printf '%-30s rtc-demo: %s\n%-30s peer:     %s\n' "$1" "$ours" "" "$theirs"
    local a b; a=$(echo "$ours" | awk '{print $1}'); b=$(echo "$theirs" | awk '{print $1}')
    printf '%-30s rtc-demo / peer: %.2fx req/s  (steal %s %% of CPU time over both)\n' "" \
      "$(echo "$a $b" | awk '{print $1 / $2}')" "$(steal_since "$mark")"
  }
  raw=(-m POST -T application/octet-stream -D "$frame")
  vs "raw RGBA 720p, iters=1" "/process?pixels=1280x720&iters=1&format=rgba" "${raw[*]}"
  vs "raw RGBA 720p, iters=5" "/process?pixels=1280x720&iters=5&format=rgba" "${raw[*]}"
  echo "rtc-demo serve peak resident over the raw-frame runs: $(grep VmHWM /proc/$SERVER/status | awk '{printf "%.1f MiB", $2 / 1024}')"
  vs "synthetic 720p, iters=5" "/process?pixels=1280x720&iters=5"
  vs "synthetic 64x64, iters=1" "/process?pixels=64x64&iters=1"
  echo
fi
small=$(run "pixels=64x64&iters=1, 4 conns" "889 req/s, p99 9.2 ms" 4 "/process?pixels=64x64&iters=1"); echo "$small"
run "/healthz, 32 conns" "2270 req/s" 32 "/healthz"
run "pixels=1280x720&iters=5, 4 conns" "38 req/s, p50 105 ms" 4 "/process?pixels=1280x720&iters=5"
half=$(echo "$small" | sed -E 's/.*rtc-demo: *([0-9]+) req.*/\1/'); half=$((half / 2))
run "64x64 at half saturation (-q $half)" "goal: p99 < 5 ms" 4 "/process?pixels=64x64&iters=1" "-q $half"

if [ -n "${BASELINE:-}" ]; then
  ROUNDS=${ROUNDS:-4} BASE_PORT=${BASE_PORT:-18092}
  [ -n "$frame" ] || { frame=$(mktemp); python3 - "$frame" <<'PY'
import sys
# The synthetic frame's bytes do not matter to the server's cost; any 1280x720 RGBA frame will do.
open(sys.argv[1], "wb").write(bytes(range(256)) * (1280 * 720 * 4 // 256))
PY
  }
  raw=(-m POST -T application/octet-stream -D "$frame")
  wait_port_free "$BASE_PORT" BASE_PORT
  RTC_LOG=warn "$BASELINE" serve --device cpu --listen "127.0.0.1:$BASE_PORT" --max-inflight 256 > /dev/null &
  BASE_PID=$!; PIDS+=("$BASE_PID")
  wait_ready "http://127.0.0.1:$BASE_PORT/readyz" "$BASE_PID"
  echo
  echo "side by side: baseline $BASELINE (port $BASE_PORT) and $BIN (port $PORT), $ROUNDS alternating rounds of -z $DURATION"
  cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
  # label, path, fixed rate for the CPU rows, [extra oha flags]
  side_by_side() {
    local side port pid out t0 t1 ok r
    declare -A sum=() cpu=()
    for r in $(seq "$ROUNDS"); do
      for side in baseline this; do
        if [ "$side" = baseline ]; then port=$BASE_PORT pid=$BASE_PID; else port=$PORT pid=$SERVER; fi
        out=$("$OHA" -z "$DURATION" -c 4 ${4:-} --no-tui --output-format json "http://127.0.0.1:$port$2" | stats)
        printf '%-30s round %d %-8s %s\n' "$1" "$r" "$side" "$out"
        sum[$side]=$(echo "${sum[$side]:-0} $(echo "$out" | awk '{print $1}')" | awk '{print $1 + $2}')
        t0=$(cpu_ticks "$pid")
        ok=$("$OHA" -z "$DURATION" -c 4 -q "$3" ${4:-} --no-tui --output-format json "http://127.0.0.1:$port$2" \
          | python3 -c 'import json, sys; print(json.load(sys.stdin).get("statusCodeDistribution", {}).get("200", 0))')
        t1=$(cpu_ticks "$pid")
        cpu[$side]="${cpu[$side]:-} $(awk -v t=$((t1 - t0)) -v n="$ok" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", n ? 1000 * t / hz / n : 0 }')"
      done
    done
    for side in baseline this; do
      printf '%-30s %-8s mean %7.1f req/s; server CPU per request at %s req/s: %s ms\n' "$1" "$side" \
        "$(echo "${sum[$side]} $ROUNDS" | awk '{print $1 / $2}')" "$3" "${cpu[$side]# }"
    done
  }
  mark=$(steal_mark)
  side_by_side "raw RGBA 720p, iters=1" "/process?pixels=1280x720&iters=1&format=rgba" 60 "${raw[*]}"
  side_by_side "synthetic 64x64, iters=1" "/process?pixels=64x64&iters=1" 1500
  echo "steal $(steal_since "$mark") % of CPU time over the side-by-side rounds"
fi
