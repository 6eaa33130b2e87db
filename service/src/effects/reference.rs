//! Plain f64 implementations of the definitions in `effects/mod.rs`, written for
//! obviousness rather than speed: the CPU and GPU paths are tested against these.
use crate::frame::Frame;

fn round(v: f64) -> u8 {
    (v + 0.5).floor().clamp(0.0, 255.0) as u8
}

fn px(f: &Frame, x: usize, y: usize, c: usize) -> f64 {
    f.data[(y * f.width + x) * 4 + c] as f64
}

pub fn blur(src: &Frame, sigma: f64) -> Frame {
    let (w, h) = (src.width, src.height);
    if sigma == 0.0 {
        return src.clone();
    }
    let r = (3.0 * sigma).ceil() as isize;
    let raw: Vec<f64> = (-r..=r).map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = raw.iter().sum();
    let weight = |k: isize| raw[(k + r) as usize] / total;
    let clampi = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let mut horizontal = vec![0f64; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            for c in 0..4 {
                horizontal[(y * w + x) * 4 + c] =
                    (-r..=r).map(|k| weight(k) * px(src, clampi(x as isize + k, w), y, c)).sum();
            }
        }
    }
    let mut out = Frame::new(w, h);
    for y in 0..h {
        for x in 0..w {
            for c in 0..4 {
                let v: f64 =
                    (-r..=r).map(|k| weight(k) * horizontal[(clampi(y as isize + k, h) * w + x) * 4 + c]).sum();
                out.data[(y * w + x) * 4 + c] = round(v);
            }
        }
    }
    out
}

pub fn bgblur(src: &Frame, sigma: f64) -> Frame {
    let blurred = blur(src, sigma);
    let (w, h) = (src.width as f64, src.height as f64);
    let mut out = Frame::new(src.width, src.height);
    for y in 0..src.height {
        for x in 0..src.width {
            let nx = (x as f64 + 0.5 - 0.5 * w) / (0.30 * w);
            let ny = (y as f64 + 0.5 - 0.45 * h) / (0.42 * h);
            let d = (nx * nx + ny * ny).sqrt();
            let t = ((d - 0.85) / 0.30).clamp(0.0, 1.0);
            let m = 1.0 - t * t * (3.0 - 2.0 * t);
            for c in 0..4 {
                out.data[(y * src.width + x) * 4 + c] = round(m * px(src, x, y, c) + (1.0 - m) * px(&blurred, x, y, c));
            }
        }
    }
    out
}

pub fn translate(src: &Frame, dx: f64, dy: f64) -> Frame {
    let (w, h) = (src.width, src.height);
    let sample = |x: isize, y: isize, c: usize| -> f64 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0.0
        } else {
            px(src, x as usize, y as usize, c)
        }
    };
    let mut out = Frame::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = (x as f64 - dx, y as f64 - dy);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for c in 0..4 {
                let v = (1.0 - fx) * (1.0 - fy) * sample(x0, y0, c)
                    + fx * (1.0 - fy) * sample(x0 + 1, y0, c)
                    + (1.0 - fx) * fy * sample(x0, y0 + 1, c)
                    + fx * fy * sample(x0 + 1, y0 + 1, c);
                out.data[(y * w + x) * 4 + c] = round(v);
            }
        }
    }
    out
}

pub fn color(src: &Frame, m: &[[f32; 4]; 3], gamma: &[f32; 3]) -> Frame {
    let mut out = src.clone();
    for p in out.data.chunks_exact_mut(4) {
        let rgb = [p[0] as f64, p[1] as f64, p[2] as f64];
        for c in 0..3 {
            let v =
                m[c][0] as f64 * rgb[0] + m[c][1] as f64 * rgb[1] + m[c][2] as f64 * rgb[2] + m[c][3] as f64 * 255.0;
            let i = round(v) as f64;
            p[c] = round(255.0 * (i / 255.0).powf(1.0 / gamma[c] as f64));
        }
    }
    out
}
