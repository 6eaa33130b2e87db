//! The emulated device: models a GPU pod's own, fixed capacity without a GPU, so that a
//! rehearsal on one laptop behaves like a cluster where each added pod brings its own device.
//!
//! Each worker is one stream that takes one frame at a time (as a CUDA stream does). A frame
//! occupies its stream for the modelled service time, spent asleep: no CPU is burnt, so the
//! laptop's cores do not become the shared bottleneck that made every added CPU replica
//! slower. The HTTP path, the queue, admission and shedding, and the metrics are the real
//! ones; only the effects are replaced by the wait.
//!
//! Service time, unless `--emulated-frame-time` fixes it: the DRAM bytes the CUDA kernels
//! must move (the least-bytes figures `gpu-bench` reports: 4 B/px to synthesise the frame or
//! upload it, 8 B/px per effect per iteration, 4 B/px for the checksum or the download)
//! over `--emulated-bandwidth`, plus a launch overhead per kernel. At an H100's 3,350 GB/s
//! a 1280x720 frame through blur, translate and colour costs about 30 µs; rehearsals state a
//! much lower bandwidth so that a replica saturates at tens of requests per second.
//!
//! What it does not do: it does not compute pixels. A raw frame comes back unchanged and the
//! checksum is a hash of the request, prefixed `emulated-`; every figure it produces is
//! labelled `emulated`, never GPU performance.
use std::time::Duration;

use super::{Device, DeviceError, DeviceInfo, Job, JobInput, JobOutput, JobResult, RawFormat};
use crate::effects::EffectTimings;

/// Bytes per pixel the kernels move, as `gpu-bench` counts them (read once, write once).
const SYNTH_OR_UPLOAD_BYTES_PER_PX: f64 = 4.0;
const EFFECT_BYTES_PER_PX: f64 = 8.0;
const HASH_OR_DOWNLOAD_BYTES_PER_PX: f64 = 4.0;
/// A kernel launch on a stream that is already busy (typical of CUDA 12 on Hopper).
const LAUNCH_OVERHEAD: Duration = Duration::from_micros(5);

/// An H100 SXM's HBM3 peak, the default bandwidth of the model.
pub const DEFAULT_BANDWIDTH_GBPS: f64 = 3350.0;

/// How long a frame occupies its stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServiceTimeModel {
    /// Bytes moved over this bandwidth (bytes per second), plus launch overheads.
    Bandwidth { bytes_per_s: f64 },
    /// The same time for every request, whatever its size.
    Fixed(Duration),
}

impl Default for ServiceTimeModel {
    fn default() -> Self {
        ServiceTimeModel::Bandwidth { bytes_per_s: DEFAULT_BANDWIDTH_GBPS * 1e9 }
    }
}

impl ServiceTimeModel {
    /// `--emulated-bandwidth` in GB/s, overridden by `--emulated-frame-time` when given.
    pub fn from_flags(bandwidth_gbps: f64, frame_time: Option<Duration>) -> Self {
        match frame_time {
            Some(t) => ServiceTimeModel::Fixed(t),
            None => ServiceTimeModel::Bandwidth { bytes_per_s: bandwidth_gbps * 1e9 },
        }
    }

    /// Modelled time of each effect (summed over the iterations) for one job, in the order
    /// of `Effect::index`, and the whole job's time (effects plus input and output passes).
    pub fn service_time(&self, job: &Job<'_>) -> (EffectTimings, Duration) {
        let px = (job.width * job.height) as f64;
        let mut per_effect = EffectTimings::default();
        let launches = job.plan.effects.len() as u32 * job.iters;
        match *self {
            ServiceTimeModel::Fixed(total) => {
                if launches > 0 {
                    let share = total / launches;
                    for e in &job.plan.effects {
                        per_effect[e.index()] += share * job.iters;
                    }
                }
                (per_effect, total)
            }
            ServiceTimeModel::Bandwidth { bytes_per_s } => {
                let secs = |bytes_per_px: f64| Duration::from_secs_f64(bytes_per_px * px / bytes_per_s);
                for e in &job.plan.effects {
                    per_effect[e.index()] += (secs(EFFECT_BYTES_PER_PX) + LAUNCH_OVERHEAD) * job.iters;
                }
                let io = secs(SYNTH_OR_UPLOAD_BYTES_PER_PX + HASH_OR_DOWNLOAD_BYTES_PER_PX) + 2 * LAUNCH_OVERHEAD;
                let total = per_effect.iter().sum::<Duration>() + io;
                (per_effect, total)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            ServiceTimeModel::Bandwidth { bytes_per_s } => {
                format!("emulated GPU ({:.1} GB/s model, 1 frame per stream)", bytes_per_s / 1e9)
            }
            ServiceTimeModel::Fixed(t) => {
                format!("emulated GPU ({:.1} ms per frame, 1 frame per stream)", t.as_secs_f64() * 1e3)
            }
        }
    }
}

pub struct EmulatedDevice {
    info: DeviceInfo,
    model: ServiceTimeModel,
    streams: usize,
}

impl EmulatedDevice {
    /// `streams`: frames in service at once (`--workers`).
    pub fn new(model: ServiceTimeModel, streams: usize) -> Result<Self, DeviceError> {
        match model {
            ServiceTimeModel::Bandwidth { bytes_per_s } if !(bytes_per_s.is_finite() && bytes_per_s > 0.0) => {
                Err(DeviceError(format!(
                    "--emulated-bandwidth must be a positive number of GB/s, got {}",
                    bytes_per_s / 1e9
                )))
            }
            _ => Ok(EmulatedDevice {
                info: DeviceInfo { kind: "emulated", name: model.describe() },
                model,
                streams: streams.max(1),
            }),
        }
    }
}

impl Device for EmulatedDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn workers(&self) -> usize {
        self.streams
    }

