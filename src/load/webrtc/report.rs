//! The headless per-second line and the human summary of a WebRTC run.
use std::fmt::Write as _;

use super::{WebRtcSecond, WebRtcSummary};
use crate::load::{Percentiles, ThresholdResult};

/// How the frame round trip is measured, wherever it is shown.
pub const FRAME_LABEL: &str =
    "frame round trip: from the frame's slot on the publisher's frame clock to its processed \
frame's arrival; a frame that never comes back is lost, not timed";

/// One line a second (stderr); with more than one pod, each pod's sessions and frame p95.
pub fn second_line(s: &WebRtcSecond) -> String {
    let c = &s.counts;
    let mut line = format!(
        "[{:>4}s] sessions {:>3}/{:<3} (+{} refused {} failed {} ended {})  frames asked {:>5.0}/s sent {:>5} back {:>5} ({:>5.1}/s) lost {:>4} late {}  frame p50 {:>8} p95 {:>8} max {:>8}  freezes {}  kbit/s out {:.0} in {:.0}",
        s.second + 1,
        s.active_sessions,
        s.target_sessions,
        c.connected,
        c.refused,
        c.failed + c.offer_failed,
        c.ended,
        s.offered_fps,
        c.frames_sent,
        c.frames_back,
        s.fps_back,
        c.frames_lost,
        c.frames_late,
        s.frame.show(s.frame.p50_ms),
        s.frame.show(s.frame.p95_ms),
        s.frame.show(s.frame.max_ms),
        c.freezes,
        s.kbps_out,
        s.kbps_in,
    );
    if s.pods.len() > 1 {
        let pods: Vec<String> = s
            .pods
            .iter()
            .map(|p| format!("{} {} sess p95 {}", p.pod, p.active_sessions, p.frame.show(p.frame.p95_ms)))
            .collect();
        line.push_str(&format!("  | {}", pods.join(", ")));
    }
    line
}

/// The final summary, thresholds included.
pub fn human_summary(label: &str, targets: usize, s: &WebRtcSummary, results: &[ThresholdResult]) -> String {
    let mut o = String::new();
    let c = &s.counts;
    let pct = |x: f64| format!("{:.2}%", x * 100.0);
    let _ = writeln!(o, "Summary: {label}, {targets} target(s), {:.2}s", s.elapsed_s);
    let _ = writeln!(
        o,
        "  offers     {}: answered {}, refused 503 {} (retried after Retry-After), failed {}; offer_fail {}",
        c.offers,
        c.answered,
        c.refused,
        c.offer_failed,
        pct(s.offer_fail)
    );
    let _ = writeln!(
        o,
        "  sessions   connected {}, ended as planned {}, failed {} (session_fail {}); at most {} up at once",
        c.connected,
        c.ended,
        c.failed,
        pct(s.session_fail),
        s.peak_sessions
    );
    let _ = writeln!(
        o,
        "  frames     sent {} (skipped late {}), processed back {}, lost {} (frame_loss {}), freezes {}",
        c.frames_sent,
        c.frames_late,
        c.frames_back,
        c.frames_lost,
        pct(s.frame_loss),
        c.freezes
    );
    let secs = s.elapsed_s.max(1e-3);
    let _ = writeln!(
        o,
        "  bitrate    out {:.0} kbit/s, in {:.0} kbit/s (mean over the run)",
        c.bytes_out as f64 * 8.0 / 1000.0 / secs,
        c.bytes_in as f64 * 8.0 / 1000.0 / secs
    );
    let _ = writeln!(o, "  frame     {}", Percentiles::HEADER);
    let _ = writeln!(o, "  round trip {}", s.frame.row());
    let _ = writeln!(o, "  ({FRAME_LABEL})");
    if s.pods.len() > 1 {
        let _ = writeln!(o, "  per pod (a session stays on the pod that answered its offer)");
        for p in &s.pods {
            let _ = writeln!(
                o,
                "    {:<22} sessions {:>4} (failed {}), frames back {:>7}, lost {:>6}, frame p95 {:>9}",
                p.pod,
                p.connected,
                p.failed,
                p.frames_back,
                p.frames_lost,
                p.frame.show(p.frame.p95_ms)
            );
        }
    }
    if !s.failures.is_empty() {
        let mut reasons: Vec<(&String, &u64)> = s.failures.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        let _ = writeln!(o, "  failures");
        for (why, n) in reasons.iter().take(8) {
            let _ = writeln!(o, "    {n:>6} × {why}");
        }
    }
    if !results.is_empty() {
        let _ = writeln!(o, "Thresholds");
        for r in results {
            let _ = writeln!(o, "  {r}");
        }
    }
    o
}
