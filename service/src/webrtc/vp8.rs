//! VP8 through Debian's libvpx (`libvpx.so.7`, libvpx 1.12), loaded at run time with
//! `libloading` as NVRTC is: the binary builds on a machine without libvpx (the rehearsal
//! needs none), and `serve` says what to install when a WebRTC session needs it.
//!
//! The declarations below follow libvpx 1.12's headers (`vpx/vpx_image.h`,
//! `vpx/vpx_encoder.h`, `vpx/vpx_decoder.h`, `vpx/vp8cx.h`); every offset and size was
//! checked with `offsetof`/`sizeof` against those headers, and `_init_ver` makes libvpx
//! itself refuse a library whose ABI differs (`VPX_CODEC_ABI_MISMATCH`), so a different
//! libvpx is an error message, never memory corruption.
use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

/// The library file, and what to install where it is missing.
pub const LIBVPX: &str = "libvpx.so.7";
const INSTALL_HINT: &str = "install Debian's libvpx7 (apt-get install libvpx7)";

/// `VPX_DECODER_ABI_VERSION` and `VPX_ENCODER_ABI_VERSION` of libvpx 1.12.
const DECODER_ABI: c_int = 12;
const ENCODER_ABI: c_int = 25;
const IMG_FMT_I420: c_int = 0x102;
const CX_FRAME_PKT: c_int = 0;
const EFLAG_FORCE_KF: c_long = 1;
const DL_REALTIME: c_ulong = 1;
const FRAME_IS_KEY: u32 = 1;
const VP8E_SET_CPUUSED: c_int = 13;
const RC_CBR: c_int = 1;
const KF_AUTO: c_int = 1;
const ERROR_RESILIENT_DEFAULT: u32 = 1;

/// `vpx_codec_ctx_t`: 56 bytes that libvpx fills and reads; we only hold it.
#[repr(C, align(8))]
struct CodecCtx([u8; 56]);

/// `vpx_image_t` (136 bytes).
#[repr(C)]
struct Image {
    fmt: c_int,
    cs: c_int,
    range: c_int,
    w: c_uint,
    h: c_uint,
    bit_depth: c_uint,
    d_w: c_uint,
    d_h: c_uint,
    r_w: c_uint,
    r_h: c_uint,
    x_chroma_shift: c_uint,
    y_chroma_shift: c_uint,
    planes: [*mut u8; 4],
    stride: [c_int; 4],
    bps: c_int,
    user_priv: *mut c_void,
    img_data: *mut u8,
    img_data_owner: c_int,
    self_allocd: c_int,
    fb_priv: *mut c_void,
}

/// `vpx_codec_enc_cfg_t` (504 bytes): the fields we set, in place, then the rest as bytes
/// that `vpx_codec_enc_config_default` fills.
#[repr(C)]
struct EncCfg {
    g_usage: c_uint,
    g_threads: c_uint,
    g_profile: c_uint,
    g_w: c_uint,
    g_h: c_uint,
    g_bit_depth: c_int,
    g_input_bit_depth: c_uint,
    g_timebase: (c_int, c_int),
    g_error_resilient: u32,
    g_pass: c_int,
    g_lag_in_frames: c_uint,
    rc_dropframe_thresh: c_uint,
    _resize_and_scaling: [c_uint; 5],
    rc_end_usage: c_int,
    _twopass_stats: [u64; 4],
    rc_target_bitrate: c_uint,
    rc_min_quantizer: c_uint,
    rc_max_quantizer: c_uint,
    rc_undershoot_pct: c_uint,
    rc_overshoot_pct: c_uint,
    rc_buf_sz: c_uint,
    rc_buf_initial_sz: c_uint,
    rc_buf_optimal_sz: c_uint,
    _two_pass_vbr: [c_uint; 4],
    kf_mode: c_int,
    kf_min_dist: c_uint,
    kf_max_dist: c_uint,
    _rest: [u8; 504 - 172],
}

/// `vpx_codec_cx_pkt_t` (136 bytes) as far as a frame packet goes.
#[repr(C)]
struct CxPkt {
    kind: c_int,
    buf: *const u8,
    sz: usize,
    pts: i64,
    duration: c_ulong,
    flags: u32,
}

/// `vpx_codec_dec_cfg_t`.
#[repr(C)]
struct DecCfg {
    threads: c_uint,
    w: c_uint,
    h: c_uint,
}

