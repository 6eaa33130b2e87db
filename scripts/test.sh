#!/usr/bin/env bash
# The whole test suite, on a bare machine of this kind: installs the test dependencies
# (scripts/setup/test-deps.sh), builds once, then runs the Rust tests under cargo-nextest
# (.config/nextest.toml: several at once, the CPU-bound ones one at a time, the rehearsal
# first and alone), then the Python cluster-asset tests, then WebRTC against independent peers
# (aiortc, headless Chromium) inside a private network namespace (tests/webrtc/netns.sh).
#   scripts/test.sh          what CI runs (the rehearsal compressed)
#   scripts/test.sh --full   also the shipped rehearsals (HTTP and WebRTC) in real time, side by
#                            side (about 6½ more minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
full=false
case "${1:-}" in
  --full) full=true ;;
  "") ;;
  *) echo "scripts/test.sh: unknown argument \`$1\` (expected nothing, or --full)" >&2; exit 2 ;;
esac
started=$(date +%s)
eval "$(scripts/setup/test-deps.sh)"

# One build for everything below: the test binaries, and target/debug/rtc-demo (the bins of
# the package under test, with the same features) that the Python tests drive. nextest's own
# build step finds it done.
cargo test --workspace --no-run

rust=0
cargo nextest run --workspace --profile ci || rust=$?
# After the Rust suite, not beside it: the manifests' renders keep both cores busy for half
# a minute, which would land in the rehearsal's timing.
echo "---- tests/cluster (pytest) ----"
py=0
RTC_DEMO_BIN="$PWD/target/debug/rtc-demo" "$RTC_TEST_PYTHON" -m pytest -q tests/cluster || py=$?
echo "---- tests/webrtc (pytest, private network namespace) ----"
webrtc=0
# Chromium was installing in the background since test-deps.sh (at most 10 minutes more).
for _ in $(seq 600); do [ -s "$RTC_TEST_CHROMIUM_INSTALL" ] && break; sleep 1; done
if [ "$(cat "$RTC_TEST_CHROMIUM_INSTALL" 2>/dev/null)" != 0 ]; then
  echo "chromium did not install: $(tail -n 5 .cache/chromium-install.log 2>/dev/null)"
fi
RTC_DEMO_BIN="$PWD/target/debug/rtc-demo" tests/webrtc/netns.sh "$RTC_TEST_PYTHON" -m pytest -q tests/webrtc || webrtc=$?

# The GPU parity tests are #[ignore]d: run them where a GPU is, and say where the run's output
# shows it that they did not run elsewhere.
gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  cargo nextest run --workspace --run-ignored only -E 'binary(gpu_parity)' --profile ci || gpu=$?
  gpu_line="service/tests/gpu_parity.rs: ran on $(nvidia-smi -L | head -n 1)"
else
  # --workspace, as the run above: with -p the dev-dependencies' features differ and cargo
  # would build again.
  n=$(cargo nextest list --workspace --run-ignored only -E 'binary(gpu_parity)' --message-format oneline 2>/dev/null | grep -c . || true)
  gpu_line="service/tests/gpu_parity.rs: $n GPU tests skipped: no GPU (nvidia-smi finds none; they run with --run-ignored where one is)"
fi
full_rc=0
if $full; then
  cargo nextest run --workspace --run-ignored only -E 'binary(conduct_rehearsal)' --profile ci || full_rc=$?
  full_line="tests/conduct_rehearsal.rs: the full real-time rehearsals (HTTP and WebRTC) ran"
else
  full_line="tests/conduct_rehearsal.rs: the full real-time rehearsals (HTTP and WebRTC) skipped: CI runs them compressed; scripts/test.sh --full runs them"
fi

echo "---- summary ----"
echo "$gpu_line"
echo "$full_line"
echo "rust: exit $rust · tests/cluster: exit $py · tests/webrtc: exit $webrtc · gpu: exit $gpu · full rehearsal: exit $full_rc · $(( $(date +%s) - started )) s in all"
[ "$rust" = 0 ] && [ "$py" = 0 ] && [ "$webrtc" = 0 ] && [ "$gpu" = 0 ] && [ "$full_rc" = 0 ]
