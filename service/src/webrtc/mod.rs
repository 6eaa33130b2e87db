//! WebRTC in `serve`: a camera in, the processed video back (issue 31).
//!
//! - `whip`: signalling as WHIP does it (RFC 9725): an SDP offer `POST`ed, the answer
//!   `201 Created` with the session's `Location`; `DELETE` ends it. A `POST` of a receiving
//!   offer to a session's URL is a WHEP viewer of its processed video.
//! - `driver`: one task owns the pod's one UDP socket and every peer connection (str0m,
//!   sans-IO, ICE-lite): packets are demultiplexed to the peer that accepts them.
//! - `pipeline`: per publishing session, decode → the effect chain on the pod's device
//!   (sharing its workers with `/process`) → encode; the newest frame wins under overload.
//! - `ice_tcp`: the passive ICE-TCP fallback (RFC 6544 framing), which a `kubectl
//!   port-forward` to one pod can carry.
//! - `vp8`: libvpx, loaded at run time; `h264`: OpenH264's decoder, for OBS.
//! - `metrics`: sessions, frames in/out/dropped, per-frame latency, media bytes.
mod driver;
pub mod h264;
mod ice_tcp;
pub mod metrics;
mod pipeline;
pub mod vp8;
pub mod whip;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::effects::ChainPlan;
use crate::latency_window::LatencyWindow;

pub use driver::PeerCommand;

#[derive(Debug, Clone, Args)]
pub struct WebRtcArgs {
    /// The pod's one UDP port for every WebRTC session (port 0 picks a free one; the log
    /// says which). The manifests set 0.0.0.0:8443.
    #[arg(long, env = "RTC_WEBRTC_UDP", default_value = "0.0.0.0:0", value_name = "ADDR")]
    pub webrtc_udp: SocketAddr,

    /// The pod's ICE-TCP port (passive candidates), the fallback where UDP cannot pass: a
    /// `kubectl port-forward pod/NAME 8080 8443` carries a browser session to one pod, so
    /// a loopback candidate is offered beside the pod's. The manifests set 0.0.0.0:8443.
    #[arg(long, env = "RTC_WEBRTC_TCP", default_value = "0.0.0.0:0", value_name = "ADDR")]
    pub webrtc_tcp: SocketAddr,

    /// The address put in the ICE host candidate: what browsers send media to. Default: the
    /// pod's IP from POD_IP (the downward API), else the --webrtc-udp address, else
    /// 127.0.0.1 (this machine only; the log says so).
    #[arg(long, env = "RTC_WEBRTC_IP", value_name = "IP")]
    pub webrtc_ip: Option<IpAddr>,

    /// Publishing sessions at once; one more offer is answered 503 with Retry-After, so a
    /// client tries another pod.
    #[arg(long, env = "RTC_MAX_SESSIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_sessions: u32,

    /// WHEP viewers of one session at once.
    #[arg(long, env = "RTC_MAX_VIEWERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_viewers: u32,

    /// Most bitrate of the processed video, kbit/s; the encoder follows the bandwidth
    /// estimate below it.
    #[arg(long, env = "RTC_WEBRTC_MAX_KBPS", default_value_t = 1500, value_parser = clap::value_parser!(u32).range(100..=20_000))]
    pub webrtc_max_kbps: u32,

    /// A bearer token WHIP and WHEP requests must carry (`Authorization: Bearer TOKEN`).
    #[arg(long, env = "RTC_WEBRTC_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub webrtc_token: Option<String>,
}

impl WebRtcArgs {
    /// The candidate address: the flag, POD_IP, a specific bind address, or loopback.
    fn candidate_ip(&self) -> (IpAddr, Option<&'static str>) {
        if let Some(ip) = self.webrtc_ip {
            return (ip, None);
        }
        if let Some(ip) = std::env::var("POD_IP").ok().and_then(|v| v.parse().ok()) {
            return (ip, None);
        }
        if !self.webrtc_udp.ip().is_unspecified() {
            return (self.webrtc_udp.ip(), None);
        }
        (
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some("WebRTC candidates name 127.0.0.1: only this machine can send media; set --webrtc-ip or POD_IP"),
        )
    }
}

