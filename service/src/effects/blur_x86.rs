//! The blur's two inner loops with explicit x86-64 vector instructions, AVX2 and
//! AVX-512BW. Autovectorisation falls short here: LLVM folds the `<< 7` into the weight and
//! multiplies in 32 bits (`pmulld`), a quarter of the lanes and a slow instruction, where the
//! arithmetic of `blur::GaussianKernel` is exactly one `pmulhuw` per tap.
//!
//! Each function handles whole blocks of a row from a given column and leaves the rest
//! to the next narrower one and finally to the portable code (which computes the same integers), so tails and other CPUs agree
//! bit for bit; `rows::tests` checks that.
use std::arch::x86_64::*;

use super::blur::INTERMEDIATE_SHIFT as SHIFT;

/// `pmulhuw` on 16 lanes: `(a * b) >> 16` per unsigned 16-bit lane.
#[target_feature(enable = "avx2")]
#[inline]
fn mulhi16(a: __m256i, b: __m256i) -> __m256i {
    let out;
    // SAFETY: register-only arithmetic on a CPU with AVX2 (this function's target feature).
    unsafe {
        std::arch::asm!("vpmulhuw {o}, {a}, {b}", a = in(ymm_reg) a, b = in(ymm_reg) b, o = lateout(ymm_reg) out,
            options(pure, nomem, nostack, preserves_flags))
    };
    out
}

/// `pmulhuw` on 32 lanes.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn mulhi32(a: __m512i, b: __m512i) -> __m512i {
    let out;
    // SAFETY: register-only arithmetic on a CPU with AVX-512BW (this function's target feature).
    unsafe {
        std::arch::asm!("vpmulhuw {o}, {a}, {b}", a = in(zmm_reg) a, b = in(zmm_reg) b, o = lateout(zmm_reg) out,
            options(pure, nomem, nostack, preserves_flags))
    };
    out
}

/// Columns summed at once in registers through every tap (4 vectors of 16 u16 lanes).
const COLS_AVX2: usize = 64;
/// The same for AVX-512 (4 vectors of 32 lanes).
const COLS_AVX512: usize = 128;

/// Vertical taps over whole blocks of 64 columns from `from` on; returns where they stopped.
///
/// # Safety
/// The CPU must support AVX2; `centre` and every row in `pairs` are at least `out.len()` long,
/// `weights` is `pairs.len() + 1` long.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn vertical_avx2(
    out: &mut [u16],
    centre: &[u8],
    pairs: &[(&[u8], &[u8])],
    weights: &[u16],
    from: usize,
) -> usize {
    let n = from + (out.len() - from) / COLS_AVX2 * COLS_AVX2;
    assert!(
        centre.len() >= n
            && weights.len() == pairs.len() + 1
            && pairs.iter().all(|(a, b)| a.len() >= n && b.len() >= n)
    );
    // SAFETY: (every `widen`) the rows are at least `n` long (asserted) and each load reads
    // 16 bytes at a column below `n - 15`.
    let widen = |row: &[u8], i: usize| _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(row.as_ptr().add(i).cast()) });
    let w0 = _mm256_set1_epi16(weights[0] as i16);
    for start in (from..n).step_by(COLS_AVX2) {
        let mut acc = [_mm256_setzero_si256(); 4];
        for (v, a) in acc.iter_mut().enumerate() {
            let c = widen(centre, start + 16 * v);
            *a = mulhi16(_mm256_slli_epi16::<{ SHIFT as i32 }>(c), w0);
        }
        for ((above, below), &wk) in pairs.iter().zip(&weights[1..]) {
            let wk = _mm256_set1_epi16(wk as i16);
            for (v, a) in acc.iter_mut().enumerate() {
                let i = start + 16 * v;
                let s = _mm256_add_epi16(widen(above, i), widen(below, i));
                *a = _mm256_add_epi16(*a, mulhi16(_mm256_slli_epi16::<{ SHIFT as i32 }>(s), wk));
            }
        }
        for (v, a) in acc.iter().enumerate() {
            // SAFETY: start + 16 * v + 16 <= n <= out.len().
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(start + 16 * v).cast(), *a) };
        }
    }
    n
}

