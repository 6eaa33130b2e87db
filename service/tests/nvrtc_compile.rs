//! Builds every CUDA kernel (`service/kernels/*.cu`) with NVRTC, exactly as the service
//! does at start-up (same function, same options), on a machine without a GPU.
//!
//! NVRTC comes from the `nvidia-cuda-nvrtc` wheel that `scripts/setup/test-deps.sh`
//! installs (it exports `RTC_TEST_NVRTC`); `RTC_NVRTC_LIB` works too. A missing NVRTC is a
//! failure, not a skip, and so is any compiler warning.
use rtc_service::device::cuda::nvrtc::{compile, Compiled, Nvrtc, Target, KERNELS};

fn load_nvrtc() -> Nvrtc {
    let hint = "run `eval \"$(scripts/setup/test-deps.sh)\"` (installs the nvidia-cuda-nvrtc wheel and exports RTC_TEST_NVRTC), or set RTC_NVRTC_LIB=/path/to/libnvrtc.so.N";
    let explicit =
        ["RTC_TEST_NVRTC", "RTC_NVRTC_LIB"].iter().find_map(|v| std::env::var_os(v).filter(|p| !p.is_empty()));
    let result = match explicit {
        Some(path) => Nvrtc::load(&path),
        None => Nvrtc::find(&[13, 12]),
    };
    match result {
        Ok(n) => n,
        Err(e) => panic!("NVRTC is needed to test the CUDA kernels and was not found: {e}\n{hint}"),
    }
}

fn check(compiled: Result<Compiled, impl std::fmt::Display>, what: &str) -> Compiled {
    let c = compiled.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(c.log.is_empty(), "{what}: NVRTC warnings:\n{}", c.log);
    assert!(!c.image.is_empty(), "{what}: empty output");
    c
}

fn build_all(nvrtc: &Nvrtc, target: Target) {
    for kernel in KERNELS {
        let what = format!(
            "{} for {target:?} with NVRTC {}.{} ({})",
            kernel.file, nvrtc.version.0, nvrtc.version.1, nvrtc.name
        );
        let c = check(compile(nvrtc, kernel, &target), &what);
        if c.is_ptx() {
            let ptx = c.ptx_text();
            for f in kernel.functions {
                assert!(ptx.contains(&format!(".entry {f}(")), "{what}: no entry point {f} in the PTX");
            }
            // `--fmad=false`: no contracted multiply-adds, so float results round as on the CPU.
            assert!(!ptx.contains("fma.rn.f32"), "{what}: PTX contains fused multiply-adds");
            if let Target::Ptx(Some(arch)) = &target {
                assert!(
                    ptx.contains(&format!(".target {}", arch.replace("compute", "sm"))),
                    "{what}: PTX is not for {arch}"
                );
            }
        } else {
            // An ELF image.
            assert_eq!(&c.image[..4], b"\x7fELF", "{what}: not a cubin");
        }
        eprintln!("ok: {what}: {} bytes", c.image.len());
    }
}

#[test]
fn every_kernel_compiles_to_ptx_for_compute_90_without_warnings() {
    build_all(&load_nvrtc(), Target::Ptx(Some("compute_90".into())));
}

#[test]
fn every_kernel_compiles_to_ptx_for_the_default_arch_without_warnings() {
    build_all(&load_nvrtc(), Target::Ptx(None));
}

#[test]
fn every_kernel_compiles_to_a_cubin_for_sm_90_as_the_service_does_on_h100() {
    build_all(&load_nvrtc(), Target::Cubin("sm_90".into()));
}

#[test]
fn a_broken_kernel_is_an_error_carrying_the_log() {
    let nvrtc = load_nvrtc();
    let broken = rtc_service::device::cuda::nvrtc::KernelSource {
        file: "broken.cu",
        source: "#include \"common.cuh\"\nextern \"C\" __global__ void k(int *p) { p[0] = undefined_name; }\n",
        functions: &["k"],
    };
    let err = compile(&nvrtc, &broken, &Target::Ptx(None)).expect_err("must not compile").to_string();
    assert!(err.contains("broken.cu") && err.contains("undefined_name"), "{err}");
    // And a warning is visible in the log of a successful build (what the tests above reject).
    let warns = rtc_service::device::cuda::nvrtc::KernelSource {
        file: "warns.cu",
        source:
            "#include \"common.cuh\"\nextern \"C\" __global__ void k(int *p) { int unused_variable = 3; p[0] = 1; }\n",
        functions: &["k"],
    };
    let c = compile(&nvrtc, &warns, &Target::Ptx(None)).expect("compiles with a warning");
    assert!(c.log.contains("unused_variable"), "expected a warning in the log, got {:?}", c.log);
}

#[test]
fn parameter_layouts_match_the_kernels() {
    // The constant-memory slot sizes the host writes must match the CUDA declarations.
    use rtc_service::device::cuda::kernels::{BLUR_SLOT_BYTES, COLOR_SLOT_BYTES, MAX_RADIUS, SLOTS};
    let header = rtc_service::device::cuda::nvrtc::COMMON_HEADER.1;
    assert!(header.contains(&format!("#define RTC_SLOTS {SLOTS}")));
    assert!(header.contains(&format!("#define RTC_MAX_RADIUS {MAX_RADIUS}")));
    assert!(header
        .contains(&format!("#define RTC_FUSED_MAX_RADIUS {}", rtc_service::device::cuda::kernels::FUSED_MAX_RADIUS)));
    assert_eq!(BLUR_SLOT_BYTES, (MAX_RADIUS + 1) * 4);
    // The host writes the blur weights as u32 (`effects::GaussianKernel::weights`).
    let blur = KERNELS.iter().find(|k| k.file == "blur.cu").expect("blur.cu is a kernel");
    assert!(blur.source.contains("__constant__ u32 c_blur_weights[RTC_SLOTS][RTC_MAX_RADIUS + 1];"));
    assert_eq!(COLOR_SLOT_BYTES, 12 * 4 + 3 * 256);
    // The largest fused tile fits the 48 KiB of shared memory a block gets without opt-in.
    assert!(
        rtc_service::device::cuda::kernels::fused_smem_bytes(rtc_service::device::cuda::kernels::FUSED_MAX_RADIUS)
            <= 48 * 1024
    );
    // sigma 20 (the maximum) needs radius 60.
    assert_eq!(rtc_service::effects::gaussian_weights(20.0).len(), MAX_RADIUS + 1);
}
