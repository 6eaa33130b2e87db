//! The stage machine: which stage runs, for how long, paused or not, and what the backend
//! must be told when a key is pressed or a stage ends. Time is passed in.
use std::time::{Duration, Instant};

use super::keymap::Action;
use super::model::Verdict;
use super::model::{describe_plan, BackendCommand, ClusterSnapshot, StagePlan, StageView};
use super::story::{judged_p95, TalkFigures, RESTORED_HOLD_S};
use crate::scenario::{Advance, Expect, NoRatePlan, Scenario};

#[derive(Debug, Clone)]
pub struct StageDef {
    pub name: String,
    pub duration: Duration,
    pub manual: bool,
    pub notes: String,
    pub plan: StagePlan,
    /// The rate as the scenario wrote it in pods of capacity (`2.5 pods`), if it did.
    pub pods: Option<String>,
    pub expect: Expect,
}

impl StageDef {
    /// The stages of a scenario in measured units ([`Scenario::in_measured_units`]).
    pub fn from_scenario(s: &Scenario) -> Result<Vec<StageDef>, NoRatePlan> {
        s.stages
            .iter()
            .map(|st| {
                Ok(StageDef {
                    name: st.name.clone(),
                    duration: st.duration,
                    manual: st.advance == Advance::Manual,
                    notes: st.notes.trim().to_string(),
                    plan: match st.session_plan() {
                        Some(sessions) => StagePlan::Sessions(sessions),
                        None => StagePlan::Requests(st.plan()?),
                    },
                    pods: st.pods_text(),
                    expect: st.expect,
                })
            })
            .collect()
    }
}

pub struct Director {
    pub stages: Vec<StageDef>,
    pub idx: usize,
    started: Option<Instant>,
    paused_since: Option<Instant>,
    paused_total: Duration,
    scale: f64,
    pub finished: bool,
    /// Headless: manual stages advance by themselves after their duration.
    pub auto_manual: bool,
    /// Stage start times in run seconds, for the expectations.
    stage_start_s: f64,
    pub verdicts: Vec<Verdict>,
    /// The SLO's p95 in seconds (the scenario's `[slo] p95`), for `out_of_slo_at_most`.
    pub slo_s: f64,
}

impl Director {
    pub fn new(stages: Vec<StageDef>, auto_manual: bool) -> Self {
        Director {
            stages,
            idx: 0,
            started: None,
            paused_since: None,
            paused_total: Duration::ZERO,
            scale: 1.0,
            finished: false,
            auto_manual,
            slo_s: 0.1,
            stage_start_s: 0.0,
            verdicts: Vec::new(),
        }
    }

    pub fn begun(&self) -> bool {
        self.started.is_some()
    }

    pub fn paused(&self) -> bool {
        self.paused_since.is_some()
    }

    fn enter(&mut self, idx: usize, now: Instant, snap: &ClusterSnapshot) -> Vec<BackendCommand> {
        self.idx = idx.min(self.stages.len().saturating_sub(1));
        self.started = Some(now);
        self.paused_total = Duration::ZERO;
        self.scale = 1.0;
        self.stage_start_s = snap.at_s;
        let mut out = Vec::new();
        if self.paused_since.take().is_some() {
            out.push(BackendCommand::Resume);
        }
        if let Some(st) = self.stages.get(self.idx) {
            out.push(BackendCommand::StartStage { index: self.idx, plan: st.plan });
        }
        out
    }

    pub fn begin(&mut self, now: Instant, snap: &ClusterSnapshot) -> Vec<BackendCommand> {
        if self.stages.is_empty() {
            self.finished = true;
            return Vec::new();
        }
        self.enter(0, now, snap)
    }

    /// Time spent in the running stage, pauses excluded.
    pub fn elapsed(&self, now: Instant) -> Duration {
        let Some(s) = self.started else { return Duration::ZERO };
        let paused_now = self.paused_since.map(|p| now.saturating_duration_since(p)).unwrap_or_default();
        now.saturating_duration_since(s).saturating_sub(self.paused_total + paused_now)
    }