const _: () = {
    assert!(size_of::<CodecCtx>() == 56);
    assert!(size_of::<Image>() == 136);
    assert!(std::mem::offset_of!(Image, planes) == 48 && std::mem::offset_of!(Image, stride) == 80);
    assert!(size_of::<EncCfg>() == 504);
    assert!(std::mem::offset_of!(EncCfg, g_timebase) == 28);
    assert!(std::mem::offset_of!(EncCfg, rc_end_usage) == 72);
    assert!(std::mem::offset_of!(EncCfg, rc_target_bitrate) == 112);
    assert!(std::mem::offset_of!(EncCfg, kf_max_dist) == 168);
    assert!(std::mem::offset_of!(CxPkt, flags) == 40);
    assert!(size_of::<DecCfg>() == 12);
};

type Iface = *const c_void;

/// The libvpx functions we call, resolved once.
struct Api {
    vp8_dx: unsafe extern "C" fn() -> Iface,
    vp8_cx: unsafe extern "C" fn() -> Iface,
    dec_init: unsafe extern "C" fn(*mut CodecCtx, Iface, *const DecCfg, c_long, c_int) -> c_int,
    decode: unsafe extern "C" fn(*mut CodecCtx, *const u8, c_uint, *mut c_void, c_long) -> c_int,
    get_frame: unsafe extern "C" fn(*mut CodecCtx, *mut *const c_void) -> *const Image,
    enc_config_default: unsafe extern "C" fn(Iface, *mut EncCfg, c_uint) -> c_int,
    enc_init: unsafe extern "C" fn(*mut CodecCtx, Iface, *const EncCfg, c_long, c_int) -> c_int,
    enc_config_set: unsafe extern "C" fn(*mut CodecCtx, *const EncCfg) -> c_int,
    encode: unsafe extern "C" fn(*mut CodecCtx, *const Image, i64, c_ulong, c_long, c_ulong) -> c_int,
    get_cx_data: unsafe extern "C" fn(*mut CodecCtx, *mut *const c_void) -> *const CxPkt,
    control: unsafe extern "C" fn(*mut CodecCtx, c_int, ...) -> c_int,
    destroy: unsafe extern "C" fn(*mut CodecCtx) -> c_int,
    error: unsafe extern "C" fn(*const CodecCtx) -> *const c_char,
    error_detail: unsafe extern "C" fn(*const CodecCtx) -> *const c_char,
    img_wrap: unsafe extern "C" fn(*mut Image, c_int, c_uint, c_uint, c_uint, *mut u8) -> *mut Image,
    _lib: libloading::Library,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

fn api() -> Result<&'static Api, CodecError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|e| CodecError(e.clone()))
}

/// Whether VP8 can be used here, and if not, why (for `serve`'s start-up log and `/`).
pub fn available() -> Result<(), CodecError> {
    api().map(|_| ())
}

fn load() -> Result<Api, String> {
    // SAFETY: loading libvpx runs its initialisers, which only set up its own tables.
    let lib = unsafe { libloading::Library::new(LIBVPX) }
        .map_err(|e| format!("VP8 needs {LIBVPX}, which did not load ({e}); {INSTALL_HINT}"))?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the symbol is declared above with its signature from libvpx 1.12's
            // headers; the function pointer is kept beside the library that owns it.
            *unsafe { lib.get($name) }.map_err(|e| format!("{LIBVPX} lacks {}: {e}", stringify!($name)))?
        };
    }
    Ok(Api {
        vp8_dx: sym!(b"vpx_codec_vp8_dx\0"),
        vp8_cx: sym!(b"vpx_codec_vp8_cx\0"),
        dec_init: sym!(b"vpx_codec_dec_init_ver\0"),
        decode: sym!(b"vpx_codec_decode\0"),
        get_frame: sym!(b"vpx_codec_get_frame\0"),
        enc_config_default: sym!(b"vpx_codec_enc_config_default\0"),
        enc_init: sym!(b"vpx_codec_enc_init_ver\0"),
        enc_config_set: sym!(b"vpx_codec_enc_config_set\0"),
        encode: sym!(b"vpx_codec_encode\0"),
        get_cx_data: sym!(b"vpx_codec_get_cx_data\0"),
        control: sym!(b"vpx_codec_control_\0"),
        destroy: sym!(b"vpx_codec_destroy\0"),
        error: sym!(b"vpx_codec_error\0"),
        error_detail: sym!(b"vpx_codec_error_detail\0"),
        img_wrap: sym!(b"vpx_img_wrap\0"),
        _lib: lib,
    })
}

