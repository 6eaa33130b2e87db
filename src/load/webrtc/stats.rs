//! What the sessions report and what the aggregator makes of it: one [`WebRtcSecond`] a
//! second and the cumulative [`WebRtcSummary`]. Frame round trips are recorded in
//! microseconds in HdrHistograms, from each frame's intended send time (its slot in the
//! clip's frame clock), so a publisher that fell behind does not hide the delay.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::load::stats::{new_histogram, record_latency, LatencyHistogram, Percentiles};

/// One thing a session saw; sent to the aggregator as it happens.
#[derive(Debug, Clone)]
pub(super) enum Report {
    /// A WHIP offer was sent.
    Offer,
    /// Answered 201.
    Answered,
    /// Answered 503 (the pod is full, draining or out of memory); retried after Retry-After.
    Refused,
    /// Any other answer, or no answer: the offer failed.
    OfferFailed(String),
    /// ICE and DTLS are up: media flows.
    Connected,
    /// An answered session that did not last until it was asked to end (never connected,
    /// ICE lost, no processed video for the stall limit, the pod went away).
    Failed { reason: String, connected: bool },
    /// A session ended as planned (the plan went down, or the run ended).
    Ended { connected: bool },
    /// A frame was written, of this many bytes.
    Sent(usize),
    /// Frames the publisher could not send on time (its task ran late) and skipped, as a
    /// camera would.
    Late(u64),
    /// A processed frame came back: its round trip and size.
    Back { round_trip: Duration, bytes: usize },
    /// Frames sent that never came back (the pod processed a newer one instead, or lost
    /// them, or they did not come back within the frame timeout).
    Lost(u64),
    /// A gap between processed frames longer than max(3 frame intervals, interval + 150 ms)
    /// (WebRTC's freeze definition).
    Freeze,
}

/// Counts, per second or for the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionCounts {
    pub offers: u64,
    pub answered: u64,
    pub refused: u64,
    pub offer_failed: u64,
    pub connected: u64,
    pub failed: u64,
    pub ended: u64,
    pub frames_sent: u64,
    pub frames_late: u64,
    pub frames_back: u64,
    pub frames_lost: u64,
    pub freezes: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

