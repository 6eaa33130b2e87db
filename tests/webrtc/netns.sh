#!/usr/bin/env bash
# Runs a command in a private network namespace: lo up, plus a veth pair (rtcv0 10.99.0.1,
# rtcv1 10.99.0.2) that exists only inside it, so WebRTC peers that skip loopback still find
# each other and no packet can leave the machine. Needs root (CI and these machines run as
# root); `unshare -n` creates the namespace, which ends with the command.
set -euo pipefail
if [ "${RTC_TEST_NETNS:-}" != "1" ]; then
  exec unshare -n env RTC_TEST_NETNS=1 "$0" "$@"
fi
ip link set lo up
ip link add rtcv0 type veth peer name rtcv1
ip addr add 10.99.0.1/24 dev rtcv0
ip addr add 10.99.0.2/24 dev rtcv1
ip link set rtcv0 up
ip link set rtcv1 up
exec "$@"
