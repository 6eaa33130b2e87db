//! The per-second timeline both live backends record: turns their sources (pods, the
//! autoscaler, server-side metrics, client load figures) into one [`Sample`] a second, keeps
//! the ring buffer the charts and the report read, and decides staleness with one window
//! ([`STALE_AFTER`]). Pure: time is passed in, so it is tested without a clock.
//!
//! Client figures arrive as they are measured (the load engine's [`LoadSecond`]s on this
//! machine, the in-cluster load pod's log lines) and may arrive zero, one or two to a tick.
//! Counts (errors, shed, dropped) are summed over what arrived since the last sample, so none
//! is lost or counted twice; levels (rates, p95) are the newest; with nothing new but a
//! fresh figure, the levels carry over and the counts are 0.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::model::{Sample, SERIES_SECONDS};
use crate::load::webrtc::WebRtcSecond;
use crate::load::{LoadSecond, Percentiles};

/// A source that has not answered for this long is stale: its figures are not charted and
/// the screen says so. One window for every source (replica scrapes, Prometheus, load).
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// Unix time in seconds (the Kubernetes objects' clock).
pub fn unix_now() -> f64 {
    jiff::Timestamp::now().as_duration().as_secs_f64()
}

/// Whether a source last heard from at `last_ok` is stale at `now`.
pub fn stale(last_ok: Option<Instant>, now: Instant) -> bool {
    last_ok.is_none_or(|t| now.saturating_duration_since(t) > STALE_AFTER)
}

/// One second of client-side load figures, whichever client measured it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClientSecond {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub p95_corrected_s: Option<f64>,
    pub p95_uncorrected_s: Option<f64>,
    /// Failures other than shedding (every non-2xx answer but 503, and transport failures).
    pub errors: u64,
    pub shed: u64,
    pub dropped: u64,
}

fn p95_s(p: &Percentiles) -> Option<f64> {
    (p.count > 0).then_some(p.p95_ms / 1000.0)
}

impl From<&LoadSecond> for ClientSecond {
    fn from(s: &LoadSecond) -> Self {
        ClientSecond {
            offered_rps: s.offered_rps,
            achieved_rps: s.achieved_rps,
            p95_corrected_s: p95_s(&s.corrected),
            p95_uncorrected_s: p95_s(&s.uncorrected),
            errors: s.status.errors(),
            shed: s.status.shed_503,
            dropped: s.dropped,
        }
    }
}

/// A WebRTC second in the console's terms: frames offered (the plan's sessions × their frame
/// rate, as an HTTP second's offered rate is the plan's) and achieved (processed frames back)
/// per second, the frame round trip as the latency (no uncorrected view: it is
/// measured from each frame's slot on the frame clock), sessions and offers that failed as
/// errors, refused offers (503) as shed, frames that never came back as dropped.
impl From<&WebRtcSecond> for ClientSecond {
    fn from(s: &WebRtcSecond) -> Self {
        let c = &s.counts;
        ClientSecond {
            offered_rps: s.offered_fps,
            achieved_rps: s.fps_back,
            p95_corrected_s: p95_s(&s.frame),
            p95_uncorrected_s: None,
            errors: c.failed + c.offer_failed,
            shed: c.refused,
            dropped: c.frames_lost,
        }
    }
}

/// Server-side figures at sampling time; `None` fields are unknown. A stale source is passed
/// as `ServerReading::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServerReading {
    pub p95_s: Option<f64>,
    pub gpu_util: Option<f64>,
    /// The service's own counters (Prometheus), used when no client figures exist (another
    /// load source, or the in-cluster load pod's log is not being read).
    pub rps: Option<f64>,
    pub errors_per_s: Option<f64>,
    pub shed_per_s: Option<f64>,
}

/// What the backend knows about its replicas when it samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PodCounts {
    pub ready: u32,
    pub total: u32,
    /// The autoscaler's desired replicas.
    pub desired: u32,
}

#[derive(Debug)]
pub struct Timeline {
    series: VecDeque<Sample>,
    /// Client seconds since the last sample: summed counts, newest levels.
    pending: Option<ClientSecond>,
    /// The newest client second and when it arrived (levels carry over while fresh).
    last_client: Option<(Instant, ClientSecond)>,
    stage: usize,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline { series: VecDeque::with_capacity(SERIES_SECONDS), pending: None, last_client: None, stage: 0 }
    }
}

