//! Colour grading: a 3x4 matrix on 0..=255 values, then a per-channel gamma LUT.
use super::rows::{color_indices, for_each_row};
use crate::frame::Frame;

#[derive(Debug, Clone, PartialEq)]
pub struct ColorGrade {
    /// Rows produce R, G, B from `[r, g, b, 255]`.
    pub matrix: [[f32; 4]; 3],
    pub gamma: [f32; 3],
}

impl Default for ColorGrade {
    /// A warm "stage lighting" grade: reds up, blues down, slight lift in the shadows.
    fn default() -> Self {
        ColorGrade {
            matrix: [[1.08, 0.04, 0.0, 0.01], [0.02, 1.0, 0.02, 0.0], [0.0, 0.04, 0.9, -0.01]],
            gamma: [1.1, 1.0, 0.9],
        }
    }
}

impl ColorGrade {
    pub fn identity() -> Self {
        ColorGrade { matrix: [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], gamma: [1.0; 3] }
    }

    pub fn luts(&self) -> [[u8; 256]; 3] {
        let mut luts = [[0u8; 256]; 3];
        for (lut, &g) in luts.iter_mut().zip(&self.gamma) {
            for (i, v) in lut.iter_mut().enumerate() {
                *v = (255.0 * (i as f64 / 255.0).powf(1.0 / g as f64) + 0.5).floor().clamp(0.0, 255.0) as u8;
            }
        }
        luts
    }
}

/// A row at a time: the matrix in vector lanes (`rows::color_indices`), then the table
/// lookups, which vector units cannot do cheaply, while the row is still in L1.
pub(crate) fn color(frame: &mut Frame, m: &[[f32; 4]; 3], luts: &[[u8; 256]; 3]) {
    let row_len = frame.width * 4;
    for_each_row(&mut frame.data, row_len, |_, row| {
        color_indices(row, m);
        for px in row.chunks_exact_mut(4) {
            px[0] = luts[0][px[0] as usize];
            px[1] = luts[1][px[1] as usize];
            px[2] = luts[2][px[2] as usize];
        }
    });
}