/// Why an offer was not taken: each becomes one HTTP answer in `whip`.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("{0}")]
    BadSdp(String),
    #[error("{0}")]
    NoCodec(String),
    #[error("{0}")]
    Full(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

/// What a publishing session shares between the HTTP layer, the driver and its pipeline.
pub struct Session {
    pub id: String,
    pub plan: ChainPlan,
    pub iters: u32,
    pub created: Instant,
    /// The encoder's target, from the bandwidth estimate (kbit/s).
    pub target_kbps: AtomicU32,
    /// Set by a viewer's PLI/FIR; the pipeline's next frame is a key frame.
    pub force_keyframe: AtomicBool,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub decode_errors: AtomicU64,
    pub last_size: Mutex<Option<(usize, usize)>>,
    pub latency: Mutex<LatencyWindow>,
    pub viewers: AtomicU32,
    /// The publishing slot of `--max-sessions`, freed when the session ends.
    _slot: OwnedSemaphorePermit,
}

impl Session {
    pub fn stats_json(&self, device: &crate::device::DeviceInfo) -> serde_json::Value {
        let (p50, p95) = {
            let window = self.latency.lock().unwrap_or_else(|p| p.into_inner());
            (window.quantile(0.5, Instant::now()), window.quantile(0.95, Instant::now()))
        };
        let size = *self.last_size.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "session": self.id,
            "device": device.kind,
            "device_name": device.name,
            "effects": self.plan.effects.iter().map(|e| e.name()).collect::<Vec<_>>(),
            "frames_in": self.frames_in.load(Ordering::Relaxed),
            "frames_out": self.frames_out.load(Ordering::Relaxed),
            "frames_dropped": self.frames_dropped.load(Ordering::Relaxed),
            "decode_errors": self.decode_errors.load(Ordering::Relaxed),
            "frame_p50_ms": (p50 * 1e4).round() / 10.0,
            "frame_p95_ms": (p95 * 1e4).round() / 10.0,
            "target_kbps": self.target_kbps.load(Ordering::Relaxed),
            "pixels": size.map(|(w, h)| format!("{w}x{h}")),
            "viewers": self.viewers.load(Ordering::Relaxed),
            "age_s": self.created.elapsed().as_secs(),
        })
    }
}

/// The WebRTC side of one `serve`: the driver's command channel and the sessions it runs.
#[derive(Clone)]
pub struct WebRtc {
    commands: mpsc::UnboundedSender<PeerCommand>,
    sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
    slots: Arc<Semaphore>,
    max_sessions: usize,
    max_viewers: u32,
    pub token: Option<String>,
    pub udp: SocketAddr,
    pub candidate: SocketAddr,
    pub tcp_candidates: Vec<SocketAddr>,
    /// Why VP8 cannot be used here (libvpx missing), shown by `/` and every offer.
    pub codec_problem: Option<String>,
}

