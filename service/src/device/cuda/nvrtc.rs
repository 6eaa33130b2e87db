//! NVRTC, loaded at run time with `libloading` (not through cudarc, whose loader panics
//! when the library is missing and cannot be pointed at a path), and the one function
//! that builds the kernels: the service and `tests/nvrtc_compile.rs` both call
//! [`compile`], with the same options.
//!
//! Library names: CUDA 13 ships `libnvrtc.so.13` (PyPI wheel `nvidia-cuda-nvrtc`), CUDA 12
//! `libnvrtc.so.12` (`nvidia-cuda-nvrtc-cu12`). `RTC_NVRTC_LIB` names the file explicitly.
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::ptr;

/// Environment variable naming the NVRTC library file to load (service and tests).
pub const NVRTC_LIB_ENV: &str = "RTC_NVRTC_LIB";

/// One kernel source file of `service/kernels/`.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// File name, also the NVRTC program name (so compiler messages name the file).
    pub file: &'static str,
    pub source: &'static str,
    /// The `extern "C" __global__` functions the service loads from it.
    pub functions: &'static [&'static str],
}

/// The header every kernel file includes.
pub const COMMON_HEADER: (&str, &str) = ("common.cuh", include_str!("../../../kernels/common.cuh"));

/// Every kernel file, in the order the service loads them.
pub const KERNELS: &[KernelSource] = &[
    KernelSource { file: "synth.cu", source: include_str!("../../../kernels/synth.cu"), functions: &["synth_frame"] },
    KernelSource {
        file: "blur.cu",
        source: include_str!("../../../kernels/blur.cu"),
        functions: &["blur_fused", "blur_h", "blur_v"],
    },
    KernelSource {
        file: "translate.cu",
        source: include_str!("../../../kernels/translate.cu"),
        functions: &["translate_bilinear"],
    },
    KernelSource { file: "color.cu", source: include_str!("../../../kernels/color.cu"), functions: &["color_grade"] },
    KernelSource {
        file: "i420.cu",
        source: include_str!("../../../kernels/i420.cu"),
        functions: &["i420_to_rgba", "rgba_to_i420"],
    },
    KernelSource {
        file: "checksum.cu",
        source: include_str!("../../../kernels/checksum.cu"),
        functions: &["row_hash"],
    },
];

/// Options for every build. `--fmad=false`: no multiply-add contraction, so each float
/// expression rounds as the CPU's (Rust never contracts), making the GPU bit-exact.
pub const COMMON_OPTIONS: &[&str] = &["--std=c++17", "--fmad=false"];

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// PTX for a virtual architecture (`Some("compute_90")`) or NVRTC's default one (`None`).
    Ptx(Option<String>),
    /// A cubin (SASS) for a real architecture, e.g. `sm_90`: what the service loads when
    /// NVRTC knows the device's architecture (no JIT at load, no PTX-version mismatch).
    Cubin(String),
}

impl Target {
    fn arch_option(&self) -> Option<String> {
        match self {
            Target::Ptx(Some(arch)) | Target::Cubin(arch) => Some(format!("--gpu-architecture={arch}")),
            Target::Ptx(None) => None,
        }
    }
}

/// The result of compiling one kernel file.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub file: &'static str,
    pub target: Target,
    /// PTX text (NUL-terminated) or cubin bytes.
    pub image: Vec<u8>,
    /// The compiler log, trimmed; non-empty means warnings.
    pub log: String,
}

impl Compiled {
    pub fn is_ptx(&self) -> bool {
        matches!(self.target, Target::Ptx(_))
    }

