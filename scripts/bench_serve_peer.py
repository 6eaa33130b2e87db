"""The same-work Python peer of `rtc-demo serve` for scripts/bench-serve.sh: what a Python
user would write instead. FastAPI + OpenCV doing the chain of service/src/effects/mod.rs
(Gaussian sigma 4 clamp-to-edge, bilinear translate (12.5, -7.25) with transparent edges,
colour matrix + gamma LUT; the OpenCV calls of scripts/bench_effects_opencv.py) on the same
requests: `POST /process?pixels=WxH&iters=N&format=rgba` with the raw frame as body, answered
with the processed frame; without `format`, a synthetic frame and a JSON checksum.

    uvicorn --app-dir scripts bench_serve_peer:app --port 18091
"""
import functools
import zlib

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from bench_effects_opencv import make_effects, synthetic

app = FastAPI()


@functools.lru_cache(maxsize=8)
def chain_for(w, h):
    return make_effects(w, h)["chain"]


@functools.lru_cache(maxsize=8)
def synthetic_frame(w, h):
    return synthetic(w, h)


def run_chain(img, w, h, iters):
    chain = chain_for(w, h)
    for _ in range(iters):
        img = chain(img)
    return img


@app.api_route("/process", methods=["GET", "POST"])
async def process(request: Request, pixels: str = "1280x720", iters: int = 1, format: str | None = None):
    w, h = (int(v) for v in pixels.split("x"))
    if format == "rgba":
        body = await request.body()
        if len(body) != w * h * 4:
            return Response(status_code=400, content=f"body is {len(body)} bytes, expected {w * h * 4}")
        img = np.frombuffer(body, np.uint8).reshape(h, w, 4)
        out = await run_in_threadpool(run_chain, img, w, h, iters)
        return Response(content=out.tobytes(), media_type="application/octet-stream")
    out = await run_in_threadpool(run_chain, synthetic_frame(w, h), w, h, iters)
    return {"pixels": pixels, "iters": iters, "checksum": f"{zlib.crc32(out):08x}"}
