//! The load engine (SPEC §2); the `rtc-demo load` command around it is
//! `crate::commands::load`. Nothing here knows about scenario files.
//!
//! # Public API (stable; the conductor builds on it)
//!
//! ```text
//! let handle: LoadHandle = LoadEngine::start(LoadConfig {
//!     targets: vec!["http://127.0.0.1:18080/process?pixels=320x180&iters=1".parse()?],
//!     method: hyper::Method::POST, connections: 64, timeout: Duration::from_secs(5),
//!     max_inflight: 10_000, plan: RatePlan::Constant { rps: 40.0 }, ..Default::default()
//! })?;                                   // inside a tokio runtime
//! let mut seconds = handle.subscribe();  // broadcast::Receiver<Arc<LoadSecond>>, one per second
//! handle.set_plan(RatePlan::Ramp { from: 40.0, to: 120.0, over: Duration::from_secs(60) })?;
//! handle.set_plan(RatePlan::Concurrency { workers: 8 })?;   // closed loop
//! handle.pause(); handle.resume();       // offered rate 0 meanwhile
//! handle.scale(1.1); handle.scale(1.0 / 1.1); // ±10 % (multiplies; `set_scale(1.0)` resets)
//! handle.set_targets(&uris)?;            // replicas appear and go (round robin)
//! let summary: LoadSummary = handle.stop().await;           // cancels in-flight, < 1 s
//! // or handle.finish(grace).await: lets requests already due complete
//! ```
//!
//! - [`LoadSecond`]: second index, mode, offered rps, concurrency, planned/sent/dropped,
//!   completed and achieved rps, inflight, targets, [`StatusCounts`] (ok, client_4xx,
//!   shed_503, other_5xx, timeouts, connect_errors, other_errors, cancelled), and
//!   [`Percentiles`] `corrected` (from the intended send time) and `uncorrected` (from the
//!   actual send): p50/p90/p95/p99/p999/max/mean in ms.
//! - [`LoadSummary`]: the same cumulatively (planned = sent + dropped), status codes, and
//!   both HdrHistograms.
//! - [`Threshold`]`::parse("p95<100ms")`, `.evaluate(&summary) -> `[`ThresholdResult`]
//!   (Display: `✓ p95<100ms (observed 12.3ms)`).
//! - [`WorkerRuntimes::per_core`]`(0)`: optional, one current-thread runtime per core for the
//!   workers (`LoadConfig::runtimes = w.handles()`), as `rtc-demo load` does for throughput.
//! - [`second_line`] (the headless one-line-per-second format) and [`human_summary`].
//! - [`testserver`]: a loopback HTTP server for tests and benchmarks.
//! - [`webrtc`]: the WebRTC sessions engine (`rtc-demo load --webrtc`), its own API there;
//!   the thresholds above judge it with `frame_…`, `frame_loss`, `session_fail`, `offer_fail`.

pub mod engine;
pub mod stats;
pub mod testserver;
pub mod threshold;
pub mod webrtc;

pub use engine::{LoadConfig, LoadEngine, LoadError, LoadHandle, RatePlan, WorkerRuntimes, DEFAULT_CONNECTION_MAX_AGE};
pub use stats::{
    fmt_ms, percentile_distribution, LoadMode, LoadSecond, LoadSummary, Outcome, Percentiles, StatusCounts,
};
pub use threshold::{Metric, Op, Threshold, ThresholdError, ThresholdResult, THRESHOLD_FORMS};

/// How the two latency views are labelled wherever they are shown.
pub const CORRECTED_LABEL: &str = "from the intended send time (coordinated-omission corrected)";
pub const UNCORRECTED_LABEL: &str = "from the actual send time (not corrected)";

/// The headless one-line-per-second format (also used by the conductor's `--headless`).
pub fn second_line(s: &LoadSecond) -> String {
    let offered = match s.mode {
        LoadMode::ClosedLoop => format!("closed x{}", s.concurrency),
        _ => format!("{:.0}/s", s.offered_rps),
    };
    let st = &s.status;
    format!(
        "[{:>4}s] offered {offered:>9}  sent {:>6}  done {:>6} ({:>8.1}/s)  corrected p50 {:>8} p95 {:>8} p99 {:>8} max {:>8} | uncorrected p95 {:>8}  {} dropped {} inflight {} | all p95 {}",
        s.second + 1,
        s.sent,
        s.completed,
        s.achieved_rps,
        s.corrected.show(s.corrected.p50_ms),
        s.corrected.show(s.corrected.p95_ms),
        s.corrected.show(s.corrected.p99_ms),
        s.corrected.show(s.corrected.max_ms),
        s.uncorrected.show(s.uncorrected.p95_ms),
        outcomes(st),
        s.dropped,
        s.inflight,
        s.all_corrected.show(s.all_corrected.p95_ms),
    )
}

/// Every outcome counter, labelled (`ok (2xx) 12  shed 503 0  …`).
fn outcomes(st: &StatusCounts) -> String {
    st.labelled().iter().map(|(label, n)| format!("{label} {n}")).collect::<Vec<_>>().join("  ")
}

/// The final human summary, thresholds included.
pub fn human_summary(
    label: &str,
    connections: usize,
    targets: usize,
    s: &LoadSummary,
    results: &[ThresholdResult],
) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "Summary: {label}, {targets} target(s), {connections} connection(s), {:.2}s", s.elapsed_s);
    let _ = writeln!(o, "  requests   planned {} = sent {} + dropped {}", s.planned, s.sent, s.dropped);
    let _ = writeln!(o, "  rate       achieved {:.1} req/s (offered {:.1} req/s)", s.achieved_rps, s.offered_rps);
    let st = &s.status;
    let _ = writeln!(o, "  outcomes   {}", outcomes(st));
    let _ = writeln!(
        o,
        "  failed     {} of {} ({:.2}%): every request without a 2xx answer (error_rate); shed {:.2}%, timeouts {:.2}%",
        st.failed(),
        st.total(),
        s.error_rate() * 100.0,
        s.shed_rate() * 100.0,
        s.timeout_rate() * 100.0
    );
    if !s.status_codes.is_empty() {
        let codes: Vec<String> = s.status_codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        let _ = writeln!(o, "  status     {}", codes.join(", "));
    }
    let _ = writeln!(o, "  latency         {}", Percentiles::HEADER);
    for (name, p) in [
        ("2xx corrected", &s.corrected),
        ("2xx uncorrected", &s.uncorrected),
        ("all corrected", &s.all_corrected),
        ("all uncorrected", &s.all_uncorrected),
    ] {
        let _ = writeln!(o, "  {name:<15} {}", p.row());
    }
    let _ = writeln!(o, "  (corrected: {CORRECTED_LABEL}; uncorrected: {UNCORRECTED_LABEL};");
    let _ = writeln!(
        o,
        "   2xx: successful requests, what p95/p99 thresholds judge; all: every request, shed and failed included)"
    );
    if !results.is_empty() {
        let _ = writeln!(o, "Thresholds");
        for r in results {
            let _ = writeln!(o, "  {r}");
        }
    }
    o
}