    /// The PTX as text (empty for a cubin).
    pub fn ptx_text(&self) -> &str {
        if !self.is_ptx() {
            return "";
        }
        let end = self.image.iter().position(|&b| b == 0).unwrap_or(self.image.len());
        std::str::from_utf8(&self.image[..end]).unwrap_or("")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NvrtcError {
    #[error("{0}")]
    Load(String),
    #[error("{file}: NVRTC {call} failed: {message}")]
    Call { file: String, call: &'static str, message: String },
    #[error("{file} ({target}): compile error: {log}")]
    Compile { file: String, target: String, log: String },
}

type Program = *mut c_void;
type FnCreate = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type FnCompile = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
type FnSize = unsafe extern "C" fn(Program, *mut usize) -> c_int;
type FnGet = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
type FnDestroy = unsafe extern "C" fn(*mut Program) -> c_int;
type FnErr = unsafe extern "C" fn(c_int) -> *const c_char;
type FnVersion = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
type FnNumArchs = unsafe extern "C" fn(*mut c_int) -> c_int;
type FnArchs = unsafe extern "C" fn(*mut c_int) -> c_int;

/// A loaded NVRTC library.
pub struct Nvrtc {
    /// What was loaded: a path or a library name resolved by the dynamic loader.
    pub name: String,
    pub version: (i32, i32),
    create: FnCreate,
    compile: FnCompile,
    log_size: FnSize,
    log: FnGet,
    ptx_size: FnSize,
    ptx: FnGet,
    cubin_size: FnSize,
    cubin: FnGet,
    destroy: FnDestroy,
    error_string: FnErr,
    num_archs: Option<FnNumArchs>,
    archs: Option<FnArchs>,
    // Keeps the function pointers above valid; dropped last.
    _lib: libloading::Library,
    _builtins: Option<libloading::Library>,
}

impl std::fmt::Debug for Nvrtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvrtc").field("name", &self.name).field("version", &self.version).finish()
    }
}

impl Nvrtc {
    /// Load NVRTC from a file path or a library name (`libnvrtc.so.13`).
    pub fn load(name_or_path: impl AsRef<Path>) -> Result<Self, NvrtcError> {
        let name_or_path = name_or_path.as_ref();
        let name = name_or_path.display().to_string();
        // NVRTC dlopens `libnvrtc-builtins.so.<major>.<minor>` by bare name at compile time;
        // outside the loader's search path (a pip wheel's directory) that fails unless the
        // builtins are already loaded, so load them first from beside the given file.
        let builtins = preload_builtins(name_or_path);
        // SAFETY: loading NVRTC runs its initialisers, which have no preconditions.
        let lib = unsafe { libloading::Library::new(name_or_path) }
            .map_err(|e| NvrtcError::Load(format!("{name} could not be loaded: {}", one_line(&e.to_string()))))?;
        // SAFETY: the types match the NVRTC C API (nvrtc.h), stable since CUDA 11.2.
        unsafe {
            let sym = |s: &str| -> Result<*const c_void, NvrtcError> {
                lib.get::<*const c_void>(s.as_bytes())
                    .map(|p| *p)
                    .map_err(|_| NvrtcError::Load(format!("{name} is not NVRTC (no symbol {s})")))
            };
            macro_rules! f {
                ($s:literal, $t:ty) => {
                    std::mem::transmute::<*const c_void, $t>(sym($s)?)
                };
            }
            let version_fn = f!("nvrtcVersion", FnVersion);
            let (mut major, mut minor) = (0, 0);
            version_fn(&mut major, &mut minor);
            let nvrtc = Nvrtc {
                version: (major, minor),
                create: f!("nvrtcCreateProgram", FnCreate),
                compile: f!("nvrtcCompileProgram", FnCompile),
                log_size: f!("nvrtcGetProgramLogSize", FnSize),
                log: f!("nvrtcGetProgramLog", FnGet),
                ptx_size: f!("nvrtcGetPTXSize", FnSize),
                ptx: f!("nvrtcGetPTX", FnGet),
                cubin_size: f!("nvrtcGetCUBINSize", FnSize),
                cubin: f!("nvrtcGetCUBIN", FnGet),
                destroy: f!("nvrtcDestroyProgram", FnDestroy),
                error_string: f!("nvrtcGetErrorString", FnErr),
                num_archs: sym("nvrtcGetNumSupportedArchs")
                    .ok()
                    .map(|p| std::mem::transmute::<*const c_void, FnNumArchs>(p)),
                archs: sym("nvrtcGetSupportedArchs").ok().map(|p| std::mem::transmute::<*const c_void, FnArchs>(p)),
                name,
                _lib: lib,
                _builtins: builtins,
            };
            Ok(nvrtc)
        }
    }

