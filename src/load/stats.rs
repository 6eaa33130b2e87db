//! What the engine measures: outcome classes, percentile sets, per-second snapshots and the
//! cumulative summary. Latencies are recorded in microseconds in HdrHistograms (bounded
//! memory whatever the run length) and reported in milliseconds.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded (µs); larger values saturate to it.
pub(crate) const HIST_MAX_US: u64 = 3_600_000_000;
pub(crate) const HIST_SIGFIG: u8 = 3;

/// A run's latencies. u32 counts saturate at 4.3 billion per bucket (hours at the engine's
/// highest rates), and the histogram grows only as far as the largest latency seen: one
/// spanning the full hour from the start is 190 KB, written through on creation, per histogram.
pub type LatencyHistogram = Histogram<u32>;

pub(crate) fn new_histogram() -> LatencyHistogram {
    Histogram::new(HIST_SIGFIG).expect("static histogram precision is valid")
}

/// Records a latency, growing the histogram to hold it (`saturating_record` would clamp it
/// to the current top instead).
pub(crate) fn record_latency(h: &mut LatencyHistogram, us: u64) {
    let us = us.min(HIST_MAX_US);
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response arrived (any status code); the body was read to the end.
    Status(u16),
    /// No complete response within `--timeout`.
    Timeout,
    /// The TCP connection could not be opened.
    ConnectError,
    /// Any other transport or protocol failure (reset, closed mid-response...).
    OtherError,
    /// The run was stopped while this request was on the wire.
    Cancelled,
}

/// Requests by how they ended. `ok` is 2xx only: as k6's `http_req_failed` counts, a request
/// without a 2xx answer is a failure whatever the reason (`other_status` is 1xx and 3xx);
/// `shed_503` is the service shedding load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub ok: u64,
    pub other_status: u64,
    pub client_4xx: u64,
    pub shed_503: u64,
    pub other_5xx: u64,
    pub timeouts: u64,
    pub connect_errors: u64,
    pub other_errors: u64,
    pub cancelled: u64,
}

impl StatusCounts {
    pub(crate) fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Status(200..=299) => self.ok += 1,
            Outcome::Status(s) if s < 400 => self.other_status += 1,
            Outcome::Status(503) => self.shed_503 += 1,
            Outcome::Status(s) if s >= 500 => self.other_5xx += 1,
            Outcome::Status(_) => self.client_4xx += 1,
            Outcome::Timeout => self.timeouts += 1,
            Outcome::ConnectError => self.connect_errors += 1,
            Outcome::OtherError => self.other_errors += 1,
            Outcome::Cancelled => self.cancelled += 1,
        }
    }
    /// Every counter with the label it is printed under, in print order: the one list that
    /// `total()`, the printed lines and the reader of those lines (the in-cluster load's log,
    /// `conduct::kube::load_job::parse_line`) go by.
    pub fn labelled_mut(&mut self) -> [(&'static str, &mut u64); 9] {
        [
            ("ok (2xx)", &mut self.ok),
            ("shed 503", &mut self.shed_503),
            ("other 5xx", &mut self.other_5xx),
            ("4xx", &mut self.client_4xx),
            ("1xx/3xx", &mut self.other_status),
            ("timeouts", &mut self.timeouts),
            ("connect errors", &mut self.connect_errors),
            ("other errors", &mut self.other_errors),
            ("cancelled", &mut self.cancelled),
        ]
    }
    pub fn labelled(&self) -> [(&'static str, u64); 9] {
        let mut copy = *self;
        copy.labelled_mut().map(|(label, n)| (label, *n))
    }
    /// Requests that ended one way or another (cancelled ones included).
    pub fn total(&self) -> u64 {
        self.labelled().iter().map(|(_, n)| n).sum()
    }
    /// Every request without a 2xx answer: shed 503s, other 5xx, 4xx, 1xx/3xx, timeouts,
    /// connect and other errors, and requests still on the wire when the run stopped
    /// (cancelled: they got no answer either). What `error_rate` counts.
    pub fn failed(&self) -> u64 {
        self.total() - self.ok
    }
    /// Failures other than shedding (the charts show shed requests on their own line).
    pub fn errors(&self) -> u64 {
        self.failed() - self.shed_503
    }
}

/// Latency percentiles in milliseconds (0 when nothing was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// The column heads of [`Percentiles::row`].
    pub const HEADER: &'static str = "      p50       p90       p95       p99     p99.9       max      mean";

    /// `v` (one of these percentiles) as the lines show it; `-` when nothing was recorded (a
    /// 0 would read as instant answers).
    pub fn show(&self, v: f64) -> String {
        if self.count == 0 {
            "-".into()
        } else {
            fmt_ms(v)
        }
    }

    /// p50 p90 p95 p99 p99.9 max mean, each right-aligned in 9 characters; a dash in each
    /// when nothing was recorded (a 0 there would read as instant answers).
    pub fn row(&self) -> String {
        if self.count == 0 {
            return [format!("{:>9}", "-").as_str(); 7].join(" ") + "  (none recorded)";
        }
        [self.p50_ms, self.p90_ms, self.p95_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms]
            .map(|v| format!("{:>9}", fmt_ms(v)))
            .join(" ")
    }

    pub(crate) fn of(h: &LatencyHistogram) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// Nearest-rank percentiles of the latencies (µs) of one short window, exactly. A second's
    /// latencies are a few thousand values at most: keeping them costs less memory than a
    /// histogram spanning an hour (about 190 KB each, touched on every reset).
    pub(crate) fn of_samples(us: &mut [u64]) -> Self {
        if us.is_empty() {
            return Self::default();
        }
        us.sort_unstable();
        let n = us.len();
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |q: f64| ms(us[((q * n as f64).ceil() as usize).clamp(1, n) - 1]);
        Percentiles {
            count: n as u64,
            mean_ms: us.iter().sum::<u64>() as f64 / n as f64 / 1000.0,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(us[n - 1]),
        }
    }
}

