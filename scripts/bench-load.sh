#!/usr/bin/env bash
# rtc-demo load vs oha, one after the other, against the same loopback static server with the
# same duration and connection count (max throughput, closed loop: `rtc-demo load` without -q
# behaves as oha does). Prints both requests/s. Goal (SPEC §6): ours >= oha's.
#
#   scripts/bench-load.sh                  # 10s, 50 connections, 2 rounds
#   DURATION=20s CONNS=100 ROUNDS=3 scripts/bench-load.sh
#
# oha is installed from crates.io into .cache/oha on first use (takes a while on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18089}
OHA=.cache/oha/bin/oha

if [ ! -x "$OHA" ]; then
  echo "installing oha into .cache/oha (once) ..." >&2
  cargo install oha --locked --root .cache/oha
fi
cargo build --release --bin rtc-demo --example load_static_server >&2

target/release/examples/load_static_server "127.0.0.1:$PORT" > /dev/null &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
URL="http://127.0.0.1:$PORT/"

num() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(f"{eval(sys.argv[1]):.0f}")' "$1"; }

echo "machine: $(nproc) cores, $(uname -sr); server: load_static_server (hyper, all cores); -z $DURATION -c $CONNS"
. scripts/steal.sh
for round in $(seq "$ROUNDS"); do
  mark=$(steal_mark)
  ours=$(target/release/rtc-demo load -z "$DURATION" -c "$CONNS" --quiet --json "$URL" 2>/dev/null | num 'd["summary"]["achieved_rps"]')
  echo "round $round: rtc-demo load -z $DURATION -c $CONNS $URL  ->  $ours req/s"
  sleep 1
  theirs=$("$OHA" -z "$DURATION" -c "$CONNS" --no-tui --output-format json "$URL" | num 'd["summary"]["requestsPerSec"]')
  echo "round $round: oha -z $DURATION -c $CONNS $URL              ->  $theirs req/s  (steal over the round: $(steal_since "$mark") %)"
  sleep 1
done
