//! H.264 decoding for publishers that send only H.264 (OBS's WHIP output), through Debian's
//! OpenH264 (`libopenh264.so.7`, 2.3), loaded at run time as libvpx is. Only decoding: the
//! processed video goes out in VP8, which every browser plays (a WHEP viewer negotiates its
//! own codec), so a `sendrecv` publisher must offer VP8.
//!
//! The declarations follow OpenH264 2.3's `wels/codec_api.h`, `codec_app_def.h` and
//! `codec_def.h`; offsets and sizes were checked with `offsetof`/`sizeof` against them.
use std::ffi::{c_int, c_long, c_uchar, c_uint, c_void};
use std::ptr;
use std::sync::OnceLock;

use super::vp8::{CodecError, I420Picture};

pub const LIBOPENH264: &str = "libopenh264.so.7";

/// `ERROR_CON_SLICE_MV_COPY_CROSS_IDR_FREEZE_RES_CHANGE`: what WebRTC's own OpenH264
/// decoder asks for, so a lost packet shows as a frozen slice, not a broken picture.
const ERROR_CONCEALMENT: c_int = 7;
/// `VIDEO_BITSTREAM_AVC`.
const BITSTREAM_AVC: c_int = 0;
/// `videoFormatI420`.
const FORMAT_I420: c_int = 23;

/// `SDecodingParam` (32 bytes).
#[repr(C)]
struct DecodingParam {
    file_name_restructed: *mut i8,
    cpu_load: c_uint,
    target_dq_layer: c_uchar,
    ec_active_idc: c_int,
    parse_only: bool,
    video_property_size: c_uint,
    video_bs_type: c_int,
}

/// `SBufferInfo` (72 bytes) with its `SSysMEMBuffer`.
#[repr(C)]
struct BufferInfo {
    buffer_status: c_int,
    in_bs_timestamp: u64,
    out_yuv_timestamp: u64,
    width: c_int,
    height: c_int,
    format: c_int,
    stride: [c_int; 2],
    dst: [*mut c_uchar; 3],
}

const _: () = {
    assert!(size_of::<DecodingParam>() == 32);
    assert!(std::mem::offset_of!(DecodingParam, ec_active_idc) == 16);
    assert!(std::mem::offset_of!(DecodingParam, video_property_size) == 24);
    assert!(size_of::<BufferInfo>() == 72);
    assert!(std::mem::offset_of!(BufferInfo, width) == 24);
    assert!(std::mem::offset_of!(BufferInfo, dst) == 48);
};

/// `ISVCDecoderVtbl`: the C view of the C++ interface, in declaration order.
#[repr(C)]
struct DecoderVtbl {
    initialize: unsafe extern "C" fn(*mut Decoder, *const DecodingParam) -> c_long,
    uninitialize: unsafe extern "C" fn(*mut Decoder) -> c_long,
    decode_frame: *const c_void,
    decode_frame_no_delay:
        unsafe extern "C" fn(*mut Decoder, *const c_uchar, c_int, *mut *mut c_uchar, *mut BufferInfo) -> c_int,
}

/// `ISVCDecoder` in C: a pointer to the vtable.
type Decoder = *const DecoderVtbl;

struct Api {
    create: unsafe extern "C" fn(*mut *mut Decoder) -> c_long,
    destroy: unsafe extern "C" fn(*mut Decoder),
    _lib: libloading::Library,
}

fn api() -> Result<&'static Api, CodecError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|e| CodecError(e.clone()))
}

fn load() -> Result<Api, String> {
    // SAFETY: loading OpenH264 runs its initialisers, which only set up its own state.
    let lib = unsafe { libloading::Library::new(LIBOPENH264) }
        .map_err(|e| format!("H.264 needs {LIBOPENH264}, which did not load ({e}); install Debian's libopenh264-7"))?;
    // SAFETY: both symbols are declared with their signatures from OpenH264 2.3's codec_api.h
    // and kept beside the library that owns them.
    let (create, destroy) = unsafe {
        (
            *lib.get(b"WelsCreateDecoder\0").map_err(|e| format!("{LIBOPENH264}: {e}"))?,
            *lib.get(b"WelsDestroyDecoder\0").map_err(|e| format!("{LIBOPENH264}: {e}"))?,
        )
    };
    Ok(Api { create, destroy, _lib: lib })
}

