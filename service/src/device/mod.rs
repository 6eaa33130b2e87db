//! Where the effects run. The HTTP layer talks to `dyn Device` only, so the CPU and CUDA
//! back ends plug in without touching it.
mod cpu;
pub mod cuda;
pub mod emulated;

use std::sync::{Arc, Condvar, Mutex};

pub use cpu::{CpuDevice, CpuShape};
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

/// A raw frame's bytes on the host: the request body is read into it, the device works on
/// it in place, and the answer is sent from it.
pub enum HostFrame {
    /// Ordinary memory (the service's buffer pool, a WebRTC picture): the CPU and emulated
    /// devices work on it directly; CUDA copies it through its pinned staging.
    Pooled(Vec<u8>),
    /// Page-locked memory lent by the CUDA device ([`Device::lend_frame`]): the upload and
    /// the download DMA use it directly, so the body is copied once, from hyper's buffer.
    Pinned(cuda::PinnedFrame),
}

impl HostFrame {
    /// Hand a frame back when done with it: a pooled one to `pool`, a pinned one to the
    /// device that lent it (which is what dropping it does).
    pub fn give_back(self, pool: &BufferPool) {
        if let HostFrame::Pooled(v) = self {
            pool.give(v);
        }
    }
}

impl std::fmt::Debug for HostFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self, HostFrame::Pooled(_)) { "Pooled" } else { "Pinned" };
        write!(f, "HostFrame::{kind}({} bytes)", self.len())
    }
}

impl std::ops::Deref for HostFrame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            HostFrame::Pooled(v) => v,
            HostFrame::Pinned(p) => p,
        }
    }
}

impl std::ops::DerefMut for HostFrame {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            HostFrame::Pooled(v) => v,
            HostFrame::Pinned(p) => p,
        }
    }
}

#[derive(Debug)]
pub enum JobInput<'a> {
    /// Generate the deterministic test frame on the device (no upload).
    Synthetic { seed: u32 },
    /// Process this frame; the device writes the result over it, in the same format and size,
    /// so the request body is the frame and the answer is sent from it without a copy.
    Raw { format: RawFormat, frame: &'a mut HostFrame },
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

impl Job<'_> {
    /// A raw frame must be exactly the size its format and dimensions give (the HTTP layer
    /// checks first; devices check again so a direct caller gets an error, never a panic).
    pub fn check_raw_len(&self) -> Result<(), DeviceError> {
        let (w, h) = (self.width, self.height);
        match &self.input {
            JobInput::Raw { format, frame } if frame.len() != format.frame_len(w, h) => Err(DeviceError(format!(
                "body is {} bytes, a {w}x{h} {format:?} frame is {}",
                frame.len(),
                format.frame_len(w, h)
            ))),
            _ => Ok(()),
        }
    }
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
    /// Jobs it computes at once (CPU workers, CUDA streams); the HTTP layer queues the rest.
    fn workers(&self) -> usize;
    /// How the CPU back end shares out the cores; `None` for the others.
    fn cpu_shape(&self) -> Option<CpuShape> {
        None
    }
    /// Host memory a job of this shape needs besides its input frame (working frames,
    /// staging buffers), for the service's memory budget. `format` is `None` for a
    /// synthetic frame.
    fn working_bytes(&self, width: usize, height: usize, format: Option<RawFormat>) -> usize;
    /// Device memory (used, total) in bytes, where the device has its own.
    fn memory(&self) -> Option<(u64, u64)> {
        None
    }
    /// Host memory of `len` bytes for a raw frame to be read into, where the device has memory
    /// of its own it can work from without a copy (CUDA: page-locked, which its DMA reads and
    /// writes directly). `None`: ordinary memory from the service's pool will do, or the
    /// device has none to lend now.
    fn lend_frame(&self, _len: usize) -> Option<HostFrame> {
        None
    }
}

/// Per-job resources (a CPU worker's pool, a CUDA worker's stream and buffers): each job takes
/// one and gives it back; a job waits while all are taken. The HTTP layer never lets more than
/// `workers` jobs in, so only direct callers (tests, benchmarks) ever wait.
pub(crate) struct Slots<T> {
    idle: Mutex<Vec<T>>,
    freed: Condvar,
}

impl<T> Slots<T> {
    pub(crate) fn new(items: Vec<T>) -> Self {
        Slots { idle: Mutex::new(items), freed: Condvar::new() }
    }

    pub(crate) fn take(&self) -> T {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(item) = idle.pop() {
                return item;
            }
            idle = self.freed.wait(idle).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(crate) fn give(&self, item: T) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(item);
        self.freed.notify_one();
    }
}

/// Open the device the flags ask for. `auto` falls back to the CPU and logs why. `workers`
/// `None` takes each device's default: 1 on the CPU (see [`CpuShape`]), 2 streams otherwise.
pub fn open(
    choice: DeviceChoice,
    workers: Option<usize>,
    threads: usize,
    emulated: ServiceTimeModel,
    buffers: Arc<BufferPool>,
) -> anyhow::Result<Arc<dyn Device>> {
    const STREAMS: usize = 2;
    let cpu = |buffers| -> anyhow::Result<Arc<dyn Device>> {
        let (shape, note) = CpuShape::resolve(workers, threads, CpuShape::available_cores());
        if let Some(note) = note {
            tracing::warn!("{note}");
        }
        Ok(Arc::new(CpuDevice::new(shape, buffers)?))
    };
    match choice {
        DeviceChoice::Cpu => cpu(buffers),
        DeviceChoice::Emulated => Ok(Arc::new(EmulatedDevice::new(emulated, workers.unwrap_or(STREAMS))?)),
        DeviceChoice::Cuda => {
            let dev = cuda::CudaDevice::open(workers.unwrap_or(STREAMS))
                .map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?;
            Ok(Arc::new(dev))
        }
        DeviceChoice::Auto => match cuda::CudaDevice::open(workers.unwrap_or(STREAMS)) {
            Ok(dev) => Ok(Arc::new(dev)),
            Err(why) => {
                tracing::info!(reason = %why, "device auto: using the CPU");
                cpu(buffers)
            }
        },
    }
}
