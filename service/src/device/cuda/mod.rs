//! CUDA back end: cudarc (driver API, loaded at run time) plus kernels built with NVRTC at
//! start-up for the device's architecture.
//!
//! Start-up ([`CudaDevice::open`]), in the order that keeps every failure a one-line
//! [`CudaUnavailable`] instead of a panic (cudarc's dynamic loader panics when a library is
//! missing, so nothing touches cudarc before the probe found the library):
//! 1. probe `libcuda.so.1` (the driver; one name for CUDA 12 and 13) with `libloading`;
//! 2. `cuInit`, device count, driver version;
//! 3. find NVRTC: `RTC_NVRTC_LIB`, else `libnvrtc.so.13` then `.so.12` under a CUDA 13
//!    driver, only `libnvrtc.so.12` under a CUDA 12 driver (NVRTC 13 output needs a 13
//!    driver), then `libnvrtc.so`;
//! 4. build every kernel file (`service/kernels/*.cu`) into a cubin for the device's
//!    `sm_XY` when NVRTC supports it, else PTX for the newest supported `compute_XY` (the
//!    driver JIT-compiles it); load the modules once;
//! 5. one worker per `--workers` (at most [`kernels::SLOTS`]): its own stream, its own
//!    `__constant__` parameter slot, device buffers (kept and grown, never allocated per
//!    request), a pinned staging buffer for raw frames in ordinary memory, timing events;
//!    and page-locked frames lent to request bodies ([`pinned`]), so a raw frame usually
//!    needs no staging at all;
//! 6. a self-test: the synthetic chain on a small odd-sized frame against the CPU.
//!
//! A synthetic request never moves a frame over PCIe: the frame is generated on the GPU and
//! the checksum is reduced there (row hashes, folded on the host: same value as
//! `frame::checksum`).
pub mod kernels;
pub mod nvrtc;
mod pinned;

pub use pinned::PinnedFrame;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{
    result as cu, sys, CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, DriverError, PinnedHostSlice,
};

use self::kernels::{Kernels, BLUR_SLOT_BYTES, COLOR_SLOT_BYTES, MAX_RADIUS, SLOTS};
use self::nvrtc::{compile_all, one_line, Nvrtc, Target};
use self::pinned::PinnedFrames;
use super::{Device, DeviceError, DeviceInfo, HostFrame, Job, JobInput, JobOutput, JobResult, RawFormat, Slots};
use crate::effects::{ChainPlan, Effect, EffectTimings};

/// Why the CUDA back end cannot be used. Display is one line naming what is missing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CudaUnavailable {
    #[error("libcuda.so.1 not found (no NVIDIA driver)")]
    NoDriver,
    #[error("no CUDA device found")]
    NoDevice,
    #[error("CUDA driver failed to initialise: {0}")]
    DriverInit(String),
    #[error("{0}")]
    NoNvrtc(String),
    #[error("CUDA kernels failed to build: {0}")]
    Build(String),
    #[error("CUDA setup failed: {0}")]
    Setup(String),
}

impl CudaUnavailable {
    /// True when this machine simply has no usable GPU (no driver, no device), as opposed
    /// to a GPU that is there but could not be set up.
    pub fn is_no_gpu(&self) -> bool {
        match self {
            CudaUnavailable::NoDriver | CudaUnavailable::NoDevice => true,
            CudaUnavailable::DriverInit(msg) => msg.contains("CUDA_ERROR_NO_DEVICE"),
            _ => false,
        }
    }
}

/// Largest frame the pool will hold: the service's limit (7680 x 4320).
pub const MAX_PIXELS: usize = 7680 * 4320;

pub struct CudaDevice {
    info: DeviceInfo,
    ctx: Arc<CudaContext>,
    kernels: Arc<Kernels>,
    workers: Slots<Worker>,
    /// Page-locked frames lent to request bodies.
    frames: Arc<PinnedFrames>,
    ready: AtomicBool,
    /// What start-up found, for logs and `gpu-bench`.
    pub details: OpenDetails,
}

#[derive(Debug, Clone)]
pub struct OpenDetails {
    pub driver_version: i32,
    pub compute_capability: (i32, i32),
    pub nvrtc: String,
    pub nvrtc_version: (i32, i32),
    pub target: Target,
    pub build_time: Duration,
    pub workers: usize,
}