impl Timeline {
    /// The stage whose seconds are being recorded.
    pub fn set_stage(&mut self, stage: usize) {
        self.stage = stage;
    }

    /// A client second has been measured.
    pub fn client_second(&mut self, c: ClientSecond, now: Instant) {
        self.pending = Some(match self.pending {
            Some(p) => {
                ClientSecond { errors: p.errors + c.errors, shed: p.shed + c.shed, dropped: p.dropped + c.dropped, ..c }
            }
            None => c,
        });
        self.last_client = Some((now, c));
    }

    /// Forgets the client figures (the load stopped or moved to another source).
    pub fn clear_client(&mut self) {
        self.pending = None;
        self.last_client = None;
    }

    /// Whether client figures are expected but have gone stale.
    pub fn client_stale(&self, now: Instant) -> bool {
        stale(self.last_client.map(|(t, _)| t), now)
    }

    /// Records the second ending at `t_s` (seconds since the run started) and returns it.
    /// `paused`: the load is paused, so nothing is offered whatever the last figure said.
    pub fn sample(&mut self, t_s: f64, now: Instant, pods: PodCounts, server: ServerReading, paused: bool) -> &Sample {
        let mut t_s = t_s.round();
        if let Some(prev) = self.series.back() {
            if t_s <= prev.t_s {
                t_s = prev.t_s + 1.0;
            }
        }
        let client = match self.pending.take() {
            Some(c) => Some(c),
            None => self.last_client.filter(|(at, _)| !stale(Some(*at), now)).map(|(_, c)| ClientSecond {
                errors: 0,
                shed: 0,
                dropped: 0,
                ..c
            }),
        };
        let mut s = Sample {
            t_s,
            pods_ready: pods.ready,
            pods_total: pods.total,
            desired: pods.desired,
            p95_server_s: server.p95_s,
            gpu_util: server.gpu_util,
            stage: self.stage,
            ..Default::default()
        };
        match client {
            Some(c) => {
                s.p95_client_s = c.p95_corrected_s;
                s.p95_client_uncorrected_s = c.p95_uncorrected_s;
                s.offered_rps = if paused { 0.0 } else { c.offered_rps };
                s.achieved_rps = c.achieved_rps;
                s.errors = c.errors;
                s.shed = c.shed;
                s.dropped = c.dropped;
            }
            None => {
                s.achieved_rps = server.rps.unwrap_or(0.0);
                s.errors = server.errors_per_s.map(|x| x.round() as u64).unwrap_or(0);
                s.shed = server.shed_per_s.map(|x| x.round() as u64).unwrap_or(0);
            }
        }
        if self.series.len() >= SERIES_SECONDS {
            self.series.pop_front();
        }
        self.series.push_back(s);
        self.series.back().expect("pushed above")
    }