/// libvpx's own words for the last error of `ctx`.
fn last_error(api: &Api, ctx: &CodecCtx, what: &str) -> CodecError {
    let text = |p: *const c_char| {
        // SAFETY: libvpx returns NULL or a NUL-terminated string it owns, valid until the
        // next call on this context; we copy it at once.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    // SAFETY: `ctx` was initialised by libvpx (or zeroed, which vpx_codec_error accepts).
    let (error, detail) = unsafe { (text((api.error)(ctx)), text((api.error_detail)(ctx))) };
    let mut msg = format!("{what}: {}", error.unwrap_or_else(|| "unknown error".into()));
    if let Some(d) = detail {
        msg.push_str(&format!(" ({d})"));
    }
    CodecError(msg)
}

/// A decoded picture copied out of libvpx into one contiguous I420 buffer (the layout
/// [`crate::i420`] and the devices take).
#[derive(Debug, Clone)]
pub struct I420Picture {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl I420Picture {
    /// Copy a decoder's picture (Y, U, V planes, each row `stride` bytes apart) into this
    /// packed buffer, reusing its allocation.
    ///
    /// # Safety
    /// `planes[i]` must point to `rows` rows of at least the plane's width, `strides[i]`
    /// bytes apart, valid for the call: Y is `width` × `height`, U and V are
    /// [`crate::i420::chroma_dims`].
    pub(super) unsafe fn copy_from_planes(
        &mut self,
        width: usize,
        height: usize,
        planes: [*const u8; 3],
        strides: [usize; 3],
    ) {
        let (cw, ch) = crate::i420::chroma_dims(width, height);
        self.width = width;
        self.height = height;
        self.data.clear();
        self.data.reserve(crate::i420::i420_len(width, height));
        for ((plane, stride), (pw, ph)) in planes.into_iter().zip(strides).zip([(width, height), (cw, ch), (cw, ch)]) {
            for row in 0..ph {
                // SAFETY: the caller's promise: `ph` rows of `pw` bytes, `stride` apart.
                let line = unsafe { std::slice::from_raw_parts(plane.add(row * stride), pw) };
                self.data.extend_from_slice(line);
            }
        }
    }
}

/// A VP8 decoder for one incoming track.
pub struct Vp8Decoder {
    ctx: Box<CodecCtx>,
    api: &'static Api,
}

// SAFETY: a libvpx context has no thread affinity; it is used by one thread at a time
// (`&mut self`), which is all libvpx asks.
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    pub fn new() -> Result<Self, CodecError> {
        let api = api()?;
        let mut ctx = Box::new(CodecCtx([0; 56]));
        let cfg = DecCfg { threads: 1, w: 0, h: 0 };
        // SAFETY: ctx and cfg are valid for the call; the ABI version makes libvpx refuse a
        // layout other than the one declared here.
        let rc = unsafe { (api.dec_init)(&mut *ctx, (api.vp8_dx)(), &cfg, 0, DECODER_ABI) };
        if rc != 0 {
            return Err(last_error(api, &ctx, "VP8 decoder init"));
        }
        Ok(Vp8Decoder { ctx, api })
    }

    /// Decode one whole frame (a depacketised VP8 frame); `Ok(None)` when libvpx shows no
    /// picture for it. The picture is written into `into` (resized), so its buffer is reused.
    pub fn decode(&mut self, frame: &[u8], into: &mut I420Picture) -> Result<bool, CodecError> {
        let len = c_uint::try_from(frame.len()).map_err(|_| CodecError("VP8 frame over 4 GiB".into()))?;
        // SAFETY: `frame` is valid for `len` bytes during the call; the context is ours.
        let rc = unsafe { (self.api.decode)(&mut *self.ctx, frame.as_ptr(), len, ptr::null_mut(), 0) };
        if rc != 0 {
            return Err(last_error(self.api, &self.ctx, "VP8 decode"));
        }
        let mut iter: *const c_void = ptr::null();
        let mut shown = false;
        loop {
            // SAFETY: iterating the decoder's output queue as its API documents.
            let img = unsafe { (self.api.get_frame)(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                return Ok(shown);
            }
            // SAFETY: libvpx returned a valid image, owned by the decoder until the next decode.
            let img = unsafe { &*img };
            copy_planes(img, into)?;
            shown = true;
        }
    }
}

/// Copy an I420 `vpx_image_t` (planes with strides) into a packed buffer.
fn copy_planes(img: &Image, into: &mut I420Picture) -> Result<(), CodecError> {
    if img.fmt != IMG_FMT_I420 {
        return Err(CodecError(format!("VP8 decoder produced image format {:#x}, not I420", img.fmt)));
    }
    let planes = [img.planes[0].cast_const(), img.planes[1].cast_const(), img.planes[2].cast_const()];
    let strides = [img.stride[0] as usize, img.stride[1] as usize, img.stride[2] as usize];
    // SAFETY: an I420 vpx_image_t's planes hold d_w × d_h luma and the chroma dimensions
    // below it, each row `stride` bytes apart, owned by the decoder until its next call.
    unsafe { into.copy_from_planes(img.d_w as usize, img.d_h as usize, planes, strides) };
    Ok(())
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed once.
        unsafe { (self.api.destroy)(&mut *self.ctx) };
    }
}

/// A VP8 real-time encoder for one outgoing track; it re-initialises itself when the frame
/// size changes and follows the bitrate it is given.
pub struct Vp8Encoder {
    ctx: Box<CodecCtx>,
    cfg: Box<EncCfg>,
    api: &'static Api,
    size: (usize, usize),
    pts: i64,
}

// SAFETY: as for the decoder: one thread at a time, through `&mut self`.
unsafe impl Send for Vp8Encoder {}

/// One encoded frame.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    pub keyframe: bool,
}

