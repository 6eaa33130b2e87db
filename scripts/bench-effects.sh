#!/usr/bin/env bash
# CPU effects, rtc-demo vs OpenCV (opencv-python-headless from PyPI), same machine, same
# thread counts, same sizes, one after the other in this run. Prints ms/frame side by side.
#   scripts/bench-effects.sh [THREADS=1,2] [SIZES=1280x720,1920x1080] [FRAMES=30]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1,2}; sizes=${2:-1280x720,1920x1080}; frames=${3:-30}
venv=.cache/opencv-venv   # throwaway: delete it whenever you like
if [ ! -x "$venv/bin/python" ]; then
  echo "installing opencv-python-headless into $venv ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "opencv-python-headless==5.0.0.93" "numpy<3"
fi
. scripts/steal.sh
ours=$(mktemp); theirs=$(mktemp); trap 'rm -f "$ours" "$theirs"' EXIT
cargo bench -q -p rtc-service --bench effects --no-run >&2
mark=$(steal_mark)
echo "timing rtc-demo (release) ..." >&2
cargo bench -q -p rtc-service --bench effects -- --threads "$threads" --sizes "$sizes" --frames "$frames" > "$ours"
echo "timing OpenCV $("$venv/bin/python" -c 'import cv2; print(cv2.__version__)') ..." >&2
"$venv/bin/python" scripts/bench_effects_opencv.py "$threads" "$sizes" "$frames" > "$theirs"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; steal $(steal_since "$mark") % of CPU time while timing"
printf '%-10s %-10s %7s %12s %12s %14s\n' effect size threads "rtc-demo ms" "OpenCV ms" "OpenCV/ours"
join -j1 <(awk '{print $1"/"$2"/"$3, $4}' "$ours" | sort) <(awk '{print $1"/"$2"/"$3, $4}' "$theirs" | sort) |
  awk '{split($1,k,"/"); printf "%-10s %-10s %7s %12.2f %12.2f %13.2fx\n", k[1], k[2], k[3], $2, $3, $3/$2}' |
  sort -k3,3n -k2,2 -k1,1
