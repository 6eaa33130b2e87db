//! Each effect against the f64 reference on random frames of odd sizes, plus identities.
use super::*;
use crate::frame::{hash32, synthesize};

fn random_frame(w: usize, h: usize, seed: u32) -> Frame {
    let mut f = Frame::new(w, h);
    for (i, b) in f.data.iter_mut().enumerate() {
        *b = hash32(i as u32 ^ seed.wrapping_mul(0x9e37_79b9)) as u8;
    }
    f
}

/// Largest per-channel difference, with where it happened, for a readable failure.
fn max_diff(a: &Frame, b: &Frame) -> (u8, usize) {
    assert_eq!((a.width, a.height), (b.width, b.height));
    a.data.iter().zip(&b.data).enumerate().map(|(i, (x, y))| (x.abs_diff(*y), i)).max().unwrap()
}

const SIZES: [(usize, usize); 5] = [(37, 23), (101, 7), (16, 16), (3, 45), (257, 129)];

fn run(effect: Effect, params: EffectParams, frame: &Frame) -> Frame {
    let plan = ChainPlan::new(vec![effect], params);
    let mut out = frame.clone();
    apply_chain(&mut out, &plan, 1, &mut CpuScratch::default());
    out
}

fn check_against_reference(effect: Effect, params: EffectParams, reference: impl Fn(&Frame) -> Frame) {
    for (i, &(w, h)) in SIZES.iter().enumerate() {
        let input = random_frame(w, h, i as u32 + 1);
        let (diff, at) = max_diff(&run(effect, params.clone(), &input), &reference(&input));
        assert!(diff <= 1, "{effect} at {w}x{h}: off by {diff} levels at byte {at}");
    }
}

#[test]
fn blur_matches_reference() {
    // Up to the largest sigma the service accepts (radius 60 on every side).
    for sigma in [0.5f32, 1.3, 4.0, 9.0, 20.0] {
        let params = EffectParams { sigma, ..Default::default() };
        check_against_reference(Effect::Blur, params, |f| reference::blur(f, sigma as f64));
    }
}

#[test]
fn bgblur_matches_reference() {
    check_against_reference(Effect::BgBlur, EffectParams::default(), |f| reference::bgblur(f, 4.0));
}

#[test]
fn translate_matches_reference() {
    for (dx, dy) in [(12.5f32, -7.25f32), (-3.75, 0.5), (0.0, 2.0), (40.0, 40.0)] {
        let params = EffectParams { dx, dy, ..Default::default() };
        check_against_reference(Effect::Translate, params, |f| reference::translate(f, dx as f64, dy as f64));
    }
}

#[test]
fn color_matches_reference() {
    let grade = ColorGrade::default();
    let params = EffectParams { grade: grade.clone(), ..Default::default() };
    check_against_reference(Effect::Color, params, |f| reference::color(f, &grade.matrix, &grade.gamma));
}

#[test]
fn the_whole_chain_is_deterministic_on_big_frames() {
    // Big enough for the parallel path: it must agree with the sequential one bit for bit.
    let mut big = Frame::new(640, 360);
    synthesize(&mut big, 3);
    let plan = ChainPlan::new(Effect::ALL.to_vec(), EffectParams::default());
    let mut a = big.clone();
    apply_chain(&mut a, &plan, 2, &mut CpuScratch::default());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut b = big.clone();
    pool.install(|| apply_chain(&mut b, &plan, 2, &mut CpuScratch::default()));
    assert_eq!(a, b);
    assert_ne!(a, big);
}

#[test]
fn identities_leave_the_frame_untouched() {
    let input = random_frame(45, 31, 9);
    let cases = [
        (Effect::Blur, EffectParams { sigma: 0.0, ..Default::default() }),
        (Effect::Blur, EffectParams { sigma: 0.01, ..Default::default() }),
        (Effect::Translate, EffectParams { dx: 0.0, dy: 0.0, ..Default::default() }),
        (Effect::Color, EffectParams { grade: ColorGrade::identity(), ..Default::default() }),
    ];
    for (effect, params) in cases {
        assert_eq!(run(effect, params.clone(), &input), input, "{effect} with {params:?}");
    }
}

#[test]
fn translate_by_whole_pixels_moves_content_and_fills_transparent_black() {
    let input = random_frame(20, 10, 4);
    let out = run(Effect::Translate, EffectParams { dx: 3.0, dy: -2.0, ..Default::default() }, &input);
    let at = |f: &Frame, x: usize, y: usize| f.data[(y * f.width + x) * 4..(y * f.width + x) * 4 + 4].to_vec();
    assert_eq!(at(&out, 5, 2), at(&input, 2, 4));
    assert_eq!(at(&out, 0, 0), vec![0, 0, 0, 0]);
    assert_eq!(at(&out, 10, 9), vec![0, 0, 0, 0]);
}

