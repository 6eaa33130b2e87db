//! Separable Gaussian blur, clamp-to-edge, f32 intermediate (see the module docs).
use super::round_u8;
use super::rows::{add_pair, for_each_row_with, scale_into};
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

/// Blur `src` into `dst` (reshaped to match); `tmp` holds the horizontal pass.
pub(crate) fn blur(src: &Frame, dst: &mut Frame, weights: &[f32], tmp: &mut Vec<f32>) {
    let (w, h) = (src.width, src.height);
    let radius = weights.len() - 1;
    let row_len = w * 4;
    dst.reshape(w, h);
    tmp.resize(row_len * h, 0.0);

    // Horizontal: copy each row into an edge-padded f32 row, then sum shifted copies of it.
    for_each_row_with(
        tmp,
        row_len,
        || vec![0f32; (w + 2 * radius) * 4],
        |padded, y, out| {
            let row = &src.data[y * row_len..(y + 1) * row_len];
            for (i, p) in padded.chunks_exact_mut(4).enumerate() {
                let sx = i.saturating_sub(radius).min(w - 1);
                for c in 0..4 {
                    p[c] = row[sx * 4 + c] as f32;
                }
            }
            let centre = radius * 4;
            scale_into(out, &padded[centre..centre + row_len], weights[0]);
            for (k, &wk) in weights.iter().enumerate().skip(1) {
                let left = &padded[centre - k * 4..centre - k * 4 + row_len];
                let right = &padded[centre + k * 4..centre + k * 4 + row_len];
                add_pair(out, left, right, wk);
            }
        },
    );

    // Vertical: each output row is a weighted sum of clamped intermediate rows.
    let tmp: &[f32] = tmp;
    let row_of = |y: isize| {
        let y = y.clamp(0, h as isize - 1) as usize;
        &tmp[y * row_len..(y + 1) * row_len]
    };
    for_each_row_with(
        &mut dst.data,
        row_len,
        || vec![0f32; row_len],
        |acc, y, out| {
            let y = y as isize;
            scale_into(acc, row_of(y), weights[0]);
            for (k, &wk) in weights.iter().enumerate().skip(1) {
                add_pair(acc, row_of(y - k as isize), row_of(y + k as isize), wk);
            }
            for (o, &v) in out.iter_mut().zip(acc.iter()) {
                *o = round_u8(v);
            }
        },
    );
}
