#!/usr/bin/env bash
# Installs what the test suite needs on a bare machine of this kind, idempotently:
#   - Debian packages: prometheus (real Prometheus for the query tests), tmux (TUI end-to-end),
#     libvpx7 and libopenh264-7 (VP8, and H.264 decoding, for WebRTC; loaded at run time), chromium (the browser peer of the WebRTC
#     end-to-end test)
#   - kubectl from Debian's kubernetes-client, unpacked into .cache/kubectl (not installed:
#     /usr/bin/kubectl may already belong to something else)
#   - a Python venv in .cache/venv with tests/requirements.txt (pytest, kubernetes-validate,
#     the nvidia-cuda-nvrtc wheel that carries libnvrtc.so for the kernel compile test)
# Prints `export` lines for scripts/test.sh to eval.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache="$root/.cache"
mkdir -p "$cache"
log() { echo "[test-deps] $*" >&2; }

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v tmux >/dev/null || need_apt+=(tmux)
ldconfig -p | grep -q 'libvpx.so.7 ' || need_apt+=(libvpx7)
ldconfig -p | grep -q 'libopenh264.so.7 ' || need_apt+=(libopenh264-7)
command -v ip >/dev/null || need_apt+=(iproute2)  # tests/webrtc/netns.sh's veth pair
export DEBIAN_FRONTEND=noninteractive
updated=false
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq >&2
  updated=true
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi
# Chromium (a minute or more to fetch and unpack) is needed only by tests/webrtc, the last
# tests scripts/test.sh runs: it installs in the background, beside the build, and
# RTC_TEST_CHROMIUM_INSTALL names the file its exit status lands in (test.sh waits for it).
chromium_rc="$cache/chromium-install.rc"
if ! command -v chromium >/dev/null; then
  log "installing chromium in the background (tests/webrtc; log: $cache/chromium-install.log)"
  rm -f "$chromium_rc"
  (
    { $updated || apt-get update -qq; } && apt-get install -y -qq --no-install-recommends chromium
    echo $? > "$chromium_rc"
  ) < /dev/null > "$cache/chromium-install.log" 2>&1 &
else
  echo 0 > "$chromium_rc"
fi

kubectl="$cache/kubectl/usr/bin/kubectl"
if [ ! -x "$kubectl" ]; then
  log "fetching kubectl (Debian kubernetes-client) into $cache/kubectl"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download kubernetes-client >&2 2>/dev/null || { apt-get update -qq >&2 && apt-get download kubernetes-client >&2; })
  dpkg -x "$tmp"/kubernetes-client_*.deb "$cache/kubectl"
  rm -rf "$tmp"
fi

venv="$cache/venv"
stamp="$venv/.requirements.sha"
want=$(sha256sum "$root/tests/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "creating $venv from tests/requirements.txt"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/requirements.txt" >&2
  echo "$want" > "$stamp"
fi

nvrtc=$(find "$venv" -name 'libnvrtc.so*' -not -name '*builtins*' | sort | head -n 1)
[ -n "$nvrtc" ] || { log "libnvrtc not found in $venv"; exit 1; }

echo "export RTC_TEST_PROMETHEUS=$(command -v prometheus)"
echo "export RTC_TEST_KUBECTL=$kubectl"
echo "export RTC_TEST_KUSTOMIZE_KUBECTL=$venv/bin/kubectl"
echo "export RTC_TEST_PYTHON=$venv/bin/python"
echo "export RTC_TEST_NVRTC=$nvrtc"
echo "export RTC_TEST_NVRTC_DIR=$(dirname "$nvrtc")"
echo "export RTC_TEST_CHROMIUM_INSTALL=$chromium_rc"
