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

#[inline(always)]
fn scale_into_generic(out: &mut [f32], a: &[f32], w: f32) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o = w * x;
    }
}

#[inline(always)]
fn add_pair_generic(out: &mut [f32], a: &[f32], b: &[f32], w: f32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o += w * (x + y);
    }
}

#[inline(always)]
fn scale_u8_generic(out: &mut [f32], a: &[u8], w: f32) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o = w * x as f32;
    }
}

#[inline(always)]
fn add_pair_u8_generic(out: &mut [f32], a: &[u8], b: &[u8], w: f32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o += w * (x as f32 + y as f32);
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

dispatch!(/// `out = w * a`
    scale_into / scale_into_avx2 => scale_into_generic(out: &mut [f32], a: &[f32], w: f32));
dispatch!(/// `out += w * (a + b)`: one symmetric pair of Gaussian taps.
    add_pair / add_pair_avx2 => add_pair_generic(out: &mut [f32], a: &[f32], b: &[f32], w: f32));
dispatch!(/// One span of bilinear samples with constant weights (2^-14 units) from four taps.
    bilinear_span / bilinear_span_avx2 => bilinear_span_generic(out: &mut [u8], taps: [&[u8]; 4], weights: [i32; 4]));
dispatch!(/// `out = w * a` from bytes.
    scale_u8 / scale_u8_avx2 => scale_u8_generic(out: &mut [f32], a: &[u8], w: f32));
dispatch!(/// `out += w * (a + b)` from bytes.
    add_pair_u8 / add_pair_u8_avx2 => add_pair_u8_generic(out: &mut [f32], a: &[u8], b: &[u8], w: f32));
