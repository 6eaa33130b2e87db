//! I420 (planar YUV 4:2:0, BT.601 limited range, as WebRTC decoders produce) <-> RGBA8.
//!
//! Odd sizes round the chroma planes up: `((W + 1) / 2) x ((H + 1) / 2)`. Integer
//! arithmetic throughout, so the CUDA kernels (`kernels/i420.cu`) match bit for bit.
use crate::frame::Frame;

pub fn chroma_dims(width: usize, height: usize) -> (usize, usize) {
    (width.div_ceil(2), height.div_ceil(2))
}

/// Bytes in an I420 frame of this size.
pub fn i420_len(width: usize, height: usize) -> usize {
    let (cw, ch) = chroma_dims(width, height);
    width * height + 2 * cw * ch
}

#[inline]
fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

#[inline]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (y as i32 - 16);
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    [
        clamp_u8((c + 409 * e + 128) >> 8),
        clamp_u8((c - 100 * d - 208 * e + 128) >> 8),
        clamp_u8((c + 516 * d + 128) >> 8),
    ]
}

#[inline]
pub fn rgb_to_y(r: i32, g: i32, b: i32) -> u8 {
    clamp_u8(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16)
}

/// Chroma from the mean RGB of a 2x2 block (`n` pixels of it inside the frame).
#[inline]
pub fn rgb_to_uv(r: i32, g: i32, b: i32) -> (u8, u8) {
    (
        clamp_u8(((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128),
        clamp_u8(((112 * r - 94 * g - 18 * b + 128) >> 8) + 128),
    )
}

/// Decode `bytes` (exactly `i420_len(width, height)` long) into `frame`, alpha 255.
pub fn i420_to_rgba(bytes: &[u8], width: usize, height: usize, frame: &mut Frame) {
    assert_eq!(bytes.len(), i420_len(width, height), "caller checks the body size");
    frame.reshape(width, height);
    let (cw, ch) = chroma_dims(width, height);
    let (y_plane, rest) = bytes.split_at(width * height);
    let (u_plane, v_plane) = rest.split_at(cw * ch);
    for (y, row) in frame.data.chunks_exact_mut(width * 4).enumerate() {
        for (x, px) in row.chunks_exact_mut(4).enumerate() {
            let ci = (y / 2) * cw + x / 2;
            let [r, g, b] = yuv_to_rgb(y_plane[y * width + x], u_plane[ci], v_plane[ci]);
            px.copy_from_slice(&[r, g, b, 255]);
        }
    }
}

/// Encode `frame` as I420 into `out` (resized to fit); alpha is dropped.
pub fn rgba_to_i420(frame: &Frame, out: &mut Vec<u8>) {
    let (w, h) = (frame.width, frame.height);
    let (cw, ch) = chroma_dims(w, h);
    out.resize(i420_len(w, h), 0);
    let (y_plane, rest) = out.split_at_mut(w * h);
    let (u_plane, v_plane) = rest.split_at_mut(cw * ch);
    for (i, px) in frame.data.chunks_exact(4).enumerate() {
        y_plane[i] = rgb_to_y(px[0] as i32, px[1] as i32, px[2] as i32);
    }
    for cy in 0..ch {
        for cx in 0..cw {
            let (mut sum, mut n) = ([0i32; 3], 0);
            for y in (cy * 2)..(cy * 2 + 2).min(h) {
                for x in (cx * 2)..(cx * 2 + 2).min(w) {
                    let p = &frame.data[(y * w + x) * 4..];
                    for c in 0..3 {
                        sum[c] += p[c] as i32;
                    }
                    n += 1;
                }
            }
            let avg = |s: i32| (s + n / 2) / n;
            let (u, v) = rgb_to_uv(avg(sum[0]), avg(sum[1]), avg(sum[2]));
            u_plane[cy * cw + cx] = u;
            v_plane[cy * cw + cx] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::hash32;

    #[test]
    fn sizes_round_chroma_up() {
        assert_eq!(i420_len(16, 16), 256 + 2 * 64);
        assert_eq!(i420_len(17, 3), 51 + 2 * 9 * 2);
    }

    #[test]
    fn round_trip_error_is_bounded() {
        // Colours constant over each 2x2 block survive chroma subsampling; what is left is
        // the quantisation of limited-range YUV: a few levels at most.
        for (w, h) in [(32, 18), (17, 9), (2, 2)] {
            let mut f = Frame::new(w, h);
            for y in 0..h {
                for x in 0..w {
                    let hsh = hash32(((y / 2) * 1000 + x / 2) as u32);
                    f.data[(y * w + x) * 4..(y * w + x) * 4 + 4].copy_from_slice(&[
                        hsh as u8,
                        (hsh >> 8) as u8,
                        (hsh >> 16) as u8,
                        255,
                    ]);
                }
            }
            let mut yuv = Vec::new();
            rgba_to_i420(&f, &mut yuv);
            assert_eq!(yuv.len(), i420_len(w, h));
            let mut back = Frame::default();
            i420_to_rgba(&yuv, w, h, &mut back);
            let worst = f.data.iter().zip(&back.data).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(worst <= 4, "{w}x{h}: round trip off by {worst}");
        }
    }

    #[test]
    fn black_white_and_grey_map_to_limited_range() {
        let mut f = Frame::new(2, 2);
        f.data.copy_from_slice(&[0, 0, 0, 255, 255, 255, 255, 255, 128, 128, 128, 255, 0, 0, 0, 255]);
        let mut yuv = Vec::new();
        rgba_to_i420(&f, &mut yuv);
        assert_eq!(&yuv[..4], &[16, 235, 126, 16]);
        assert_eq!(&yuv[4..], &[128, 128]);
    }
}
