//! The video every synthetic publisher sends: encoded once at start and looped, so a
//! publisher costs a socket and a timer, not an encoder (a process drives many sessions).
use std::sync::Arc;

use rtc_service::i420::{chroma_dims, i420_len};
use rtc_service::webrtc::vp8::{CodecError, EncodedFrame, Vp8Encoder};

/// A looping VP8 clip: frame 0 is a key frame, the rest refer back to it, so the loop (and
/// a key-frame request) restarts at frame 0.
#[derive(Debug)]
pub struct Clip {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub frames: Vec<Arc<[u8]>>,
}

impl Clip {
    /// `seconds` of a moving bar over a gradient at `kbps`.
    pub fn encode(width: usize, height: usize, fps: u32, kbps: u32, seconds: u32) -> Result<Clip, CodecError> {
        let mut encoder = Vp8Encoder::new(width, height, kbps)?;
        let count = (fps * seconds).max(1) as usize;
        let mut frames = Vec::with_capacity(count);
        let mut out: Vec<EncodedFrame> = Vec::new();
        let mut picture = vec![0u8; i420_len(width, height)];
        for i in 0..count {
            draw(&mut picture, width, height, i, count);
            out.clear();
            encoder.encode(&mut picture, (i as i64) * 90_000 / fps as i64, i == 0, &mut out)?;
            let frame =
                out.drain(..).next().ok_or_else(|| CodecError(format!("libvpx gave no frame for frame {i}")))?;
            frames.push(Arc::from(frame.data));
        }
        Ok(Clip { width, height, fps, frames })
    }

    /// The clip's bitrate as encoded, kbit/s.
    pub fn kbps(&self) -> f64 {
        let bytes: usize = self.frames.iter().map(|f| f.len()).sum();
        bytes as f64 * 8.0 / 1000.0 / (self.frames.len() as f64 / self.fps as f64)
    }
}

/// A vertical bar crossing a horizontal gradient once per loop; chroma flat grey-blue.
fn draw(p: &mut [u8], w: usize, h: usize, i: usize, count: usize) {
    let bar = i * w / count;
    let bar_width = (w / 16).max(2);
    for y in 0..h {
        let row = &mut p[y * w..(y + 1) * w];
        for (x, px) in row.iter_mut().enumerate() {
            *px =
                if x >= bar && x < bar + bar_width { 235 } else { (16 + x * 200 / w.max(1) + y * 19 / h.max(1)) as u8 };
        }
    }
    let (cw, ch) = chroma_dims(w, h);
    p[w * h..w * h + cw * ch].fill(120);
    p[w * h + cw * ch..].fill(136);
}
