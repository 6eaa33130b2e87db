//! k6-style pass/fail criteria over a [`LoadSummary`]: `p95<100ms`, `error_rate<1%`,
//! `rps>=400`, `uncorrected_p99<=50ms`.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::stats::{fmt_ms, LoadSummary, Percentiles};
use super::webrtc::WebRtcSummary;

/// The forms a threshold may take, quoted in every parse error.
pub const THRESHOLD_FORMS: &str = "METRIC OP VALUE, e.g. `p95<100ms`, `p99.9<=1s`, `uncorrected_p95<50ms`, \
`all_p95<200ms`, `error_rate<1%`, `shed_rate<5%`, `timeout_rate<1%`, `drop_rate<1%`, `rps>=400` (latency metrics: \
p50 p90 p95 p99 p99.9 max mean of successful requests, corrected unless prefixed `uncorrected_`, of every request \
when prefixed `all_`; error_rate counts every request without a 2xx answer; ops: < <= > >=; latency units us ms s, \
a bare number is ms; rates as % or a fraction); a --webrtc run: `frame_p95<100ms` (any stat with `frame_`), \
`frame_loss<1%`, `session_fail<1%`, `offer_fail<5%`";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyStat {
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Latency in milliseconds; `corrected` = measured from the intended send time;
    /// `all_requests` = of every request that ended, else of the successful (2xx) ones.
    Latency { stat: LatencyStat, corrected: bool, all_requests: bool },
    /// Requests without a 2xx answer (shed, 5xx, 4xx, timeouts, connect errors...) / requests.
    ErrorRate,
    /// 503 answers / requests.
    ShedRate,
    /// Timeouts / requests.
    TimeoutRate,
    /// dropped / planned.
    DropRate,
    /// Completed requests per second over the run.
    Rps,
    /// A `--webrtc` run's processed-frame round trip in milliseconds, from each frame's
    /// intended send time.
    Frame { stat: LatencyStat },
    /// Frames whose processed frame never came back / frames.
    FrameLoss,
    /// Answered sessions that failed before they were ended / answered sessions.
    SessionFail,
    /// Offers without a 201 answer (refused 503 included) / offers.
    OfferFail,
}

impl Metric {
    /// Whether this judges a `--webrtc` run (else an HTTP run).
    pub fn is_webrtc(&self) -> bool {
        matches!(self, Metric::Frame { .. } | Metric::FrameLoss | Metric::SessionFail | Metric::OfferFail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
        }
    }
}

/// One criterion. `limit` is in milliseconds for latencies, a fraction (0.01 = 1 %) for
/// rates, requests per second for `rps`. `source` is the text as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    pub source: String,
    pub metric: Metric,
    pub op: Op,
    pub limit: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a threshold: {problem} (expected {THRESHOLD_FORMS})")]
pub struct ThresholdError {
    pub input: String,
    pub problem: String,
}

/// The outcome of one threshold: Display gives `✓ p95<100ms (observed 12.3ms)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdResult {
    pub threshold: String,
    /// In the metric's unit: ms, fraction, or requests/s.
    pub observed: f64,
    /// `observed` as written in reports (`12.3ms`, `0.42%`, `498.7/s`).
    pub observed_display: String,
    pub passed: bool,
}

impl fmt::Display for ThresholdResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { "✓" } else { "✗" };
        write!(f, "{mark} {} (observed {})", self.threshold, self.observed_display)
    }
}