    /// Nothing is computed: the input frame is the answer.
    fn working_bytes(&self, _width: usize, _height: usize, _format: Option<RawFormat>) -> usize {
        0
    }

    fn process(&self, job: Job<'_>) -> Result<JobResult, DeviceError> {
        let (timings, total) = self.model.service_time(&job);
        // The stream is busy; the thread waits without using a core.
        std::thread::sleep(total);
        let output = match job.input {
            JobInput::Synthetic { seed } => JobOutput::Checksum(format!(
                "emulated-{:016x}",
                fnv1a(&[job.width as u64, job.height as u64, job.iters as u64, seed as u64])
            )),
            JobInput::Raw { .. } => JobOutput::FrameInPlace,
        };
        Ok(JobResult { output, timings })
    }
}

fn fnv1a(words: &[u64]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for w in words {
        for b in w.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::{ChainPlan, Effect, EffectParams};

    fn job(plan: &ChainPlan, w: usize, h: usize, iters: u32) -> Job<'_> {
        Job { width: w, height: h, iters, plan, input: JobInput::Synthetic { seed: 1 } }
    }

    #[test]
    fn service_time_follows_pixels_iterations_and_effects() {
        let model = ServiceTimeModel::Bandwidth { bytes_per_s: 1e9 };
        let chain = ChainPlan::new(vec![Effect::Blur, Effect::Translate, Effect::Color], EffectParams::default());
        let (per_effect, t) = model.service_time(&job(&chain, 1280, 720, 1));
        // (4 + 3*8 + 4) B/px * 921,600 px at 1 GB/s = 29.49 ms, plus 5 launches of 5 µs.
        assert!((t.as_secs_f64() - 0.029_491_2 - 25e-6).abs() < 1e-6, "{t:?}");
        assert_eq!(per_effect[Effect::Blur.index()], per_effect[Effect::Color.index()]);
        assert_eq!(per_effect[Effect::BgBlur.index()], Duration::ZERO);
        let (_, t5) = model.service_time(&job(&chain, 1280, 720, 5));
        assert!(t5 > t * 3 && t5 < t * 5, "the input and checksum passes are paid once: {t5:?} vs {t:?}");
        let (_, t_big) = model.service_time(&job(&chain, 2560, 1440, 1));
        assert!(t_big > t * 3, "four times the pixels: {t_big:?} vs {t:?}");
        let blur = ChainPlan::new(vec![Effect::Blur], EffectParams::default());
        assert!(model.service_time(&job(&blur, 1280, 720, 1)).1 < t);
    }

    #[test]
    fn a_fixed_frame_time_is_split_over_the_effects() {
        let model = ServiceTimeModel::from_flags(DEFAULT_BANDWIDTH_GBPS, Some(Duration::from_millis(30)));
        let chain = ChainPlan::new(vec![Effect::Blur, Effect::Color], EffectParams::default());
        let (per_effect, t) = model.service_time(&job(&chain, 64, 64, 3));
        assert_eq!(t, Duration::from_millis(30));
        assert_eq!(per_effect.iter().sum::<Duration>(), Duration::from_millis(30));
    }

    #[test]
    fn processing_waits_the_modelled_time_and_labels_its_output() {
        let dev = EmulatedDevice::new(ServiceTimeModel::Fixed(Duration::from_millis(20)), 1).unwrap();
        assert_eq!(dev.info().kind, "emulated");
        assert!(dev.info().name.contains("emulated GPU"), "{}", dev.info().name);
        let chain = ChainPlan::new(vec![Effect::Blur], EffectParams::default());
        let t0 = std::time::Instant::now();
        let r = dev.process(job(&chain, 64, 64, 1)).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(20));
        match r.output {
            JobOutput::Checksum(c) => assert!(c.starts_with("emulated-"), "{c}"),
            other => panic!("{other:?}"),
        }
        assert!(EmulatedDevice::new(ServiceTimeModel::Bandwidth { bytes_per_s: 0.0 }, 1).is_err());
    }
}
