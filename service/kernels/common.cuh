// Shared helpers for the rtc-demo kernels. Compiled by NVRTC (no system headers), with
// `--fmad=false` so every float expression rounds exactly like the CPU code in
// `service/src/effects` (Rust never contracts a * b + c into an FMA): with the same
// operation order the GPU results are bit-identical to the CPU ones.
#pragma once

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

// Per-worker parameter slots in __constant__ memory (one CUDA stream per worker writes
// only its own slot, so concurrent requests with different parameters never race).
#define RTC_SLOTS 32
// Largest blur radius: ceil(3 * 20.0) for the maximum sigma of 20.
#define RTC_MAX_RADIUS 60
// The fused (one-pass, shared-memory tile) blur handles radii up to this; larger ones use
// the two-pass kernels.
#define RTC_FUSED_MAX_RADIUS 16
#define RTC_TILE 32

// `floor(v + 0.5)` clamped to 0..=255, exactly as Rust's `(v + 0.5).clamp(0.0, 255.0) as u8`
// (NaN maps to 0 in both).
__device__ __forceinline__ u8 round_u8(float v) {
    float t = fminf(fmaxf(v + 0.5f, 0.0f), 255.0f);
    return (u8)t;
}

__device__ __forceinline__ int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

__device__ __forceinline__ float4 u8x4_to_f(uchar4 p) {
    return make_float4((float)p.x, (float)p.y, (float)p.z, (float)p.w);
}

// acc = w * a
__device__ __forceinline__ float4 scale4(float4 a, float w) {
    return make_float4(w * a.x, w * a.y, w * a.z, w * a.w);
}

// acc += w * (a + b): one symmetric pair of Gaussian taps, in the CPU's order.
__device__ __forceinline__ void add_pair4(float4 &acc, float4 a, float4 b, float w) {
    acc.x += w * (a.x + b.x);
    acc.y += w * (a.y + b.y);
    acc.z += w * (a.z + b.z);
    acc.w += w * (a.w + b.w);
}

__device__ __forceinline__ uchar4 round4(float4 v) {
    return make_uchar4(round_u8(v.x), round_u8(v.y), round_u8(v.z), round_u8(v.w));
}

// Foreground weight of pixel (x, y) for bgblur (`effects::foreground_mask`): a soft
// ellipse centred at (0.5 W, 0.45 H) with semi-axes (0.30 W, 0.42 H), falling from 1 to 0
// between normalised distances 0.85 and 1.15 (smoothstep).
__device__ __forceinline__ float foreground_mask(int x, int y, int width, int height) {
    float w = (float)width, h = (float)height;
    float nx = ((float)x + 0.5f - 0.5f * w) / (0.30f * w);
    float ny = ((float)y + 0.5f - 0.45f * h) / (0.42f * h);
    float d = sqrtf(nx * nx + ny * ny);
    float t = fminf(fmaxf((d - 0.85f) / (1.15f - 0.85f), 0.0f), 1.0f);
    return 1.0f - t * t * (3.0f - 2.0f * t);
}

// out = m * sharp + (1 - m) * blurred, per channel; the sharp pixel unchanged where m >= 1.
__device__ __forceinline__ uchar4 composite(uchar4 sharp, uchar4 blurred, float m) {
    if (m >= 1.0f) return sharp;
    float n = 1.0f - m;
    return make_uchar4(round_u8(m * (float)sharp.x + n * (float)blurred.x),
                       round_u8(m * (float)sharp.y + n * (float)blurred.y),
                       round_u8(m * (float)sharp.z + n * (float)blurred.z),
                       round_u8(m * (float)sharp.w + n * (float)blurred.w));
}
