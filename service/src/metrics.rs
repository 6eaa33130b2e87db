//! The service's Prometheus metrics (SPEC §1), with prometheus-client.
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::device::DeviceInfo;
use crate::effects::{Effect, EffectTimings};
use crate::latency_window::LatencyWindow;
use crate::load_signal::{LevelGuard, LevelIntegral};
use crate::memory::MemoryBudget;

/// Dense around the 100 ms SLO, with exact edges at 0.05 and 0.1 so that "share of
/// requests under 100 ms" and the 50 ms scale-down line are read without interpolation.
pub const LATENCY_BUCKETS: [f64; 18] =
    [0.005, 0.01, 0.025, 0.04, 0.05, 0.06, 0.075, 0.09, 0.1, 0.11, 0.125, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0];
const EFFECT_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EffectLabels {
    effect: &'static str,
    device: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    device: &'static str,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemoryLabels {
    state: &'static str,
}

/// `reason` of `app_rejected_total`.
pub const REJECT_OVERLOAD: &str = "overload";
pub const REJECT_MEMORY: &str = "memory";

pub(crate) type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// Lowers `app_open_connections` when the connection's task ends.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
    p95: FloatGauge,
    window: Mutex<LatencyWindow>,
    inflight: Gauge,
    /// The load-proportional signal ([`crate::load_signal`]): request-seconds in flight and
    /// busy worker-seconds, integrated exactly and copied into the counters at each scrape.
    inflight_integral: LevelIntegral,
    busy_integral: LevelIntegral,
    inflight_seconds: FloatCounter,
    busy_seconds: FloatCounter,
    /// Two scrapes at once must not both add the same increment.
    signal_copy: Mutex<()>,
    rejected: Family<ReasonLabels, Counter>,
    open_connections: Gauge,
    connections_refused: Counter,
    malformed: Counter,
    effect_seconds: Family<EffectLabels, Histogram>,
    device_memory: Family<MemoryLabels, Gauge>,
    host_memory: Family<MemoryLabels, Gauge>,
    device_kind: &'static str,
    webrtc: crate::webrtc::metrics::WebRtcMetrics,
}

