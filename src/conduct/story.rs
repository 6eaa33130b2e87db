//! The talk's figures, read off the recorded seconds: how long p95 was over the SLO before
//! the autoscaler added a replica, how long after that scale-up p95 was back under the SLO
//! (and at how many replicas), the most replicas, and the share of seconds within the SLO
//! per stage. The console shows them live and the report keeps them (`summary.json`).
//!
//! The latency judged is the one the autoscaler acts on and the p95 chart draws against
//! the SLO line: server-side p95, or the client's corrected p95 where no server figure exists.
use serde::{Deserialize, Serialize};

use super::model::Sample;

/// p95 must stay under the SLO this long for the SLO to count as restored (one good second
/// between two bad ones is noise, not a recovery).
pub const RESTORED_HOLD_S: f64 = 10.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TalkFigures {
    /// Second at which p95 first went over the SLO.
    pub first_over_slo_s: Option<f64>,
    /// Second of the first scale-up (HPA desired above the replicas before) after that.
    pub first_scale_up_s: Option<f64>,
    /// first_scale_up_s - first_over_slo_s.
    pub over_slo_to_scale_up_s: Option<f64>,
    /// Second from which p95 stayed under the SLO for at least [`RESTORED_HOLD_S`], after the
    /// first scale-up.
    pub slo_restored_s: Option<f64>,
    /// slo_restored_s - first_scale_up_s.
    pub scale_up_to_restored_s: Option<f64>,
    /// Ready replicas when the SLO was restored.
    pub restored_at_replicas: Option<u32>,
    pub peak_replicas: u32,
    /// Per stage (by index): seconds with a p95 figure, and the share of them within the SLO.
    pub stages: Vec<StageWithinSlo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StageWithinSlo {
    pub stage: usize,
    pub seconds: u32,
    pub within_slo: f64,
}

/// The latency the story is told with (seconds), if known at that second.
pub fn judged_p95(s: &Sample) -> Option<f64> {
    s.p95_server_s.or(s.p95_client_s)
}

impl TalkFigures {
    pub fn from_samples<'a>(samples: impl IntoIterator<Item = &'a Sample>, slo_s: f64) -> TalkFigures {
        let samples: Vec<&Sample> = samples.into_iter().collect();
        let mut f = TalkFigures {
            peak_replicas: samples.iter().map(|s| s.pods_ready).max().unwrap_or(0),
            ..Default::default()
        };
        let over = |s: &Sample| judged_p95(s).is_some_and(|p| p > slo_s);
        let under = |s: &Sample| judged_p95(s).is_some_and(|p| p <= slo_s);

        let first_over = samples.iter().position(|s| over(s));
        if let Some(i) = first_over {
            f.first_over_slo_s = Some(samples[i].t_s);
            // The autoscaler's answer: desired goes above the replicas it had.
            let base = samples[i].desired.max(samples[i].pods_total);
            let up = (i..samples.len()).find(|&j| samples[j].desired > base);
            if let Some(j) = up {
                f.first_scale_up_s = Some(samples[j].t_s);
                f.over_slo_to_scale_up_s = Some(samples[j].t_s - samples[i].t_s);
                let end_t = samples.last().map(|s| s.t_s).unwrap_or(0.0);
                let mut k = j;
                while k < samples.len() {
                    if !under(samples[k]) {
                        k += 1;
                        continue;
                    }
                    let start = k;
                    while k < samples.len() && !over(samples[k]) {
                        k += 1;
                    }
                    let held_to_end = k == samples.len();
                    let held = if held_to_end {
                        end_t - samples[start].t_s + 1.0
                    } else {
                        samples[k].t_s - samples[start].t_s
                    };
                    if held >= RESTORED_HOLD_S {
                        f.slo_restored_s = Some(samples[start].t_s);
                        f.scale_up_to_restored_s = Some(samples[start].t_s - samples[j].t_s);
                        f.restored_at_replicas = Some(samples[start].pods_ready);
                        break;
                    }
                }
            }
        }

        let mut stages: Vec<StageWithinSlo> = Vec::new();
        for s in &samples {
            let Some(p) = judged_p95(s) else { continue };
            if stages.last().is_none_or(|st| st.stage != s.stage) {
                stages.push(StageWithinSlo { stage: s.stage, ..Default::default() });
            }
            let st = stages.last_mut().expect("pushed above");
            let within = st.within_slo * st.seconds as f64 + if p <= slo_s { 1.0 } else { 0.0 };
            st.seconds += 1;
            st.within_slo = within / st.seconds as f64;
        }
        f.stages = stages;
        f
    }

    /// One line for the console and the headless summary, e.g. `p95 over the SLO at 52 s ·
    /// scale-up 31 s later · SLO restored in 38 s at 4 replicas · peak 4 replicas`.
    pub fn headline(&self) -> String {
        let mut parts = Vec::new();
        match (self.first_over_slo_s, self.over_slo_to_scale_up_s) {
            (None, _) => parts.push("p95 never over the SLO".to_string()),
            (Some(t), None) => parts.push(format!("p95 over the SLO at {t:.0} s · no scale-up yet")),
            (Some(t), Some(d)) => parts.push(format!("p95 over the SLO at {t:.0} s · scale-up {d:.0} s later")),
        }
        if self.first_scale_up_s.is_some() {
            match (self.scale_up_to_restored_s, self.restored_at_replicas) {
                (Some(d), Some(n)) => parts.push(format!("SLO restored in {d:.0} s at {n} replicas")),
                _ => parts.push("SLO not restored yet".to_string()),
            }
        }
        parts.push(format!("peak {} replicas", self.peak_replicas));
        parts.join(" · ")
    }

    /// The share of seconds within the SLO per stage, e.g. `within the SLO: idle 100 % ·
    /// peak 60 %`; `names` gives the stages' names by index.
    pub fn within_slo_line(&self, names: &[String]) -> String {
        let parts: Vec<String> = self
            .stages
            .iter()
            .map(|s| {
                let name = names.get(s.stage).map(String::as_str).unwrap_or("?");
                format!("{name} {:.0} %", s.within_slo * 100.0)
            })
            .collect();
        format!("seconds within the SLO: {}", if parts.is_empty() { "no p95 yet".into() } else { parts.join(" · ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (t, stage, server p95 ms, ready, desired)
    fn run(rows: &[(f64, usize, Option<f64>, u32, u32)]) -> Vec<Sample> {
        rows.iter()
            .map(|&(t_s, stage, p95, ready, desired)| Sample {
                t_s,
                stage,
                p95_server_s: p95.map(|ms| ms / 1000.0),
                pods_ready: ready,
                pods_total: ready,
                desired,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn the_story_in_order() {
        let mut rows = Vec::new();
        for t in 0..10 {
            rows.push((t as f64, 0, Some(20.0), 2, 2));
        }
        for t in 10..40 {
            rows.push((t as f64, 1, Some(300.0), 2, 2));
        }
        for t in 40..50 {
            rows.push((t as f64, 1, Some(250.0), if t < 43 { 2 } else { 4 }, 4));
        }
        rows.push((50.0, 1, Some(90.0), 4, 4));
        rows.push((51.0, 1, Some(130.0), 4, 4)); // one bad second: not yet restored
        for t in 52..80 {
            rows.push((t as f64, 1, Some(40.0), 4, 4));
        }
        let f = TalkFigures::from_samples(&run(&rows), 0.1);
        assert_eq!(f.first_over_slo_s, Some(10.0));
        assert_eq!(f.first_scale_up_s, Some(40.0));
        assert_eq!(f.over_slo_to_scale_up_s, Some(30.0));
        assert_eq!(f.slo_restored_s, Some(52.0));
        assert_eq!(f.scale_up_to_restored_s, Some(12.0));
        assert_eq!(f.restored_at_replicas, Some(4));
        assert_eq!(f.peak_replicas, 4);
        assert_eq!(f.stages.len(), 2);
        assert_eq!((f.stages[0].seconds, f.stages[0].within_slo), (10, 1.0));
        assert_eq!(f.stages[1].seconds, 70);
        assert!((f.stages[1].within_slo - 29.0 / 70.0).abs() < 1e-9, "{:?}", f.stages[1]);
        let h = f.headline();
        assert!(h.contains("scale-up 30 s later") && h.contains("SLO restored in 12 s at 4 replicas"), "{h}");
        let names = ["idle".to_string(), "peak".to_string()];
        assert_eq!(f.within_slo_line(&names), "seconds within the SLO: idle 100 % · peak 41 %");
    }

    #[test]
    fn no_breach_no_recovery_and_unknown_seconds_left_out() {
        let f = TalkFigures::from_samples(&run(&[(0.0, 0, None, 1, 1), (1.0, 0, Some(30.0), 1, 1)]), 0.1);
        assert_eq!(f.first_over_slo_s, None);
        assert_eq!(f.stages[0].seconds, 1);
        assert!(f.headline().contains("never over"), "{}", f.headline());

        // Over the SLO and scaled up, but never back under: not restored.
        let f = TalkFigures::from_samples(&run(&[(0.0, 0, Some(200.0), 2, 2), (1.0, 0, Some(300.0), 2, 4)]), 0.1);
        assert_eq!(f.first_scale_up_s, Some(1.0));
        assert_eq!(f.slo_restored_s, None);
        assert!(f.headline().contains("SLO not restored"), "{}", f.headline());
    }
}
