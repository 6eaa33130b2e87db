"""How many WebRTC sessions one load process drives and one CPU replica serves, per profile
(360p at 15 fps, 720p at 30 fps), on this machine, in one run:

1. The driver's cost: N sessions from `rtc-demo load --webrtc` (a clip encoded once, each
   processed frame timed by RTP timestamp) and N from aiortc (the peer a Python load tool
   would use: it encodes every frame it sends and decodes every frame it gets back), each
   against the same `rtc-demo serve`; the CPU each driver process spent per session-second,
   read from /proc, and the sessions one core would drive at that cost (an extrapolation:
   serve shares this machine's two cores, so neither driver can be pushed to its limit here).
2. One CPU replica's capacity: `rtc-demo load --webrtc` with 1, 2, 3 ... sessions, each step
   its own run; the most sessions whose frame round trip p95 stays under 100 ms with under 5 %
   of frames lost (the replica processes the newest frame and skips the rest when behind).

Run through `scripts/bench-webrtc.sh sessions` (release build, private network namespace)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpsender import RTCRtpSender

sys.path.insert(0, os.path.dirname(__file__))
from bench_webrtc import MovingBars, cpu_seconds, http  # noqa: E402

PROFILES = {"360p15": (640, 360, 15), "720p30": (1280, 720, 30)}
WARM_UP = 3.0


def start_serve(binary: str, max_sessions: int) -> tuple[subprocess.Popen, str]:
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen([binary, "serve", "--device", "cpu", "--listen", "10.99.0.1:0",
                             "--webrtc-udp", "10.99.0.1:0", "--max-sessions", str(max_sessions),
                             "--log-format", "json", "--drain-delay", "0s", "--shutdown-timeout", "1s"],
                            stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        for line in open(log.name):
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if v.get("message") == "listening":
                return proc, "http://" + v["addr"]
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"serve did not start: {open(log.name).read()}")


def sessions_gone(base: str) -> None:
    for _ in range(100):
        text = http(base, "GET", "/metrics")[2].decode()
        if 'app_webrtc_sessions{role="publisher"} 0' in text:
            return
        time.sleep(0.1)


def rtc_demo_driver(binary: str, base: str, effects: str, w: int, h: int, fps: int, n: int, seconds: float) -> dict:
    """`rtc-demo load --webrtc` with n sessions; its CPU after the warm-up, and its summary."""
    proc = subprocess.Popen([binary, "load", "--webrtc", f"{base}/whip?effects={effects}", "--sessions", str(n),
                             "--size", f"{w}x{h}", "--fps", str(fps), "--kbps", str(kbps_for(w, h)),
                             "-z", f"{WARM_UP + seconds}s", "--json", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(WARM_UP)
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds - 0.3)
    cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    out, _ = proc.communicate(timeout=60)
    report = json.loads(out)
    return {"cpu_per_session": (cpu1 - cpu0) / (t1 - t0) / n, "summary": report["summary"],
            "seconds": report["seconds"]}


def kbps_for(w: int, h: int) -> int:
    return 600 if w * h <= 640 * 360 else 1500


async def aiortc_driver(base: str, effects: str, w: int, h: int, fps: int, n: int, seconds: float) -> dict:
    """n aiortc sendrecv sessions in this process; its CPU per session-second after the warm-up
    and the processed frames it received."""
    pcs, locations, received = [], [], [0]

    class Bars(MovingBars):
        async def next_timestamp(self):
            # MovingBars runs at aiortc's 30 fps clock; pace it to the profile's rate.
            self._n = getattr(self, "_n", 0) + 1
            if not hasattr(self, "_t0"):
                self._t0 = time.monotonic()
            wait = self._t0 + self._n / fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            return int(self._n * 90000 / fps), __import__("fractions").Fraction(1, 90000)

    async def drain(track):
        while True:
            await track.recv()
            received[0] += 1

    drainers = []
    for _ in range(n):
        pc = RTCPeerConnection()
        t = pc.addTransceiver(Bars(w, h), direction="sendrecv")
        caps = RTCRtpSender.getCapabilities("video").codecs
        t.setCodecPreferences([c for c in caps if c.mimeType.lower() == "video/vp8"])
        got = asyncio.get_running_loop().create_future()
        pc.on("track", lambda track, got=got: got.done() or got.set_result(track))
        await pc.setLocalDescription(await pc.createOffer())
        status, headers, answer = await asyncio.to_thread(
            http, base, "POST", f"/whip?effects={effects}", pc.localDescription.sdp.encode(),
            {"Content-Type": "application/sdp"})
        locations.append(headers["Location"])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))
        drainers.append(asyncio.create_task(drain(await asyncio.wait_for(got, 15))))
        pcs.append(pc)
    await asyncio.sleep(WARM_UP)
    me = os.getpid()
    cpu0, t0, r0 = cpu_seconds(me), time.monotonic(), received[0]
    await asyncio.sleep(seconds)
    cpu1, t1, r1 = cpu_seconds(me), time.monotonic(), received[0]
    for d in drainers:
        d.cancel()
    for loc in locations:
        await asyncio.to_thread(http, base, "DELETE", loc)
    for pc in pcs:
        await pc.close()
    return {"cpu_per_session": (cpu1 - cpu0) / (t1 - t0) / n, "fps_back": (r1 - r0) / (t1 - t0) / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--effects", default="blur,translate,color")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--driver-sessions", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=16)
    a = ap.parse_args()
    proc, base = start_serve(a.bin, 64)
    ncpu = os.cpu_count()
    try:
        print(f"This machine: {ncpu} cores. serve --device cpu (release), effects {a.effects}; "
              f"{a.seconds:.0f} s measured per row after {WARM_UP:.0f} s of warm-up.")
        print()
        print(f"1. The driver: {a.driver_sessions} sessions from each, against the same serve; "
              "CPU of the driver process alone.")
        print(f"{'profile':>8} {'driver':>16} {'CPU/session':>12} {'sessions/core':>14} {'fps back/session':>17} "
              f"{'late frames':>12}")
        for name, (w, h, fps) in PROFILES.items():
            n = a.driver_sessions
            r = rtc_demo_driver(a.bin, base, a.effects, w, h, fps, n, a.seconds)
            s = r["summary"]
            back = s["counts"]["frames_back"] / max(s["elapsed_s"], 1e-3) / n
            print(f"{name:>8} {'rtc-demo load':>16} {r['cpu_per_session'] * 100:>10.1f} % "
                  f"{1 / max(r['cpu_per_session'], 1e-4):>14.0f} {back:>17.1f} {s['counts']['frames_late']:>12}")
            sessions_gone(base)
            q = asyncio.run(aiortc_driver(base, a.effects, w, h, fps, n, a.seconds))
            print(f"{name:>8} {'aiortc 1.16':>16} {q['cpu_per_session'] * 100:>10.1f} % "
                  f"{1 / max(q['cpu_per_session'], 1e-4):>14.0f} {q['fps_back']:>17.1f} {'n/a':>12}")
            sessions_gone(base)
        print("   (sessions/core = 1 / CPU per session: an extrapolation, serve shares the cores here; "
              "fps back is what the replica returned, lower when it skips frames it is behind on)")
        print()
        print("2. One CPU replica: rtc-demo load --webrtc with N sessions, one run per N; "
              "capacity = most N with frame p95 < 100 ms and frame loss < 5 %.")
        print(f"{'profile':>8} {'sessions':>9} {'frame p50':>10} {'frame p95':>10} {'loss':>7} {'fps back':>9} "
              f"{'serve CPU':>10}")
        for name, (w, h, fps) in PROFILES.items():
            capacity = 0
            for n in range(1, a.max_steps + 1):
                c0, t0 = cpu_seconds(proc.pid), time.monotonic()
                r = rtc_demo_driver(a.bin, base, a.effects, w, h, fps, n, a.seconds)
                c1, t1 = cpu_seconds(proc.pid), time.monotonic()
                s = r["summary"]
                loss, p50, p95 = s["frame_loss"], s["frame"]["p50_ms"], s["frame"]["p95_ms"]
                back = s["counts"]["frames_back"] / max(s["elapsed_s"], 1e-3)
                ok = p95 < 100 and loss < 0.05 and s["counts"]["frames_back"] > 0
                print(f"{name:>8} {n:>9} {p50:>8.1f}ms {p95:>8.1f}ms {loss * 100:>6.1f}% {back:>9.1f} "
                      f"{(c1 - c0) / (t1 - t0):>9.2f}c {'✓' if ok else '✗'}")
                sessions_gone(base)
                if not ok:
                    break
                capacity = n
            if capacity == a.max_steps:
                print(f"{name:>8} capacity of one CPU replica on this machine: at least {capacity} sessions "
                      f"(the steps end at --max-steps {a.max_steps})")
            else:
                print(f"{name:>8} capacity of one CPU replica on this machine: {capacity} session(s)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
