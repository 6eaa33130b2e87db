"""WHIP signalling against the real `serve`: what each wrong request gets, sessions admitted
like requests (503 with Retry-After past --max-sessions, a DELETE frees the slot), the bearer
token, and SIGTERM with a session running. Offers are made by aiortc, an independent stack."""
from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcrtpsender import RTCRtpSender

from conftest import Serve
from test_aiortc import GreyCamera, collect, publish_sendrecv

SDP = {"Content-Type": "application/sdp"}


async def make_offer(video: bool = True, codec: str = "video/VP8") -> str:
    pc = RTCPeerConnection()
    if video:
        t = pc.addTransceiver(GreyCamera(), direction="sendrecv")
        caps = RTCRtpSender.getCapabilities("video").codecs
        t.setCodecPreferences([c for c in caps if c.mimeType.lower() in (codec.lower(), "video/rtx")])
    else:
        pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def error(body: bytes) -> dict:
    return json.loads(body)


def test_each_wrong_request_gets_its_own_answer(serve_cpu):
    s = serve_cpu
    offer = asyncio.run(make_offer()).encode()
    status, headers, body = s.request("POST", "/whip", offer, {"Content-Type": "text/plain"})
    assert status == 415 and "application/sdp" in error(body)["detail"], body
    assert headers["Access-Control-Allow-Origin"] == "*", "a refusal reaches a browser client too"
    status, headers, body = s.request("GET", "/whip")
    assert status == 405 and headers["Allow"] == "POST, OPTIONS", (status, body)
    status, headers, body = s.request("OPTIONS", "/whip")
    assert status == 204 and headers["Accept-Post"] == "application/sdp", headers
    assert headers["Access-Control-Allow-Origin"] == "*", headers
    status, _, body = s.request("POST", "/whip", b"hello", SDP)
    assert status == 400 and "no video line" in error(body)["detail"], body
    audio_only = asyncio.run(make_offer(video=False)).encode()
    status, _, body = s.request("POST", "/whip", audio_only, SDP)
    assert status == 400 and "no video line" in error(body)["detail"], body
    h264 = asyncio.run(make_offer(codec="video/H264")).encode()
    status, _, body = s.request("POST", "/whip", h264, SDP)
    assert status == 400, body
    # sendrecv in H.264 only: the processed video would come back in VP8, which it lacks.
    assert "back in VP8" in error(body)["detail"] and "H264" in error(body)["detail"], body
    broken = b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
    status, _, body = s.request("POST", "/whip", broken, SDP)
    assert status == 400 and "does not parse" in error(body)["detail"], body
    status, _, body = s.request("POST", "/whip", b"v=0\r\n" + b"a=x\r\n" * 20000, SDP)
    assert status == 413, body
    status, _, body = s.request("POST", "/whip?effects=sparkle", offer, SDP)
    assert status == 400 and error(body)["param"] == "effects", body
    status, _, body = s.request("POST", "/whip?pixels=64x64", offer, SDP)
    assert status == 400 and error(body)["param"] == "pixels", body
    status, _, body = s.request("DELETE", "/whip/0123456789abcdef")
    assert status == 404, body
    assert s.metric('app_webrtc_offers_refused_total{reason="bad_offer"}') >= 5
    assert s.metric('app_webrtc_sessions{role="publisher"}') == 0


def test_sessions_are_admitted_like_requests(tmp_path):
    s = Serve(tmp_path, "--device", "cpu", "--max-sessions", "1")
    try:
        offer = asyncio.run(make_offer()).encode()
        status, headers, answer = s.request("POST", "/whip", offer, SDP)
        assert status == 201, answer
        first = headers["Location"]
        status, _, body = s.request("PATCH", first, b"", {"Content-Type": "application/trickle-ice-sdpfrag"})
        assert status == 501, body
        status, headers, body = s.request("POST", "/whip", asyncio.run(make_offer()).encode(), SDP)
        assert status == 503 and headers["Retry-After"] == "1", (status, body)
        assert "--max-sessions" in error(body)["detail"], body
        assert s.metric('app_webrtc_offers_refused_total{reason="max_sessions"}') == 1
        status, _, _ = s.request("DELETE", first)
        assert status == 200
        deadline = time.time() + 5
        while True:
            status, headers, body = s.request("POST", "/whip", asyncio.run(make_offer()).encode(), SDP)
            if status == 201 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert status == 201, ("the DELETE did not free the slot", status, body)
    finally:
        s.stop()


def test_a_bearer_token_guards_the_endpoint(tmp_path):
    s = Serve(tmp_path, "--device", "cpu", "--webrtc-token", "s3cret")
    try:
        offer = asyncio.run(make_offer()).encode()
        status, headers, body = s.request("POST", "/whip", offer, SDP)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer", body
        status, headers, body = s.request("POST", "/whip", offer, {**SDP, "Authorization": "Bearer s3cret"})
        assert status == 201, body
        status, _, _ = s.request("DELETE", headers["Location"])
        assert status == 401, "a DELETE needs the token too"
        status, _, _ = s.request("DELETE", headers["Location"], None, {"Authorization": "Bearer s3cret"})
        assert status == 200
    finally:
        s.stop()


def test_sigterm_keeps_running_sessions_until_the_shutdown_timeout(tmp_path):
    s = Serve(tmp_path, "--device", "cpu", "--drain-delay", "2s", "--shutdown-timeout", "3s")

    async def run():
        pc, received, _, _ = await publish_sendrecv(s)
        track = await asyncio.wait_for(received, 10)
        await collect(track, 5, 20)
        s.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # The signal is handled asynchronously: readiness turns false within moments.
        for _ in range(40):
            status, _, _ = await asyncio.to_thread(s.request, "GET", "/readyz")
            if status == 503:
                break
            await asyncio.sleep(0.05)
        assert status == 503
        status, headers, body = await asyncio.to_thread(s.request, "POST", "/whip", (await make_offer()).encode(), SDP)
        assert status == 503 and headers["Retry-After"] == "1" and b"draining" in body, (status, body)
        # The running session goes on: frames keep coming after the signal.
        await collect(track, 30, 4)
        assert time.monotonic() - signalled < 4.5
        code = await asyncio.to_thread(s.proc.wait, 15)
        await pc.close()
        return code, time.monotonic() - signalled

    try:
        code, after = asyncio.run(run())
        assert code == 0, s.logs()[-3000:]
        assert 4.0 <= after < 10, f"exited {after:.1f} s after SIGTERM (drain 2 s + shutdown timeout 3 s)"
        assert "WebRTC sessions ended" in s.logs(), s.logs()[-3000:]
    finally:
        s.stop()