/// Whether H.264 publishers can be taken here, and if not, why.
pub fn available() -> Result<(), CodecError> {
    api().map(|_| ())
}

/// An OpenH264 decoder for one incoming track (Annex B access units, as str0m depacketises).
pub struct H264Decoder {
    decoder: *mut Decoder,
    api: &'static Api,
}

// SAFETY: an OpenH264 decoder has no thread affinity; it is used by one thread at a time
// (`&mut self`).
unsafe impl Send for H264Decoder {}

impl H264Decoder {
    pub fn new() -> Result<Self, CodecError> {
        let api = api()?;
        let mut decoder: *mut Decoder = ptr::null_mut();
        // SAFETY: WelsCreateDecoder writes a decoder pointer or leaves it null on failure.
        if unsafe { (api.create)(&mut decoder) } != 0 || decoder.is_null() {
            return Err(CodecError("OpenH264: WelsCreateDecoder failed".into()));
        }
        let param = DecodingParam {
            file_name_restructed: ptr::null_mut(),
            cpu_load: 0,
            target_dq_layer: u8::MAX,
            ec_active_idc: ERROR_CONCEALMENT,
            parse_only: false,
            video_property_size: 8,
            video_bs_type: BITSTREAM_AVC,
        };
        // SAFETY: `decoder` is a live decoder whose first word is its vtable.
        let rc = unsafe { ((**decoder).initialize)(decoder, &param) };
        if rc != 0 {
            // SAFETY: created above, destroyed once.
            unsafe { (api.destroy)(decoder) };
            return Err(CodecError(format!("OpenH264: Initialize failed ({rc})")));
        }
        Ok(H264Decoder { decoder, api })
    }

    /// Decode one access unit; true when it completed a picture (copied into `into`).
    pub fn decode(&mut self, frame: &[u8], into: &mut I420Picture) -> Result<bool, CodecError> {
        let len = c_int::try_from(frame.len()).map_err(|_| CodecError("H.264 frame over 2 GiB".into()))?;
        let mut planes: [*mut c_uchar; 3] = [ptr::null_mut(); 3];
        // SAFETY: BufferInfo is plain data; OpenH264 fills it.
        let mut info: BufferInfo = unsafe { std::mem::zeroed() };
        // SAFETY: `frame` is valid for `len` bytes; planes and info are writable.
        let state = unsafe {
            ((**self.decoder).decode_frame_no_delay)(self.decoder, frame.as_ptr(), len, planes.as_mut_ptr(), &mut info)
        };
        if state != 0 {
            return Err(CodecError(format!("H.264 decode: OpenH264 state {state:#x}")));
        }
        if info.buffer_status != 1 {
            return Ok(false);
        }
        if info.format != FORMAT_I420 {
            return Err(CodecError(format!("OpenH264 produced format {}, not I420", info.format)));
        }
        let planes = [info.dst[0].cast_const(), info.dst[1].cast_const(), info.dst[2].cast_const()];
        let strides = [info.stride[0] as usize, info.stride[1] as usize, info.stride[1] as usize];
        // SAFETY: OpenH264's I420 output holds width × height luma and the chroma planes at
        // the second stride, valid until the next decode call.
        unsafe { into.copy_from_planes(info.width as usize, info.height as usize, planes, strides) };
        Ok(true)
    }
}

impl Drop for H264Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`; uninitialised and destroyed once.
        unsafe {
            ((**self.decoder).uninitialize)(self.decoder);
            (self.api.destroy)(self.decoder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_or_no_picture_never_a_crash() {
        available().expect("libopenh264-7 (scripts/setup/test-deps.sh installs it)");
        let mut d = H264Decoder::new().unwrap();
        let mut pic = I420Picture { width: 0, height: 0, data: Vec::new() };
        let garbage = [0u8, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0xff, 0x13, 0x37];
        let shown = d.decode(&garbage, &mut pic).unwrap_or(false);
        assert!(!shown, "no picture from a slice without its SPS/PPS");
    }
}