    /// The recorded seconds, oldest first (at most `SERIES_SECONDS`), for a snapshot.
    pub fn series(&self) -> Vec<Sample> {
        self.series.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{LoadMode, StatusCounts};

    fn load_second(offered: f64, p95_ms: f64, ok: u64, shed: u64, timeouts: u64) -> LoadSecond {
        LoadSecond {
            second: 0,
            mode: LoadMode::OpenLoop,
            offered_rps: offered,
            concurrency: 0,
            planned: ok + shed + timeouts,
            sent: ok + shed + timeouts,
            dropped: 1,
            completed: ok + shed + timeouts,
            achieved_rps: (ok + shed + timeouts) as f64,
            inflight: 0,
            targets: 2,
            status: StatusCounts { ok, shed_503: shed, timeouts, ..Default::default() },
            corrected: Percentiles { count: ok, p95_ms, ..Default::default() },
            uncorrected: Percentiles { count: ok, p95_ms: p95_ms / 2.0, ..Default::default() },
            all_corrected: Percentiles { count: ok + shed + timeouts, p95_ms, ..Default::default() },
        }
    }

    const PODS: PodCounts = PodCounts { ready: 2, total: 3, desired: 4 };

    #[test]
    fn this_machine_load_seconds_are_summed_never_doubled() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        let replicas = ServerReading { p95_s: Some(0.08), ..Default::default() };
        // Two load seconds arrive before one tick: both seconds' failures count, once.
        tl.client_second((&load_second(100.0, 90.0, 95, 4, 1)).into(), t0);
        tl.client_second((&load_second(110.0, 120.0, 100, 6, 2)).into(), t0 + Duration::from_millis(900));
        let s = tl.sample(1.0, t0 + Duration::from_secs(1), PODS, replicas, false).clone();
        assert_eq!((s.shed, s.errors, s.dropped), (10, 3, 2));
        assert_eq!((s.offered_rps, s.p95_client_s, s.p95_client_uncorrected_s), (110.0, Some(0.12), Some(0.06)));
        assert_eq!((s.pods_ready, s.pods_total, s.desired, s.p95_server_s), (2, 3, 4, Some(0.08)));
        // A tick with no new second: levels carry over, counts are not repeated.
        let s = tl.sample(2.0, t0 + Duration::from_secs(2), PODS, replicas, false).clone();
        assert_eq!((s.shed, s.errors, s.dropped, s.offered_rps), (0, 0, 0, 110.0));
        // Paused: nothing is offered.
        let s = tl.sample(3.0, t0 + Duration::from_secs(3), PODS, replicas, true).clone();
        assert_eq!(s.offered_rps, 0.0);
        // Stale after the one window: no client figures at all.
        let late = t0 + Duration::from_millis(900) + STALE_AFTER + Duration::from_secs(1);
        assert!(tl.client_stale(late));
        let s = tl.sample(4.0, late, PODS, ServerReading::default(), false).clone();
        assert_eq!((s.p95_client_s, s.offered_rps, s.p95_server_s), (None, 0.0, None));
    }

    #[test]
    fn in_cluster_log_lines_and_prometheus_counters() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        tl.set_stage(2);
        let prom = ServerReading {
            p95_s: Some(0.15),
            gpu_util: Some(71.0),
            rps: Some(180.0),
            errors_per_s: Some(1.6),
            shed_per_s: Some(3.2),
        };
        // No client figures yet: the service's own counters from Prometheus.
        let s = tl.sample(0.0, t0, PODS, prom, false).clone();
        assert_eq!((s.achieved_rps, s.errors, s.shed, s.gpu_util, s.stage), (180.0, 2, 3, Some(71.0), 2));
        assert_eq!(s.p95_client_s, None);
        // The load pod's line wins over the counters.
        // As the in-cluster load pod's line gives it (`load_job::LoadLine::figures`).
        let line = ClientSecond {
            offered_rps: 200.0,
            achieved_rps: 198.0,
            p95_corrected_s: Some(0.123),
            p95_uncorrected_s: Some(0.088),
            shed: 5,
            errors: 3,
            dropped: 0,
        };
        tl.client_second(line, t0 + Duration::from_millis(500));
        let s = tl.sample(1.0, t0 + Duration::from_secs(1), PODS, prom, false).clone();
        assert_eq!((s.offered_rps, s.achieved_rps, s.shed, s.errors), (200.0, 198.0, 5, 3));
        assert_eq!(s.p95_client_s, Some(0.123));
        tl.clear_client();
        let s = tl.sample(2.0, t0 + Duration::from_secs(2), PODS, prom, false).clone();
        assert_eq!((s.offered_rps, s.achieved_rps), (0.0, 180.0));
    }

    #[test]
    fn seconds_stay_in_order_and_the_ring_is_bounded() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        assert_eq!(tl.sample(5.2, t0, PODS, ServerReading::default(), false).t_s, 5.0);
        // A tick that rounds to the same second is moved on, never recorded twice.
        assert_eq!(tl.sample(4.9, t0, PODS, ServerReading::default(), false).t_s, 6.0);
        for i in 0..SERIES_SECONDS + 5 {
            tl.sample(10.0 + i as f64, t0, PODS, ServerReading::default(), false);
        }
        let series = tl.series();
        assert_eq!(series.len(), SERIES_SECONDS);
        assert!(series.windows(2).all(|w| w[0].t_s < w[1].t_s));
    }

    #[test]
    fn one_staleness_window() {
        let t0 = Instant::now();
        assert!(stale(None, t0));
        assert!(!stale(Some(t0), t0 + STALE_AFTER));
        assert!(stale(Some(t0), t0 + STALE_AFTER + Duration::from_millis(1)));
    }
}
