#!/usr/bin/env bash
# Measures the console's own CPU share and RSS while it charts at 4 frames/s (SPEC §6 goal:
# under 3 % of one core, under 60 MB). Runs `rtc-demo conduct` in a real terminal (tmux,
# 100×30) on the local backend with a light scenario, samples /proc of the console process
# (not its replicas) over a window, and prints the figures.
#   usage: scripts/conduct-overhead.sh [SECONDS] [SCENARIO]
#   env:   RTC_DEMO_BIN (default target/release/rtc-demo, else target/debug/rtc-demo), FPS (4)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
scenario=${2:-tests/fixtures/conduct/e2e-28150.toml}
fps=${FPS:-4}
bin=${RTC_DEMO_BIN:-}
if [ -z "$bin" ]; then
  if [ -x target/release/rtc-demo ]; then bin=target/release/rtc-demo; else bin=target/debug/rtc-demo; fi
fi
command -v tmux >/dev/null || { echo "tmux is needed (scripts/setup/test-deps.sh installs it)" >&2; exit 2; }
sock="rtc-overhead-$$"
report=$(mktemp -d)
cleanup() { tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$report"; }
trap cleanup EXIT
tmux -L "$sock" -f /dev/null new-session -d -s t -x 100 -y 30 \
  "TERM=xterm-256color $bin conduct --backend local $scenario --fps $fps --report-dir $report"
shell=$(tmux -L "$sock" display-message -p -t t '#{pane_pid}')
pid=""
for _ in $(seq 100); do
  pid=$(pgrep -f -P "$shell" "conduct" || true)
  [ -z "$pid" ] && pid=$( [ "$(tr '\0' ' ' < /proc/$shell/cmdline)" != "${bin}" ] && grep -l conduct /proc/$shell/cmdline >/dev/null 2>&1 && echo "$shell" || true)
  [ -n "$pid" ] && break
  sleep 0.1
done
[ -n "$pid" ] || { echo "console process not found" >&2; exit 1; }
# wait for the first stage (replicas ready), then let it settle
for _ in $(seq 600); do tmux -L "$sock" capture-pane -p -t t | grep -q "Stage 1/" && break; sleep 0.1; done
sleep 5
. scripts/steal.sh
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks); s0=$(date +%s.%N); mark=$(steal_mark)
max_rss=0 max_anon=0
for _ in $(seq "$secs"); do
  sleep 1
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  anon=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")
  [ "$rss" -gt "$max_rss" ] && max_rss=$rss
  [ "$anon" -gt "$max_anon" ] && max_anon=$anon
done
t1=$(ticks); s1=$(date +%s.%N)
cpu=$(awk -v a="$t0" -v b="$t1" -v s0="$s0" -v s1="$s1" -v hz="$hz" 'BEGIN { printf "%.2f", 100 * (b - a) / hz / (s1 - s0) }')
echo "binary: $bin  fps: $fps  window: ${secs}s  terminal: tmux 100x30  scenario: $scenario  steal: $(steal_since "$mark") % of CPU time"
echo "console pid $pid: $(tr "\\0" " " < /proc/$pid/cmdline)"
echo "console CPU: ${cpu} % of one core (user+system, console process only; load engine included)"
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# RSS counts the binary's code pages once touched (clean, file-backed, shared with the
# replicas running the same binary); the anonymous part is what the console itself allocates.
echo "console RSS: max $(mb "$max_rss") MB (anonymous: max $(mb "$max_anon") MB)"
tmux -L "$sock" send-keys -t t q
sleep 1
