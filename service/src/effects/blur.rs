//! Separable Gaussian blur, clamp-to-edge, in 16-bit fixed point (see the module docs for
//! the definition and `GaussianKernel` for the arithmetic).
use super::rows::{blur_horizontal, blur_vertical, for_each_row_with};
use crate::frame::Frame;

/// Normalised weights of the definition for offsets `0..=radius`, radius `ceil(3 * sigma)`;
/// `[1.0]` for sigma 0.
pub fn gaussian_weights(sigma: f32) -> Vec<f64> {
    if sigma <= 0.0 {
        return vec![1.0];
    }
    let sigma = sigma as f64;
    let radius = (3.0 * sigma).ceil() as usize;
    let raw: Vec<f64> = (0..=radius).map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let total = raw[0] + 2.0 * raw[1..].iter().sum::<f64>();
    raw.iter().map(|w| w / total).collect()
}

/// Fractional bits of the blur's intermediate values: a vertical sum of byte values is kept
/// in units of 2^-7 levels, so a pair of them still fits 16 bits.
pub const INTERMEDIATE_SHIFT: u32 = 7;

/// The Gaussian as the CPU and the CUDA blur compute it, integers only, so both give the
/// same bytes whatever order they sum in.
///
/// Weights are in units of 2^-16: `round(w_k * 2^16)` for the offsets, the centre takes
/// what rounding left so the kernel sums to exactly 2^16; trailing offsets whose weight
/// rounds to 0 are dropped. Each tap's product is truncated,
/// `mulhi(x, w) = (x * w) >> 16`, and the sums are plain integer sums:
/// - vertical, from the source bytes: `v = mulhi(c << 7, w0) + sum_k mulhi((a_k + b_k) << 7, w_k)`
///   (in 2^-7 levels, at most 255 << 7, so `v_left + v_right` fits 16 bits);
/// - horizontal, on those: `s = mulhi(v, w0) + sum_k mulhi(v_-k + v_+k, w_k)`;
/// - the byte: `min((s + ROUND) >> 7, 255)`, where `ROUND` is half a level plus the expected
///   truncation of the `2 (radius + 1)` products (half a unit each).
///
/// Against the exact (f64) definition this is within one level (tested on random frames
/// for sigma up to the maximum), as the f32 version before it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaussianKernel {
    weights: Vec<u32>,
    /// `weights` as the 16-bit lanes the CPU taps multiply by, made once here rather than on
    /// every frame; empty at radius 0, the one kernel whose centre (2^16) does not fit.
    lanes: Vec<u16>,
}

impl GaussianKernel {
    pub fn new(sigma: f32) -> Self {
        let exact = gaussian_weights(sigma);
        let mut weights: Vec<u32> = exact.iter().map(|w| (w * 65536.0).round() as u32).collect();
        while weights.len() > 1 && weights.last() == Some(&0) {
            weights.pop();
        }
        weights[0] = 65536 - 2 * weights[1..].iter().sum::<u32>();
        // Above radius 0 every weight is under 2^16 (the outermost offset takes at least 1).
        let lanes = if weights.len() > 1 { weights.iter().map(|&w| w as u16).collect() } else { Vec::new() };
        GaussianKernel { weights, lanes }
    }

    /// Largest offset with a weight; 0 means the blur is the identity (the centre weighs 2^16).
    pub fn radius(&self) -> usize {
        self.weights.len() - 1
    }

    /// Weights of offsets `0..=radius` in units of 2^-16 (the centre is 2^16 only at radius 0).
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// `weights()` as 16-bit values for the CPU taps; empty at radius 0 (the identity).
    pub(crate) fn lanes(&self) -> &[u16] {
        &self.lanes
    }

    /// The rounding constant added before the final `>> 7`.
    pub fn round(&self) -> u32 {
        (1 << (INTERMEDIATE_SHIFT - 1)) + self.radius() as u32 + 1
    }
}

/// Blur `src` into `dst` (reshaped to match).
///
/// Each output row is computed on its own: the vertical taps first, straight from the
/// source bytes (2r+1 rows of u8 stay in L2 even at 4K), then the horizontal taps on that
/// one row of 16-bit sums, rounded straight into the output. No frame-sized intermediate,
/// so the frame is read once from memory; and each block of a row keeps its sums in
/// registers through all the taps (see `rows::blur_vertical`).
pub(crate) fn blur(src: &Frame, dst: &mut Frame, kernel: &GaussianKernel) {
    let (w, h) = (src.width, src.height);
    let radius = kernel.radius();
    dst.reshape(w, h);
    if radius == 0 {
        dst.data.copy_from_slice(&src.data);
        return;
    }
    let weights = kernel.lanes();
    let round = kernel.round() as u16;
    let row_len = w * 4;
    let src_row = |y: isize| {
        let y = y.clamp(0, h as isize - 1) as usize;
        &src.data[y * row_len..(y + 1) * row_len]
    };
    let centre = radius * 4;
    for_each_row_with(
        &mut dst.data,
        row_len,
        || (vec![0u16; (w + 2 * radius) * 4], Vec::with_capacity(radius)),
        |(padded, pairs), y, out| {
            let y = y as isize;
            pairs.clear();
            pairs.extend((1..=radius).map(|k| (src_row(y - k as isize), src_row(y + k as isize))));
            blur_vertical(&mut padded[centre..centre + row_len], src_row(y), pairs, weights);
            // Clamp-to-edge: repeat the first and last pixel into the padding.
            let (first, last) = (centre, centre + row_len - 4);
            for i in 0..radius {
                padded.copy_within(first..first + 4, i * 4);
                padded.copy_within(last..last + 4, last + 4 + i * 4);
            }
            blur_horizontal(out, padded, weights, round);
        },
    );
}
