#!/usr/bin/env bash
# Per-frame latency and CPU cost of one WebRTC session, per resolution (README, "WebRTC"):
# the release build, an aiortc publisher, inside a private network namespace.
#   scripts/bench-webrtc.sh                      # CPU device, the default effects, 10 s each
#   DEVICE=emulated SECONDS_EACH=20 scripts/bench-webrtc.sh
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup/test-deps.sh)"
cargo build -q --release --bin rtc-demo
. scripts/steal.sh
mark=$(steal_mark)
tests/webrtc/netns.sh "$RTC_TEST_PYTHON" scripts/bench_webrtc.py --bin target/release/rtc-demo \
  --device "${DEVICE:-cpu}" --seconds "${SECONDS_EACH:-10}" --effects "${EFFECTS:-blur,translate,color}"
echo "steal $(steal_since "$mark") % of the machine's CPU time during the runs"