fn probe_driver() -> Result<(), CudaUnavailable> {
    for name in ["libcuda.so.1", "libcuda.so"] {
        // SAFETY: loading the driver library runs its initialisers only.
        if unsafe { libloading::Library::new(name) }.is_ok() {
            return Ok(());
        }
    }
    Err(CudaUnavailable::NoDriver)
}

fn driver_err(e: DriverError) -> String {
    one_line(&format!("{e:?}"))
}

impl CudaDevice {
    /// Probe, build and set up the CUDA back end with `workers` concurrent streams.
    pub fn open(workers: usize) -> Result<Self, CudaUnavailable> {
        probe_driver()?;
        match catch_unwind(AssertUnwindSafe(|| Self::open_inner(workers))) {
            Ok(result) => result,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(CudaUnavailable::Setup(one_line(&msg)))
            }
        }
    }

    fn open_inner(workers: usize) -> Result<Self, CudaUnavailable> {
        let t0 = Instant::now();
        if let Err(e) = cu::init() {
            return Err(match e.0 {
                sys::CUresult::CUDA_ERROR_NO_DEVICE => CudaUnavailable::NoDevice,
                _ => CudaUnavailable::DriverInit(driver_err(e)),
            });
        }
        let count = cu::device::get_count().map_err(|e| CudaUnavailable::DriverInit(driver_err(e)))?;
        if count < 1 {
            return Err(CudaUnavailable::NoDevice);
        }
        let mut driver_version = 0;
        // SAFETY: writes one int.
        unsafe { sys::cuDriverGetVersion(&mut driver_version) };
        let driver_major = (driver_version / 1000) as u32;
        let majors: Vec<u32> = if driver_major >= 13 { vec![13, 12] } else { vec![driver_major.max(12)] };
        let nvrtc = Nvrtc::find(&majors).map_err(|e| CudaUnavailable::NoNvrtc(one_line(&e.to_string())))?;

        let ctx = CudaContext::new(0).map_err(|e| CudaUnavailable::Setup(format!("context: {}", driver_err(e))))?;
        // Every buffer belongs to one worker and is used on that worker's stream only.
        // SAFETY: see above; no buffer crosses streams.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().map_err(|e| CudaUnavailable::Setup(driver_err(e)))?;
        let cc = ctx.compute_capability().map_err(|e| CudaUnavailable::Setup(driver_err(e)))?;
        let target = pick_target(&nvrtc, cc);

        let t_build = Instant::now();
        let mut results = compile_all(&nvrtc, &target);
        let mut target = target;
        if matches!(target, Target::Cubin(_)) && results.iter().any(|r| r.is_err()) {
            // NVRTC could not tell its architectures and does not know this one: let the
            // driver JIT NVRTC's default PTX.
            target = Target::Ptx(None);
            results = compile_all(&nvrtc, &target);
        }
        let mut images = Vec::new();
        for r in results {
            let compiled = r.map_err(|e| CudaUnavailable::Build(one_line(&e.to_string())))?;
            if !compiled.log.is_empty() {
                tracing::warn!(file = compiled.file, log = %one_line(&compiled.log), "NVRTC warnings");
            }
            images.push(compiled);
        }
        let build_time = t_build.elapsed();

        let n_workers = workers.clamp(1, SLOTS);
        if workers > SLOTS {
            tracing::warn!(workers, used = SLOTS, "more workers than CUDA parameter slots; using fewer streams");
        }
        let setup = |e: DriverError| CudaUnavailable::Setup(driver_err(e));
        let first_stream = ctx.new_stream().map_err(setup)?;
        let kernels = Arc::new(Kernels::load(&ctx, images, &first_stream).map_err(CudaUnavailable::Setup)?);
        let mut pool = Vec::with_capacity(n_workers);
        for slot in 0..n_workers {
            let stream = if slot == 0 { first_stream.clone() } else { ctx.new_stream().map_err(setup)? };
            let mut w = Worker::new(slot, stream);
            // Sized for 1080p up front so the first requests do not allocate either.
            w.reserve(&ctx, 1920 * 1080, 0, 0).map_err(setup)?;
            w.staging.ensure(&ctx, 1920 * 1080 * 4).map_err(setup)?;
            pool.push(w);
        }
        // A frame for each stream to work on, one arriving and one being sent per stream.
        let frames = PinnedFrames::new(ctx.clone(), 3 * n_workers);
        let dev = CudaDevice {
            info: DeviceInfo { kind: "cuda", name: name.clone() },
            ctx,
            kernels,
            workers: Slots::new(pool),
            frames,
            ready: AtomicBool::new(false),
            details: OpenDetails {
                driver_version,
                compute_capability: cc,
                nvrtc: nvrtc.name.clone(),
                nvrtc_version: nvrtc.version,
                target: target.clone(),
                build_time,
                workers: n_workers,
            },
        };
        dev.self_test().map_err(|e| CudaUnavailable::Setup(format!("self-test: {e}")))?;
        dev.ready.store(true, Ordering::Release);
        tracing::info!(
            gpu = %name,
            compute_capability = %format!("{}.{}", cc.0, cc.1),
            driver = driver_version,
            nvrtc = %nvrtc.name,
            nvrtc_version = %format!("{}.{}", nvrtc.version.0, nvrtc.version.1),
            target = ?target,
            build_ms = build_time.as_millis() as u64,
            startup_ms = t0.elapsed().as_millis() as u64,
            workers = n_workers,
            "CUDA device ready"
        );
        Ok(dev)
    }

    /// Run the default chain on a small odd-sized synthetic frame and compare with the CPU.
    fn self_test(&self) -> Result<(), DeviceError> {
        let plan = ChainPlan::new(Effect::ALL.to_vec(), Default::default());
        let (w, h) = (67, 43);
        let job = Job { width: w, height: h, iters: 2, plan: &plan, input: JobInput::Synthetic { seed: 7 } };
        let gpu = self.process(job)?;
        let mut frame = crate::frame::Frame::new(w, h);
        crate::frame::synthesize(&mut frame, 7);
        crate::effects::apply_chain(&mut frame, &plan, 2, &mut Default::default());
        let cpu = crate::frame::checksum(&frame.data, w * 4);
        match gpu.output {
            JobOutput::Checksum(c) if c == cpu => Ok(()),
            JobOutput::Checksum(c) => {
                // Parity is "within one level"; bit-exactness is expected but not required.
                tracing::warn!(gpu = %c, cpu = %cpu, "CUDA self-test: checksum differs from the CPU's");
                Ok(())
            }
            JobOutput::FrameInPlace => Err(DeviceError("self-test returned a frame".into())),
        }
    }

    fn with_worker<T>(&self, f: impl FnOnce(&mut Worker) -> Result<T, DeviceError>) -> Result<T, DeviceError> {
        let mut worker = self.workers.take();
        // The raw copies below do not bind the context themselves, and HTTP blocking
        // threads come and go.
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.ctx.bind_to_thread().map_err(derr)?;
            f(&mut worker)
        }))
        .unwrap_or_else(|_| Err(DeviceError("internal error in the CUDA back end".into())));
        self.workers.give(worker);
        result
    }

    /// Pinned staging for a raw frame in ordinary memory, both ways (kept per worker and
    /// grown to the largest frame seen): counted for every raw frame, since a body gets a
    /// lent frame only while one is free. A synthetic frame lives on the GPU only.
    pub fn working_bytes_for(width: usize, height: usize, format: Option<RawFormat>) -> usize {
        format.map_or(0, |f| f.frame_len(width, height))
    }

    /// Page-locked frames (lent, idle) now.
    pub fn pinned_frames(&self) -> (usize, usize) {
        self.frames.counts()
    }

    /// Like `process` for a synthetic job, but also downloads the output frame: for tests
    /// and benchmarks (the GPU checksum and the frame it was computed over).
    pub fn process_synthetic_frame(
        &self,
        width: usize,
        height: usize,
        seed: u32,
        plan: &ChainPlan,
        iters: u32,
    ) -> Result<(Vec<u8>, String), DeviceError> {
        let job = Job { width, height, iters, plan, input: JobInput::Synthetic { seed } };
        check_job(&job)?;
        self.with_worker(|w| {
            let (_, checksum) = w.run(&self.ctx, &self.kernels, &job)?;
            let frame = w.download_frame(job.width, job.height)?;
            Ok((frame, checksum.unwrap_or_default()))
        })
    }

    /// Time each kernel with CUDA events at `width` x `height` (`reps` launches each, after
    /// a warm-up) using worker 0's buffers and launch shapes.
    pub fn bench_kernels(&self, width: usize, height: usize, reps: u32) -> Result<Vec<KernelTiming>, DeviceError> {
        let plan = ChainPlan::new(Effect::ALL.to_vec(), Default::default());
        let job = Job { width, height, iters: 1, plan: &plan, input: JobInput::Synthetic { seed: 1 } };
        check_job(&job)?;
        self.with_worker(|w| w.bench(&self.ctx, &self.kernels, &job, reps.max(1)))
    }

    /// Theoretical DRAM bandwidth (bytes/s) from the device's memory clock and bus width.
    pub fn peak_bandwidth(&self) -> Option<f64> {
        let clock_khz = self.ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE).ok()?;
        let bus_bits = self.ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH).ok()?;
        (clock_khz > 0 && bus_bits > 0).then(|| 2.0 * clock_khz as f64 * 1e3 * bus_bits as f64 / 8.0)
    }
}

