//! Row-parallel helpers and the vectorisable inner loops of the blur and the translate.
//!
//! The inner loops are written once and compiled twice: plain (SSE2 on x86-64) and with
//! AVX2+FMA, picked at run time, so one portable binary still uses the wide units.
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
const BLOCK: usize = 64;

#[inline(always)]
fn blur_vertical_generic(out: &mut [f32], centre: &[u8], pairs: &[(&[u8], &[u8])], weights: &[f32]) {
    let n = out.len();
    let sum_at = |i: usize| {
        let mut v = weights[0] * centre[i] as f32;
        for (k, (a, b)) in pairs.iter().enumerate() {
            v += weights[k + 1] * (a[i] as f32 + b[i] as f32);
        }
        v
    };
    let mut start = 0;
    while start + BLOCK <= n {
        let mut acc = [0f32; BLOCK];
        let c = &centre[start..start + BLOCK];
        for j in 0..BLOCK {
            acc[j] = weights[0] * c[j] as f32;
        }
        for (k, (a, b)) in pairs.iter().enumerate() {
            let (a, b, wk) = (&a[start..start + BLOCK], &b[start..start + BLOCK], weights[k + 1]);
            for j in 0..BLOCK {
                acc[j] += wk * (a[j] as f32 + b[j] as f32);
            }
        }
        out[start..start + BLOCK].copy_from_slice(&acc);
        start += BLOCK;
    }
    for (i, o) in out.iter_mut().enumerate().skip(start) {
        *o = sum_at(i);
    }
}

#[inline(always)]
fn blur_horizontal_generic(out: &mut [u8], padded: &[f32], weights: &[f32]) {
    let n = out.len();
    let centre = (weights.len() - 1) * 4;
    let sum_at = |i: usize| {
        let mut v = weights[0] * padded[centre + i];
        for (k, &wk) in weights.iter().enumerate().skip(1) {
            v += wk * (padded[centre - k * 4 + i] + padded[centre + k * 4 + i]);
        }
        v
    };
    let mut start = 0;
    while start + BLOCK <= n {
        let mut acc = [0f32; BLOCK];
        let c = &padded[centre + start..centre + start + BLOCK];
        for j in 0..BLOCK {
            acc[j] = weights[0] * c[j];
        }
        for (k, &wk) in weights.iter().enumerate().skip(1) {
            let a = &padded[centre + start - k * 4..centre + start - k * 4 + BLOCK];
            let b = &padded[centre + start + k * 4..centre + start + k * 4 + BLOCK];
            for j in 0..BLOCK {
                acc[j] += wk * (a[j] + b[j]);
            }
        }
        for (o, &v) in out[start..start + BLOCK].iter_mut().zip(&acc) {
            *o = super::round_u8(v);
        }
        start += BLOCK;
    }
    for (i, o) in out.iter_mut().enumerate().skip(start) {
        *o = super::round_u8(sum_at(i));
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

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Defines `pub(crate) fn $name` that runs `$generic` compiled for AVX2+FMA when the CPU
/// has them, else as plain code.
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident / $avx2:ident => $generic:ident ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) {
            $generic($($arg),*)
        }

        $(#[$doc])*
        #[inline]
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
                return unsafe { $avx2($($arg),*) };
            }
            $generic($($arg),*)
        }
    };
}

dispatch!(/// The vertical taps of one blurred row: `out = w0 * centre + sum of wk * (above + below)`.
    blur_vertical / blur_vertical_avx2 => blur_vertical_generic(out: &mut [f32], centre: &[u8], pairs: &[(&[u8], &[u8])], weights: &[f32]));
dispatch!(/// The horizontal taps of one padded row of vertical sums, rounded into the output bytes.
    blur_horizontal / blur_horizontal_avx2 => blur_horizontal_generic(out: &mut [u8], padded: &[f32], weights: &[f32]));
dispatch!(/// The background-blur masks of pixels `x0..x0 + out.len()` of row `y`.
    mask_span / mask_span_avx2 => mask_span_generic(out: &mut [f32], x0: usize, y: usize, width: usize, height: usize));
dispatch!(/// `out = m * px + (1 - m) * blurred` per channel, one mask per pixel.
    blend_span / blend_span_avx2 => blend_span_generic(row: &mut [u8], blurred: &[u8], masks: &[f32]));
dispatch!(/// One span of bilinear samples with constant weights (2^-14 units) from four taps.
    bilinear_span / bilinear_span_avx2 => bilinear_span_generic(out: &mut [u8], taps: [&[u8]; 4], weights: [i32; 4]));
