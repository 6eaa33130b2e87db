//! Background blur: blur the frame, then keep the subject sharp inside a soft ellipse.
use super::rows::for_each_row;
use super::{blur::blur, round_u8, ChainPlan, CpuScratch};
use crate::frame::Frame;

/// Ellipse centre and semi-axes as fractions of the frame size.
pub const MASK_CENTRE: (f32, f32) = (0.5, 0.45);
pub const MASK_AXES: (f32, f32) = (0.30, 0.42);
/// The mask falls from 1 to 0 between these normalised elliptical distances.
pub const MASK_EDGE: (f32, f32) = (0.85, 1.15);

/// Foreground weight `m` of pixel (x, y): 1 on the subject, 0 in the background.
#[inline]
pub fn foreground_mask(x: usize, y: usize, width: usize, height: usize) -> f32 {
    let (w, h) = (width as f32, height as f32);
    let nx = (x as f32 + 0.5 - MASK_CENTRE.0 * w) / (MASK_AXES.0 * w);
    let ny = (y as f32 + 0.5 - MASK_CENTRE.1 * h) / (MASK_AXES.1 * h);
    let d = (nx * nx + ny * ny).sqrt();
    let t = ((d - MASK_EDGE.0) / (MASK_EDGE.1 - MASK_EDGE.0)).clamp(0.0, 1.0);
    1.0 - t * t * (3.0 - 2.0 * t)
}

pub(crate) fn bgblur(frame: &mut Frame, plan: &ChainPlan, scratch: &mut CpuScratch) {
    blur(frame, &mut scratch.spare, &plan.blur_weights, &mut scratch.tmp);
    let (w, h) = (frame.width, frame.height);
    let blurred = &scratch.spare.data;
    for_each_row(&mut frame.data, w * 4, |y, row| {
        let blurred_row = &blurred[y * w * 4..(y + 1) * w * 4];
        for (x, (px, b)) in row.chunks_exact_mut(4).zip(blurred_row.chunks_exact(4)).enumerate() {
            let m = foreground_mask(x, y, w, h);
            if m >= 1.0 {
                continue;
            }
            for c in 0..4 {
                px[c] = round_u8(m * px[c] as f32 + (1.0 - m) * b[c] as f32);
            }
        }
    });
}
