//! Separable Gaussian blur, clamp-to-edge, f32 intermediate (see the module docs).
use super::rows::{blur_horizontal, blur_vertical, for_each_row_with};
use crate::frame::Frame;

/// Normalised weights for offsets `0..=radius`, radius `ceil(3 * sigma)`; `[1.0]` for sigma 0.
pub fn gaussian_weights(sigma: f32) -> Vec<f32> {
    if sigma <= 0.0 {
        return vec![1.0];
    }
    let sigma = sigma as f64;
    let radius = (3.0 * sigma).ceil() as usize;
    let raw: Vec<f64> = (0..=radius).map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let total = raw[0] + 2.0 * raw[1..].iter().sum::<f64>();
    raw.iter().map(|w| (w / total) as f32).collect()
}

/// Blur `src` into `dst` (reshaped to match).
///
/// Each output row is computed on its own: the vertical taps first, straight from the
/// source bytes (2r+1 rows of u8 stay in L2 even at 4K), then the horizontal taps on that
/// one f32 row, rounded straight into the output. No frame-sized intermediate, so the frame
/// is read once from memory; and each block of a row keeps its sums in registers through
/// all the taps (see `rows::blur_vertical`). The definition's order (horizontal first)
/// gives the same sums up to f32 rounding.
pub(crate) fn blur(src: &Frame, dst: &mut Frame, weights: &[f32]) {
    let (w, h) = (src.width, src.height);
    let radius = weights.len() - 1;
    let row_len = w * 4;
    dst.reshape(w, h);
    let src_row = |y: isize| {
        let y = y.clamp(0, h as isize - 1) as usize;
        &src.data[y * row_len..(y + 1) * row_len]
    };
    let centre = radius * 4;
    for_each_row_with(
        &mut dst.data,
        row_len,
        || (vec![0f32; (w + 2 * radius) * 4], Vec::with_capacity(radius)),
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
            blur_horizontal(out, padded, weights);
        },
    );
}
