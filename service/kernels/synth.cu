// The deterministic synthetic test frame (`frame::synth_pixel`), generated on the GPU so
// `pixels=` requests never upload a frame. Integer-only: bit-identical to the CPU.
#include "common.cuh"

__device__ __forceinline__ u32 hash32(u32 x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

__device__ __forceinline__ u8 clamp_u8(int v) {
    return (u8)clamp_int(v, 0, 255);
}

// Launch: block (32, 8), grid (ceil(W / 32), ceil(H / 8)).
extern "C" __global__ void synth_frame(uchar4 *__restrict__ out, u32 width, u32 height, u32 seed) {
    u32 x = blockIdx.x * blockDim.x + threadIdx.x;
    u32 y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    u32 h = hash32((x * 0x9e3779b1u) ^ (y * 0x85ebca77u) ^ (seed * 0xc2b2ae3du));
    int noise = (int)(h & 31u) - 16;
    // width.max(2).saturating_sub(1).max(1) == max(width, 2) - 1
    u32 wd = (width > 2u ? width : 2u) - 1u;
    u32 hd = (height > 2u ? height : 2u) - 1u;
    int gx = (int)(x * 255u / wd);
    int gy = (int)(y * 255u / hd);
    int checker = (((x >> 5) ^ (y >> 5)) & 1u) ? 200 : 40;
    out[(size_t)y * width + x] = make_uchar4(clamp_u8(gx + noise), clamp_u8(gy + noise), clamp_u8(checker + noise), 255);
}
