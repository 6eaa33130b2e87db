//! One publishing session's frames: decode every frame (VP8 frames depend on the ones
//! before), process only the newest picture (the others are dropped and counted: under
//! overload the video stays live instead of falling behind), encode, hand back to the driver.
//!
//! Processing shares the pod's device with `/process`: a worker slot is taken from the same
//! semaphore and the same busy-worker integral counts it, so the load-proportional signal
//! the autoscaler reads includes video sessions. Each frame reserves its working memory
//! from the same budget; a frame the budget cannot take is dropped.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::media::MediaTime;
use tokio::sync::mpsc;

use super::driver::PeerCommand;
use super::h264::H264Decoder;
use super::vp8::{CodecError, EncodedFrame, I420Picture, Vp8Decoder, Vp8Encoder};
use super::Session;
use crate::app::AppState;
use crate::device::{HostFrame, Job, JobInput, RawFormat};

/// Depacketised frames waiting for the decoder; beyond this the driver drops (and asks for
/// a key frame): two seconds of 30 fps video.
pub const INGRESS_FRAMES: usize = 60;

pub struct Incoming {
    pub codec: Codec,
    pub data: Arc<[u8]>,
    pub rtp_time: MediaTime,
    pub arrived: Instant,
    pub contiguous: bool,
}

/// The decoder for what the publisher sends: VP8 (browsers), H.264 (OBS).
enum VideoDecoder {
    Vp8(Vp8Decoder),
    H264(H264Decoder),
}

impl VideoDecoder {
    fn for_codec(codec: Codec) -> Result<Self, CodecError> {
        match codec {
            Codec::Vp8 => Ok(VideoDecoder::Vp8(Vp8Decoder::new()?)),
            Codec::H264 => Ok(VideoDecoder::H264(H264Decoder::new()?)),
            other => Err(CodecError(format!("no decoder for {other}"))),
        }
    }

    fn codec(&self) -> Codec {
        match self {
            VideoDecoder::Vp8(_) => Codec::Vp8,
            VideoDecoder::H264(_) => Codec::H264,
        }
    }

    fn decode(&mut self, frame: &[u8], into: &mut I420Picture) -> Result<bool, CodecError> {
        match self {
            VideoDecoder::Vp8(d) => d.decode(frame, into),
            VideoDecoder::H264(d) => d.decode(frame, into),
        }
    }
}

/// The newest decoded picture of a batch, with when its frame arrived.
struct Newest {
    picture: I420Picture,
    rtp_time: MediaTime,
    arrived: Instant,
}