/// How the load was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadMode {
    /// Requests at intended times from a rate plan, whatever the responses do.
    OpenLoop,
    /// A fixed number of workers, each sending its next request when the last one ends.
    ClosedLoop,
    /// Nothing scheduled (paused, or a rate of 0).
    Idle,
}

/// One second of a run, published by the aggregator once per second.
///
/// `planned`, `sent` and `dropped` count requests by the second they were due / put on the
/// wire; responses and latencies by the second they completed. Over a whole run
/// planned = sent + dropped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadSecond {
    /// 0 for the first second of the run.
    pub second: u64,
    pub mode: LoadMode,
    /// Rate asked for at the end of this second (after pause/scale); 0 in closed loop.
    pub offered_rps: f64,
    /// Closed-loop worker count (0 in open loop).
    pub concurrency: u64,
    pub planned: u64,
    pub sent: u64,
    pub dropped: u64,
    /// Responses (of any status) and failures completed this second.
    pub completed: u64,
    /// `completed` per second of wall time.
    pub achieved_rps: f64,
    /// Requests due but not finished at the end of the second (waiting + on the wire).
    pub inflight: u64,
    pub targets: usize,
    pub status: StatusCounts,
    /// Latency of successful (2xx) requests from the intended send time
    /// (coordinated-omission corrected): what an SLO is about.
    pub corrected: Percentiles,
    /// Latency of successful (2xx) requests from the actual send time.
    pub uncorrected: Percentiles,
    /// Latency of every answered or failed request (shed 503s and errors included), corrected.
    pub all_corrected: Percentiles,
}

/// The cumulative figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub elapsed_s: f64,
    pub planned: u64,
    pub sent: u64,
    pub dropped: u64,
    pub completed: u64,
    /// planned / elapsed.
    pub offered_rps: f64,
    /// completed / elapsed.
    pub achieved_rps: f64,
    pub status: StatusCounts,
    /// Every status code seen, with its count.
    pub status_codes: BTreeMap<u16, u64>,
    /// Latency of successful (2xx) requests from the intended send time (corrected).
    pub corrected: Percentiles,
    /// Latency of successful (2xx) requests from the actual send time.
    pub uncorrected: Percentiles,
    /// Latency of every request that ended (shed 503s and errors included), corrected.
    pub all_corrected: Percentiles,
    /// Latency of every request that ended, from the actual send time.
    pub all_uncorrected: Percentiles,
    #[serde(skip)]
    pub corrected_histogram: LatencyHistogram,
    #[serde(skip)]
    pub uncorrected_histogram: LatencyHistogram,
    #[serde(skip)]
    pub all_corrected_histogram: LatencyHistogram,
    #[serde(skip)]
    pub all_uncorrected_histogram: LatencyHistogram,
}

