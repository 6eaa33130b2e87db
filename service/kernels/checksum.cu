// Per-row FNV-1a hashes for `frame::checksum`: each row hashed over its 64-bit
// little-endian words (then any 4 trailing bytes one by one); the host folds the row
// hashes in order. Downloading H x 8 bytes instead of the frame keeps synthetic requests
// off the PCIe bus.
#include "common.cuh"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x00000100000001b3ull

// Rows start 4-byte aligned (RGBA rows), not always 8-byte aligned, so words are read as
// two 32-bit halves. Launch: block (128), grid ceil(rows / 128).
extern "C" __global__ void __launch_bounds__(128) row_hash(const u8 *__restrict__ data, u32 row_len, u32 rows,
                                                           u64 *__restrict__ out) {
    const u32 y = blockIdx.x * blockDim.x + threadIdx.x;
    if (y >= rows) return;
    const u32 *row = (const u32 *)(data + (size_t)y * row_len);
    const u32 words = row_len / 8;
    u64 h = FNV_OFFSET;
    for (u32 i = 0; i < words; i++) {
        const u64 w = (u64)__ldg(row + 2 * i) | ((u64)__ldg(row + 2 * i + 1) << 32);
        h = (h ^ w) * FNV_PRIME;
    }
    if (row_len & 4u) {
        const u32 t = __ldg(row + 2 * words);
        for (int b = 0; b < 4; b++) h = (h ^ (u64)((t >> (8 * b)) & 0xffu)) * FNV_PRIME;
    }
    out[y] = h;
}
