"""OpenCV doing the same effects as rtc-demo's CPU path (see service/src/effects/mod.rs).

Prints `effect WxH threads ms_per_frame` lines like `cargo bench --bench effects`.
Run by scripts/bench-effects.sh inside a throwaway venv with opencv-python-headless.
"""
import sys
import time

import cv2
import numpy as np


def synthetic(w, h):
    # Any frame of the right size and content class will do for timing: gradients + noise.
    rng = np.random.default_rng(1)
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    img = np.stack([x, y, (x + y) / 2, np.full_like(x, 255)], axis=-1)
    img += rng.integers(-16, 16, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_effects(w, h):
    sigma, dx, dy = 4.0, 12.5, -7.25
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.sqrt(((xs + 0.5 - 0.5 * w) / (0.30 * w)) ** 2 + ((ys + 0.5 - 0.45 * h) / (0.42 * h)) ** 2)
    t = np.clip((d - 0.85) / 0.30, 0, 1)
    mask = (1 - t * t * (3 - 2 * t)).astype(np.float32)
    inv_mask = (1 - mask).astype(np.float32)
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    m = np.float32([[1.08, 0.04, 0.0, 0, 0.01 * 255], [0.02, 1.0, 0.02, 0, 0], [0.0, 0.04, 0.9, 0, -0.01 * 255], [0, 0, 0, 1, 0]])
    lut = np.zeros((1, 256, 4), np.uint8)
    for c, g in enumerate([1.1, 1.0, 0.9]):
        lut[0, :, c] = np.clip(np.floor(255 * (np.arange(256) / 255.0) ** (1 / g) + 0.5), 0, 255)
    lut[0, :, 3] = np.arange(256)

    def blur(img):
        return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)

    def bgblur(img):
        return cv2.blendLinear(img, blur(img), mask, inv_mask)

    def translate(img):
        return cv2.warpAffine(img, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def color(img):
        return cv2.LUT(cv2.transform(img, m), lut)

    def chain(img):
        return color(translate(blur(img)))

    return {"blur": blur, "bgblur": bgblur, "translate": translate, "color": color, "chain": chain}


def main():
    threads = [int(t) for t in sys.argv[1].split(",")]
    sizes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[2].split(",")]
    frames = int(sys.argv[3])
    for n in threads:
        cv2.setNumThreads(n)
        for w, h in sizes:
            src = synthetic(w, h)
            for name, fn in make_effects(w, h).items():
                for _ in range(3):
                    fn(src)
                best = float("inf")
                for _ in range(5):
                    t0 = time.perf_counter()
                    img = src
                    for _ in range(frames):
                        img = fn(img)
                    best = min(best, (time.perf_counter() - t0) * 1e3 / frames)
                print(f"{name} {w}x{h} {n} {best:.3f}", flush=True)


if __name__ == "__main__":
    main()
