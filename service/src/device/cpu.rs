//! The CPU back end: the effects of `crate::effects`, one job per worker, each worker on its
//! own rayon pool, with frame-sized buffers from the service's [`BufferPool`].
//!
//! Workers × threads never exceeds the cores: two requests never share cores, so each one
//! finishes before the next takes them, and the queue is served in arrival order (the
//! HTTP layer's worker semaphore is FIFO). Interleaving two requests on the same cores gives
//! the same throughput and doubles the time each one takes.
use std::sync::Arc;

use super::{Device, DeviceError, DeviceInfo, HostFrame, Job, JobInput, JobOutput, JobResult, RawFormat, Slots};
use crate::effects::rows::PARALLEL_MIN_PIXELS;
use crate::effects::{apply_chain, CpuScratch};
use crate::frame::{checksum, synthesize, Frame};
use crate::i420::{i420_to_rgba, rgba_to_i420};
use crate::memory::BufferPool;

/// How the CPU back end uses the cores: `workers` jobs at once, `threads` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuShape {
    pub workers: usize,
    pub threads: usize,
    pub cores: usize,
}

impl CpuShape {
    /// From `--workers` (`None`: one job at a time, on every core) and `--threads` (0: the
    /// cores shared out among the workers). A request for more threads than `cores` gets
    /// fewer, and the note says so.
    pub fn resolve(workers: Option<usize>, threads: usize, cores: usize) -> (CpuShape, Option<String>) {
        let cores = cores.max(1);
        let asked = workers.unwrap_or(1).max(1);
        let w = asked.min(cores);
        let t = if threads == 0 { cores / w } else { threads.min(cores / w) }.max(1);
        let shape = CpuShape { workers: w, threads: t, cores };
        let asked_threads = if threads == 0 { "auto".to_string() } else { threads.to_string() };
        let note = (w != asked || (threads != 0 && t != threads)).then(|| {
            format!(
                "--workers {asked} x --threads {asked_threads} asks for more threads than the {cores} cores; using {w} x {t}"
            )
        });
        (shape, note)
    }

    /// The cores this process may use (its CPU affinity and cgroup quota included).
    pub fn available_cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

pub struct CpuDevice {
    info: DeviceInfo,
    shape: CpuShape,
    pools: Vec<rayon::ThreadPool>,
    /// Indices of the pools no job is using.
    idle: Slots<usize>,
    buffers: Arc<BufferPool>,
}

impl CpuDevice {
    pub fn new(shape: CpuShape, buffers: Arc<BufferPool>) -> anyhow::Result<Self> {
        let pools = (0..shape.workers)
            .map(|w| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(shape.threads)
                    .thread_name(move |i| format!("effects-{w}-{i}"))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name = format!("cpu ({} x {} threads)", shape.workers, shape.threads);
        Ok(CpuDevice {
            info: DeviceInfo { kind: "cpu", name },
            shape,
            pools,
            idle: Slots::new((0..shape.workers).rev().collect()),
            buffers,
        })
    }

    /// The RGBA working frame and the scratch frame the effects swap with; an RGBA request's
    /// body is its working frame.
    pub fn working_bytes_for(width: usize, height: usize, format: Option<RawFormat>) -> usize {
        let frame = width * height * 4;
        match format {
            Some(RawFormat::Rgba) => frame,
            Some(RawFormat::I420) | None => 2 * frame,
        }
    }
}

/// A job's input as the CPU takes it: a raw frame is always in ordinary memory.
enum CpuInput<'a> {
    Synthetic(u32),
    Raw(RawFormat, &'a mut Vec<u8>),
}

impl Device for CpuDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn workers(&self) -> usize {
        self.shape.workers
    }

    fn cpu_shape(&self) -> Option<CpuShape> {
        Some(self.shape)
    }

    fn working_bytes(&self, width: usize, height: usize, format: Option<RawFormat>) -> usize {
        Self::working_bytes_for(width, height, format)
    }

