// Separable Gaussian blur and the background-blur composite (`effects::blur`,
// `effects::bgblur`), in the integer arithmetic of `blur::GaussianKernel`, so the bytes
// equal the CPU's whatever order the taps are summed in. Clamp-to-edge; vertical taps
// first (from the source bytes, into 16-bit sums in 2^-7 levels), then horizontal taps on
// those sums, rounded into bytes.
#include "common.cuh"

// Gaussian half-weights for offsets 0..=radius in units of 2^-16, one row per worker slot.
__constant__ u32 c_blur_weights[RTC_SLOTS][RTC_MAX_RADIUS + 1];

#define RTC_BLUR_SHIFT 7

// `mulhi((x << 7), w)` for a byte, or the sum of a pair of bytes, per channel.
__device__ __forceinline__ u32 tap(u32 bytes, u32 w) {
    return ((bytes << RTC_BLUR_SHIFT) * w) >> 16;
}

// The vertical taps at one column: `at(0)` is the centre row, `at(-k)` / `at(k)` the rows k
// above and below (already clamped by the caller).
template <typename At>
__device__ __forceinline__ ushort4 vertical_sum(At at, const u32 *w, int radius) {
    const uchar4 c = at(0);
    u32 x = tap(c.x, w[0]), y = tap(c.y, w[0]), z = tap(c.z, w[0]), v = tap(c.w, w[0]);
    for (int k = 1; k <= radius; k++) {
        const uchar4 a = at(-k), b = at(k);
        x += tap((u32)a.x + b.x, w[k]);
        y += tap((u32)a.y + b.y, w[k]);
        z += tap((u32)a.z + b.z, w[k]);
        v += tap((u32)a.w + b.w, w[k]);
    }
    return make_ushort4((unsigned short)x, (unsigned short)y, (unsigned short)z, (unsigned short)v);
}

// The horizontal taps over vertical sums, rounded: `min((s + 64 + radius + 1) >> 7, 255)`.
template <typename At>
__device__ __forceinline__ uchar4 horizontal_byte(At at, const u32 *w, int radius) {
    const ushort4 c = at(0);
    u32 x = (c.x * w[0]) >> 16, y = (c.y * w[0]) >> 16, z = (c.z * w[0]) >> 16, v = (c.w * w[0]) >> 16;
    for (int k = 1; k <= radius; k++) {
        const ushort4 a = at(-k), b = at(k);
        x += (((u32)a.x + b.x) * w[k]) >> 16;
        y += (((u32)a.y + b.y) * w[k]) >> 16;
        z += (((u32)a.z + b.z) * w[k]) >> 16;
        v += (((u32)a.w + b.w) * w[k]) >> 16;
    }
    const u32 round = (1u << (RTC_BLUR_SHIFT - 1)) + (u32)radius + 1;
    return make_uchar4((u8)min((x + round) >> RTC_BLUR_SHIFT, 255u), (u8)min((y + round) >> RTC_BLUR_SHIFT, 255u),
                       (u8)min((z + round) >> RTC_BLUR_SHIFT, 255u), (u8)min((v + round) >> RTC_BLUR_SHIFT, 255u));
}