    fn judge(&mut self, snap: &ClusterSnapshot) {
        let Some(st) = self.stages.get(self.idx) else { return };
        let e = st.expect;
        let during: Vec<_> = snap.series.iter().filter(|s| s.t_s >= self.stage_start_s).collect();
        let max_ready = during.iter().map(|s| s.pods_ready).max().unwrap_or(0);
        let last_ready = during.last().map(|s| s.pods_ready).unwrap_or(0);
        let p95 = during.last().and_then(|s| s.p95_server_s.or(s.p95_client_s));
        let name = &st.name;
        if let Some(n) = e.replicas_at_least {
            self.verdicts.push(Verdict {
                text: format!("stage {name}: replicas ≥ {n} (reached {max_ready})"),
                ok: max_ready >= n,
            });
        }
        if let Some(n) = e.replicas_at_most {
            self.verdicts.push(Verdict {
                text: format!("stage {name}: replicas ≤ {n} (at end {last_ready})"),
                ok: last_ready <= n,
            });
        }
        let show = |p: Option<f64>| p.map(|v| format!("{:.0}ms", v * 1000.0)).unwrap_or("no data".into());
        if let Some(d) = e.p95_below {
            self.verdicts.push(Verdict {
                text: format!("stage {name}: p95 < {}ms (at end {})", d.as_millis(), show(p95)),
                ok: p95.is_some_and(|p| p < d.as_secs_f64()),
            });
        }
        if let Some(d) = e.p95_recovers_below {
            let limit = d.as_secs_f64();
            let end_t = during.last().map(|s| s.t_s).unwrap_or(self.stage_start_s);
            // The last second over the limit, anywhere in the run so far.
            let last_over = snap.series.iter().rev().find(|s| judged_p95(s).is_some_and(|p| p >= limit));
            let held = last_over.map(|s| end_t - s.t_s);
            let (ok, how) = match (last_over, held) {
                (None, _) => (false, "never over it".to_string()),
                (Some(_), Some(h)) if h >= RESTORED_HOLD_S => (true, format!("held the last {h:.0} s")),
                (Some(_), Some(h)) => (false, format!("under it only the last {h:.0} s")),
                (Some(_), None) => (false, "no data".to_string()),
            };
            self.verdicts
                .push(Verdict { text: format!("stage {name}: p95 back under {}ms ({how})", d.as_millis()), ok });
        }
        if e.out_of_slo_at_most.is_some() || e.scale_downs_at_most.is_some() {
            // The same figures the summary prints about the stage, from the one owner.
            let limit = e.p95_recovers_below.map_or(self.slo_s, |d| d.as_secs_f64());
            let fig = TalkFigures::from_samples(during.iter().copied(), limit);
            let (out, downs) = fig.stages.iter().fold((0, 0), |(o, d), st| (o + st.out_of_slo_s, d + st.scale_downs));
            if let Some(most) = e.out_of_slo_at_most {
                self.verdicts.push(Verdict {
                    text: format!(
                        "stage {name}: p95 over {:.0}ms at most {} s of the stage (was {out} s of {})",
                        limit * 1000.0,
                        most.as_secs(),
                        during.len()
                    ),
                    ok: out as u64 <= most.as_secs(),
                });
            }
            if let Some(most) = e.scale_downs_at_most {
                self.verdicts.push(Verdict {
                    text: format!("stage {name}: scaled down at most {most} times while it ran (did {downs})"),
                    ok: downs <= most,
                });
            }
        }
        if let Some(d) = e.p95_above {
            self.verdicts.push(Verdict {
                text: format!("stage {name}: p95 > {}ms (at end {})", d.as_millis(), show(p95)),
                ok: p95.is_some_and(|p| p > d.as_secs_f64()),
            });
        }
    }

    fn next(&mut self, now: Instant, snap: &ClusterSnapshot) -> Vec<BackendCommand> {
        self.judge(snap);
        if self.idx + 1 >= self.stages.len() {
            self.finished = true;
            return vec![BackendCommand::StartStage { index: self.idx, plan: StagePlan::Idle }];
        }
        self.enter(self.idx + 1, now, snap)
    }

    /// Called every frame/second: auto stages end by themselves.
    pub fn tick(&mut self, now: Instant, snap: &ClusterSnapshot) -> Vec<BackendCommand> {
        if self.finished || !self.begun() {
            return Vec::new();
        }
        let Some(st) = self.stages.get(self.idx) else { return Vec::new() };
        if self.elapsed(now) >= st.duration && (!st.manual || self.auto_manual) && !self.paused() {
            return self.next(now, snap);
        }
        Vec::new()
    }

    /// A key's action.
    pub fn act(&mut self, a: Action, now: Instant, snap: &ClusterSnapshot) -> Vec<BackendCommand> {
        if self.finished || !self.begun() {
            return Vec::new();
        }
        match a {
            Action::NextStage => self.next(now, snap),
            Action::PrevStage => self.enter(self.idx.saturating_sub(1), now, snap),
            Action::RestartStage => self.enter(self.idx, now, snap),
            Action::Baseline => self.enter(0, now, snap),
            Action::TogglePause => match self.paused_since.take() {
                Some(p) => {
                    self.paused_total += now.saturating_duration_since(p);
                    vec![BackendCommand::Resume]
                }
                None => {
                    self.paused_since = Some(now);
                    vec![BackendCommand::Pause]
                }
            },
            Action::RateUp => {
                self.scale *= 1.1;
                vec![BackendCommand::ScaleLoad(1.1)]
            }
            Action::RateDown => {
                self.scale /= 1.1;
                vec![BackendCommand::ScaleLoad(1.0 / 1.1)]
            }
            _ => Vec::new(),
        }
    }