impl Threshold {
    pub fn parse(input: &str) -> Result<Threshold, ThresholdError> {
        let fail = |problem: &str| ThresholdError { input: input.to_string(), problem: problem.to_string() };
        let s = input.trim();
        let op_at = s.find(['<', '>']).ok_or_else(|| fail("no comparison operator"))?;
        let (name, rest) = s.split_at(op_at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if name.is_empty() {
            return Err(fail("no metric before the operator"));
        }
        if value.is_empty() {
            return Err(fail("no value after the operator"));
        }
        if let Some(stat) = name.strip_prefix("frame_").and_then(latency_stat) {
            let limit = parse_latency_ms(value).ok_or_else(|| fail("the value is not a latency"))?;
            return Ok(Threshold { source: s.to_string(), metric: Metric::Frame { stat }, op, limit });
        }
        let (all_requests, scoped) = match name.strip_prefix("all_") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        let (corrected, stat_name) = match scoped.strip_prefix("uncorrected_") {
            Some(rest) => (false, rest),
            None => (true, scoped.strip_prefix("corrected_").unwrap_or(scoped)),
        };
        let stat = latency_stat(stat_name);
        let (metric, limit) = if let Some(stat) = stat {
            (
                Metric::Latency { stat, corrected, all_requests },
                parse_latency_ms(value).ok_or_else(|| fail("the value is not a latency"))?,
            )
        } else {
            let metric = match name.as_str() {
                "error_rate" | "errors" => Metric::ErrorRate,
                "shed_rate" | "shed" => Metric::ShedRate,
                "timeout_rate" | "timeouts" => Metric::TimeoutRate,
                "drop_rate" | "dropped_rate" => Metric::DropRate,
                "rps" | "throughput" => Metric::Rps,
                "frame_loss" => Metric::FrameLoss,
                "session_fail" | "session_fail_rate" => Metric::SessionFail,
                "offer_fail" | "offer_fail_rate" => Metric::OfferFail,
                _ => return Err(fail(&format!("unknown metric `{name}`"))),
            };
            let limit = if metric == Metric::Rps {
                value
                    .strip_suffix("/s")
                    .unwrap_or(value)
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
            } else {
                parse_rate(value)
            };
            (metric, limit.ok_or_else(|| fail("the value is not a number in range"))?)
        };
        Ok(Threshold { source: s.to_string(), metric, op, limit })
    }

    /// The observed value of this threshold's metric in `summary`.
    /// What an HTTP run shows for this metric; NaN (never passing) for a WebRTC metric,
    /// which `rtc-demo load` refuses before the run.
    pub fn observe(&self, summary: &LoadSummary) -> f64 {
        match self.metric {
            Metric::Latency { stat, corrected, all_requests } => {
                let p: &Percentiles = match (all_requests, corrected) {
                    (false, true) => &summary.corrected,
                    (false, false) => &summary.uncorrected,
                    (true, true) => &summary.all_corrected,
                    (true, false) => &summary.all_uncorrected,
                };
                stat.of(p)
            }
            Metric::ErrorRate => summary.error_rate(),
            Metric::ShedRate => summary.shed_rate(),
            Metric::TimeoutRate => summary.timeout_rate(),
            Metric::DropRate => summary.drop_rate(),
            Metric::Rps => summary.achieved_rps,
            Metric::Frame { .. } | Metric::FrameLoss | Metric::SessionFail | Metric::OfferFail => f64::NAN,
        }
    }

    /// What a WebRTC run shows for this metric; NaN for an HTTP metric.
    pub fn observe_webrtc(&self, summary: &WebRtcSummary) -> f64 {
        match self.metric {
            Metric::Frame { stat } => stat.of(&summary.frame),
            Metric::FrameLoss => summary.frame_loss,
            Metric::SessionFail => summary.session_fail,
            Metric::OfferFail => summary.offer_fail,
            _ => f64::NAN,
        }
    }

    pub fn evaluate(&self, summary: &LoadSummary) -> ThresholdResult {
        self.result(self.observe(summary))
    }

    pub fn evaluate_webrtc(&self, summary: &WebRtcSummary) -> ThresholdResult {
        self.result(self.observe_webrtc(summary))
    }

    fn result(&self, observed: f64) -> ThresholdResult {
        let observed_display = match self.metric {
            _ if observed.is_nan() => "no data".to_string(),
            Metric::Latency { .. } | Metric::Frame { .. } => fmt_ms(observed),
            Metric::Rps => format!("{observed:.1}/s"),
            _ => format!("{:.2}%", observed * 100.0),
        };
        ThresholdResult {
            threshold: self.source.clone(),
            observed,
            observed_display,
            passed: self.op.holds(observed, self.limit),
        }
    }

    pub fn op_symbol(&self) -> &'static str {
        self.op.symbol()
    }
}

/// `250us`, `250µs`, `100ms`, `1.5s`, `2m`, or a bare number of milliseconds.
fn latency_stat(name: &str) -> Option<LatencyStat> {
    Some(match name {
        "p50" | "p(50)" | "med" | "median" => LatencyStat::P50,
        "p90" | "p(90)" => LatencyStat::P90,
        "p95" | "p(95)" => LatencyStat::P95,
        "p99" | "p(99)" => LatencyStat::P99,
        "p99.9" | "p999" | "p(99.9)" => LatencyStat::P999,
        "max" => LatencyStat::Max,
        "mean" | "avg" => LatencyStat::Mean,
        _ => return None,
    })
}

impl LatencyStat {
    /// NaN when nothing was recorded: a latency limit is not met by a run with no answers
    /// (every request failed, or none was sent), and NaN fails every comparison.
    fn of(self, p: &Percentiles) -> f64 {
        if p.count == 0 {
            return f64::NAN;
        }
        match self {
            LatencyStat::P50 => p.p50_ms,
            LatencyStat::P90 => p.p90_ms,
            LatencyStat::P95 => p.p95_ms,
            LatencyStat::P99 => p.p99_ms,
            LatencyStat::P999 => p.p999_ms,
            LatencyStat::Max => p.max_ms,
            LatencyStat::Mean => p.mean_ms,
        }
    }
}

