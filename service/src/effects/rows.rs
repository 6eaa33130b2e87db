//! Row-parallel helpers and the vectorisable inner loops of the blur and the translate.
//!
//! The inner loops are written once in portable Rust and compiled for plain x86-64 (SSE2),
//! AVX2+FMA and AVX-512, picked at run time, so one portable binary still uses the wide
//! units. The blur's taps also have hand-written AVX2/AVX-512 paths (`blur_x86.rs`) where
//! autovectorisation falls short; the portable code finishes each row's tail, and the tests
//! below hold every path to the portable one bit for bit.
use rayon::prelude::*;

/// Below this many pixels a frame is processed on the calling thread: rayon's fork/join
/// costs more than it saves on thumbnails.
pub(crate) const PARALLEL_MIN_PIXELS: usize = 64 * 1024;

/// Run `f(y, row)` over the rows of `data` (each `row_len` long), in parallel for big frames.
pub(crate) fn for_each_row<T: Send>(data: &mut [T], row_len: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if data.len() / 4 < PARALLEL_MIN_PIXELS {
        data.chunks_mut(row_len).enumerate().for_each(|(y, r)| f(y, r));
    } else {
        data.par_chunks_mut(row_len).enumerate().for_each(|(y, r)| f(y, r));
    }
}

/// Like `for_each_row`, with per-task scratch created by `init` (a row buffer, say).
pub(crate) fn for_each_row_with<T: Send, S>(
    data: &mut [T],
    row_len: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) {
    if data.len() / 4 < PARALLEL_MIN_PIXELS {
        let mut s = init();
        data.chunks_mut(row_len).enumerate().for_each(|(y, r)| f(&mut s, y, r));
    } else {
        // Several rows per task so the scratch is made a few times per frame, not per row.
        let rows = data.len() / row_len;
        let per_task = (rows / (rayon::current_num_threads() * 8)).max(1);
        data.par_chunks_mut(row_len * per_task).enumerate().for_each_init(init, |s, (i, chunk)| {
            for (j, r) in chunk.chunks_mut(row_len).enumerate() {
                f(s, i * per_task + j, r)
            }
        });
    }
}

/// Elements of a row summed at once, each block's sums held in registers through every tap.
const BLOCK: usize = 128;

/// The blur's truncating fixed-point product (see `blur::GaussianKernel`); vector units
/// have it as one instruction (`pmulhuw`).
#[inline(always)]
fn mulhi(a: u16, b: u16) -> u16 {
    ((a as u32 * b as u32) >> 16) as u16
}

/// The vertical taps of one blurred row, in 2^-7 levels (`blur::GaussianKernel`).
pub(crate) fn blur_vertical(out: &mut [u16], centre: &[u8], pairs: &[(&[u8], &[u8])], weights: &[u16]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use super::blur_x86::{vertical_avx2, vertical_avx512};
        // Each runs only where the CPU has its instructions; the slice lengths are those of
        // the blur (`blur::blur`), which the kernels' contracts ask for.
        if has_avx512bw() {
            // SAFETY: AVX-512BW is present (checked above); lengths as the blur makes them.
            done = unsafe { vertical_avx512(out, centre, pairs, weights, done) };
        }
        if has_avx2() {
            // SAFETY: AVX2 is present (checked above); lengths as the blur makes them.
            done = unsafe { vertical_avx2(out, centre, pairs, weights, done) };
        }
    }
    blur_vertical_portable(out, centre, pairs, weights, done)
}

/// The horizontal taps of one padded row of vertical sums, rounded into the output bytes.
pub(crate) fn blur_horizontal(out: &mut [u8], padded: &[u16], weights: &[u16], round: u16) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use super::blur_x86::{horizontal_avx2, horizontal_avx512};
        if has_avx512bw() {
            // SAFETY: AVX-512BW is present (checked above); lengths as the blur makes them.
            done = unsafe { horizontal_avx512(out, padded, weights, round, done) };
        }
        if has_avx2() {
            // SAFETY: AVX2 is present (checked above); lengths as the blur makes them.
            done = unsafe { horizontal_avx2(out, padded, weights, round, done) };
        }
    }
    blur_horizontal_portable(out, padded, weights, round, done)
}

