//! The WebRTC series (registered with the service's other metrics).
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::latency_window::LatencyWindow;
use crate::metrics::{FloatGauge, LATENCY_BUCKETS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// `reason` of `app_webrtc_offers_refused_total`.
pub const REFUSED_FULL: &str = "max_sessions";
pub const REFUSED_DRAINING: &str = "draining";
pub const REFUSED_BAD_OFFER: &str = "bad_offer";
pub const REFUSED_MEMORY: &str = "memory";

#[derive(Clone)]
pub struct WebRtcMetrics {
    sessions: Family<RoleLabels, Gauge>,
    frames: Family<StageLabels, Counter>,
    frame_latency: Histogram,
    /// The frame latency's p95 over the same sliding window as the requests' (the rehearsal's
    /// autoscaler and the console read it as the pod's p95 when the load is WebRTC sessions).
    window: Arc<Mutex<LatencyWindow>>,
    p95: FloatGauge,
    bytes: Family<DirectionLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
}

impl WebRtcMetrics {
    pub fn register(registry: &mut Registry, p95_window: Duration) -> Self {
        let sessions = Family::<RoleLabels, Gauge>::default();
        registry.register(
            "app_webrtc_sessions",
            "WebRTC peer connections open: publisher = a camera whose video is processed, viewer = a WHEP playback",
            sessions.clone(),
        );
        let frames = Family::<StageLabels, Counter>::default();
        registry.register(
            "app_webrtc_frames",
            "Video frames: in = received whole, out = processed and sent, dropped = not processed (newest frame won, queue or memory full), decode_error",
            frames.clone(),
        );
        let frame_latency = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "app_webrtc_frame_latency_seconds",
            "Per processed frame: from the frame received whole to the encoded frame written to the peer",
            frame_latency.clone(),
        );
        let p95 = FloatGauge::default();
        registry.register(
            "app_webrtc_frame_latency_p95_seconds",
            format!(
                "p95 of the processed frames' latency over the last {}s; 0 when no frame in that window",
                p95_window.as_secs()
            ),
            p95.clone(),
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "app_webrtc_media_bytes",
            "Encoded video bytes: in from publishers, out to publishers and viewers (rate() × 8 is the bitrate)",
            bytes.clone(),
        );
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "app_webrtc_offers_refused",
            "Offers answered without a session: max_sessions, memory and draining (503), bad_offer (400/413/415)",
            refused.clone(),
        );
        for role in ["publisher", "viewer"] {
            sessions.get_or_create(&RoleLabels { role }).set(0);
        }
        for stage in ["in", "out", "dropped", "decode_error"] {
            frames.get_or_create(&StageLabels { stage }).inc_by(0);
        }
        for direction in ["in", "out"] {
            bytes.get_or_create(&DirectionLabels { direction }).inc_by(0);
        }
        for reason in [REFUSED_FULL, REFUSED_MEMORY, REFUSED_DRAINING, REFUSED_BAD_OFFER] {
            refused.get_or_create(&ReasonLabels { reason }).inc_by(0);
        }
        let window = Arc::new(Mutex::new(LatencyWindow::new(p95_window)));
        WebRtcMetrics { sessions, frames, frame_latency, window, p95, bytes, refused }
    }

    pub fn session_started(&self, role: &'static str) {
        self.sessions.get_or_create(&RoleLabels { role }).inc();
    }

    pub fn session_ended(&self, role: &'static str) {
        self.sessions.get_or_create(&RoleLabels { role }).dec();
    }

    pub fn frame_in(&self, bytes: usize) {
        self.frames.get_or_create(&StageLabels { stage: "in" }).inc();
        self.bytes.get_or_create(&DirectionLabels { direction: "in" }).inc_by(bytes as u64);
    }

    pub fn frame_out(&self, latency: Duration) {
        self.frames.get_or_create(&StageLabels { stage: "out" }).inc();
        self.frame_latency.observe(latency.as_secs_f64());
        self.window.lock().unwrap_or_else(|p| p.into_inner()).record(latency, Instant::now());
    }

    /// Sets the windowed p95 gauge (at each scrape).
    pub fn refresh(&self) {
        let p95 = self.window.lock().unwrap_or_else(|p| p.into_inner()).quantile(0.95, Instant::now());
        self.p95.set(p95);
    }

    pub fn bytes_out(&self, bytes: usize) {
        self.bytes.get_or_create(&DirectionLabels { direction: "out" }).inc_by(bytes as u64);
    }

    pub fn frame_dropped(&self) {
        self.frames_dropped(1);
    }

    pub fn frames_dropped(&self, n: u64) {
        self.frames.get_or_create(&StageLabels { stage: "dropped" }).inc_by(n);
    }

    pub fn decode_errors(&self, n: u64) {
        self.frames.get_or_create(&StageLabels { stage: "decode_error" }).inc_by(n);
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }
}
