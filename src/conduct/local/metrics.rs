//! Reading a replica's Prometheus text exposition: the few series the console needs, and
//! the rehearsal autoscaler's signals computed from successive scrapes.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What one scrape of a replica's `/metrics` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaMetrics {
    /// `app_request_latency_p95_seconds` (sliding window; 0 when the window is empty).
    pub p95_s: Option<f64>,
    /// `app_requests_total` summed over `/process` (all codes).
    pub process_requests: f64,
    /// `app_requests_total` for `/process` with code 503.
    pub process_503: f64,
    /// `app_rejected_total` summed over reasons.
    pub rejected: f64,
    pub inflight: Option<f64>,
    /// `app_busy_worker_seconds_total`: ∫ busy workers dt.
    pub busy_seconds: Option<f64>,
    /// `app_workers`.
    pub workers: Option<f64>,
    /// `app_webrtc_sessions{role="publisher"}`: WebRTC sessions pinned to this replica.
    pub webrtc_sessions: Option<f64>,
    /// `app_webrtc_frame_latency_p95_seconds` (sliding window, as `p95_s`).
    pub webrtc_p95_s: Option<f64>,
    /// `app_webrtc_frames_total{stage="out"}`: processed frames sent.
    pub webrtc_frames_out: f64,
}

impl ReplicaMetrics {
    /// The pod's p95 and its count of answers (requests, or processed frames when the load
    /// is WebRTC sessions): what the console weighs the replicas' p95 by.
    pub fn p95_and_count(&self, webrtc: bool) -> (Option<f64>, f64) {
        if webrtc {
            (self.webrtc_p95_s, self.webrtc_frames_out)
        } else {
            (self.p95_s, self.process_requests)
        }
    }
}

/// What the rehearsal computes for a metric of the HPA manifest, by its name: the adapter
/// rule's own definition (manifests/observability/prometheus-adapter-values.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalSignal {
    /// `rtc_request_latency_p95_seconds` (or the service's `app_request_latency_p95_seconds`):
    /// each replica's windowed p95 through the dead band.
    P95,
    /// `rtc_latency_guard`: the same p95, but over the SLO it reads 1.25 × the target.
    LatencyGuard,
    /// `rtc_worker_utilization`: rate(app_busy_worker_seconds_total) / app_workers.
    WorkerUtilization,
}

impl LocalSignal {
    /// The names the rehearsal can compute (said when a manifest names another).
    pub const KNOWN: &'static str =
        "rtc_worker_utilization, rtc_latency_guard, rtc_request_latency_p95_seconds, app_request_latency_p95_seconds";

    pub fn for_metric(name: &str) -> Option<Self> {
        match name {
            "rtc_request_latency_p95_seconds" | "app_request_latency_p95_seconds" => Some(LocalSignal::P95),
            "rtc_latency_guard" => Some(LocalSignal::LatencyGuard),
            "rtc_worker_utilization" => Some(LocalSignal::WorkerUtilization),
            _ => None,
        }
    }
}

/// One replica's worker utilisation over a sliding window, from successive scrapes of its
/// counter: what `rate(app_busy_worker_seconds_total[w]) / app_workers` gives in
/// Prometheus. No value until two scrapes span half a second.
#[derive(Debug, Clone, Default)]
pub struct UtilizationWindow {
    samples: VecDeque<(Instant, f64)>,
    workers: f64,
}

impl UtilizationWindow {
    pub fn record(&mut self, at: Instant, m: &ReplicaMetrics, window: Duration) {
        let (Some(v), Some(workers)) = (m.busy_seconds, m.workers) else {
            self.samples.clear();
            return;
        };
        if self.samples.back().is_some_and(|&(_, last)| v < last) {
            // A counter reset (the replica restarted): start again, as rate() does.
            self.samples.clear();
        }
        self.samples.push_back((at, v));
        self.workers = workers;
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|&(t, _)| at.duration_since(t) >= window) {
            self.samples.pop_front();
        }
    }

    pub fn utilization(&self) -> Option<f64> {
        let (&(t0, v0), &(t1, v1)) = (self.samples.front()?, self.samples.back()?);
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt >= 0.5 && self.workers > 0.0).then(|| (v1 - v0) / dt / self.workers)
    }
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    // labels: `a="x",b="y"` (values without escaped quotes are all we need here)
    for part in labels.split(',') {
        let (k, v) = part.split_once('=')?;
        if k.trim() == name {
            return Some(v.trim().trim_matches('"'));
        }
    }
    None
}

/// Parses the exposition text; unknown lines are ignored, bad numbers skipped.
pub fn parse(text: &str) -> ReplicaMetrics {
    let mut m = ReplicaMetrics::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_labels, rest) = match line.find('}') {
            Some(i) => (&line[..=i], line[i + 1..].trim()),
            None => match line.split_once(' ') {
                Some((a, b)) => (a, b.trim()),
                None => continue,
            },
        };
        let value: f64 = match rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => continue,
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        match name {
            "app_request_latency_p95_seconds" if label(labels, "endpoint").is_none_or(|e| e == "/process") => {
                m.p95_s = Some(m.p95_s.map_or(value, |p: f64| p.max(value)));
            }
            "app_requests_total" if label(labels, "endpoint") == Some("/process") => {
                m.process_requests += value;
                if label(labels, "code") == Some("503") {
                    m.process_503 += value;
                }
            }
            "app_rejected_total" => m.rejected += value,
            "app_inflight_requests" => m.inflight = Some(value),
            "app_busy_worker_seconds_total" => m.busy_seconds = Some(value),
            "app_workers" => m.workers = Some(value),
            "app_webrtc_sessions" if label(labels, "role") == Some("publisher") => m.webrtc_sessions = Some(value),
            "app_webrtc_frame_latency_p95_seconds" => m.webrtc_p95_s = Some(value),
            "app_webrtc_frames_total" if label(labels, "stage") == Some("out") => m.webrtc_frames_out = value,
            _ => {}
        }
    }
    m
}

