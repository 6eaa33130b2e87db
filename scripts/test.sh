#!/usr/bin/env bash
# The whole test suite, on a bare machine of this kind: installs the test dependencies
# (scripts/setup/test-deps.sh), then runs the Rust tests and the Python cluster-asset tests.
#   scripts/test.sh          what CI runs (the rehearsal compressed)
#   scripts/test.sh --full   also the shipped rehearsal in real time (about 6½ more minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
full=false
case "${1:-}" in
  --full) full=true ;;
  "") ;;
  *) echo "scripts/test.sh: unknown argument \`$1\` (expected nothing, or --full)" >&2; exit 2 ;;
esac
eval "$(scripts/setup/test-deps.sh)"
cargo build --workspace --bins
cargo test --workspace -- --test-threads 2
# The GPU parity tests are #[ignore]d (libtest has no runtime skip): run them where a GPU is,
# and say here, where the run's output shows it, that they did not run elsewhere.
gpu_tests=$(cargo test -q -p rtc-service --test gpu_parity -- --list --ignored 2>/dev/null | grep -c ': test$' || true)
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  cargo test -p rtc-service --test gpu_parity -- --ignored --test-threads 1
else
  echo "service/tests/gpu_parity.rs: $gpu_tests GPU tests ignored: skipped: no GPU (nvidia-smi finds none; they run with --ignored where one is)"
fi
if $full; then
  cargo test --test conduct_rehearsal -- --ignored --test-threads 1
else
  echo "tests/conduct_rehearsal.rs: the full real-time rehearsal ignored: skipped: CI runs it compressed; scripts/test.sh --full runs it"
fi
if [ -d tests/cluster ]; then
  RTC_DEMO_BIN="$PWD/target/debug/rtc-demo" "$RTC_TEST_PYTHON" -m pytest -q tests/cluster
fi