// One pass over a shared-memory tile: the block loads a (32 + 2r)^2 tile of the input
// (clamped at the frame edges), runs the vertical taps for the 32 output rows over all
// 32 + 2r columns into shared 16-bit sums, then the horizontal taps for the 32 x 32
// outputs. With `mask` set it composites the blur with the sharp input (bgblur) on the way
// out.
//
// Launch: block (32, 8), grid (ceil(W / 32), ceil(H / 32)), dynamic shared memory
// 32 * (32 + 2r) * 8 + (32 + 2r)^2 * 4 bytes (32 KiB at r = 16).
extern "C" __global__ void __launch_bounds__(256) blur_fused(const uchar4 *__restrict__ in, uchar4 *__restrict__ out,
                                                             int width, int height, int radius, int slot, int mask) {
    extern __shared__ ushort4 smem[];
    const int lw = RTC_TILE + 2 * radius;
    const int lh = RTC_TILE + 2 * radius;
    ushort4 *s_mid = smem;                               // RTC_TILE rows x lw
    uchar4 *s_in = (uchar4 *)(smem + RTC_TILE * lw);     // lh rows x lw
    const u32 *w = c_blur_weights[slot];
    const int x0 = blockIdx.x * RTC_TILE, y0 = blockIdx.y * RTC_TILE;
    const int tx = threadIdx.x, ty = threadIdx.y;

    for (int sy = ty; sy < lh; sy += blockDim.y) {
        const int gy = clamp_int(y0 - radius + sy, 0, height - 1);
        const uchar4 *src = in + (size_t)gy * width;
        for (int sx = tx; sx < lw; sx += blockDim.x) {
            s_in[sy * lw + sx] = src[clamp_int(x0 - radius + sx, 0, width - 1)];
        }
    }
    __syncthreads();

    for (int r = ty; r < RTC_TILE; r += blockDim.y) {
        for (int sx = tx; sx < lw; sx += blockDim.x) {
            const uchar4 *col = s_in + (r + radius) * lw + sx;
            s_mid[r * lw + sx] = vertical_sum([&](int k) { return col[k * lw]; }, w, radius);
        }
    }
    __syncthreads();

    const int x = x0 + tx;
    if (x >= width) return;
    for (int r = ty; r < RTC_TILE; r += blockDim.y) {
        const int y = y0 + r;
        if (y >= height) return;
        const ushort4 *row = s_mid + r * lw + tx + radius;
        uchar4 b = horizontal_byte([&](int k) { return row[k]; }, w, radius);
        if (mask) {
            b = composite(s_in[(r + radius) * lw + tx + radius], b, foreground_mask(x, y, width, height));
        }
        out[(size_t)y * width + x] = b;
    }
}

// Two-pass path for radii above RTC_FUSED_MAX_RADIUS (sigma > 5.33), where a square tile
// no longer fits in shared memory.
//
// Vertical pass straight from the input (read through the read-only cache; neighbouring
// threads read neighbouring columns, so every row access is coalesced) into 16-bit sums.
// Launch: block (32, 8), grid (ceil(W / 32), ceil(H / 8)).
extern "C" __global__ void __launch_bounds__(256) blur_v(const uchar4 *__restrict__ in, ushort4 *__restrict__ tmp,
                                                         int width, int height, int radius, int slot) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const u32 *w = c_blur_weights[slot];
    const auto at = [&](int k) { return __ldg(in + (size_t)clamp_int(y + k, 0, height - 1) * width + x); };
    tmp[(size_t)y * width + x] = vertical_sum(at, w, radius);
}

// Horizontal pass: each block takes 256 sums of one row plus the clamped halo into shared
// memory and rounds them into bytes, with the optional bgblur composite against the sharp
// input.
// Launch: block (256, 1), grid (ceil(W / 256), H), dynamic shared memory (256 + 2r) * 8.
extern "C" __global__ void __launch_bounds__(256) blur_h(const ushort4 *__restrict__ tmp, const uchar4 *__restrict__ in,
                                                         uchar4 *__restrict__ out, int width, int height, int radius,
                                                         int slot, int mask) {
    extern __shared__ ushort4 s_row[];
    const int y = blockIdx.y;
    const int x0 = blockIdx.x * blockDim.x;
    const int lw = blockDim.x + 2 * radius;
    const ushort4 *src = tmp + (size_t)y * width;
    for (int sx = threadIdx.x; sx < lw; sx += blockDim.x) {
        s_row[sx] = src[clamp_int(x0 - radius + sx, 0, width - 1)];
    }
    __syncthreads();
    const int x = x0 + threadIdx.x;
    if (x >= width) return;
    const u32 *w = c_blur_weights[slot];
    const ushort4 *c = s_row + threadIdx.x + radius;
    uchar4 b = horizontal_byte([&](int k) { return c[k]; }, w, radius);
    const size_t i = (size_t)y * width + x;
    if (mask) b = composite(in[i], b, foreground_mask(x, y, width, height));
    out[i] = b;
}