    fn process(&self, job: Job<'_>) -> Result<JobResult, DeviceError> {
        job.check_raw_len()?;
        let Job { width, height, iters, plan, input } = job;
        let input = match input {
            JobInput::Synthetic { seed } => CpuInput::Synthetic(seed),
            JobInput::Raw { format, frame: HostFrame::Pooled(body) } => CpuInput::Raw(format, body),
            JobInput::Raw { frame: HostFrame::Pinned(_), .. } => {
                return Err(DeviceError("a page-locked frame belongs to the CUDA device that lent it".into()))
            }
        };
        let len = width * height * 4;
        let buffers = &self.buffers;
        let work = move || {
            let mut scratch = CpuScratch { spare: Frame { width, height, data: buffers.take(len) } };
            let mut frame = Frame { width, height, data: Vec::new() };
            let output = match input {
                CpuInput::Synthetic(seed) => {
                    frame.data = buffers.take(len);
                    synthesize(&mut frame, seed);
                    let timings = apply_chain(&mut frame, plan, iters, &mut scratch);
                    let sum = checksum(&frame.data, width * 4);
                    buffers.give(frame.data);
                    JobResult { output: JobOutput::Checksum(sum), timings }
                }
                CpuInput::Raw(RawFormat::Rgba, body) => {
                    // The body is the working frame; whichever buffer holds the result at the
                    // end becomes the body, the other goes back to the pool.
                    frame.data = std::mem::take(body);
                    let timings = apply_chain(&mut frame, plan, iters, &mut scratch);
                    *body = frame.data;
                    JobResult { output: JobOutput::FrameInPlace, timings }
                }
                CpuInput::Raw(RawFormat::I420, body) => {
                    frame.data = buffers.take(len);
                    i420_to_rgba(body, width, height, &mut frame);
                    let timings = apply_chain(&mut frame, plan, iters, &mut scratch);
                    rgba_to_i420(&frame, body);
                    buffers.give(frame.data);
                    JobResult { output: JobOutput::FrameInPlace, timings }
                }
            };
            buffers.give(scratch.spare.data);
            output
        };
        // Small frames run on the calling thread: handing them to the pool costs more than
        // the work (the effects take their sequential path for them anyway).
        let pool = self.idle.take();
        let result = if width * height < PARALLEL_MIN_PIXELS { work() } else { self.pools[pool].install(work) };
        self.idle.give(pool);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_times_threads_never_exceeds_the_cores() {
        assert_eq!(CpuShape::resolve(None, 0, 2), (CpuShape { workers: 1, threads: 2, cores: 2 }, None));
        assert_eq!(CpuShape::resolve(Some(2), 0, 8).0, CpuShape { workers: 2, threads: 4, cores: 8 });
        assert_eq!(CpuShape::resolve(Some(3), 0, 8).0, CpuShape { workers: 3, threads: 2, cores: 8 });
        assert_eq!(CpuShape::resolve(Some(2), 1, 8), (CpuShape { workers: 2, threads: 1, cores: 8 }, None));
        let (shape, note) = CpuShape::resolve(Some(4), 4, 2);
        assert_eq!(shape, CpuShape { workers: 2, threads: 1, cores: 2 });
        let note = note.expect("said why");
        assert!(note.contains("--workers 4 x --threads 4") && note.contains("using 2 x 1"), "{note}");
        for cores in 1..=16 {
            for workers in 1..=20 {
                for threads in 0..=20 {
                    let (s, _) = CpuShape::resolve(Some(workers), threads, cores);
                    assert!(s.workers * s.threads <= cores && s.workers >= 1 && s.threads >= 1, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn each_worker_has_a_pool_of_its_own() {
        let shape = CpuShape { workers: 2, threads: 1, cores: 2 };
        let dev = CpuDevice::new(shape, Arc::new(BufferPool::new(1 << 20))).unwrap();
        assert_eq!((dev.workers(), dev.pools.len()), (2, 2));
        assert!(dev.pools.iter().all(|p| p.current_num_threads() == 1));
        let (a, b) = (dev.idle.take(), dev.idle.take());
        assert_ne!(a, b);
        dev.idle.give(a);
        assert_eq!(dev.idle.take(), a);
    }

    #[test]
    fn a_raw_frame_of_the_wrong_size_is_an_error() {
        let dev = CpuDevice::new(CpuShape { workers: 1, threads: 1, cores: 1 }, Arc::new(BufferPool::new(0))).unwrap();
        let plan = crate::effects::ChainPlan::new(vec![crate::effects::Effect::Blur], Default::default());
        let mut short = HostFrame::Pooled(vec![0u8; 100]);
        let input = JobInput::Raw { format: RawFormat::Rgba, frame: &mut short };
        let e = dev.process(Job { width: 64, height: 64, iters: 1, plan: &plan, input }).unwrap_err();
        assert!(e.0.contains("body is 100 bytes, a 64x64 Rgba frame is 16384"), "{e}");
    }
}
