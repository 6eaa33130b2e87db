//! `gpu-bench`: times every CUDA kernel with CUDA events at 720p, 1080p and 4K, printing
//! achieved GB/s beside the DRAM floor (least bytes the kernel must move / peak bandwidth),
//! then the in-process latency p50/p99 of the service's job for
//! `pixels=1920x1080&iters=5` (default effects), and of a raw 720p RGBA frame in and out
//! (`iters=1`) from ordinary memory (staged through pinned memory both ways, two CPU copies)
//! beside one in a page-locked frame the device lends (no staging). Run by
//! `scripts/gpu-bench.sh`.
//!
//! Flags: `--reps N` launches per kernel timing (default 50), `--requests N` jobs for the
//! latency figures (default 200). `RTC_BENCH_PEAK_GBPS` overrides the peak bandwidth
//! computed from the device's memory clock and bus width.
use std::process::ExitCode;
use std::time::Instant;

use rtc_service::device::cuda::CudaDevice;
use rtc_service::device::{Device, DeviceError, HostFrame, Job, JobInput, RawFormat};
use rtc_service::effects::{ChainPlan, EffectParams};
use rtc_service::params::DEFAULT_EFFECTS;

fn flag(args: &[String], name: &str, default: u32) -> Result<u32, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|&v: &u32| v > 0)
            .ok_or_else(|| format!("{name} needs a positive integer")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (reps, requests) = match (flag(&args, "--reps", 50), flag(&args, "--requests", 200)) {
        (Ok(r), Ok(n)) => (r, n),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("gpu-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let dev = match CudaDevice::open(1) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gpu-bench: {e}");
            return ExitCode::from(if e.is_no_gpu() { 3 } else { 1 });
        }
    };
    let d = &dev.details;
    println!(
        "device: {} (compute {}.{}), driver {}, NVRTC {}.{} ({}), kernels built as {:?} in {} ms",
        dev.info().name,
        d.compute_capability.0,
        d.compute_capability.1,
        d.driver_version,
        d.nvrtc_version.0,
        d.nvrtc_version.1,
        d.nvrtc,
        d.target,
        d.build_time.as_millis()
    );
    let peak = std::env::var("RTC_BENCH_PEAK_GBPS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map(|g| g * 1e9)
        .or_else(|| dev.peak_bandwidth());
    match peak {
        Some(p) => println!("memory bandwidth floor computed at {:.0} GB/s peak", p / 1e9),
        None => println!("peak memory bandwidth unknown (set RTC_BENCH_PEAK_GBPS): floors not shown"),
    }
    println!();
    println!(
        "{:<6} {:<22} {:>10} {:>9} {:>10} {:>10} {:>8}",
        "size", "kernel", "time_us", "MB", "GB/s", "floor_us", "x_floor"
    );
    let mut misses = Vec::new();
    for (label, w, h) in [("720p", 1280, 720), ("1080p", 1920, 1080), ("4K", 3840, 2160)] {
        let timings = match dev.bench_kernels(w, h, reps) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("gpu-bench: {label}: {e}");
                return ExitCode::FAILURE;
            }
        };
        for t in timings {
            let gbps = t.min_bytes as f64 / t.seconds / 1e9;
            let (floor, ratio) = match peak {
                Some(p) => {
                    let floor = t.min_bytes as f64 / p;
                    (format!("{:.1}", floor * 1e6), format!("{:.2}", t.seconds / floor))
                }
                None => ("-".into(), "-".into()),
            };
            if let Some(p) = peak {
                if label == "1080p" && t.seconds > 2.0 * t.min_bytes as f64 / p {
                    misses.push(format!("{} ({:.1}x)", t.kernel, t.seconds / (t.min_bytes as f64 / p)));
                }
            }
            println!(
                "{:<6} {:<22} {:>10.1} {:>9.2} {:>10.1} {:>10} {:>8}",
                label,
                t.kernel,
                t.seconds * 1e6,
                t.min_bytes as f64 / 1e6,
                gbps,
                floor,
                ratio
            );
        }
    }
    println!();
    if peak.is_some() {
        if misses.is_empty() {
            println!("goal met: every kernel within 2x of the memory-bandwidth floor at 1080p");
        } else {
            println!("goal missed at 1080p (more than 2x the floor): {}", misses.join(", "));
        }
    }

    // The service's job for pixels=1920x1080&iters=5 with the default effects, in process
    // (synthesis on the GPU, the chain, the checksum reduction and its download).
    let plan = ChainPlan::new(DEFAULT_EFFECTS.to_vec(), EffectParams::default());
    let mut lat = Vec::with_capacity(requests as usize);
    for i in 0..requests + WARM_UP {
        let job = Job { width: 1920, height: 1080, iters: 5, plan: &plan, input: JobInput::Synthetic { seed: i } };
        if let Err(e) = timed(&dev, job, i, &mut lat) {
            eprintln!("gpu-bench: job: {e}");
            return ExitCode::FAILURE;
        }
    }
    let (p50, p99) = percentiles(&mut lat);
    println!(
        "in-process job pixels=1920x1080&iters=5 effects={}: p50 {p50:.3} ms, p99 {p99:.3} ms ({} jobs)",
        DEFAULT_EFFECTS.iter().map(|e| e.name()).collect::<Vec<_>>().join(","),
        lat.len()
    );

    // A raw frame's copies: the same 720p RGBA job from ordinary memory and from a lent frame,
    // alternating so that clocks and caches treat both alike.
    let (w, h) = (1280, 720);
    let len = RawFormat::Rgba.frame_len(w, h);
    let mut staged = HostFrame::Pooled(vec![128; len]);
    let Some(mut lent) = dev.lend_frame(len) else {
        eprintln!("gpu-bench: the device lent no page-locked frame");
        return ExitCode::FAILURE;
    };
    lent.fill(128);
    let (mut staged_lat, mut lent_lat) = (Vec::new(), Vec::new());
    for i in 0..requests + WARM_UP {
        for (frame, lat) in [(&mut staged, &mut staged_lat), (&mut lent, &mut lent_lat)] {
            let input = JobInput::Raw { format: RawFormat::Rgba, frame };
            if let Err(e) = timed(&dev, Job { width: w, height: h, iters: 1, plan: &plan, input }, i, lat) {
                eprintln!("gpu-bench: raw job: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for (label, lat) in [("ordinary memory, staged", &mut staged_lat), ("lent page-locked frame", &mut lent_lat)] {
        let (p50, p99) = percentiles(lat);
        println!(
            "in-process raw 1280x720 RGBA iters=1, {label}: p50 {p50:.3} ms, p99 {p99:.3} ms ({} jobs)",
            lat.len()
        );
    }
    ExitCode::SUCCESS
}

/// Jobs before the timed ones (the first allocate and warm the caches).
const WARM_UP: u32 = 10;

/// Run job number `i`, and keep its latency (seconds) in `lat` once past the warm-up.
fn timed(dev: &CudaDevice, job: Job<'_>, i: u32, lat: &mut Vec<f64>) -> Result<(), DeviceError> {
    let t0 = Instant::now();
    dev.process(job)?;
    if i >= WARM_UP {
        lat.push(t0.elapsed().as_secs_f64());
    }
    Ok(())
}

/// (p50, p99) in milliseconds.
fn percentiles(lat: &mut [f64]) -> (f64, f64) {
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1] * 1e3;
    (pct(0.50), pct(0.99))
}