fn pick_target(nvrtc: &Nvrtc, (major, minor): (i32, i32)) -> Target {
    let arch = major * 10 + minor;
    let supported = nvrtc.supported_archs();
    if supported.is_empty() || supported.contains(&arch) {
        return Target::Cubin(format!("sm_{arch}"));
    }
    match supported.iter().copied().filter(|&a| a <= arch).max() {
        Some(a) => Target::Ptx(Some(format!("compute_{a}"))),
        None => Target::Ptx(None),
    }
}

/// Reject what the kernels cannot take (the HTTP layer validates first; this keeps bad
/// input an error, never a panic or an out-of-bounds launch).
fn check_job(job: &Job<'_>) -> Result<(), DeviceError> {
    let (w, h) = (job.width, job.height);
    if w == 0 || h == 0 || w.checked_mul(h).is_none_or(|n| n > MAX_PIXELS) {
        return Err(DeviceError(format!("frame {w}x{h} outside 1..={MAX_PIXELS} pixels")));
    }
    let radius = job.plan.blur.radius();
    if radius > MAX_RADIUS {
        return Err(DeviceError(format!("blur radius {radius} above {MAX_RADIUS}")));
    }
    job.check_raw_len()
}

impl Device for CudaDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn workers(&self) -> usize {
        self.details.workers
    }

    fn working_bytes(&self, width: usize, height: usize, format: Option<RawFormat>) -> usize {
        Self::working_bytes_for(width, height, format)
    }

    fn process(&self, mut job: Job<'_>) -> Result<JobResult, DeviceError> {
        check_job(&job)?;
        self.with_worker(|w| {
            let (timings, checksum) = w.run(&self.ctx, &self.kernels, &job)?;
            let (width, height) = (job.width, job.height);
            let output = match (&mut job.input, checksum) {
                (JobInput::Synthetic { .. }, Some(c)) => JobOutput::Checksum(c),
                (JobInput::Synthetic { .. }, None) => return Err(DeviceError("no checksum computed".into())),
                (JobInput::Raw { format, frame }, _) => {
                    w.download_output(&self.kernels, width, height, *format, frame)?;
                    JobOutput::FrameInPlace
                }
            };
            Ok(JobResult { output, timings })
        })
    }

    fn memory(&self) -> Option<(u64, u64)> {
        let (free, total) = self.ctx.mem_get_info().ok()?;
        Some(((total - free) as u64, total as u64))
    }

    fn lend_frame(&self, len: usize) -> Option<HostFrame> {
        self.frames.lend(len).map(HostFrame::Pinned)
    }
}

