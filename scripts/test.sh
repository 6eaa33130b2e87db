#!/usr/bin/env bash
# The whole test suite, on a bare machine of this kind: installs the test dependencies
# (scripts/setup/test-deps.sh), then runs the Rust tests and the Python cluster-asset tests.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup/test-deps.sh)"
cargo build --workspace --bins
cargo test --workspace -- --test-threads 2
if [ -d tests/cluster ]; then
  RTC_DEMO_BIN="$PWD/target/debug/rtc-demo" "$RTC_TEST_PYTHON" -m pytest -q tests/cluster
fi
