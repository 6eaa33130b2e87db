"""WebRTC end to end against independent peers (aiortc, Debian's Chromium).

Every test here runs inside a private network namespace (tests/webrtc/netns.sh: `unshare -n`,
lo up, and a veth pair 10.99.0.1 <-> 10.99.0.2 that exists only inside it), so no test
traffic can leave the machine. Peers skip loopback when they gather ICE candidates (aioice
drops 127.0.0.1, Chromium ignores loopback adapters), hence the veth pair. Outside such a
namespace the tests refuse to run rather than touch the real network.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_IP = "10.99.0.1"
PEER_IP = "10.99.0.2"


def in_private_netns() -> bool:
    # /proc/self/net/dev lists the interfaces of this process's own namespace.
    interfaces = Path("/proc/self/net/dev").read_text()
    return os.environ.get("RTC_TEST_NETNS") == "1" and "rtcv0:" in interfaces


@pytest.fixture(autouse=True)
def private_network():
    if not in_private_netns():
        pytest.fail("run through tests/webrtc/netns.sh (a private network namespace), as scripts/test.sh does")


class Serve:
    """A real `rtc-demo serve` child: HTTP on loopback, WebRTC's UDP on the veth address."""

    def __init__(self, tmp: Path, *args: str):
        binary = Path(os.environ.get("RTC_DEMO_BIN") or ROOT / "target/debug/rtc-demo")
        if not binary.exists():
            pytest.fail(f"{binary} is missing (cargo build)")
        self.log_path = tmp / "serve.log"
        self.log = open(self.log_path, "w")
        # A test's last sessions need not outlive it: stop() ends them after 2 s.
        for flag, value in (("--drain-delay", "0s"), ("--shutdown-timeout", "2s"), ("--webrtc-udp", f"{SERVER_IP}:0")):
            if flag not in args:
                args = (flag, value, *args)
        argv = [str(binary), "serve", "--listen", "127.0.0.1:0", "--log-format", "json", *args]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.base = None
        deadline = time.time() + 30
        while time.time() < deadline and self.base is None:
            for line in self.log_path.read_text().splitlines():
                m = re.search(r'"addr":"([0-9.:]+)".*"listening"|"message":"listening".*"addr":"([0-9.:]+)"', line)
                if m:
                    self.base = f"http://{m.group(1) or m.group(2)}"
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited: {self.logs()}")
            time.sleep(0.05)
        if self.base is None:
            pytest.fail(f"serve did not start: {self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path: str) -> dict:
        status, _, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def metric(self, name: str) -> float:
        _, _, body = self.request("GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no {name} in /metrics")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture
def serve_cpu(tmp_path):
    s = Serve(tmp_path, "--device", "cpu")
    yield s
    s.stop()
