//! The talk's figures, read off the recorded seconds, about whole stages and never one
//! episode (SPEC §4): seconds from the load step to the first scale-up and to the SLO
//! restored, seconds out of the SLO per stage, and how often the autoscaler changed
//! direction (flaps); also how long p95 was over the SLO before the first scale-up and the
//! most replicas. The console shows them live and the report keeps them (`summary.json`).
//!
//! The latency judged is the one the autoscaler acts on and the p95 chart draws against
//! the SLO line: server-side p95, or the client's corrected p95 where no server figure exists.
use serde::{Deserialize, Serialize};

use super::model::Sample;

/// p95 must stay under the SLO this long for the SLO to count as restored (one good second
/// between two bad ones is noise, not a recovery).
pub const RESTORED_HOLD_S: f64 = 10.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TalkFigures {
    /// Second of the load step: the start of the stage whose offered rate jumped most over the
    /// stage before it within its first 3 seconds, by at least [`STEP_MIN_RISE`] of it (a ramp
    /// is no step, nor is the first load after none).
    pub load_step_s: Option<f64>,
    /// Stage index of the load step.
    pub load_step_stage: Option<usize>,
    /// Seconds from the load step to the first scale-up after it.
    pub step_to_scale_up_s: Option<f64>,
    /// Seconds from the load step to the SLO restored ([`RESTORED_HOLD_S`] under it), when p95
    /// went over the SLO after the step; None when it never did (see `step_over_slo_s`).
    pub step_to_restored_s: Option<f64>,
    /// Seconds out of the SLO from the load step to the end of its stage.
    pub step_over_slo_s: u32,
    /// Direction changes of the autoscaler's desired count over the run (up → down or
    /// down → up): 1 for a talk that scales out and back once.
    pub flaps: u32,
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
#[serde(default)]
pub struct StageWithinSlo {
    pub stage: usize,
    pub seconds: u32,
    pub within_slo: f64,
    /// Seconds with p95 over the SLO.
    pub out_of_slo_s: u32,
    /// Changes of the desired count during the stage, by direction.
    pub scale_ups: u32,
    pub scale_downs: u32,
    /// Direction changes within the stage.
    pub flaps: u32,
}

/// The least rise over the stage before that counts as a load step: a quarter.
pub const STEP_MIN_RISE: f64 = 0.25;

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
                // Restored means under the SLO again with the load that broke it still offered
                // (at least 90 % of it): p95 falling because the load went away is not a
                // restore (WebRTC sessions ending, a cool-down).
                let breaking_load = samples[i].offered_rps * 0.9;
                let mut k = j;
                while k < samples.len() {
                    if !under(samples[k]) || samples[k].offered_rps < breaking_load {
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
        let mut last_dir: Option<bool> = None;
        let mut stage_dir: Option<bool> = None;
        for (i, s) in samples.iter().enumerate() {
            if stages.last().is_none_or(|st| st.stage != s.stage) {
                stages.push(StageWithinSlo { stage: s.stage, ..Default::default() });
                stage_dir = None;
            }
            let st = stages.last_mut().expect("pushed above");
            if let Some(prev) = i.checked_sub(1).map(|j| samples[j]) {
                if s.desired != prev.desired && prev.desired > 0 {
                    let up = s.desired > prev.desired;
                    if up {
                        st.scale_ups += 1;
                    } else {
                        st.scale_downs += 1;
                    }
                    if last_dir.is_some_and(|d| d != up) {
                        f.flaps += 1;
                    }
                    if stage_dir.is_some_and(|d| d != up) {
                        st.flaps += 1;
                    }
                    last_dir = Some(up);
                    stage_dir = Some(up);
                }
            }
            let Some(p) = judged_p95(s) else { continue };
            let within = st.within_slo * st.seconds as f64 + if p <= slo_s { 1.0 } else { 0.0 };
            st.seconds += 1;
            st.within_slo = within / st.seconds as f64;
            if p > slo_s {
                st.out_of_slo_s += 1;
            }
        }
        f.stages = stages;
        f.step_figures(&samples, slo_s);
        f
    }

    /// The figures from the load step on (see [`TalkFigures::load_step_s`]).
    fn step_figures(&mut self, samples: &[&Sample], slo_s: f64) {
        // Each stage's jump: its highest offered rate in its first 3 seconds over the last rate
        // of the stage before.
        let mut best: Option<(usize, f64)> = None;
        let mut before = 0.0f64;
        let mut k = 0;
        while k < samples.len() {
            let stage = samples[k].stage;
            let start = k;
            let mut top = 0.0f64;
            while k < samples.len() && samples[k].stage == stage {
                if k < start + 3 {
                    top = top.max(samples[k].offered_rps);
                }
                k += 1;
            }
            // A start from nothing is no step, nor is a rise of under a quarter (the first
            // seconds of a ramp, sessions of a ramp connecting late).
            let rise = top - before;
            if before > 0.0 && rise >= STEP_MIN_RISE * before && best.is_none_or(|(_, r)| rise > r) {
                best = Some((start, rise));
            }
            before = samples[k - 1].offered_rps;
        }
        let Some((i, _)) = best else { return };
        let (t0, stage) = (samples[i].t_s, samples[i].stage);
        self.load_step_s = Some(t0);
        self.load_step_stage = Some(stage);
        let after: Vec<&Sample> = samples[i..].iter().copied().take_while(|s| s.stage == stage).collect();
        let base = samples[i.saturating_sub(1)].desired.max(1);
        self.step_to_scale_up_s = after.iter().find(|s| s.desired > base).map(|s| s.t_s - t0);
        let over = |s: &Sample| judged_p95(s).is_some_and(|p| p > slo_s);
        self.step_over_slo_s = after.iter().filter(|s| over(s)).count() as u32;
        let Some(first_over) = after.iter().position(|s| over(s)) else { return };
        // Restored: the first second from which p95 stays under for RESTORED_HOLD_S (or to
        // the stage's end, if that is at least as long).
        let mut j = first_over;
        while j < after.len() {
            if over(after[j]) || judged_p95(after[j]).is_none() {
                j += 1;
                continue;
            }
            let start = j;
            while j < after.len() && !over(after[j]) {
                j += 1;
            }
            let end = if j < after.len() { after[j].t_s } else { after[j - 1].t_s + 1.0 };
            if end - after[start].t_s >= RESTORED_HOLD_S {
                self.step_to_restored_s = Some(after[start].t_s - t0);
                return;
            }
        }
    }

    /// The step's story in one line for the headless summary and the report, e.g. `load step
    /// at 50 s (stage peak) · scale-up 4 s later · p95 over the SLO 0 s of the stage · 1 flap`.
    pub fn step_line(&self, names: &[String]) -> String {
        let Some(t) = self.load_step_s else { return format!("no load step · {}", flaps(self.flaps)) };
        let name = self.load_step_stage.and_then(|i| names.get(i)).map(String::as_str).unwrap_or("?");
        let mut parts = vec![format!("load step at {t:.0} s (stage {name})")];
        parts.push(match self.step_to_scale_up_s {
            Some(d) => format!("scale-up {d:.0} s later"),
            None => "no scale-up".into(),
        });
        parts.push(format!("p95 over the SLO {} s of the stage", self.step_over_slo_s));
        if self.step_over_slo_s > 0 {
            parts.push(match self.step_to_restored_s {
                Some(d) => format!("SLO restored {d:.0} s after the step"),
                None => "SLO not restored".into(),
            });
        }
        parts.push(flaps(self.flaps));
        parts.join(" · ")
    }

    /// Per stage: seconds out of the SLO and scale changes, e.g. `peak: 12 s out of the SLO,
    /// 2 up / 0 down, 0 flaps`.
    pub fn stage_lines(&self, names: &[String]) -> Vec<String> {
        self.stages
            .iter()
            .map(|s| {
                let name = names.get(s.stage).map(String::as_str).unwrap_or("?");
                format!(
                    "{name}: {} s of {} out of the SLO, scaled {} up / {} down, {}",
                    s.out_of_slo_s,
                    s.seconds,
                    s.scale_ups,
                    s.scale_downs,
                    flaps(s.flaps)
                )
            })
            .collect()
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

/// `1 flap`, `3 flaps`.
fn flaps(n: u32) -> String {
    format!("{n} flap{}", if n == 1 { "" } else { "s" })
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
        assert_eq!(f.stages[1].out_of_slo_s, 41);
    }

    #[test]
    fn p95_falling_with_the_load_is_not_a_restore() {
        // WebRTC sessions on saturated pods: over the SLO at 120 frames/s, scale-up, still
        // over (the sessions stay where they are), under only once the sessions end.
        let mut rows = vec![(0, 40.0, 40.0, 2); 10];
        rows.extend((0..40).map(|i| (1, 120.0, 220.0, if i < 20 { 2 } else { 3 })));
        rows.extend((0..30).map(|_| (2, 20.0, 25.0, 3)));
        let f = TalkFigures::from_samples(&seconds(&rows), 0.1);
        assert_eq!((f.first_over_slo_s, f.first_scale_up_s), (Some(10.0), Some(30.0)));
        assert_eq!(f.slo_restored_s, None, "p95 fell with the load: {f:?}");
        assert!(f.headline().contains("SLO not restored"), "{}", f.headline());
    }

    /// (stage, offered, p95 ms, desired) per second from t = 0.
    fn seconds(rows: &[(usize, f64, f64, u32)]) -> Vec<Sample> {
        rows.iter()
            .enumerate()
            .map(|(t, &(stage, offered_rps, p95, desired))| Sample {
                t_s: t as f64,
                stage,
                offered_rps,
                p95_server_s: Some(p95 / 1000.0),
                pods_ready: desired,
                pods_total: desired,
                desired,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn step_figures_and_flaps_are_about_the_whole_stage() {
        // idle 5 req/s; ramp to 80 (scale 2 → 3); step to 165: over the SLO 6 s, scale-up to 5
        // 8 s after the step, restored 10 s after it and held; cool-down scales back.
        let mut rows = vec![(0, 5.0, 20.0, 2); 10];
        rows.extend((0..10).map(|i| (1, 5.0 + 7.5 * i as f64, 20.0, if i < 7 { 2 } else { 3 })));
        rows.extend((0..40).map(|i| {
            let p95 = if (2..8).contains(&i) { 400.0 } else { 30.0 };
            (2, 165.0, p95, if i < 8 { 3 } else { 5 })
        }));
        rows.extend((0..20).map(|i| (3, 5.0, 20.0, if i < 10 { 5 } else { 2 })));
        let f = TalkFigures::from_samples(&seconds(&rows), 0.1);
        assert_eq!((f.load_step_s, f.load_step_stage), (Some(20.0), Some(2)));
        assert_eq!(f.step_to_scale_up_s, Some(8.0));
        assert_eq!(f.step_over_slo_s, 6);
        assert_eq!(f.step_to_restored_s, Some(8.0));
        assert_eq!(f.flaps, 1, "up, up, then down once");
        assert_eq!((f.stages[2].scale_ups, f.stages[2].scale_downs, f.stages[2].flaps), (1, 0, 0));
        assert_eq!(f.stages[2].out_of_slo_s, 6);
        let names: Vec<String> = ["idle", "ramp", "peak", "cool-down"].map(String::from).to_vec();
        let l = f.step_line(&names);
        assert!(l.contains("load step at 20 s (stage peak)") && l.contains("scale-up 8 s later"), "{l}");
        assert!(l.contains("p95 over the SLO 6 s") && l.contains("restored 8 s after") && l.ends_with("1 flap"), "{l}");
        assert_eq!(f.stage_lines(&names)[2], "peak: 6 s of 40 out of the SLO, scaled 1 up / 0 down, 0 flaps");

        // A steady peak that gives its pods back and takes them again: flaps in the stage.
        let mut rows = vec![(0, 5.0, 20.0, 2); 5];
        for (d, n) in [(4, 10), (2, 10), (4, 10), (2, 10)] {
            rows.extend((0..n).map(|_| (1, 150.0, 20.0, d)));
        }
        let f = TalkFigures::from_samples(&seconds(&rows), 0.1);
        assert_eq!((f.stages[1].scale_ups, f.stages[1].scale_downs, f.stages[1].flaps), (2, 2, 3));
        assert_eq!(f.flaps, 3);
        // Held through the step: no restore figure, zero seconds out.
        assert_eq!((f.step_over_slo_s, f.step_to_restored_s), (0, None));
    }

    #[test]
    fn ramps_and_the_first_load_are_no_step() {
        // The WebRTC lesson's plan in frames/s: 4 sessions from nothing, ramps to 12 and to
        // 16, holds, leaves. Nothing in it is a step.
        let mut rows = vec![(0, 60.0, 20.0, 2); 20];
        rows.extend((0..30).map(|i| (1, 60.0 + 4.0 * i as f64, 20.0, 2)));
        rows.extend((0..45).map(|_| (2, 180.0, 220.0, 3)));
        rows.extend((0..20).map(|i| (3, 180.0 + 3.0 * i as f64, 220.0, 3)));
        rows.extend((0..30).map(|_| (4, 240.0, 220.0, 4)));
        rows.extend((0..30).map(|_| (5, 30.0, 40.0, 2)));
        let f = TalkFigures::from_samples(&seconds(&rows), 0.1);
        assert_eq!(f.load_step_s, None, "{:?}", f.load_step_stage);
        assert_eq!(f.step_line(&[]), "no load step · 1 flap", "up, up, then down");
        // A jump of a quarter or more is one.
        rows[50..95].iter_mut().for_each(|r| r.1 = 240.0);
        let f = TalkFigures::from_samples(&seconds(&rows), 0.1);
        assert_eq!((f.load_step_s, f.load_step_stage), (Some(50.0), Some(2)));
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
