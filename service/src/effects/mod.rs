//! The effects, defined once. The CPU implementation lives in this module's children, the
//! CUDA one in `kernels/*.cu`; both follow the definitions below and are parity-tested.
//!
//! All effects work on RGBA8 frames; results are rounded half up (`floor(v + 0.5)`) and
//! clamped to 0..=255.
//!
//! - `blur`: Gaussian with `sigma` (default 4.0, 0..=20), radius `ceil(3 * sigma)`,
//!   weights `exp(-k^2 / (2 sigma^2))` normalised to sum 1, separable, clamp-to-edge, all
//!   four channels. `sigma = 0` is the identity. Computed in 16-bit fixed point (CPU and
//!   CUDA alike, `blur::GaussianKernel`), within one level of the exact value.
//! - `bgblur`: "background blur": `out = m * in + (1 - m) * blur(in)` per channel, where
//!   `m` is a soft elliptical foreground mask standing in for a segmentation mask: the
//!   ellipse is centred at `(0.5 W, 0.45 H)` with semi-axes `(0.30 W, 0.42 H)`; for the
//!   pixel centre `(x + 0.5, y + 0.5)` let `d` be its normalised elliptical distance;
//!   `m = 1 - smoothstep(0.85, 1.15, d)` (1 inside the subject, 0 in the background).
//! - `translate`: shift by `(dx, dy)` pixels (default 12.5, -7.25, each in -1000..=1000):
//!   `out(x, y)` is the bilinear sample of `in` at `(x - dx, y - dy)`, where source pixels
//!   outside the frame are transparent black (0, 0, 0, 0).
//! - `color`: `v = M * [r, g, b, 255]` with the 3x4 matrix `M` (channel values 0..=255),
//!   clamped to 0..=255 and rounded to an index `i`, then `out_c = LUT_c[i]` with
//!   `LUT_c[i] = round(255 * (i / 255)^(1 / gamma_c))`; alpha unchanged.
pub(crate) mod bgblur;
mod blur;
#[cfg(target_arch = "x86_64")]
mod blur_x86;
mod color;
pub(crate) mod rows;
mod translate;

#[cfg(test)]
mod reference;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

pub use bgblur::foreground_mask;
pub use blur::{gaussian_weights, GaussianKernel};
pub use color::ColorGrade;

use crate::frame::Frame;

/// The effects the service knows, in the order `/` lists them.
pub const EFFECT_NAMES: [&str; 4] = ["blur", "bgblur", "translate", "color"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Blur,
    BgBlur,
    Translate,
    Color,
}

impl Effect {
    pub const ALL: [Effect; 4] = [Effect::Blur, Effect::BgBlur, Effect::Translate, Effect::Color];

    pub fn name(self) -> &'static str {
        match self {
            Effect::Blur => "blur",
            Effect::BgBlur => "bgblur",
            Effect::Translate => "translate",
            Effect::Color => "color",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Effect {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Effect::ALL.into_iter().find(|e| e.name() == s).ok_or(())
    }
}

/// Tunable parameters shared by the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectParams {
    pub sigma: f32,
    pub dx: f32,
    pub dy: f32,
    pub grade: ColorGrade,
}

pub const DEFAULT_SIGMA: f32 = 4.0;
pub const MAX_SIGMA: f32 = 20.0;
pub const DEFAULT_SHIFT: (f32, f32) = (12.5, -7.25);
pub const MAX_SHIFT: f32 = 1000.0;

impl Default for EffectParams {
    fn default() -> Self {
        EffectParams { sigma: DEFAULT_SIGMA, dx: DEFAULT_SHIFT.0, dy: DEFAULT_SHIFT.1, grade: ColorGrade::default() }
    }
}

/// An ordered effect chain with everything precomputed that does not depend on the frame.
#[derive(Debug, Clone)]
pub struct ChainPlan {
    pub effects: Vec<Effect>,
    pub params: EffectParams,
    /// The Gaussian of `params.sigma` in fixed point.
    pub blur: GaussianKernel,
    pub luts: [[u8; 256]; 3],
}

impl ChainPlan {
    pub fn new(effects: Vec<Effect>, params: EffectParams) -> Self {
        // Most requests use the default sigma and grade: their tables are computed once.
        static DEFAULTS: std::sync::OnceLock<(GaussianKernel, [[u8; 256]; 3])> = std::sync::OnceLock::new();
        let defaults = DEFAULTS.get_or_init(|| (GaussianKernel::new(DEFAULT_SIGMA), ColorGrade::default().luts()));
        let blur = if params.sigma == DEFAULT_SIGMA { defaults.0.clone() } else { GaussianKernel::new(params.sigma) };
        let luts = if params.grade == ColorGrade::default() { defaults.1 } else { params.grade.luts() };
        ChainPlan { effects, params, blur, luts }
    }
}

/// Reusable working memory for the CPU path: one per worker, kept between requests so
/// the hot path does not allocate frame-sized buffers.
#[derive(Debug, Default)]
pub struct CpuScratch {
    pub(crate) spare: Frame,
}

/// Compute time per effect, summed over the iterations of one request.
pub type EffectTimings = [Duration; 4];

/// Apply the chain `iters` times to `frame` in place on the CPU (using the current rayon
/// pool), returning the compute time spent in each effect.
pub fn apply_chain(frame: &mut Frame, plan: &ChainPlan, iters: u32, scratch: &mut CpuScratch) -> EffectTimings {
    let mut timings = EffectTimings::default();
    for _ in 0..iters {
        for &effect in &plan.effects {
            let t0 = Instant::now();
            apply_one(frame, effect, plan, scratch);
            timings[effect.index()] += t0.elapsed();
        }
    }
    timings
}

pub fn apply_one(frame: &mut Frame, effect: Effect, plan: &ChainPlan, scratch: &mut CpuScratch) {
    match effect {
        Effect::Blur => {
            blur::blur(frame, &mut scratch.spare, &plan.blur);
            std::mem::swap(frame, &mut scratch.spare);
        }
        Effect::BgBlur => bgblur::bgblur(frame, plan, scratch),
        Effect::Translate => {
            translate::translate(frame, &mut scratch.spare, plan.params.dx, plan.params.dy);
            std::mem::swap(frame, &mut scratch.spare);
        }
        Effect::Color => color::color(frame, &plan.params.grade.matrix, &plan.luts),
    }
}

#[inline]
pub(crate) fn round_u8(v: f32) -> u8 {
    (v + 0.5).clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests;
