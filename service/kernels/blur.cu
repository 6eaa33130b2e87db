// Separable Gaussian blur and the background-blur composite (`effects::blur`,
// `effects::bgblur`). Clamp-to-edge; the horizontal pass keeps an unrounded f32
// intermediate, the vertical pass rounds; taps are summed in the CPU's order
// (`w0 * centre`, then `+= wk * (left + right)` for k = 1..=radius).
#include "common.cuh"

// Gaussian half-weights for offsets 0..=radius, one row per worker slot.
__constant__ float c_blur_weights[RTC_SLOTS][RTC_MAX_RADIUS + 1];

// One pass over a shared-memory tile: the block loads a (32 + 2r)^2 tile of the input
// (clamped at the frame edges), runs the horizontal pass for the 32 output columns over all
// 32 + 2r rows into shared f32, then the vertical pass for the 32 x 32 outputs. With
// `mask` set it composites the rounded blur with the sharp input (bgblur) on the way out.
//
// Launch: block (32, 8), grid (ceil(W / 32), ceil(H / 32)), dynamic shared memory
// 32 * (32 + 2r) * 16 + (32 + 2r)^2 * 4 bytes (<= 48 KiB for r <= 16).
extern "C" __global__ void __launch_bounds__(256) blur_fused(const uchar4 *__restrict__ in, uchar4 *__restrict__ out,
                                                             int width, int height, int radius, int slot, int mask) {
    extern __shared__ float4 smem[];
    const int lw = RTC_TILE + 2 * radius;
    const int lh = RTC_TILE + 2 * radius;
    float4 *s_mid = smem;                                 // RTC_TILE x lh
    uchar4 *s_in = (uchar4 *)(smem + RTC_TILE * lh);      // lw x lh
    const float *w = c_blur_weights[slot];
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

    for (int r = ty; r < lh; r += blockDim.y) {
        const uchar4 *row = s_in + r * lw + tx + radius;
        float4 acc = scale4(u8x4_to_f(row[0]), w[0]);
        for (int k = 1; k <= radius; k++) {
            add_pair4(acc, u8x4_to_f(row[-k]), u8x4_to_f(row[k]), w[k]);
        }
        s_mid[r * RTC_TILE + tx] = acc;
    }
    __syncthreads();

    const int x = x0 + tx;
    if (x >= width) return;
    for (int r = ty; r < RTC_TILE; r += blockDim.y) {
        const int y = y0 + r;
        if (y >= height) return;
        const float4 *col = s_mid + (r + radius) * RTC_TILE + tx;
        float4 acc = scale4(col[0], w[0]);
        for (int k = 1; k <= radius; k++) {
            add_pair4(acc, col[-k * RTC_TILE], col[k * RTC_TILE], w[k]);
        }
        uchar4 b = round4(acc);
        if (mask) {
            b = composite(s_in[(r + radius) * lw + tx + radius], b, foreground_mask(x, y, width, height));
        }
        out[(size_t)y * width + x] = b;
    }
}

// Two-pass path for radii above RTC_FUSED_MAX_RADIUS (sigma > 5.33), where a square tile
// no longer fits in shared memory.
//
// Horizontal pass: each block takes 256 pixels of one row plus the clamped halo into
// shared memory and writes the unrounded f32 result.
// Launch: block (256, 1), grid (ceil(W / 256), H), dynamic shared memory (256 + 2r) * 4.
extern "C" __global__ void __launch_bounds__(256) blur_h(const uchar4 *__restrict__ in, float4 *__restrict__ tmp,
                                                         int width, int height, int radius, int slot) {
    extern __shared__ uchar4 s_row[];
    const int y = blockIdx.y;
    const int x0 = blockIdx.x * blockDim.x;
    const int lw = blockDim.x + 2 * radius;
    const uchar4 *src = in + (size_t)y * width;
    for (int sx = threadIdx.x; sx < lw; sx += blockDim.x) {
        s_row[sx] = src[clamp_int(x0 - radius + sx, 0, width - 1)];
    }
    __syncthreads();
    const int x = x0 + threadIdx.x;
    if (x >= width) return;
    const float *w = c_blur_weights[slot];
    const uchar4 *c = s_row + threadIdx.x + radius;
    float4 acc = scale4(u8x4_to_f(c[0]), w[0]);
    for (int k = 1; k <= radius; k++) {
        add_pair4(acc, u8x4_to_f(c[-k]), u8x4_to_f(c[k]), w[k]);
    }
    tmp[(size_t)y * width + x] = acc;
}

// Vertical pass over the f32 intermediate (read through the read-only cache; neighbouring
// threads read neighbouring columns, so every row access is coalesced), rounding, with the
// optional bgblur composite against the sharp input.
// Launch: block (32, 8), grid (ceil(W / 32), ceil(H / 8)).
extern "C" __global__ void __launch_bounds__(256) blur_v(const float4 *__restrict__ tmp, const uchar4 *__restrict__ in,
                                                         uchar4 *__restrict__ out, int width, int height, int radius,
                                                         int slot, int mask) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const float *w = c_blur_weights[slot];
    float4 acc = scale4(__ldg(tmp + (size_t)y * width + x), w[0]);
    for (int k = 1; k <= radius; k++) {
        const int ya = clamp_int(y - k, 0, height - 1), yb = clamp_int(y + k, 0, height - 1);
        add_pair4(acc, __ldg(tmp + (size_t)ya * width + x), __ldg(tmp + (size_t)yb * width + x), w[k]);
    }
    uchar4 b = round4(acc);
    const size_t i = (size_t)y * width + x;
    if (mask) b = composite(in[i], b, foreground_mask(x, y, width, height));
    out[i] = b;
}