/// `blur_vertical` from column `from` on, in portable code.
pub(crate) fn blur_vertical_portable(
    out: &mut [u16],
    centre: &[u8],
    pairs: &[(&[u8], &[u8])],
    weights: &[u16],
    from: usize,
) {
    const SHIFT: u32 = super::blur::INTERMEDIATE_SHIFT;
    let n = out.len();
    let sum_at = |i: usize| {
        let mut v = mulhi((centre[i] as u16) << SHIFT, weights[0]);
        for (k, (a, b)) in pairs.iter().enumerate() {
            v += mulhi((a[i] as u16 + b[i] as u16) << SHIFT, weights[k + 1]);
        }
        v
    };
    let mut start = from;
    while start + BLOCK <= n {
        let mut acc = [0u16; BLOCK];
        let c = &centre[start..start + BLOCK];
        for j in 0..BLOCK {
            acc[j] = mulhi((c[j] as u16) << SHIFT, weights[0]);
        }
        for (k, (a, b)) in pairs.iter().enumerate() {
            let (a, b, wk) = (&a[start..start + BLOCK], &b[start..start + BLOCK], weights[k + 1]);
            for j in 0..BLOCK {
                acc[j] += mulhi((a[j] as u16 + b[j] as u16) << SHIFT, wk);
            }
        }
        out[start..start + BLOCK].copy_from_slice(&acc);
        start += BLOCK;
    }
    for (i, o) in out.iter_mut().enumerate().skip(start) {
        *o = sum_at(i);
    }
}

/// `blur_horizontal` from byte `from` on, in portable code.
pub(crate) fn blur_horizontal_portable(out: &mut [u8], padded: &[u16], weights: &[u16], round: u16, from: usize) {
    const SHIFT: u32 = super::blur::INTERMEDIATE_SHIFT;
    let n = out.len();
    let centre = (weights.len() - 1) * 4;
    let byte = |s: u16| ((s + round) >> SHIFT).min(255) as u8;
    let sum_at = |i: usize| {
        let mut v = mulhi(padded[centre + i], weights[0]);
        for (k, &wk) in weights.iter().enumerate().skip(1) {
            v += mulhi(padded[centre - k * 4 + i] + padded[centre + k * 4 + i], wk);
        }
        v
    };
    let mut start = from;
    while start + BLOCK <= n {
        let mut acc = [0u16; BLOCK];
        let c = &padded[centre + start..centre + start + BLOCK];
        for j in 0..BLOCK {
            acc[j] = mulhi(c[j], weights[0]);
        }
        for (k, &wk) in weights.iter().enumerate().skip(1) {
            let a = &padded[centre + start - k * 4..centre + start - k * 4 + BLOCK];
            let b = &padded[centre + start + k * 4..centre + start + k * 4 + BLOCK];
            for j in 0..BLOCK {
                acc[j] += mulhi(a[j] + b[j], wk);
            }
        }
        for (o, &v) in out[start..start + BLOCK].iter_mut().zip(&acc) {
            *o = byte(v);
        }
        start += BLOCK;
    }
    for (i, o) in out.iter_mut().enumerate().skip(start) {
        *o = byte(sum_at(i));
    }
}

#[inline(always)]
fn bilinear_span_generic(out: &mut [u8], taps: [&[u8]; 4], weights: [i32; 4]) {
    let [t0, t1, b0, b1] = taps;
    let n = out.len();
    let (t0, t1, b0, b1) = (&t0[..n], &t1[..n], &b0[..n], &b1[..n]);
    for (i, o) in out.iter_mut().enumerate() {
        let v = weights[0] * t0[i] as i32
            + weights[1] * t1[i] as i32
            + weights[2] * b0[i] as i32
            + weights[3] * b1[i] as i32;
        *o = super::translate::round_weighted(v);
    }
}

#[inline(always)]
fn mask_span_generic(out: &mut [f32], x0: usize, y: usize, width: usize, height: usize) {
    for (i, m) in out.iter_mut().enumerate() {
        *m = super::bgblur::foreground_mask(x0 + i, y, width, height);
    }
}

#[inline(always)]
fn blend_span_generic(row: &mut [u8], blurred: &[u8], masks: &[f32]) {
    for ((px, bl), &m) in row.chunks_exact_mut(4).zip(blurred.chunks_exact(4)).zip(masks) {
        for c in 0..4 {
            px[c] = super::round_u8(m * px[c] as f32 + (1.0 - m) * bl[c] as f32);
        }
    }
}