fn parse_latency_ms(v: &str) -> Option<f64> {
    let v = v.trim();
    let num_end = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let n: f64 = v[..num_end].parse().ok()?;
    let factor = match v[num_end..].trim() {
        "" | "ms" => 1.0,
        "us" | "µs" => 0.001,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(n * factor).filter(|x| x.is_finite())
}

/// `1%`, `0.5 %` or a fraction `0.01`; must lie in 0..=1.
fn parse_rate(v: &str) -> Option<f64> {
    let v = v.trim();
    let x = match v.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => v.parse::<f64>().ok()?,
    };
    Some(x).filter(|x| (0.0..=1.0).contains(x))
}

impl FromStr for Threshold {
    type Err = ThresholdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Threshold::parse(s)
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Threshold::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_limit_fails_when_nothing_was_answered() {
        // Every request failed: no 2xx latency exists, and 0 ms must not pass for one.
        let mut summary = LoadSummary::empty();
        summary.status.timeouts = 10;
        for source in ["p95<100ms", "uncorrected_max<=1s", "all_p50<1s"] {
            let r = Threshold::parse(source).unwrap().evaluate(&summary);
            assert!(!r.passed && r.observed_display == "no data", "{source}: {r:?}");
        }
        // The same rule for a WebRTC run's frame round trip.
        assert!(LatencyStat::P95.of(&Percentiles::default()).is_nan());
        assert!(Percentiles::default().row().contains("none recorded"));
        assert_eq!(Percentiles::default().show(0.0), "-", "a second without answers");
    }

    #[test]
    fn parses_the_documented_forms() {
        let t = Threshold::parse("p95<100ms").unwrap();
        assert_eq!(t.metric, Metric::Latency { stat: LatencyStat::P95, corrected: true, all_requests: false });
        assert_eq!((t.op, t.limit), (Op::Lt, 100.0));
        let t = Threshold::parse(" uncorrected_p99.9 <= 1.5s ").unwrap();
        assert_eq!(t.metric, Metric::Latency { stat: LatencyStat::P999, corrected: false, all_requests: false });
        assert_eq!((t.op, t.limit), (Op::Le, 1500.0));
        let t = Threshold::parse("all_uncorrected_p50<9ms").unwrap();
        assert_eq!(t.metric, Metric::Latency { stat: LatencyStat::P50, corrected: false, all_requests: true });
        assert_eq!(Threshold::parse("timeout_rate<0.5%").unwrap().metric, Metric::TimeoutRate);
        assert_eq!(Threshold::parse("p95<1us").unwrap().limit, 0.001);
        assert_eq!(Threshold::parse("error_rate<1%").unwrap().limit, 0.01);
        assert_eq!(Threshold::parse("shed_rate<=0.05").unwrap().limit, 0.05);
        let t = Threshold::parse("rps>=400").unwrap();
        assert_eq!((t.metric, t.op, t.limit), (Metric::Rps, Op::Ge, 400.0));
    }

    #[test]
    fn webrtc_metrics_judge_only_a_webrtc_run() {
        let t = Threshold::parse("frame_p95<100ms").unwrap();
        assert_eq!((t.metric, t.limit), (Metric::Frame { stat: LatencyStat::P95 }, 100.0));
        assert!(t.metric.is_webrtc());
        assert_eq!(Threshold::parse("frame_loss<1%").unwrap().metric, Metric::FrameLoss);
        assert_eq!(Threshold::parse("session_fail<1%").unwrap().limit, 0.01);
        assert_eq!(Threshold::parse("offer_fail<=5%").unwrap().metric, Metric::OfferFail);
        assert!(!Threshold::parse("p95<1s").unwrap().metric.is_webrtc());
        // What an HTTP run shows for it (nothing) fails rather than passing on nothing.
        assert!(!t.result(f64::NAN).passed);
        assert!(Threshold::parse("frame_rps<1").is_err());
    }

    #[test]
    fn rejects_nonsense_with_the_expected_form() {
        for bad in [
            "",
            "p95",
            "p95<",
            "<5ms",
            "p97<5ms",
            "all_rps>3",
            "all_error_rate<1%",
            "p95<5 parsecs",
            "error_rate<150%",
            "rps>-3",
            "latency<5ms",
        ] {
            let e = Threshold::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected METRIC OP VALUE"), "{bad}: {e}");
        }
    }
}
