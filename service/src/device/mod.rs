//! Where the effects run. The HTTP layer talks to `dyn Device` only, so the CPU and CUDA
//! back ends plug in without touching it.
mod cpu;
pub mod cuda;
pub mod emulated;

use std::sync::Arc;

pub use cpu::CpuDevice;
pub use emulated::{EmulatedDevice, ServiceTimeModel};

use crate::effects::{ChainPlan, EffectTimings};
use crate::memory::BufferPool;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when a driver and a GPU are found, else the CPU (the log says why).
    Auto,
    /// CUDA or nothing: exits non-zero with the reason when no GPU can be used.
    Cuda,
    /// Multi-threaded CPU implementation.
    Cpu,
    /// No compute: each worker is a stream that holds a frame for a modelled service time
    /// (see --emulated-bandwidth), so each replica has its own fixed capacity as a GPU pod
    /// does. For rehearsals on one machine; its figures are labelled emulated.
    Emulated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cpu`, `cuda` or `emulated`: the `device` label in metrics and JSON.
    pub kind: &'static str,
    /// Human name: the GPU model, or the CPU's thread count.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    Rgba,
    I420,
}

impl RawFormat {
    pub fn frame_len(self, width: usize, height: usize) -> usize {
        match self {
            RawFormat::Rgba => width * height * 4,
            RawFormat::I420 => crate::i420::i420_len(width, height),
        }
    }
}

#[derive(Debug)]
pub enum JobInput<'a> {
    /// Generate the deterministic test frame on the device (no upload).
    Synthetic { seed: u32 },
    /// Process this frame; the device writes the result over it, in the same format and size,
    /// so the request body is the frame and the answer is sent from it without a copy.
    Raw { format: RawFormat, frame: &'a mut Vec<u8> },
}

impl JobInput<'_> {
    pub fn format(&self) -> Option<RawFormat> {
        match self {
            JobInput::Synthetic { .. } => None,
            JobInput::Raw { format, .. } => Some(*format),
        }
    }
}

#[derive(Debug)]
pub struct Job<'a> {
    pub width: usize,
    pub height: usize,
    pub iters: u32,
    pub plan: &'a ChainPlan,
    pub input: JobInput<'a>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum JobOutput {
    /// Checksum of the output frame (synthetic input).
    Checksum(String),
    /// The processed frame is in the input's buffer (raw input).
    FrameInPlace,
}

#[derive(Debug)]
pub struct JobResult {
    pub output: JobOutput,
    pub timings: EffectTimings,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeviceError(pub String);

/// A compute back end. `process` blocks; the HTTP layer calls it from a blocking thread
/// and never runs more than `--workers` jobs at once.
pub trait Device: Send + Sync + 'static {
    fn info(&self) -> &DeviceInfo;
    /// False until the device can take work (kernels built, buffers allocated).
    fn ready(&self) -> bool {
        true
    }
    fn process(&self, job: Job<'_>) -> Result<JobResult, DeviceError>;
    /// Host memory a job of this shape needs besides its input frame (working frames,
    /// staging buffers), for the service's memory budget. `format` is `None` for a
    /// synthetic frame.
    fn working_bytes(&self, width: usize, height: usize, format: Option<RawFormat>) -> usize;
    /// Device memory (used, total) in bytes, where the device has its own.
    fn memory(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Open the device the flags ask for. `auto` falls back to the CPU and logs why.
pub fn open(
    choice: DeviceChoice,
    workers: usize,
    threads: usize,
    emulated: ServiceTimeModel,
    buffers: Arc<BufferPool>,
) -> anyhow::Result<Arc<dyn Device>> {
    match choice {
        DeviceChoice::Cpu => Ok(Arc::new(CpuDevice::new(threads, buffers)?)),
        DeviceChoice::Emulated => Ok(Arc::new(EmulatedDevice::new(emulated)?)),
        DeviceChoice::Cuda => {
            let dev = cuda::CudaDevice::open(workers).map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?;
            Ok(Arc::new(dev))
        }
        DeviceChoice::Auto => match cuda::CudaDevice::open(workers) {
            Ok(dev) => Ok(Arc::new(dev)),
            Err(why) => {
                tracing::info!(reason = %why, "device auto: using the CPU");
                Ok(Arc::new(CpuDevice::new(threads, buffers)?))
            }
        },
    }
}