#[inline(always)]
fn color_indices_generic(row: &mut [u8], m: &[[f32; 4]; 3]) {
    // Pixels as little-endian u32 lanes in fixed-size blocks: the channels are shifts and
    // masks and the clamp ends in an i32 conversion, so the block loop vectorises without
    // shuffles; the alpha byte passes through.
    const LANES: usize = 16;
    let m = *m;
    let index = |c: usize, r: f32, g: f32, b: f32| {
        let v = m[c][0] * r + m[c][1] * g + m[c][2] * b + m[c][3] * 255.0;
        // Same value as `round_u8` (NaN → 0). `as` would be a saturating conversion, which
        // LLVM scalarises lane by lane; the value is already clamped, so the plain one is exact.
        let x = (v + 0.5).clamp(0.0, 255.0);
        let x = if x.is_nan() { 0.0 } else { x };
        // SAFETY: x is finite and within 0..=255, so it fits an i32.
        unsafe { x.to_int_unchecked::<i32>() as u32 }
    };
    let grade = |v: u32| {
        let (r, g, b) = ((v & 0xff) as f32, ((v >> 8) & 0xff) as f32, ((v >> 16) & 0xff) as f32);
        index(0, r, g, b) | (index(1, r, g, b) << 8) | (index(2, r, g, b) << 16) | (v & 0xff00_0000)
    };
    let mut blocks = row.chunks_exact_mut(4 * LANES);
    for block in &mut blocks {
        let mut lanes = [0u32; LANES];
        for (lane, px) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane = u32::from_le_bytes([px[0], px[1], px[2], px[3]]);
        }
        for lane in &mut lanes {
            *lane = grade(*lane);
        }
        for (lane, px) in lanes.iter().zip(block.chunks_exact_mut(4)) {
            px.copy_from_slice(&lane.to_le_bytes());
        }
    }
    for px in blocks.into_remainder().chunks_exact_mut(4) {
        let v = grade(u32::from_le_bytes([px[0], px[1], px[2], px[3]]));
        px.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(target_arch = "x86_64")]
fn has_avx512bw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
    })
}

/// Defines `pub(crate) fn $name` that runs `$generic` compiled for AVX-512 or AVX2+FMA when
/// the CPU has them, else as plain code.
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident / $avx2:ident / $avx512:ident => $generic:ident ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) {
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
        unsafe fn $avx512($($arg: $ty),*) {
            $generic($($arg),*)
        }

        $(#[$doc])*
        #[inline]
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if has_avx512bw() && has_avx2() {
                // SAFETY: the CPU supports AVX-512F/BW/VL, AVX2 and FMA (checked at run time).
                return unsafe { $avx512($($arg),*) };
            } else if has_avx2() {
                // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
                return unsafe { $avx2($($arg),*) };
            }
            $generic($($arg),*)
        }
    };
}

dispatch!(/// The background-blur masks of pixels `x0..x0 + out.len()` of row `y`.
    mask_span / mask_span_avx2 / mask_span_avx512 => mask_span_generic(out: &mut [f32], x0: usize, y: usize, width: usize, height: usize));
dispatch!(/// `out = m * px + (1 - m) * blurred` per channel, one mask per pixel.
    blend_span / blend_span_avx2 / blend_span_avx512 => blend_span_generic(row: &mut [u8], blurred: &[u8], masks: &[f32]));
dispatch!(/// One span of bilinear samples with constant weights (2^-14 units) from four taps.
    bilinear_span / bilinear_span_avx2 / bilinear_span_avx512 => bilinear_span_generic(out: &mut [u8], taps: [&[u8]; 4], weights: [i32; 4]));