impl Vp8Encoder {
    pub fn new(width: usize, height: usize, bitrate_kbps: u32) -> Result<Self, CodecError> {
        let api = api()?;
        // SAFETY: EncCfg is plain integers and bytes; all zeros is a valid value that
        // vpx_codec_enc_config_default then overwrites.
        let mut cfg: Box<EncCfg> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: cfg is a valid, writable 504-byte vpx_codec_enc_cfg_t.
        let rc = unsafe { (api.enc_config_default)((api.vp8_cx)(), &mut *cfg, 0) };
        if rc != 0 {
            return Err(CodecError(format!("VP8 encoder defaults: libvpx error {rc}")));
        }
        cfg.g_w = width as c_uint;
        cfg.g_h = height as c_uint;
        // RTP's 90 kHz clock: pts are given in its units.
        cfg.g_timebase = (1, 90_000);
        cfg.g_threads = 1;
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = ERROR_RESILIENT_DEFAULT;
        cfg.rc_end_usage = RC_CBR;
        cfg.rc_target_bitrate = bitrate_kbps.max(50);
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_sz = 1000;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_dropframe_thresh = 0;
        cfg.kf_mode = KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = 3000;
        let mut ctx = Box::new(CodecCtx([0; 56]));
        // SAFETY: ctx and cfg are valid; the ABI version guards the layout.
        let rc = unsafe { (api.enc_init)(&mut *ctx, (api.vp8_cx)(), &*cfg, 0, ENCODER_ABI) };
        if rc != 0 {
            return Err(last_error(api, &ctx, &format!("VP8 encoder init ({width}x{height})")));
        }
        // Real time on few cores: speed over quality (WebRTC's own choice for VP8 is -6..-12).
        // SAFETY: VP8E_SET_CPUUSED takes one int, as the variadic control call passes it.
        unsafe { (api.control)(&mut *ctx, VP8E_SET_CPUUSED, -8 as c_int) };
        Ok(Vp8Encoder { ctx, cfg, api, size: (width, height), pts: 0 })
    }

    pub fn size(&self) -> (usize, usize) {
        self.size
    }

    /// Follow the bandwidth estimate (kbit/s) from the next frame on.
    pub fn set_bitrate(&mut self, kbps: u32) -> Result<(), CodecError> {
        let kbps = kbps.max(50);
        if self.cfg.rc_target_bitrate == kbps {
            return Ok(());
        }
        self.cfg.rc_target_bitrate = kbps;
        // SAFETY: the context and the configuration it was initialised with are ours.
        let rc = unsafe { (self.api.enc_config_set)(&mut *self.ctx, &*self.cfg) };
        if rc != 0 {
            return Err(last_error(self.api, &self.ctx, "VP8 bitrate change"));
        }
        Ok(())
    }

    pub fn bitrate_kbps(&self) -> u32 {
        self.cfg.rc_target_bitrate
    }