    /// Find NVRTC: `RTC_NVRTC_LIB` when set (and only it), else the names for the CUDA
    /// majors in `majors` (newest first), then the unversioned name. `Err` lists what was tried.
    pub fn find(majors: &[u32]) -> Result<Self, NvrtcError> {
        if let Some(path) = std::env::var_os(NVRTC_LIB_ENV).filter(|p| !p.is_empty()) {
            return Nvrtc::load(&path).map_err(|e| NvrtcError::Load(format!("{NVRTC_LIB_ENV}: {e}")));
        }
        let mut tried = Vec::new();
        for name in candidate_names(majors) {
            match Nvrtc::load(&name) {
                Ok(n) => return Ok(n),
                Err(_) => tried.push(name),
            }
        }
        Err(NvrtcError::Load(format!(
            "{} not found (NVRTC builds the kernels: install the CUDA NVRTC runtime or set {NVRTC_LIB_ENV}=/path/to/libnvrtc.so.N)",
            tried.join(" / ")
        )))
    }

    /// Architectures this NVRTC can build for (e.g. 75, 80, 90), if it can tell.
    pub fn supported_archs(&self) -> Vec<i32> {
        let (Some(num), Some(get)) = (self.num_archs, self.archs) else { return Vec::new() };
        let mut n: c_int = 0;
        // SAFETY: NVRTC writes one int, then `n` ints into a buffer of that size.
        unsafe {
            if num(&mut n) != 0 || n <= 0 || n > 1024 {
                return Vec::new();
            }
            let mut archs = vec![0 as c_int; n as usize];
            if get(archs.as_mut_ptr()) != 0 {
                return Vec::new();
            }
            archs
        }
    }

    fn err(&self, code: c_int) -> String {
        // SAFETY: nvrtcGetErrorString returns a static string for any code.
        unsafe {
            let p = (self.error_string)(code);
            if p.is_null() {
                format!("error {code}")
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
    }
}

/// Load `libnvrtc-builtins.so*` from the directory of `nvrtc` (when it is a path), so
/// NVRTC's own dlopen of the builtins by name finds the loaded copy.
fn preload_builtins(nvrtc: &Path) -> Option<libloading::Library> {
    let dir = nvrtc.parent().filter(|d| !d.as_os_str().is_empty())?;
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with("libnvrtc-builtins.so") && !n.contains(".alt.")
        })
        .collect();
    found.sort();
    // SAFETY: the builtins library has no initialisers with preconditions.
    found.iter().find_map(|p| unsafe { libloading::Library::new(p) }.ok())
}

/// Library names to try for these CUDA majors: `libnvrtc.so.13`, `libnvrtc.so.12`, then
/// `libnvrtc.so`.
pub fn candidate_names(majors: &[u32]) -> Vec<String> {
    let mut names: Vec<String> = majors.iter().map(|m| format!("libnvrtc.so.{m}")).collect();
    names.push("libnvrtc.so".into());
    names
}

/// Compile one kernel file for `target` with [`COMMON_OPTIONS`]. Returns the image and the
/// compiler log (warnings); a failed compile is an `Err` carrying the log.
pub fn compile(nvrtc: &Nvrtc, kernel: &KernelSource, target: &Target) -> Result<Compiled, NvrtcError> {
    let call_err = |call: &'static str, code: c_int| NvrtcError::Call {
        file: kernel.file.to_string(),
        call,
        message: nvrtc.err(code),
    };
    let c = |s: &str| CString::new(s).expect("kernel sources and options have no NUL bytes");
    let source = c(kernel.source);
    let name = c(kernel.file);
    let header_src = c(COMMON_HEADER.1);
    let header_name = c(COMMON_HEADER.0);
    let headers = [header_src.as_ptr()];
    let include_names = [header_name.as_ptr()];
    let mut options: Vec<CString> = COMMON_OPTIONS.iter().map(|o| c(o)).collect();
    if let Some(arch) = target.arch_option() {
        options.push(c(&arch));
    }
    let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();

