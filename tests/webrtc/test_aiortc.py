"""aiortc, an independent WebRTC stack, as the camera: publish sendrecv and get the processed
video back; publish WHIP sendonly and play the output with WHEP. The picture sent is a flat
grey, so the service's `color` grade (reds up, blues down) shows as R - B well above zero in
what comes back, and a pass-through would not."""
from __future__ import annotations

import asyncio
import fractions
import time

import av
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

WIDTH, HEIGHT = 320, 180
GREY_YUV = (126, 128, 128)  # BT.601 limited range: RGB ≈ (128, 128, 128)


class GreyCamera(VideoStreamTrack):
    """A 30 fps flat grey camera."""

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane, value in zip(frame.planes, GREY_YUV):
            plane.update(bytes([value]) * (plane.line_size * plane.height))
        frame.pts, frame.time_base = pts, time_base or fractions.Fraction(1, 90000)
        return frame


def mean_rgb(frame: av.VideoFrame) -> tuple[float, float, float]:
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    data = bytes(plane)
    sums = [0, 0, 0]
    for y in range(rgb.height):
        row = data[y * plane.line_size: y * plane.line_size + rgb.width * 3]
        for c in range(3):
            sums[c] += sum(row[c::3])
    n = rgb.width * rgb.height
    return sums[0] / n, sums[1] / n, sums[2] / n


def prefer(transceiver, codec: str):
    caps = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() in (codec, "video/rtx")])


def prefer_vp8(transceiver):
    prefer(transceiver, "video/vp8")


async def collect(track, frames: int, timeout: float) -> list[tuple[float, float, float]]:
    means = []
    deadline = time.monotonic() + timeout
    while len(means) < frames:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(means)} processed frames arrived in {timeout} s"
        frame = await asyncio.wait_for(track.recv(), left)
        means.append(mean_rgb(frame))
    return means


async def offer_to(serve, pc: RTCPeerConnection, path: str) -> tuple[int, dict, str]:
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers every candidate here
    status, headers, body = await asyncio.to_thread(
        serve.request, "POST", path, pc.localDescription.sdp.encode(), {"Content-Type": "application/sdp"})
    if status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))
    return status, headers, body.decode()


async def publish_sendrecv(serve, path: str = "/whip?effects=color"):
    """A grey camera published sendrecv in VP8: the connection, the future of the track the
    processed video comes back on, and the answer."""
    pc = RTCPeerConnection()
    received = asyncio.get_running_loop().create_future()
    pc.on("track", lambda track: received.set_result(track) if not received.done() else None)
    prefer_vp8(pc.addTransceiver(GreyCamera(), direction="sendrecv"))
    status, headers, answer = await offer_to(serve, pc, path)
    assert status == 201, answer
    return pc, received, headers, answer


def test_sendrecv_gets_the_processed_video_back(serve_cpu):
    async def run():
        pc, received, headers, answer = await publish_sendrecv(serve_cpu)
        location = headers["Location"]
        assert location.startswith("/whip/") and headers["Content-Type"] == "application/sdp", headers
        assert headers["ETag"], headers
        assert "VP8/90000" in answer and "a=sendrecv" in answer and "a=ice-lite" in answer, answer
        track = await asyncio.wait_for(received, 10)
        means = await collect(track, 20, 30)
        r, g, b = means[-1]
        # Sent: R = G = B ≈ 128. The grade lifts R to ≈ 153 and lowers B to ≈ 108.
        assert r - b > 25, f"no colour grade in what came back: {means[-5:]}"
        stats = serve_cpu.json(location)
        assert stats["device"] == "cpu" and stats["effects"] == ["color"], stats
        assert stats["frames_in"] >= 20 and stats["frames_out"] >= 20, stats
        assert stats["pixels"] == f"{WIDTH}x{HEIGHT}", stats
        assert serve_cpu.metric('app_webrtc_sessions{role="publisher"}') == 1
        assert serve_cpu.metric('app_webrtc_frames_total{stage="out"}') >= 20
        assert serve_cpu.metric("app_webrtc_frame_latency_seconds_count") >= 20
        assert serve_cpu.metric('app_webrtc_media_bytes_total{direction="in"}') > 0
        # The frames were computed on the pod's workers: the load signal counts them.
        assert serve_cpu.metric("app_busy_worker_seconds_total") > 0
        status, _, _ = await asyncio.to_thread(serve_cpu.request, "DELETE", location)
        assert status == 200
        await pc.close()
        for _ in range(50):
            if serve_cpu.metric('app_webrtc_sessions{role="publisher"}') == 0:
                break
            await asyncio.sleep(0.1)
        assert serve_cpu.metric('app_webrtc_sessions{role="publisher"}') == 0

    asyncio.run(run())


@pytest.mark.parametrize("codec", ["video/vp8", "video/h264"])
def test_whip_sendonly_is_played_with_whep(serve_cpu, codec):
    # H.264 is what OBS's WHIP output sends; the viewer gets the processed video in VP8.
    async def run():
        publisher = RTCPeerConnection()
        prefer(publisher.addTransceiver(GreyCamera(), direction="sendonly"), codec)
        status, headers, answer = await offer_to(serve_cpu, publisher, "/whip?effects=color")
        assert status == 201, answer
        assert "a=recvonly" in answer, answer
        assert codec.split("/")[1].upper() in answer.upper(), answer
        location = headers["Location"]

        viewer = RTCPeerConnection()
        received = asyncio.get_running_loop().create_future()
        viewer.on("track", lambda track: received.set_result(track) if not received.done() else None)
        prefer_vp8(viewer.addTransceiver("video", direction="recvonly"))
        status, headers, answer = await offer_to(serve_cpu, viewer, location)
        assert status == 201, answer
        assert headers["Location"].startswith(location + "/viewers/"), headers
        assert "a=sendonly" in answer, answer
        means = await collect(await asyncio.wait_for(received, 10), 15, 30)
        r, g, b = means[-1]
        assert r - b > 25, f"the viewer does not see the graded video: {means[-5:]}"
        assert serve_cpu.metric('app_webrtc_sessions{role="viewer"}') == 1
        status, _, _ = await asyncio.to_thread(serve_cpu.request, "DELETE", headers["Location"])
        assert status == 200
        status, _, _ = await asyncio.to_thread(serve_cpu.request, "DELETE", location)
        assert status == 200
        await viewer.close()
        await publisher.close()

    asyncio.run(run())
