#!/usr/bin/env bash
# The full soak (scenarios/soak.toml, about 11 minutes a run): the rehearsal's story with the
# peak held 7 minutes at about 3 replicas of capacity, on emulated replicas, once with the
# shipped load-adapter HPA (utilisation, p95 as the guard) and once with the latency-only
# HPA, then both runs' figures side by side. CI runs a compressed copy
# (tests/conduct_rehearsal.rs).
#   scripts/soak.sh [OUT_DIR]        (default reports/soak-<time>)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/soak-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out"
cargo build --release --bin rtc-demo
bin=target/release/rtc-demo
for hpa in load-adapter latency-only-adapter; do
  echo "── soak with manifests/autoscaling/$hpa/hpa.yaml (report: $out/$hpa) ──"
  "$bin" conduct --backend local scenarios/soak.toml --headless \
    --hpa "manifests/autoscaling/$hpa/hpa.yaml" --report-dir "$out/$hpa" >"$out/$hpa.log" 2>&1 || true
  # The summary: everything after the per-second lines.
  sed -n '/── summary/,$p' "$out/$hpa.log"
done
echo "logs and reports in $out/ (the latency-only run is expected to fail its thresholds)"
exit 0
