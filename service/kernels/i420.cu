// I420 (BT.601 limited range) <-> RGBA8, integer arithmetic identical to `service/src/i420.rs`.
// Odd sizes round the chroma planes up: ((W + 1) / 2) x ((H + 1) / 2). Planes Y, U, V packed.
#include "common.cuh"

__device__ __forceinline__ u8 clamp_u8(int v) {
    return (u8)clamp_int(v, 0, 255);
}

__device__ __forceinline__ uchar4 yuv_to_rgba(int y, int u, int v) {
    const int c = 298 * (y - 16), d = u - 128, e = v - 128;
    return make_uchar4(clamp_u8((c + 409 * e + 128) >> 8), clamp_u8((c - 100 * d - 208 * e + 128) >> 8),
                       clamp_u8((c + 516 * d + 128) >> 8), 255);
}

// One thread per 2x2 block (one chroma sample).
// Launch: block (16, 16), grid (ceil(CW / 16), ceil(CH / 16)), CW x CH the chroma size.
extern "C" __global__ void __launch_bounds__(256) i420_to_rgba(const u8 *__restrict__ yuv, uchar4 *__restrict__ out,
                                                               int width, int height) {
    const int cw = (width + 1) / 2, ch = (height + 1) / 2;
    const int cx = blockIdx.x * blockDim.x + threadIdx.x;
    const int cy = blockIdx.y * blockDim.y + threadIdx.y;
    if (cx >= cw || cy >= ch) return;
    const size_t luma = (size_t)width * height;
    const size_t ci = (size_t)cy * cw + cx;
    const int u = yuv[luma + ci], v = yuv[luma + (size_t)cw * ch + ci];
    for (int dy = 0; dy < 2; dy++) {
        const int y = 2 * cy + dy;
        if (y >= height) break;
        for (int dx = 0; dx < 2; dx++) {
            const int x = 2 * cx + dx;
            if (x >= width) break;
            const size_t i = (size_t)y * width + x;
            out[i] = yuv_to_rgba(yuv[i], u, v);
        }
    }
}

// Launch: as i420_to_rgba.
extern "C" __global__ void __launch_bounds__(256) rgba_to_i420(const uchar4 *__restrict__ in, u8 *__restrict__ yuv,
                                                               int width, int height) {
    const int cw = (width + 1) / 2, ch = (height + 1) / 2;
    const int cx = blockIdx.x * blockDim.x + threadIdx.x;
    const int cy = blockIdx.y * blockDim.y + threadIdx.y;
    if (cx >= cw || cy >= ch) return;
    int sr = 0, sg = 0, sb = 0, n = 0;
    for (int dy = 0; dy < 2; dy++) {
        const int y = 2 * cy + dy;
        if (y >= height) break;
        for (int dx = 0; dx < 2; dx++) {
            const int x = 2 * cx + dx;
            if (x >= width) break;
            const size_t i = (size_t)y * width + x;
            const uchar4 p = in[i];
            const int r = p.x, g = p.y, b = p.z;
            yuv[i] = clamp_u8(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16);
            sr += r;
            sg += g;
            sb += b;
            n += 1;
        }
    }
    const int r = (sr + n / 2) / n, g = (sg + n / 2) / n, b = (sb + n / 2) / n;
    const size_t luma = (size_t)width * height;
    const size_t ci = (size_t)cy * cw + cx;
    yuv[luma + ci] = clamp_u8(((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128);
    yuv[luma + (size_t)cw * ch + ci] = clamp_u8(((112 * r - 94 * g - 18 * b + 128) >> 8) + 128);
}