impl LoadSummary {
    pub(crate) fn empty() -> Self {
        LoadSummary {
            elapsed_s: 0.0,
            planned: 0,
            sent: 0,
            dropped: 0,
            completed: 0,
            offered_rps: 0.0,
            achieved_rps: 0.0,
            status: StatusCounts::default(),
            status_codes: BTreeMap::new(),
            corrected: Percentiles::default(),
            uncorrected: Percentiles::default(),
            all_corrected: Percentiles::default(),
            all_uncorrected: Percentiles::default(),
            corrected_histogram: new_histogram(),
            uncorrected_histogram: new_histogram(),
            all_corrected_histogram: new_histogram(),
            all_uncorrected_histogram: new_histogram(),
        }
    }
    /// error_rate as k6's `http_req_failed`: requests without a 2xx answer / requests that
    /// ended (see [`StatusCounts::failed`]).
    pub fn error_rate(&self) -> f64 {
        ratio(self.status.failed(), self.status.total())
    }
    /// shed_rate: 503 answers / requests that ended.
    pub fn shed_rate(&self) -> f64 {
        ratio(self.status.shed_503, self.status.total())
    }
    /// timeout_rate: requests with no complete answer within the timeout / requests that ended.
    pub fn timeout_rate(&self) -> f64 {
        ratio(self.status.timeouts, self.status.total())
    }
    /// drop_rate: dropped / planned.
    pub fn drop_rate(&self) -> f64 {
        ratio(self.dropped, self.planned)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Formats milliseconds compactly: `850µs`, `12.3ms`, `1.25s`.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0}µs", ms * 1000.0)
    } else if ms < 1000.0 {
        if ms < 10.0 {
            format!("{ms:.2}ms")
        } else {
            format!("{ms:.1}ms")
        }
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// The HdrHistogram percentile distribution text format (as HdrHistogram's
/// `outputPercentileDistribution` writes it, values in milliseconds), readable by the usual
/// plotters (hdrhistogram.github.io/HdrHistogram/plotFiles.html).
pub fn percentile_distribution(h: &LatencyHistogram, title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}");
    let _ = writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let _ = writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / 1000.0, h.stdev() / 1000.0);
    let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / 1000.0, h.len());
    let _ = writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), h.distinct_values());
    out
}

pub(crate) fn micros(d: Duration) -> u64 {
    (d.as_micros().min(HIST_MAX_US as u128) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_percentiles_agree_with_the_histogram() {
        // 1..=1000 µs and one 2 s outlier: both ways must give the same ranks.
        let mut us: Vec<u64> = (1..=1000).rev().collect();
        us.push(2_000_000);
        let mut h = new_histogram();
        for &v in &us {
            record_latency(&mut h, v);
        }
        let (exact, hist) = (Percentiles::of_samples(&mut us), Percentiles::of(&h));
        assert_eq!(exact.count, 1001);
        assert_eq!(exact.p50_ms, 0.501);
        assert_eq!(exact.p95_ms, 0.951);
        assert_eq!(exact.max_ms, 2000.0);
        for (a, b) in [
            (exact.p50_ms, hist.p50_ms),
            (exact.p90_ms, hist.p90_ms),
            (exact.p99_ms, hist.p99_ms),
            (exact.p999_ms, hist.p999_ms),
            (exact.max_ms, hist.max_ms),
            (exact.mean_ms, hist.mean_ms),
        ] {
            assert!((a - b).abs() <= b * 1e-3, "exact {a} vs histogram {b}");
        }
        assert_eq!(Percentiles::of_samples(&mut []), Percentiles::default());
    }
}