#[test]
fn color_leaves_alpha_alone() {
    let input = random_frame(17, 9, 5);
    let out = run(Effect::Color, EffectParams::default(), &input);
    assert!(out.data.chunks(4).zip(input.data.chunks(4)).all(|(a, b)| a[3] == b[3]));
}

#[test]
fn gaussian_weights_follow_the_definition() {
    let w = gaussian_weights(4.0);
    assert_eq!(w.len(), 13, "radius ceil(3 * 4) = 12");
    let total: f64 = w[0] + 2.0 * w[1..].iter().sum::<f64>();
    assert!((total - 1.0).abs() < 1e-12);
    assert!(w.windows(2).all(|p| p[0] > p[1]));
}

#[test]
fn the_fixed_point_kernel_sums_to_one_and_drops_only_zero_weights() {
    for sigma in [0.3f32, 0.5, 1.3, 4.0, 9.0, 20.0] {
        let kernel = GaussianKernel::new(sigma);
        let w = kernel.weights();
        assert_eq!(w[0] + 2 * w[1..].iter().sum::<u32>(), 65536, "sigma {sigma}");
        assert!(w[1..].iter().all(|&x| x > 0 && x < 65536), "sigma {sigma}: {w:?}");
        let exact = gaussian_weights(sigma);
        for (k, (&q, &e)) in w.iter().zip(&exact).enumerate().skip(1) {
            assert_eq!(q, (e * 65536.0).round() as u32, "sigma {sigma} offset {k}");
        }
        assert!(exact[kernel.radius() + 1..].iter().all(|&e| (e * 65536.0).round() == 0.0));
        assert_eq!(kernel.round(), 64 + kernel.radius() as u32 + 1);
        let lanes: Vec<u32> = kernel.lanes().iter().map(|&x| x as u32).collect();
        assert_eq!(lanes, w, "sigma {sigma}: the CPU's 16-bit weights are the same weights");
    }
    assert_eq!(GaussianKernel::new(MAX_SIGMA).radius(), 60, "no weight of the widest blur rounds to 0");
    // So narrow that no offset reaches half a unit: the identity.
    assert_eq!(GaussianKernel::new(0.01).weights(), &[65536]);
    assert_eq!(GaussianKernel::new(0.0).weights(), &[65536]);
    assert!(GaussianKernel::new(0.0).lanes().is_empty(), "the identity has no 16-bit taps");
}

#[test]
fn mask_is_one_on_the_subject_and_zero_in_the_corners() {
    assert_eq!(foreground_mask(50, 45, 100, 100), 1.0);
    assert_eq!(foreground_mask(0, 0, 100, 100), 0.0);
    let edge = foreground_mask(50 + 30, 45, 100, 100);
    assert!(edge > 0.0 && edge < 1.0, "soft at d = 1: {edge}");
}

#[test]
fn bgblur_spans_agree_with_the_mask_formula_everywhere() {
    // The fast path skips the formula outside the ring and inside the subject: check
    // that the formula gives exactly 0 and 1 there, on odd and extreme aspect ratios.
    for (w, h) in [(1280, 720), (37, 23), (16, 7680), (7680, 16), (101, 103)] {
        let input = random_frame(w, h, 11);
        let plan = ChainPlan::new(vec![Effect::BgBlur], EffectParams { sigma: 0.0, ..Default::default() });
        let mut blurred_is_input = input.clone();
        apply_chain(&mut blurred_is_input, &plan, 1, &mut CpuScratch::default());
        // With sigma 0 the blur is the identity, so any mask gives the input back.
        assert_eq!(blurred_is_input, input, "{w}x{h}");
    }
    for (w, h) in [(1280, 720), (37, 23), (16, 7680), (7680, 16), (101, 103)] {
        for y in 0..h {
            let (ring, subject) = super::bgblur::mask_spans(y, w, h);
            for x in 0..w {
                let m = foreground_mask(x, y, w, h);
                if x < ring.0 || x >= ring.1 {
                    assert_eq!(m, 0.0, "{w}x{h} ({x},{y}) outside the ring");
                } else if x >= subject.0 && x < subject.1 {
                    assert_eq!(m, 1.0, "{w}x{h} ({x},{y}) inside the subject");
                }
            }
        }
    }
}
