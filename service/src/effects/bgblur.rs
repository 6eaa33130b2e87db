//! Background blur: blur the frame, then keep the subject sharp inside a soft ellipse.
use super::rows::{blend_span, for_each_row_with, mask_span};
use super::{blur::blur, ChainPlan, CpuScratch};
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
    // Through i32 (exact: sides are at most 7680), which vector units convert natively.
    let nx = (x as i32 as f32 + 0.5 - MASK_CENTRE.0 * w) / (MASK_AXES.0 * w);
    let ny = (y as f32 + 0.5 - MASK_CENTRE.1 * h) / (MASK_AXES.1 * h);
    let d = (nx * nx + ny * ny).sqrt();
    let t = ((d - MASK_EDGE.0) / (MASK_EDGE.1 - MASK_EDGE.0)).clamp(0.0, 1.0);
    1.0 - t * t * (3.0 - 2.0 * t)
}

pub(crate) fn bgblur(frame: &mut Frame, plan: &ChainPlan, scratch: &mut CpuScratch) {
    blur(frame, &mut scratch.spare, &plan.blur);
    let (w, h) = (frame.width, frame.height);
    let blurred = &scratch.spare.data;
    for_each_row_with(
        &mut frame.data,
        w * 4,
        || vec![0f32; w],
        |masks, y, row| {
            let blurred_row = &blurred[y * w * 4..(y + 1) * w * 4];
            let (ring, subject) = mask_spans(y, w, h);
            // Outside the outer ellipse the mask is exactly 0: the blurred pixels as they are.
            row[..ring.0 * 4].copy_from_slice(&blurred_row[..ring.0 * 4]);
            row[ring.1 * 4..].copy_from_slice(&blurred_row[ring.1 * 4..]);
            // Inside the inner one it is exactly 1: the pixels stay. In between, the formula,
            // a span at a time: first the masks, then the blend (both vectorised).
            for (lo, hi) in [(ring.0, subject.0), (subject.1, ring.1)] {
                if lo < hi {
                    let masks = &mut masks[..hi - lo];
                    mask_span(masks, lo, y, w, h);
                    blend_span(&mut row[lo * 4..hi * 4], &blurred_row[lo * 4..hi * 4], masks);
                }
            }
        },
    );
}

/// Column spans of row `y`: `ring` holds every pixel whose mask may be above 0, `subject`
/// (inside `ring`) only pixels whose mask is exactly 1. Both are widened by two pixels
/// against rounding, so the formula decides every pixel near an edge.
pub(crate) fn mask_spans(y: usize, w: usize, h: usize) -> ((usize, usize), (usize, usize)) {
    let (wf, hf) = (w as f32, h as f32);
    let (cx, ax) = (MASK_CENTRE.0 * wf, MASK_AXES.0 * wf);
    let ny = (y as f32 + 0.5 - MASK_CENTRE.1 * hf) / (MASK_AXES.1 * hf);
    let half_width = |d: f32| ax * (d * d - ny * ny).max(0.0).sqrt();
    let span = |half: f32, widen: f32| {
        let lo = (cx - half - widen - 0.5).floor().clamp(0.0, wf) as usize;
        let hi = (cx + half + widen - 0.5).ceil().clamp(0.0, wf) as usize;
        (lo, hi.max(lo))
    };
    let ring = span(half_width(MASK_EDGE.1), 2.0);
    let inner = half_width(MASK_EDGE.0);
    let subject = if inner > 3.0 { span(inner, -2.0) } else { (ring.0, ring.0) };
    let subject = (subject.0.clamp(ring.0, ring.1), subject.1.clamp(ring.0, ring.1));
    (ring, (subject.0, subject.1.max(subject.0)))
}
