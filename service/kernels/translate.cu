// Sub-pixel translation with bilinear sampling (`effects::translate`): out(x, y) samples
// the input at (x - dx, y - dy); source pixels outside the frame are transparent black.
// The host computes the integer offset (ix, iy) = floor(-dx, -dy) and the four bilinear
// weights exactly as the CPU does, so the sums below round identically.
#include "common.cuh"

__device__ __forceinline__ float4 fetch(const uchar4 *__restrict__ in, int x, int y, int width, int height) {
    if (x < 0 || x >= width || y < 0 || y >= height) return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    return u8x4_to_f(in[(size_t)y * width + x]);
}

// Launch: block (32, 8), grid (ceil(W / 32), ceil(H / 8)).
extern "C" __global__ void __launch_bounds__(256) translate_bilinear(const uchar4 *__restrict__ in, uchar4 *__restrict__ out,
                                                                     int width, int height, int ix, int iy,
                                                                     float w0, float w1, float w2, float w3) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const int xs = x + ix, ys = y + iy;
    const float4 a = fetch(in, xs, ys, width, height);
    const float4 b = fetch(in, xs + 1, ys, width, height);
    const float4 c = fetch(in, xs, ys + 1, width, height);
    const float4 d = fetch(in, xs + 1, ys + 1, width, height);
    float4 v;
    v.x = w0 * a.x + w1 * b.x + w2 * c.x + w3 * d.x;
    v.y = w0 * a.y + w1 * b.y + w2 * c.y + w3 * d.y;
    v.z = w0 * a.z + w1 * b.z + w2 * c.z + w3 * d.z;
    v.w = w0 * a.w + w1 * b.w + w2 * c.w + w3 * d.w;
    out[(size_t)y * width + x] = round4(v);
}
