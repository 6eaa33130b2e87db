"""One WebRTC session per resolution against `rtc-demo serve`: the server's per-frame latency
(frame received whole -> encoded frame written, its own LatencyWindow) and the CPU the serve
process spent per second of video, read from /proc. The publisher is aiortc on the same
machine (its own encode and decode are not in serve's CPU figure). Run through
scripts/bench-webrtc.sh, which builds the release binary and gives it a private network
namespace."""
from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import av
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

TICKS = os.sysconf("SC_CLK_TCK")


class MovingBars(VideoStreamTrack):
    """30 fps of vertical luma bars sliding sideways: motion the encoders must code."""

    def __init__(self, width: int, height: int):
        super().__init__()
        self.width, self.height = width, height
        self.row = bytes((x * 7) % 220 + 16 for x in range(2 * width))
        self.t = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        shift = (self.t * 6) % self.width
        self.t += 1
        y = frame.planes[0]
        line = self.row[shift:shift + self.width] + bytes(y.line_size - self.width)
        y.update(line * self.height)
        for p in frame.planes[1:]:
            p.update(bytes([128]) * (p.line_size * p.height))
        frame.pts, frame.time_base = pts, time_base or fractions.Fraction(1, 90000)
        return frame


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def http(base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers, r.read()


async def one(base: str, pid: int, width: int, height: int, effects: str, seconds: float) -> dict:
    pc = RTCPeerConnection()
    t = pc.addTransceiver(MovingBars(width, height), direction="sendrecv")
    caps = RTCRtpSender.getCapabilities("video").codecs
    t.setCodecPreferences([c for c in caps if c.mimeType.lower() in ("video/vp8", "video/rtx")])
    got = asyncio.get_running_loop().create_future()
    pc.on("track", lambda track: got.done() or got.set_result(track))
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await asyncio.to_thread(
        http, base, "POST", f"/whip?effects={effects}", pc.localDescription.sdp.encode(),
        {"Content-Type": "application/sdp"})
    location = headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))
    track = await asyncio.wait_for(got, 15)
    received = 0

    async def drain():
        nonlocal received
        while True:
            await track.recv()
            received += 1

    drainer = asyncio.create_task(drain())
    await asyncio.sleep(3)  # warm up: key frame, bitrate ramp
    before = json.loads((await asyncio.to_thread(http, base, "GET", location))[2])
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    after = json.loads((await asyncio.to_thread(http, base, "GET", location))[2])
    drainer.cancel()
    await asyncio.to_thread(http, base, "DELETE", location)
    await pc.close()
    wall = t1 - t0
    out = after["frames_out"] - before["frames_out"]
    return {
        "pixels": f"{width}x{height}",
        "effects": effects,
        "device": after["device"],
        "fps_out": round(out / wall, 1),
        "dropped": after["frames_dropped"] - before["frames_dropped"],
        "frame_p50_ms": after["frame_p50_ms"],
        "frame_p95_ms": after["frame_p95_ms"],
        "serve_cpu_cores": round((cpu1 - cpu0) / wall, 2),
        "serve_cpu_ms_per_frame": round(1000 * (cpu1 - cpu0) / max(out, 1), 1),
        "target_kbps": after["target_kbps"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--effects", default="blur,translate,color")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--sizes", default="320x180,640x360,1280x720")
    a = ap.parse_args()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen([a.bin, "serve", "--device", a.device, "--listen", "127.0.0.1:0",
                             "--webrtc-udp", "10.99.0.1:0", "--log-format", "json", "--drain-delay", "0s"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = None
    for _ in range(300):
        m = re.search(r'"message":"listening".*?"addr":"([0-9.:]+)"|"addr":"([0-9.:]+)".*?"message":"listening"',
                      Path(log.name).read_text())
        if m:
            base = "http://" + (m.group(1) or m.group(2))
            break
        time.sleep(0.1)
    if not base:
        sys.exit(f"serve did not start: {Path(log.name).read_text()}")
    try:
        print(f"rtc-demo serve --device {a.device}, one session at a time, {a.seconds:.0f} s each "
              f"(after 3 s of warm-up), publisher: aiortc on this machine")
        print(f"{'pixels':>10} {'effects':>22} {'fps out':>8} {'dropped':>8} {'p50 ms':>7} {'p95 ms':>7} "
              f"{'serve CPU':>10} {'CPU ms/frame':>12} {'kbit/s':>7}")
        for size in a.sizes.split(","):
            w, h = map(int, size.split("x"))
            r = asyncio.run(one(base, proc.pid, w, h, a.effects, a.seconds))
            print(f"{r['pixels']:>10} {r['effects']:>22} {r['fps_out']:>8} {r['dropped']:>8} "
                  f"{r['frame_p50_ms']:>7} {r['frame_p95_ms']:>7} {r['serve_cpu_cores']:>9}c "
                  f"{r['serve_cpu_ms_per_frame']:>12} {r['target_kbps']:>7}  ({r['device']})")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
