//! The CPU back end: the effects of `crate::effects` on a dedicated rayon pool, with
//! frame-sized buffers from the service's [`BufferPool`].
use std::sync::Arc;

use super::{Device, DeviceError, DeviceInfo, Job, JobInput, JobOutput, JobResult, RawFormat};
use crate::effects::rows::PARALLEL_MIN_PIXELS;
use crate::effects::{apply_chain, CpuScratch};
use crate::frame::{checksum, synthesize, Frame};
use crate::i420::{i420_to_rgba, rgba_to_i420};
use crate::memory::BufferPool;

pub struct CpuDevice {
    info: DeviceInfo,
    pool: rayon::ThreadPool,
    buffers: Arc<BufferPool>,
}

impl CpuDevice {
    /// `threads` = 0 means one per available core.
    pub fn new(threads: usize, buffers: Arc<BufferPool>) -> anyhow::Result<Self> {
        let pool =
            rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("effects-{i}")).build()?;
        let n = pool.current_num_threads();
        Ok(CpuDevice { info: DeviceInfo { kind: "cpu", name: format!("cpu ({n} threads)") }, pool, buffers })
    }
}

impl CpuDevice {
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

impl Device for CpuDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn working_bytes(&self, width: usize, height: usize, format: Option<RawFormat>) -> usize {
        Self::working_bytes_for(width, height, format)
    }

    fn process(&self, job: Job<'_>) -> Result<JobResult, DeviceError> {
        let Job { width, height, iters, plan, input } = job;
        let len = width * height * 4;
        if let JobInput::Raw { format, frame } = &input {
            let want = format.frame_len(width, height);
            if frame.len() != want {
                return Err(DeviceError(format!("body is {} bytes, a {width}x{height} frame is {want}", frame.len())));
            }
        }
        let buffers = &self.buffers;
        let work = move || {
            let mut scratch = CpuScratch { spare: Frame { width, height, data: buffers.take(len) } };
            let mut frame = Frame { width, height, data: Vec::new() };
            match &input {
                JobInput::Synthetic { seed } => {
                    frame.data = buffers.take(len);
                    synthesize(&mut frame, *seed);
                }
                JobInput::Raw { format: RawFormat::Rgba, .. } => {}
                JobInput::Raw { format: RawFormat::I420, frame: bytes } => {
                    frame.data = buffers.take(len);
                    i420_to_rgba(bytes, width, height, &mut frame);
                }
            }
            let output = match input {
                JobInput::Synthetic { .. } => {
                    let timings = apply_chain(&mut frame, plan, iters, &mut scratch);
                    let sum = checksum(&frame.data, width * 4);
                    buffers.give(frame.data);
                    JobResult { output: JobOutput::Checksum(sum), timings }
                }
                JobInput::Raw { format: RawFormat::Rgba, frame: body } => {
                    // The body is the working frame; whichever buffer holds the result at the
                    // end becomes the body, the other goes back to the pool.
                    frame.data = std::mem::take(body);
                    let timings = apply_chain(&mut frame, plan, iters, &mut scratch);
                    *body = frame.data;
                    JobResult { output: JobOutput::FrameInPlace, timings }
                }
                JobInput::Raw { format: RawFormat::I420, frame: body } => {
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
        Ok(if width * height < PARALLEL_MIN_PIXELS { work() } else { self.pool.install(work) })
    }
}