pub async fn run(
    session: Arc<Session>,
    mut frames: mpsc::Receiver<Incoming>,
    app: AppState,
    driver: mpsc::UnboundedSender<PeerCommand>,
) {
    let mut decoder: Option<VideoDecoder> = None;
    let mut encoder: Option<Vp8Encoder> = None;
    let mut spare = I420Picture { width: 0, height: 0, data: Vec::new() };
    let mut batch = Vec::with_capacity(INGRESS_FRAMES);
    let webrtc = app.metrics().webrtc();
    while frames.recv_many(&mut batch, INGRESS_FRAMES).await > 0 {
        // Decode, in order, everything that arrived while the last picture was processed.
        let mut dec = decoder.take();
        let work = std::mem::take(&mut batch);
        let mut picture = std::mem::replace(&mut spare, I420Picture { width: 0, height: 0, data: Vec::new() });
        let Ok((dec, work, newest, shown, errors)) = tokio::task::spawn_blocking(move || {
            let (mut newest, mut shown, mut errors) = (None, 0u64, 0u64);
            for frame in &work {
                if dec.as_ref().is_none_or(|d| d.codec() != frame.codec) {
                    match VideoDecoder::for_codec(frame.codec) {
                        Ok(d) => dec = Some(d),
                        Err(e) => {
                            tracing::warn!(error = %e, "frame not decoded");
                            errors += 1;
                            continue;
                        }
                    }
                }
                let Some(d) = dec.as_mut() else { continue };
                match d.decode(&frame.data, &mut picture) {
                    Ok(true) => {
                        shown += 1;
                        newest = Some((frame.rtp_time, frame.arrived));
                    }
                    Ok(false) => {}
                    Err(_) => errors += 1,
                }
            }
            let newest = newest.map(|(rtp_time, arrived)| Newest { picture, rtp_time, arrived });
            (dec, work, newest, shown, errors)
        })
        .await
        else {
            tracing::error!(session = %session.id, "the decoder task failed");
            return;
        };
        decoder = dec;
        batch = work;
        batch.clear();
        if errors > 0 {
            session.decode_errors.fetch_add(errors, Ordering::Relaxed);
            webrtc.decode_errors(errors);
            let _ = driver.send(PeerCommand::NeedKeyframe { session: session.id.clone() });
        }
        let Some(newest) = newest else { continue };
        let skipped = shown.saturating_sub(1);
        if skipped > 0 {
            session.frames_dropped.fetch_add(skipped, Ordering::Relaxed);
            webrtc.frames_dropped(skipped);
        }
        match process(&session, &app, newest, encoder.take()).await {
            Ok((enc, picture, out, rtp_time, arrived)) => {
                encoder = Some(enc);
                spare = picture;
                for frame in out {
                    let frame: Arc<[u8]> = frame.data.into();
                    let sent = PeerCommand::Processed { session: session.id.clone(), frame, rtp_time, arrived };
                    if driver.send(sent).is_err() {
                        return;
                    }
                }
            }
            Err(why) => {
                session.frames_dropped.fetch_add(1, Ordering::Relaxed);
                webrtc.frames_dropped(1);
                tracing::debug!(session = %session.id, why, "frame dropped");
            }
        }
    }
}

type Processed = (Vp8Encoder, I420Picture, Vec<EncodedFrame>, MediaTime, Instant);

/// The effect chain on the device, then the encoder, for one picture.
async fn process(
    session: &Arc<Session>,
    app: &AppState,
    newest: Newest,
    encoder: Option<Vp8Encoder>,
) -> Result<Processed, String> {
    let Newest { mut picture, rtp_time, arrived } = newest;
    let (w, h) = (picture.width, picture.height);
    let device = app.device().clone();
    let need = device.working_bytes(w, h, Some(RawFormat::I420));
    let reservation = app.memory().try_reserve(need).map_err(|_| format!("memory budget full ({need} bytes)"))?;
    let worker = app.workers().acquire_owned().await.map_err(|_| "shutting down".to_string())?;
    *session.last_size.lock().unwrap_or_else(|p| p.into_inner()) = Some((w, h));
    let keyframe = session.force_keyframe.swap(false, Ordering::Relaxed);
    let kbps = session.target_kbps.load(Ordering::Relaxed);
    // The session's own plan (its blur weights made once), not a copy per frame.
    let session = session.clone();
    let busy = app.clone();
    tokio::task::spawn_blocking(move || {
        let _worker = worker;
        let _reservation = reservation;
        {
            let _busy = busy.metrics().enter_busy();
            let mut frame = HostFrame::Pooled(std::mem::take(&mut picture.data));
            let job = Job {
                width: w,
                height: h,
                iters: session.iters,
                plan: &session.plan,
                input: JobInput::Raw { format: RawFormat::I420, frame: &mut frame },
            };
            let done = device.process(job).map_err(|e| e.to_string());
            if let HostFrame::Pooled(data) = frame {
                picture.data = data;
            }
            done?;
        }
        let mut encoder = match encoder {
            Some(e) if e.size() == (w, h) => e,
            _ => Vp8Encoder::new(w, h, kbps).map_err(|e| e.to_string())?,
        };
        encoder.set_bitrate(kbps).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(1);
        let ts = rtp_time.rebase(str0m::media::Frequency::NINETY_KHZ).numer() as i64;
        encoder.encode(&mut picture.data, ts, keyframe, &mut out).map_err(|e| e.to_string())?;
        Ok((encoder, picture, out, rtp_time, arrived))
    })
    .await
    .map_err(|e| format!("processing task failed: {e}"))?
}
