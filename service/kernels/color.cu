// Colour grading (`effects::color`): v = M * [r, g, b, 255], rounded and clamped to an
// index, then a per-channel gamma LUT; alpha unchanged. In place.
#include "common.cuh"

// Matrix (3 x 4, row-major) and the three LUTs, one slot per worker, in constant memory.
// Matrix reads are uniform across a warp (the constant cache's best case); LUT lookups
// are data-dependent, so each block copies its slot's LUTs into shared memory first.
struct ColorSlot {
    float m[12];
    u8 lut[3 * 256];
};
__constant__ ColorSlot c_color[RTC_SLOTS];

// Launch: block (256), grid min(ceil(N / 256), 8 * SMs), grid-stride over the N pixels.
extern "C" __global__ void __launch_bounds__(256) color_grade(uchar4 *__restrict__ data, u32 n, int slot) {
    __shared__ u8 s_lut[3 * 256];
    const ColorSlot *p = &c_color[slot];
    for (int i = threadIdx.x; i < 3 * 256; i += blockDim.x) s_lut[i] = p->lut[i];
    __syncthreads();
    const float m0 = p->m[0], m1 = p->m[1], m2 = p->m[2], m3 = p->m[3];
    const float m4 = p->m[4], m5 = p->m[5], m6 = p->m[6], m7 = p->m[7];
    const float m8 = p->m[8], m9 = p->m[9], m10 = p->m[10], m11 = p->m[11];
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        uchar4 px = data[i];
        const float r = (float)px.x, g = (float)px.y, b = (float)px.z;
        px.x = s_lut[round_u8(m0 * r + m1 * g + m2 * b + m3 * 255.0f)];
        px.y = s_lut[256 + round_u8(m4 * r + m5 * g + m6 * b + m7 * 255.0f)];
        px.z = s_lut[512 + round_u8(m8 * r + m9 * g + m10 * b + m11 * 255.0f)];
        data[i] = px;
    }
}
