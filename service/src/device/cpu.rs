//! The CPU back end: the effects of `crate::effects` on a dedicated rayon pool.
use std::sync::Mutex;

use super::{Device, DeviceError, DeviceInfo, Job, JobInput, JobOutput, JobResult, RawFormat};
use crate::effects::rows::PARALLEL_MIN_PIXELS;
use crate::effects::{apply_chain, CpuScratch};
use crate::frame::{checksum, synthesize, Frame};
use crate::i420::{i420_to_rgba, rgba_to_i420};

/// Buffers larger than this are not kept between requests: one 8K request should not pin
/// half a gigabyte for the life of the pod.
const KEEP_SCRATCH_BYTES: usize = 256 << 20;

#[derive(Default)]
struct Workspace {
    frame: Frame,
    scratch: CpuScratch,
}

impl Workspace {
    fn bytes(&self) -> usize {
        self.frame.data.capacity() + self.scratch.spare.data.capacity()
    }
}

pub struct CpuDevice {
    info: DeviceInfo,
    pool: rayon::ThreadPool,
    workspaces: Mutex<Vec<Workspace>>,
}

impl CpuDevice {
    /// `threads` = 0 means one per available core.
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let pool =
            rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("effects-{i}")).build()?;
        let n = pool.current_num_threads();
        Ok(CpuDevice {
            info: DeviceInfo { kind: "cpu", name: format!("cpu ({n} threads)") },
            pool,
            workspaces: Mutex::new(Vec::new()),
        })
    }
}

impl Device for CpuDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn process(&self, job: &Job<'_>) -> Result<JobResult, DeviceError> {
        let mut ws = self.workspaces.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
        let mut work = || {
            let frame = &mut ws.frame;
            match job.input {
                JobInput::Synthetic { seed } => {
                    frame.reshape(job.width, job.height);
                    synthesize(frame, seed);
                }
                JobInput::Raw { format: RawFormat::Rgba, bytes } => {
                    frame.reshape(job.width, job.height);
                    frame.data.copy_from_slice(bytes);
                }
                JobInput::Raw { format: RawFormat::I420, bytes } => i420_to_rgba(bytes, job.width, job.height, frame),
            }
            let timings = apply_chain(frame, job.plan, job.iters, &mut ws.scratch);
            let output = match job.input {
                JobInput::Synthetic { .. } => JobOutput::Checksum(checksum(&frame.data, frame.width * 4)),
                JobInput::Raw { format: RawFormat::Rgba, .. } => JobOutput::Frame(frame.data.clone()),
                JobInput::Raw { format: RawFormat::I420, .. } => {
                    let mut out = Vec::new();
                    rgba_to_i420(frame, &mut out);
                    JobOutput::Frame(out)
                }
            };
            JobResult { output, timings }
        };
        // Small frames run on the calling thread: handing them to the pool costs more than
        // the work (the effects take their sequential path for them anyway).
        let result = if job.width * job.height < PARALLEL_MIN_PIXELS { work() } else { self.pool.install(work) };
        if ws.bytes() <= KEEP_SCRATCH_BYTES {
            self.workspaces.lock().unwrap_or_else(|p| p.into_inner()).push(ws);
        }
        Ok(result)
    }
}
