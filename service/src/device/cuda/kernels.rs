//! The loaded kernels and their launch shapes (documented beside each kernel in
//! `service/kernels/*.cu`). Buffers are passed as raw device pointers: each worker owns its
//! buffers and uses them on its own stream only, so cudarc's cross-stream event tracking is
//! switched off and not needed.
use std::sync::Arc;

use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaModule, CudaStream, DevicePtr, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::nvrtc::{Compiled, KERNELS};

/// Per-worker parameter slots in `__constant__` memory (`RTC_SLOTS` in common.cuh).
pub const SLOTS: usize = 32;
/// `RTC_MAX_RADIUS` in common.cuh: the blur radius for the largest sigma (20).
pub const MAX_RADIUS: usize = 60;
/// `RTC_FUSED_MAX_RADIUS`: radii up to this use the one-pass tiled blur.
pub const FUSED_MAX_RADIUS: usize = 16;
const TILE: u32 = 32;
/// Bytes of one `ColorSlot` (12 floats + 3 x 256 LUT entries).
pub const COLOR_SLOT_BYTES: usize = 12 * 4 + 3 * 256;
/// Bytes of one blur-weights slot.
pub const BLUR_SLOT_BYTES: usize = (MAX_RADIUS + 1) * 4;

pub struct Kernels {
    pub synth: CudaFunction,
    pub blur_fused: CudaFunction,
    pub blur_h: CudaFunction,
    pub blur_v: CudaFunction,
    pub translate: CudaFunction,
    pub color: CudaFunction,
    pub i420_to_rgba: CudaFunction,
    pub rgba_to_i420: CudaFunction,
    pub row_hash: CudaFunction,
    /// Device addresses of the `__constant__` parameter arrays.
    pub blur_weights_sym: sys::CUdeviceptr,
    pub color_sym: sys::CUdeviceptr,
    pub sm_count: u32,
    _modules: Vec<Arc<CudaModule>>,
}

fn div_up(a: usize, b: u32) -> u32 {
    a.div_ceil(b as usize) as u32
}

fn grid2d(width: usize, height: usize, bx: u32, by: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (div_up(width, bx), div_up(height, by), 1), block_dim: (bx, by, 1), shared_mem_bytes: 0 }
}

/// Dynamic shared memory of `blur_fused` for this radius.
pub fn fused_smem_bytes(radius: usize) -> u32 {
    let l = TILE as usize + 2 * radius;
    (TILE as usize * l * 8 + l * l * 4) as u32
}