impl WebRtc {
    /// Bind the UDP port and start the driver.
    pub async fn start(args: &WebRtcArgs, app: crate::app::AppState) -> anyhow::Result<Self> {
        let socket = tokio::net::UdpSocket::bind(args.webrtc_udp)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the WebRTC UDP port {} (--webrtc-udp): {e}", args.webrtc_udp))?;
        let udp = socket.local_addr()?;
        let (ip, warning) = args.candidate_ip();
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let candidate = SocketAddr::new(ip, udp.port());
        let codec_problem = vp8::available().err().map(|e| e.to_string());
        if let Some(why) = &codec_problem {
            tracing::warn!("WebRTC offers will be refused: {why}");
        }
        let tcp = tokio::net::TcpListener::bind(args.webrtc_tcp).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on the ICE-TCP port {} (--webrtc-tcp): {e}", args.webrtc_tcp)
        })?;
        let tcp_port = tcp.local_addr()?.port();
        let mut tcp_candidates = vec![SocketAddr::new(ip, tcp_port)];
        if !ip.is_loopback() {
            tcp_candidates.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), tcp_port));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let sessions = Arc::new(Mutex::new(HashMap::new()));
        let candidates = driver::Candidates { udp: candidate, tcp: tcp_candidates.clone() };
        let driver =
            driver::Driver::new(socket, candidates, rx, tx.clone(), sessions.clone(), app, args.webrtc_max_kbps);
        tokio::spawn(driver.run());
        let max_connections = 4 * args.max_sessions as usize + 16;
        tokio::spawn(ice_tcp::accept(tcp, tx.clone(), max_connections));
        tracing::info!(%udp, %candidate, ?tcp_candidates, max_sessions = args.max_sessions, "WebRTC (WHIP at /whip, page at /webrtc)");
        Ok(WebRtc {
            commands: tx,
            sessions,
            slots: Arc::new(Semaphore::new(args.max_sessions as usize)),
            max_sessions: args.max_sessions as usize,
            max_viewers: args.max_viewers,
            token: args.webrtc_token.clone(),
            udp,
            candidate,
            tcp_candidates,
            codec_problem,
        })
    }

    pub fn active_sessions(&self) -> usize {
        self.max_sessions - self.slots.available_permits()
    }

    /// The publishing sessions on this pod, oldest first (the page offers to watch them).
    pub fn session_ids(&self) -> Vec<String> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = sessions.values().map(|s| (s.created, s.id.clone())).collect();
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// A publishing session: its slot is taken here, before any SDP work.
    pub async fn publish(
        &self,
        offer: SdpOffer,
        plan: ChainPlan,
        iters: u32,
    ) -> Result<(String, SdpAnswer), OfferError> {
        if let Some(why) = &self.codec_problem {
            return Err(OfferError::Unavailable(why.clone()));
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return Err(OfferError::Full(format!(
                "this pod runs {} sessions (--max-sessions); try another pod or retry shortly",
                self.max_sessions
            )));
        };
        let session = Arc::new(Session {
            id: new_id(),
            plan,
            iters,
            created: Instant::now(),
            target_kbps: AtomicU32::new(600),
            force_keyframe: AtomicBool::new(true),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            last_size: Mutex::new(None),
            latency: Mutex::new(LatencyWindow::new(Duration::from_secs(10))),
            viewers: AtomicU32::new(0),
            _slot: slot,
        });
        let id = session.id.clone();
        let answer = self.ask(|reply| PeerCommand::Publish { offer, session, reply }).await?;
        Ok((id, answer))
    }

    /// A WHEP viewer of a session's processed video.
    pub async fn view(&self, session_id: &str, offer: SdpOffer) -> Result<(String, SdpAnswer), OfferError> {
        let session = self
            .session(session_id)
            .ok_or_else(|| OfferError::NotFound(format!("no session {session_id} on this pod")))?;
        if session.viewers.load(Ordering::SeqCst) >= self.max_viewers {
            return Err(OfferError::Full(format!(
                "session {session_id} has {} viewers (--max-viewers)",
                self.max_viewers
            )));
        }
        let viewer = new_id();
        let id = viewer.clone();
        let answer = self.ask(|reply| PeerCommand::View { offer, session, viewer, reply }).await?;
        Ok((id, answer))
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<SdpAnswer, OfferError>>) -> PeerCommand,
    ) -> Result<SdpAnswer, OfferError> {
        let (reply, answer) = oneshot::channel();
        let gone = || OfferError::Unavailable("the WebRTC driver has stopped".into());
        self.commands.send(command(reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// End a session (its viewers too) or one viewer; false when there was none.
    pub async fn end(&self, session: &str, viewer: Option<&str>) -> bool {
        let (reply, done) = oneshot::channel();
        let command = PeerCommand::End { session: session.into(), viewer: viewer.map(Into::into), reply };
        self.commands.send(command).is_ok() && done.await.unwrap_or(false)
    }

    /// End every session cleanly (the shutdown timeout has passed).
    pub async fn end_all(&self) -> usize {
        let (reply, done) = oneshot::channel();
        if self.commands.send(PeerCommand::EndAll { reply }).is_err() {
            return 0;
        }
        done.await.unwrap_or(0)
    }

    /// Resolves when no publishing session is left.
    pub async fn idle(&self) {
        while self.active_sessions() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// 16 hex digits from the OS's randomness (session URLs must not be guessable).
fn new_id() -> String {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes = (t.as_nanos() as u64 ^ std::process::id() as u64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