/// The latency guard's reading of a p95 (`rtc_latency_guard` in the adapter rules): the
/// dead band as for p95, but over the SLO a fixed 1.25 × the target, so the guard adds a
/// quarter more pods per sync while the SLO is broken instead of `p95 / target` times as
/// many. p95's size says how long the queue is, not how many pods are missing; sized by it,
/// the guard sends a 3-pod workload to the maximum and the pods it did not need are
/// trimmed again while the load holds.
pub fn latency_guard(p95_s: f64, target_s: f64) -> f64 {
    if p95_s > target_s {
        1.25 * target_s
    } else {
        crate::conduct::hpa::dead_band_p95(p95_s, target_s)
    }
}

/// The replicas' p95 as one number: weighted by each replica's requests in the last interval
/// (what a PromQL quantile over the summed histogram approximates); None if none has data.
pub fn combine_p95(parts: &[(Option<f64>, f64)]) -> Option<f64> {
    let with: Vec<(f64, f64)> = parts.iter().filter_map(|(p, w)| p.map(|p| (p, *w))).collect();
    if with.is_empty() {
        return None;
    }
    let total: f64 = with.iter().map(|x| x.1.max(0.0)).sum();
    if total > 0.0 {
        Some(with.iter().map(|(p, w)| p * w.max(0.0)).sum::<f64>() / total)
    } else {
        Some(with.iter().map(|x| x.0).fold(0.0, f64::max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_service_metrics() {
        let t = r#"# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{endpoint="/process",code="200"} 120
app_requests_total{endpoint="/process",code="503"} 7
app_requests_total{endpoint="/healthz",code="200"} 50
app_rejected_total{reason="overload"} 7
app_request_latency_p95_seconds 0.142
app_inflight_requests 3
app_busy_worker_seconds_total 12.5
app_workers 2
app_webrtc_sessions{role="publisher"} 3
app_webrtc_sessions{role="viewer"} 1
app_webrtc_frame_latency_p95_seconds 0.21
app_webrtc_frames_total{stage="out"} 900
app_webrtc_frames_total{stage="in"} 1000
app_request_latency_seconds_bucket{le="0.1"} 90
garbage line
app_requests_total{endpoint="/process",code="500"} notanumber
"#;
        let m = parse(t);
        assert_eq!(m.process_requests, 127.0);
        assert_eq!(m.process_503, 7.0);
        assert_eq!(m.rejected, 7.0);
        assert_eq!(m.p95_s, Some(0.142));
        assert_eq!(m.inflight, Some(3.0));
        assert_eq!((m.busy_seconds, m.workers), (Some(12.5), Some(2.0)));
        assert_eq!(m.webrtc_sessions, Some(3.0), "publishers only: a viewer costs no processing");
        assert_eq!(m.p95_and_count(true), (Some(0.21), 900.0));
        assert_eq!(m.p95_and_count(false), (Some(0.142), 127.0));
        assert_eq!(parse(""), ReplicaMetrics::default());
    }

    #[test]
    fn combines_weighted() {
        assert_eq!(combine_p95(&[]), None);
        assert_eq!(combine_p95(&[(None, 3.0)]), None);
        let p = combine_p95(&[(Some(0.1), 1.0), (Some(0.2), 3.0)]).unwrap();
        assert!((p - 0.175).abs() < 1e-12);
        assert_eq!(combine_p95(&[(Some(0.0), 0.0), (Some(0.05), 0.0)]), Some(0.05));
    }

    #[test]
    fn utilization_is_the_counter_rate_over_the_window() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let m = |v: f64| ReplicaMetrics { busy_seconds: Some(v), workers: Some(2.0), ..Default::default() };
        let mut w = UtilizationWindow::default();
        w.record(at(0.0), &m(0.0), Duration::from_secs(10));
        assert_eq!(w.utilization(), None, "one scrape is no rate");
        // 1.4 workers busy on average over 10 s: 14 worker-seconds of 2 workers, 0.7.
        for i in 1..=10 {
            w.record(at(i as f64), &m(1.4 * i as f64), Duration::from_secs(10));
        }
        assert!((w.utilization().unwrap() - 0.7).abs() < 1e-9, "{:?}", w.utilization());
        // The window slides: only the last 10 s count (now idle: 0.35 over the window).
        for i in 11..=15 {
            w.record(at(i as f64), &m(14.0), Duration::from_secs(10));
        }
        assert!((w.utilization().unwrap() - 0.35).abs() < 1e-9, "{:?}", w.utilization());
        // A restarted replica's counter starts again; an unscraped one has no value, not 0.
        w.record(at(16.0), &m(0.1), Duration::from_secs(10));
        assert_eq!(w.utilization(), None);
        w.record(at(17.0), &ReplicaMetrics::default(), Duration::from_secs(10));
        assert_eq!(w.utilization(), None);
    }
}
