//! Sub-pixel translation with bilinear sampling; outside the source is transparent black.
use super::round_u8;
use super::rows::for_each_row;
use crate::frame::Frame;

pub(crate) fn translate(src: &Frame, dst: &mut Frame, dx: f32, dy: f32) {
    let (w, h) = (src.width, src.height);
    dst.reshape(w, h);
    // The shift is the same for every pixel, so are the four bilinear weights.
    let (sx0, sy0) = (-dx, -dy);
    let (ix, iy) = (sx0.floor(), sy0.floor());
    let (fx, fy) = (sx0 - ix, sy0 - iy);
    let (ix, iy) = (ix as isize, iy as isize);
    let weights = [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy];
    let row_len = w * 4;
    let src_row = |y: isize| -> Option<&[u8]> {
        (0..h as isize).contains(&y).then(|| &src.data[y as usize * row_len..(y as usize + 1) * row_len])
    };
    for_each_row(&mut dst.data, row_len, |y, out| {
        let top = src_row(y as isize + iy);
        let bottom = src_row(y as isize + iy + 1);
        for (x, px) in out.chunks_exact_mut(4).enumerate() {
            let x0 = x as isize + ix;
            let fetch = |row: Option<&[u8]>, xs: isize, c: usize| -> f32 {
                match row {
                    Some(r) if (0..w as isize).contains(&xs) => r[xs as usize * 4 + c] as f32,
                    _ => 0.0,
                }
            };
            for c in 0..4 {
                let v = weights[0] * fetch(top, x0, c)
                    + weights[1] * fetch(top, x0 + 1, c)
                    + weights[2] * fetch(bottom, x0, c)
                    + weights[3] * fetch(bottom, x0 + 1, c);
                px[c] = round_u8(v);
            }
        }
    });
}
