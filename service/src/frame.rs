//! RGBA8 frames, the deterministic synthetic test frame and the output checksum.
//!
//! The synthetic frame is defined with integer arithmetic only, so the CUDA generator
//! (`kernels/synth.cu`) produces the very same bytes.
use rayon::prelude::*;

/// An RGBA8 frame, rows packed (stride = 4 * width).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn new(width: usize, height: usize) -> Self {
        Frame { width, height, data: vec![0; width * height * 4] }
    }

    /// Resize in place, keeping the allocation when it is large enough.
    pub fn reshape(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
        self.data.resize(width * height * 4, 0);
    }

    pub fn len_bytes(&self) -> usize {
        self.width * self.height * 4
    }
}

/// The integer hash used for the synthetic frame's noise (lowbias32 by Chris Wellons).
#[inline]
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// One pixel of the synthetic frame: horizontal and vertical gradients, a 32-px checker
/// board in blue, and +-16 levels of hashed noise, alpha opaque.
#[inline]
pub fn synth_pixel(x: u32, y: u32, width: u32, height: u32, seed: u32) -> [u8; 4] {
    let h = hash32(x.wrapping_mul(0x9e37_79b1) ^ y.wrapping_mul(0x85eb_ca77) ^ seed.wrapping_mul(0xc2b2_ae3d));
    let noise = (h & 31) as i32 - 16;
    let gx = (x * 255 / width.max(2).saturating_sub(1).max(1)) as i32;
    let gy = (y * 255 / height.max(2).saturating_sub(1).max(1)) as i32;
    let checker = if ((x >> 5) ^ (y >> 5)) & 1 == 1 { 200 } else { 40 };
    let c = |v: i32| v.clamp(0, 255) as u8;
    [c(gx + noise), c(gy + noise), c(checker + noise), 255]
}

/// Fill `frame` with the synthetic test frame for `seed`.
pub fn synthesize(frame: &mut Frame, seed: u32) {
    let (w, h) = (frame.width as u32, frame.height as u32);
    crate::effects::rows::for_each_row(&mut frame.data, frame.width * 4, |y, row| {
        for (x, px) in row.chunks_exact_mut(4).enumerate() {
            px.copy_from_slice(&synth_pixel(x as u32, y as u32, w, h, seed));
        }
    });
}

/// FNV-1a over 64-bit little-endian words of each row, rows combined in order; printed as
/// 16 hex digits. Rows hash in parallel, so 4K frames stay cheap.
pub fn checksum(bytes: &[u8], row_len: usize) -> String {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let row_len = row_len.max(1);
    let hash_row = |row: &[u8]| {
        let mut h = OFFSET;
        let mut words = row.chunks_exact(8);
        for w in &mut words {
            h = (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(PRIME);
        }
        for &b in words.remainder() {
            h = (h ^ b as u64).wrapping_mul(PRIME);
        }
        h
    };
    let fold = |acc: u64, h: u64| (acc ^ h).wrapping_mul(PRIME);
    // Thumbnails hash on this thread: a fork/join costs more than the hashing.
    let combined = if bytes.len() / 4 < crate::effects::rows::PARALLEL_MIN_PIXELS {
        bytes.chunks(row_len).map(hash_row).fold(OFFSET, fold)
    } else {
        bytes.par_chunks(row_len).map(hash_row).collect::<Vec<u64>>().into_iter().fold(OFFSET, fold)
    };
    format!("{combined:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_frame_is_deterministic_and_seeded() {
        let mut a = Frame::new(33, 17);
        let mut b = Frame::new(33, 17);
        synthesize(&mut a, 1);
        synthesize(&mut b, 1);
        assert_eq!(a, b);
        synthesize(&mut b, 2);
        assert_ne!(a, b);
        assert!(a.data.chunks(4).all(|p| p[3] == 255));
    }

    #[test]
    fn checksum_sees_a_single_changed_byte() {
        let mut f = Frame::new(20, 10);
        synthesize(&mut f, 7);
        let before = checksum(&f.data, 80);
        f.data[123] ^= 1;
        assert_ne!(before, checksum(&f.data, 80));
        assert_eq!(before.len(), 16);
    }
}