    /// Encode one packed I420 picture of the encoder's size; `rtp_time` in 90 kHz units.
    pub fn encode(
        &mut self,
        picture: &mut [u8],
        rtp_time: i64,
        keyframe: bool,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), CodecError> {
        let (w, h) = self.size;
        if picture.len() != crate::i420::i420_len(w, h) {
            return Err(CodecError(format!("{} bytes is not a {w}x{h} I420 picture", picture.len())));
        }
        // SAFETY: Image is plain data; vpx_img_wrap fills every field it uses.
        let mut img: Image = unsafe { std::mem::zeroed() };
        // SAFETY: `picture` holds a packed w×h I420 picture (checked above) and outlives the
        // encode call; alignment 1 tells libvpx the planes are packed.
        let wrapped =
            unsafe { (self.api.img_wrap)(&mut img, IMG_FMT_I420, w as c_uint, h as c_uint, 1, picture.as_mut_ptr()) };
        if wrapped.is_null() {
            return Err(CodecError(format!("libvpx could not wrap a {w}x{h} I420 picture")));
        }
        // Odd sizes: vpx_img_wrap rounds the chroma stride as we pack it ((w + 1) / 2).
        let pts = rtp_time.max(self.pts + 1);
        self.pts = pts;
        let flags = if keyframe { EFLAG_FORCE_KF } else { 0 };
        // SAFETY: img points into `picture`, valid for the call; the context is ours.
        let rc = unsafe { (self.api.encode)(&mut *self.ctx, &img, pts, 1, flags, DL_REALTIME) };
        if rc != 0 {
            return Err(last_error(self.api, &self.ctx, "VP8 encode"));
        }
        let mut iter: *const c_void = ptr::null();
        loop {
            // SAFETY: iterating the encoder's packet list as its API documents.
            let pkt = unsafe { (self.api.get_cx_data)(&mut *self.ctx, &mut iter) };
            if pkt.is_null() {
                return Ok(());
            }
            // SAFETY: a packet libvpx returned, valid until the next encode call.
            let pkt = unsafe { &*pkt };
            if pkt.kind == CX_FRAME_PKT {
                // SAFETY: a frame packet's buffer holds `sz` bytes.
                let data = unsafe { std::slice::from_raw_parts(pkt.buf, pkt.sz) }.to_vec();
                out.push(EncodedFrame { data, keyframe: pkt.flags & FRAME_IS_KEY != 0 });
            }
        }
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { (self.api.destroy)(&mut *self.ctx) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gradient with a moving square, so the encoder has something to code.
    fn picture(w: usize, h: usize, t: usize) -> Vec<u8> {
        let (cw, ch) = crate::i420::chroma_dims(w, h);
        let mut p = vec![128u8; crate::i420::i420_len(w, h)];
        for y in 0..h {
            for x in 0..w {
                let inside = (x + t * 4) % w < 32 && y < 32;
                p[y * w + x] = if inside { 235 } else { (x * 200 / w + 16) as u8 };
            }
        }
        p[w * h..w * h + cw * ch].fill(90);
        p
    }

    #[test]
    fn vp8_round_trip_keeps_the_picture() {
        available().expect("libvpx7 (scripts/setup/test-deps.sh installs it)");
        let (w, h) = (160, 90);
        let mut enc = Vp8Encoder::new(w, h, 500).unwrap();
        let mut dec = Vp8Decoder::new().unwrap();
        let mut out = Vec::new();
        let mut pic = I420Picture { width: 0, height: 0, data: Vec::new() };
        for t in 0..10 {
            let mut p = picture(w, h, t);
            out.clear();
            enc.encode(&mut p, t as i64 * 3000, t == 0, &mut out).unwrap();
            assert_eq!(out.len(), 1, "one frame out per frame in (no lag)");
            assert_eq!(out[0].keyframe, t == 0, "frame {t}");
            assert!(dec.decode(&out[0].data, &mut pic).unwrap());
            assert_eq!((pic.width, pic.height), (w, h));
            let err: f64 = p[..w * h].iter().zip(&pic.data[..w * h]).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum();
            assert!(err / ((w * h) as f64) < 6.0, "mean luma error {} at frame {t}", err / ((w * h) as f64));
        }
        enc.set_bitrate(200).unwrap();
        assert_eq!(enc.bitrate_kbps(), 200);
        assert!(dec.decode(b"not vp8 at all", &mut pic).is_err(), "garbage is an error, not a crash");
    }
}