impl Kernels {
    /// Load the compiled images (in `KERNELS` order) into `ctx`.
    pub fn load(ctx: &Arc<CudaContext>, images: Vec<Compiled>, stream: &Arc<CudaStream>) -> Result<Self, String> {
        let mut modules = Vec::new();
        for (compiled, source) in images.into_iter().zip(KERNELS) {
            let ptx = if compiled.is_ptx() {
                Ptx::from_src(compiled.ptx_text().to_string())
            } else {
                Ptx::from_binary(compiled.image)
            };
            let module = ctx.load_module(ptx).map_err(|e| format!("loading {}: {e}", source.file))?;
            modules.push((source, module));
        }
        let func = |name: &str| -> Result<CudaFunction, String> {
            let (_, module) = modules
                .iter()
                .find(|(s, _)| s.functions.contains(&name))
                .ok_or_else(|| format!("no kernel file declares {name}"))?;
            module.load_function(name).map_err(|e| format!("kernel {name}: {e}"))
        };
        let symbol = |file: &str, name: &str, expect: usize| -> Result<sys::CUdeviceptr, String> {
            let (_, module) =
                modules.iter().find(|(s, _)| s.file == file).ok_or_else(|| format!("{file} not loaded"))?;
            let view = module.get_global(name, stream).map_err(|e| format!("symbol {name}: {e}"))?;
            if view.len() != expect {
                return Err(format!("symbol {name} is {} bytes, expected {expect}", view.len()));
            }
            let (ptr, _sync) = view.device_ptr(stream);
            Ok(ptr)
        };
        let sm_count = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| format!("device attribute: {e}"))?
            .max(1) as u32;
        Ok(Kernels {
            synth: func("synth_frame")?,
            blur_fused: func("blur_fused")?,
            blur_h: func("blur_h")?,
            blur_v: func("blur_v")?,
            translate: func("translate_bilinear")?,
            color: func("color_grade")?,
            i420_to_rgba: func("i420_to_rgba")?,
            rgba_to_i420: func("rgba_to_i420")?,
            row_hash: func("row_hash")?,
            blur_weights_sym: symbol("blur.cu", "c_blur_weights", SLOTS * BLUR_SLOT_BYTES)?,
            color_sym: symbol("color.cu", "c_color", SLOTS * COLOR_SLOT_BYTES)?,
            sm_count,
            _modules: modules.into_iter().map(|(_, m)| m).collect(),
        })
    }

    pub fn synth(&self, s: &CudaStream, out: u64, w: usize, h: usize, seed: u32) -> Result<(), DriverError> {
        let (wu, hu) = (w as u32, h as u32);
        let mut b = s.launch_builder(&self.synth);
        b.arg(&out).arg(&wu).arg(&hu).arg(&seed);
        // SAFETY: `out` holds w * h RGBA pixels; the argument types match the kernel.
        unsafe { b.launch(grid2d(w, h, 32, 8)) }.map(drop)
    }

    /// Blur `src` into `dst` (`mask`: bgblur composite). `tmp` (8 bytes per pixel: four
    /// 16-bit vertical sums) is needed only above `FUSED_MAX_RADIUS`.
    #[allow(clippy::too_many_arguments)]
    pub fn blur(
        &self,
        s: &CudaStream,
        src: u64,
        dst: u64,
        tmp: u64,
        w: usize,
        h: usize,
        radius: usize,
        slot: usize,
        mask: bool,
    ) -> Result<(), DriverError> {
        let (wi, hi, ri, si, mi) = (w as i32, h as i32, radius as i32, slot as i32, mask as i32);
        if radius <= FUSED_MAX_RADIUS {
            let cfg = LaunchConfig {
                grid_dim: (div_up(w, TILE), div_up(h, TILE), 1),
                block_dim: (TILE, 8, 1),
                shared_mem_bytes: fused_smem_bytes(radius),
            };
            let mut b = s.launch_builder(&self.blur_fused);
            b.arg(&src).arg(&dst).arg(&wi).arg(&hi).arg(&ri).arg(&si).arg(&mi);
            // SAFETY: src/dst hold w * h pixels, the shared memory fits (<= 48 KiB).
            unsafe { b.launch(cfg) }.map(drop)
        } else {
            let mut b = s.launch_builder(&self.blur_v);
            b.arg(&src).arg(&tmp).arg(&wi).arg(&hi).arg(&ri).arg(&si);
            // SAFETY: src holds w * h pixels, tmp w * h ushort4.
            unsafe { b.launch(grid2d(w, h, 32, 8)) }?;
            let cfg_h = LaunchConfig {
                grid_dim: (div_up(w, 256), h as u32, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: ((256 + 2 * radius) * 8) as u32,
            };
            let mut b = s.launch_builder(&self.blur_h);
            b.arg(&tmp).arg(&src).arg(&dst).arg(&wi).arg(&hi).arg(&ri).arg(&si).arg(&mi);
            // SAFETY: as above; dst holds w * h pixels.
            unsafe { b.launch(cfg_h) }.map(drop)
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn translate(
        &self,
        s: &CudaStream,
        src: u64,
        dst: u64,
        w: usize,
        h: usize,
        offset: (i32, i32),
        weights: [f32; 4],
    ) -> Result<(), DriverError> {
        let (wi, hi) = (w as i32, h as i32);
        let mut b = s.launch_builder(&self.translate);
        b.arg(&src).arg(&dst).arg(&wi).arg(&hi).arg(&offset.0).arg(&offset.1);
        b.arg(&weights[0]).arg(&weights[1]).arg(&weights[2]).arg(&weights[3]);
        // SAFETY: src/dst hold w * h pixels.
        unsafe { b.launch(grid2d(w, h, 32, 8)) }.map(drop)
    }

    pub fn color(&self, s: &CudaStream, data: u64, pixels: usize, slot: usize) -> Result<(), DriverError> {
        let n = pixels as u32;
        let si = slot as i32;
        let blocks = div_up(pixels, 256).clamp(1, self.sm_count * 8);
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let mut b = s.launch_builder(&self.color);
        b.arg(&data).arg(&n).arg(&si);
        // SAFETY: data holds `pixels` pixels.
        unsafe { b.launch(cfg) }.map(drop)
    }

    pub fn i420_to_rgba(&self, s: &CudaStream, yuv: u64, out: u64, w: usize, h: usize) -> Result<(), DriverError> {
        let (wi, hi) = (w as i32, h as i32);
        let mut b = s.launch_builder(&self.i420_to_rgba);
        b.arg(&yuv).arg(&out).arg(&wi).arg(&hi);
        // SAFETY: yuv holds i420_len(w, h) bytes, out w * h pixels.
        unsafe { b.launch(grid2d(w.div_ceil(2), h.div_ceil(2), 16, 16)) }.map(drop)
    }

    pub fn rgba_to_i420(&self, s: &CudaStream, rgba: u64, yuv: u64, w: usize, h: usize) -> Result<(), DriverError> {
        let (wi, hi) = (w as i32, h as i32);
        let mut b = s.launch_builder(&self.rgba_to_i420);
        b.arg(&rgba).arg(&yuv).arg(&wi).arg(&hi);
        // SAFETY: as i420_to_rgba.
        unsafe { b.launch(grid2d(w.div_ceil(2), h.div_ceil(2), 16, 16)) }.map(drop)
    }

    pub fn row_hash(
        &self,
        s: &CudaStream,
        data: u64,
        row_len: usize,
        rows: usize,
        out: u64,
    ) -> Result<(), DriverError> {
        let (rl, r) = (row_len as u32, rows as u32);
        let cfg = LaunchConfig { grid_dim: (div_up(rows, 128), 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        let mut b = s.launch_builder(&self.row_hash);
        b.arg(&data).arg(&rl).arg(&r).arg(&out);
        // SAFETY: data holds rows * row_len bytes (row_len a multiple of 4), out `rows` u64.
        unsafe { b.launch(cfg) }.map(drop)
    }
}
