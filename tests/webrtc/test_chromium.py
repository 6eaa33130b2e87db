"""A real browser as the presenter: Debian's Chromium, headless, opens the page `serve` ships
(/webrtc), publishes a fake camera that plays a .y4m file this test writes (a flat grey), and
shows the processed video it gets back. The test reads the page's own state and the mean
colour of both videos through the DevTools protocol: the `color` grade must show in the
received picture and not in the sent one."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from conftest import Serve

WIDTH, HEIGHT, FRAMES = 320, 180, 30
GREY_YUV = (126, 128, 128)


def write_y4m(path: Path):
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F30:1 Ip A1:1 C420jpeg\n".encode())
        y, u, v = GREY_YUV
        frame = bytes([y]) * (WIDTH * HEIGHT) + bytes([u]) * (WIDTH * HEIGHT // 4) + bytes([v]) * (WIDTH * HEIGHT // 4)
        for _ in range(FRAMES):
            f.write(b"FRAME\n" + frame)


class DevTools:
    """Runtime.evaluate on the page, over the DevTools websocket."""

    def __init__(self, port: int):
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "Chromium's DevTools did not list the page"
            time.sleep(0.2)
        # Entered as websockets wants its connections used; left in close().
        self.connection = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        self.ws = self.connection.__enter__()
        self.next_id = 0

    def close(self):
        self.connection.__exit__(None, None, None)

    def evaluate(self, expression: str):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": "Runtime.evaluate",
                                 "params": {"expression": expression, "returnByValue": True}}))
        while True:
            msg = json.loads(self.ws.recv(timeout=10))
            if msg.get("id") == self.next_id:
                result = msg["result"]
                assert "exceptionDetails" not in result, result
                return result["result"].get("value")


class Browser:
    """Headless Chromium on the page, its camera a grey .y4m; closed on exit."""

    def __init__(self, serve, tmp_path: Path, query: str = f"autostart=1&effects=color&size={WIDTH}x{HEIGHT}"):
        chromium = os.environ.get("RTC_TEST_CHROMIUM") or shutil.which("chromium")
        if not chromium:
            pytest.fail("chromium is missing: scripts/setup/test-deps.sh installs it (in the background: "
                        ".cache/chromium-install.log)")
        camera = tmp_path / "grey.y4m"
        write_y4m(camera)
        profile = tmp_path / "profile"
        url = f"{serve.base}/webrtc?{query}"
        self.log_path = tmp_path / "chromium.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}", "--autoplay-policy=no-user-gesture-required",
            url,
        ], stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert self.proc.poll() is None, f"chromium exited: {self.log_path.read_text()[-3000:]}"
            assert time.time() < deadline, "chromium did not open DevTools"
            time.sleep(0.2)
        self.page = DevTools(int(port_file.read_text().split()[0]))

    def wait_for_processed_video(self, frames: int = 30, timeout: float = 40, local: bool = True) -> dict:
        """The page's state once `frames` processed frames have gone out and both videos play."""
        state = None
        deadline = time.time() + timeout
        while time.time() < deadline:
            # null until the page has loaded
            state = self.page.evaluate("""typeof rtcDemo === 'undefined' ? null : JSON.stringify({
                state: rtcDemo.state, error: rtcDemo.error, local: rtcDemo.meanColour('local'),
                remote: rtcDemo.meanColour('remote'), server: rtcDemo.server, stats: rtcDemo.stats})""")
            if state is None:
                time.sleep(0.2)
                continue
            state = json.loads(state)
            assert state["state"] != "failed", state
            server = state["server"] or {}
            if state["remote"] and (state["local"] or not local) and server.get("frames_out", 0) >= frames:
                break
            time.sleep(0.5)
        assert state and state["state"] == "connected", state
        return state

    def close(self):
        self.page.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def assert_graded(state: dict):
    (lr, lg, lb), (rr, rg, rb) = state["local"], state["remote"]
    # Sent: flat grey, R ≈ B. Received: the grade (reds up, blues down).
    assert abs(lr - lb) < 8, f"the fake camera is not grey: {state}"
    assert rr - rb > 25, f"the received video is not graded: {state}"


def test_the_page_publishes_a_camera_and_shows_it_processed(serve_cpu, tmp_path):
    browser = Browser(serve_cpu, tmp_path)
    try:
        state = browser.wait_for_processed_video()
        assert_graded(state)
        server = state["server"]
        assert server["device"] == "cpu" and server["effects"] == ["color"], server
        assert server["pixels"] == f"{WIDTH}x{HEIGHT}", server
        caption = browser.page.evaluate("document.getElementById('remote-caption').textContent")
        assert caption == "processed on CPU", caption
        assert serve_cpu.metric('app_webrtc_sessions{role="publisher"}') == 1
    finally:
        browser.close()
    # The browser went away without a DELETE: ICE consent lapses and the session ends.
    deadline = time.time() + 30
    while serve_cpu.metric('app_webrtc_sessions{role="publisher"}') != 0:
        assert time.time() < deadline, "the session outlived its browser by 30 s"
        time.sleep(0.5)


def test_ice_tcp_carries_the_session_where_udp_cannot_pass(tmp_path):
    # The UDP candidate (and the pod-address TCP one) name 10.99.0.3, which nothing answers:
    # only the loopback ICE-TCP candidate, the one a `kubectl port-forward` carries, works.
    serve = Serve(tmp_path, "--device", "cpu", "--webrtc-ip", "10.99.0.3", "--webrtc-tcp", "0.0.0.0:0")
    browser = None
    try:
        info = serve.json("/")["webrtc"]
        assert info["candidate"].startswith("10.99.0.3:"), info
        assert any(c.startswith("127.0.0.1:") for c in info["tcp_candidates"]), info
        browser = Browser(serve, tmp_path)
        state = browser.wait_for_processed_video(frames=20, timeout=45)
        assert_graded(state)
        # The page's own getStats(): the selected pair reaches the pod over TCP, on loopback.
        deadline = time.time() + 10
        while not (state["stats"] or {}).get("path"):
            assert time.time() < deadline, state
            time.sleep(0.5)
            state = browser.wait_for_processed_video(frames=20)
        assert state["stats"]["path"].startswith("tcp to 127.0.0.1:"), state["stats"]
    finally:
        if browser:
            browser.close()
        serve.stop()


def test_the_page_watches_an_obs_style_session_with_whep(serve_cpu, tmp_path):
    # aiortc publishes H.264 sendonly, as OBS's WHIP output does; the page's watch mode
    # (WHEP, a recvonly offer to the session's URL) plays the processed video in VP8.
    import asyncio

    from aiortc import RTCPeerConnection

    from test_aiortc import GreyCamera, offer_to, prefer

    async def publish_then_watch():
        publisher = RTCPeerConnection()
        prefer(publisher.addTransceiver(GreyCamera(), direction="sendonly"), "video/h264")
        status, headers, answer = await offer_to(serve_cpu, publisher, "/whip?effects=color")
        assert status == 201, answer
        location = headers["Location"]
        listed = serve_cpu.json("/")["webrtc"]["session_urls"]
        assert listed == [location], listed
        browser = await asyncio.to_thread(Browser, serve_cpu, tmp_path, f"watch={location}")
        try:
            state = await asyncio.to_thread(browser.wait_for_processed_video, 30, 40, False)
            (rr, rg, rb) = state["remote"]
            assert rr - rb > 25, f"the watched video is not graded: {state}"
            assert serve_cpu.metric('app_webrtc_sessions{role="viewer"}') == 1
        finally:
            await asyncio.to_thread(browser.close)
            await publisher.close()

    asyncio.run(publish_then_watch())