    let mut prog: Program = ptr::null_mut();
    // SAFETY: every pointer passed lives until the end of this function; `prog` is
    // destroyed exactly once below.
    unsafe {
        let rc = (nvrtc.create)(&mut prog, source.as_ptr(), name.as_ptr(), 1, headers.as_ptr(), include_names.as_ptr());
        if rc != 0 {
            return Err(call_err("nvrtcCreateProgram", rc));
        }
        let result = (|| {
            let rc_compile = (nvrtc.compile)(prog, option_ptrs.len() as c_int, option_ptrs.as_ptr());
            let log = read_buf(prog, nvrtc.log_size, nvrtc.log).map_err(|rc| call_err("nvrtcGetProgramLog", rc))?;
            let log = String::from_utf8_lossy(&log).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string();
            if rc_compile != 0 {
                let log = if log.is_empty() { nvrtc.err(rc_compile) } else { log };
                return Err(NvrtcError::Compile { file: kernel.file.into(), target: format!("{target:?}"), log });
            }
            let image = match target {
                Target::Ptx(_) => {
                    read_buf(prog, nvrtc.ptx_size, nvrtc.ptx).map_err(|rc| call_err("nvrtcGetPTX", rc))?
                }
                Target::Cubin(_) => {
                    read_buf(prog, nvrtc.cubin_size, nvrtc.cubin).map_err(|rc| call_err("nvrtcGetCUBIN", rc))?
                }
            };
            Ok(Compiled { file: kernel.file, target: target.clone(), image, log })
        })();
        (nvrtc.destroy)(&mut prog);
        result
    }
}

/// Compile every kernel file for `target`, in parallel (NVRTC is thread-safe across
/// programs). Results in [`KERNELS`] order.
pub fn compile_all(nvrtc: &Nvrtc, target: &Target) -> Vec<Result<Compiled, NvrtcError>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = KERNELS.iter().map(|k| s.spawn(move || compile(nvrtc, k, target))).collect();
        handles
            .into_iter()
            .zip(KERNELS)
            .map(|(h, k)| {
                h.join().unwrap_or_else(|_| {
                    Err(NvrtcError::Call {
                        file: k.file.into(),
                        call: "compile",
                        message: "compiler thread panicked".into(),
                    })
                })
            })
            .collect()
    })
}

/// One of NVRTC's size-then-contents pairs (log, PTX, CUBIN) read into a buffer.
///
/// # Safety
/// `prog` is a live program of the library `size_fn` and `get_fn` come from, and the two are a
/// matching pair (the size one tells how many bytes the other writes).
unsafe fn read_buf(prog: Program, size_fn: FnSize, get_fn: FnGet) -> Result<Vec<u8>, c_int> {
    let mut size = 0usize;
    // SAFETY: the caller's contract; `size` is a valid place for the one usize it writes.
    let rc = unsafe { size_fn(prog, &mut size) };
    if rc != 0 {
        return Err(rc);
    }
    let mut buf = vec![0u8; size.max(1)];
    // SAFETY: `buf` holds at least `size` bytes, what the matching size call said it writes.
    let rc = unsafe { get_fn(prog, buf.as_mut_ptr().cast()) };
    if rc != 0 {
        return Err(rc);
    }
    buf.truncate(size);
    Ok(buf)
}

/// Collapse a message to one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