impl SessionCounts {
    /// Frames sent whose processed frame never came back / frames whose fate is known.
    pub fn frame_loss(&self) -> f64 {
        ratio(self.frames_lost, self.frames_back + self.frames_lost)
    }
    /// Answered sessions that failed / answered sessions.
    pub fn session_fail(&self) -> f64 {
        ratio(self.failed, self.answered)
    }
    /// Offers without a 201 answer (refused or failed) / offers.
    pub fn offer_fail(&self) -> f64 {
        ratio(self.refused + self.offer_failed, self.offers)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// One second of a run.
#[derive(Debug, Clone, Serialize)]
pub struct WebRtcSecond {
    pub second: u64,
    /// Sessions the plan asks for now.
    pub target_sessions: usize,
    /// Frames per second the plan asks for: its sessions × the clip's frame rate, whether or
    /// not each session got a pod (a refused one's frames are offered and never served).
    pub offered_fps: f64,
    /// Sessions with media flowing at the end of the second.
    pub active_sessions: u64,
    pub counts: SessionCounts,
    /// Processed frames back per second.
    pub fps_back: f64,
    pub kbps_out: f64,
    pub kbps_in: f64,
    /// Frame round trips of this second.
    pub frame: Percentiles,
    /// Since the start of the run.
    pub all_frame: Percentiles,
    /// Per pod (the target's host:port): a session stays on the pod that answered its offer.
    pub pods: Vec<PodSecond>,
}

/// One pod's second.
#[derive(Debug, Clone, Serialize)]
pub struct PodSecond {
    pub pod: String,
    pub active_sessions: u64,
    pub frames_back: u64,
    pub frames_lost: u64,
    pub frame: Percentiles,
}

/// One pod's run.
#[derive(Debug, Clone, Serialize)]
pub struct PodTotals {
    pub pod: String,
    pub connected: u64,
    pub failed: u64,
    pub frames_back: u64,
    pub frames_lost: u64,
    pub frame: Percentiles,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct WebRtcSummary {
    pub elapsed_s: f64,
    pub peak_sessions: u64,
    pub counts: SessionCounts,
    pub frame_loss: f64,
    pub session_fail: f64,
    pub offer_fail: f64,
    pub frame: Percentiles,
    /// Why sessions and offers failed, by reason, most frequent first in the human summary.
    pub failures: BTreeMap<String, u64>,
    pub pods: Vec<PodTotals>,
    #[serde(skip)]
    pub histogram: LatencyHistogram,
}

/// Folds reports into seconds and the summary.
pub(super) struct Aggregator {
    second: u64,
    this: SessionCounts,
    total: SessionCounts,
    active: u64,
    peak: u64,
    this_hist: LatencyHistogram,
    total_hist: LatencyHistogram,
    failures: BTreeMap<String, u64>,
    pods: BTreeMap<Arc<str>, PodState>,
}

/// What the aggregator keeps per pod.
struct PodState {
    active: u64,
    connected: u64,
    failed: u64,
    back: (u64, u64),
    lost: (u64, u64),
    this_hist: LatencyHistogram,
    total_hist: LatencyHistogram,
}

impl PodState {
    fn new() -> Self {
        PodState {
            active: 0,
            connected: 0,
            failed: 0,
            back: (0, 0),
            lost: (0, 0),
            this_hist: new_histogram(),
            total_hist: new_histogram(),
        }
    }
}

impl Aggregator {
    pub fn new() -> Self {
        Aggregator {
            second: 0,
            this: SessionCounts::default(),
            total: SessionCounts::default(),
            active: 0,
            peak: 0,
            this_hist: new_histogram(),
            total_hist: new_histogram(),
            failures: BTreeMap::new(),
            pods: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, pod: Option<Arc<str>>, report: Report) {
        if let Some(pod) = pod {
            let p = self.pods.entry(pod).or_insert_with(PodState::new);
            match &report {
                Report::Connected => {
                    p.active += 1;
                    p.connected += 1;
                }
                Report::Failed { connected, .. } => {
                    p.active -= *connected as u64;
                    p.failed += 1;
                }
                Report::Ended { connected } => p.active -= *connected as u64,
                Report::Back { round_trip, .. } => {
                    p.back.0 += 1;
                    let us = round_trip.as_micros() as u64;
                    record_latency(&mut p.this_hist, us);
                    record_latency(&mut p.total_hist, us);
                }
                Report::Lost(n) => p.lost.0 += n,
                _ => {}
            }
        }
        let c = &mut self.this;
        match report {
            Report::Offer => c.offers += 1,
            Report::Answered => c.answered += 1,
            Report::Refused => c.refused += 1,
            Report::OfferFailed(reason) => {
                c.offer_failed += 1;
                *self.failures.entry(format!("offer: {reason}")).or_default() += 1;
            }
            Report::Connected => {
                c.connected += 1;
                self.active += 1;
                self.peak = self.peak.max(self.active);
            }
            Report::Failed { reason, connected } => {
                c.failed += 1;
                self.active -= connected as u64;
                *self.failures.entry(format!("session: {reason}")).or_default() += 1;
            }
            Report::Ended { connected } => {
                c.ended += 1;
                self.active -= connected as u64;
            }
            Report::Sent(bytes) => {
                c.frames_sent += 1;
                c.bytes_out += bytes as u64;
            }
            Report::Late(n) => c.frames_late += n,
            Report::Back { round_trip, bytes } => {
                c.frames_back += 1;
                c.bytes_in += bytes as u64;
                let us = round_trip.as_micros() as u64;
                record_latency(&mut self.this_hist, us);
                record_latency(&mut self.total_hist, us);
            }
            Report::Lost(n) => c.frames_lost += n,
            Report::Freeze => c.freezes += 1,
        }
    }

    /// Close the current second (`elapsed_s` long) and start the next.
    pub fn second(&mut self, target_sessions: usize, fps: u32, elapsed_s: f64) -> WebRtcSecond {
        let c = std::mem::take(&mut self.this);
        add_counts(&mut self.total, &c);
        let secs = elapsed_s.max(1e-3);
        let s = WebRtcSecond {
            second: self.second,
            target_sessions,
            offered_fps: target_sessions as f64 * fps as f64,
            active_sessions: self.active,
            counts: c,
            fps_back: c.frames_back as f64 / secs,
            kbps_out: c.bytes_out as f64 * 8.0 / 1000.0 / secs,
            kbps_in: c.bytes_in as f64 * 8.0 / 1000.0 / secs,
            frame: Percentiles::of(&self.this_hist),
            all_frame: Percentiles::of(&self.total_hist),
            pods: self
                .pods
                .iter_mut()
                .map(|(pod, p)| {
                    let second = PodSecond {
                        pod: pod.to_string(),
                        active_sessions: p.active,
                        frames_back: p.back.0,
                        frames_lost: p.lost.0,
                        frame: Percentiles::of(&p.this_hist),
                    };
                    p.back = (0, p.back.1 + p.back.0);
                    p.lost = (0, p.lost.1 + p.lost.0);
                    p.this_hist.reset();
                    second
                })
                .collect(),
        };
        self.this_hist.reset();
        self.second += 1;
        s
    }

    pub fn summary(mut self, elapsed: Duration) -> WebRtcSummary {
        let c = std::mem::take(&mut self.this);
        add_counts(&mut self.total, &c);
        let t = self.total;
        WebRtcSummary {
            elapsed_s: elapsed.as_secs_f64(),
            peak_sessions: self.peak,
            counts: t,
            frame_loss: t.frame_loss(),
            session_fail: t.session_fail(),
            offer_fail: t.offer_fail(),
            frame: Percentiles::of(&self.total_hist),
            failures: self.failures,
            pods: self
                .pods
                .iter()
                .map(|(pod, p)| PodTotals {
                    pod: pod.to_string(),
                    connected: p.connected,
                    failed: p.failed,
                    frames_back: p.back.0 + p.back.1,
                    frames_lost: p.lost.0 + p.lost.1,
                    frame: Percentiles::of(&p.total_hist),
                })
                .collect(),
            histogram: self.total_hist,
        }
    }
}

fn add_counts(into: &mut SessionCounts, c: &SessionCounts) {
    into.offers += c.offers;
    into.answered += c.answered;
    into.refused += c.refused;
    into.offer_failed += c.offer_failed;
    into.connected += c.connected;
    into.failed += c.failed;
    into.ended += c.ended;
    into.frames_sent += c.frames_sent;
    into.frames_late += c.frames_late;
    into.frames_back += c.frames_back;
    into.frames_lost += c.frames_lost;
    into.freezes += c.freezes;
    into.bytes_out += c.bytes_out;
    into.bytes_in += c.bytes_in;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_every_outcome() {
        let mut a = Aggregator::new();
        let pod: Option<Arc<str>> = Some(Arc::from("10.0.0.7:8080"));
        for r in [Report::Offer, Report::Refused, Report::Offer, Report::Answered, Report::Connected] {
            a.add(pod.clone(), r);
        }
        a.add(pod.clone(), Report::Back { round_trip: Duration::from_millis(40), bytes: 1000 });
        a.add(pod.clone(), Report::Lost(3));
        let s = a.second(1, 15, 1.0);
        assert_eq!(s.active_sessions, 1);
        assert_eq!(s.counts.frames_back, 1);
        assert!((s.frame.p95_ms - 40.0).abs() < 0.1, "{}", s.frame.p95_ms);
        assert_eq!((s.pods.len(), s.pods[0].active_sessions, s.pods[0].frames_lost), (1, 1, 3));
        a.add(pod.clone(), Report::Failed { reason: "ICE disconnected".into(), connected: true });
        assert_eq!(a.second(1, 15, 1.0).pods[0].active_sessions, 0);
        let sum = a.summary(Duration::from_secs(2));
        assert_eq!(sum.frame_loss, 0.75, "3 of 4 frames never came back");
        assert_eq!(sum.offer_fail, 0.5, "a refused offer is an offer without a 201");
        assert_eq!(sum.session_fail, 1.0);
        assert_eq!(sum.failures.get("session: ICE disconnected"), Some(&1));
        assert_eq!(sum.peak_sessions, 1);
        assert_eq!(
            (sum.pods[0].connected, sum.pods[0].failed, sum.pods[0].frames_back, sum.pods[0].frames_lost),
            (1, 1, 1, 3)
        );
    }
}