    pub fn view(&self, now: Instant) -> StageView {
        let Some(st) = self.stages.get(self.idx) else { return StageView::default() };
        if !self.begun() {
            return StageView {
                index: 0,
                count: self.stages.len(),
                name: "preflight".into(),
                notes: "Starting the replicas and waiting for /readyz ...".into(),
                next_name: Some(st.name.clone()),
                load_desc: "none yet".into(),
                ..Default::default()
            };
        }
        StageView {
            index: self.idx,
            count: self.stages.len(),
            name: st.name.clone(),
            elapsed_s: self.elapsed(now).as_secs_f64(),
            duration_s: st.duration.as_secs_f64(),
            manual: st.manual,
            notes: st.notes.clone(),
            next_name: self.stages.get(self.idx + 1).map(|s| s.name.clone()),
            load_desc: match (&st.pods, self.paused()) {
                (_, true) => "paused (0 rps)".into(),
                (Some(pods), false) => format!("{pods}: {}", describe_plan(&st.plan, self.scale)),
                (None, false) => describe_plan(&st.plan, self.scale),
            },
            paused: self.paused(),
            finished: self.finished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages() -> Vec<StageDef> {
        let mk = |name: &str, secs, manual, rps| StageDef {
            name: name.into(),
            duration: Duration::from_secs(secs),
            manual,
            notes: format!("notes {name}"),
            plan: StagePlan::Requests(crate::load::RatePlan::Constant { rps }),
            pods: None,
            expect: Expect::default(),
        };
        vec![mk("idle", 10, false, 5.0), mk("peak", 10, false, 50.0), mk("cool", 10, true, 5.0)]
    }

    #[test]
    fn auto_stages_advance_and_manual_waits() {
        let snap = ClusterSnapshot::default();
        let t0 = Instant::now();
        let mut d = Director::new(stages(), false);
        assert_eq!(
            d.begin(t0, &snap),
            vec![BackendCommand::StartStage {
                index: 0,
                plan: StagePlan::Requests(crate::load::RatePlan::Constant { rps: 5.0 })
            }]
        );
        assert!(d.tick(t0 + Duration::from_secs(5), &snap).is_empty());
        assert_eq!(d.tick(t0 + Duration::from_secs(10), &snap).len(), 1);
        assert_eq!(d.view(t0 + Duration::from_secs(10)).name, "peak");
        d.tick(t0 + Duration::from_secs(20), &snap);
        assert_eq!(d.idx, 2);
        assert!(d.tick(t0 + Duration::from_secs(60), &snap).is_empty(), "manual stage waits");
        d.act(Action::NextStage, t0 + Duration::from_secs(61), &snap);
        assert!(d.finished);
    }

    #[test]
    fn pause_freezes_stage_time_and_keys_map_to_commands() {
        let snap = ClusterSnapshot::default();
        let t0 = Instant::now();
        let mut d = Director::new(stages(), true);
        d.begin(t0, &snap);
        assert_eq!(d.act(Action::TogglePause, t0 + Duration::from_secs(2), &snap), vec![BackendCommand::Pause]);
        assert!(d.view(t0 + Duration::from_secs(3)).paused);
        assert!(d.tick(t0 + Duration::from_secs(30), &snap).is_empty(), "paused: no advance");
        assert_eq!(d.act(Action::TogglePause, t0 + Duration::from_secs(30), &snap), vec![BackendCommand::Resume]);
        assert_eq!(d.elapsed(t0 + Duration::from_secs(31)).as_secs(), 3);
        assert_eq!(d.act(Action::RateUp, t0, &snap), vec![BackendCommand::ScaleLoad(1.1)]);
        assert!(d.view(t0).load_desc.contains("×1.10"));
        d.act(Action::NextStage, t0 + Duration::from_secs(31), &snap);
        assert_eq!(d.idx, 1);
        d.act(Action::PrevStage, t0 + Duration::from_secs(32), &snap);
        assert_eq!(d.idx, 0);
        // headless: the manual stage ends by itself
        let mut d = Director::new(stages(), true);
        d.begin(t0, &snap);
        for s in [10, 20, 30] {
            d.tick(t0 + Duration::from_secs(s), &snap);
        }
        assert!(d.finished);
    }

    #[test]
    fn whole_stage_expectations_count_every_second_and_every_scale_down() {
        use super::super::model::Sample;
        let mut st = stages();
        st[0].expect = Expect {
            out_of_slo_at_most: Some(Duration::from_secs(2)),
            scale_downs_at_most: Some(0),
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut d = Director::new(st, true);
        d.begin(t0, &ClusterSnapshot::default());
        // 10 s: p95 over 100 ms for 3 s, and the pods go 4 → 3 → 4 (one scale-down).
        let series = (0..10)
            .map(|t| Sample {
                t_s: t as f64,
                p95_server_s: Some(if (2..5).contains(&t) { 0.3 } else { 0.02 }),
                desired: if t == 6 { 3 } else { 4 },
                ..Default::default()
            })
            .collect();
        let snap = ClusterSnapshot { series, ..Default::default() };
        d.tick(t0 + Duration::from_secs(10), &snap);
        let texts: Vec<(&str, bool)> = d.verdicts.iter().map(|v| (v.text.as_str(), v.ok)).collect();
        assert_eq!(
            texts,
            [
                ("stage idle: p95 over 100ms at most 2 s of the stage (was 3 s of 10)", false),
                ("stage idle: scaled down at most 0 times while it ran (did 1)", false),
            ]
        );
    }
}