impl Metrics {
    pub fn new(device: &DeviceInfo, workers: usize, p95_window: Duration) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("app_requests", "HTTP requests answered, by endpoint and status code", requests.clone());
        let latency = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "app_request_latency_seconds",
            "Latency of /process requests that were processed (status 200), from arrival to answer",
            latency.clone(),
        );
        let p95 = FloatGauge::default();
        registry.register(
            "app_request_latency_p95_seconds",
            format!(
                "p95 of /process latency over the last {}s; 0 when no request in that window",
                p95_window.as_secs()
            ),
            p95.clone(),
        );
        let inflight = Gauge::default();
        registry.register("app_inflight_requests", "/process requests admitted and not yet answered", inflight.clone());
        let inflight_seconds = FloatCounter::default();
        registry.register(
            "app_inflight_request_seconds",
            "Time integral of /process requests in flight (queued + computing): rate() is the average concurrency",
            inflight_seconds.clone(),
        );
        let busy_seconds = FloatCounter::default();
        registry.register(
            "app_busy_worker_seconds",
            "Time integral of busy workers (a job on the device): rate() / app_workers is the device utilisation",
            busy_seconds.clone(),
        );
        let worker_gauge = Gauge::<i64>::default();
        registry.register(
            "app_workers",
            "Workers (CUDA streams, CPU workers) that compute at once",
            worker_gauge.clone(),
        );
        worker_gauge.set(workers as i64);
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "app_rejected",
            "Requests refused without work, answered 503: overload = past --max-inflight, memory = past the memory budget",
            rejected.clone(),
        );
        let open_connections = Gauge::default();
        registry.register("app_open_connections", "HTTP connections open now", open_connections.clone());
        let connections_refused = Counter::default();
        registry.register(
            "app_connections_refused",
            "Connections closed as soon as accepted: past --max-connections",
            connections_refused.clone(),
        );
        let malformed = Counter::default();
        registry.register(
            "app_malformed_requests",
            "Requests whose head or body framing is malformed, answered 400 and never processed",
            malformed.clone(),
        );
        let effect_seconds = Family::<EffectLabels, Histogram>::new_with_constructor(|| Histogram::new(EFFECT_BUCKETS));
        registry.register(
            "app_effect_seconds",
            "Compute time of one effect over all iterations of a request",
            effect_seconds.clone(),
        );
        let device_info = Family::<DeviceLabels, Gauge>::default();
        registry.register("app_device_info", "The device effects run on (value always 1)", device_info.clone());
        device_info.get_or_create(&DeviceLabels { device: device.kind, name: device.name.clone() }).set(1);
        let device_memory = Family::<MemoryLabels, Gauge>::default();
        registry.register("app_device_memory_bytes", "GPU memory, used and total (CUDA only)", device_memory.clone());
        // Start at zero so dashboards and `rate()` see the series before the first request.
        for code in [200, 400, 503] {
            requests.get_or_create(&RequestLabels { endpoint: "/process", code }).inc_by(0);
        }
        for reason in [REJECT_OVERLOAD, REJECT_MEMORY] {
            rejected.get_or_create(&ReasonLabels { reason }).inc_by(0);
        }
        let host_memory = Family::<MemoryLabels, Gauge>::default();
        registry.register(
            "app_memory_bytes",
            "The service's memory budget and what requests in flight reserve of it, and idle buffers kept for reuse",
            host_memory.clone(),
        );
        let webrtc = crate::webrtc::metrics::WebRtcMetrics::register(&mut registry, p95_window);
        Metrics {
            registry,
            requests,
            latency,
            p95,
            window: Mutex::new(LatencyWindow::new(p95_window)),
            inflight,
            inflight_integral: LevelIntegral::default(),
            busy_integral: LevelIntegral::default(),
            inflight_seconds,
            busy_seconds,
            signal_copy: Mutex::new(()),
            rejected,
            open_connections,
            connections_refused,
            malformed,
            effect_seconds,
            device_memory,
            host_memory,
            device_kind: device.kind,
            webrtc,
        }
    }

    pub fn webrtc(&self) -> &crate::webrtc::metrics::WebRtcMetrics {
        &self.webrtc
    }

    pub fn count_request(&self, endpoint: &'static str, code: u16) {
        self.requests.get_or_create(&RequestLabels { endpoint, code }).inc();
    }

    /// A request refused without work, by reason: [`REJECT_OVERLOAD`] or [`REJECT_MEMORY`].
    pub fn count_rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// An open connection, until the guard drops.
    pub fn enter_connection(&self) -> ConnectionGuard {
        self.open_connections.inc();
        ConnectionGuard(self.open_connections.clone())
    }

    pub fn count_connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn count_malformed(&self) {
        self.malformed.inc();
    }

    pub fn observe_processed(&self, latency: Duration, timings: &EffectTimings) {
        self.latency.observe(latency.as_secs_f64());
        self.window.lock().unwrap_or_else(|p| p.into_inner()).record(latency, Instant::now());
        for effect in Effect::ALL {
            let t = timings[effect.index()];
            if !t.is_zero() {
                let labels = EffectLabels { effect: effect.name(), device: self.device_kind };
                self.effect_seconds.get_or_create(&labels).observe(t.as_secs_f64());
            }
        }
    }

    /// One /process request in flight (admitted, not yet answered) until the guard drops:
    /// `app_inflight_requests` is this level, `app_inflight_request_seconds_total` its integral.
    pub fn enter_inflight(&self) -> LevelGuard<'_> {
        self.inflight_integral.enter()
    }

    /// One worker busy with a job until the guard drops.
    pub fn enter_busy(&self) -> LevelGuard<'_> {
        self.busy_integral.enter()
    }

    /// The windowed p95 now, in seconds (0 when the window is empty).
    pub fn current_p95(&self) -> f64 {
        self.window.lock().unwrap_or_else(|p| p.into_inner()).quantile(0.95, Instant::now())
    }

    /// Prometheus text exposition; the windowed p95 and device memory are read now.
    pub fn render(&self, device_memory: Option<(u64, u64)>, host: &MemoryBudget) -> String {
        self.p95.set(self.current_p95());
        self.webrtc.refresh();
        self.inflight.set(self.inflight_integral.level() as i64);
        {
            let _one = self.signal_copy.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            for (integral, counter) in
                [(&self.inflight_integral, &self.inflight_seconds), (&self.busy_integral, &self.busy_seconds)]
            {
                let behind = integral.seconds_at(now) - counter.get();
                if behind > 0.0 {
                    counter.inc_by(behind);
                }
            }
        }
        for (state, bytes) in
            [("budget", host.choice().bytes as usize), ("reserved", host.reserved()), ("pooled", host.pool().held())]
        {
            self.host_memory.get_or_create(&MemoryLabels { state }).set(bytes as i64);
        }
        if let Some((used, total)) = device_memory {
            self.device_memory.get_or_create(&MemoryLabels { state: "used" }).set(used as i64);
            self.device_memory.get_or_create(&MemoryLabels { state: "total" }).set(total as i64);
        }
        let mut out = String::with_capacity(8 * 1024);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_spec_names_and_buckets() {
        let m = Metrics::new(&DeviceInfo { kind: "cpu", name: "cpu (2 threads)".into() }, 2, Duration::from_secs(30));
        let held = m.enter_inflight();
        std::thread::sleep(Duration::from_millis(20));
        let budget0 = MemoryBudget::new(crate::memory::BudgetChoice {
            bytes: 1 << 30,
            source: crate::memory::BudgetSource::Flag,
        })
        .unwrap();
        assert!(m.render(None, &budget0).contains("app_inflight_requests 1"), "the gauge is the level held");
        drop(held);
        m.count_request("/process", 200);
        let mut t = EffectTimings::default();
        t[Effect::Blur.index()] = Duration::from_millis(3);
        m.observe_processed(Duration::from_millis(42), &t);
        let budget = MemoryBudget::new(crate::memory::BudgetChoice {
            bytes: 1 << 30,
            source: crate::memory::BudgetSource::Flag,
        })
        .unwrap();
        let held = budget.try_reserve(5 << 20).unwrap();
        m.count_rejected(REJECT_MEMORY);
        let text = m.render(None, &budget);
        drop(held);
        for needle in [
            "app_requests_total{endpoint=\"/process\",code=\"200\"} 1",
            "app_request_latency_seconds_bucket{le=\"0.05\"} 1",
            "app_request_latency_seconds_bucket{le=\"0.1\"} 1",
            "app_request_latency_seconds_bucket{le=\"0.04\"} 0",
            "app_request_latency_p95_seconds 0.042",
            "app_inflight_requests 0",
            "app_rejected_total{reason=\"overload\"} 0",
            "app_rejected_total{reason=\"memory\"} 1",
            "app_memory_bytes{state=\"budget\"} 1073741824",
            "app_memory_bytes{state=\"reserved\"} 5242880",
            "app_effect_seconds_count{effect=\"blur\",device=\"cpu\"} 1",
            "app_device_info{device=\"cpu\",name=\"cpu (2 threads)\"} 1",
            "app_workers 2",
            "app_busy_worker_seconds_total 0.0",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
        let integral = |text: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix("app_inflight_request_seconds_total "))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no app_inflight_request_seconds_total in:\n{text}"))
        };
        let inflight_s = integral(&text);
        assert!(inflight_s >= 0.02, "one request held 20 ms, integral {inflight_s}");
        // A second scrape adds nothing for a request held no longer (a level stuck at one
        // would add the microseconds between the scrapes).
        let again = integral(&m.render(None, &budget));
        assert!((again - inflight_s).abs() < 1e-9, "{inflight_s} then {again}");
    }
}