/// A device buffer that only grows (rounded up to 2 MiB), kept between requests.
struct DevBuf<T> {
    buf: Option<CudaSlice<T>>,
    ptr: u64,
    len: usize,
}

impl<T: cudarc::driver::DeviceRepr> DevBuf<T> {
    fn new() -> Self {
        DevBuf { buf: None, ptr: 0, len: 0 }
    }

    fn ensure(&mut self, stream: &Arc<CudaStream>, len: usize) -> Result<u64, DriverError> {
        if len > self.len || self.buf.is_none() {
            let unit = ((2 << 20) / std::mem::size_of::<T>()).max(1);
            let new_len = len.max(1).div_ceil(unit) * unit;
            self.buf = None;
            self.len = 0;
            // SAFETY: every kernel writes its output before anything reads it.
            let buf = unsafe { stream.alloc::<T>(new_len) }?;
            self.ptr = buf.device_ptr(stream).0;
            self.len = new_len;
            self.buf = Some(buf);
        }
        Ok(self.ptr)
    }
}

/// Pinned (page-locked) host memory that only grows. Plain, not write-combined: the CPU
/// reads it back after a download.
#[derive(Default)]
struct PinnedBuf {
    buf: Option<PinnedHostSlice<u8>>,
}

impl PinnedBuf {
    fn ensure(&mut self, ctx: &Arc<CudaContext>, len: usize) -> Result<&mut [u8], DriverError> {
        if self.buf.as_ref().is_none_or(|b| b.len() < len) {
            self.buf = None;
            let new_len = len.max(1).div_ceil(2 << 20) * (2 << 20);
            // SAFETY: written before an upload reads it; read only after a download wrote it.
            self.buf = Some(unsafe { ctx.alloc_pinned_with_flags::<u8>(new_len, 0) }?);
        }
        let buf = self.buf.as_mut().expect("allocated above");
        Ok(&mut buf.as_mut_slice()?[..len])
    }
}