dispatch!(/// The colour grade's first half: each pixel's R, G, B replaced by its LUT index
    /// `round(M * [r, g, b, 255])` (alpha unchanged).
    color_indices / color_indices_avx2 / color_indices_avx512 => color_indices_generic(row: &mut [u8], m: &[[f32; 4]; 3]));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::blur::GaussianKernel;
    use crate::frame::hash32;

    fn bytes(n: usize, seed: u32) -> Vec<u8> {
        // Every fourth row saturated: the largest sums must not wrap.
        if seed.is_multiple_of(4) {
            return vec![255; n];
        }
        (0..n as u32).map(|i| hash32(i ^ seed.wrapping_mul(0x9e37_79b9)) as u8).collect()
    }

    type Vertical = unsafe fn(&mut [u16], &[u8], &[(&[u8], &[u8])], &[u16], usize) -> usize;
    type Horizontal = unsafe fn(&mut [u8], &[u16], &[u16], u16, usize) -> usize;

    /// The vector paths this CPU can run, each checked on its own from column 0.
    fn vector_paths() -> Vec<(&'static str, Vertical, Horizontal)> {
        #[allow(unused_mut)]
        let mut paths: Vec<(&'static str, Vertical, Horizontal)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use crate::effects::blur_x86::*;
            if has_avx2() {
                paths.push(("avx2", vertical_avx2, horizontal_avx2));
            }
            if has_avx512bw() {
                paths.push(("avx512", vertical_avx512, horizontal_avx512));
            }
        }
        if paths.is_empty() {
            eprintln!("skipped: this CPU has no vector blur path (portable code only)");
        }
        paths
    }

    /// Row lengths in bytes: shorter than any block, exact blocks, and ragged tails.
    const LENGTHS: [usize; 6] = [4, 60, 64, 132, 256, 2060];

    #[test]
    fn vector_blur_taps_equal_the_portable_ones_bit_for_bit() {
        let paths = vector_paths();
        for sigma in [0.4f32, 1.0, 4.0, 9.5, 20.0] {
            let kernel = GaussianKernel::new(sigma);
            let weights = kernel.lanes();
            let radius = kernel.radius();
            for n in LENGTHS {
                let rows: Vec<Vec<u8>> = (0..2 * radius as u32 + 1).map(|s| bytes(n, s + n as u32)).collect();
                let pairs: Vec<(&[u8], &[u8])> =
                    (1..=radius).map(|k| (&rows[radius - k][..], &rows[radius + k][..])).collect();
                let mut want = vec![0u16; n];
                blur_vertical_portable(&mut want, &rows[radius], &pairs, weights, 0);
                let mut got = vec![0u16; n];
                blur_vertical(&mut got, &rows[radius], &pairs, weights);
                assert_eq!(got, want, "dispatched vertical, sigma {sigma}, {n} bytes");
                for (name, vertical, _) in &paths {
                    let mut got = vec![0u16; n];
                    // SAFETY: `vector_paths` only lists what this CPU supports; lengths match.
                    let done = unsafe { vertical(&mut got, &rows[radius], &pairs, weights, 0) };
                    blur_vertical_portable(&mut got, &rows[radius], &pairs, weights, done);
                    assert_eq!(got, want, "{name} vertical, sigma {sigma}, {n} bytes");
                }

                // Any vertical sums will do as the padded row; these are real ones.
                let padded: Vec<u16> = (0..n + 2 * radius * 4).map(|i| want[i % n]).collect();
                let round = kernel.round() as u16;
                let mut want = vec![0u8; n];
                blur_horizontal_portable(&mut want, &padded, weights, round, 0);
                let mut got = vec![0u8; n];
                blur_horizontal(&mut got, &padded, weights, round);
                assert_eq!(got, want, "dispatched horizontal, sigma {sigma}, {n} bytes");
                for (name, _, horizontal) in &paths {
                    let mut got = vec![0u8; n];
                    // SAFETY: as above.
                    let done = unsafe { horizontal(&mut got, &padded, weights, round, 0) };
                    blur_horizontal_portable(&mut got, &padded, weights, round, done);
                    assert_eq!(got, want, "{name} horizontal, sigma {sigma}, {n} bytes");
                }
            }
        }
    }

    #[test]
    fn color_indices_are_the_rounded_matrix_product() {
        let m = [[1.08, 0.04, 0.0, 0.01], [0.02, 1.0, 0.02, 0.0], [0.0, 0.04, 0.9, -0.01]];
        for n in LENGTHS {
            let row = bytes(n, n as u32 + 1);
            let mut got = row.clone();
            color_indices(&mut got, &m);
            for (px, (g, i)) in row.chunks(4).zip(got.chunks(4).zip(0..)) {
                let (r, gr, b) = (px[0] as f32, px[1] as f32, px[2] as f32);
                let want: Vec<u8> = (0..3)
                    .map(|c| super::super::round_u8(m[c][0] * r + m[c][1] * gr + m[c][2] * b + m[c][3] * 255.0))
                    .chain([px[3]])
                    .collect();
                assert_eq!(g, &want[..], "pixel {i} of {n} bytes");
            }
        }
    }
}
