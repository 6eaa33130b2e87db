#!/usr/bin/env bash
# GPU check and benchmark, one command (needs an NVIDIA GPU and driver):
#   1. builds release binaries (gpu-bench, rtc-demo);
#   2. runs the GPU/CPU parity tests (service/tests/gpu_parity.rs) and stops if they fail
#      or find no GPU;
#   3. times every kernel with CUDA events at 720p, 1080p and 4K: achieved GB/s beside the
#      memory-bandwidth floor (goal: every kernel within 2x of it at 1080p);
#   4. end-to-end latency p50/p99 of POST /process?pixels=1920x1080&iters=5: in process
#      (Device::process) and over HTTP against `rtc-demo serve --device cuda`; and in
#      process a raw 720p RGBA frame from ordinary memory (staged, two CPU copies more)
#      beside the same frame in a page-locked frame the device lends.
# Env: RTC_NVRTC_LIB (NVRTC to use; default: the system's, else the test venv's wheel),
#      BENCH_REPS (50), BENCH_REQUESTS (200), RTC_BENCH_PEAK_GBPS (override the peak).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[gpu-bench] $*" >&2; }

if ! { command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2; }; then
  log "no GPU on this machine (nvidia-smi finds none): nothing to check or time"
  exit 3
fi

# NVRTC: the system's (a CUDA toolkit or runtime on the loader path) or the pip wheel.
if [ -z "${RTC_NVRTC_LIB:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so\.1[23] '; then
  wheel=$(find .cache/venv -name 'libnvrtc.so.1[23]' 2>/dev/null | sort | tail -n 1 || true)
  if [ -z "$wheel" ]; then
    log "no system NVRTC: installing the test dependencies (scripts/setup/test-deps.sh)"
    eval "$(scripts/setup/test-deps.sh)"
    wheel=${RTC_TEST_NVRTC:-}
  fi
  case "$wheel" in /* | "") ;; *) wheel="$PWD/$wheel" ;; esac
  if [ -n "$wheel" ]; then export RTC_NVRTC_LIB="$wheel"; fi
  log "RTC_NVRTC_LIB=${RTC_NVRTC_LIB:-none found}"
fi
export RTC_TEST_NVRTC="${RTC_TEST_NVRTC:-${RTC_NVRTC_LIB:-}}"

log "building (release)"
cargo build --release -p rtc-service --bin gpu-bench
cargo build --release --bin rtc-demo

log "parity tests"
parity=$(cargo test --release -p rtc-service --test gpu_parity -- --include-ignored --nocapture --test-threads 1 2>&1) || {
  echo "$parity"
  log "parity tests FAILED"
  exit 1
}
echo "$parity" | grep -E '^test |test result|differ' || true
if echo "$parity" | grep -q 'skipped: no GPU'; then
  log "nvidia-smi sees a GPU but CUDA opens none: nothing to time"
  exit 3
fi

log "kernel timings and in-process latency"
target/release/gpu-bench --reps "${BENCH_REPS:-50}" --requests "${BENCH_REQUESTS:-200}"

log "HTTP end-to-end latency"
port=$((20000 + RANDOM % 20000))
target/release/rtc-demo serve --device cuda --listen "127.0.0.1:$port" >/tmp/rtc-gpu-bench-serve.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat /tmp/rtc-gpu-bench-serve.log; log "serve exited"; exit 1; }
  sleep 0.1
done
url="http://127.0.0.1:$port/process?pixels=1920x1080&iters=5"
for _ in $(seq 1 10); do curl -fs -X POST -o /dev/null "$url"; done
n=${BENCH_REQUESTS:-200}
for _ in $(seq 1 "$n"); do curl -fs -X POST -o /dev/null -w '%{time_total}\n' "$url"; done |
  sort -n | awk -v n="$n" '{ v[NR] = $1 } END {
    p50 = v[int((NR * 0.50) + 0.999)]; p99 = v[int((NR * 0.99) + 0.999)];
    printf "HTTP POST /process?pixels=1920x1080&iters=5 (sequential, curl): p50 %.3f ms, p99 %.3f ms (%d requests)\n", p50 * 1000, p99 * 1000, NR }'
curl -fs "http://127.0.0.1:$port/metrics" | grep -E '^app_(device_info|gpu)' || true