/// Horizontal taps into whole blocks of 64 bytes from `from` on; returns where they stopped.
///
/// # Safety
/// The CPU must support AVX2; `padded` is `out.len() + 8 * (weights.len() - 1)` long.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn horizontal_avx2(
    out: &mut [u8],
    padded: &[u16],
    weights: &[u16],
    round: u16,
    from: usize,
) -> usize {
    let n = from + (out.len() - from) / COLS_AVX2 * COLS_AVX2;
    let radius = weights.len() - 1;
    assert!(padded.len() >= n + 8 * radius);
    // SAFETY: (every `load`) 16 lanes at an index below `n + 8 * radius - 15` (asserted).
    let load = |i: usize| unsafe { _mm256_loadu_si256(padded.as_ptr().add(i).cast()) };
    let (w0, round) = (_mm256_set1_epi16(weights[0] as i16), _mm256_set1_epi16(round as i16));
    let centre = radius * 4;
    for start in (from..n).step_by(COLS_AVX2) {
        let mut acc = [_mm256_setzero_si256(); 4];
        for (v, a) in acc.iter_mut().enumerate() {
            *a = mulhi16(load(centre + start + 16 * v), w0);
        }
        for (k, &wk) in weights.iter().enumerate().skip(1) {
            let wk = _mm256_set1_epi16(wk as i16);
            for (v, a) in acc.iter_mut().enumerate() {
                let i = centre + start + 16 * v;
                let s = _mm256_add_epi16(load(i - 4 * k), load(i + 4 * k));
                *a = _mm256_add_epi16(*a, mulhi16(s, wk));
            }
        }
        let bytes = acc.map(|a| _mm256_srli_epi16::<{ SHIFT as i32 }>(_mm256_add_epi16(a, round)));
        for half in 0..2 {
            // packus interleaves the 128-bit lanes of its two inputs; the permute puts them back
            // in order (and saturates at 255, the `min` of the portable code).
            let packed = _mm256_packus_epi16(bytes[2 * half], bytes[2 * half + 1]);
            let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
            // SAFETY: start + 32 * half + 32 <= n <= out.len().
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(start + 32 * half).cast(), ordered) };
        }
    }
    n
}

/// `vertical_avx2` with 32 lanes per vector.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW; the slices as for `vertical_avx2`.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn vertical_avx512(
    out: &mut [u16],
    centre: &[u8],
    pairs: &[(&[u8], &[u8])],
    weights: &[u16],
    from: usize,
) -> usize {
    let n = from + (out.len() - from) / COLS_AVX512 * COLS_AVX512;
    assert!(
        centre.len() >= n
            && weights.len() == pairs.len() + 1
            && pairs.iter().all(|(a, b)| a.len() >= n && b.len() >= n)
    );
    // SAFETY: (every `widen`) as in `vertical_avx2`, 32 bytes at a column below `n - 31`.
    let widen = |row: &[u8], i: usize| _mm512_cvtepu8_epi16(unsafe { _mm256_loadu_si256(row.as_ptr().add(i).cast()) });
    let w0 = _mm512_set1_epi16(weights[0] as i16);
    for start in (from..n).step_by(COLS_AVX512) {
        let mut acc = [_mm512_setzero_si512(); 4];
        for (v, a) in acc.iter_mut().enumerate() {
            let c = widen(centre, start + 32 * v);
            *a = mulhi32(_mm512_slli_epi16::<{ SHIFT }>(c), w0);
        }
        for ((above, below), &wk) in pairs.iter().zip(&weights[1..]) {
            let wk = _mm512_set1_epi16(wk as i16);
            for (v, a) in acc.iter_mut().enumerate() {
                let i = start + 32 * v;
                let s = _mm512_add_epi16(widen(above, i), widen(below, i));
                *a = _mm512_add_epi16(*a, mulhi32(_mm512_slli_epi16::<{ SHIFT }>(s), wk));
            }
        }
        for (v, a) in acc.iter().enumerate() {
            // SAFETY: start + 32 * v + 32 <= n <= out.len().
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(start + 32 * v).cast(), *a) };
        }
    }
    n
}

/// `horizontal_avx2` with 32 lanes per vector.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW; the slices as for `horizontal_avx2`.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn horizontal_avx512(
    out: &mut [u8],
    padded: &[u16],
    weights: &[u16],
    round: u16,
    from: usize,
) -> usize {
    let n = from + (out.len() - from) / COLS_AVX512 * COLS_AVX512;
    let radius = weights.len() - 1;
    assert!(padded.len() >= n + 8 * radius);
    // SAFETY: (every `load`) 32 lanes at an index below `n + 8 * radius - 31` (asserted).
    let load = |i: usize| unsafe { _mm512_loadu_si512(padded.as_ptr().add(i).cast()) };
    let (w0, round) = (_mm512_set1_epi16(weights[0] as i16), _mm512_set1_epi16(round as i16));
    let centre = radius * 4;
    for start in (from..n).step_by(COLS_AVX512) {
        let mut acc = [_mm512_setzero_si512(); 4];
        for (v, a) in acc.iter_mut().enumerate() {
            *a = mulhi32(load(centre + start + 32 * v), w0);
        }
        for (k, &wk) in weights.iter().enumerate().skip(1) {
            let wk = _mm512_set1_epi16(wk as i16);
            for (v, a) in acc.iter_mut().enumerate() {
                let i = centre + start + 32 * v;
                let s = _mm512_add_epi16(load(i - 4 * k), load(i + 4 * k));
                *a = _mm512_add_epi16(*a, mulhi32(s, wk));
            }
        }
        for (v, a) in acc.iter().enumerate() {
            // Saturating narrow to bytes, in order (the `min(255)` of the portable code).
            let bytes = _mm512_cvtusepi16_epi8(_mm512_srli_epi16::<{ SHIFT }>(_mm512_add_epi16(*a, round)));
            // SAFETY: start + 32 * v + 32 <= n <= out.len().
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(start + 32 * v).cast(), bytes) };
        }
    }
    n
}