/// One worker: a stream and everything a request needs, reused across requests.
struct Worker {
    slot: usize,
    stream: Arc<CudaStream>,
    /// Ping-pong frame buffers (RGBA8).
    a: DevBuf<u8>,
    b: DevBuf<u8>,
    /// 16-bit intermediate of the two-pass blur (large radii only).
    tmp: DevBuf<u16>,
    /// Raw input/output in the request's format (I420).
    io: DevBuf<u8>,
    hashes: DevBuf<u64>,
    /// A raw frame in ordinary memory goes through here, both ways.
    staging: PinnedBuf,
    hashes_host: Option<PinnedHostSlice<u64>>,
    events: Vec<CudaEvent>,
    /// Parameters currently in this worker's constant-memory slot.
    loaded_weights: Vec<u32>,
    loaded_color: Vec<u8>,
    /// Where the current output frame is.
    out_in_a: bool,
}

fn derr(e: DriverError) -> DeviceError {
    DeviceError(format!("cuda: {}", driver_err(e)))
}

impl Worker {
    fn new(slot: usize, stream: Arc<CudaStream>) -> Self {
        Worker {
            slot,
            stream,
            a: DevBuf::new(),
            b: DevBuf::new(),
            tmp: DevBuf::new(),
            io: DevBuf::new(),
            hashes: DevBuf::new(),
            staging: PinnedBuf::default(),
            hashes_host: None,
            events: Vec::new(),
            loaded_weights: Vec::new(),
            loaded_color: Vec::new(),
            out_in_a: true,
        }
    }

    /// Make sure the buffers fit a `pixels` frame (and raw I/O of `io_bytes`).
    fn reserve(
        &mut self,
        ctx: &Arc<CudaContext>,
        pixels: usize,
        io_bytes: usize,
        radius: usize,
    ) -> Result<(), DriverError> {
        let s = &self.stream;
        self.a.ensure(s, pixels * 4)?;
        self.b.ensure(s, pixels * 4)?;
        if radius > kernels::FUSED_MAX_RADIUS {
            self.tmp.ensure(s, pixels * 4)?;
        }
        if io_bytes > 0 {
            self.io.ensure(s, io_bytes)?;
        }
        // Enough row hashes for any frame of this many pixels up to 8K tall.
        self.hashes.ensure(s, 8192)?;
        if self.hashes_host.is_none() {
            // SAFETY: read only after the kernel and copy wrote it.
            self.hashes_host = Some(unsafe { ctx.alloc_pinned_with_flags::<u64>(8192, 0) }?);
        }
        Ok(())
    }

