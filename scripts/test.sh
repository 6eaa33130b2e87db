#!/usr/bin/env bash
# The whole test suite, on a bare machine of this kind: installs the test dependencies
# (scripts/setup/test-deps.sh), then runs the Rust tests and the Python cluster-asset tests.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup/test-deps.sh)"
cargo build --workspace --bins
cargo test --workspace -- --test-threads 2
# libtest has no runtime skip: without a GPU the GPU tests print "skipped: no GPU" (captured
# above) and count as passed. Say here, where the run's output shows it, that they checked nothing.
skipped=$(cargo test -q -p rtc-service --test gpu_parity -- --nocapture 2>&1 | grep -c "skipped: no GPU" || true)
if [ "$skipped" -gt 0 ]; then
  echo "service/tests/gpu_parity.rs: $skipped tests skipped: no GPU (counted as passed above; they checked nothing)"
fi
if [ -d tests/cluster ]; then
  RTC_DEMO_BIN="$PWD/target/debug/rtc-demo" "$RTC_TEST_PYTHON" -m pytest -q tests/cluster
fi
