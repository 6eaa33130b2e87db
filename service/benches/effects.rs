//! Times each CPU effect and the whole chain on the synthetic frame.
//!
//! `cargo bench -p rtc-service --bench effects -- [--threads 1,2] [--sizes 1280x720,1920x1080] [--frames N] [--only blur,chain]`
//! prints one line per case: `effect WxH threads ms_per_frame`. `scripts/bench-effects.sh`
//! runs it beside OpenCV and prints the comparison.
use std::time::Instant;

use rtc_service::effects::{apply_chain, ChainPlan, CpuScratch, Effect, EffectParams};
use rtc_service::frame::{synthesize, Frame};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: Vec<usize> =
        arg(&args, "--threads", "1,2").split(',').map(|t| t.parse().expect("--threads")).collect();
    let sizes: Vec<(usize, usize)> = arg(&args, "--sizes", "1280x720,1920x1080")
        .split(',')
        .map(|s| {
            let (w, h) = s.split_once('x').expect("--sizes WxH,...");
            (w.parse().unwrap(), h.parse().unwrap())
        })
        .collect();
    let frames: u32 = arg(&args, "--frames", "30").parse().expect("--frames");
    let only = arg(&args, "--only", "");
    let cases: Vec<(&str, Vec<Effect>)> = Effect::ALL
        .iter()
        .map(|&e| (e.name(), vec![e]))
        .chain([("chain", vec![Effect::Blur, Effect::Translate, Effect::Color])])
        .filter(|(name, _)| only.is_empty() || only.split(',').any(|o| o == *name))
        .collect();
    for &n in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        for &(w, h) in &sizes {
            for (name, effects) in &cases {
                let plan = ChainPlan::new(effects.clone(), EffectParams::default());
                let mut source = Frame::new(w, h);
                synthesize(&mut source, 1);
                let mut frame = source.clone();
                let mut scratch = CpuScratch::default();
                let ms = pool.install(|| {
                    apply_chain(&mut frame, &plan, 3, &mut scratch); // warm-up: buffers, caches
                    let mut best = f64::MAX;
                    // Best of five runs of `frames` frames each: the least disturbed by the rest of the machine.
                    for _ in 0..5 {
                        frame.data.copy_from_slice(&source.data);
                        let t0 = Instant::now();
                        apply_chain(&mut frame, &plan, frames, &mut scratch);
                        best = best.min(t0.elapsed().as_secs_f64() * 1e3 / frames as f64);
                    }
                    best
                });
                println!("{name} {w}x{h} {n} {ms:.3}");
            }
        }
    }
}