    fn upload_params(&mut self, k: &Kernels, plan: &ChainPlan) -> Result<(), DriverError> {
        let cu_stream = self.stream.cu_stream();
        if self.loaded_weights != plan.blur.weights() {
            let mut bytes = vec![0u8; BLUR_SLOT_BYTES];
            for (chunk, w) in bytes.chunks_exact_mut(4).zip(plan.blur.weights()) {
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            let dst = k.blur_weights_sym + (self.slot * BLUR_SLOT_BYTES) as u64;
            // SAFETY: the slot lies inside the symbol (size checked at load); pageable
            // source memory is staged before the call returns.
            unsafe { cu::memcpy_htod_async(dst, &bytes, cu_stream) }?;
            self.loaded_weights = plan.blur.weights().to_vec();
        }
        let mut color = Vec::with_capacity(COLOR_SLOT_BYTES);
        for row in &plan.params.grade.matrix {
            for v in row {
                color.extend_from_slice(&v.to_le_bytes());
            }
        }
        for lut in &plan.luts {
            color.extend_from_slice(lut);
        }
        if self.loaded_color != color {
            let dst = k.color_sym + (self.slot * COLOR_SLOT_BYTES) as u64;
            // SAFETY: as above.
            unsafe { cu::memcpy_htod_async(dst, &color, cu_stream) }?;
            self.loaded_color = color;
        }
        Ok(())
    }

    fn event(&mut self, ctx: &Arc<CudaContext>, i: usize) -> Result<(), DriverError> {
        while self.events.len() <= i {
            self.events.push(ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?);
        }
        self.events[i].record(&self.stream)
    }

    /// Input, the chain, and for synthetic input the checksum. Leaves the output frame in
    /// `a` or `b` (see `out_in_a`). Returns the per-effect GPU times.
    fn run(
        &mut self,
        ctx: &Arc<CudaContext>,
        k: &Kernels,
        job: &Job<'_>,
    ) -> Result<(EffectTimings, Option<String>), DeviceError> {
        let (w, h) = (job.width, job.height);
        let pixels = w * h;
        let radius = job.plan.blur.radius();
        let io_bytes = match &job.input {
            JobInput::Raw { format: RawFormat::I420, frame } => frame.len(),
            _ => 0,
        };
        self.reserve(ctx, pixels, io_bytes, radius).map_err(derr)?;
        self.upload_params(k, job.plan).map_err(derr)?;
        let s = self.stream.clone();
        let (mut src, mut dst) = (self.a.ptr, self.b.ptr);
        let tmp = self.tmp.ptr;

        match &job.input {
            JobInput::Synthetic { seed } => k.synth(&s, src, w, h, *seed).map_err(derr)?,
            JobInput::Raw { format, frame } => {
                let format = *format;
                let target = if format == RawFormat::I420 { self.io.ptr } else { src };
                let host: &[u8] = match &**frame {
                    HostFrame::Pinned(lent) => lent,
                    HostFrame::Pooled(bytes) => {
                        let staged = self.staging.ensure(ctx, bytes.len()).map_err(derr)?;
                        staged.copy_from_slice(bytes);
                        staged
                    }
                };
                // SAFETY: the device buffer holds at least host.len() bytes (reserved above);
                // the host side is page-locked and not written until the stream is synchronised.
                unsafe { cu::memcpy_htod_async(target, host, s.cu_stream()) }.map_err(derr)?;
                if format == RawFormat::I420 {
                    k.i420_to_rgba(&s, self.io.ptr, src, w, h).map_err(derr)?;
                }
            }
        }

        let (dx, dy) = (job.plan.params.dx, job.plan.params.dy);
        let (sx0, sy0) = (-dx, -dy);
        let (ix, iy) = (sx0.floor(), sy0.floor());
        let (fx, fy) = (sx0 - ix, sy0 - iy);
        let weights = [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy];
        // Any shift beyond the frame gives the same transparent frame; keep ints in range.
        let clamp_shift = |v: f32| (v as i64).clamp(-(1 << 24), 1 << 24) as i32;
        let offset = (clamp_shift(ix), clamp_shift(iy));

        let mut launched: Vec<Effect> = Vec::with_capacity(job.iters as usize * job.plan.effects.len());
        self.event(ctx, 0).map_err(derr)?;
        for _ in 0..job.iters {
            for &effect in &job.plan.effects {
                match effect {
                    Effect::Blur | Effect::BgBlur => {
                        k.blur(&s, src, dst, tmp, w, h, radius, self.slot, effect == Effect::BgBlur).map_err(derr)?;
                        std::mem::swap(&mut src, &mut dst);
                    }
                    Effect::Translate => {
                        k.translate(&s, src, dst, w, h, offset, weights).map_err(derr)?;
                        std::mem::swap(&mut src, &mut dst);
                    }
                    Effect::Color => k.color(&s, src, pixels, self.slot).map_err(derr)?,
                }
                launched.push(effect);
                self.event(ctx, launched.len()).map_err(derr)?;
            }
        }
        self.out_in_a = src == self.a.ptr;

        let checksum = if let JobInput::Synthetic { .. } = &job.input {
            let out = self.hashes.ensure(&s, h).map_err(derr)?;
            k.row_hash(&s, src, w * 4, h, out).map_err(derr)?;
            let host = self.hashes_host.as_mut().expect("reserved");
            if host.len() < h {
                // SAFETY: read only after the copy below completes.
                *host = unsafe { ctx.alloc_pinned_with_flags::<u64>(h, 0) }.map_err(derr)?;
            }
            let host = &mut host.as_mut_slice().map_err(derr)?[..h];
            // SAFETY: `out` holds h hashes.
            unsafe { cu::memcpy_dtoh_async(host, out, s.cu_stream()) }.map_err(derr)?;
            s.synchronize().map_err(derr)?;
            Some(fold_row_hashes(host))
        } else {
            s.synchronize().map_err(derr)?;
            None
        };

        let mut timings = EffectTimings::default();
        for (i, effect) in launched.iter().enumerate() {
            let ms = self.events[i].elapsed_ms(&self.events[i + 1]).map_err(derr)?;
            timings[effect.index()] += Duration::from_secs_f64(ms.max(0.0) as f64 / 1e3);
        }
        Ok((timings, checksum))
    }

    fn output_ptr(&self) -> u64 {
        if self.out_in_a {
            self.a.ptr
        } else {
            self.b.ptr
        }
    }

    /// Download the RGBA output frame.
    fn download_frame(&mut self, width: usize, height: usize) -> Result<Vec<u8>, DeviceError> {
        let len = width * height * 4;
        let src = self.output_ptr();
        let ctx = self.stream.context().clone();
        let host = self.staging.ensure(&ctx, len).map_err(derr)?;
        // SAFETY: the output buffer holds `len` bytes.
        unsafe { cu::memcpy_dtoh_async(&mut *host, src, self.stream.cu_stream()) }.map_err(derr)?;
        self.stream.synchronize().map_err(derr)?;
        Ok(host.to_vec())
    }

    /// Download the output over the raw input's buffer, in the request's format: straight
    /// into a lent frame, else through the staging buffer.
    fn download_output(
        &mut self,
        k: &Kernels,
        width: usize,
        height: usize,
        format: RawFormat,
        out: &mut HostFrame,
    ) -> Result<(), DeviceError> {
        let len = format.frame_len(width, height);
        let src = match format {
            RawFormat::Rgba => self.output_ptr(),
            RawFormat::I420 => {
                k.rgba_to_i420(&self.stream, self.output_ptr(), self.io.ptr, width, height).map_err(derr)?;
                self.io.ptr
            }
        };
        let ctx = self.stream.context().clone();
        let host: &mut [u8] = match out {
            HostFrame::Pinned(lent) => lent,
            HostFrame::Pooled(_) => self.staging.ensure(&ctx, len).map_err(derr)?,
        };
        if host.len() != len {
            return Err(DeviceError(format!("the frame to download into is {} bytes, the output {len}", host.len())));
        }
        // SAFETY: `src` holds `len` bytes: the output frame, or `io`, reserved for the I420
        // input of the same size; `host` is page-locked and `len` bytes long.
        unsafe { cu::memcpy_dtoh_async(&mut *host, src, self.stream.cu_stream()) }.map_err(derr)?;
        self.stream.synchronize().map_err(derr)?;
        if let HostFrame::Pooled(bytes) = out {
            let staged = self.staging.ensure(&ctx, len).map_err(derr)?;
            bytes.clear();
            bytes.extend_from_slice(staged);
        }
        Ok(())
    }

    fn bench(
        &mut self,
        ctx: &Arc<CudaContext>,
        k: &Kernels,
        job: &Job<'_>,
        reps: u32,
    ) -> Result<Vec<KernelTiming>, DeviceError> {
        let (w, h) = (job.width, job.height);
        let px = (w * h) as u64;
        let yuv_len = crate::i420::i420_len(w, h);
        self.reserve(ctx, w * h, yuv_len, MAX_RADIUS).map_err(derr)?;
        self.upload_params(k, job.plan).map_err(derr)?;
        let s = self.stream.clone();
        let (a, b, tmp, io) = (self.a.ptr, self.b.ptr, self.tmp.ptr, self.io.ptr);
        let hashes = self.hashes.ensure(&s, h).map_err(derr)?;
        k.synth(&s, a, w, h, 1).map_err(derr)?;
        k.rgba_to_i420(&s, a, io, w, h).map_err(derr)?;
        let radius = job.plan.blur.radius();
        let sigma8 =
            ChainPlan::new(vec![Effect::Blur], crate::effects::EffectParams { sigma: 8.0, ..Default::default() });
        let yuv = (yuv_len) as u64;
        // (name, least DRAM bytes, case); the frame in `a` stays the input throughout.
        let cases: [(&'static str, u64, u8); 9] = [
            ("synth", 4 * px, 0),
            ("blur", 8 * px, 1),
            ("bgblur", 8 * px, 2),
            ("translate", 8 * px, 3),
            ("color", 8 * px, 4),
            ("i420_to_rgba", yuv + 4 * px, 5),
            ("rgba_to_i420", 4 * px + yuv, 6),
            ("row_hash", 4 * px, 7),
            ("blur_sigma8_two_pass", 8 * px, 8),
        ];
        let slot = self.slot;
        let mut out = Vec::new();
        for (name, min_bytes, case) in cases {
            if case == 8 {
                self.upload_params(k, &sigma8).map_err(derr)?;
            }
            let r8 = sigma8.blur.radius();
            let launch = |_: ()| -> Result<(), DriverError> {
                match case {
                    0 => k.synth(&s, b, w, h, 2),
                    1 => k.blur(&s, a, b, tmp, w, h, radius, slot, false),
                    2 => k.blur(&s, a, b, tmp, w, h, radius, slot, true),
                    3 => k.translate(&s, a, b, w, h, (-13, 7), [0.375, 0.375, 0.125, 0.125]),
                    // In place on `b` so `a` stays the input.
                    4 => k.color(&s, b, w * h, slot),
                    5 => k.i420_to_rgba(&s, io, b, w, h),
                    6 => k.rgba_to_i420(&s, a, io, w, h),
                    7 => k.row_hash(&s, a, w * 4, h, hashes),
                    _ => k.blur(&s, a, b, tmp, w, h, r8, slot, false),
                }
            };
            for _ in 0..3 {
                launch(()).map_err(derr)?;
            }
            self.event(ctx, 0).map_err(derr)?;
            for _ in 0..reps {
                launch(()).map_err(derr)?;
            }
            self.event(ctx, 1).map_err(derr)?;
            s.synchronize().map_err(derr)?;
            let ms = self.events[0].elapsed_ms(&self.events[1]).map_err(derr)?;
            out.push(KernelTiming {
                kernel: name,
                width: w,
                height: h,
                seconds: ms as f64 / 1e3 / reps as f64,
                min_bytes,
            });
        }
        Ok(out)
    }
}

/// Fold per-row FNV-1a hashes as `frame::checksum` does.
pub fn fold_row_hashes(rows: &[u64]) -> String {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let combined = rows.iter().fold(OFFSET, |acc, h| (acc ^ h).wrapping_mul(PRIME));
    format!("{combined:016x}")
}

/// One kernel's timing from [`CudaDevice::bench_kernels`].
#[derive(Debug, Clone)]
pub struct KernelTiming {
    pub kernel: &'static str,
    pub width: usize,
    pub height: usize,
    /// Mean time per launch.
    pub seconds: f64,
    /// The least DRAM traffic the kernel must cause (read input once, write output once).
    pub min_bytes: u64,
}
