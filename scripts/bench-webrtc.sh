#!/usr/bin/env bash
# WebRTC benchmarks (README, "WebRTC"): the release build, inside a private network namespace.
#   scripts/bench-webrtc.sh            per-frame latency and CPU cost of one session, per
#                                      resolution (an aiortc publisher)
#   scripts/bench-webrtc.sh sessions   sessions one load process drives (rtc-demo load --webrtc
#                                      beside aiortc) and one CPU replica serves, at 360p/15 fps
#                                      and 720p/30 fps (about 5 minutes)
#   DEVICE=emulated SECONDS_EACH=20 EFFECTS=color scripts/bench-webrtc.sh
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") bench=(scripts/bench_webrtc.py --device "${DEVICE:-cpu}" --seconds "${SECONDS_EACH:-10}") ;;
  sessions) bench=(scripts/bench_webrtc_sessions.py --seconds "${SECONDS_EACH:-8}") ;;
  *) echo "scripts/bench-webrtc.sh: unknown benchmark \`$1\` (expected nothing, or sessions)" >&2; exit 2 ;;
esac
eval "$(scripts/setup/test-deps.sh)"
cargo build -q --release --bin rtc-demo
. scripts/steal.sh
mark=$(steal_mark)
tests/webrtc/netns.sh "$RTC_TEST_PYTHON" "${bench[@]}" --bin target/release/rtc-demo \
  --effects "${EFFECTS:-blur,translate,color}"
echo "steal $(steal_since "$mark") % of the machine's CPU time during the runs"
